//! List parameters and keyset page tokens.
//!
//! A token is the position of the last item of a page in the index that
//! serves the requested order, so page N costs the same as page 1. It is
//! opaque (base64url of a small JSON array), deterministic (the same
//! position always gives the same token), and bound to its ordering: a token
//! used with another `orderBy`/`sortOrder` is rejected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{Result, bad_request};
use super::filter::{self, Expr};
use crate::store::port::Cursor;

/// Sort field of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderBy {
    Id,
    CreateTime,
    LastUpdateTime,
    /// Our extension.
    Name,
}

impl OrderBy {
    pub fn parse(s: &str) -> Option<OrderBy> {
        Some(match s {
            "ID" => OrderBy::Id,
            "CREATE_TIME" => OrderBy::CreateTime,
            "LAST_UPDATE_TIME" => OrderBy::LastUpdateTime,
            "NAME" => OrderBy::Name,
            _ => return None,
        })
    }
    fn code(self) -> &'static str {
        match self {
            OrderBy::Id => "I",
            OrderBy::CreateTime => "C",
            OrderBy::LastUpdateTime => "U",
            OrderBy::Name => "N",
        }
    }
}

/// A list request, validated.
#[derive(Debug, Clone)]
pub struct ListParams {
    /// 0 = no limit.
    pub page_size: usize,
    pub order_by: OrderBy,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub filter: Option<Expr>,
}

/// Largest page a client may ask for (a bigger `pageSize` is clamped).
pub const MAX_PAGE: usize = 10_000;

/// Raw query parameters of a list call, as strings.
#[derive(Debug, Clone, Default)]
pub struct RawListParams<'a> {
    pub page_size: Option<&'a str>,
    pub order_by: Option<&'a str>,
    pub sort_order: Option<&'a str>,
    pub next_page_token: Option<&'a str>,
    pub filter_query: Option<&'a str>,
}

impl ListParams {
    /// Validate raw parameters. `strict_order`: an unknown `orderBy` is an
    /// error (v1) instead of falling back to ID (v1alpha3).
    pub fn parse(raw: &RawListParams, strict_order: bool) -> Result<ListParams> {
        let page_size = match raw.page_size.map(str::trim) {
            None | Some("") => 0,
            Some(s) => match s.parse::<usize>() {
                Ok(n) => n.min(MAX_PAGE),
                Err(_) => {
                    return bad_request(format!("pageSize: '{s}' is not a non-negative integer"));
                }
            },
        };
        let order_by = match raw.order_by.map(str::trim) {
            None | Some("") => OrderBy::Id,
            Some(s) => match OrderBy::parse(&s.to_ascii_uppercase()) {
                Some(o) => o,
                None if strict_order => {
                    return bad_request(format!(
                        "orderBy: '{s}' is not one of ID, CREATE_TIME, LAST_UPDATE_TIME, NAME"
                    ));
                }
                None => OrderBy::Id,
            },
        };
        let descending = match raw.sort_order.map(|s| s.trim().to_ascii_uppercase()) {
            None => false,
            Some(s) if s.is_empty() || s == "ASC" => false,
            Some(s) if s == "DESC" => true,
            Some(s) => return bad_request(format!("sortOrder: '{s}' is not ASC or DESC")),
        };
        let after = match raw.next_page_token.map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(decode_token(t, order_by, descending)?),
        };
        let filter = match raw.filter_query.map(str::trim) {
            None | Some("") => None,
            Some(q) => {
                Some(filter::parse(q).map_err(|e| super::error::Error::BadRequest(e.to_string()))?)
            }
        };
        Ok(ListParams {
            page_size,
            order_by,
            descending,
            after,
            filter,
        })
    }
}

/// The token that resumes after `cursor` in this ordering.
pub fn encode_token(cursor: &Cursor, order_by: OrderBy, descending: bool) -> String {
    let dir = if descending { "D" } else { "A" };
    let v = serde_json::json!([order_by.code(), dir, cursor.index_key, cursor.pk, cursor.sk]);
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Decode a token, checking that it belongs to this ordering.
pub fn decode_token(token: &str, order_by: OrderBy, descending: bool) -> Result<Cursor> {
    let invalid = || {
        bad_request(format!(
            "nextPageToken: '{token}' is not a valid page token"
        ))
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
        return invalid();
    };
    let Ok(serde_json::Value::Array(parts)) = serde_json::from_slice(&bytes) else {
        return invalid();
    };
    let strs: Vec<&str> = parts.iter().filter_map(|p| p.as_str()).collect();
    let [o, d, index_key, pk, sk] = strs.as_slice() else {
        return invalid();
    };
    let dir = if descending { "D" } else { "A" };
    if *o != order_by.code() || *d != dir {
        return bad_request(
            "nextPageToken belongs to a different orderBy/sortOrder: repeat the request that returned it",
        );
    }
    Ok(Cursor {
        index_key: index_key.to_string(),
        pk: pk.to_string(),
        sk: sk.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_parameters_are_rejected() {
        let p = |ps: &str| {
            ListParams::parse(
                &RawListParams {
                    page_size: Some(ps),
                    ..Default::default()
                },
                true,
            )
        };
        assert!(p("abc").is_err());
        assert!(p("-1").is_err());
        assert_eq!(p("7").unwrap().page_size, 7);
        let o = |s: &str, strict| {
            ListParams::parse(
                &RawListParams {
                    order_by: Some(s),
                    ..Default::default()
                },
                strict,
            )
        };
        assert!(o("SIZE", true).is_err());
        assert_eq!(o("SIZE", false).unwrap().order_by, OrderBy::Id);
        assert_eq!(o("NAME", true).unwrap().order_by, OrderBy::Name);
        assert!(decode_token("%%%", OrderBy::Id, false).is_err());
        assert!(decode_token("", OrderBy::Id, false).is_err());
    }

    #[test]
    fn token_is_bound_to_its_ordering() {
        let c = Cursor {
            index_key: "k".into(),
            pk: "p".into(),
            sk: "s".into(),
        };
        let t = encode_token(&c, OrderBy::Name, true);
        assert!(decode_token(&t, OrderBy::Id, true).is_err());
        assert!(decode_token(&t, OrderBy::Name, false).is_err());
        assert_eq!(decode_token(&t, OrderBy::Name, true).unwrap(), c);
    }

    proptest! {
        #[test]
        fn token_round_trips_and_is_deterministic(k in ".*", pk in ".*", sk in ".*", desc: bool) {
            let c = Cursor { index_key: k, pk, sk };
            let t = encode_token(&c, OrderBy::LastUpdateTime, desc);
            prop_assert_eq!(&t, &encode_token(&c, OrderBy::LastUpdateTime, desc));
            prop_assert_eq!(decode_token(&t, OrderBy::LastUpdateTime, desc).unwrap(), c);
        }

        #[test]
        fn arbitrary_tokens_never_panic(t in ".*") {
            let _ = decode_token(&t, OrderBy::Id, false);
        }
    }
}
