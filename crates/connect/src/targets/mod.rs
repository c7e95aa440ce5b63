//! Rotation's targets: where a rotated value is pushed (a project's environment variable, a
//! worker's secret, a secret manager's entry), one module per provider behind one trait,
//! [`TargetConnector`], each speaking the provider's own REST shape at a configurable base URL
//! ([`Endpoints`]). A connector writes only the one key it was given (never a bulk replace that
//! could wipe variables it does not own), reads back what the provider holds for verification,
//! and starts a fresh deploy where the platform needs one. Rate limits are honoured
//! (`Retry-After`, `X-RateLimit-Reset`, `RateLimit-Reset`): a short wait is waited here, a
//! longer one is handed back ([`TargetError::RateLimited`]) for the job to come back later.
//! Errors carry the provider's status, code and message, with the value scrubbed out.

pub mod aws;
pub mod azure;
pub mod cloudflare;
pub mod fly;
pub mod gcp;
pub mod iam;
pub mod netlify;
pub mod render;
pub mod vercel;

use std::time::Duration;

use authsome_domain::provider::Provider;
pub use authsome_rotation::target::{verify, Observed, TargetConnector, TargetError, Written};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::egress::{CallError, Outbound};

/// The largest answer a provider's API may give one call.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Pages followed when listing, at most.
const MAX_PAGES: usize = 50;
/// Calls made for one operation when the provider rate-limits with short waits.
const ATTEMPTS: usize = 3;

/// Where each provider's API is (the public ones by default; tests point them at fakes).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub vercel: String,
    pub netlify: String,
    pub render: String,
    pub cloudflare: String,
    pub fly: String,
    pub gcp: String,
    /// Instead of `https://<vault>.vault.azure.net`.
    pub azure: Option<String>,
    /// Instead of `https://secretsmanager.<region>.amazonaws.com`.
    pub aws: Option<String>,
    /// The longest rate-limit wait waited inside a call (longer ones are handed back).
    pub max_wait: Duration,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            vercel: "https://api.vercel.com".into(),
            netlify: "https://api.netlify.com/api/v1".into(),
            render: "https://api.render.com/v1".into(),
            cloudflare: "https://api.cloudflare.com/client/v4".into(),
            fly: "https://api.machines.dev/v1".into(),
            gcp: "https://secretmanager.googleapis.com/v1".into(),
            azure: None,
            aws: None,
            max_wait: Duration::from_secs(5),
        }
    }
}

impl Endpoints {
    /// These endpoints with some replaced: `provider=url` pairs, comma-separated (the
    /// providers `vercel`, `netlify`, `render`, `cloudflare`, `fly`, `gcp`, `azure`, `aws`);
    /// the error names what is wrong.
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, String> {
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (provider, raw) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not provider=url"))?;
            let url = url::Url::parse(raw.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| format!("`{raw}` is not an http(s) URL"))?;
            let url = url.as_str().trim_end_matches('/').to_owned();
            match provider.trim() {
                "vercel" => self.vercel = url,
                "netlify" => self.netlify = url,
                "render" => self.render = url,
                "cloudflare" => self.cloudflare = url,
                "fly" => self.fly = url,
                "gcp" => self.gcp = url,
                "azure" => self.azure = Some(url),
                "aws" => self.aws = Some(url),
                other => return Err(format!("`{other}` is not a rotation target provider")),
            }
        }
        Ok(self)
    }
}

/// The credential a connector calls with.
pub enum Credential {
    Bearer(Zeroizing<String>),
    /// `{"accessKeyId", "secretAccessKey", "sessionToken"?}`.
    Aws(crate::aws::AwsSettings),
}

