//! Rotation over HTTP against an in-test Render (its real REST shape): settings, a dry run that
//! changes nothing, the closed loop (mint, store, push, redeploy, verify), a failed verification
//! that rolls everything back, a rollback on demand, a run that survives its worker's death,
//! and the tenant boundary. Values never appear in a rotation or the audit log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::helpers::*;

const RENDER_TOKEN: &str = "rnd_provider_token";

/// Render's env vars for one service, as the fake holds them.
#[derive(Default)]
struct RenderState {
    vars: BTreeMap<String, String>,
    deploys: u32,
    /// Reads answer another value (a target that did not take the write).
    corrupt_reads: bool,
    /// Writes answer this status (a provider that is down).
    failing_writes: Option<u16>,
    /// Reads answer something other than JSON.
    garbled_reads: bool,
}

async fn fake_render() -> (String, Arc<Mutex<RenderState>>) {
    let state: Arc<Mutex<RenderState>> = Arc::default();
    let shared = state.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move {
                let authorised = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {RENDER_TOKEN}"));
                if !authorised {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"id": "unauthorized", "message": "unauthorized"})),
                    )
                        .into_response();
                }
                let mut s = state.lock().unwrap();
                let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, answer) = match (method.as_str(), parts.as_slice()) {
                    ("PUT", ["services", "srv-1", "env-vars", _]) if s.failing_writes.is_some() => {
                        (
                            s.failing_writes.unwrap_or(503),
                            json!({"id": "unavailable", "message": "try again later"}),
                        )
                    }
                    ("GET", ["services", "srv-1", "env-vars"]) if s.garbled_reads => {
                        return (StatusCode::OK, "<html>maintenance</html>").into_response();
                    }
                    ("PUT", ["services", "srv-1", "env-vars", key]) => {
                        let v = json["value"].as_str().unwrap_or_default().to_owned();
                        s.vars.insert((*key).into(), v);
                        (200, json!({"key": key, "value": json["value"]}))
                    }
                    ("GET", ["services", "srv-1", "env-vars"]) => {
                        let corrupt = s.corrupt_reads;
                        let list: Vec<Value> = s
                            .vars
                            .iter()
                            .map(|(k, v)| {
                                let v = if corrupt { "not-it" } else { v.as_str() };
                                json!({"envVar": {"key": k, "value": v}, "cursor": k})
                            })
                            .collect();
                        (200, Value::Array(list))
                    }
                    ("POST", ["services", "srv-1", "deploys"]) => {
                        s.deploys += 1;
                        (201, json!({"id": format!("dep-{}", s.deploys)}))
                    }
                    _ => (404, json!({"id": "not-found", "message": "not found"})),
                };
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

struct Setup {
    app: TestApp,
    t: Tenant,
    vault: String,
    render: Arc<Mutex<RenderState>>,
    render_url: String,
    /// A management key (admin): unlike a session, it outlives a test clock moved by days.
    key: String,
}

async fn setup(name: &str) -> Setup {
    setup_with(name, Extras::default()).await
}

/// What some tests add to [`setup`].
#[derive(Default)]
struct Extras {
    /// Mail through this SMTP server.
    smtp: Option<String>,
    /// Carry jobs over JetStream.
    jobs: Option<authsome_nats::JetStreamSettings>,
    /// Call AWS (IAM, Secrets Manager) here.
    aws: Option<String>,
}

