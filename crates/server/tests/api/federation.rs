//! Workload identity federation: a CI job's token from an issuer the workspace trusts (keys
//! served by an in-test JWKS endpoint) exchanged for a principal access token that reads the
//! vault it is bound to; every way to get it wrong refused.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const ISSUER: &str = "https://token.ci.test";
const SUB: &str = "repo:acme/api:ref:refs/heads/main";

/// An issuer: its signing keys, served as a JWK Set on a local port.
struct Issuer {
    ed: ed25519_dalek::SigningKey,
    ec: p256::ecdsa::SigningKey,
    keys: Arc<Mutex<Value>>,
    jwks_uri: String,
}

impl Issuer {
    async fn start() -> Self {
        let ed = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
        let ec = p256::ecdsa::SigningKey::from_slice(&[22; 32]).unwrap();
        let point = ec.verifying_key().to_encoded_point(false);
        let keys = Arc::new(Mutex::new(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
             "x": B64URL.encode(ed.verifying_key().as_bytes())},
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
             "x": B64URL.encode(point.x().unwrap()), "y": B64URL.encode(point.y().unwrap())},
        ]})));
        let served = keys.clone();
        let router = axum::Router::new().route(
            "/.well-known/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move { axum::Json(served.lock().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            ed,
            ec,
            keys,
            jwks_uri: format!("http://127.0.0.1:{port}/.well-known/jwks"),
        }
    }

    /// A JWT with `claims` over the usual ones, signed with `alg`'s key as `kid`.
    fn token(&self, alg: &str, kid: &str, claims: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut body =
            json!({"iss": ISSUER, "sub": SUB, "aud": "authsome", "iat": now, "exp": now + 300});
        for (k, v) in claims.as_object().unwrap() {
            body[k] = v.clone();
        }
        let input = format!(
            "{}.{}",
            B64URL.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()),
            B64URL.encode(body.to_string())
        );
        let signature = match alg {
            "EdDSA" => {
                use ed25519_dalek::Signer;
                self.ed.sign(input.as_bytes()).to_bytes().to_vec()
            }
            "ES256" => {
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = self.ec.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            _ => b"forged".to_vec(),
        };
        format!("{input}.{}", B64URL.encode(signature))
    }
}

async fn exchange(app: &TestApp, assertion: &str) -> Response {
    app.call(
        Method::POST,
        "/control/v1/principals/token",
        None,
        Some(json!({"assertion": assertion})),
    )
    .await
}

fn allow_loopback(settings: &mut authsome_server::Settings) {
    settings.outbound = authsome_domain::egress::EgressPolicy::public_with("127.0.0.1/32").unwrap();
}

