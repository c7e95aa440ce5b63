//! Cloudflare Workers: a worker script's secret. Put one secret (`PUT /accounts/{a}/workers/
//! scripts/{s}/secrets` with `{name, text, type: secret_text}`; the worker takes it in a new
//! version at once, so there is no separate deploy), read back whether it exists (values are
//! never shown). Config: `{accountId, scriptName, key}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};

use super::{enc, field, Api, Observed, TargetConnector, TargetError, Written};

pub struct Cloudflare {
    api: Api,
    account: String,
    script: String,
    key: String,
}

impl Cloudflare {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        Ok(Self {
            api,
            account: field(config, "accountId")?,
            script: field(config, "scriptName")?,
            key: field(config, "key")?,
        })
    }

    fn secrets(&self) -> String {
        format!(
            "/accounts/{}/workers/scripts/{}/secrets",
            enc(&self.account),
            enc(&self.script)
        )
    }

    /// Cloudflare answers 200 with `success: false` too.
    fn check(answer: &Value) -> Result<(), TargetError> {
        if answer["success"] == false {
            let e = &answer["errors"][0];
            return Err(TargetError::Refused {
                provider: "Cloudflare",
                status: 200,
                code: e["code"].as_i64().map(|c| c.to_string()),
                message: e["message"].as_str().unwrap_or("refused").to_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl TargetConnector for Cloudflare {
    fn provider(&self) -> Provider {
        Provider::Cloudflare
    }

    async fn status(&self) -> Result<(), TargetError> {
        let answer = self
            .api
            .expect(Method::GET, &self.secrets(), None, None)
            .await?;
        Self::check(&answer)
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let body = json!({"name": self.key, "text": value, "type": "secret_text"});
        let answer = self
            .api
            .expect(Method::PUT, &self.secrets(), Some(&body), Some(value))
            .await?;
        Self::check(&answer)?;
        Ok(Written::default())
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let path = format!("{}/{}", self.secrets(), enc(&self.key));
        let reply = self.api.call(Method::GET, &path, None, None).await?;
        if reply.status == 404 {
            return Ok(Observed::Absent);
        }
        Self::check(&reply.json)?;
        Ok(if reply.json["result"]["name"] == self.key.as_str() {
            Observed::Present
        } else {
            Observed::Absent
        })
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        Ok(None)
    }
}