impl Credential {
    /// A provider credential as the resolver gives it: a bearer token, or for AWS the JSON
    /// of an access key.
    pub fn for_provider(provider: Provider, raw: &str) -> Result<Self, TargetError> {
        if provider != Provider::Aws {
            return Ok(Self::Bearer(Zeroizing::new(raw.trim().to_owned())));
        }
        let bad = || {
            TargetError::Config(
                "the AWS credential must be {\"accessKeyId\", \"secretAccessKey\", \"sessionToken\"?}"
                    .into(),
            )
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct AccessKey {
            access_key_id: String,
            secret_access_key: Zeroizing<String>,
            session_token: Option<Zeroizing<String>>,
        }
        let key: AccessKey = serde_json::from_str(raw).map_err(|_| bad())?;
        Ok(Self::Aws(crate::aws::AwsSettings {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            session_token: key.session_token,
            default_region: "us-east-1".into(),
            endpoint: None,
        }))
    }

    fn bearer(&self) -> Result<&str, TargetError> {
        match self {
            Self::Bearer(t) => Ok(t.as_str()),
            Self::Aws(_) => Err(TargetError::Config(
                "this provider takes a bearer token".into(),
            )),
        }
    }
}

/// A connector for `provider`'s target described by `config` (JSON, the provider's fields).
pub fn connect(
    provider: Provider,
    config: &Value,
    credential: Credential,
    endpoints: &Endpoints,
    outbound: Outbound,
) -> Result<Box<dyn TargetConnector>, TargetError> {
    Ok(match provider {
        Provider::Vercel => Box::new(vercel::Vercel::new(
            config,
            Api::new("Vercel", &endpoints.vercel, credential, endpoints, outbound)?,
        )?),
        Provider::Netlify => Box::new(netlify::Netlify::new(
            config,
            Api::new(
                "Netlify",
                &endpoints.netlify,
                credential,
                endpoints,
                outbound,
            )?,
        )?),
        Provider::Render => Box::new(render::Render::new(
            config,
            Api::new("Render", &endpoints.render, credential, endpoints, outbound)?,
        )?),
        Provider::Cloudflare => Box::new(cloudflare::Cloudflare::new(
            config,
            Api::new(
                "Cloudflare",
                &endpoints.cloudflare,
                credential,
                endpoints,
                outbound,
            )?,
        )?),
        Provider::Fly => Box::new(fly::Fly::new(
            config,
            Api::new("Fly.io", &endpoints.fly, credential, endpoints, outbound)?,
        )?),
        Provider::Gcp => Box::new(gcp::Gcp::new(
            config,
            Api::new("GCP", &endpoints.gcp, credential, endpoints, outbound)?,
        )?),
        Provider::Azure => Box::new(azure::Azure::new(config, credential, endpoints, outbound)?),
        Provider::Aws => Box::new(aws::SecretsManager::new(
            config, credential, endpoints, outbound,
        )?),
        Provider::Generic => {
            return Err(TargetError::Config(
                "a generic provider has no target API to push to".into(),
            ))
        }
    })
}

/// A required string field of a target's configuration.
pub(crate) fn field(config: &Value, name: &'static str) -> Result<String, TargetError> {
    optional(config, name)?.ok_or_else(|| TargetError::Config(format!("{name} is required")))
}

/// An optional string field, refused when it is not a plain path-safe string.
pub(crate) fn optional(config: &Value, name: &'static str) -> Result<Option<String>, TargetError> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 256
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c)) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(TargetError::Config(format!(
            "{name} must be a non-empty string of letters, digits and - _ . : @"
        ))),
    }
}

/// A JSON REST API with a bearer token: rate limits, error bodies, scrubbing.
pub(crate) struct Api {
    provider: &'static str,
    base: String,
    token: Zeroizing<String>,
    outbound: Outbound,
    max_wait: Duration,
}

/// A successful answer: its JSON (`Null` when empty) and headers.
pub(crate) struct Reply {
    pub json: Value,
    pub status: u16,
}

impl Api {
    fn new(
        provider: &'static str,
        base: &str,
        credential: Credential,
        endpoints: &Endpoints,
        outbound: Outbound,
    ) -> Result<Self, TargetError> {
        Ok(Self {
            provider,
            base: base.trim_end_matches('/').to_owned(),
            token: Zeroizing::new(credential.bearer()?.to_owned()),
            outbound,
            max_wait: endpoints.max_wait,
        })
    }

