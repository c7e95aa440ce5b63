//! Team members: invite by email (a one-time token, 7 days), change roles, remove. A workspace
//! always keeps at least one active owner; only owners touch owners.

use authsome_domain::event::DomainEvent;
use authsome_domain::id::{AccountId, InvitationId, MemberId, WorkspaceId};
use authsome_domain::keys::OpaqueToken;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{Actor, Member, MemberStatus, Permission, Role};
use chrono::{DateTime, Duration, Utc};

use crate::auth::INVITATION_TOKEN_PREFIX;
use crate::{ControlError, ControlPlane, Result};

/// How long an invitation token stays valid.
pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMember {
    pub email: String,
    pub role: Role,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

/// The one-time invitation handed back when a member is added; the token is shown once.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InvitationId,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl ControlPlane {
    pub async fn list_members(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Member>> {
        self.workspace_for(actor, ws, Permission::MembersRead)
            .await?;
        Ok(self.store.members(ws, page).await?)
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewMember,
    ) -> Result<(Member, Invitation)> {
        let (workspace, role) = self
            .workspace_for(actor, ws, Permission::MembersManage)
            .await?;
        workspace.may_write()?;
        if input.role == Role::Owner {
            self.require_for(actor, ws, role, Permission::OwnersManage)?;
        }
        let email = parse_email(&input.email)?;
        let now = authsome_domain::now();
        let candidate = Member {
            id: MemberId::new(),
            workspace_id: ws.clone(),
            account_id: AccountId::new(),
            email,
            name: None,
            role: input.role,
            status: MemberStatus::Invited,
            created_at: now,
            updated_at: now,
        };
        let token = OpaqueToken::generate(INVITATION_TOKEN_PREFIX);
        let invitation = Invitation {
            id: InvitationId::new(),
            token: token.plaintext,
            expires_at: now + INVITATION_TTL,
        };
        let member = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("workspace.member.invited")
                    .workspace(ws)
                    .target(&candidate.id)
                    .change("role", candidate.role.as_str())],
                async {
                    self.store
                        .invite_member(
                            &candidate,
                            &invitation.id,
                            &token.hash,
                            invitation.expires_at,
                        )
                        .await
                        .map_err(|e| match e {
                            authsome_storage::StorageError::Duplicate => {
                                ControlError::Conflict("that person is already a member".into())
                            }
                            other => other.into(),
                        })
                },
            )
            .await?;
        Ok((member, invitation))
    }

    pub async fn update_member(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &MemberId,
        patch: MemberPatch,
    ) -> Result<Member> {
        let (workspace, role) = self
            .workspace_for(actor, ws, Permission::MembersManage)
            .await?;
        workspace.may_write()?;
        let target = self
            .store
            .member(ws, id)
            .await?
            .ok_or(ControlError::NotFound("member"))?;
        if target.role == Role::Owner || patch.role == Role::Owner {
            self.require_for(actor, ws, role, Permission::OwnersManage)?;
        }
        let member = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("workspace.member.role_changed")
                    .workspace(ws)
                    .target(id)
                    .change("role", patch.role.as_str())],
                self.store
                    .update_member_role(ws, id, patch.role, authsome_domain::now()),
            )
            .await?;
        Ok(member)
    }

    /// Removes a member. Anyone may leave a workspace themselves (unless they are its last owner).
    pub async fn remove_member(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &MemberId,
    ) -> Result<()> {
        let (_, role) = self
            .store
            .workspace_access(actor, ws)
            .await?
            .ok_or(ControlError::NotFound("workspace"))?;
        let target = self
            .store
            .member(ws, id)
            .await?
            .ok_or(ControlError::NotFound("member"))?;
        let leaving = matches!(actor, Actor::Account(a) if *a == target.account_id);
        if !leaving {
            self.require_for(actor, ws, role, Permission::MembersManage)?;
            if target.role == Role::Owner {
                self.require_for(actor, ws, role, Permission::OwnersManage)?;
            }
        }
        self.audited(
            Some(actor),
            vec![DomainEvent::new("workspace.member.removed")
                .workspace(ws)
                .target(id)],
            self.store.remove_member(ws, id),
        )
        .await?;
        Ok(())
    }
}
