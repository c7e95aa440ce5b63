//! The hop from the gateway to a dedicated instance: which headers may cross it, and the signed
//! assertion (`X-AuthSome-Forwarded`) with which the gateway vouches for what it checked (the
//! application, the key, the client's address, the request id).
//!
//! A client can send any header, so everything that names an identity (`X-Forwarded-*`,
//! `Forwarded`, `X-Real-IP`, every `X-AuthSome-*`) is removed before the gateway adds its own;
//! an instance believes a forwarded address or key only under a valid assertion. The assertion
//! is an HMAC-SHA256 under a key every replica derives from the deployment's master key, over
//! the method, path, application, request id, client address and key, valid for
//! [`MAX_SKEW_SECONDS`].

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName, CONNECTION};
use sha2::Sha256;
use smallvec::SmallVec;

/// The gateway's signed statement about a forwarded request.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-authsome-forwarded");

/// How far the assertion's time may be from the instance's clock.
pub const MAX_SKEW_SECONDS: u64 = 60;

/// Connection-level headers (RFC 9110 §7.6.1): meaningful for one hop only.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers with which a client could claim another address or origin.
const SPOOFABLE: [&str; 9] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Whether a request path may be forwarded as it is. An instance, or anything an upstream
/// turns out to be, may normalise a path before routing it; the gateway chose the application
/// from the path as written. So no path that normalises to something else crosses: no `.` or
/// `..` segment, no backslash, and none of `.`, `/`, `\` or `%` percent-encoded (which a
/// server might decode before normalising, or decode twice). No id or route of the customer
/// API needs any of them. The reason names what was found.
pub fn check_target(path: &str) -> Result<(), &'static str> {
    let bytes = path.as_bytes();
    // The usual path has none of `%`, `\` or a segment starting with `.`: one tight pass says
    // so (this runs on every forwarded request).
    let mut before = b'/';
    let mut suspect = false;
    for &b in bytes {
        if b == b'%' || b == b'\\' || (b == b'.' && before == b'/') {
            suspect = true;
            break;
        }
        before = b;
    }
    if !suspect {
        return Ok(());
    }
    if bytes.contains(&b'\\') {
        return Err("contains a backslash");
    }
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|b| *b == b'%') {
        let i = at + offset;
        let decoded = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or("has a malformed percent-encoding")?;
        if matches!(decoded, b'.' | b'/' | b'\\' | b'%') {
            return Err("has a percent-encoded dot, slash, backslash or percent sign");
        }
        at = i + 3;
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("has a dot segment");
    }
    Ok(())
}

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at the names present (usually none of these, or only `Connection`), rather
    // than a removal per listed name.
    let present: SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(&name.as_str()))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    // The names `Connection` lists are removed as text: no header name is built for them (a
    // name outside the standard ones would be an allocation), and a token that names no
    // header (`close`) or no valid name removes nothing. The values are kept by reference
    // count, not copied.
    let connection: SmallVec<[http::HeaderValue; 1]> =
        headers.get_all(CONNECTION).iter().cloned().collect();
    for name in present {
        headers.remove(name);
    }
    for value in &connection {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if !token.is_empty() {
                headers.remove(token);
            }
        }
    }
}

/// The tokens of a `Connection` field's values (the names of more hop-by-hop fields).
pub fn connection_tokens<'a>(values: impl Iterator<Item = &'a [u8]>) -> SmallVec<[&'a [u8]; 4]> {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a field of a client's request, named `name` as sent, crosses to the instance: not
/// hop-by-hop (the fixed ones and those the `Connection` field lists, `listed`), not one a
/// client could pass as someone else with ([`strip_client_identity`]), and not `Host` (the
/// gateway sends it as `X-Forwarded-Host`). The raw form of [`strip_hop_by_hop`] and
/// [`strip_client_identity`], for a request that was never a header map.
pub fn request_field_crosses(name: &[u8], listed: &[&[u8]]) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    !(is("host")
        || is("content-length")
        || HOP_BY_HOP.iter().any(|h| is(h))
        || SPOOFABLE.iter().any(|h| is(h))
        || (name.len() >= 11 && name[..11].eq_ignore_ascii_case(b"x-authsome-"))
        || listed.iter().any(|l| name.eq_ignore_ascii_case(l)))
}

