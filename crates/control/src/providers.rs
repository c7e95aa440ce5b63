//! Provider credentials: per workspace and provider, the mode its credential comes in
//! (`hosted`, `kms`, `oauth`, `api_key`; see `authsome_domain::provider`) and the one resolver
//! that turns any of them into the credential AuthSome acts with.
//!
//! The resolver caches by the rules of `authsome_vault::resolver` (a lifetime per mode, in
//! process, keyed by the configuration's revision so a change is never served stale), retries
//! a source that could not answer with backoff and jitter, and keeps a circuit breaker per
//! configuration. Every resolution is a metric (mode, outcome, latency) and an audit event
//! (never the value). Outside calls go through [`CredentialSources`] (the server's outbound
//! HTTP: AWS KMS, OAuth token endpoints, customers' endpoints), which this module never sees
//! past.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use authsome_domain::clock::CoarseInstant;
use authsome_domain::event::{DomainEvent, Outcome};
use authsome_domain::id::WorkspaceId;
use authsome_domain::provider::{
    kms_context, CredentialMode, CredentialSource, Provider, ProviderConfig,
};
use authsome_domain::tenancy::{Actor, Permission};
use authsome_domain::ValidationError;
use authsome_storage::StorageError;
use authsome_vault::resolver::{self, Admission, Breaker};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::vault::{PutSecret, VaultActor};
use crate::{ControlError, ControlPlane, Result};

/// Why a credential source gave no credential. Messages never carry a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source answered and refused (KMS `AccessDeniedException`, OAuth `invalid_grant`, a
    /// 4xx): trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// The source could not be reached or failed (a timeout, a 5xx, a 429): retried.
    #[error("{0}")]
    Unavailable(String),
}

/// A customer's KMS key: an ARN (its region used), or a key id or alias with a region (none:
/// the deployment's).
#[derive(Debug, Clone, Copy)]
pub struct KmsKey<'a> {
    pub key_id: &'a str,
    pub region: Option<&'a str>,
}

/// An RFC 6749 §6 refresh grant.
pub struct RefreshRequest<'a> {
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    pub refresh_token: &'a str,
    pub scope: Option<&'a str>,
}

/// A token endpoint's answer.
pub struct TokenGrant {
    pub access_token: Zeroizing<String>,
    pub expires_in: Option<Duration>,
    /// A new refresh token, when the server rotates them: it replaces the stored one.
    pub refresh_token: Option<Zeroizing<String>>,
}

/// A signed request for a credential to a customer's endpoint (`api_key` mode).
pub struct FetchRequest<'a> {
    pub url: &'a str,
    /// The Standard Webhooks secret (`whsec_…`) the request is signed with.
    pub signing_secret: &'a str,
    pub workspace: &'a WorkspaceId,
    pub provider: Provider,
}

/// What the resolver calls outside the deployment (the server's outbound HTTP).
#[async_trait]
pub trait CredentialSources: Send + Sync {
    /// KMS `Encrypt` of `plaintext` under `key` with `context` as the encryption context.
    async fn kms_encrypt(
        &self,
        key: KmsKey<'_>,
        context: &BTreeMap<String, String>,
        plaintext: &[u8],
    ) -> std::result::Result<Vec<u8>, SourceError>;
    /// KMS `Decrypt` of `ciphertext` (made under `key` with `context`).
    async fn kms_decrypt(
        &self,
        key: KmsKey<'_>,
        context: &BTreeMap<String, String>,
        ciphertext: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, SourceError>;
    /// Exchanges a refresh token at a token endpoint.
    async fn refresh_token(
        &self,
        request: &RefreshRequest<'_>,
    ) -> std::result::Result<TokenGrant, SourceError>;
    /// Fetches a credential from a customer's endpoint.
    async fn fetch_credential(
        &self,
        request: &FetchRequest<'_>,
    ) -> std::result::Result<Zeroizing<String>, SourceError>;
}

/// `PUT …/providers/{provider}`.
#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutProvider {
    pub mode: CredentialMode,
    /// The mode's settings. `hosted`: `{vaultId, secret}`; `kms`: `{keyId, region?}`;
    /// `oauth`: `{tokenUrl, clientId, clientSecretName?, scope?, vaultId, secret}`;
    /// `api_key`: `{url, vaultId, secret}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// The credential, when it changes: `hosted`, the credential (written as a new version of
    /// the secret); `kms`, the credential (encrypted with KMS at once, never stored in the
    /// clear); `oauth`, the refresh token; `api_key`, the signing secret (`whsec_…`; made for
    /// you when the secret does not exist yet).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 16384))]
    pub credential: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for PutProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutProvider")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A provider's configuration: never its credential.
#[derive(serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    pub provider: Provider,
    pub mode: CredentialMode,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: BTreeMap<String, Value>,
    /// Grows with every change.
    pub revision: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `api_key` mode, once, when AuthSome made it: the secret your endpoint verifies
    /// requests with (Standard Webhooks). Kept in the configured vault secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub signing_secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for ProviderView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderView")
            .field("provider", &self.provider)
            .field("mode", &self.mode)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl From<ProviderConfig> for ProviderView {
    fn from(c: ProviderConfig) -> Self {
        Self {
            provider: c.provider,
            mode: c.mode,
            config: c.config,
            revision: c.revision,
            created_at: c.created_at,
            updated_at: c.updated_at,
            signing_secret: None,
        }
    }
}

/// What resolving a provider's credential found; never the credential.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProviderTest {
    pub provider: Provider,
    pub mode: CredentialMode,
    /// Whether a credential was resolved.
    pub ok: bool,
    /// Served from the resolver's cache.
    pub cached: bool,
    /// How long the resolution took.
    pub latency_ms: u64,
    /// Until when the resolver will reuse it (none: resolved anew each time).
    pub cached_until: Option<DateTime<Utc>>,
    /// Why it failed (the source's answer, never a credential).
    pub error: Option<String>,
}

