//! Proof-of-possession tokens (RFC 9449) over HTTP: binding at sign-in, use with proofs, and
//! every reject case (the RFC's own example among them), refresh, and server nonces.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::customer_auth::{call_with, customer_app};
use crate::helpers::*;

const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

/// A client's key pair, making proofs the way a client library would.
struct Client {
    key: SigningKey,
}

impl Client {
    fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_slice(&[seed; 32]).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": B64URL.encode(point.x().unwrap()),
            "y": B64URL.encode(point.y().unwrap()),
        })
    }

    /// RFC 7638, written out independently of the server's implementation.
    fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        B64URL.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn proof(&self, claims: Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64URL.encode(signature.to_bytes()))
    }

    fn proof_for(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": uuid::Uuid::now_v7().to_string(),
            "htm": method,
            "htu": url,
            "iat": chrono::Utc::now().timestamp(),
        });
        if let Some(token) = token {
            claims["ath"] = json!(B64URL.encode(Sha256::digest(token.as_bytes())));
        }
        self.proof(claims)
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<String>,
    proof: Option<&str>,
    pk: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(a) = authorization {
        request = request.header("Authorization", a);
    }
    if let Some(p) = proof {
        request = request.header("DPoP", p);
    }
    if let Some(pk) = pk {
        request = request.header("X-Publishable-Key", pk);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    TestApp::read(request.send().await.unwrap()).await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap()
}

fn assert_invalid_proof(r: &Response) {
    assert_error(r, 401, "unauthorized");
}

#[tokio::test]
async fn bound_tokens_work_only_with_fresh_proofs_of_their_key() {
    let app = spawn_app().await;
    let c = customer_app(&app, "Dpop").await;
    let base = format!("/v1/{}", c.app);
    let url = |path: &str| format!("{}{base}{path}", app.base);
    let client = Client::new(7);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "pop@example.com", "password": "proof-of-possession"})),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    assert_eq!(signup.body["session"]["tokenType"], "Bearer");

    // Sign-in with a proof binds the session and its tokens to the key.
    let signin_body = json!({"email": "pop@example.com", "password": "proof-of-possession"});
    let proof = client.proof_for("POST", &url("/auth/signin"), None);
    let signin = send(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        None,
        Some(&proof),
        Some(&c.pk),
        Some(signin_body.clone()),
    )
    .await;
    assert_eq!(signin.status, 200, "{}", signin.body);
    assert_eq!(signin.body["session"]["tokenType"], "DPoP");
    assert!(signin.headers.get("dpop-nonce").is_some());
    let token = signin.body["session"]["token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&token)["cnf"]["jkt"], client.thumbprint());
    // The same proof again: its jti was used.
    let replayed = send(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        None,
        Some(&proof),
        Some(&c.pk),
        Some(signin_body.clone()),
    )
    .await;
    assert_invalid_proof(&replayed);

    let me = |authorization: String, proof: Option<String>| {
        let app = &app;
        let base = base.clone();
        async move {
            send(
                app,
                Method::GET,
                &format!("{base}/me"),
                Some(authorization),
                proof.as_deref(),
                None,
                None,
            )
            .await
        }
    };
    // Accepted: DPoP scheme, fresh proof of the key, right method, URL and ath.
    let ok = me(
        format!("DPoP {token}"),
        Some(client.proof_for("GET", &url("/me"), Some(&token))),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["email"], "pop@example.com");

    // Refused: as a Bearer token; without a proof; wrong htm; wrong htu; stale iat; a replayed
    // jti; wrong ath; another key.
    assert_invalid_proof(&me(format!("Bearer {token}"), None).await);
    assert_invalid_proof(&me(format!("DPoP {token}"), None).await);
    let wrong_htm = client.proof_for("POST", &url("/me"), Some(&token));
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(wrong_htm)).await);
    let wrong_htu = client.proof_for("GET", &url("/me/sessions"), Some(&token));
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(wrong_htu)).await);
    let stale = client.proof(json!({
        "jti": "stale-1", "htm": "GET", "htu": url("/me"),
        "iat": chrono::Utc::now().timestamp() - 300,
        "ath": B64URL.encode(Sha256::digest(token.as_bytes())),
    }));
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(stale)).await);
    let once = client.proof_for("GET", &url("/me"), Some(&token));
    assert_eq!(
        me(format!("DPoP {token}"), Some(once.clone())).await.status,
        200
    );
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(once)).await);
    let wrong_ath = client.proof_for("GET", &url("/me"), Some("another.token.value"));
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(wrong_ath)).await);
    let thief = Client::new(9);
    let wrong_key = thief.proof_for("GET", &url("/me"), Some(&token));
    assert_invalid_proof(&me(format!("DPoP {token}"), Some(wrong_key)).await);
    // The RFC 9449 example proof is genuine, but for another server and long expired.
    let rfc = me(format!("DPoP {token}"), Some(RFC_PROOF.to_owned())).await;
    assert_invalid_proof(&rfc);
    assert_eq!(
        rfc.headers["www-authenticate"].to_str().unwrap(),
        "DPoP error=\"invalid_dpop_proof\""
    );

    // Refresh of a bound session needs a proof of the same key, and stays bound.
    let refresh_token = signin.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = |proof: Option<String>, rt: String| {
        let app = &app;
        let (base, pk) = (base.clone(), c.pk.clone());
        async move {
            send(
                app,
                Method::POST,
                &format!("{base}/auth/refresh"),
                None,
                proof.as_deref(),
                Some(&pk),
                Some(json!({"refreshToken": rt})),
            )
            .await
        }
    };
    assert_error(
        &refresh(None, refresh_token.clone()).await,
        401,
        "unauthorized",
    );
    let by_thief = thief.proof_for("POST", &url("/auth/refresh"), None);
    assert_error(
        &refresh(Some(by_thief), refresh_token.clone()).await,
        401,
        "unauthorized",
    );
    let refreshed = refresh(
        Some(client.proof_for("POST", &url("/auth/refresh"), None)),
        refresh_token,
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.body["session"]["tokenType"], "DPoP");
    let new_token = refreshed.body["session"]["token"].as_str().unwrap();
    assert_eq!(claims_of(new_token)["cnf"]["jkt"], client.thumbprint());

    // An unbound token cannot be passed off as a DPoP one.
    let bearer = signup.body["session"]["token"].as_str().unwrap().to_owned();
    let mixed = me(
        format!("DPoP {bearer}"),
        Some(client.proof_for("GET", &url("/me"), Some(&bearer))),
    )
    .await;
    assert_invalid_proof(&mixed);
    assert_eq!(me(format!("Bearer {bearer}"), None).await.status, 200);
}

