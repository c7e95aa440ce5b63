//! Proof-of-possession (RFC 9449, DPoP): reading and verifying a `DPoP` proof JWT, the JWK
//! thumbprint (RFC 7638) that tokens are bound to (`cnf.jkt`), and the access-token hash
//! (`ath`). What the request must match (method, URL, time window, one-time `jti`, nonce) is
//! checked by [`Proof::check`] with values the transport supplies.
//!
//! Supported proof algorithms: `ES256` (P-256) and `EdDSA` (Ed25519).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("invalid DPoP proof: {0}")]
    Invalid(&'static str),
    /// The server wants a (fresh) nonce in the proof: `use_dpop_nonce`.
    #[error("the DPoP proof needs the server's current nonce")]
    UseNonce,
}

/// A proof whose signature verified, with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Thumbprint of the key that signed it (what `cnf.jkt` binds to).
    pub jkt: String,
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
}

/// What the request the proof came with looks like.
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request URL without query or fragment.
    pub url: &'a str,
    pub now: i64,
    /// How far `iat` may be from `now`, either way, in seconds.
    pub window: i64,
    /// The access token presented with the proof, if any (then `ath` must match it).
    pub access_token: Option<&'a str>,
}

fn invalid(why: &'static str) -> DpopError {
    DpopError::Invalid(why)
}

/// `base64url(SHA-256(token))`: the `ath` of a proof that accompanies `token`.
pub fn ath(access_token: &str) -> String {
    B64URL.encode(Sha256::digest(access_token.as_bytes()))
}

/// RFC 7638 thumbprint of a public JWK: SHA-256 of its required members, sorted, no spaces.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    let member = |name: &str| -> Result<&str, DpopError> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or(invalid("the jwk lacks a required member"))
    };
    // serde_json writes object members in insertion order here (json! with literal keys in
    // lexicographic order), which is RFC 7638's order.
    let canonical = match member("kty")? {
        "EC" => json!({"crv": member("crv")?, "kty": "EC", "x": member("x")?, "y": member("y")?}),
        "OKP" => json!({"crv": member("crv")?, "kty": "OKP", "x": member("x")?}),
        _ => return Err(invalid("the jwk's kty is not EC or OKP")),
    };
    let text = canonical_text(&canonical);
    Ok(B64URL.encode(Sha256::digest(text.as_bytes())))
}

/// Members written in sorted order whatever serde_json's map ordering is.
fn canonical_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_text(&map[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        other => other.to_string(),
    }
}

fn b64_json(part: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = B64URL
        .decode(part)
        .map_err(|_| invalid("a part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("a part is not a JSON object")),
    }
}

fn coordinate(jwk: &Map<String, Value>, name: &str) -> Result<[u8; 32], DpopError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(|v| B64URL.decode(v).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(invalid("a jwk coordinate is not 32 base64url bytes"))
}

fn verify_signature(
    alg: &str,
    jwk: &Map<String, Value>,
    input: &[u8],
    signature: &[u8],
) -> Result<(), DpopError> {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match (alg, kty, crv) {
        ("ES256", Some("EC"), Some("P-256")) => {
            use p256::ecdsa::signature::Verifier;
            let (x, y) = (coordinate(jwk, "x")?, coordinate(jwk, "y")?);
            let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| invalid("the jwk is not a P-256 point"))?;
            let signature = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| invalid("an ES256 signature is 64 bytes"))?;
            key.verify(input, &signature)
                .map_err(|_| invalid("the signature does not verify"))
        }
        ("EdDSA", Some("OKP"), Some("Ed25519")) => {
            use ed25519_dalek::Verifier;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&coordinate(jwk, "x")?)
                .map_err(|_| invalid("the jwk is not an Ed25519 key"))?;
            let signature = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| invalid("an EdDSA signature is 64 bytes"))?;
            key.verify(input, &signature)
                .map_err(|_| invalid("the signature does not verify"))
        }
        ("ES256" | "EdDSA", _, _) => Err(invalid("the jwk does not match the algorithm")),
        _ => Err(invalid("the algorithm is not ES256 or EdDSA")),
    }
}

