//! Rotation's figures (issue 38), on SQLite, Postgres, and Postgres with the jobs over NATS
//! JetStream:
//!
//! 1. A batch rotation of `ROTATION_SECRETS` (default 1,000) secrets against a local Render
//!    (its REST shape, one service per secret): the time to start them all (one
//!    `POST …/vaults/{id}/rotations`), and the time until every rotation succeeded (mint, store,
//!    push, verify by read-back), run by the job runner as the maintenance loop runs it.
//! 2. The job queue alone, to show it is not the bottleneck: `ROTATION_QUEUE_JOBS` (default
//!    5,000) jobs enqueued, then handed out and retired as the runner does (claimed under a
//!    lease from the database; over NATS relayed into the stream, fetched, taken in the
//!    database and acknowledged): jobs per second.
//!
//! `cargo bench -p authsome-server --bench rotation_batch`
//! (`ROTATION_ONLY=sqlite|postgres|nats`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsome_control::jobs::JobTransport;

use authsome_domain::job::Job;

use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::{PostgresStore, SqliteStore, Store};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "rnd_bench_token";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Render's env vars, one service per secret: `(service, key) -> value`.
type Vars = Arc<Mutex<HashMap<(String, String), String>>>;

async fn fake_render() -> String {
    use axum::extract::{Path, State};
    use axum::routing::{get, put};
    let vars: Vars = Arc::default();
    let app = axum::Router::new()
        .route(
            "/services/{service}/env-vars/{key}",
            put(
                |State(vars): State<Vars>,
                 Path((service, key)): Path<(String, String)>,
                 axum::Json(body): axum::Json<Value>| async move {
                    let value = body["value"].as_str().unwrap_or_default().to_owned();
                    vars.lock()
                        .unwrap()
                        .insert((service, key.clone()), value.clone());
                    axum::Json(json!({"key": key, "value": value}))
                },
            ),
        )
        .route(
            "/services/{service}/env-vars",
            get(
                |State(vars): State<Vars>, Path(service): Path<String>| async move {
                    let list: Vec<Value> = vars
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|((s, _), _)| *s == service)
                        .map(|((_, k), v)| json!({"envVar": {"key": k, "value": v}, "cursor": k}))
                        .collect();
                    axum::Json(Value::Array(list))
                },
            ),
        )
        .with_state(vars);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

mod support;

