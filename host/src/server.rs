//! Builds the server from a repository configuration and serves it until shutdown
//! (the shape of mini-redis' `server::run`: the caller owns the listener and the
//! shutdown signal, so tests can bind port 0 and stop the server themselves).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{ConfigError, OnlineStoreConfig, RepoConfig};
use crate::engine::FeatureStore;
use crate::feature_logging::{FeatureLogger, LoggingError};
use crate::http::{self, DEFAULT_MAX_BODY_BYTES, HttpState};
use crate::online_store::{
    OnlineStore, RedisOptions, RedisStore, SqliteOptions, SqliteStore, StoreError,
};
use crate::registry::{RegistryError, RegistryHandle};

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
    Store(#[from] StoreError),
    /// Feature logging could not start.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The configuration asks for something this build does not serve.
    #[error("{0}")]
    Unsupported(String),
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
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// SQLite reader tuning.
    pub sqlite: SqliteOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            clock: Clock::System,
            registry_ttl: None,
            registry_poll: Duration::from_secs(1),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sqlite: SqliteOptions::default(),
        }
    }
}

/// A built server: configuration, engine and background tasks.
#[derive(Debug)]
pub struct App {
    /// The repository configuration.
    pub config: RepoConfig,
    /// The engine.
    pub store: FeatureStore,
    opts: ServerOptions,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Loads the registry, opens the online store and starts the registry refresh.
    pub async fn build(config: RepoConfig, opts: ServerOptions) -> Result<Self, StartError> {
        config.check_files()?;
        let registry = Arc::new(RegistryHandle::load(&config)?);
        let store = match &config.online_store {
            OnlineStoreConfig::Sqlite(s) => {
                OnlineStore::Sqlite(SqliteStore::open(&s.path, opts.sqlite.clone())?)
            }
            OnlineStoreConfig::Redis(r) => {
                let opts = RedisOptions::from_config(r).map_err(|e| {
                    StartError::Unsupported(format!("{}: {e}", config.source.display()))
                })?;
                OnlineStore::Redis(RedisStore::new(opts, &config.project)?)
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ttl = opts.registry_ttl.unwrap_or(config.registry.cache_ttl);
        let mut tasks = Vec::new();
        if let Some(t) =
            registry
                .clone()
                .spawn_refresh(ttl, opts.registry_poll, shutdown_rx.clone())
        {
            tasks.push(t);
        }
        let logging = &config.feature_server.feature_logging;
        let logger = if logging.enabled {
            let logger =
                FeatureLogger::start(logging, config.repo_dir.clone(), &registry, opts.clock)?;
            tasks.push(logger.spawn_ticker(registry.clone(), shutdown_rx));
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
        let mut engine = FeatureStore::new(registry, store, opts.clock);
        if let Some(logger) = logger {
            engine = engine.with_logger(logger);
        }
        Ok(App {
            store: engine,
            config,
            opts,
            shutdown,
            tasks,
        })
    }

    /// The HTTP router of this app.
    pub fn router(&self) -> axum::Router {
        http::router(
            HttpState {
                store: self.store.clone(),
            },
            self.opts.max_body_bytes,
        )
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then drains in-flight
    /// requests and stops the background tasks.
    pub async fn serve_http(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.stop().await;
        result
    }

    /// Stops background tasks; writes and flushes every logged row.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(logger) = self.store.logger() {
            logger.shutdown().await;
        }
    }
}
