//! A test OIDC identity provider on a loopback HTTPS port: a discovery document, a
//! JWKS with real RSA and EC public keys, and a token endpoint (password and
//! client-credentials grants, as the Feast SDK asks) issuing real signed JWTs.
//!
//! Users `alice` (client role `reader`, group `readers`), `bob` (role `writer`),
//! `carol` (nothing), `erin` (group `auditors`) and `admin` (every role) log in
//! with `<name>pw`. Other users
//! get tokens that are broken one way each, so a client that only knows how to log
//! in can present them: `expired`, `badsig` (signed by an unpublished key under a
//! published key id), `wrongaud`, `hs256`, `es256`, `unknownkid`, `nokid`.
//!
//! The keys are test-only fixtures (`tests/fixtures/oidc`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as Json, json};

use crate::workspace_root;

/// The client the Feast SDK logs in as.
pub const CLIENT_ID: &str = "feast-client";
/// Its secret (the SDK's password grant needs one).
pub const CLIENT_SECRET: &str = "feast-secret";
/// The audience tokens are issued for.
pub const AUDIENCE: &str = "feast-api";

/// A signing key of the fixtures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `rsa1.pem`, published as `k1`.
    Rsa1,
    /// `rsa2.pem`, published as `k2` only after [`TestIssuer::rotate`].
    Rsa2,
    /// `ec1.pem`, published as `ec1`.
    Ec1,
}

impl Key {
    fn file(self) -> &'static str {
        match self {
            Key::Rsa1 => "rsa1",
            Key::Rsa2 => "rsa2",
            Key::Ec1 => "ec1",
        }
    }

    fn kid(self) -> &'static str {
        match self {
            Key::Rsa1 => "k1",
            Key::Rsa2 => "k2",
            Key::Ec1 => "ec1",
        }
    }

    fn encoding(self) -> EncodingKey {
        let pem = std::fs::read(fixtures().join(format!("{}.pem", self.file()))).expect("key");
        match self {
            Key::Ec1 => EncodingKey::from_ec_pem(&pem).expect("EC key"),
            _ => EncodingKey::from_rsa_pem(&pem).expect("RSA key"),
        }
    }

    fn jwk(self) -> Json {
        let all: Json = serde_json::from_slice(
            &std::fs::read(fixtures().join("public.json")).expect("public keys"),
        )
        .expect("JSON");
        let mut jwk = all[self.file()].clone();
        jwk["kid"] = json!(self.kid());
        jwk["use"] = json!("sig");
        jwk
    }
}

fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures/oidc")
}

struct Issuer {
    base_url: String,
    published: Mutex<Vec<Key>>,
    jwks_fetches: AtomicUsize,
}

/// The identity provider, stopped on drop.
pub struct TestIssuer {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// The discovery document's URL.
    pub discovery_url: String,
    /// The CA certificate (PEM) to trust for it.
    pub ca_cert: PathBuf,
    state: Arc<Issuer>,
    handle: axum_server::Handle<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
}

