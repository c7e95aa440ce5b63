//! Provider credentials in every mode, resolved through the real outside parts: `hosted` from
//! the vault, `kms` through `moto_server` (AWS's JSON 1.1 with SigV4), `oauth` against an
//! in-test RFC 6749 token endpoint, `api_key` against an in-test customer endpoint that checks
//! the Standard Webhooks signature. The value never appears in an answer or the audit log.

use std::sync::{Arc, Mutex};

use authsome_connect::aws::{AwsSettings, Kms};
use authsome_testkit::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use base64::Engine;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::helpers::*;

/// The deployment's AWS settings for a test's `moto_server`.
pub(crate) fn aws(endpoint: &str) -> AwsSettings {
    AwsSettings {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: Zeroizing::new(SECRET_ACCESS_KEY.into()),
        session_token: None,
        default_region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
    }
}

/// An app that calls KMS at `moto` and may reach in-test servers on loopback.
async fn spawn(moto: Option<&Moto>) -> TestApp {
    let endpoint = moto.map(|m| m.url.clone());
    spawn_configured(move |s| {
        s.outbound = authsome_domain::egress::EgressPolicy::public_with("127.0.0.1/32").unwrap();
        s.aws = endpoint.as_deref().map(aws);
    })
    .await
}

async fn vault(app: &TestApp, t: &Tenant, name: &str) -> String {
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            &t.owner_token,
            json!({"name": name}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn put(app: &TestApp, token: &str, ws: &str, provider: &str, body: Value) -> Response {
    app.call(
        reqwest::Method::PUT,
        &format!("/control/v1/workspaces/{ws}/providers/{provider}"),
        Some(token),
        Some(body),
    )
    .await
}

async fn test(app: &TestApp, token: &str, ws: &str, provider: &str) -> Response {
    app.post(
        &format!("/control/v1/workspaces/{ws}/providers/{provider}/test"),
        token,
        json!({}),
    )
    .await
}

async fn put_secret(app: &TestApp, token: &str, vault: &str, name: &str, body: Value) -> Response {
    app.call(
        reqwest::Method::PUT,
        &format!("/control/v1/vaults/{vault}/secrets/{name}"),
        Some(token),
        Some(body),
    )
    .await
}

async fn value(app: &TestApp, token: &str, vault: &str, name: &str) -> Value {
    let r = app
        .get(
            &format!("/control/v1/vaults/{vault}/secrets/{name}/value"),
            token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// A local HTTP server with one POST route, answering with `answer` and counting calls.
struct Fake {
    url: String,
    hits: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

impl Fake {
    async fn start(
        answer: impl Fn(&axum::http::HeaderMap, &str) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        let hits: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
        let seen = hits.clone();
        let answer = Arc::new(answer);
        let router = axum::Router::new().route(
            "/endpoint",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                let answer = answer.clone();
                async move {
                    let (status, json) = answer(&headers, &body);
                    seen.lock().unwrap().push((headers, body));
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(json),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            url: format!("http://127.0.0.1:{port}/endpoint"),
            hits,
        }
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

#[tokio::test]
async fn hosted_and_kms_credentials_resolve_and_are_never_shown() {
    let Some(moto) = Moto::start() else { return };
    let app = spawn(Some(&moto)).await;
    let t = app.tenant("Providers").await;
    let owner = &t.owner_token;
    let vlt = vault(&app, &t, "providers").await;

    // hosted: the credential goes to the vault secret, never into the configuration.
    let hosted = json!({"mode": "hosted", "config": {"vaultId": vlt, "secret": "VERCEL_TOKEN"},
                        "credential": "vc-first-credential"});
    let r = put(&app, owner, &t.ws, "vercel", hosted.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.body["mode"].as_str(), r.body["revision"].as_u64()),
        (Some("hosted"), Some(1))
    );
    assert!(!r.body.to_string().contains("vc-first-credential"));
    assert_eq!(
        value(&app, owner, &vlt, "VERCEL_TOKEN").await["value"],
        "vc-first-credential"
    );

    let tested = test(&app, owner, &t.ws, "vercel").await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(
        (tested.body["ok"].as_bool(), tested.body["cached"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(
        tested.body["cachedUntil"].is_string(),
        "hosted is cached: {}",
        tested.body
    );
    assert!(!tested.body.to_string().contains("vc-first"));
    let again = test(&app, owner, &t.ws, "vercel").await;
    assert_eq!(again.body["cached"], true);
    // A change is never served from the cache.
    let mut changed = hosted.clone();
    changed["credential"] = json!("vc-second-credential");
    let r = put(&app, owner, &t.ws, "vercel", changed).await;
    assert_eq!(
        (r.status, r.body["revision"].as_u64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    assert_eq!(
        test(&app, owner, &t.ws, "vercel").await.body["cached"],
        false
    );
    assert_eq!(value(&app, owner, &vlt, "VERCEL_TOKEN").await["version"], 2);

    // kms: encrypted under the customer's key at once; decrypted on demand.
    let kms = Kms::new(aws(&moto.url));
    let key = kms
        .call("CreateKey", "us-east-1", r#"{"Description":"customer"}"#)
        .await
        .unwrap();
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let r = put(
        &app,
        owner,
        &t.ws,
        "aws",
        json!({"mode": "kms", "config": {"keyId": arn},
                                                   "credential": "aws-secret-credential"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["config"], json!({"keyId": arn}));
    let tested = test(&app, owner, &t.ws, "aws").await;
    assert_eq!(tested.body["ok"], true, "{}", tested.body);
    // The stored form is KMS ciphertext only, and it opens only for this workspace and
    // provider (the encryption context).
    let stored = sqlx_one(
        &app,
        "SELECT ciphertext FROM provider_configs WHERE provider = 'aws'",
    )
    .await;
    assert!(!stored.windows(10).any(|w| w == b"aws-secret"));
    let own = authsome_domain::provider::kms_context(
        &t.ws.parse().unwrap(),
        authsome_domain::provider::Provider::Aws,
    );
    assert_eq!(
        kms.decrypt(&arn, None, &own, &stored)
            .await
            .unwrap()
            .as_slice(),
        b"aws-secret-credential"
    );
    let elsewhere = authsome_domain::provider::kms_context(
        &authsome_domain::id::WorkspaceId::new(),
        authsome_domain::provider::Provider::Aws,
    );
    assert!(kms.decrypt(&arn, None, &elsewhere, &stored).await.is_err());
    // Re-stating the same key without a credential keeps the ciphertext.
    let r = put(
        &app,
        owner,
        &t.ws,
        "aws",
        json!({"mode": "kms", "config": {"keyId": arn}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(test(&app, owner, &t.ws, "aws").await.body["ok"], true);

    // KMS refusing: a key that does not exist is the request's fault, named.
    let r = put(
        &app,
        owner,
        &t.ws,
        "fly",
        json!({"mode": "kms", "config": {
        "keyId": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"},
        "credential": "x"}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NotFoundException"),
        "{}",
        r.body
    );
    // A tampered ciphertext: KMS refuses to decrypt; reported, counted by the circuit.
    sqlx_exec(
        &app,
        "UPDATE provider_configs SET ciphertext = X'00112233' WHERE provider = 'aws'",
    )
    .await;
    app.clock.advance(std::time::Duration::from_secs(660));
    for _ in 0..5 {
        let failed = test(&app, owner, &t.ws, "aws").await;
        assert_eq!(
            (failed.status, failed.body["ok"].as_bool()),
            (200, Some(false)),
            "{}",
            failed.body
        );
        let error = failed.body["error"].as_str().unwrap();
        assert!(error.contains("KMS Decrypt"), "{error}");
    }
    let open = test(&app, owner, &t.ws, "aws").await;
    assert!(
        open.body["error"]
            .as_str()
            .unwrap()
            .contains("failed repeatedly"),
        "{}",
        open.body
    );

    // Bad input: unknown provider, a mode's missing field, kms without a credential.
    let r = put(&app, owner, &t.ws, "heroku", hosted.clone()).await;
    assert_error(&r, 404, "not_found");
    let r = put(
        &app,
        owner,
        &t.ws,
        "render",
        json!({"mode": "hosted", "config": {"secret": "X"}}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");
    let r = put(
        &app,
        owner,
        &t.ws,
        "render",
        json!({"mode": "kms", "config": {"keyId": arn}}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");
    let r = put(
        &app,
        owner,
        &t.ws,
        "render",
        json!({"mode": "hosted",
        "config": {"vaultId": vlt, "secret": "MISSING"}}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");

    // Who may: viewers read configurations, operators test, only owners and admins change.
    let (_, viewer) = app
        .add_member(owner, &t.ws, "viewer@providers.test", "viewer")
        .await;
    let (_, operator) = app
        .add_member(owner, &t.ws, "operator@providers.test", "operator")
        .await;
    let listed = app
        .get(
            &format!("/control/v1/workspaces/{}/providers", t.ws),
            &viewer,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    assert_error(
        &test(&app, &viewer, &t.ws, "vercel").await,
        403,
        "forbidden",
    );
    assert_eq!(
        test(&app, &operator, &t.ws, "vercel").await.body["ok"],
        true
    );
    assert_error(
        &put(&app, &operator, &t.ws, "vercel", hosted.clone()).await,
        403,
        "forbidden",
    );
    // Another tenant sees nothing.
    let other = app.tenant("Elsewhere").await;
    for r in [
        app.get(
            &format!("/control/v1/workspaces/{}/providers/vercel", t.ws),
            &other.owner_token,
        )
        .await,
        test(&app, &other.owner_token, &t.ws, "vercel").await,
        put(&app, &other.owner_token, &t.ws, "vercel", hosted.clone()).await,
    ] {
        assert_error(&r, 404, "not_found");
    }
    // A configuration naming another workspace's vault is refused.
    let foreign = vault(&app, &other, "theirs").await;
    let r = put(
        &app,
        owner,
        &t.ws,
        "netlify",
        json!({"mode": "hosted",
        "config": {"vaultId": foreign, "secret": "X"}, "credential": "y"}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");

    // The audit log has every change and resolution, never a value.
    let entries = crate::vault::audit_entries(&app, owner, &t.ws).await;
    let all = serde_json::to_string(&entries).unwrap();
    for action in [
        "provider.configured",
        "provider.tested",
        "provider.credential.resolved",
    ] {
        assert!(all.contains(action), "{action} audited");
    }
    for leaked in [
        "vc-first-credential",
        "vc-second-credential",
        "aws-secret-credential",
    ] {
        assert!(!all.contains(leaked), "{leaked} in the audit log");
    }
    let deleted = app
        .delete(
            &format!("/control/v1/workspaces/{}/providers/vercel", t.ws),
            owner,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_error(&test(&app, owner, &t.ws, "vercel").await, 404, "not_found");
}

#[tokio::test]
async fn oauth_refresh_tokens_are_exchanged_cached_for_their_lifetime_and_rotated() {
    let issued = Arc::new(Mutex::new(1u32));
    let mode = Arc::new(Mutex::new(200u16));
    let (count, status) = (issued.clone(), mode.clone());
    let endpoint = Fake::start(move |headers, body| {
        let status = *status.lock().unwrap();
        if status != 200 {
            let error = if status == 400 {
                "invalid_grant"
            } else {
                "server_error"
            };
            return (status, json!({"error": error, "error_description": "no"}));
        }
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        let mut n = count.lock().unwrap();
        // RFC 6749 §6 with client authentication by HTTP Basic (§2.3.1).
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("authsome-client:client-secret")
        );
        if form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || form.get("refresh_token") != Some(&format!("rt-{n}"))
            || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str())
        {
            return (400, json!({"error": "invalid_grant"}));
        }
        *n += 1;
        (
            200,
            json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
                     "expires_in": 600, "refresh_token": format!("rt-{n}")}),
        )
    })
    .await;
    let app = spawn(None).await;
    let t = app.tenant("OAuth").await;
    let owner = &t.owner_token;
    let vlt = vault(&app, &t, "oauth").await;
    let r = put_secret(
        &app,
        owner,
        &vlt,
        "NETLIFY_CLIENT_SECRET",
        json!({"value": "client-secret"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = put(
        &app,
        owner,
        &t.ws,
        "netlify",
        json!({"mode": "oauth", "config": {
        "tokenUrl": endpoint.url, "clientId": "authsome-client",
        "clientSecretName": "NETLIFY_CLIENT_SECRET", "vaultId": vlt, "secret": "NETLIFY_REFRESH"},
        "credential": "rt-1"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let first = test(&app, owner, &t.ws, "netlify").await;
    assert_eq!(
        (first.body["ok"].as_bool(), first.body["cached"].as_bool()),
        (Some(true), Some(false)),
        "{}",
        first.body
    );
    // Cached for the token's lifetime less a margin.
    let until: chrono::DateTime<chrono::Utc> =
        first.body["cachedUntil"].as_str().unwrap().parse().unwrap();
    let left = until - app.clock.now();
    assert!(
        left > chrono::Duration::seconds(500) && left <= chrono::Duration::seconds(570),
        "{left}"
    );
    // The rotated refresh token replaced the stored one.
    let stored = value(&app, owner, &vlt, "NETLIFY_REFRESH").await;
    assert_eq!(
        (stored["value"].as_str(), stored["version"].as_u64()),
        (Some("rt-2"), Some(2))
    );
    assert_eq!(
        test(&app, owner, &t.ws, "netlify").await.body["cached"],
        true
    );
    assert_eq!(endpoint.count(), 1);

    // Expired: exchanged again, with the rotated token.
    app.clock.advance(std::time::Duration::from_secs(660));
    assert_eq!(test(&app, owner, &t.ws, "netlify").await.body["ok"], true);
    assert_eq!(endpoint.count(), 2);
    assert_eq!(
        value(&app, owner, &vlt, "NETLIFY_REFRESH").await["value"],
        "rt-3"
    );

    // invalid_grant is final: one call, no retry, the stored token untouched.
    *mode.lock().unwrap() = 400;
    app.clock.advance(std::time::Duration::from_secs(660));
    let refused = test(&app, owner, &t.ws, "netlify").await;
    assert_eq!(refused.body["ok"], false);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{}",
        refused.body
    );
    assert_eq!(endpoint.count(), 3);
    assert_eq!(
        value(&app, owner, &vlt, "NETLIFY_REFRESH").await["value"],
        "rt-3"
    );
    // A failing server is retried, then reported.
    *mode.lock().unwrap() = 503;
    let failed = test(&app, owner, &t.ws, "netlify").await;
    assert_eq!(failed.body["ok"], false);
    assert_eq!(endpoint.count(), 3 + 3, "three attempts");
    // Back: it works again.
    *mode.lock().unwrap() = 200;
    assert_eq!(test(&app, owner, &t.ws, "netlify").await.body["ok"], true);
}

#[tokio::test]
async fn api_key_credentials_are_fetched_with_a_signed_request_each_time() {
    let secret: Arc<Mutex<Option<String>>> = Arc::default();
    let known = secret.clone();
    let endpoint = Fake::start(move |headers, body| {
        // The customer's side: Standard Webhooks verification.
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let key = known.lock().unwrap().clone().unwrap_or_default();
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim_start_matches("whsec_"))
            .unwrap_or_default();
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{}.{}.{body}", header("webhook-id"), header("webhook-timestamp")).as_bytes());
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        let fresh = header("webhook-timestamp")
            .parse::<i64>()
            .is_ok_and(|ts| (chrono::Utc::now().timestamp() - ts).abs() < 300);
        if header("webhook-signature") != expected || !fresh {
            return (401, json!({"error": "bad signature"}));
        }
        let request: Value = serde_json::from_str(body).unwrap();
        assert_eq!(request["type"], "credential.request");
        (200, json!({"credential": format!("render-key-for-{}", request["provider"].as_str().unwrap())}))
    })
    .await;
    let app = spawn(None).await;
    let t = app.tenant("Api Key").await;
    let owner = &t.owner_token;
    let vlt = vault(&app, &t, "endpoints").await;
    let config = json!({"mode": "api_key", "config": {"url": endpoint.url, "vaultId": vlt, "secret": "RENDER_SIGNING"}});
    let r = put(&app, owner, &t.ws, "render", config.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let signing = r.body["signingSecret"].as_str().unwrap().to_owned();
    assert!(signing.starts_with("whsec_"));
    // Shown once: restating the configuration keeps the secret and does not show it.
    let r = put(&app, owner, &t.ws, "render", config).await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("signingSecret").is_none());
    *secret.lock().unwrap() = Some(signing);

    for n in 1..=2 {
        let tested = test(&app, owner, &t.ws, "render").await;
        assert_eq!(
            (tested.body["ok"].as_bool(), tested.body["cached"].as_bool()),
            (Some(true), Some(false)),
            "{}",
            tested.body
        );
        assert!(tested.body["cachedUntil"].is_null(), "never kept");
        assert_eq!(endpoint.count(), n, "fetched every time");
    }
    let hits = endpoint.hits.lock().unwrap().clone();
    assert_ne!(hits[0].0["webhook-id"], hits[1].0["webhook-id"]);

    // A wrong signing secret: the endpoint refuses, reported once (a 4xx is not retried).
    let r = put_secret(
        &app,
        owner,
        &vlt,
        "RENDER_SIGNING",
        json!({"value": "whsec_d3Jvbmc="}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = test(&app, owner, &t.ws, "render").await;
    assert_eq!(refused.body["ok"], false);
    assert!(
        refused.body["error"].as_str().unwrap().contains("401"),
        "{}",
        refused.body
    );
    assert_eq!(endpoint.count(), 3);

    // An endpoint on a private address the operator did not allow is never called.
    let r = put(
        &app,
        owner,
        &t.ws,
        "fly",
        json!({"mode": "api_key", "config": {
        "url": "http://10.1.2.3/credential", "vaultId": vlt, "secret": "FLY_SIGNING"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let refused = test(&app, owner, &t.ws, "fly").await;
    assert_eq!(refused.body["ok"], false);
    assert!(
        refused.body["error"].as_str().unwrap().contains("10.1.2.3"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn kms_mode_without_aws_credentials_is_a_clear_error() {
    let app = spawn(None).await;
    let t = app.tenant("No Aws").await;
    let r = put(
        &app,
        &t.owner_token,
        &t.ws,
        "aws",
        json!({"mode": "kms",
        "config": {"keyId": "alias/customer"}, "credential": "x"}),
    )
    .await;
    assert_error(&r, 400, "invalid_request");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID"),
        "{}",
        r.body
    );
}

async fn sqlx_one(app: &TestApp, sql: &str) -> Vec<u8> {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    let (bytes,): (Vec<u8>,) = sqlx::query_as(sql).fetch_one(&mut c).await.unwrap();
    bytes
}

async fn sqlx_exec(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    sqlx::query(sql).execute(&mut c).await.unwrap();
}
