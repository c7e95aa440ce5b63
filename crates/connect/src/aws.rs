//! AWS services over the JSON 1.1 protocol ([`AwsJson`]): `POST /` with `X-Amz-Target:
//! <Service>.<Action>`, `Content-Type: application/x-amz-json-1.1`, signed with SigV4
//! (`aws-sigv4`); errors come back as `{"__type": "...Exception", "message": ...}`. KMS
//! ([`Kms`]: blobs as base64) for customer-managed keys, and Secrets Manager for rotation's
//! targets (`targets::aws`).
//!
//! The deployment calls KMS with its own AWS identity (the standard `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); a customer's key policy grants that identity
//! `kms:Encrypt` and `kms:Decrypt`. The endpoint is `https://kms.<region>.amazonaws.com`, or
//! the operator's `AUTHSOME_AWS_ENDPOINT` (a VPC endpoint; `moto_server` in tests).

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::egress::{Answer, CallError, Outbound};

/// The largest KMS answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The deployment's AWS identity and where it calls.
#[derive(Clone)]
pub struct AwsSettings {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
    /// For keys named without a region (an id or alias).
    pub default_region: String,
    /// Instead of `https://kms.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("access_key_id", &self.access_key_id)
            .field("default_region", &self.default_region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    /// From the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`), with `endpoint`; `None`
    /// without credentials.
    pub fn from_env(endpoint: Option<String>, region: Option<String>) -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(Self {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Zeroizing::new(var("AWS_SECRET_ACCESS_KEY")?),
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
            default_region: region
                .or_else(|| var("AWS_REGION"))
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint,
        })
    }
}

/// What an AWS service said when it did not do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsError {
    /// The service answered with an error it will answer again (access denied, wrong context,
    /// no such key or secret, disabled key); the exception's name leads the message.
    Refused(String),
    /// Throttled, failing or out of reach: worth retrying.
    Unavailable(String),
}

/// An AWS service speaking JSON 1.1: its signing name (also its endpoint's host prefix) and
/// its `X-Amz-Target` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub target: &'static str,
    /// How messages name it.
    pub label: &'static str,
}

pub const KMS: Service = Service {
    name: "kms",
    target: "TrentService",
    label: "KMS",
};

pub const SECRETS_MANAGER: Service = Service {
    name: "secretsmanager",
    target: "secretsmanager",
    label: "Secrets Manager",
};

/// Calls to one AWS service with one identity.
pub struct AwsJson {
    settings: AwsSettings,
    service: Service,
    outbound: Outbound,
}

/// A KMS client with the deployment's identity.
pub struct Kms {
    api: AwsJson,
}

impl Kms {
    pub fn new(settings: AwsSettings) -> Self {
        Self {
            // The endpoint is AWS's or the operator's, never a customer's.
            api: AwsJson::new(settings, KMS, Outbound::trusted()),
        }
    }

    /// `Encrypt`: the ciphertext blob.
    pub async fn encrypt(
        &self,
        key_id: &str,
        region: Option<&str>,
        context: &BTreeMap<String, String>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, AwsError> {
        let plaintext = Zeroizing::new(B64.encode(plaintext));
        let body = Zeroizing::new(
            json!({
                "KeyId": key_id,
                "Plaintext": plaintext.as_str(),
                "EncryptionContext": context,
            })
            .to_string(),
        );
        let answer = self
            .call(
                "Encrypt",
                region_of(key_id, region, &self.api.settings),
                &body,
            )
            .await?;
        blob(&answer, "CiphertextBlob").map(|b| b.to_vec())
    }

    /// `Decrypt`, insisting on `key_id` (KMS refuses a ciphertext of another key).
    pub async fn decrypt(
        &self,
        key_id: &str,
        region: Option<&str>,
        context: &BTreeMap<String, String>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        let body = json!({
            "KeyId": key_id,
            "CiphertextBlob": B64.encode(ciphertext),
            "EncryptionContext": context,
        })
        .to_string();
        let answer = self
            .call(
                "Decrypt",
                region_of(key_id, region, &self.api.settings),
                &body,
            )
            .await?;
        blob(&answer, "Plaintext")
    }

    /// Any KMS action with its JSON request body; the answer's JSON.
    pub async fn call(&self, action: &str, region: &str, body: &str) -> Result<Value, AwsError> {
        self.api.call(action, region, body).await
    }
}

impl AwsJson {
    pub fn new(settings: AwsSettings, service: Service, outbound: Outbound) -> Self {
        Self {
            settings,
            service,
            outbound,
        }
    }

    /// The region calls go to when the caller names none.
    pub fn default_region(&self) -> &str {
        &self.settings.default_region
    }

    /// Any action with its JSON request body; the answer's JSON.
    pub async fn call(&self, action: &str, region: &str, body: &str) -> Result<Value, AwsError> {
        let service = self.service;
        let url = match &self.settings.endpoint {
            Some(e) => format!("{}/", e.trim_end_matches('/')),
            None => format!("https://{}.{region}.amazonaws.com/", service.name),
        };
        let target = format!("{}.{action}", service.target);
        let headers = self
            .signed_headers(&url, region, &target, body.as_bytes())
            .map_err(AwsError::Refused)?;
        let said = format!("{} {action}", service.label);
        let answer = post(&self.outbound, &url, headers, body.to_owned(), &said).await?;
        parse_answer(service.label, action, answer)
    }

