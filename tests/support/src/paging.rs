//! Following `nextPageToken` to the end of a list.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api::{Api, items};

/// More pages than any test list has: a walk this long is a loop.
const MAX_PAGES: usize = 10_000;

/// One page of a walk.
#[derive(Debug, Clone)]
pub struct Page {
    /// The `nextPageToken` it was asked with ("" for the first page).
    pub token: String,
    /// The response body (a checked list envelope).
    pub body: Value,
}

impl Page {
    /// Its items.
    pub fn items(&self) -> Vec<Value> {
        items(&self.body)
    }

    /// The token of the next page ("" on the last).
    pub fn next(&self) -> &str {
        self.body["nextPageToken"].as_str().unwrap_or_default()
    }
}

impl Api {
    /// One page of `path`: `query` plus `pageSize=page_size` and, unless
    /// empty, `nextPageToken=token`; the envelope checked.
    pub async fn page(
        &self,
        path: &str,
        query: &[(&str, &str)],
        page_size: usize,
        token: &str,
    ) -> Value {
        let size = page_size.to_string();
        let mut q = query.to_vec();
        q.push(("pageSize", &size));
        if !token.is_empty() {
            q.push(("nextPageToken", token));
        }
        self.list(path, &q).await
    }

    /// Every page of `path` (with `query`) of `page_size`, following
    /// `nextPageToken` until it is empty. Fails when a page does not echo
    /// `pageSize` or holds more than `page_size` items, and when a token
    /// comes back a second time (a client would loop) or the walk does not
    /// end.
    pub async fn pages(&self, path: &str, query: &[(&str, &str)], page_size: usize) -> Vec<Page> {
        let ctx = format!("{} {path} {query:?} pageSize={page_size}", self.prefix);
        let mut pages: Vec<Page> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut token = String::new();
        loop {
            assert!(pages.len() < MAX_PAGES, "{ctx}: paging does not end");
            let body = self.page(path, query, page_size, &token).await;
            assert_eq!(
                body["pageSize"].as_u64(),
                Some(page_size as u64),
                "{ctx}: pageSize echoed: {body}"
            );
            let page = Page { token, body };
            assert!(
                page.items().len() <= page_size,
                "{ctx}: more than pageSize items: {}",
                page.body
            );
            let next = page.next().to_owned();
            pages.push(page);
            if next.is_empty() {
                return pages;
            }
            assert!(
                seen.insert(next.clone()),
                "{ctx}: token {next:?} came back (the client would loop)"
            );
            token = next;
        }
    }

    /// The items of every page of [`Api::pages`], in order.
    pub async fn walk(&self, path: &str, query: &[(&str, &str)], page_size: usize) -> Vec<Value> {
        self.pages(path, query, page_size)
            .await
            .iter()
            .flat_map(Page::items)
            .collect()
    }
}

/// Every page but the last is full: a short page only ends a list.
#[track_caller]
pub fn assert_full_pages(pages: &[Page], page_size: usize, what: &str) {
    if let Some((_, before_last)) = pages.split_last() {
        for p in before_last {
            assert_eq!(
                p.items().len(),
                page_size,
                "{what}: a page with a non-empty nextPageToken must be full: {}",
                p.body
            );
        }
    }
}
