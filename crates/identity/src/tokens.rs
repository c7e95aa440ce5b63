//! Access tokens: compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), signed by the
//! application's own key, `kid` in the header; and the JWKS that publishes the verifying keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    /// RFC 9449 confirmation (`cnf.jkt`) will go here for proof-of-possession tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    kid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is for another issuer or audience")]
    WrongAudience,
}

/// The keys of one application: the one that signs, and every one that may still verify.
pub struct KeySet {
    pub active: Option<(String, SigningKey)>,
    pub verifying: Vec<(String, VerifyingKey)>,
    /// When a published next key starts signing (the set must be rebuilt then).
    pub next_switch: Option<chrono::DateTime<chrono::Utc>>,
}

impl KeySet {
    pub fn sign(&self, claims: &Claims) -> Option<String> {
        let (kid, key) = self.active.as_ref()?;
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: kid.clone(),
        };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).ok()?);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).ok()?);
        let input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        Some(format!("{input}.{signature}"))
    }

    /// Checks signature, expiry (`now` in Unix seconds), issuer and audience.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        iss: &str,
        aud: &str,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Malformed);
        }
        let key = self
            .verifying
            .iter()
            .find(|(kid, _)| *kid == header.kid)
            .map(|(_, k)| k)
            .ok_or(TokenError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let input_len = h.len() + 1 + p.len();
        key.verify(&token.as_bytes()[..input_len], &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iss != iss || claims.aud != aud {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    /// `{"keys": [...]}` with every verifying key as an OKP JWK (RFC 8037).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .verifying
            .iter()
            .map(|(kid, key)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyset() -> KeySet {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        KeySet {
            verifying: vec![("k1".into(), key.verifying_key())],
            active: Some(("k1".into(), key)),
            next_switch: None,
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "http://x/v1/app_1".into(),
            sub: "usr_1".into(),
            aud: "app_1".into(),
            sid: "ses_1".into(),
            iat: 0,
            exp,
            org: None,
            org_role: None,
            cnf: None,
        }
    }

    #[test]
    fn sign_and_verify() {
        let keys = keyset();
        let token = keys.sign(&claims(100)).unwrap();
        assert_eq!(
            keys.verify(&token, 50, "http://x/v1/app_1", "app_1")
                .unwrap(),
            claims(100)
        );
        assert_eq!(
            keys.verify(&token, 100, "http://x/v1/app_1", "app_1"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify(&token, 50, "http://x/v1/app_2", "app_2"),
            Err(TokenError::WrongAudience)
        );
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 3, 'A');
        assert!(keys
            .verify(&tampered, 50, "http://x/v1/app_1", "app_1")
            .is_err());
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let foreign = KeySet {
            verifying: vec![("k1".into(), other.verifying_key())],
            active: Some(("k1".into(), other)),
            next_switch: None,
        };
        assert_eq!(
            foreign.verify(&token, 50, "http://x/v1/app_1", "app_1"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(keys.verify("a.b", 0, "", ""), Err(TokenError::Malformed));
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["x"].as_str().unwrap().len(), 43);
    }
}
