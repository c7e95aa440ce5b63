//! The one way out: every call to a URL a customer gave is resolved here, each address judged
//! by the operator's policy (`AUTHSOME_OUTBOUND_ALLOW`: private and special addresses only
//! when listed), and the connection made to exactly a judged address, so a name cannot resolve
//! elsewhere in between. Plain `http://` only to addresses that are not public (a service the
//! operator listed on its own network); anything public takes TLS. No redirects; bounded time
//! and size.

use std::net::SocketAddr;
use std::time::Duration;

use authsome_domain::egress::{is_public, EgressPolicy};

/// The largest body read by default.
pub const MAX_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A response, read whole (within the size bound).
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Why a call went nowhere: refused by the policy, or failed on the way. Never carries what
/// was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The policy refused the destination, or the URL is not one we call.
    Refused(String),
    /// Resolution, connection, time or size failed.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

/// Outbound HTTP under an egress policy.
#[derive(Debug, Clone)]
pub struct Outbound {
    policy: EgressPolicy,
    /// The operator's own endpoints (`AUTHSOME_AWS_ENDPOINT`) skip the judgement.
    trusted: bool,
}

impl Outbound {
    pub fn new(policy: EgressPolicy) -> Self {
        Self {
            policy,
            trusted: false,
        }
    }

    /// For destinations the operator configured, not a customer: not judged.
    pub fn trusted() -> Self {
        Self {
            policy: EgressPolicy::open(),
            trusted: true,
        }
    }

    /// The address `url` may be called at: its host resolved, each address judged.
    async fn destination(&self, url: &url::Url) -> Result<SocketAddr, CallError> {
        let refused = |m: String| CallError::Refused(m);
        let host = url.host_str().ok_or_else(|| refused("no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| refused("no port".into()))?;
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| CallError::Failed(format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut why = None;
        for address in addresses {
            if url.scheme() == "http" && is_public(address.ip()) && !self.trusted {
                why = Some(format!("{host} is public: only https:// is called there"));
                continue;
            }
            if self.trusted {
                return Ok(address);
            }
            match self.policy.check(host, address.ip()) {
                Ok(()) => return Ok(address),
                Err(e) => why = Some(e.to_string()),
            }
        }
        Err(refused(
            why.unwrap_or_else(|| format!("{host} has no address")),
        ))
    }

    /// Sends `request` (built on a client this call makes, pinned to a judged address) and
    /// reads the answer, at most `max_body` bytes.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        max_body: usize,
    ) -> Result<Answer, CallError> {
        let url = url::Url::parse(url).map_err(|_| CallError::Refused("not a URL".into()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(CallError::Refused("only http(s) URLs are called".into()));
        }
        let address = self.destination(&url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .resolve(&host, address)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let mut response = build(client.request(method, url))
            .send()
            .await
            // Without the URL: it may carry a customer's query.
            .map_err(|e| {
                CallError::Failed(format!("request to {host} failed: {}", e.without_url()))
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Failed(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > max_body {
                return Err(CallError::Failed(format!(
                    "{host} answered more than {max_body} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Identity issuers' key sets (workload identity federation).
pub struct HttpKeySets {
    outbound: Outbound,
}

impl HttpKeySets {
    pub fn new(policy: EgressPolicy) -> Self {
        Self {
            outbound: Outbound::new(policy),
        }
    }
}

#[async_trait::async_trait]
impl authsome_control::KeySetSource for HttpKeySets {
    async fn fetch(&self, uri: &str) -> Result<String, String> {
        let answer = self
            .outbound
            .send(
                reqwest::Method::GET,
                uri,
                |r| r.header("Accept", "application/json"),
                MAX_BODY,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status.is_success() {
            return Err(format!("answered {}", answer.status));
        }
        String::from_utf8(answer.body).map_err(|_| "the document is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authsome_control::KeySetSource;

    #[tokio::test]
    async fn private_and_special_addresses_are_refused_unless_listed() {
        let strict = HttpKeySets::new(EgressPolicy::open().without_private());
        for url in [
            "http://127.0.0.1:9/jwks",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/jwks",
            "http://localhost:9/jwks",
            "file:///etc/passwd",
        ] {
            assert!(strict.fetch(url).await.is_err(), "{url}");
        }
        let listed = HttpKeySets::new(EgressPolicy::public_with("127.0.0.1/32").unwrap());
        let refused = listed.fetch("http://127.0.0.1:9/jwks").await.unwrap_err();
        assert!(
            refused.contains("request to 127.0.0.1 failed"),
            "allowed, then nothing listens: {refused}"
        );
        assert!(listed.fetch("http://10.0.0.1/jwks").await.is_err());
    }

    #[tokio::test]
    async fn public_addresses_are_called_over_tls_only() {
        let open = Outbound::new(EgressPolicy::public_with("").unwrap());
        let refused = open
            .send(reqwest::Method::GET, "http://1.1.1.1/", |r| r, 16)
            .await
            .unwrap_err();
        assert_eq!(
            refused,
            CallError::Refused("1.1.1.1 is public: only https:// is called there".into())
        );
    }
}
