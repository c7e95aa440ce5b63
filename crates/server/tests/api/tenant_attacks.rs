//! Attacks a hostile tenant or an anonymous caller tried against the running server (issue 33),
//! each performed over HTTP as it was found. Those that involve storage run on every backend.

use serde_json::json;

use crate::helpers::*;

/// A NUL byte in a query parameter is a bad request on every backend (Postgres text cannot
/// hold one, and used to answer 500).
async fn nul_bytes_in_query_parameters_are_refused(app: TestApp) {
    let t = app.tenant("Nul").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    for path in [
        format!("/v1/{app_id}/users?query=%00"),
        format!("/v1/{app_id}/users?email=a%00b@example.com"),
    ] {
        assert_error(&app.get(&path, &sk).await, 400, "invalid_request");
    }
    for query in ["action=%00", "actor=acc_%00"] {
        let path = format!("/control/v1/workspaces/{}/audit?{query}", t.ws);
        assert_error(
            &app.get(&path, &t.owner_token).await,
            400,
            "invalid_request",
        );
    }
    // Ordinary values still work.
    let r = app.get(&format!("/v1/{app_id}/users?query=ada"), &sk).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A NUL character inside a JSON string is refused like any other bad value.
async fn nul_characters_in_json_bodies_are_refused(app: TestApp) {
    let t = app.tenant("Nul Body").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let cases = [
        (
            format!("/v1/{app_id}/auth/signup"),
            pk.clone(),
            json!({"email": "a\u{0}b@example.com", "password": "long enough pass"}),
        ),
        (
            format!("/v1/{app_id}/auth/signup"),
            pk.clone(),
            json!({"email": "nul@example.com", "password": "long enough\u{0} pass"}),
        ),
        (
            format!("/v1/{app_id}/auth/signin"),
            pk.clone(),
            json!({"email": "a\u{0}b@example.com", "password": "long enough pass"}),
        ),
        (
            format!("/v1/{app_id}/users"),
            sk.clone(),
            json!({"email": "m@example.com", "publicMetadata": {"k": "v\u{0}"}}),
        ),
        (
            format!("/v1/{app_id}/users"),
            sk.clone(),
            json!({"email": "m2@example.com", "name": "x\u{0}"}),
        ),
        (
            format!("/v1/{app_id}/organizations"),
            sk.clone(),
            json!({"name": "o\u{0}"}),
        ),
        (
            format!("/control/v1/workspaces/{}/members", t.ws),
            t.owner_token.clone(),
            json!({"email": "a\u{0}@example.com", "role": "viewer"}),
        ),
        (
            format!("/control/v1/workspaces/{}/applications", t.ws),
            t.owner_token.clone(),
            json!({"name": "n", "environment": "development", "config": {"k\u{0}": 1}}),
        ),
        (
            "/control/v1/auth/login".to_owned(),
            String::new(),
            json!({"email": "a\u{0}@example.com", "password": "x"}),
        ),
    ];
    for (path, key, body) in cases {
        let r = app.post(&path, &key, body.clone()).await;
        assert!(r.status < 500, "{path} {body}: {} {}", r.status, r.body);
    }
}

on_both_backends!(
    nul_bytes_in_query_parameters_are_refused,
    nul_characters_in_json_bodies_are_refused,
);
