//! JWT auth (HS256): token issue and verification, and extractors that guard handlers
//! by role. A missing, malformed, expired, not-yet-valid (`nbf`), wrongly signed or
//! `alg: none` token is a 401; a valid token with the wrong role is a 403.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::error::AppError;
use crate::http::AppState;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

/// A role a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Reviewer,
}

impl Role {
    /// Parses `admin` or `reviewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "reviewer" => Some(Role::Reviewer),
            _ => None,
        }
    }
}

/// The claims of an Amber token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
}

/// jsonwebtoken's cryptography for the one algorithm Amber signs and accepts, HS256, over
/// `ring`'s HMAC (ring is in the binary for TLS already). The crate's `rust_crypto`
/// provider linked RSA, ECDSA and EdDSA as well, reachable from `decode` whatever the
/// `Validation` allows (BENCHMARKS.md, "Release binary size"). Any other algorithm is
/// `InvalidAlgorithm`, as `Validation` already made it.
mod hs256 {
    use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
    use jsonwebtoken::errors::{ErrorKind, Result};
    use jsonwebtoken::signature::{Error, Signer, Verifier};
    use jsonwebtoken::Algorithm;
    use ring::hmac;

    struct Hs256(hmac::Key);

    impl Hs256 {
        fn new(algorithm: &Algorithm, secret: Result<&[u8]>) -> Result<Hs256> {
            if *algorithm != Algorithm::HS256 {
                return Err(ErrorKind::InvalidAlgorithm.into());
            }
            Ok(Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret?)))
        }
    }

    impl Signer<Vec<u8>> for Hs256 {
        fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, Error> {
            Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
        }
    }

    impl Verifier<Vec<u8>> for Hs256 {
        fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
            // Constant time.
            hmac::verify(&self.0, msg, signature).map_err(|_| Error::new())
        }
    }

    impl JwtSigner for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    impl JwtVerifier for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: |alg, key| Ok(Box::new(Hs256::new(alg, key.try_get_hmac_secret())?)),
        verifier_factory: |alg, key| Ok(Box::new(Hs256::new(alg, key.try_get_hmac_secret())?)),
        jwk_utils: JwkUtils::new_unimplemented(),
    };

    /// Makes this provider jsonwebtoken's for the process (a second call is a no-op).
    pub fn install() {
        let _ = PROVIDER.install_default();
    }
}

/// Installs Amber's HS256 provider for jsonwebtoken; [`JwtKeys::new`] does, and so must
/// any other code that calls jsonwebtoken before it (a test signing its own tokens).
pub fn install_jwt_crypto() {
    hs256::install();
}

/// Signing and verification keys, built once from `ADMIN_JWT_SECRET`.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: u64,
}

impl JwtKeys {
    /// Builds the keys from the auth settings.
    pub fn new(auth: &AuthSettings) -> JwtKeys {
        install_jwt_crypto();
        let secret = auth.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        // RFC 7519 §4.1.5: a token must not be accepted before its `nbf`. The claim stays
        // optional (our own tokens carry none); when present it is checked.
        validation.validate_nbf = true;
        // `exp` and `sub` must be present; `iat` is required by `Claims` itself.
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds: auth.jwt_ttl_seconds,
        }
    }

    /// The default token lifetime.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// Signs a token for `sub` with `role`, valid for `ttl_seconds`.
    pub fn issue(&self, sub: &str, role: Role, ttl_seconds: u64) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: sub.to_string(),
            role,
            iat: now,
            exp: now.saturating_add(ttl_seconds),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("signing a token")))
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "token has expired",
                    ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "token signature does not verify",
                    ErrorKind::InvalidAlgorithm => "token must be signed with HS256",
                    _ => "token is malformed",
                };
                AppError::Unauthorized(why.to_string())
            })
    }
}

/// Extracts the bearer token from a request, if one is present.
pub fn bearer_token(req: &HttpRequest) -> Result<Option<&str>, AppError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("authorization header is not text".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AppError::Unauthorized("expected 'Authorization: Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::Unauthorized(
            "expected 'Authorization: Bearer <token>'".into(),
        ));
    }
    Ok(Some(token.trim()))
}

/// Verifies the request's token, if any: `Ok(None)` without a token.
pub fn claims_of(req: &HttpRequest) -> Result<Option<Claims>, AppError> {
    let Some(token) = bearer_token(req)? else {
        return Ok(None);
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("app state missing")))?;
    state.jwt.verify(token).map(Some)
}

fn require(req: &HttpRequest, allowed: &[Role]) -> Result<Claims, AppError> {
    let claims = claims_of(req)?
        .ok_or_else(|| AppError::Unauthorized("this endpoint needs a bearer token".into()))?;
    if allowed.contains(&claims.role) {
        Ok(claims)
    } else {
        let names: Vec<&str> = allowed
            .iter()
            .map(|r| {
                if *r == Role::Admin {
                    "admin"
                } else {
                    "reviewer"
                }
            })
            .collect();
        Err(AppError::Forbidden(format!(
            "this endpoint needs the {} role",
            names.join(" or ")
        )))
    }
}

