//! What an operation costs on AWS at on-demand list prices: the price list
//! (one table, each price with its source), the capacity model's units per
//! operation (`capacity.json`, written by `shared/tests/capacity`), and the
//! arithmetic the report's cost section prints.

use serde::Deserialize;

/// One list price, in US dollars.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub what: &'static str,
    pub usd: f64,
    /// What `usd` buys: "per million read request units", "per hour", ...
    pub per: &'static str,
    /// Where the figure comes from.
    pub source: &'static str,
}

/// When the prices below were last checked.
pub const PRICES_AS_OF: &str = "2026-11-30";

// The price list: AWS us-east-1 (N. Virginia), on-demand, without free
// tiers, Savings Plans or volume tiers. aws.amazon.com could not be fetched
// from the machine this was written on; every figure was checked against
// copies of AWS's pricing pages and third-party price guides (named in each
// `source`) on PRICES_AS_OF. Check before budgeting.
pub const DYNAMODB_READ: Price = Price {
    what: "DynamoDB on-demand read request units",
    usd: 0.125,
    per: "per million read request units",
    source: "aws.amazon.com/dynamodb/pricing/on-demand, after the reduction of 2024-11-01 \
             (as quoted by airbyte.com's DynamoDB pricing guide, 2025-07)",
};
pub const DYNAMODB_WRITE: Price = Price {
    what: "DynamoDB on-demand write request units",
    usd: 0.625,
    per: "per million write request units",
    source: "aws.amazon.com/dynamodb/pricing/on-demand, after the reduction of 2024-11-01 \
             (as quoted by airbyte.com's DynamoDB pricing guide, 2025-07)",
};
pub const DYNAMODB_STORAGE: Price = Price {
    what: "DynamoDB Standard storage, after the first 25 GB a month",
    usd: 0.25,
    per: "per GB-month",
    source: "aws.amazon.com/dynamodb/pricing (stored copy)",
};
pub const LAMBDA_DURATION: Price = Price {
    what: "Lambda duration, x86_64 (first 6 billion GB-s a month)",
    usd: 0.000_016_666_7,
    per: "per GB-second",
    source: "aws.amazon.com/lambda/pricing (as quoted by cloudchipr.com, 2024, and AWS's \
             whitepaper \"How AWS Pricing Works\")",
};
pub const LAMBDA_REQUESTS: Price = Price {
    what: "Lambda requests",
    usd: 0.20,
    per: "per million requests",
    source: "aws.amazon.com/lambda/pricing; AWS whitepaper \"How AWS Pricing Works\"",
};
pub const API_GATEWAY_HTTP: Price = Price {
    what: "API Gateway HTTP API requests (first 300 million a month)",
    usd: 1.00,
    per: "per million requests",
    source: "aws.amazon.com/api-gateway/pricing (as quoted by awsforengineers.com, 2025-05, \
             and amnic.com)",
};
pub const RDS_T4G_MICRO: Price = Price {
    what: "RDS for PostgreSQL db.t4g.micro, single-AZ",
    usd: 0.016,
    per: "per hour",
    source: "aws.amazon.com/rds/postgresql/pricing (as quoted by infratally.com, 2026)",
};
pub const RDS_GP3_STORAGE: Price = Price {
    what: "RDS gp3 storage, single-AZ",
    usd: 0.115,
    per: "per GB-month",
    source: "aws.amazon.com/rds/postgresql/pricing (as quoted by usage.ai, 2026-06)",
};
pub const FARGATE_VCPU: Price = Price {
    what: "Fargate, Linux/x86, vCPU",
    usd: 0.040_48,
    per: "per vCPU-hour",
    source: "aws.amazon.com/fargate/pricing (as quoted by vantage.sh and wring.co, 2026-03)",
};
pub const FARGATE_MEMORY: Price = Price {
    what: "Fargate, Linux/x86, memory",
    usd: 0.004_445,
    per: "per GB-hour",
    source: "aws.amazon.com/fargate/pricing (as quoted by vantage.sh and wring.co, 2026-03)",
};
pub const EC2_T4G_SMALL: Price = Price {
    what: "EC2 t4g.small, Linux (the alternative to Fargate)",
    usd: 0.0168,
    per: "per hour",
    source: "aws.amazon.com/ec2/pricing/on-demand (no copy found to check it against)",
};

