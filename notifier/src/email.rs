//! The email channel: SMTP through lettre's pooled async transport.
//!
//! `SMTP_URL` is `smtp://[user:pass@]host[:port]` (plain, for a local relay or
//! the stand-in; port 25 by default) or `smtps://[user:pass@]host[:port]`
//! (implicit TLS with rustls, port 465 by default). Every command waits at
//! most the configured timeout. A message goes as `multipart/alternative`
//! (text and HTML).
//!
//! How SMTP answers map onto the delivery loop: a 5xx naming the mailbox
//! (550, 551, 553: no such user, not local, bad mailbox name) is a dead
//! address (the delivery is skipped, the reason recorded — there is no device
//! to retire); any other 5xx is a rejection of this message (dead-lettered at
//! once); 4xx, timeouts and connection failures are retried.

use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};

use crate::channel::{Address, Channel, ChannelKind, Message, SendError, Sent};

/// `[notifier]` settings of the email channel.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `SMTP_URL`.
    pub url: String,
    /// `SMTP_FROM`: `Gavel <no-reply@example.com>` or a bare address.
    pub from: String,
    /// Each SMTP command's timeout.
    pub timeout: Duration,
    /// Pooled connections at most.
    pub pool_size: u32,
}

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailChannel {
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        let from: Mailbox = config.from.parse().map_err(|e| format!("SMTP_FROM `{}`: {e}", config.from))?;
        let url = parse_url(&config.url)?;
        let builder = if url.tls {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&url.host).map_err(|e| format!("SMTP_URL: {e}"))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
        };
        let mut builder = builder
            .port(url.port)
            .timeout(Some(config.timeout))
            .pool_config(PoolConfig::new().max_size(config.pool_size.max(1)).idle_timeout(Duration::from_secs(60)));
        if let Some((user, pass)) = url.credentials {
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(Self { transport: builder.build(), from })
    }
}

struct SmtpUrl {
    tls: bool,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

fn parse_url(url: &str) -> Result<SmtpUrl, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("smtp://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("smtps://") {
        (true, rest)
    } else {
        return Err(format!("SMTP_URL `{url}`: must start with smtp:// or smtps://"));
    };
    let rest = rest.trim_end_matches('/');
    let (credentials, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((user.to_owned(), pass.to_owned())), hostport)
        }
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => {
            (host, port.parse::<u16>().map_err(|_| format!("SMTP_URL `{url}`: `{port}` is not a port"))?)
        }
        None => (hostport, if tls { 465 } else { 25 }),
    };
    if host.is_empty() {
        return Err(format!("SMTP_URL `{url}`: no host"));
    }
    Ok(SmtpUrl { tls, host: host.to_owned(), port, credentials })
}

impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn send<'a>(&'a self, to: &'a Address, message: &'a Message) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let Message::Email { subject, text, html } = message else {
                return Err(SendError::Rejected { reason: "a push message given to the email channel".into() });
            };
            let address = to.to.parse().map_err(|e| SendError::DeadAddress { reason: format!("`{}`: {e}", to.to) })?;
            let recipient = Mailbox::new(to.name.clone(), address);
            // The delivery's id as the Message-ID: a repeat after a crash is
            // the same message to the mailbox (which keeps one per id).
            let domain = self.from.email.domain();
            let email = lettre::Message::builder()
                .message_id(Some(format!("<{}@{domain}>", to.delivery.simple())))
                .from(self.from.clone())
                .to(recipient)
                .subject(subject)
                .multipart(MultiPart::alternative_plain_html(text.clone(), html.clone()))
                .map_err(|e| SendError::Rejected { reason: format!("building the email: {e}") })?;
            match self.transport.send(email).await {
                Ok(response) => Ok(Sent { provider_id: response.message().next().map(str::to_owned) }),
                Err(err) => Err(classify(&err)),
            }
        })
    }
}

fn classify(err: &lettre::transport::smtp::Error) -> SendError {
    let reason = err.to_string();
    match err.status().map(u16::from) {
        Some(550 | 551 | 553) => SendError::DeadAddress { reason },
        Some(code) if (500..600).contains(&code) => SendError::Rejected { reason },
        _ => SendError::Retry { reason, retry_after: None, throttled: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_with_their_defaults() {
        let u = parse_url("smtp://127.0.0.1:2525").expect("plain");
        assert_eq!((u.tls, u.host.as_str(), u.port, u.credentials.is_none()), (false, "127.0.0.1", 2525, true));
        let u = parse_url("smtps://me:secret@mail.example.com").expect("tls");
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "mail.example.com", 465));
        assert_eq!(u.credentials, Some(("me".into(), "secret".into())));
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("smtp://host:port").is_err());
        assert!(parse_url("smtp://").is_err());
    }
}
