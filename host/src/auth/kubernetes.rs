//! Kubernetes service-account and user tokens, checked as Feast 0.67's
//! `KubernetesTokenParser` checks them: the API server's TokenReview says whether
//! the token is genuine and whose it is; the caller's roles are the names of the
//! Roles and ClusterRoles bound to it.
//!
//! Supported: in-cluster configuration only (`KUBERNETES_SERVICE_HOST`/`_PORT`
//! and the pod's service-account token, CA and namespace files). Roles come from
//! the RoleBindings of the server's namespace and from ClusterRoleBindings whose
//! subjects name the caller (its service account, user name or one of its
//! groups). A service account `system:serviceaccount:<ns>:<sa>` is user `<ns>:<sa>`
//! in namespace `<ns>`; groups come from the review. Unlike Feast, a token the
//! review does not authenticate is refused (Feast still grants the roles of the
//! service account an unverified token names), and OpenShift AI dashboard
//! bindings add no namespaces.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::token_cache::TokenCache;
use super::{AuthError, User, unix_now};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long a reviewed token is trusted before it is reviewed again.
const REVIEW_TTL: Duration = Duration::from_secs(60);

/// Why the in-cluster configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "auth: type kubernetes needs the in-cluster configuration of a pod (KUBERNETES_SERVICE_HOST and {SA_DIR}): {0}"
)]
pub struct KubernetesSetupError(String);

/// Checks tokens with the Kubernetes API server.
#[derive(Debug)]
pub(crate) struct TokenReviewer {
    api: String,
    namespace: String,
    http: reqwest::Client,
    tokens: TokenCache,
}

impl TokenReviewer {
    /// The reviewer of the cluster this pod runs in.
    pub(crate) fn in_cluster() -> Result<Self, KubernetesSetupError> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| KubernetesSetupError(format!("{name} is not set")))
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        let read = |file: &str| {
            std::fs::read(format!("{SA_DIR}/{file}"))
                .map_err(|e| KubernetesSetupError(format!("{SA_DIR}/{file}: {e}")))
        };
        let ca = reqwest::Certificate::from_pem_bundle(&read("ca.crt")?)
            .map_err(|e| KubernetesSetupError(format!("{SA_DIR}/ca.crt: {e}")))?;
        let namespace = String::from_utf8_lossy(&read("namespace")?)
            .trim()
            .to_string();
        read("token")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_certs_only(ca)
            .build()
            .map_err(|e| KubernetesSetupError(e.to_string()))?;
        Ok(TokenReviewer {
            api: format!("https://{host}:{port}"),
            namespace,
            http,
            tokens: TokenCache::new(REVIEW_TTL),
        })
    }

    /// The user a token stands for.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<User>, AuthError> {
        let now = unix_now();
        if let Some(user) = self.tokens.get(token, now) {
            return Ok(user);
        }
        let review = self
            .call(
                reqwest::Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some(json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                })),
            )
            .await?;
        let (name, groups) = reviewed_identity(&review)?;
        let role_bindings = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings",
                    self.namespace
                ),
                None,
            )
            .await?;
        let cluster_bindings = self
            .call(
                reqwest::Method::GET,
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                None,
            )
            .await?;
        let user = Arc::new(user_of(&name, groups, &[&role_bindings, &cluster_bindings]));
        self.tokens.insert(token, user.clone(), now, None);
        Ok(user)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AuthError> {
        // Projected service-account tokens rotate: read the current one each time.
        let own = std::fs::read_to_string(format!("{SA_DIR}/token"))
            .map_err(|e| AuthError::Unavailable(format!("{SA_DIR}/token: {e}")))?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(own.trim());
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let unavailable =
            |e: String| AuthError::Unavailable(format!("the Kubernetes API ({path}): {e}"));
        let resp = req.send().await.map_err(|e| unavailable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if !status.is_success() {
            return Err(unavailable(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| unavailable(e.to_string()))
    }
}

/// The name and groups of an authenticated TokenReview.
fn reviewed_identity(review: &Value) -> Result<(String, Vec<String>), AuthError> {
    let status = &review["status"];
    if status["authenticated"].as_bool() != Some(true) {
        let why = status["error"].as_str().unwrap_or("not authenticated");
        return Err(AuthError::Invalid(format!(
            "the Kubernetes TokenReview refused the token: {why}"
        )));
    }
    let name = status["user"]["username"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(AuthError::Invalid(
            "the Kubernetes TokenReview names no user".into(),
        ));
    }
    let groups = strings(&status["user"]["groups"]);
    Ok((name.to_string(), groups))
}

/// The user a reviewed identity is, with the roles `bindings` grant it.
fn user_of(name: &str, groups: Vec<String>, bindings: &[&Value]) -> User {
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    let mut namespaces: Vec<String> = groups
        .iter()
        .filter_map(|g| g.strip_prefix("system:serviceaccounts:"))
        .map(str::to_string)
        .collect();
    if let Some((ns, _)) = service_account
        && !namespaces.iter().any(|n| n == ns)
    {
        namespaces.insert(0, ns.to_string());
    }
    let is_subject = |s: &Value| match (s["kind"].as_str(), s["name"].as_str()) {
        (Some("ServiceAccount"), Some(sa)) => service_account
            .is_some_and(|(ns, own)| own == sa && s["namespace"].as_str() == Some(ns)),
        (Some("User"), Some(user)) => user == name,
        (Some("Group"), Some(group)) => groups.iter().any(|g| g == group),
        _ => false,
    };
    let mut roles: Vec<String> = Vec::new();
    for list in bindings {
        for binding in list["items"].as_array().into_iter().flatten() {
            let bound = binding["subjects"]
                .as_array()
                .is_some_and(|subjects| subjects.iter().any(is_subject));
            if let Some(role) = binding["roleRef"]["name"].as_str()
                && bound
                && !roles.iter().any(|r| r == role)
            {
                roles.push(role.to_string());
            }
        }
    }
    User {
        username: service_account.map_or_else(|| name.to_string(), |(ns, sa)| format!("{ns}:{sa}")),
        roles,
        groups,
        namespaces,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_gets_its_namespace_and_bound_roles() {
        let review = json!({"status": {"authenticated": true, "user": {
            "username": "system:serviceaccount:team-a:reader",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"]}}});
        let (name, groups) = reviewed_identity(&review).expect("authenticated");
        let bindings = json!({"items": [
            {"roleRef": {"name": "feast-reader"}, "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "team-a"}]},
            {"roleRef": {"name": "feast-writer"}, "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "team-b"}]},
            {"roleRef": {"name": "viewer"}, "subjects": [{"kind": "Group", "name": "system:authenticated"}]},
        ]});
        let user = user_of(&name, groups, &[&bindings]);
        assert_eq!(user.username, "team-a:reader");
        assert_eq!(user.namespaces, ["team-a"]);
        assert_eq!(user.roles, ["feast-reader", "viewer"]);
    }

    #[test]
    fn an_unauthenticated_review_is_refused() {
        let review = json!({"status": {"authenticated": false, "error": "token expired"}});
        assert!(
            matches!(reviewed_identity(&review), Err(AuthError::Invalid(m)) if m.contains("token expired"))
        );
        let user = user_of(
            "alice",
            vec!["devs".into()],
            &[&json!({"items": [
            {"roleRef": {"name": "admin"}, "subjects": [{"kind": "User", "name": "alice"}]}]})],
        );
        assert_eq!(
            (user.username.as_str(), user.roles.as_slice()),
            ("alice", ["admin".to_string()].as_slice())
        );
        assert!(user.namespaces.is_empty());
    }
}
