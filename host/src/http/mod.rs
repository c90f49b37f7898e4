//! The HTTP API, shaped like Feast's Python feature server: `POST
//! /get-online-features` and `GET /health`, Feast's JSON in and out, and errors in
//! Feast's wire format (see [`error`]).

pub mod error;
pub mod request;
pub mod response;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::FeatureStore;
pub use error::ApiError;

/// Default cap on request bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The engine.
    pub store: FeatureStore,
}

/// The router with every endpoint; `max_body_bytes` caps request bodies (413 above).
pub fn router(state: HttpState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/get-online-features",
            post(get_online_features).fallback(method_not_allowed),
        )
        .route("/health", get(health).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn get_online_features(State(state): State<HttpState>, body: Bytes) -> Response {
    let result = match request::parse_request(&body) {
        Ok(req) => state.store.get_online_features(&req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => {
            let rows = resp.columns.first().map_or(0, |c| c.values.len());
            let mut out = Vec::with_capacity(256 + resp.columns.len() * (96 + rows * 48));
            response::write_response(&resp, &mut out);
            ([(header::CONTENT_TYPE, "application/json")], out).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn health(State(state): State<HttpState>) -> Response {
    match state.store.store().ping().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => ApiError::from(crate::error::Error::from(e)).into_response(),
    }
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
    (status, [(header::CONTENT_TYPE, "application/json")], out).into_response()
}
