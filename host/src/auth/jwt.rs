//! JSON Web Tokens as Feast's OIDC parser checks them (PyJWT's `jwt.decode` with
//! `algorithms=["RS256"]`, `leeway=10`): the parts, the RS256 signature, the time
//! claims (`exp` only when present, `nbf` and `iat` not in the future), `aud` and
//! `iss` only when configured, and the user the claims describe.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::User;

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat` (Feast's `leeway=10`).
pub(crate) const LEEWAY_SECS: i64 = 10;

/// A token split into its parts, not yet verified.
#[derive(Debug)]
pub(crate) struct Jwt<'a> {
    /// `alg` of the header.
    pub(crate) alg: String,
    /// `kid` of the header.
    pub(crate) kid: Option<String>,
    /// The payload.
    pub(crate) claims: Map<String, Value>,
    /// `header.payload`, what the signature signs.
    signed: &'a str,
    /// The signature, base64url.
    signature: &'a str,
}

impl<'a> Jwt<'a> {
    /// Splits and decodes a compact JWT; why not when it is not one.
    pub(crate) fn parse(token: &'a str) -> Result<Self, String> {
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or("the token is not a JWT (three dot-separated parts)")?;
        let (header, payload) = signed
            .split_once('.')
            .ok_or("the token is not a JWT (three dot-separated parts)")?;
        if payload.contains('.') {
            return Err("the token is not a JWT (three dot-separated parts)".into());
        }
        let header = decode_object(header).map_err(|e| format!("the token header {e}"))?;
        let claims = decode_object(payload).map_err(|e| format!("the token payload {e}"))?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err("the token header has no algorithm (alg)".into()),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err("the token's key id (kid) is not a string".into()),
        };
        Ok(Jwt {
            alg,
            kid,
            claims,
            signed,
            signature,
        })
    }

    /// Checks the RS256 signature with `key`.
    pub(crate) fn verify_rs256(&self, key: &DecodingKey) -> Result<(), String> {
        if self.alg != "RS256" {
            return Err(format!(
                "the token is signed with {}; only RS256 is accepted",
                self.alg
            ));
        }
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signed.as_bytes(),
            key,
            Algorithm::RS256,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err("the token's signature does not verify".into()),
            Err(e) => Err(format!("the token's signature does not verify ({e})")),
        }
    }

    /// Checks the registered claims as PyJWT does at `now` (Unix seconds).
    pub(crate) fn check_claims(
        &self,
        now: i64,
        audience: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<(), String> {
        let c = &self.claims;
        if let Some(v) = c.get("exp")
            && number(v).ok_or("the expiry (exp) is not a number")? <= now - LEEWAY_SECS
        {
            return Err("the token has expired".into());
        }
        if let Some(v) = c.get("nbf")
            && number(v).ok_or("the not-before time (nbf) is not a number")? > now + LEEWAY_SECS
        {
            return Err("the token is not valid yet (nbf)".into());
        }
        if let Some(v) = c.get("iat")
            && number(v).ok_or("the issue time (iat) is not a number")? > now + LEEWAY_SECS
        {
            return Err("the token was issued in the future (iat)".into());
        }
        for claim in ["sub", "jti"] {
            if c.get(claim).is_some_and(|v| !v.is_string()) {
                return Err(format!("the {claim} claim is not a string"));
            }
        }
        if let Some(want) = audience {
            let ok = match c.get("aud") {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(list)) => {
                    if !list.iter().all(Value::is_string) {
                        return Err("the audience (aud) is not a list of strings".into());
                    }
                    list.iter().any(|a| a.as_str() == Some(want))
                }
                Some(_) => return Err("the audience (aud) is not a string".into()),
                None => return Err("the token has no audience (aud)".into()),
            };
            if !ok {
                return Err(format!("the token is not for audience {want:?}"));
            }
        }
        if let Some(want) = issuer {
            match c.get("iss") {
                Some(Value::String(i)) if i == want => {}
                Some(Value::String(i)) => {
                    return Err(format!("the token was issued by {i:?}, not {want:?}"));
                }
                Some(_) => return Err("the issuer (iss) is not a string".into()),
                None => return Err("the token has no issuer (iss)".into()),
            }
        }
        Ok(())
    }

    /// The expiry, when the token has one.
    pub(crate) fn expires_at(&self) -> Option<i64> {
        self.claims.get("exp").and_then(number)
    }

    /// The user the claims describe, as Feast's OIDC parser reads it: the name from
    /// the first of `preferred_username`, `upn`, `azp`, `appid`, `sub` that is a
    /// string; roles from `resource_access.<client_id>.roles` then `roles`; groups
    /// from `groups`. Namespaces are for Kubernetes tokens only.
    pub(crate) fn user(&self, client_id: Option<&str>) -> Result<User, String> {
        let c = &self.claims;
        let username = ["preferred_username", "upn", "azp", "appid", "sub"]
            .iter()
            .find_map(|k| c.get(*k).and_then(Value::as_str))
            .ok_or("the token names no user (preferred_username, upn, azp, appid or sub)")?
            .to_string();
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let client_roles = client_id.map_or_else(Vec::new, |id| {
            strings(
                c.get("resource_access")
                    .and_then(|r| r.get(id))
                    .and_then(|r| r.get("roles")),
            )
        });
        let mut roles: Vec<String> = Vec::new();
        for role in client_roles.into_iter().chain(strings(c.get("roles"))) {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Ok(User {
            username,
            roles,
            groups: strings(c.get("groups")),
            namespaces: Vec::new(),
        })
    }
}

/// A base64url JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "is not base64url".to_string())?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("is not a JSON object".into()),
        Err(_) => Err("is not JSON".into()),
    }
}

/// A time claim as Python's `int()` reads it: a number (fractions dropped), a
/// boolean, or a string of digits.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn jwt(payload: &str) -> (String, i64) {
        (token(r#"{"alg":"RS256","kid":"k1"}"#, payload), 1_000_000)
    }

    #[test]
    fn parts_are_checked() {
        assert!(Jwt::parse("abc").is_err());
        assert!(Jwt::parse("a.b.c.d").is_err());
        assert!(Jwt::parse(&token("[]", "{}")).is_err());
        assert!(Jwt::parse(&token(r#"{"kid":"k"}"#, "{}")).is_err());
        assert!(Jwt::parse(&token(r#"{"alg":"RS256","kid":3}"#, "{}")).is_err());
        let t = token(r#"{"alg":"HS256"}"#, r#"{"sub":"x"}"#);
        let j = Jwt::parse(&t).expect("a JWT");
        assert_eq!((j.alg.as_str(), j.kid.as_deref()), ("HS256", None));
    }

    #[test]
    fn time_claims_follow_pyjwt_with_ten_seconds_of_leeway() {
        let check = |payload: &str| {
            let (t, now) = jwt(payload);
            Jwt::parse(&t).expect("a JWT").check_claims(now, None, None)
        };
        assert!(check("{}").is_ok(), "exp is optional");
        assert!(check(r#"{"exp":999995}"#).is_ok(), "within the leeway");
        assert!(check(r#"{"exp":999990}"#).is_err());
        assert!(check(r#"{"exp":"abc"}"#).is_err());
        assert!(check(r#"{"exp":1000100.5}"#).is_ok());
        assert!(check(r#"{"nbf":1000100}"#).is_err());
        assert!(check(r#"{"iat":1000100}"#).is_err());
        assert!(check(r#"{"iat":1000005}"#).is_ok());
        assert!(check(r#"{"sub":5}"#).is_err());
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let (t, now) = jwt(r#"{"aud":["x","feast"],"iss":"https://idp"}"#);
        let j = Jwt::parse(&t).expect("a JWT");
        assert!(
            j.check_claims(now, Some("feast"), Some("https://idp"))
                .is_ok()
        );
        assert!(j.check_claims(now, Some("other"), None).is_err());
        assert!(
            j.check_claims(now, None, Some("https://elsewhere"))
                .is_err()
        );
        let (t, _) = jwt("{}");
        let bare = Jwt::parse(&t).expect("a JWT");
        assert!(bare.check_claims(now, None, None).is_ok());
        assert!(bare.check_claims(now, Some("feast"), None).is_err());
        assert!(bare.check_claims(now, None, Some("https://idp")).is_err());
    }

    #[test]
    fn the_user_comes_from_the_claims_feast_reads() {
        let (t, _) = jwt(
            r#"{"sub":"s","azp":"a","resource_access":{"feast":{"roles":["reader","x"]},"other":{"roles":["admin"]}},
                "roles":["x","writer"],"realm_access":{"roles":["admin"]},"groups":["g"]}"#,
        );
        let j = Jwt::parse(&t).expect("a JWT");
        let u = j.user(Some("feast")).expect("a user");
        assert_eq!(u.username, "a");
        assert_eq!(u.roles, ["reader", "x", "writer"]);
        assert_eq!(u.groups, ["g"]);
        assert_eq!(j.user(None).expect("a user").roles, ["x", "writer"]);
        let (t, _) = jwt(r#"{"preferred_username":7,"roles":"reader"}"#);
        assert!(Jwt::parse(&t).expect("a JWT").user(None).is_err());
    }
}
