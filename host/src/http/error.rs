//! Engine errors as HTTP responses, in Feast's error wire format: the body is a JSON
//! *string* whose content is `{"module": "feast.errors", "class": ..., "message": ...}`,
//! which the Feast SDK's remote client turns back into the named exception.
//!
//! | kind | status |
//! |---|---|
//! | invalid argument | 400 |
//! | not found | 404 |
//! | unimplemented | 501 |
//! | store unavailable, concurrency limit, request timeout | 503 (with `Retry-After`) |
//! | internal | 500 |
//! | not authenticated | 401 with FastAPI's `{"detail": "Invalid or expired access token"}`, as Feast |
//! | permission denied | 403 (`FeastPermissionError`) |

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind, UNAUTHENTICATED};

/// An engine error on its way out as an HTTP response.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// The HTTP status for an error kind.
pub(super) fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
    }
}

/// Feast's error body for a class and message.
pub(super) fn feast_error_body(class: &str, message: &str) -> Vec<u8> {
    // Python's json.dumps separators inside, compact JSON string outside.
    #[expect(clippy::expect_used, reason = "a str always serializes to JSON")]
    let q = |s: &str| serde_json::to_string(s).expect("a string is valid JSON");
    let inner = format!(
        "{{\"module\": \"feast.errors\", \"class\": {}, \"message\": {}}}",
        q(class),
        q(message)
    );
    q(&inner).into_bytes()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        let status = status_for(kind);
        if kind == ErrorKind::Unauthenticated {
            return super::detail(status, UNAUTHENTICATED);
        }
        // Failures of the engine are logged by the service, once for every transport.
        let message = self.0.to_string();
        let body = feast_error_body(self.0.feast_class(), &message);
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, super::APPLICATION_JSON)],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_a_json_string_holding_feast_error_json() {
        let body = feast_error_body(
            "FeatureViewNotFoundException",
            "Feature view x does not exist",
        );
        let outer: String = serde_json::from_slice(&body).expect("a JSON string");
        let inner: serde_json::Value = serde_json::from_str(&outer).expect("JSON inside");
        assert_eq!(inner["module"], "feast.errors");
        assert_eq!(inner["class"], "FeatureViewNotFoundException");
        assert_eq!(inner["message"], "Feature view x does not exist");
        assert!(outer.starts_with("{\"module\": \"feast.errors\", \"class\": "));
    }
}
