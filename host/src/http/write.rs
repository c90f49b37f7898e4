//! Feast's write endpoints: `POST /push`, `POST /write-to-online-store`,
//! `POST /materialize` and `POST /materialize-incremental`, with Feast's request
//! bodies and answers (`/push`: 200 with an empty body; the others: 200 `null`;
//! `?async=true`: 202 `{"status": "accepted", "feature_views": [...]}`; a
//! materialization that needs a view being materialized: 409 with Feast's
//! `{"error": ..., "feature_views": [...]}`).

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use super::request::LaxBool;
use super::{ApiError, Shared, authenticated_body};
use crate::api::{DataFrame, PushMode, PushRequest, WriteRequest};
use crate::auth::Caller;
use crate::error::Error;
use crate::ingest::{MaterializeRequest, parse_time};
use crate::value::EventTime;

fn yes() -> LaxBool {
    LaxBool(true)
}

#[derive(Deserialize)]
struct RawPush {
    push_source_name: String,
    df: serde_json::Map<String, Json>,
    #[serde(default = "yes")]
    allow_registry_cache: LaxBool,
    #[serde(default)]
    to: PushMode,
    // Views fed by a push source are never on-demand views: nothing to transform.
    #[serde(default = "yes", rename = "transform_on_write")]
    _transform_on_write: LaxBool,
}

#[derive(Deserialize)]
struct RawWrite {
    feature_view_name: String,
    df: serde_json::Map<String, Json>,
    #[serde(default = "yes")]
    allow_registry_cache: LaxBool,
    #[serde(default = "yes")]
    transform_on_write: LaxBool,
}

#[derive(Deserialize)]
struct RawMaterialize {
    #[serde(default)]
    start_ts: Option<String>,
    #[serde(default)]
    end_ts: Option<String>,
    #[serde(default)]
    feature_views: Option<Vec<String>>,
    #[serde(default)]
    disable_event_timestamp: LaxBool,
    // Accepted as Feast accepts them; they change nothing here.
    #[serde(default, rename = "full_feature_names")]
    _full_feature_names: LaxBool,
    #[serde(default, rename = "version")]
    _version: Option<String>,
}

#[derive(Deserialize)]
struct RawIncremental {
    end_ts: String,
    #[serde(default)]
    feature_views: Option<Vec<String>>,
    #[serde(default, rename = "full_feature_names")]
    _full_feature_names: LaxBool,
    #[serde(default, rename = "version")]
    _version: Option<String>,
}

/// `?async=true` (and Feast's `force`, which only resets states this server does
/// not record).
#[derive(Deserialize, Default)]
pub(super) struct MaterializeQuery {
    #[serde(default, rename = "async")]
    run_async: Option<String>,
    #[serde(default, rename = "force")]
    _force: Option<String>,
}

/// A JSON body as `T`, with errors naming the field.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::InvalidRequest(if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON: {inner}")
        } else {
            format!("invalid `{path}` in the request body: {inner}")
        })
    })
}

/// `df`: every value a list of cells.
fn frame(df: serde_json::Map<String, Json>) -> Result<DataFrame, Error> {
    df.into_iter()
        .map(|(name, column)| match column {
            Json::Array(values) => Ok((name, values)),
            other => Err(Error::InvalidWrite(format!(
                "`df.{name}` must be a list of values (one per row), not {other}"
            ))),
        })
        .collect()
}

/// A timestamp field of a materialize request.
fn time_field(name: &str, text: &str) -> Result<EventTime, Error> {
    parse_time(text).ok_or_else(|| {
        Error::InvalidRequest(format!(
            "`{name}` = {text:?} is not a date and time (ISO 8601, e.g. \"2026-12-01T00:00:00Z\")"
        ))
    })
}

fn null_ok() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, super::APPLICATION_JSON)],
        "null",
    )
        .into_response()
}

/// `POST /push`.
pub(super) async fn push(State(state): State<Shared>, req: Request) -> Response {
    let (caller, body) = match authenticated_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let result = async {
        let raw: RawPush = parse(&body)?;
        let req = PushRequest {
            push_source_name: raw.push_source_name,
            df: frame(raw.df)?,
            to: raw.to,
            allow_registry_cache: raw.allow_registry_cache.0,
        };
        state.service.push(&req, &caller).await
    }
    .await;
    match result {
        // Feast answers a push with an empty 200.
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /write-to-online-store`.
pub(super) async fn write_to_online_store(State(state): State<Shared>, req: Request) -> Response {
    let (caller, body) = match authenticated_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let result = async {
        let raw: RawWrite = parse(&body)?;
        let req = WriteRequest {
            feature_view_name: raw.feature_view_name,
            df: frame(raw.df)?,
            allow_registry_cache: raw.allow_registry_cache.0,
            transform_on_write: raw.transform_on_write.0,
        };
        state.service.write_to_online_store(&req, &caller).await
    }
    .await;
    match result {
        Ok(()) => null_ok(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /materialize`.
pub(super) async fn materialize(
    State(state): State<Shared>,
    Query(query): Query<MaterializeQuery>,
    req: Request,
) -> Response {
    let (caller, body) = match authenticated_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let req = parse::<RawMaterialize>(&body).and_then(|raw| {
        let (start, end) = if raw.disable_event_timestamp.0 {
            (EventTime::EPOCH, state.service.now())
        } else {
            let need = |name: &str, v: Option<String>| {
                v.ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "`{name}` is required when disable_event_timestamp is false"
                    ))
                })
            };
            let start = time_field("start_ts", &need("start_ts", raw.start_ts)?)?;
            let end = time_field("end_ts", &need("end_ts", raw.end_ts)?)?;
            (start, end)
        };
        Ok(MaterializeRequest {
            start: Some(start),
            end,
            views: raw.feature_views,
        })
    });
    run(&state, req, &caller, &query).await
}

/// `POST /materialize-incremental`.
pub(super) async fn materialize_incremental(
    State(state): State<Shared>,
    Query(query): Query<MaterializeQuery>,
    req: Request,
) -> Response {
    let (caller, body) = match authenticated_body(&state, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let req = parse::<RawIncremental>(&body).and_then(|raw| {
        Ok(MaterializeRequest {
            start: None,
            end: time_field("end_ts", &raw.end_ts)?,
            views: raw.feature_views,
        })
    });
    run(&state, req, &caller, &query).await
}

async fn run(
    state: &Shared,
    req: Result<MaterializeRequest, Error>,
    caller: &Caller,
    query: &MaterializeQuery,
) -> Response {
    let run_async = query.run_async.as_deref().is_some_and(|v| {
        ["true", "1", "yes", "on", "t", "y"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(v))
    });
    let result = match req {
        Ok(req) => state.service.materialize(req, caller, run_async).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(None) => null_ok(),
        Ok(Some(views)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "feature_views": views})),
        )
            .into_response(),
        Err(Error::MaterializationRunning(views)) => {
            let message = Error::MaterializationRunning(views.clone()).to_string();
            (
                StatusCode::CONFLICT,
                axum::Json(json!({"error": message, "feature_views": views})),
            )
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
