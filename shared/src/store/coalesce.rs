//! Reads of one item that arrive together share one request to the store,
//! without giving up strong consistency.
//!
//! Thousands of pods starting at once (a rollout) read the same few items:
//! the model's name claim and home, the version, its artifacts. DynamoDB
//! serves one item at most 3,000 consistent reads a second. Here, a get of
//! a key that no read is fetching starts one; a get that arrives while a
//! read of its key is already on its way waits for it to end and then
//! shares the *next* read with every get that arrived meanwhile. Each get
//! is answered by a read that started after it arrived, so it sees every
//! write acknowledged before it arrived (what a consistent read promises),
//! and one process sends at most about one read per key per round trip
//! (about 200 a second at 5 ms), however many gets it serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::port::{Cond, Item, Query, QueryPage, StoreError, Table};

type Read = Shared<BoxFuture<'static, Result<Option<Item>, StoreError>>>;

/// The reads of one key: the one on its way, and the one that follows it.
#[derive(Default)]
struct Flights {
    current: Option<Read>,
    next: Option<Read>,
}

/// A table whose gets of one key share requests (see the module's doc);
/// every other call passes through.
pub struct Coalesced {
    inner: Arc<dyn Table>,
    flights: Arc<Mutex<HashMap<(String, String), Flights>>>,
}

impl Coalesced {
    pub fn new(inner: Arc<dyn Table>) -> Coalesced {
        Coalesced {
            inner,
            flights: Arc::default(),
        }
    }

    fn read(&self, key: &(String, String)) -> Read {
        let inner = self.inner.clone();
        let (pk, sk) = key.clone();
        async move { inner.get(&pk, &sk).await }.boxed().shared()
    }

    /// Drop the reads of `key` that have ended (a get never joins one).
    fn settle(flights: &mut HashMap<(String, String), Flights>, key: &(String, String)) {
        let ended = |r: &Option<Read>| r.as_ref().is_some_and(|r| r.peek().is_some());
        if let Some(f) = flights.get_mut(key) {
            if ended(&f.current) {
                f.current = f.next.take();
            }
            if ended(&f.current) {
                f.current = None;
            }
            if f.current.is_none() {
                flights.remove(key);
            }
        }
    }
}

#[async_trait]
impl Table for Coalesced {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let key = (pk.to_string(), sk.to_string());
        let read = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            Self::settle(&mut flights, &key);
            let f = flights.entry(key.clone()).or_default();
            match (&f.current, &f.next) {
                (None, _) => {
                    let read = self.read(&key);
                    f.current = Some(read.clone());
                    read
                }
                (Some(_), Some(next)) => next.clone(),
                (Some(current), None) => {
                    // Starts once the read on its way has ended.
                    let (after, fresh) = (current.clone(), self.read(&key));
                    let next = async move {
                        let _ = after.await;
                        fresh.await
                    }
                    .boxed()
                    .shared();
                    f.next = Some(next.clone());
                    next
                }
            }
        };
        let result = read.await;
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        Self::settle(&mut flights, &key);
        result
    }
    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.inner.put(item, cond).await
    }
    async fn put_provisional(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        self.inner.put_provisional(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(&self, query: &Query) -> Result<QueryPage, StoreError> {
        self.inner.query(query).await
    }
    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        self.inner.increment(pk, sk, by).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A table whose gets take 20 ms and are counted; it answers the
    /// version of the one item, which puts bump.
    #[derive(Default)]
    struct Slow {
        gets: AtomicUsize,
        version: AtomicUsize,
    }

    #[async_trait]
    impl Table for Slow {
        async fn get(&self, _: &str, _: &str) -> Result<Option<Item>, StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            // What the read sees is fixed when it reaches the store.
            let v = self.version.load(Ordering::SeqCst) as u64;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Some(Item::plain("P", "s", v, String::new())))
        }
        async fn get_many(&self, _: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
            unreachable!()
        }
        async fn put(&self, _: Item, _: Cond) -> Result<(), StoreError> {
            self.version.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn delete(&self, _: &str, _: &str, _: Cond) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn query(&self, _: &Query) -> Result<QueryPage, StoreError> {
            unreachable!()
        }
        async fn increment(&self, _: &str, _: &str, _: u64) -> Result<u64, StoreError> {
            unreachable!()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn gets_of_one_key_share_reads_and_each_sees_the_writes_before_it() {
        let slow = Arc::new(Slow::default());
        let table = Arc::new(Coalesced::new(slow.clone()));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let table = table.clone();
            tasks.push(tokio::spawn(async move { table.get("P", "s").await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap().is_some());
        }
        let shared = slow.gets.load(Ordering::SeqCst);
        assert!(shared <= 3, "200 gets took {shared} reads");

        // A write acknowledged before a get is seen by it, even while a
        // read of the key (started before the write) is on its way.
        let early = {
            let table = table.clone();
            tokio::spawn(async move { table.get("P", "s").await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        table
            .put(Item::plain("P", "s", 0, String::new()), Cond::Always)
            .await
            .unwrap();
        let written = slow.version.load(Ordering::SeqCst) as u64;
        let late = table.get("P", "s").await.unwrap().unwrap();
        assert_eq!(late.version, written, "the get after the write sees it");
        assert!(early.await.unwrap().unwrap().unwrap().version < written);
        assert!(
            table.flights.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }
}
