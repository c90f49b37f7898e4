//! The `feast-server` command line, shaped like `feast` so commands carry over:
//! global options before the subcommand (`-c/--chdir`, `-f/--feature-store-yaml`),
//! then `serve` with `feast serve`'s flags.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::RepoConfig;
use crate::server::{App, ServerOptions};
use crate::service::Limits;
use crate::tls::TlsFiles;

/// Feast-compatible online feature server.
#[derive(Debug, Parser)]
#[command(name = "feast-server", version, about, long_about = None)]
pub struct Cli {
    /// Feature repository directory (default: the current directory).
    #[arg(short = 'c', long = "chdir", value_name = "REPO")]
    pub chdir: Option<PathBuf>,
    /// Path to feature_store.yaml (default: REPO/feature_store.yaml).
    #[arg(
        short = 'f',
        long = "feature-store-yaml",
        value_name = "FILE",
        env = "FEAST_FS_YAML_FILE_PATH"
    )]
    pub feature_store_yaml: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve online features (like `feast serve`).
    Serve(Box<ServeArgs>),
    /// Write the views' rows with event times in [START, END] from their file sources
    /// to the online store (like `feast materialize`).
    Materialize(MaterializeArgs),
    /// Write each view's rows from where its last materialization ended (or END - ttl)
    /// up to END (like `feast materialize-incremental`).
    MaterializeIncremental(IncrementalArgs),
    /// Build and manage Wasm plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Compile a Wasm component read from stdin into the plugin cache file OUTPUT (run
    /// by the server itself, so the compiler's memory is freed when it exits).
    #[command(hide = true)]
    CompilePlugin(CompilePluginArgs),
}

/// `materialize` options, as `feast materialize` takes them.
#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// Start of the window (ISO 8601, e.g. 2026-11-20T00:00:00Z; UTC without an offset).
    pub start: String,
    /// End of the window (included).
    pub end: String,
    /// Feature views to materialize (default: every view written to the online store).
    #[arg(short = 'v', long = "views", value_name = "VIEW")]
    pub views: Vec<String>,
}

/// `materialize-incremental` options.
#[derive(Debug, Args)]
pub struct IncrementalArgs {
    /// End of the window (ISO 8601).
    pub end: String,
    /// Feature views to materialize (default: every view written to the online store).
    #[arg(short = 'v', long = "views", value_name = "VIEW")]
    pub views: Vec<String>,
}

/// `plugins` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Build one component implementing every python-mode on-demand feature view of
    /// the registry, from the function source Feast recorded (needs componentize-py).
    Build(PluginsBuildArgs),
    /// Write a plugin project for one on-demand feature view of the registry, its
    /// inputs and outputs declared as the registry has them.
    Scaffold(PluginsScaffoldArgs),
}