impl TestIssuer {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        feast_server::install_crypto_provider();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_cert = dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_cert, cert.cert.pem()).expect("write CA");
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .expect("TLS config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let base_url = format!("https://127.0.0.1:{port}");
        let state = Arc::new(Issuer {
            base_url: base_url.clone(),
            published: Mutex::new(vec![Key::Rsa1, Key::Ec1]),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(state.clone());
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .expect("server")
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        TestIssuer {
            discovery_url: format!("{base_url}/.well-known/openid-configuration"),
            base_url,
            ca_cert,
            state,
            handle,
            _dir: dir,
        }
    }

    /// A token as the token endpoint issues it to `user` (see the module doc).
    pub fn token_for(&self, user: &str) -> String {
        mint_for(&self.state.base_url, user).unwrap_or_else(|| panic!("no such user {user}"))
    }

    /// A token with these claims, signed with `key` (its `kid`) by `alg`.
    pub fn mint(&self, claims: &Json, key: Key, alg: Algorithm) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(key.kid().into());
        jsonwebtoken::encode(&header, claims, &key.encoding()).expect("sign")
    }

    /// The claims of a good token for `user`.
    pub fn claims(&self, user: &str) -> Json {
        claims_for(&self.state.base_url, user)
    }

    /// Publishes `rsa2` as `k2` (a key rotation).
    pub fn rotate(&self) {
        self.state.published.lock().expect("keys").push(Key::Rsa2);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The `auth:` block of a server trusting this issuer.
    pub fn server_auth_yaml(&self) -> String {
        format!(
            "auth:\n  type: oidc\n  client_id: {CLIENT_ID}\n  auth_discovery_url: {}\n  ca_cert_path: {}\n  audience: {AUDIENCE}\n",
            self.discovery_url,
            self.ca_cert.display()
        )
    }

    /// Where the CA certificate is.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of a good token: roles and groups by user.
fn claims_for(base_url: &str, user: &str) -> Json {
    let now = now();
    let mut c = json!({
        "iss": base_url, "sub": user, "aud": AUDIENCE, "iat": now, "exp": now + 300,
        "preferred_username": user, "azp": CLIENT_ID,
    });
    match user {
        "alice" => {
            c["resource_access"] = json!({CLIENT_ID: {"roles": ["reader"]}});
            c["groups"] = json!(["readers"]);
        }
        "bob" => c["roles"] = json!(["writer"]),
        "erin" => c["groups"] = json!(["auditors"]),
        "admin" => c["roles"] = json!(["reader", "writer", "admin"]),
        _ => {}
    }
    c
}

/// The token issued to `user`, `None` for an unknown user.
fn mint_for(base_url: &str, user: &str) -> Option<String> {
    let sign = |claims: &Json, key: Key, alg: Algorithm, kid: Option<&str>| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key.encoding()).expect("sign")
    };
    let mut c = claims_for(base_url, user);
    let rs = Algorithm::RS256;
    Some(match user {
        "alice" | "bob" | "carol" | "erin" | "admin" => sign(&c, Key::Rsa1, rs, Some("k1")),
        "expired" => {
            c["exp"] = json!(now() - 100);
            c["iat"] = json!(now() - 400);
            sign(&c, Key::Rsa1, rs, Some("k1"))
        }
        "badsig" => sign(&c, Key::Rsa2, rs, Some("k1")),
        "wrongaud" => {
            c["aud"] = json!("another-api");
            sign(&c, Key::Rsa1, rs, Some("k1"))
        }
        "hs256" => {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".into());
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(b"k1")).expect("sign")
        }
        "es256" => sign(&c, Key::Ec1, Algorithm::ES256, Some("ec1")),
        "unknownkid" => sign(&c, Key::Rsa1, rs, Some("nope")),
        "nokid" => sign(&c, Key::Rsa1, rs, None),
        _ => return None,
    })
}

async fn discovery(State(s): State<Arc<Issuer>>) -> Response {
    let b = &s.base_url;
    axum::Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/auth"),
        "token_endpoint": format!("{b}/token"),
        "jwks_uri": format!("{b}/jwks"),
        "grant_types_supported": ["password", "client_credentials"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Issuer>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Json> = s
        .published
        .lock()
        .expect("keys")
        .iter()
        .map(|k| k.jwk())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// `application/x-www-form-urlencoded` fields.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn token(State(s): State<Arc<Issuer>>, body: Bytes) -> Response {
    let fields = form(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let refuse = || {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let user = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return refuse();
            };
            if password != format!("{user}pw") {
                return refuse();
            }
            user.to_string()
        }
        Some("client_credentials") => "carol".to_string(),
        _ => return refuse(),
    };
    match mint_for(&s.base_url, &user) {
        Some(token) => axum::Json(json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 300,
        }))
        .into_response(),
        None => refuse(),
    }
}
