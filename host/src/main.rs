//! `feast-server`: serve Feast online features from a feature repository.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use feast_server::cli::{Cli, Command, LogFormat, ServeArgs, ServerType};
use feast_server::config::RepoConfig;
use feast_server::server::{App, ServerOptions};

/// mimalloc: the serving path allocates many small, short-lived buffers across
/// threads, where it measured faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let Command::Serve(args) = &cli.command;
    let workers = match args.workers {
        n if n > 0 => n as usize,
        _ => std::thread::available_parallelism().map_or(2, usize::from),
    };
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
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
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

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    if args.server_type == ServerType::Grpc {
        anyhow::bail!("--type grpc is not available in this build; serve HTTP (the default)");
    }
    if args.key.is_some() || args.cert.is_some() {
        anyhow::bail!("TLS (--key/--cert) is not available in this build");
    }
    let (repo, yaml) = cli.repo_paths();
    let config = RepoConfig::load(&repo, &yaml)?;
    let opts = ServerOptions {
        registry_ttl: args.registry_ttl_sec.map(Duration::from_secs),
        ..ServerOptions::default()
    };
    let app = App::build(config, opts).await?;
    let addr: SocketAddr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve host {}", args.host))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "serving HTTP (POST /get-online-features, GET /health)");
    app.serve_http(listener, shutdown_signal()).await?;
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
