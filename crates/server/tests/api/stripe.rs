//! Stripe against `localstripe` (a local server speaking Stripe's API), with the one endpoint
//! it lacks, billing meter events, answered by a small server in this test that forwards
//! everything else to it: a workspace going pro becomes a customer with a subscription (which
//! waits until the customer has a card), and a closed month's usage reaches Stripe as meter
//! events, kept and sent again while Stripe is down, with the same identifiers every time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{Datelike, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

#[derive(Clone, Default)]
struct Meter {
    /// Every meter event received, as its form fields (retries included).
    received: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// The identifier of every meter event tried, refused ones included.
    tried: Arc<Mutex<Vec<String>>>,
    /// Requests to answer 503 before accepting again.
    failing: Arc<AtomicUsize>,
    localstripe: String,
}

async fn front(
    State(meter): State<Meter>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if uri.path() == "/v1/billing/meter_events" {
        let fields: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        meter
            .tried
            .lock()
            .unwrap()
            .push(fields.get("identifier").cloned().unwrap_or_default());
        if meter
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"message": "down"}})),
            )
                .into_response();
        }
        let answer = json!({
            "object": "billing.meter_event",
            "event_name": fields.get("event_name"),
            "identifier": fields.get("identifier"),
            "payload": {"stripe_customer_id": fields.get("payload[stripe_customer_id]"), "value": fields.get("payload[value]")},
        });
        meter.received.lock().unwrap().push(fields);
        return axum::Json(answer).into_response();
    }
    let mut forwarded = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        format!(
            "{}{}",
            meter.localstripe,
            uri.path_and_query().map_or("", |p| p.as_str())
        ),
    );
    for name in ["authorization", "content-type", "idempotency-key"] {
        if let Some(v) = headers.get(name) {
            forwarded = forwarded.header(name, v.to_str().unwrap());
        }
    }
    let answer = forwarded.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (
        status,
        [("content-type", "application/json")],
        answer.bytes().await.unwrap(),
    )
        .into_response()
}

async fn stripe_front(localstripe: &str) -> (String, Meter) {
    let meter = Meter {
        localstripe: localstripe.to_owned(),
        ..Meter::default()
    };
    let app = axum::Router::new()
        .fallback(front)
        .with_state(meter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, meter)
}

