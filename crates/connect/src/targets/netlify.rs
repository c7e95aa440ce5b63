//! Netlify: a site's environment variable in an account. Set one key's value for one context
//! (`PATCH /accounts/{acct}/env/{key}?site_id=`; a key that does not exist yet is created with
//! `POST /accounts/{acct}/env?site_id=`), read back from the site's list, redeploy with a fresh
//! build (`POST /sites/{site}/builds`). Config: `{accountId, siteId, key, context? (default
//! all)}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{enc, field, optional, Api, Observed, TargetConnector, TargetError, Written};

pub struct Netlify {
    api: Api,
    account: String,
    site: String,
    key: String,
    context: String,
}

impl Netlify {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        Ok(Self {
            api,
            account: field(config, "accountId")?,
            site: field(config, "siteId")?,
            key: field(config, "key")?,
            context: optional(config, "context")?.unwrap_or_else(|| "all".into()),
        })
    }
}

#[async_trait]
impl TargetConnector for Netlify {
    fn provider(&self) -> Provider {
        Provider::Netlify
    }

    async fn status(&self) -> Result<(), TargetError> {
        let path = format!("/sites/{}", enc(&self.site));
        self.api.expect(Method::GET, &path, None, None).await?;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let path = format!(
            "/accounts/{}/env/{}?site_id={}",
            enc(&self.account),
            enc(&self.key),
            enc(&self.site)
        );
        let body = json!({"context": self.context, "value": value});
        let reply = self
            .api
            .call(Method::PATCH, &path, Some(&body), Some(value))
            .await?;
        if reply.status != 404 {
            return Ok(Written {
                version: reply.json["values"]
                    .as_array()
                    .and_then(|v| v.iter().find(|v| v["context"] == self.context.as_str()))
                    .and_then(|v| v["id"].as_str())
                    .map(str::to_owned),
                digest: None,
            });
        }
        let path = format!(
            "/accounts/{}/env?site_id={}",
            enc(&self.account),
            enc(&self.site)
        );
        let body = json!([{
            "key": self.key,
            "values": [{"value": value, "context": self.context}],
        }]);
        self.api
            .expect(Method::POST, &path, Some(&body), Some(value))
            .await?;
        Ok(Written::default())
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let path = format!(
            "/accounts/{}/env?site_id={}",
            enc(&self.account),
            enc(&self.site)
        );
        let list = self.api.expect(Method::GET, &path, None, None).await?;
        let value = list.as_array().and_then(|vars| {
            vars.iter()
                .find(|v| v["key"] == self.key.as_str())
                .and_then(|v| v["values"].as_array())
                .and_then(|values| {
                    values
                        .iter()
                        .find(|v| v["context"] == self.context.as_str())
                        .map(|v| v["value"].as_str().map(str::to_owned))
                })
        });
        Ok(match value {
            None => Observed::Absent,
            Some(Some(v)) => Observed::Value(Zeroizing::new(v)),
            Some(None) => Observed::Present,
        })
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        let path = format!("/sites/{}/builds", enc(&self.site));
        let build = self
            .api
            .expect(Method::POST, &path, Some(&json!({})), None)
            .await?;
        Ok(build["id"].as_str().map(str::to_owned))
    }
}
