//! Sign-up, sign-in, refresh, sign-out, and checking an access token.

use authsome_domain::event::{DomainEvent, Outcome};
use authsome_domain::id::{ApplicationId, OrganizationId, SessionId, UserId};
use authsome_domain::identity::{
    RefreshRecord, Session, User, ACCESS_TOKEN_TTL, REFRESH_REUSE_GRACE, SESSION_TTL,
};
use authsome_domain::keys::{KeyHash, OpaqueToken};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::password;
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::parse_name;
use authsome_storage::app::{AppRepository, Rotation};
use authsome_storage::outbox::Outbox;
use authsome_storage::StorageError;
use chrono::{DateTime, Utc};

use authsome_control::throttle::{
    bounded_credentials, Attempt, Realm, ThrottleUnavailable, Throttled,
};

use crate::tokens::Claims;
use crate::{Identity, IdentityError, Result};

const REFRESH_PREFIX: &str = "rt_";
const BAD_CREDENTIALS: &str = "invalid email or password";
const BAD_TOKEN: &str = "invalid or expired access token";
const BAD_REFRESH: &str = "invalid or expired refresh token";
/// Opaque tokens are far shorter; a longer one is refused before it is hashed or looked up.
const MAX_TOKEN_BYTES: usize = 512;

fn unavailable(e: ThrottleUnavailable) -> IdentityError {
    tracing::error!(error = %e, "sign-in refused: throttle state unavailable");
    IdentityError::Unavailable("sign-in is unavailable right now".into())
}

impl From<Throttled> for IdentityError {
    fn from(t: Throttled) -> Self {
        match t {
            Throttled::Locked(wait) => IdentityError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            },
            Throttled::Unavailable(e) => unavailable(e),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignUp {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::email))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::user_password))]
    pub password: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignIn {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::email))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::presented_password))]
    pub password: String,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwitchOrganization {
    /// The organization to act in, or `null` to act as the user alone.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_organization_id))]
    pub organization_id: Option<OrganizationId>,
}

/// A re-issued access token for the same session (after switching organization).
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: SessionId,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub active_organization_id: Option<OrganizationId>,
}

/// An access token as a request presented it: with the key thumbprint of a verified DPoP
/// proof when it came as `Authorization: DPoP` (RFC 9449). A token bound to a key (`cnf.jkt`)
/// is accepted only with a proof made with that key.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub token: &'a str,
    pub dpop_jkt: Option<&'a str>,
}

impl<'a> From<&'a str> for Presented<'a> {
    fn from(token: &'a str) -> Self {
        Self {
            token,
            dpop_jkt: None,
        }
    }
}

/// Where a request came from, recorded on the session and used for throttling.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The thumbprint of the key of a verified DPoP proof (RFC 9449) the request carried: the
    /// session's tokens are then bound to that key.
    pub dpop_jkt: Option<String>,
}

/// `session` of the contract: the access token and the refresh token, each with its expiry.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IssuedSession {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: SessionId,
    /// EdDSA-signed JWT access token.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Opaque; rotated on every use.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    /// `Bearer`, or `DPoP` when the tokens are bound to the client's key (RFC 9449): then
    /// every use needs a proof made with that key.
    pub token_type: &'static str,
}

fn token_type(session: &Session) -> &'static str {
    if session.dpop_jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

