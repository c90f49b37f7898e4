//! Builds the server from a repository configuration and serves it until shutdown
//! (the shape of mini-redis' `server::run`: the caller owns the listener and the
//! shutdown signal, so tests can bind port 0 and stop the server themselves).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{AuthSetupError, Authenticator};
use crate::clock::Clock;
use crate::config::{ConfigError, RepoConfig};
use crate::engine::Engine;
use crate::feature_logging::{FeatureLogger, LoggingError};
use crate::grpc;
use crate::http::{self, HttpState};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::online_store::{self, OpenError, SqliteOptions, StoreSettings};
use crate::plugin::{EngineError, PluginConfig, PluginRuntime};
use crate::registry::{RegistryError, RegistryHandle, RegistrySource};
use crate::service::{Limits, Service};
use crate::threads::ServingThreads;
use crate::tls::{TlsError, TlsFiles, install_crypto_provider};

/// How long a stopping server waits for busy connections, by default.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `feature_store.yaml` is invalid or names a missing file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry could not be loaded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The online store could not be opened.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// TLS files are missing or invalid.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Feature logging could not start.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The WebAssembly engine for plugins could not start.
    #[error(transparent)]
    Plugins(#[from] EngineError),
    /// `auth` cannot be enforced as configured.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

/// Start-up knobs that are not in `feature_store.yaml`.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Source of "now" for TTL checks.
    pub clock: Clock,
    /// Overrides `registry.cache_ttl_seconds` (`-r/--registry_ttl_sec`).
    pub registry_ttl: Option<Duration>,
    /// How often the registry file is checked for changes.
    pub registry_poll: Duration,
    /// Request limits.
    pub limits: Limits,
    /// SQLite reader tuning.
    pub sqlite: SqliteOptions,
    /// Log one line per HTTP request.
    pub access_log: bool,
    /// Overrides `wasm_plugins.directory` (`--plugins DIR`).
    pub plugins_dir: Option<std::path::PathBuf>,
    /// Compiles plugins out of process with this executable (the server binary itself).
    pub plugin_compiler: Option<std::path::PathBuf>,
    /// Serving threads for plain HTTP (0: one per core); see [`crate::threads`].
    pub threads: usize,
    /// How long a stopping server waits for requests in progress (30 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            clock: Clock::System,
            registry_ttl: None,
            registry_poll: Duration::from_secs(1),
            limits: Limits::default(),
            sqlite: SqliteOptions::default(),
            access_log: false,
            plugins_dir: None,
            plugin_compiler: None,
            threads: 0,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// A built server: configuration, engine and background tasks.
#[derive(Debug)]
pub struct App {
    /// The repository configuration.
    pub config: RepoConfig,
    service: Service,
    metrics: Arc<Metrics>,
    opts: ServerOptions,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Loads the registry, opens the online store, loads the plugins and starts the
    /// background tasks (registry refresh, plugin watch, feature log writer).
    pub async fn build(config: RepoConfig, opts: ServerOptions) -> Result<Self, StartError> {
        config.check_files()?;
        let mut plugin_config = PluginConfig::from_repo(&config, opts.plugins_dir.clone())?;
        plugin_config.compiler.clone_from(&opts.plugin_compiler);
        let mut metrics = Metrics::default();
        let registry = Arc::new(RegistryHandle::load(RegistrySource::of(&config))?);
        registry.register_metrics(&mut metrics);
        let settings = StoreSettings {
            // One connection per serving thread, and one for every other thread.
            connections: crate::threads::resolve_count(opts.threads) + 1,
            sqlite: opts.sqlite.clone(),
            compiler: opts.plugin_compiler.clone(),
        };
        let store = online_store::open(&config, &settings, &mut metrics).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ttl = opts.registry_ttl.unwrap_or(config.registry.cache_ttl);
        let mut tasks =
            vec![
                registry
                    .clone()
                    .spawn_refresh(ttl, opts.registry_poll, shutdown_rx.clone()),
            ];
        let plugins = match &plugin_config.directory {
            Some(_) => {
                let rt =
                    PluginRuntime::start(plugin_config, registry.clone(), &mut metrics).await?;
                if let Some(t) = rt.clone().spawn_watch(shutdown.subscribe()) {
                    tasks.push(t);
                }
                Some(rt)
            }
            None => None,
        };
        for name in registry.snapshot().registry.odfvs.keys() {
            if plugins.as_ref().and_then(|p| p.for_odfv(name)).is_none() {
                tracing::warn!(odfv = %name, "on-demand feature view has no plugin; requests for it answer 501 until one is loaded");
            }
        }
        let logging = &config.feature_server.feature_logging;
        let logger = if logging.enabled {
            let logger = FeatureLogger::start(
                logging,
                config.repo_dir.clone(),
                registry.clone(),
                opts.clock,
            )?;
            logger.register_metrics(&mut metrics);
            tasks.push(logger.spawn_ticker(shutdown.subscribe()));
            Some(logger)
        } else {
            None
        };
        let snapshot = registry.snapshot();
        tracing::info!(
            project = %config.project,
            registry = %config.registry.path.display(),
            online_store = store.type_name(),
            views = snapshot.registry.views.len(),
            odfvs = snapshot.registry.odfvs.len(),
            services = snapshot.registry.services.len(),
            "feature repository loaded"
        );
        let ingest = Ingest::new(
            registry.clone(),
            store.clone(),
            opts.clock,
            config.repo_dir.clone(),
            opts.limits.max_write_rows,
        );
        let mut engine =
            Engine::new(registry, store, opts.clock).with_max_entities(opts.limits.max_entities);
        let mut ingest = ingest;
        if let Some(rt) = plugins {
            engine = engine.with_plugins(rt.clone());
            ingest = ingest.with_plugins(rt);
        }
        let auth = Authenticator::start(&config).await?;
        let permissions = snapshot.registry.permissions.len();
        match &auth {
            Authenticator::NoAuth if permissions > 0 => tracing::warn!(
                permissions,
                "the registry has permissions, and auth type no_auth enforces none of them (as Feast)"
            ),
            _ => tracing::info!(auth = auth.type_name(), permissions, "access control"),
        }
        if let Some(t) = auth.spawn_refresh(shutdown.subscribe()) {
            tasks.push(t);
        }
        let service = Service::new(
            auth,
            engine,
            ingest,
            logger,
            &mut metrics,
            opts.limits.clone(),
        );
        Ok(App {
            service,
            metrics: Arc::new(metrics),
            config,
            opts,
            shutdown,
            tasks,
        })
    }

    /// The feature logger, when feature logging is on.
    pub fn feature_logger(&self) -> Option<&Arc<FeatureLogger>> {
        self.service.logger()
    }

    fn http_state(&self) -> HttpState {
        HttpState {
            service: self.service.clone(),
            metrics: self.metrics.clone(),
            access_log: self.opts.access_log,
        }
    }

    /// The HTTP API of this app, as a service.
    pub fn router(&self) -> http::HttpService {
        http::HttpService::new(self.http_state())
    }

    /// A future that completes when the app is told to stop.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Serves `GET /metrics` on its own listener until the app stops (the metrics
    /// port used with gRPC, or with `-m`).
    pub fn spawn_metrics(&mut self, listener: TcpListener) {
        let router = http::metrics_router(self.http_state());
        let stopped = self.stopped();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        }));
    }

    /// Serves HTTP (HTTPS with `tls`) on `listener` until `shutdown` completes, then
    /// drains in-flight requests and stops the background tasks.
    pub async fn serve_http(
        self,
        listener: TcpListener,
        tls: Option<TlsFiles>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let router = self.router();
        let result = match tls {
            None => {
                let plain = PlainHttp {
                    threads: self.opts.threads,
                    header_read_timeout: self.opts.limits.header_read_timeout,
                    shutdown_grace: self.opts.shutdown_grace,
                };
                serve_on_threads(listener, router, plain, shutdown).await
            }
            Some(files) => {
                install_crypto_provider();
                let (cert, key) = files.read()?;
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                    .await
                    .map_err(|e| TlsError::Invalid(e.to_string()))?;
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                let grace = self.opts.shutdown_grace;
                tokio::spawn(async move {
                    shutdown.await;
                    h.graceful_shutdown(Some(grace));
                });
                let std_listener = listener.into_std().map_err(ServeError::Io)?;
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .acceptor(axum_server::accept::NoDelayAcceptor::new());
                // The first request's head is bounded from the end of the TLS handshake
                // (this also covers HTTP version detection), later ones by HTTP/1.
                let header_limit = http::header_limit(self.opts.limits.header_read_timeout);
                let mut server = axum_server::from_tcp(std_listener)
                    .map_err(ServeError::Io)?
                    .acceptor(acceptor)
                    .handle(handle)
                    .first_request_timeout(header_limit);
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(header_limit);
                server
                    .serve(axum::ServiceExt::<axum::extract::Request>::into_make_service(router))
                    .await
                    .map_err(ServeError::Io)
            }
        };
        self.stop().await;
        result
    }

    /// Serves Feast's gRPC `ServingService` and the standard health service (TLS
    /// with `tls`) on `listener` until `shutdown` completes.
    pub async fn serve_grpc(
        mut self,
        listener: TcpListener,
        tls: Option<TlsFiles>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        self.tasks.push(tokio::spawn(grpc::report_health(
            reporter,
            self.service.clone(),
            Duration::from_secs(1),
        )));
        let mut builder = tonic::transport::Server::builder();
        if let Some(files) = tls {
            install_crypto_provider();
            let (cert, key) = files.read()?;
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .map_err(|e| TlsError::Invalid(e.to_string()))?;
        }
        // Small responses must not wait for delayed ACKs (Nagle).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // tonic waits for every connection to close after the shutdown signal, without
        // a limit: a client that keeps a call open must not hold the stop (and the
        // feature log's last flush) for longer than the grace period.
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = signalled.send(());
        };
        let serve = builder
            .add_service(health)
            .add_service(grpc::Serving::server(self.service.clone()))
            .serve_with_incoming_shutdown(incoming, shutdown);
        let grace = self.opts.shutdown_grace;
        let grace_over = async move {
            if on_signal.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            r = serve => r.map_err(|e| ServeError::Grpc(e.to_string())),
            () = grace_over => {
                tracing::warn!(?grace, "gRPC calls still open after the shutdown grace period; stopping without them");
                Ok(())
            }
        };
        self.stop().await;
        result
    }

    /// Stops background tasks; writes and flushes every logged row.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        if let Some(logger) = self.service.logger() {
            logger.shutdown().await;
        }
    }
}

