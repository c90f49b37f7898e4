//! One HTTP/1.1 connection served by hyper on a serving thread (see
//! [`crate::threads`]), with graceful shutdown: when the server stops, an idle
//! keep-alive connection closes at once and a busy one after its response.

use std::pin::pin;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::threads::Stopping;

/// Serves `router` on `stream` until the client closes or the server stops.
pub async fn serve_connection(router: Router, stream: TcpStream, stopping: Stopping) {
    // Small responses must not wait for delayed ACKs (Nagle).
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(
        router.map_request(|req: axum::http::Request<Incoming>| req.map(Body::new)),
    );
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let mut stopping = pin!(stopping.wait());
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut stopping => conn.as_mut().graceful_shutdown(),
        }
    }
}
