//! Test harness for the end-to-end tests: copies of the demo feature repository that
//! real Feast wrote, an in-process `feast-server` on a free loopback port with a
//! pinned clock, an HTTP client, and the golden request/response pairs captured from
//! `feast serve` 0.67.0 (see `tests/golden/README.md`).

#![allow(
    clippy::expect_used,
    reason = "test and benchmark support: a failed step ends the run"
)]

pub mod logging;
pub mod oidc;
pub mod plugins;
pub mod postgres_server;
pub mod redis_server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use feast_server::Clock;
use feast_server::FeatureLogger;
use feast_server::RepoConfig;
use feast_server::{App, ServerOptions};
use serde_json::Value as Json;
use tokio::sync::oneshot;

/// 2026-11-23T00:00:00Z: one hour after the demo data's newest event time, inside
/// the demo views' 1-day ttl, so golden cases expect `PRESENT`.
pub const PINNED_NOW: u64 = 1_795_392_000;

/// A `cargo` command in the workspace, for builds started by a test. Cargo gives a
/// test process its package's `CARGO_*` variables; build scripts (ring's, cc's) rerun
/// when those change, so they are removed: the nested build then sees the environment
/// the top-level build saw and compiles nothing it already compiled.
pub fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        let keep = [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
            "CARGO_INCREMENTAL",
        ];
        if let Some(n) = name.to_str()
            && n.starts_with("CARGO_")
            && !keep.contains(&n)
        {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A private copy of the demo feature repository (`demo/feature_repo`).
pub struct RepoCopy {
    dir: tempfile::TempDir,
}

impl RepoCopy {
    /// Copies the demo repository into a fresh temporary directory.
    pub fn demo() -> Self {
        Self::of("demo/feature_repo")
    }

    /// Copies the `composite` repository (composite, INT32 and STRING keys, python and
    /// pandas on-demand views; `tests/fixtures/composite`) into a fresh directory.
    pub fn composite() -> Self {
        Self::of("tests/fixtures/composite/feature_repo")
    }

    /// Copies the `python_odfv` repository (python-mode on-demand views over every scalar
    /// type; `tests/fixtures/python_odfv`) into a fresh directory.
    pub fn python_odfv() -> Self {
        Self::of("tests/fixtures/python_odfv/feature_repo")
    }

    /// Copies the `auth` repository (views, services and permissions the real Feast
    /// applied; `tests/fixtures/auth`) into a fresh directory.
    pub fn auth() -> Self {
        Self::of("tests/fixtures/auth/feature_repo")
    }

    /// Copies a repository of the workspace into a fresh temporary directory.
    fn of(path: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&workspace_root().join(path), dir.path());
        RepoCopy { dir }
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `feature_store.yaml`.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.path().join("feature_store.yaml"), yaml).expect("write config");
    }

    /// Appends YAML to `feature_store.yaml` (e.g. a `wasm_plugins:` block).
    pub fn append_config(&self, yaml: &str) {
        let path = self.path().join("feature_store.yaml");
        let mut text = std::fs::read_to_string(&path).expect("read config");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(yaml);
        std::fs::write(path, text).expect("write config");
    }

    /// The demo with the demo's ODFV plugin installed in a fresh plugin directory.
    pub fn demo_with_plugins() -> (Self, plugins::PluginDir) {
        let repo = Self::demo();
        let dir = plugins::PluginDir::with(&[(
            plugins::built_plugins().conv_rate.as_path(),
            "transformed_conv_rate.wasm",
        )]);
        repo.append_config(&plugins::wasm_plugins_yaml(dir.path(), ""));
        (repo, dir)
    }

    /// Loads the repository's configuration.
    pub fn config(&self) -> RepoConfig {
        RepoConfig::load(self.path(), &self.path().join("feature_store.yaml")).expect("config")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read demo dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A TCP port that accepts connections and never answers; counts them.
pub fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, accepted)
}

/// Checks `done` every 50 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Server options for tests: clock pinned at [`PINNED_NOW`], fast registry polling.
pub fn test_options() -> ServerOptions {
    ServerOptions {
        clock: Clock::fixed_unix(PINNED_NOW),
        registry_poll: Duration::from_millis(50),
        ..ServerOptions::default()
    }
}

/// Which API a [`TestServer`] serves.
#[derive(Clone, Debug)]
pub enum Api {
    /// HTTP/JSON.
    Http,
    /// gRPC.
    Grpc,
}

