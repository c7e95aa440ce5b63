use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn application_lifecycle() {
    let app = spawn_app().await;
    let t = app.tenant("Apps").await;
    let ws = &t.ws;
    let list_path = format!("/control/v1/workspaces/{ws}/applications");
    let created = app
        .post(
            &list_path,
            &t.owner_token,
            json!({
                "name": "Web", "slug": "web", "environment": "staging",
                "region": "eu-west-1", "config": {"theme": "dark"}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let body = &created.body;
    assert!(body["id"].as_str().unwrap().starts_with("app_"));
    assert_eq!(body["workspaceId"], ws.as_str());
    assert_eq!(body["tenancy"], "shared");
    assert_eq!(body["status"], "active");
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(body["config"], json!({"theme": "dark"}));
    let id = body["id"].as_str().unwrap().to_owned();
    let path = format!("/control/v1/applications/{id}");
    let dup = app
        .post(
            &list_path,
            &t.owner_token,
            json!({"name": "Web 2", "slug": "web", "environment": "staging"}),
        )
        .await;
    assert_error(&dup, 409, "conflict");

    let patched = app
        .patch(
            &path,
            &t.owner_token,
            json!({"name": "Web App", "config": {"theme": "light"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (patched.body["name"].clone(), patched.body["config"].clone()),
        (json!("Web App"), json!({"theme": "light"}))
    );
    assert_eq!(app.get(&path, &t.owner_token).await.body["name"], "Web App");

    // Keys stop working at once on delete and come back on restore.
    let (_, sk) = app.key(&t.owner_token, &id, "secret").await;
    assert_eq!(app.identify(&id, &sk).await.status, 200);
    let deleted = app.delete(&path, &t.owner_token).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["status"], "deleting");
    let deleted_at =
        chrono::DateTime::parse_from_rfc3339(deleted.body["deletedAt"].as_str().unwrap()).unwrap();
    let purge_at =
        chrono::DateTime::parse_from_rfc3339(deleted.body["purgeAt"].as_str().unwrap()).unwrap();
    assert_eq!(purge_at - deleted_at, chrono::Duration::days(7));
    assert_error(&app.identify(&id, &sk).await, 404, "not_found");
    assert_error(&app.delete(&path, &t.owner_token).await, 409, "conflict");
    assert_error(
        &app.patch(&path, &t.owner_token, json!({"name": "x"})).await,
        409,
        "conflict",
    );
    assert_error(
        &app.post(
            &format!("{path}/keys"),
            &t.owner_token,
            json!({"type": "secret"}),
        )
        .await,
        409,
        "conflict",
    );
    let live = app.get(&list_path, &t.owner_token).await;
    assert!(live.body["data"].as_array().unwrap().is_empty());
    let all = app
        .get(&format!("{list_path}?includeDeleted=true"), &t.owner_token)
        .await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 1);
    // The slug is free while the application is deleted; restoring then conflicts.
    let taker = app
        .post(
            &list_path,
            &t.owner_token,
            json!({"name": "Taker", "slug": "web", "environment": "development"}),
        )
        .await;
    assert_eq!(taker.status, 201);
    assert_error(
        &app.post(&format!("{path}/restore"), &t.owner_token, json!({}))
            .await,
        409,
        "conflict",
    );
    let taker_id = taker.body["id"].as_str().unwrap();
    app.patch(
        &format!("/control/v1/applications/{taker_id}"),
        &t.owner_token,
        json!({"slug": "taker"}),
    )
    .await;
    let restored = app
        .post(&format!("{path}/restore"), &t.owner_token, json!({}))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.body["status"], "active");
    assert!(restored.body.get("deletedAt").is_none());
    assert_eq!(app.identify(&id, &sk).await.status, 200);
    assert_error(
        &app.post(&format!("{path}/restore"), &t.owner_token, json!({}))
            .await,
        409,
        "conflict",
    );
}

#[tokio::test]
async fn production_needs_completed_kyc_and_gets_live_keys() {
    let app = spawn_app().await;
    let t = app.tenant("Kyc").await;
    let ws = &t.ws;
    let path = format!("/control/v1/workspaces/{ws}/applications");
    let prod = json!({"name": "Prod", "environment": "production"});
    assert_error(
        &app.post(&path, &t.owner_token, prod.clone()).await,
        403,
        "forbidden",
    );
    let root = app.root_token().await;
    let kyc = app
        .patch(
            &format!("/control/v1/admin/workspaces/{ws}"),
            &root,
            json!({"kycStatus": "completed"}),
        )
        .await;
    assert_eq!(kyc.status, 200, "{}", kyc.body);
    let created = app.post(&path, &t.owner_token, prod).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let (_, pk) = app.key(&t.owner_token, id, "publishable").await;
    let (_, sk) = app.key(&t.owner_token, id, "secret").await;
    assert!(pk.starts_with("pk_live_") && sk.starts_with("sk_live_"));
    let dev = app.application(&t.owner_token, ws, "development").await;
    let (_, dev_sk) = app.key(&t.owner_token, &dev, "secret").await;
    assert!(dev_sk.starts_with("sk_test_"));
}

#[tokio::test]
async fn dedicated_applications_wait_for_upstreams_an_operator_sets() {
    let app = spawn_app().await;
    let root = app.root_token().await;
    let path = format!("/control/v1/workspaces/{}/applications", app.root_ws);
    // Without upstreams, a dedicated application waits for its instances.
    let waiting = app
        .post(
            &path,
            &root,
            json!({"name": "D", "environment": "staging", "tenancy": "dedicated"}),
        )
        .await;
    assert_eq!(waiting.status, 201, "{}", waiting.body);
    assert_eq!(waiting.body["upstreams"], json!([]));
    let (_, pk) = app
        .key(&root, waiting.body["id"].as_str().unwrap(), "publishable")
        .await;
    let r = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/{}", waiting.body["id"].as_str().unwrap()),
            Some(&pk),
            None,
        )
        .await;
    assert_error(&r, 503, "service_unavailable");
    let shared_with = app
        .post(
            &path,
            &root,
            json!({"name": "S", "environment": "staging", "upstreams": ["http://10.0.0.1:9"]}),
        )
        .await;
    assert_error(&shared_with, 400, "invalid_request");
    assert_eq!(shared_with.body["error"]["details"]["field"], "upstreams");
    let bad_url = app
        .post(&path, &root, json!({"name": "D", "environment": "staging", "tenancy": "dedicated", "upstreams": ["file:///etc/passwd"]}))
        .await;
    assert_error(&bad_url, 400, "invalid_request");
    // The gateway reaches instances over plain HTTP on a private network.
    let tls = app
        .post(&path, &root, json!({"name": "D", "environment": "staging", "tenancy": "dedicated", "upstreams": ["https://10.0.0.1"]}))
        .await;
    assert_error(&tls, 400, "invalid_request");
    assert!(
        tls.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https"),
        "{}",
        tls.body
    );
    let ok = app
        .post(
            &path,
            &root,
            json!({
                "name": "D", "environment": "staging", "tenancy": "dedicated",
                "upstreams": ["http://10.0.0.1:8080/", "http://10.0.0.1:8080"]
            }),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["upstreams"], json!(["http://10.0.0.1:8080"]));
    let id = ok.body["id"].as_str().unwrap();
    let moved = app
        .patch(
            &format!("/control/v1/applications/{id}"),
            &root,
            json!({"upstreams": ["http://10.0.0.2:8080"]}),
        )
        .await;
    assert_eq!(moved.body["upstreams"], json!(["http://10.0.0.2:8080"]));
}

#[tokio::test]
async fn idempotency_key_replays_creates() {
    let app = spawn_app().await;
    let t = app.tenant("Idem").await;
    let url = format!("{}/control/v1/workspaces/{}/applications", app.base, t.ws);
    let send = |body: serde_json::Value, key: &'static str, token: String| {
        let client = app.client.clone();
        let url = url.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            TestApp::read(r).await
        }
    };
    let body = json!({"name": "Once", "environment": "development"});
    let first = send(body.clone(), "create-once", t.owner_token.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = send(body.clone(), "create-once", t.owner_token.clone()).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    let listed = app
        .get(
            &format!("/control/v1/workspaces/{}/applications", t.ws),
            &t.owner_token,
        )
        .await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        1,
        "created once"
    );
    let changed = send(
        json!({"name": "Other", "environment": "development"}),
        "create-once",
        t.owner_token.clone(),
    )
    .await;
    assert_error(&changed, 409, "conflict");
    // Another credential's key space is separate.
    let (_, admin) = app
        .add_member(&t.owner_token, &t.ws, "admin@idem.test", "admin")
        .await;
    let other = send(body, "create-once", admin).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_ne!(other.body["id"], first.body["id"]);
    assert!(other.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn the_free_plan_stops_at_three_applications_with_402() {
    let app = spawn_app().await;
    let t = app.tenant("Three Apps").await;
    let path = format!("/control/v1/workspaces/{}/applications", t.ws);
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = app
            .post(
                &path,
                &t.owner_token,
                json!({"name": format!("App {i}"), "environment": "development"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let fourth = json!({"name": "App 3", "environment": "development"});
    let refused = app.post(&path, &t.owner_token, fourth.clone()).await;
    assert_error(&refused, 402, "payment_required");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("free plan allows 3 applications"),
        "{message}"
    );
    // A deleted one makes room; restoring it while the room is taken again is refused.
    let deleted = app
        .delete(
            &format!("/control/v1/applications/{}", ids[0]),
            &t.owner_token,
        )
        .await;
    assert!(deleted.status < 300, "{}", deleted.body);
    let made = app.post(&path, &t.owner_token, fourth).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let restore = app
        .post(
            &format!("/control/v1/applications/{}/restore", ids[0]),
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_error(&restore, 402, "payment_required");
    // On pro there is no such limit.
    let root = app.root_token().await;
    let upgraded = app
        .patch(
            &format!("/control/v1/admin/workspaces/{}", t.ws),
            &root,
            json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    let fifth = app
        .post(
            &path,
            &t.owner_token,
            json!({"name": "App 4", "environment": "development"}),
        )
        .await;
    assert_eq!(fifth.status, 201, "{}", fifth.body);
}