/// The write path of a repository without a server (the `materialize` commands).
pub(crate) async fn writer(config: &RepoConfig) -> Result<Ingest, StartError> {
    config.check_files()?;
    let registry = Arc::new(RegistryHandle::load(RegistrySource::of(config))?);
    let settings = StoreSettings {
        connections: 1,
        sqlite: SqliteOptions::default(),
        compiler: None,
    };
    let store = online_store::open(config, &settings, &mut Metrics::default()).await?;
    Ok(Ingest::new(
        registry,
        store,
        Clock::System,
        config.repo_dir.clone(),
        usize::MAX,
    ))
}

/// How plain HTTP is served by [`serve_on_threads`].
#[derive(Clone, Copy, Debug)]
pub struct PlainHttp {
    /// Serving threads (0: one per core).
    pub threads: usize,
    /// See [`http::serve_connection`].
    pub header_read_timeout: Duration,
    /// How long a stop waits for busy connections.
    pub shutdown_grace: Duration,
}

impl Default for PlainHttp {
    fn default() -> Self {
        PlainHttp {
            threads: 0,
            header_read_timeout: Limits::default().header_read_timeout,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Accepts connections until `shutdown` and serves each on a serving thread with
/// `service` (the app's [`App::router`], or any axum router): how plain HTTP is
/// served.
pub async fn serve_on_threads<S>(
    listener: TcpListener,
    service: S,
    plain: PlainHttp,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    let header_read_timeout = plain.header_read_timeout;
    let threads = ServingThreads::start(plain.threads, "feast-http", move |stream, stopping| {
        http::serve_connection(service.clone(), stream, stopping, header_read_timeout)
    })?;
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(e) = threads.dispatch(stream) {
                        tracing::error!(error = %e, "cannot hand a connection to a serving thread");
                    }
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors, for instance: wait instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = accept => {}
    }
    drop(listener);
    // As with HTTPS: a connection that is still busy after the grace period is left
    // to end with the process.
    let grace = plain.shutdown_grace;
    if tokio::time::timeout(grace, threads.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// An accept error that concerns one connection only.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// A server that failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(String),
}
