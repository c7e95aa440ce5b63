//! [`IdentityRepository`] for SQLite and Postgres, from one body of portable SQL (the same
//! conventions as the control plane's `sql.rs`: `$n` parameters, TEXT ids, BIGINT milliseconds).

use authsome_domain::id::{InvitationId, OrgMembershipId, OrganizationId, SessionId, UserId};
use authsome_domain::identity::{
    OrgInvitation, OrgMembership, Organization, RefreshRecord, Session, SigningKeyRecord, User,
};
use authsome_domain::keys::KeyHash;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use sqlx::pool::PoolConnection;

use crate::held::{HeldConnection, HeldScript};
use crate::rows::{json, ms, opt_ms, time, unique};
use crate::{Result, StorageError};

pub(crate) static SQLITE_APP_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/app/sqlite");
pub(crate) static POSTGRES_APP_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/app/postgres");

/// An application's SQLite database, through its one connection (see `crate::held`): every
/// query of the application queues for it. A method must not call another method of the store
/// while it holds the connection.
pub struct SqliteAppStore {
    pool: sqlx::SqlitePool,
    held: HeldConnection,
}

impl SqliteAppStore {
    /// SQLite has no data-modifying CTEs: a rotation is a script of several statements.
    const DATA_MODIFYING_CTE: bool = false;

    pub(crate) fn new(pool: sqlx::SqlitePool) -> Self {
        Self {
            held: HeldConnection::new(pool.clone()),
            pool,
        }
    }

    /// The connection, for one query or one transaction.
    async fn conn(&self) -> Result<tokio::sync::MappedMutexGuard<'_, sqlx::SqliteConnection>> {
        self.held.conn().await
    }

    /// The connection, for a script (see `crate::script`): discarded unless it finished.
    async fn script_conn(&self) -> Result<HeldScript<'_>> {
        self.held.script().await
    }

    /// Runs the application migrations on the held connection.
    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        SQLITE_APP_MIGRATOR.run_direct(&mut *conn).await?;
        Ok(())
    }

    /// Gives the connection back and closes the pool.
    pub(crate) async fn close(&self) {
        self.held.release().await;
        self.pool.close().await;
    }
}

pub struct PostgresAppStore {
    pool: sqlx::PgPool,
}

impl PostgresAppStore {
    const DATA_MODIFYING_CTE: bool = true;

    pub(crate) fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }

    async fn conn(&self) -> Result<PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    async fn script_conn(&self) -> Result<crate::script::ScriptConnection<sqlx::Postgres>> {
        crate::script::ScriptConnection::acquire(&self.pool).await
    }
}

fn opt_time(v: Option<i64>, what: &'static str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    v.map(|v| time(v, what)).transpose()
}

const USER_COLUMNS: &str = "id, email, name, password_hash, public_metadata, private_metadata, \
     disabled_at, created_at, updated_at, last_sign_in_at";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: Option<String>,
    password_hash: Option<String>,
    public_metadata: String,
    private_metadata: String,
    disabled_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    last_sign_in_at: Option<i64>,
}

impl UserRow {
    fn into_domain(self) -> Result<(User, Option<String>)> {
        Ok((
            User {
                id: UserId::parse(&self.id).map_err(|_| StorageError::Corrupt("users.id"))?,
                email: self.email,
                name: self.name,
                public_metadata: json(&self.public_metadata, "users.public_metadata")?,
                private_metadata: json(&self.private_metadata, "users.private_metadata")?,
                disabled: self.disabled_at.is_some(),
                created_at: time(self.created_at, "users.created_at")?,
                updated_at: time(self.updated_at, "users.updated_at")?,
                last_sign_in_at: opt_time(self.last_sign_in_at, "users.last_sign_in_at")?,
            },
            self.password_hash,
        ))
    }
}

const SESSION_COLUMNS: &str = "id, user_id, ip, user_agent, created_at, last_active_at, \
     expires_at, revoked_at, active_org_id, dpop_jkt";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: i64,
    last_active_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    active_org_id: Option<String>,
    dpop_jkt: Option<String>,
}

