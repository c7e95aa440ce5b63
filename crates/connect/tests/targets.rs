//! Rotation's target connectors against local fakes that answer exactly in each provider's
//! shape (PROVIDERS.md), and AWS Secrets Manager against `moto_server`: a write touches only
//! its own key, the value reads back, a redeploy starts a fresh build, a provider's refusal
//! comes back with its code and message and without the value, rate limits are waited out or
//! handed back, and lists are followed page by page.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_connect::egress::Outbound;
use authsome_connect::targets::{
    connect, verify, Credential, Endpoints, Observed, TargetConnector, TargetError,
};
use authsome_domain::egress::EgressPolicy;
use authsome_domain::provider::Provider;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use zeroize::Zeroizing;

const TOKEN: &str = "provider-token";

/// What a fake holds and saw.
#[derive(Default)]
struct State {
    /// Variables by name (the fake's whole store).
    vars: BTreeMap<String, String>,
    /// `METHOD path?query` of every authorised call.
    calls: Vec<String>,
    /// How many of the next calls answer 429, and with what `Retry-After`.
    limited: u32,
    retry_after: String,
    /// Every body received, to check what was sent.
    bodies: Vec<String>,
    counter: u64,
}

type Shared = Arc<Mutex<State>>;
type Handler = fn(&mut State, &Method, &str, &BTreeMap<String, String>, &Value) -> (u16, Value);

struct Fake {
    url: String,
    state: Shared,
}

impl Fake {
    /// A fake provider: `unauthorised` is its 401 body; `handle` answers authorised calls.
    async fn start(unauthorised: Value, handle: Handler) -> Fake {
        let state: Shared = Arc::default();
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                let unauthorised = unauthorised.clone();
                async move {
                    let mut s = state.lock().unwrap();
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if auth != format!("Bearer {TOKEN}") {
                        return (StatusCode::UNAUTHORIZED, axum::Json(unauthorised))
                            .into_response();
                    }
                    if s.limited > 0 {
                        s.limited -= 1;
                        let mut h = HeaderMap::new();
                        h.insert("retry-after", s.retry_after.parse().unwrap());
                        return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
                    }
                    let query: BTreeMap<String, String> =
                        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                            .into_owned()
                            .collect();
                    s.calls.push(format!(
                        "{method} {}{}",
                        uri.path(),
                        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
                    ));
                    s.bodies.push(String::from_utf8_lossy(&body).into_owned());
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (status, answer) = handle(&mut s, &method, uri.path(), &query, &json);
                    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url, state }
    }

    fn seed(&self, vars: &[(&str, &str)]) {
        let mut s = self.state.lock().unwrap();
        for (k, v) in vars {
            s.vars.insert((*k).into(), (*v).into());
        }
    }