/// `plugins scaffold` options.
#[derive(Debug, Args)]
pub struct PluginsScaffoldArgs {
    /// The on-demand feature view.
    #[arg(long, value_name = "NAME")]
    pub odfv: String,
    /// The plugin's language.
    #[arg(long, value_enum, default_value_t = PluginLanguage::Rust)]
    pub lang: PluginLanguage,
    /// The project directory to create (default: ./NAME).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Rust: depend on this guest SDK directory (`guest-sdk/` of a feast-server
    /// checkout) instead of the copy of the SDK written into the project.
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginLanguage {
    /// A Rust crate (`#[odfv]`, cargo, wasm32-wasip2).
    Rust,
    /// A Python application (componentize-py).
    Python,
    /// A JavaScript module (componentize-js).
    Js,
}

/// `plugins build` options.
#[derive(Debug, Args)]
pub struct PluginsBuildArgs {
    /// Directory the component is written to (default: `wasm_plugins.directory`, else
    /// REPO/plugins), where a running server loads it.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The plugin's name; the file is NAME.wasm.
    #[arg(long, default_value = "python-odfvs")]
    pub name: String,
    /// The componentize-py executable.
    #[arg(long, value_name = "PATH", default_value = "componentize-py")]
    pub componentize_py: PathBuf,
}

/// `compile-plugin` options.
#[derive(Debug, Args)]
pub struct CompilePluginArgs {
    /// Where the compiled component is written.
    pub output: PathBuf,
    /// The serving engine's linear memory limit (part of what the artifact depends on).
    #[arg(long)]
    pub max_memory_bytes: usize,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which API to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerType {
    /// Feast's HTTP/JSON API.
    Http,
    /// Feast's gRPC ServingService.
    Grpc,
}

/// `serve` options, as `feast serve` takes them.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ServeArgs {
    /// Host to bind.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind.
    #[arg(short = 'p', long, default_value_t = 6566)]
    pub port: u16,
    /// API to serve.
    #[arg(short = 't', long = "type", value_enum, default_value_t = ServerType::Http)]
    pub server_type: ServerType,
    /// TLS private key (PEM), with --cert.
    #[arg(short = 'k', long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// TLS certificate (PEM), with --key.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Seconds between registry refreshes (overrides registry.cache_ttl_seconds; 0 = never).
    #[arg(short = 'r', long = "registry_ttl_sec", value_name = "SECONDS")]
    pub registry_ttl_sec: Option<u64>,
    /// Do not log each request (the default; kept for `feast serve` scripts).
    #[arg(long, conflicts_with = "access_log")]
    pub no_access_log: bool,
    /// Log one line per HTTP request (status, latency, request id).
    #[arg(long)]
    pub access_log: bool,
    /// Also serve Prometheus metrics on --metrics-port (HTTP always serves /metrics).
    #[arg(short = 'm', long)]
    pub metrics: bool,
    /// Port of the separate metrics listener (with -m, or with --type grpc).
    #[arg(long, default_value_t = 8000)]
    pub metrics_port: u16,
    /// Largest request body in bytes (HTTP 413 above).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most entity rows per request (400 above).
    #[arg(long, default_value_t = 10_000)]
    pub max_entities: usize,
    /// Most requests served at once (503 with Retry-After above).
    #[arg(long, default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Most rows in one dataframe written by /push or /write-to-online-store (400 above).
    #[arg(long, default_value_t = 100_000)]
    pub max_write_rows: usize,
    /// Longest time a request may take, in milliseconds (503 above).
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Longest time a client may take to send a request's headers, in milliseconds
    /// (0 = no limit); an idle keep-alive connection is closed after it too.
    #[arg(long, default_value_t = 30_000)]
    pub header_timeout_ms: u64,
    /// How long a stopping server waits for requests in progress, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Directory of Wasm ODFV plugins (overrides wasm_plugins.directory).
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Serving threads, and async runtime workers (-1 or 0 = one per core).
    #[arg(short = 'w', long, default_value_t = -1, allow_negative_numbers = true)]
    pub workers: i32,
    /// Accepted for old `feast serve --go` scripts; this server is always native.
    #[arg(long, hide = true)]
    pub go: bool,
    /// Accepted for `feast serve` scripts (gunicorn setting; no effect here).
    #[arg(long, hide = true)]
    pub max_requests: Option<u64>,
    /// Accepted for `feast serve` scripts (gunicorn setting; no effect here).
    #[arg(long, hide = true)]
    pub max_requests_jitter: Option<u64>,
    /// Accepted for `feast serve` scripts (gunicorn setting; no effect here).
    #[arg(long, hide = true)]
    pub keep_alive_timeout: Option<u64>,
    /// Accepted for `feast serve` scripts (gunicorn setting; no effect here).
    #[arg(long, hide = true)]
    pub worker_connections: Option<u64>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl ServeArgs {
    /// `--workers` as a thread count for the runtime workers and the serving threads
    /// alike: 0 (from -1 or 0) means one per core.
    pub fn threads(&self) -> usize {
        usize::try_from(self.workers).unwrap_or(0)
    }
}

impl Cli {
    /// The repository directory and the YAML file to load.
    pub fn repo_paths(&self) -> (PathBuf, PathBuf) {
        let repo = self.chdir.clone().unwrap_or_else(|| PathBuf::from("."));
        let yaml = match &self.feature_store_yaml {
            Some(f) if f.is_absolute() => f.clone(),
            Some(f) => repo.join(f),
            None => repo.join("feature_store.yaml"),
        };
        (repo, yaml)
    }

