//! Cursor pagination: `?limit=` (1–100, default 20) and an opaque `?cursor=` that resumes after the
//! last id returned. Ids are time-ordered, so lists are in creation order.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::ValidationError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A validated page request: fetch up to `limit` items with id greater than `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ValidationError::new("limit", "must be between 1 and 100"));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ValidationError::new("cursor", "is not a cursor returned by this API")
            })?),
        };
        Ok(Self { limit, after })
    }

    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in id order.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> &str) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|last| encode_cursor(id_of(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(c: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    // A cursor always wraps an id (`prefix_` + 26 base32 characters), or a few joined by `/`
    // (a listing ordered by more than one).
    let ids = s.split('/');
    let is_id = |id: &str| {
        id.split_once('_').is_some_and(|(prefix, body)| {
            !prefix.is_empty() && prefix.len() <= 8 && crate::id::decode_uuid(body).is_some()
        })
    };
    (ids.clone().count() <= 3 && ids.into_iter().all(is_id)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::WorkspaceId;

    #[test]
    fn pages_and_cursors() {
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(None, Some("garbage!")).is_err());
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 20);
        let ids: Vec<WorkspaceId> = (0..3).map(|_| WorkspaceId::new()).collect();
        let page = Page::from_rows(ids.clone(), 2, |id| id.as_str());
        assert_eq!(page.items.len(), 2);
        let cursor = page.next_cursor.unwrap();
        let next = PageRequest::parse(Some(2), Some(&cursor)).unwrap();
        assert_eq!(next.after.as_deref(), Some(ids[1].as_str()));
        // Ids joined by `/` too, and nothing else.
        let joined = encode_cursor(&format!("{}/{}", ids[0], ids[1]));
        let next = PageRequest::parse(None, Some(&joined)).unwrap();
        assert_eq!(next.after, Some(format!("{}/{}", ids[0], ids[1])));
        for bad in [
            format!("{}/", ids[0]),
            format!("{}/x_1", ids[0]),
            "a/b".into(),
        ] {
            assert!(
                PageRequest::parse(None, Some(&encode_cursor(&bad))).is_err(),
                "{bad}"
            );
        }
        let last = Page::from_rows(ids, 3, |id| id.as_str());
        assert!(last.next_cursor.is_none());
    }
}
