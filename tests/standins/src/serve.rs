//! How the push stand-ins serve: HTTP/1.1 and HTTP/2 (prior knowledge) on one
//! plain TCP port, one task per connection, and a gate that can refuse the
//! provider's traffic — cutting the open connections and closing new ones at
//! once, as a provider that is down looks to a client — while the control
//! endpoints (`/_control/…`) keep answering so the fault can be lifted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Refuses the provider's traffic while set.
pub(crate) struct Gate {
    refusing: AtomicBool,
    /// Bumped to cut every open provider connection.
    cut: watch::Sender<u64>,
}

impl Gate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { refusing: AtomicBool::new(false), cut: watch::Sender::new(0) })
    }

    pub(crate) fn set_refusing(&self, refusing: bool) {
        let was = self.refusing.swap(refusing, Ordering::SeqCst);
        if refusing && !was {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    pub(crate) fn refusing(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }
}

/// Serves `router` on `listener` in the background, behind `gate`.
pub(crate) fn spawn(listener: TcpListener, router: Router, gate: Arc<Gate>) {
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "stand-in accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, router.clone(), gate.clone()));
        }
    });
}

async fn connection(stream: TcpStream, router: Router, gate: Arc<Gate>) {
    let control = is_control(&stream).await;
    if gate.refusing() && !control {
        return; // dropped: the client sees the connection closed
    }
    let mut cut = gate.cut.subscribe();
    let builder = Builder::new(TokioExecutor::new());
    let serving = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    if control {
        let _ = serving.await;
        return;
    }
    tokio::select! {
        _ = serving => {}
        _ = cut.changed() => {}
    }
}

const CONTROL: [&[u8]; 4] = [b"GET /_control/", b"POST /_control/", b"PUT /_control/", b"DELETE /_control/"];

/// Whether the connection opens with an HTTP/1.1 request for `/_control/…`
/// (peeked, not consumed; an HTTP/2 client's preface is never one).
async fn is_control(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 32];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        let head = &buf[..n];
        if CONTROL.iter().any(|p| head.starts_with(p)) {
            return true;
        }
        let undecided = CONTROL.iter().any(|p| head.len() < p.len() && p.starts_with(head));
        if n == 0 || !undecided {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
