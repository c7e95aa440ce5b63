//! Invoices over HTTP: the running month's draft (its fee pro-rated from the day the workspace
//! went pro), closing a month once (by an operator, then by itself), late usage charged as a
//! correction on the next invoice, the three formats, and who may see them.

use authsome_domain::id::{ApplicationId, KeyId};
use chrono::{Datelike, TimeZone, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::customer_auth::call_with;
use crate::helpers::*;

/// The start of the month after `t`'s.
fn next_month(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap()
}

/// Moves the test clock to eleven minutes into the next month (past the automatic close's wait).
fn into_next_month(app: &TestApp) -> String {
    let now = app.clock.now();
    let target = next_month(now) + chrono::Duration::minutes(11);
    app.clock.advance((target - now).to_std().unwrap());
    authsome_domain::identity::month_of(app.clock.now())
}

async fn raw(app: &TestApp, path: &str, token: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// Signs each of `emails` up to `application` with its publishable key `pk`.
pub(crate) async fn sign_up_all(app: &TestApp, application: &str, pk: &str, emails: &[&str]) {
    for email in emails {
        let r = call_with(
            app,
            Method::POST,
            &format!("/v1/{application}/auth/signup"),
            Some(pk),
            None,
            Some(json!({"email": email, "password": "correct horse battery"})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

fn lines_of<'a>(invoice: &'a Value, kind: &str) -> Vec<&'a Value> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn months_close_once_into_invoices_with_late_usage_corrected_next_month() {
    let app = spawn_app().await;
    let t = app.tenant("Billing Co").await;
    let owner_password = format!("pw-{}-long-enough", t.owner_email);
    let created = app.clock.now();
    let root = app.root_token().await;
    app.admin_patch_workspace(&t.ws, json!({"plan": "pro"}))
        .await;
    let owner = t.owner_token.clone();
    let application = app.application(&owner, &t.ws, "development").await;
    let (key_id, pk) = app.key(&owner, &application, "publishable").await;
    sign_up_all(
        &app,
        &application,
        &pk,
        &["a@billing.test", "b@billing.test", "c@billing.test"],
    )
    .await;
    // The maintenance loop samples each application's database size once a day.
    app.state.control.maintain().await.unwrap();
    let usage = app
        .get(&format!("/control/v1/workspaces/{}/usage", t.ws), &owner)
        .await;
    let stored = usage.body["applications"][0]["storageBytes"]
        .as_u64()
        .unwrap();
    assert!(stored > 0, "{}", usage.body);
    assert_eq!(
        usage.body["totals"]["storageBytes"].as_u64().unwrap(),
        stored
    );

    // The running month: a draft, its fee for the days on pro.
    let billing = app
        .get(&format!("/control/v1/workspaces/{}/billing", t.ws), &owner)
        .await;
    assert_eq!(billing.status, 200, "{}", billing.body);
    assert_eq!(billing.body["plan"], "pro");
    assert_eq!(billing.body["paymentStatus"], "current");
    let month = authsome_domain::identity::month_of(created);
    assert_eq!(billing.body["currentPeriod"]["month"], month.as_str());
    let draft_id = billing.body["currentPeriod"]["draftInvoiceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(draft_id.starts_with("ivc_"));
    let draft = app
        .get(&format!("/control/v1/invoices/{draft_id}"), &owner)
        .await;
    assert_eq!(draft.status, 200, "{}", draft.body);
    assert_eq!(draft.body["status"], "draft");
    assert_eq!(draft.body["currency"], "usd");
    let days = (next_month(created)
        - Utc
            .with_ymd_and_hms(created.year(), created.month(), 1, 0, 0, 0)
            .unwrap())
    .num_days() as u64;
    let on_pro = days - u64::from(created.day()) + 1;
    let fee = (on_pro * 2_500 * 2 + days) / (2 * days);
    assert_eq!(
        lines_of(&draft.body, "base")[0]["amountCents"],
        fee,
        "{}",
        draft.body
    );
    let users = lines_of(&draft.body, "mau");
    assert_eq!(users[0]["quantity"], 3, "{}", draft.body);
    assert_eq!(
        draft.body["totalCents"], fee,
        "three users are within the included"
    );
    assert_eq!(draft.body["usage"]["mau"], 3);
    assert!(draft.body["usage"]["storageByteDays"].as_u64().unwrap() >= stored);

    // Only owners and operators see billing; another workspace learns nothing.
    let (_, admin) = app
        .add_member(&owner, &t.ws, "admin@billing.test", "admin")
        .await;
    assert_error(
        &app.get(&format!("/control/v1/workspaces/{}/billing", t.ws), &admin)
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &app.get(&format!("/control/v1/invoices/{draft_id}"), &admin)
            .await,
        403,
        "forbidden",
    );
    let outsider = app.tenant("Billing Outsider").await;
    assert_error(
        &app.get(
            &format!("/control/v1/invoices/{draft_id}"),
            &outsider.owner_token,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(
            &format!("/control/v1/workspaces/{}/invoices", t.ws),
            &outsider.owner_token,
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(
        app.get(&format!("/control/v1/invoices/{draft_id}"), &root)
            .await
            .status,
        200
    );
    assert_error(
        &app.get(
            &format!("/control/v1/invoices/{draft_id}?format=pdf"),
            &owner,
        )
        .await,
        400,
        "invalid_request",
    );
    // A month is closed after it ends, and only by operators.
    let close = |m: &str| format!("/control/v1/admin/billing/close?month={m}");
    assert_error(
        &app.post(&close(&month), &root, json!({})).await,
        409,
        "conflict",
    );
    assert_error(
        &app.post(&close(&month), &owner, json!({})).await,
        404,
        "not_found",
    );

    // The month ends; an operator closes it: the draft becomes the closed invoice, same id.
    let next = into_next_month(&app);
    let root = app.root_token().await;
    let owner = app.login(&t.owner_email, &owner_password).await;
    let closed = app.post(&close(&month), &root, json!({})).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert!(
        closed.body["closed"].as_u64().unwrap() >= 1,
        "{}",
        closed.body
    );
    let again = app.post(&close(&month), &root, json!({})).await;
    assert_eq!(
        again.body["closed"], 0,
        "closing twice changes nothing: {}",
        again.body
    );
    let invoice = app
        .get(&format!("/control/v1/invoices/{draft_id}"), &owner)
        .await;
    assert_eq!(invoice.body["status"], "closed", "{}", invoice.body);
    assert!(invoice.body["closedAt"].is_string());
    assert_eq!(invoice.body["totalCents"], fee);
    let billed_requests = invoice.body["usage"]["requests"].as_u64().unwrap();

    // Another replica's batch of that month arrives late: the closed invoice stays as it was,
    // and the next month's draft charges it as a correction.
    let late_hour = next_month(created).timestamp() / 3600 - 2;
    assert!(app
        .state
        .control
        .store()
        .add_request_counts(
            "late-replica-batch",
            &[(
                application.parse::<ApplicationId>().unwrap(),
                key_id.parse::<KeyId>().unwrap(),
                late_hour,
                500,
            )],
            app.clock.now(),
        )
        .await
        .unwrap());
    let unchanged = app
        .get(&format!("/control/v1/invoices/{draft_id}"), &owner)
        .await;
    assert_eq!(
        unchanged.body, invoice.body,
        "a closed invoice never changes"
    );
    let billing = app
        .get(&format!("/control/v1/workspaces/{}/billing", t.ws), &owner)
        .await;
    assert_eq!(billing.body["currentPeriod"]["month"], next.as_str());
    let next_id = billing.body["currentPeriod"]["draftInvoiceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(next_id, draft_id);
    let next_draft = app
        .get(&format!("/control/v1/invoices/{next_id}"), &owner)
        .await;
    let correction = lines_of(&next_draft.body, "correction");
    assert_eq!(correction.len(), 1, "{}", next_draft.body);
    assert_eq!(
        correction[0]["description"],
        format!("Usage of {month} counted after it was closed: 500 requests")
    );
    assert_eq!(
        next_draft.body["correction"]["billed"]["requests"],
        billed_requests
    );
    assert_eq!(
        next_draft.body["correction"]["counted"]["requests"],
        billed_requests + 500
    );

    // The formats: CSV lines and total, a printable page that runs nothing.
    let (status, headers, csv) = raw(
        &app,
        &format!("/control/v1/invoices/{draft_id}?format=csv"),
        &owner,
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.starts_with("kind,description,quantity,unitAmountDecimal,amountCents\n"));
    assert!(csv.contains("\nbase,"), "{csv}");
    assert!(csv.ends_with(&format!("total,,,,{fee}\n")), "{csv}");
    let (status, headers, html) = raw(
        &app,
        &format!("/control/v1/invoices/{draft_id}?format=html"),
        &owner,
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(html.contains("Invoice for Billing Co"), "{html}");
    assert!(html.contains(&draft_id));

    // The next month ends too and closes by itself; its invoice carries the correction, and
    // the one after has nothing more to correct.
    into_next_month(&app);
    app.state.control.maintain().await.unwrap();
    let owner = app.login(&t.owner_email, &owner_password).await;
    let closed_next = app
        .get(&format!("/control/v1/invoices/{next_id}"), &owner)
        .await;
    assert_eq!(closed_next.body["status"], "closed", "{}", closed_next.body);
    assert_eq!(lines_of(&closed_next.body, "correction").len(), 1);
    let list = app
        .get(&format!("/control/v1/workspaces/{}/invoices", t.ws), &owner)
        .await;
    let statuses: Vec<(String, String)> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["month"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert_eq!(statuses[0], (month.clone(), "closed".to_owned()));
    assert_eq!(statuses[1], (next.clone(), "closed".to_owned()));
    assert_eq!(statuses[2].1, "draft");
    let latest = &list.body["data"][2];
    assert!(lines_of(latest, "correction").is_empty(), "{latest}");
}

#[tokio::test]
async fn an_enterprise_workspace_is_billed_at_its_own_prices() {
    let app = spawn_app().await;
    let t = app.tenant("Enterprise Co").await;
    let root = app.root_token().await;
    let admin = format!("/control/v1/admin/workspaces/{}", t.ws);
    let pricing = json!({"baseCents": 3_000, "includedMau": 1, "mauCents": 7});
    // Prices come with enterprise limits only, and within bounds.
    assert_error(
        &app.patch(
            &admin,
            &root,
            json!({"plan": "pro", "limits": {"pricing": pricing}}),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &app
            .patch(
                &admin,
                &root,
                json!({"plan": "enterprise", "limits": {"pricing": {"baseCents": 1, "includedMau": 1, "mauCents": 2_000_000}}}),
            )
            .await,
        400,
        "invalid_request",
    );
    let set = app
        .patch(
            &admin,
            &root,
            json!({"plan": "enterprise", "limits": {"pricing": pricing}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["limits"]["pricing"]["mauCents"], 7);
    let owner = t.owner_token.clone();
    let application = app.application(&owner, &t.ws, "development").await;
    let (_, pk) = app.key(&owner, &application, "publishable").await;
    sign_up_all(
        &app,
        &application,
        &pk,
        &["a@ent.test", "b@ent.test", "c@ent.test"],
    )
    .await;
    let billing = app
        .get(&format!("/control/v1/workspaces/{}/billing", t.ws), &owner)
        .await;
    let id = billing.body["currentPeriod"]["draftInvoiceId"]
        .as_str()
        .unwrap();
    let draft = app.get(&format!("/control/v1/invoices/{id}"), &owner).await;
    assert_eq!(draft.body["plan"], "enterprise");
    assert_eq!(draft.body["pricing"]["baseCents"], 3_000);
    let beyond = lines_of(&draft.body, "mau")
        .into_iter()
        .find(|l| l["amountCents"].as_u64().unwrap() > 0)
        .cloned()
        .unwrap();
    assert_eq!(
        (beyond["quantity"].as_u64(), beyond["amountCents"].as_u64()),
        (Some(2), Some(14))
    );
    let fee = lines_of(&draft.body, "base")[0]["amountCents"]
        .as_u64()
        .unwrap();
    assert_eq!(draft.body["totalCents"].as_u64().unwrap(), fee + 14);
}

#[tokio::test]
async fn free_sign_ups_stop_at_the_plans_users_while_existing_users_sign_in() {
    let app = spawn_app().await;
    let t = app.tenant("Free Co").await;
    let owner = t.owner_token.clone();
    let application = app.application(&owner, &t.ws, "development").await;
    let (_, pk) = app.key(&owner, &application, "publishable").await;
    let auth = |what: &'static str, email: &'static str| {
        let app = &app;
        let pk = pk.clone();
        let path = format!("/v1/{application}/auth/{what}");
        async move {
            call_with(
                app,
                Method::POST,
                &path,
                Some(&pk),
                None,
                Some(json!({"email": email, "password": "correct horse battery"})),
            )
            .await
        }
    };
    assert_eq!(auth("signup", "first@free.test").await.status, 201);
    // Another 9,999 users were active this month (as their sign-ins recorded them).
    let month = authsome_domain::identity::month_of(app.clock.now());
    let now = app.clock.now();
    let others: Vec<(String, authsome_domain::id::UserId, chrono::DateTime<Utc>)> = (0..9_999)
        .map(|_| (month.clone(), authsome_domain::id::UserId::new(), now))
        .collect();
    app.state
        .identity
        .databases()
        .open(&application.parse().unwrap())
        .await
        .unwrap()
        .record_active_users(&others)
        .await
        .unwrap();
    // Counted again after a minute: the 10,001st user is refused, naming the limit.
    app.clock.advance(std::time::Duration::from_secs(61));
    let refused = auth("signup", "one-too-many@free.test").await;
    assert_error(&refused, 402, "payment_required");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the free plan allows 10000 monthly active users"),
        "{}",
        refused.body
    );
    // Who exists keeps signing in.
    assert_eq!(auth("signin", "first@free.test").await.status, 200);
    // On pro, users beyond those included are billed instead.
    app.admin_patch_workspace(&t.ws, json!({"plan": "pro"}))
        .await;
    assert_eq!(auth("signup", "one-too-many@free.test").await.status, 201);
}

const WEBHOOK_SECRET: &str = "whsec_billing_test_secret";

async fn deliver(app: &TestApp, event: &Value, secret: &str, at: i64) -> Response {
    let body = event.to_string();
    let signature = authsome_billing::stripe::sign(body.as_bytes(), secret, at);
    let r = app
        .client
        .post(format!("{}/control/v1/billing/stripe/webhook", app.base))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::read(r).await
}

fn stripe_event(id: &str, kind: &str, customer: &str) -> Value {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "data": {"object": {"object": "invoice", "id": "in_1", "customer": customer}}
    })
}

#[tokio::test]
async fn stripe_webhooks_apply_once_and_only_when_signed() {
    let app = spawn_configured(|s| {
        s.stripe.webhook_secret = Some(zeroize::Zeroizing::new(WEBHOOK_SECRET.to_owned()));
    })
    .await;
    let t = app.tenant("Stripe Co").await;
    let root = app.root_token().await;
    let admin = format!("/control/v1/admin/workspaces/{}", t.ws);
    assert_eq!(
        app.patch(&admin, &root, json!({"plan": "pro"}))
            .await
            .status,
        200
    );
    let ws: authsome_domain::id::WorkspaceId = t.ws.parse().unwrap();
    app.state
        .control
        .store()
        .set_stripe_customer(
            &ws,
            &authsome_storage::StripeCustomer {
                customer_id: "cus_stripe_co".into(),
                subscription_id: Some("sub_stripe_co".into()),
            },
            app.clock.now(),
        )
        .await
        .unwrap();
    let owner = t.owner_token.clone();
    let application = app.application(&owner, &t.ws, "development").await;
    let (_, pk) = app.key(&owner, &application, "publishable").await;
    let now = app.clock.now().timestamp();
    let standing = || {
        let (app, root, admin) = (&app, root.clone(), admin.clone());
        async move {
            let w = app.get(&admin, &root).await;
            (
                w.body["paymentStatus"].as_str().unwrap().to_owned(),
                w.body["plan"].as_str().unwrap().to_owned(),
            )
        }
    };

    // A payment fails: past due, and the customer API answers 402.
    let failed = stripe_event("evt_failed_1", "invoice.payment_failed", "cus_stripe_co");
    let r = deliver(&app, &failed, WEBHOOK_SECRET, now).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["applied"], true);
    assert_eq!(standing().await, ("pastDue".into(), "pro".into()));
    assert_error(
        &app.identify(&application, &pk).await,
        402,
        "payment_required",
    );
    let billing = app
        .get(&format!("/control/v1/workspaces/{}/billing", t.ws), &owner)
        .await;
    assert_eq!(billing.body["paymentStatus"], "pastDue");
    assert_eq!(billing.body["stripeCustomerId"], "cus_stripe_co");
    assert_eq!(billing.body["subscriptionId"], "sub_stripe_co");

    // Bad, stale and missing signatures: 400, nothing changed.
    let paid = stripe_event("evt_paid_1", "invoice.paid", "cus_stripe_co");
    assert_error(
        &deliver(&app, &paid, "whsec_wrong", now).await,
        400,
        "invalid_request",
    );
    assert_error(
        &deliver(&app, &paid, WEBHOOK_SECRET, now - 301).await,
        400,
        "invalid_request",
    );
    let unsigned = app
        .client
        .post(format!("{}/control/v1/billing/stripe/webhook", app.base))
        .body(paid.to_string())
        .send()
        .await
        .unwrap();
    assert_error(&TestApp::read(unsigned).await, 400, "invalid_request");
    assert_eq!(standing().await.0, "pastDue");

    // Paid: current again. The failure delivered again (Stripe retries) has no second effect.
    let r = deliver(&app, &paid, WEBHOOK_SECRET, now).await;
    assert_eq!((r.status, r.body["applied"].as_bool()), (200, Some(true)));
    let again = deliver(&app, &failed, WEBHOOK_SECRET, now + 5).await;
    assert_eq!(
        (again.status, again.body["applied"].as_bool()),
        (200, Some(false))
    );
    assert_eq!(standing().await.0, "current");
    assert_eq!(app.identify(&application, &pk).await.status, 200);

    // Another customer's event, or one this deployment does not act on: acknowledged only.
    let stranger = stripe_event("evt_other", "invoice.payment_failed", "cus_unknown");
    assert_eq!(
        deliver(&app, &stranger, WEBHOOK_SECRET, now).await.status,
        200
    );
    let ignored = stripe_event("evt_ignored", "invoice.created", "cus_stripe_co");
    assert_eq!(
        deliver(&app, &ignored, WEBHOOK_SECRET, now).await.status,
        200
    );
    assert_eq!(standing().await, ("current".into(), "pro".into()));

    // The subscription is cancelled: back to free.
    let deleted = json!({
        "id": "evt_deleted",
        "type": "customer.subscription.deleted",
        "data": {"object": {"object": "subscription", "id": "sub_stripe_co", "customer": "cus_stripe_co"}}
    });
    assert_eq!(
        deliver(&app, &deleted, WEBHOOK_SECRET, now).await.status,
        200
    );
    assert_eq!(standing().await, ("current".into(), "free".into()));
    let billing = app
        .get(&format!("/control/v1/workspaces/{}/billing", t.ws), &owner)
        .await;
    assert!(billing.body["subscriptionId"].is_null(), "{}", billing.body);

    // Without a webhook secret configured the route does not exist.
    let plain = spawn_app().await;
    assert_error(
        &deliver(&plain, &paid, WEBHOOK_SECRET, now).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn usage_thresholds_alert_once_per_threshold_and_month() {
    let app = spawn_app().await;
    let t = app.tenant("Threshold Co").await;
    let owner = t.owner_token.clone();
    let application = app.application(&owner, &t.ws, "development").await;
    let (key_id, pk) = app.key(&owner, &application, "publishable").await;
    let app_id: ApplicationId = application.parse().unwrap();
    let month = authsome_domain::identity::month_of(app.clock.now());
    let seed_users = |n: usize| {
        let app = &app;
        let app_id = app_id.clone();
        let month = month.clone();
        async move {
            let now = app.clock.now();
            let users: Vec<(String, authsome_domain::id::UserId, chrono::DateTime<Utc>)> = (0..n)
                .map(|_| (month.clone(), authsome_domain::id::UserId::new(), now))
                .collect();
            app.state
                .identity
                .databases()
                .open(&app_id)
                .await
                .unwrap()
                .record_active_users(&users)
                .await
                .unwrap();
        }
    };
    // A request marks the workspace for the next look; the look is at most once a minute.
    let look = || async {
        assert_eq!(app.identify(&application, &pk).await.status, 200);
        app.clock.advance(std::time::Duration::from_secs(61));
        app.state.control.maintain().await.unwrap();
    };
    let thresholds = || async {
        let owner = app
            .login(&t.owner_email, &format!("pw-{}-long-enough", t.owner_email))
            .await;
        let alerts = app
            .get(&format!("/control/v1/workspaces/{}/alerts", t.ws), &owner)
            .await;
        let mut found: Vec<(String, u64, String)> = alerts.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "usage.threshold")
            .map(|a| {
                (
                    a["details"]["metric"].as_str().unwrap().to_owned(),
                    a["details"]["percent"].as_u64().unwrap(),
                    a["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        found
    };
    // 8,000 of the free plan's 10,000 users, and 80,000 of its 100,000 requests (another
    // replica's batch).
    seed_users(8_000).await;
    let hour = app.clock.now().timestamp() / 3600;
    app.state
        .control
        .store()
        .add_request_counts(
            "replica-b-1",
            &[(
                app_id.clone(),
                key_id.parse::<KeyId>().unwrap(),
                hour,
                80_000,
            )],
            app.clock.now(),
        )
        .await
        .unwrap();
    look().await;
    let warned = vec![
        ("monthly active users".to_owned(), 80, "warning".to_owned()),
        ("requests".to_owned(), 80, "warning".to_owned()),
    ];
    assert_eq!(thresholds().await, warned);
    // Looking again raises nothing new.
    look().await;
    assert_eq!(thresholds().await, warned);
    // All the included users: 100% once.
    seed_users(2_000).await;
    look().await;
    look().await;
    let mut all = warned.clone();
    all.insert(
        1,
        (
            "monthly active users".to_owned(),
            100,
            "critical".to_owned(),
        ),
    );
    assert_eq!(thresholds().await, all);
}