    fn var(&self, key: &str) -> Option<String> {
        self.state.lock().unwrap().vars.get(key).cloned()
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn limit(&self, times: u32, retry_after: &str) {
        let mut s = self.state.lock().unwrap();
        s.limited = times;
        s.retry_after = retry_after.into();
    }
}

/// The operator lists the fakes' address, as it would a provider's private endpoint.
fn loopback() -> Outbound {
    Outbound::new(EgressPolicy::public_with("127.0.0.1").unwrap())
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

fn endpoints(fake: &Fake) -> Endpoints {
    Endpoints {
        vercel: fake.url.clone(),
        netlify: fake.url.clone(),
        render: fake.url.clone(),
        cloudflare: fake.url.clone(),
        fly: fake.url.clone(),
        gcp: fake.url.clone(),
        azure: Some(fake.url.clone()),
        aws: None,
        max_wait: Duration::from_secs(2),
    }
}

fn target(provider: Provider, fake: &Fake, config: Value, token: &str) -> Box<dyn TargetConnector> {
    connect(
        provider,
        &config,
        Credential::Bearer(Zeroizing::new(token.into())),
        &endpoints(fake),
        loopback(),
    )
    .unwrap()
}

/// The round every connector passes: write (others untouched), read back, verify, and a
/// wrong value or a missing key fails verification.
async fn round_trip(t: &dyn TargetConnector, fake: &Fake, key: &str) {
    fake.seed(&[("OTHER", "keep-me")]);
    t.status().await.expect("status");
    let written = t.write("rotated-value-1").await.expect("write");
    assert_eq!(fake.var(key).as_deref(), Some("rotated-value-1"));
    assert_eq!(
        fake.var("OTHER").as_deref(),
        Some("keep-me"),
        "another variable changed"
    );
    let observed = t.read_back().await.expect("read back");
    verify("rotated-value-1", &written, &observed).expect("verifies");
    let written = t.write("rotated-value-2").await.expect("second write");
    assert_eq!(fake.var(key).as_deref(), Some("rotated-value-2"));
    let observed = t.read_back().await.unwrap();
    verify("rotated-value-2", &written, &observed).unwrap();
    if let Observed::Value(_) = observed {
        assert!(verify("rotated-value-1", &written, &observed).is_err());
    }
}

// ---- Vercel -------------------------------------------------------------------------------

fn vercel(
    s: &mut State,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let p = segments(path);
    match (method.as_str(), p.as_slice()) {
        ("GET", ["v9", "projects", "prj_1"]) => (200, json!({"id": "prj_1", "name": "web"})),
        ("POST", ["v10", "projects", "prj_1", "env"]) => {
            assert_eq!(q.get("upsert").map(String::as_str), Some("true"));
            let key = body["key"].as_str().unwrap_or_default();
            if body["value"].as_str().unwrap_or_default().len() > 64 {
                let message = format!("value {} is too long", body["value"].as_str().unwrap());
                return (
                    200,
                    json!({"created": [], "failed": [{"error": {"code": "value_too_long", "message": message, "key": key}}]}),
                );
            }
            s.vars
                .insert(key.into(), body["value"].as_str().unwrap().into());
            s.counter += 1;
            (
                201,
                json!({"created": {"id": format!("env_{}", s.counter), "key": key, "target": body["target"]}, "failed": []}),
            )
        }
        ("GET", ["v10", "projects", "prj_1", "env"]) => {
            // Two pages: OTHER first, everything else on the page `until=1`.
            let envs: Vec<Value> = s
                .vars
                .iter()
                .filter(|(k, _)| (k.as_str() == "OTHER") != q.contains_key("until"))
                .map(|(k, v)| json!({"id": format!("env_{k}"), "key": k, "value": v, "type": "encrypted", "target": ["production", "preview"], "gitBranch": null}))
                .collect();
            let next = if q.contains_key("until") {
                Value::Null
            } else {
                json!(1)
            };
            (
                200,
                json!({"envs": envs, "pagination": {"count": envs.len(), "next": next, "prev": null}}),
            )
        }
        ("GET", ["v6", "deployments"]) => (
            200,
            json!({"deployments": [{"uid": "dpl_old", "name": "web", "target": q.get("target")}]}),
        ),
        ("POST", ["v13", "deployments"]) => {
            assert_eq!(q.get("forceNew").map(String::as_str), Some("1"));
            assert_eq!(body["deploymentId"], "dpl_old");
            (200, json!({"id": "dpl_new", "readyState": "QUEUED"}))
        }
        _ => (
            404,
            json!({"error": {"code": "not_found", "message": "no such route"}}),
        ),
    }
}

#[tokio::test]
async fn vercel_upserts_one_variable_reads_it_back_and_builds_afresh() {
    let fake = Fake::start(
        json!({"error": {"code": "forbidden", "message": "Not authorized"}}),
        vercel,
    )
    .await;
    let config = json!({"projectId": "prj_1", "key": "DATABASE_URL", "environments": ["production", "preview"]});
    let t = target(Provider::Vercel, &fake, config.clone(), TOKEN);
    round_trip(t.as_ref(), &fake, "DATABASE_URL").await;
    assert!(
        fake.calls().iter().any(|c| c.contains("until=1")),
        "the second page was read"
    );
    assert_eq!(t.redeploy().await.unwrap().as_deref(), Some("dpl_new"));

    // Its refusal, without the value; a bad token.
    let long = format!("secret-{}", "x".repeat(80));
    let e = t.write(&long).await.unwrap_err();
    assert!(
        matches!(&e, TargetError::Refused { code: Some(c), .. } if c == "value_too_long"),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains(&long) && e.to_string().contains("[redacted]"),
        "{e}"
    );
    let bad = target(Provider::Vercel, &fake, config, "wrong");
    let e = bad.write("v").await.unwrap_err();
    assert_eq!(
        e,
        TargetError::Refused {
            provider: "Vercel",
            status: 401,
            code: Some("forbidden".into()),
            message: "Not authorized".into()
        }
    );
}

// ---- Netlify ------------------------------------------------------------------------------

fn netlify(
    s: &mut State,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let p = segments(path);
    match (method.as_str(), p.as_slice()) {
        ("GET", ["sites", "site_1"]) => (200, json!({"id": "site_1"})),
        ("PATCH", ["accounts", "acct", "env", key]) => {
            assert_eq!(q.get("site_id").map(String::as_str), Some("site_1"));
            if !s.vars.contains_key(*key) {
                return (404, json!({"code": 404, "message": "Not Found"}));
            }
            s.vars.insert((*key).into(), body["value"].as_str().unwrap().into());
            (201, json!({"id": "v1", "value": body["value"], "context": body["context"]}))
        }
        ("POST", ["accounts", "acct", "env"]) => {
            for var in body.as_array().unwrap() {
                let value = var["values"][0]["value"].as_str().unwrap();
                s.vars.insert(var["key"].as_str().unwrap().into(), value.into());
            }
            (201, body.clone())
        }
        ("GET", ["accounts", "acct", "env"]) => (
            200,
            Value::Array(
                s.vars
                    .iter()
                    .map(|(k, v)| json!({"key": k, "scopes": ["builds", "functions"], "values": [{"id": format!("val_{k}"), "value": v, "context": "all"}], "is_secret": false}))
                    .collect(),
            ),
        ),
        ("POST", ["sites", "site_1", "builds"]) => (200, json!({"id": "build_1", "deploy_id": "dep_1", "done": false})),
        _ => (404, json!({"code": 404, "message": "Not Found"})),
    }
}

#[tokio::test]
async fn netlify_creates_then_patches_one_key_and_triggers_a_build() {
    let fake = Fake::start(json!({"code": 401, "message": "Access Denied"}), netlify).await;
    let config = json!({"accountId": "acct", "siteId": "site_1", "key": "API_TOKEN"});
    let t = target(Provider::Netlify, &fake, config.clone(), TOKEN);
    round_trip(t.as_ref(), &fake, "API_TOKEN").await;
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("POST /accounts/acct/env")),
        "created first: {calls:?}"
    );
    assert!(
        calls.iter().filter(|c| c.starts_with("PATCH")).count() >= 2,
        "then patched"
    );
    assert_eq!(t.redeploy().await.unwrap().as_deref(), Some("build_1"));
    let e = target(Provider::Netlify, &fake, config, "wrong")
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, TargetError::Refused { status: 401, message, .. } if message == "Access Denied"),
        "{e:?}"
    );
}

