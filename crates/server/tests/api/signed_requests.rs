//! HMAC-signed customer-API requests (CONTRACT.md): valid, stale, replayed, tampered, and keys
//! that may not sign.

use authsome_domain::keys::signing;
use serde_json::{json, Value};

use crate::helpers::*;

struct Signer<'a> {
    app: &'a TestApp,
    key_id: String,
    secret: String,
}

impl Signer<'_> {
    /// Sends `method path` signed at `timestamp`; `sent_body` replaces the signed body when given.
    async fn send_at(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timestamp: i64,
        sent_body: Option<&str>,
    ) -> (Response, String) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let ts = timestamp.to_string();
        let signature = signing::sign(
            &self.secret,
            method.as_str(),
            path,
            &ts,
            &signing::body_digest(body.as_bytes()),
        );
        let response = self
            .resend(method, path, &ts, &signature, sent_body.unwrap_or(&body))
            .await;
        (response, signature)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Response {
        let now = chrono::Utc::now().timestamp();
        self.send_at(method, path, body, now, None).await.0
    }

    async fn resend(
        &self,
        method: reqwest::Method,
        path: &str,
        timestamp: &str,
        signature: &str,
        body: &str,
    ) -> Response {
        let mut request = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.base))
            .header("X-Api-Key-Id", &self.key_id)
            .header("X-Timestamp", timestamp)
            .header("X-Signature", signature);
        if !body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        TestApp::read(request.send().await.unwrap()).await
    }
}

#[tokio::test]
async fn signed_requests_are_accepted_once_and_only_as_signed() {
    let app = spawn_app().await;
    let t = app.tenant("Signed").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (key_id, secret) = app.key(&t.owner_token, &app_id, "secret").await;
    let signer = Signer {
        app: &app,
        key_id: key_id.clone(),
        secret: secret.clone(),
    };
    // A GET and a POST with a body, signed.
    let r = signer
        .send(reqwest::Method::GET, &format!("/v1/{app_id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["keyType"], "secret");
    let users = format!("/v1/{app_id}/users?limit=5");
    let body = json!({"email": "signed@example.com"});
    let now = chrono::Utc::now().timestamp();
    let (created, signature) = signer
        .send_at(reqwest::Method::POST, &users, Some(&body), now, None)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Replayed: the same signature is refused, even though it is still within its window.
    let replay = signer
        .resend(
            reqwest::Method::POST,
            &users,
            &now.to_string(),
            &signature,
            &body.to_string(),
        )
        .await;
    assert_error(&replay, 401, "unauthorized");
    assert!(replay.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already used"));

    // Stale or future timestamps (a few seconds past the ±300 s window, from the clock at the
    // time of sending, so a slow run cannot pull one back inside it).
    for skew in [-305, 305] {
        let (r, _) = signer
            .send_at(
                reqwest::Method::GET,
                &format!("/v1/{app_id}"),
                None,
                chrono::Utc::now().timestamp() + skew,
                None,
            )
            .await;
        assert_error(&r, 401, "unauthorized");
    }
    // A tampered body, path or query.
    let (r, _) = signer
        .send_at(
            reqwest::Method::POST,
            &format!("/v1/{app_id}/users"),
            Some(&json!({"email": "a@example.com"})),
            now,
            Some(r#"{"email":"mallory@example.com"}"#),
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    let signature = signing::sign(
        &secret,
        "GET",
        &format!("/v1/{app_id}/users?limit=1"),
        &now.to_string(),
        &signing::body_digest(b""),
    );
    let r = signer
        .resend(
            reqwest::Method::GET,
            &format!("/v1/{app_id}/users?limit=2"),
            &now.to_string(),
            &signature,
            "",
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    // Another key's secret, a publishable key, a malformed timestamp, a missing header.
    let (_, other_secret) = app.key(&t.owner_token, &app_id, "secret").await;
    let forger = Signer {
        app: &app,
        key_id: key_id.clone(),
        secret: other_secret,
    };
    let r = forger
        .send(reqwest::Method::GET, &format!("/v1/{app_id}"), None)
        .await;
    assert_error(&r, 401, "unauthorized");
    let (pk_id, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let publishable = Signer {
        app: &app,
        key_id: pk_id,
        secret: pk,
    };
    let r = publishable
        .send(reqwest::Method::GET, &format!("/v1/{app_id}"), None)
        .await;
    assert_error(&r, 401, "unauthorized");
    let r = signer
        .resend(
            reqwest::Method::GET,
            &format!("/v1/{app_id}"),
            "yesterday",
            "00",
            "",
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    let r = TestApp::read(
        app.client
            .get(format!("{}/v1/{app_id}", app.base))
            .header("X-Api-Key-Id", &key_id)
            .header("X-Signature", "00")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 401, "unauthorized");

    // The key of another application, correctly signed, does not reach this one.
    let other_app = app.application(&t.owner_token, &t.ws, "development").await;
    let r = signer
        .send(reqwest::Method::GET, &format!("/v1/{other_app}"), None)
        .await;
    assert_error(&r, 404, "not_found");

    // A revoked key signs nothing.
    let revoked = app
        .delete(
            &format!("/control/v1/applications/{app_id}/keys/{key_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(revoked.status, 200);
    let r = signer
        .send(reqwest::Method::GET, &format!("/v1/{app_id}"), None)
        .await;
    assert_error(&r, 401, "unauthorized");

    // The signed write is audited with the key as its actor, and no secret is stored.
    let entries = app
        .get(
            &format!("/control/v1/workspaces/{}/audit?action=user.created", t.ws),
            &t.owner_token,
        )
        .await;
    assert_eq!(entries.body["data"][0]["actor"]["id"], key_id.as_str());
    let export = app
        .client
        .get(format!(
            "{}/control/v1/workspaces/{}/audit/export",
            app.base, t.ws
        ))
        .bearer_auth(&t.owner_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!export.contains(&secret));
}