async fn setup_with(name: &str, extras: Extras) -> Setup {
    let Extras { smtp, jobs, aws } = extras;
    let (url, render) = fake_render().await;
    let render_url = url.clone();
    let app = spawn_configured(move |s| {
        s.targets.render = url;
        s.targets.aws = aws;
        s.outbound = authsome_domain::egress::EgressPolicy::public_with("127.0.0.1").unwrap();
        if jobs.is_some() {
            // The test runs the jobs itself, on two replicas.
            s.maintenance_every = std::time::Duration::from_secs(3600);
        }
        s.jobs = jobs;
        if let Some(smtp) = smtp {
            let mailer =
                authsome_server::mail::SmtpMailer::new(&smtp, "AuthSome <alerts@authsome.test>")
                    .unwrap();
            s.mailer = Some(Arc::new(mailer));
        }
    })
    .await;
    let t = app.tenant(name).await;
    let tok = &t.owner_token;
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            tok,
            json!({"name": "prod"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let vault = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/control/v1/workspaces/{}/providers/render", t.ws),
            Some(tok),
            Some(
                json!({"mode": "hosted", "config": {"vaultId": vault, "secret": "RENDER_TOKEN"},
                        "credential": RENDER_TOKEN}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/control/v1/vaults/{vault}/secrets/API_TOKEN"),
            Some(tok),
            Some(json!({"value": "the-first-token"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    render
        .lock()
        .unwrap()
        .vars
        .insert("OTHER".into(), "keep-me".into());
    let made = app
        .post(
            &format!("/control/v1/workspaces/{}/keys", t.ws),
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let key = made.body["secret"].as_str().unwrap().to_owned();
    Setup {
        app,
        t,
        vault,
        render,
        render_url,
        key,
    }
}

impl Setup {
    async fn configure(&self, body: Value) -> Response {
        self.app
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/control/v1/vaults/{}/secrets/API_TOKEN/rotation",
                    self.vault
                ),
                Some(&self.t.owner_token),
                Some(body),
            )
            .await
    }

    async fn start(&self, body: Value) -> Response {
        self.app
            .post(
                &format!(
                    "/control/v1/vaults/{}/secrets/API_TOKEN/rotations",
                    self.vault
                ),
                &self.t.owner_token,
                body,
            )
            .await
    }

    async fn value(&self) -> (u64, String) {
        let r = self
            .app
            .get(
                &format!("/control/v1/vaults/{}/secrets/API_TOKEN/value", self.vault),
                &self.key,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        (
            r.body["version"].as_u64().unwrap(),
            r.body["value"].as_str().unwrap().to_owned(),
        )
    }

    fn at_render(&self) -> Option<String> {
        self.render.lock().unwrap().vars.get("API_TOKEN").cloned()
    }

    /// Stores `count` succeeded rotations of the secret, made now, as finished runs leave them.
    async fn seed_rotations(&self, count: usize) {
        use authsome_domain::id::{RotationId, VaultId, WorkspaceId};
        use authsome_domain::rotation::{Rotation, RotationStatus};
        let store = self.app.state.control.store().clone();
        let now = self.app.clock.now();
        for _ in 0..count {
            let r = Rotation {
                id: RotationId::new(),
                workspace_id: WorkspaceId::parse(&self.t.ws).unwrap(),
                vault_id: VaultId::parse(&self.vault).unwrap(),
                secret_name: "API_TOKEN".into(),
                status: RotationStatus::Succeeded,
                reason: None,
                requested_by: None,
                decision: json!({"outcome": "allow"}),
                steps: Vec::new(),
                previous_version: Some(1),
                new_version: Some(1),
                error: None,
                created_at: now,
                updated_at: now,
                finished_at: Some(now),
            };
            store
                .insert_rotation(&r, None, None, &authsome_storage::outbox::Outbox::empty())
                .await
                .unwrap();
        }
    }

    /// The workspace's rotations, as `GET …/rotations` lists them (with the management key).
    async fn rotations(&self) -> Value {
        let list = self
            .app
            .get(
                &format!("/control/v1/workspaces/{}/rotations", self.t.ws),
                &self.key,
            )
            .await;
        assert_eq!(list.status, 200, "{}", list.body);
        list.body
    }

    /// Runs the due jobs until the rotation has succeeded or failed, even with its previous
    /// value still to retire after the grace period; the rotation.
    async fn settle_until_waiting(&self, id: &str) -> Value {
        self.run_until(id, std::time::Duration::ZERO, |r| {
            matches!(r["status"].as_str(), Some("succeeded" | "failed"))
        })
        .await
    }

    /// Runs the due jobs until the rotation stops changing; the rotation.
    async fn settle(&self, id: &str) -> Value {
        self.run_until(id, std::time::Duration::ZERO, |r| {
            matches!(
                r["status"].as_str(),
                Some("succeeded" | "failed" | "rolled_back")
            ) && !r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["status"] == "pending")
        })
        .await
    }

    /// Runs the due jobs until `done` holds of the rotation, moving the clock by `between`
    /// after each round; the rotation.
    async fn run_until(
        &self,
        id: &str,
        between: std::time::Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..20 {
            self.app
                .state
                .control
                .run_jobs("test-worker", std::time::Duration::from_secs(5))
                .await
                .unwrap();
            let r = self
                .app
                .get(&format!("/control/v1/rotations/{id}"), &self.key)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            if done(&r.body) {
                return r.body;
            }
            self.app.clock.advance(between);
        }
        panic!("the rotation did not settle");
    }
}

fn settings() -> Value {
    json!({
        "generator": {"length": 32, "alphabet": "hex", "prefix": "tok_"},
        "targets": [{"provider": "render", "config": {"serviceId": "srv-1", "key": "API_TOKEN"}}],
        "redeploy": true,
    })
}

#[tokio::test]
async fn a_rotation_mints_stores_pushes_redeploys_and_verifies() {
    let s = setup("Rotating").await;
    let r = s.configure(settings()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revision"], 1);
    assert_eq!(r.body["generator"]["alphabet"], "hex");

    // A dry run: the plan, and nothing changes.
    let plan = s.start(json!({"dryRun": true})).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.body["plan"]["nextVersion"], 2);
    assert_eq!(plan.body["plan"]["decision"]["outcome"], "allow");
    let kinds: Vec<&str> = plan.body["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "mint",
            "store",
            "push",
            "redeploy",
            "verify",
            "retire_previous"
        ]
    );
    assert_eq!(s.value().await.0, 1);
    assert_eq!(s.at_render(), None);

    let started = s.start(json!({"reason": "quarterly"})).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rot_"));
    assert_eq!(started.body["status"], "pending");
    let done = s.settle(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        (
            done["previousVersion"].as_u64(),
            done["newVersion"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert!(done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "succeeded"));

    let (version, value) = s.value().await;
    assert_eq!(version, 2);
    let random = value.strip_prefix("tok_").expect("the prefix");
    assert!(random.len() == 32 && random.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(s.at_render().as_deref(), Some(value.as_str()));
    assert_eq!(
        s.render
            .lock()
            .unwrap()
            .vars
            .get("OTHER")
            .map(String::as_str),
        Some("keep-me"),
        "the connector touched only its key"
    );
    assert_eq!(s.render.lock().unwrap().deploys, 1);

    // The trail names the rotation's steps, never a value; the listing has it.
    let entries = crate::vault::audit_entries(&s.app, &s.t.owner_token, &s.t.ws).await;
    let text = serde_json::to_string(&entries).unwrap();
    assert!(
        !text.contains(&value) && !text.contains("the-first-token") && !text.contains(RENDER_TOKEN)
    );
    for action in [
        "vault.rotation.requested",
        "vault.rotation.step",
        "vault.rotation.succeeded",
    ] {
        assert!(
            entries.iter().any(|e| e["action"] == action),
            "{action} missing"
        );
    }
    let list = s.rotations().await;
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&value));

    // Rolled back on demand: the previous value at the target and as the vault's latest.
    let rolled = s
        .app
        .post(
            &format!("/control/v1/rotations/{id}/rollback"),
            &s.t.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(rolled.status, 202, "{}", rolled.body);
    let back = s.settle(&id).await;
    assert_eq!(back["status"], "rolled_back", "{back}");
    assert_eq!(s.at_render().as_deref(), Some("the-first-token"));
    assert_eq!(s.value().await, (3, "the-first-token".to_owned()));
    assert_eq!(
        s.render.lock().unwrap().deploys,
        2,
        "redeployed with the old value"
    );
    let again = s
        .app
        .post(
            &format!("/control/v1/rotations/{id}/rollback"),
            &s.t.owner_token,
            json!({}),
        )
        .await;
    assert_error(&again, 409, "conflict");
}

#[tokio::test]
async fn a_failed_verification_rolls_the_targets_and_the_vault_back() {
    let s = setup("Failing Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    s.render
        .lock()
        .unwrap()
        .vars
        .insert("API_TOKEN".into(), "the-first-token".into());
    s.render.lock().unwrap().corrupt_reads = true;
    let started = s.start(json!({})).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let done = s.settle(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.starts_with("verify failed"), "{error}");
    let steps = done["steps"].as_array().unwrap();
    let failed: Vec<&Value> = steps.iter().filter(|s| s["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["kind"], "verify");
    let undone: Vec<&str> = steps
        .iter()
        .filter(|s| {
            s["kind"] == "restore_target"
                || s["kind"] == "restore_latest"
                || (s["kind"] == "redeploy" && s["at"].is_string() && s["status"] == "succeeded")
        })
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(
        undone.contains(&"restore_target") && undone.contains(&"restore_latest"),
        "{undone:?}"
    );
    // The target holds the previous value again, and so does the vault's latest.
    assert_eq!(s.at_render().as_deref(), Some("the-first-token"));
    assert_eq!(s.value().await, (3, "the-first-token".to_owned()));
    assert!(!done.to_string().contains("tok_"), "no value in the record");
}

/// Runs the rotation's job through every retry, the clock moved past each backoff, until it
/// ends; the rotation.
async fn exhaust(s: &Setup, id: &str) -> Value {
    s.run_until(id, std::time::Duration::from_secs(120), |r| {
        matches!(r["status"].as_str(), Some("failed" | "succeeded"))
    })
    .await
}

#[tokio::test]
async fn a_provider_that_stays_down_or_answers_garbage_fails_the_rotation_cleanly() {
    let s = setup("Faulty Provider").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    // Down: every write is a 503. Retried with backoff, then failed; nothing changed anywhere.
    s.render.lock().unwrap().failing_writes = Some(503);
    let started = s.start(json!({})).await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    let done = exhaust(&s, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("push"), "{done}");
    let deferred = crate::vault::audit_entries(&s.app, &s.key, &s.t.ws)
        .await
        .iter()
        .filter(|e| e["action"] == "vault.rotation.step_deferred")
        .count();
    assert!(deferred >= 2, "retried before giving up ({deferred})");
    assert_eq!(s.at_render(), None, "the target never took a value");
    let (_, latest) = s.value().await;
    assert_eq!(latest, "the-first-token", "the vault's latest went back");

    // Garbage: reads answer HTML. Verification cannot pass; the target gets the old value back.
    {
        let mut render = s.render.lock().unwrap();
        render.failing_writes = None;
        render.garbled_reads = true;
    }
    let started = s
        .app
        .post(
            &format!("/control/v1/vaults/{}/secrets/API_TOKEN/rotations", s.vault),
            &s.key,
            json!({}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let done = exhaust(&s, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("verify"), "{done}");
    assert_eq!(s.at_render().as_deref(), Some("the-first-token"));
    let (_, latest) = s.value().await;
    assert_eq!(latest, "the-first-token");
}

#[tokio::test]
async fn a_rotation_whose_worker_died_finishes_once_after_its_lease() {
    let s = setup("Crashing Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let started = s.start(json!({})).await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    // A worker claims the run and dies without a word.
    let store = s.app.state.control.store().clone();
    let now = s.app.clock.now();
    let claimed = store
        .claim_jobs("dead-worker", now, now + chrono::Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Until its lease lapses nobody else runs it.
    assert_eq!(
        s.app
            .state
            .control
            .run_jobs("w2", std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        0
    );
    s.app.clock.advance(std::time::Duration::from_secs(61));
    let done = s.settle(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(s.value().await.0, 2, "stored once");
    assert_eq!(s.render.lock().unwrap().deploys, 1, "deployed once");
    assert_eq!(
        s.app
            .state
            .control
            .run_jobs("w3", std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        0,
        "nothing left to run"
    );
}

#[tokio::test]
async fn a_batch_rotates_many_secrets_with_an_outcome_for_each() {
    let s = setup("Batch Rotation").await;
    let tok = s.t.owner_token.clone();
    for name in ["B_TOKEN", "C_TOKEN", "UNSET"] {
        let r = s
            .app
            .call(
                reqwest::Method::PUT,
                &format!("/control/v1/vaults/{}/secrets/{name}", s.vault),
                Some(&tok),
                Some(json!({"value": format!("first-{name}")})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for name in ["API_TOKEN", "B_TOKEN", "C_TOKEN"] {
        let mut body = settings();
        body["targets"][0]["config"]["key"] = json!(name);
        let r = s
            .app
            .call(
                reqwest::Method::PUT,
                &format!("/control/v1/vaults/{}/secrets/{name}/rotation", s.vault),
                Some(&tok),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let batch = |body: Value| {
        let app = &s.app;
        let path = format!("/control/v1/vaults/{}/rotations", s.vault);
        let tok = tok.clone();
        async move { app.post(&path, &tok, body).await }
    };
    // The request as a whole is checked first.
    assert_error(&batch(json!({"secrets": []})).await, 400, "invalid_request");
    assert_error(
        &batch(json!({"secrets": ["B_TOKEN", "B_TOKEN"]})).await,
        400,
        "invalid_request",
    );
    let many: Vec<String> = (0..1001).map(|i| format!("S{i}")).collect();
    assert_error(
        &batch(json!({"secrets": many})).await,
        400,
        "invalid_request",
    );

    // A dry run plans each and changes nothing.
    let planned = batch(json!({"secrets": ["API_TOKEN", "B_TOKEN"], "dryRun": true})).await;
    assert_eq!(planned.status, 200, "{}", planned.body);
    let outcomes: Vec<&str> = planned.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["planned", "planned"]);
    assert!(!s.render.lock().unwrap().vars.contains_key("B_TOKEN"));

    // One secret is already rotating: it is refused, the others start.
    assert_eq!(s.start(json!({})).await.status, 202);
    let r = batch(
        json!({"secrets": ["API_TOKEN", "B_TOKEN", "UNSET", "MISSING", "C_TOKEN"],
                         "reason": "quarterly"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.body["data"].as_array().unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = data
        .iter()
        .map(|o| {
            (
                o["secret"].as_str().unwrap(),
                o["outcome"].as_str().unwrap(),
                o["error"]["code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("API_TOKEN", "refused", Some("conflict")),
            ("B_TOKEN", "started", None),
            ("UNSET", "refused", Some("not_found")),
            ("MISSING", "refused", Some("not_found")),
            ("C_TOKEN", "started", None),
        ]
    );
    assert_eq!(data[1]["rotation"]["reason"], "quarterly");
    for o in data.iter().filter(|o| o["outcome"] == "started") {
        let done = s.settle(o["rotation"]["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let vars = s.render.lock().unwrap().vars.clone();
    for name in ["B_TOKEN", "C_TOKEN"] {
        let v = &vars[name];
        assert!(v.starts_with("tok_") && v.len() == 36, "{name}: rotated");
    }
    assert_eq!(vars["OTHER"], "keep-me");

    // Another workspace cannot name this vault.
    let other = s.app.tenant("Batch Outsider").await;
    let r = s
        .app
        .post(
            &format!("/control/v1/vaults/{}/rotations", s.vault),
            &other.owner_token,
            json!({"secrets": ["B_TOKEN"]}),
        )
        .await;
    assert_error(&r, 404, "not_found");
}

/// IAM at moto, as the test itself calls it (to make the user and read its keys).
fn iam(moto: &authsome_testkit::moto::Moto) -> authsome_connect::aws::Iam {
    use authsome_testkit::moto::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
    authsome_connect::aws::Iam::new(
        authsome_connect::aws::AwsSettings {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: zeroize::Zeroizing::new(SECRET_ACCESS_KEY.into()),
            session_token: None,
            default_region: "us-east-1".into(),
            endpoint: Some(moto.url.clone()),
        },
        authsome_connect::Outbound::trusted(),
    )
}

/// The ids of the IAM user's access keys.
async fn access_keys(iam: &authsome_connect::aws::Iam, user: &str) -> Vec<String> {
    let xml = iam
        .call("ListAccessKeys", &[("UserName", user)])
        .await
        .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let mut ids: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("AccessKeyId"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn dual_phase_access_keys_overlap_until_the_previous_is_revoked() {
    use authsome_testkit::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
    let Some(moto) = Moto::start() else { return };
    let iam = iam(&moto);
    iam.call("CreateUser", &[("UserName", "ci-deployer")])
        .await
        .unwrap();
    let first = iam
        .call("CreateAccessKey", &[("UserName", "ci-deployer")])
        .await
        .unwrap();
    let field = |xml: &str, name: &str| authsome_connect::aws::xml_field(xml, name).unwrap();
    let first_id = field(&first, "AccessKeyId");
    let first_value = json!({"accessKeyId": first_id,
                             "secretAccessKey": field(&first, "SecretAccessKey")})
    .to_string();

    let s = setup_with(
        "Dual Phase",
        Extras {
            aws: Some(moto.url.clone()),
            ..Extras::default()
        },
    )
    .await;
    let tok = s.t.owner_token.clone();
    // The workspace's AWS credential (the one IAM is called with) and the key that rotates.
    let r = s
        .app
        .call(
            reqwest::Method::PUT,
            &format!("/control/v1/workspaces/{}/providers/aws", s.t.ws),
            Some(&tok),
            Some(
                json!({"mode": "hosted", "config": {"vaultId": s.vault, "secret": "AWS_ADMIN"},
                        "credential": json!({"accessKeyId": ACCESS_KEY_ID,
                                             "secretAccessKey": SECRET_ACCESS_KEY}).to_string()}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .app
        .call(
            reqwest::Method::PUT,
            &format!("/control/v1/vaults/{}/secrets/API_TOKEN", s.vault),
            Some(&tok),
            Some(json!({"value": first_value})),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let issued_settings = json!({
        "issuer": {"kind": "aws_iam_access_key", "userName": "ci-deployer"},
        "targets": settings()["targets"],
        "gracePeriodSeconds": 3600,
    });
    // Generated or issued, not both; a user name IAM would refuse.
    let mut both = issued_settings.clone();
    both["generator"] = json!({"length": 32});
    assert_error(&s.configure(both).await, 400, "invalid_request");
    let mut bad = issued_settings.clone();
    bad["issuer"]["userName"] = json!("no spaces");
    assert_error(&s.configure(bad).await, 400, "invalid_request");
    let r = s.configure(issued_settings).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["issuer"]["userName"], "ci-deployer");
    assert!(r.body.get("generator").is_none());

    // Rotated: a second key issued, stored and pushed; both live through the grace period.
    let started = s.start(json!({})).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let done = s.settle_until_waiting(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (version, value) = s.value().await;
    assert_eq!(
        version, 3,
        "the setup's value, the first key, then the issued one"
    );
    let new: Value = serde_json::from_str(&value).unwrap();
    let new_id = new["accessKeyId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, first_id);
    assert_eq!(s.at_render().as_deref(), Some(value.as_str()));
    let mut both_ids = vec![first_id.clone(), new_id.clone()];
    both_ids.sort();
    assert_eq!(
        access_keys(&iam, "ci-deployer").await,
        both_ids,
        "two live keys"
    );
    assert!(!done
        .to_string()
        .contains(new["secretAccessKey"].as_str().unwrap()));

    // After the grace period the previous key is revoked.
    s.app.clock.advance(std::time::Duration::from_secs(3601));
    let done = s.settle(&id).await;
    let retired = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["kind"] == "retire_previous")
        .unwrap()
        .clone();
    assert_eq!(retired["status"], "succeeded", "{done}");
    assert_eq!(access_keys(&iam, "ci-deployer").await, vec![new_id.clone()]);
    // Its previous key gone, this rotation cannot be rolled back.
    let refused = s
        .app
        .post(
            &format!("/control/v1/rotations/{id}/rollback"),
            &s.key,
            json!({}),
        )
        .await;
    assert_error(&refused, 409, "conflict");

    // A rotation that fails verification revokes the key it issued; the vault goes back.
    s.render.lock().unwrap().corrupt_reads = true;
    let failed = s
        .app
        .post(
            &format!("/control/v1/vaults/{}/secrets/API_TOKEN/rotations", s.vault),
            &s.key,
            json!({}),
        )
        .await;
    assert_eq!(failed.status, 202, "{}", failed.body);
    let failed = s.settle(failed.body["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    s.render.lock().unwrap().corrupt_reads = false;
    assert_eq!(access_keys(&iam, "ci-deployer").await, vec![new_id.clone()]);
    let (_, latest) = s.value().await;
    assert_eq!(latest, value, "the vault's latest is the live key again");
}

/// A stream of this test's own on the test NATS server, redelivering after `ack_wait`.
fn test_stream(ack_wait: std::time::Duration) -> Option<authsome_nats::JetStreamSettings> {
    let url = authsome_testkit::nats_url()?;
    let name = authsome_testkit::unique("JOBS");
    let mut jobs = authsome_nats::JetStreamSettings::new(&url);
    jobs.subject_prefix = format!("test.{}", name.to_lowercase());
    jobs.stream = name;
    jobs.ack_wait = ack_wait;
    Some(jobs)
}

#[tokio::test]
async fn over_jetstream_a_rotation_whose_worker_died_finishes_once() {
    use authsome_control::jobs::JobTransport;
    let Some(jobs) = test_stream(std::time::Duration::from_secs(1)) else {
        return;
    };
    let s = setup_with(
        "JetStream Rotation",
        Extras {
            jobs: Some(jobs.clone()),
            ..Extras::default()
        },
    )
    .await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let started = s.start(json!({})).await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    let first = &s.app.state.control;
    // A second replica on the same database and stream, reaching the same providers.
    let transport = Arc::new(authsome_nats::JetStreamJobs::connect(&jobs).await.unwrap());
    let render_url = s.render_url.clone();
    let replica_jobs = jobs.clone();
    let replica = s
        .app
        .replica(move |r| {
            r.targets.render = render_url;
            r.outbound = authsome_domain::egress::EgressPolicy::public_with("127.0.0.1").unwrap();
            r.jobs = Some(replica_jobs);
        })
        .await;
    let second = &replica.state.control;

    // The run is relayed to the stream; a worker takes the delivery and dies without a word.
    let relayed = first.relay_jobs(transport.as_ref()).await.unwrap();
    let mut delivered = transport
        .fetch(10, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let all: Vec<_> = delivered.iter().map(|d| d.ticket().unwrap()).collect();
    assert_eq!(delivered.len(), relayed, "{all:?}");
    let kinds: Vec<String> = delivered.iter().map(|d| d.ticket().unwrap().kind).collect();
    let run = kinds
        .iter()
        .position(|k| k == "rotation.run")
        .expect("the run relayed");
    let delivered = delivered.remove(run);
    let ticket = delivered.ticket().unwrap();
    assert_eq!((ticket.kind.as_str(), ticket.attempt), ("rotation.run", 1));
    let now = s.app.clock.now();
    let store = first.store().clone();
    let taken = store
        .take_job(
            &ticket.job,
            1,
            "relay",
            "dead-worker",
            now,
            now + chrono::Duration::seconds(60),
        )
        .await
        .unwrap();
    assert!(taken.is_some());
    drop(delivered);
    // The transport delivers it again (never acknowledged): nobody may run it under a live lease.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let budget = std::time::Duration::from_secs(2);
    let (a, b) = tokio::join!(first.run_jobs("w1", budget), second.run_jobs("w2", budget));
    assert_eq!(a.unwrap() + b.unwrap(), 0);
    // Its lease lapses: relayed as a second hand-out, run by exactly one replica.
    s.app.clock.advance(std::time::Duration::from_secs(61));
    let (a, b) = tokio::join!(first.run_jobs("w1", budget), second.run_jobs("w2", budget));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "run once");
    let done = s.settle(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(s.value().await.0, 2, "stored once");
    assert_eq!(s.render.lock().unwrap().deploys, 1, "deployed once");
    let (a, b) = tokio::join!(first.run_jobs("w1", budget), second.run_jobs("w2", budget));
    assert_eq!(a.unwrap() + b.unwrap(), 0, "nothing left to run");
    assert!(
        transport
            .fetch(10, std::time::Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "nothing left in the stream"
    );
    transport.delete_stream(&jobs.stream).await.unwrap();
}

#[tokio::test]
async fn rotation_settings_are_checked_and_stay_in_their_workspace() {
    let s = setup("Checked Rotation").await;
    for (body, field) in [
        (json!({"targets": []}), "targets"),
        (
            json!({"targets": [{"provider": "render", "config": {"key": "K"}}]}),
            "serviceId",
        ),
        (
            json!({"generator": {"length": 8, "alphabet": "hex"}, "targets": settings()["targets"]}),
            "generator.length",
        ),
        (
            json!({"targets": settings()["targets"], "schedule": {"everyDays": 0}}),
            "schedule.everyDays",
        ),
        (
            json!({"targets": settings()["targets"], "healthCheckUrl": "ftp://x"}),
            "healthCheckUrl",
        ),
    ] {
        let r = s.configure(body).await;
        assert_error(&r, 400, "invalid_request");
        assert!(r.body.to_string().contains(field), "{field}: {}", r.body);
    }
    // No settings: nothing to start.
    assert_error(&s.start(json!({})).await, 404, "not_found");
    assert_eq!(s.configure(settings()).await.status, 200);

    // Another workspace's owner sees and starts nothing here.
    let other = s.app.tenant("Other Rotation").await;
    let path = format!("/control/v1/vaults/{}/secrets/API_TOKEN/rotations", s.vault);
    assert_error(
        &s.app.post(&path, &other.owner_token, json!({})).await,
        404,
        "not_found",
    );
    let started = s.start(json!({})).await;
    let id = started.body["id"].as_str().unwrap();
    assert_error(
        &s.app
            .get(&format!("/control/v1/rotations/{id}"), &other.owner_token)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &s.app
            .post(
                &format!("/control/v1/rotations/{id}/rollback"),
                &other.owner_token,
                json!({}),
            )
            .await,
        404,
        "not_found",
    );
    // A viewer reads rotations but neither configures nor starts them.
    let (_, viewer) = s
        .app
        .add_member(&s.t.owner_token, &s.t.ws, "viewer@checked.test", "viewer")
        .await;
    assert_eq!(
        s.app
            .get(&format!("/control/v1/rotations/{id}"), &viewer)
            .await
            .status,
        200
    );
    assert_error(
        &s.app.post(&path, &viewer, json!({})).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn policies_at_three_levels_decide_with_the_most_restrictive_outcome() {
    let s = setup("Governed Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let tok = &s.t.owner_token;
    let policies = format!("/control/v1/workspaces/{}/policies", s.t.ws);
    let create = |body: Value| s.app.post(&policies, tok, body);

    // The workspace wants an hour between rotations; a preview first for Render's targets.
    let ws_policy = create(json!({"scope": "workspace", "rules": {"cooldownSeconds": 3600}})).await;
    assert_eq!(ws_policy.status, 201, "{}", ws_policy.body);
    assert!(ws_policy.body["id"].as_str().unwrap().starts_with("pol_"));
    let render_policy = create(json!({"scope": "provider", "target": "render",
        "rules": {"previewFirst": true, "rotationsPerWorkspacePerMonth": {"soft": 0}}}))
    .await;
    assert_eq!(render_policy.status, 201, "{}", render_policy.body);
    assert_error(
        &create(json!({"scope": "provider", "target": "render", "rules": {}})).await,
        409,
        "conflict",
    );

    let refused = s.start(json!({})).await;
    assert_error(&refused, 409, "conflict");
    assert!(
        refused.body.to_string().contains("previewFirst"),
        "{}",
        refused.body
    );
    // A dry run shows the decision, then the rotation may go, with the soft limit's warning.
    let plan = s.start(json!({"dryRun": true})).await;
    assert_eq!(plan.body["plan"]["decision"]["outcome"], "block");
    let started = s.start(json!({})).await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.body["decision"]["outcome"], "warn");
    assert_eq!(
        started.body["decision"]["findings"][0]["rule"],
        "rotationsPerWorkspacePerMonth"
    );
    let id = started.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.settle(&id).await["status"], "succeeded");

    // Now in cooldown (and not previewed since): both rules are named.
    let plan = s.start(json!({"dryRun": true})).await;
    let rules: Vec<&str> = plan.body["plan"]["decision"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"cooldownSeconds"), "{rules:?}");
    assert_error(&s.start(json!({})).await, 409, "conflict");
    // The secret's own level lifts the cooldown: the nearest level sets the field.
    let secret_policy = create(json!({"scope": "secret",
        "target": format!("{}/API_TOKEN", s.vault), "rules": {"cooldownSeconds": 0}}))
    .await;
    assert_eq!(secret_policy.status, 201, "{}", secret_policy.body);
    s.start(json!({"dryRun": true})).await;
    assert_eq!(s.start(json!({})).await.status, 202);

    // Changing and removing; bad rules and targets are named.
    let pid = render_policy.body["id"].as_str().unwrap();
    let updated = s
        .app
        .call(
            reqwest::Method::PUT,
            &format!("{policies}/{pid}"),
            Some(tok),
            Some(json!({"rules": {"maintenanceWindow": {"start": "02:00", "end": "04:00", "timeZone": "Europe/Berlin"}}})),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    for (body, field) in [
        (
            json!({"scope": "provider", "target": "heroku", "rules": {}}),
            "target",
        ),
        (
            json!({"scope": "workspace", "target": "x", "rules": {}}),
            "target",
        ),
        (
            json!({"scope": "secret", "target": "vlt_01jd4v0z3c8x2m5q7w9e1r6t0y/X", "rules": {}}),
            "target",
        ),
        (
            json!({"scope": "provider", "target": "fly", "rules": {"maintenanceWindow": {"start": "02:00", "end": "03:00", "timeZone": "Mars/Base"}}}),
            "timeZone",
        ),
        (
            json!({"scope": "provider", "target": "fly", "rules": {"unknown": 1}}),
            "unknown",
        ),
    ] {
        let r = create(body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        assert!(r.body.to_string().contains(field), "{field}: {}", r.body);
    }
    let listed = s.app.get(&policies, tok).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);
    let other = s.app.tenant("Other Governed").await;
    assert_error(
        &s.app
            .delete(
                &format!("/control/v1/workspaces/{}/policies/{pid}", other.ws),
                &other.owner_token,
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &s.app.get(&policies, &other.owner_token).await,
        404,
        "not_found",
    );
    assert_eq!(
        s.app.delete(&format!("{policies}/{pid}"), tok).await.status,
        204
    );
    let entries = crate::vault::audit_entries(&s.app, tok, &s.t.ws).await;
    assert!(entries
        .iter()
        .any(|e| e["action"] == "vault.policy.created"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "vault.policy.deleted"));
}

#[tokio::test]
async fn rotations_are_metered_per_day_and_stop_at_the_plans_limit() {
    let s = setup("Metered Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    // 99 rotations already this month (stored as the runs left them).
    s.seed_rotations(99).await;
    let now = s.app.clock.now();
    // The 100th goes; the 101st is the free plan's hard stop.
    let hundredth = s.start(json!({})).await;
    assert_eq!(hundredth.status, 202);
    let stopped = s.start(json!({})).await;
    assert_error(&stopped, 402, "payment_required");
    assert!(
        stopped.body.to_string().contains("100 rotations"),
        "{}",
        stopped.body
    );
    let usage_path = format!("/control/v1/workspaces/{}/rotations/usage", s.t.ws);
    let usage = s.app.get(&usage_path, &s.t.owner_token).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.body["total"], 100);
    assert_eq!(
        usage.body["allowance"],
        json!({"included": 100, "hardStop": true})
    );
    assert_eq!(usage.body["days"][0]["rotations"], 100);
    assert_eq!(
        usage.body["days"][0]["day"],
        now.format("%Y-%m-%d").to_string()
    );
    assert_eq!(usage.body["overage"], 0);
    // Another month has none; a bad month is named.
    let past = s
        .app
        .get(&format!("{usage_path}?month=2020-01"), &s.t.owner_token)
        .await;
    assert_eq!(
        (
            past.body["total"].as_u64(),
            past.body["days"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    assert_error(
        &s.app
            .get(&format!("{usage_path}?month=2020-13"), &s.t.owner_token)
            .await,
        400,
        "invalid_request",
    );

    // On pro the rotations go on (past 10,000 they would be overage).
    s.settle(hundredth.body["id"].as_str().unwrap()).await;
    let upgraded = s
        .app
        .patch(
            &format!("/control/v1/admin/workspaces/{}", s.t.ws),
            &s.app.root_key,
            json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    assert_eq!(s.start(json!({})).await.status, 202);
    let usage = s.app.get(&usage_path, &s.t.owner_token).await;
    assert_eq!(
        usage.body["allowance"],
        json!({"included": 10000, "hardStop": false})
    );
    // Enterprise: the workspace's own limit, a hard stop.
    let enterprise = s
        .app
        .patch(
            &format!("/control/v1/admin/workspaces/{}", s.t.ws),
            &s.app.root_key,
            json!({"plan": "enterprise", "limits": {"rotationsPerMonth": 101}}),
        )
        .await;
    assert_eq!(enterprise.status, 200, "{}", enterprise.body);
    assert_error(&s.start(json!({})).await, 402, "payment_required");
}

#[tokio::test]
async fn a_rotation_held_for_a_second_person_runs_once_approved() {
    let s = setup("Approved Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let owner = s.t.owner_token.clone();
    let (_, admin) = s
        .app
        .add_member(&owner, &s.t.ws, "admin@approved.test", "admin")
        .await;
    let (_, viewer) = s
        .app
        .add_member(&owner, &s.t.ws, "viewer@approved.test", "viewer")
        .await;
    let policy = s
        .app
        .post(
            &format!("/control/v1/workspaces/{}/policies", s.t.ws),
            &owner,
            json!({"scope": "workspace",
                   "rules": {"requireApproval": true, "approvalTimeoutSeconds": 600}}),
        )
        .await;
    assert_eq!(policy.status, 201, "{}", policy.body);
    let approvals = format!("/control/v1/workspaces/{}/approvals", s.t.ws);
    let act = |id: &str, action: &str, token: &str, body: Value| {
        let path = format!("/control/v1/approvals/{id}/{action}");
        let token = token.to_owned();
        let app = &s.app;
        async move { app.post(&path, &token, body).await }
    };
    let held = |body: Value| {
        let (s, approvals, owner) = (&s, &approvals, &owner);
        async move {
            let started = s.start(body).await;
            assert_eq!(started.status, 202, "{}", started.body);
            assert_eq!(started.body["status"], "awaiting_approval");
            assert_eq!(started.body["decision"]["outcome"], "require_approval");
            let rot = started.body["id"].as_str().unwrap().to_owned();
            let list = s.app.get(approvals, owner).await;
            let request = list.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["rotationId"] == rot.as_str())
                .unwrap()
                .clone();
            assert_eq!(request["status"], "pending");
            (rot, request["id"].as_str().unwrap().to_owned())
        }
    };
    let run_jobs = || async {
        s.app
            .state
            .control
            .run_jobs("w", std::time::Duration::from_secs(1))
            .await
            .unwrap()
    };

    // Held: nothing runs; the requester and a viewer cannot approve; an admin can.
    let (rot, apr) = held(json!({"reason": "leaked in a log"})).await;
    assert!(apr.starts_with("apr_"));
    assert_eq!(run_jobs().await, 0);
    assert_eq!(s.value().await.0, 1);
    assert_error(
        &act(&apr, "approve", &owner, json!({})).await,
        403,
        "forbidden",
    );
    assert_error(
        &act(&apr, "approve", &viewer, json!({})).await,
        403,
        "forbidden",
    );
    let approved = act(&apr, "approve", &admin, json!({"reason": "checked"})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(s.settle(&rot).await["status"], "succeeded");
    assert_eq!(s.value().await.0, 2);
    assert_error(&act(&apr, "deny", &admin, json!({})).await, 409, "conflict");

    // Denied: the rotation fails and nothing changes. Cancelled by its requester likewise.
    let (rot, apr) = held(json!({})).await;
    let denied = act(&apr, "deny", &admin, json!({"reason": "not now"})).await;
    assert_eq!(denied.status, 200, "{}", denied.body);
    let rotation = s
        .app
        .get(&format!("/control/v1/rotations/{rot}"), &owner)
        .await;
    assert_eq!(rotation.body["status"], "failed");
    assert_eq!(rotation.body["error"], "the approval was denied");
    let (_, apr) = held(json!({})).await;
    assert_error(
        &act(&apr, "cancel", &admin, json!({})).await,
        403,
        "forbidden",
    );
    assert_eq!(
        act(&apr, "cancel", &owner, json!({})).await.body["status"],
        "cancelled"
    );
    assert_eq!(s.value().await.0, 2);

    // Expired after its timeout: the rotation fails; approving then is too late.
    let (rot, apr) = held(json!({})).await;
    s.app.clock.advance(std::time::Duration::from_secs(601));
    assert_eq!(s.app.state.control.expire_approvals().await.unwrap(), 1);
    let expired = s
        .app
        .get(&format!("/control/v1/approvals/{apr}"), &owner)
        .await;
    assert_eq!(expired.body["status"], "expired");
    let rotation = s
        .app
        .get(&format!("/control/v1/rotations/{rot}"), &owner)
        .await;
    assert_eq!(rotation.body["status"], "failed");
    assert_error(
        &act(&apr, "approve", &admin, json!({})).await,
        409,
        "conflict",
    );

    // An owner breaks glass on their own request, only with a written reason; it runs.
    let (rot, apr) = held(json!({})).await;
    let reason = json!({"reason": "the key leaked publicly"});
    assert_error(
        &act(&apr, "break-glass", &admin, reason.clone()).await,
        403,
        "forbidden",
    );
    assert_error(
        &act(&apr, "break-glass", &owner, json!({"reason": "now"})).await,
        400,
        "invalid_request",
    );
    let broken = act(&apr, "break-glass", &owner, reason).await;
    assert_eq!(broken.status, 200, "{}", broken.body);
    assert_eq!(
        (
            broken.body["status"].as_str(),
            broken.body["breakGlass"].as_bool()
        ),
        (Some("approved"), Some(true))
    );
    assert_eq!(s.settle(&rot).await["status"], "succeeded");
    let entries = crate::vault::audit_entries(&s.app, &owner, &s.t.ws).await;
    for action in [
        "vault.approval.requested",
        "vault.approval.approved",
        "vault.approval.denied",
        "vault.approval.cancelled",
        "vault.approval.expired",
        "vault.approval.break_glass",
    ] {
        assert!(
            entries.iter().any(|e| e["action"] == action),
            "{action} missing"
        );
    }
    // A policy names the approvers: operators (and owners) approve, admins no longer do.
    let (_, operator) = s
        .app
        .add_member(&owner, &s.t.ws, "operator@approved.test", "operator")
        .await;
    let pid = policy.body["id"].as_str().unwrap();
    let policy_path = format!("/control/v1/workspaces/{}/policies/{pid}", s.t.ws);
    for roles in [json!([]), json!(["viewer"]), json!(["root"])] {
        let r = s
            .app
            .call(
                reqwest::Method::PUT,
                &policy_path,
                Some(&owner),
                Some(json!({"rules": {"requireApproval": true, "approverRoles": roles}})),
            )
            .await;
        assert_eq!(r.status, 400, "{roles}: {}", r.body);
    }
    let r = s
        .app
        .call(
            reqwest::Method::PUT,
            &policy_path,
            Some(&owner),
            Some(json!({"rules": {"requireApproval": true, "approverRoles": ["operator"]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (rot, apr) = held(json!({})).await;
    let refused = act(&apr, "approve", &admin, json!({})).await;
    assert_error(&refused, 403, "forbidden");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("owner, operator"),
        "{}",
        refused.body
    );
    let approved = act(&apr, "approve", &operator, json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(s.settle(&rot).await["status"], "succeeded");

    // Another workspace sees none of it.
    let other = s.app.tenant("Other Approved").await;
    assert_error(
        &s.app
            .get(&format!("/control/v1/approvals/{apr}"), &other.owner_token)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &act(&apr, "approve", &other.owner_token, json!({})).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_scheduled_rotation_runs_once_across_two_replicas() {
    let s = setup("Scheduled Rotation").await;
    let mut body = settings();
    body["schedule"] = json!({"everyDays": 1});
    let r = s.configure(body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schedule"], json!({"everyDays": 1}));
    let mut bad = settings();
    bad["schedule"] = json!({"cron": "0 3 * *", "timeZone": "Europe/Berlin"});
    let refused = s.configure(bad).await;
    assert_error(&refused, 400, "invalid_request");
    assert!(
        refused.body.to_string().contains("schedule.cron"),
        "{}",
        refused.body
    );

    let key = s.key.clone();
    // A second replica: another control plane on the same database, at the same time.
    let store = s.app.state.control.store().clone();
    let second = authsome_control::ControlPlane::new(store, Default::default())
        .with_clock(s.app.clock.clone());
    let first = &s.app.state.control;
    assert_eq!(first.schedule_rotations().await.unwrap(), 0, "not due yet");
    s.app
        .clock
        .advance(std::time::Duration::from_secs(24 * 3600 + 60));
    let (a, b) = tokio::join!(first.schedule_rotations(), second.schedule_rotations());
    assert_eq!(a.unwrap() + b.unwrap(), 1, "the occurrence is taken once");
    let (a, b) = tokio::join!(first.schedule_rotations(), second.schedule_rotations());
    assert_eq!(a.unwrap() + b.unwrap(), 0);
    first
        .run_jobs("replica-1", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let list = s.rotations().await;
    let rotations = list["data"].as_array().unwrap().clone();
    assert_eq!(rotations.len(), 1, "{list}");
    assert_eq!(rotations[0]["requestedBy"], "schedule");
    let id = rotations[0]["id"].as_str().unwrap();
    assert_eq!(s.settle(id).await["status"], "succeeded");
    assert_eq!(s.value().await.0, 2);

    // A day later the policy wants a preview first: the occurrence is skipped, with a trail.
    let policy = s
        .app
        .post(
            &format!("/control/v1/workspaces/{}/policies", s.t.ws),
            &key,
            json!({"scope": "workspace", "rules": {"previewFirst": true}}),
        )
        .await;
    assert_eq!(policy.status, 201);
    s.app
        .clock
        .advance(std::time::Duration::from_secs(24 * 3600 + 60));
    assert_eq!(first.schedule_rotations().await.unwrap(), 1);
    first
        .run_jobs("replica-1", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        s.rotations().await["data"].as_array().unwrap().len(),
        1,
        "nothing new ran"
    );
    let entries = crate::vault::audit_entries(&s.app, &key, &s.t.ws).await;
    assert!(entries
        .iter()
        .any(|e| e["action"] == "vault.rotation.skipped"));
    assert_eq!(
        first.schedule_rotations().await.unwrap(),
        0,
        "taken, not retried"
    );
}

/// What a fake Slack or webhook endpoint received.
#[derive(Default)]
struct Inbox {
    posts: Vec<(HeaderMap, String)>,
}

async fn fake_inbox() -> (String, Arc<Mutex<Inbox>>) {
    let inbox: Arc<Mutex<Inbox>> = Arc::default();
    let shared = inbox.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let inbox = shared.clone();
        async move {
            inbox.lock().unwrap().posts.push((headers, body));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

/// The Standard Webhooks check a receiver makes: `v1,` HMAC-SHA256 of `id.timestamp.body`
/// under the base64 key after `whsec_`.
fn signed_by(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let get = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{body}", get("webhook-id"), get("webhook-timestamp")).as_bytes());
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    get("webhook-signature").split(' ').any(|s| s == expected)
}

#[tokio::test]
async fn unacknowledged_alerts_escalate_to_the_next_channel() {
    let s = setup("Escalating Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let (slack_url, slack) = fake_inbox().await;
    let (pager_url, pager) = fake_inbox().await;
    let (late_url, late) = fake_inbox().await;
    let channels = format!("/control/v1/workspaces/{}/alert-channels", s.t.ws);
    let key = s.key.clone();
    let make = |body: Value| {
        let app = &s.app;
        let channels = channels.clone();
        let key = key.clone();
        async move { app.post(&channels, &key, body).await }
    };
    // Last in line: an on-call pager that hears only what escalates to it.
    let last = make(
        json!({"type": "webhook", "config": {"url": format!("{late_url}/late")},
                           "escalationOnly": true}),
    )
    .await;
    assert_eq!(last.status, 201, "{}", last.body);
    let pager_channel = make(
        json!({"type": "webhook", "config": {"url": format!("{pager_url}/p")},
                          "escalationOnly": true,
                          "escalation": {"channelId": last.body["id"], "afterMinutes": 60}}),
    )
    .await;
    assert_eq!(pager_channel.status, 201, "{}", pager_channel.body);
    assert_eq!(pager_channel.body["escalationOnly"], true);
    let first = make(json!({"type": "slack", "config": {"url": format!("{slack_url}/s")},
                           "escalation": {"channelId": pager_channel.body["id"], "afterMinutes": 15}}))
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["escalation"]["afterMinutes"], 15);
    // Bad escalations: out of range, unknown, another workspace's channel.
    let other = s.app.tenant("Escalation Outsider").await;
    let theirs = s
        .app
        .post(
            &format!("/control/v1/workspaces/{}/alert-channels", other.ws),
            &other.owner_token,
            json!({"type": "webhook", "config": {"url": format!("{late_url}/theirs")}}),
        )
        .await;
    assert_eq!(theirs.status, 201);
    for (escalation, field) in [
        (
            json!({"channelId": last.body["id"], "afterMinutes": 0}),
            "escalation.afterMinutes",
        ),
        (
            json!({"channelId": "alc_01jd4v0z3c8x2m5q7w9e1r6t0y", "afterMinutes": 5}),
            "escalation.channelId",
        ),
        (
            json!({"channelId": theirs.body["id"], "afterMinutes": 5}),
            "escalation.channelId",
        ),
    ] {
        let r = make(
            json!({"type": "slack", "config": {"url": format!("{slack_url}/x")},
                            "escalation": escalation}),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
        assert!(r.body.to_string().contains(field), "{field}: {}", r.body);
    }

    let run = || async {
        s.app
            .state
            .control
            .run_jobs("w", std::time::Duration::from_secs(5))
            .await
            .unwrap()
    };
    let posts = |inbox: &Arc<Mutex<Inbox>>| inbox.lock().unwrap().posts.len();
    // A failed rotation: Slack hears at once; the escalation-only channels do not.
    s.render.lock().unwrap().corrupt_reads = true;
    let failed = s.start(json!({})).await;
    assert_eq!(
        s.settle(failed.body["id"].as_str().unwrap()).await["status"],
        "failed"
    );
    run().await;
    assert_eq!((posts(&slack), posts(&pager), posts(&late)), (1, 0, 0));
    // Fifteen minutes without an acknowledgement: the pager.
    s.app.clock.advance(std::time::Duration::from_secs(14 * 60));
    run().await;
    assert_eq!(posts(&pager), 0, "not before its time");
    s.app.clock.advance(std::time::Duration::from_secs(61));
    run().await;
    assert_eq!((posts(&slack), posts(&pager), posts(&late)), (1, 1, 0));
    assert!(pager.lock().unwrap().posts[0].1.contains("Unacknowledged"));
    // Acknowledged before the next step: the last channel never hears of it.
    let alerts = s
        .app
        .get(&format!("/control/v1/workspaces/{}/alerts", s.t.ws), &key)
        .await;
    let failed_alert = alerts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "rotation.failed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acked = s
        .app
        .post(
            &format!("/control/v1/alerts/{failed_alert}/acknowledge"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    s.app.clock.advance(std::time::Duration::from_secs(61 * 60));
    run().await;
    assert_eq!((posts(&slack), posts(&pager), posts(&late)), (1, 1, 0));
}

#[tokio::test]
async fn alerts_reach_slack_email_and_signed_webhooks_deduplicated() {
    let Some(sink) = authsome_testkit::smtp::SmtpSink::start() else {
        return;
    };
    let s = setup_with(
        "Alerting Rotation",
        Extras {
            smtp: Some(sink.url.clone()),
            ..Extras::default()
        },
    )
    .await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let (slack_url, slack) = fake_inbox().await;
    let (hook_url, hook) = fake_inbox().await;
    let channels = format!("/control/v1/workspaces/{}/alert-channels", s.t.ws);
    let tok = &s.t.owner_token;
    let made = s
        .app
        .post(
            &channels,
            tok,
            json!({"type": "slack", "config": {"url": format!("{slack_url}/services/T0/B0/secret-path")}}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert!(made.body["id"].as_str().unwrap().starts_with("alc_"));
    assert!(
        !made.body.to_string().contains("secret-path"),
        "the Slack URL stays sealed"
    );
    let webhook = s
        .app
        .post(
            &channels,
            tok,
            json!({"type": "webhook", "config": {"url": format!("{hook_url}/hook")}}),
        )
        .await;
    assert_eq!(webhook.status, 201, "{}", webhook.body);
    let secret = webhook.body["signingSecret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let email = s
        .app
        .post(
            &channels,
            tok,
            json!({"type": "email", "config": {"to": ["ops@acme.test"]}, "minSeverity": "critical"}),
        )
        .await;
    assert_eq!(email.status, 201, "{}", email.body);
    for (body, field) in [
        (
            json!({"type": "slack", "config": {"url": "not a url"}}),
            "config.url",
        ),
        (
            json!({"type": "email", "config": {"to": ["nobody"]}}),
            "config.to",
        ),
        (json!({"type": "pager", "config": {}}), "type"),
    ] {
        let r = s.app.post(&channels, tok, body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
    }
    let listed = s.app.get(&channels, tok).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);
    assert!(!listed.body.to_string().contains(&secret));

    // A failed rotation: a critical alert, to all three; a successful one: info, not by email.
    s.render.lock().unwrap().corrupt_reads = true;
    let failed = s.start(json!({})).await;
    let failed_id = failed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.settle(&failed_id).await["status"], "failed");
    s.render.lock().unwrap().corrupt_reads = false;
    let ok = s.start(json!({})).await;
    let ok_id = ok.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.settle(&ok_id).await["status"], "succeeded");
    s.app
        .state
        .control
        .run_jobs("w", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let alerts_path = format!("/control/v1/workspaces/{}/alerts", s.t.ws);
    let alerts = s.app.get(&alerts_path, tok).await;
    let kinds: Vec<&str> = alerts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"rotation.failed") && kinds.contains(&"rotation.succeeded"),
        "{kinds:?}"
    );
    let slack_posts = slack.lock().unwrap().posts.clone();
    assert_eq!(slack_posts.len(), 2, "both alerts in Slack");
    assert!(slack_posts
        .iter()
        .any(|(_, b)| b.contains("failed") && b.contains(&failed_id)));
    let hook_posts = hook.lock().unwrap().posts.clone();
    assert_eq!(hook_posts.len(), 2);
    for (headers, body) in &hook_posts {
        assert!(signed_by(&secret, headers, body), "the webhook is signed");
    }
    assert!(hook_posts
        .iter()
        .any(|(_, b)| b.contains("alert.rotation.failed")));
    let mails = sink.wait_for(1);
    let alert_mails: Vec<&String> = mails
        .iter()
        .filter(|m| m.contains("To: ops@acme.test"))
        .collect();
    assert_eq!(alert_mails.len(), 1, "only the critical one by email");
    assert!(alert_mails[0].contains("failed"));
    // Nothing delivered carries a value.
    let (_, value) = s.value().await;
    for text in slack_posts.iter().chain(hook_posts.iter()).map(|(_, b)| b) {
        assert!(!text.contains(&value) && !text.contains(RENDER_TOKEN));
    }

    // Deduplicated: a policy refusing twice is one alert.
    let policy = s
        .app
        .post(
            &format!("/control/v1/workspaces/{}/policies", s.t.ws),
            tok,
            json!({"scope": "workspace", "rules": {"previewFirst": true}}),
        )
        .await;
    assert_eq!(policy.status, 201);
    assert_error(&s.start(json!({})).await, 409, "conflict");
    assert_error(&s.start(json!({})).await, 409, "conflict");
    let alerts = s.app.get(&alerts_path, tok).await;
    let violations: Vec<&Value> = alerts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "policy.violation")
        .collect();
    assert_eq!(violations.len(), 1, "one alert for the same refusal");

    // Acknowledged once; another workspace cannot.
    let id = violations[0]["id"].as_str().unwrap();
    let acked = s
        .app
        .post(
            &format!("/control/v1/alerts/{id}/acknowledge"),
            tok,
            json!({}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert!(acked.body["acknowledgedAt"].is_string());
    assert_error(
        &s.app
            .post(
                &format!("/control/v1/alerts/{id}/acknowledge"),
                tok,
                json!({}),
            )
            .await,
        409,
        "conflict",
    );
    let other = s.app.tenant("Other Alerting").await;
    assert_error(
        &s.app
            .post(
                &format!("/control/v1/alerts/{id}/acknowledge"),
                &other.owner_token,
                json!({}),
            )
            .await,
        404,
        "not_found",
    );
    assert_error(
        &s.app.get(&alerts_path, &other.owner_token).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_channel_in_its_cooldown_stays_quiet_and_threshold_alerts_come_once() {
    let s = setup("Cooling Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let (slack_url, slack) = fake_inbox().await;
    let made = s
        .app
        .post(
            &format!("/control/v1/workspaces/{}/alert-channels", s.t.ws),
            &s.t.owner_token,
            json!({"type": "slack", "config": {"url": slack_url}, "cooldownSeconds": 3600}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    // 79 rotations this month already (free plan: 100): the 80th warns once, the 81st not again.
    s.seed_rotations(79).await;
    for _ in 0..2 {
        let started = s.start(json!({})).await;
        assert_eq!(started.status, 202, "{}", started.body);
        let id = started.body["id"].as_str().unwrap().to_owned();
        s.settle(&id).await;
    }
    let alerts = s
        .app
        .get(
            &format!("/control/v1/workspaces/{}/alerts", s.t.ws),
            &s.t.owner_token,
        )
        .await;
    let near: Vec<&Value> = alerts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "usage.threshold")
        .collect();
    assert_eq!(near.len(), 1, "80% once a month");
    assert_eq!(near[0]["details"]["percent"], 80);
    assert_eq!(near[0]["details"]["metric"], "rotations");
    // Three alerts were raised (the warning and two successes); Slack heard the first only.
    s.app
        .state
        .control
        .run_jobs("w", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        slack.lock().unwrap().posts.len(),
        1,
        "the cooldown held the others"
    );
}

#[tokio::test]
async fn credentials_that_expire_soon_raise_alerts_once_per_threshold() {
    let s = setup("Expiring Rotation").await;
    assert_eq!(s.configure(settings()).await.status, 200);
    let now = s.app.clock.now();
    let put = |name: &'static str, expires: chrono::DateTime<chrono::Utc>| {
        let (app, key, vault) = (&s.app, s.key.clone(), s.vault.clone());
        async move {
            let r = app
                .call(
                    reqwest::Method::PUT,
                    &format!("/control/v1/vaults/{vault}/secrets/{name}"),
                    Some(&key),
                    Some(json!({"value": "v", "expiresAt": expires})),
                )
                .await;
            assert!(r.status == 200 || r.status == 201, "{}", r.body);
        }
    };
    // API_TOKEN has rotation settings; the others do not.
    put("API_TOKEN", now + chrono::Duration::days(5)).await;
    put("LEGACY_KEY", now + chrono::Duration::hours(12)).await;
    put("LATER_KEY", now + chrono::Duration::days(30)).await;
    let control = &s.app.state.control;
    assert_eq!(control.alert_expiring_credentials().await.unwrap(), 2);
    let alerts = |key: String| {
        let (app, ws) = (&s.app, s.t.ws.clone());
        async move {
            let r = app
                .get(&format!("/control/v1/workspaces/{ws}/alerts"), &key)
                .await;
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["type"] == "credential.expiring")
                .cloned()
                .collect::<Vec<Value>>()
        }
    };
    let first = alerts(s.key.clone()).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let legacy = first
        .iter()
        .find(|a| a["details"]["secret"] == "LEGACY_KEY")
        .unwrap();
    assert_eq!(legacy["severity"], "critical");
    assert!(legacy["title"]
        .as_str()
        .unwrap()
        .contains("cannot be rotated automatically"));
    let api = first
        .iter()
        .find(|a| a["details"]["secret"] == "API_TOKEN")
        .unwrap();
    assert_eq!(
        (
            api["severity"].as_str(),
            api["details"]["rotatable"].as_bool()
        ),
        (Some("warning"), Some(true))
    );
    // Looking again raises nothing new; a day before API_TOKEN's expiry, its critical one.
    control.alert_expiring_credentials().await.unwrap();
    assert_eq!(alerts(s.key.clone()).await.len(), 2);
    s.app
        .clock
        .advance(std::time::Duration::from_secs(4 * 24 * 3600 + 3600));
    control.alert_expiring_credentials().await.unwrap();
    let later = alerts(s.key.clone()).await;
    assert_eq!(later.len(), 3, "{later:?}");
    assert!(later
        .iter()
        .any(|a| a["details"]["secret"] == "API_TOKEN" && a["severity"] == "critical"));
}
