//! One repository suite, run against SQLite and Postgres. Every scenario below is instantiated
//! once per backend by `backend_tests!`; each Postgres test gets a database of its own.

use std::sync::Arc;

use authsome_domain::id::{AccountId, ApplicationId, InvitationId, KeyId, MemberId, WorkspaceId};
use authsome_domain::keys::{generate_key, KeyHash, KeyKind, KeyMode, OpaqueToken};
use authsome_domain::page::PageRequest;
use authsome_domain::tenancy::{
    Account, Actor, ApiKey, AppStatus, Application, Environment, KeyScope, KycStatus, Member,
    MemberStatus, PaymentStatus, Plan, Role, Tenancy, Workspace, WorkspaceLimits, WorkspaceStatus,
};
use authsome_storage::outbox::{Outbox, OutboxRow as Row};
use authsome_storage::{
    AuditFilter, AuditRow, AuditSigningKey, BootstrapOutcome, IdempotencyBegin, PostgresStore,
    RootBootstrap, SqliteStore, StorageError, Store, StoredCheckpoint, SystemRepository,
};
use authsome_testkit::TestDatabase;
use chrono::Duration;

/// A store plus whatever must live as long as it (a temp dir or a throwaway database).
struct Harness {
    store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
    store.migrate().await.unwrap();
    Some(Harness {
        store: Arc::new(store),
        _guard: Box::new(dir),
    })
}

async fn postgres() -> Option<Harness> {
    let db = TestDatabase::create().await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    Some(Harness {
        store: Arc::new(store),
        _guard: Box::new(db),
    })
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let h = super::sqlite().await.unwrap();
                super::$name(h.store.clone()).await;
            })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(h) = super::postgres().await {
                    super::$name(h.store.clone()).await;
                }
            })*
        }
    };
}

backend_tests!(
    migrations_are_idempotent,
    bootstrap_happens_once,
    workspace_access_follows_membership,
    workspace_pages_and_updates,
    workspace_delete_needs_no_applications,
    members_always_keep_an_owner,
    concurrent_demotions_keep_an_owner,
    invitations_are_single_use,
    applications_are_scoped_to_their_workspace,
    management_keys_follow_their_member,
    upstreams_of_live_dedicated_applications,
    keys_roll_revoke_and_record_use,
    idempotency_records,
    sessions_expire,
    audit_appends_are_optimistic_filtered_and_scoped,
    audit_signing_keys_rotate_with_one_active,
    outbox_rows_commit_with_their_write_or_not_at_all,
    single_command_writes_store_outbox_rows_only_when_they_write,
    large_audit_batches_append_and_clear_their_outbox_rows,
    concurrent_writers_all_land,
    vault_versions_are_checked_pruned_and_scoped,
    provider_configs_are_revised_and_scoped,
    vault_operators_are_bound_within_their_workspace,
    jobs_are_handed_out_once_and_again_when_their_lease_runs_out,
    relayed_jobs_are_taken_once_per_hand_out,
    request_count_batches_apply_once,
    an_application_limit_holds_under_concurrent_creations,
    alert_channels_escalate_within_their_workspace,
    rotations_and_their_settings_stay_in_their_workspace,
    billing_records_stay_in_their_workspace,
);

// ---------------------------------------------------------------------------------------------
// Builders

fn now() -> chrono::DateTime<chrono::Utc> {
    authsome_domain::now()
}

fn account(email: &str) -> Account {
    Account {
        id: AccountId::new(),
        email: email.to_owned(),
        name: None,
        created_at: now(),
    }
}

fn workspace(slug: &str) -> Workspace {
    Workspace {
        id: WorkspaceId::new(),
        name: slug.to_uppercase(),
        slug: slug.to_owned(),
        plan: Plan::Free,
        status: WorkspaceStatus::Active,
        kyc_status: KycStatus::Pending,
        payment_status: PaymentStatus::Current,
        metadata: serde_json::json!({"tier": "gold"}),
        limits: WorkspaceLimits::default(),
        root: false,
        created_at: now(),
        updated_at: now(),
    }
}

fn member(ws: &WorkspaceId, account: &AccountId, email: &str, role: Role) -> Member {
    Member {
        id: MemberId::new(),
        workspace_id: ws.clone(),
        account_id: account.clone(),
        email: email.to_owned(),
        name: None,
        role,
        status: MemberStatus::Active,
        created_at: now(),
        updated_at: now(),
    }
}

fn application(ws: &WorkspaceId, slug: &str) -> Application {
    Application {
        id: ApplicationId::new(),
        workspace_id: ws.clone(),
        name: slug.to_owned(),
        slug: slug.to_owned(),
        environment: Environment::Development,
        tenancy: Tenancy::Shared,
        status: AppStatus::Active,
        region: "local".into(),
        config: serde_json::json!({"a": 1}),
        upstreams: vec![],
        created_at: now(),
        updated_at: now(),
        deleted_at: None,
        purge_at: None,
        provisioned_at: Some(now()),
        provision_attempts: 0,
        provision_error: None,
    }
}

fn app_key(ws: &WorkspaceId, app: &ApplicationId) -> ApiKey {
    let generated = generate_key(KeyKind::Secret, KeyMode::Test);
    ApiKey {
        signing_secret: Some("sealed".into()),
        created_by: None,
        id: KeyId::new(),
        workspace_id: ws.clone(),
        application_id: Some(app.clone()),
        kind: KeyKind::Secret,
        mode: KeyMode::Test,
        name: Some("backend".into()),
        scopes: vec![KeyScope::UsersRead],
        role: None,
        hash: generated.hash,
        last4: generated.last4(),
        created_at: now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rolled_to: None,
    }
}

/// A workspace with one owner account; returns (workspace, owner actor, owner member).
async fn seeded(store: &Arc<dyn Store>, slug: &str) -> (Workspace, Actor, Member) {
    let owner_email = format!("owner@{slug}.test");
    let acc = account(&owner_email);
    store
        .create_account(&acc, Some("$argon2id$fake"))
        .await
        .unwrap();
    let ws = workspace(slug);
    let owner = member(&ws.id, &acc.id, &owner_email, Role::Owner);
    store
        .create_workspace(&ws, &owner, &Outbox::empty())
        .await
        .unwrap();
    (ws, Actor::Account(acc.id), owner)
}

/// Runs `write` with an outbox of `rows`: its output, and whether the rows were stored with it.
async fn with_rows<T>(rows: Vec<Row>, write: impl AsyncFnOnce(&Outbox) -> T) -> (T, bool) {
    let outbox = Outbox::new(rows);
    let result = write(&outbox).await;
    (result, outbox.stored())
}

