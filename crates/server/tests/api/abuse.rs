//! Abuse resistance over HTTP: floods from one address, oversized input, the audit log under a
//! flood, and the hashing pool at capacity.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::customer_auth::{call_with, customer_app, customer_app_on};
use crate::helpers::*;

const FAIL_WINDOW: Duration = Duration::from_secs(61);

/// Attempts an audit page accounts for: an entry is one; a fold's closing entry `repeated`.
fn attempts(entries: &[Value]) -> u64 {
    entries
        .iter()
        .map(|e| e["changes"]["repeated"].as_u64().unwrap_or(1))
        .sum()
}

async fn audit_of(app: &TestApp, ws: &str, token: &str, action: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/control/v1/workspaces/{ws}/audit?action={action}&limit=100"),
            token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn one_address_spraying_many_accounts_gets_429_not_endless_401() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for n in 0..30 {
        let r = app
            .call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": format!("user{n}@spray.test"), "password": "guess-guess"})),
            )
            .await;
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            assert_error(&r, 429, "rate_limit_exceeded");
        }
        statuses.push(r.status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn oversized_emails_and_passwords_are_400_before_any_work() {
    let app = spawn_app().await;
    // A megabyte, within the body limit.
    let huge = format!("{}@x.test", "a".repeat(1_000_000));
    for _ in 0..5 {
        let r = app
            .call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": huge, "password": "whatever-it-is"})),
            )
            .await;
        assert_error(&r, 400, "invalid_request");
        assert_eq!(r.body["error"]["details"]["field"], "email", "{}", r.body);
    }
    let r = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": "a@x.test", "password": "p".repeat(2000)})),
        )
        .await;
    assert_eq!(
        r.body["error"]["details"]["field"], "password",
        "{}",
        r.body
    );
    let c = customer_app(&app, "Sizes").await;
    for path in ["signin", "signup"] {
        let r = call_with(
            &app,
            Method::POST,
            &format!("/v1/{}/auth/{path}", c.app),
            Some(&c.pk),
            None,
            Some(json!({"email": huge, "password": "whatever-it-is"})),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
        assert_eq!(r.body["error"]["details"]["field"], "email", "{}", r.body);
    }
    // None of it counted as a failure: the address may still sign in.
    assert_eq!(
        app.call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": app.root_email, "password": app.root_password})),
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn a_login_flood_costs_the_audit_log_a_few_entries_and_the_count_is_exact() {
    let app = spawn_app().await;
    let t = app.tenant("Flooded").await;
    let flood = 200;
    for _ in 0..flood {
        let r = app
            .call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": t.owner_email, "password": "not the password"})),
            )
            .await;
        assert!(r.status == 401 || r.status == 429, "{}", r.body);
    }
    let now = audit_of(&app, &t.ws, &t.owner_token, "account.sign_in_failed").await;
    assert!(
        now.len() <= 2,
        "one entry per kind of refusal so far, not one per attempt: {}",
        now.len()
    );
    app.clock.advance(FAIL_WINDOW);
    app.state.audit.release_folds(false);
    let all = audit_of(&app, &t.ws, &t.owner_token, "account.sign_in_failed").await;
    assert!(all.len() <= 4, "{}", all.len());
    assert_eq!(attempts(&all), flood, "{all:#?}");
    let folded = all
        .iter()
        .find(|e| e["changes"]["repeated"].is_u64())
        .unwrap();
    assert_eq!(folded["changes"]["addresses"], json!(["127.0.0.1"]));
    let email = folded["changes"]["email"].as_str().unwrap();
    assert!(!email.contains('@'), "the email stays an HMAC: {email}");
}

#[tokio::test]
async fn publishable_keys_on_admin_routes_fold_their_denials() {
    let app = spawn_app().await;
    let c = customer_app(&app, "Denied").await;
    let ws = c.ws.clone();
    for _ in 0..50 {
        let r = call_with(
            &app,
            Method::GET,
            &format!("/v1/{}/users", c.app),
            None,
            Some(&c.pk),
            None,
        )
        .await;
        assert_error(&r, 403, "forbidden");
    }
    let now = audit_of(&app, &ws, &c.owner_token, "permission.denied").await;
    assert_eq!(now.len(), 1, "{now:#?}");
    app.clock.advance(FAIL_WINDOW);
    app.state.audit.release_folds(false);
    let all = audit_of(&app, &ws, &c.owner_token, "permission.denied").await;
    assert_eq!(all.len(), 2);
    assert_eq!(attempts(&all), 50);
}

#[tokio::test]
async fn refresh_and_sign_up_failures_lock_the_address() {
    let app = spawn_app().await;
    let c = customer_app(&app, "Probe").await;
    let base = format!("/v1/{}/auth", c.app);
    let user = json!({"email": "taken@probe.test", "password": "correct horse battery"});
    let r = call_with(
        &app,
        Method::POST,
        &format!("{base}/signup"),
        Some(&c.pk),
        None,
        Some(user.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Probing whether an email exists counts as a failure.
    for _ in 0..10 {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/signup"),
            Some(&c.pk),
            None,
            Some(user.clone()),
        )
        .await;
        assert_error(&r, 409, "conflict");
    }
    let mut statuses = Vec::new();
    for n in 0..15 {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/refresh"),
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": format!("rt_guess{n}")})),
        )
        .await;
        statuses.push(r.status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // The locked address is refused on every credential route of the application, before work.
    let r = call_with(
        &app,
        Method::POST,
        &format!("{base}/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "new@probe.test", "password": "correct horse battery"})),
    )
    .await;
    assert_error(&r, 429, "rate_limit_exceeded");
    let r = call_with(
        &app,
        Method::POST,
        &format!("{base}/signin"),
        Some(&c.pk),
        None,
        Some(user),
    )
    .await;
    assert_error(&r, 429, "rate_limit_exceeded");
    // Another application's users are not affected by this one's lock.
    let other = customer_app(&app, "Elsewhere").await;
    let r = call_with(
        &app,
        Method::POST,
        &format!("/v1/{}/auth/signup", other.app),
        Some(&other.pk),
        None,
        Some(json!({"email": "new@probe.test", "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn a_tenants_burst_gets_503_at_once_while_another_tenant_still_signs_in() {
    // One hashing thread, so the pool's bounds show with a small burst.
    let app = spawn_tuned(|s| s.hashing_memory_kib = 19 * 1024).await;
    let busy = customer_app(&app, "Bursting").await;
    let quiet = customer_app(&app, "Quiet").await;
    let credentials = json!({"email": "calm@quiet.test", "password": "correct horse battery"});
    let r = call_with(
        &app,
        Method::POST,
        &format!("/v1/{}/auth/signup", quiet.app),
        Some(&quiet.pk),
        None,
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let burst = (0..48).map(|n| {
        let app = &app;
        let busy = &busy;
        async move {
            call_with(
                app,
                Method::POST,
                &format!("/v1/{}/auth/signup", busy.app),
                Some(&busy.pk),
                None,
                Some(json!({"email": format!("u{n}@burst.test"), "password": "correct horse battery"})),
            )
            .await
        }
    });
    let sign_in_path = format!("/v1/{}/auth/signin", quiet.app);
    let sign_in = call_with(
        &app,
        Method::POST,
        &sign_in_path,
        Some(&quiet.pk),
        None,
        Some(credentials),
    );
    let (answers, signed_in) = tokio::join!(futures_util::future::join_all(burst), sign_in);
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let refused: Vec<&Response> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(answers.iter().all(|r| r.status == 201 || r.status == 503));
    assert!(!refused.is_empty(), "a burst beyond the queue is refused");
    assert!(answers.iter().any(|r| r.status == 201));
    for r in refused {
        assert_error(r, 503, "service_unavailable");
        assert_eq!(r.headers["retry-after"], "1");
    }
}

/// `GET /v1/{appId}` with `key`, from a client bound to the local address `from` (every
/// 127/8 address is the loopback).
async fn identify_from(app: &TestApp, from: &str, app_id: &str, key: &str) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    client
        .get(format!("{}/v1/{app_id}", app.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_publishable_key_is_limited_per_address_and_a_secret_key_per_key() {
    let app = spawn_app().await;
    // Free plan: 10 requests per second per key; the test's clock does not move.
    let c = customer_app_on(&app, "Public", "free").await;
    for key in [&c.pk, &c.sk] {
        for n in 0..10 {
            assert_eq!(
                identify_from(&app, "127.0.0.1", &c.app, key).await,
                200,
                "{n}"
            );
        }
        assert_eq!(identify_from(&app, "127.0.0.1", &c.app, key).await, 429);
    }
    // Someone exhausting the public key's budget from one address leaves the others theirs.
    assert_eq!(identify_from(&app, "127.0.0.2", &c.app, &c.pk).await, 200);
    // A secret key's budget is the key's wherever it is used from.
    assert_eq!(identify_from(&app, "127.0.0.2", &c.app, &c.sk).await, 429);
}

#[tokio::test]
async fn publishable_traffic_from_all_addresses_stays_under_the_applications_ceiling() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Ceiling", "enterprise").await;
    let ws = c.ws.clone();
    let root = app.root_token().await;
    let r = app
        .patch(
            &format!("/control/v1/admin/workspaces/{ws}"),
            &root,
            json!({"limits": {"requestsPerSecondPerKey": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // One request from each of 60 addresses, at once: each within its own budget of one, all
    // together against the ceiling of 20 per second (a burst of 20).
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((1..=60).map(|host| {
        let (app, c) = (&app, &c);
        async move { identify_from(app, &format!("127.0.1.{host}"), &c.app, &c.pk).await }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = answers.iter().filter(|s| **s == 200).count() as f64;
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 429),
        "{answers:?}"
    );
    // The limiter refills in real time: the ceiling is the burst plus what the time refilled.
    assert!(
        allowed <= 20.0 + (20.0 * elapsed).ceil() + 1.0,
        "{allowed} in {elapsed} s"
    );
    if elapsed < 1.5 {
        assert!(answers.contains(&429), "{answers:?} in {elapsed} s");
    }
}

#[tokio::test]
async fn the_plan_caps_live_keys_per_application() {
    let app = spawn_app().await;
    let c = customer_app_on(&app, "Keys", "free").await;
    let keys = format!("/control/v1/applications/{}/keys", c.app);
    // The application has two keys; the free plan allows ten.
    let mut last = String::new();
    for _ in 0..8 {
        let r = app
            .post(&keys, &c.owner_token, json!({"type": "publishable"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        last = r.body["id"].as_str().unwrap().to_owned();
    }
    let r = app
        .post(&keys, &c.owner_token, json!({"type": "secret"}))
        .await;
    assert_error(&r, 402, "payment_required");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10 live keys"));
    let revoked = app.delete(&format!("{keys}/{last}"), &c.owner_token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.body["revokedAt"].is_string());
    let r = app
        .post(&keys, &c.owner_token, json!({"type": "secret"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn an_address_lock_holds_on_every_replica() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let mut statuses = Vec::new();
    // Guesses at different accounts, alternating between the replicas.
    for n in 0..24 {
        let base = if n % 2 == 0 { &app.base } else { &second };
        let response = app
            .client
            .post(format!("{base}/control/v1/auth/login"))
            .json(&json!({"email": format!("user{n}@spray.test"), "password": "guess-guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn concurrent_guesses_get_no_more_than_the_free_attempts() {
    let app = spawn_app().await;
    let t = app.tenant("Concurrent").await;
    let guesses = (0..16).map(|n| {
        let (app, email) = (&app, &t.owner_email);
        async move {
            app.call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": email, "password": format!("guess number {n}")})),
            )
            .await
            .status
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    // Each guess is counted as it is let through: five are checked, the rest refused at once
    // (429 locked, or 503 when the hashing queue was full).
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
}
