//! The KMS client against `moto_server`: SigV4-signed JSON 1.1 that a real AWS endpoint
//! accepts, the encryption context enforced, and KMS's refusals told apart from outages.

use std::collections::BTreeMap;

use authsome_connect::aws::{AwsError, AwsSettings, Kms};
use authsome_testkit::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use zeroize::Zeroizing;

fn kms(endpoint: &str) -> Kms {
    Kms::new(AwsSettings {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: Zeroizing::new(SECRET_ACCESS_KEY.into()),
        session_token: None,
        default_region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
    })
}

fn context(ws: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("authsome:workspace".to_owned(), ws.to_owned())])
}

#[tokio::test]
async fn encrypts_and_decrypts_under_a_customer_key_bound_to_its_context() {
    let Some(moto) = Moto::start() else { return };
    let kms = kms(&moto.url);
    let created = kms
        .call(
            "CreateKey",
            "us-east-1",
            r#"{"Description":"customer key"}"#,
        )
        .await
        .expect("CreateKey");
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    assert!(arn.starts_with("arn:aws:kms:us-east-1:"), "{arn}");

    let sealed = kms
        .encrypt(&arn, None, &context("ws_a"), b"vercel-token")
        .await
        .unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"vercel-token"));
    let opened = kms
        .decrypt(&arn, None, &context("ws_a"), &sealed)
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), b"vercel-token");

    // Another workspace's context: KMS refuses, and says so (not an outage).
    let refused = kms
        .decrypt(&arn, None, &context("ws_b"), &sealed)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AwsError::Refused(m) if m.contains("InvalidCiphertextException")),
        "{refused:?}"
    );
    // A key that does not exist.
    let missing = kms
        .encrypt(
            "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
            None,
            &context("ws_a"),
            b"x",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, AwsError::Refused(m) if m.contains("NotFoundException")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_unavailable_not_refused() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let kms = kms(&format!("http://127.0.0.1:{port}"));
    let down = kms
        .encrypt("alias/x", None, &context("ws"), b"x")
        .await
        .unwrap_err();
    assert!(matches!(down, AwsError::Unavailable(_)), "{down:?}");
}
