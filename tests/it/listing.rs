//! The list checks the API tests share: every `orderBy` x `sortOrder` of a
//! list, unpaged and paged (with the walker of `registry-test-support`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

pub const ORDER_BYS: [&str; 4] = ["ID", "CREATE_TIME", "LAST_UPDATE_TIME", "NAME"];
pub const SORT_ORDERS: [&str; 2] = ["ASC", "DESC"];

/// Distinct milliseconds make CREATE_TIME / LAST_UPDATE_TIME orders meaningful.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    N(u64),
    S(String),
}

fn sort_key(item: &Value, order_by: &str) -> Key {
    match order_by {
        "ID" => Key::N(id_num(item)),
        "CREATE_TIME" => Key::N(num_str(item, "createTimeSinceEpoch")),
        "LAST_UPDATE_TIME" => Key::N(num_str(item, "lastUpdateTimeSinceEpoch")),
        "NAME" => Key::S(item["name"].as_str().unwrap_or_default().to_owned()),
        other => panic!("no sort key for {other}"),
    }
}

/// Every `orderBy` x `sortOrder` on `path` (plus `extra`), unpaged and in
/// pages of `page_size`: exactly the `expected` items (in their latest
/// state, each a well-formed entity), each once, sorted by the key in the
/// requested direction (ids never tie); the pages, every one but the last
/// full and each the same when asked again (same items, same token),
/// concatenated equal the unpaged order; the last token is "". The default
/// order is ID ascending. Returns the ids in that order.
pub async fn check_paged_orders(
    api: &Api,
    path: &str,
    extra: &[(&str, &str)],
    expected: &[Value],
    page_size: usize,
) -> Vec<String> {
    let expected_ids: Vec<String> = ids_of(expected);
    let expected_set: BTreeSet<String> = expected_ids.iter().cloned().collect();
    assert_eq!(
        expected_set.len(),
        expected.len(),
        "test setup: duplicate expected items"
    );
    for ob in ORDER_BYS {
        for so in SORT_ORDERS {
            let mut q: Vec<(&str, &str)> = extra.to_vec();
            q.push(("orderBy", ob));
            q.push(("sortOrder", so));
            let ctx = format!("{} {path} {q:?}", api.prefix);

            let full = api.list(path, &q).await;
            assert_eq!(full["nextPageToken"], "", "{ctx}: unpaged list is complete");
            assert_eq!(full["pageSize"], json!(0), "{ctx}: no pageSize = 0: {full}");
            let full_items = items(&full);
            let full_ids = ids_of(&full_items);
            assert_eq!(
                full_ids.iter().cloned().collect::<BTreeSet<_>>(),
                expected_set,
                "{ctx}: exactly the expected items"
            );
            assert_eq!(full_ids.len(), expected.len(), "{ctx}: duplicates: {full}");
            for it in &full_items {
                let want = expected.iter().find(|e| id(e) == id(it)).unwrap();
                assert_eq!(it, want, "{ctx}: listed item differs from its latest state");
                assert_entity_basics(it);
            }
            for w in full_items.windows(2) {
                let (a, b) = (sort_key(&w[0], ob), sort_key(&w[1], ob));
                let ok = if so == "ASC" { a <= b } else { a >= b };
                assert!(ok, "{ctx}: {} then {} out of order", w[0], w[1]);
                if ob == "ID" {
                    assert_ne!(a, b, "{ctx}: ids are unique");
                }
            }

            let pages = api.pages(path, &q, page_size).await;
            assert_full_pages(&pages, page_size, &ctx);
            for page in &pages {
                // Deterministic: the same request gives the same page and the same token.
                let again = api.page(path, &q, page_size, &page.token).await;
                assert_eq!(
                    again["nextPageToken"], page.body["nextPageToken"],
                    "{ctx} token {:?}: same position must yield the same token",
                    page.token
                );
                assert_eq!(
                    ids_of(&items(&again)),
                    ids_of(&page.items()),
                    "{ctx} token {:?}: same request, same page",
                    page.token
                );
            }
            let paged: Vec<Value> = pages.iter().flat_map(Page::items).collect();
            assert_eq!(
                ids_of(&paged),
                full_ids,
                "{ctx}: pages of {page_size} concatenated must equal the unpaged order"
            );
        }
    }
    let default = api.list(path, extra).await;
    let mut by_id = expected_ids;
    by_id.sort_by_key(|s| s.parse::<u64>().unwrap());
    assert_eq!(
        ids_of(&items(&default)),
        by_id,
        "{} {path} {extra:?}: default order is ID ASC",
        api.prefix
    );
    by_id
}

/// Names of the filtered list (unpaged), as a set.
pub async fn filtered_names(api: &Api, path: &str, filter: &str) -> BTreeSet<String> {
    let l = api.list(path, &[("filterQuery", filter)]).await;
    name_set(&items(&l))
}