/// A `feast-server` on a free loopback port, stopped on drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` with TLS).
    pub base_url: String,
    /// The port.
    pub port: u16,
    /// The feature logger, when `feature_logging.enabled` is on.
    pub feature_logger: Option<Arc<FeatureLogger>>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Builds the app from `config` and serves HTTP on 127.0.0.1:0.
    pub async fn start(config: RepoConfig, opts: ServerOptions) -> Self {
        Self::start_with(config, opts, Api::Http, None).await
    }

    /// Builds the app and serves `api` on 127.0.0.1:0, with TLS when `tls` is given
    /// (a self-signed certificate for `localhost`, see [`SelfSigned`]).
    pub async fn start_with(
        config: RepoConfig,
        opts: ServerOptions,
        api: Api,
        tls: Option<&SelfSigned>,
    ) -> Self {
        let app = App::build(config, opts).await.expect("server builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let feature_logger = app.feature_logger().cloned();
        let (stop, stopped) = oneshot::channel::<()>();
        let files = tls.map(|t| t.files.clone());
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            let result = match api {
                Api::Http => app.serve_http(listener, files, stopped).await,
                Api::Grpc => app.serve_grpc(listener, files, stopped).await,
            };
            if let Err(e) = result {
                panic!("server failed: {e}");
            }
        });
        feast_server::install_crypto_provider();
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(30));
        let base_url = match tls {
            Some(t) => {
                client = client.add_root_certificate(
                    reqwest::Certificate::from_pem(t.cert_pem.as_bytes()).expect("cert"),
                );
                format!("https://localhost:{port}")
            }
            None => format!("http://127.0.0.1:{port}"),
        };
        TestServer {
            base_url,
            port,
            feature_logger,
            client: client.build().expect("client"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Serves the demo repository with the test options.
    pub async fn demo(repo: &RepoCopy) -> Self {
        Self::start(repo.config(), test_options()).await
    }

    /// Sends a request; returns status, content type and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        self.send_with_headers(method, path, content_type, body, &[])
            .await
    }

    /// Sends a request with extra headers.
    pub async fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let header_map = resp.headers().clone();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.expect("body").to_vec();
        Response {
            status,
            content_type,
            headers: header_map,
            body,
        }
    }

    /// Sends the request of a golden case as it was captured.
    pub async fn send_case(&self, case: &GoldenCase) -> Response {
        self.send(
            &case.method,
            &case.path,
            case.content_type.as_deref(),
            case.body.as_bytes(),
        )
        .await
    }

    /// POSTs a JSON body to `/get-online-features`.
    pub async fn get_online_features(&self, body: &Json) -> Response {
        self.send(
            "POST",
            "/get-online-features",
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A self-signed TLS certificate for `localhost` and `127.0.0.1`, written to files.
pub struct SelfSigned {
    /// The certificate (PEM), to trust in clients.
    pub cert_pem: String,
    /// The same certificate in DER.
    pub cert_der: Vec<u8>,
    /// The files the server reads.
    pub files: feast_server::TlsFiles,
    _dir: tempfile::TempDir,
}

impl SelfSigned {
    /// Generates a certificate and key.
    pub fn generate() -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let cert_pem = key.cert.pem();
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, key.signing_key.serialize_pem()).expect("write key");
        SelfSigned {
            cert_pem,
            cert_der: key.cert.der().to_vec(),
            files: feast_server::TlsFiles {
                cert: cert_path,
                key: key_path,
            },
            _dir: dir,
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `content-type` header.
    pub content_type: Option<String>,
    /// All headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// For a Feast error body (a JSON string holding `{module, class, message}`):
    /// the class and the message.
    pub fn feast_error(&self) -> (String, String) {
        let outer = self.json();
        let inner: Json = serde_json::from_str(
            outer
                .as_str()
                .unwrap_or_else(|| panic!("error body is not a JSON string: {outer}")),
        )
        .expect("error string holds JSON");
        assert_eq!(inner["module"], "feast.errors", "{inner}");
        (
            inner["class"].as_str().unwrap_or_default().to_string(),
            inner["message"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// The response's columns by feature name.
    pub fn column(&self, name: &str) -> Json {
        column(&self.json(), name)
    }
}

/// The column named `name` of a Feast response (`results[i]` where
/// `metadata.feature_names[i] == name`).
pub fn column(body: &Json, name: &str) -> Json {
    let names = body["metadata"]["feature_names"]
        .as_array()
        .unwrap_or_else(|| panic!("no feature_names in {body}"));
    let i = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name} in {names:?}"));
    body["results"][i].clone()
}

/// One golden case captured from `feast serve`.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// Case name (file stem).
    pub name: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Request content type.
    pub content_type: Option<String>,
    /// Exact request body.
    pub body: String,
    /// Feast's status.
    pub status: u16,
    /// Feast's body, parsed when it is JSON.
    pub response: Option<Json>,
}

/// The golden cases of a store (`sqlite` or `redis`), sorted by name.
pub fn golden_cases(store: &str) -> Vec<GoldenCase> {
    let dir = workspace_root().join("tests/golden").join(store);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let g: Json =
                serde_json::from_slice(&std::fs::read(&p).expect("read golden")).expect("json");
            let req = &g["request"];
            let resp = &g["response"];
            GoldenCase {
                name: g["name"].as_str().unwrap_or_default().to_string(),
                method: req["method"].as_str().unwrap_or("POST").to_string(),
                path: req["path"].as_str().unwrap_or_default().to_string(),
                content_type: req["content_type"].as_str().map(str::to_string),
                body: req["body_raw"].as_str().unwrap_or_default().to_string(),
                status: resp["status"].as_u64().unwrap_or(0) as u16,
                response: resp["body_raw"]
                    .as_str()
                    .and_then(|raw| serde_json::from_str(raw).ok()),
            }
        })
        .collect()
}

/// Compares two Feast success bodies column by column, matched by name (Feast's
/// own column order is not stable). Returns the differences.
pub fn compare_columns(expected: &Json, got: &Json) -> Vec<String> {
    let names = |b: &Json| -> Vec<String> {
        let mut v: Vec<String> = b["metadata"]["feature_names"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (want, have) = (names(expected), names(got));
    if want != have {
        return vec![format!(
            "feature_names differ: expected {want:?}, got {have:?}"
        )];
    }
    let mut diffs = Vec::new();
    for n in &want {
        let (e, g) = (column(expected, n), column(got, n));
        for field in ["values", "statuses", "event_timestamps"] {
            if e[field] != g[field] {
                diffs.push(format!(
                    "{n}.{field}: expected {}, got {}",
                    e[field], g[field]
                ));
            }
        }
    }
    diffs
}
