//! The DynamoDB backend of the metadata table (DynamoDB, ScyllaDB Alternator,
//! dynalite), through aws-sdk-dynamodb. One port call is one DynamoDB request:
//! GetItem (consistent), PutItem/DeleteItem with a condition on the `v`
//! attribute, Query (consistent on the base table and local indexes), and
//! UpdateItem `ADD` for counters. No transactions, no Scan.
//!
//! The table's shape lives in one file, `infra/dynamodb/table.json`
//! (CreateTable input), used here by `create_table_if_missing` and by infra/.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, LocalSecondaryIndex, Projection, ProjectionType, ReturnValue,
    ScalarAttributeType,
};
use serde_json::Value;

use super::port::{
    Cond, GLOBAL_INDEXES, Index, Item, LOCAL_INDEXES, MAX_BATCH_GET, Query, QueryPage, StoreError,
    Table, key_fits,
};

/// The CreateTable input shared with infra/ (the table name is replaced by `MR_TABLE`).
pub const TABLE_DEFINITION: &str = include_str!("../../../infra/dynamodb/table.json");

type Attrs = HashMap<String, AttributeValue>;

/// The metadata table in DynamoDB.
#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn local_attr(i: usize) -> String {
    format!("l{}", i + 1)
}
fn global_attrs(i: usize) -> (String, String) {
    (format!("g{}p", i + 1), format!("g{}s", i + 1))
}

/// Classify an SDK error: condition failures, outages (retryable) and the
/// rest; the SDK's error is kept as the cause (the log shows it).
fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    enum Class {
        Condition,
        Busy(String),
        Missing,
        Unreachable,
        Other(String),
    }
    let class = match &err {
        SdkError::ServiceError(se) => match se.err().code().unwrap_or_default() {
            "ConditionalCheckFailedException" => Class::Condition,
            code @ ("ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "LimitExceededException") => Class::Busy(code.to_string()),
            "ResourceNotFoundException" => Class::Missing,
            code => Class::Other(code.to_string()),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Class::Unreachable
        }
        _ => Class::Other("request".to_string()),
    };
    let err = aws_smithy_types::error::display::DisplayErrorContext(err).to_string();
    let cause = std::io::Error::other(err);
    match class {
        Class::Condition => StoreError::ConditionFailed,
        Class::Busy(code) => StoreError::unavailable_by(format!("DynamoDB {code}"), cause),
        Class::Missing => StoreError::unavailable_by(
            "metadata table missing; create it (MR_CREATE_TABLE=true or infra/dynamodb/table.json)",
            cause,
        ),
        Class::Unreachable => StoreError::unavailable_by("DynamoDB unreachable", cause),
        Class::Other(code) => StoreError::internal_by(format!("DynamoDB {code} failed"), cause),
    }
}

/// A write condition as DynamoDB expression parts (expression, names, values).
fn condition(
    cond: Cond,
) -> (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<Attrs>,
) {
    match cond {
        Cond::Always => (None, None, None),
        Cond::Absent => (Some("attribute_not_exists(pk)".into()), None, None),
        Cond::Version(v) => (
            Some("#v = :v".into()),
            Some(HashMap::from([("#v".to_string(), "v".to_string())])),
            Some(HashMap::from([(
                ":v".to_string(),
                AttributeValue::N(v.to_string()),
            )])),
        ),
    }
}

fn to_attrs(item: &Item) -> Attrs {
    let mut m = Attrs::new();
    m.insert("pk".into(), s(&item.pk));
    m.insert("sk".into(), s(&item.sk));
    m.insert("v".into(), AttributeValue::N(item.version.to_string()));
    m.insert("b".into(), s(&item.body));
    for (i, k) in item.local.iter().enumerate() {
        if let Some(k) = k {
            m.insert(local_attr(i), s(k));
        }
    }
    for (i, k) in item.global.iter().enumerate() {
        if let Some((p, sk)) = k {
            let (pa, sa) = global_attrs(i);
            m.insert(pa, s(p));
            m.insert(sa, s(sk));
        }
    }
    m
}

/// The items of a Query or Scan answer.
fn items_of(items: &[Attrs]) -> Result<Vec<Item>, StoreError> {
    items.iter().map(from_attrs).collect()
}

