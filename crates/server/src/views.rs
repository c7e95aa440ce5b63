//! Response shapes that add to the domain types: the caller's role on a workspace, a key's
//! visible prefix, the plaintext of a key at creation, and the list envelope.

use authsome_control::{CreatedKey, Invitation};
use authsome_domain::page::Page;
use authsome_domain::tenancy::{Account, ApiKey, Member, Role, Workspace};
use chrono::{DateTime, Utc};
use utoipa::ToSchema;

/// `{"data": [...], "hasMore": bool, "nextCursor": string|null}`.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T: ToSchema> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> List<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        let page = page.map(f);
        Self {
            has_more: page.next_cursor.is_some(),
            next_cursor: page.next_cursor,
            data: page.items,
        }
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The caller's role in this workspace.
    pub role: Role,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    #[serde(flatten)]
    pub key: ApiKey,
    /// e.g. `sk_live_`.
    pub prefix: &'static str,
    /// e.g. `sk_live_…a1B2`: what a listing shows instead of the key.
    pub redacted: String,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            prefix: key.prefix(),
            redacted: key.redacted(),
            key,
        }
    }
}

/// A key at creation or roll: the only time its plaintext `secret` is shown.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The full key. Store it now: it is not shown again.
    pub secret: String,
}

impl From<CreatedKey> for CreatedKeyView {
    fn from(c: CreatedKey) -> Self {
        Self {
            key: c.key.into(),
            secret: c.plaintext,
        }
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolledKeyView {
    #[serde(flatten)]
    pub key: CreatedKeyView,
    /// The rolled key, working until its `expiresAt`.
    pub previous: KeyView,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitedMemberView {
    #[serde(flatten)]
    pub member: Member,
    /// The person receives its token (by email, or from the operators) and accepts at
    /// `/control/v1/auth/accept-invitation`; only a platform operator's answer carries it.
    pub invitation: Invitation,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    #[serde(flatten)]
    pub account: Account,
    pub memberships: Vec<Member>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginView {
    /// Session token for `Authorization: Bearer`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub status: &'static str,
}

#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyView {
    pub status: &'static str,
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
}
