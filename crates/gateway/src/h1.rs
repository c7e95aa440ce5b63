//! HTTP/1.1 on the gateway's upstream connections (RFC 9112), only as much as forwarding needs:
//! a request head written into a buffer, a response head read with `httparse`, and the framing
//! of a response body (length, chunked, or until the connection closes).
//!
//! No I/O here: [`crate::proxy`] owns the connections and feeds these functions the bytes it
//! read. Everything that comes from the upstream is bounded ([`MAX_HEAD_BYTES`],
//! [`MAX_HEADERS`], chunk-size lines) and anything malformed is an error, never a panic.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::TRANSFER_ENCODING;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use http::{Method, StatusCode};
use smallvec::SmallVec;

/// The largest response head read from an upstream.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields in one response head or trailer section.
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// What is wrong with what an upstream sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum H1Error {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunked,
    #[error("the upstream switched protocols, which is not forwarded")]
    Upgrade,
}

/// How a request's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body, and none announced.
    None,
    Length(u64),
    Chunked,
}

/// The header fields of a request to forward.
#[derive(Clone, Copy)]
pub enum Fields<'a> {
    /// Every field but those this hop decides (`Host`, `Content-Length`, `Transfer-Encoding`,
    /// `Connection`) is written; the caller has removed the hop-by-hop ones.
    Map(&'a HeaderMap),
    /// `name: value\r\n` lines, ready to send as they are (the caller wrote them, without the
    /// fields this hop decides).
    Encoded(&'a [u8]),
}

/// Writes `METHOD prefix+path HTTP/1.1`, `Host`, the framing header and the request's other
/// fields, then the blank line.
pub(crate) fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    prefix: &str,
    path_and_query: &str,
    host: &HeaderValue,
    fields: Fields<'_>,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    match fields {
        Fields::Map(headers) => {
            for (name, value) in headers {
                if name == HOST
                    || name == CONTENT_LENGTH
                    || name == TRANSFER_ENCODING
                    || name == CONNECTION
                {
                    continue;
                }
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Fields::Encoded(lines) => out.extend_from_slice(lines),
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head, kept as the bytes it came in: header fields are ranges of
/// [`ResponseHead::raw`], so a head can be passed on without building a header map.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The head's bytes (status line and fields, without the blank line's CRLF).
    raw: Bytes,
    /// Name and value of each field, as spans of `raw`.
    fields: SmallVec<[(Span, Span); 12]>,
    pub(crate) framing: BodyFraming,
    /// Whether the connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

impl ResponseHead {
    /// Each field as sent (names in the case the upstream wrote them).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(name, value)| (name.of(&self.raw), value.of(&self.raw)))
    }

    /// The first value of the field `name` (lowercase).
    fn get<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values_of(&self.fields, &self.raw, name)
    }

    /// Whether the body is delimited by a length the head gives, and that length.
    pub fn content_length(&self) -> Option<u64> {
        match self.framing {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the response has no body at all (a `HEAD`, `204` or `304` answer).
    pub fn is_bodiless(&self) -> bool {
        self.framing == BodyFraming::Empty
    }

    /// The fields as a header map (values share the head's bytes).
    pub fn header_map(&self) -> Result<HeaderMap, H1Error> {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let name = HeaderName::from_bytes(name.of(&self.raw))
                .map_err(|_| H1Error::Head("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(self.raw.slice(value.range()))
                .map_err(|_| H1Error::Head("invalid header value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

/// Where a piece of a head is: offset and length (a head is far below 4 GiB).
#[derive(Debug, Clone, Copy, Default)]
pub struct Span(u32, u32);

impl Span {
    pub fn new(start: usize, len: usize) -> Self {
        Self(start as u32, len as u32)
    }

    /// The length of the piece, known without looking at the bytes.
    fn len(self) -> usize {
        self.1 as usize
    }

    pub fn range(self) -> Range<usize> {
        self.0 as usize..(self.0 + self.1) as usize
    }

    pub fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.range()]
    }
}

/// The values of the fields named `name` (any case) among `fields`, spans of `buf`. Names of
/// another length are passed over by their spans, without taking their bytes.
pub fn values_of<'a>(
    fields: &'a [(Span, Span)],
    buf: &'a [u8],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| {
            n.len() == name.len() && n.of(buf).eq_ignore_ascii_case(name.as_bytes())
        })
        .map(move |(_, v)| v.of(buf))
}

/// Parses the response head at the start of `buf` and removes it (and any interim `1xx`
/// responses before it) from `buf`. `Ok(None)`: the head is not complete yet.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        // Uninitialised: httparse writes the slots it fills, and zeroing all of them would cost
        // more than parsing a usual head.
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(H1Error::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(H1Error::Head("too many headers")),
            Err(_) => return Err(H1Error::Head("not an HTTP/1.x response")),
        };
        let code = response.code.ok_or(H1Error::Head("no status"))?;
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Head("invalid status"))?;
        let http11 = response.version == Some(1);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(H1Error::Upgrade);
        }
        if status.is_informational() {
            // 100 Continue, 103 Early Hints: interim, the final response follows.
            buf.advance(len);
            continue;
        }
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| Span::new(s.as_ptr() as usize - base, s.len());
        let fields = response
            .headers
            .iter()
            .map(|h| (offset(h.name.as_bytes()), offset(h.value)))
            .collect();
        let mut head = ResponseHead {
            status,
            raw: buf.split_to(len - 2).freeze(),
            fields,
            framing: BodyFraming::Empty,
            keep_alive: false,
        };
        buf.advance(2);
        head.framing = framing(method, &head)?;
        head.keep_alive = http11
            && !head
                .all("connection")
                .any(|v| list_has(v, "close") || list_has(v, "upgrade"))
            && head.framing != BodyFraming::UntilClose;
        return Ok(Some(head));
    }
}

