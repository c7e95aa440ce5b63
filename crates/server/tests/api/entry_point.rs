//! The customer API's entry point: per-key rate limits from the workspace's plan (in process, and
//! shared through Redis), and the workspace's standing (suspended 403, past due 402).

use reqwest::Method;
use serde_json::json;

use crate::customer_auth::{customer_app_on, Customer};
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

/// A platform operator changes the application's workspace; the entry point sees it within
/// its one-second cache.
async fn set_standing(app: &TestApp, c: &Customer, patch: serde_json::Value) {
    let got = app
        .get(
            &format!("/control/v1/applications/{}", c.app),
            &c.owner_token,
        )
        .await;
    let ws = got.body["workspaceId"].as_str().unwrap();
    let root = app.root_token().await;
    let r = app
        .patch(&format!("/control/v1/admin/workspaces/{ws}"), &root, patch)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.clock.advance(std::time::Duration::from_millis(1100));
}

/// Sends requests as fast as it can until the first 429; returns (allowed, elapsed, the 429).
async fn until_limited(
    app: &TestApp,
    bases: &[String],
    app_id: &str,
    key: &str,
) -> (u32, f64, Response) {
    let started = std::time::Instant::now();
    let mut allowed = 0;
    for n in 0..200 {
        let r = identify_at(app, &bases[n % bases.len()], app_id, key).await;
        match r.status {
            200 => allowed += 1,
            429 => return (allowed, started.elapsed().as_secs_f64(), r),
            other => panic!("{other}: {}", r.body),
        }
    }
    panic!("never limited");
}

#[tokio::test]
async fn keys_are_rate_limited_by_plan_with_headers() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Limits", "free").await;
    let first = app.identify(&c.app, &c.sk).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-ratelimit-limit"], "10");
    assert_eq!(first.headers["x-ratelimit-remaining"], "9");
    assert_eq!(first.headers["x-ratelimit-reset"], "1");
    assert_eq!(first.headers["x-authsome-app-id"], c.app.as_str());
    let (allowed, elapsed, limited) =
        until_limited(&app, std::slice::from_ref(&app.base), &c.app, &c.sk).await;
    // GCRA: a burst of 10, then 10 per second.
    let bound = 9.0 + elapsed * 10.0 + 1.0;
    assert!(
        allowed >= 9 && f64::from(allowed) <= bound,
        "{allowed} allowed in {elapsed:.3}s"
    );
    assert_error(&limited, 429, "rate_limit_exceeded");
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    // Each key has its own budget; the control plane is not limited by it.
    assert_eq!(app.identify(&c.app, &c.pk).await.status, 200);
    assert_eq!(
        app.get(
            &format!("/control/v1/applications/{}", c.app),
            &c.owner_token
        )
        .await
        .status,
        200
    );
    app.clock.advance(std::time::Duration::from_millis(1050));
    assert_eq!(
        app.identify(&c.app, &c.sk).await.status,
        200,
        "the budget refills"
    );

    // Enterprise: as configured.
    set_standing(
        &app,
        &c,
        json!({"plan": "enterprise", "limits": {"requestsPerSecondPerKey": 3}}),
    )
    .await;
    let r = app.identify(&c.app, &c.pk).await;
    assert_eq!(r.headers["x-ratelimit-limit"], "3", "{:?}", r.headers);
}

#[tokio::test]
async fn workspace_standing_is_enforced_within_a_second() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Standing", "free").await;
    let ws = c.ws.clone();
    let admin = format!("/control/v1/admin/workspaces/{ws}");
    let root = app.root_token().await;
    assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);
    app.patch(&admin, &root, json!({"paymentStatus": "pastDue"}))
        .await;
    app.clock.advance(std::time::Duration::from_millis(1100));
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
    app.clock.advance(std::time::Duration::from_millis(1100));
    assert_error(&app.identify(&c.app, &c.sk).await, 403, "forbidden");
    app.patch(&admin, &root, json!({"status": "active"})).await;
    app.clock.advance(std::time::Duration::from_millis(1100));
    assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);
}

#[tokio::test]
async fn a_redis_limit_holds_across_replicas() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let c = customer_app_on(&app, "Shared Limit", "free").await;
    // A limit of 2 per second: two replicas with a budget each would allow 4 in a quick burst.
    set_standing(
        &app,
        &c,
        json!({"plan": "enterprise", "limits": {"requestsPerSecondPerKey": 2}}),
    )
    .await;
    let (allowed, elapsed, limited) =
        until_limited(&app, &[app.base.clone(), second], &c.app, &c.sk).await;
    assert_error(&limited, 429, "rate_limit_exceeded");
    let bound = 2.0 + (elapsed + 0.05) * 2.0;
    assert!(
        f64::from(allowed) <= bound,
        "{allowed} allowed in {elapsed:.3}s: the budget is shared"
    );
    assert!(allowed >= 2);
}

