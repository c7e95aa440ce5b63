//! The identity engine of every application: its users, sign-up and sign-in, sessions, rotating
//! refresh tokens with reuse detection, and EdDSA access tokens signed by the application's own
//! key (published as JWKS). One [`Identity`] serves all applications of the process, each in its
//! own database through [`authsome_storage::app::AppDatabases`].
//!
//! **Architecture invariant:** this crate never sees the control plane's tables or credentials.
//! It is handed an application that the caller already resolved (and whose key it verified), and
//! works only inside that application's database.

mod auth;
pub mod tokens;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use authsome_domain::id::ApplicationId;
use authsome_domain::identity::SigningKeyRecord;
use authsome_domain::master_key::MasterKey;
use authsome_domain::throttle::LoginThrottle;
use authsome_domain::ValidationError;
use authsome_storage::app::{AppDatabases, IdentityRepository};
use authsome_storage::StorageError;
use ed25519_dalek::SigningKey;
use rand::RngCore;

pub use auth::{ClientInfo, IssuedSession, SignIn, SignUp};
pub use tokens::{Claims, KeySet};
pub use users::{NewUser, UserPatch};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("storage failure")]
    Storage(#[source] StorageError),
}

impl From<StorageError> for IdentityError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// The identity engine shared by all applications of this process.
pub struct Identity {
    databases: AppDatabases,
    master_key: MasterKey,
    public_url: String,
    keys: RwLock<HashMap<ApplicationId, Arc<KeySet>>>,
    account_throttle: LoginThrottle,
    address_throttle: LoginThrottle,
}

fn signing_key_context(app: &ApplicationId, kid: &str) -> Vec<u8> {
    format!("authsome:signing-key:v1:{app}:{kid}").into_bytes()
}

impl Identity {
    pub fn new(databases: AppDatabases, master_key: MasterKey, public_url: String) -> Self {
        Self {
            databases,
            master_key,
            public_url: public_url.trim_end_matches('/').to_owned(),
            keys: RwLock::new(HashMap::new()),
            account_throttle: LoginThrottle::new(5),
            address_throttle: LoginThrottle::new(20),
        }
    }

    pub fn databases(&self) -> &AppDatabases {
        &self.databases
    }

    /// `{publicUrl}/v1/{appId}`: the issuer of the application's tokens.
    pub fn issuer(&self, app: &ApplicationId) -> String {
        format!("{}/v1/{app}", self.public_url)
    }

    async fn store(&self, app: &ApplicationId) -> Result<Arc<dyn IdentityRepository>> {
        Ok(self.databases.open(app).await?)
    }

    /// Creates the application's database and its first signing key. Idempotent.
    pub async fn provision(&self, app: &ApplicationId) -> Result<()> {
        self.databases.provision(app).await?;
        let store = self.store(app).await?;
        if store.signing_keys().await?.is_empty() {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let key = SigningKey::from_bytes(&seed);
            let kid = authsome_domain::keys::random_base62()[..16].to_owned();
            store
                .insert_signing_key(&SigningKeyRecord {
                    sealed_private: self.master_key.seal(&signing_key_context(app, &kid), &seed),
                    public: key.verifying_key().to_bytes(),
                    kid,
                    created_at: authsome_domain::now(),
                    retired_at: None,
                })
                .await?;
        }
        Ok(())
    }

    /// Removes the application's database for good.
    pub async fn destroy(&self, app: &ApplicationId) -> Result<()> {
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(app);
        }
        Ok(self.databases.destroy(app).await?)
    }

    /// The application's keys, unsealed once and cached.
    pub async fn key_set(&self, app: &ApplicationId) -> Result<Arc<KeySet>> {
        if let Some(keys) = self.keys.read().ok().and_then(|k| k.get(app).cloned()) {
            return Ok(keys);
        }
        let records = self.store(app).await?.signing_keys().await?;
        let mut verifying = Vec::new();
        let mut active = None;
        for record in &records {
            let public = ed25519_dalek::VerifyingKey::from_bytes(&record.public).map_err(|_| {
                IdentityError::Storage(StorageError::Corrupt("signing_keys.public_key"))
            })?;
            verifying.push((record.kid.clone(), public));
            if record.retired_at.is_none() {
                let seed = self
                    .master_key
                    .open(
                        &signing_key_context(app, &record.kid),
                        &record.sealed_private,
                    )
                    .map_err(|_| {
                        IdentityError::Storage(StorageError::Corrupt("signing_keys.sealed_private"))
                    })?;
                let seed: [u8; 32] = seed.try_into().map_err(|_| {
                    IdentityError::Storage(StorageError::Corrupt("signing_keys.sealed_private"))
                })?;
                // The newest unretired key signs.
                active = Some((record.kid.clone(), SigningKey::from_bytes(&seed)));
            }
        }
        if verifying.is_empty() {
            return Err(IdentityError::Unavailable(
                "the application has no signing key yet".into(),
            ));
        }
        let set = Arc::new(KeySet { active, verifying });
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(app.clone(), set.clone());
        }
        Ok(set)
    }

    /// Housekeeping: closes idle application pools and forgets stale throttle entries.
    pub async fn maintain(&self) {
        self.databases
            .close_idle(std::time::Duration::from_secs(300))
            .await;
        self.account_throttle.prune();
        self.address_throttle.prune();
    }
}
