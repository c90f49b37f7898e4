//! One HTTP/1.1 connection served by hyper on a serving thread (see
//! [`crate::threads`]), with graceful shutdown: when the server stops, an idle
//! keep-alive connection closes at once and a busy one after its response.
//!
//! The close is a *lingering* close: the server sends its FIN, then reads and
//! discards what the client is still sending for a short while. Without it a
//! response sent before the request body was fully read (a 413 for an
//! oversized body) can be destroyed by the TCP reset the kernel sends when a
//! socket closes with unread data, and the client sees a broken pipe instead
//! of the error.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Service;

use crate::threads::Stopping;

/// How long a closing connection keeps draining, at most, what the client
/// still sends (a slow or busy client may need seconds to finish a large body).
const LINGER_TIME: Duration = Duration::from_secs(30);
/// How long a closing connection waits for the client's next bytes.
const LINGER_IDLE: Duration = Duration::from_secs(5);
/// How much a closing connection reads and discards at most.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Serves `service` on `stream` until the client closes or the server stops. A client
/// that takes longer than `header_read_timeout` (zero: no limit) to send a request's
/// head, counted from the end of the previous response, is disconnected: one that
/// sends nothing (an idle keep-alive connection) or its headers too slowly.
pub(crate) async fn serve_connection<S>(
    service: S,
    stream: TcpStream,
    stopping: Stopping,
    header_read_timeout: Duration,
) where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    // Small responses must not wait for delayed ACKs (Nagle).
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(service);
    let mut conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_limit(header_read_timeout))
        .serve_connection(TokioIo::new(stream), service);
    let mut stopping = pin!(stopping.wait());
    let mut shutting_down = false;
    let result = poll_fn(|cx| {
        if !shutting_down && stopping.as_mut().poll(cx).is_ready() {
            shutting_down = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        conn.poll_without_shutdown(cx)
    })
    .await;
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended with an error");
    }
    let stream = conn.into_parts().io.into_inner();
    if !shutting_down {
        // A server stop ends the lingering too: the drain must not wait for
        // clients that are slow to finish or keep their connections open.
        tokio::select! {
            () = linger_close(stream) => {}
            () = stopping => {}
        }
    }
}

/// hyper's setting for a header read timeout given as zero for "no limit".
pub(crate) fn header_limit(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then_some(timeout)
}

/// Sends FIN, then discards incoming bytes until the client closes, stays
/// silent for the idle time, the linger time passes or the byte cap is reached.
async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return,
                Ok(Ok(n)) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
