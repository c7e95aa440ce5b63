//! The customer API's entry point: per-key rate limits from the workspace's plan (in process, and
//! shared through Redis), and the workspace's standing (suspended 403, past due 402).

use reqwest::Method;
use serde_json::json;

use crate::customer_auth::customer_app_on;
use crate::helpers::*;

async fn identify_at(app: &TestApp, base: &str, app_id: &str, key: &str) -> Response {
    let r = app
        .client
        .get(format!("{base}/v1/{app_id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    TestApp::read(r).await
}

#[tokio::test]
async fn keys_are_rate_limited_by_plan_with_headers() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Limits", "free").await;
    for n in 0..10u32 {
        let r = app.identify(&c.app, &c.sk).await;
        assert_eq!(r.status, 200, "request {n}: {}", r.body);
        assert_eq!(r.headers["x-ratelimit-limit"], "10");
        assert_eq!(
            r.headers["x-ratelimit-remaining"],
            (9 - n).to_string().as_str()
        );
        assert_eq!(r.headers["x-authsome-app-id"], c.app.as_str());
        assert!(r.headers.get("x-ratelimit-reset").is_some());
    }
    let limited = app.identify(&c.app, &c.sk).await;
    assert_error(&limited, 429, "rate_limit_exceeded");
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    // Each key has its own budget.
    assert_eq!(app.identify(&c.app, &c.pk).await.status, 200);
    // The control plane is not limited by the customer-API budget.
    assert_eq!(
        app.get(
            &format!("/control/v1/applications/{}", c.app),
            &c.owner_token
        )
        .await
        .status,
        200
    );
    // After a second the budget is back.
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);

    // Pro: 100 per second; enterprise: as configured.
    let ws = app
        .get(
            &format!("/control/v1/applications/{}", c.app),
            &c.owner_token,
        )
        .await
        .body["workspaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let root = app.root_token().await;
    app.patch(
        &format!("/control/v1/admin/workspaces/{ws}"),
        &root,
        json!({"plan": "enterprise", "limits": {"requestsPerSecondPerKey": 3}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app.identify(&c.app, &c.pk).await;
    assert_eq!(r.headers["x-ratelimit-limit"], "3", "{:?}", r.headers);
}

#[tokio::test]
async fn workspace_standing_is_enforced_within_a_second() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Standing", "free").await;
    let ws = app
        .get(
            &format!("/control/v1/applications/{}", c.app),
            &c.owner_token,
        )
        .await
        .body["workspaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = format!("/control/v1/admin/workspaces/{ws}");
    let root = app.root_token().await;
    assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);
    app.patch(&admin, &root, json!({"paymentStatus": "pastDue"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&app.identify(&c.app, &c.sk).await, 402, "payment_required");
    let jwks = app
        .call(
            Method::GET,
            &format!("/v1/{}/.well-known/jwks.json", c.app),
            None,
            None,
        )
        .await;
    assert_error(&jwks, 402, "payment_required");
    app.patch(
        &admin,
        &root,
        json!({"paymentStatus": "current", "status": "suspended"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&app.identify(&c.app, &c.sk).await, 403, "forbidden");
    app.patch(&admin, &root, json!({"status": "active"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);
}

#[tokio::test]
async fn a_redis_limit_holds_across_replicas() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let c = customer_app_on(&app, "Shared Limit", "free").await;
    let mut allowed = 0;
    let mut denied = 0;
    for n in 0..14 {
        let base = if n % 2 == 0 {
            app.base.clone()
        } else {
            second.clone()
        };
        let r = identify_at(&app, &base, &c.app, &c.sk).await;
        match r.status {
            200 => allowed += 1,
            429 => denied += 1,
            other => panic!("{other}: {}", r.body),
        }
    }
    assert_eq!(
        (allowed, denied),
        (10, 4),
        "one budget of 10 shared by both replicas"
    );
}
