//! Vercel: a project's environment variable. Upsert one key (`POST /v10/projects/{id}/env?upsert=true`),
//! read back from the project's list (`GET /v10/projects/{id}/env?decrypt=true`, following
//! `pagination.next`), redeploy the latest deployment of the target environment as a new build
//! (`POST /v13/deployments?forceNew=1`). Config: `{projectId, key, teamId?, environments?
//! (default ["production"]), type? (encrypted | sensitive | plain; default encrypted)}`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use reqwest::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{
    enc, field, optional, Api, Observed, TargetConnector, TargetError, Written, MAX_PAGES,
};

pub struct Vercel {
    api: Api,
    project: String,
    key: String,
    team: Option<String>,
    environments: Vec<String>,
    kind: String,
}

impl Vercel {
    pub(crate) fn new(config: &Value, api: Api) -> Result<Self, TargetError> {
        let environments = match config.get("environments") {
            None | Some(Value::Null) => vec!["production".to_owned()],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|e| match e.as_str() {
                    Some(s @ ("production" | "preview" | "development")) => Ok(s.to_owned()),
                    _ => Err(TargetError::Config(
                        "environments: each one of production, preview, development".into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(TargetError::Config(
                    "environments must be a non-empty list".into(),
                ))
            }
        };
        let kind = match optional(config, "type")?.as_deref() {
            None => "encrypted".to_owned(),
            Some(k @ ("encrypted" | "sensitive" | "plain")) => k.to_owned(),
            Some(_) => {
                return Err(TargetError::Config(
                    "type must be encrypted, sensitive or plain".into(),
                ))
            }
        };
        Ok(Self {
            api,
            project: field(config, "projectId")?,
            key: field(config, "key")?,
            team: optional(config, "teamId")?,
            environments,
            kind,
        })
    }

    /// `?teamId=` (or `&teamId=`) when the project belongs to a team.
    fn team(&self, first: bool) -> String {
        match &self.team {
            Some(t) => format!("{}teamId={}", if first { "?" } else { "&" }, enc(t)),
            None => String::new(),
        }
    }

    /// The project's variables named `key` for one of our environments.
    async fn ours(&self) -> Result<Option<Value>, TargetError> {
        let mut until: Option<i64> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!(
                "/v10/projects/{}/env?decrypt=true{}",
                enc(&self.project),
                self.team(false)
            );
            if let Some(u) = until {
                path.push_str(&format!("&until={u}"));
            }
            let page = self.api.expect(Method::GET, &path, None, None).await?;
            let found = page["envs"].as_array().and_then(|envs| {
                envs.iter()
                    .find(|e| {
                        e["key"] == self.key.as_str()
                            && e["target"].as_array().is_some_and(|t| {
                                self.environments
                                    .iter()
                                    .all(|env| t.iter().any(|x| x == env.as_str()))
                            })
                    })
                    .cloned()
            });
            if found.is_some() {
                return Ok(found);
            }
            match page["pagination"]["next"].as_i64() {
                Some(next) => until = Some(next),
                None => return Ok(None),
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl TargetConnector for Vercel {
    fn provider(&self) -> Provider {
        Provider::Vercel
    }

    async fn status(&self) -> Result<(), TargetError> {
        let path = format!("/v9/projects/{}{}", enc(&self.project), self.team(true));
        self.api.expect(Method::GET, &path, None, None).await?;
        Ok(())
    }

    async fn write(&self, value: &str) -> Result<Written, TargetError> {
        let path = format!(
            "/v10/projects/{}/env?upsert=true{}",
            enc(&self.project),
            self.team(false)
        );
        let body = json!({
            "key": self.key,
            "value": value,
            "type": self.kind,
            "target": self.environments,
        });
        let answer = self
            .api
            .expect(Method::POST, &path, Some(&body), Some(value))
            .await?;
        if let Some(failed) = answer["failed"].as_array().and_then(|f| f.first()) {
            let error = &failed["error"];
            return Err(TargetError::Refused {
                provider: "Vercel",
                status: 200,
                code: error["code"].as_str().map(str::to_owned),
                message: error["message"]
                    .as_str()
                    .unwrap_or("the variable was not written")
                    .replace(value, "[redacted]"),
            });
        }
        let created = &answer["created"];
        let created = created
            .as_array()
            .and_then(|c| c.first())
            .unwrap_or(created);
        Ok(Written {
            version: created["id"].as_str().map(str::to_owned),
            digest: None,
        })
    }

    async fn read_back(&self) -> Result<Observed, TargetError> {
        Ok(match self.ours().await? {
            None => Observed::Absent,
            Some(env) => match env["value"].as_str() {
                // Sensitive variables never show their value.
                Some(v) if env["type"] != "sensitive" => Observed::Value(Zeroizing::new(v.into())),
                _ => Observed::Present,
            },
        })
    }

    async fn redeploy(&self) -> Result<Option<String>, TargetError> {
        let target = self.environments[0].as_str();
        let path = format!(
            "/v6/deployments?projectId={}&target={}&limit=1{}",
            enc(&self.project),
            enc(target),
            self.team(false)
        );
        let list = self.api.expect(Method::GET, &path, None, None).await?;
        let latest = &list["deployments"][0];
        let (Some(id), Some(name)) = (latest["uid"].as_str(), latest["name"].as_str()) else {
            return Err(TargetError::Refused {
                provider: "Vercel",
                status: 404,
                code: None,
                message: format!("the project has no {target} deployment to redeploy"),
            });
        };
        let body = json!({"name": name, "deploymentId": id, "target": target});
        let path = format!("/v13/deployments?forceNew=1{}", self.team(false));
        let made = self
            .api
            .expect(Method::POST, &path, Some(&body), None)
            .await?;
        Ok(made["id"].as_str().map(str::to_owned))
    }
}