impl SessionRow {
    fn into_domain(self) -> Result<Session> {
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(|_| StorageError::Corrupt("sessions.id"))?,
            user_id: UserId::parse(&self.user_id)
                .map_err(|_| StorageError::Corrupt("sessions.user_id"))?,
            ip: self.ip,
            user_agent: self.user_agent,
            created_at: time(self.created_at, "sessions.created_at")?,
            last_active_at: time(self.last_active_at, "sessions.last_active_at")?,
            expires_at: time(self.expires_at, "sessions.expires_at")?,
            revoked_at: opt_time(self.revoked_at, "sessions.revoked_at")?,
            active_organization_id: self
                .active_org_id
                .map(|o| {
                    OrganizationId::parse(&o)
                        .map_err(|_| StorageError::Corrupt("sessions.active_org_id"))
                })
                .transpose()?,
            dpop_jkt: self.dpop_jkt,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionUserRow {
    s_id: String,
    s_user_id: String,
    s_ip: Option<String>,
    s_user_agent: Option<String>,
    s_created_at: i64,
    s_last_active_at: i64,
    s_expires_at: i64,
    s_revoked_at: Option<i64>,
    s_active_org_id: Option<String>,
    s_dpop_jkt: Option<String>,
    #[sqlx(flatten)]
    user: UserRow,
}

impl SessionUserRow {
    fn into_domain(self) -> Result<(Session, User)> {
        let session = SessionRow {
            id: self.s_id,
            user_id: self.s_user_id,
            ip: self.s_ip,
            user_agent: self.s_user_agent,
            created_at: self.s_created_at,
            last_active_at: self.s_last_active_at,
            expires_at: self.s_expires_at,
            revoked_at: self.s_revoked_at,
            active_org_id: self.s_active_org_id,
            dpop_jkt: self.s_dpop_jkt,
        }
        .into_domain()?;
        let (user, _) = self.user.into_domain()?;
        Ok((session, user))
    }
}

#[derive(sqlx::FromRow)]
struct RefreshSessionRow {
    r_hash: String,
    r_created_at: i64,
    r_expires_at: i64,
    r_rotated_at: Option<i64>,
    #[sqlx(flatten)]
    session: SessionUserRow,
}

impl RefreshSessionRow {
    fn into_domain(self) -> Result<(RefreshRecord, Session, User)> {
        let (session, user) = self.session.into_domain()?;
        let refresh = RefreshRow {
            hash: self.r_hash,
            session_id: session.id.to_string(),
            created_at: self.r_created_at,
            expires_at: self.r_expires_at,
            rotated_at: self.r_rotated_at,
        }
        .into_domain()?;
        Ok((refresh, session, user))
    }
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    hash: String,
    session_id: String,
    created_at: i64,
    expires_at: i64,
    rotated_at: Option<i64>,
}

impl RefreshRow {
    fn into_domain(self) -> Result<RefreshRecord> {
        Ok(RefreshRecord {
            hash: KeyHash::from_hex(&self.hash).ok_or(StorageError::Corrupt("refresh.hash"))?,
            session_id: SessionId::parse(&self.session_id)
                .map_err(|_| StorageError::Corrupt("refresh.session_id"))?,
            created_at: time(self.created_at, "refresh.created_at")?,
            expires_at: time(self.expires_at, "refresh.expires_at")?,
            rotated_at: opt_time(self.rotated_at, "refresh.rotated_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SigningKeyRow {
    kid: String,
    sealed_private: String,
    public_key: String,
    created_at: i64,
    activates_at: i64,
    retired_at: Option<i64>,
}

impl SigningKeyRow {
    fn into_domain(self) -> Result<SigningKeyRecord> {
        let public = URL_SAFE_NO_PAD
            .decode(&self.public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(StorageError::Corrupt("signing_keys.public_key"))?;
        Ok(SigningKeyRecord {
            kid: self.kid,
            sealed_private: URL_SAFE_NO_PAD
                .decode(&self.sealed_private)
                .map_err(|_| StorageError::Corrupt("signing_keys.sealed_private"))?,
            public,
            created_at: time(self.created_at, "signing_keys.created_at")?,
            activates_at: time(self.activates_at, "signing_keys.activates_at")?,
            retired_at: opt_time(self.retired_at, "signing_keys.retired_at")?,
        })
    }
}

/// `%text%` for LIKE, with the wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

macro_rules! impl_identity {
    ($store:ty, $db:ty) => {
        impl $store {
            crate::outbox::outbox_sql!(impl $db);

            /// Why a rotation did not happen: rotated already (and when), or no such token.
            async fn rotation_state(&self, old: &KeyHash) -> Result<super::Rotation> {
                let rotated: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT rotated_at FROM refresh_tokens WHERE hash = $1")
                        .bind(old.to_hex())
                        .fetch_optional(&mut *self.conn().await?)
                        .await?;
                Ok(match rotated {
                    Some(Some(at)) => {
                        super::Rotation::AlreadyRotated(time(at, "refresh.rotated_at")?)
                    }
                    _ => super::Rotation::Unknown,
                })
            }
        }

        #[async_trait::async_trait]
        impl super::IdentityRepository for $store {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&mut *self.conn().await?).await?;
                Ok(())
            }

            async fn create_user(&self, u: &User, password_hash: Option<&str>, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO users (id, email, name, password_hash, public_metadata, \
                     private_metadata, disabled_at, created_at, updated_at, last_sign_in_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(u.id.as_str())
                .bind(&u.email)
                .bind(u.name.as_deref())
                .bind(password_hash)
                .bind(u.public_metadata.to_string())
                .bind(u.private_metadata.to_string())
                .bind(u.disabled.then(|| ms(u.updated_at)))
                .bind(ms(u.created_at))
                .bind(ms(u.updated_at))
                .bind(opt_ms(u.last_sign_in_at))
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn user(&self, id: &UserId) -> Result<Option<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                Ok(sqlx::query_as::<_, UserRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.conn().await?)
                    .await?
                    .map(UserRow::into_domain)
                    .transpose()?
                    .map(|(u, _)| u))
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
                sqlx::query_as::<_, UserRow>(&sql)
                    .bind(email)
                    .fetch_optional(&mut *self.conn().await?)
                    .await?
                    .map(UserRow::into_domain)
                    .transpose()
            }

            async fn users(
                &self,
                filter: &super::UserFilter,
                page: &authsome_domain::page::PageRequest,
            ) -> Result<authsome_domain::page::Page<User>> {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id > $1 \
                     AND ($2 = '' OR email = $2) \
                     AND ($3 = '' OR LOWER(email) LIKE $3 ESCAPE '\\' \
                          OR LOWER(COALESCE(name, '')) LIKE $3 ESCAPE '\\') \
                     ORDER BY id LIMIT $4"
                );
                let query = filter
                    .query
                    .as_deref()
                    .filter(|q| !q.is_empty())
                    .map(like_pattern)
                    .unwrap_or_default();
                let rows = sqlx::query_as::<_, UserRow>(&sql)
                    .bind(page.after.as_deref().unwrap_or(""))
                    .bind(filter.email.as_deref().unwrap_or(""))
                    .bind(query)
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *self.conn().await?)
                    .await?
                    .into_iter()
                    .map(|r| r.into_domain().map(|(u, _)| u))
                    .collect::<Result<Vec<_>>>()?;
                Ok(authsome_domain::page::Page::from_rows(rows, page.limit, |u| u.id.as_str()))
            }

            async fn update_user(&self, u: &User, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE users SET email = $1, name = $2, public_metadata = $3, \
                     private_metadata = $4, \
                     disabled_at = CASE WHEN $5 THEN COALESCE(disabled_at, $6) ELSE NULL END, \
                     updated_at = $6 WHERE id = $7",
                )
                .bind(&u.email)
                .bind(u.name.as_deref())
                .bind(u.public_metadata.to_string())
                .bind(u.private_metadata.to_string())
                .bind(u.disabled)
                .bind(ms(u.updated_at))
                .bind(u.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn set_password(
                &self,
                id: &UserId,
                password_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                    .bind(password_hash)
                    .bind(ms(now))
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn delete_user(&self, id: &UserId, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn record_sign_in(&self, id: &UserId, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
                sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
                    .bind(ms(at))
                    .bind(id.as_str())
                    .execute(&mut *self.conn().await?)
                    .await?;
                Ok(())
            }

            async fn create_session(&self, s: &Session, refresh: &RefreshRecord, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, ip, user_agent, created_at, last_active_at, \
                     expires_at, revoked_at, active_org_id, dpop_jkt) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(s.id.as_str())
                .bind(s.user_id.as_str())
                .bind(s.ip.as_deref())
                .bind(s.user_agent.as_deref())
                .bind(ms(s.created_at))
                .bind(ms(s.last_active_at))
                .bind(ms(s.expires_at))
                .bind(opt_ms(s.revoked_at))
                .bind(s.active_organization_id.as_ref().map(|o| o.as_str()))
                .bind(s.dpop_jkt.as_deref())
                .execute(&mut *tx)
                .await?;
                insert_refresh(&mut *tx, refresh).await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
                let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
                sqlx::query_as::<_, SessionRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.conn().await?)
                    .await?
                    .map(SessionRow::into_domain)
                    .transpose()
            }

            async fn session_with_user(&self, id: &SessionId) -> Result<Option<(Session, User)>> {
                sqlx::query_as::<_, SessionUserRow>(
                    "SELECT s.id AS s_id, s.user_id AS s_user_id, s.ip AS s_ip, \
                     s.user_agent AS s_user_agent, s.created_at AS s_created_at, \
                     s.last_active_at AS s_last_active_at, s.expires_at AS s_expires_at, \
                     s.revoked_at AS s_revoked_at, s.active_org_id AS s_active_org_id, s.dpop_jkt AS s_dpop_jkt, \
                     u.id, u.email, u.name, u.password_hash, u.public_metadata, u.private_metadata, \
                     u.disabled_at, u.created_at, u.updated_at, u.last_sign_in_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .map(SessionUserRow::into_domain)
                .transpose()
            }

            async fn sessions_of(
                &self,
                user: &UserId,
                page: &authsome_domain::page::PageRequest,
            ) -> Result<authsome_domain::page::Page<Session>> {
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND id > $2 \
                     ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query_as::<_, SessionRow>(&sql)
                    .bind(user.as_str())
                    .bind(page.after.as_deref().unwrap_or(""))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&mut *self.conn().await?)
                    .await?
                    .into_iter()
                    .map(SessionRow::into_domain)
                    .collect::<Result<Vec<_>>>()?;
                Ok(authsome_domain::page::Page::from_rows(rows, page.limit, |s| s.id.as_str()))
            }

            async fn revoke_session(&self, id: &SessionId, now: chrono::DateTime<chrono::Utc>, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                )
                .bind(ms(now))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn revoke_user_sessions(&self, user: &UserId, now: chrono::DateTime<chrono::Utc>, outbox: &crate::outbox::Outbox) -> Result<u64> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(ms(now))
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(revoked)
            }

            async fn refresh_with_session(
                &self,
                hash: &KeyHash,
            ) -> Result<Option<(RefreshRecord, Session, User)>> {
                sqlx::query_as::<_, RefreshSessionRow>(
                    "SELECT r.hash AS r_hash, r.created_at AS r_created_at, \
                     r.expires_at AS r_expires_at, r.rotated_at AS r_rotated_at, \
                     s.id AS s_id, s.user_id AS s_user_id, s.ip AS s_ip, \
                     s.user_agent AS s_user_agent, s.created_at AS s_created_at, \
                     s.last_active_at AS s_last_active_at, s.expires_at AS s_expires_at, \
                     s.revoked_at AS s_revoked_at, s.active_org_id AS s_active_org_id, s.dpop_jkt AS s_dpop_jkt, \
                     u.id, u.email, u.name, u.password_hash, u.public_metadata, u.private_metadata, \
                     u.disabled_at, u.created_at, u.updated_at, u.last_sign_in_at \
                     FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
                     JOIN users u ON u.id = s.user_id WHERE r.hash = $1",
                )
                .bind(hash.to_hex())
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .map(RefreshSessionRow::into_domain)
                .transpose()
            }

            async fn rotate_refresh(
                &self,
                old: &KeyHash,
                successor: &RefreshRecord,
                now: chrono::DateTime<chrono::Utc>,
                touch_session: bool,
        outbox: &crate::outbox::Outbox,
    ) -> Result<super::Rotation> {
                // One command: mark the old token rotated; only if that happened, insert its
                // successor, touch the session if asked and store the audit outbox rows. A
                // data-modifying CTE on Postgres, a script on SQLite; each reports 1 when it
                // rotated.
                let rows = outbox.inline();
                let sql = if <$store>::DATA_MODIFYING_CTE {
                    "WITH old AS ( \
                         UPDATE refresh_tokens SET rotated_at = $1 \
                         WHERE hash = $2 AND rotated_at IS NULL AND expires_at > $1 \
                         RETURNING session_id), \
                     ins AS ( \
                         INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) \
                         SELECT $3, session_id, $4, $5 FROM old RETURNING session_id), \
                     touch AS ( \
                         UPDATE sessions SET last_active_at = $1 \
                         WHERE $6 AND id IN (SELECT session_id FROM ins) RETURNING 1), \
                     outbox AS ( \
                         INSERT INTO audit_outbox (id, body, created_at) \
                         SELECT CAST($7 AS TEXT), CAST($8 AS TEXT), CAST($9 AS BIGINT) \
                         FROM ins WHERE $7 IS NOT NULL \
                         UNION ALL \
                         SELECT r->>'id', r->>'body', CAST(r->>'at' AS BIGINT) FROM ins, \
                         jsonb_array_elements(COALESCE(CAST($10 AS jsonb), '[]'::jsonb)) r \
                         RETURNING 1) \
                     SELECT (SELECT COUNT(*) FROM ins) + 0 * (SELECT COUNT(*) FROM touch) \
                         + 0 * (SELECT COUNT(*) FROM outbox)"
                } else {
                    crate::script::sqlite_script!(
                        "UPDATE refresh_tokens SET rotated_at = $1 \
                         WHERE hash = $2 AND rotated_at IS NULL AND expires_at > $1; ",
                        "SELECT changes(); ",
                        "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) \
                         SELECT $3, session_id, $4, $5 FROM refresh_tokens \
                         WHERE hash = $2 AND changes() = 1; ",
                        "UPDATE sessions SET last_active_at = $1 WHERE $6 AND id = \
                         (SELECT session_id FROM refresh_tokens WHERE hash = $3); ",
                        "INSERT INTO audit_outbox (id, body, created_at) \
                         SELECT $7, $8, $9 WHERE $7 IS NOT NULL \
                         AND EXISTS (SELECT 1 FROM refresh_tokens WHERE hash = $3); ",
                        "INSERT INTO audit_outbox (id, body, created_at) \
                         SELECT json_extract(value, '$.id'), json_extract(value, '$.body'), \
                         json_extract(value, '$.at') FROM json_each(COALESCE($10, '[]')) \
                         WHERE EXISTS (SELECT 1 FROM refresh_tokens WHERE hash = $3)",
                    )
                };
                let query = sqlx::query::<$db>(sql)
                    .bind(ms(now))
                    .bind(old.to_hex())
                    .bind(successor.hash.to_hex())
                    .bind(ms(successor.created_at))
                    .bind(ms(successor.expires_at))
                    .bind(touch_session)
                    .bind(rows.id.as_deref())
                    .bind(rows.body.as_deref())
                    .bind(rows.at)
                    .bind(rows.rest.as_deref());
                let result = if <$store>::DATA_MODIFYING_CTE {
                    query.fetch_all(&mut *self.conn().await?).await?
                } else {
                    self.script_conn().await?.run(query).await?
                };
                if crate::script::first_count(&result)? == 1 {
                    outbox.committed(rows.any());
                    return Ok(super::Rotation::Rotated);
                }
                self.rotation_state(old).await
            }

            async fn add_refresh(&self, record: &RefreshRecord, now: chrono::DateTime<chrono::Utc>, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                insert_refresh(&mut *tx, record).await?;
                sqlx::query("UPDATE sessions SET last_active_at = $1 WHERE id = $2")
                    .bind(ms(now))
                    .bind(record.session_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
                sqlx::query_as::<_, SigningKeyRow>(
                    "SELECT kid, sealed_private, public_key, created_at, activates_at, retired_at \
                     FROM signing_keys ORDER BY activates_at, kid",
                )
                .fetch_all(&mut *self.conn().await?)
                .await?
                .into_iter()
                .map(SigningKeyRow::into_domain)
                .collect()
            }

            async fn insert_signing_key(&self, k: &SigningKeyRecord, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed_private, public_key, created_at, \
                     activates_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&k.kid)
                .bind(URL_SAFE_NO_PAD.encode(&k.sealed_private))
                .bind(URL_SAFE_NO_PAD.encode(k.public))
                .bind(ms(k.created_at))
                .bind(ms(k.activates_at))
                .bind(opt_ms(k.retired_at))
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn retire_signing_key(&self, kid: &str, at: chrono::DateTime<chrono::Utc>, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL")
                    .bind(ms(at))
                    .bind(kid)
                    .execute(&mut *tx)
                    .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn set_active_organization(
                &self,
                session: &SessionId,
                organization: Option<&OrganizationId>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("UPDATE sessions SET active_org_id = $1 WHERE id = $2")
                    .bind(organization.map(|o| o.as_str()))
                    .bind(session.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn outbox(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<crate::outbox::OutboxRow>> {
                Self::read_outbox(&mut *self.conn().await?, before, limit).await
            }

            async fn delete_outbox(&self, ids: &[String]) -> Result<()> {
                Self::delete_outbox_ids(&mut *self.conn().await?, ids).await
            }

            async fn record_active_users(
                &self,
                entries: &[(String, UserId, chrono::DateTime<chrono::Utc>)],
            ) -> Result<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for (month, user, at) in entries {
                    sqlx::query(
                        "INSERT INTO monthly_active_users (month, user_id, first_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (month, user_id) DO NOTHING",
                    )
                    .bind(month)
                    .bind(user.as_str())
                    .bind(ms(*at))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn active_users(&self, month: &str) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM monthly_active_users WHERE month = $1")
                    .bind(month)
                    .fetch_one(&mut *self.conn().await?)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn active_user_ids(
                &self,
                month: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM monthly_active_users WHERE month = $1 \
                     AND ($2 IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3",
                )
                .bind(month)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?)
            }
        }

        #[async_trait::async_trait]
        impl super::OrganizationRepository for $store {
            async fn create_organization(
                &self,
                org: &Organization,
                first_member: Option<&OrgMembership>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO organizations (id, name, slug, metadata, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(org.id.as_str())
                .bind(&org.name)
                .bind(&org.slug)
                .bind(org.metadata.to_string())
                .bind(ms(org.created_at))
                .bind(ms(org.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                if let Some(m) = first_member {
                    insert_membership(&mut *tx, m).await?;
                }
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>> {
                sqlx::query_as::<_, OrgRow>(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"))
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.conn().await?)
                    .await?
                    .map(OrgRow::into_domain)
                    .transpose()
            }

            async fn organizations(
                &self,
                page: &authsome_domain::page::PageRequest,
            ) -> Result<authsome_domain::page::Page<Organization>> {
                let rows = sqlx::query_as::<_, OrgRow>(&format!(
                    "SELECT {ORG_COLUMNS} FROM organizations WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(page.after.as_deref().unwrap_or(""))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *self.conn().await?)
                .await?
                .into_iter()
                .map(OrgRow::into_domain)
                .collect::<Result<Vec<_>>>()?;
                Ok(authsome_domain::page::Page::from_rows(rows, page.limit, |o| o.id.as_str()))
            }

            async fn update_organization(&self, org: &Organization, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE organizations SET name = $1, slug = $2, metadata = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(&org.name)
                .bind(&org.slug)
                .bind(org.metadata.to_string())
                .bind(ms(org.updated_at))
                .bind(org.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn delete_organization(&self, id: &OrganizationId, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query("DELETE FROM organizations WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                sqlx::query("UPDATE sessions SET active_org_id = NULL WHERE active_org_id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn add_membership(&self, m: &OrgMembership, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                insert_membership(&mut *tx, m).await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn membership(
                &self,
                org: &OrganizationId,
                id: &OrgMembershipId,
            ) -> Result<Option<OrgMembership>> {
                sqlx::query_as::<_, MembershipRow>(&format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM org_memberships WHERE organization_id = $1 AND id = $2"
                ))
                .bind(org.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .map(MembershipRow::into_domain)
                .transpose()
            }

            async fn membership_of(
                &self,
                org: &OrganizationId,
                user: &UserId,
            ) -> Result<Option<OrgMembership>> {
                sqlx::query_as::<_, MembershipRow>(&format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM org_memberships WHERE organization_id = $1 AND user_id = $2"
                ))
                .bind(org.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .map(MembershipRow::into_domain)
                .transpose()
            }

            async fn memberships(
                &self,
                org: &OrganizationId,
                page: &authsome_domain::page::PageRequest,
            ) -> Result<authsome_domain::page::Page<OrgMembership>> {
                let rows = sqlx::query_as::<_, MembershipRow>(&format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM org_memberships \
                     WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ))
                .bind(org.as_str())
                .bind(page.after.as_deref().unwrap_or(""))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *self.conn().await?)
                .await?
                .into_iter()
                .map(MembershipRow::into_domain)
                .collect::<Result<Vec<_>>>()?;
                Ok(authsome_domain::page::Page::from_rows(rows, page.limit, |m| m.id.as_str()))
            }

            async fn user_memberships(&self, user: &UserId) -> Result<Vec<OrgMembership>> {
                sqlx::query_as::<_, MembershipRow>(&format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM org_memberships WHERE user_id = $1 ORDER BY id"
                ))
                .bind(user.as_str())
                .fetch_all(&mut *self.conn().await?)
                .await?
                .into_iter()
                .map(MembershipRow::into_domain)
                .collect()
            }

            async fn update_membership_role(
                &self,
                org: &OrganizationId,
                id: &OrgMembershipId,
                role: &str,
                now: chrono::DateTime<chrono::Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<OrgMembership> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE org_memberships SET role = $1, updated_at = $2 \
                     WHERE organization_id = $3 AND id = $4",
                )
                .bind(role)
                .bind(ms(now))
                .bind(org.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound);
                }
                Self::commit_with_outbox(tx, outbox).await?;
                drop(conn);
                self.membership(org, id).await?.ok_or(StorageError::NotFound)
            }

            async fn remove_membership(&self, org: &OrganizationId, id: &OrgMembershipId, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let user: Option<String> = sqlx::query_scalar(
                    "DELETE FROM org_memberships WHERE organization_id = $1 AND id = $2 RETURNING user_id",
                )
                .bind(org.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user) = user else { return Err(StorageError::NotFound) };
                // Sessions acting in the organization lose it at once.
                sqlx::query(
                    "UPDATE sessions SET active_org_id = NULL WHERE user_id = $1 AND active_org_id = $2",
                )
                .bind(&user)
                .bind(org.as_str())
                .execute(&mut *tx)
                .await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn create_invitation(&self, inv: &OrgInvitation, outbox: &crate::outbox::Outbox) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO org_invitations (id, organization_id, email, role, token_hash, \
                     created_at, expires_at, accepted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(inv.id.as_str())
                .bind(inv.organization_id.as_str())
                .bind(&inv.email)
                .bind(&inv.role)
                .bind(inv.token_hash.to_hex())
                .bind(ms(inv.created_at))
                .bind(ms(inv.expires_at))
                .bind(opt_ms(inv.accepted_at))
                .execute(&mut *tx)
                .await
                .map_err(unique)?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }

            async fn invitation_by_token(
                &self,
                token_hash: &KeyHash,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<OrgInvitation>> {
                sqlx::query_as::<_, InvitationRow>(
                    "SELECT id, organization_id, email, role, token_hash, created_at, expires_at, accepted_at \
                     FROM org_invitations WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
                )
                .bind(token_hash.to_hex())
                .bind(ms(now))
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .map(InvitationRow::into_domain)
                .transpose()
            }

            async fn accept_org_invitation(
                &self,
                invitation: &InvitationId,
                membership: &OrgMembership,
                now: chrono::DateTime<chrono::Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let consumed = sqlx::query(
                    "UPDATE org_invitations SET accepted_at = $1 \
                     WHERE id = $2 AND organization_id = $3 AND accepted_at IS NULL AND expires_at > $1",
                )
                .bind(ms(now))
                .bind(invitation.as_str())
                .bind(membership.organization_id.as_str())
                .execute(&mut *tx)
                .await?;
                if consumed.rows_affected() == 0 {
                    return Err(StorageError::State("the invitation was already used or has expired"));
                }
                insert_membership(&mut *tx, membership).await?;
                Self::commit_with_outbox(tx, outbox).await?;
                Ok(())
            }
        }
    };
}

const ORG_COLUMNS: &str = "id, name, slug, metadata, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: String,
    name: String,
    slug: String,
    metadata: String,
    created_at: i64,
    updated_at: i64,
}

impl OrgRow {
    fn into_domain(self) -> Result<Organization> {
        Ok(Organization {
            id: OrganizationId::parse(&self.id)
                .map_err(|_| StorageError::Corrupt("organizations.id"))?,
            name: self.name,
            slug: self.slug,
            metadata: json(&self.metadata, "organizations.metadata")?,
            created_at: time(self.created_at, "organizations.created_at")?,
            updated_at: time(self.updated_at, "organizations.updated_at")?,
        })
    }
}

const MEMBERSHIP_COLUMNS: &str = "id, organization_id, user_id, role, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: String,
    organization_id: String,
    user_id: String,
    role: String,
    created_at: i64,
    updated_at: i64,
}

impl MembershipRow {
    fn into_domain(self) -> Result<OrgMembership> {
        Ok(OrgMembership {
            id: OrgMembershipId::parse(&self.id)
                .map_err(|_| StorageError::Corrupt("org_memberships.id"))?,
            organization_id: OrganizationId::parse(&self.organization_id)
                .map_err(|_| StorageError::Corrupt("org_memberships.organization_id"))?,
            user_id: UserId::parse(&self.user_id)
                .map_err(|_| StorageError::Corrupt("org_memberships.user_id"))?,
            role: self.role,
            created_at: time(self.created_at, "org_memberships.created_at")?,
            updated_at: time(self.updated_at, "org_memberships.updated_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: String,
    organization_id: String,
    email: String,
    role: String,
    token_hash: String,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
}

impl InvitationRow {
    fn into_domain(self) -> Result<OrgInvitation> {
        Ok(OrgInvitation {
            id: InvitationId::parse(&self.id)
                .map_err(|_| StorageError::Corrupt("org_invitations.id"))?,
            organization_id: OrganizationId::parse(&self.organization_id)
                .map_err(|_| StorageError::Corrupt("org_invitations.organization_id"))?,
            email: self.email,
            role: self.role,
            token_hash: KeyHash::from_hex(&self.token_hash)
                .ok_or(StorageError::Corrupt("org_invitations.token_hash"))?,
            created_at: time(self.created_at, "org_invitations.created_at")?,
            expires_at: time(self.expires_at, "org_invitations.expires_at")?,
            accepted_at: opt_time(self.accepted_at, "org_invitations.accepted_at")?,
        })
    }
}

async fn insert_membership<'e, E, DB>(exec: E, m: &OrgMembership) -> Result<()>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO org_memberships (id, organization_id, user_id, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(m.id.as_str())
    .bind(m.organization_id.as_str())
    .bind(m.user_id.as_str())
    .bind(m.role.as_str())
    .bind(ms(m.created_at))
    .bind(ms(m.updated_at))
    .execute(exec)
    .await
    .map_err(unique)?;
    Ok(())
}

async fn insert_refresh<'e, E, DB>(exec: E, r: &RefreshRecord) -> Result<()>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at, rotated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(r.hash.to_hex())
    .bind(r.session_id.as_str())
    .bind(ms(r.created_at))
    .bind(ms(r.expires_at))
    .bind(opt_ms(r.rotated_at))
    .execute(exec)
    .await?;
    Ok(())
}

impl_identity!(SqliteAppStore, sqlx::Sqlite);
impl_identity!(PostgresAppStore, sqlx::Postgres);
