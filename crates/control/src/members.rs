//! Team members: invite by email (a one-time token, 7 days), change roles, remove. A workspace
//! always keeps at least one active owner; only owners touch owners.

use authsome_domain::event::DomainEvent;
use authsome_domain::id::{AccountId, InvitationId, KeyId, MemberId, WorkspaceId};
use authsome_domain::keys::OpaqueToken;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{Actor, ApiKey, Member, MemberStatus, Permission, Role};
use chrono::{DateTime, Duration, Utc};

use crate::auth::INVITATION_TOKEN_PREFIX;
use crate::{mail, ControlError, ControlPlane, Result};

/// How long an invitation token stays valid.
pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMember {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::email))]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

/// The invitation made when a member is added. Its one-time token goes to the person it invites
/// (by email, or through the operators), never to the inviter: whoever holds it sets the
/// password of a new account.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InvitationId,
    /// Only in a platform operator's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub delivery: Delivery,
}

/// How an invitation's token reaches the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// Mailed to the invited address (`AUTHSOME_SMTP_URL`).
    Email,
    /// Without a mail server: written to the server log for the operators to relay (a platform
    /// operator can also issue a fresh token with `POST /control/v1/admin/invitations/{id}/token`).
    ServerLog,
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
        let now = self.clock.now();
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
        let mut invitation = Invitation {
            id: InvitationId::new(),
            token: None,
            expires_at: now + INVITATION_TTL,
            delivery: Delivery::ServerLog,
        };
        // Delivered before it is stored: a token that cannot reach the person is not made.
        invitation.delivery = self
            .deliver_invitation(
                &candidate.email,
                &workspace.name,
                &token.plaintext,
                &invitation,
            )
            .await?;
        if self.is_platform_operator(actor).await? {
            invitation.token = Some(token.plaintext.clone());
        }
        let member = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("workspace.member.invited")
                    .workspace(ws)
                    .target(&candidate.id)
                    .change("role", candidate.role.as_str())],
                async |outbox| {
                    self.store
                        .invite_member(
                            &candidate,
                            &invitation.id,
                            &token.hash,
                            invitation.expires_at,
                            outbox,
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

    /// A fresh token for an invitation not yet accepted, in any workspace (platform operators,
    /// relaying invitations where no mail server is configured); the old token stops working.
    pub async fn admin_reissue_invitation(
        &self,
        actor: &Actor,
        id: &InvitationId,
    ) -> Result<Invitation> {
        self.require_platform_operator(actor).await?;
        let token = OpaqueToken::generate(INVITATION_TOKEN_PREFIX);
        let expires_at = self.clock.now() + INVITATION_TTL;
        let member = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("admin.invitation.reissued").target(id)],
                async |outbox| {
                    self.store
                        .reissue_invitation(id, &token.hash, expires_at, outbox)
                        .await
                },
            )
            .await?
            .ok_or(ControlError::NotFound("invitation"))?;
        let mut invitation = Invitation {
            id: id.clone(),
            token: None,
            expires_at,
            delivery: Delivery::ServerLog,
        };
        let workspace = self
            .store
            .any_workspace(&member.workspace_id)
            .await?
            .map(|w| w.name)
            .unwrap_or_default();
        invitation.delivery = self
            .deliver_invitation(&member.email, &workspace, &token.plaintext, &invitation)
            .await?;
        invitation.token = Some(token.plaintext);
        Ok(invitation)
    }

    /// Hands an invitation's token to the invited address: by mail when a mailer is set, else
    /// to the server log, for the operators to relay.
    async fn deliver_invitation(
        &self,
        email: &str,
        workspace: &str,
        token: &str,
        invitation: &Invitation,
    ) -> Result<Delivery> {
        let Some(mailer) = &self.mailer else {
            tracing::info!(
                target: "authsome::invitations",
                invitation = %invitation.id,
                to = %email,
                %token,
                "invitation token (no AUTHSOME_SMTP_URL: relay it to the person it invites)"
            );
            return Ok(Delivery::ServerLog);
        };
        let accept = format!(
            "{}/control/v1/auth/accept-invitation",
            self.settings.public_url.trim_end_matches('/')
        );
        let text = format!(
            "You are invited to the workspace \"{workspace}\" on AuthSome.\n\n\
             Your invitation code (valid until {expires}):\n\n    {token}\n\n\
             To accept, send it with a password of your choice (or your current password, if you \
             already have an account) to:\n\n    POST {accept}\n    \
             {{\"token\": \"{token}\", \"password\": \"...\"}}\n\n\
             If you did not expect this, ignore this message.\n",
            expires = invitation.expires_at.to_rfc3339(),
        );
        mailer
            .send(mail::Mail {
                to: email.to_owned(),
                subject: format!("Your invitation to {workspace}"),
                text,
            })
            .await
            .map_err(|why| {
                tracing::warn!(invitation = %invitation.id, error = %why, "invitation mail not sent");
                ControlError::Unavailable(
                    "the invitation email could not be sent; nothing was changed, try again".into(),
                )
            })?;
        Ok(Delivery::Email)
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
        // The member's management keys give up what the new role may not do, in the same
        // transaction.
        let (member, capped) = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("workspace.member.role_changed")
                    .workspace(ws)
                    .target(id)
                    .change("role", patch.role.as_str())],
                async |outbox| {
                    self.store
                        .update_member_role(ws, id, patch.role, self.clock.now(), outbox)
                        .await
                },
            )
            .await?;
        for hash in capped {
            self.invalidate(crate::keys::Invalidation::Key(hash));
        }
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
        // Their management keys go with them, in the same transaction.
        let revoked = self
            .audited(
                Some(actor),
                vec![DomainEvent::new("workspace.member.removed")
                    .workspace(ws)
                    .target(id)],
                async |outbox| {
                    self.store
                        .remove_member(ws, id, self.clock.now(), outbox)
                        .await
                },
            )
            .await?;
        for hash in revoked {
            self.invalidate(crate::keys::Invalidation::Key(hash));
        }
        Ok(())
    }

    /// Makes a management key the calling owner's, so that it survives its member leaving or
    /// being demoted (owners only, signed in as themselves).
    pub async fn reassign_management_key(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &KeyId,
    ) -> Result<ApiKey> {
        let (_, role) = self
            .workspace_for(actor, ws, Permission::ManagementKeysManage)
            .await?;
        self.require_for(actor, ws, role, Permission::OwnersManage)?;
        let Actor::Account(account) = actor else {
            return Err(ControlError::Forbidden(
                "a key is reassigned by an owner signed in as themselves".into(),
            ));
        };
        self.audited(
            Some(actor),
            vec![DomainEvent::new("workspace.key.reassigned")
                .workspace(ws)
                .target(id)
                .change("to", account.to_string())],
            async |outbox| match self
                .store
                .reassign_management_key(ws, id, account, outbox)
                .await
            {
                Err(authsome_storage::StorageError::NotFound) => Err(ControlError::NotFound("key")),
                other => Ok(other?),
            },
        )
        .await?;
        self.store
            .key(ws, None, id)
            .await?
            .ok_or(ControlError::NotFound("key"))
    }
}