fn page(limit: u32) -> PageRequest {
    PageRequest::first(limit)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn migrations_are_idempotent(store: Arc<dyn Store>) {
    assert!(store.is_migrated().await.unwrap());
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    a.unwrap();
    b.unwrap();
    assert!(store.is_migrated().await.unwrap());
    store.ping().await.unwrap();
    assert!(store.put_setting_if_absent("x", "1").await.unwrap());
    assert!(!store.put_setting_if_absent("x", "2").await.unwrap());
    assert_eq!(store.setting("x").await.unwrap().as_deref(), Some("1"));
}

async fn bootstrap_happens_once(store: Arc<dyn Store>) {
    assert_eq!(store.root_workspace_id().await.unwrap(), None);
    let build = || {
        let acc = account("root@example.com");
        let mut ws = workspace("root");
        ws.root = true;
        let m = member(&ws.id, &acc.id, &acc.email, Role::Owner);
        let mut key = app_key(&ws.id, &ApplicationId::new());
        key.application_id = None;
        key.kind = KeyKind::Management;
        key.mode = KeyMode::Live;
        key.role = Some(Role::Admin);
        key.scopes = vec![];
        RootBootstrap {
            account: acc,
            password_hash: "$argon2id$x".into(),
            workspace: ws,
            member: m,
            key,
        }
    };
    let first = build();
    assert_eq!(
        store.bootstrap(&first).await.unwrap(),
        BootstrapOutcome::Created
    );
    let second = build();
    match store.bootstrap(&second).await.unwrap() {
        BootstrapOutcome::AlreadyDone {
            workspace_id,
            owner_email,
        } => {
            assert_eq!(workspace_id, first.workspace.id);
            assert_eq!(owner_email.as_deref(), Some("root@example.com"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.root_workspace_id().await.unwrap(),
        Some(first.workspace.id.clone())
    );
    let root = store
        .any_workspace(&first.workspace.id)
        .await
        .unwrap()
        .unwrap();
    assert!(root.root);
    let key = store.key_by_hash(&first.key.hash).await.unwrap().unwrap();
    assert_eq!(key.role, Some(Role::Admin));
    assert_eq!(key.application_id, None);
    // Nothing of the second attempt was written.
    assert!(store
        .any_workspace(&second.workspace.id)
        .await
        .unwrap()
        .is_none());
}

async fn workspace_access_follows_membership(store: Arc<dyn Store>) {
    let (a, owner_a, _) = seeded(&store, "alpha").await;
    let (b, owner_b, _) = seeded(&store, "bravo").await;
    let (ws, role) = store
        .workspace_access(&owner_a, &a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ws.id.clone(), role), (a.id.clone(), Role::Owner));
    assert_eq!(ws.metadata, serde_json::json!({"tier": "gold"}));
    assert!(!ws.root);
    // Crossing the boundary: A's owner sees nothing of B, in either direction.
    assert!(store
        .workspace_access(&owner_a, &b.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .workspace_access(&owner_b, &a.id)
        .await
        .unwrap()
        .is_none());
    let key_of_b = Actor::ManagementKey {
        key_id: KeyId::new(),
        workspace_id: b.id.clone(),
        role: Role::Admin,
    };
    assert!(store
        .workspace_access(&key_of_b, &a.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .workspace_access(&key_of_b, &b.id)
            .await
            .unwrap()
            .unwrap()
            .1,
        Role::Admin
    );
    let listed = store.workspaces_of(&owner_a, &page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].0.id, a.id);
    // An invited (not yet active) member has no access.
    let invited = Member {
        status: MemberStatus::Invited,
        ..member(&a.id, &AccountId::new(), "new@alpha.test", Role::Viewer)
    };
    let stored = store
        .invite_member(
            &invited,
            &InvitationId::new(),
            &KeyHash::of("t1"),
            now() + Duration::days(7),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    let invited_actor = Actor::Account(stored.account_id.clone());
    assert!(store
        .workspace_access(&invited_actor, &a.id)
        .await
        .unwrap()
        .is_none());
}

async fn workspace_pages_and_updates(store: Arc<dyn Store>) {
    let (first, owner, owner_member) = seeded(&store, "one").await;
    let Actor::Account(acc) = &owner else {
        unreachable!()
    };
    let mut ids = vec![first.id.clone()];
    for slug in ["two", "three", "four", "five"] {
        let ws = workspace(slug);
        store
            .create_workspace(
                &ws,
                &member(&ws.id, acc, &owner_member.email, Role::Owner),
                &Outbox::empty(),
            )
            .await
            .unwrap();
        ids.push(ws.id);
    }
    let mut seen = vec![];
    let mut request = page(2);
    loop {
        let p = store.workspaces_of(&owner, &request).await.unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.into_iter().map(|(w, _)| w.id));
        match p.next_cursor {
            Some(c) => request = PageRequest::parse(Some(2), Some(&c)).unwrap(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every workspace once, in creation order");
    let all = store.all_workspaces(&page(100)).await.unwrap();
    assert_eq!(all.items.len(), 5);

    let mut updated = first.clone();
    updated.name = "Renamed".into();
    updated.plan = Plan::Enterprise;
    updated.limits = WorkspaceLimits {
        requests_per_second_per_key: Some(500),
        requests_per_month: None,
        audit_retention_days: Some(90),
        rotations_per_month: Some(50),
        pricing: None,
    };
    updated.updated_at = now();
    store
        .update_workspace(&updated, &Outbox::empty())
        .await
        .unwrap();
    let read = store.any_workspace(&first.id).await.unwrap().unwrap();
    assert_eq!(read, updated);
    updated.slug = "two".into();
    assert!(matches!(
        store.update_workspace(&updated, &Outbox::empty()).await,
        Err(StorageError::Duplicate)
    ));
    let ghost = workspace("ghost");
    assert!(matches!(
        store.update_workspace(&ghost, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));
}

async fn workspace_delete_needs_no_applications(store: Arc<dyn Store>) {
    let (ws, owner, _) = seeded(&store, "deleteme").await;
    let app = application(&ws.id, "app-one");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store.delete_workspace(&ws.id, &Outbox::empty()).await,
        Err(StorageError::State(_))
    ));
    let mut deleted = app.clone();
    deleted.deleted_at = Some(now());
    deleted.purge_at = Some(now());
    store
        .update_application(&deleted, &Outbox::empty())
        .await
        .unwrap();
    let expired = store
        .expired_applications(now() + Duration::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(expired, vec![app.id.clone()]);
    store
        .remove_application(&app.id, &Outbox::empty())
        .await
        .unwrap();
    store
        .delete_workspace(&ws.id, &Outbox::empty())
        .await
        .unwrap();
    assert!(store
        .workspace_access(&owner, &ws.id)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.delete_workspace(&ws.id, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));
}

async fn members_always_keep_an_owner(store: Arc<dyn Store>) {
    let (ws, _, owner) = seeded(&store, "owners").await;
    assert!(matches!(
        store
            .update_member_role(&ws.id, &owner.id, Role::Admin, now(), &Outbox::empty())
            .await,
        Err(StorageError::LastOwner)
    ));
    assert!(matches!(
        store
            .remove_member(&ws.id, &owner.id, now(), &Outbox::empty())
            .await,
        Err(StorageError::LastOwner)
    ));
    // Still the owner after both refusals.
    assert_eq!(
        store.member(&ws.id, &owner.id).await.unwrap().unwrap().role,
        Role::Owner
    );

    let candidate = Member {
        status: MemberStatus::Invited,
        ..member(&ws.id, &AccountId::new(), "second@owners.test", Role::Admin)
    };
    let second = store
        .invite_member(
            &candidate,
            &InvitationId::new(),
            &KeyHash::of("t2"),
            now() + Duration::days(7),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    assert_eq!(second.email, "second@owners.test");
    assert_eq!(second.status, MemberStatus::Invited);
    // The same person twice is a duplicate.
    let again = Member {
        id: MemberId::new(),
        ..candidate.clone()
    };
    assert!(matches!(
        store
            .invite_member(
                &again,
                &InvitationId::new(),
                &KeyHash::of("t3"),
                now(),
                &Outbox::empty()
            )
            .await,
        Err(StorageError::Duplicate)
    ));
    // An invited owner does not count until active.
    store
        .update_member_role(&ws.id, &second.id, Role::Owner, now(), &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store
            .update_member_role(&ws.id, &owner.id, Role::Viewer, now(), &Outbox::empty())
            .await,
        Err(StorageError::LastOwner)
    ));
    let pending = store
        .pending_invitation(&KeyHash::of("t2"), now())
        .await
        .unwrap()
        .unwrap();
    store
        .accept_invitation(
            &pending,
            Some("$argon2id$y"),
            Some("Second"),
            now(),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    let demoted = store
        .update_member_role(&ws.id, &owner.id, Role::Viewer, now(), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(demoted.0.role, Role::Viewer);
    store
        .remove_member(&ws.id, &owner.id, now(), &Outbox::empty())
        .await
        .unwrap();
    assert!(store.member(&ws.id, &owner.id).await.unwrap().is_none());
    let listed = store.members(&ws.id, &page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].name.as_deref(), Some("Second"));
    // Another workspace's member cannot be reached through this one.
    let (other, _, other_owner) = seeded(&store, "elsewhere").await;
    assert!(store
        .member(&ws.id, &other_owner.id)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store
            .update_member_role(
                &ws.id,
                &other_owner.id,
                Role::Viewer,
                now(),
                &Outbox::empty()
            )
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .remove_member(&ws.id, &other_owner.id, now(), &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        store
            .member(&other.id, &other_owner.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Owner
    );
}

async fn concurrent_demotions_keep_an_owner(store: Arc<dyn Store>) {
    let (ws, _, first) = seeded(&store, "race").await;
    let acc = account("two@race.test");
    store.create_account(&acc, None).await.unwrap();
    // Two active owners, demoted at the same moment: at most one demotion may succeed.
    let second = Member {
        status: MemberStatus::Invited,
        ..member(&ws.id, &acc.id, &acc.email, Role::Owner)
    };
    let second = store
        .invite_member(
            &second,
            &InvitationId::new(),
            &KeyHash::of("race"),
            now() + Duration::days(1),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    let pending = store
        .pending_invitation(&KeyHash::of("race"), now())
        .await
        .unwrap()
        .unwrap();
    store
        .accept_invitation(&pending, None, None, now(), &Outbox::empty())
        .await
        .unwrap();
    for _ in 0..5 {
        let (none_a, none_b) = (Outbox::empty(), Outbox::empty());
        let (a, b) = tokio::join!(
            store.update_member_role(&ws.id, &first.id, Role::Admin, now(), &none_a),
            store.update_member_role(&ws.id, &second.id, Role::Admin, now(), &none_b),
        );
        let owners = store
            .members(&ws.id, &page(10))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|m| m.role == Role::Owner)
            .count();
        assert!(owners >= 1, "a workspace lost its last owner: {a:?} {b:?}");
        assert!(a.is_err() || b.is_err());
        for m in [&first, &second] {
            let _ = store
                .update_member_role(&ws.id, &m.id, Role::Owner, now(), &Outbox::empty())
                .await;
        }
    }
}

async fn invitations_are_single_use(store: Arc<dyn Store>) {
    let (ws, _, _) = seeded(&store, "invites").await;
    let token = OpaqueToken::generate("ivt_");
    let candidate = Member {
        status: MemberStatus::Invited,
        ..member(
            &ws.id,
            &AccountId::new(),
            "joiner@invites.test",
            Role::Operator,
        )
    };
    store
        .invite_member(
            &candidate,
            &InvitationId::new(),
            &token.hash,
            now() + Duration::days(7),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    assert!(store
        .pending_invitation(&KeyHash::of("wrong"), now())
        .await
        .unwrap()
        .is_none());
    // Past its expiry the token finds nothing.
    assert!(store
        .pending_invitation(&token.hash, now() + Duration::days(8))
        .await
        .unwrap()
        .is_none());
    let pending = store
        .pending_invitation(&token.hash, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.account.email, "joiner@invites.test");
    assert_eq!(pending.password_hash, None);
    let accepted = store
        .accept_invitation(&pending, Some("$argon2id$z"), None, now(), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(accepted.status, MemberStatus::Active);
    assert!(matches!(
        store
            .accept_invitation(&pending, Some("$argon2id$w"), None, now(), &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    assert!(store
        .pending_invitation(&token.hash, now())
        .await
        .unwrap()
        .is_none());
    let (acc, hash) = store
        .account_by_email("joiner@invites.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash.as_deref(), Some("$argon2id$z"));
    assert_eq!(acc.id, accepted.account_id);
}

async fn applications_are_scoped_to_their_workspace(store: Arc<dyn Store>) {
    let (a, owner_a, _) = seeded(&store, "apps-a").await;
    let (b, owner_b, _) = seeded(&store, "apps-b").await;
    let app = application(&a.id, "web");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store.application(&a.id, &app.id).await.unwrap().unwrap(),
        app
    );
    // Through B, A's application does not exist.
    assert!(store.application(&b.id, &app.id).await.unwrap().is_none());
    assert!(store
        .application_access(&owner_b, &app.id)
        .await
        .unwrap()
        .is_none());
    let (found, ws, role) = store
        .application_access(&owner_a, &app.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, ws.id, role),
        (app.id.clone(), a.id.clone(), Role::Owner)
    );
    let mut hijack = app.clone();
    hijack.workspace_id = b.id.clone();
    hijack.name = "hijacked".into();
    assert!(matches!(
        store.update_application(&hijack, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        store
            .application(&a.id, &app.id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "web"
    );
    assert!(store
        .applications(&b.id, true, &page(10))
        .await
        .unwrap()
        .items
        .is_empty());

    // Slugs are unique among live applications of a workspace only.
    let clash = application(&a.id, "web");
    assert!(matches!(
        store.create_application(&clash, &Outbox::empty()).await,
        Err(StorageError::Duplicate)
    ));
    store
        .create_application(&application(&b.id, "web"), &Outbox::empty())
        .await
        .unwrap();
    let mut deleted = app.clone();
    deleted.status = AppStatus::Deleting;
    deleted.deleted_at = Some(now());
    deleted.purge_at = Some(now() + Duration::days(7));
    store
        .update_application(&deleted, &Outbox::empty())
        .await
        .unwrap();
    store
        .create_application(&clash, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store
            .applications(&a.id, false, &page(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .applications(&a.id, true, &page(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // Purging respects the window, and only deleted applications can be removed.
    assert!(store
        .expired_applications(now(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .expired_applications(now() + Duration::days(8), 10)
            .await
            .unwrap(),
        vec![app.id.clone()]
    );
    store
        .remove_application(&clash.id, &Outbox::empty())
        .await
        .unwrap();
    assert!(store.application(&a.id, &clash.id).await.unwrap().is_some());
    store
        .remove_application(&app.id, &Outbox::empty())
        .await
        .unwrap();
    assert!(store.application(&a.id, &app.id).await.unwrap().is_none());
    assert!(store.any_application(&app.id).await.unwrap().is_none());
    assert_eq!(
        store
            .any_application(&clash.id)
            .await
            .unwrap()
            .unwrap()
            .workspace_id,
        a.id
    );
    // The provisioning queue holds only live applications still provisioning.
    let mut waiting = application(&b.id, "waiting");
    waiting.status = AppStatus::Provisioning;
    waiting.provisioned_at = None;
    store
        .create_application(&waiting, &Outbox::empty())
        .await
        .unwrap();
    let queue = store.applications_to_provision(10).await.unwrap();
    assert_eq!(
        queue.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        vec![waiting.id.clone()]
    );
    waiting.status = AppStatus::Active;
    waiting.provision_attempts = 3;
    waiting.provision_error = Some("boom".into());
    store
        .update_application(&waiting, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store
            .application(&b.id, &waiting.id)
            .await
            .unwrap()
            .unwrap(),
        waiting
    );
    assert!(store
        .applications_to_provision(10)
        .await
        .unwrap()
        .is_empty());
}

async fn management_keys_follow_their_member(store: Arc<dyn Store>) {
    let (ws, owner_actor, owner) = seeded(&store, "keys-follow").await;
    let Actor::Account(owner_account) = owner_actor else {
        unreachable!()
    };
    let admin_account = account("admin@keys-follow.test");
    store
        .create_account(&admin_account, Some("$argon2id$fake"))
        .await
        .unwrap();
    let admin = member(
        &ws.id,
        &admin_account.id,
        "admin@keys-follow.test",
        Role::Admin,
    );
    store
        .invite_member(
            &admin,
            &InvitationId::new(),
            &KeyHash::of("kf"),
            now() + Duration::days(1),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    let pending = store
        .pending_invitation(&KeyHash::of("kf"), now())
        .await
        .unwrap()
        .unwrap();
    store
        .accept_invitation(&pending, None, None, now(), &Outbox::empty())
        .await
        .unwrap();
    let management = |role: Role, by: &AccountId| {
        let generated = generate_key(KeyKind::Management, KeyMode::Live);
        ApiKey {
            id: KeyId::new(),
            application_id: None,
            kind: KeyKind::Management,
            mode: KeyMode::Live,
            scopes: vec![],
            role: Some(role),
            created_by: Some(by.clone()),
            hash: generated.hash,
            last4: generated.last4(),
            signing_secret: None,
            ..app_key(&ws.id, &ApplicationId::new())
        }
    };
    let admins = management(Role::Admin, &admin_account.id);
    let viewers = management(Role::Viewer, &admin_account.id);
    let owners = management(Role::Admin, &owner_account);
    let app = application(&ws.id, "kf-app");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    let mut app_secret = app_key(&ws.id, &app.id);
    app_secret.created_by = Some(admin_account.id.clone());
    for key in [&admins, &viewers, &owners, &app_secret] {
        store.insert_key(key, &Outbox::empty()).await.unwrap();
    }
    let role_of = |key: &ApiKey| {
        let store = store.clone();
        let (ws, id) = (ws.id.clone(), key.id.clone());
        async move { store.key(&ws, None, &id).await.unwrap().unwrap() }
    };
    // Demoted to operator: the admin key is capped, the viewer key already fits.
    let (_, capped) = store
        .update_member_role(&ws.id, &admin.id, Role::Operator, now(), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(capped, [admins.hash]);
    assert_eq!(role_of(&admins).await.role, Some(Role::Operator));
    assert_eq!(role_of(&viewers).await.role, Some(Role::Viewer));
    assert_eq!(role_of(&owners).await.role, Some(Role::Admin));
    // An owner takes one over; then the member leaves: the others are revoked with them.
    store
        .reassign_management_key(&ws.id, &viewers.id, &owner_account, &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store
            .reassign_management_key(&ws.id, &app_secret.id, &owner_account, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    let revoked = store
        .remove_member(&ws.id, &admin.id, now(), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(revoked, [admins.hash]);
    assert!(role_of(&admins).await.revoked_at.is_some());
    let kept = role_of(&viewers).await;
    assert!(kept.revoked_at.is_none());
    assert_eq!(kept.created_by, Some(owner_account.clone()));
    // Application keys are the application's, whoever made them.
    let secret = store
        .key(&ws.id, Some(&app.id), &app_secret.id)
        .await
        .unwrap()
        .unwrap();
    assert!(secret.revoked_at.is_none());
    let _ = owner;
}

async fn upstreams_of_live_dedicated_applications(store: Arc<dyn Store>) {
    let (a, _, _) = seeded(&store, "ups-a").await;
    let (b, _, _) = seeded(&store, "ups-b").await;
    assert!(store.all_upstreams().await.unwrap().is_empty());
    let dedicated = |ws: &WorkspaceId, slug: &str, upstreams: &[&str]| {
        let mut app = application(ws, slug);
        app.tenancy = Tenancy::Dedicated;
        app.upstreams = upstreams.iter().map(|u| u.to_string()).collect();
        app
    };
    let one = dedicated(&a.id, "one", &["http://10.0.0.1:80", "http://10.0.0.2:80"]);
    let two = dedicated(&b.id, "two", &["http://10.0.0.2:80", "http://10.0.0.3:80"]);
    let mut gone = dedicated(&b.id, "gone", &["http://10.0.0.9:80"]);
    for app in [&one, &two, &gone] {
        store
            .create_application(app, &Outbox::empty())
            .await
            .unwrap();
    }
    store
        .create_application(&application(&a.id, "shared"), &Outbox::empty())
        .await
        .unwrap();
    gone.deleted_at = Some(now());
    store
        .update_application(&gone, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store.all_upstreams().await.unwrap(),
        [
            "http://10.0.0.1:80",
            "http://10.0.0.2:80",
            "http://10.0.0.3:80"
        ]
    );
    // Moved: the old address is no longer one.
    let mut moved = one.clone();
    moved.upstreams = vec!["http://10.0.0.4:80".into()];
    store
        .update_application(&moved, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store.all_upstreams().await.unwrap(),
        [
            "http://10.0.0.2:80",
            "http://10.0.0.3:80",
            "http://10.0.0.4:80"
        ]
    );
}

async fn keys_roll_revoke_and_record_use(store: Arc<dyn Store>) {
    let (a, _, _) = seeded(&store, "keys-a").await;
    let (b, _, _) = seeded(&store, "keys-b").await;
    let app = application(&a.id, "api");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    let key = app_key(&a.id, &app.id);
    store.insert_key(&key, &Outbox::empty()).await.unwrap();
    assert_eq!(store.key_by_hash(&key.hash).await.unwrap().unwrap(), key);
    assert!(store
        .key(&b.id, Some(&app.id), &key.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        store.key(&a.id, None, &key.id).await.unwrap().is_none(),
        "not a management key"
    );
    assert_eq!(
        store
            .keys(&a.id, Some(&app.id), &page(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(store
        .keys(&a.id, None, &page(10))
        .await
        .unwrap()
        .items
        .is_empty());

    let replacement = app_key(&a.id, &app.id);
    let grace_end = now() + Duration::hours(24);
    store
        .roll_key(&key, grace_end, &replacement, &Outbox::empty())
        .await
        .unwrap();
    let old = store
        .key(&a.id, Some(&app.id), &key.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.rolled_to.as_ref(), Some(&replacement.id));
    assert_eq!(old.expires_at, Some(grace_end));
    assert!(matches!(
        store
            .roll_key(&key, grace_end, &app_key(&a.id, &app.id), &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    // A failed roll wrote nothing.
    assert_eq!(
        store
            .keys(&a.id, Some(&app.id), &page(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // Another workspace cannot revoke it.
    let mut foreign = replacement.clone();
    foreign.workspace_id = b.id.clone();
    assert!(store
        .revoke_key(&foreign, now(), &Outbox::empty())
        .await
        .is_err());
    store
        .revoke_key(&replacement, now(), &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store
            .revoke_key(&replacement, now(), &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    assert!(store
        .key_by_hash(&replacement.hash)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());

    let later = now() + Duration::seconds(10);
    store
        .record_key_use(&[(key.id.clone(), later)])
        .await
        .unwrap();
    store
        .record_key_use(&[(key.id.clone(), now())])
        .await
        .unwrap();
    let used = store.key_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(
        used.last_used_at,
        Some(later),
        "lastUsedAt never moves backwards"
    );

    // Pagination over keys.
    for _ in 0..4 {
        store
            .insert_key(&app_key(&a.id, &app.id), &Outbox::empty())
            .await
            .unwrap();
    }
    let first = store.keys(&a.id, Some(&app.id), &page(4)).await.unwrap();
    assert_eq!(first.items.len(), 4);
    let rest = store
        .keys(
            &a.id,
            Some(&app.id),
            &PageRequest::parse(Some(4), first.next_cursor.as_deref()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next_cursor.is_none());
}

async fn idempotency_records(store: Arc<dyn Store>) {
    let t = now();
    assert_eq!(
        store.idempotency_begin("s", "k", "h1", t).await.unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        store.idempotency_begin("s", "k", "h1", t).await.unwrap(),
        IdempotencyBegin::InProgress
    );
    assert_eq!(
        store.idempotency_begin("s", "k", "h2", t).await.unwrap(),
        IdempotencyBegin::Mismatch
    );
    store
        .idempotency_finish("s", "k", 201, "{\"id\":1}")
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin("s", "k", "h1", t).await.unwrap(),
        IdempotencyBegin::Replay {
            status: 201,
            body: "{\"id\":1}".into()
        }
    );
    // Scopes are separate; records expire after 24 hours.
    assert_eq!(
        store
            .idempotency_begin("other", "k", "h1", t)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        store
            .idempotency_begin("s", "k", "h2", t + Duration::hours(25))
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    store.idempotency_abandon("s", "k").await.unwrap();
    assert_eq!(
        store.idempotency_begin("s", "k", "h3", t).await.unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        store
            .purge_idempotency(t + Duration::hours(1))
            .await
            .unwrap(),
        2
    );
}

async fn sessions_expire(store: Arc<dyn Store>) {
    let acc = account("session@example.com");
    store
        .create_account(&acc, Some("$argon2id$s"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_account(&account("session@example.com"), None)
            .await,
        Err(StorageError::Duplicate)
    ));
    let token = OpaqueToken::generate("cst_");
    let t = now();
    store
        .create_session(
            &token.hash,
            &acc.id,
            t,
            t + Duration::hours(1),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .session_account(&token.hash, t)
            .await
            .unwrap()
            .unwrap()
            .id,
        acc.id
    );
    assert!(store
        .session_account(&token.hash, t + Duration::hours(2))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .session_account(&KeyHash::of("other"), t)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.purge_sessions(t + Duration::hours(2)).await.unwrap(),
        1
    );
    assert!(store
        .session_account(&token.hash, t)
        .await
        .unwrap()
        .is_none());
    let again = OpaqueToken::generate("cst_");
    store
        .create_session(
            &again.hash,
            &acc.id,
            t,
            t + Duration::hours(1),
            &Outbox::empty(),
        )
        .await
        .unwrap();
    store.delete_session(&again.hash).await.unwrap();
    assert!(store
        .session_account(&again.hash, t)
        .await
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------------------
// Application databases

mod app_databases {
    use super::{with_rows, Outbox};
    use authsome_domain::id::{ApplicationId, UserId};
    use authsome_domain::identity::User;
    use authsome_storage::app::{AppDatabaseConfig, AppDatabases};
    use authsome_testkit::TestDatabase;
    use sqlx::{Connection, Executor};

    fn user(email: &str) -> User {
        let now = authsome_domain::now();
        User {
            id: UserId::new(),
            email: email.into(),
            name: None,
            public_metadata: serde_json::json!({}),
            private_metadata: serde_json::json!({}),
            disabled: false,
            created_at: now,
            updated_at: now,
            last_sign_in_at: None,
        }
    }

    /// Provision, use, destroy, provision again: the application starts empty.
    async fn lifecycle(dbs: AppDatabases) {
        let app = ApplicationId::new();
        dbs.provision(&app).await.unwrap();
        dbs.provision(&app).await.unwrap();
        let store = dbs.open(&app).await.unwrap();
        store
            .create_user(&user("a@example.com"), None, &Outbox::empty())
            .await
            .unwrap();
        assert!(store
            .user_by_email("a@example.com")
            .await
            .unwrap()
            .is_some());
        drop(store);
        assert_eq!(dbs.open_pools(), 1);
        dbs.destroy(&app).await.unwrap();
        assert_eq!(dbs.open_pools(), 0);
        dbs.provision(&app).await.unwrap();
        let store = dbs.open(&app).await.unwrap();
        assert!(store
            .user_by_email("a@example.com")
            .await
            .unwrap()
            .is_none());
        drop(store);
        dbs.destroy(&app).await.unwrap();
    }

    /// A refresh token rotates once; the second attempt learns when it was rotated, an unknown
    /// token is unknown, and only the rotation that happened stores its outbox row. Run after
    /// a statement that changed many rows, so a stale "rows changed" count cannot pass for a
    /// rotation.
    async fn refresh_rotation(dbs: AppDatabases) {
        use authsome_domain::id::SessionId;
        use authsome_domain::identity::{RefreshRecord, Session};
        use authsome_domain::keys::KeyHash;
        use authsome_storage::app::Rotation;
        use authsome_storage::outbox::OutboxRow;

        let app = ApplicationId::new();
        dbs.provision(&app).await.unwrap();
        let store = dbs.open(&app).await.unwrap();
        let now = authsome_domain::now();
        let owner = user("r@example.com");
        store
            .create_user(&owner, None, &Outbox::empty())
            .await
            .unwrap();
        let record = |hash: &KeyHash, session: &SessionId| RefreshRecord {
            hash: *hash,
            session_id: session.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::days(1),
            rotated_at: None,
        };
        let mut sessions = Vec::new();
        for i in 0..5 {
            let session = Session {
                id: SessionId::new(),
                user_id: owner.id.clone(),
                ip: None,
                user_agent: None,
                created_at: now,
                last_active_at: now,
                expires_at: now + chrono::Duration::days(1),
                revoked_at: None,
                active_organization_id: None,
                dpop_jkt: None,
            };
            let hash = KeyHash::of(&format!("first-{i}"));
            store
                .create_session(&session, &record(&hash, &session.id), &Outbox::empty())
                .await
                .unwrap();
            sessions.push((session, hash));
        }
        let (session, first) = sessions[0].clone();
        // A rotation that fails half-way (its successor's hash is taken) changes nothing, and
        // the store stays usable (on SQLite the connection the script left in a transaction
        // is replaced).
        let taken = sessions[1].1;
        assert!(store
            .rotate_refresh(
                &first,
                &record(&taken, &session.id),
                now,
                true,
                &Outbox::empty()
            )
            .await
            .is_err());
        let second = KeyHash::of("second");
        let outbox = |id: &str| OutboxRow {
            id: id.into(),
            body: "{}".into(),
            created_at: now,
        };
        let (rotation, stored) = with_rows(vec![outbox("evt_rotated")], async |outbox| {
            store
                .rotate_refresh(&first, &record(&second, &session.id), now, true, outbox)
                .await
        })
        .await;
        assert!(matches!(rotation.unwrap(), Rotation::Rotated));
        assert!(stored);
        // Five rows changed by the last statement on this connection.
        assert_eq!(
            store
                .revoke_user_sessions(&owner.id, now, &Outbox::empty())
                .await
                .unwrap(),
            5
        );
        let third = KeyHash::of("third");
        let (rotation, stored) = with_rows(vec![outbox("evt_replayed")], async |outbox| {
            store
                .rotate_refresh(&first, &record(&third, &session.id), now, true, outbox)
                .await
        })
        .await;
        assert!(
            matches!(rotation.unwrap(), Rotation::AlreadyRotated(at) if at.timestamp_millis() == now.timestamp_millis())
        );
        assert!(!stored, "no outbox row for a rotation that did not happen");
        let unknown = store
            .rotate_refresh(
                &KeyHash::of("never issued"),
                &record(&third, &session.id),
                now,
                false,
                &Outbox::empty(),
            )
            .await
            .unwrap();
        assert!(matches!(unknown, Rotation::Unknown));
        // The successor of the real rotation exists; the losers' successors do not.
        assert!(store.refresh_with_session(&second).await.unwrap().is_some());
        assert!(store.refresh_with_session(&third).await.unwrap().is_none());
        drop(store);
        dbs.destroy(&app).await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_refresh_rotation() {
        let dir = tempfile::tempdir().unwrap();
        refresh_rotation(AppDatabases::new(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().join("apps"),
            },
            2,
        ))
        .await;
    }

    #[tokio::test]
    async fn postgres_refresh_rotation() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        refresh_rotation(AppDatabases::new(
            AppDatabaseConfig::Postgres {
                server_url: db.url.clone(),
            },
            2,
        ))
        .await;
    }

    #[tokio::test]
    async fn sqlite_lifecycle_and_pool_cap() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = AppDatabases::new(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().join("apps"),
            },
            2,
        );
        let apps: Vec<ApplicationId> = (0..3).map(|_| ApplicationId::new()).collect();
        for app in &apps {
            dbs.provision(app).await.unwrap();
        }
        assert!(dbs.open_pools() <= 2, "at most max_open pools stay open");
        // An evicted pool reopens on demand.
        let store = dbs.open(&apps[0]).await.unwrap();
        store.ping().await.unwrap();
        dbs.close_idle(std::time::Duration::ZERO).await;
        assert_eq!(dbs.open_pools(), 0);
        lifecycle(AppDatabases::new(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().join("other"),
            },
            4,
        ))
        .await;
    }

    #[tokio::test]
    async fn postgres_database_per_application() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let dbs = AppDatabases::new(
            AppDatabaseConfig::Postgres {
                server_url: db.url.clone(),
            },
            4,
        );
        lifecycle(dbs).await;
    }

    /// Many applications serving on Postgres never hold more connections than the budget:
    /// the least recently used pool closes instead.
    #[tokio::test]
    async fn postgres_application_pools_stay_within_the_connection_budget() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let config = AppDatabaseConfig::PostgresSchema {
            server_url: db.url.clone(),
        };
        let dbs = AppDatabases::new(config, 512).with_connection_budget(8);
        assert_eq!(dbs.max_open(), 2);
        for n in 0..6 {
            let app = ApplicationId::new();
            dbs.provision(&app).await.unwrap();
            dbs.open(&app)
                .await
                .unwrap()
                .create_user(&user(&format!("u{n}@example.com")), None, &Outbox::empty())
                .await
                .unwrap();
            assert!(dbs.open_pools() <= 2);
        }
        // SQLite holds one connection per open application: only the pool count bounds it.
        let dir = tempfile::tempdir().unwrap();
        let sqlite = AppDatabases::new(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().to_owned(),
            },
            512,
        )
        .with_connection_budget(8);
        assert_eq!(sqlite.max_open(), 512);
    }

    #[tokio::test]
    async fn postgres_schema_per_application_is_enforced_by_the_database() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let config = AppDatabaseConfig::PostgresSchema {
            server_url: db.url.clone(),
        };
        lifecycle(AppDatabases::new(config.clone(), 4)).await;
        let dbs = AppDatabases::new(config, 4);
        let (a, b) = (ApplicationId::new(), ApplicationId::new());
        dbs.provision(&a).await.unwrap();
        dbs.provision(&b).await.unwrap();
        dbs.open(&b)
            .await
            .unwrap()
            .create_user(&user("b@example.com"), None, &Outbox::empty())
            .await
            .unwrap();
        // Acting as A's role, B's schema is out of reach even when named explicitly.
        let shared = AppDatabases::shared_database(&db.url).unwrap();
        let url = format!("{}/{shared}", db.url.rsplit_once('/').unwrap().0);
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(format!("SET ROLE {}", AppDatabases::schema_role(&a)).as_str())
            .await
            .unwrap();
        let own = format!(
            "SELECT COUNT(*) FROM {}.users",
            AppDatabases::schema_name(&a)
        );
        let count: i64 = sqlx::query_scalar(&own).fetch_one(&mut conn).await.unwrap();
        assert_eq!(count, 0);
        let other = format!(
            "SELECT COUNT(*) FROM {}.users",
            AppDatabases::schema_name(&b)
        );
        let denied = sqlx::query_scalar::<_, i64>(&other)
            .fetch_one(&mut conn)
            .await
            .unwrap_err();
        match denied {
            sqlx::Error::Database(e) => assert_eq!(e.code().as_deref(), Some("42501"), "{e}"),
            other => panic!("{other}"),
        }
        let _ = conn.close().await;
        dbs.destroy(&a).await.unwrap();
        dbs.destroy(&b).await.unwrap();
    }
}

fn audit_row(index: u64, action: &str, actor: &str, outcome: &str, at_ms: i64) -> AuditRow {
    AuditRow {
        index,
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
        action: action.into(),
        actor_id: Some(actor.into()),
        application_id: None,
        outcome: outcome.into(),
        leaf_hash: vec![index as u8; 32],
        body: Some(format!("{{\"index\":{index}}}")),
    }
}

async fn audit_appends_are_optimistic_filtered_and_scoped(store: Arc<dyn Store>) {
    let (a, _, _) = seeded(&store, "audit-a").await;
    let (b, _, _) = seeded(&store, "audit-b").await;
    let head = store
        .open_audit_log(&a.id, b"range0", "sealed", now())
        .await
        .unwrap();
    assert_eq!((head.size, head.hmac_key.as_str()), (0, "sealed"));
    // Opening again keeps the existing log.
    let again = store
        .open_audit_log(&a.id, b"other", "other", now())
        .await
        .unwrap();
    assert_eq!(again, head);
    store
        .open_audit_log(&b.id, b"range0", "sealed-b", now())
        .await
        .unwrap();

    let rows = vec![
        audit_row(0, "application.created", "acc_1", "success", 1_000),
        audit_row(1, "application.key.rolled", "acc_2", "success", 2_000),
        audit_row(2, "permission.denied", "acc_2", "denied", 3_000),
    ];
    assert!(store
        .append_audit(&a.id, 0, &rows, &[1; 32], b"range3", &[])
        .await
        .unwrap());
    // A writer that read the old head loses and writes nothing.
    let late = vec![audit_row(0, "late", "acc_9", "success", 4_000)];
    assert!(!store
        .append_audit(&a.id, 0, &late, &[2; 32], b"x", &[])
        .await
        .unwrap());
    let head = store.audit_head(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (head.size, head.head_hash, head.compact_range),
        (3, vec![1; 32], b"range3".to_vec())
    );

    let all = store
        .audit_entries(&a.id, &AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![2, 1, 0]
    );
    assert_eq!(all[2], rows[0]);
    let by_prefix = AuditFilter {
        action_prefix: Some("application.".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .audit_entries(&a.id, &by_prefix, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // LIKE wildcards in the prefix are literal.
    let wildcard = AuditFilter {
        action_prefix: Some("%".into()),
        ..Default::default()
    };
    assert!(store
        .audit_entries(&a.id, &wildcard, None, 10)
        .await
        .unwrap()
        .is_empty());
    let denied = AuditFilter {
        outcome: Some("denied".into()),
        actor_id: Some("acc_2".into()),
        ..Default::default()
    };
    assert_eq!(
        store.audit_entries(&a.id, &denied, None, 10).await.unwrap()[0].index,
        2
    );
    let window = AuditFilter {
        from: chrono::DateTime::from_timestamp_millis(2_000),
        to: chrono::DateTime::from_timestamp_millis(3_000),
        ..Default::default()
    };
    assert_eq!(
        store.audit_entries(&a.id, &window, None, 10).await.unwrap()[0].index,
        1
    );
    let page2 = store
        .audit_entries(&a.id, &AuditFilter::default(), Some(rows[2].id.as_str()), 1)
        .await
        .unwrap();
    assert_eq!(page2[0].index, 1);
    assert_eq!(store.audit_range(&a.id, 1, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.audit_leaf_hashes(&a.id, 0, 2).await.unwrap(),
        vec![vec![0u8; 32], vec![1u8; 32]]
    );

    // The other workspace sees none of it.
    assert!(store
        .audit_entries(&b.id, &AuditFilter::default(), None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.audit_range(&b.id, 0, 10).await.unwrap().is_empty());

    // Checkpoints: the log needs one until it is taken.
    let pending = store.audit_logs_to_checkpoint().await.unwrap();
    assert!(
        pending.iter().any(|h| h.workspace_id == a.id)
            && !pending.iter().any(|h| h.workspace_id == b.id)
    );
    let cp = StoredCheckpoint {
        size: 3,
        root_hash: vec![5; 32],
        at: now(),
        key_id: "k+00000001".into(),
        note: "note".into(),
    };
    store.add_audit_checkpoint(&a.id, &cp).await.unwrap();
    store.add_audit_checkpoint(&a.id, &cp).await.unwrap();
    assert!(!store
        .audit_logs_to_checkpoint()
        .await
        .unwrap()
        .iter()
        .any(|h| h.workspace_id == a.id));
    assert_eq!(
        store.latest_audit_checkpoint(&a.id).await.unwrap(),
        Some(cp.clone())
    );
    assert_eq!(store.audit_checkpoint(&a.id, 3).await.unwrap(), Some(cp));
    assert_eq!(store.latest_audit_checkpoint(&b.id).await.unwrap(), None);
}

fn signing_key(id: &str, at_ms: i64) -> AuditSigningKey {
    AuditSigningKey {
        id: id.into(),
        name: "example/audit".into(),
        public_key: vec![1; 32],
        sealed_seed: "sealed".into(),
        created_at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
        retired_at: None,
    }
}

async fn audit_signing_keys_rotate_with_one_active(store: Arc<dyn Store>) {
    assert!(store
        .add_first_audit_signing_key(&signing_key("k1", 1_000))
        .await
        .unwrap());
    assert!(!store
        .add_first_audit_signing_key(&signing_key("k2", 2_000))
        .await
        .unwrap());
    store
        .rotate_audit_signing_key(&signing_key("k3", 3_000))
        .await
        .unwrap();
    let keys = store.audit_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        vec!["k1", "k3"]
    );
    assert_eq!(
        keys[0].retired_at,
        chrono::DateTime::from_timestamp_millis(3_000)
    );
    assert_eq!(keys[1].retired_at, None);
}

/// The writes sent as one command with their outbox rows (an application's update, a key's
/// creation and revocation): each stores its rows, body intact, exactly when it wrote, and a
/// write that changes nothing or fails stores none.
async fn single_command_writes_store_outbox_rows_only_when_they_write(store: Arc<dyn Store>) {
    let (ws, _, _) = seeded(&store, "one-command").await;
    let mut app = application(&ws.id, "api");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    // An update stores its row; one of an application that is not there stores none.
    app.name = "Renamed".into();
    let (result, stored) = with_rows(vec![outbox_row("evt_app")], async |outbox| {
        store.update_application(&app, outbox).await
    })
    .await;
    result.unwrap();
    assert!(stored);
    assert_eq!(
        store
            .application(&ws.id, &app.id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Renamed"
    );
    let mut elsewhere = app.clone();
    elsewhere.workspace_id = WorkspaceId::new();
    let (result, stored) = with_rows(vec![outbox_row("evt_not_there")], async |outbox| {
        store.update_application(&elsewhere, outbox).await
    })
    .await;
    assert!(matches!(result, Err(StorageError::NotFound)), "{result:?}");
    assert!(!stored);
    // A new slug that another application holds: the update and its row roll back together.
    let other = application(&ws.id, "other");
    store
        .create_application(&other, &Outbox::empty())
        .await
        .unwrap();
    let mut clash = app.clone();
    clash.slug = "other".into();
    let (result, stored) = with_rows(vec![outbox_row("evt_clash")], async |outbox| {
        store.update_application(&clash, outbox).await
    })
    .await;
    assert!(result.is_err());
    assert!(!stored);
    // A new application stores its row; one whose slug is taken stores none.
    let third = application(&ws.id, "third");
    let (result, stored) = with_rows(vec![outbox_row("evt_app_created")], async |outbox| {
        store.create_application(&third, outbox).await
    })
    .await;
    result.unwrap();
    assert!(stored);
    assert_eq!(
        store
            .application(&ws.id, &third.id)
            .await
            .unwrap()
            .unwrap()
            .slug,
        "third"
    );
    let (result, stored) = with_rows(vec![outbox_row("evt_app_clash")], async |outbox| {
        store
            .create_application(&application(&ws.id, "third"), outbox)
            .await
    })
    .await;
    assert!(matches!(result, Err(StorageError::Duplicate)), "{result:?}");
    assert!(!stored);
    // A key with two events stores both; the same key again (its id taken) stores neither.
    let key = app_key(&ws.id, &app.id);
    let (result, stored) = with_rows(
        vec![outbox_row("evt_key_1"), outbox_row("evt_key_2")],
        async |outbox| store.insert_key(&key, outbox).await,
    )
    .await;
    result.unwrap();
    assert!(stored);
    assert_eq!(store.key_by_hash(&key.hash).await.unwrap().unwrap(), key);
    let (result, stored) = with_rows(vec![outbox_row("evt_key_again")], async |outbox| {
        store.insert_key(&key, outbox).await
    })
    .await;
    assert!(result.is_err());
    assert!(!stored);
    // A roll stores its row; one onto a key id that is taken stores none and leaves the old key
    // as it was; rolling the same key again stores none.
    let rolled = app_key(&ws.id, &app.id);
    store.insert_key(&rolled, &Outbox::empty()).await.unwrap();
    let (result, stored) = with_rows(vec![outbox_row("evt_roll_clash")], async |outbox| {
        store.roll_key(&rolled, now(), &key, outbox).await
    })
    .await;
    assert!(matches!(result, Err(StorageError::Duplicate)), "{result:?}");
    assert!(!stored);
    let unrolled = store.key_by_id(&rolled.id).await.unwrap().unwrap();
    assert_eq!((unrolled.rolled_to, unrolled.expires_at), (None, None));
    let replacement = app_key(&ws.id, &app.id);
    let grace_end = now() + Duration::hours(1);
    let (result, stored) = with_rows(vec![outbox_row("evt_rolled")], async |outbox| {
        store
            .roll_key(&rolled, grace_end, &replacement, outbox)
            .await
    })
    .await;
    result.unwrap();
    assert!(stored);
    let old = store.key_by_id(&rolled.id).await.unwrap().unwrap();
    assert_eq!(old.rolled_to.as_ref(), Some(&replacement.id));
    assert_eq!(old.expires_at, Some(grace_end));
    assert_eq!(
        store.key_by_hash(&replacement.hash).await.unwrap().unwrap(),
        replacement
    );
    let (result, stored) = with_rows(vec![outbox_row("evt_rolled_again")], async |outbox| {
        store
            .roll_key(&rolled, grace_end, &app_key(&ws.id, &app.id), outbox)
            .await
    })
    .await;
    assert!(matches!(result, Err(StorageError::State(_))), "{result:?}");
    assert!(!stored);
    // A revocation stores its row; revoking again changes nothing and stores none.
    let (result, stored) = with_rows(vec![outbox_row("evt_revoked")], async |outbox| {
        store.revoke_key(&key, now(), outbox).await
    })
    .await;
    result.unwrap();
    assert!(stored);
    let (result, stored) = with_rows(vec![outbox_row("evt_revoked_again")], async |outbox| {
        store.revoke_key(&key, now(), outbox).await
    })
    .await;
    assert!(matches!(result, Err(StorageError::State(_))), "{result:?}");
    assert!(!stored);
    assert!(store
        .key_by_hash(&key.hash)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    // Each row that was stored, once, body intact; none of the writes that did not happen.
    let later = now() + Duration::seconds(1);
    let mut rows = store.audit_outbox(later, 100).await.unwrap();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let ids = [
        "evt_app",
        "evt_app_created",
        "evt_key_1",
        "evt_key_2",
        "evt_revoked",
        "evt_rolled",
    ];
    assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ids);
    for (row, id) in rows.iter().zip(ids) {
        assert_eq!(row.body, outbox_row(id).body);
    }
    // The store is still usable for writes after the failed commands (on SQLite, the held
    // connection of a script that failed half-way is replaced).
    app.name = "Again".into();
    let (result, stored) = with_rows(vec![outbox_row("evt_app_2")], async |outbox| {
        store.update_application(&app, outbox).await
    })
    .await;
    result.unwrap();
    assert!(stored);
    assert_eq!(store.audit_outbox(later, 100).await.unwrap().len(), 7);
}

fn outbox_row(id: &str) -> authsome_storage::outbox::OutboxRow {
    authsome_storage::outbox::OutboxRow {
        id: id.into(),
        body: format!("{{\"id\":\"{id}\"}}"),
        created_at: now(),
    }
}

async fn outbox_rows_commit_with_their_write_or_not_at_all(store: Arc<dyn Store>) {
    let (ws, _, _) = seeded(&store, "outboxed").await;
    let later = now() + Duration::seconds(1);
    // Committed with the write.
    let mut updated = ws.clone();
    updated.name = "Outboxed".into();
    let (result, stored) = with_rows(vec![outbox_row("evt_a")], async |outbox| {
        store.update_workspace(&updated, outbox).await
    })
    .await;
    result.unwrap();
    assert!(stored);
    // A write that fails takes its outbox row with it.
    let mut missing = ws.clone();
    missing.id = WorkspaceId::new();
    let (result, stored) = with_rows(vec![outbox_row("evt_b")], async |outbox| {
        store.update_workspace(&missing, outbox).await
    })
    .await;
    assert!(matches!(result, Err(StorageError::NotFound)));
    assert!(!stored);
    // No scope, no row.
    store
        .update_workspace(&updated, &Outbox::empty())
        .await
        .unwrap();
    let rows = store.audit_outbox(later, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["evt_a"]
    );
    // Appending deletes the rows it took, in its own transaction.
    store
        .open_audit_log(&ws.id, b"r", "k", now())
        .await
        .unwrap();
    let entry = AuditRow {
        id: "evt_a".into(),
        ..audit_row(0, "workspace.updated", "acc_1", "success", 1)
    };
    assert!(store
        .append_audit(&ws.id, 0, &[entry], &[1; 32], b"r1", &["evt_a".to_owned()])
        .await
        .unwrap());
    assert!(store.audit_outbox(later, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .existing_audit_ids(&["evt_a".into(), "evt_z".into()])
            .await
            .unwrap(),
        vec!["evt_a".to_owned()]
    );
    store
        .delete_audit_outbox(&["evt_nothing".into()])
        .await
        .unwrap();
    // A write with several events stores them all, body and time intact (the first row is
    // bound as it is, the others travel as JSON).
    updated.name = "Thrice".into();
    let (result, stored) = with_rows(
        vec![
            outbox_row("evt_b1"),
            outbox_row("evt_b2"),
            outbox_row("evt_b3"),
        ],
        async |outbox| store.update_workspace(&updated, outbox).await,
    )
    .await;
    result.unwrap();
    assert!(stored);
    let rows = store.audit_outbox(later, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["evt_b1", "evt_b2", "evt_b3"]
    );
    for (row, id) in rows.iter().zip(["evt_b1", "evt_b2", "evt_b3"]) {
        assert_eq!(row.body, outbox_row(id).body);
        assert!((row.created_at - now()).num_seconds().abs() < 60);
    }
}

/// A batch larger than one insert statement takes (SQLite's go 32 rows a statement) lands
/// whole and in order, and its outbox rows, however many, go in the same transaction, leaving
/// the rows of other events; batches of every size in turn append on top of each other.
async fn large_audit_batches_append_and_clear_their_outbox_rows(store: Arc<dyn Store>) {
    let (ws, _, _) = seeded(&store, "large-batches").await;
    let later = now() + Duration::seconds(1);
    let mut events: Vec<String> = Vec::new();
    let mut updated = ws.clone();
    for i in 0..80 {
        let id = format!("evt_large_{i:03}");
        updated.name = format!("Large {i}");
        let (result, stored) = with_rows(vec![outbox_row(&id)], async |outbox| {
            store.update_workspace(&updated, outbox).await
        })
        .await;
        result.unwrap();
        assert!(stored);
        events.push(id);
    }
    store
        .open_audit_log(&ws.id, b"r", "k", now())
        .await
        .unwrap();
    // 75 rows (32 + 32 + 11 on SQLite), deleting the outbox rows of the first 75 events.
    let rows: Vec<AuditRow> = events[..75]
        .iter()
        .enumerate()
        .map(|(i, id)| AuditRow {
            id: id.clone(),
            body: Some(format!("{{\"line\":{i},\"quote\":\"\\\"\"}}")),
            ..audit_row(
                i as u64,
                "workspace.updated",
                "acc_1",
                "success",
                1_000 + i as i64,
            )
        })
        .collect();
    assert!(store
        .append_audit(&ws.id, 0, &rows, &[7; 32], b"r75", &events[..75])
        .await
        .unwrap());
    assert_eq!(store.audit_range(&ws.id, 0, 100).await.unwrap(), rows);
    let left = store.audit_outbox(later, 100).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        events[75..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Then batches of 1, 2, ... rows: every size's statement, one after another.
    let mut size = 75u64;
    for n in 1..=40u64 {
        let batch: Vec<AuditRow> = (size..size + n)
            .map(|i| audit_row(i, "workspace.updated", "acc_1", "success", 2_000 + i as i64))
            .collect();
        assert!(store
            .append_audit(&ws.id, size, &batch, &[8; 32], b"r", &[])
            .await
            .unwrap());
        size += n;
    }
    let head = store.audit_head(&ws.id).await.unwrap().unwrap();
    assert_eq!(head.size, size);
    let all = store.audit_range(&ws.id, 0, 2_000).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.index).collect::<Vec<_>>(),
        (0..size).collect::<Vec<_>>()
    );
    // The rest of the outbox, in one delete.
    store.delete_audit_outbox(&events[70..]).await.unwrap();
    assert!(store.audit_outbox(later, 100).await.unwrap().is_empty());
}

/// Many writers at once (on SQLite they queue for the store's one write connection) with
/// readers alongside: every write lands, none waits on another's lock until it times out, and
/// a write that fails half-way (a script stopped by a unique index, a transaction that rolled
/// back) leaves nothing behind and the writers after it unharmed.
async fn concurrent_writers_all_land(store: Arc<dyn Store>) {
    let (ws, actor, _) = seeded(&store, "crowd").await;
    let (other, _, _) = seeded(&store, "crowd-other").await;
    store
        .create_application(&application(&ws.id, "crowd-taken"), &Outbox::empty())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let store = store.clone();
        let (ws, other, actor) = (ws.clone(), other.clone(), actor.clone());
        tasks.spawn(async move {
            match i % 4 {
                // A script that commits.
                0 => {
                    let mut w = ws.clone();
                    w.name = format!("Crowd {i}");
                    store
                        .update_workspace(&w, &Outbox::empty())
                        .await
                        .map(|_| ())
                }
                // A script that fails on the unique slug after its first statement began.
                1 => {
                    let mut w = ws.clone();
                    w.slug = other.slug.clone();
                    match store.update_workspace(&w, &Outbox::empty()).await {
                        Err(StorageError::Duplicate) => Ok(()),
                        other => panic!("a duplicate slug was taken: {other:?}"),
                    }
                }
                // A transaction that commits.
                2 => {
                    let app = application(&ws.id, &format!("crowd-{i}"));
                    store.create_application(&app, &Outbox::empty()).await
                }
                // A transaction that rolls back (the slug is taken), and a read.
                _ => {
                    let app = application(&ws.id, "crowd-taken");
                    match store.create_application(&app, &Outbox::empty()).await {
                        Err(StorageError::Duplicate) => {}
                        other => panic!("a taken slug was used again: {other:?}"),
                    }
                    store.workspace_access(&actor, &ws.id).await.map(|_| ())
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("write");
    }
    let apps = store
        .applications(&ws.id, false, &page(100))
        .await
        .unwrap()
        .items;
    let mut slugs: Vec<_> = apps.iter().map(|a| a.slug.clone()).collect();
    slugs.sort();
    let mut expected: Vec<_> = (0..24)
        .filter(|i| i % 4 == 2)
        .map(|i| format!("crowd-{i}"))
        .chain(["crowd-taken".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(
        slugs, expected,
        "each committed application once, no rolled-back one"
    );
    let read = store.any_workspace(&ws.id).await.unwrap().unwrap();
    assert_eq!(read.slug, ws.slug, "the failed scripts changed nothing");
    assert!(read.name.starts_with("Crowd "));
    // The writers still work after the failures.
    let mut w = read.clone();
    w.name = "After".into();
    store.update_workspace(&w, &Outbox::empty()).await.unwrap();
    assert_eq!(
        store.any_workspace(&ws.id).await.unwrap().unwrap().name,
        "After"
    );
}

/// SQLite's WAL is copied back into the database file by the store's checkpointer every two
/// hundred writes or so, without waiting for a write to take the WAL past SQLite's 1,000 pages
/// (that write would wait for the copy and the `fsync`), and not after every write (the next
/// write would restart the WAL and wait for its header's `fsync`): after the migrations (a
/// hundred-odd pages) and a few writes the database file still holds almost nothing; after two
/// hundred more, the checkpointer fills it. And writes that never pause (the task's checkpoints
/// never catch up with them) still find the WAL started over: how far it grows meanwhile
/// depends on how long the disk takes to sync a checkpoint (writes do not wait for it), so the
/// test asserts the restart (the header's salt changes) and that the WAL stays smaller than the
/// writes, not a size near SQLite's 1,000 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_after_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    store.migrate().await.unwrap();
    let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    let wal = || std::fs::metadata(dir.path().join("cp.db-wal")).map_or(0, |m| m.len());
    assert!(
        wal() > 20 * 4096,
        "the migrations are in the WAL ({} bytes)",
        wal()
    );
    let (ws, owner, _) = seeded(&store, "checkpointed").await;
    let mut renamed = ws.clone();
    renamed.name = "Once".into();
    store
        .update_workspace(&renamed, &Outbox::empty())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        size() < 20 * 4096,
        "a few writes are not checkpointed on their own ({} bytes)",
        size()
    );
    // The store checkpoints every two hundred writes.
    for i in 0..200 {
        renamed.name = format!("Write {i}");
        store
            .update_workspace(&renamed, &Outbox::empty())
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < 20 * 4096 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after two hundred writes: database file {} bytes, WAL {} bytes",
            size(),
            wal()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // What was checkpointed reads back.
    let mine = store.workspaces_of(&owner, &page(10)).await.unwrap().items;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].0.id, ws.id);
    assert_eq!(mine[0].0.name, "Write 199");

    // The WAL header's salt, which SQLite changes each time it starts the WAL over.
    let salt = || {
        use std::io::Read;
        let mut header = [0u8; 24];
        std::fs::File::open(dir.path().join("cp.db-wal"))
            .and_then(|mut f| f.read_exact(&mut header))
            .unwrap();
        header[16..].to_vec()
    };
    let before = salt();
    // 3,000 writes of two pages or more each (a frame is a page and 24 bytes), back to back.
    for i in 0..3_000 {
        renamed.name = format!("Renamed {i}");
        store
            .update_workspace(&renamed, &Outbox::empty())
            .await
            .unwrap();
    }
    assert_ne!(salt(), before, "the WAL was never started over");
    assert!(
        wal() < 3_000 * 2 * 4096,
        "the WAL grew with the writes: {} bytes",
        wal()
    );
}

async fn vault_versions_are_checked_pruned_and_scoped(store: Arc<dyn Store>) {
    use authsome_domain::id::{SecretId, VaultId};
    use authsome_domain::vault::{Secret, StoredKek, Vault};
    use authsome_storage::{SecretWrite, StoredEnvelope};

    let (ws, _, _) = seeded(&store, "vaulted").await;
    let (other, _, _) = seeded(&store, "elsewhere").await;
    let kek = StoredKek {
        version: 1,
        sealed: Some(vec![1, 2, 3]),
        kms_key_id: Some("arn:aws:kms:eu-west-1:111122223333:key/k".into()),
        created_at: now(),
    };
    assert!(store.insert_kek(&ws.id, &kek).await.unwrap());
    assert!(
        !store.insert_kek(&ws.id, &kek).await.unwrap(),
        "a version is made once"
    );
    assert_eq!(store.keks(&ws.id).await.unwrap(), vec![kek.clone()]);
    assert!(store.keks(&other.id).await.unwrap().is_empty());

    let vault = Vault {
        id: VaultId::new(),
        workspace_id: ws.id.clone(),
        name: "production".into(),
        description: None,
        max_versions: 2,
        created_at: now(),
        updated_at: now(),
    };
    let (stored, audited) = with_rows(vec![outbox_row("evt_vault")], async |o| {
        store.insert_vault(&vault, o).await
    })
    .await;
    stored.unwrap();
    assert!(audited);
    let twin = Vault {
        id: VaultId::new(),
        ..vault.clone()
    };
    assert!(matches!(
        store.insert_vault(&twin, &Outbox::empty()).await,
        Err(StorageError::Duplicate)
    ));
    assert_eq!(
        store.vault(&ws.id, &vault.id).await.unwrap().as_ref(),
        Some(&vault)
    );
    assert!(
        store.vault(&other.id, &vault.id).await.unwrap().is_none(),
        "tenant boundary"
    );

    let mut secret = Secret {
        id: SecretId::new(),
        vault_id: vault.id.clone(),
        workspace_id: ws.id.clone(),
        name: "DATABASE_URL".into(),
        description: Some("primary".into()),
        tags: vec!["db".into()],
        expires_at: None,
        version: 1,
        versions: Vec::new(),
        created_at: now(),
        updated_at: now(),
        deleted_at: None,
    };
    let put = |secret: &Secret, envelope: &'static [u8]| {
        let secret = secret.clone();
        let store = store.clone();
        async move {
            let envelope = StoredEnvelope::Inline(envelope.to_vec());
            let write = SecretWrite {
                secret: &secret,
                kek_version: 1,
                envelope: &envelope,
                created_by: Some("acc_x"),
                max_versions: 2,
            };
            store
                .put_secret_version(&write, &Outbox::empty())
                .await
                .map(|_| ())
        }
    };
    put(&secret, b"one").await.unwrap();
    assert!(
        matches!(
            put(&secret, b"again").await,
            Err(StorageError::State("stale"))
        ),
        "a second first version is stale"
    );
    secret.version = 2;
    put(&secret, b"two").await.unwrap();
    assert!(matches!(
        put(&secret, b"dup").await,
        Err(StorageError::State("stale"))
    ));
    secret.version = 3;
    put(&secret, b"three").await.unwrap();

    let read = store
        .secret(&ws.id, &vault.id, "DATABASE_URL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.version, 3);
    assert_eq!(
        read.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 3],
        "maxVersions 2 pruned the first"
    );
    assert_eq!(
        store.secret_envelope(&read, 3).await.unwrap(),
        Some((1, StoredEnvelope::Inline(b"three".to_vec())))
    );
    assert_eq!(store.secret_envelope(&read, 1).await.unwrap(), None);
    assert!(store
        .secret(&other.id, &vault.id, "DATABASE_URL")
        .await
        .unwrap()
        .is_none());
    let listed = store.secrets(&ws.id, &vault.id, &page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].versions.is_empty());
    assert!(store
        .secrets(&other.id, &vault.id, &page(10))
        .await
        .unwrap()
        .items
        .is_empty());

    store
        .destroy_secret_version(&read, 2, now(), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(store.secret_envelope(&read, 2).await.unwrap(), None);
    assert!(matches!(
        store
            .destroy_secret_version(&read, 2, now(), &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));

    store
        .set_secret_deleted(&read, Some(now()), &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_secret_deleted(&read, Some(now()), &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    secret.version = 4;
    assert!(
        matches!(
            put(&secret, b"four").await,
            Err(StorageError::State("stale"))
        ),
        "no version is written to a deleted secret"
    );
    store
        .set_secret_deleted(&read, None, &Outbox::empty())
        .await
        .unwrap();
    put(&secret, b"four").await.unwrap();

    assert!(matches!(
        store
            .delete_vault(&ws.id, &vault.id, &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    assert!(matches!(
        store
            .delete_vault(&other.id, &vault.id, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    let empty = Vault {
        id: VaultId::new(),
        name: "ci".into(),
        ..vault.clone()
    };
    store.insert_vault(&empty, &Outbox::empty()).await.unwrap();
    store
        .delete_vault(&ws.id, &empty.id, &Outbox::empty())
        .await
        .unwrap();
}

async fn provider_configs_are_revised_and_scoped(store: Arc<dyn Store>) {
    use authsome_domain::provider::{CredentialMode, Provider, ProviderConfig};

    let (ws, _, _) = seeded(&store, "configured").await;
    let (other, _, _) = seeded(&store, "unconfigured").await;
    let mut config = ProviderConfig {
        workspace_id: ws.id.clone(),
        provider: Provider::Aws,
        mode: CredentialMode::Kms,
        config: [("keyId".to_owned(), serde_json::json!("alias/rotation"))].into(),
        ciphertext: Some(vec![9, 8, 7]),
        revision: 0,
        created_at: now(),
        updated_at: now(),
    };
    let (revision, audited) = with_rows(vec![outbox_row("evt_provider")], async |o| {
        store.put_provider(&config, o).await
    })
    .await;
    assert_eq!(revision.unwrap(), 1);
    assert!(audited, "the audit rows go with the write");
    let stored = store
        .provider(&ws.id, Provider::Aws)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.revision, stored.ciphertext.as_deref()),
        (1, Some(&[9u8, 8, 7][..]))
    );
    assert_eq!(stored.config, config.config);

    // Replacing it: the next revision, the old ciphertext gone with the mode.
    config.mode = CredentialMode::Hosted;
    config.ciphertext = None;
    assert_eq!(
        store.put_provider(&config, &Outbox::empty()).await.unwrap(),
        2
    );
    let stored = store
        .provider(&ws.id, Provider::Aws)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.mode, stored.ciphertext, stored.revision),
        (CredentialMode::Hosted, None, 2)
    );
    assert_eq!(stored.created_at, config.created_at);

    // Another workspace sees none of it and cannot remove it.
    assert!(store
        .provider(&other.id, Provider::Aws)
        .await
        .unwrap()
        .is_none());
    assert!(store.providers(&other.id).await.unwrap().is_empty());
    assert!(matches!(
        store
            .delete_provider(&other.id, Provider::Aws, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(store.providers(&ws.id).await.unwrap().len(), 1);
    store
        .delete_provider(&ws.id, Provider::Aws, &Outbox::empty())
        .await
        .unwrap();
    assert!(store.providers(&ws.id).await.unwrap().is_empty());
}

async fn vault_operators_are_bound_within_their_workspace(store: Arc<dyn Store>) {
    use authsome_domain::id::VaultId;
    use authsome_domain::vault::Vault;

    let (ws, _, member) = seeded(&store, "operated").await;
    let (other, _, stranger) = seeded(&store, "stranger").await;
    let vault_of = |ws: &Workspace| Vault {
        id: VaultId::new(),
        workspace_id: ws.id.clone(),
        name: "deploy".into(),
        description: None,
        max_versions: 10,
        created_at: now(),
        updated_at: now(),
    };
    let (mine, theirs) = (vault_of(&ws), vault_of(&other));
    store.insert_vault(&mine, &Outbox::empty()).await.unwrap();
    store.insert_vault(&theirs, &Outbox::empty()).await.unwrap();

    store
        .bind_vault_operator(&ws.id, &mine.id, &member.id, now(), &Outbox::empty())
        .await
        .unwrap();
    store
        .bind_vault_operator(&ws.id, &mine.id, &member.id, now(), &Outbox::empty())
        .await
        .expect("binding again changes nothing");
    assert!(store
        .is_vault_operator(&ws.id, &mine.id, &member.account_id)
        .await
        .unwrap());
    assert_eq!(
        store.vault_operators(&ws.id, &mine.id).await.unwrap().len(),
        1
    );
    // Across the boundary nothing binds and nothing is seen.
    for (w, v, m) in [
        (&ws.id, &theirs.id, &member.id),
        (&ws.id, &mine.id, &stranger.id),
        (&other.id, &mine.id, &member.id),
    ] {
        store
            .bind_vault_operator(w, v, m, now(), &Outbox::empty())
            .await
            .unwrap();
    }
    assert_eq!(
        store.vault_operators(&ws.id, &mine.id).await.unwrap().len(),
        1
    );
    assert!(store
        .vault_operators(&other.id, &mine.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .vault_operators(&ws.id, &theirs.id)
        .await
        .unwrap()
        .is_empty());
    assert!(!store
        .is_vault_operator(&other.id, &mine.id, &member.account_id)
        .await
        .unwrap());
    assert!(!store
        .is_vault_operator(&ws.id, &mine.id, &stranger.account_id)
        .await
        .unwrap());
    assert!(matches!(
        store
            .unbind_vault_operator(&other.id, &mine.id, &member.id, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    store
        .unbind_vault_operator(&ws.id, &mine.id, &member.id, &Outbox::empty())
        .await
        .unwrap();
    assert!(!store
        .is_vault_operator(&ws.id, &mine.id, &member.account_id)
        .await
        .unwrap());
}

async fn jobs_are_handed_out_once_and_again_when_their_lease_runs_out(store: Arc<dyn Store>) {
    use authsome_domain::job::Job;

    let (ws, _, _) = seeded(&store, "jobs").await;
    let t0 = now();
    let mut jobs = Vec::new();
    for i in 0..20 {
        let job = Job::new("test.work", serde_json::json!({"n": i}), Some(&ws.id), t0);
        assert!(store.enqueue_job(&job).await.unwrap());
        jobs.push(job);
    }
    let mut later = Job::new("test.work", serde_json::json!({"later": true}), None, t0);
    later.run_at = t0 + Duration::minutes(10);
    later.dedupe_key = Some("tick:1".into());
    assert!(store.enqueue_job(&later).await.unwrap());
    let mut again = Job::new("test.work", serde_json::json!({}), None, t0);
    again.dedupe_key = Some("tick:1".into());
    assert!(
        !store.enqueue_job(&again).await.unwrap(),
        "one job per dedupe key"
    );

    // Four workers claim at once: every due job goes to exactly one of them.
    let lease = t0 + Duration::seconds(30);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim_jobs(&format!("w{w}"), t0, lease, 3)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|j| (w, j)));
                }
            })
        })
        .collect();
    let mut claims = Vec::new();
    for worker in workers {
        claims.push(worker.await.unwrap());
    }
    let mut claimed: Vec<_> = claims.into_iter().flatten().collect();
    claimed.sort_by(|a, b| a.1.id.as_str().cmp(b.1.id.as_str()));
    assert_eq!(
        claimed.len(),
        20,
        "each due job once, the later one not yet"
    );
    claimed.dedup_by(|a, b| a.1.id == b.1.id);
    assert_eq!(claimed.len(), 20);
    assert!(claimed
        .iter()
        .all(|(_, j)| j.attempts == 1 && j.kind == "test.work"));

    // Finished by its holder only; a retry comes back at its time; a lapsed lease hands out again.
    let (holder, first) = &claimed[0];
    assert!(!store
        .finish_job(&first.id, "someone-else", t0)
        .await
        .unwrap());
    assert!(store
        .finish_job(&first.id, &format!("w{holder}"), t0)
        .await
        .unwrap());
    let (holder, second) = &claimed[1];
    assert!(store
        .retry_job(
            &second.id,
            &format!("w{holder}"),
            t0 + Duration::seconds(5),
            "later"
        )
        .await
        .unwrap());
    let (holder, third) = &claimed[2];
    assert!(store
        .fail_job(&third.id, &format!("w{holder}"), "gave up", t0)
        .await
        .unwrap());
    assert!(store
        .claim_jobs("w9", t0 + Duration::seconds(1), lease, 50)
        .await
        .unwrap()
        .is_empty());
    let back = store
        .claim_jobs(
            "w9",
            t0 + Duration::seconds(6),
            t0 + Duration::seconds(60),
            50,
        )
        .await
        .unwrap();
    assert_eq!(back.iter().map(|j| &j.id).collect::<Vec<_>>(), [&second.id]);
    assert_eq!(back[0].attempts, 2);
    // The other 17 were abandoned by their workers (a crash): after the lease they come back.
    let lapsed = store
        .claim_jobs(
            "w9",
            lease + Duration::seconds(1),
            lease + Duration::seconds(60),
            50,
        )
        .await
        .unwrap();
    assert_eq!(lapsed.len(), 17);
    assert!(!lapsed.iter().any(|j| j.id == first.id || j.id == third.id));
    let due = store
        .claim_jobs(
            "w9",
            t0 + Duration::minutes(11),
            t0 + Duration::minutes(12),
            50,
        )
        .await
        .unwrap();
    assert!(
        due.iter().any(|j| j.id == later.id),
        "the later job when its time comes"
    );
}

async fn an_application_limit_holds_under_concurrent_creations(store: Arc<dyn Store>) {
    let (ws, _, _) = seeded(&store, "limited").await;
    let deleted = {
        let mut app = application(&ws.id, "limited-gone");
        app.deleted_at = Some(now());
        app
    };
    store
        .create_application(&deleted, &Outbox::empty())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        let app = application(&ws.id, &format!("limited-{i}"));
        tasks.spawn(async move {
            store
                .create_application_within(&app, 3, &Outbox::empty())
                .await
        });
    }
    let (mut made, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(()) => made += 1,
            Err(StorageError::State("application limit")) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // A deleted application does not count; of eight at once, three are made.
    assert_eq!((made, refused), (3, 5));
    let live = store
        .applications(&ws.id, false, &page(100))
        .await
        .unwrap()
        .items;
    assert_eq!(live.len(), 3);
    // Another workspace's applications are not this one's count, nor can it be the target.
    let (other, _, _) = seeded(&store, "limited-other").await;
    store
        .create_application_within(&application(&other.id, "their-0"), 3, &Outbox::empty())
        .await
        .unwrap();
    let mut stray = application(&other.id, "stray");
    stray.workspace_id = authsome_domain::id::WorkspaceId::new();
    assert!(matches!(
        store
            .create_application_within(&stray, 3, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
}

async fn request_count_batches_apply_once(store: Arc<dyn Store>) {
    use authsome_domain::id::{ApplicationId, KeyId};
    let (ws, _, _) = seeded(&store, "metered").await;
    let app = application(&ws.id, "metered");
    store
        .create_application(&app, &Outbox::empty())
        .await
        .unwrap();
    let key = KeyId::new();
    let t0 = now();
    let hour = t0.timestamp() / 3600;
    let rows = |n: u64| vec![(app.id.clone(), key.clone(), hour, n)];
    assert!(store
        .add_request_counts("r1-a", &rows(5), t0)
        .await
        .unwrap());
    assert!(store
        .add_request_counts("r2-a", &rows(7), t0)
        .await
        .unwrap());
    // Replica 1's batch again (its first write committed, the answer was lost): counted once.
    assert!(!store
        .add_request_counts("r1-a", &rows(5), t0)
        .await
        .unwrap());
    assert_eq!(store.requests_since(&app.id, hour).await.unwrap(), 12);
    assert_eq!(
        store.workspace_requests_since(&ws.id, hour).await.unwrap(),
        12
    );
    let other = ApplicationId::new();
    assert_eq!(store.requests_since(&other, hour).await.unwrap(), 0);
    // By application within a span of hours: the hour itself, not the one after.
    assert_eq!(
        store
            .workspace_requests_between(&ws.id, hour, hour + 1)
            .await
            .unwrap(),
        vec![(app.id.clone(), 12)]
    );
    assert!(store
        .workspace_requests_between(&ws.id, hour + 1, hour + 2)
        .await
        .unwrap()
        .is_empty());
    // Ids are forgotten after a while; the ones kept still guard.
    assert_eq!(
        store
            .purge_usage_batches(t0 - Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert!(!store
        .add_request_counts("r2-a", &rows(7), t0)
        .await
        .unwrap());
    assert_eq!(
        store
            .purge_usage_batches(t0 + Duration::seconds(1))
            .await
            .unwrap(),
        2
    );
}

async fn relayed_jobs_are_taken_once_per_hand_out(store: Arc<dyn Store>) {
    use authsome_domain::job::Job;

    let (ws, _, _) = seeded(&store, "relayed").await;
    let t0 = now();
    let job = Job::new("test.work", serde_json::json!({}), Some(&ws.id), t0);
    assert!(store.enqueue_job(&job).await.unwrap());
    // A relay claims it for its transport (the first hand-out) ...
    let relayed = store
        .claim_jobs("relay", t0, t0 + Duration::minutes(10), 10)
        .await
        .unwrap();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].attempts, 1);
    let lease = t0 + Duration::seconds(60);
    // ... and of the workers the transport delivers it to, one takes it.
    assert!(
        store
            .take_job(&job.id, 2, "relay", "w1", t0, lease)
            .await
            .unwrap()
            .is_none(),
        "not a hand-out that did not happen"
    );
    assert!(
        store
            .take_job(&job.id, 1, "someone", "w1", t0, lease)
            .await
            .unwrap()
            .is_none(),
        "not from a relay that does not hold it"
    );
    let taken = store
        .take_job(&job.id, 1, "relay", "w1", t0, lease)
        .await
        .unwrap()
        .expect("the worker takes it");
    assert_eq!((taken.id.clone(), taken.attempts), (job.id.clone(), 1));
    assert!(
        store
            .take_job(&job.id, 1, "relay", "w2", t0, lease)
            .await
            .unwrap()
            .is_none(),
        "a second delivery of the same hand-out finds it taken"
    );
    // The holder died: once its lease ran out, a redelivery is taken by another worker.
    let after = lease + Duration::seconds(1);
    let retaken = store
        .take_job(
            &job.id,
            1,
            "relay",
            "w2",
            after,
            after + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert!(retaken.is_some());
    assert!(!store.finish_job(&job.id, "w1", after).await.unwrap());
    assert!(store.finish_job(&job.id, "w2", after).await.unwrap());
    assert!(
        store
            .take_job(&job.id, 1, "relay", "w3", after + Duration::hours(1), after)
            .await
            .unwrap()
            .is_none(),
        "a finished job is never taken again"
    );
}

async fn alert_channels_escalate_within_their_workspace(store: Arc<dyn Store>) {
    use authsome_domain::alert::{
        Alert, AlertChannel, AlertChannelKind, AlertSeverity, Escalation,
    };
    use authsome_domain::id::{AlertChannelId, AlertId};
    use authsome_domain::job::Job;

    let (ws, _, _) = seeded(&store, "escalating").await;
    let (other, _, _) = seeded(&store, "elsewhere").await;
    let t0 = now();
    let channel =
        |ws: &authsome_domain::id::WorkspaceId, escalation: Option<Escalation>| AlertChannel {
            id: AlertChannelId::new(),
            workspace_id: ws.clone(),
            kind: AlertChannelKind::Email,
            config: serde_json::json!({"to": ["ops@example.test"]}),
            sealed: None,
            min_severity: AlertSeverity::Info,
            cooldown_seconds: 0,
            escalation_only: escalation.is_none(),
            escalation,
            last_delivered_at: None,
            created_at: t0,
        };
    let pager = channel(&ws.id, None);
    store
        .insert_alert_channel(&pager, &Outbox::empty())
        .await
        .unwrap();
    let theirs = channel(&other.id, None);
    store
        .insert_alert_channel(&theirs, &Outbox::empty())
        .await
        .unwrap();
    let to = |c: &AlertChannel| {
        Some(Escalation {
            channel_id: c.id.clone(),
            after_minutes: 15,
        })
    };
    // Escalating to another workspace's channel is refused in storage.
    assert!(matches!(
        store
            .insert_alert_channel(&channel(&ws.id, to(&theirs)), &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    let first = channel(&ws.id, to(&pager));
    store
        .insert_alert_channel(&first, &Outbox::empty())
        .await
        .unwrap();
    let stored = store
        .alert_channel(&ws.id, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first);
    assert!(store
        .alert_channel(&other.id, &first.id)
        .await
        .unwrap()
        .is_none());
    // The channel escalated to is deleted: the escalation goes with it.
    store
        .delete_alert_channel(&ws.id, &pager.id, &Outbox::empty())
        .await
        .unwrap();
    let stored = store
        .alert_channel(&ws.id, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.escalation, None);
    // Alerts are raised once per key in the window, and only in their workspace.
    let alert = Alert {
        id: AlertId::new(),
        workspace_id: ws.id.clone(),
        kind: "rotation.failed".into(),
        severity: AlertSeverity::Critical,
        title: "failed".into(),
        details: serde_json::json!({}),
        dedupe_key: "k".into(),
        created_at: t0,
        acknowledged_at: None,
        acknowledged_by: None,
    };
    let job = Job::new("alert.deliver", serde_json::json!({}), Some(&ws.id), t0);
    assert!(store
        .raise_alert(&alert, t0 - Duration::hours(1), &[job])
        .await
        .unwrap());
    let again = Alert {
        id: AlertId::new(),
        ..alert.clone()
    };
    assert!(!store
        .raise_alert(&again, t0 - Duration::hours(1), &[])
        .await
        .unwrap());
    assert!(store
        .alert(Some(&other.id), &alert.id)
        .await
        .unwrap()
        .is_none());
}

async fn rotations_and_their_settings_stay_in_their_workspace(store: Arc<dyn Store>) {
    use authsome_domain::id::{RotationId, VaultId};
    use authsome_domain::job::Job;
    use authsome_domain::provider::Provider;
    use authsome_domain::rotation::{
        Rotation, RotationConfig, RotationStatus, RotationTarget, StepRecord,
    };
    use authsome_domain::vault::Vault;

    let (ws, _, _) = seeded(&store, "rotating").await;
    let (other, _, _) = seeded(&store, "bystander").await;
    let vault = Vault {
        id: VaultId::new(),
        workspace_id: ws.id.clone(),
        name: "prod".into(),
        description: None,
        max_versions: 10,
        created_at: now(),
        updated_at: now(),
    };
    store.insert_vault(&vault, &Outbox::empty()).await.unwrap();
    let mut config = RotationConfig {
        workspace_id: ws.id.clone(),
        vault_id: vault.id.clone(),
        secret_name: "DB".into(),
        generator: serde_json::json!({"length": 40}),
        targets: vec![RotationTarget {
            provider: Provider::Render,
            config: serde_json::json!({"serviceId": "srv-1", "key": "DB"}),
        }],
        schedule: None,
        health_check_url: None,
        redeploy: false,
        grace_period_seconds: 3600,
        revision: 0,
        created_at: now(),
        updated_at: now(),
        previewed_at: None,
        scheduled_at: None,
    };
    let (revision, audited) = with_rows(vec![outbox_row("evt_rotation_cfg")], async |o| {
        store.put_rotation_config(&config, o).await
    })
    .await;
    assert_eq!(revision.unwrap(), 1);
    assert!(audited);
    config.redeploy = true;
    assert_eq!(
        store
            .put_rotation_config(&config, &Outbox::empty())
            .await
            .unwrap(),
        2
    );
    let stored = store
        .rotation_config(&ws.id, &vault.id, "DB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.revision, stored.redeploy, &stored.targets),
        (2, true, &config.targets)
    );
    // Another workspace can neither read nor write settings on this vault.
    assert!(store
        .rotation_config(&other.id, &vault.id, "DB")
        .await
        .unwrap()
        .is_none());
    let mut crossing = config.clone();
    crossing.workspace_id = other.id.clone();
    assert!(matches!(
        store.put_rotation_config(&crossing, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));

    let t0 = now();
    let mut rotation = Rotation {
        id: RotationId::new(),
        workspace_id: ws.id.clone(),
        vault_id: vault.id.clone(),
        secret_name: "DB".into(),
        status: RotationStatus::Pending,
        reason: Some("quarterly".into()),
        requested_by: Some("acc_x".into()),
        decision: serde_json::json!({"outcome": "allow"}),
        steps: vec![StepRecord {
            kind: "mint".into(),
            target: None,
            status: "pending".into(),
            detail: None,
            error: None,
            at: None,
        }],
        previous_version: Some(1),
        new_version: None,
        error: None,
        created_at: t0,
        updated_at: t0,
        finished_at: None,
    };
    let job = Job::new(
        "rotation.run",
        serde_json::json!({"rotation": rotation.id.as_str()}),
        Some(&ws.id),
        t0,
    );
    store
        .insert_rotation(&rotation, Some(&job), None, &Outbox::empty())
        .await
        .unwrap();
    let claimed = store
        .claim_jobs("w", t0, t0 + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the run was enqueued with the rotation");
    rotation.status = RotationStatus::Running;
    rotation.steps[0].status = "succeeded".into();
    rotation.new_version = Some(2);
    store
        .save_rotation(&rotation, None, &Outbox::empty())
        .await
        .unwrap();
    let stored = store
        .rotation(Some(&ws.id), &rotation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, rotation);
    assert_eq!(
        store
            .rotation(None, &rotation.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        rotation.id
    );
    assert!(store
        .rotation(Some(&other.id), &rotation.id)
        .await
        .unwrap()
        .is_none());
    let mut theirs = rotation.clone();
    theirs.workspace_id = other.id.clone();
    assert!(matches!(
        store.save_rotation(&theirs, None, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));
    theirs.id = RotationId::new();
    assert!(matches!(
        store
            .insert_rotation(&theirs, None, None, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    // One rotation of a secret under way at a time.
    let mut second = rotation.clone();
    second.id = RotationId::new();
    assert!(matches!(
        store
            .insert_rotation(&second, None, None, &Outbox::empty())
            .await,
        Err(StorageError::Duplicate)
    ));
    let page = store
        .rotations(&ws.id, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(store
        .rotations(&other.id, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap()
        .items
        .is_empty());
    let history = store
        .rotation_history(
            &ws.id,
            &vault.id,
            "DB",
            t0 - Duration::days(1),
            t0 - Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(
        (history.secret_since_day, history.workspace_since_month),
        (1, 1)
    );
    assert_eq!(history.last_at, Some(t0));
    let none = store
        .rotation_history(
            &other.id,
            &vault.id,
            "DB",
            t0 - Duration::days(1),
            t0 - Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(none, Default::default());

    // A dry run is noted on the settings; policies, one per level, stay in their workspace.
    store
        .mark_previewed(&ws.id, &vault.id, "DB", t0)
        .await
        .unwrap();
    let previewed = store
        .rotation_config(&ws.id, &vault.id, "DB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previewed.previewed_at, Some(t0));
    store
        .mark_previewed(&other.id, &vault.id, "DB", t0 + Duration::days(1))
        .await
        .unwrap();
    let still = store
        .rotation_config(&ws.id, &vault.id, "DB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.previewed_at,
        Some(t0),
        "another workspace cannot mark it"
    );
    use authsome_domain::id::PolicyId;
    use authsome_domain::rotation::{Policy, PolicyScope};
    let mut policy = Policy {
        id: PolicyId::new(),
        workspace_id: ws.id.clone(),
        scope: PolicyScope::Provider,
        target: Some("render".into()),
        rules: serde_json::json!({"requireApproval": true}),
        created_at: t0,
        updated_at: t0,
    };
    store
        .insert_policy(&policy, &Outbox::empty())
        .await
        .unwrap();
    let twin = Policy {
        id: PolicyId::new(),
        ..policy.clone()
    };
    assert!(matches!(
        store.insert_policy(&twin, &Outbox::empty()).await,
        Err(StorageError::Duplicate)
    ));
    policy.rules = serde_json::json!({"cooldownSeconds": 60});
    store
        .update_policy(&policy, &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store.policy(&ws.id, &policy.id).await.unwrap().unwrap(),
        policy
    );
    assert_eq!(store.policies(&ws.id).await.unwrap(), vec![policy.clone()]);
    assert!(store.policy(&other.id, &policy.id).await.unwrap().is_none());
    assert!(store.policies(&other.id).await.unwrap().is_empty());
    let mut theirs = policy.clone();
    theirs.workspace_id = other.id.clone();
    assert!(matches!(
        store.update_policy(&theirs, &Outbox::empty()).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store
            .delete_policy(&other.id, &policy.id, &Outbox::empty())
            .await,
        Err(StorageError::NotFound)
    ));
    store
        .delete_policy(&ws.id, &policy.id, &Outbox::empty())
        .await
        .unwrap();
    assert!(store.policies(&ws.id).await.unwrap().is_empty());
    // A rotation held for approval (once the first finished): decided once, inside its
    // workspace only.
    rotation.status = RotationStatus::Succeeded;
    store
        .save_rotation(&rotation, None, &Outbox::empty())
        .await
        .unwrap();
    use authsome_domain::id::ApprovalId;
    use authsome_domain::rotation::{Approval, ApprovalStatus};
    let mut held = rotation.clone();
    held.id = RotationId::new();
    held.status = RotationStatus::AwaitingApproval;
    let mut approval = Approval {
        id: ApprovalId::new(),
        workspace_id: ws.id.clone(),
        rotation_id: held.id.clone(),
        status: ApprovalStatus::Pending,
        requested_by: "acc_requester".into(),
        reason: None,
        decided_by: None,
        decision_reason: None,
        break_glass: false,
        expires_at: t0 + Duration::hours(1),
        created_at: t0,
        decided_at: None,
    };
    store
        .insert_rotation(&held, None, Some(&approval), &Outbox::empty())
        .await
        .unwrap();
    assert_eq!(
        store
            .approval(Some(&ws.id), &approval.id)
            .await
            .unwrap()
            .unwrap(),
        approval
    );
    assert!(store
        .approval(Some(&other.id), &approval.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .expired_approvals(t0 + Duration::hours(2), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.expired_approvals(t0, 10).await.unwrap().is_empty());
    approval.status = ApprovalStatus::Approved;
    approval.decided_by = Some("acc_approver".into());
    approval.decided_at = Some(t0);
    held.status = RotationStatus::Pending;
    let run = Job::new("rotation.run", serde_json::json!({}), Some(&ws.id), t0);
    let mut crossing = approval.clone();
    crossing.workspace_id = other.id.clone();
    assert!(store
        .decide_approval(&crossing, &held, None, &Outbox::empty())
        .await
        .is_err());
    store
        .decide_approval(&approval, &held, Some(&run), &Outbox::empty())
        .await
        .unwrap();
    assert!(matches!(
        store
            .decide_approval(&approval, &held, None, &Outbox::empty())
            .await,
        Err(StorageError::State(_))
    ));
    assert_eq!(
        store
            .rotation(Some(&ws.id), &held.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RotationStatus::Pending
    );
    let page = store
        .approvals(&ws.id, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(store
        .expired_approvals(t0 + Duration::hours(2), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn billing_records_stay_in_their_workspace(store: Arc<dyn Store>) {
    use authsome_billing::{BilledUsage, Invoice, InvoiceStatus, Pricing};
    use authsome_domain::id::InvoiceId;
    use authsome_storage::StorageSample;
    let (ws, _, _) = seeded(&store, "billed").await;
    let (other, _, _) = seeded(&store, "elsewhere").await;
    // The plan history starts at creation and notes each change of plan, not other changes.
    let mut changed = ws.clone();
    changed.plan = Plan::Pro;
    changed.updated_at = ws.created_at + Duration::days(3);
    store
        .update_workspace(&changed, &Outbox::empty())
        .await
        .unwrap();
    changed.name = "Renamed".into();
    changed.updated_at += Duration::days(1);
    store
        .update_workspace(&changed, &Outbox::empty())
        .await
        .unwrap();
    let history = store.plan_history(&ws.id).await.unwrap();
    let plans: Vec<Plan> = history.iter().map(|(_, p)| *p).collect();
    assert_eq!(plans, [Plan::Free, Plan::Pro]);
    assert_eq!(
        history[1].0.timestamp_millis(),
        (ws.created_at + Duration::days(3)).timestamp_millis()
    );

    // A day's sample is taken once per application; each workspace sees its own.
    let app = ApplicationId::new();
    let sample = |w: &Workspace, day: i64, bytes: u64| StorageSample {
        workspace_id: w.id.clone(),
        application_id: app.clone(),
        day,
        bytes,
    };
    store
        .add_storage_samples(&[sample(&ws, 100, 5_000), sample(&ws, 101, 6_000)])
        .await
        .unwrap();
    store
        .add_storage_samples(&[sample(&ws, 101, 9_999)])
        .await
        .unwrap();
    assert_eq!(store.last_storage_day().await.unwrap(), Some(101));
    let samples = store.storage_samples(&ws.id, 100, 102).await.unwrap();
    assert_eq!(
        samples.iter().map(|s| s.bytes).collect::<Vec<_>>(),
        [5_000, 6_000]
    );
    assert!(store
        .storage_samples(&other.id, 0, 1_000)
        .await
        .unwrap()
        .is_empty());

    // A draft keeps the id it was first given while it is rewritten; closing it keeps it too;
    // after that neither a draft nor a second close changes it.
    let invoice = |total: u64, status: InvoiceStatus| Invoice {
        id: InvoiceId::new(),
        workspace_id: ws.id.clone(),
        month: "2026-11".into(),
        status,
        currency: "usd".into(),
        plan: Plan::Pro,
        pricing: Pricing::pro(),
        lines: Vec::new(),
        total_cents: total,
        usage: BilledUsage::default(),
        correction: None,
        created_at: now(),
        closed_at: (status == InvoiceStatus::Closed).then(now),
    };
    let first = store
        .save_draft_invoice(&invoice(100, InvoiceStatus::Draft))
        .await
        .unwrap();
    let again = store
        .save_draft_invoice(&invoice(200, InvoiceStatus::Draft))
        .await
        .unwrap();
    assert_eq!(
        (again.id.clone(), again.total_cents),
        (first.id.clone(), 200)
    );
    assert_eq!(again.status, InvoiceStatus::Draft);
    let (closed, stored) = with_rows(
        vec![outbox_row(&format!("evt_close{}", InvoiceId::new()))],
        async |o| {
            store
                .close_invoice(&invoice(300, InvoiceStatus::Closed), &[], o)
                .await
                .unwrap()
        },
    )
    .await;
    assert!(closed && stored);
    let (closed, stored) = with_rows(
        vec![outbox_row(&format!("evt_close{}", InvoiceId::new()))],
        async |o| {
            store
                .close_invoice(&invoice(999, InvoiceStatus::Closed), &[], o)
                .await
                .unwrap()
        },
    )
    .await;
    assert!(!closed && !stored, "a month closes once");
    // A job committed with a close is stored only when the close is.
    let job = |key: &str| {
        let mut j = authsome_domain::job::Job::new(
            "billing.stripe.usage",
            serde_json::json!({}),
            Some(&ws.id),
            now(),
        );
        j.dedupe_key = Some(key.to_owned());
        j
    };
    assert!(!store
        .close_invoice(
            &invoice(5, InvoiceStatus::Closed),
            &[job("usage-late")],
            &Outbox::empty()
        )
        .await
        .unwrap());
    assert!(
        store.enqueue_job(&job("usage-late")).await.unwrap(),
        "the refused close stored no job"
    );
    let mut december = invoice(7, InvoiceStatus::Closed);
    december.month = "2026-12".into();
    let (closed, _) = with_rows(vec![outbox_row("evt_close_december")], async |o| {
        store
            .close_invoice(&december, &[job("usage-december")], o)
            .await
            .unwrap()
    })
    .await;
    assert!(closed);
    assert!(
        !store.enqueue_job(&job("usage-december")).await.unwrap(),
        "the close stored its job"
    );
    let kept = store
        .save_draft_invoice(&invoice(1, InvoiceStatus::Draft))
        .await
        .unwrap();
    assert_eq!(
        (kept.id.clone(), kept.status, kept.total_cents),
        (first.id.clone(), InvoiceStatus::Closed, 300)
    );
    assert!(kept.closed_at.is_some());
    // Found by id in its workspace (or by any), never in another.
    assert!(store
        .invoice(Some(&ws.id), &first.id)
        .await
        .unwrap()
        .is_some());
    assert!(store.invoice(None, &first.id).await.unwrap().is_some());
    assert!(store
        .invoice(Some(&other.id), &first.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.invoices(&ws.id, &page(10)).await.unwrap().items.len(),
        2
    );
    assert!(store
        .invoices(&other.id, &page(10))
        .await
        .unwrap()
        .items
        .is_empty());

    // Stripe: a customer names its workspace; an event applies once, with its change.
    use authsome_storage::StripeCustomer;
    let customer = StripeCustomer {
        customer_id: "cus_billed".into(),
        subscription_id: Some("sub_1".into()),
    };
    store
        .set_stripe_customer(&ws.id, &customer, now())
        .await
        .unwrap();
    assert_eq!(store.stripe_customer(&ws.id).await.unwrap(), Some(customer));
    assert_eq!(store.stripe_customer(&other.id).await.unwrap(), None);
    assert_eq!(
        store
            .any_workspace_of_stripe_customer("cus_billed")
            .await
            .unwrap(),
        Some(ws.id.clone())
    );
    // Another workspace cannot claim the same customer.
    let taken = store
        .set_stripe_customer(
            &other.id,
            &StripeCustomer {
                customer_id: "cus_billed".into(),
                subscription_id: None,
            },
            now(),
        )
        .await;
    assert!(matches!(taken, Err(StorageError::Duplicate)), "{taken:?}");
    let mut past_due = changed.clone();
    past_due.payment_status = PaymentStatus::PastDue;
    past_due.plan = Plan::Free;
    past_due.updated_at += Duration::days(1);
    for (attempt, expected) in [(1, true), (2, false)] {
        let (applied, stored) = with_rows(
            vec![outbox_row(&format!("evt_stripe{attempt}"))],
            async |o| {
                store
                    .apply_stripe_event("evt_invoice_failed", now(), Some(&past_due), o)
                    .await
                    .unwrap()
            },
        )
        .await;
        assert_eq!((applied, stored), (expected, expected), "attempt {attempt}");
    }
    let read = store.any_workspace(&ws.id).await.unwrap().unwrap();
    assert_eq!(read.payment_status, PaymentStatus::PastDue);
    let plans: Vec<Plan> = store
        .plan_history(&ws.id)
        .await
        .unwrap()
        .iter()
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(plans, [Plan::Free, Plan::Pro, Plan::Free]);
    // Event ids are forgotten after a while.
    assert_eq!(
        store
            .purge_stripe_events(now() - Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_stripe_events(now() + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
}
