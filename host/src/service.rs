//! What HTTP and gRPC share: authentication, the engine behind admission control (a cap on
//! concurrent requests, answered with a clear "busy" error instead of queueing, and
//! a per-request timeout), "serve, then log" (a response is encoded for the client,
//! then handed to the feature logger), the logging of failures, and the request
//! metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::api::{OnlineFeaturesRequest, OnlineFeaturesResponse, PushRequest, WriteRequest};
use crate::auth::{Authenticator, Caller};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind};
use crate::feature_logging::FeatureLogger;
use crate::ingest::{Ingest, MaterializeRequest};
use crate::metrics::{Metrics, latency_histogram};
use crate::value::EventTime;

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
    /// Most rows in one written dataframe (400 above).
    pub max_write_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            max_entities: 10_000,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_write_rows: 100_000,
        }
    }
}

/// How a transport turns a served response into what it sends.
pub(crate) trait Encode {
    /// What the transport sends.
    type Output;

    /// Encodes a response that is logged afterwards (so it is only borrowed).
    fn encode_ref(&self, resp: &OnlineFeaturesResponse) -> Self::Output;

    /// Encodes a response nothing else needs.
    fn encode(&self, resp: OnlineFeaturesResponse) -> Self::Output {
        self.encode_ref(&resp)
    }
}

/// The engine as the transports see it.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    auth: Authenticator,
    engine: Engine,
    ingest: Ingest,
    logger: Option<Arc<FeatureLogger>>,
    metrics: RequestMetrics,
    limits: Limits,
    admitted: Arc<Admitted>,
}

impl Service {
    /// Wraps the engine with limits, the feature logger and request metrics.
    pub(crate) fn new(
        auth: Authenticator,
        engine: Engine,
        ingest: Ingest,
        logger: Option<Arc<FeatureLogger>>,
        metrics: &mut Metrics,
        limits: Limits,
    ) -> Self {
        Service {
            auth,
            admitted: Arc::new(Admitted::new(limits.max_concurrent_requests)),
            engine,
            ingest,
            logger,
            metrics: RequestMetrics::register(metrics),
            limits,
        }
    }

    /// Who sent a request whose `Authorization` header (or gRPC metadata) is
    /// `authorization` (anyone, with `no_auth`).
    pub(crate) async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, Error> {
        logged(
            self.auth
                .authenticate(authorization)
                .await
                .map_err(Error::from),
        )
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The feature logger, when feature logging is on.
    pub(crate) fn logger(&self) -> Option<&Arc<FeatureLogger>> {
        self.logger.as_ref()
    }

    /// Answers a request within the limits, encodes the answer with `encoder`, then
    /// logs it when its feature service is logged (and sampled in). Failures are
    /// logged here, for every transport.
    pub(crate) async fn get_online_features<E: Encode>(
        &self,
        req: &OnlineFeaturesRequest,
        caller: &Caller,
        encoder: &E,
    ) -> Result<E::Output, Error> {
        let resp = logged(self.serve(req, caller).await)?;
        let logged = self
            .logger
            .as_ref()
            .and_then(|logger| Some((logger, logger.sample(req)?)));
        match logged {
            None => Ok(encoder.encode(resp)),
            Some((logger, log)) => {
                let out = encoder.encode_ref(&resp);
                logger.log(&log, resp).await;
                Ok(out)
            }
        }
    }

    /// A permit to serve one request, or the "busy" error.
    fn admit(&self) -> Result<Admission<'_>, Error> {
        self.admitted.admit().ok_or_else(|| {
            Error::Overloaded(format!(
                "the server is serving its limit of {} concurrent requests; retry shortly",
                self.limits.max_concurrent_requests
            ))
        })
    }

    /// `POST /push`. Writes are not cut short by the request timeout (an abandoned
    /// write could still land after the client was told it failed); the stores'
    /// own timeouts bound them.
    pub(crate) async fn push(&self, req: &PushRequest, caller: &Caller) -> Result<(), Error> {
        let result = match self.admit() {
            Ok(_permit) => self.ingest.push(req, caller).await,
            Err(e) => Err(e),
        };
        logged(result)
    }

    /// `POST /write-to-online-store`.
    pub(crate) async fn write_to_online_store(
        &self,
        req: &WriteRequest,
        caller: &Caller,
    ) -> Result<(), Error> {
        let result = match self.admit() {
            Ok(_permit) => self.ingest.write_to_online_store(req, caller).await,
            Err(e) => Err(e),
        };
        logged(result)
    }

