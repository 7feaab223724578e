//! The SMTP conversation, one task per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Received, Shared};

/// RFC 5321's limits, loosely: a command line, a text line, a whole message.
const MAX_LINE: u64 = 1000;
const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// A client silent for this long is hung up on (RFC 5321 asks for minutes).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const HOST: &str = "gavel-smtp-standin";

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "smtp stand-in: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let refuse = {
            let mut state = shared.state();
            state.connections += 1;
            state.faults.refuse_connections
        };
        if refuse {
            drop(stream);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(err) = session(stream, shared).await {
                tracing::debug!(error = %err, "smtp stand-in: session ended");
            }
        });
    }
}

/// One transaction's envelope.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut envelope = Envelope::default();
    reply(&mut write, &shared, &format!("220 {HOST} ESMTP ready")).await?;
    loop {
        let Some(line) = read_line(&mut reader).await? else { return Ok(()) };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let answer = match verb {
            "EHLO" | "HELO" => {
                envelope = Envelope::default();
                format!("250 {HOST}")
            }
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                let temp_fail = {
                    let mut state = shared.state();
                    let fail = state.faults.temp_fail_next > 0;
                    if fail {
                        state.faults.temp_fail_next -= 1;
                    }
                    fail
                };
                if temp_fail {
                    "451 4.3.0 temporarily unable to accept mail (stand-in fault)".to_owned()
                } else {
                    envelope = Envelope { from: Some(path(&line["MAIL FROM:".len()..])), to: Vec::new() };
                    "250 2.1.0 Ok".to_owned()
                }
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                let to = path(&line["RCPT TO:".len()..]);
                let rejected = shared.state().faults.reject_recipients.iter().any(|r| r.eq_ignore_ascii_case(&to));
                if envelope.from.is_none() {
                    "503 5.5.1 MAIL first".to_owned()
                } else if rejected {
                    format!("550 5.1.1 <{to}>: no such mailbox (stand-in fault)")
                } else {
                    envelope.to.push(to);
                    "250 2.1.5 Ok".to_owned()
                }
            }
            "DATA" => {
                if envelope.to.is_empty() {
                    "503 5.5.1 RCPT first".to_owned()
                } else {
                    reply(&mut write, &shared, "354 End data with <CR><LF>.<CR><LF>").await?;
                    let Some(data) = read_data(&mut reader).await? else { return Ok(()) };
                    let id = format!("msg_{}", uuid_like());
                    let received = Received {
                        id: id.clone(),
                        from: envelope.from.take().unwrap_or_default(),
                        to: std::mem::take(&mut envelope.to),
                        subject: subject(&data),
                        data,
                        received_at: chrono::Utc::now(),
                    };
                    shared.state().messages.push(received);
                    format!("250 2.0.0 Ok: queued as {id}")
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 Ok".to_owned()
            }
            "NOOP" => "250 2.0.0 Ok".to_owned(),
            "QUIT" => {
                reply(&mut write, &shared, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not recognized".to_owned(),
        };
        reply(&mut write, &shared, &answer).await?;
    }
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, shared: &Shared, line: &str) -> std::io::Result<()> {
    let latency = shared.state().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    write.write_all(format!("{line}\r\n").as_bytes()).await?;
    write.flush().await
}

/// One line without its CRLF; `None` at end of stream. Too long or too slow ends the session.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(READ_TIMEOUT, (&mut *reader).take(MAX_LINE + 2).read_until(b'\n', &mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow"))??;
    if read == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The message after `DATA`, up to the line holding a single `.`, with
/// dot-stuffing undone (a line starting `..` lost its first dot on the wire).
async fn read_data<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(reader).await? else { return Ok(None) };
        if line == "." {
            return Ok(Some(data));
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if data.len() + line.len() > MAX_MESSAGE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too large"));
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
}

/// `<a@b> SIZE=10` → `a@b`.
fn path(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(start), Some(end)) if start < end => arg[start + 1..end].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// The `Subject:` header's value (first line of it).
fn subject(data: &str) -> Option<String> {
    data.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.get(..8).filter(|h| h.eq_ignore_ascii_case("subject:")).map(|_| l[8..].trim().to_owned()))
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_subjects_are_read_as_written() {
        assert_eq!(path(" <ada@example.com> SIZE=100"), "ada@example.com");
        assert_eq!(path("<>"), "");
        assert_eq!(subject("From: a\r\nSubject: Hello there\r\n\r\nSubject: body"), Some("Hello there".into()));
        assert_eq!(subject("From: a\r\n\r\nbody"), None);
    }

    #[tokio::test]
    async fn data_is_dot_unstuffed_up_to_the_lone_dot() {
        let wire: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\nplain\r\n.\r\nNOOP\r\n";
        let mut reader = BufReader::new(wire);
        let data = read_data(&mut reader).await.expect("reads").expect("a message");
        assert_eq!(data, "Subject: x\r\n\r\n.leading dot\r\nplain\r\n");
        assert_eq!(read_line(&mut reader).await.expect("reads").as_deref(), Some("NOOP"));
    }
}