/// Whether a field of an instance's response, named `name`, crosses back to the client: not
/// hop-by-hop (as [`strip_hop_by_hop`]) and not `Content-Length`. The gateway frames every
/// response it sends itself, from the body it sends: an instance's framing fields never stand
/// next to a body the gateway re-frames (an instance answering `Content-Length: 0` with a
/// chunked body would otherwise split the client's connection in two).
pub fn response_field_crosses(name: &[u8], listed: &[&[u8]]) -> bool {
    !(name.eq_ignore_ascii_case(b"content-length")
        || HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        || listed.iter().any(|l| name.eq_ignore_ascii_case(l)))
}

/// [`response_field_crosses`] for a response as a header map: removes the hop-by-hop fields
/// and the instance's `Content-Length`, so that the server frames the body it sends.
pub fn strip_response_framing(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(http::header::CONTENT_LENGTH);
}

/// Removes what a client could use to pass as someone or somewhere else: forwarding headers and
/// every `X-AuthSome-*` header (only the gateway sets those).
pub fn strip_client_identity(headers: &mut HeaderMap) {
    let claims = |name: &HeaderName| {
        SPOOFABLE.contains(&name.as_str()) || name.as_str().starts_with("x-authsome-")
    };
    if !headers.keys().any(claims) {
        return;
    }
    for name in SPOOFABLE {
        headers.remove(name);
    }
    let ours: SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-authsome-"))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

/// The fields a gateway adds to every request it forwards, once the client's own identity and
/// hop-by-hop fields are gone: both of its paths (a header map, and raw bytes) write these,
/// in this order, through [`ForwardedFields::each`].
pub struct ForwardedFields<'a> {
    pub app_id: &'a str,
    pub request_id: &'a str,
    /// The signed `X-AuthSome-Forwarded` value.
    pub assertion: &'a str,
    pub client_ip: &'a str,
    /// `https` when the deployment's public URL is, else `http`.
    pub proto: &'static str,
    /// The client's `Host`, if it sent one.
    pub host: Option<&'a [u8]>,
}

impl ForwardedFields<'_> {
    /// Calls `field(name, value)` for each field, names in lowercase.
    pub fn each<E>(
        &self,
        mut field: impl FnMut(&'static str, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        field("x-authsome-app-id", self.app_id.as_bytes())?;
        field("x-authsome-request-id", self.request_id.as_bytes())?;
        field("x-authsome-forwarded", self.assertion.as_bytes())?;
        field("x-forwarded-for", self.client_ip.as_bytes())?;
        field("x-forwarded-proto", self.proto.as_bytes())?;
        if let Some(host) = self.host {
            field("x-forwarded-host", host)?;
        }
        Ok(())
    }
}

/// What the gateway checked before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Unix seconds when the gateway signed it.
    pub issued_at: u64,
    pub app_id: String,
    pub request_id: String,
    /// The client's address as the gateway saw it.
    pub client_ip: String,
    /// SHA-256 (hex) of the API key the gateway verified, if the request carried one.
    pub key_hash: Option<String>,
    /// SHA-256 (hex) of the request body the gateway forwarded, when it held the body whole
    /// (every body up to 64 KiB); `None` for one it streamed through.
    pub body_sha256: Option<String>,
}

/// What an [`Assertion`] states, borrowed: what the gateway signs on every forwarded request
/// without copying any of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    pub issued_at: u64,
    pub app_id: &'a str,
    pub request_id: &'a str,
    pub client_ip: &'a str,
    pub key_hash: Option<&'a str>,
    pub body_sha256: Option<&'a str>,
}

/// SHA-256 (hex) of an empty body, which most forwarded requests have.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// SHA-256 (hex) of a body, for [`Claims::body_sha256`].
pub fn body_sha256(body: &[u8]) -> std::borrow::Cow<'static, str> {
    if body.is_empty() {
        return EMPTY_BODY_SHA256.into();
    }
    hex::encode(<Sha256 as sha2::Digest>::digest(body)).into()
}

impl Assertion {
    pub fn claims(&self) -> Claims<'_> {
        Claims {
            issued_at: self.issued_at,
            app_id: &self.app_id,
            request_id: &self.request_id,
            client_ip: &self.client_ip,
            key_hash: self.key_hash.as_deref(),
            body_sha256: self.body_sha256.as_deref(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("malformed forwarding assertion")]
    Malformed,
    #[error("forwarding assertion outside its time window")]
    Stale,
    #[error("forwarding assertion signature does not match")]
    BadSignature,
}

/// The key gateways sign assertions with and instances check them with (derived from the
/// master key, so every process of one deployment shares it and nobody else has it).
pub struct ForwardKey(Hmac<Sha256>);

impl ForwardKey {
    pub fn new(key: [u8; 32]) -> Self {
        // Keyed once: each assertion starts from a copy of this state.
        Self(
            <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .expect("HMAC-SHA256 takes a key of any length"),
        )
    }

