//! Each role against each control-plane action. The expectations are written out here, not
//! derived from the code under test.

use serde_json::json;

use crate::helpers::*;

const ROLES: [&str; 5] = ["owner", "admin", "operator", "viewer", "auditor"];

/// (action, roles allowed to do it)
const MATRIX: &[(&str, &[&str])] = &[
    (
        "get workspace",
        &["owner", "admin", "operator", "viewer", "auditor"],
    ),
    ("update workspace", &["owner", "admin"]),
    ("list members", &["owner", "admin", "operator", "viewer"]),
    ("invite member", &["owner", "admin"]),
    (
        "list applications",
        &["owner", "admin", "operator", "viewer"],
    ),
    ("create application", &["owner", "admin"]),
    ("get application", &["owner", "admin", "operator", "viewer"]),
    ("update application", &["owner", "admin"]),
    ("delete application", &["owner", "admin"]),
    ("list keys", &["owner", "admin", "operator", "viewer"]),
    ("create key", &["owner", "admin"]),
    ("roll key", &["owner", "admin", "operator"]),
    ("revoke key", &["owner", "admin"]),
    ("list management keys", &["owner", "admin"]),
    ("create management key", &["owner", "admin"]),
    ("delete workspace", &["owner"]),
];

async fn attempt(
    app: &TestApp,
    owner: &str,
    ws: &str,
    token: &str,
    action: &str,
    n: usize,
) -> Response {
    // Fresh targets for every attempt, created by the owner.
    let app_id = app.application(owner, ws, "development").await;
    let (key_id, _) = app.key(owner, &app_id, "secret").await;
    let w = format!("/control/v1/workspaces/{ws}");
    let a = format!("/control/v1/applications/{app_id}");
    match action {
        "get workspace" => app.get(&w, token).await,
        "update workspace" => {
            app.patch(&w, token, json!({"name": format!("Renamed {n}")}))
                .await
        }
        "list members" => app.get(&format!("{w}/members"), token).await,
        "invite member" => {
            app.post(
                &format!("{w}/members"),
                token,
                json!({"email": format!("new{n}@m.test"), "role": "viewer"}),
            )
            .await
        }
        "list applications" => app.get(&format!("{w}/applications"), token).await,
        "create application" => {
            app.post(
                &format!("{w}/applications"),
                token,
                json!({"name": "x", "environment": "staging"}),
            )
            .await
        }
        "get application" => app.get(&a, token).await,
        "update application" => app.patch(&a, token, json!({"name": "renamed"})).await,
        "delete application" => app.delete(&a, token).await,
        "list keys" => app.get(&format!("{a}/keys"), token).await,
        "create key" => {
            app.post(&format!("{a}/keys"), token, json!({"type": "publishable"}))
                .await
        }
        "roll key" => {
            app.post(&format!("{a}/keys/{key_id}/roll"), token, json!({}))
                .await
        }
        "revoke key" => app.delete(&format!("{a}/keys/{key_id}"), token).await,
        "list management keys" => app.get(&format!("{w}/keys"), token).await,
        "create management key" => {
            app.post(&format!("{w}/keys"), token, json!({"role": "viewer"}))
                .await
        }
        "delete workspace" => {
            // Only an empty workspace can go: clear the applications first (as the owner).
            let apps = app
                .get(
                    &format!("{w}/applications?includeDeleted=true&limit=100"),
                    owner,
                )
                .await;
            for item in apps.body["data"].as_array().unwrap() {
                let id = item["id"].as_str().unwrap();
                app.delete(&format!("/control/v1/applications/{id}"), owner)
                    .await;
            }
            app.delete(&w, token).await
        }
        other => panic!("unknown action {other}"),
    }
}

