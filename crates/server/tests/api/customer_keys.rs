use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn keys_identify_their_application() {
    let app = spawn_app().await;
    let t = app.tenant("Keys").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let created = app
        .post(&format!("/control/v1/applications/{app_id}/keys"), &t.owner_token,
            json!({"type": "secret", "name": "backend", "scopes": ["users:write", "users:read", "users:read"]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sk = created.body["secret"].as_str().unwrap().to_owned();
    assert!(sk.starts_with("sk_test_") && sk.len() == 57);
    assert_eq!(created.body["scopes"], json!(["users:read", "users:write"]));
    assert_eq!(created.body["last4"], &sk[sk.len() - 4..]);
    assert_eq!(created.body["prefix"], "sk_test_");
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;

    let r = app.identify(&app_id, &sk).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"id": app_id, "name": "development app", "environment": "development", "status": "active", "keyType": "secret"})
    );
    assert_eq!(r.headers["x-authsome-app-id"], app_id.as_str());
    // A publishable key may come as X-Publishable-Key.
    let via_header = app
        .client
        .get(format!("{}/v1/{app_id}", app.base))
        .header("X-Publishable-Key", &pk)
        .send()
        .await
        .unwrap();
    let via_header = TestApp::read(via_header).await;
    assert_eq!(via_header.body["keyType"], "publishable");

    // The secret is never listed again.
    let listed = app
        .get(
            &format!("/control/v1/applications/{app_id}/keys"),
            &t.owner_token,
        )
        .await;
    let listed_text = listed.body.to_string();
    assert!(!listed_text.contains(&sk) && !listed_text.contains(&pk));
    assert_eq!(
        listed.body["data"][0]["redacted"],
        format!("sk_test_…{}", &sk[sk.len() - 4..])
    );

    // lastUsedAt is batched: it appears after a flush, without a write per request.
    assert!(listed.body["data"][0]["lastUsedAt"].is_null());
    app.state.control.flush_key_usage().await.unwrap();
    let listed = app
        .get(
            &format!("/control/v1/applications/{app_id}/keys"),
            &t.owner_token,
        )
        .await;
    assert!(listed.body["data"][0]["lastUsedAt"].as_str().is_some());
}

