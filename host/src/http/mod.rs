//! The HTTP API, shaped like Feast's Python feature server: `POST
//! /get-online-features`, the write endpoints and `GET /health`, Feast's JSON in
//! and out, and errors in Feast's wire format (see [`error`]); plus `GET
//! /health/live`, `GET /health/ready`, `GET /plugins` and `GET /metrics`
//! (Prometheus text). With `auth` on, every endpoint but the health checks and the
//! metrics needs a bearer token.
//!
//! Every request runs in a span carrying its request id (the `x-request-id` header
//! when the client sends one, else a generated one, echoed in the response); the
//! access log (one line per request) is off unless asked for.

mod connection;
mod error;
mod request;
mod response;
mod write;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use tower::ServiceExt;
use tracing::Instrument;

use crate::api::OnlineFeaturesResponse;
use crate::auth::Caller;
use crate::metrics::Metrics;
use crate::service::{Encode, Service};
pub(crate) use connection::{header_limit, serve_connection};
use error::ApiError;
pub use request::parse_request;
pub use response::write_response;

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub(crate) struct HttpState {
    /// The engine, with limits.
    pub(crate) service: Service,
    /// Every metric of the server, for `GET /metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// Log one line per request.
    pub(crate) access_log: bool,
}

/// Responses as Feast's JSON.
struct Json;

impl Encode for Json {
    type Output = Vec<u8>;

    fn encode_ref(&self, resp: &OnlineFeaturesResponse) -> Vec<u8> {
        // A value, its status and its event time take up to about 64 bytes.
        let mut out = Vec::with_capacity(256 + resp.columns.len() * (96 + resp.rows() * 64));
        write_response(resp, &mut out);
        out
    }
}

/// The state as the handlers get it: cloned for every request, so one reference count.
type Shared = Arc<HttpState>;

/// Every endpoint of the HTTP API, each request observed (see [`observe`]): what a
/// connection serves. `POST /get-online-features` goes straight to its handler, the
/// other endpoints through the router.
#[derive(Clone, Debug)]
pub struct HttpService {
    state: Shared,
    router: Router,
}

impl HttpService {
    pub(crate) fn new(state: HttpState) -> Self {
        let state = Arc::new(state);
        HttpService {
            router: router(state.clone()),
            state,
        }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for HttpService
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let state = self.state.clone();
        let router = self.router.clone();
        Box::pin(async move { Ok(observe(state, router, req.map(Body::new)).await) })
    }
}

/// The router with every endpoint.
fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/get-online-features",
            post(get_online_features).fallback(method_not_allowed),
        )
        .route("/push", post(write::push).fallback(method_not_allowed))
        .route(
            "/write-to-online-store",
            post(write::write_to_online_store).fallback(method_not_allowed),
        )
        .route(
            "/materialize",
            post(write::materialize).fallback(method_not_allowed),
        )
        .route(
            "/materialize-incremental",
            post(write::materialize_incremental).fallback(method_not_allowed),
        )
        .route("/health", get(ready).fallback(method_not_allowed))
        .route("/health/ready", get(ready).fallback(method_not_allowed))
        .route("/health/live", get(live).fallback(method_not_allowed))
        .route("/plugins", get(plugins).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

/// A router serving only `GET /metrics` (for a separate metrics port).
pub(crate) fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .with_state(Arc::new(state))
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new request id: `<8 hex digits of this process>-<12 hex digits of a counter>`.
#[expect(
    clippy::expect_used,
    reason = "hex digits and a dash are a valid header"
)]
fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        t ^ std::process::id().rotate_left(16)
    });
    let seq = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut id = [b'-'; 21];
    write_hex(u64::from(prefix), &mut id[..8]);
    write_hex(seq, &mut id[9..]);
    HeaderValue::from_bytes(&id).expect("hex digits make a header value")
}

/// Writes the low `out.len()` hex digits of `v` into `out`.
fn write_hex(mut v: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/get-online-features" => "http:/get-online-features",
        "/push" => "http:/push",
        "/write-to-online-store" => "http:/write-to-online-store",
        "/materialize" => "http:/materialize",
        "/materialize-incremental" => "http:/materialize-incremental",
        "/health" | "/health/ready" | "/health/live" => "http:/health",
        "/metrics" => "http:/metrics",
        "/plugins" => "http:/plugins",
        _ => "http:other",
    }
}

/// The request id header; a name made once (a name given as text is copied per use).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The content type of every JSON answer, made once.
pub(super) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Request id, span, metrics and access log around every request.
async fn observe(state: Shared, router: Router, req: Request) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(new_request_id);
    let endpoint = endpoint_label(req.uri().path());
    let timer = state.service.start(endpoint);
    #[expect(
        clippy::expect_used,
        reason = "ids are text: checked above or generated"
    )]
    let text_id = id.to_str().expect("a text request id");
    let span = tracing::info_span!(
        "request",
        id = text_id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let log_span = state.access_log.then(|| span.clone());
    let answer = async {
        if endpoint == "http:/get-online-features" && req.method() == Method::POST {
            return get_online_features(State(state.clone()), req).await;
        }
        match router.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    };
    let mut resp = answer.instrument(span).await;
    let status = resp.status();
    let took = timer.finish(status.as_str());
    if let Some(span) = log_span {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                latency_us = took.as_micros() as u64,
                "access"
            )
        });
    }
    resp.headers_mut().insert(X_REQUEST_ID, id);
    resp
}