#[tokio::test]
async fn every_role_against_every_action() {
    let app = spawn_app().await;
    let root = app.root_token().await;
    for role in ROLES {
        let t = app.tenant(&format!("Matrix {role}")).await;
        // Pro: each action works on applications of its own, past the free plan's three.
        let pro = app
            .patch(
                &format!("/control/v1/admin/workspaces/{}", t.ws),
                &root,
                serde_json::json!({"plan": "pro"}),
            )
            .await;
        assert_eq!(pro.status, 200, "{}", pro.body);
        let token = if role == "owner" {
            t.owner_token.clone()
        } else {
            app.add_member(&t.owner_token, &t.ws, &format!("{role}@matrix.test"), role)
                .await
                .1
        };
        for (n, (action, allowed)) in MATRIX.iter().enumerate() {
            let r = attempt(&app, &t.owner_token, &t.ws, &token, action, n).await;
            if allowed.contains(&role) {
                if *action == "delete workspace" {
                    // Soft-deleted applications keep the workspace until they are purged.
                    assert_error(&r, 409, "conflict");
                } else {
                    assert!(
                        (200..300).contains(&r.status),
                        "{role} should be able to {action}: {} {}",
                        r.status,
                        r.body
                    );
                }
            } else {
                assert_error(&r, 403, "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn management_keys_act_with_their_role() {
    let app = spawn_app().await;
    let t = app.tenant("Keyed").await;
    let ws = &t.ws;
    let make = |role: &'static str| {
        let app = &app;
        let t = &t;
        async move {
            let r = app
                .post(
                    &format!("/control/v1/workspaces/{}/keys", t.ws),
                    &t.owner_token,
                    json!({"role": role, "name": role}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            assert!(r.body["secret"].as_str().unwrap().starts_with("wk_live_"));
            assert_eq!(r.body["role"], role);
            r.body["secret"].as_str().unwrap().to_owned()
        }
    };
    let admin_key = make("admin").await;
    let viewer_key = make("viewer").await;
    let created = app
        .post(
            &format!("/control/v1/workspaces/{ws}/applications"),
            &admin_key,
            json!({"name": "via key", "environment": "development"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let denied = app
        .post(
            &format!("/control/v1/workspaces/{ws}/applications"),
            &viewer_key,
            json!({"name": "via viewer", "environment": "development"}),
        )
        .await;
    assert_error(&denied, 403, "forbidden");
    assert_eq!(
        app.get(
            &format!("/control/v1/workspaces/{ws}/applications"),
            &viewer_key
        )
        .await
        .status,
        200
    );
    // Keys cannot create workspaces, nor be owners.
    assert_error(
        &app.post(
            "/control/v1/workspaces",
            &admin_key,
            json!({"name": "nope"}),
        )
        .await,
        403,
        "forbidden",
    );
    let owner_key = app
        .post(
            &format!("/control/v1/workspaces/{ws}/keys"),
            &t.owner_token,
            json!({"role": "owner"}),
        )
        .await;
    assert_error(&owner_key, 400, "invalid_request");
    // Listing shows no secrets.
    let listed = app
        .get(&format!("/control/v1/workspaces/{ws}/keys"), &t.owner_token)
        .await;
    for k in listed.body["data"].as_array().unwrap() {
        assert!(k.get("secret").is_none());
        assert!(k["redacted"].as_str().unwrap().starts_with("wk_live_…"));
    }
    // Roll with no grace: the old key stops at once, the new one works.
    let key_id = listed.body["data"][1]["id"].as_str().unwrap();
    let rolled = app
        .post(
            &format!("/control/v1/workspaces/{ws}/keys/{key_id}/roll"),
            &t.owner_token,
            json!({"expiresInSeconds": 0}),
        )
        .await;
    assert_eq!(rolled.status, 201, "{}", rolled.body);
    assert_error(
        &app.get(&format!("/control/v1/workspaces/{ws}"), &viewer_key)
            .await,
        401,
        "unauthorized",
    );
    let new_viewer = rolled.body["secret"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/control/v1/workspaces/{ws}"), new_viewer)
            .await
            .status,
        200
    );
    // Revoke the admin key.
    let admin_id = listed.body["data"][0]["id"].as_str().unwrap();
    let revoked = app
        .delete(
            &format!("/control/v1/workspaces/{ws}/keys/{admin_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body["revokedAt"].as_str().is_some());
    assert_error(
        &app.get(&format!("/control/v1/workspaces/{ws}"), &admin_key)
            .await,
        401,
        "unauthorized",
    );
}
