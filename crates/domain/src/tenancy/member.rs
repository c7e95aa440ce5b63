//! Team members, their roles and what each role may do.

use chrono::{DateTime, Utc};

use crate::id::{AccountId, MemberId, WorkspaceId};
use crate::tenancy::workspace::string_enum;

string_enum!(
    /// A team member's role in a workspace.
    Role { Owner => "owner", Admin => "admin", Operator => "operator", Viewer => "viewer", Auditor => "auditor" });
string_enum!(
    /// An invited member becomes active when they accept the invitation.
    MemberStatus { Invited => "invited", Active => "active" });

/// Every action on the control plane that a role may or may not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    WorkspaceRead,
    WorkspaceUpdate,
    WorkspaceDelete,
    Billing,
    MembersRead,
    MembersManage,
    OwnersManage,
    ApplicationsRead,
    ApplicationsWrite,
    ApplicationsRestart,
    KeysRead,
    KeysCreate,
    KeysRoll,
    KeysRevoke,
    ManagementKeysManage,
    AuditRead,
    /// Vaults and secrets' metadata (never values).
    VaultsRead,
    /// Create, change and delete vaults; delete, restore and destroy secrets.
    VaultsManage,
    /// Write new versions of secrets (rotation).
    SecretsWrite,
    /// Read secrets' values.
    SecretsReveal,
    /// Rotate the workspace's key-encryption key and re-encrypt its secrets.
    KeyringManage,
    /// Destroy the workspace's keys: every secret becomes unreadable for good.
    KeyringDestroy,
    /// Provider configurations (mode and public settings, never a credential).
    ProvidersRead,
    /// Configure and remove providers' credentials.
    ProvidersManage,
    /// Resolve a provider's credential to check it works (the value is never shown).
    ProvidersTest,
    /// Approve or deny another member's rotation that a policy holds for a second person.
    RotationsApprove,
    /// A workspace's usage (users, requests, rotations) and the users counted.
    UsageRead,
}

impl Role {
    /// The permission matrix. `owner`: everything; `admin`: everything but billing, owners,
    /// deleting the workspace and destroying its keys; `operator`: roll keys, restart, write
    /// new secret versions, read; `viewer`: read (secrets' metadata, never values); `auditor`:
    /// the audit log only.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        let read = matches!(
            permission,
            WorkspaceRead
                | MembersRead
                | ApplicationsRead
                | KeysRead
                | VaultsRead
                | ProvidersRead
                | UsageRead
        );
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(
                permission,
                Billing | OwnersManage | WorkspaceDelete | KeyringDestroy
            ),
            Role::Operator => {
                read || matches!(
                    permission,
                    KeysRoll | ApplicationsRestart | SecretsWrite | ProvidersTest
                )
            }
            Role::Viewer => read,
            Role::Auditor => matches!(permission, WorkspaceRead | AuditRead),
        }
    }
}

impl Role {
    /// [`Role::allows`] in one vault, where `bound` says whether the member is bound to it as
    /// an operator: an operator reads the values of the vaults bound to it, and only those.
    pub fn allows_in_vault(self, permission: Permission, bound: bool) -> bool {
        self.allows(permission)
            || (bound && self == Role::Operator && permission == Permission::SecretsReveal)
    }

    /// Whether deciding `permission` in a vault needs to know if the member is bound to it.
    pub fn needs_vault_binding(self, permission: Permission) -> bool {
        !self.allows(permission)
            && self == Role::Operator
            && permission == Permission::SecretsReveal
    }

    /// Whether this role may do everything `other` may.
    pub fn covers(self, other: Role) -> bool {
        ALL_PERMISSIONS
            .iter()
            .all(|&p| !other.allows(p) || self.allows(p))
    }

    /// The roles that may do something `cap` may not: what a key acting for a member whose role
    /// became `cap` must give up.
    pub fn exceeding(cap: Role) -> Vec<Role> {
        Role::ALL
            .iter()
            .copied()
            .filter(|r| !cap.covers(*r))
            .collect()
    }
}

const ALL_PERMISSIONS: [Permission; 27] = [
    Permission::WorkspaceRead,
    Permission::WorkspaceUpdate,
    Permission::WorkspaceDelete,
    Permission::Billing,
    Permission::MembersRead,
    Permission::MembersManage,
    Permission::OwnersManage,
    Permission::ApplicationsRead,
    Permission::ApplicationsWrite,
    Permission::ApplicationsRestart,
    Permission::KeysRead,
    Permission::KeysCreate,
    Permission::KeysRoll,
    Permission::KeysRevoke,
    Permission::ManagementKeysManage,
    Permission::AuditRead,
    Permission::VaultsRead,
    Permission::VaultsManage,
    Permission::SecretsWrite,
    Permission::SecretsReveal,
    Permission::KeyringManage,
    Permission::KeyringDestroy,
    Permission::ProvidersRead,
    Permission::ProvidersManage,
    Permission::ProvidersTest,
    Permission::RotationsApprove,
    Permission::UsageRead,
];

/// A person who signs in to the control plane. Email is unique, stored lowercased.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: AccountId,
    pub email: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A person's membership of a workspace. While it is `invited`, it says nothing about the