/// A request carrying a valid `admin` token.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

/// A request carrying a valid `admin` or `reviewer` token.
#[derive(Debug, Clone)]
pub struct Reviewer(pub Claims);

/// A request carrying any valid token.
#[derive(Debug, Clone)]
pub struct AnyUser(pub Claims);

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Ready<Result<Admin, AppError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require(req, &[Role::Admin]).map(Admin))
    }
}

impl FromRequest for Reviewer {
    type Error = AppError;
    type Future = Ready<Result<Reviewer, AppError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require(req, &[Role::Admin, Role::Reviewer]).map(Reviewer))
    }
}

impl FromRequest for AnyUser {
    type Error = AppError;
    type Future = Ready<Result<AnyUser, AppError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require(req, &[Role::Admin, Role::Reviewer]).map(AnyUser))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&AuthSettings {
            jwt_secret: Secret::new(secret),
            jwt_ttl_seconds: 60,
            bootstrap_secret: Secret::new(secret),
            using_default_secret: false,
        })
    }

    #[test]
    fn an_issued_token_verifies() {
        let k = keys("a-secret-of-some-length");
        let token = k.issue("alice", Role::Reviewer, 60).unwrap();
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.role, Role::Reviewer);
    }

    #[test]
    fn another_secret_does_not_verify() {
        let token = keys("first-secret-value-xx")
            .issue("a", Role::Admin, 60)
            .unwrap();
        assert!(matches!(
            keys("other-secret-value-xx").verify(&token),
            Err(AppError::Unauthorized(_))
        ));
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let k = keys("a-secret-of-some-length");
        // {"alg":"none","typ":"JWT"} . {"sub":"a","role":"admin","iat":1,"exp":9999999999} .
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwicm9sZSI6ImFkbWluIiwiaWF0IjoxLCJleHAiOjk5OTk5OTk5OTl9.";
        assert!(matches!(k.verify(none), Err(AppError::Unauthorized(_))));
        assert!(matches!(
            k.verify("not.a.token"),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(k.verify(""), Err(AppError::Unauthorized(_))));
    }

    /// Signs arbitrary claims with the key of `k` (for tokens `issue` would never make).
    fn sign(k: &JwtKeys, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap()
    }

    fn now() -> u64 {
        chrono::Utc::now().timestamp() as u64
    }

    #[test]
    fn a_token_whose_nbf_is_an_hour_ahead_is_refused() {
        let k = keys("a-secret-of-some-length");
        let t = now();
        let token = sign(
            &k,
            serde_json::json!({"sub": "a", "role": "admin", "iat": t, "exp": t + 7200, "nbf": t + 3600}),
        );
        match k.verify(&token) {
            Err(AppError::Unauthorized(msg)) => assert!(msg.contains("not valid yet"), "{msg}"),
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn a_token_whose_nbf_has_passed_or_is_within_the_leeway_is_accepted() {
        let k = keys("a-secret-of-some-length");
        let t = now();
        for nbf in [t - 60, t, t + 2] {
            let token = sign(
                &k,
                serde_json::json!({"sub": "a", "role": "admin", "iat": t, "exp": t + 600, "nbf": nbf}),
            );
            assert!(k.verify(&token).is_ok(), "nbf {nbf} at {t}");
        }
    }

    #[test]
    fn a_malformed_nbf_or_a_missing_iat_is_refused() {
        let k = keys("a-secret-of-some-length");
        let t = now();
        let bad_nbf = sign(
            &k,
            serde_json::json!({"sub": "a", "role": "admin", "iat": t, "exp": t + 600, "nbf": "soon"}),
        );
        assert!(matches!(k.verify(&bad_nbf), Err(AppError::Unauthorized(_))));
        let no_iat = sign(
            &k,
            serde_json::json!({"sub": "a", "role": "admin", "exp": t + 600}),
        );
        assert!(matches!(k.verify(&no_iat), Err(AppError::Unauthorized(_))));
        let no_exp = sign(
            &k,
            serde_json::json!({"sub": "a", "role": "admin", "iat": t}),
        );
        assert!(matches!(k.verify(&no_exp), Err(AppError::Unauthorized(_))));
    }

    #[test]
    fn expired_token_is_refused() {
        let k = keys("a-secret-of-some-length");
        let claims = Claims {
            sub: "a".into(),
            role: Role::Admin,
            iat: 1,
            exp: 2,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        match k.verify(&token) {
            Err(AppError::Unauthorized(msg)) => assert!(msg.contains("expired")),
            other => panic!("expected 401, got {other:?}"),
        }
    }
}
