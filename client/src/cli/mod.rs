//! kmemctl's commands: argument parsers, output helpers and the command families.

pub mod admin;
pub mod bench;
pub mod ops;
pub mod replay;
pub mod report;
pub mod top;
pub mod workload;

use std::time::Duration;

use clap::ValueEnum;
use kmem_allocator::{ByteSize, Gfp};
use kmem_client::{Client, Error, pb};
use serde::Serialize;
use tonic::Code;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// Only `bench`: one line per request (ghz's CSV); other commands print text.
    Csv,
}

/// Settings every command shares.
#[derive(Clone, Debug)]
pub struct Global {
    pub addr: String,
    pub token: Option<String>,
    pub timeout: Option<Duration>,
    pub output: Output,
}

impl Global {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    pub async fn connect(&self) -> Result<Client, Error> {
        let mut b = Client::builder(&self.addr);
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(t) = &self.token {
            b = b.token(t);
        }
        b.connect().await
    }
}

/// A size: `4096`, `0x1000`, `4KiB`, `1M`, `1.5MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    ByteSize::parse(s).map(|b| b.0).map_err(|e| e.to_string())
}

/// An address or pfn: `0xffff888100000000` or decimal.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("bad address `{s}`: write it as 0xffff888100000000 or decimal"))
}

/// GFP flags, checked here so typos fail fast with a suggestion.
pub fn parse_gfp(s: &str) -> Result<String, String> {
    Gfp::parse(s)
        .and_then(|g| g.validate())
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} (see `kmemctl gfp --list`)"))
}

/// A duration: `10s`, `500ms`, `1m30s`, `250us`, `2h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("bad duration `{s}`: write 10s, 500ms, 1m30s, 250us");
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(n) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(n).map_err(|_| err());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (num, tail) = rest.split_at(n_end);
        let u_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u_end);
        let n: f64 = num.parse().map_err(|_| err())?;
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * mult;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// A gRPC code as the spec spells it (`RESOURCE_EXHAUSTED`).
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `RESOURCE_EXHAUSTED CGROUP_LIMIT_EXCEEDED` (or just the code without a reason).
pub fn status_key(e: &Error) -> String {
    match e.reason() {
        Some(r) => format!("{} {r}", code_name(e.code())),
        None => code_name(e.code()).to_string(),
    }
}

/// Print a failed command's error: the message, the code and the reason.
pub fn print_error(g: &Global, e: &Error) {
    if g.json() {
        let v = serde_json::json!({"error": {
            "code": code_name(e.code()),
            "reason": e.reason(),
            "message": e.to_string(),
        }});
        eprintln!("{v}");
    } else {
        eprintln!("kmemctl: {e}");
        eprintln!(
            "  code: {}, reason: {}",
            code_name(e.code()),
            e.reason().unwrap_or("-")
        );
    }
}

/// Print `v` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("kmemctl: cannot encode JSON: {e}"),
    }
}

pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Bytes with their human form: `98304 (96KiB)`.
pub fn human(v: u64) -> String {
    format!("{v} ({})", ByteSize(v))
}

fn trim_enum(s: &str, prefix: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase()
}

pub fn backend_name(b: i32) -> String {
    pb::Backend::try_from(b)
        .map(|b| trim_enum(b.as_str_name(), "BACKEND_"))
        .unwrap_or_else(|_| b.to_string())
}

/// [`pb::Allocation`] for JSON and text: addresses as hex strings.
#[derive(Serialize, Debug, Clone)]
pub struct AllocOut {
    pub addr: String,
    pub size: u64,
    pub backend: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cache: String,
    pub pfn: Option<String>,
    pub order: Option<u32>,
    pub node: Option<u32>,
    pub zone: String,
    pub migratetype: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gfp: String,
    pub pfmemalloc: bool,
}

impl From<&pb::Allocation> for AllocOut {
    fn from(a: &pb::Allocation) -> Self {
        AllocOut {
            addr: hex(a.addr),
            size: a.size,
            backend: backend_name(a.backend),
            cache: a.cache.clone(),
            pfn: a.pfn.map(hex),
            order: a.order,
            node: a.node,
            zone: pb::ZoneType::try_from(a.zone)
                .map(|z| trim_enum(z.as_str_name(), "ZONE_TYPE_"))
                .unwrap_or_default(),
            migratetype: pb::MigrateType::try_from(a.migratetype)
                .map(|m| trim_enum(m.as_str_name(), "MIGRATE_TYPE_"))
                .unwrap_or_default(),
            gfp: a.gfp.clone(),
            pfmemalloc: a.pfmemalloc,
        }
    }
}

impl AllocOut {
    pub fn print(&self, g: &Global) {
        if g.json() {
            return print_json(self);
        }
        println!("addr:        {}", self.addr);
        println!("size:        {}", human(self.size));
        println!("backend:     {}", self.backend);
        if !self.cache.is_empty() {
            println!("cache:       {}", self.cache);
        }
        if let Some(p) = &self.pfn {
            match self.order {
                Some(o) => println!("pfn:         {p} (order {o})"),
                None => println!("pfn:         {p}"),
            }
        }
        if let Some(n) = self.node {
            println!("node:        {n}");
        }
        if !self.zone.is_empty() && self.zone != "unspecified" {
            println!("zone:        {}", self.zone);
        }
        if !self.migratetype.is_empty() && self.migratetype != "unspecified" {
            println!("migratetype: {}", self.migratetype);
        }
        if !self.gfp.is_empty() {
            println!("gfp:         {}", self.gfp);
        }
        if self.pfmemalloc {
            println!("pfmemalloc:  true");
        }
    }
}

/// Print a simple acknowledgement (`freed 0x…`), or `{"ok":true,…}` as JSON.
pub fn print_ok(g: &Global, text: &str, json: serde_json::Value) {
    if g.json() {
        print_json(&json);
    } else {
        println!("{text}");
    }
}

/// Stat entries (name → value) as JSON.
#[derive(Serialize)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

pub fn stats(e: &[pb::StatEntry]) -> Vec<Stat> {
    e.iter()
        .map(|s| Stat {
            name: s.name.clone(),
            value: s.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("10x").is_err());
    }

    #[test]
    fn addrs() {
        assert_eq!(
            parse_addr("0xffff8881_00000000").unwrap(),
            0xffff888100000000
        );
        assert_eq!(parse_addr("4096").unwrap(), 4096);
        assert!(parse_addr("zz").is_err());
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert!(parse_gfp("GFP_KERNAL").unwrap_err().contains("GFP_KERNEL"));
    }
}
