//! Workload identity federation: a CI job or a Kubernetes service account exchanges a token
//! that an issuer its workspace trusts signed (a JWT with the registered audience and claims)
//! for a short-lived principal access token, and reads its secrets without any stored secret.
//!
//! The issuer's signing keys (its JWK Set) are fetched through a [`KeySetSource`] (the server's
//! outbound HTTP, which refuses private addresses unless the operator allows them) and cached.
//! Principal access tokens (`pat_…`) are stateless: the principal and expiry, MACed under a key
//! derived from the master key; a deleted principal's tokens stop at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use authsome_domain::event::{DomainEvent, EventActor, Outcome};
use authsome_domain::id::{PrincipalId, TrustedIssuerId, WorkspaceId};
use authsome_domain::tenancy::{Actor, Permission};
use authsome_domain::vault::{Principal, TrustedIssuer};
use authsome_storage::StorageError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::{ControlError, ControlPlane, Result};

/// How long a principal access token lives.
pub const PRINCIPAL_TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(15);
/// How long an issuer's key set is used before it is fetched again.
const KEY_SET_TTL: Duration = Duration::from_secs(300);
/// A key id the cached set lacks makes it fetched again, at most this often (keys rotate).
const KEY_SET_REFRESH: Duration = Duration::from_secs(30);
/// The most registrations of one issuer a token is tried against.
const MAX_CANDIDATES: u32 = 100;
/// The longest assertion read.
const MAX_ASSERTION: usize = 16 * 1024;
/// What an assertion may be signed with (never `none` or a MAC).
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Fetches an issuer's JWK Set document (the server's outbound HTTP).
#[async_trait]
pub trait KeySetSource: Send + Sync {
    /// The body of `uri`, or why it could not be had (no secret in it).
    async fn fetch(&self, uri: &str) -> std::result::Result<String, String>;
}

#[derive(Default)]
pub(crate) struct KeySetCache {
    /// Each set with when it was fetched (by the control plane's clock).
    sets: Mutex<HashMap<String, (DateTime<Utc>, JwkSet)>>,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTrustedIssuer {
    /// The tokens' `iss`, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Where the issuer publishes its signing keys (`https://…`).
    pub jwks_uri: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// The principal the tokens act as.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub principal_id: PrincipalId,
    /// Claims the tokens must carry with exactly these values, e.g.
    /// `{"sub": "repo:acme/api:ref:refs/heads/main"}`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchange {
    /// A JWT signed by a trusted issuer.
    pub assertion: String,
}

/// A principal access token: `Authorization: Bearer <accessToken>` on the secrets routes.
#[derive(serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PrincipalToken {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub principal_id: PrincipalId,
}

fn refused(why: &'static str) -> ControlError {
    ControlError::Unauthenticated(why)
}

/// A URL an issuer may be reached at: `https://`, or `http://` for a host the operator allows
/// (checked again, with its addresses, when it is fetched).
fn check_url(field: &'static str, url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|_| {
        authsome_domain::ValidationError::new(field, "must be an absolute http(s) URL")
    })?;
    let ok = matches!(parsed.scheme(), "https" | "http")
        && parsed.host_str().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && url.len() <= 2048;
    if ok {
        Ok(())
    } else {
        Err(authsome_domain::ValidationError::new(field, "must be an absolute http(s) URL").into())
    }
}