impl Identity {
    pub async fn sign_up(
        &self,
        app: &ApplicationId,
        input: SignUp,
        client: &ClientInfo,
    ) -> Result<(User, IssuedSession)> {
        bounded_credentials(&input.email, &input.password)?;
        // An address that keeps failing (guessing passwords, probing which emails exist) is
        // refused here too, before the hash.
        let by_address = Attempt {
            scope: Realm::Application(app.as_str()),
            account: None,
            address: client.ip.as_deref(),
        };
        self.credentials.admit(by_address).await?;
        let email = parse_email(&input.email)?;
        self.policy.check(&input.password)?;
        let name = input
            .name
            .as_deref()
            .map(|n| parse_name("name", n))
            .transpose()?;
        let store = self.store(app).await?;
        let now = self.clock.now();
        let user = User {
            id: UserId::new(),
            email,
            name,
            public_metadata: serde_json::json!({}),
            private_metadata: serde_json::json!({}),
            disabled: false,
            created_at: now,
            updated_at: now,
            last_sign_in_at: Some(now),
        };
        let hash = self.hash_password(app, input.password).await?;
        let created = self
            .audited(
                app,
                Self::event(app, "user.signed_up", &user.id, Some(&user.id)),
                async |outbox| {
                    store
                        .create_user(&user, Some(&hash), outbox)
                        .await
                        .map_err(|e| match e {
                            StorageError::Duplicate => IdentityError::Conflict(
                                "a user with this email already exists".into(),
                            ),
                            other => other.into(),
                        })
                },
            )
            .await;
        if let Err(IdentityError::Conflict(m)) = created {
            // Asking whether an email exists is a failure like a wrong password.
            self.credentials
                .failed(by_address)
                .await
                .map_err(unavailable)?;
            return Err(IdentityError::Conflict(m));
        }
        created?;
        let session = self
            .issue_session(app, &*store, &user, client, None)
            .await?;
        self.note_active(app, &user.id, now);
        Ok((user, session))
    }

