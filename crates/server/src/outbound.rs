//! Outbound HTTP to URLs customers give (identity issuers' key sets now; webhooks and rotation
//! connectors later). A destination is resolved here, every address judged by the operator's
//! policy (`AUTHSOME_OUTBOUND_ALLOW`: private and special addresses only when listed), and the
//! connection made to exactly a judged address, so a name cannot resolve elsewhere in between.
//! No redirects; bounded time and size.

use std::net::SocketAddr;
use std::time::Duration;

use authsome_domain::egress::EgressPolicy;

/// The largest document read.
const MAX_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct HttpKeySets {
    policy: EgressPolicy,
}

impl HttpKeySets {
    pub fn new(policy: EgressPolicy) -> Self {
        Self { policy }
    }

    /// The address `url` may be fetched at: its host resolved, each address judged.
    async fn destination(&self, url: &url::Url) -> Result<SocketAddr, String> {
        let host = url.host_str().ok_or("no host")?;
        let port = url.port_or_known_default().ok_or("no port")?;
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let mut refused = None;
        for address in addresses {
            match self.policy.check(host, address.ip()) {
                Ok(()) => return Ok(address),
                Err(e) => refused = Some(e.to_string()),
            }
        }
        Err(refused.unwrap_or_else(|| format!("{host} has no address")))
    }
}

#[async_trait::async_trait]
impl authsome_control::KeySetSource for HttpKeySets {
    async fn fetch(&self, uri: &str) -> Result<String, String> {
        let url = url::Url::parse(uri).map_err(|_| "not a URL".to_owned())?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("only http(s) URLs are fetched".into());
        }
        let address = self.destination(&url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .resolve(&host, address)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = client
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("the document is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| "the document is not UTF-8".into())
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
            refused.contains("request failed"),
            "allowed, then nothing listens: {refused}"
        );
        assert!(listed.fetch("http://10.0.0.1/jwks").await.is_err());
    }
}