/// person beyond the email the inviter typed: `accountId` and `name` are null, so an invitation
/// does not reveal whether that address already has an account (an account id carries its
/// creation time) or what name it chose.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "camelCase"))]
pub struct Member {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MemberId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    /// Null while the member is invited.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub account_id: AccountId,
    pub email: String,
    /// Null while the member is invited.
    pub name: Option<String>,
    pub role: Role,
    pub status: MemberStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl serde::Serialize for Member {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let known = self.status == MemberStatus::Active;
        let mut out = serializer.serialize_struct("Member", 9)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("workspaceId", &self.workspace_id)?;
        out.serialize_field("accountId", &known.then_some(&self.account_id))?;
        out.serialize_field("email", &self.email)?;
        out.serialize_field("name", &self.name.as_ref().filter(|_| known))?;
        out.serialize_field("role", &self.role)?;
        out.serialize_field("status", &self.status)?;
        out.serialize_field("createdAt", &self.created_at)?;
        out.serialize_field("updatedAt", &self.updated_at)?;
        out.end()
    }
}

/// Lowercases and checks an email address (one `@`, a dot in the domain, no spaces, ≤ 254 bytes).
pub fn parse_email(s: &str) -> Result<String, crate::ValidationError> {
    let s = s.trim().to_lowercase();
    let valid = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(s)
    } else {
        Err(crate::ValidationError::new(
            "email",
            "must be a valid email address",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn role_matrix() {
        let all = [
            WorkspaceRead,
            WorkspaceUpdate,
            WorkspaceDelete,
            Billing,
            MembersRead,
            MembersManage,
            OwnersManage,
            ApplicationsRead,
            ApplicationsWrite,
            ApplicationsRestart,
            KeysRead,
            KeysCreate,
            KeysRoll,
            KeysRevoke,
            ManagementKeysManage,
            AuditRead,
            VaultsRead,
            VaultsManage,
            SecretsWrite,
            SecretsReveal,
            KeyringManage,
            KeyringDestroy,
            ProvidersRead,
            ProvidersManage,
            ProvidersTest,
            RotationsApprove,
        ];
        assert!(all.iter().all(|&p| Role::Owner.allows(p)));
        assert!(Role::Admin.allows(RotationsApprove) && !Role::Operator.allows(RotationsApprove));
        assert!(!Role::Admin.allows(Billing) && !Role::Admin.allows(OwnersManage));
        assert!(Role::Admin.allows(MembersManage) && Role::Admin.allows(KeysCreate));
        assert!(Role::Operator.allows(KeysRoll) && !Role::Operator.allows(KeysCreate));
        assert!(!Role::Operator.allows(KeysRevoke) && !Role::Operator.allows(ApplicationsWrite));
        assert!(Role::Viewer.allows(KeysRead) && !Role::Viewer.allows(KeysRoll));
        assert!(!Role::Viewer.allows(AuditRead));
        assert!(Role::Auditor.allows(AuditRead) && !Role::Auditor.allows(ApplicationsRead));
        assert!(!Role::Auditor.allows(MembersRead));
        // The vault: values to owners and admins; operators rotate; viewers see metadata;
        // auditors nothing; only owners destroy the keys.
        assert!(Role::Admin.allows(SecretsReveal) && !Role::Admin.allows(KeyringDestroy));
        assert!(Role::Operator.allows(SecretsWrite) && !Role::Operator.allows(SecretsReveal));
        assert!(Role::Viewer.allows(VaultsRead) && !Role::Viewer.allows(SecretsReveal));
        assert!(!Role::Viewer.allows(SecretsWrite));
        assert!(!Role::Auditor.allows(VaultsRead) && !Role::Auditor.allows(SecretsReveal));
        assert!(Role::Operator.allows_in_vault(SecretsReveal, true));
        assert!(!Role::Operator.allows_in_vault(SecretsReveal, false));
        assert!(
            !Role::Viewer.allows_in_vault(SecretsReveal, true),
            "only operators are bound"
        );
        assert!(!Role::Operator.allows_in_vault(VaultsManage, true));
        assert!(Role::Admin.allows(ProvidersManage) && Role::Operator.allows(ProvidersTest));
        assert!(!Role::Operator.allows(ProvidersManage) && Role::Viewer.allows(ProvidersRead));
        assert!(!Role::Viewer.allows(ProvidersTest) && !Role::Auditor.allows(ProvidersRead));
    }

    #[test]
    fn an_invited_member_shows_no_account() {
        let now = chrono::Utc::now();
        let mut member = Member {
            id: MemberId::new(),
            workspace_id: WorkspaceId::new(),
            account_id: AccountId::new(),
            email: "ada@example.com".into(),
            name: Some("Ada".into()),
            role: Role::Admin,
            status: MemberStatus::Invited,
            created_at: now,
            updated_at: now,
        };
        let shown = serde_json::to_value(&member).unwrap();
        assert_eq!(shown["accountId"], serde_json::Value::Null);
        assert_eq!(shown["name"], serde_json::Value::Null);
        assert_eq!(shown["email"], "ada@example.com");
        member.status = MemberStatus::Active;
        let shown = serde_json::to_value(&member).unwrap();
        assert_eq!(shown["accountId"], member.account_id.as_str());
        assert_eq!(shown["name"], "Ada");
        assert_eq!(shown["role"], "admin");
    }

    #[test]
    fn a_role_covers_the_roles_below_it() {
        assert!(Role::Owner.covers(Role::Admin) && Role::Admin.covers(Role::Operator));
        assert!(Role::Operator.covers(Role::Viewer) && !Role::Viewer.covers(Role::Operator));
        assert!(!Role::Viewer.covers(Role::Auditor) && !Role::Auditor.covers(Role::Viewer));
        assert_eq!(Role::exceeding(Role::Admin), [Role::Owner]);
        assert_eq!(
            Role::exceeding(Role::Viewer),
            [Role::Owner, Role::Admin, Role::Operator, Role::Auditor]
        );
        assert!(Role::exceeding(Role::Owner).is_empty());
    }

    #[test]
    fn emails() {
        assert_eq!(parse_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "a@b@c.com",
            "a@localhost",
            "a@.com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