/// The unverified claims of a JWT: only to find which registrations to verify it against.
fn peek_claims(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    match serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

impl ControlPlane {
    fn principal_token_key(&self) -> Result<[u8; 32]> {
        Ok(self
            .master_key
            .as_deref()
            .ok_or_else(|| ControlError::Unavailable("no master key".into()))?
            .derive(b"authsome:principal-token:v1"))
    }

    pub async fn create_trusted_issuer(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewTrustedIssuer,
    ) -> Result<TrustedIssuer> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        check_url("issuer", &input.issuer)?;
        check_url("jwksUri", &input.jwks_uri)?;
        if input.audience.is_empty() || input.audience.len() > 512 {
            return Err(authsome_domain::ValidationError::new(
                "audience",
                "must be 1-512 characters",
            )
            .into());
        }
        if input.claims.len() > 16
            || input
                .claims
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 512)
        {
            return Err(authsome_domain::ValidationError::new(
                "claims",
                "must be at most 16 names of 1-128 characters with values of at most 512",
            )
            .into());
        }
        let trusted = TrustedIssuer {
            id: TrustedIssuerId::new(),
            workspace_id: ws.clone(),
            issuer: input.issuer,
            jwks_uri: input.jwks_uri,
            audience: input.audience,
            principal_id: input.principal_id,
            claims: input.claims,
            created_at: self.clock.now(),
        };
        let event = DomainEvent::new("vault.trusted_issuer.created")
            .workspace(ws)
            .target(&trusted.id)
            .change("issuer", trusted.issuer.as_str())
            .change("audience", trusted.audience.as_str())
            .change("principal", trusted.principal_id.as_str())
            .change(
                "claims",
                serde_json::to_value(&trusted.claims).unwrap_or_default(),
            );
        self.audited(Some(actor), vec![event], async |outbox| {
            match self.store.insert_trusted_issuer(&trusted, outbox).await {
                Err(StorageError::NotFound) => Err(ControlError::NotFound("principal")),
                other => other.map_err(ControlError::from),
            }
        })
        .await?;
        Ok(trusted)
    }

    pub async fn trusted_issuers(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
    ) -> Result<Vec<TrustedIssuer>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.trusted_issuers(ws).await?)
    }

    pub async fn delete_trusted_issuer(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &TrustedIssuerId,
    ) -> Result<()> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let event = DomainEvent::new("vault.trusted_issuer.deleted")
            .workspace(ws)
            .target(id);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .delete_trusted_issuer(ws, id, outbox)
                .await
                .map_err(crate::gone("trusted issuer"))
        })
        .await
    }

    /// The issuer's key with `kid`, from the cache or fetched (once more when the cached set
    /// lacks it and is older than [`KEY_SET_REFRESH`]).
    async fn issuer_key(
        &self,
        uri: &str,
        kid: Option<&str>,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>> {
        let source = self.key_sets.as_ref().ok_or_else(|| {
            ControlError::Unavailable("no outbound HTTP for identity issuers".into())
        })?;
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let cached = self
            .key_set_cache
            .sets
            .lock()
            .ok()
            .and_then(|sets| sets.get(uri).cloned());
        let now = self.clock.now();
        if let Some((fetched, set)) = &cached {
            let age = (now - *fetched).to_std().unwrap_or_default();
            if age < KEY_SET_TTL {
                if let Some(key) = find(set) {
                    return Ok(Some(key));
                }
                if age < KEY_SET_REFRESH {
                    return Ok(None);
                }
            }
        }
        let body = source.fetch(uri).await.map_err(|why| {
            tracing::warn!(uri, error = %why, "identity issuer's key set unavailable");
            ControlError::Unavailable("the issuer's signing keys could not be fetched".into())
        })?;
        let set: JwkSet = serde_json::from_str(&body).map_err(|_| {
            ControlError::Unavailable("the issuer's signing keys are not a JWK Set".into())
        })?;
        let key = find(&set);
        if let Ok(mut sets) = self.key_set_cache.sets.lock() {
            if sets.len() > 1000 {
                sets.clear();
            }
            sets.insert(uri.to_owned(), (now, set));
        }
        Ok(key)
    }

    /// Exchanges an assertion of a trusted issuer for a principal access token. Exactly one
    /// registration must accept it: signature by the issuer's published key, `iss`, `aud`,
    /// `exp`/`nbf` and every registered claim. Refused assertions count against the client's
    /// `address` like failed logins (429 once it is locked, before any work).
    pub async fn exchange_principal_token(
        &self,
        assertion: &str,
        address: Option<&str>,
    ) -> Result<PrincipalToken> {
        use crate::throttle::{Attempt, Realm};
        let attempt = Attempt {
            scope: Realm::ControlPlane,
            account: None,
            address,
        };
        self.credentials.admit(attempt).await?;
        let exchanged = self.exchange(assertion).await;
        if let Err(ControlError::Unauthenticated(_)) = &exchanged {
            if let Err(e) = self.credentials.failed(attempt).await {
                tracing::error!(error = %e, "token exchange refused: throttle state unavailable");
                return Err(ControlError::Unavailable("retry shortly".into()));
            }
        }
        exchanged
    }

    async fn exchange(&self, assertion: &str) -> Result<PrincipalToken> {
        if assertion.len() > MAX_ASSERTION {
            return Err(refused("the assertion is too long"));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| refused("the assertion is not a JWT"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(refused("the assertion's algorithm is not accepted"));
        }
        let issuer = peek_claims(assertion)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or(refused("the assertion has no issuer"))?;
        let candidates = self
            .store
            .trusted_by_issuer(&issuer, MAX_CANDIDATES)
            .await?;
        if candidates.is_empty() {
            return Err(refused("the assertion's issuer is not trusted"));
        }
        let mut accepted: Vec<(&TrustedIssuer, serde_json::Map<String, Value>)> = Vec::new();
        for candidate in &candidates {
            let Some(jwk) = self
                .issuer_key(&candidate.jwks_uri, header.kid.as_deref())
                .await?
            else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let mut validation = Validation::new(header.alg);
            validation.set_audience(&[candidate.audience.as_str()]);
            validation.set_issuer(&[candidate.issuer.as_str()]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.leeway = 30;
            let Ok(data) = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                assertion,
                &key,
                &validation,
            ) else {
                continue;
            };
            let claims = data.claims;
            let matches = candidate
                .claims
                .iter()
                .all(|(name, value)| claims.get(name).and_then(Value::as_str) == Some(value));
            if matches {
                accepted.push((candidate, claims));
            } else {
                self.events.emit(
                    DomainEvent::new("vault.principal.token_refused")
                        .workspace(&candidate.workspace_id)
                        .target(&candidate.principal_id)
                        .outcome(Outcome::Failure)
                        .change("issuer", candidate.issuer.as_str())
                        .change("reason", "a registered claim does not match")
                        .change(
                            "sub",
                            claims.get("sub").and_then(Value::as_str).unwrap_or(""),
                        )
                        .actor(EventActor::Principal(candidate.principal_id.clone())),
                );
            }
        }
        let (trusted, claims) = match accepted.as_slice() {
            [one] => one,
            [] => return Err(refused("no trusted issuer accepts the assertion")),
            _ => return Err(refused("the assertion matches several registrations")),
        };
        let principal = self
            .store
            .principal(&trusted.workspace_id, &trusted.principal_id)
            .await?
            .ok_or(refused("no trusted issuer accepts the assertion"))?;
        let expires_at = self.clock.now() + PRINCIPAL_TOKEN_TTL;
        let payload = serde_json::json!({
            "p": principal.id.as_str(),
            "e": expires_at.timestamp(),
            "n": B64URL.encode(rand::random::<[u8; 12]>()),
        })
        .to_string();
        let payload = B64URL.encode(payload);
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.principal_token_key()?)
            .map_err(|_| ControlError::Unavailable("no token key".into()))?;
        mac.update(payload.as_bytes());
        let tag = B64URL.encode(mac.finalize().into_bytes());
        self.events.emit(
            DomainEvent::new("vault.principal.token_issued")
                .workspace(&principal.workspace_id)
                .target(&principal.id)
                .change("issuer", trusted.issuer.as_str())
                .change("trustedIssuer", trusted.id.as_str())
                .change(
                    "sub",
                    claims.get("sub").and_then(Value::as_str).unwrap_or(""),
                )
                .actor(EventActor::Principal(principal.id.clone())),
        );
        Ok(PrincipalToken {
            access_token: format!("pat_{payload}.{tag}"),
            expires_at,
            principal_id: principal.id,
        })
    }

    /// The principal of an access token from [`ControlPlane::exchange_principal_token`]: its
    /// MAC (constant time), its expiry, and the principal still existing.
    pub async fn authenticate_principal_token(&self, token: &str) -> Result<Principal> {
        let rest = token
            .strip_prefix("pat_")
            .ok_or(refused("not a principal access token"))?;
        let (payload, tag) = rest
            .split_once('.')
            .ok_or(refused("malformed principal access token"))?;
        let tag = B64URL
            .decode(tag)
            .map_err(|_| refused("malformed principal access token"))?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.principal_token_key()?)
            .map_err(|_| ControlError::Unavailable("no token key".into()))?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| refused("invalid principal access token"))?;
        let claims: Value = B64URL
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(refused("malformed principal access token"))?;
        let expires = claims["e"].as_i64().unwrap_or(0);
        if expires <= self.clock.now().timestamp() {
            return Err(refused("the principal access token has expired"));
        }
        let id = claims["p"]
            .as_str()
            .and_then(|p| PrincipalId::parse(p).ok())
            .ok_or(refused("malformed principal access token"))?;
        self.cached_principal(&id)
            .await?
            .map(|p| Principal::clone(&p))
            .ok_or(refused("the principal no longer exists"))
    }
}
