//! The customer API's one entry point. Every request to an application's `/v1/{appId}/…`,
//! served in process, forwarded by a gateway or taken on the gateway's own path, is admitted
//! here and only here: the credential it presents verified against the application in its path
//! (a key, a request signature, or a gateway's assertion), the workspace's standing (suspended
//! 403, past due 402), the application's state, the key's rate limit, the monthly quota, and
//! metering. The answer is a typed [`Refusal`] or an [`Admitted`] request.
//!
//! An admin route needs more: [`ControlPlane::admin_access`] turns an admitted request into an
//! [`AdminAccess`] for one [`Scope`], which only a secret key holding that scope gets, and which
//! the identity engine's admin operations take by type: a route cannot reach one without it.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use authsome_domain::event::{DomainEvent, EventActor, Outcome};
use authsome_domain::id::ApplicationId;
use authsome_domain::keys::KeyKind;
use authsome_domain::shared_state::app_scoped;
use authsome_domain::tenancy::{
    ApiKey, AppStatus, Application, KeyScope, PaymentStatus, Workspace, WorkspaceStatus,
};
use authsome_gateway::{Decision, Limit};

use crate::metering::MeteredRequest;
use crate::{ConnectionMemo, ControlError, ControlPlane};

/// How long a used request signature is remembered: its whole validity window (±300 s) and a
/// margin.
const SIGNATURE_MEMORY: Duration = Duration::from_secs(660);

/// The credential a customer-API request presents.
pub enum Presented<'a> {
    /// A publishable or secret key (`Authorization: Bearer`, `X-Publishable-Key`).
    Key(&'a str),
    /// A request signed with a secret key (CONTRACT.md: `X-Api-Key-Id`, `X-Timestamp`,
    /// `X-Signature`).
    Signed(SignedRequest<'a>),
    /// A request a gateway of this deployment admitted, under its verified assertion: the hash
    /// of the key it verified. The key is looked up again only to refuse one revoked since;
    /// limits and metering were the gateway's.
    Forwarded { key_hash: &'a str },
    /// No credential at all.
    Nothing,
}

/// A signed request's headers and what its signature covers.
pub struct SignedRequest<'a> {
    pub key_id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path_with_query: &'a str,
    /// Hex SHA-256 of the body.
    pub body_digest: &'a str,
}

/// A request to admit.
pub struct Admission<'a> {
    /// The application named in the path.
    pub application: &'a str,
    pub presented: Presented<'a>,
    /// Only which application and key this is (`GET /v1/{appId}`), which an application that
    /// is not serving yet still answers.
    pub identify_only: bool,
    /// The client's address: a publishable key (which is public) is limited per key and
    /// address, so that no one can keep an application's frontend at 429 for everyone.
    pub client: Option<&'a str>,
}

/// A publishable key's traffic from all addresses together may use this many times the
/// per-key rate: the application-wide ceiling above the per-address limits.
pub const PUBLISHABLE_CEILING_FACTOR: u32 = 20;

/// An admitted request: its application and key, and the rate limit's numbers for the response
/// headers (none when a gateway applied it, or no limiter is configured).
#[derive(Debug, Clone)]
pub struct Admitted {
    pub application: Arc<Application>,
    pub key: Arc<ApiKey>,
    pub rate_limit: Option<Decision>,
}

/// Why a request was not admitted, with what was learnt before (for the response's headers
/// and the request's log).
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    pub application: Option<Arc<Application>>,
    pub key: Option<Arc<ApiKey>>,
    pub rate_limit: Option<Decision>,
}

#[derive(Debug)]
pub enum Reason {
    /// 401: no credential, or one that is not this application's.
    Unauthenticated(String),
    /// 404: no such application (or it is being deleted).
    NotFound(&'static str),
    /// 403: the workspace or the application is suspended, or the key may not do this.
    Forbidden(String),
    /// 402: the workspace's payment is past due.
    PaymentRequired(String),
    /// 429: the key's rate limit or the month's quota.
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: the application is still being provisioned, or a check cannot be made now.
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// Anything else (storage).
    Failed(ControlError),
}

impl Refusal {
    fn new(reason: Reason) -> Self {
        Self {
            reason,
            application: None,
            key: None,
            rate_limit: None,
        }
    }