    /// The request's headers, the SigV4 `Authorization` and `X-Amz-Date` among them.
    fn signed_headers(
        &self,
        url: &str,
        region: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        signed_headers(
            &self.settings,
            self.service.name,
            url,
            region,
            vec![
                (
                    "content-type".to_owned(),
                    "application/x-amz-json-1.1".to_owned(),
                ),
                ("x-amz-target".to_owned(), target.to_owned()),
            ],
            body,
        )
    }
}

/// POSTs `body` to `url` with `headers` (signed); a failure to reach AWS is `Unavailable`,
/// prefixed with `said` (the service and action).
async fn post(
    outbound: &Outbound,
    url: &str,
    headers: Vec<(String, String)>,
    body: String,
    said: &str,
) -> Result<Answer, AwsError> {
    outbound
        .send(
            reqwest::Method::POST,
            url,
            |mut r| {
                for (name, value) in &headers {
                    r = r.header(name.as_str(), value.as_str());
                }
                r.body(body.clone())
            },
            MAX_ANSWER,
        )
        .await
        .map_err(|e| match e {
            CallError::Refused(m) | CallError::Failed(m) => {
                AwsError::Unavailable(format!("{said}: {m}"))
            }
        })
}

/// `headers` for a POST of `body` to `url`, with the SigV4 `Authorization` and `X-Amz-Date`
/// for `service` in `region` under `settings`' identity.
fn signed_headers(
    settings: &AwsSettings,
    service: &str,
    url: &str,
    region: &str,
    mut headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .ok_or("the AWS endpoint is not a URL")?;
    headers.insert(0, ("host".to_owned(), host));
    let identity: Identity = Credentials::new(
        &settings.access_key_id,
        settings.secret_access_key.as_str(),
        settings.session_token.as_ref().map(|t| t.to_string()),
        None,
        "authsome",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("cannot sign: {e}"))?
        .into_parts();
    headers.retain(|(k, _)| k != "host");
    headers.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Ok(headers)
}

/// AWS IAM over the Query protocol: a form-encoded `POST /` (`Action`, `Version=2010-05-08`,
/// the action's parameters), signed with SigV4 for `iam` in `us-east-1` (IAM is global); the
/// answer is XML, errors `<ErrorResponse><Error><Code>…</Code><Message>…`.
pub struct Iam {
    settings: AwsSettings,
    outbound: Outbound,
}

impl Iam {
    pub fn new(settings: AwsSettings, outbound: Outbound) -> Self {
        Self { settings, outbound }
    }

    /// Any action with its parameters; the answer's XML text.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String, AwsError> {
        let url = match &self.settings.endpoint {
            Some(e) => format!("{}/", e.trim_end_matches('/')),
            None => "https://iam.amazonaws.com/".to_owned(),
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", action)
            .append_pair("Version", "2010-05-08")
            .extend_pairs(params)
            .finish();
        let headers = signed_headers(
            &self.settings,
            "iam",
            &url,
            "us-east-1",
            vec![(
                "content-type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            )],
            body.as_bytes(),
        )
        .map_err(AwsError::Refused)?;
        let answer = post(
            &self.outbound,
            &url,
            headers,
            body,
            &format!("IAM {action}"),
        )
        .await?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        if answer.status.is_success() {
            return Ok(text);
        }
        let field =
            |name: &str| xml_field(&text, name).map(|t| t.chars().take(300).collect::<String>());
        let code = field("Code").unwrap_or_else(|| format!("HTTP {}", answer.status.as_u16()));
        let said = format!(
            "IAM {action}: {code}{}",
            field("Message")
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        let retryable = answer.status.is_server_error()
            || answer.status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || matches!(code.as_str(), "Throttling" | "ServiceFailure");
        Err(if retryable {
            AwsError::Unavailable(said)
        } else {
            AwsError::Refused(said)
        })
    }
}

/// The text of the first element named `name` in an AWS XML answer.
pub fn xml_field(xml: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
        .map(str::to_owned)
}

fn region_of<'a>(key_id: &'a str, region: Option<&'a str>, settings: &'a AwsSettings) -> &'a str {
    authsome_domain::provider::kms_region(key_id)
        .or(region)
        .unwrap_or(&settings.default_region)
}

fn parse_answer(label: &str, action: &str, answer: Answer) -> Result<Value, AwsError> {
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if answer.status.is_success() {
        return body.ok_or_else(|| {
            AwsError::Unavailable(format!(
                "{label} {action} answered something other than JSON"
            ))
        });
    }
    let kind = body
        .as_ref()
        .and_then(|b| b.get("__type"))
        .and_then(Value::as_str)
        // `com.amazonaws.kms#AccessDeniedException` or plain.
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| format!("HTTP {}", answer.status.as_u16()));
    let message = body
        .as_ref()
        .and_then(|b| b.get("message").or_else(|| b.get("Message")))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(300).collect::<String>())
        .unwrap_or_default();
    let said = format!(
        "{label} {action}: {kind}{}{message}",
        if message.is_empty() { "" } else { ": " }
    );
    let retryable = answer.status.is_server_error()
        || answer.status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || matches!(
            kind.as_str(),
            "ThrottlingException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
                | "InternalServiceError"
        );
    Err(if retryable {
        AwsError::Unavailable(said)
    } else {
        AwsError::Refused(said)
    })
}

fn blob(answer: &Value, field: &str) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .and_then(|b| B64.decode(b).ok())
        .map(Zeroizing::new)
        .ok_or_else(|| AwsError::Unavailable(format!("KMS answered without a valid {field}")))
}
