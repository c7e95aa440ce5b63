//! Azure Key Vault: a secret's versions. Set (`PUT /secrets/{name}?api-version=7.4` -> `{value,
//! id: ".../secrets/{name}/{version}", attributes}`), read back the current one (`GET
//! /secrets/{name}?api-version=7.4`). No deploy. Config: `{vaultName, name}` (the vault is
//! `https://{vaultName}.vault.azure.net`).

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{
    enc, field, Api, Credential, Endpoints, Observed, TargetConnector, TargetError, Written,
};
use crate::egress::Outbound;

const API_VERSION: &str = "7.4";

pub struct Azure {
    api: Api,
    name: String,
}

impl Azure {
    pub(crate) fn new(
        config: &Value,
        credential: Credential,
        endpoints: &Endpoints,
        outbound: Outbound,
    ) -> Result<Self, TargetError> {
        let vault = field(config, "vaultName")?;
        let valid = (3..=24).contains(&vault.len())
            && vault
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(TargetError::Config(
                "vaultName: 3 to 24 lowercase letters, digits and -".into(),
            ));
        }
        let base = endpoints
            .azure
            .clone()
            .unwrap_or_else(|| format!("https://{vault}.vault.azure.net"));
        Ok(Self {
            api: Api::new("Azure Key Vault", &base, credential, endpoints, outbound)?,
            name: field(config, "name")?,
        })
    }

    fn path(&self) -> String {
        format!("/secrets/{}?api-version={API_VERSION}", enc(&self.name))
    }
}

/// The version at the end of a secret's id.
fn version_of(answer: &Value) -> Option<String> {
    answer["id"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .map(str::to_owned)
}

#[async_trait]
impl TargetConnector for Azure {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    async fn status(&self) -> Result<(), TargetError> {
        let reply = self.api.call(Method::GET, &self.path(), None, None).await?;
        // A secret not made yet is fine: the vault and the credential answered.
        let _ = reply;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let body = json!({"value": value, "contentType": "text/plain"});
        let answer = self
            .api
            .expect(Method::PUT, &self.path(), Some(&body), Some(value))
            .await?;
        Ok(Written {
            version: version_of(&answer),
            digest: None,
        })
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let reply = self.api.call(Method::GET, &self.path(), None, None).await?;
        if reply.status == 404 {
            return Ok(Observed::Absent);
        }
        Ok(match reply.json["value"].as_str() {
            Some(v) => Observed::Value(Zeroizing::new(v.to_owned())),
            None => version_of(&reply.json).map_or(Observed::Present, Observed::Version),
        })
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        Ok(None)
    }
}