#[tokio::test]
async fn bad_keys_are_refused() {
    let app = spawn_app().await;
    let t = app.tenant("Refuse").await;
    let a = app.application(&t.owner_token, &t.ws, "development").await;
    let b = app.application(&t.owner_token, &t.ws, "staging").await;
    let (_, sk_a) = app.key(&t.owner_token, &a, "secret").await;
    let missing = app
        .call(reqwest::Method::GET, &format!("/v1/{a}"), None, None)
        .await;
    assert_error(&missing, 401, "unauthorized");
    // A key of application A on application B's path: B does not exist for it.
    assert_error(&app.identify(&b, &sk_a).await, 404, "not_found");
    // Malformed and wrong-prefix application ids.
    assert_error(&app.identify("app_nope", &sk_a).await, 404, "not_found");
    assert_error(&app.identify(&t.ws, &sk_a).await, 404, "not_found");
    // Typos, relabelled prefixes and garbage fail the checksum before any lookup.
    let mut typo = sk_a.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [
        typo.as_str(),
        &sk_a.replace("sk_test_", "pk_test_"),
        "sk_test_garbage",
        "Bearer",
        &sk_a[..40],
    ] {
        assert_error(&app.identify(&a, bad).await, 401, "unauthorized");
    }
    // A well-formed key that was never issued.
    let forged = authsome_domain::keys::generate_key(
        authsome_domain::keys::KeyKind::Secret,
        authsome_domain::keys::KeyMode::Test,
    );
    assert_error(
        &app.identify(&a, &forged.plaintext).await,
        401,
        "unauthorized",
    );
    // Management keys do not reach the customer API; application keys not the control plane.
    assert_error(&app.identify(&a, &app.root_key).await, 401, "unauthorized");
    assert_error(
        &app.get("/control/v1/workspaces", &sk_a).await,
        401,
        "unauthorized",
    );
    // Key creation input.
    let keys = format!("/control/v1/applications/{a}/keys");
    for body in [
        json!({"type": "management"}),
        json!({"type": "publishable", "scopes": ["users:read"]}),
        json!({"type": "secret", "scopes": ["users:everything"]}),
        json!({"type": "root"}),
        json!({}),
    ] {
        assert_error(
            &app.post(&keys, &t.owner_token, body).await,
            400,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn rolling_keeps_the_old_key_for_its_grace_period() {
    let app = spawn_app().await;
    let t = app.tenant("Roll").await;
    let a = app.application(&t.owner_token, &t.ws, "development").await;
    let (id, old) = app.key(&t.owner_token, &a, "secret").await;
    let rolled = app
        .post(
            &format!("/control/v1/applications/{a}/keys/{id}/roll"),
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(rolled.status, 201, "{}", rolled.body);
    let new = rolled.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rolled.body["previous"]["id"], id.as_str());
    assert_eq!(rolled.body["previous"]["rolledTo"], rolled.body["id"]);
    let created =
        chrono::DateTime::parse_from_rfc3339(rolled.body["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(
        rolled.body["previous"]["expiresAt"].as_str().unwrap(),
    )
    .unwrap();
    let grace = expires - created;
    assert!(
        (grace - chrono::Duration::hours(24)).num_seconds().abs() < 5,
        "{grace}"
    );
    // Both work during the grace period.
    assert_eq!(app.identify(&a, &old).await.status, 200);
    assert_eq!(app.identify(&a, &new).await.status, 200);
    // A rolled key cannot be rolled again.
    assert_error(
        &app.post(
            &format!("/control/v1/applications/{a}/keys/{id}/roll"),
            &t.owner_token,
            json!({}),
        )
        .await,
        409,
        "conflict",
    );
    // No body, or an empty one with a JSON content type (as many clients send every request),
    // is the default grace period too.
    let new_id = rolled.body["id"].as_str().unwrap();
    let roll_url = format!("/control/v1/applications/{a}/keys/{new_id}/roll");
    let (spare_id, _) = app.key(&t.owner_token, &a, "secret").await;
    let spare_url = format!("/control/v1/applications/{a}/keys/{spare_id}/roll");
    let spare_rolled = app
        .call(Method::POST, &spare_url, Some(&t.owner_token), None)
        .await;
    assert_eq!(spare_rolled.status, 201, "{}", spare_rolled.body);
    let spare_id = spare_rolled.body["id"].as_str().unwrap();
    let empty_json = app
        .client
        .post(format!(
            "{}/control/v1/applications/{a}/keys/{spare_id}/roll",
            app.base
        ))
        .bearer_auth(&t.owner_token)
        .header("Content-Type", "application/json")
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    let empty_json = TestApp::read(empty_json).await;
    assert_eq!(empty_json.status, 201, "{}", empty_json.body);
    assert_eq!(empty_json.body["previous"]["id"], spare_id);
    // Rolling with no grace ends the old key now; out-of-range grace is refused.
    for bad in [
        json!({"expiresInSeconds": -1}),
        json!({"expiresInSeconds": 2592001}),
        json!({"expiresIn": 5}),
    ] {
        assert_error(
            &app.post(&roll_url, &t.owner_token, bad).await,
            400,
            "invalid_request",
        );
    }
    let now_roll = app
        .post(&roll_url, &t.owner_token, json!({"expiresInSeconds": 0}))
        .await;
    assert_eq!(now_roll.status, 201);
    assert_error(&app.identify(&a, &new).await, 401, "unauthorized");
    let newest = now_roll.body["secret"].as_str().unwrap();
    assert_eq!(app.identify(&a, newest).await.status, 200);
    // Revocation is immediate; revoking twice is a conflict.
    let newest_id = now_roll.body["id"].as_str().unwrap();
    let revoked = app
        .delete(
            &format!("/control/v1/applications/{a}/keys/{newest_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert_error(&app.identify(&a, newest).await, 401, "unauthorized");
    assert_error(
        &app.delete(
            &format!("/control/v1/applications/{a}/keys/{newest_id}"),
            &t.owner_token,
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &app.post(
            &format!("/control/v1/applications/{a}/keys/{newest_id}/roll"),
            &t.owner_token,
            json!({}),
        )
        .await,
        409,
        "conflict",
    );
}