/// The price list in the order the report prints it.
pub const PRICES: [Price; 11] = [
    DYNAMODB_READ,
    DYNAMODB_WRITE,
    DYNAMODB_STORAGE,
    LAMBDA_DURATION,
    LAMBDA_REQUESTS,
    API_GATEWAY_HTTP,
    RDS_T4G_MICRO,
    RDS_GP3_STORAGE,
    FARGATE_VCPU,
    FARGATE_MEMORY,
    EC2_T4G_SMALL,
];

/// Hours in a month, as AWS's calculator counts them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The always-on MLflow deployment compared against: the smallest managed
/// PostgreSQL and the smallest Fargate task MLflow runs in.
pub const RDS_STORAGE_GB: f64 = 20.0;
pub const FARGATE_VCPUS: f64 = 0.25;
pub const FARGATE_GB: f64 = 0.5;

/// The functions' memory: `MemorySize` under `Globals: Function:` in
/// infra/lambda/template.yaml (the first `MemorySize:` line), read when the
/// bench is built; this when the template has none.
const LAMBDA_MEMORY_FALLBACK_MB: u32 = 256;
const TEMPLATE: &str = include_str!("../../../infra/lambda/template.yaml");

/// The functions' memory in MB, and whether it was read from the template
/// (false: [`LAMBDA_MEMORY_FALLBACK_MB`]).
pub fn lambda_memory_mb() -> (u32, bool) {
    match memory_size(TEMPLATE) {
        Some(mb) => (mb, true),
        None => (LAMBDA_MEMORY_FALLBACK_MB, false),
    }
}

/// The first `MemorySize: N` of a SAM template.
fn memory_size(template: &str) -> Option<u32> {
    template
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemorySize:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `capacity.json`: the capacity model's units per operation
/// (shared/tests/capacity/report.rs, `Report::json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Capacity {
    pub operations: Vec<CapacityOp>,
    pub size: CapacitySize,
}

/// One operation kind of the capacity model, averaged over its simulated
/// seconds (its table calls per operation are left out: no price).
#[derive(Debug, Clone, Deserialize)]
pub struct CapacityOp {
    /// The capacity model's name ("get version by id", ...).
    pub op: String,
    pub ops: u64,
    pub read_units_per_op: f64,
    pub write_units_per_op: f64,
}

/// The size of the simulation.
#[derive(Debug, Clone, Deserialize)]
pub struct CapacitySize {
    pub models: u64,
    pub versions: u64,
    #[serde(default)]
    pub stored_bytes: Option<u64>,
}

impl Capacity {
    pub fn parse(text: &str) -> Result<Capacity, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The entry of the capacity model's operation `name`.
    pub fn op(&self, name: &str) -> Option<&CapacityOp> {
        self.operations.iter().find(|o| o.op == name)
    }
}

/// DynamoDB's share of a million operations: their read and write request
/// units at on-demand prices.
pub fn dynamodb_per_million(read_units_per_op: f64, write_units_per_op: f64) -> f64 {
    read_units_per_op * DYNAMODB_READ.usd + write_units_per_op * DYNAMODB_WRITE.usd
}

/// The duration Lambda bills for a handler that took `ms`: rounded up to
/// the millisecond.
pub fn billed_ms(ms: f64) -> u64 {
    ms.max(0.0).ceil() as u64
}

/// GB-seconds of one invocation of `billed_ms` at `memory_mb`.
pub fn gb_seconds(billed_ms: u64, memory_mb: u32) -> f64 {
    billed_ms as f64 / 1000.0 * f64::from(memory_mb) / 1024.0
}

