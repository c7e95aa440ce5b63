use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn malformed_bodies_and_queries() {
    let app = spawn_with(authsome_server::HttpSettings {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let root = app.root_token().await;
    let url = format!("{}/control/v1/workspaces", app.base);
    let raw = |body: &'static str, content_type: &'static str| {
        let client = app.client.clone();
        let url = url.clone();
        let root = root.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(root)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            TestApp::read(r).await
        }
    };
    assert_error(
        &raw("{\"name\": ", "application/json").await,
        400,
        "invalid_request",
    );
    assert_error(
        &raw("[1, 2]", "application/json").await,
        400,
        "invalid_request",
    );
    assert_error(
        &raw("{\"name\": 5}", "application/json").await,
        400,
        "invalid_request",
    );
    assert_error(
        &raw("name=x", "application/x-www-form-urlencoded").await,
        400,
        "invalid_request",
    );
    let unknown = raw("{\"name\": \"x\", \"owner\": \"me\"}", "application/json").await;
    assert_error(&unknown, 400, "invalid_request");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("owner"),
        "{}",
        unknown.body
    );
    let wrong_enum = app
        .post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "x", "plan": "platinum"}),
        )
        .await;
    assert_error(&wrong_enum, 400, "invalid_request");
    let huge = app
        .post(
            "/control/v1/workspaces",
            &root,
            json!({"name": "x", "metadata": {"blob": "a".repeat(10_000)}}),
        )
        .await;
    assert_error(&huge, 413, "payload_too_large");
    // Metadata itself is bounded even under the body limit of a default server.
    let big_meta = spawn_app().await;
    let big_root = big_meta.root_token().await;
    let r = big_meta
        .post(
            "/control/v1/workspaces",
            &big_root,
            json!({"name": "x", "metadata": {"blob": "a".repeat(9000)}}),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = big_meta
        .post(
            "/control/v1/workspaces",
            &big_root,
            json!({"name": "x", "metadata": [1]}),
        )
        .await;
    assert_error(&r, 400, "invalid_request");

    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "cursor=!!!",
        "cursor=d3NfeA",
        "unknown=1",
    ] {
        let r = app
            .get(&format!("/control/v1/workspaces?{query}"), &root)
            .await;
        assert_error(&r, 400, "invalid_request");
    }
    // Malformed and wrong-prefix ids in paths are 404s, never 500s.
    for path in [
        "/control/v1/workspaces/nope",
        "/control/v1/workspaces/app_01h455vb4pex5vsknk084sn02q",
        "/control/v1/workspaces/ws_01H455VB4PEX5VSKNK084SN02Q",
        "/control/v1/applications/ws_01h455vb4pex5vsknk084sn02q",
        "/control/v1/applications/app_zzzzzzzzzzzzzzzzzzzzzzzzzz",
        "/control/v1/applications/app_01h455vb4pex5vsknk084sn02q",
    ] {
        assert_error(&app.get(path, &root).await, 404, "not_found");
    }
    let member_path = format!(
        "/control/v1/workspaces/{}/members/usr_01h455vb4pex5vsknk084sn02q",
        app.root_ws
    );
    assert_error(
        &app.patch(&member_path, &root, json!({"role": "viewer"}))
            .await,
        404,
        "not_found",
    );
    let key_path = format!("/control/v1/workspaces/{}/keys/key_bad/roll", app.root_ws);
    assert_error(
        &app.post(&key_path, &root, json!({})).await,
        404,
        "not_found",
    );
    // Bad Idempotency-Key.
    let r = app
        .client
        .post(&url)
        .bearer_auth(&root)
        .header("Idempotency-Key", "")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::read(r).await, 400, "invalid_request");
    let r = app
        .client
        .post(&url)
        .bearer_auth(&root)
        .header("Idempotency-Key", "k".repeat(256))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::read(r).await, 400, "invalid_request");
    // Without a credential the answer is 401 whatever the key: nothing is judged for a caller
    // who has not said who they are.
    let r = app
        .client
        .post(&url)
        .header("Idempotency-Key", "")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::read(r).await, 401, "unauthorized");
}

/// An optional body may be absent or JSON `null` (as the description's `oneOf: [null, …]`
/// says); anything else must be the object.
#[tokio::test]
async fn optional_bodies_may_be_null() {
    let app = spawn_app().await;
    let root = app.root_token().await;
    let keys = format!("/control/v1/workspaces/{}/keys", app.root_ws);
    let created = app.post(&keys, &root, Value::Null).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = created.body["id"].as_str().unwrap();
    let rolled = app
        .post(&format!("{keys}/{key}/roll"), &root, Value::Null)
        .await;
    assert_eq!(rolled.status, 201, "{}", rolled.body);
    assert_error(
        &app.post(&keys, &root, json!([])).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn missing_and_garbled_credentials() {
    let app = spawn_app().await;
    let r = app
        .call(Method::GET, "/control/v1/workspaces", None, None)
        .await;
    assert_error(&r, 401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    for token in [
        "cst_forged",
        "wk_live_garbage",
        "nonsense",
        &app.root_key.replace("wk_live_", "wk_test_"),
    ] {
        assert_error(
            &app.get("/control/v1/workspaces", token).await,
            401,
            "unauthorized",
        );
    }
    let r = app
        .client
        .get(format!("{}/control/v1/workspaces", app.base))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::read(r).await, 401, "unauthorized");
}
