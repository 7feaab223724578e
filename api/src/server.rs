//! The HTTP listener, with every wait bounded: a client gets `header_read`
//! to send its request head (slow-loris connections are closed), a request
//! gets `request` to be answered (`408` past it, however slowly its body
//! arrives; a body over 1 MiB is refused up front), at most
//! `max_connections` are served at once (the rest wait in the kernel's
//! backlog), and on shutdown open connections get `grace` to finish before
//! they are closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};

use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::problem::{ErrorCode, Problem};

/// Cancelled to close the connection a request came on: the live feed cuts
/// off a watcher that fell behind this way (a client that stopped reading
/// would never notice its stream ending). Every request served by [`serve`]
/// carries one.
#[derive(Debug, Clone)]
pub struct CloseConnection(pub CancellationToken);

/// How long the server waits for what.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub request: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

/// Serves `router` on `listener` until `stop`, then drains open connections
/// for at most `limits.grace`. Each request carries its peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let router = router.layer(middleware::from_fn_with_state(limits.request, edge));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause, never spin or stop.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let close = CancellationToken::new();
        let closer = CloseConnection(close.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(closer.clone());
            let router = router.clone();
            async move { router.oneshot(req).await.map_err(|never: Infallible| match never {}) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(err) = ended {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                },
                // Dropping the connection closes its socket.
                _ = close.cancelled() => tracing::debug!(%peer, "connection closed by the server"),
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace_ms = limits.grace.as_millis() as u64, "connections still open after the grace period; closing them");
        }
    }
}

/// The edge of every request: a body over the limit is `413 body_too_large`
/// (see [`crate::body_limit`]), and a request not answered in time is `408
/// request_timeout` (its work is dropped with it; the sagas that must go on
/// run in tasks of their own).
async fn edge(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let req = match crate::body_limit::admit(req).await {
        Ok(req) => req,
        Err(too_large) => return too_large,
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(ErrorCode::RequestTimeout, "the request took too long").into_response(),
    }
}

/// The peer of a request served by [`serve`] (tests that call the router
/// directly have none).
pub fn peer(req: &axum::http::request::Parts) -> Option<SocketAddr> {
    req.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)
}