/// The server, and a client calling it with the root workspace's management key.
struct Server {
    served: support::Server,
    client: reqwest::Client,
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .client
            .request(method, format!("{}{path}", self.served.base))
            .bearer_auth(&self.served.management_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

async fn start(
    store: Arc<dyn Store>,
    apps: AppDatabaseConfig,
    jobs: Option<authsome_nats::JetStreamSettings>,
) -> Server {
    let render = fake_render().await;
    let served = support::start(store, apps, move |settings| {
        settings.targets.render = render;
        settings.outbound =
            authsome_domain::egress::EgressPolicy::public_with("127.0.0.1").unwrap();
        // The bench runs the jobs itself.
        settings.maintenance_every = Duration::from_secs(3600);
        settings.jobs = jobs;
    })
    .await;
    Server {
        served,
        client: reqwest::Client::new(),
    }
}

async fn batch(label: &str, s: &Server, secrets: usize) {
    use reqwest::Method;
    let ws = &s.served.workspace;
    // Rotations past the free plan's 100 a month.
    s.call(
        Method::PATCH,
        &format!("/control/v1/admin/workspaces/{ws}"),
        json!({"plan": "enterprise", "limits": {"rotationsPerMonth": 1_000_000}}),
    )
    .await;
    let vault = s
        .call(
            Method::POST,
            &format!("/control/v1/workspaces/{ws}/vaults"),
            json!({"name": "bench"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.call(
        Method::PUT,
        &format!("/control/v1/workspaces/{ws}/providers/render"),
        json!({"mode": "hosted", "config": {"vaultId": vault, "secret": "RENDER_TOKEN"},
               "credential": TOKEN}),
    )
    .await;
    let names: Vec<String> = (0..secrets).map(|i| format!("TOKEN_{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        s.call(
            Method::PUT,
            &format!("/control/v1/vaults/{vault}/secrets/{name}"),
            json!({"value": format!("first-{i}")}),
        )
        .await;
        s.call(
            Method::PUT,
            &format!("/control/v1/vaults/{vault}/secrets/{name}/rotation"),
            json!({"generator": {"length": 32, "alphabet": "hex", "prefix": "tok_"},
                   "targets": [{"provider": "render",
                                "config": {"serviceId": format!("srv-{i}"), "key": name}}]}),
        )
        .await;
    }
    let started = Instant::now();
    let outcomes = s
        .call(
            Method::POST,
            &format!("/control/v1/vaults/{vault}/rotations"),
            json!({"secrets": names, "reason": "bench"}),
        )
        .await;
    let start_took = started.elapsed();
    let data = outcomes["data"].as_array().unwrap();
    assert!(data.iter().all(|o| o["outcome"] == "started"), "{outcomes}");
    let ran_started = Instant::now();
    let mut ran = 0;
    loop {
        let n = s
            .served
            .app
            .state
            .control
            .run_jobs("bench", Duration::from_secs(600))
            .await
            .unwrap();
        ran += n;
        if n == 0 {
            break;
        }
    }
    let run_took = ran_started.elapsed();
    // Every rotation succeeded.
    let mut succeeded = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .call(
                Method::GET,
                &format!(
                    "/control/v1/workspaces/{ws}/rotations?limit=100{}",
                    cursor
                        .as_ref()
                        .map(|c| format!("&cursor={c}"))
                        .unwrap_or_default()
                ),
                Value::Null,
            )
            .await;
        succeeded += page["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count();
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(succeeded, secrets, "every rotation succeeded");
    println!(
        "{label}: batch of {secrets}: started in {:.2} s; all succeeded {:.2} s later \
         ({:.0} rotations/s; {ran} jobs run); {:.2} s in all",
        start_took.as_secs_f64(),
        run_took.as_secs_f64(),
        secrets as f64 / run_took.as_secs_f64(),
        (start_took + run_took).as_secs_f64(),
    );
}

async fn queue(label: &str, s: &Server, jobs: usize, transport: Option<&dyn JobTransport>) {
    let store = s.served.app.state.control.store().clone();
    let clock = s.served.app.state.control.clock().clone();
    let now = clock.now();
    for i in 0..jobs {
        let job = Job::new("bench.noop", json!({"n": i}), None, now);
        store.enqueue_job(&job).await.unwrap();
    }
    let lease = |now: chrono::DateTime<chrono::Utc>| now + chrono::Duration::seconds(60);
    let started = Instant::now();
    let mut done = 0;
    match transport {
        None => loop {
            let now = clock.now();
            let claimed = store
                .claim_jobs("bench", now, lease(now), 16)
                .await
                .unwrap();
            if claimed.is_empty() {
                break;
            }
            for job in claimed {
                assert!(store.finish_job(&job.id, "bench", now).await.unwrap());
                done += 1;
            }
        },
        Some(transport) => {
            let control = &s.served.app.state.control;
            control.relay_jobs(transport).await.unwrap();
            loop {
                let delivered = transport
                    .fetch(16, Duration::from_millis(50))
                    .await
                    .unwrap();
                if delivered.is_empty() {
                    break;
                }
                for d in delivered {
                    let ticket = d.ticket().unwrap();
                    let now = clock.now();
                    let job = store
                        .take_job(
                            &ticket.job,
                            ticket.attempt,
                            "relay",
                            "bench",
                            now,
                            lease(now),
                        )
                        .await
                        .unwrap()
                        .expect("taken once");
                    assert!(store.finish_job(&job.id, "bench", now).await.unwrap());
                    d.ack().await;
                    done += 1;
                }
            }
        }
    }
    let took = started.elapsed();
    assert_eq!(done, jobs, "every job handed out once");
    println!(
        "{label}: job queue: {jobs} jobs handed out and retired in {:.2} s ({:.0} jobs/s)",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
}

fn main() {
    let only = std::env::var("ROTATION_ONLY").ok();
    let secrets = env_number("ROTATION_SECRETS", 1_000);
    let jobs = env_number("ROTATION_QUEUE_JOBS", 5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    runtime.block_on(async {
        if wanted("sqlite") {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&dir.path().join("cp.db")).await.unwrap());
            let apps = AppDatabaseConfig::Sqlite {
                dir: dir.path().join("apps"),
            };
            let s = start(store, apps, None).await;
            batch("sqlite", &s, secrets).await;
            queue("sqlite", &s, jobs, None).await;
        }
        for nats in [false, true] {
            if !wanted(if nats { "nats" } else { "postgres" }) {
                continue;
            }
            let Some(db) = authsome_testkit::TestDatabase::create().await else {
                println!("postgres: skipped (unreachable)");
                continue;
            };
            let settings = if nats {
                let Some(url) = authsome_testkit::nats_url() else {
                    println!("nats: skipped (unreachable)");
                    continue;
                };
                let name = authsome_testkit::unique("BENCH_JOBS");
                let mut settings = authsome_nats::JetStreamSettings::new(&url);
                settings.subject_prefix = format!("bench.{}", name.to_lowercase());
                settings.stream = name;
                Some(settings)
            } else {
                None
            };
            let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
            let apps = AppDatabaseConfig::Postgres {
                server_url: db.url.clone(),
            };
            let label = if nats { "postgres+nats" } else { "postgres" };
            let s = start(store, apps, settings.clone()).await;
            batch(label, &s, secrets).await;
            let transport = match &settings {
                Some(settings) => Some(
                    authsome_nats::JetStreamJobs::connect(settings)
                        .await
                        .unwrap(),
                ),
                None => None,
            };
            queue(
                label,
                &s,
                jobs,
                transport.as_ref().map(|t| t as &dyn JobTransport),
            )
            .await;
            if let (Some(t), Some(settings)) = (&transport, &settings) {
                t.delete_stream(&settings.stream).await.unwrap();
            }
        }
    });
}
