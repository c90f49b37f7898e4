//! Who is asking and what they may do: Feast's `auth:` (`no_auth`, `oidc`,
//! `kubernetes`) and the registry's permissions.
//!
//! With `no_auth` every request is served and no permission is checked, as in
//! Feast. Otherwise every request to a feature endpoint must carry
//! `Authorization: Bearer <token>` (gRPC: the `authorization` metadata); the token
//! is verified ([`oidc`], [`kubernetes`]) once and then found in a cache, and the
//! user it stands for is checked against the permissions ([`enforce`]) of the
//! registry being served. A configuration this server cannot enforce stops it at
//! start; nothing falls back to open access.

mod enforce;
mod jwt;
mod kubernetes;
mod oidc;
mod token_cache;

use std::sync::Arc;

pub(crate) use enforce::{Resource, ResourceKind, User};

use crate::config::RepoConfig;
use crate::registry::{Action, Permission};

/// Why a request is not authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No usable token, or a token that does not verify (the reason is logged;
    /// clients get Feast's one answer).
    #[error("{0}")]
    Invalid(String),
    /// The token cannot be checked now (the identity provider is unreachable).
    #[error("{0}")]
    Unavailable(String),
}

/// A refused permission check: Feast's `FeastPermissionError` details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Permission error:\n{0}")]
pub struct Denied(pub(crate) String);

/// Why the `auth:` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The section does not parse.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// OIDC settings are incomplete or unusable.
    #[error(transparent)]
    Oidc(#[from] oidc::OidcSetupError),
    /// The Kubernetes in-cluster configuration is missing.
    #[error(transparent)]
    Kubernetes(#[from] kubernetes::KubernetesSetupError),
}

/// Who a request is served for.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    /// Authentication is off (`no_auth`): nothing is checked.
    Anyone,
    /// An authenticated user, checked against the permissions.
    User(Arc<User>),
}

impl Caller {
    /// Whether the caller may do `actions` on every one of `resources`, given the
    /// registry's `permissions`.
    pub(crate) fn authorize(
        &self,
        permissions: &[Arc<Permission>],
        resources: &[Resource<'_>],
        actions: &[Action],
    ) -> Result<(), Denied> {
        match self {
            Caller::Anyone => Ok(()),
            Caller::User(user) => {
                enforce::decide(permissions, user, resources, actions).map_err(Denied)
            }
        }
    }
}

/// The configured way of authenticating requests.
#[derive(Debug, Clone)]
pub(crate) enum Authenticator {
    /// `no_auth`.
    NoAuth,
    /// `oidc`.
    Oidc(Arc<oidc::OidcVerifier>),
    /// `kubernetes`.
    Kubernetes(Arc<kubernetes::TokenReviewer>),
}

impl Authenticator {
    /// The authenticator `auth:` asks for; OIDC keys are fetched before it returns
    /// (a failure there is logged, and requests are answered 503 until they are).
    pub(crate) async fn start(config: &RepoConfig) -> Result<Self, AuthSetupError> {
        let section = &config.auth;
        // The identity provider and the Kubernetes API are reached over TLS.
        crate::tls::install_crypto_provider();
        match section.type_name.as_str() {
            "oidc" => {
                let settings = config.parse_section("auth", section.raw.clone())?;
                let verifier = Arc::new(oidc::OidcVerifier::new(settings)?);
                verifier.start().await;
                Ok(Authenticator::Oidc(verifier))
            }
            "kubernetes" => Ok(Authenticator::Kubernetes(Arc::new(
                kubernetes::TokenReviewer::in_cluster()?,
            ))),
            // The configuration admits only Feast's three types.
            _ => {
                tracing::info!(
                    "auth type no_auth: requests are not authenticated and permissions are not enforced"
                );
                Ok(Authenticator::NoAuth)
            }
        }
    }

    /// Keeps OIDC keys fresh until `shutdown` turns true (none for other types).
    pub(crate) fn spawn_refresh(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Authenticator::Oidc(v) => Some(tokio::spawn(v.clone().refresh_until(shutdown))),
            _ => None,
        }
    }

    /// The `auth.type` in force.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Authenticator::NoAuth => "no_auth",
            Authenticator::Oidc(_) => "oidc",
            Authenticator::Kubernetes(_) => "kubernetes",
        }
    }

    /// Who sent a request whose `Authorization` header (or metadata) is
    /// `authorization`.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Caller, AuthError> {
        let verify = match self {
            Authenticator::NoAuth => return Ok(Caller::Anyone),
            _ => bearer_token(authorization)?,
        };
        let user = match self {
            Authenticator::Oidc(v) => v.verify(verify).await?,
            Authenticator::Kubernetes(k) => k.verify(verify).await?,
            Authenticator::NoAuth => return Ok(Caller::Anyone),
        };
        Ok(Caller::User(user))
    }
}

/// The token of a `Bearer` authorization, read as Feast reads it: the scheme in
/// any case, then exactly one more whitespace-separated part.
fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, AuthError> {
    let value =
        authorization.ok_or_else(|| AuthError::Invalid("no Authorization header".into()))?;
    let value = std::str::from_utf8(value)
        .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    let bearer = value
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer ") && value.len() > 7);
    if !bearer {
        return Err(AuthError::Invalid(
            "the Authorization header is not a Bearer token".into(),
        ));
    }
    let mut parts = value.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(token), None) => Ok(token),
        _ => Err(AuthError::Invalid(
            "the Authorization header is not `Bearer <token>`".into(),
        )),
    }
}

/// Now, in Unix seconds (tokens carry real times, whatever clock serves TTLs).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_as_feast_reads_them() {
        fn token(v: &str) -> Option<&str> {
            bearer_token(Some(v.as_bytes())).ok()
        }
        assert_eq!(token("Bearer abc"), Some("abc"));
        assert_eq!(token("bearer abc"), Some("abc"));
        assert_eq!(token("BEARER  abc "), Some("abc"));
        assert_eq!(token("Bearer a b"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer  "), None);
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearerabc"), None);
        assert!(bearer_token(None).is_err());
    }
}