    fn of(reason: Reason, application: &Arc<Application>, key: &Arc<ApiKey>) -> Self {
        Self {
            reason,
            application: Some(application.clone()),
            key: Some(key.clone()),
            rate_limit: None,
        }
    }
}

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Self {
        Self::new(match e {
            ControlError::Unauthenticated(m) => Reason::Unauthenticated(m.to_owned()),
            ControlError::NotFound(what) => Reason::NotFound(what),
            ControlError::Forbidden(m) => Reason::Forbidden(m),
            ControlError::PaymentRequired(m) => Reason::PaymentRequired(m),
            ControlError::RateLimited { retry_after_secs } => Reason::TooManyRequests {
                message: format!("too many attempts; retry in {retry_after_secs} s"),
                retry_after_secs,
            },
            ControlError::Unavailable(message) => Reason::Unavailable {
                message,
                retry_after_secs: 5,
            },
            other => Reason::Failed(other),
        })
    }
}

/// One limiter cell's decision; `None` when the limiter cannot answer (logged).
async fn check(
    limiter: &dyn authsome_gateway::RateLimiter,
    cell: &str,
    per_second: u32,
) -> Option<Decision> {
    let limit = Limit { per_second };
    let checked = match limiter.check_now(cell, limit) {
        Some(now) => now,
        None => limiter.check(cell, limit).await,
    };
    match checked {
        Ok(decision) => Some(decision),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; request allowed");
            None
        }
    }
}

/// A key scope an admin operation needs, as a type.
pub trait Scope: private::Sealed {
    const SCOPE: KeyScope;
}

mod private {
    pub trait Sealed {}
}

macro_rules! scopes {
    ($($name:ident),*) => {$(
        #[doc = concat!("The `", stringify!($name), "` scope.")]
        pub struct $name;
        impl private::Sealed for $name {}
        impl Scope for $name {
            const SCOPE: KeyScope = KeyScope::$name;
        }
    )*};
}

scopes!(
    UsersRead,
    UsersWrite,
    OrganizationsRead,
    OrganizationsWrite,
    SessionsRead,
    SessionsWrite
);

/// Proof that a request was admitted with its application's secret key holding scope `S`:
/// what the identity engine's admin operations take. Only [`ControlPlane::admin_access`] makes
/// one.
pub struct AdminAccess<S: Scope> {
    application: Arc<Application>,
    _scope: PhantomData<S>,
}

impl<S: Scope> AdminAccess<S> {
    /// The application the access is to.
    pub fn application(&self) -> &ApplicationId {
        &self.application.id
    }
}

