//! Closing a month (issue 39): `MONTH_CLOSE_WORKSPACES` workspaces (default 10,000) with
//! `MONTH_CLOSE_APPS` applications in all (default 1,000, one each in the first ones, each
//! with its own SQLite database and `MONTH_CLOSE_USERS` monthly active users, default 20) and
//! request counts, half of them on pro. The month ends; `close_month` prices and stores every
//! invoice: the time it takes, and the process's peak memory while it runs (VmHWM, reset just
//! before). Then the same month closed again (nothing changes): its time.
//!
//! `cargo bench -p authsome-server --bench month_close`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authsome_control::NewApplication;
use authsome_domain::id::{AccountId, KeyId, MemberId, UserId, WorkspaceId};
use authsome_domain::tenancy::{
    Account, Actor, Environment, KycStatus, Member, MemberStatus, PaymentStatus, Plan, Role,
    Workspace, WorkspaceLimits, WorkspaceStatus,
};
use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::outbox::Outbox;
use authsome_storage::{SqliteStore, Store};
use chrono::{Datelike, TimeZone, Utc};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A line of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let workspaces = env_number("MONTH_CLOSE_WORKSPACES", 10_000);
    let apps = env_number("MONTH_CLOSE_APPS", 1_000).min(workspaces);
    let users = env_number("MONTH_CLOSE_USERS", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("cp.db"))
                .await
                .expect("open"),
        );
        let clock = authsome_domain::clock::Clock::manual();
        let apps_dir = dir.path().join("apps");
        let server = support::start(
            store.clone(),
            AppDatabaseConfig::Sqlite { dir: apps_dir },
            |s| {
                s.clock = clock.clone();
                // The benchmark closes the month itself.
                s.maintenance_every = Duration::from_secs(86_400);
            },
        )
        .await;
        let control = &server.app.state.control;
        let identity = &server.app.state.identity;

        let setup = Instant::now();
        let now = clock.now();
        let account = Account {
            id: AccountId::new(),
            email: "owner@bench.local".into(),
            name: None,
            created_at: now,
        };
        store
            .create_account(&account, Some("$argon2id$unused"))
            .await
            .expect("account");
        let actor = Actor::Account(account.id.clone());
        let month = authsome_domain::identity::month_of(now);
        let mut ids = Vec::with_capacity(workspaces);
        for i in 0..workspaces {
            let ws = Workspace {
                id: WorkspaceId::new(),
                name: format!("Bench {i}"),
                slug: format!("bench-{i}"),
                plan: Plan::Free,
                status: WorkspaceStatus::Active,
                kyc_status: KycStatus::Completed,
                payment_status: PaymentStatus::Current,
                metadata: serde_json::json!({}),
                limits: WorkspaceLimits::default(),
                root: false,
                created_at: now,
                updated_at: now,
            };
            let owner = Member {
                id: MemberId::new(),
                workspace_id: ws.id.clone(),
                account_id: account.id.clone(),
                email: account.email.clone(),
                name: None,
                role: Role::Owner,
                status: MemberStatus::Active,
                created_at: now,
                updated_at: now,
            };
            store
                .create_workspace(&ws, &owner, &Outbox::empty())
                .await
                .expect("workspace");
            if i % 2 == 1 {
                let mut pro = ws.clone();
                pro.plan = Plan::Pro;
                store
                    .update_workspace(&pro, &Outbox::empty())
                    .await
                    .expect("pro");
            }
            ids.push(ws.id);
        }
        let mut counts = Vec::with_capacity(apps);
        for ws in ids.iter().take(apps) {
            let app = control
                .create_application(
                    &actor,
                    ws,
                    NewApplication {
                        name: "bench".into(),
                        slug: None,
                        environment: Environment::Development,
                        tenancy: None,
                        region: None,
                        config: None,
                        upstreams: None,
                    },
                )
                .await
                .expect("application");
            let active: Vec<(String, UserId, chrono::DateTime<Utc>)> = (0..users)
                .map(|_| (month.clone(), UserId::new(), now))
                .collect();
            identity
                .databases()
                .open(&app.id)
                .await
                .expect("open")
                .record_active_users(&active)
                .await
                .expect("users");
            counts.push((app.id, KeyId::new(), now.timestamp() / 3600, 1_234));
        }
        store
            .add_request_counts("bench-batch", &counts, now)
            .await
            .expect("requests");
        control.sample_storage().await.expect("storage samples");
        println!("server at {} (root workspace {})", server.base, server.workspace);
        assert!(!server.management_key.is_empty());
        println!(
            "set-up: {workspaces} workspaces, {apps} applications with {users} users each, in {:.1} s",
            setup.elapsed().as_secs_f64()
        );

        // The month ends.
        let (y, m) = if now.month() == 12 {
            (now.year() + 1, 1)
        } else {
            (now.year(), now.month() + 1)
        };
        let next = Utc.with_ymd_and_hms(y, m, 1, 1, 0, 0).unwrap();
        clock.advance((next - now).to_std().unwrap());
        let rss_before = status_kib("VmRSS:");
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let started = Instant::now();
        let summary = control.close_month(&month).await.expect("close");
        let took = started.elapsed();
        let peak = status_kib("VmHWM:");
        println!(
            "close {month}: {} invoices in {:.2} s ({:.0} workspaces/s); memory: {} MiB before, peak {} MiB during (+{} MiB)",
            summary.closed,
            took.as_secs_f64(),
            summary.closed as f64 / took.as_secs_f64(),
            rss_before / 1024,
            peak / 1024,
            peak.saturating_sub(rss_before) / 1024
        );
        assert_eq!(summary.closed as usize, workspaces, "every workspace's month closed");
        let started = Instant::now();
        let again = control.close_month(&month).await.expect("close again");
        println!(
            "close {month} again: {} closed, {} already closed, in {:.2} s",
            again.closed,
            again.already_closed,
            started.elapsed().as_secs_f64()
        );
        server.app.stop().await;
    });
}
