//! The repository implementations, written once and instantiated for each backend by
//! [`impl_repositories!`]. The SQL is portable: `$n` parameters (SQLite accepts them too), TEXT
//! ids, BIGINT millisecond times, JSON kept as TEXT. Every transaction starts with a write, so on
//! SQLite it takes the write lock first and never fails on a stale read snapshot; on Postgres the
//! same first write (`UPDATE workspaces … WHERE id = $1`) serialises changes to one workspace.

macro_rules! impl_repositories {
    ($store:ty, $backend:expr, $migrator:expr) => {
        use async_trait::async_trait;
        use authsome_domain::id::{
            AccountId, ApplicationId, InvitationId, KeyId, MemberId, WorkspaceId,
        };
        use authsome_domain::keys::KeyHash;
        use authsome_domain::page::{Page, PageRequest};
        use authsome_domain::tenancy::{
            Account, Actor, ApiKey, Application, Member, Role, Workspace,
        };
        use chrono::{DateTime, Utc};

        use crate::rows::*;
        use crate::sql::HasDb;
        use crate::*;

        const ROOT_SETTING: &str = "root_workspace_id";

        impl $store {
            async fn root_id(&self) -> Result<Option<WorkspaceId>> {
                if let Some(id) = self.root.get() {
                    return Ok(Some(id.clone()));
                }
                let stored = self.setting(ROOT_SETTING).await?;
                let id = stored
                    .map(|s| WorkspaceId::parse(&s).map_err(|_| StorageError::Corrupt("root id")))
                    .transpose()?;
                if let Some(id) = &id {
                    let _ = self.root.set(id.clone());
                }
                Ok(id)
            }

            /// How a transaction that reads before it writes begins: on SQLite with the write
            /// lock taken at once (`IMMEDIATE`), for a deferred one that must upgrade its read
            /// lock fails at once (`database is locked`) while the WAL is being checkpointed.
            const BEGIN_WRITE: &'static str = match $backend {
                crate::Backend::Sqlite => "BEGIN IMMEDIATE",
                crate::Backend::Postgres => "BEGIN",
            };

            /// Writes `w` over its row in `tx`, noting a change of plan in the plan history.
            pub(crate) async fn update_workspace_in(
                tx: &mut sqlx::Transaction<'_, <$store as HasDb>::Db>,
                w: &Workspace,
            ) -> Result<()> {
                // Changes to one workspace queue behind this lock (SQLite's writer is one), so
                // the plan history records each change once and in order.
                let lock = match $backend {
                    crate::Backend::Postgres => "SELECT plan FROM workspaces WHERE id = $1 FOR UPDATE",
                    crate::Backend::Sqlite => "SELECT plan FROM workspaces WHERE id = $1",
                };
                let previous: Option<String> = sqlx::query_scalar(lock)
                    .bind(w.id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some(previous) = previous else {
                    return Err(StorageError::NotFound);
                };
                sqlx::query(
                    "UPDATE workspaces SET name = $1, slug = $2, plan = $3, status = $4, \
                     kyc_status = $5, payment_status = $6, metadata = $7, limits = $8, \
                     updated_at = $9 WHERE id = $10",
                )
                .bind(&w.name)
                .bind(&w.slug)
                .bind(w.plan.as_str())
                .bind(w.status.as_str())
                .bind(w.kyc_status.as_str())
                .bind(w.payment_status.as_str())
                .bind(w.metadata.to_string())
                .bind(serde_json::to_string(&w.limits).unwrap_or_else(|_| "{}".into()))
                .bind(ms(w.updated_at))
                .bind(w.id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(unique)?;
                if previous != w.plan.as_str() {
                    insert_plan_change(&mut **tx, &w.id, w.updated_at, w.plan).await?;
                }
                Ok(())
            }

            /// Runs an [`crate::outbox::outboxed_write!`] command with `outbox`'s `rows` bound
            /// last; the number of rows the write changed (its outbox rows stored if it changed
            /// one).
            async fn run_outboxed<'q>(
                &self,
                outbox: &crate::outbox::Outbox,
                rows: &'q crate::outbox::InlineRows,
                query: sqlx::query::Query<
                    'q,
                    <$store as HasDb>::Db,
                    <<$store as HasDb>::Db as sqlx::Database>::Arguments<'q>,
                >,
            ) -> Result<i64> {
                let result = self
                    .script_writer()
                    .await?
                    .run(rows.bind(query))
                    .await
                    .map_err(unique)?;
                let changed = crate::script::first_count(&result)?;
                outbox.committed(changed > 0 && rows.any());
                Ok(changed)
            }

            /// Binds an application's columns, in `INSERT INTO applications`' order, as `$1`..`$17`.
            fn bind_application<'q>(
                query: sqlx::query::Query<
                    'q,
                    <$store as HasDb>::Db,
                    <<$store as HasDb>::Db as sqlx::Database>::Arguments<'q>,
                >,
                a: &'q Application,
            ) -> sqlx::query::Query<
                'q,
                <$store as HasDb>::Db,
                <<$store as HasDb>::Db as sqlx::Database>::Arguments<'q>,
            > {
                query
                    .bind(a.id.as_str())
                    .bind(a.workspace_id.as_str())
                    .bind(&a.name)
                    .bind(&a.slug)
                    .bind(a.environment.as_str())
                    .bind(a.tenancy.as_str())
                    .bind(a.status.as_str())
                    .bind(&a.region)
                    .bind(a.config.to_string())
                    .bind(serde_json::to_string(&a.upstreams).unwrap_or_else(|_| "[]".into()))
                    .bind(ms(a.created_at))
                    .bind(ms(a.updated_at))
                    .bind(opt_ms(a.deleted_at))
                    .bind(opt_ms(a.purge_at))
                    .bind(opt_ms(a.provisioned_at))
                    .bind(i32::try_from(a.provision_attempts).unwrap_or(i32::MAX))
                    .bind(a.provision_error.as_deref())
            }

            async fn workspace_rows(&self, rows: Vec<WorkspaceRow>) -> Result<Vec<Workspace>> {
                let root = self.root_id().await?;
                rows.into_iter().map(|r| r.into_domain(root.as_ref())).collect()
            }

            async fn member_by_id(&self, workspace: &WorkspaceId, id: &MemberId) -> Result<Member> {
                self.member(workspace, id).await?.ok_or(StorageError::NotFound)
            }
        }

        crate::outbox::outbox_sql!(<$store as HasDb>::Db);

        fn after(page: &PageRequest) -> &str {
            page.after.as_deref().unwrap_or("")
        }

        fn fetch_limit(page: &PageRequest) -> i64 {
            i64::from(page.limit) + 1
        }

        #[async_trait]
        impl SystemRepository for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<()> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn is_migrated(&self) -> Result<bool> {
                let latest = $migrator.iter().map(|m| m.version).max().unwrap_or(0);
                let applied: Option<i64> = match sqlx::query_scalar(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE",
                )
                .fetch_one(&self.pool)
                .await
                {
                    Ok(v) => v,
                    // No migrations table yet: nothing applied.
                    Err(sqlx::Error::Database(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                Ok(applied.unwrap_or(0) >= latest)
            }

            async fn setting(&self, name: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM system_settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO system_settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn bootstrap(&self, root: &RootBootstrap) -> Result<BootstrapOutcome> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let claimed = sqlx::query(
                    "INSERT INTO system_settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(ROOT_SETTING)
                .bind(root.workspace.id.as_str())
                .execute(&mut *tx)
                .await;
                let claimed = match claimed.map_err(unique) {
                    Ok(done) => done.rows_affected() == 1,
                    // A concurrent init on Postgres may surface as a unique violation.
                    Err(StorageError::Duplicate) => false,
                    Err(e) => return Err(e),
                };
                if !claimed {
                    drop(tx);
                    let workspace_id = self.root_id().await?.ok_or(StorageError::NotFound)?;
                    let owner_email: Option<String> = sqlx::query_scalar(
                        "SELECT a.email FROM members m JOIN accounts a ON a.id = m.account_id \
                         WHERE m.workspace_id = $1 AND m.role = 'owner' ORDER BY m.id LIMIT 1",
                    )
                    .bind(workspace_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                    return Ok(BootstrapOutcome::AlreadyDone {
                        workspace_id,
                        owner_email,
                    });
                }
                insert_account(&mut *tx, &root.account, Some(&root.password_hash)).await?;
                insert_workspace(&mut *tx, &root.workspace).await?;
                insert_plan_change(&mut *tx, &root.workspace.id, root.workspace.created_at, root.workspace.plan).await?;
                insert_member(&mut *tx, &root.member).await?;
                insert_key(&mut *tx, &root.key).await?;
                tx.commit().await?;
                Ok(BootstrapOutcome::Created)
            }

            async fn root_workspace_id(&self) -> Result<Option<WorkspaceId>> {
                self.root_id().await
            }
        }

        async fn insert_account<'e, E>(exec: E, a: &Account, password_hash: Option<&str>) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            sqlx::query(
                "INSERT INTO accounts (id, email, name, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(a.id.as_str())
            .bind(&a.email)
            .bind(a.name.as_deref())
            .bind(password_hash)
            .bind(ms(a.created_at))
            .execute(exec)
            .await
            .map_err(unique)?;
            Ok(())
        }

        async fn insert_workspace<'e, E>(exec: E, w: &Workspace) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            sqlx::query(
                "INSERT INTO workspaces (id, name, slug, plan, status, kyc_status, payment_status, \
                 metadata, limits, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(w.id.as_str())
            .bind(&w.name)
            .bind(&w.slug)
            .bind(w.plan.as_str())
            .bind(w.status.as_str())
            .bind(w.kyc_status.as_str())
            .bind(w.payment_status.as_str())
            .bind(w.metadata.to_string())
            .bind(serde_json::to_string(&w.limits).unwrap_or_else(|_| "{}".into()))
            .bind(ms(w.created_at))
            .bind(ms(w.updated_at))
            .execute(exec)
            .await
            .map_err(unique)?;
            Ok(())
        }

        /// Notes that the workspace is on `plan` from `since` (billing's plan history).
        async fn insert_plan_change<'e, E>(
            exec: E,
            workspace: &WorkspaceId,
            since: DateTime<Utc>,
            plan: authsome_domain::tenancy::Plan,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            sqlx::query("INSERT INTO plan_history (workspace_id, since, plan) VALUES ($1, $2, $3)")
                .bind(workspace.as_str())
                .bind(ms(since))
                .bind(plan.as_str())
                .execute(exec)
                .await?;
            Ok(())
        }

        async fn insert_member<'e, E>(exec: E, m: &Member) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            sqlx::query(
                "INSERT INTO members (id, workspace_id, account_id, role, status, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.id.as_str())
            .bind(m.workspace_id.as_str())
            .bind(m.account_id.as_str())
            .bind(m.role.as_str())
            .bind(m.status.as_str())
            .bind(ms(m.created_at))
            .bind(ms(m.updated_at))
            .execute(exec)
            .await
            .map_err(unique)?;
            Ok(())
        }

        async fn insert_key<'e, E>(exec: E, k: &ApiKey) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            bind_key(
                sqlx::query(
                    "INSERT INTO api_keys (id, workspace_id, application_id, kind, mode, name, \
                     scopes, role, hash, last4, created_at, last_used_at, expires_at, revoked_at, \
                     rolled_to, signing_secret, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     $17)",
                ),
                k,
            )
            .execute(exec)
            .await
            .map_err(unique)?;
            Ok(())
        }

        /// Binds a key's seventeen columns, in `api_keys` order, as `$1` to `$17`.
        fn bind_key<'q>(
            query: sqlx::query::Query<
                'q,
                <$store as HasDb>::Db,
                <<$store as HasDb>::Db as sqlx::Database>::Arguments<'q>,
            >,
            k: &'q ApiKey,
        ) -> sqlx::query::Query<
            'q,
            <$store as HasDb>::Db,
            <<$store as HasDb>::Db as sqlx::Database>::Arguments<'q>,
        > {
            let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
            query
            .bind(k.id.as_str())
            .bind(k.workspace_id.as_str())
            .bind(k.application_id.as_ref().map(|a| a.as_str()))
            .bind(k.kind.as_str())
            .bind(k.mode.as_str())
            .bind(k.name.as_deref())
            .bind(serde_json::to_string(&scopes).unwrap_or_else(|_| "[]".into()))
            .bind(k.role.map(|r| r.as_str()))
            .bind(k.hash.to_hex())
            .bind(&k.last4)
            .bind(ms(k.created_at))
            .bind(opt_ms(k.last_used_at))
            .bind(opt_ms(k.expires_at))
            .bind(opt_ms(k.revoked_at))
            .bind(k.rolled_to.as_ref().map(|r| r.as_str()))
            .bind(k.signing_secret.as_deref())
            .bind(k.created_by.as_ref().map(|a| a.as_str()))
        }

        fn key_hashes(hex: Vec<String>) -> Result<Vec<KeyHash>> {
            hex.iter()
                .map(|h| KeyHash::from_hex(h).ok_or(StorageError::Corrupt("api_keys.hash")))
                .collect()
        }

        /// Takes the per-workspace write lock (see the module doc); `NotFound` if it is gone.
        async fn lock_workspace<'e, E>(exec: E, id: &WorkspaceId) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            let done = sqlx::query("UPDATE workspaces SET updated_at = updated_at WHERE id = $1")
                .bind(id.as_str())
                .execute(exec)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(())
        }

        async fn count_active_owners<'e, E>(exec: E, id: &WorkspaceId) -> Result<i64>
        where
            E: sqlx::Executor<'e, Database = <$store as HasDb>::Db>,
        {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND role = 'owner' \
                 AND status = 'active'",
            )
            .bind(id.as_str())
            .fetch_one(exec)
            .await?)
        }

        #[async_trait]
        impl AccountRepository for $store {
            async fn create_account(&self, account: &Account, password_hash: Option<&str>) -> Result<()> {
                insert_account(&mut *self.writer().await?, account, password_hash).await
            }

            async fn account_by_email(
                &self,
                email: &str,
            ) -> Result<Option<(Account, Option<String>)>> {
                sqlx::query_as::<_, AccountRow>(
                    "SELECT id, email, name, password_hash, created_at FROM accounts WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?
                .map(AccountRow::into_domain)
                .transpose()
            }

            async fn create_session(
                &self,
                token_hash: &KeyHash,
                account: &AccountId,
                created_at: DateTime<Utc>,
                expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO control_sessions (token_hash, account_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash.to_hex())
                .bind(account.as_str())
                .bind(ms(created_at))
                .bind(ms(expires_at))
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn session_account(
                &self,
                token_hash: &KeyHash,
                now: DateTime<Utc>,
            ) -> Result<Option<Account>> {
                Ok(sqlx::query_as::<_, AccountRow>(
                    "SELECT a.id, a.email, a.name, a.password_hash, a.created_at \
                     FROM control_sessions s JOIN accounts a ON a.id = s.account_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(token_hash.to_hex())
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?
                .map(AccountRow::into_domain)
                .transpose()?
                .map(|(account, _)| account))
            }

            async fn delete_session(&self, token_hash: &KeyHash) -> Result<()> {
                sqlx::query("DELETE FROM control_sessions WHERE token_hash = $1")
                    .bind(token_hash.to_hex())
                    .execute(&mut *self.writer().await?)
                    .await?;
                Ok(())
            }

            async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM control_sessions WHERE expires_at <= $1")
                    .bind(ms(now))
                    .execute(&mut *self.writer().await?)
                    .await?
                    .rows_affected())
            }

            async fn memberships(&self, account: &AccountId) -> Result<Vec<Member>> {
                let sql = format!(
                    "SELECT {MEMBER_COLUMNS} FROM members m JOIN accounts a ON a.id = m.account_id \
                     WHERE m.account_id = $1 ORDER BY m.id"
                );
                sqlx::query_as::<_, MemberRow>(&sql)
                    .bind(account.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(MemberRow::into_domain)
                    .collect()
            }
        }

        #[async_trait]
        impl WorkspaceRepository for $store {
            async fn create_workspace(&self, workspace: &Workspace, owner: &Member, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                insert_workspace(&mut *tx, workspace).await?;
                insert_plan_change(&mut *tx, &workspace.id, workspace.created_at, workspace.plan).await?;
                insert_member(&mut *tx, owner).await?;
                commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn workspace_access(
                &self,
                actor: &Actor,
                workspace: &WorkspaceId,
            ) -> Result<Option<(Workspace, Role)>> {
                let root = self.root_id().await?;
                match actor {
                    Actor::Account(account) => {
                        let sql = format!(
                            "SELECT {WORKSPACE_COLUMNS}, m.role AS member_role FROM workspaces w \
                             JOIN members m ON m.workspace_id = w.id \
                             WHERE w.id = $1 AND m.account_id = $2 AND m.status = 'active'"
                        );
                        sqlx::query_as::<_, WorkspaceRoleRow>(&sql)
                            .bind(workspace.as_str())
                            .bind(account.as_str())
                            .fetch_optional(&self.pool)
                            .await?
                            .map(|r| r.into_domain(root.as_ref()))
                            .transpose()
                    }
                    Actor::ManagementKey {
                        workspace_id, role, ..
                    } => {
                        if workspace_id != workspace {
                            return Ok(None);
                        }
                        let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = $1");
                        sqlx::query_as::<_, WorkspaceRow>(&sql)
                            .bind(workspace.as_str())
                            .fetch_optional(&self.pool)
                            .await?
                            .map(|r| Ok((r.into_domain(root.as_ref())?, *role)))
                            .transpose()
                    }
                }
            }

            async fn workspaces_of(
                &self,
                actor: &Actor,
                page: &PageRequest,
            ) -> Result<Page<(Workspace, Role)>> {
                let root = self.root_id().await?;
                let rows = match actor {
                    Actor::Account(account) => {
                        let sql = format!(
                            "SELECT {WORKSPACE_COLUMNS}, m.role AS member_role FROM workspaces w \
                             JOIN members m ON m.workspace_id = w.id \
                             WHERE m.account_id = $1 AND m.status = 'active' AND w.id > $2 \
                             ORDER BY w.id LIMIT $3"
                        );
                        sqlx::query_as::<_, WorkspaceRoleRow>(&sql)
                            .bind(account.as_str())
                            .bind(after(page))
                            .bind(fetch_limit(page))
                            .fetch_all(&self.pool)
                            .await?
                            .into_iter()
                            .map(|r| r.into_domain(root.as_ref()))
                            .collect::<Result<Vec<_>>>()?
                    }
                    Actor::ManagementKey { workspace_id, .. } => self
                        .workspace_access(actor, workspace_id)
                        .await?
                        .into_iter()
                        .filter(|(w, _)| w.id.as_str() > after(page))
                        .collect(),
                };
                Ok(Page::from_rows(rows, page.limit, |(w, _)| w.id.as_str()))
            }

            async fn any_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
                let sql = format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = $1");
                let row = sqlx::query_as::<_, WorkspaceRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(self.workspace_rows(row.into_iter().collect()).await?.pop())
            }

            async fn all_workspaces(&self, page: &PageRequest) -> Result<Page<Workspace>> {
                let sql = format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id > $1 ORDER BY w.id LIMIT $2"
                );
                let rows = sqlx::query_as::<_, WorkspaceRow>(&sql)
                    .bind(after(page))
                    .bind(fetch_limit(page))
                    .fetch_all(&self.pool)
                    .await?;
                let rows = self.workspace_rows(rows).await?;
                Ok(Page::from_rows(rows, page.limit, |w| w.id.as_str()))
            }

            async fn update_workspace(&self, w: &Workspace, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.writer().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, Self::BEGIN_WRITE).await?;
                Self::update_workspace_in(&mut tx, w).await?;
                commit_with_outbox(tx, outbox).await
            }

            async fn delete_workspace(&self, id: &WorkspaceId, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "DELETE FROM workspaces WHERE id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM applications WHERE workspace_id = $1)",
                )
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    commit_with_outbox(tx, outbox).await?;
                    return Ok(());
                }
                drop(tx);
                match self.any_workspace(id).await? {
                    Some(_) => Err(StorageError::State("the workspace still has applications")),
                    None => Err(StorageError::NotFound),
                }
            }
        }

        #[async_trait]
        impl MemberRepository for $store {
            async fn members(&self, workspace: &WorkspaceId, page: &PageRequest) -> Result<Page<Member>> {
                let sql = format!(
                    "SELECT {MEMBER_COLUMNS} FROM members m JOIN accounts a ON a.id = m.account_id \
                     WHERE m.workspace_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
                );
                let rows = sqlx::query_as::<_, MemberRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(after(page))
                    .bind(fetch_limit(page))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(MemberRow::into_domain)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page::from_rows(rows, page.limit, |m| m.id.as_str()))
            }

            async fn member(&self, workspace: &WorkspaceId, id: &MemberId) -> Result<Option<Member>> {
                let sql = format!(
                    "SELECT {MEMBER_COLUMNS} FROM members m JOIN accounts a ON a.id = m.account_id \
                     WHERE m.workspace_id = $1 AND m.id = $2"
                );
                sqlx::query_as::<_, MemberRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(MemberRow::into_domain)
                    .transpose()
            }

            async fn invite_member(
                &self,
                member: &Member,
                invitation_id: &InvitationId,
                token_hash: &KeyHash,
                expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Member> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                lock_workspace(&mut *tx, &member.workspace_id).await?;
                sqlx::query(
                    "INSERT INTO accounts (id, email, name, password_hash, created_at, updated_at) \
                     VALUES ($1, $2, NULL, NULL, $3, $3) ON CONFLICT (email) DO NOTHING",
                )
                .bind(member.account_id.as_str())
                .bind(&member.email)
                .bind(ms(member.created_at))
                .execute(&mut *tx)
                .await?;
                let account_id: String =
                    sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
                        .bind(&member.email)
                        .fetch_one(&mut *tx)
                        .await?;
                let account_id = AccountId::parse(&account_id)
                    .map_err(|_| StorageError::Corrupt("accounts.id"))?;
                let stored = Member {
                    account_id,
                    ..member.clone()
                };
                insert_member(&mut *tx, &stored).await?;
                sqlx::query(
                    "INSERT INTO invitations (id, workspace_id, member_id, token_hash, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(invitation_id.as_str())
                .bind(member.workspace_id.as_str())
                .bind(member.id.as_str())
                .bind(token_hash.to_hex())
                .bind(ms(member.created_at))
                .bind(ms(expires_at))
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                self.member_by_id(&member.workspace_id, &member.id).await
            }

            async fn update_member_role(
                &self,
                workspace: &WorkspaceId,
                id: &MemberId,
                role: Role,
                now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<(Member, Vec<KeyHash>)> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                lock_workspace(&mut *tx, workspace).await?;
                let account: Option<String> = sqlx::query_scalar(
                    "UPDATE members SET role = $1, updated_at = $2 WHERE workspace_id = $3 AND id = $4 \
                     RETURNING account_id",
                )
                .bind(role.as_str())
                .bind(ms(now))
                .bind(workspace.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(account) = account else {
                    return Err(StorageError::NotFound);
                };
                if count_active_owners(&mut *tx, workspace).await? == 0 {
                    return Err(StorageError::LastOwner);
                }
                // At most the five roles: one parameter each (unused ones match no role).
                let mut exceeding = Role::exceeding(role).into_iter().map(|r| r.as_str());
                let mut query = sqlx::query_scalar(
                    "UPDATE api_keys SET role = $1 WHERE workspace_id = $2 AND created_by = $3 \
                     AND kind = 'management' AND revoked_at IS NULL \
                     AND role IN ($4, $5, $6, $7, $8) RETURNING hash",
                )
                .bind(role.as_str())
                .bind(workspace.as_str())
                .bind(&account);
                for _ in 0..5 {
                    query = query.bind(exceeding.next().unwrap_or_default());
                }
                let capped: Vec<String> = query.fetch_all(&mut *tx).await?;
                commit_with_outbox(tx, outbox).await?;
                let member = self.member_by_id(workspace, id).await?;
                Ok((member, key_hashes(capped)?))
            }

            async fn remove_member(
                &self,
                workspace: &WorkspaceId,
                id: &MemberId,
                now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Vec<KeyHash>> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                lock_workspace(&mut *tx, workspace).await?;
                let account: Option<String> = sqlx::query_scalar(
                    "DELETE FROM members WHERE workspace_id = $1 AND id = $2 RETURNING account_id",
                )
                .bind(workspace.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(account) = account else {
                    return Err(StorageError::NotFound);
                };
                if count_active_owners(&mut *tx, workspace).await? == 0 {
                    return Err(StorageError::LastOwner);
                }
                let revoked: Vec<String> = sqlx::query_scalar(
                    "UPDATE api_keys SET revoked_at = $1 WHERE workspace_id = $2 AND created_by = $3 \
                     AND kind = 'management' AND revoked_at IS NULL RETURNING hash",
                )
                .bind(ms(now))
                .bind(workspace.as_str())
                .bind(&account)
                .fetch_all(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                key_hashes(revoked)
            }

            async fn reassign_management_key(
                &self,
                workspace: &WorkspaceId,
                id: &KeyId,
                account: &AccountId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET created_by = $1 WHERE workspace_id = $2 AND id = $3 \
                     AND kind = 'management' AND revoked_at IS NULL",
                )
                .bind(account.as_str())
                .bind(workspace.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn pending_invitation(
                &self,
                token_hash: &KeyHash,
                now: DateTime<Utc>,
            ) -> Result<Option<PendingInvitation>> {
                let row = sqlx::query_as::<_, InvitationRow>(
                    "SELECT i.id AS invitation_id, i.workspace_id, i.member_id, a.id, a.email, \
                     a.name, a.password_hash, a.created_at \
                     FROM invitations i JOIN members m ON m.id = i.member_id \
                     JOIN accounts a ON a.id = m.account_id \
                     WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > $2",
                )
                .bind(token_hash.to_hex())
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let (account, password_hash) = row.account.into_domain()?;
                Ok(Some(PendingInvitation {
                    id: InvitationId::parse(&row.invitation_id)
                        .map_err(|_| StorageError::Corrupt("invitations.id"))?,
                    workspace_id: WorkspaceId::parse(&row.workspace_id)
                        .map_err(|_| StorageError::Corrupt("invitations.workspace_id"))?,
                    member_id: MemberId::parse(&row.member_id)
                        .map_err(|_| StorageError::Corrupt("invitations.member_id"))?,
                    account,
                    password_hash,
                }))
            }

            async fn reissue_invitation(
                &self,
                id: &InvitationId,
                token_hash: &KeyHash,
                expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Option<Member>> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let found: Option<(String, String)> = sqlx::query_as(
                    "UPDATE invitations SET token_hash = $1, expires_at = $2 \
                     WHERE id = $3 AND accepted_at IS NULL RETURNING workspace_id, member_id",
                )
                .bind(token_hash.to_hex())
                .bind(ms(expires_at))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((workspace, member)) = found else {
                    return Ok(None);
                };
                commit_with_outbox(tx, outbox).await?;
                let workspace = WorkspaceId::parse(&workspace)
                    .map_err(|_| StorageError::Corrupt("invitations.workspace_id"))?;
                let member = MemberId::parse(&member)
                    .map_err(|_| StorageError::Corrupt("invitations.member_id"))?;
                self.member_by_id(&workspace, &member).await.map(Some)
            }

            async fn accept_invitation(
                &self,
                inv: &PendingInvitation,
                password_hash: Option<&str>,
                name: Option<&str>,
                now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Member> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let consumed = sqlx::query(
                    "UPDATE invitations SET accepted_at = $1 \
                     WHERE id = $2 AND accepted_at IS NULL AND expires_at > $1",
                )
                .bind(ms(now))
                .bind(inv.id.as_str())
                .execute(&mut *tx)
                .await?;
                if consumed.rows_affected() == 0 {
                    return Err(StorageError::State("the invitation was already used or has expired"));
                }
                sqlx::query(
                    "UPDATE members SET status = 'active', updated_at = $1 \
                     WHERE id = $2 AND workspace_id = $3",
                )
                .bind(ms(now))
                .bind(inv.member_id.as_str())
                .bind(inv.workspace_id.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE accounts SET password_hash = COALESCE($1, password_hash), \
                     name = COALESCE($2, name), updated_at = $3 WHERE id = $4",
                )
                .bind(password_hash)
                .bind(name)
                .bind(ms(now))
                .bind(inv.account.id.as_str())
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                self.member_by_id(&inv.workspace_id, &inv.member_id).await
            }
        }

        #[async_trait]
        impl ApplicationRepository for $store {
            async fn create_application(&self, a: &Application, outbox: &crate::outbox::Outbox) -> Result<()> {
                let rows = outbox.inline();
                let query = sqlx::query(crate::outbox::outboxed_write!(
                    $backend,
                    "INSERT INTO applications (id, workspace_id, name, slug, environment, tenancy, \
                     status, region, config, upstreams, created_at, updated_at, deleted_at, purge_at, \
                     provisioned_at, provision_attempts, provision_error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                    "$18", "$19", "$20", "$21"
                ));
                let query = Self::bind_application(query, a);
                self.run_outboxed(outbox, &rows, query).await?;
                Ok(())
            }

            async fn create_application_within(
                &self,
                a: &Application,
                max_live: u64,
                outbox: &crate::outbox::Outbox,
            ) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *w, Self::BEGIN_WRITE).await?;
                // Creations in one workspace queue behind this lock (SQLite's writer is one).
                let lock = match $backend {
                    crate::Backend::Postgres => "SELECT id FROM workspaces WHERE id = $1 FOR UPDATE",
                    crate::Backend::Sqlite => "SELECT id FROM workspaces WHERE id = $1",
                };
                let found: Option<String> = sqlx::query_scalar(lock)
                    .bind(a.workspace_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(StorageError::NotFound);
                }
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM applications WHERE workspace_id = $1 AND deleted_at IS NULL",
                )
                .bind(a.workspace_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if u64::try_from(live).unwrap_or(0) >= max_live {
                    return Err(StorageError::State("application limit"));
                }
                let insert = sqlx::query(
                    "INSERT INTO applications (id, workspace_id, name, slug, environment, tenancy, \
                     status, region, config, upstreams, created_at, updated_at, deleted_at, purge_at, \
                     provisioned_at, provision_attempts, provision_error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                );
                Self::bind_application(insert, a)
                .execute(&mut *tx)
                .await
                .map_err(crate::rows::unique)?;
                commit_with_outbox(tx, outbox).await
            }

            async fn application_access(
                &self,
                actor: &Actor,
                id: &ApplicationId,
            ) -> Result<Option<(Application, Workspace, Role)>> {
                // Only the owning workspace's id leaves this lookup; access is then decided by
                // the caller's membership of that workspace.
                let owner: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM applications WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                let Some(owner) = owner else { return Ok(None) };
                let owner = WorkspaceId::parse(&owner)
                    .map_err(|_| StorageError::Corrupt("applications.workspace_id"))?;
                let Some((workspace, role)) = self.workspace_access(actor, &owner).await? else {
                    return Ok(None);
                };
                Ok(self
                    .application(&owner, id)
                    .await?
                    .map(|app| (app, workspace, role)))
            }

            async fn application(
                &self,
                workspace: &WorkspaceId,
                id: &ApplicationId,
            ) -> Result<Option<Application>> {
                let sql = format!(
                    "SELECT {APPLICATION_COLUMNS} FROM applications p \
                     WHERE p.workspace_id = $1 AND p.id = $2"
                );
                sqlx::query_as::<_, ApplicationRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(ApplicationRow::into_domain)
                    .transpose()
            }

            async fn applications(
                &self,
                workspace: &WorkspaceId,
                include_deleted: bool,
                page: &PageRequest,
            ) -> Result<Page<Application>> {
                let filter = if include_deleted { "" } else { "AND p.deleted_at IS NULL" };
                let sql = format!(
                    "SELECT {APPLICATION_COLUMNS} FROM applications p \
                     WHERE p.workspace_id = $1 AND p.id > $2 {filter} ORDER BY p.id LIMIT $3"
                );
                let rows = sqlx::query_as::<_, ApplicationRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(after(page))
                    .bind(fetch_limit(page))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ApplicationRow::into_domain)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page::from_rows(rows, page.limit, |a| a.id.as_str()))
            }

            async fn update_application(&self, a: &Application, outbox: &crate::outbox::Outbox) -> Result<()> {
                let rows = outbox.inline();
                let query = sqlx::query(crate::outbox::outboxed_write!(
                    $backend,
                    "UPDATE applications SET name = $1, slug = $2, status = $3, region = $4, \
                     config = $5, upstreams = $6, updated_at = $7, deleted_at = $8, purge_at = $9, \
                     provisioned_at = $12, provision_attempts = $13, provision_error = $14 \
                     WHERE workspace_id = $10 AND id = $11",
                    "$15", "$16", "$17", "$18"
                ))
                .bind(&a.name)
                .bind(&a.slug)
                .bind(a.status.as_str())
                .bind(&a.region)
                .bind(a.config.to_string())
                .bind(serde_json::to_string(&a.upstreams).unwrap_or_else(|_| "[]".into()))
                .bind(ms(a.updated_at))
                .bind(opt_ms(a.deleted_at))
                .bind(opt_ms(a.purge_at))
                .bind(a.workspace_id.as_str())
                .bind(a.id.as_str())
                .bind(opt_ms(a.provisioned_at))
                .bind(i32::try_from(a.provision_attempts).unwrap_or(i32::MAX))
                .bind(a.provision_error.as_deref());
                if self.run_outboxed(outbox, &rows, query).await? == 0 {
                    return Err(StorageError::NotFound);
                }
                Ok(())
            }

            async fn any_application(&self, id: &ApplicationId) -> Result<Option<Application>> {
                let sql = format!("SELECT {APPLICATION_COLUMNS} FROM applications p WHERE p.id = $1");
                sqlx::query_as::<_, ApplicationRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(ApplicationRow::into_domain)
                    .transpose()
            }

            async fn applications_to_provision(&self, limit: u32) -> Result<Vec<Application>> {
                let sql = format!(
                    "SELECT {APPLICATION_COLUMNS} FROM applications p \
                     WHERE p.status = 'provisioning' AND p.deleted_at IS NULL ORDER BY p.updated_at LIMIT $1"
                );
                sqlx::query_as::<_, ApplicationRow>(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ApplicationRow::into_domain)
                    .collect()
            }

            async fn application_ids_of(&self, workspace: &WorkspaceId) -> Result<Vec<ApplicationId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM applications WHERE workspace_id = $1 \
                     AND provisioned_at IS NOT NULL ORDER BY id",
                )
                .bind(workspace.as_str())
                .fetch_all(&self.pool)
                .await?;
                ids.iter()
                    .map(|id| ApplicationId::parse(id).map_err(|_| StorageError::Corrupt("applications.id")))
                    .collect()
            }

            async fn all_upstreams(&self) -> Result<Vec<String>> {
                let lists: Vec<String> = sqlx::query_scalar(
                    "SELECT upstreams FROM applications \
                     WHERE tenancy = 'dedicated' AND deleted_at IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut all = std::collections::BTreeSet::new();
                for list in lists {
                    let list: Vec<String> = serde_json::from_str(&list)
                        .map_err(|_| StorageError::Corrupt("applications.upstreams"))?;
                    all.extend(list);
                }
                Ok(all.into_iter().collect())
            }

            async fn expired_applications(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ApplicationId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM applications WHERE purge_at IS NOT NULL AND purge_at <= $1 \
                     ORDER BY purge_at LIMIT $2",
                )
                .bind(ms(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                ids.iter()
                    .map(|id| ApplicationId::parse(id).map_err(|_| StorageError::Corrupt("applications.id")))
                    .collect()
            }

            async fn remove_application(&self, id: &ApplicationId, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query("DELETE FROM applications WHERE id = $1 AND purge_at IS NOT NULL")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                commit_with_outbox(tx, outbox).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl KeyRepository for $store {
            async fn insert_key(&self, key: &ApiKey, outbox: &crate::outbox::Outbox) -> Result<()> {
                let rows = outbox.inline();
                let query = bind_key(
                    sqlx::query(crate::outbox::outboxed_write!(
                        $backend,
                        "INSERT INTO api_keys (id, workspace_id, application_id, kind, mode, name, \
                         scopes, role, hash, last4, created_at, last_used_at, expires_at, \
                         revoked_at, rolled_to, signing_secret, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                         $15, $16, $17)",
                        "$18", "$19", "$20", "$21"
                    )),
                    key,
                );
                self.run_outboxed(outbox, &rows, query).await?;
                Ok(())
            }

            async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
                sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(KeyRow::into_domain)
                    .transpose()
            }

            async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1");
                sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(KeyRow::into_domain)
                    .transpose()
            }

            async fn keys(
                &self,
                workspace: &WorkspaceId,
                application: Option<&ApplicationId>,
                page: &PageRequest,
            ) -> Result<Page<ApiKey>> {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 \
                     AND COALESCE(application_id, '') = $2 AND id > $3 ORDER BY id LIMIT $4"
                );
                let rows = sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(application.map(|a| a.as_str()).unwrap_or(""))
                    .bind(after(page))
                    .bind(fetch_limit(page))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(KeyRow::into_domain)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page::from_rows(rows, page.limit, |k| k.id.as_str()))
            }

            async fn live_key_count(
                &self,
                application: &ApplicationId,
                now: DateTime<Utc>,
            ) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE application_id = $1 \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(application.as_str())
                .bind(ms(now))
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn key(
                &self,
                workspace: &WorkspaceId,
                application: Option<&ApplicationId>,
                id: &KeyId,
            ) -> Result<Option<ApiKey>> {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 \
                     AND COALESCE(application_id, '') = $2 AND id = $3"
                );
                sqlx::query_as::<_, KeyRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(application.map(|a| a.as_str()).unwrap_or(""))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(KeyRow::into_domain)
                    .transpose()
            }

            async fn roll_key(
                &self,
                old: &ApiKey,
                old_expires_at: DateTime<Utc>,
                replacement: &ApiKey,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let rows = outbox.inline();
                // The replacement's columns first, as `bind_key` numbers them.
                let query = bind_key(
                    sqlx::query(crate::outbox::outboxed_write!(
                        $backend,
                        after "UPDATE api_keys SET rolled_to = $1, expires_at = CASE \
                         WHEN expires_at IS NULL OR expires_at > $18 THEN $18 ELSE expires_at END \
                         WHERE workspace_id = $19 AND id = $20 \
                         AND rolled_to IS NULL AND revoked_at IS NULL",
                        "INSERT INTO api_keys (id, workspace_id, application_id, kind, mode, name, \
                         scopes, role, hash, last4, created_at, last_used_at, expires_at, \
                         revoked_at, rolled_to, signing_secret, created_by) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                         $15, $16, $17",
                        "$21", "$22", "$23", "$24"
                    )),
                    replacement,
                )
                .bind(ms(old_expires_at))
                .bind(old.workspace_id.as_str())
                .bind(old.id.as_str());
                if self.run_outboxed(outbox, &rows, query).await? == 0 {
                    return Err(StorageError::State("the key was already rolled or revoked"));
                }
                Ok(())
            }

            async fn revoke_key(&self, old: &ApiKey, now: DateTime<Utc>, outbox: &crate::outbox::Outbox) -> Result<()> {
                let rows = outbox.inline();
                let query = sqlx::query(crate::outbox::outboxed_write!(
                    $backend,
                    "UPDATE api_keys SET revoked_at = $1 \
                     WHERE workspace_id = $2 AND id = $3 AND revoked_at IS NULL",
                    "$4", "$5", "$6", "$7"
                ))
                .bind(ms(now))
                .bind(old.workspace_id.as_str())
                .bind(old.id.as_str());
                if self.run_outboxed(outbox, &rows, query).await? == 0 {
                    return Err(StorageError::State("the key is already revoked"));
                }
                Ok(())
            }

            async fn record_key_use(&self, uses: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
                if uses.is_empty() {
                    return Ok(());
                }
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                for (id, at) in uses {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $1 \
                         WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                    )
                    .bind(ms(*at))
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl UsageRepository for $store {
            async fn add_request_counts(
                &self,
                batch: &str,
                counts: &[(ApplicationId, KeyId, i64, u64)],
                now: DateTime<Utc>,
            ) -> Result<bool> {
                if counts.is_empty() {
                    return Ok(false);
                }
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let fresh = sqlx::query(
                    "INSERT INTO usage_batches (id, applied_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(batch)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !fresh {
                    // Applied before (its acknowledgement was lost): counted once.
                    return Ok(false);
                }
                for (app, key, hour, n) in counts {
                    sqlx::query(
                        "INSERT INTO request_counts (application_id, key_id, hour, requests) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (application_id, key_id, hour) \
                         DO UPDATE SET requests = request_counts.requests + excluded.requests",
                    )
                    .bind(app.as_str())
                    .bind(key.as_str())
                    .bind(*hour)
                    .bind(i64::try_from(*n).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn purge_usage_batches(&self, older_than: DateTime<Utc>) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM usage_batches WHERE applied_at < $1")
                    .bind(ms(older_than))
                    .execute(&mut *self.writer().await?)
                    .await?
                    .rows_affected())
            }

            async fn requests_since(&self, application: &ApplicationId, from_hour: i64) -> Result<u64> {
                let total: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(requests) AS BIGINT) FROM request_counts \
                     WHERE application_id = $1 AND hour >= $2",
                )
                .bind(application.as_str())
                .bind(from_hour)
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
            }

            async fn workspace_requests_since(
                &self,
                workspace: &WorkspaceId,
                from_hour: i64,
            ) -> Result<u64> {
                let total: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(r.requests) AS BIGINT) FROM request_counts r \
                     JOIN applications a ON a.id = r.application_id \
                     WHERE a.workspace_id = $1 AND r.hour >= $2",
                )
                .bind(workspace.as_str())
                .bind(from_hour)
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
            }

            async fn workspace_requests_between(
                &self,
                workspace: &WorkspaceId,
                from_hour: i64,
                to_hour: i64,
            ) -> Result<Vec<(ApplicationId, u64)>> {
                let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT r.application_id, CAST(SUM(r.requests) AS BIGINT) FROM request_counts r \
                     JOIN applications a ON a.id = r.application_id \
                     WHERE a.workspace_id = $1 AND r.hour >= $2 AND r.hour < $3 \
                     GROUP BY r.application_id",
                )
                .bind(workspace.as_str())
                .bind(from_hour)
                .bind(to_hour)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(app, n)| {
                        Ok((
                            ApplicationId::parse(&app)
                                .map_err(|_| StorageError::Corrupt("request_counts.application_id"))?,
                            u64::try_from(n.unwrap_or(0)).unwrap_or(0),
                        ))
                    })
                    .collect()
            }
        }

        #[derive(sqlx::FromRow)]
        struct IdempotencyRow {
            request_hash: String,
            status: Option<i32>,
            body: Option<String>,
        }

        #[async_trait]
        impl IdempotencyRepository for $store {
            async fn idempotency_begin(
                &self,
                scope: &str,
                key: &str,
                request_hash: &str,
                now: DateTime<Utc>,
            ) -> Result<IdempotencyBegin> {
                let expired = ms(now - chrono::Duration::hours(24));
                sqlx::query(
                    "DELETE FROM idempotency_records WHERE scope = $1 AND idem_key = $2 AND created_at < $3",
                )
                .bind(scope)
                .bind(key)
                .bind(expired)
                .execute(&mut *self.writer().await?)
                .await?;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_records (scope, idem_key, request_hash, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idem_key) DO NOTHING",
                )
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(ms(now))
                .execute(&mut *self.writer().await?)
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(IdempotencyBegin::Started);
                }
                let row = sqlx::query_as::<_, IdempotencyRow>(
                    "SELECT request_hash, status, body FROM idempotency_records \
                     WHERE scope = $1 AND idem_key = $2",
                )
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    // Abandoned between our insert and read: treat as still running.
                    None => IdempotencyBegin::InProgress,
                    Some(r) if r.request_hash != request_hash => IdempotencyBegin::Mismatch,
                    Some(IdempotencyRow {
                        status: Some(status),
                        body: Some(body),
                        ..
                    }) => IdempotencyBegin::Replay {
                        status: u16::try_from(status).unwrap_or(500),
                        body,
                    },
                    Some(_) => IdempotencyBegin::InProgress,
                })
            }

            async fn idempotency_finish(
                &self,
                scope: &str,
                key: &str,
                status: u16,
                body: &str,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE idempotency_records SET status = $1, body = $2 \
                     WHERE scope = $3 AND idem_key = $4",
                )
                .bind(i32::from(status))
                .bind(body)
                .bind(scope)
                .bind(key)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
                sqlx::query("DELETE FROM idempotency_records WHERE scope = $1 AND idem_key = $2")
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *self.writer().await?)
                    .await?;
                Ok(())
            }

            async fn purge_idempotency(&self, older_than: DateTime<Utc>) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
                    .bind(ms(older_than))
                    .execute(&mut *self.writer().await?)
                    .await?
                    .rows_affected())
            }
        }
    };
}

pub(crate) use impl_repositories;

/// Names a store's sqlx database type, so the shared helpers can be generic over executors.
pub(crate) trait HasDb {
    type Db: sqlx::Database;
}
