//! OIDC bearer tokens, verified as Feast 0.67's `OidcTokenParser` verifies them:
//! the signing keys come from the JWKS the issuer's discovery document names; a
//! token is accepted when it is RS256-signed by one of them (found by `kid`) and
//! its claims pass (see [`super::jwt`]).
//!
//! Keys are fetched at start and then in the background every
//! `jwks_cache_lifespan_seconds`; a request never waits for a scheduled refresh.
//! A token whose `kid` is unknown triggers one refresh, at most every 30 seconds
//! (PyJWT's cooldown). When a refresh fails the keys held are kept; until keys
//! were fetched once, requests are answered 503 rather than guessed at.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::Value;

use super::jwt::{Jwt, LEEWAY_SECS};
use super::token_cache::TokenCache;
use super::{AuthError, User, unix_now};

/// Least time between two refreshes caused by unknown key ids (PyJWT's cooldown).
const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);
/// Time between attempts while the keys could not be fetched.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// `auth:` with `type: oidc`: every key Feast's `OidcAuthConfig` and
/// `OidcClientAuthConfig` accept (unknown keys are refused, as Feast refuses them).
/// The client-side keys (credentials a Feast client uses to get a token) are
/// accepted and unused here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcSettings {
    #[serde(rename = "type")]
    _type: String,
    /// The discovery document (`.../.well-known/openid-configuration`).
    auth_discovery_url: Option<String>,
    /// Whose roles are read from `resource_access.<client_id>.roles`.
    #[serde(default)]
    client_id: Option<String>,
    /// Check the issuer's TLS certificate.
    #[serde(default = "yes")]
    verify_ssl: bool,
    /// Extra CA certificates (PEM) for the issuer, used when the file exists.
    #[serde(default)]
    ca_cert_path: String,
    /// When set, tokens must carry this audience (`aud`).
    #[serde(default)]
    audience: Option<String>,
    /// When set, tokens must come from this issuer (`iss`).
    #[serde(default)]
    issuer: Option<String>,
    /// How long fetched keys are used before they are fetched again.
    #[serde(default = "default_lifespan")]
    jwks_cache_lifespan_seconds: u64,
    /// Longest wait for the discovery document or the keys.
    #[serde(default = "default_timeout")]
    jwks_request_timeout_seconds: f64,
    #[serde(default, rename = "ui_client_id")]
    _ui_client_id: Option<String>,
    #[serde(default, rename = "username")]
    _username: Option<String>,
    #[serde(default, rename = "password")]
    _password: Option<String>,
    #[serde(default, rename = "client_secret")]
    _client_secret: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
    #[serde(default, rename = "token_env_var")]
    _token_env_var: Option<String>,
    #[serde(default, rename = "token_refresh_margin_seconds")]
    _token_refresh_margin_seconds: Option<f64>,
}

fn yes() -> bool {
    true
}

fn default_lifespan() -> u64 {
    300
}

fn default_timeout() -> f64 {
    10.0
}

/// The signing keys of one fetch of the JWKS.
struct KeySet {
    /// Keys by `kid`: `None` for a key that cannot check RS256 signatures.
    keys: HashMap<String, Option<DecodingKey>>,
    /// The JWKS as served, to tell a changed set from the same one.
    raw: Vec<u8>,
}

/// Verifies OIDC tokens against the issuer's keys.
pub(crate) struct OidcVerifier {
    discovery_url: String,
    client_id: Option<String>,
    audience: Option<String>,
    issuer: Option<String>,
    lifespan: Duration,
    http: reqwest::Client,
    /// `jwks_uri` from the discovery document, once fetched.
    jwks_uri: ArcSwapOption<String>,
    keys: ArcSwapOption<KeySet>,
    /// When the keys were last fetched (successfully or not), for the cooldown.
    last_fetch: std::sync::Mutex<Option<Instant>>,
    /// The last fetch failure, while no keys are held.
    last_error: ArcSwapOption<String>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    tokens: TokenCache,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("discovery_url", &self.discovery_url)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Why the OIDC settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    /// A required key is missing or a value is out of range.
    #[error("auth: {0}")]
    Invalid(String),
    /// The HTTP client could not be built (e.g. an unreadable CA file).
    #[error("auth: the client for the OIDC provider could not be built: {0}")]
    Client(String),
}