impl ControlPlane {
    /// The customer API's entry point: the request admitted, or why not. `memo` (the gateway's
    /// own path) keeps what a connection's previous request resolved.
    pub async fn admit(
        &self,
        request: Admission<'_>,
        memo: Option<&mut ConnectionMemo>,
    ) -> Result<Admitted, Refusal> {
        let app_id = request.application;
        // The request's time: the key's expiry (precise: a key rolled with no grace ends now),
        // its last use, the hour it is counted in.
        let now = self.clock.now();
        let (application, key) = match request.presented {
            Presented::Key(credential) => match memo {
                Some(memo) => self.memo_app_key(memo, app_id, credential, now).await?,
                None => self.verify_app_key_at(app_id, credential, now).await?,
            },
            Presented::Signed(signed) => {
                let (application, key) = self
                    .verify_signed_request(
                        app_id,
                        signed.key_id,
                        signed.timestamp,
                        signed.signature,
                        signed.method,
                        signed.path_with_query,
                        signed.body_digest,
                    )
                    .await?;
                self.first_use_of_signature(&application, &key, signed.signature)
                    .await?;
                (application, key)
            }
            Presented::Forwarded { key_hash } => {
                let (application, key) = self.verify_forwarded_key(app_id, key_hash).await?;
                self.meter.record_use(&key.id, now);
                let workspace = self.workspace_view(&application.workspace_id).await?;
                standing(&workspace).map_err(|r| Refusal::of(r, &application, &key))?;
                return Ok(Admitted {
                    application,
                    key,
                    rate_limit: None,
                });
            }
            Presented::Nothing => return Err(Refusal::new(Reason::Unauthenticated(
                "missing API key (Authorization: Bearer, X-Publishable-Key or a signed request)"
                    .into(),
            ))),
        };
        let refused = |reason| {
            // A verified key was used, whatever the answer.
            self.meter.record_use(&key.id, now);
            Refusal::of(reason, &application, &key)
        };
        let workspace = self
            .workspace_view(&application.workspace_id)
            .await
            .map_err(|e| refused(Refusal::from(e).reason))?;
        standing(&workspace).map_err(refused)?;
        if !request.identify_only {
            serving(&application).map_err(refused)?;
        }
        let rate_limit = match self
            .limit(&application, &key, &workspace, request.client)
            .await
        {
            Ok(decision) => decision,
            Err(refusal) => {
                self.meter.record_use(&key.id, now);
                return Err(refusal);
            }
        };
        if !self.metered() {
            self.meter.record_use(&key.id, now);
        } else {
            // Notes the key's use too: one lookup for both.
            let quota = workspace.requests_per_month();
            let metered = MeteredRequest {
                app: &application.id,
                workspace: &application.workspace_id,
                key: &key.id,
                at: now,
                quota,
            };
            let within = match self.meter_request(&metered) {
                Some(within) => within,
                None => self
                    .meter_request_after_reading(&metered)
                    .await
                    .map_err(|e| refused(Refusal::from(e).reason))?,
            };
            if !within {
                let (_, next_month) = crate::month_bounds(now);
                let wait = (next_month - now).num_seconds().max(1) as u64;
                return Err(Refusal {
                    rate_limit,
                    ..Refusal::of(
                        Reason::TooManyRequests {
                            message: format!(
                                "monthly quota of {} requests exceeded",
                                quota.unwrap_or_default()
                            ),
                            retry_after_secs: wait,
                        },
                        &application,
                        &key,
                    )
                });
            }
        }
        Ok(Admitted {
            application,
            key,
            rate_limit,
        })
    }