    /// The `X-AuthSome-Forwarded` value for `assertion` on a request `method path_and_query`.
    pub fn sign(&self, assertion: &Claims<'_>, method: &str, path_and_query: &str) -> String {
        // On every forwarded request: pieced together rather than formatted.
        let sig = self.mac(assertion, method, path_and_query);
        let mut hex_sig = [0u8; 64];
        let hex_sig = match hex::encode_to_slice(sig, &mut hex_sig) {
            Ok(()) => std::str::from_utf8(&hex_sig).unwrap_or_default(),
            Err(_) => "",
        };
        let mut issued_at = itoa::Buffer::new();
        let parts = [
            "v2 t=",
            issued_at.format(assertion.issued_at),
            " app=",
            assertion.app_id,
            " rid=",
            assertion.request_id,
            " ip=",
            assertion.client_ip,
            " key=",
            assertion.key_hash.unwrap_or("-"),
            " body=",
            assertion.body_sha256.unwrap_or("-"),
            " sig=",
            hex_sig,
        ];
        // Sized once: growing it would copy it.
        let mut value = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            value.push_str(part);
        }
        value
    }

    /// Checks a header value against the request it came with, at `now` (unix seconds).
    pub fn verify(
        &self,
        value: &str,
        method: &str,
        path_and_query: &str,
        now: u64,
    ) -> Result<Assertion, ForwardError> {
        let mut fields = value.split(' ');
        if fields.next() != Some("v2") {
            return Err(ForwardError::Malformed);
        }
        let mut get = |name: &str| {
            fields
                .next()
                .and_then(|f| f.strip_prefix(name))
                .and_then(|f| f.strip_prefix('='))
                .filter(|v| !v.is_empty())
                .ok_or(ForwardError::Malformed)
        };
        let issued_at = get("t")?
            .parse::<u64>()
            .map_err(|_| ForwardError::Malformed)?;
        let claims = Claims {
            issued_at,
            app_id: get("app")?,
            request_id: get("rid")?,
            client_ip: get("ip")?,
            key_hash: Some(get("key")?).filter(|k| *k != "-"),
            body_sha256: Some(get("body")?).filter(|b| *b != "-"),
        };
        let sig = hex::decode(get("sig")?).map_err(|_| ForwardError::Malformed)?;
        if fields.next().is_some() {
            return Err(ForwardError::Malformed);
        }
        let expected = self.mac(&claims, method, path_and_query);
        if !authsome_domain::keys::same_secret(&expected, &sig) {
            return Err(ForwardError::BadSignature);
        }
        if issued_at.abs_diff(now) > MAX_SKEW_SECONDS {
            return Err(ForwardError::Stale);
        }
        Ok(Assertion {
            issued_at,
            app_id: claims.app_id.to_owned(),
            request_id: claims.request_id.to_owned(),
            client_ip: claims.client_ip.to_owned(),
            key_hash: claims.key_hash.map(str::to_owned),
            body_sha256: claims.body_sha256.map(str::to_owned),
        })
    }