/// Why the resolver has no credential.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the provider's credential source failed repeatedly; next attempt in {0:?}")]
    CircuitOpen(Duration),
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl From<StorageError> for ResolveError {
    fn from(e: StorageError) -> Self {
        Self::Control(e.into())
    }
}

/// A resolved credential.
pub struct Resolved {
    pub value: Zeroizing<String>,
    pub cached: bool,
    pub cached_until: Option<DateTime<Utc>>,
}

struct Cached {
    revision: u32,
    value: Zeroizing<String>,
    until: CoarseInstant,
    until_wall: DateTime<Utc>,
}

/// The resolver's state in this process: resolved credentials and circuits, per workspace and
/// provider.
#[derive(Default)]
pub(crate) struct ResolverState {
    cache: Mutex<HashMap<(WorkspaceId, Provider), Cached>>,
    breakers: Mutex<HashMap<(WorkspaceId, Provider), Breaker>>,
}

impl ResolverState {
    fn forget(&self, ws: &WorkspaceId, provider: Provider) {
        let key = (ws.clone(), provider);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

fn provider_event(action: &'static str, ws: &WorkspaceId, provider: Provider) -> DomainEvent {
    DomainEvent::new(action)
        .workspace(ws)
        .target(provider.as_str())
        .change("provider", provider.as_str())
}

fn parse_provider(provider: &str) -> Result<Provider> {
    Provider::parse(provider).ok_or(ControlError::NotFound("provider"))
}

/// A fresh Standard Webhooks signing secret.
pub(crate) fn new_signing_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, bytes.as_mut());
    Zeroizing::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
    ))
}

impl ControlPlane {
    /// The outbound sources, or `Unavailable` when the deployment has none.
    pub(crate) fn sources(&self) -> std::result::Result<&dyn CredentialSources, SourceError> {
        self.credential_sources.as_deref().ok_or_else(|| {
            SourceError::Unavailable("this deployment makes no outbound calls".into())
        })
    }

    pub async fn providers(&self, actor: &Actor, ws: &WorkspaceId) -> Result<Vec<ProviderView>> {
        self.workspace_for(actor, ws, Permission::ProvidersRead)
            .await?;
        Ok(self
            .store
            .providers(ws)
            .await?
            .into_iter()
            .map(ProviderView::from)
            .collect())
    }

    pub async fn provider_config(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        provider: &str,
    ) -> Result<ProviderView> {
        self.workspace_for(actor, ws, Permission::ProvidersRead)
            .await?;
        let provider = parse_provider(provider)?;
        self.store
            .provider(ws, provider)
            .await?
            .map(ProviderView::from)
            .ok_or(ControlError::NotFound("provider"))
    }