impl Proof {
    /// Parses a proof and verifies its signature with the key in its header.
    pub fn verify(proof: &str) -> Result<Self, DpopError> {
        if proof.len() > 8 * 1024 {
            return Err(invalid("too long"));
        }
        let mut parts = proof.trim().split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a compact JWS"));
        };
        let header = b64_json(h)?;
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(invalid("typ is not dpop+jwt"));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(invalid("no alg"))?;
        let jwk = header
            .get("jwk")
            .and_then(Value::as_object)
            .ok_or(invalid("no jwk in the header"))?;
        if jwk.contains_key("d") {
            return Err(invalid("the jwk holds a private key"));
        }
        let signature = B64URL
            .decode(s)
            .map_err(|_| invalid("the signature is not base64url"))?;
        verify_signature(alg, jwk, format!("{h}.{c}").as_bytes(), &signature)?;
        let claims = b64_json(c)?;
        let string = |name: &'static str| -> Result<String, DpopError> {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(invalid("a required claim (jti, htm, htu) is missing"))
        };
        let optional = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let jti = string("jti")?;
        if jti.is_empty() || jti.len() > 256 {
            return Err(invalid("jti is empty or too long"));
        }
        Ok(Self {
            jkt: thumbprint(jwk)?,
            jti,
            htm: string("htm")?,
            htu: string("htu")?,
            iat: claims
                .get("iat")
                .and_then(Value::as_i64)
                .ok_or(invalid("iat is missing"))?,
            ath: optional("ath"),
            nonce: optional("nonce"),
        })
    }

    /// The request checks of RFC 9449 §4.3 other than `jti` uniqueness and the nonce, which
    /// need state the caller keeps.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), DpopError> {
        if self.htm != expected.method {
            return Err(invalid("htm is not the request's method"));
        }
        if strip(&self.htu) != strip(expected.url) {
            return Err(invalid("htu is not the request's URL"));
        }
        if (expected.now - self.iat).abs() > expected.window {
            return Err(invalid("iat is outside the accepted window"));
        }
        match (expected.access_token, &self.ath) {
            (Some(token), Some(ath)) if *ath == self::ath(token) => Ok(()),
            (Some(_), _) => Err(invalid("ath does not match the access token")),
            (None, _) => Ok(()),
        }
    }
}

/// The URL without query and fragment, as `htu` is compared (RFC 9449 §4.3).
fn strip(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9449 §4.1, Figure 2, and its key's thumbprint (Figure 9).
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            method: "POST",
            url: "https://server.example.com/token",
            now,
            window: 60,
            access_token: None,
        }
    }

    #[test]
    fn the_rfc_example_verifies_and_has_the_published_thumbprint() {
        let proof = Proof::verify(RFC_PROOF).unwrap();
        assert_eq!(proof.jkt, RFC_JKT);
        assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
        proof.check(&expected(1_562_262_616)).unwrap();
        proof.check(&expected(1_562_262_616 + 60)).unwrap();
    }

    #[test]
    fn the_rfc_example_is_refused_for_another_request() {
        let proof = Proof::verify(RFC_PROOF).unwrap();
        let at = 1_562_262_616;
        let wrong_method = Expected {
            method: "GET",
            ..expected(at)
        };
        let wrong_url = Expected {
            url: "https://server.example.com/other",
            ..expected(at)
        };
        let stale = expected(at + 61);
        let with_token = Expected {
            access_token: Some("token"),
            ..expected(at)
        };
        for e in [wrong_method, wrong_url, stale, with_token] {
            assert!(proof.check(&e).is_err());
        }
        // The query does not count.
        let with_query = Expected {
            url: "https://server.example.com/token?x=1",
            ..expected(at)
        };
        proof.check(&with_query).unwrap();
    }

    #[test]
    fn tampered_proofs_are_refused() {
        let mut parts: Vec<String> = RFC_PROOF.split('.').map(str::to_owned).collect();
        // A claim changed after signing.
        parts[1] = B64URL.encode(
            r#"{"jti":"-BwC3ESc6acc2lTc","htm":"GET","htu":"https://server.example.com/token","iat":1562262616}"#,
        );
        assert!(Proof::verify(&parts.join(".")).is_err());
        // Not a dpop+jwt.
        let header = B64URL.encode(r#"{"typ":"JWT","alg":"ES256"}"#);
        assert!(Proof::verify(&format!("{header}.e30.AA")).is_err());
        assert!(Proof::verify("a.b").is_err());
    }

    #[test]
    fn ed25519_proofs_verify() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(key.verifying_key().as_bytes())});
        let header =
            B64URL.encode(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).to_string());
        let claims = B64URL.encode(
            json!({"jti": "j1", "htm": "GET", "htu": "https://a.example/x", "iat": 100, "ath": ath("tok")})
                .to_string(),
        );
        let sig = B64URL.encode(key.sign(format!("{header}.{claims}").as_bytes()).to_bytes());
        let proof = Proof::verify(&format!("{header}.{claims}.{sig}")).unwrap();
        proof
            .check(&Expected {
                method: "GET",
                url: "https://a.example/x",
                now: 100,
                window: 60,
                access_token: Some("tok"),
            })
            .unwrap();
        assert!(proof
            .check(&Expected {
                method: "GET",
                url: "https://a.example/x",
                now: 100,
                window: 60,
                access_token: Some("another token"),
            })
            .is_err());
    }
}
