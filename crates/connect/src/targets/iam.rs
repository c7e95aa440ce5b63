//! AWS IAM access keys as a dual-phase credential (`authsome_rotation::issuer`): a user may
//! hold two keys, so the next one is made with `CreateAccessKey` while the previous one still
//! works, and the previous one is removed with `DeleteAccessKey` after the grace period. Over
//! IAM's Query protocol (`crate::aws::Iam`) with the customer's own access key (the `aws`
//! provider credential), at IAM's global endpoint or the operator's `aws` endpoint.

use async_trait::async_trait;
use authsome_rotation::issuer::{CredentialIssuer, Issued};
use serde_json::json;
use zeroize::Zeroizing;

use super::{Credential, Endpoints, TargetError};
use crate::aws::{xml_field, AwsError, Iam};
use crate::egress::Outbound;

pub struct IamAccessKeys {
    api: Iam,
    user: String,
}

impl IamAccessKeys {
    pub(crate) fn new(
        user: &str,
        credential: Credential,
        endpoints: &Endpoints,
        outbound: Outbound,
    ) -> Result<Self, TargetError> {
        let (settings, outbound) = super::aws::identity(credential, endpoints, outbound)?;
        Ok(Self {
            api: Iam::new(settings, outbound),
            user: user.to_owned(),
        })
    }
}

fn refused(e: AwsError) -> TargetError {
    match e {
        AwsError::Refused(m) => TargetError::Refused {
            provider: "AWS",
            status: 400,
            code: m.split(": ").nth(1).map(str::to_owned),
            message: m,
        },
        AwsError::Unavailable(m) => TargetError::Unavailable(m),
    }
}

#[async_trait]
impl CredentialIssuer for IamAccessKeys {
    async fn issue(&self) -> Result<Issued, TargetError> {
        let xml = Zeroizing::new(
            self.api
                .call("CreateAccessKey", &[("UserName", &self.user)])
                .await
                .map_err(refused)?,
        );
        let unreadable =
            || TargetError::Unavailable("IAM CreateAccessKey: an unreadable answer".into());
        let id = xml_field(&xml, "AccessKeyId").ok_or_else(unreadable)?;
        let secret = Zeroizing::new(xml_field(&xml, "SecretAccessKey").ok_or_else(unreadable)?);
        let value = Zeroizing::new(
            json!({"accessKeyId": id, "secretAccessKey": secret.as_str()}).to_string(),
        );
        Ok(Issued { id, value })
    }

    async fn revoke(&self, id: &str) -> Result<(), TargetError> {
        match self
            .api
            .call(
                "DeleteAccessKey",
                &[("UserName", &self.user), ("AccessKeyId", id)],
            )
            .await
        {
            Ok(_) => Ok(()),
            // Gone already: what revoking wants.
            Err(AwsError::Refused(m)) if m.contains("NoSuchEntity") => Ok(()),
            Err(e) => Err(refused(e)),
        }
    }
}