/// Lambda's share of a million operations: duration and requests.
pub fn lambda_per_million(gb_seconds_per_op: f64) -> f64 {
    gb_seconds_per_op * 1e6 * LAMBDA_DURATION.usd + LAMBDA_REQUESTS.usd
}

/// The always-on MLflow per month: (database instance, database storage,
/// server).
pub fn mlflow_monthly() -> (f64, f64, f64) {
    (
        RDS_T4G_MICRO.usd * HOURS_PER_MONTH,
        RDS_GP3_STORAGE.usd * RDS_STORAGE_GB,
        (FARGATE_VCPUS * FARGATE_VCPU.usd + FARGATE_GB * FARGATE_MEMORY.usd) * HOURS_PER_MONTH,
    )
}

/// A list price as written on the price list: `$0.0000166667`, `$0.125`,
/// `$1.00`, `$0.20`.
pub fn list_price(v: f64) -> String {
    let text = v.to_string();
    match text.split_once('.') {
        Some((_, frac)) if frac.len() >= 2 => format!("${text}"),
        _ => format!("${v:.2}"),
    }
}

/// A dollar amount: `$0.05`, `$0.125`, `$5.625`, `$22.99`, `$1,234`.
pub fn usd(v: f64) -> String {
    if v >= 1000.0 {
        let whole = format!("{:.0}", v);
        let mut out = String::from("$");
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("${v:.2}")
    } else {
        let text = format!("{v:.3}");
        let text = text.strip_suffix('0').unwrap_or(&text);
        format!("${text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn dynamodb_units_cost_their_on_demand_price_per_million() {
        assert!(close(dynamodb_per_million(1.0, 0.0), 0.125));
        assert!(close(dynamodb_per_million(0.0, 9.0), 5.625));
        assert!(close(dynamodb_per_million(0.5, 2.0), 0.0625 + 1.25));
    }

    #[test]
    fn lambda_bills_rounded_up_milliseconds_of_its_memory() {
        assert_eq!(billed_ms(11.2), 12);
        assert_eq!(billed_ms(12.0), 12);
        assert_eq!(billed_ms(1.013), 2);
        let gbs = gb_seconds(12, 256);
        assert!(close(gbs, 0.003), "{gbs}");
        // $0.05 of duration and $0.20 of requests per million.
        let cost = lambda_per_million(gbs);
        assert!(close(cost, 0.25), "{cost}");
    }

    #[test]
    fn the_always_on_mlflow_costs_its_hours_and_storage() {
        let (db, storage, server) = mlflow_monthly();
        assert!(close(db, 11.68), "{db}");
        assert!(close(storage, 2.30), "{storage}");
        assert!(close(server, 7.3876 + 1.622_425), "{server}");
    }

    #[test]
    fn the_memory_comes_from_the_template() {
        assert_eq!(
            memory_size("Globals:\n  Function:\n    MemorySize: 512\n"),
            Some(512)
        );
        assert_eq!(memory_size("Globals:\n  Function:\n"), None);
        let (mb, read) = lambda_memory_mb();
        assert!(read, "infra/lambda/template.yaml has no MemorySize");
        assert!((128..=10_240).contains(&mb), "{mb}");
    }

    #[test]
    fn dollars_read_easily() {
        assert_eq!(usd(0.05), "$0.05");
        assert_eq!(usd(0.125), "$0.125");
        assert_eq!(usd(5.625), "$5.625");
        assert_eq!(usd(1.0), "$1.00");
        assert_eq!(usd(22.990_025), "$22.99");
        assert_eq!(usd(1234.4), "$1,234");
        assert_eq!(list_price(0.000_016_666_7), "$0.0000166667");
        assert_eq!(list_price(1.0), "$1.00");
        assert_eq!(list_price(0.2), "$0.20");
        assert_eq!(list_price(0.625), "$0.625");
    }
}