    /// `method` on `path` (joined to the base), with `body`; `secret` is scrubbed from any
    /// error the provider answers. A 404 is `Ok` with its status when `allow_missing`.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        secret: Option<&str>,
    ) -> Result<Reply, TargetError> {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| Zeroizing::new(b.to_string()));
        for attempt in 1..=ATTEMPTS {
            let answer = self
                .outbound
                .send(
                    method.clone(),
                    &url,
                    |r| {
                        let r = r
                            .bearer_auth(self.token.as_str())
                            .header("accept", "application/json");
                        match &body {
                            Some(b) => r
                                .header("content-type", "application/json")
                                .body(b.to_string()),
                            None => r,
                        }
                    },
                    MAX_ANSWER,
                )
                .await
                .map_err(|e| match e {
                    CallError::Refused(m) => TargetError::Config(m),
                    CallError::Failed(m) => {
                        TargetError::Unavailable(format!("{}: {m}", self.provider))
                    }
                })?;
            let status = answer.status.as_u16();
            if status == 429 {
                let wait = retry_after(&answer.headers).unwrap_or(Duration::from_secs(1));
                if wait <= self.max_wait && attempt < ATTEMPTS {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(TargetError::RateLimited { retry_after: wait });
            }
            let json: Value = if answer.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
            };
            if answer.status.is_success() || status == 404 {
                return Ok(Reply { json, status });
            }
            let (code, message) = error_of(&json, &answer.body);
            let message = scrub(&message, secret);
            if answer.status.is_server_error() {
                return Err(TargetError::Unavailable(format!(
                    "{} answered {status}: {message}",
                    self.provider
                )));
            }
            return Err(TargetError::Refused {
                provider: self.provider,
                status,
                code: code.map(|c| scrub(&c, secret)),
                message,
            });
        }
        Err(TargetError::Unavailable(format!(
            "{} kept rate-limiting",
            self.provider
        )))
    }

    /// [`Api::call`] where a 404 is a refusal too.
    pub(crate) async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        secret: Option<&str>,
    ) -> Result<Value, TargetError> {
        let reply = self.call(method, path, body, secret).await?;
        if reply.status == 404 {
            let (code, message) = error_of(&reply.json, b"");
            return Err(TargetError::Refused {
                provider: self.provider,
                status: 404,
                code,
                message: scrub(&message, secret),
            });
        }
        Ok(reply.json)
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds or an HTTP date), `RateLimit-Reset`
/// (seconds), `X-RateLimit-Reset` (a Unix time).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = get("retry-after") {
        if let Ok(s) = v.trim().parse::<u64>() {
            return Some(Duration::from_secs(s));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default(),
            );
        }
    }
    if let Some(s) = get("ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(s));
    }
    let reset = get("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// The error code and message of any of the providers' error bodies: `{error: {code,
/// message}}` (Vercel, GCP, Azure), `{code, message}` (Netlify), `{id, message}` (Render),
/// `{errors: [{code, message}]}` (Cloudflare).
fn error_of(json: &Value, raw: &[u8]) -> (Option<String>, String) {
    let text = |v: Option<&Value>| {
        v.and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let (code, message) = if let Some(e) = json.get("error").filter(|e| e.is_object()) {
        (
            text(e.get("status"))
                .filter(|_| e.get("code").is_some_and(Value::is_number))
                .or_else(|| text(e.get("code"))),
            text(e.get("message")),
        )
    } else if let Some(e) = json.get("errors").and_then(|e| e.get(0)) {
        (text(e.get("code")), text(e.get("message")))
    } else {
        (
            text(json.get("code")).or_else(|| text(json.get("id"))),
            text(json.get("message")),
        )
    };
    let message = message.unwrap_or_else(|| {
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
            .trim()
            .to_owned()
    });
    (code, message.chars().take(300).collect())
}

/// `text` with every occurrence of `secret` replaced.
fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret.filter(|s| s.len() >= 4) {
        Some(s) => text.replace(s, "[redacted]"),
        None => text.to_owned(),
    }
}

/// Percent-encodes one path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Rotation's ports for the control plane: a connector per target (through the egress
/// policy), a configuration check that calls nobody, and the health probe.
pub struct RotationTargets {
    endpoints: Endpoints,
    outbound: Outbound,
}

impl RotationTargets {
    pub fn new(endpoints: Endpoints, outbound: Outbound) -> Self {
        Self {
            endpoints,
            outbound,
        }
    }
}

/// The largest health-check answer read.
const MAX_PROBE: usize = 64 * 1024;

#[async_trait::async_trait]
impl authsome_control::rotation::RotationPorts for RotationTargets {
    fn connect(
        &self,
        target: &authsome_domain::rotation::RotationTarget,
        credential: &str,
    ) -> Result<Box<dyn TargetConnector>, TargetError> {
        connect(
            target.provider,
            &target.config,
            Credential::for_provider(target.provider, credential)?,
            &self.endpoints,
            self.outbound.clone(),
        )
    }

    fn issuer(
        &self,
        spec: &authsome_rotation::issuer::IssuerSpec,
        credential: &str,
    ) -> Result<Box<dyn authsome_rotation::issuer::CredentialIssuer>, TargetError> {
        match spec.kind {
            authsome_rotation::issuer::IssuerKind::AwsIamAccessKey => {
                Ok(Box::new(iam::IamAccessKeys::new(
                    &spec.user_name,
                    Credential::for_provider(Provider::Aws, credential)?,
                    &self.endpoints,
                    self.outbound.clone(),
                )?))
            }
        }
    }

    fn check(&self, target: &authsome_domain::rotation::RotationTarget) -> Result<(), TargetError> {
        let placeholder = match target.provider {
            Provider::Aws => r#"{"accessKeyId":"check","secretAccessKey":"check"}"#,
            _ => "check",
        };
        self.connect(target, placeholder).map(|_| ())
    }

    async fn probe(&self, url: &str) -> Result<u16, String> {
        self.outbound
            .send(reqwest::Method::GET, url, |r| r, MAX_PROBE)
            .await
            .map(|a| a.status.as_u16())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_body_gives_its_code_and_message() {
        let cases = [
            (
                serde_json::json!({"error": {"code": "forbidden", "message": "no"}}),
                "forbidden",
            ),
            (
                serde_json::json!({"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}),
                "PERMISSION_DENIED",
            ),
            (serde_json::json!({"code": 422, "message": "no"}), "422"),
            (
                serde_json::json!({"id": "not_found", "message": "no"}),
                "not_found",
            ),
            (
                serde_json::json!({"success": false, "errors": [{"code": 10007, "message": "no"}]}),
                "10007",
            ),
        ];
        for (body, code) in cases {
            let (c, m) = error_of(&body, b"");
            assert_eq!(c.as_deref(), Some(code), "{body}");
            assert_eq!(m, "no");
        }
        assert_eq!(error_of(&Value::Null, b"upstream down").1, "upstream down");
        assert_eq!(
            scrub("value s3cr3t-value is too long", Some("s3cr3t-value")),
            "value [redacted] is too long"
        );
    }

    #[test]
    fn waits_are_read_from_each_header() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("ratelimit-reset", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let mut h = reqwest::header::HeaderMap::new();
        let soon = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        h.insert("x-ratelimit-reset", soon.to_string().parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(58));
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }
}