#[tokio::test]
async fn server_nonces_are_offered_and_checked() {
    let app = spawn_with(authsome_server::HttpSettings {
        dpop_require_nonce: true,
        ..Default::default()
    })
    .await;
    let c = customer_app(&app, "Nonce").await;
    let base = format!("/v1/{}", c.app);
    let url = format!("{}{base}/auth/signup", app.base);
    let client = Client::new(5);
    let body = json!({"email": "nonce@example.com", "password": "nonce-please-1"});
    let signup = |proof: String| {
        let (app, base, pk, body) = (&app, base.clone(), c.pk.clone(), body.clone());
        async move {
            send(
                app,
                Method::POST,
                &format!("{base}/auth/signup"),
                None,
                Some(&proof),
                Some(&pk),
                Some(body),
            )
            .await
        }
    };
    // Without a nonce: 401 use_dpop_nonce, and the nonce to use.
    let first = signup(client.proof_for("POST", &url, None)).await;
    assert_error(&first, 401, "unauthorized");
    assert_eq!(
        first.headers["www-authenticate"].to_str().unwrap(),
        "DPoP error=\"use_dpop_nonce\""
    );
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    // A made-up nonce is refused the same way.
    let mut claims = json!({"jti": "n-1", "htm": "POST", "htu": url, "iat": chrono::Utc::now().timestamp(), "nonce": "made-up"});
    assert_error(
        &signup(client.proof(claims.clone())).await,
        401,
        "unauthorized",
    );
    // With the server's nonce the request goes through.
    claims["nonce"] = json!(nonce);
    claims["jti"] = json!("n-2");
    let ok = signup(client.proof(claims)).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["session"]["tokenType"], "DPoP");
}

/// A dedicated application: proofs are checked against the deployment's public URL, which the
/// gateway and the instances share, and used once at the gateway: a proof replayed is refused
/// whichever of the application's instances (each with a replay cache of its own, without
/// Redis) the replay would reach.
#[tokio::test]
async fn bound_tokens_work_through_the_gateway_to_dedicated_instances_once() {
    use crate::dedicated::{dedicated_app, gateway, Dedicated};
    let gw = gateway().await;
    let ports = [reserve_port(), reserve_port()];
    let upstreams: Vec<String> = ports
        .iter()
        .map(|p| format!("http://{}", p.local_addr().unwrap()))
        .collect();
    let Dedicated { app, pk, .. } = dedicated_app(&gw, &upstreams).await;
    let [first, second] = ports;
    let _instances = [
        spawn_instance(&gw, &app, first),
        spawn_instance(&gw, &app, second),
    ];
    let base = format!("/v1/{app}");
    let url = |path: &str| format!("{}{base}{path}", gw.base);
    let credentials = json!({"email": "far@example.com", "password": "proof-of-possession"});
    let signup = send(
        &gw,
        Method::POST,
        &format!("{base}/auth/signup"),
        None,
        None,
        Some(&pk),
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);

    let client = Client::new(9);
    let proof = client.proof_for("POST", &url("/auth/signin"), None);
    let signin = send(
        &gw,
        Method::POST,
        &format!("{base}/auth/signin"),
        None,
        Some(&proof),
        Some(&pk),
        Some(credentials),
    )
    .await;
    assert_eq!(signin.status, 200, "{}", signin.body);
    assert_eq!(signin.body["session"]["tokenType"], "DPoP");
    let token = signin.body["session"]["token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&token)["cnf"]["jkt"], client.thumbprint());

    let proof = client.proof_for("GET", &url("/me"), Some(&token));
    let me = send(
        &gw,
        Method::GET,
        &format!("{base}/me"),
        Some(format!("DPoP {token}")),
        Some(&proof),
        None,
        None,
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    // The same proof again, or the token as a plain bearer token: refused. Twice, so that the
    // replays would reach both instances, round robin.
    for _ in 0..2 {
        let replayed = send(
            &gw,
            Method::GET,
            &format!("{base}/me"),
            Some(format!("DPoP {token}")),
            Some(&proof),
            None,
            None,
        )
        .await;
        assert_invalid_proof(&replayed);
    }
    let bearer = send(
        &gw,
        Method::GET,
        &format!("{base}/me"),
        Some(format!("Bearer {token}")),
        None,
        None,
        None,
    )
    .await;
    assert_error(&bearer, 401, "unauthorized");
}
