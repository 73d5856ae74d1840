//! What every Relay-style connection shares: ids, opaque cursors, `PageInfo` and the bounds
//! on `first`. A domain's connection is its edge and connection types plus these.
use std::str::FromStr;

use async_graphql::{ID, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// The largest page any connection returns.
pub const MAX_FIRST: i32 = 100;

/// A UUID from a GraphQL `ID` argument, or VALIDATION naming the argument.
pub fn parse_id(field: &'static str, id: &ID) -> AppResult<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::validation(field, "must be a UUID"))
}

/// `first` as a row limit: 1..=[`MAX_FIRST`], or VALIDATION.
pub fn page_size(first: i32) -> AppResult<u64> {
    if !(1..=MAX_FIRST).contains(&first) {
        return Err(AppError::validation("first", "must be between 1 and 100"));
    }
    Ok(first as u64)
}

/// An opaque cursor: `tag:value`, base64url. The tag (e.g. `p1` for patients, `a1` for
/// access history) keeps one connection's cursors out of another's.
pub fn encode_cursor(tag: &str, value: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{value}"))
}

/// The value of a cursor made by [`encode_cursor`] with the same tag, or VALIDATION.
pub fn decode_cursor<T: FromStr>(tag: &str, cursor: &str) -> AppResult<T> {
    let bad = || AppError::validation("after", "is not a cursor returned by this API");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.strip_prefix(tag)?.strip_prefix(':'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)
}

/// A cursor for a position `(instant, id)` in a list ordered by time: `tag:<micros>/<id>`.
pub fn encode_time_cursor(tag: &str, at: chrono::DateTime<chrono::Utc>, id: Uuid) -> String {
    encode_cursor(tag, format_args!("{}/{}", at.timestamp_micros(), id))
}

/// The position in a cursor made by [`encode_time_cursor`] with the same tag, or VALIDATION.
pub fn decode_time_cursor(
    tag: &str,
    cursor: &str,
) -> AppResult<(chrono::DateTime<chrono::Utc>, Uuid)> {
    let raw: String = decode_cursor(tag, cursor)?;
    let bad = || AppError::validation("after", "is not a cursor returned by this API");
    let (t, id) = raw.split_once('/').ok_or_else(bad)?;
    let t = t
        .parse()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((t, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// Relay-style page information.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// For a page whose edges carry `cursors`, in order.
    pub fn new<'a>(
        mut cursors: impl DoubleEndedIterator<Item = &'a String>,
        has_next_page: bool,
        has_previous_page: bool,
    ) -> PageInfo {
        let start_cursor = cursors.next().cloned();
        let end_cursor = cursors
            .next_back()
            .cloned()
            .or_else(|| start_cursor.clone());
        PageInfo {
            has_next_page,
            has_previous_page,
            start_cursor,
            end_cursor,
        }
    }
}

/// A type that pages in a [`Connection`]: its GraphQL name, from which the connection's and
/// edge's names are made (`LabResult` → `LabResultConnection`, `LabResultEdge`).
pub trait Node: async_graphql::OutputType {
    const NAME: &'static str;
}

/// An edge: an opaque cursor and the node.
#[derive(SimpleObject)]
#[graphql(name_type)]
pub struct Edge<N: Node> {
    pub cursor: String,
    pub node: N,
}

impl<N: Node> async_graphql::TypeName for Edge<N> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Edge", N::NAME).into()
    }
}

/// A Relay connection of `N`: edges, page information, and the total a list may count (the
/// same rows it may show, never more).
#[derive(SimpleObject)]
#[graphql(name_type)]
pub struct Connection<N: Node> {
    pub edges: Vec<Edge<N>>,
    pub page_info: PageInfo,
    pub total_count: u64,
}

impl<N: Node> async_graphql::TypeName for Connection<N> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Connection", N::NAME).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_to_their_tag() {
        let id = Uuid::new_v4();
        let c = encode_cursor("p1", id);
        assert_eq!(decode_cursor::<Uuid>("p1", &c).unwrap(), id);
        assert!(decode_cursor::<Uuid>("a1", &c).is_err());
        assert!(decode_cursor::<i64>("a1", &encode_cursor("a11", 5)).is_err());
        assert_eq!(
            decode_cursor::<i64>("a1", &encode_cursor("a1", 42)).unwrap(),
            42
        );
        assert!(decode_cursor::<i64>("a1", "not base64!").is_err());
    }

    #[test]
    fn page_info_names_first_and_last() {
        let cs = ["a".to_string(), "b".to_string(), "c".to_string()];
        let p = PageInfo::new(cs.iter(), true, false);
        assert_eq!(p.start_cursor.as_deref(), Some("a"));
        assert_eq!(p.end_cursor.as_deref(), Some("c"));
        let one = PageInfo::new(cs[..1].iter(), false, true);
        assert_eq!(one.end_cursor.as_deref(), Some("a"));
        let none = PageInfo::new([].iter(), false, false);
        assert!(none.start_cursor.is_none() && none.end_cursor.is_none());
        assert_eq!(page_size(0).unwrap_err().code(), "VALIDATION");
        assert_eq!(page_size(101).unwrap_err().code(), "VALIDATION");
        assert_eq!(page_size(100).unwrap(), 100);
    }
}
