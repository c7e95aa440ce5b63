//! Render: a service's environment variable. Set one key (`PUT /services/{id}/env-vars/{key}`;
//! never the bulk `PUT /services/{id}/env-vars`, which replaces every variable), read back from
//! the service's list (`GET /services/{id}/env-vars`, cursor pages), deploy (`POST
//! /services/{id}/deploys`). Config: `{serviceId, key}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{enc, field, Api, Observed, TargetConnector, TargetError, Written, MAX_PAGES};

pub struct Render {
    api: Api,
    service: String,
    key: String,
}

impl Render {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        Ok(Self {
            api,
            service: field(config, "serviceId")?,
            key: field(config, "key")?,
        })
    }
}

#[async_trait]
impl TargetConnector for Render {
    fn provider(&self) -> Provider {
        Provider::Render
    }

    async fn status(&self) -> Result<(), TargetError> {
        let path = format!("/services/{}", enc(&self.service));
        self.api.expect(Method::GET, &path, None, None).await?;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let path = format!(
            "/services/{}/env-vars/{}",
            enc(&self.service),
            enc(&self.key)
        );
        let body = json!({"value": value});
        self.api
            .expect(Method::PUT, &path, Some(&body), Some(value))
            .await?;
        Ok(Written::default())
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!("/services/{}/env-vars?limit=100", enc(&self.service));
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", enc(c)));
            }
            let page = self.api.expect(Method::GET, &path, None, None).await?;
            let items = page.as_array().cloned().unwrap_or_default();
            if let Some(found) = items
                .iter()
                .find(|i| i["envVar"]["key"] == self.key.as_str())
            {
                return Ok(match found["envVar"]["value"].as_str() {
                    Some(v) => Observed::Value(Zeroizing::new(v.to_owned())),
                    None => Observed::Present,
                });
            }
            match items.last().and_then(|i| i["cursor"].as_str()) {
                Some(next) if items.len() >= 100 => cursor = Some(next.to_owned()),
                _ => return Ok(Observed::Absent),
            }
        }
        Ok(Observed::Absent)
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        let path = format!("/services/{}/deploys", enc(&self.service));
        let deploy = self
            .api
            .expect(
                Method::POST,
                &path,
                Some(&json!({"clearCache": "do_not_clear"})),
                None,
            )
            .await?;
        Ok(deploy["id"].as_str().map(str::to_owned))
    }
}
