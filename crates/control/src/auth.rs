//! Team-member sign-in (email + argon2id password → short-lived session token), sign-out,
//! invitation acceptance, and turning a bearer credential into an [`Actor`].

use authsome_domain::event::DomainEvent;
use authsome_domain::keys::{parse_key, KeyHash, KeyKind, OpaqueToken};
use authsome_domain::password;
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{parse_name, Account, Actor, Member, MemberStatus};
use chrono::{DateTime, Utc};

use crate::hashing::HashTenant;
use crate::throttle::{
    bounded, bounded_credentials, Attempt, Realm, ThrottleUnavailable, Throttled,
    MAX_PASSWORD_BYTES,
};
use crate::{ControlError, ControlPlane, Result};

/// Dashboard session tokens start with this; management keys with `wk_`.
pub const SESSION_TOKEN_PREFIX: &str = "cst_";
/// Invitation tokens.
pub const INVITATION_TOKEN_PREFIX: &str = "ivt_";

pub struct LoginResult {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub account: Account,
    pub memberships: Vec<Member>,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvitation {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::member_password))]
    pub password: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
}

const BAD_CREDENTIALS: &str = "invalid email or password";

fn unavailable(e: ThrottleUnavailable) -> ControlError {
    tracing::error!(error = %e, "sign-in refused: throttle state unavailable");
    ControlError::Unavailable("sign-in is unavailable right now".into())
}

impl From<Throttled> for ControlError {
    fn from(t: Throttled) -> Self {
        match t {
            Throttled::Locked(wait) => ControlError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            },
            Throttled::Unavailable(e) => unavailable(e),
        }
    }
}

