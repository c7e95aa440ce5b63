//! Every control-plane route, called with workspace A's credentials on workspace B's resources:
//! always 404, and nothing of B changes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn snapshot(app: &TestApp, token: &str, ws: &str, app_id: &str) -> Value {
    json!({
        "workspace": app.get(&format!("/control/v1/workspaces/{ws}"), token).await.body,
        "members": app.get(&format!("/control/v1/workspaces/{ws}/members"), token).await.body,
        "keys": app.get(&format!("/control/v1/workspaces/{ws}/keys"), token).await.body,
        "apps": app.get(&format!("/control/v1/workspaces/{ws}/applications?includeDeleted=true"), token).await.body,
        "app": app.get(&format!("/control/v1/applications/{app_id}"), token).await.body,
        "app_keys": app.get(&format!("/control/v1/applications/{app_id}/keys"), token).await.body,
    })
}

#[tokio::test]
async fn workspace_a_cannot_reach_workspace_b() {
    let app = spawn_app().await;
    let a = app.tenant("Alpha").await;
    let b = app.tenant("Bravo").await;
    let b_app = app.application(&b.owner_token, &b.ws, "development").await;
    let (b_key, b_secret) = app.key(&b.owner_token, &b_app, "secret").await;
    let b_mk = app
        .post(
            &format!("/control/v1/workspaces/{}/keys", b.ws),
            &b.owner_token,
            json!({}),
        )
        .await;
    let b_mk = b_mk.body["id"].as_str().unwrap().to_owned();
    let b_members = app
        .get(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
        )
        .await;
    let b_member = b_members.body["data"][0]["id"].as_str().unwrap().to_owned();
    let before = snapshot(&app, &b.owner_token, &b.ws, &b_app).await;

    // A's owner session, and an admin management key of A.
    let a_key = app
        .post(
            &format!("/control/v1/workspaces/{}/keys", a.ws),
            &a.owner_token,
            json!({"role": "admin"}),
        )
        .await;
    let a_key = a_key.body["secret"].as_str().unwrap().to_owned();
    let ws = &b.ws;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/control/v1/workspaces/{ws}"), None),
        (
            Method::PATCH,
            format!("/control/v1/workspaces/{ws}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/control/v1/workspaces/{ws}"), None),
        (
            Method::GET,
            format!("/control/v1/workspaces/{ws}/members"),
            None,
        ),
        (
            Method::POST,
            format!("/control/v1/workspaces/{ws}/members"),
            Some(json!({"email": "spy@a.test", "role": "owner"})),
        ),
        (
            Method::PATCH,
            format!("/control/v1/workspaces/{ws}/members/{b_member}"),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("/control/v1/workspaces/{ws}/members/{b_member}"),
            None,
        ),
        (
            Method::GET,
            format!("/control/v1/workspaces/{ws}/keys"),
            None,
        ),
        (
            Method::POST,
            format!("/control/v1/workspaces/{ws}/keys"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/control/v1/workspaces/{ws}/keys/{b_mk}/roll"),
            Some(json!({"expiresInSeconds": 0})),
        ),
        (
            Method::DELETE,
            format!("/control/v1/workspaces/{ws}/keys/{b_mk}"),
            None,
        ),
        (
            Method::GET,
            format!("/control/v1/workspaces/{ws}/applications"),
            None,
        ),
        (
            Method::POST,
            format!("/control/v1/workspaces/{ws}/applications"),
            Some(json!({"name": "x", "environment": "development"})),
        ),
        (
            Method::GET,
            format!("/control/v1/applications/{b_app}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/control/v1/applications/{b_app}"),
            Some(json!({"name": "pwned"})),
        ),
        (
            Method::DELETE,
            format!("/control/v1/applications/{b_app}"),
            None,
        ),
        (
            Method::POST,
            format!("/control/v1/applications/{b_app}/restore"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/control/v1/applications/{b_app}/keys"),
            None,
        ),
        (
            Method::POST,
            format!("/control/v1/applications/{b_app}/keys"),
            Some(json!({"type": "secret"})),
        ),
        (
            Method::POST,
            format!("/control/v1/applications/{b_app}/keys/{b_key}/roll"),
            Some(json!({"expiresInSeconds": 0})),
        ),
        (
            Method::DELETE,
            format!("/control/v1/applications/{b_app}/keys/{b_key}"),
            None,
        ),
    ];
    for credential in [&a.owner_token, &a_key] {
        for (method, path, body) in &calls {
            let r = app
                .call(method.clone(), path, Some(credential), body.clone())
                .await;
            assert_error(&r, 404, "not_found");
        }
        // B's key ids under A's own application are not found either.
        let a_app = app.application(&a.owner_token, &a.ws, "development").await;
        let r = app
            .post(
                &format!("/control/v1/applications/{a_app}/keys/{b_key}/roll"),
                credential,
                json!({}),
            )
            .await;
        assert_error(&r, 404, "not_found");
        let r = app
            .delete(
                &format!("/control/v1/workspaces/{}/keys/{b_mk}", a.ws),
                credential,
            )
            .await;
        assert_error(&r, 404, "not_found");
        let r = app
            .patch(
                &format!("/control/v1/workspaces/{}/members/{b_member}", a.ws),
                credential,
                json!({"role": "viewer"}),
            )
            .await;
        assert_error(&r, 404, "not_found");
        // B's key on A's application path.
        assert_error(&app.identify(&a_app, &b_secret).await, 404, "not_found");
    }
    let listed = app.get("/control/v1/workspaces", &a.owner_token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    let after = snapshot(&app, &b.owner_token, &b.ws, &b_app).await;
    assert_eq!(before, after, "workspace B changed");
    assert_eq!(app.identify(&b_app, &b_secret).await.status, 200);
}