// ---- Render -------------------------------------------------------------------------------

fn render(
    s: &mut State,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let p = segments(path);
    match (method.as_str(), p.as_slice()) {
        ("GET", ["services", "srv-1"]) => (200, json!({"id": "srv-1"})),
        ("PUT", ["services", "srv-1", "env-vars"]) => {
            panic!("the bulk PUT replaces every variable")
        }
        ("PUT", ["services", "srv-1", "env-vars", key]) => {
            s.vars
                .insert((*key).into(), body["value"].as_str().unwrap().into());
            (200, json!({"key": key, "value": body["value"]}))
        }
        ("GET", ["services", "srv-1", "env-vars"]) => {
            let limit: usize = q
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(20)
                .min(100);
            let after = q.get("cursor").cloned();
            let page: Vec<Value> = s
                .vars
                .iter()
                .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
                .take(limit)
                .map(|(k, v)| json!({"envVar": {"key": k, "value": v}, "cursor": k}))
                .collect();
            (200, Value::Array(page))
        }
        ("POST", ["services", "srv-1", "deploys"]) => {
            (201, json!({"id": "dep-new", "status": "created"}))
        }
        _ => (404, json!({"id": "not-found", "message": "not found"})),
    }
}

#[tokio::test]
async fn render_sets_one_key_never_the_whole_list_and_pages_through_it() {
    let fake = Fake::start(
        json!({"id": "unauthorized", "message": "unauthorized"}),
        render,
    )
    .await;
    // 150 variables before ours in the list's order: it is on the second page.
    let filler: Vec<(String, String)> = (0..150)
        .map(|i| (format!("A_{i:03}"), format!("v{i}")))
        .collect();
    fake.seed(
        &filler
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let t = target(
        Provider::Render,
        &fake,
        json!({"serviceId": "srv-1", "key": "ZZ_SECRET"}),
        TOKEN,
    );
    round_trip(t.as_ref(), &fake, "ZZ_SECRET").await;
    assert!(
        fake.calls().iter().any(|c| c.contains("cursor=A_099")),
        "followed the cursor"
    );
    assert_eq!(fake.var("A_000").as_deref(), Some("v0"));
    assert_eq!(t.redeploy().await.unwrap().as_deref(), Some("dep-new"));
}

#[tokio::test]
async fn rate_limits_are_waited_out_when_short_and_handed_back_when_long() {
    let fake = Fake::start(
        json!({"id": "unauthorized", "message": "unauthorized"}),
        render,
    )
    .await;
    let t = target(
        Provider::Render,
        &fake,
        json!({"serviceId": "srv-1", "key": "K"}),
        TOKEN,
    );
    fake.limit(1, "0");
    t.write("after-a-pause")
        .await
        .expect("retried after the wait");
    assert_eq!(fake.var("K").as_deref(), Some("after-a-pause"));
    fake.limit(1, "120");
    assert_eq!(
        t.write("later").await.unwrap_err(),
        TargetError::RateLimited {
            retry_after: Duration::from_secs(120)
        }
    );
    assert_eq!(fake.var("K").as_deref(), Some("after-a-pause"));
}

// ---- Cloudflare ---------------------------------------------------------------------------

fn cloudflare(
    s: &mut State,
    method: &Method,
    path: &str,
    _: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let p = segments(path);
    match (method.as_str(), p.as_slice()) {
        ("GET", ["accounts", "a1", "workers", "scripts", "api", "secrets"]) => {
            let list: Vec<Value> = s
                .vars
                .keys()
                .map(|k| json!({"name": k, "type": "secret_text"}))
                .collect();
            (
                200,
                json!({"success": true, "errors": [], "messages": [], "result": list}),
            )
        }
        ("PUT", ["accounts", "a1", "workers", "scripts", "api", "secrets"]) => {
            assert_eq!(body["type"], "secret_text");
            s.vars.insert(
                body["name"].as_str().unwrap().into(),
                body["text"].as_str().unwrap().into(),
            );
            (
                200,
                json!({"success": true, "errors": [], "messages": [], "result": {"name": body["name"], "type": "secret_text"}}),
            )
        }
        ("GET", ["accounts", "a1", "workers", "scripts", "api", "secrets", name])
            if s.vars.contains_key(*name) =>
        {
            (
                200,
                json!({"success": true, "errors": [], "messages": [], "result": {"name": name, "type": "secret_text"}}),
            )
        }
        _ => (
            404,
            json!({"success": false, "errors": [{"code": 10007, "message": "This Worker does not exist"}], "messages": [], "result": null}),
        ),
    }
}

#[tokio::test]
async fn cloudflare_puts_a_worker_secret_and_never_reads_its_value() {
    let fake = Fake::start(
        json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}]}),
        cloudflare,
    )
    .await;
    let t = target(
        Provider::Cloudflare,
        &fake,
        json!({"accountId": "a1", "scriptName": "api", "key": "SIGNING_KEY"}),
        TOKEN,
    );
    round_trip(t.as_ref(), &fake, "SIGNING_KEY").await;
    assert_eq!(t.read_back().await.unwrap(), Observed::Present);
    assert_eq!(
        t.redeploy().await.unwrap(),
        None,
        "a secret put deploys the worker by itself"
    );
    let gone = target(
        Provider::Cloudflare,
        &fake,
        json!({"accountId": "a1", "scriptName": "nope", "key": "K"}),
        TOKEN,
    );
    let e = gone.write("v").await.unwrap_err();
    assert!(
        matches!(&e, TargetError::Refused { code: Some(c), .. } if c == "10007"),
        "{e:?}"
    );
}