/// The base key (pk, sk) as attributes.
fn key_attrs(pk: &str, sk: &str) -> Attrs {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn string_attr(m: &Attrs, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn from_attrs(m: &Attrs) -> Result<Item, StoreError> {
    let bad = |what: &str| StoreError::internal(format!("item without {what}"));
    let mut item = Item {
        pk: string_attr(m, "pk").ok_or_else(|| bad("pk"))?,
        sk: string_attr(m, "sk").ok_or_else(|| bad("sk"))?,
        version: m
            .get("v")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("v"))?,
        body: string_attr(m, "b").unwrap_or_default(),
        local: Default::default(),
        global: Default::default(),
    };
    for i in 0..LOCAL_INDEXES {
        item.local[i] = string_attr(m, &local_attr(i));
    }
    for i in 0..GLOBAL_INDEXES {
        let (pa, sa) = global_attrs(i);
        item.global[i] = string_attr(m, &pa).zip(string_attr(m, &sa));
    }
    Ok(item)
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTable {
            client,
            table: table.into(),
        }
    }

    /// One page of a parallel Scan (segment `segment` of `segments`) after
    /// the base key `after`, and the key to resume after (None: the segment
    /// is done). For the migration command only: never on a request path.
    pub async fn scan_page(
        &self,
        segment: i32,
        segments: i32,
        after: Option<&(String, String)>,
    ) -> Result<(Vec<Item>, Option<(String, String)>), StoreError> {
        let start = after.map(|(pk, sk)| key_attrs(pk, sk));
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(segment)
            .total_segments(segments)
            .consistent_read(true)
            .limit(500)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        let items = items_of(out.items())?;
        let next = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .and_then(|k| string_attr(k, "pk").zip(string_attr(k, "sk")));
        Ok((items, next))
    }

    /// Create the table from `infra/dynamodb/table.json` unless it exists
    /// (for local runs and tests: `MR_CREATE_TABLE=true`).
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().is_resource_not_found_exception() => {}
            Err(e) => return Err(classify(e)),
        }
        let def: Value = serde_json::from_str(TABLE_DEFINITION)
            .map_err(|e| StoreError::internal(format!("table.json: {e}")))?;
        let mut req = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest);
        for a in def["AttributeDefinitions"].as_array().into_iter().flatten() {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| StoreError::internal(e.to_string()))?,
            );
        }
        let keys = |v: &Value| -> Result<Vec<KeySchemaElement>, StoreError> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    KeySchemaElement::builder()
                        .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                        .key_type(if k["KeyType"] == "HASH" {
                            KeyType::Hash
                        } else {
                            KeyType::Range
                        })
                        .build()
                        .map_err(|e| StoreError::internal(e.to_string()))
                })
                .collect()
        };
        req = req.set_key_schema(Some(keys(&def["KeySchema"])?));
        let all = Projection::builder()
            .projection_type(ProjectionType::All)
            .build();
        for l in def["LocalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            req = req.local_secondary_indexes(
                LocalSecondaryIndex::builder()
                    .index_name(l["IndexName"].as_str().unwrap_or_default())
                    .set_key_schema(Some(keys(&l["KeySchema"])?))
                    .projection(all.clone())
                    .build()
                    .map_err(|e| StoreError::internal(e.to_string()))?,
            );
        }
        for g in def["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(g["IndexName"].as_str().unwrap_or_default())
                    .set_key_schema(Some(keys(&g["KeySchema"])?))
                    .projection(all.clone())
                    .build()
                    .map_err(|e| StoreError::internal(e.to_string()))?,
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(SdkError::ServiceError(se)) if se.err().is_resource_in_use_exception() => {}
            Err(e) => return Err(classify(e)),
        }
        // Wait until ACTIVE (immediate on dynalite with --createTableMs 0).
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(classify)?;
            let active = d
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StoreError::unavailable(format!(
            "table {} did not become ACTIVE",
            self.table
        )))
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        if !key_fits(pk, sk) {
            return Ok(None); // could never have been written
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item().map(from_attrs).transpose()
    }

    async fn get_many(&self, keys: &[(String, String)]) -> Result<Vec<Option<Item>>, StoreError> {
        // BatchGetItem refuses duplicate keys: ask for each key once.
        let mut wanted: Vec<&(String, String)> =
            keys.iter().filter(|(pk, sk)| key_fits(pk, sk)).collect();
        wanted.sort();
        wanted.dedup();
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        for chunk in wanted.chunks(MAX_BATCH_GET) {
            let mut pending: Vec<Attrs> = chunk.iter().map(|(pk, sk)| key_attrs(pk, sk)).collect();
            // Unprocessed keys (throttling, 16 MB) are asked again, backing off.
            for attempt in 0..8u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::internal(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(classify)?;
                for attrs in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let item = from_attrs(attrs)?;
                    found.insert((item.pk.clone(), item.sk.clone()), item);
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    pending = left.keys().to_vec();
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::unavailable(
                    "DynamoDB left keys of a BatchGetItem unprocessed, retry",
                ));
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn put(&self, item: Item, cond: Cond) -> Result<(), StoreError> {
        item.check_limits()?;
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attrs(&item)));
        let (expr, names, values) = condition(cond);
        req.set_condition_expression(expr)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), StoreError> {
        if !key_fits(pk, sk) {
            // No such item: what DynamoDB answers for a missing one.
            return match cond {
                Cond::Version(_) => Err(StoreError::ConditionFailed),
                Cond::Always | Cond::Absent => Ok(()),
            };
        }
        let req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        let (expr, names, values) = condition(cond);
        req.set_condition_expression(expr)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn query(&self, q: &Query) -> Result<QueryPage, StoreError> {
        if !q.check_limits()? {
            return Ok(QueryPage {
                items: Vec::new(),
                exhausted: true,
            });
        }
        let (pattr, sattr, index_name, consistent) = match q.index {
            Index::Base => ("pk".to_string(), "sk".to_string(), None, true),
            Index::Local(i) => ("pk".to_string(), local_attr(i), Some(q.index.name()), true),
            Index::Global(i) => {
                let (p, s) = global_attrs(i);
                (p, s, Some(q.index.name()), false)
            }
        };
        let mut cond = "#p = :p".to_string();
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index_name)
            .expression_attribute_names("#p", &pattr)
            .expression_attribute_values(":p", s(&q.partition))
            .scan_index_forward(!q.descending)
            .limit(q.limit.clamp(1, 1000) as i32);
        if consistent {
            req = req.consistent_read(true);
        }
        if !q.prefix.is_empty() {
            cond.push_str(" AND begins_with(#s, :s)");
            req = req
                .expression_attribute_names("#s", &sattr)
                .expression_attribute_values(":s", s(&q.prefix));
        }
        if let Some(c) = &q.after {
            let mut start = Attrs::new();
            start.insert("pk".into(), s(&c.pk));
            start.insert("sk".into(), s(&c.sk));
            if q.index != Index::Base {
                start.insert(pattr.clone(), s(&q.partition));
                start.insert(sattr.clone(), s(&c.index_key));
            }
            req = req.set_exclusive_start_key(Some(start));
        }
        let out = req
            .key_condition_expression(cond)
            .send()
            .await
            .map_err(classify)?;
        let items = items_of(out.items())?;
        Ok(QueryPage {
            items,
            exhausted: out.last_evaluated_key().is_none_or(|k| k.is_empty()),
        })
    }

    async fn increment(&self, pk: &str, sk: &str, by: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("ADD #v :by")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":by", AttributeValue::N(by.max(1).to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(classify)?;
        out.attributes()
            .and_then(|a| a.get("v"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::internal(format!("counter {pk}/{sk} returned no value")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute's size as DynamoDB documents it (strings in UTF-8 bytes,
    /// numbers one byte per two significant digits plus one), computed from
    /// what this adapter actually sends.
    fn sent_size(attrs: &Attrs) -> usize {
        attrs
            .iter()
            .map(|(name, v)| {
                name.len()
                    + match v {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::N(n) => {
                            1 + n
                                .trim_start_matches('0')
                                .trim_end_matches('0')
                                .len()
                                .div_ceil(2)
                        }
                        other => panic!("unexpected attribute {other:?}"),
                    }
            })
            .sum()
    }

    #[test]
    fn the_port_counts_what_the_adapter_writes() {
        let mut item = Item::plain(
            "RM",
            "000000000042",
            12_345_678_901,
            "{\"é\":\"😀\"}".into(),
        );
        assert_eq!(sent_size(&to_attrs(&item)), item.stored_size());
        for i in 0..LOCAL_INDEXES {
            item.local[i] = Some(format!("-#{i}#😀\u{1}"));
        }
        for i in 0..GLOBAL_INDEXES {
            item.global[i] = Some(("RM".into(), format!("name\u{1}{i}")));
        }
        item.version = 100;
        assert_eq!(sent_size(&to_attrs(&item)), item.stored_size());
    }
}