#[tokio::test]
async fn a_trusted_issuers_token_reads_only_its_principals_vaults() {
    let app = spawn_tuned(allow_loopback).await;
    let issuer = Issuer::start().await;
    let t = app.tenant("Federated").await;
    let tok = &t.owner_token;
    let vaults = format!("/control/v1/workspaces/{}/vaults", t.ws);
    let vault_of = |name: &'static str| app.post(&vaults, tok, json!({"name": name}));
    let ci = vault_of("ci").await.body["id"].as_str().unwrap().to_owned();
    let prod = vault_of("prod").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for v in [&ci, &prod] {
        let r = app
            .client
            .put(format!("{}/control/v1/vaults/{v}/secrets/TOKEN", app.base))
            .bearer_auth(tok)
            .json(&json!({"value": format!("value-of-{v}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let principal = app
        .post(
            &format!("/control/v1/workspaces/{}/principals", t.ws),
            tok,
            json!({"name": "github"}),
        )
        .await;
    let prn = principal.body["id"].as_str().unwrap().to_owned();
    let bound = app
        .post(
            &format!("/control/v1/principals/{prn}/bindings"),
            tok,
            json!({"vaultId": ci, "permissions": ["read"]}),
        )
        .await;
    assert_eq!(bound.status, 200, "{}", bound.body);
    let registered = app
        .post(
            &format!("/control/v1/workspaces/{}/trusted-issuers", t.ws),
            tok,
            json!({"issuer": ISSUER, "jwksUri": issuer.jwks_uri, "audience": "authsome",
                   "principalId": prn, "claims": {"sub": SUB}}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert!(registered.body["id"].as_str().unwrap().starts_with("tis_"));

    // EdDSA and ES256 tokens alike become a principal access token.
    for (alg, kid) in [("EdDSA", "ed-1"), ("ES256", "ec-1")] {
        let got = exchange(&app, &issuer.token(alg, kid, json!({}))).await;
        assert_eq!(got.status, 200, "{alg}: {}", got.body);
        assert_eq!(got.body["principalId"], prn.as_str());
        let access = got.body["accessToken"].as_str().unwrap().to_owned();
        assert!(access.starts_with("pat_"));
        let read = app
            .get(
                &format!("/control/v1/vaults/{ci}/secrets/TOKEN/value"),
                &access,
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["value"], format!("value-of-{ci}"));
        // Only the bound vault; no team route.
        assert_error(
            &app.get(
                &format!("/control/v1/vaults/{prod}/secrets/TOKEN/value"),
                &access,
            )
            .await,
            404,
            "not_found",
        );
        assert_error(
            &app.get(&format!("/control/v1/vaults/{ci}"), &access).await,
            401,
            "unauthorized",
        );
    }

    // Every way to get the token wrong is a 401.
    let now = chrono::Utc::now().timestamp();
    for (why, assertion) in [
        (
            "another branch",
            issuer.token(
                "EdDSA",
                "ed-1",
                json!({"sub": "repo:acme/api:ref:refs/heads/evil"}),
            ),
        ),
        (
            "another audience",
            issuer.token("EdDSA", "ed-1", json!({"aud": "someone-else"})),
        ),
        (
            "expired",
            issuer.token("EdDSA", "ed-1", json!({"iat": now - 900, "exp": now - 600})),
        ),
        (
            "untrusted issuer",
            issuer.token("EdDSA", "ed-1", json!({"iss": "https://evil.test"})),
        ),
        ("unknown key", issuer.token("EdDSA", "ed-9", json!({}))),
        (
            "a MAC, not a signature",
            issuer.token("HS256", "ed-1", json!({})),
        ),
        ("no signature", issuer.token("none", "ed-1", json!({}))),
        ("not a JWT", "garbage".to_owned()),
    ] {
        assert_error(&exchange(&app, &assertion).await, 401, "unauthorized");
        let _ = why;
    }
    let good = issuer.token("EdDSA", "ed-1", json!({}));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = B64URL.encode(
        json!({"iss": ISSUER, "sub": SUB, "aud": "authsome", "exp": now + 300, "admin": true})
            .to_string(),
    );
    assert_error(&exchange(&app, &parts.join(".")).await, 401, "unauthorized");

    // A token of another key set: the issuer rotated its keys, the old ones are gone.
    let ed2 = ed25519_dalek::SigningKey::from_bytes(&[23; 32]);
    *issuer.keys.lock().unwrap() = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-2", "x": B64URL.encode(ed2.verifying_key().as_bytes())}
    ]});
    let rotated = Issuer { ed: ed2, ..issuer };
    app.clock.advance(std::time::Duration::from_secs(31));
    let got = exchange(&app, &rotated.token("EdDSA", "ed-2", json!({}))).await;
    assert_eq!(got.status, 200, "a new kid refetches the set: {}", got.body);
    let access = got.body["accessToken"].as_str().unwrap().to_owned();

    // Access tokens: a changed one is refused; they end after 15 minutes and with the principal.
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_error(
        &app.get(
            &format!("/control/v1/vaults/{ci}/secrets/TOKEN/value"),
            &forged,
        )
        .await,
        401,
        "unauthorized",
    );
    app.clock.advance(std::time::Duration::from_secs(16 * 60));
    assert_error(
        &app.get(
            &format!("/control/v1/vaults/{ci}/secrets/TOKEN/value"),
            &access,
        )
        .await,
        401,
        "unauthorized",
    );
    let fresh = exchange(&app, &rotated.token("EdDSA", "ed-2", json!({}))).await;
    let access = fresh.body["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/control/v1/principals/{prn}"), tok)
            .await
            .status,
        204
    );
    assert_error(
        &app.get(
            &format!("/control/v1/vaults/{ci}/secrets/TOKEN/value"),
            &access,
        )
        .await,
        401,
        "unauthorized",
    );

    // Registrations are the workspace's own.
    let other = app.tenant("NotFederated").await;
    assert_error(
        &app.get(
            &format!("/control/v1/workspaces/{}/trusted-issuers", t.ws),
            &other.owner_token,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            &format!("/control/v1/workspaces/{}/trusted-issuers", other.ws),
            &other.owner_token,
            json!({"issuer": ISSUER, "jwksUri": rotated.jwks_uri, "audience": "a", "principalId": prn}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            &format!("/control/v1/workspaces/{}/trusted-issuers", t.ws),
            tok,
            json!({"issuer": "not a url", "jwksUri": rotated.jwks_uri, "audience": "a", "principalId": prn}),
        )
        .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn an_issuer_on_a_private_address_is_not_fetched_unless_allowed() {
    let app = spawn_app().await;
    let issuer = Issuer::start().await;
    let t = app.tenant("Guarded").await;
    let prn = app
        .post(
            &format!("/control/v1/workspaces/{}/principals", t.ws),
            &t.owner_token,
            json!({"name": "ci"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = app
        .post(
            &format!("/control/v1/workspaces/{}/trusted-issuers", t.ws),
            &t.owner_token,
            json!({"issuer": ISSUER, "jwksUri": issuer.jwks_uri, "audience": "authsome", "principalId": prn}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let refused = exchange(&app, &issuer.token("EdDSA", "ed-1", json!({}))).await;
    assert_error(&refused, 503, "service_unavailable");
    assert!(
        !refused.body.to_string().contains("127.0.0.1"),
        "{}",
        refused.body
    );
}

/// Refused assertions count against the client's address like failed logins: guessing stops
/// with 429 (and `Retry-After`) before any more work.
#[tokio::test]
async fn refused_exchanges_lock_the_address() {
    let app = spawn_app().await;
    let mut locked = None;
    for attempt in 0..200 {
        let r = exchange(&app, "not-a-jwt").await;
        if r.status == 429 {
            locked = Some((attempt, r));
            break;
        }
        assert_error(&r, 401, "unauthorized");
    }
    let (attempt, r) = locked.expect("the address is locked");
    assert!(
        attempt >= 5,
        "a few mistakes are free: locked after {attempt}"
    );
    assert_error(&r, 429, "rate_limit_exceeded");
    assert!(r.headers.contains_key("retry-after"));
}