    /// The key's rate limit, from its workspace's plan: per secret key; per publishable key
    /// and client address, under an application-wide ceiling for all publishable traffic. A
    /// shared limiter that cannot answer lets the request through (logged): limits resume with
    /// it.
    async fn limit(
        &self,
        application: &Arc<Application>,
        key: &Arc<ApiKey>,
        workspace: &Workspace,
        client: Option<&str>,
    ) -> Result<Option<Decision>, Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        let per_key = workspace.requests_per_second_per_key();
        let app = application.id.as_str();
        let decision = match (key.kind, client) {
            (KeyKind::Publishable, Some(address)) => {
                let address = authsome_domain::shared_state::client_bucket(address);
                let mut cell = String::with_capacity(key.id.as_str().len() + 1 + address.len());
                cell.push_str(key.id.as_str());
                cell.push('/');
                cell.push_str(&address);
                let own = check(&**limiter, &app_scoped(app, "ratelimit", &cell), per_key).await;
                match own {
                    Some(d) if d.retry_after.is_none() => {
                        let ceiling = per_key.saturating_mul(PUBLISHABLE_CEILING_FACTOR);
                        let all = app_scoped(app, "ratelimit-publishable", "");
                        match check(&**limiter, &all, ceiling).await {
                            Some(c) if c.retry_after.is_some() => Some(c),
                            _ => Some(d),
                        }
                    }
                    other => other,
                }
            }
            _ => {
                check(
                    &**limiter,
                    &app_scoped(app, "ratelimit", key.id.as_str()),
                    per_key,
                )
                .await
            }
        };
        let Some(decision) = decision else {
            return Ok(None);
        };
        match decision.retry_after {
            None => Ok(Some(decision)),
            Some(wait) => Err(Refusal {
                rate_limit: Some(decision),
                ..Refusal::of(
                    Reason::TooManyRequests {
                        message: format!(
                            "rate limit of {} requests per second exceeded",
                            decision.limit
                        ),
                        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    },
                    application,
                    key,
                )
            }),
        }
    }

    /// Each signature is accepted once, on any replica; without the replay cache, refused.
    async fn first_use_of_signature(
        &self,
        application: &Arc<Application>,
        key: &Arc<ApiKey>,
        signature: &str,
    ) -> Result<(), Refusal> {
        let Some(replay) = &self.replay else {
            return Err(Refusal::of(
                Reason::Unavailable {
                    message: "request signatures cannot be checked right now".into(),
                    retry_after_secs: 1,
                },
                application,
                key,
            ));
        };
        let memo = app_scoped(
            application.id.as_str(),
            "replay-signature",
            &format!("{}:{}", key.id, signature.trim().to_ascii_lowercase()),
        );
        match replay.first_use(&memo, SIGNATURE_MEMORY).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::of(
                Reason::Unauthenticated("this request signature was already used".into()),
                application,
                key,
            )),
            Err(e) => {
                tracing::error!(error = %e, "replay cache unavailable; signed request refused");
                Err(Refusal::of(
                    Reason::Unavailable {
                        message: "request signatures cannot be checked right now".into(),
                        retry_after_secs: 1,
                    },
                    application,
                    key,
                ))
            }
        }
    }

    /// The entry point of the routes reached without a key (JWKS, discovery, access-token
    /// routes): the application in good standing and serving.
    pub async fn admit_public(
        &self,
        application: Arc<Application>,
    ) -> Result<Arc<Application>, Refusal> {
        let reject = |reason| Refusal {
            application: Some(application.clone()),
            ..Refusal::new(reason)
        };
        let workspace = self
            .workspace_view(&application.workspace_id)
            .await
            .map_err(|e| reject(Refusal::from(e).reason))?;
        standing(&workspace).map_err(reject)?;
        serving(&application).map_err(reject)?;
        Ok(application)
    }

    /// An admin operation's access: the admitted key must be the application's secret key and
    /// hold the scope. A refusal is audited as a permission denial.
    pub fn admin_access<S: Scope>(&self, admitted: &Admitted) -> Result<AdminAccess<S>, Refusal> {
        let key = &admitted.key;
        let refusal = if key.kind != KeyKind::Secret {
            "this route needs the application's secret key".to_owned()
        } else if !key.has_scope(S::SCOPE) {
            format!("this key lacks the `{}` scope", S::SCOPE.as_str())
        } else {
            return Ok(AdminAccess {
                application: admitted.application.clone(),
                _scope: PhantomData,
            });
        };
        let mut denied = DomainEvent::new("permission.denied")
            .workspace(&key.workspace_id)
            .actor(EventActor::Key(key.id.clone()))
            .outcome(Outcome::Denied)
            .change("scope", S::SCOPE.as_str());
        if let Some(app) = &key.application_id {
            denied = denied.application(app);
        }
        self.events.emit(denied);
        Err(Refusal::of(
            Reason::Forbidden(refusal),
            &admitted.application,
            key,
        ))
    }
}

/// A suspended workspace is closed (403); one past due on payment gets 402.
fn standing(workspace: &Workspace) -> Result<(), Reason> {
    if workspace.status == WorkspaceStatus::Suspended {
        return Err(Reason::Forbidden("the workspace is suspended".into()));
    }
    if workspace.payment_status == PaymentStatus::PastDue {
        return Err(Reason::PaymentRequired(
            "the workspace's payment is past due".into(),
        ));
    }
    Ok(())
}

/// Only an active application serves its customer API.
fn serving(app: &Application) -> Result<(), Reason> {
    match app.status {
        AppStatus::Active => Ok(()),
        AppStatus::Provisioning => Err(Reason::Unavailable {
            message: "the application is still being provisioned".into(),
            retry_after_secs: 5,
        }),
        AppStatus::Suspended => Err(Reason::Forbidden("the application is suspended".into())),
        AppStatus::Deleting => Err(Reason::NotFound("application")),
    }
}