/// localstripe, as the test reads it (the secret key is any).
async fn stripe_get(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth("sk_test_authsome")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stripe_post(base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth("sk_test_authsome")
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn paying_workspaces_subscribe_and_send_each_months_usage_once() {
    let Some(localstripe) = authsome_testkit::stripe::LocalStripe::start() else {
        return;
    };
    let (front_url, meter) = stripe_front(&localstripe.url).await;
    let base = front_url.clone();
    let app = spawn_configured(move |s| {
        s.stripe.secret_key = Some(zeroize::Zeroizing::new("sk_test_authsome".to_owned()));
        s.stripe.api_base = Some(base);
    })
    .await;
    let t = app.tenant("Stripe Paying Co").await;
    let owner_password = format!("pw-{}-long-enough", t.owner_email);
    app.admin_patch_workspace(&t.ws, json!({"plan": "pro"}))
        .await;
    // The job makes the customer; the subscription waits for a card.
    app.state.control.maintain().await.unwrap();
    let billing_path = format!("/control/v1/workspaces/{}/billing", t.ws);
    let billing = app.get(&billing_path, &t.owner_token).await;
    let customer = billing.body["stripeCustomerId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(customer.starts_with("cus_"), "{}", billing.body);
    assert!(billing.body["subscriptionId"].is_null(), "{}", billing.body);
    let at_stripe = stripe_get(&localstripe.url, &format!("/v1/customers/{customer}")).await;
    assert_eq!(at_stripe["metadata"]["workspace_id"], t.ws.as_str());
    assert_eq!(at_stripe["name"], "Stripe Paying Co");
    // The customer adds a card on Stripe's pages; the retried job subscribes them.
    let token = stripe_post(
        &localstripe.url,
        "/v1/tokens",
        &[
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2035"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    stripe_post(
        &localstripe.url,
        &format!("/v1/customers/{customer}/sources"),
        &[("source", token["id"].as_str().unwrap())],
    )
    .await;
    app.clock.advance(std::time::Duration::from_secs(61));
    app.state.control.maintain().await.unwrap();
    let owner = app.login(&t.owner_email, &owner_password).await;
    let billing = app.get(&billing_path, &owner).await;
    let subscription = billing.body["subscriptionId"].as_str().unwrap().to_owned();
    let at_stripe = stripe_get(
        &localstripe.url,
        &format!("/v1/subscriptions/{subscription}"),
    )
    .await;
    assert_eq!(at_stripe["customer"], customer.as_str());
    assert_eq!(at_stripe["items"]["data"][0]["plan"]["id"], "authsome_pro");
    assert_eq!(at_stripe["items"]["data"][0]["plan"]["amount"], 2_500);

    // Two users this month.
    let application = app.application(&owner, &t.ws, "development").await;
    let (_, pk) = app.key(&owner, &application, "publishable").await;
    crate::billing::sign_up_all(&app, &application, &pk, &["a@stripe.test", "b@stripe.test"]).await;
    let month = authsome_domain::identity::month_of(app.clock.now());

    // The month ends while Stripe is down: the invoice closes, its usage waits.
    meter.failing.store(2, Ordering::SeqCst);
    let now = app.clock.now();
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next = Utc.with_ymd_and_hms(y, m, 1, 0, 11, 0).unwrap();
    app.clock.advance((next - now).to_std().unwrap());
    app.state.control.maintain().await.unwrap();
    assert!(meter.received.lock().unwrap().is_empty());
    let owner = app.login(&t.owner_email, &owner_password).await;
    let invoices = app
        .get(&format!("/control/v1/workspaces/{}/invoices", t.ws), &owner)
        .await;
    let closed = invoices.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["month"] == month.as_str())
        .unwrap()
        .clone();
    assert_eq!(closed["status"], "closed");
    let invoice_id = closed["id"].as_str().unwrap();
    // Stripe is back after the retry's wait: sent, each figure once, with its identifier.
    for _ in 0..3 {
        app.clock.advance(std::time::Duration::from_secs(61));
        app.state.control.maintain().await.unwrap();
    }
    let received = meter.received.lock().unwrap().clone();
    let by_name: HashMap<&str, &HashMap<String, String>> = received
        .iter()
        .map(|f| (f["event_name"].as_str(), f))
        .collect();
    assert_eq!(
        received.len(),
        by_name.len(),
        "no figure sent twice once accepted: {received:?}"
    );
    let mau = by_name["authsome_mau"];
    assert_eq!(mau["payload[value]"], "2");
    assert_eq!(mau["payload[stripe_customer_id]"], customer);
    assert_eq!(mau["identifier"], format!("{invoice_id}:authsome_mau"));
    let requests = by_name["authsome_requests"];
    assert_eq!(
        requests["payload[value]"],
        closed["usage"]["requests"].as_u64().unwrap().to_string()
    );
    // Timestamped within the month it bills.
    let stamp: i64 = mau["timestamp"].parse().unwrap();
    assert_eq!(
        authsome_domain::identity::month_of(chrono::DateTime::from_timestamp(stamp, 0).unwrap()),
        month
    );
    // The refused tries carried the identifiers that were then accepted: Stripe counts each once.
    let tried = meter.tried.lock().unwrap().clone();
    assert!(tried.len() > received.len(), "{tried:?}");
    let accepted: std::collections::HashSet<&String> =
        received.iter().map(|f| &f["identifier"]).collect();
    assert!(tried.iter().all(|id| accepted.contains(id)), "{tried:?}");
    // Nothing more is sent for that month.
    app.clock.advance(std::time::Duration::from_secs(3_600));
    app.state.control.maintain().await.unwrap();
    assert_eq!(meter.received.lock().unwrap().len(), received.len());
}
