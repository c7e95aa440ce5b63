//! Outbound calls to services outside the deployment, and only through the operator's egress
//! policy ([`egress`]): identity issuers' key sets, AWS KMS ([`aws`]: JSON 1.1 with SigV4),
//! OAuth 2.0 token endpoints ([`oauth`]), customers' credential endpoints ([`endpoint`]), and
//! rotation's targets at the providers ([`targets`]: one connector per provider), and alert
//! deliveries to Slack and signed webhooks ([`alerts`]), and Stripe ([`stripe`]: customers,
//! subscriptions, billing meter events).
//!
//! This crate is the adapter behind the control plane's ports (`KeySetSource`,
//! `CredentialSources`): it knows wire formats, time-outs and size bounds, and nothing of
//! workspaces' permissions, storage or the vault's keys. It never logs or returns what it
//! sends or receives as a credential; errors carry the remote's status and error code only.

pub mod alerts;
pub mod aws;
pub mod egress;
pub mod endpoint;
pub mod oauth;
pub mod stripe;
pub mod targets;

use std::collections::BTreeMap;

use async_trait::async_trait;
use authsome_control::{
    CredentialSources, FetchRequest, KmsKey, RefreshRequest, SourceError, TokenGrant,
};
use authsome_domain::egress::EgressPolicy;
use zeroize::Zeroizing;

pub use egress::{HttpKeySets, Outbound};

/// The resolver's sources: KMS with the deployment's AWS identity (when it has one), and the
/// customers' URLs under the egress policy.
pub struct Connector {
    kms: Option<aws::Kms>,
    outbound: Outbound,
}

impl Connector {
    pub fn new(policy: EgressPolicy, aws: Option<aws::AwsSettings>) -> Self {
        Self {
            kms: aws.map(aws::Kms::new),
            outbound: Outbound::new(policy),
        }
    }

    fn kms(&self) -> Result<&aws::Kms, SourceError> {
        self.kms.as_ref().ok_or_else(|| {
            SourceError::Refused(
                "this deployment has no AWS credentials (AWS_ACCESS_KEY_ID) to call KMS with"
                    .into(),
            )
        })
    }
}

fn kms_error(e: aws::AwsError) -> SourceError {
    match e {
        aws::AwsError::Refused(m) => SourceError::Refused(m),
        aws::AwsError::Unavailable(m) => SourceError::Unavailable(m),
    }
}

#[async_trait]
impl CredentialSources for Connector {
    async fn kms_encrypt(
        &self,
        key: KmsKey<'_>,
        context: &BTreeMap<String, String>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SourceError> {
        self.kms()?
            .encrypt(key.key_id, key.region, context, plaintext)
            .await
            .map_err(kms_error)
    }

    async fn kms_decrypt(
        &self,
        key: KmsKey<'_>,
        context: &BTreeMap<String, String>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SourceError> {
        self.kms()?
            .decrypt(key.key_id, key.region, context, ciphertext)
            .await
            .map_err(kms_error)
    }

    async fn refresh_token(&self, request: &RefreshRequest<'_>) -> Result<TokenGrant, SourceError> {
        oauth::refresh(&self.outbound, request).await
    }

    async fn fetch_credential(
        &self,
        request: &FetchRequest<'_>,
    ) -> Result<Zeroizing<String>, SourceError> {
        endpoint::fetch(&self.outbound, request).await
    }
}