impl ControlPlane {
    /// Same error and same work for an unknown email as for a wrong password. Failures count
    /// against the email and against the client's `address` (across emails); either one locked
    /// is 429 before any work.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<LoginResult> {
        bounded_credentials(email, password)?;
        let normalized = email.trim().to_lowercase();
        let attempt = Attempt {
            scope: Realm::ControlPlane,
            account: Some(&normalized),
            address,
        };
        if let Err(refused) = self.credentials.admit(attempt).await {
            self.login_failed(&normalized, None, "locked").await;
            return Err(refused.into());
        }
        let found = match parse_email(email) {
            Ok(email) => self.store.account_by_email(&email).await?,
            Err(_) => None,
        };
        let account = match found {
            Some((account, Some(hash))) if self.verify(password, hash.clone()).await? => account,
            Some((account, Some(_))) => {
                self.credentials
                    .failed(attempt)
                    .await
                    .map_err(unavailable)?;
                self.login_failed(&normalized, Some(&account.id), "bad_credentials")
                    .await;
                return Err(ControlError::Unauthenticated(BAD_CREDENTIALS));
            }
            // Unknown email, or an invited account that has not set a password yet: the same
            // work, the same answer, the same throttling.
            _ => {
                self.dummy_verify(password).await?;
                self.credentials
                    .failed(attempt)
                    .await
                    .map_err(unavailable)?;
                self.login_failed(&normalized, None, "bad_credentials")
                    .await;
                return Err(ControlError::Unauthenticated(BAD_CREDENTIALS));
            }
        };
        self.credentials
            .succeeded(attempt)
            .await
            .map_err(unavailable)?;
        let token = OpaqueToken::generate(SESSION_TOKEN_PREFIX);
        let now = self.clock.now();
        let expires_at = now + self.settings.session_ttl;
        let memberships = self.store.memberships(&account.id).await?;
        // Each workspace the account belongs to sees its sign-ins in its own audit log; one
        // that has only invited the person does not learn about them.
        let actor = Actor::Account(account.id.clone());
        let mut events: Vec<DomainEvent> = memberships
            .iter()
            .filter(|m| m.status == MemberStatus::Active)
            .map(|m| {
                DomainEvent::new("account.signed_in")
                    .workspace(&m.workspace_id)
                    .target(&account.id)
            })
            .collect();
        if events.is_empty() {
            events.push(DomainEvent::new("account.signed_in").target(&account.id));
        }
        self.audited(Some(&actor), events, async |outbox| {
            self.store
                .create_session(&token.hash, &account.id, now, expires_at, outbox)
                .await
        })
        .await?;
        Ok(LoginResult {
            token: token.plaintext,
            expires_at,
            account,
            memberships,
        })
    }

    /// Records a failed sign-in in the logs of the account's workspaces, or (for an email no
    /// account has) in the platform operators' log; the typed email only as a keyed HMAC.
    async fn login_failed(
        &self,
        email: &str,
        account: Option<&authsome_domain::id::AccountId>,
        reason: &'static str,
    ) {
        let event = DomainEvent::new("account.sign_in_failed")
            .outcome(authsome_domain::event::Outcome::Failure)
            .change("reason", reason)
            .identifying("email", email);
        let account = match account {
            Some(a) => Some(a.clone()),
            None => match parse_email(email) {
                Ok(e) => self
                    .store
                    .account_by_email(&e)
                    .await
                    .ok()
                    .flatten()
                    .map(|(a, _)| a.id),
                Err(_) => None,
            },
        };
        let workspaces: Vec<Member> = match &account {
            Some(a) => self.store.memberships(a).await.unwrap_or_default(),
            None => Vec::new(),
        }
        .into_iter()
        .filter(|m| m.status == MemberStatus::Active)
        .collect();
        if workspaces.is_empty() {
            self.events.emit(event);
            return;
        }
        for m in workspaces {
            let mut e = event.clone().workspace(&m.workspace_id);
            e.id = authsome_domain::id::EventId::new();
            if let Some(a) = &account {
                e = e.target(a);
            }
            self.events.emit(e);
        }
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        self.store.delete_session(&KeyHash::of(token)).await?;
        Ok(())
    }

    /// The signed-in account and its memberships (session tokens only).
    pub async fn me(&self, actor: &Actor, token: &str) -> Result<(Account, Vec<Member>)> {
        let Actor::Account(id) = actor else {
            return Err(ControlError::Forbidden(
                "management keys have no account; use a session token".into(),
            ));
        };
        let account = self
            .store
            .session_account(&KeyHash::of(token), self.clock.now())
            .await?
            .filter(|a| &a.id == id)
            .ok_or(ControlError::Unauthenticated("session expired"))?;
        let memberships = self.store.memberships(&account.id).await?;
        Ok((account, memberships))
    }

    /// Resolves `Authorization: Bearer …` on the control plane: a session token or a management
    /// key. Checksum-broken keys are refused before any storage read.
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor> {
        if bearer.starts_with(SESSION_TOKEN_PREFIX) {
            let account = self
                .store
                .session_account(&KeyHash::of(bearer), self.clock.now())
                .await?
                .ok_or(ControlError::Unauthenticated(
                    "invalid or expired session token",
                ))?;
            return Ok(Actor::Account(account.id));
        }
        let parsed =
            parse_key(bearer).map_err(|_| ControlError::Unauthenticated("invalid credential"))?;
        if parsed.kind != KeyKind::Management {
            return Err(ControlError::Unauthenticated(
                "application keys cannot call the control plane",
            ));
        }
        let now = self.clock.now();
        let key = self
            .usable_key(&parsed.hash(), now)
            .await?
            .ok_or(ControlError::Unauthenticated("invalid credential"))?;
        self.meter.record_use(&key.id, now);
        let role = key
            .role
            .ok_or(ControlError::Unauthenticated("invalid credential"))?;
        Ok(Actor::ManagementKey {
            key_id: key.id.clone(),
            workspace_id: key.workspace_id.clone(),
            role,
        })
    }

    /// Consumes an invitation: for an address without an account yet, the token (which only
    /// reached that address) proves it, and the password given becomes the new account's; for
    /// an account that exists, accepting is signing in as it: its password, under the same
    /// throttle as sign-in, and nothing of the account changes (its name included).
    pub async fn accept_invitation(
        &self,
        input: AcceptInvitation,
        address: Option<&str>,
    ) -> Result<Member> {
        bounded("password", &input.password, MAX_PASSWORD_BYTES)?;
        // Guessing invitation tokens counts against the address like guessing passwords.
        let by_address = Attempt {
            scope: Realm::ControlPlane,
            account: None,
            address,
        };
        self.credentials.admit(by_address).await?;
        let name = input
            .name
            .as_deref()
            .map(|n| parse_name("name", n))
            .transpose()?;
        let now = self.clock.now();
        let invitation = self
            .store
            .pending_invitation(&KeyHash::of(&input.token), now)
            .await?;
        let Some(invitation) = invitation else {
            self.credentials
                .failed(by_address)
                .await
                .map_err(unavailable)?;
            return Err(ControlError::NotFound("invitation"));
        };
        let (new_hash, name) = match &invitation.password_hash {
            Some(existing) => {
                let email = invitation.account.email.as_str();
                let attempt = Attempt {
                    account: Some(email),
                    ..by_address
                };
                self.credentials.admit(attempt).await?;
                if !self.verify(&input.password, existing.clone()).await? {
                    self.credentials
                        .failed(attempt)
                        .await
                        .map_err(unavailable)?;
                    self.login_failed(email, Some(&invitation.account.id), "bad_credentials")
                        .await;
                    return Err(ControlError::Unauthenticated(
                        "this account already has a password; give that password to accept",
                    ));
                }
                self.credentials
                    .succeeded(attempt)
                    .await
                    .map_err(unavailable)?;
                (None, None)
            }
            None => {
                password::check_policy(&input.password)?;
                (Some(self.hash(input.password.clone()).await?), name)
            }
        };
        let member = self
            .audited(
                Some(&Actor::Account(invitation.account.id.clone())),
                vec![DomainEvent::new("workspace.member.joined")
                    .workspace(&invitation.workspace_id)
                    .target(&invitation.member_id)],
                async |outbox| {
                    self.store
                        .accept_invitation(
                            &invitation,
                            new_hash.as_deref(),
                            name.as_deref(),
                            now,
                            outbox,
                        )
                        .await
                },
            )
            .await?;
        Ok(member)
    }
}

// Argon2 takes tens of milliseconds of CPU and megabytes of memory: it runs on the process's
// bounded hashing pool, in the control plane's turn.
impl ControlPlane {
    pub(crate) async fn hash(&self, password: String) -> Result<String> {
        Ok(self
            .hashers
            .run(HashTenant::ControlPlane, move || {
                password::hash_password(&password)
            })
            .await?)
    }

    async fn verify(&self, password: &str, hash: String) -> Result<bool> {
        let password = password.to_owned();
        Ok(self
            .hashers
            .run(HashTenant::ControlPlane, move || {
                password::verify_password(&password, &hash)
            })
            .await?)
    }

    async fn dummy_verify(&self, password: &str) -> Result<()> {
        let password = password.to_owned();
        Ok(self
            .hashers
            .run(HashTenant::ControlPlane, move || {
                password::verify_against_dummy(&password)
            })
            .await?)
    }
}
