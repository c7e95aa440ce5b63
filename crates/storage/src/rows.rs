//! Rows as the database returns them (plain strings and integers, the same on both backends) and
//! their conversion into domain values. A stored value that does not parse is `Corrupt`.

use authsome_domain::id::{AccountId, ApplicationId, KeyId, MemberId, WorkspaceId};
use authsome_domain::keys::{KeyHash, KeyKind, KeyMode};
use authsome_domain::tenancy::{
    Account, ApiKey, AppStatus, Application, Environment, KeyScope, KycStatus, Member,
    MemberStatus, PaymentStatus, Plan, Role, Tenancy, Workspace, WorkspaceLimits, WorkspaceStatus,
};
use chrono::{DateTime, Utc};

use crate::{Result, StorageError};

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

pub(crate) fn time(v: i64, what: &'static str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or(StorageError::Corrupt(what))
}

fn opt_time(v: Option<i64>, what: &'static str) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| time(v, what)).transpose()
}

fn parse<T>(v: Option<T>, what: &'static str) -> Result<T> {
    v.ok_or(StorageError::Corrupt(what))
}

fn id<T, E>(r: std::result::Result<T, E>, what: &'static str) -> Result<T> {
    r.map_err(|_| StorageError::Corrupt(what))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|_| StorageError::Corrupt(what))
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub created_at: i64,
}

impl AccountRow {
    pub fn into_domain(self) -> Result<(Account, Option<String>)> {
        Ok((
            Account {
                id: id(AccountId::parse(&self.id), "accounts.id")?,
                email: self.email,
                name: self.name,
                created_at: time(self.created_at, "accounts.created_at")?,
            },
            self.password_hash,
        ))
    }
}

