//! Metering's cost on the customer API's hot path (issue 39): the entry point's token check
//! (`ControlPlane::admit` with a secret key: verification on a warm cache, the workspace's
//! standing, the key's rate limit, the key's use noted for `lastUsedAt`) with metering (the
//! request counted and the monthly quota checked on the same ledger entry the use is noted in)
//! and without (`unmetered_baseline`), side by side in one run: rounds of each
//! alternate so drift of the machine affects both. Single-threaded: the figure is per core.
//! The flush that writes the counts (one batch per interval, not per request) is timed apart.
//!
//! `cargo bench -p authsome-server --bench metering` (`METERING_ROUNDS`, `METERING_PER_ROUND`);
//! each round's pair is also compared alone, and the median of those is reported with the range.
//! Target: metering adds under 2%.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authsome_control::admission::{Admission, Presented};
use authsome_control::{
    AdminWorkspacePatch, ControlPlane, ControlSettings, NewAppKey, NewApplication,
};
use authsome_domain::keys::KeyKind;
use authsome_domain::tenancy::{Environment, Plan, WorkspaceLimits};
use authsome_gateway::{InProcessLimiter, InProcessReplayCache};
use authsome_storage::{SqliteStore, Store, SystemRepository};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn entry(store: Arc<dyn Store>) -> ControlPlane {
    ControlPlane::new(store, ControlSettings::default()).with_entry_state(
        Arc::new(InProcessLimiter::default()),
        Arc::new(InProcessReplayCache::default()),
    )
}

async fn admit_many(control: &ControlPlane, app: &str, key: &str, n: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let admitted = control
            .admit(
                Admission {
                    application: black_box(app),
                    presented: Presented::Key(black_box(key)),
                    identify_only: true,
                    client: None,
                },
                None,
            )
            .await;
        assert!(admitted.is_ok(), "admitted");
        black_box(admitted.ok());
    }
    started.elapsed()
}

fn main() {
    let rounds = env_number("METERING_ROUNDS", 20).max(1);
    let per_round = env_number("METERING_PER_ROUND", 100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store = SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let store: Arc<dyn Store> = Arc::new(store);
        let metered = entry(store.clone());
        let authsome_control::BootstrapResult::Created {
            workspace_id,
            management_key,
            ..
        } = metered
            .bootstrap("bench@example.com", None)
            .await
            .expect("bootstrap")
        else {
            panic!("fresh database");
        };
        let actor = metered.authenticate(&management_key).await.expect("actor");
        // An enterprise workspace with a quota (so it is checked) and a rate no round reaches.
        metered
            .admin_update_workspace(
                &actor,
                &workspace_id,
                AdminWorkspacePatch {
                    plan: Some(Plan::Enterprise),
                    limits: Some(WorkspaceLimits {
                        requests_per_second_per_key: Some(1_000_000),
                        requests_per_month: Some(1_000_000_000_000),
                        ..WorkspaceLimits::default()
                    }),
                    ..AdminWorkspacePatch::default()
                },
            )
            .await
            .expect("enterprise");
        let app = metered
            .create_application(
                &actor,
                &workspace_id,
                NewApplication {
                    name: "bench".into(),
                    slug: None,
                    environment: Environment::Production,
                    tenancy: None,
                    region: None,
                    config: None,
                    upstreams: None,
                },
            )
            .await
            .expect("application");
        let key = metered
            .create_app_key(
                &actor,
                &app.id,
                NewAppKey {
                    kind: KeyKind::Secret,
                    name: None,
                    scopes: None,
                },
            )
            .await
            .expect("key")
            .plaintext;
        let app = app.id.to_string();
        let unmetered = entry(store.clone()).unmetered_baseline();
        // Warm both caches (and the quota's month total).
        admit_many(&metered, &app, &key, 1_000).await;
        admit_many(&unmetered, &app, &key, 1_000).await;
        metered.flush_request_counts().await.expect("flush");

        let (mut with, mut without, mut flush) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut paired = Vec::with_capacity(rounds as usize);
        for _ in 0..rounds {
            let a = admit_many(&unmetered, &app, &key, per_round).await;
            let b = admit_many(&metered, &app, &key, per_round).await;
            paired.push((b.as_secs_f64() - a.as_secs_f64()) / a.as_secs_f64() * 100.0);
            (without, with) = (without + a, with + b);
            let started = Instant::now();
            metered.flush_request_counts().await.expect("flush");
            flush += started.elapsed();
        }
        paired.sort_by(f64::total_cmp);
        let n = f64::from(rounds * per_round);
        let per = |d: Duration| d.as_nanos() as f64 / n;
        let (a, b) = (per(without), per(with));
        println!(
            "token check (admit, secret key, warm), {rounds} x {per_round} each, alternating:"
        );
        println!("  without metering  {a:>8.0} ns/op  {:>10.0} /s", 1e9 / a);
        println!("  with metering     {b:>8.0} ns/op  {:>10.0} /s", 1e9 / b);
        println!(
            "  overhead          {:>7.2} % (all rounds)",
            (b - a) / a * 100.0
        );
        println!(
            "  overhead by round {:>7.2} % median, {:.2} % to {:.2} %",
            paired[paired.len() / 2],
            paired[0],
            paired[paired.len() - 1]
        );
        println!(
            "  flush (one batch per round of {per_round}): {:.2} ms each",
            flush.as_secs_f64() * 1e3 / f64::from(rounds)
        );
        let counted = metered
            .store()
            .workspace_requests_since(&workspace_id, 0)
            .await
            .expect("count");
        println!(
            "  requests counted  {counted} (of {} metered)",
            rounds * per_round + 1_000
        );
    });
}