// ---- Fly.io -------------------------------------------------------------------------------

fn fly(
    s: &mut State,
    method: &Method,
    path: &str,
    _: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let p = segments(path);
    let digest = |v: &str| {
        format!(
            "{:x}",
            v.len() * 7919 + v.bytes().map(usize::from).sum::<usize>()
        )
    };
    match (method.as_str(), p.as_slice()) {
        ("GET", ["apps", "web"]) => (200, json!({"name": "web"})),
        ("POST", ["apps", "web", "secrets", name]) => {
            let v = body["value"].as_str().unwrap();
            s.vars.insert((*name).into(), v.into());
            s.counter += 1;
            (
                200,
                json!({"name": name, "digest": digest(v), "version": s.counter}),
            )
        }
        ("GET", ["apps", "web", "secrets"]) => (
            200,
            Value::Array(
                s.vars
                    .iter()
                    .map(|(k, v)| json!({"name": k, "digest": digest(v)}))
                    .collect(),
            ),
        ),
        ("GET", ["apps", "web", "machines"]) => (
            200,
            json!([{"id": "m1", "config": {"image": "web:1"}}, {"id": "m2", "config": {"image": "web:1"}}]),
        ),
        ("POST", ["apps", "web", "machines", id]) => {
            assert_eq!(
                body["min_secrets_version"], s.counter,
                "the machine requires the new secrets"
            );
            assert_eq!(body["config"]["image"], "web:1");
            (200, json!({"id": id, "state": "replacing"}))
        }
        _ => (404, json!({"error": "not found"})),
    }
}