    /// `POST /materialize` and `/materialize-incremental`: run now (`None`), or in
    /// the background (the views started).
    pub(crate) async fn materialize(
        &self,
        req: MaterializeRequest,
        caller: &Caller,
        run_async: bool,
    ) -> Result<Option<Vec<String>>, Error> {
        let (views, claim) = logged(self.ingest.plan_materialization(&req, caller))?;
        if !run_async {
            let done = logged(self.ingest.materialize(&req, views, claim, &()).await)?;
            tracing::info!(
                rows = done.rows,
                views = done.views.len(),
                took_ms = done.took.as_millis() as u64,
                "materialized"
            );
            return Ok(None);
        }
        let names: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
        let ingest = self.ingest.clone();
        tokio::spawn(async move {
            match ingest.materialize(&req, views, claim, &()).await {
                Ok(done) => tracing::info!(
                    rows = done.rows,
                    views = done.views.len(),
                    took_ms = done.took.as_millis() as u64,
                    "materialized (asynchronous request)"
                ),
                Err(e) => tracing::error!(error = %e, "an asynchronous materialization failed"),
            }
        });
        Ok(Some(names))
    }

    /// "Now", as the server's clock has it.
    pub(crate) fn now(&self) -> EventTime {
        self.ingest.now()
    }

    async fn serve(
        &self,
        req: &OnlineFeaturesRequest,
        caller: &Caller,
    ) -> Result<OnlineFeaturesResponse, Error> {
        let _permit = self.admit()?;
        // Served on this thread (SQLite), a request completes on its first poll.
        match crate::timeout::timeout_if_waiting(
            self.limits.request_timeout,
            self.engine.get_online_features(req, caller),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.limits.request_timeout)),
        }
    }

    /// Starts tracking a request for the metrics; finish it with [`RequestTimer::finish`].
    pub(crate) fn start(&self, endpoint: &'static str) -> RequestTimer<'_> {
        self.metrics.in_flight.inc();
        RequestTimer {
            metrics: &self.metrics,
            endpoint,
            started: Instant::now(),
            done: false,
        }
    }
}

/// The requests being served, counted against the most allowed at once: a counter, as
/// a request is admitted or refused at once and never waits (a semaphore's release
/// takes a lock).
#[derive(Debug)]
struct Admitted {
    count: AtomicUsize,
    max: usize,
}

/// One admitted request, counted until dropped.
struct Admission<'a>(&'a AtomicUsize);

impl Admitted {
    fn new(max: usize) -> Self {
        Admitted {
            count: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// Counts one more request, unless `max` are being served.
    fn admit(&self) -> Option<Admission<'_>> {
        if self.count.fetch_add(1, Ordering::Acquire) >= self.max {
            self.count.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Admission(&self.count))
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// A result, its failure logged.
fn logged<T>(result: Result<T, Error>) -> Result<T, Error> {
    if let Err(e) = &result {
        log_failure(e);
    }
    result
}

/// Logs a failed request: server-side failures loudly, client mistakes quietly.
fn log_failure(e: &Error) {
    match e.kind() {
        ErrorKind::Internal => tracing::error!(error = %e, "request failed"),
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
            tracing::warn!(error = %e, "request failed")
        }
        ErrorKind::InvalidArgument
        | ErrorKind::NotFound
        | ErrorKind::Unimplemented
        | ErrorKind::Conflict => {
            tracing::debug!(error = %e, "request rejected")
        }
        ErrorKind::Unauthenticated => tracing::info!(reason = %e, "request not authenticated"),
        ErrorKind::PermissionDenied => tracing::info!(error = %e, "request refused"),
    }
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    /// `http:/get-online-features`, `grpc:GetOnlineFeatures`, ...
    endpoint: &'static str,
    /// HTTP status code or gRPC code name.
    status: String,
}

/// Requests served, their durations and how many are in flight.
#[derive(Clone, Debug)]
struct RequestMetrics {
    /// Tells these families apart in [`SERIES`].
    id: u64,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
}

/// The series a thread has recorded to, by families, endpoint and status: found
/// without the families' lock, hashing or a label string per request. A few dozen
/// at most (endpoints x statuses); beyond [`SERIES_PER_THREAD`] the families are
/// asked directly.
struct Series {
    metrics: u64,
    endpoint: &'static str,
    status: Box<str>,
    requests: Counter,
    duration: Histogram,
}

const SERIES_PER_THREAD: usize = 64;

thread_local! {
    static SERIES: std::cell::RefCell<Vec<Series>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl RequestMetrics {
    fn register(metrics: &mut Metrics) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let m = RequestMetrics {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        metrics.register("requests", "Requests served", m.requests.clone());
        metrics.register(
            "request_duration_seconds",
            "Time to answer a request",
            m.duration.clone(),
        );
        metrics.register(
            "in_flight_requests",
            "Requests being served",
            m.in_flight.clone(),
        );
        m
    }

    /// Counts one request of `endpoint` answered with `status` that took `took`.
    fn observe(&self, endpoint: &'static str, status: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        let recorded = SERIES.with_borrow_mut(|series| {
            let found = series.iter().position(|s| {
                s.metrics == self.id && s.endpoint == endpoint && *s.status == *status
            });
            let i = match found {
                Some(i) => i,
                None if series.len() < SERIES_PER_THREAD => {
                    series.push(self.series(endpoint, status));
                    series.len() - 1
                }
                None => return false,
            };
            series[i].record(seconds);
            true
        });
        if !recorded {
            self.series(endpoint, status).record(seconds);
        }
    }

    /// The counter and histogram of `endpoint` and `status`, from the families.
    fn series(&self, endpoint: &'static str, status: &str) -> Series {
        let labels = RequestLabels {
            endpoint,
            status: status.to_string(),
        };
        Series {
            metrics: self.id,
            endpoint,
            status: status.into(),
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
        }
    }
}

impl Series {
    fn record(&self, seconds: f64) {
        self.duration.observe(seconds);
        self.requests.inc();
    }
}

/// An in-flight request, counted until finished (or dropped, as `cancelled`).
#[derive(Debug)]
pub(crate) struct RequestTimer<'a> {
    metrics: &'a RequestMetrics,
    endpoint: &'static str,
    started: Instant,
    done: bool,
}