    /// The repository directory, its configuration and its registry, loaded.
    fn repository(&self) -> anyhow::Result<(PathBuf, RepoConfig, crate::registry::RegistryHandle)> {
        let (repo, yaml) = self.repo_paths();
        let config = RepoConfig::load(&repo, &yaml)?;
        let registry =
            crate::registry::RegistryHandle::load(crate::registry::RegistrySource::of(&config))?;
        Ok((repo, config, registry))
    }
}

/// Runs the command line: parses the arguments, then serves, materializes or compiles.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let (workers, work): (
        usize,
        std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>>>>,
    ) = match &cli.command {
        Command::Serve(args) => (
            crate::threads::resolve_count(args.threads()),
            Box::pin(serve(&cli, args)),
        ),
        Command::Materialize(args) => (
            2,
            Box::pin(materialize(&cli, Some(&args.start), &args.end, &args.views)),
        ),
        Command::MaterializeIncremental(args) => {
            (2, Box::pin(materialize(&cli, None, &args.end, &args.views)))
        }
        Command::CompilePlugin(c) => return compile_plugin(c),
        Command::Plugins(PluginsCommand::Build(args)) => return exit(build_plugins(&cli, args)),
        Command::Plugins(PluginsCommand::Scaffold(args)) => {
            return exit(scaffold_plugin(&cli, args));
        }
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
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our error messages already name their cause: print them once, not the chain.
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `materialize` (with a start) and `materialize-incremental`: a progress bar on a
/// terminal, rows per second at the end.
async fn materialize(
    cli: &Cli,
    start: Option<&str>,
    end: &str,
    views: &[String],
) -> anyhow::Result<()> {
    let time = |name: &str, text: &str| {
        crate::ingest::parse_time(text).ok_or_else(|| {
            anyhow::anyhow!(
                "{name} {text:?} is not a date and time (ISO 8601, e.g. 2026-11-20T00:00:00Z)"
            )
        })
    };
    let req = crate::ingest::MaterializeRequest {
        start: start.map(|s| time("START", s)).transpose()?,
        end: time("END", end)?,
        views: (!views.is_empty()).then(|| views.to_vec()),
    };
    let (repo, yaml) = cli.repo_paths();
    let config = RepoConfig::load(&repo, &yaml)?;
    let ingest = crate::server::writer(&config).await?;
    let (planned, claim) = ingest.plan_materialization(&req, &crate::auth::Caller::Anyone)?;
    let bar = Bar::new(std::io::stderr().is_terminal());
    let done = ingest.materialize(&req, planned, claim, &bar).await?;
    bar.finish();
    for (view, start, end, rows) in &done.views {
        println!(
            "{view}: {rows} rows, {} to {}",
            start.to_rfc3339(),
            end.to_rfc3339()
        );
    }
    let secs = done.took.as_secs_f64();
    println!(
        "Materialized {} rows of {} feature views in {secs:.2} s ({:.0} rows/s).",
        done.rows,
        done.views.len(),
        done.rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// A progress bar per view (drawn only on a terminal).
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    fn new(terminal: bool) -> Self {
        Bar {
            bar: terminal.then(|| {
                let bar = indicatif::ProgressBar::with_draw_target(
                    None,
                    indicatif::ProgressDrawTarget::stderr(),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg:30} [{bar:40}] {pos}/{len} rows ({per_sec}, {eta})",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            }),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl crate::ingest::Progress for Bar {
    fn start_view(&self, view: &str, rows: usize) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_length(rows as u64);
            bar.set_message(view.to_string());
        }
    }

    fn advance(&self, rows: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(rows as u64);
        }
    }
}

/// `compile-plugin`: the component on stdin, compiled into the cache file.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `plugins build`: the registry's python-mode ODFVs as one component.
fn build_plugins(cli: &Cli, args: &PluginsBuildArgs) -> anyhow::Result<()> {
    let (repo, config, registry) = cli.repository()?;
    let dir = match &args.output {
        Some(d) => d.clone(),
        None => crate::plugin::PluginConfig::from_repo(&config, None)?
            .directory
            .unwrap_or_else(|| repo.join("plugins")),
    };
    let build = crate::plugin::PythonBuild {
        output: dir.join(format!("{}.wasm", args.name)),
        componentize_py: args.componentize_py.clone(),
        name: args.name.clone(),
    };
    let snapshot = registry.snapshot();
    let report = crate::plugin::build_python_odfvs(&snapshot.registry, &build)?;
    for (odfv, why) in &report.skipped {
        println!("skipped {odfv}: {why}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if report.built.is_empty() {
        anyhow::bail!("the registry has no python-mode on-demand feature view to build");
    }
    println!(
        "Built {} ({:.1} MB in {:.1} s): {}",
        build.output.display(),
        report.size as f64 / 1e6,
        report.took.as_secs_f64(),
        report.built.join(", ")
    );
    Ok(())
}

/// `plugins scaffold`: a plugin project for one ODFV.
fn scaffold_plugin(cli: &Cli, args: &PluginsScaffoldArgs) -> anyhow::Result<()> {
    let (_, _, registry) = cli.repository()?;
    let spec = crate::plugin::Scaffold {
        odfv: &args.odfv,
        language: match args.lang {
            PluginLanguage::Rust => crate::plugin::Language::Rust,
            PluginLanguage::Python => crate::plugin::Language::Python,
            PluginLanguage::Js => crate::plugin::Language::JavaScript,
        },
        dir: args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from(&args.odfv)),
        sdk: args.sdk.clone(),
    };
    let snapshot = registry.snapshot();
    let (files, build) =
        crate::plugin::scaffold(&snapshot.registry, &spec).map_err(anyhow::Error::msg)?;
    for f in files {
        println!("wrote {}", f.display());
    }
    println!("Build the plugin with:\n  {build}");
    Ok(())
}

fn compile_plugin(args: &CompilePluginArgs) -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        eprintln!("error: cannot read the component from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match crate::plugin::compile_to_file(args.max_memory_bytes, &bytes, &args.output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Directives naming only
/// targets and levels (the usual case) use a static filter, which costs nothing per
/// request span; directives on spans or fields use tracing's `EnvFilter`, which
/// follows every span.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry, fmt};

    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let directives = if directives.trim().is_empty() {
        "info"
    } else {
        directives.as_str()
    };
    let filter: Box<dyn Layer<Registry> + Send + Sync> = match directives.parse::<Targets>() {
        Ok(targets) => targets.boxed(),
        Err(_) => EnvFilter::try_new(directives)
            .unwrap_or_else(|_| EnvFilter::new("info"))
            .boxed(),
    };
    // Colours only for a person at a terminal, never in files or log collectors.
    let layer = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
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
            max_write_rows: args.max_write_rows,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feast_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "feast-server",
            "-c",
            "repo",
            "serve",
            "-h",
            "0.0.0.0",
            "-p",
            "7000",
            "-t",
            "http",
            "-r",
            "5",
            "--no-access-log",
            "--go",
            "--max-requests",
            "0",
            "-w",
            "2",
        ])
        .expect("parses");
        let Command::Serve(s) = &cli.command else {
            panic!("serve expected")
        };
        assert_eq!(s.host, "0.0.0.0");
        assert_eq!(s.port, 7000);
        assert_eq!(s.registry_ttl_sec, Some(5));
        assert_eq!(s.workers, 2);
        assert!(s.no_access_log && s.go);
        let (repo, yaml) = cli.repo_paths();
        assert_eq!(repo, PathBuf::from("repo"));
        assert_eq!(yaml, PathBuf::from("repo/feature_store.yaml"));
    }

    #[test]
    fn serve_cert_flag_does_not_clash_with_chdir() {
        let cli = Cli::try_parse_from([
            "feast-server",
            "-c",
            "r",
            "serve",
            "-k",
            "key.pem",
            "-c",
            "cert.pem",
        ])
        .expect("parses");
        let Command::Serve(s) = &cli.command else {
            panic!("serve expected")
        };
        assert_eq!(s.cert, Some(PathBuf::from("cert.pem")));
        assert_eq!(cli.chdir, Some(PathBuf::from("r")));
    }
}
