//! Stripe's webhook signatures and events, as Stripe's libraries check them: the
//! `Stripe-Signature` header (`t=<unix seconds>,v1=<hex>,…`) carries one or more `v1` HMAC-SHA256
//! signatures of `<t>.<raw body>` under the endpoint's secret (several while a secret is rolled);
//! one must match, and `t` must be within the tolerance of now.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's libraries' default tolerance.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the Stripe-Signature timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature in Stripe-Signature matches the payload")]
    Mismatch,
}

/// Checks `header` against `payload` under `secret` at `now` (Unix seconds).
pub fn verify(header: &str, payload: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => timestamp = v.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(v) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, payload);
    // `verify_slice` compares in constant time.
    if signatures
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        return Ok(());
    }
    Err(SignatureError::Mismatch)
}

fn mac(secret: &str, t: i64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `t` (tests and fakes).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let signature = hex::encode(mac(secret, t, payload).finalize().into_bytes());
    format!("t={t},v1={signature}")
}

/// The parts of an event this deployment acts on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// What an event changes about the workspace of its customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `invoice.payment_failed`: the customer API answers 402 until paid.
    PastDue,
    /// `invoice.paid`.
    Current,
    /// `customer.subscription.deleted`: back to the free plan.
    Free,
}

impl Event {
    /// The customer the event is about (`data.object.customer`, or the object itself when it
    /// is a customer).
    pub fn customer(&self) -> Option<&str> {
        let object = &self.data.object;
        match object.get("object").and_then(|o| o.as_str()) {
            Some("customer") => object.get("id").and_then(|v| v.as_str()),
            _ => object.get("customer").and_then(|v| v.as_str()),
        }
    }

    /// What it changes; `None` for an event this deployment does not act on.
    pub fn effect(&self) -> Option<Effect> {
        match self.kind.as_str() {
            "invoice.payment_failed" => Some(Effect::PastDue),
            "invoice.paid" => Some(Effect::Current),
            "customer.subscription.deleted" => Some(Effect::Free),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signature_of_the_exact_payload_within_the_tolerance_verifies() {
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let header = sign(body, SECRET, 1_000_000);
        assert_eq!(verify(&header, body, SECRET, 1_000_000 + 299), Ok(()));
        assert_eq!(
            verify(&header, body, SECRET, 1_000_000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&header, b"{}", SECRET, 1_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, "whsec_other", 1_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("t=1", body, SECRET, 1),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify("", body, SECRET, 1), Err(SignatureError::Malformed));
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let body = b"{}";
        let good = sign(body, SECRET, 50);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=50,v1={},v1={v1},v0=ignored", "00".repeat(32));
        assert_eq!(verify(&header, body, SECRET, 60), Ok(()));
    }

    #[test]
    fn events_name_their_customer_and_effect() {
        let e: Event = serde_json::from_str(
            r#"{"id":"evt_1","type":"invoice.payment_failed","data":{"object":{"object":"invoice","customer":"cus_1"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (e.customer(), e.effect()),
            (Some("cus_1"), Some(Effect::PastDue))
        );
        let e: Event = serde_json::from_str(
            r#"{"id":"evt_2","type":"customer.updated","data":{"object":{"object":"customer","id":"cus_2"}}}"#,
        )
        .unwrap();
        assert_eq!((e.customer(), e.effect()), (Some("cus_2"), None));
    }
}