impl OidcVerifier {
    /// Checks the settings and builds the HTTP client; nothing is fetched yet.
    pub(crate) fn new(settings: OidcSettings) -> Result<Self, OidcSetupError> {
        let discovery_url = settings.auth_discovery_url.ok_or_else(|| {
            OidcSetupError::Invalid(
                "auth_discovery_url is required with type oidc (the issuer's .well-known/openid-configuration URL)".into(),
            )
        })?;
        if settings.jwks_cache_lifespan_seconds == 0 {
            return Err(OidcSetupError::Invalid(
                "jwks_cache_lifespan_seconds must be greater than 0".into(),
            ));
        }
        let timeout = Duration::try_from_secs_f64(settings.jwks_request_timeout_seconds)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                OidcSetupError::Invalid(
                    "jwks_request_timeout_seconds must be greater than 0".into(),
                )
            })?;
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("feast-server/", env!("CARGO_PKG_VERSION")));
        if !settings.verify_ssl {
            http = http.danger_accept_invalid_certs(true);
        } else if !settings.ca_cert_path.is_empty() {
            let path = std::path::Path::new(&settings.ca_cert_path);
            if path.is_file() {
                let pem = std::fs::read(path)
                    .map_err(|e| OidcSetupError::Client(format!("{}: {e}", path.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| OidcSetupError::Client(format!("{}: {e}", path.display())))?;
                http = http.tls_certs_merge(certs);
            } else {
                tracing::warn!(ca_cert_path = %path.display(), "auth.ca_cert_path does not exist; the system's CA certificates are used (as Feast does)");
            }
        }
        let lifespan = Duration::from_secs(settings.jwks_cache_lifespan_seconds);
        Ok(OidcVerifier {
            discovery_url,
            client_id: settings.client_id,
            audience: settings.audience,
            issuer: settings.issuer,
            lifespan,
            http: http
                .build()
                .map_err(|e| OidcSetupError::Client(e.to_string()))?,
            jwks_uri: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            last_fetch: std::sync::Mutex::new(None),
            last_error: ArcSwapOption::empty(),
            refreshing: tokio::sync::Mutex::new(()),
            tokens: TokenCache::new(lifespan),
        })
    }

    /// Fetches the discovery document and the keys; on failure, says why (requests
    /// are answered 503 until a later attempt succeeds).
    pub(crate) async fn start(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, discovery_url = %self.discovery_url, "the OIDC provider's keys could not be fetched at start; requests are answered 503 until they are (retried every 5 s)");
        } else {
            tracing::info!(discovery_url = %self.discovery_url, keys = self.keys.load().as_ref().map_or(0, |k| k.keys.len()), "OIDC signing keys fetched");
        }
    }

    /// Refreshes the keys every lifespan (every few seconds while none are held),
    /// until `shutdown` turns true.
    pub(crate) async fn refresh_until(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let wait = if self.keys.load().is_some() {
                self.lifespan
            } else {
                RETRY_EVERY
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "the OIDC provider's keys could not be refreshed; the keys held are kept");
            }
        }
    }

    /// The user a token stands for.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<User>, AuthError> {
        let now = unix_now();
        if let Some(user) = self.tokens.get(token, now) {
            return Ok(user);
        }
        let jwt = Jwt::parse(token).map_err(AuthError::Invalid)?;
        let Some(keys) = self.keys.load_full() else {
            let why = self
                .last_error
                .load_full()
                .map_or_else(|| "not fetched yet".to_string(), |e| e.to_string());
            return Err(AuthError::Unavailable(format!(
                "the OIDC provider's signing keys are not available ({why})"
            )));
        };
        if jwt.alg != "RS256" {
            return Err(AuthError::Invalid(format!(
                "the token is signed with {}; only RS256 is accepted",
                jwt.alg
            )));
        }
        let kid = jwt
            .kid
            .as_deref()
            .ok_or_else(|| AuthError::Invalid("the token has no key id (kid)".into()))?;
        let keys = if keys.keys.contains_key(kid) {
            keys
        } else {
            self.refresh_for_unknown_kid().await;
            self.keys.load_full().unwrap_or(keys)
        };
        let key = match keys.keys.get(kid) {
            Some(Some(key)) => key,
            Some(None) => {
                return Err(AuthError::Invalid(format!(
                    "the key {kid:?} cannot check RS256 signatures"
                )));
            }
            None => {
                return Err(AuthError::Invalid(format!(
                    "no signing key of the OIDC provider has id {kid:?}"
                )));
            }
        };
        jwt.verify_rs256(key).map_err(AuthError::Invalid)?;
        jwt.check_claims(now, self.audience.as_deref(), self.issuer.as_deref())
            .map_err(AuthError::Invalid)?;
        let user = Arc::new(
            jwt.user(self.client_id.as_deref())
                .map_err(AuthError::Invalid)?,
        );
        let until = jwt.expires_at().map(|exp| exp + LEEWAY_SECS);
        self.tokens.insert(token, user.clone(), now, until);
        Ok(user)
    }

    /// One refresh for a token whose key is unknown, unless one happened less than
    /// the cooldown ago.
    async fn refresh_for_unknown_kid(&self) {
        let recent = |v: &OidcVerifier| {
            v.last_fetch
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < UNKNOWN_KID_COOLDOWN)
        };
        if recent(self) {
            return;
        }
        let _one = self.refreshing.lock().await;
        // Another request may have refreshed while this one waited.
        if recent(self) {
            return;
        }
        if let Err(e) = self.fetch_and_store().await {
            tracing::warn!(error = %e, "the OIDC provider's keys could not be refreshed for an unknown key id");
        }
    }

    async fn refresh(&self) -> Result<(), String> {
        let _one = self.refreshing.lock().await;
        self.fetch_and_store().await
    }

    /// Fetches the keys (and the discovery document, until it was fetched once) and
    /// stores them; the token cache is emptied when the keys changed.
    async fn fetch_and_store(&self) -> Result<(), String> {
        if let Ok(mut t) = self.last_fetch.lock() {
            *t = Some(Instant::now());
        }
        let result = self.fetch().await;
        match result {
            Ok(set) => {
                let changed = self.keys.load().as_ref().is_none_or(|k| k.raw != set.raw);
                if changed {
                    self.keys.store(Some(Arc::new(set)));
                    self.tokens.clear();
                }
                self.last_error.store(None);
                Ok(())
            }
            Err(e) => {
                self.last_error.store(Some(Arc::new(e.clone())));
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let jwks_uri = match self.jwks_uri.load_full() {
            Some(uri) => uri,
            None => {
                let doc = self.get(&self.discovery_url).await?;
                let doc: Value = serde_json::from_slice(&doc).map_err(|e| {
                    format!(
                        "the discovery document {} is not JSON: {e}",
                        self.discovery_url
                    )
                })?;
                let uri = doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| {
                    format!(
                        "the discovery document {} has no jwks_uri",
                        self.discovery_url
                    )
                })?;
                let uri = Arc::new(uri.to_string());
                self.jwks_uri.store(Some(uri.clone()));
                uri
            }
        };
        let raw = self.get(&jwks_uri).await?;
        key_set(raw).map_err(|e| format!("the JWKS at {jwks_uri} {e}"))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        Ok(body.to_vec())
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The signing keys of a JWKS: keys with a `kid` whose `use` is `sig` or absent
/// (PyJWKClient's choice); RSA keys can check signatures, other kinds are known
/// by id only.
fn key_set(raw: Vec<u8>) -> Result<KeySet, String> {
    let doc: Value = serde_json::from_slice(&raw).map_err(|e| format!("is not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("has no keys list")?;
    let mut keys = HashMap::new();
    for k in list {
        let Some(kid) = k.get("kid").and_then(Value::as_str) else {
            continue;
        };
        if !matches!(k.get("use"), None | Some(Value::Null))
            && k.get("use").and_then(Value::as_str) != Some("sig")
        {
            continue;
        }
        let rsa = match (
            k.get("kty").and_then(Value::as_str),
            k.get("n").and_then(Value::as_str),
            k.get("e").and_then(Value::as_str),
        ) {
            (Some("RSA"), Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e).ok(),
            _ => None,
        };
        keys.insert(kid.to_string(), rsa);
    }
    if keys.is_empty() {
        return Err("has no signing key with a key id".into());
    }
    Ok(KeySet { keys, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_with_an_id_count() {
        let jwks = br#"{"keys":[
            {"kty":"RSA","kid":"a","n":"sXch","e":"AQAB"},
            {"kty":"RSA","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let set = key_set(jwks.to_vec()).expect("a key set");
        let mut ids: Vec<_> = set.keys.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a", "ec"]);
        assert!(set.keys["a"].is_some());
        assert!(set.keys["ec"].is_none());
        assert!(key_set(br#"{"keys":[]}"#.to_vec()).is_err());
        assert!(key_set(b"[]".to_vec()).is_err());
    }
}
