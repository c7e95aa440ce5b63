//! Machine principals' proof of possession: `Authorization: PoP <compact JWS>`, signed with the
//! Ed25519 key the principal registered. Header `alg` `EdDSA`, `kid` the principal's id; claims
//! `htm` (the method), `htu` (scheme, host and path of the request URL, no query), `iat`
//! (within the window of the server's clock), `jti` (used once: the caller keeps the replay
//! cache) and `body_sha256` (lowercase hex SHA-256 of the body bytes; of nothing for none).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

/// Why a proof is refused (the message goes back to the caller: it names no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PoP proof: {0}")]
pub struct PopError(pub &'static str);

/// How far `iat` may be from the server's clock, either way, and how long a `jti` is kept.
pub const WINDOW_SECONDS: i64 = 60;

/// A proof whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub jti: String,
    pub body_sha256: String,
}

/// What the request the proof came with looks like.
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request URL: scheme, host and path.
    pub url: &'a str,
    pub now: i64,
    /// Lowercase hex SHA-256 of the body bytes.
    pub body_sha256: &'a str,
}

fn part(jws: &str, index: usize) -> Result<&str, PopError> {
    let mut parts = jws.split('.');
    let found = parts.nth(index).ok_or(PopError("not a compact JWS"))?;
    if jws.split('.').count() != 3 {
        return Err(PopError("not a compact JWS"));
    }
    Ok(found)
}

fn json_part(jws: &str, index: usize) -> Result<serde_json::Map<String, Value>, PopError> {
    let bytes = B64URL
        .decode(part(jws, index)?)
        .map_err(|_| PopError("a part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(PopError("a part is not a JSON object")),
    }
}

/// The `kid` of a proof's header (the principal that claims to sign it), before anything is
/// verified: only to find the key to verify with.
pub fn key_id(jws: &str) -> Result<String, PopError> {
    if jws.len() > 8192 {
        return Err(PopError("too long"));
    }
    json_part(jws, 0)?
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(PopError("the header has no kid"))
}

/// Verifies the signature with `key` and reads the claims.
pub fn verify(jws: &str, key: &VerifyingKey) -> Result<Proof, PopError> {
    let header = json_part(jws, 0)?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(PopError("alg must be EdDSA"));
    }
    let signature = B64URL
        .decode(part(jws, 2)?)
        .map_err(|_| PopError("the signature is not base64url"))?;
    let signature = Signature::from_slice(&signature).map_err(|_| PopError("bad signature"))?;
    let signed = &jws[..jws.rfind('.').unwrap_or(0)];
    key.verify_strict(signed.as_bytes(), &signature)
        .map_err(|_| PopError("the signature does not verify"))?;
    let claims = json_part(jws, 1)?;
    let text = |name: &'static str| -> Result<String, PopError> {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(PopError("a required claim is missing"))
    };
    Ok(Proof {
        htm: text("htm")?,
        htu: text("htu")?,
        iat: claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(PopError("a required claim is missing"))?,
        jti: text("jti")?,
        body_sha256: text("body_sha256")?,
    })
}

impl Proof {
    /// The proof is for this request, now. (The `jti` is the caller's to check once.)
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), PopError> {
        if !self.htm.eq_ignore_ascii_case(expected.method) {
            return Err(PopError("htm is not the request's method"));
        }
        if self.htu != expected.url {
            return Err(PopError("htu is not the request's URL"));
        }
        if (self.iat - expected.now).abs() > WINDOW_SECONDS {
            return Err(PopError("iat is outside the accepted window"));
        }
        if !(1..=128).contains(&self.jti.len()) {
            return Err(PopError("jti must be 1-128 characters"));
        }
        if self.body_sha256 != expected.body_sha256 {
            return Err(PopError("body_sha256 is not the body's"));
        }
        Ok(())
    }
}

