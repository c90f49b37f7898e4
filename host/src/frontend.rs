//! What the HTTP and gRPC layers share: the engine behind admission control (a cap
//! on concurrent requests, answered with a clear "busy" error instead of queueing,
//! and a per-request timeout) and the request metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::engine::{FeatureStore, OnlineFeaturesRequest, OnlineFeaturesResponse};
use crate::error::Error;
use crate::metrics::Metrics;

/// Request limits, all configurable on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (HTTP 413 above; gRPC messages too).
    pub max_body_bytes: usize,
    /// Most entity rows in one request (400 above).
    pub max_entities: usize,
    /// Most requests served at once (503 above).
    pub max_concurrent_requests: usize,
    /// Longest time one request may take (503 / DEADLINE_EXCEEDED above).
    pub request_timeout: Duration,
    /// Longest time an HTTP/1 connection may take to send a request's head, counted
    /// from the end of the previous response (so idle keep-alive connections close
    /// after it too); zero for no limit.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            max_entities: 10_000,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The engine as the transports see it.
#[derive(Clone, Debug)]
pub struct Frontend {
    /// The engine.
    pub store: FeatureStore,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// The limits in force.
    pub limits: Limits,
    permits: Arc<Semaphore>,
}

impl Frontend {
    /// Wraps the engine with limits and metrics.
    pub fn new(store: FeatureStore, metrics: Arc<Metrics>, limits: Limits) -> Self {
        Frontend {
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            store,
            metrics,
            limits,
        }
    }

    /// Answers a request within the concurrency limit and the request timeout.
    pub async fn get_online_features(
        &self,
        req: &OnlineFeaturesRequest,
    ) -> Result<OnlineFeaturesResponse, Error> {
        let _permit = self.permits.try_acquire().map_err(|_| {
            Error::Overloaded(format!(
                "the server is serving its limit of {} concurrent requests; retry shortly",
                self.limits.max_concurrent_requests
            ))
        })?;
        match tokio::time::timeout(
            self.limits.request_timeout,
            self.store.get_online_features(req),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.limits.request_timeout)),
        }
    }

    /// Starts tracking a request for the metrics; finish it with [`RequestTimer::finish`].
    pub fn start(&self, endpoint: &'static str) -> RequestTimer {
        self.metrics.in_flight().inc();
        RequestTimer {
            metrics: self.metrics.clone(),
            endpoint,
            started: Instant::now(),
            done: false,
        }
    }
}

/// An in-flight request, counted until finished (or dropped, as `cancelled`).
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    started: Instant,
    done: bool,
}

impl RequestTimer {
    /// Records the outcome (an HTTP status code or a gRPC code name).
    pub fn finish(mut self, status: impl Into<String>) -> Duration {
        self.done = true;
        self.record(status.into())
    }

    fn record(&self, status: String) -> Duration {
        let took = self.started.elapsed();
        self.metrics.in_flight().dec();
        self.metrics.observe_request(self.endpoint, status, took);
        took
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled".into());
        }
    }
}