#[tokio::test]
async fn a_revoked_key_fails_on_every_replica_within_moments() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let c = customer_app_on(&app, "Revoke Everywhere", "pro").await;
    let keys = app
        .get(
            &format!("/control/v1/applications/{}/keys", c.app),
            &c.owner_token,
        )
        .await;
    let sk_id = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["type"] == "secret")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The second replica verifies (and caches) the key.
    assert_eq!(identify_at(&app, &second, &c.app, &c.sk).await.status, 200);
    // Revoked through the first replica.
    let revoked = app
        .delete(
            &format!("/control/v1/applications/{}/keys/{sk_id}", c.app),
            &c.owner_token,
        )
        .await;
    assert_eq!(revoked.status, 200);
    let started = std::time::Instant::now();
    loop {
        if identify_at(&app, &second, &c.app, &c.sk).await.status == 401 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the second replica still accepts the key (its cache would keep it 30 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn requests_are_metered_and_monthly_quotas_enforced() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Quota", "free").await;
    let usage_path = format!("/control/v1/applications/{}/usage", c.app);
    for _ in 0..4 {
        assert_eq!(app.identify(&c.app, &c.sk).await.status, 200);
    }
    let usage = app.get(&usage_path, &c.owner_token).await;
    assert_eq!(usage.body["requests"], 4, "{}", usage.body);
    // Counts are written in batches, and survive that.
    app.state.control.flush_request_counts().await.unwrap();
    assert_eq!(
        app.get(&usage_path, &c.owner_token).await.body["requests"],
        4
    );
    assert!(app
        .get(&format!("{usage_path}?month=2020-01"), &c.owner_token)
        .await
        .body
        .get("requests")
        .is_none());

    // An enterprise quota of 6 requests a month: two more pass, then 429 until next month.
    set_standing(
        &app,
        &c,
        json!({"plan": "enterprise", "limits": {"requestsPerMonth": 6}}),
    )
    .await;
    assert_eq!(app.identify(&c.app, &c.pk).await.status, 200);
    assert_eq!(app.identify(&c.app, &c.pk).await.status, 200);
    let over = app.identify(&c.app, &c.sk).await;
    assert_error(&over, 429, "rate_limit_exceeded");
    assert!(over.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("monthly quota"));
    let wait: u64 = over.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=31 * 24 * 3600).contains(&wait));
    assert_eq!(
        app.get(&usage_path, &c.owner_token).await.body["requests"],
        6,
        "refused requests are not counted"
    );
    // A key whose only request was refused was still used (its lastUsedAt says so).
    let (fresh_id, fresh) = app.key(&c.owner_token, &c.app, "secret").await;
    assert_error(
        &app.identify(&c.app, &fresh).await,
        429,
        "rate_limit_exceeded",
    );
    app.state.control.flush_key_usage().await.unwrap();
    let keys = app
        .get(
            &format!("/control/v1/applications/{}/keys", c.app),
            &c.owner_token,
        )
        .await;
    let listed = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == fresh_id.as_str())
        .unwrap();
    assert!(listed["lastUsedAt"].is_string(), "{listed}");
    // The quota is the workspace's: its other applications are over it too.
    let ws = c.ws.clone();
    let second = app.application(&c.owner_token, &ws, "staging").await;
    let (_, second_key) = app.key(&c.owner_token, &second, "secret").await;
    let over = app.identify(&second, &second_key).await;
    assert_error(&over, 429, "rate_limit_exceeded");
}

#[tokio::test]
async fn a_signature_used_on_one_replica_is_refused_on_the_other() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let c = customer_app_on(&app, "Signed Twice", "pro").await;
    let (key_id, secret) = app.key(&c.owner_token, &c.app, "secret").await;
    let path = format!("/v1/{}", c.app);
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = authsome_domain::keys::signing::sign(
        &secret,
        "GET",
        &path,
        &ts,
        &authsome_domain::keys::signing::body_digest(b""),
    );
    let send = |base: String| {
        let client = app.client.clone();
        let (path, key_id, ts, signature) =
            (path.clone(), key_id.clone(), ts.clone(), signature.clone());
        async move {
            TestApp::read(
                client
                    .get(format!("{base}{path}"))
                    .header("X-Api-Key-Id", key_id)
                    .header("X-Timestamp", ts)
                    .header("X-Signature", signature)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(send(app.base.clone()).await.status, 200);
    assert_error(&send(second).await, 401, "unauthorized");
}
