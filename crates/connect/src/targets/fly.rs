//! Fly.io Machines: an app's secret. Set one secret (`POST /apps/{app}/secrets/{name}` ->
//! `{name, digest, version}`); secrets are staged, so a redeploy updates each of the app's
//! machines with `min_secrets_version` = the written version (`GET /apps/{app}/machines`, then
//! `POST /apps/{app}/machines/{id}` with its config). Read back by digest (`GET
//! /apps/{app}/secrets`). Config: `{app, key}`.

use std::sync::Mutex;

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};

use super::{enc, field, Api, Observed, TargetConnector, TargetError, Written};

pub struct Fly {
    api: Api,
    app: String,
    key: String,
    /// The secrets version the last write made, for the machines to require.
    written: Mutex<Option<u64>>,
}

impl Fly {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        Ok(Self {
            api,
            app: field(config, "app")?,
            key: field(config, "key")?,
            written: Mutex::new(None),
        })
    }
}

#[async_trait]
impl TargetConnector for Fly {
    fn provider(&self) -> Provider {
        Provider::Fly
    }

    async fn status(&self) -> Result<(), TargetError> {
        let path = format!("/apps/{}", enc(&self.app));
        self.api.expect(Method::GET, &path, None, None).await?;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let path = format!("/apps/{}/secrets/{}", enc(&self.app), enc(&self.key));
        let body = json!({"value": value});
        let answer = self
            .api
            .expect(Method::POST, &path, Some(&body), Some(value))
            .await?;
        let version = answer["version"].as_u64();
        if let Ok(mut w) = self.written.lock() {
            *w = version;
        }
        Ok(Written {
            version: version.map(|v| v.to_string()),
            digest: answer["digest"].as_str().map(str::to_owned),
        })
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let path = format!("/apps/{}/secrets", enc(&self.app));
        let list = self.api.expect(Method::GET, &path, None, None).await?;
        let found = list
            .as_array()
            .or_else(|| list["secrets"].as_array())
            .and_then(|s| s.iter().find(|s| s["name"] == self.key.as_str()).cloned());
        Ok(match found {
            None => Observed::Absent,
            Some(s) => match s["digest"].as_str() {
                Some(d) => Observed::Digest(d.to_owned()),
                None => Observed::Present,
            },
        })
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        let version = self.written.lock().ok().and_then(|w| *w).ok_or_else(|| {
            TargetError::Config("nothing was written to require of the machines".into())
        })?;
        let path = format!("/apps/{}/machines", enc(&self.app));
        let machines = self.api.expect(Method::GET, &path, None, None).await?;
        let mut updated = 0;
        for machine in machines.as_array().into_iter().flatten() {
            let Some(id) = machine["id"].as_str() else {
                continue;
            };
            let path = format!("/apps/{}/machines/{}", enc(&self.app), enc(id));
            let body = json!({"config": machine["config"], "min_secrets_version": version});
            self.api
                .expect(Method::POST, &path, Some(&body), None)
                .await?;
            updated += 1;
        }
        Ok(Some(format!(
            "{updated} machines at secrets version {version}"
        )))
    }
}