    fn mac(&self, a: &Claims<'_>, method: &str, path_and_query: &str) -> [u8; 32] {
        let mut mac = self.0.clone();
        for part in [
            "authsome.forward.v2",
            itoa::Buffer::new().format(a.issued_at),
            method,
            path_and_query,
            a.app_id,
            a.request_id,
            a.client_ip,
            a.key_hash.unwrap_or("-"),
            a.body_sha256.unwrap_or("-"),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn assertion() -> Assertion {
        Assertion {
            issued_at: 1_700_000_000,
            app_id: "app_01jd4v0z3c8x2m5q7w9e1r6t0y".into(),
            request_id: "req_01jd4v0z3c8x2m5q7w9e1r6t0y".into(),
            client_ip: "2001:db8::1".into(),
            key_hash: Some("ab".repeat(32)),
            body_sha256: Some(body_sha256(b"{}").into_owned()),
        }
    }

    #[test]
    fn an_assertion_verifies_only_for_its_request_key_and_time() {
        let key = ForwardKey::new([7; 32]);
        let a = assertion();
        let value = key.sign(&a.claims(), "POST", "/v1/app/users?limit=2");
        let now = a.issued_at + 30;
        assert_eq!(
            key.verify(&value, "POST", "/v1/app/users?limit=2", now),
            Ok(a.clone())
        );
        for (method, path) in [("GET", "/v1/app/users?limit=2"), ("POST", "/v1/app/users")] {
            assert_eq!(
                key.verify(&value, method, path, now),
                Err(ForwardError::BadSignature)
            );
        }
        assert_eq!(
            ForwardKey::new([8; 32]).verify(&value, "POST", "/v1/app/users?limit=2", now),
            Err(ForwardError::BadSignature)
        );
        assert_eq!(
            key.verify(&value, "POST", "/v1/app/users?limit=2", a.issued_at + 61),
            Err(ForwardError::Stale)
        );
        // Any changed field breaks the signature.
        let forged = value.replace("ip=2001:db8::1", "ip=10.0.0.1");
        assert_eq!(
            key.verify(&forged, "POST", "/v1/app/users?limit=2", now),
            Err(ForwardError::BadSignature)
        );
        // The body it names is signed too.
        let other_body = value.replace(&*body_sha256(b"{}"), &body_sha256(b"{\"x\":1}"));
        assert_ne!(other_body, value);
        assert_eq!(
            key.verify(&other_body, "POST", "/v1/app/users?limit=2", now),
            Err(ForwardError::BadSignature)
        );
        let keyless = Assertion {
            key_hash: None,
            ..a.clone()
        };
        let value = key.sign(&keyless.claims(), "GET", "/v1/app/.well-known/jwks.json");
        assert!(value.contains(" key=- "));
        assert_eq!(
            key.verify(&value, "GET", "/v1/app/.well-known/jwks.json", now),
            Ok(keyless)
        );
        for bad in [
            "",
            "v2 t=1",
            "v2 t=x app=a rid=r ip=i key=- body=- sig=00",
            // The first version, which named no body, is no longer accepted.
            "v1 t=1 app=a rid=r ip=i key=- sig=00",
            "v1 t=1",
        ] {
            assert_eq!(
                key.verify(bad, "GET", "/", now),
                Err(ForwardError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn raw_fields_cross_as_the_header_map_forms_decide() {
        let fields: [(&str, &str); 14] = [
            ("Connection", "keep-alive, X-Secret-Hop, close"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-REAL-IP", "6.6.6.6"),
            ("X-AuthSome-App-ID", "app_other"),
            ("Host", "client.example"),
            ("Content-Length", "2"),
            ("Authorization", "Bearer sk_test_x"),
            ("Content-Type", "application/json"),
            ("x-custom", "kept"),
            ("X-Authsomething", "kept, not ours"),
        ];
        let listed = connection_tokens(
            fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .map(|(_, v)| v.as_bytes()),
        );
        let crossing: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| request_field_crosses(n.as_bytes(), &listed))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            crossing,
            [
                "Authorization",
                "Content-Type",
                "x-custom",
                "X-Authsomething"
            ]
        );
        // Responses keep what is not hop-by-hop or framing, identity headers included.
        let back: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| response_field_crosses(n.as_bytes(), &listed))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            back,
            [
                "X-Forwarded-For",
                "X-REAL-IP",
                "X-AuthSome-App-ID",
                "Host",
                "Authorization",
                "Content-Type",
                "x-custom",
                "X-Authsomething"
            ]
        );
    }

    #[test]
    fn hygiene_removes_hop_by_hop_and_identity_headers() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop, close, not a name"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-authsome-app-id", "app_other"),
            ("x-authsome-forwarded", "v1 forged"),
            ("authorization", "Bearer sk_test_x"),
            ("content-type", "application/json"),
            ("x-custom", "kept"),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut h);
        strip_client_identity(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "content-type", "x-custom"]);
    }

    #[test]
    fn only_paths_that_mean_what_they_say_are_forwarded() {
        for fine in [
            "/v1/app_1",
            "/v1/app_1/users/usr_2",
            "/v1/app_1/a%20b",
            "/v1/app_1/x.y",
        ] {
            assert_eq!(check_target(fine), Ok(()), "{fine}");
        }
        for bad in [
            "/v1/app_1/../../secret.txt",
            "/v1/app_1/./users",
            "/v1/app_1/..",
            "/v1/app_1/%2e%2e/%2E%2E/secret.txt",
            "/v1/app_1/.%2e/x",
            "/v1/app_1/x%2f..%2f..%2fsecret",
            "/v1/app_1/x%2F..",
            "/v1/app_1\\..\\secret",
            "/v1/app_1/%5c..",
            "/v1/app_1/%252e%252e/x",
            "/v1/app_1/%zz",
            "/v1/app_1/%2",
        ] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_response_loses_its_framing_fields() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("content-length", "0"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        strip_response_framing(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["content-type"]);
    }
}