pub(crate) const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.slug, w.plan, w.status, w.kyc_status, \
     w.payment_status, w.metadata, w.limits, w.created_at, w.updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub plan: String,
    pub status: String,
    pub kyc_status: String,
    pub payment_status: String,
    pub metadata: String,
    pub limits: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WorkspaceRow {
    pub fn into_domain(self, root: Option<&WorkspaceId>) -> Result<Workspace> {
        let id = id(WorkspaceId::parse(&self.id), "workspaces.id")?;
        Ok(Workspace {
            root: root == Some(&id),
            id,
            name: self.name,
            slug: self.slug,
            plan: parse(Plan::parse(&self.plan), "workspaces.plan")?,
            status: parse(WorkspaceStatus::parse(&self.status), "workspaces.status")?,
            kyc_status: parse(KycStatus::parse(&self.kyc_status), "workspaces.kyc_status")?,
            payment_status: parse(
                PaymentStatus::parse(&self.payment_status),
                "workspaces.payment_status",
            )?,
            metadata: json(&self.metadata, "workspaces.metadata")?,
            limits: json::<WorkspaceLimits>(&self.limits, "workspaces.limits")?,
            created_at: time(self.created_at, "workspaces.created_at")?,
            updated_at: time(self.updated_at, "workspaces.updated_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRoleRow {
    #[sqlx(flatten)]
    pub workspace: WorkspaceRow,
    pub member_role: String,
}

impl WorkspaceRoleRow {
    pub fn into_domain(self, root: Option<&WorkspaceId>) -> Result<(Workspace, Role)> {
        let role = parse(Role::parse(&self.member_role), "members.role")?;
        Ok((self.workspace.into_domain(root)?, role))
    }
}

pub(crate) const MEMBER_COLUMNS: &str = "m.id, m.workspace_id, m.account_id, a.email, a.name, \
     m.role, m.status, m.created_at, m.updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub id: String,
    pub workspace_id: String,
    pub account_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MemberRow {
    pub fn into_domain(self) -> Result<Member> {
        Ok(Member {
            id: id(MemberId::parse(&self.id), "members.id")?,
            workspace_id: id(
                WorkspaceId::parse(&self.workspace_id),
                "members.workspace_id",
            )?,
            account_id: id(AccountId::parse(&self.account_id), "members.account_id")?,
            email: self.email,
            name: self.name,
            role: parse(Role::parse(&self.role), "members.role")?,
            status: parse(MemberStatus::parse(&self.status), "members.status")?,
            created_at: time(self.created_at, "members.created_at")?,
            updated_at: time(self.updated_at, "members.updated_at")?,
        })
    }
}

pub(crate) const APPLICATION_COLUMNS: &str = "p.id, p.workspace_id, p.name, p.slug, \
     p.environment, p.tenancy, p.status, p.region, p.config, p.upstreams, p.created_at, \
     p.updated_at, p.deleted_at, p.purge_at, p.provisioned_at, p.provision_attempts, \
     p.provision_error";

#[derive(sqlx::FromRow)]
pub(crate) struct ApplicationRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub slug: String,
    pub environment: String,
    pub tenancy: String,
    pub status: String,
    pub region: String,
    pub config: String,
    pub upstreams: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub purge_at: Option<i64>,
    pub provisioned_at: Option<i64>,
    pub provision_attempts: i32,
    pub provision_error: Option<String>,
}

impl ApplicationRow {
    pub fn into_domain(self) -> Result<Application> {
        Ok(Application {
            id: id(ApplicationId::parse(&self.id), "applications.id")?,
            workspace_id: id(
                WorkspaceId::parse(&self.workspace_id),
                "applications.workspace_id",
            )?,
            name: self.name,
            slug: self.slug,
            environment: parse(
                Environment::parse(&self.environment),
                "applications.environment",
            )?,
            tenancy: parse(Tenancy::parse(&self.tenancy), "applications.tenancy")?,
            status: parse(AppStatus::parse(&self.status), "applications.status")?,
            region: self.region,
            config: json(&self.config, "applications.config")?,
            upstreams: json(&self.upstreams, "applications.upstreams")?,
            created_at: time(self.created_at, "applications.created_at")?,
            updated_at: time(self.updated_at, "applications.updated_at")?,
            deleted_at: opt_time(self.deleted_at, "applications.deleted_at")?,
            purge_at: opt_time(self.purge_at, "applications.purge_at")?,
            provisioned_at: opt_time(self.provisioned_at, "applications.provisioned_at")?,
            provision_attempts: u32::try_from(self.provision_attempts).unwrap_or(0),
            provision_error: self.provision_error,
        })
    }
}

pub(crate) const KEY_COLUMNS: &str = "id, workspace_id, application_id, kind, mode, name, scopes, \
     role, hash, last4, created_at, last_used_at, expires_at, revoked_at, rolled_to, signing_secret, \
     created_by";

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub id: String,
    pub workspace_id: String,
    pub application_id: Option<String>,
    pub kind: String,
    pub mode: String,
    pub name: Option<String>,
    pub scopes: String,
    pub role: Option<String>,
    pub hash: String,
    pub last4: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rolled_to: Option<String>,
    pub signing_secret: Option<String>,
    pub created_by: Option<String>,
}

impl KeyRow {
    pub fn into_domain(self) -> Result<ApiKey> {
        let scopes: Vec<String> = json(&self.scopes, "api_keys.scopes")?;
        Ok(ApiKey {
            id: id(KeyId::parse(&self.id), "api_keys.id")?,
            workspace_id: id(
                WorkspaceId::parse(&self.workspace_id),
                "api_keys.workspace_id",
            )?,
            application_id: self
                .application_id
                .map(|a| id(ApplicationId::parse(&a), "api_keys.application_id"))
                .transpose()?,
            kind: parse(KeyKind::parse(&self.kind), "api_keys.kind")?,
            mode: parse(KeyMode::parse(&self.mode), "api_keys.mode")?,
            name: self.name,
            scopes: scopes
                .iter()
                .map(|s| parse(KeyScope::parse(s), "api_keys.scopes"))
                .collect::<Result<_>>()?,
            role: self
                .role
                .map(|r| parse(Role::parse(&r), "api_keys.role"))
                .transpose()?,
            hash: parse(KeyHash::from_hex(&self.hash), "api_keys.hash")?,
            last4: self.last4,
            created_at: time(self.created_at, "api_keys.created_at")?,
            last_used_at: opt_time(self.last_used_at, "api_keys.last_used_at")?,
            expires_at: opt_time(self.expires_at, "api_keys.expires_at")?,
            revoked_at: opt_time(self.revoked_at, "api_keys.revoked_at")?,
            signing_secret: self.signing_secret,
            created_by: self
                .created_by
                .map(|a| id(AccountId::parse(&a), "api_keys.created_by"))
                .transpose()?,
            rolled_to: self
                .rolled_to
                .map(|k| id(KeyId::parse(&k), "api_keys.rolled_to"))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InvitationRow {
    pub invitation_id: String,
    pub workspace_id: String,
    pub member_id: String,
    #[sqlx(flatten)]
    pub account: AccountRow,
}

/// Maps a unique-constraint violation to `Duplicate`, anything else through.
pub(crate) fn unique(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::Duplicate,
        _ => StorageError::Database(e),
    }
}
