//! `feast-server`: serve Feast online features from a feature repository.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use feast_server::cli::{Cli, Command, CompilePluginArgs, LogFormat, ServeArgs, ServerType};
use feast_server::config::RepoConfig;
use feast_server::frontend::Limits;
use feast_server::server::{App, ServerOptions};
use feast_server::tls::TlsFiles;

/// mimalloc: the serving path allocates many small, short-lived buffers across
/// threads, where it measured faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let args = match &cli.command {
        Command::Serve(args) => args,
        Command::CompilePlugin(c) => return compile_plugin(c),
    };
    let workers = feast_server::threads::resolve_count(args.threads());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(&cli, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our error messages already name their cause: print them once, not the chain.
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `compile-plugin`: the component on stdin, compiled into the cache file.
fn compile_plugin(args: &CompilePluginArgs) -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        eprintln!("error: cannot read the component from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match feast_server::plugin::compile_to_file(args.max_memory_bytes, &bytes, &args.output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve host {host}"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let tls = TlsFiles::from_args(args.key.as_deref(), args.cert.as_deref())?;
    let (repo, yaml) = cli.repo_paths();
    let config = RepoConfig::load(&repo, &yaml)?;
    let opts = ServerOptions {
        registry_ttl: args.registry_ttl_sec.map(Duration::from_secs),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_entities: args.max_entities,
            max_concurrent_requests: args.max_concurrent_requests,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            header_read_timeout: Duration::from_millis(args.header_timeout_ms),
        },
        access_log: args.access_log,
        plugins_dir: args.plugins.clone(),
        // Compile plugins in a child process of this very binary.
        plugin_compiler: std::env::current_exe().ok(),
        threads: args.threads(),
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        ..ServerOptions::default()
    };
    let mut app = App::build(config, opts).await?;
    let listener = bind(&args.host, args.port).await?;
    let addr = listener.local_addr()?;
    if args.metrics || args.server_type == ServerType::Grpc {
        let metrics = bind(&args.host, args.metrics_port).await?;
        tracing::info!(addr = %metrics.local_addr()?, "serving Prometheus metrics (GET /metrics)");
        app.spawn_metrics(metrics);
    }
    let scheme = if tls.is_some() { "with TLS" } else { "plain" };
    match args.server_type {
        ServerType::Http => {
            tracing::info!(%addr, scheme, "serving HTTP (POST /get-online-features, GET /health, GET /metrics)");
            app.serve_http(listener, tls, shutdown_signal()).await?;
        }
        ServerType::Grpc => {
            tracing::info!(%addr, scheme, "serving gRPC (feast.serving.ServingService, grpc.health.v1.Health)");
            app.serve_grpc(listener, tls, shutdown_signal()).await?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: draining in-flight requests");
}