    /// Configures how `provider`'s credential is had; the credential, when given, goes where
    /// the mode keeps it (a vault secret, or KMS ciphertext) and never into the configuration.
    /// Whether it was created.
    pub async fn put_provider(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        provider: &str,
        input: PutProvider,
    ) -> Result<(ProviderView, bool)> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::ProvidersManage)
            .await?;
        workspace.may_write()?;
        let provider = parse_provider(provider)?;
        let source = CredentialSource::parse(input.mode, &input.config)?;
        if let Some(c) = &input.credential {
            authsome_vault::rules::check_value(c)
                .map_err(|e| ValidationError::new("credential", e.message))?;
        }
        let existing = self.store.provider(ws, provider).await?;
        let mut ciphertext = None;
        let mut signing_secret = None;
        match &source {
            CredentialSource::Kms { key_id, region } => {
                ciphertext = match (&input.credential, &existing) {
                    (Some(credential), _) => Some(
                        self.kms_seal(ws, provider, key_id, region, credential)
                            .await?,
                    ),
                    // The same key as before: the stored ciphertext stands.
                    (None, Some(old))
                        if old.mode == CredentialMode::Kms
                            && old.config.get("keyId") == input.config.get("keyId") =>
                    {
                        old.ciphertext.clone()
                    }
                    (None, _) => {
                        return Err(ValidationError::new(
                            "credential",
                            "is required in kms mode for a new key (it is encrypted with it)",
                        )
                        .into())
                    }
                };
            }
            _ => {
                let (vault, secret) = source.vault_secret().expect("every other mode has one");
                if self.store.vault(ws, vault).await?.is_none() {
                    return Err(ValidationError::new(
                        "config",
                        "`vaultId` names no vault of this workspace",
                    )
                    .into());
                }
                let mut credential = input.credential;
                let stored = self.store.secret(ws, vault, secret).await?;
                let present = stored.is_some_and(|s| s.deleted_at.is_none());
                if credential.is_none() && !present {
                    if input.mode == CredentialMode::ApiKey {
                        let made = new_signing_secret();
                        signing_secret = Some(made.clone());
                        credential = Some(made);
                    } else {
                        return Err(ValidationError::new(
                            "credential",
                            "is required: the configured secret does not exist yet",
                        )
                        .into());
                    }
                }
                if let Some(value) = credential {
                    self.put_secret(
                        &VaultActor::Team(actor.clone()),
                        vault,
                        secret,
                        PutSecret {
                            value,
                            description: None,
                            tags: None,
                            expires_at: None,
                        },
                        None,
                    )
                    .await?;
                }
            }
        }
        let now = self.clock.now();
        let config: BTreeMap<String, Value> = match input.config {
            Value::Object(map) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let mut stored = ProviderConfig {
            workspace_id: ws.clone(),
            provider,
            mode: input.mode,
            config,
            ciphertext,
            revision: 0,
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            updated_at: now,
        };
        let event =
            provider_event("provider.configured", ws, provider).change("mode", input.mode.as_str());
        stored.revision = self
            .audited(Some(actor), vec![event], async |outbox| {
                self.store.put_provider(&stored, outbox).await
            })
            .await?;
        self.resolver.forget(ws, provider);
        let mut view = ProviderView::from(stored);
        view.signing_secret = signing_secret;
        Ok((view, existing.is_none()))
    }

    pub async fn delete_provider(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        provider: &str,
    ) -> Result<()> {
        self.workspace_for(actor, ws, Permission::ProvidersManage)
            .await?;
        let provider = parse_provider(provider)?;
        let event = provider_event("provider.deleted", ws, provider);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .delete_provider(ws, provider, outbox)
                .await
                .map_err(crate::gone("provider"))
        })
        .await?;
        self.resolver.forget(ws, provider);
        Ok(())
    }

    /// Resolves `provider`'s credential as the resolver would for a rotation, and reports how
    /// it went without the value.
    pub async fn test_provider(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        provider: &str,
    ) -> Result<ProviderTest> {
        self.workspace_for(actor, ws, Permission::ProvidersTest)
            .await?;
        let provider = parse_provider(provider)?;
        let config = self
            .store
            .provider(ws, provider)
            .await?
            .ok_or(ControlError::NotFound("provider"))?;
        let started = Instant::now();
        let outcome = self.resolve_config(&config).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.emit(
            actor,
            provider_event("provider.tested", ws, provider)
                .outcome(if outcome.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                })
                .change("mode", config.mode.as_str()),
        );
        Ok(match outcome {
            Ok(resolved) => ProviderTest {
                provider,
                mode: config.mode,
                ok: true,
                cached: resolved.cached,
                latency_ms,
                cached_until: resolved.cached_until,
                error: None,
            },
            Err(ResolveError::Control(e)) => return Err(e),
            Err(e) => ProviderTest {
                provider,
                mode: config.mode,
                ok: false,
                cached: false,
                latency_ms,
                cached_until: None,
                error: Some(e.to_string()),
            },
        })
    }

    /// The credential of `ws`'s `provider`, from the cache while its mode allows.
    pub async fn resolve_credential(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
    ) -> std::result::Result<Resolved, ResolveError> {
        let config = self
            .store
            .provider(ws, provider)
            .await?
            .ok_or(ControlError::NotFound("provider"))?;
        self.resolve_config(&config).await
    }

    async fn resolve_config(
        &self,
        config: &ProviderConfig,
    ) -> std::result::Result<Resolved, ResolveError> {
        let key = (config.workspace_id.clone(), config.provider);
        let now = self.clock.instant();
        if let Some(hit) = self
            .resolver
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|c| c.revision == config.revision && now < c.until)
        {
            record(config.mode, "cached", Duration::ZERO);
            return Ok(Resolved {
                value: hit.value.clone(),
                cached: true,
                cached_until: Some(hit.until_wall),
            });
        }
        let admission = self
            .resolver
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .admit(now);
        if let Admission::Open(wait) = admission {
            record(config.mode, "circuit_open", Duration::ZERO);
            return Err(ResolveError::CircuitOpen(wait));
        }
        let started = Instant::now();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.resolve_once(config).await {
                Err(ResolveError::Unavailable(why)) if attempt < resolver::ATTEMPTS => {
                    let unit: f64 = rand::Rng::gen(&mut rand::thread_rng());
                    tracing::debug!(provider = config.provider.as_str(), attempt, %why,
                        "a credential source could not answer; retrying");
                    tokio::time::sleep(resolver::backoff(attempt, unit)).await;
                }
                other => break other,
            }
        };
        let elapsed = started.elapsed();
        let mut breakers = self
            .resolver
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let breaker = breakers.entry(key.clone()).or_default();
        let event = provider_event(
            "provider.credential.resolved",
            &config.workspace_id,
            config.provider,
        )
        .change("mode", config.mode.as_str())
        .actor(authsome_domain::event::EventActor::System);
        match outcome {
            Ok((value, lifetime)) => {
                breaker.succeeded();
                drop(breakers);
                record(config.mode, "resolved", elapsed);
                self.events.emit(event);
                let keep = resolver::cache_for(config.mode, lifetime);
                let cached_until = keep
                    .map(|d| self.clock.now() + chrono::Duration::from_std(d).unwrap_or_default());
                if let (Some(d), Some(wall)) = (keep, cached_until) {
                    self.resolver
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            key,
                            Cached {
                                revision: config.revision,
                                value: value.clone(),
                                until: now.after(d),
                                until_wall: wall,
                            },
                        );
                }
                Ok(Resolved {
                    value,
                    cached: false,
                    cached_until,
                })
            }
            Err(e) => {
                breaker.failed(self.clock.instant());
                drop(breakers);
                record(config.mode, "failed", elapsed);
                self.events.emit(
                    event
                        .outcome(Outcome::Failure)
                        .change("reason", e.to_string()),
                );
                Err(e)
            }
        }
    }

    /// One attempt at the configuration's source: the credential and how long it lives.
    async fn resolve_once(
        &self,
        config: &ProviderConfig,
    ) -> std::result::Result<(Zeroizing<String>, Option<Duration>), ResolveError> {
        let ws = &config.workspace_id;
        let system = VaultActor::System(ws.clone());
        let source = config
            .source()
            .map_err(|_| ControlError::Storage(StorageError::Corrupt("provider_configs.config")))?;
        let from_vault = async |vault, name: &str| -> std::result::Result<_, ResolveError> {
            match self.secret_value(&system, vault, name, None).await {
                Ok(revealed) => Ok(revealed),
                Err(ControlError::NotFound(_)) => Err(ResolveError::Refused(format!(
                    "the secret `{name}` is missing from the configured vault"
                ))),
                Err(e) => Err(e.into()),
            }
        };
        match &source {
            CredentialSource::Hosted { vault, secret } => {
                Ok((from_vault(vault, secret).await?.value, None))
            }
            CredentialSource::Kms { key_id, region } => {
                let ciphertext = config
                    .ciphertext
                    .as_deref()
                    .ok_or_else(|| ResolveError::Refused("no ciphertext is configured".into()))?;
                let plain = self
                    .sources()
                    .map_err(source_fault)?
                    .kms_decrypt(
                        KmsKey {
                            key_id,
                            region: region.as_deref(),
                        },
                        &kms_context(ws, config.provider),
                        ciphertext,
                    )
                    .await
                    .map_err(source_fault)?;
                let text = String::from_utf8(plain.to_vec()).map_err(|_| {
                    ResolveError::Refused("the decrypted credential is not UTF-8".into())
                })?;
                Ok((Zeroizing::new(text), None))
            }
            CredentialSource::OAuth {
                token_url,
                client_id,
                client_secret,
                scope,
                vault,
                secret,
            } => {
                let refresh = from_vault(vault, secret).await?;
                let client_secret = match client_secret {
                    Some(name) => Some(from_vault(vault, name).await?.value),
                    None => None,
                };
                let grant = self
                    .sources()
                    .map_err(source_fault)?
                    .refresh_token(&RefreshRequest {
                        token_url,
                        client_id,
                        client_secret: client_secret.as_deref().map(String::as_str),
                        refresh_token: &refresh.value,
                        scope: scope.as_deref(),
                    })
                    .await
                    .map_err(source_fault)?;
                if let Some(rotated) = grant.refresh_token {
                    if *rotated != *refresh.value {
                        self.keep_rotated_refresh_token(
                            &system,
                            vault,
                            secret,
                            refresh.version,
                            rotated,
                        )
                        .await?;
                    }
                }
                Ok((grant.access_token, grant.expires_in))
            }
            CredentialSource::ApiKey { url, vault, secret } => {
                let signing = from_vault(vault, secret).await?;
                let value = self
                    .sources()
                    .map_err(source_fault)?
                    .fetch_credential(&FetchRequest {
                        url,
                        signing_secret: &signing.value,
                        workspace: ws,
                        provider: config.provider,
                    })
                    .await
                    .map_err(source_fault)?;
                Ok((value, None))
            }
        }
    }

    /// Stores a refresh token the token endpoint rotated, as the next version of its secret,
    /// only if nobody stored one since `read_version` (another replica's refresh wins).
    async fn keep_rotated_refresh_token(
        &self,
        system: &VaultActor,
        vault: &authsome_domain::id::VaultId,
        secret: &str,
        read_version: u32,
        rotated: Zeroizing<String>,
    ) -> std::result::Result<(), ResolveError> {
        let put = PutSecret {
            value: rotated,
            description: None,
            tags: None,
            expires_at: None,
        };
        match self
            .put_secret(system, vault, secret, put, Some(read_version))
            .await
        {
            Ok(_) | Err(ControlError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn kms_seal(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        key_id: &str,
        region: &Option<String>,
        credential: &str,
    ) -> Result<Vec<u8>> {
        self.sources()
            .map_err(kms_fault)?
            .kms_encrypt(
                KmsKey {
                    key_id,
                    region: region.as_deref(),
                },
                &kms_context(ws, provider),
                credential.as_bytes(),
            )
            .await
            .map_err(kms_fault)
    }
}

fn source_fault(e: SourceError) -> ResolveError {
    match e {
        SourceError::Refused(m) => ResolveError::Refused(m),
        SourceError::Unavailable(m) => ResolveError::Unavailable(m),
    }
}

/// KMS refusing while a configuration is stored is the configuration's fault (400); KMS out
/// of reach is 503.
fn kms_fault(e: SourceError) -> ControlError {
    match e {
        SourceError::Refused(m) => {
            ValidationError::new("config", format!("AWS KMS refused: {m}")).into()
        }
        SourceError::Unavailable(m) => ControlError::Unavailable(format!("AWS KMS: {m}")),
    }
}

fn record(mode: CredentialMode, outcome: &'static str, elapsed: Duration) {
    metrics::counter!("authsome_credential_resolutions_total",
        "mode" => mode.as_str(), "outcome" => outcome)
    .increment(1);
    if outcome != "cached" && outcome != "circuit_open" {
        metrics::histogram!("authsome_credential_resolution_seconds", "mode" => mode.as_str())
            .record(elapsed.as_secs_f64());
    }
}