impl RequestTimer<'_> {
    /// Records the outcome (an HTTP status code or a gRPC code name).
    pub(crate) fn finish(mut self, status: &str) -> Duration {
        self.done = true;
        self.record(status)
    }

    fn record(&self, status: &str) -> Duration {
        let took = self.started.elapsed();
        self.metrics.in_flight.dec();
        self.metrics.observe(self.endpoint, status, took);
        took
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record("cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_metrics_render_as_prometheus_text() {
        let mut metrics = Metrics::default();
        let m = RequestMetrics::register(&mut metrics);
        m.in_flight.inc();
        let timer = RequestTimer {
            metrics: &m,
            endpoint: "http:/get-online-features",
            started: Instant::now(),
            done: false,
        };
        timer.finish("200");
        let text = metrics.render();
        assert!(
            text.contains(
                "feast_server_requests_total{endpoint=\"http:/get-online-features\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("feast_server_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("feast_server_in_flight_requests 0"), "{text}");
    }

    #[test]
    fn at_most_max_requests_are_admitted_at_once() {
        let admitted = Admitted::new(2);
        let a = admitted.admit().expect("first");
        let b = admitted.admit().expect("second");
        assert!(admitted.admit().is_none());
        drop(a);
        let c = admitted.admit().expect("a place was freed");
        assert!(admitted.admit().is_none());
        drop((b, c));
        assert_eq!(admitted.count.load(Ordering::Relaxed), 0);
        // A limit of 0 admits one, as before.
        assert!(Admitted::new(0).admit().is_some());
    }

    /// The series a thread keeps are its own server's: two servers in one process
    /// (tests, a reloaded configuration) count apart, and a status seen again is
    /// counted in the same series.
    #[test]
    fn each_registry_counts_its_own_requests() {
        let (mut a, mut b) = (Metrics::default(), Metrics::default());
        let (ma, mb) = (
            RequestMetrics::register(&mut a),
            RequestMetrics::register(&mut b),
        );
        let took = Duration::from_millis(1);
        for _ in 0..3 {
            ma.observe("http:/push", "200", took);
        }
        ma.observe("http:/push", "400", took);
        mb.observe("http:/push", "200", took);
        let count = |m: &Metrics, status: &str| {
            let line = format!(
                "feast_server_requests_total{{endpoint=\"http:/push\",status=\"{status}\"}} "
            );
            let text = m.render();
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()).map(str::to_string))
                .unwrap_or_else(|| panic!("no {line} in {text}"))
        };
        assert_eq!(count(&a, "200"), "3");
        assert_eq!(count(&a, "400"), "1");
        assert_eq!(count(&b, "200"), "1");
    }
}