/// The Ed25519 public key of an OKP JWK (`{"kty": "OKP", "crv": "Ed25519", "x": …}`).
pub fn public_key_from_jwk(jwk: &Value) -> Result<VerifyingKey, PopError> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
        return Err(PopError("publicKey must be an Ed25519 OKP JWK"));
    }
    if jwk.get("d").is_some() {
        return Err(PopError("publicKey must not contain the private key"));
    }
    let x = B64URL
        .decode(member("x").ok_or(PopError("publicKey has no x"))?)
        .map_err(|_| PopError("publicKey x is not base64url"))?;
    let bytes: [u8; 32] = x
        .try_into()
        .map_err(|_| PopError("publicKey x must be 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| PopError("publicKey is not a point"))?;
    if key.is_weak() {
        return Err(PopError("publicKey is a weak key"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn sign(key: &SigningKey, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", B64URL.encode(signature.to_bytes()))
    }

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            method: "GET",
            url: "https://vault.test/control/v1/vaults/vlt_x/secrets/A/value",
            now,
            body_sha256: EMPTY,
        }
    }

    #[test]
    fn a_proof_verifies_for_its_request_only() {
        let key = SigningKey::from_bytes(&rand::random());
        let claims = json!({
            "htm": "GET",
            "htu": "https://vault.test/control/v1/vaults/vlt_x/secrets/A/value",
            "iat": 1_000,
            "jti": "one",
            "body_sha256": EMPTY,
        });
        let jws = sign(
            &key,
            json!({"alg": "EdDSA", "kid": "prn_x"}),
            claims.clone(),
        );
        assert_eq!(key_id(&jws).unwrap(), "prn_x");
        let proof = verify(&jws, &key.verifying_key()).unwrap();
        proof.check(&expected(1_030)).unwrap();
        assert!(proof.check(&expected(1_061)).is_err(), "too late");
        assert!(proof.check(&expected(900)).is_err(), "from the future");
        let post = Expected {
            method: "POST",
            ..expected(1_000)
        };
        assert!(proof.check(&post).is_err());
        let other = Expected {
            url: "https://vault.test/control/v1/vaults/vlt_y/secrets/A/value",
            ..expected(1_000)
        };
        assert!(proof.check(&other).is_err());
        let body = Expected {
            body_sha256: "00",
            ..expected(1_000)
        };
        assert!(proof.check(&body).is_err());

        // Another key, another alg, an altered payload: refused.
        let stranger = SigningKey::from_bytes(&rand::random());
        assert!(verify(&jws, &stranger.verifying_key()).is_err());
        let hs = sign(
            &key,
            json!({"alg": "HS256", "kid": "prn_x"}),
            claims.clone(),
        );
        assert!(verify(&hs, &key.verifying_key()).is_err());
        let mut parts: Vec<&str> = jws.split('.').collect();
        let forged = B64URL.encode(
            json!({"htm": "GET", "htu": "x", "iat": 1_000, "jti": "two", "body_sha256": EMPTY})
                .to_string(),
        );
        parts[1] = &forged;
        assert!(verify(&parts.join("."), &key.verifying_key()).is_err());
        assert!(verify("a.b", &key.verifying_key()).is_err());
        assert!(verify("a.b.c.d", &key.verifying_key()).is_err());
    }

    #[test]
    fn public_keys_are_ed25519_jwks_without_private_parts() {
        let key = SigningKey::from_bytes(&rand::random());
        let x = B64URL.encode(key.verifying_key().as_bytes());
        assert!(public_key_from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x})).is_ok());
        assert!(public_key_from_jwk(&json!({"kty": "OKP", "crv": "X25519", "x": x})).is_err());
        assert!(public_key_from_jwk(
            &json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": "secret"})
        )
        .is_err());
        assert!(
            public_key_from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": "short"})).is_err()
        );
        assert!(
            public_key_from_jwk(
                &json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode([0u8; 32])})
            )
            .is_err(),
            "weak"
        );
    }
}