async fn get_online_features(State(state): State<Shared>, req: Request) -> Response {
    let (caller, body) = match authenticated_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let req = match request::parse_request(&body) {
        Ok(req) => req,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match state
        .service
        .get_online_features(&req, &caller, &Json)
        .await
    {
        Ok(out) => ([(header::CONTENT_TYPE, APPLICATION_JSON)], out).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Who sent the request, and its body (read whole first, so the connection stays
/// usable, and parsed only once the caller is known); the answer to send instead
/// when the request is not authenticated or its body cannot be read.
async fn authenticated_body(state: &Shared, req: Request) -> Result<(Caller, Bytes), Response> {
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let body = read_body(state, req).await?;
    let caller = authenticate(state, authorization.as_ref()).await?;
    Ok((caller, body))
}

/// Who sent a request with this `Authorization` header; the 401 (or 503) otherwise.
async fn authenticate(
    state: &Shared,
    authorization: Option<&HeaderValue>,
) -> Result<Caller, Response> {
    state
        .service
        .authenticate(authorization.map(HeaderValue::as_bytes))
        .await
        .map_err(|e| ApiError::from(e).into_response())
}

/// The request body, within the size limit and the request timeout; the answer to
/// send instead when it is not.
async fn read_body(state: &Shared, req: Request) -> Result<Bytes, Response> {
    let limits = state.service.limits();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(body_too_large(limits.max_body_bytes));
    }
    // A client that stops sending its body must not hold the connection forever.
    let body = axum::body::to_bytes(req.into_body(), limits.max_body_bytes);
    match crate::timeout::timeout_if_waiting(limits.request_timeout, body).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                return Err(body_too_large(limits.max_body_bytes));
            }
            let message = format!("the request body could not be read: {e}");
            let body = error::feast_error_body("FeastError", &message);
            Err((
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, APPLICATION_JSON)],
                body,
            )
                .into_response())
        }
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} ms",
                limits.request_timeout.as_millis()
            );
            let body = error::feast_error_body("FeastError", &message);
            Err((StatusCode::REQUEST_TIMEOUT, unfinished_body_headers(), body).into_response())
        }
    }
}

/// A 413 for a body over `limit` bytes (declared or read so far).
fn body_too_large(limit: usize) -> Response {
    let message = format!("the request body is larger than this server's limit of {limit} bytes");
    let body = error::feast_error_body("FeastError", &message);
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        unfinished_body_headers(),
        body,
    )
        .into_response()
}

/// Headers of an answer sent before the request body was read to its end: the rest
/// of the body is never read, so the connection cannot carry another request. Say
/// so (RFC 9112 section 9.6), or a client that finished sending would reuse it and
/// lose its next request to the close.
fn unfinished_body_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_TYPE, APPLICATION_JSON),
        (header::CONNECTION, HeaderValue::from_static("close")),
    ]
}

/// Ready: the registry is loaded (always, once started) and the store answers.
/// 200 with an empty body, as Feast's `/health`.
async fn ready(State(state): State<Shared>) -> Response {
    match state.service.engine().store().ping().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => ApiError::from(crate::error::Error::from(e)).into_response(),
    }
}

/// The loaded Wasm plugins (an empty list without a plugin directory), for any
/// authenticated caller.
async fn plugins(State(state): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    if let Err(resp) = authenticate(&state, headers.get(header::AUTHORIZATION)).await {
        return resp;
    }
    let engine = state.service.engine();
    let mut list = engine.plugins().map(|p| p.status()).unwrap_or_default();
    list.extend(engine.store().component_status());
    match serde_json::to_vec(&list) {
        Ok(body) => ([(header::CONTENT_TYPE, APPLICATION_JSON)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Live: the process answers HTTP.
async fn live() -> Response {
    StatusCode::OK.into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> Response {
    detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// FastAPI's `{"detail": "..."}` body, used for routing errors as Feast does.
fn detail(status: StatusCode, text: &str) -> Response {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(b"{\"detail\":");
    response::write_str(text, &mut out);
    out.push(b'}');
    (status, [(header::CONTENT_TYPE, APPLICATION_JSON)], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_fixed_width_hex_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        for id in [&a, &b] {
            let text = id.to_str().expect("ascii");
            let (prefix, seq) = text.split_once('-').expect("dash");
            assert_eq!((prefix.len(), seq.len()), (8, 12), "{text}");
            assert!(
                text.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()),
                "{text}"
            );
        }
        assert_eq!(a.as_bytes()[..8], b.as_bytes()[..8]);
        assert_ne!(a, b);
        let mut out = [0u8; 4];
        write_hex(0xabc, &mut out);
        assert_eq!(&out, b"0abc");
    }
}
