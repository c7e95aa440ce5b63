//! GCP Secret Manager: a secret's versions. Add a version (`POST projects/{p}/secrets/{s}:
//! addVersion` with the payload base64 and its CRC32C as a decimal string), read back the
//! latest (`GET …/versions/latest:access`, its checksum checked). No deploy. Config:
//! `{project, secret}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{enc, field, Api, Observed, TargetConnector, TargetError, Written};

pub struct Gcp {
    api: Api,
    project: String,
    secret: String,
}

impl Gcp {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        Ok(Self {
            api,
            project: field(config, "project")?,
            secret: field(config, "secret")?,
        })
    }

    fn path(&self) -> String {
        format!(
            "/projects/{}/secrets/{}",
            enc(&self.project),
            enc(&self.secret)
        )
    }
}

#[async_trait]
impl TargetConnector for Gcp {
    fn provider(&self) -> Provider {
        Provider::Gcp
    }

    async fn status(&self) -> Result<(), TargetError> {
        self.api
            .expect(Method::GET, &self.path(), None, None)
            .await?;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let body = json!({"payload": {
            "data": B64.encode(value.as_bytes()),
            "dataCrc32c": crc32c::crc32c(value.as_bytes()).to_string(),
        }});
        let answer = self
            .api
            .expect(
                Method::POST,
                &format!("{}:addVersion", self.path()),
                Some(&body),
                Some(value),
            )
            .await?;
        Ok(Written {
            version: answer["name"].as_str().map(str::to_owned),
            digest: None,
        })
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        let path = format!("{}/versions/latest:access", self.path());
        let reply = self.api.call(Method::GET, &path, None, None).await?;
        if reply.status == 404 {
            return Ok(Observed::Absent);
        }
        let payload = &reply.json["payload"];
        let data = payload["data"]
            .as_str()
            .and_then(|d| B64.decode(d).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| TargetError::Unavailable("GCP answered without a payload".into()))?;
        if let Some(sum) = payload["dataCrc32c"].as_str() {
            if sum != crc32c::crc32c(&data).to_string() {
                return Err(TargetError::Unavailable(
                    "GCP's payload does not match its checksum".into(),
                ));
            }
        }
        let value = String::from_utf8(data.to_vec())
            .map_err(|_| TargetError::Unavailable("GCP's payload is not text".into()))?;
        Ok(Observed::Value(Zeroizing::new(value)))
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        Ok(None)
    }
}