#[tokio::test]
async fn fly_stages_a_secret_then_moves_every_machine_to_it() {
    let fake = Fake::start(json!({"error": "unauthorized"}), fly).await;
    let t = target(
        Provider::Fly,
        &fake,
        json!({"app": "web", "key": "SESSION_SECRET"}),
        TOKEN,
    );
    round_trip(t.as_ref(), &fake, "SESSION_SECRET").await;
    assert!(matches!(t.read_back().await.unwrap(), Observed::Digest(_)));
    let report = t.redeploy().await.unwrap().unwrap();
    assert!(report.starts_with("2 machines"), "{report}");
    let calls = fake.calls();
    assert!(calls.contains(&"POST /apps/web/machines/m1".to_owned()));
    assert!(calls.contains(&"POST /apps/web/machines/m2".to_owned()));
}

// ---- GCP ----------------------------------------------------------------------------------

fn gcp(
    s: &mut State,
    method: &Method,
    path: &str,
    _: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    match (method.as_str(), path) {
        ("GET", "/projects/p1/secrets/db") => (200, json!({"name": "projects/p1/secrets/db"})),
        ("POST", "/projects/p1/secrets/db:addVersion") => {
            let data = b64
                .decode(body["payload"]["data"].as_str().unwrap())
                .unwrap();
            let crc = body["payload"]["dataCrc32c"].as_str().unwrap();
            if crc != crc32c::crc32c(&data).to_string() {
                return (
                    400,
                    json!({"error": {"code": 400, "message": "Checksum mismatch", "status": "INVALID_ARGUMENT"}}),
                );
            }
            s.vars.insert("db".into(), String::from_utf8(data).unwrap());
            s.counter += 1;
            (
                200,
                json!({"name": format!("projects/p1/secrets/db/versions/{}", s.counter), "state": "ENABLED"}),
            )
        }
        ("GET", "/projects/p1/secrets/db/versions/latest:access") => match s.vars.get("db") {
            Some(v) => (
                200,
                json!({"name": format!("projects/p1/secrets/db/versions/{}", s.counter), "payload": {"data": b64.encode(v), "dataCrc32c": crc32c::crc32c(v.as_bytes()).to_string()}}),
            ),
            None => (
                404,
                json!({"error": {"code": 404, "message": "Secret Version not found", "status": "NOT_FOUND"}}),
            ),
        },
        _ => (
            404,
            json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
        ),
    }
}

#[tokio::test]
async fn gcp_adds_checksummed_versions_and_reads_the_latest() {
    let fake = Fake::start(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}), gcp).await;
    let t = target(
        Provider::Gcp,
        &fake,
        json!({"project": "p1", "secret": "db"}),
        TOKEN,
    );
    assert_eq!(t.read_back().await.unwrap(), Observed::Absent);
    round_trip(t.as_ref(), &fake, "db").await;
    let e = target(
        Provider::Gcp,
        &fake,
        json!({"project": "p1", "secret": "db"}),
        "wrong",
    )
    .write("v")
    .await
    .unwrap_err();
    assert!(
        matches!(&e, TargetError::Refused { code: Some(c), status: 401, .. } if c == "UNAUTHENTICATED"),
        "{e:?}"
    );
}

// ---- Azure --------------------------------------------------------------------------------

