//! AWS Secrets Manager: a secret's versions, over JSON 1.1 with SigV4 and the customer's own
//! access key. `PutSecretValue` (a `ClientRequestToken` per write, so a retried call stores
//! one version; a secret that does not exist yet is made with `CreateSecret`), read back with
//! `GetSecretValue`. No deploy. Config: `{secretId, region?}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{optional, Credential, Endpoints, Observed, TargetConnector, TargetError, Written};
use crate::aws::{AwsError, AwsJson, SECRETS_MANAGER};
use crate::egress::Outbound;

/// The customer's AWS identity from its credential, calling the operator's AWS endpoint when
/// one is set (then trusted: AWS's or the operator's, never the customer's to choose).
pub(crate) fn identity(
    credential: Credential,
    endpoints: &Endpoints,
    outbound: Outbound,
) -> Result<(crate::aws::AwsSettings, Outbound), TargetError> {
    let Credential::Aws(mut settings) = credential else {
        return Err(TargetError::Config(
            "AWS takes an access key credential".into(),
        ));
    };
    settings.endpoint = endpoints.aws.clone();
    let outbound = if endpoints.aws.is_some() {
        Outbound::trusted()
    } else {
        outbound
    };
    Ok((settings, outbound))
}

pub struct SecretsManager {
    api: AwsJson,
    secret: String,
    region: String,
}

impl SecretsManager {
    pub(crate) fn new(
        config: &Value,
        credential: Credential,
        endpoints: &Endpoints,
        outbound: Outbound,
    ) -> Result<Self, TargetError> {
        let (settings, outbound) = identity(credential, endpoints, outbound)?;
        let secret = match config.get("secretId").and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.len() <= 2048 => s.to_owned(),
            _ => return Err(TargetError::Config("secretId is required".into())),
        };
        let region = optional(config, "region")?
            .or_else(|| {
                // An ARN names its region.
                secret
                    .strip_prefix("arn:aws:secretsmanager:")
                    .and_then(|r| r.split(':').next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| settings.default_region.clone());
        Ok(Self {
            api: AwsJson::new(settings, SECRETS_MANAGER, outbound),
            secret,
            region,
        })
    }

    async fn call(
        &self,
        action: &str,
        body: &Value,
        value: Option<&str>,
    ) -> Result<Value, TargetError> {
        self.api
            .call(action, &self.region, &body.to_string())
            .await
            .map_err(|e| match e {
                AwsError::Refused(m) => {
                    let m = match value {
                        Some(v) if v.len() >= 4 => m.replace(v, "[redacted]"),
                        _ => m,
                    };
                    let code = m.split(": ").nth(1).map(|c| c.to_owned());
                    TargetError::Refused {
                        provider: "AWS",
                        status: 400,
                        code,
                        message: m,
                    }
                }
                AwsError::Unavailable(m) => TargetError::Unavailable(m),
            })
    }
}

fn not_found(e: &TargetError) -> bool {
    matches!(e, TargetError::Refused { code: Some(c), .. } if c.starts_with("ResourceNotFoundException"))
}

#[async_trait]
impl TargetConnector for SecretsManager {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn status(&self) -> Result<(), TargetError> {
        match self
            .call("DescribeSecret", &json!({"SecretId": self.secret}), None)
            .await
        {
            Err(e) if !not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let token = uuid::Uuid::now_v7().to_string();
        let body = json!({
            "SecretId": self.secret,
            "SecretString": value,
            "ClientRequestToken": token,
        });
        let answer = match self.call("PutSecretValue", &body, Some(value)).await {
            Err(e) if not_found(&e) => {
                let body = json!({
                    "Name": self.secret,
                    "SecretString": value,
                    "ClientRequestToken": token,
                });
                self.call("CreateSecret", &body, Some(value)).await?
            }
            other => other?,
        };
        Ok(Written {
            version: answer["VersionId"].as_str().map(str::to_owned),
            digest: None,
        })
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        match self
            .call("GetSecretValue", &json!({"SecretId": self.secret}), None)
            .await
        {
            Ok(answer) => Ok(match answer["SecretString"].as_str() {
                Some(v) => Observed::Value(Zeroizing::new(v.to_owned())),
                None => answer["VersionId"]
                    .as_str()
                    .map_or(Observed::Present, |v| Observed::Version(v.to_owned())),
            }),
            Err(e) if not_found(&e) => Ok(Observed::Absent),
            Err(e) => Err(e),
        }
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        Ok(None)
    }
}