fn framing(method: &Method, head: &ResponseHead) -> Result<BodyFraming, H1Error> {
    if method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyFraming::Empty);
    }
    if head.get("transfer-encoding").is_some() {
        // Chunked only as the final coding; anything else runs to the close.
        let last = head
            .all("transfer-encoding")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .fold(None, |_, t| Some(t));
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => BodyFraming::Chunked,
            _ => BodyFraming::UntilClose,
        });
    }
    let mut length = None;
    for value in head.all("content-length") {
        let n = parse_length(value).ok_or(H1Error::ContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(H1Error::ContentLength);
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
pub fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A `Content-Length` value: digits only (a list of equal values is one value).
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// What a chunked decoder made of the bytes it had.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The body is complete; the trailer fields, if any were sent.
    End(Option<HeaderMap>),
    /// More bytes are needed.
    More,
}

/// The state of a chunked body being read (RFC 9112 §7.1).
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, H1Error> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(H1Error::Chunked)
                        } else {
                            Ok(Decoded::More)
                        };
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Chunked);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = ChunkState::Done;
                        return Ok(Decoded::End(None));
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, trailers) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((len, fields))) => {
                            let mut trailers = HeaderMap::new();
                            for f in fields {
                                let (Ok(name), Ok(value)) = (
                                    HeaderName::from_bytes(f.name.as_bytes()),
                                    HeaderValue::from_bytes(f.value),
                                ) else {
                                    return Err(H1Error::Chunked);
                                };
                                trailers.append(name, value);
                            }
                            (len, trailers)
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {
                            return Ok(Decoded::More)
                        }
                        _ => return Err(H1Error::Chunked),
                    };
                    buf.advance(len);
                    self.state = ChunkState::Done;
                    return Ok(Decoded::End(Some(trailers)));
                }
                ChunkState::Done => return Ok(Decoded::End(None)),
            }
        }
    }
}

/// The size of a chunk-size line (`1a;ext=1` → 26), at most 16 hex digits.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(H1Error::Chunked);
    }
    let mut size: u64 = 0;
    for d in digits {
        let v = (*d as char).to_digit(16).ok_or(H1Error::Chunked)?;
        size = (size << 4) | u64::from(v);
    }
    Ok(size)
}

