use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn workspace_crud_and_pagination() {
    let app = spawn_app().await;
    let root = app.root_token().await;
    let created = app
        .post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "  Acme Corp ", "metadata": {"crm": "42"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let b = &created.body;
    assert_eq!(b["name"], "Acme Corp");
    assert!(b["slug"].as_str().unwrap().starts_with("acme-corp-"));
    assert_eq!(
        (b["plan"].clone(), b["status"].clone()),
        (json!("free"), json!("active"))
    );
    assert_eq!(
        (b["kycStatus"].clone(), b["paymentStatus"].clone()),
        (json!("pending"), json!("current"))
    );
    assert_eq!(b["role"], "owner");
    assert_eq!(b["root"], false);
    let id = b["id"].as_str().unwrap().to_owned();
    let path = format!("/control/v1/workspaces/{id}");
    let patched = app
        .patch(
            &path,
            &root,
            json!({"name": "Acme", "slug": "acme", "metadata": {"crm": "43"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (
            patched.body["slug"].clone(),
            patched.body["metadata"].clone()
        ),
        (json!("acme"), json!({"crm": "43"}))
    );
    let clash = app
        .post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "Other", "slug": "acme"}),
        )
        .await;
    assert_error(&clash, 409, "conflict");
    assert_error(
        &app.post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "Bad", "slug": "Bad Slug"}),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.post("/control/v1/workspaces", &root, json!({"name": ""}))
            .await,
        400,
        "invalid_request",
    );

    for n in 0..4 {
        let r = app
            .post(
                "/control/v1/workspaces",
                &root,
                json!({"name": format!("Page {n}")}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    // Root + Acme + 4 = 6 workspaces, pages of 4.
    let first = app.get("/control/v1/workspaces?limit=4", &root).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 4);
    assert_eq!(first.body["hasMore"], true);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/control/v1/workspaces?limit=4&cursor={cursor}"),
            &root,
        )
        .await;
    assert_eq!(second.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            second.body["hasMore"].clone(),
            second.body["nextCursor"].clone()
        ),
        (json!(false), json!(null))
    );

    // An empty workspace can be deleted; one with applications cannot; the root never.
    let app_id = app.application(&root, &id, "development").await;
    assert_error(&app.delete(&path, &root).await, 409, "conflict");
    app.delete(&format!("/control/v1/applications/{app_id}"), &root)
        .await;
    assert_error(&app.delete(&path, &root).await, 409, "conflict");
    let empty = second.body["data"][1]["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/control/v1/workspaces/{empty}"), &root)
            .await
            .status,
        204
    );
    assert_error(
        &app.get(&format!("/control/v1/workspaces/{empty}"), &root)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.delete(&format!("/control/v1/workspaces/{}", app.root_ws), &root)
            .await,
        409,
        "conflict",
    );
    // New workspaces start on free: only billing or a platform operator grants a paid plan.
    let t = app.tenant("Plain").await;
    for plan in ["enterprise", "pro"] {
        let r = app
            .post(
                "/control/v1/workspaces",
                &t.owner_token,
                json!({"name": "Paid", "plan": plan}),
            )
            .await;
        assert_error(&r, 403, "forbidden");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("free"),
            "{}",
            r.body
        );
    }
    let free = app
        .post(
            "/control/v1/workspaces",
            &t.owner_token,
            json!({"name": "F", "plan": "free"}),
        )
        .await;
    assert_eq!((free.status, &free.body["plan"]), (201, &json!("free")));
    let mine = app.get("/control/v1/workspaces", &t.owner_token).await;
    assert!(mine.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["plan"] == "free"));
    let granted = app
        .post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "P", "plan": "pro"}),
        )
        .await;
    assert_eq!(
        (granted.status, &granted.body["plan"]),
        (201, &json!("pro"))
    );
}

#[tokio::test]
async fn platform_operators_set_standing() {
    let app = spawn_app().await;
    let t = app.tenant("Customer").await;
    let admin_path = format!("/control/v1/admin/workspaces/{}", t.ws);
    // To a customer the admin routes do not exist.
    assert_error(
        &app.get("/control/v1/admin/workspaces", &t.owner_token)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.patch(&admin_path, &t.owner_token, json!({"plan": "enterprise"}))
            .await,
        404,
        "not_found",
    );
    // Root viewers are not operators either.
    let root = app.root_token().await;
    let (_, root_viewer) = app
        .add_member(&root, &app.root_ws, "viewer@platform.test", "viewer")
        .await;
    assert_error(
        &app.get("/control/v1/admin/workspaces", &root_viewer).await,
        404,
        "not_found",
    );

    let listed = app.get("/control/v1/admin/workspaces", &app.root_key).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    assert_error(
        &app.patch(
            &admin_path,
            &root,
            json!({"limits": {"requestsPerSecondPerKey": 500}}),
        )
        .await,
        400,
        "invalid_request",
    );
    // Limits the entry point could not enforce are refused.
    for limits in [
        json!({"requestsPerSecondPerKey": 0}),
        json!({"requestsPerSecondPerKey": 1000001}),
        json!({"requestsPerMonth": 0}),
    ] {
        let r = app
            .patch(
                &admin_path,
                &root,
                json!({"plan": "enterprise", "limits": limits}),
            )
            .await;
        assert_error(&r, 400, "invalid_request");
    }
    let updated = app
        .patch(&admin_path, &root, json!({
            "plan": "enterprise", "limits": {"requestsPerSecondPerKey": 500, "requestsPerMonth": 1000000},
            "kycStatus": "reKycDue", "paymentStatus": "pastDue"
        }))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        updated.body["limits"],
        json!({"requestsPerSecondPerKey": 500, "requestsPerMonth": 1000000})
    );
    assert_eq!(updated.body["paymentStatus"], "pastDue");
    assert_error(
        &app.patch(&admin_path, &root, json!({"kycStatus": "maybe"}))
            .await,
        400,
        "invalid_request",
    );
    // Suspension stops writes but not reads.
    let suspended = app
        .patch(&admin_path, &app.root_key, json!({"status": "suspended"}))
        .await;
    assert_eq!(suspended.body["status"], "suspended");
    let create = app
        .post(
            &format!("/control/v1/workspaces/{}/applications", t.ws),
            &t.owner_token,
            json!({"name": "x", "environment": "development"}),
        )
        .await;
    assert_error(&create, 403, "forbidden");
    assert_eq!(
        app.get(&format!("/control/v1/workspaces/{}", t.ws), &t.owner_token)
            .await
            .body["status"],
        "suspended"
    );
    assert_error(
        &app.patch(
            &format!("/control/v1/admin/workspaces/{}", app.root_ws),
            &root,
            json!({"status": "suspended"}),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &app.get(
            "/control/v1/admin/workspaces/ws_01h455vb4pex5vsknk084sn02q",
            &root,
        )
        .await,
        404,
        "not_found",
    );
}
