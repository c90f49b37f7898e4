//! The engine's typed errors. Each carries the Feast exception class the Feast SDK
//! re-raises and a transport-neutral [`ErrorKind`]; HTTP and gRPC map the kind to
//! their status codes in one place each.

use crate::auth::{AuthError, Denied};
use crate::online_store::StoreError;
use crate::plugin::OdfvError;

/// What a client is told when its request is not authenticated (Feast's answer,
/// whatever the reason; the reason is logged).
pub(crate) const UNAUTHENTICATED: &str = "Invalid or expired access token";

/// Who is at fault, and so which status a transport answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or inconsistent (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidArgument,
    /// The request names something the registry does not have (HTTP 404, gRPC NOT_FOUND).
    NotFound,
    /// The request needs something this server cannot do as configured
    /// (HTTP 501, gRPC UNIMPLEMENTED).
    Unimplemented,
    /// A dependency (the online store) is unreachable, or the server is at its
    /// concurrency limit (HTTP 503, gRPC UNAVAILABLE).
    Unavailable,
    /// The request took longer than the server's limit (HTTP 503, gRPC
    /// DEADLINE_EXCEEDED).
    DeadlineExceeded,
    /// The request conflicts with work in progress (HTTP 409, gRPC ABORTED).
    Conflict,
    /// Something failed on the server side (HTTP 500, gRPC INTERNAL).
    Internal,
    /// The request carries no valid credentials (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// The caller may not do what the request asks (HTTP 403, gRPC PERMISSION_DENIED).
    PermissionDenied,
}

/// A failed `get_online_features`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad JSON, wrong types, ragged or empty entity lists...).
    #[error("{0}")]
    InvalidRequest(String),
    /// `features` is not a list of `view:feature` strings.
    #[error("{0}")]
    InvalidFeatureRef(String),
    /// A join key the requested views need is missing from `entities`.
    #[error("{0}")]
    MissingJoinKey(String),
    /// A feature view or ODFV is not in the registry.
    #[error("Feature view {name} does not exist in project {project}")]
    FeatureViewNotFound {
        /// The name asked for.
        name: String,
        /// The project served.
        project: String,
    },
    /// A feature is not in its view.
    #[error("Feature {feature} does not exist in feature view {view}")]
    FeatureNotFound {
        /// The view.
        view: String,
        /// The feature asked for.
        feature: String,
    },
    /// A feature service is not in the registry.
    #[error("Feature service {name} does not exist in project {project}")]
    FeatureServiceNotFound {
        /// The name asked for.
        name: String,
        /// The project served.
        project: String,
    },
    /// Request data an ODFV needs is missing.
    #[error(
        "Required request data source features {} not found in the entity rows, but required by feature views",
        python_list(.0)
    )]
    RequestDataNotFound(Vec<String>),
    /// Two output columns would have the same name.
    #[error("{0}")]
    FeatureNameCollision(String),
    /// A view is disabled or inconsistent in the registry.
    #[error("{0}")]
    ViewNotServable(String),
    /// A feature has a value type this server does not know.
    #[error(
        "feature {view}:{feature} has value type {value_type}, which this server does not support"
    )]
    UnsupportedValueType {
        /// The view.
        view: String,
        /// The feature.
        feature: String,
        /// Feast's type number.
        value_type: i32,
    },
    /// The online store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An on-demand view could not be computed (no plugin for it, or its plugin failed).
    #[error(transparent)]
    Odfv(#[from] OdfvError),
    /// The server is at its concurrency limit.
    #[error("{0}")]
    Overloaded(String),
    /// The request took longer than the server allows.
    #[error("the request took longer than the server's limit of {0:?}")]
    Timeout(std::time::Duration),
    /// A push names a push source the registry does not have.
    #[error("Unable to find push source '{name}'.")]
    PushSourceNotFound {
        /// The name asked for.
        name: String,
    },
    /// A write names a view the registry does not have.
    #[error("Can't recognize feast object with a name {0}")]
    ObjectNotFound(String),
    /// A written dataframe (or materialization window) is not what the views need.
    #[error("{0}")]
    InvalidWrite(String),
    /// A write needs something this server does not do (an offline store other than
    /// files, a source other than Parquet files...).
    #[error("{0}")]
    WriteUnsupported(String),
    /// Materialization of these views is already running.
    #[error(
        "Cannot start materialization: the following feature views are already being materialized: {}.",
        python_list(.0)
    )]
    MaterializationRunning(Vec<String>),
    /// Writing an offline file (or the registry) failed.
    #[error("{0}")]
    WriteFailed(String),
    /// The request is not authenticated, or its token cannot be checked now.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The registry's permissions refuse the request.
    #[error(transparent)]
    PermissionDenied(#[from] Denied),
    /// More entity rows than the server accepts in one request.
    #[error("the request has {rows} entity rows; this server accepts at most {max} per request")]
    TooManyEntities {
        /// Rows sent.
        rows: usize,
        /// The limit.
        max: usize,
    },
}

/// Python's `repr` of a list of strings, as Feast's messages print them.
fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Error {
    /// Which status family the error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidRequest(_)
            | Error::InvalidFeatureRef(_)
            | Error::MissingJoinKey(_)
            | Error::RequestDataNotFound(_)
            | Error::FeatureNameCollision(_)
            | Error::ViewNotServable(_)
            | Error::TooManyEntities { .. }
            | Error::InvalidWrite(_) => ErrorKind::InvalidArgument,
            Error::PushSourceNotFound { .. } | Error::ObjectNotFound(_) => ErrorKind::NotFound,
            Error::WriteUnsupported(_) => ErrorKind::Unimplemented,
            Error::MaterializationRunning(_) => ErrorKind::Conflict,
            Error::WriteFailed(_) => ErrorKind::Internal,
            Error::FeatureViewNotFound { .. }
            | Error::FeatureNotFound { .. }
            | Error::FeatureServiceNotFound { .. } => ErrorKind::NotFound,
            Error::UnsupportedValueType { .. } | Error::Odfv(OdfvError::Unavailable(_)) => {
                ErrorKind::Unimplemented
            }
            Error::Store(e) if e.is_unavailable() => ErrorKind::Unavailable,
            Error::Store(_) | Error::Odfv(OdfvError::Failed { .. }) => ErrorKind::Internal,
            Error::Overloaded(_) => ErrorKind::Unavailable,
            Error::Timeout(_) => ErrorKind::DeadlineExceeded,
            Error::Auth(AuthError::Invalid(_)) => ErrorKind::Unauthenticated,
            Error::Auth(AuthError::Unavailable(_)) => ErrorKind::Unavailable,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
        }
    }

    /// The class in `feast.errors` the Feast SDK re-raises for this error.
    pub fn feast_class(&self) -> &'static str {
        match self {
            Error::InvalidFeatureRef(_) => "InvalidFeaturesParameterType",
            Error::FeatureViewNotFound { .. } => "FeatureViewNotFoundException",
            Error::FeatureNotFound { .. } => "FeastObjectNotFoundException",
            Error::FeatureServiceNotFound { .. } => "FeatureServiceNotFoundException",
            Error::RequestDataNotFound(_) => "RequestDataNotFoundInEntityRowsException",
            Error::FeatureNameCollision(_) => "FeatureNameCollisionError",
            Error::PushSourceNotFound { .. } => "PushSourceNotFoundException",
            Error::ObjectNotFound(_) => "FeastObjectNotFoundException",
            Error::PermissionDenied(_) => "FeastPermissionError",
            _ => "FeastError",
        }
    }
}