/// Appends one chunk of a chunked request body (`size CRLF data CRLF`).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 || i == hex.len() {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked request body, without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &str, method: Method) -> Result<Option<ResponseHead>, H1Error> {
        let mut buf = BytesMut::from(bytes);
        parse_response_head(&mut buf, &method)
    }

    #[test]
    fn a_request_head_carries_this_hops_framing_and_host_only() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "client.example"),
            ("content-length", "999"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("authorization", "Bearer sk_test_x"),
            ("x-custom", "a"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers.append("x-custom", HeaderValue::from_static("b"));
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &Method::POST,
            "/base",
            "/v1/app/x?y=1",
            &HeaderValue::from_static("10.0.0.1:9000"),
            Fields::Map(&headers),
            RequestFraming::Length(12),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /base/v1/app/x?y=1 HTTP/1.1\r\nhost: 10.0.0.1:9000\r\ncontent-length: 12\r\n\
             authorization: Bearer sk_test_x\r\nx-custom: a\r\nx-custom: b\r\n\r\n"
        );
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            &Method::GET,
            "",
            "/",
            &HeaderValue::from_static("h"),
            Fields::Encoded(b"x-a: 1\r\n"),
            RequestFraming::Chunked,
        );
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n"
        );
    }

    #[test]
    fn response_heads_and_their_framing() {
        let r = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.framing, BodyFraming::Length(2));
        assert!(r.keep_alive);
        let map = r.header_map().unwrap();
        let values: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        let raw: Vec<_> = r.fields().collect();
        assert_eq!(
            raw,
            [
                (&b"Content-Length"[..], &b"2"[..]),
                (b"X-A", b"1"),
                (b"x-a", b"2")
            ]
        );

        // The body stays in the buffer.
        let mut buf = BytesMut::from("HTTP/1.1 204 No Content\r\n\r\nrest");
        let r = parse_response_head(&mut buf, &Method::DELETE)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, BodyFraming::Empty);
        assert_eq!(&buf[..], b"rest");

        let cases = [
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                BodyFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                BodyFraming::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                BodyFraming::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", BodyFraming::UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
                BodyFraming::Length(3),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
                BodyFraming::Length(3),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
                BodyFraming::Length(3),
                false,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n",
                BodyFraming::Empty,
                true,
            ),
        ];
        for (text, framing, keep_alive) in cases {
            let r = head(text, Method::GET).unwrap().unwrap();
            assert_eq!((r.framing, r.keep_alive), (framing, keep_alive), "{text:?}");
        }
        let r = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n",
            Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, BodyFraming::Empty);
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_heads_wait() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        );
        let r = parse_response_head(&mut buf, &Method::POST)
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 201);
        assert!(buf.is_empty());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
            .unwrap()
            .is_none());
        assert!(head("", Method::GET).unwrap().is_none());
    }

    #[test]
    fn bad_response_heads_are_errors() {
        for (text, error) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                H1Error::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                H1Error::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
                H1Error::ContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                H1Error::ContentLength,
            ),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", H1Error::Upgrade),
            (
                "SSH-2.0-OpenSSH\r\n\r\n",
                H1Error::Head("not an HTTP/1.x response"),
            ),
        ] {
            assert_eq!(head(text, Method::GET).unwrap_err(), error, "{text:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), Method::GET).unwrap_err(),
            H1Error::Head("too many headers")
        );
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&huge, Method::GET).unwrap_err(), H1Error::HeadTooLarge);
    }

    /// Decodes `wire` fed in pieces of `step` bytes.
    fn decode_all(
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize), H1Error> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::End(trailers) => return Ok((body, trailers, buf.len())),
                Decoded::More => {
                    if fed >= wire.len() {
                        return Err(H1Error::Chunked);
                    }
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire = b"5\r\nhello\r\n1A;ext=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (body, trailers, left) = decode_all(wire, step).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            assert!(trailers.is_none());
            // What follows the body is not taken.
            assert!(left <= 4, "{left}");
        }
        let (body, trailers, _) =
            decode_all(b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n", 4).unwrap();
        assert_eq!(body, b"abc");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-checksum"], "1");
        assert_eq!(trailers["x-more"], "2");
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for wire in [
            &b"z\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"\r\nabc",
            b"11111111111111111\r\n",
            b"3\r\nabc\r\n0\r\nbad header\r\n\r\n",
        ] {
            assert_eq!(
                decode_all(wire, 3).unwrap_err(),
                H1Error::Chunked,
                "{wire:?}"
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert_eq!(decode_all(&long, 10_000).unwrap_err(), H1Error::Chunked);
    }

    #[test]
    fn written_chunks_decode_back() {
        let mut wire = Vec::new();
        for piece in [&b"a"[..], &[7u8; 300][..], b"", b"end"] {
            write_chunk(&mut wire, piece);
        }
        wire.extend_from_slice(LAST_CHUNK);
        assert!(wire.starts_with(b"1\r\na\r\n12c\r\n"));
        let (body, _, left) = decode_all(&wire, 64).unwrap();
        assert_eq!(body.len(), 1 + 300 + 3);
        assert_eq!(left, 0);
    }
}
