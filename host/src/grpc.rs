//! Feast's gRPC API, `feast.serving.ServingService` (`GetFeastServingInfo`,
//! `GetOnlineFeatures`), wire-compatible with Feast's protos, plus the standard
//! `grpc.health.v1.Health` service. A thin layer: it converts messages and calls the
//! same engine as HTTP; errors map to gRPC codes here, once. With `auth` on, the
//! serving service needs the `authorization` metadata (`Bearer <token>`); the
//! health service stays open.

use std::time::Duration;

use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;

use crate::api::{OnlineFeaturesRequest, OnlineFeaturesResponse};
use crate::auth::Caller;
use crate::error::{Error, ErrorKind, UNAUTHENTICATED};
use crate::proto::feast::serving::get_online_features_request::Kind;
use crate::proto::feast::serving::get_online_features_response::FeatureVector;
use crate::proto::feast::serving::serving_service_server::{ServingService, ServingServiceServer};
use crate::proto::feast::serving::{
    FeatureList, FeatureViewMetadata, GetFeastServingInfoRequest, GetFeastServingInfoResponse,
    GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, GetOnlineFeaturesResponseMetadata,
};
use crate::service::{Encode, Service};

/// The gRPC code for an error kind.
fn code_for(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Unimplemented => tonic::Code::Unimplemented,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        ErrorKind::Internal => tonic::Code::Internal,
        ErrorKind::Conflict => tonic::Code::Aborted,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
    }
}

/// An engine error as a gRPC status (message: the error; Feast's class in the details
/// is not a gRPC concept, so the class is prefixed to the message).
fn status_for(e: &Error) -> Status {
    match e.kind() {
        // Why a token was refused is logged, not told.
        ErrorKind::Unauthenticated => Status::unauthenticated(UNAUTHENTICATED),
        kind => Status::new(code_for(kind), format!("{}: {e}", e.feast_class())),
    }
}

/// `feast.serving.ServingService` over the engine.
#[derive(Clone, Debug)]
pub(crate) struct Serving {
    service: Service,
}

impl Serving {
    /// The service, ready to add to a tonic server (message size capped at the body limit).
    pub(crate) fn server(service: Service) -> ServingServiceServer<Serving> {
        let limit = service.limits().max_body_bytes;
        ServingServiceServer::new(Serving { service })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }
}

impl Serving {
    /// Who sent a request (its `authorization` metadata).
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(tonic::metadata::MetadataValue::as_bytes);
        self.service
            .authenticate(authorization)
            .await
            .map_err(|e| status_for(&e))
    }
}

/// Responses as Feast's `GetOnlineFeaturesResponse`.
struct Proto;

impl Encode for Proto {
    type Output = GetOnlineFeaturesResponse;

    fn encode_ref(&self, resp: &OnlineFeaturesResponse) -> GetOnlineFeaturesResponse {
        to_proto_response(resp.clone())
    }

    fn encode(&self, resp: OnlineFeaturesResponse) -> GetOnlineFeaturesResponse {
        to_proto_response(resp)
    }
}

/// Converts a gRPC request into the engine's request.
fn to_engine_request(r: GetOnlineFeaturesRequest) -> OnlineFeaturesRequest {
    let (features, feature_service) = match r.kind {
        Some(Kind::FeatureService(s)) => (Vec::new(), Some(s)),
        Some(Kind::Features(f)) => (f.val, None),
        None => (Vec::new(), None),
    };
    OnlineFeaturesRequest {
        features,
        feature_service,
        entities: r.entities.into_iter().map(|(k, v)| (k, v.val)).collect(),
        request_context: r
            .request_context
            .into_iter()
            .map(|(k, v)| (k, v.val))
            .collect(),
        full_feature_names: r.full_feature_names,
        include_feature_view_version_metadata: r.include_feature_view_version_metadata,
    }
}

/// The gRPC request equivalent to an engine request (what a client sends).
pub fn to_proto_request(r: OnlineFeaturesRequest) -> GetOnlineFeaturesRequest {
    use crate::value::RepeatedValue;
    GetOnlineFeaturesRequest {
        kind: Some(match r.feature_service {
            Some(s) => Kind::FeatureService(s),
            None => Kind::Features(FeatureList { val: r.features }),
        }),
        entities: r
            .entities
            .into_iter()
            .map(|(k, v)| (k, RepeatedValue { val: v }))
            .collect(),
        full_feature_names: r.full_feature_names,
        request_context: r
            .request_context
            .into_iter()
            .map(|(k, v)| (k, RepeatedValue { val: v }))
            .collect(),
        include_feature_view_version_metadata: r.include_feature_view_version_metadata,
    }
}

/// Converts the engine's response into Feast's `GetOnlineFeaturesResponse`.
fn to_proto_response(r: OnlineFeaturesResponse) -> GetOnlineFeaturesResponse {
    GetOnlineFeaturesResponse {
        metadata: Some(GetOnlineFeaturesResponseMetadata {
            feature_names: Some(FeatureList {
                val: r.feature_names.to_vec(),
            }),
            feature_view_metadata: r
                .feature_view_metadata
                .unwrap_or_default()
                .into_iter()
                .map(|m| FeatureViewMetadata {
                    name: m.name,
                    version: m.version,
                })
                .collect(),
        }),
        results: r
            .columns
            .into_iter()
            .map(|c| {
                let rows = c.rows();
                FeatureVector {
                    statuses: (0..rows)
                        .filter_map(|r| c.status(r))
                        .map(|s| s as i32)
                        .collect(),
                    event_timestamps: (0..rows)
                        .filter_map(|r| c.event_time(r))
                        .map(|t| t.to_proto())
                        .collect(),
                    values: c.into_values(),
                }
            })
            .collect(),
        status: true,
    }
}

#[tonic::async_trait]
impl ServingService for Serving {
    async fn get_feast_serving_info(
        &self,
        request: Request<GetFeastServingInfoRequest>,
    ) -> Result<Response<GetFeastServingInfoResponse>, Status> {
        self.caller(&request).await?;
        Ok(Response::new(GetFeastServingInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn get_online_features(
        &self,
        request: Request<GetOnlineFeaturesRequest>,
    ) -> Result<Response<GetOnlineFeaturesResponse>, Status> {
        let timer = self.service.start("grpc:GetOnlineFeatures");
        let caller = match self.caller(&request).await {
            Ok(c) => c,
            Err(status) => {
                timer.finish(&format!("{:?}", status.code()));
                return Err(status);
            }
        };
        let req = to_engine_request(request.into_inner());
        match self
            .service
            .get_online_features(&req, &caller, &Proto)
            .await
        {
            Ok(out) => {
                timer.finish("OK");
                Ok(Response::new(out))
            }
            Err(e) => {
                let status = status_for(&e);
                timer.finish(&format!("{:?}", status.code()));
                Err(status)
            }
        }
    }
}

/// Keeps the standard health service in step with readiness (the online store
/// answers), checking every `every` until the task is dropped.
pub(crate) async fn report_health(reporter: HealthReporter, service: Service, every: Duration) {
    let mut last: Option<bool> = None;
    loop {
        let ok = service.engine().store().ping().await.is_ok();
        if last != Some(ok) {
            if ok {
                reporter
                    .set_serving::<ServingServiceServer<Serving>>()
                    .await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
            } else {
                reporter
                    .set_not_serving::<ServingServiceServer<Serving>>()
                    .await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
            last = Some(ok);
        }
        tokio::time::sleep(every).await;
    }
}