fn azure(
    s: &mut State,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    assert_eq!(q.get("api-version").map(String::as_str), Some("7.4"));
    let p = segments(path);
    match (method.as_str(), p.as_slice()) {
        ("PUT", ["secrets", name]) => {
            s.vars
                .insert((*name).into(), body["value"].as_str().unwrap().into());
            s.counter += 1;
            (
                200,
                json!({"value": body["value"], "id": format!("https://kv.vault.azure.net/secrets/{name}/v{}", s.counter), "attributes": {"enabled": true}}),
            )
        }
        ("GET", ["secrets", name]) => match s.vars.get(*name) {
            Some(v) => (
                200,
                json!({"value": v, "id": format!("https://kv.vault.azure.net/secrets/{name}/v{}", s.counter), "attributes": {"enabled": true}}),
            ),
            None => (
                404,
                json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}}),
            ),
        },
        _ => (
            404,
            json!({"error": {"code": "NotFound", "message": "not found"}}),
        ),
    }
}

#[tokio::test]
async fn azure_sets_a_key_vault_secret_and_reads_its_current_version() {
    let fake = Fake::start(json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}), azure).await;
    let t = target(
        Provider::Azure,
        &fake,
        json!({"vaultName": "acme-prod", "name": "stripe-key"}),
        TOKEN,
    );
    round_trip(t.as_ref(), &fake, "stripe-key").await;
    assert!(
        connect(
            Provider::Azure,
            &json!({"vaultName": "Not_Valid", "name": "x"}),
            Credential::Bearer(Zeroizing::new(TOKEN.into())),
            &endpoints(&fake),
            loopback()
        )
        .is_err(),
        "a vault name that is not a host label"
    );
}

// ---- Configuration and egress -------------------------------------------------------------

#[tokio::test]
async fn bad_configurations_name_the_field_and_private_addresses_need_the_operator() {
    let fake = Fake::start(json!({}), render).await;
    let credential = || Credential::Bearer(Zeroizing::new(TOKEN.into()));
    for (provider, config, field) in [
        (Provider::Vercel, json!({"key": "K"}), "projectId"),
        (
            Provider::Vercel,
            json!({"projectId": "p", "key": "K", "environments": ["staging"]}),
            "environments",
        ),
        (
            Provider::Render,
            json!({"serviceId": "srv/../x", "key": "K"}),
            "serviceId",
        ),
        (
            Provider::Netlify,
            json!({"accountId": "a", "key": "K"}),
            "siteId",
        ),
        (Provider::Generic, json!({}), "generic"),
    ] {
        match connect(
            provider,
            &config,
            credential(),
            &endpoints(&fake),
            loopback(),
        ) {
            Err(TargetError::Config(m)) => assert!(m.contains(field), "{m}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("{config} was accepted"),
        }
    }
    // Under the default policy the fake on 127.0.0.1 is out of bounds.
    let strict = connect(
        Provider::Render,
        &json!({"serviceId": "srv-1", "key": "K"}),
        credential(),
        &endpoints(&fake),
        Outbound::new(EgressPolicy::public_with("").unwrap()),
    )
    .unwrap();
    assert!(matches!(
        strict.write("v").await.unwrap_err(),
        TargetError::Config(_)
    ));
    assert!(fake.calls().is_empty());
}

// ---- AWS Secrets Manager (moto) -----------------------------------------------------------

#[tokio::test]
async fn aws_secrets_manager_creates_then_versions_a_secret() {
    use authsome_testkit::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
    let Some(moto) = Moto::start() else { return };
    let credential = Credential::for_provider(
        Provider::Aws,
        &json!({"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY}).to_string(),
    )
    .unwrap();
    let endpoints = Endpoints {
        aws: Some(moto.url.clone()),
        ..Endpoints::default()
    };
    let t = connect(
        Provider::Aws,
        &json!({"secretId": "prod/db-password", "region": "us-east-1"}),
        credential,
        &endpoints,
        Outbound::new(EgressPolicy::public_with("").unwrap()),
    )
    .unwrap();
    t.status()
        .await
        .expect("a missing secret is not a failure of the target");
    assert_eq!(t.read_back().await.unwrap(), Observed::Absent);
    let first = t.write("first-password").await.unwrap();
    verify("first-password", &first, &t.read_back().await.unwrap()).unwrap();
    let second = t.write("second-password").await.unwrap();
    assert_ne!(first.version, second.version, "a new version");
    verify("second-password", &second, &t.read_back().await.unwrap()).unwrap();
    assert!(Credential::for_provider(Provider::Aws, "not json").is_err());
}