    /// Same error and same work for an unknown email as for a wrong password; repeated failures
    /// per account and per client address lock sign-in for a growing while.
    pub async fn sign_in(
        &self,
        app: &ApplicationId,
        input: SignIn,
        client: &ClientInfo,
    ) -> Result<(User, IssuedSession)> {
        bounded_credentials(&input.email, &input.password)?;
        let email = input.email.trim().to_lowercase();
        let attempt = Attempt {
            scope: Realm::Application(app.as_str()),
            account: Some(&email),
            address: client.ip.as_deref(),
        };
        if let Err(refused) = self.credentials.admit(attempt).await {
            if matches!(refused, Throttled::Locked(_)) {
                self.sign_in_failed(app, &email, None, "locked");
            }
            return Err(refused.into());
        }
        let store = self.store(app).await?;
        let found = match parse_email(&email) {
            Ok(email) => store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let known = found.as_ref().map(|(u, _)| u.id.clone());
        let verified = match found {
            Some((user, Some(hash))) => self
                .verify(app, &input.password, hash)
                .await?
                .then_some(user),
            _ => {
                self.dummy(app, &input.password).await?;
                None
            }
        };
        let Some(user) = verified else {
            self.credentials
                .failed(attempt)
                .await
                .map_err(unavailable)?;
            self.sign_in_failed(app, &email, known.as_ref(), "bad_credentials");
            return Err(IdentityError::Unauthenticated(BAD_CREDENTIALS));
        };
        self.credentials
            .succeeded(attempt)
            .await
            .map_err(unavailable)?;
        if user.disabled {
            self.sign_in_failed(app, &email, Some(&user.id), "disabled");
            return Err(IdentityError::Forbidden("this user is disabled"));
        }
        let now = self.clock.now();
        store.record_sign_in(&user.id, now).await?;
        let session = self
            .issue_session(app, &*store, &user, client, Some("user.signed_in"))
            .await?;
        self.note_active(app, &user.id, now);
        Ok((
            User {
                last_sign_in_at: Some(now),
                ..user
            },
            session,
        ))
    }

    /// Records a failed sign-in: the typed email only as a keyed HMAC, the user when known.
    fn sign_in_failed(
        &self,
        app: &ApplicationId,
        email: &str,
        user: Option<&authsome_domain::id::UserId>,
        reason: &'static str,
    ) {
        let mut event = DomainEvent::new("user.sign_in_failed")
            .application(app)
            .outcome(Outcome::Failure)
            .change("reason", reason)
            .identifying("email", email);
        if let Some(user) = user {
            event = event.target(user);
        }
        self.events.emit(event);
    }

    /// Exchanges a refresh token for a new pair. Each token works once: presenting a rotated one
    /// again (after a short grace for concurrent double-submits) revokes the whole session.
    pub async fn refresh(&self, app: &ApplicationId, refresh_token: &str) -> Result<IssuedSession> {
        self.refresh_with_proof(app, refresh_token, None, None)
            .await
    }

    /// As [`Identity::refresh`], with the key thumbprint of a verified DPoP proof: a session
    /// bound to a key refreshes only with a proof made with that key (RFC 9449 §5), and the
    /// client's address: unknown tokens count against it, and once it is locked they are 429.
    /// (A live token is not throttled: it cannot have been guessed, and a refresh costs no
    /// round trip to the shared throttle.)
    pub async fn refresh_with_proof(
        &self,
        app: &ApplicationId,
        refresh_token: &str,
        dpop_jkt: Option<&str>,
        address: Option<&str>,
    ) -> Result<IssuedSession> {
        if refresh_token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Unauthenticated(BAD_REFRESH));
        }
        let store = self.store(app).await?;
        let hash = KeyHash::of(refresh_token);
        let now = self.clock.now();
        let found = store
            .refresh_with_session(&hash)
            .await?
            .filter(|(r, _, _)| r.expires_at > now);
        let Some((_, session, user)) = found else {
            let attempt = Attempt {
                scope: Realm::Application(app.as_str()),
                account: None,
                address,
            };
            self.credentials.admit(attempt).await?;
            self.credentials
                .failed(attempt)
                .await
                .map_err(unavailable)?;
            return Err(IdentityError::Unauthenticated(BAD_REFRESH));
        };
        if !session.is_live_at(now) || user.disabled {
            return Err(IdentityError::Unauthenticated("the session has ended"));
        }
        if let Some(bound) = &session.dpop_jkt {
            if dpop_jkt != Some(bound.as_str()) {
                return Err(IdentityError::Unauthenticated(
                    "this session is bound to a key: refresh with a DPoP proof made with it",
                ));
            }
        }
        // The successor is derived from the token it replaces: a replay within the grace (a
        // client's double submit) gets the same successor, never another live token.
        let successor = OpaqueToken::derived(
            REFRESH_PREFIX,
            &self.successor_key,
            &format!("{app}:{refresh_token}"),
        );
        let successor_record = RefreshRecord {
            hash: successor.hash,
            session_id: session.id.clone(),
            created_at: now,
            expires_at: session.expires_at,
            rotated_at: None,
        };
        // Recording activity more often than once a minute is not worth a write per refresh.
        let touch = now - session.last_active_at > chrono::Duration::minutes(1);
        let refreshed = Self::event(app, "session.refreshed", &session.id, Some(&user.id));
        let (rotation, _) = self
            .audited_if_written(app, refreshed.clone(), async |outbox| {
                store
                    .rotate_refresh(&hash, &successor_record, now, touch, outbox)
                    .await
            })
            .await?;
        match rotation {
            Rotation::Rotated => {}
            Rotation::AlreadyRotated(at) if now - at <= REFRESH_REUSE_GRACE => {
                // The same successor as the first time, which the rotation stored. (A token
                // rotated by an earlier version had a random successor: this one is added.)
                if store.refresh_with_session(&successor.hash).await?.is_none() {
                    self.audited(app, refreshed, async |outbox| {
                        store.add_refresh(&successor_record, now, outbox).await
                    })
                    .await?;
                }
            }
            Rotation::AlreadyRotated(_) => {
                self.audited(
                    app,
                    Self::event(app, "session.revoked_on_reuse", &session.id, Some(&user.id)),
                    async |outbox| store.revoke_session(&session.id, now, outbox).await,
                )
                .await?;
                tracing::warn!(app = %app, session = %session.id, "refresh token reuse: session revoked");
                return Err(IdentityError::Unauthenticated(
                    "refresh token reuse detected; the session is revoked",
                ));
            }
            Rotation::Unknown => return Err(IdentityError::Unauthenticated(BAD_REFRESH)),
        }
        self.note_active(app, &user.id, now);
        let token = self
            .access_token(app, &*store, &user, &session, now)
            .await?;
        Ok(IssuedSession {
            token_type: token_type(&session),
            id: session.id,
            token: token.0,
            expires_at: token.1,
            refresh_token: successor.plaintext,
            refresh_expires_at: successor_record.expires_at,
        })
    }

    /// Ends the session of an access token.
    pub async fn sign_out(&self, app: &ApplicationId, access_token: Presented<'_>) -> Result<()> {
        let (user, session, _) = self.authenticate(app, access_token).await?;
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "user.signed_out", &session.id, Some(&user.id)),
            async |outbox| {
                store
                    .revoke_session(&session.id, self.clock.now(), outbox)
                    .await
            },
        )
        .await?;
        Ok(())
    }

    /// Verifies an access token and that its session and user are still good: a revoked
    /// session or a disabled user fails at once, not when the token expires.
    pub async fn authenticate(
        &self,
        app: &ApplicationId,
        access_token: Presented<'_>,
    ) -> Result<(User, Session, Claims)> {
        let keys = self.key_set(app).await?;
        let now = self.clock.now();
        let claims = keys
            .verify(
                access_token.token,
                now.timestamp(),
                &self.issuer(app),
                app.as_str(),
            )
            .map_err(|_| IdentityError::Unauthenticated(BAD_TOKEN))?;
        let session_id =
            SessionId::parse(&claims.sid).map_err(|_| IdentityError::Unauthenticated(BAD_TOKEN))?;
        let store = self.store(app).await?;
        let (session, user) = self.live_session(&*store, &session_id, now).await?;
        if user.id.as_str() != claims.sub {
            return Err(IdentityError::Unauthenticated(BAD_TOKEN));
        }
        let bound = claims
            .cnf
            .as_ref()
            .and_then(|c| c.get("jkt"))
            .and_then(serde_json::Value::as_str);
        match (bound, access_token.dpop_jkt) {
            (Some(bound), Some(proof)) if bound == proof => {}
            (Some(_), Some(_)) => {
                return Err(IdentityError::Unauthenticated(
                    "the DPoP proof is not made with the key this token is bound to",
                ))
            }
            (Some(_), None) => {
                return Err(IdentityError::Unauthenticated(
                    "this access token is bound to a key: send it as `Authorization: DPoP` with a proof",
                ))
            }
            (None, Some(_)) => {
                return Err(IdentityError::Unauthenticated(
                    "a DPoP proof came with an access token that is not bound to a key",
                ))
            }
            (None, None) => {}
        }
        Ok((user, session, claims))
    }

    /// Acts in another organization (or none): the session remembers it and a new access token
    /// carries `org` and `orgRole`. Only organizations the user belongs to can be chosen.
    pub async fn switch_organization(
        &self,
        app: &ApplicationId,
        access_token: Presented<'_>,
        input: SwitchOrganization,
    ) -> Result<AccessToken> {
        let (user, mut session, _) = self.authenticate(app, access_token).await?;
        let store = self.store(app).await?;
        if let Some(org) = &input.organization_id {
            store
                .membership_of(org, &user.id)
                .await?
                .ok_or(IdentityError::NotFound("organization"))?;
        }
        self.audited(
            app,
            Self::event(
                app,
                "session.organization_switched",
                &session.id,
                Some(&user.id),
            ),
            async |outbox| {
                store
                    .set_active_organization(&session.id, input.organization_id.as_ref(), outbox)
                    .await
            },
        )
        .await?;
        session.active_organization_id = input.organization_id;
        let (token, expires_at) = self
            .access_token(app, &*store, &user, &session, self.clock.now())
            .await?;
        Ok(AccessToken {
            id: session.id,
            token,
            expires_at,
            active_organization_id: session.active_organization_id,
        })
    }

    /// The signed-in user's own sessions.
    pub async fn my_sessions(
        &self,
        app: &ApplicationId,
        access_token: Presented<'_>,
        page: &PageRequest,
    ) -> Result<Page<Session>> {
        let (user, _, _) = self.authenticate(app, access_token).await?;
        Ok(self.store(app).await?.sessions_of(&user.id, page).await?)
    }

    /// The signed-in user ends one of their own sessions; another user's is `NotFound`.
    pub async fn revoke_my_session(
        &self,
        app: &ApplicationId,
        access_token: Presented<'_>,
        id: &SessionId,
    ) -> Result<()> {
        let (user, _, _) = self.authenticate(app, access_token).await?;
        let store = self.store(app).await?;
        store
            .session(id)
            .await?
            .filter(|s| s.user_id == user.id)
            .ok_or(IdentityError::NotFound("session"))?;
        self.audited(
            app,
            Self::event(app, "session.revoked", id, Some(&user.id)),
            async |outbox| store.revoke_session(id, self.clock.now(), outbox).await,
        )
        .await?;
        Ok(())
    }

    async fn live_session(
        &self,
        store: &dyn AppRepository,
        id: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<(Session, User)> {
        store
            .session_with_user(id)
            .await?
            .filter(|(s, u)| s.is_live_at(now) && !u.disabled)
            .ok_or(IdentityError::Unauthenticated("the session has ended"))
    }

    async fn issue_session(
        &self,
        app: &ApplicationId,
        store: &dyn AppRepository,
        user: &User,
        client: &ClientInfo,
        action: Option<&'static str>,
    ) -> Result<IssuedSession> {
        let now = self.clock.now();
        let session = Session {
            id: SessionId::new(),
            user_id: user.id.clone(),
            ip: client.ip.clone(),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(512).collect()),
            created_at: now,
            last_active_at: now,
            expires_at: now + SESSION_TTL,
            revoked_at: None,
            active_organization_id: None,
            dpop_jkt: client.dpop_jkt.clone(),
        };
        let refresh = OpaqueToken::generate(REFRESH_PREFIX);
        let record = RefreshRecord {
            hash: refresh.hash,
            session_id: session.id.clone(),
            created_at: now,
            expires_at: session.expires_at,
            rotated_at: None,
        };
        match action {
            Some(action) => {
                self.audited(
                    app,
                    Self::event(app, action, &session.id, Some(&user.id)),
                    async |outbox| store.create_session(&session, &record, outbox).await,
                )
                .await?
            }
            // Part of a write that is audited itself (sign-up).
            None => {
                store
                    .create_session(&session, &record, &Outbox::empty())
                    .await?
            }
        }
        let (token, expires_at) = self.access_token(app, store, user, &session, now).await?;
        Ok(IssuedSession {
            token_type: token_type(&session),
            id: session.id,
            token,
            expires_at,
            refresh_token: refresh.plaintext,
            refresh_expires_at: session.expires_at,
        })
    }

    /// Signs an access token for the session, with the organization it acts in (if the user is
    /// still a member of it).
    async fn access_token(
        &self,
        app: &ApplicationId,
        store: &dyn AppRepository,
        user: &User,
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>)> {
        let keys = self.key_set(app).await?;
        let expires_at = now + ACCESS_TOKEN_TTL;
        let membership = match &session.active_organization_id {
            Some(org) => store.membership_of(org, &user.id).await?,
            None => None,
        };
        let claims = Claims {
            iss: self.issuer(app),
            sub: user.id.to_string(),
            aud: app.to_string(),
            sid: session.id.to_string(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            org: membership.as_ref().map(|m| m.organization_id.to_string()),
            org_role: membership.map(|m| m.role),
            cnf: session
                .dpop_jkt
                .as_ref()
                .map(|jkt| serde_json::json!({ "jkt": jkt })),
        };
        let token = keys.sign(&claims).ok_or_else(|| {
            IdentityError::Unavailable("the application has no active signing key".into())
        })?;
        Ok((token, expires_at))
    }
}

impl Identity {
    async fn verify(&self, app: &ApplicationId, password: &str, hash: String) -> Result<bool> {
        let password = password.to_owned();
        self.hashing(app, move || password::verify_password(&password, &hash))
            .await
    }

    async fn dummy(&self, app: &ApplicationId, password: &str) -> Result<()> {
        let password = password.to_owned();
        self.hashing(app, move || password::verify_against_dummy(&password))
            .await
    }
}
