//! Per-API allocation histograms and failure counts:
//!
//! - `kmem_alloc_size_bytes{api}` (histogram): bytes each successful allocation handed
//!   out (the size class / block, as ksize reports it). Edges are the kmalloc classes
//!   8 … 8192 then `4096 << order` for orders 0..10, so a bucket is a slab cache or a
//!   buddy order.
//! - `kmem_alloc_duration_seconds{api}` (histogram): time in the operation (resolving
//!   the options, the allocator call, describing the result; no transport or
//!   protobuf), successful or not; 100 ns … 10 s. One allocation in
//!   `metrics.alloc_time_every` (default 16) is timed and counts that many times: a
//!   clock read costs 25–60 ns on some VMs, more than the rest of the recording.
//! - `kmem_alloc_failures_total{api,reason}` (counter): failed allocations by their
//!   `ErrorInfo` reason. Every (api, reason) pair of
//!   [`kmem_allocator::reasons::REASONS`] is exported from the start.
//!
//! Recorded by [`crate::api::Api`] for unary calls and every operation of Batch and
//! Session. The hot path is a fixed array indexed by [`AllocApi`], in one of a few
//! cache-line-aligned shards picked per thread: two relaxed atomic adds per histogram,
//! no label lookup, no allocation, bounded memory. Sums are exact integers (bytes,
//! nanoseconds); `_count` is the sum of the buckets, read at scrape time.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use kmem_allocator::reasons::REASONS;
use kmem_client::pb;

use super::Writer;
use crate::error::ApiError;

/// The allocating operations, as the `api` label spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocApi {
    AllocPages,
    AllocPagesExact,
    Kmalloc,
    KmallocArray,
    Krealloc,
    CacheAlloc,
    Vmalloc,
    VmallocHuge,
    Kvmalloc,
    KvmallocArray,
    Kvrealloc,
}

const NR_APIS: usize = 11;

impl AllocApi {
    pub const ALL: [AllocApi; NR_APIS] = [
        AllocApi::AllocPages,
        AllocApi::AllocPagesExact,
        AllocApi::Kmalloc,
        AllocApi::KmallocArray,
        AllocApi::Krealloc,
        AllocApi::CacheAlloc,
        AllocApi::Vmalloc,
        AllocApi::VmallocHuge,
        AllocApi::Kvmalloc,
        AllocApi::KvmallocArray,
        AllocApi::Kvrealloc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AllocApi::AllocPages => "alloc_pages",
            AllocApi::AllocPagesExact => "alloc_pages_exact",
            AllocApi::Kmalloc => "kmalloc",
            AllocApi::KmallocArray => "kmalloc_array",
            AllocApi::Krealloc => "krealloc",
            AllocApi::CacheAlloc => "cache_alloc",
            AllocApi::Vmalloc => "vmalloc",
            AllocApi::VmallocHuge => "vmalloc_huge",
            AllocApi::Kvmalloc => "kvmalloc",
            AllocApi::KvmallocArray => "kvmalloc_array",
            AllocApi::Kvrealloc => "kvrealloc",
        }
    }
}

/// `kmem_alloc_size_bytes` edges: kmalloc size classes, then 4 KiB << order (0..10).
pub const SIZE_BUCKETS: [u64; 22] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
    262144, 524288, 1048576, 2097152, 4194304,
];

/// `kmem_alloc_duration_seconds` edges: 100 ns … 100 ms in 1-2.5-5 steps, then 1 s and
/// 10 s for `__GFP_NOFAIL` waits.
pub const DURATION_BUCKETS: [f64; 20] = [
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
    5e-3, 1e-2, 2.5e-2, 0.1, 1.0, 10.0,
];

/// [`DURATION_BUCKETS`] in nanoseconds.
const DURATION_NS: [u64; 20] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

const NS: usize = SIZE_BUCKETS.len() + 1;
const ND: usize = DURATION_NS.len() + 1;

/// One API's cells in one shard. Bucket `i` counts values in (edge[i-1], edge[i]];
/// the last is +Inf.
struct Cells {
    size: [AtomicU64; NS],
    size_sum: AtomicU64,
    dur: [AtomicU64; ND],
    dur_sum_ns: AtomicU64,
}

#[repr(align(128))]
struct Shard([Cells; NR_APIS]);

const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Per thread: its shard, and how many allocations to let pass untimed.
struct Local {
    shard: Cell<usize>,
    untimed: Cell<u32>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            shard: Cell::new(usize::MAX),
            untimed: Cell::new(0),
        }
    };
}

#[inline]
fn shard_of(l: &Local) -> usize {
    let mut i = l.shard.get();
    if i == usize::MAX {
        i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
        l.shard.set(i);
    }
    i
}

/// This thread's shard, and whether to time this allocation (1 in `every`).
#[inline]
fn local(every: u32) -> (usize, bool) {
    LOCAL.with(|l| {
        let i = shard_of(l);
        let left = l.untimed.get();
        if left == 0 {
            l.untimed.set(every - 1);
            (i, true)
        } else {
            l.untimed.set(left - 1);
            (i, false)
        }
    })
}

/// Time 1 allocation in this many by default. A clock read costs 25–60 ns on some VMs
/// (two per timed call), several times what the rest of the recording costs.
pub const DEFAULT_TIME_EVERY: u32 = 16;

/// The pre-registered cells of every (api, bucket) and (api, reason).
pub struct AllocMetrics {
    shards: Box<[Shard]>,
    /// Time one allocation in `time_every`; each timed one counts `time_every` times.
    time_every: u32,
    /// `[api][reason]`, reasons in [`REASONS`] order, then one for a reason not in it.
    failures: Box<[Box<[AtomicU64]>]>,
}

impl Default for AllocMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn cells() -> Cells {
    Cells {
        size: std::array::from_fn(|_| AtomicU64::new(0)),
        size_sum: AtomicU64::new(0),
        dur: std::array::from_fn(|_| AtomicU64::new(0)),
        dur_sum_ns: AtomicU64::new(0),
    }
}

/// The index of a reason in [`REASONS`] (`REASONS.len()` when it is not there). Only
/// failures pay for it: a pointer comparison first, then the string.
fn reason_index(reason: &str) -> usize {
    REASONS
        .iter()
        .position(|r| std::ptr::eq(r.0, reason))
        .or_else(|| REASONS.iter().position(|r| r.0 == reason))
        .unwrap_or(REASONS.len())
}

impl AllocMetrics {
    /// Time 1 allocation in [`DEFAULT_TIME_EVERY`].
    pub fn new() -> Self {
        Self::with_time_sampling(DEFAULT_TIME_EVERY)
    }

    /// Time 1 allocation in `every` (1 = all). Sizes and failures are always counted.
    pub fn with_time_sampling(every: u32) -> Self {
        AllocMetrics {
            time_every: every.max(1),
            shards: (0..SHARDS)
                .map(|_| Shard(std::array::from_fn(|_| cells())))
                .collect(),
            failures: (0..NR_APIS)
                .map(|_| (0..=REASONS.len()).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    /// Run one allocating operation and record it.
    #[inline]
    pub fn measure(
        &self,
        api: AllocApi,
        f: impl FnOnce() -> Result<pb::Allocation, ApiError>,
    ) -> Result<pb::Allocation, ApiError> {
        let (shard, timed) = local(self.time_every);
        let c = &self.shards[shard].0[api as usize];
        let start = timed.then(Instant::now);
        let r = f();
        if let Some(start) = start {
            self.record_duration(c, start.elapsed().as_nanos() as u64, self.time_every);
        }
        match &r {
            Ok(a) => record_size(c, a.size),
            Err(e) => self.record_failure(api, e.reason),
        }
        r
    }

    /// `n` allocations that took `ns` each.
    #[inline]
    fn record_duration(&self, c: &Cells, ns: u64, n: u32) {
        c.dur[DURATION_NS.partition_point(|&e| e < ns)].fetch_add(n as u64, Relaxed);
        c.dur_sum_ns.fetch_add(ns * n as u64, Relaxed);
    }

    #[inline]
    fn record_failure(&self, api: AllocApi, reason: &str) {
        self.failures[api as usize][reason_index(reason)].fetch_add(1, Relaxed);
    }

    /// A successful allocation of `size` bytes that took `ns` (always timed).
    pub fn record_ok(&self, api: AllocApi, size: u64, ns: u64) {
        let c = &self.shards[LOCAL.with(shard_of)].0[api as usize];
        record_size(c, size);
        self.record_duration(c, ns, 1);
    }

    /// A failed allocation (its `ErrorInfo` reason) that took `ns` (always timed).
    pub fn record_err(&self, api: AllocApi, reason: &str, ns: u64) {
        let c = &self.shards[LOCAL.with(shard_of)].0[api as usize];
        self.record_duration(c, ns, 1);
        self.record_failure(api, reason);
    }

    /// Per-bucket counts and the sum of one API, all shards.
    fn totals<const N: usize>(
        &self,
        api: AllocApi,
        pick: impl Fn(&Cells) -> (&[AtomicU64; N], &AtomicU64),
    ) -> ([u64; N], u64) {
        let mut b = [0u64; N];
        let mut sum = 0u64;
        for s in self.shards.iter() {
            let (cells, s) = pick(&s.0[api as usize]);
            for (t, c) in b.iter_mut().zip(cells) {
                *t += c.load(Relaxed);
            }
            sum = sum.wrapping_add(s.load(Relaxed));
        }
        (b, sum)
    }

    /// Failures of one (api, reason) so far.
    pub fn failures(&self, api: AllocApi, reason: &str) -> u64 {
        self.failures[api as usize][reason_index(reason)].load(Relaxed)
    }

    /// The three families in the text format.
    pub(crate) fn write(&self, w: &mut Writer) {
        let size_le: Vec<String> = SIZE_BUCKETS.iter().map(|e| e.to_string()).collect();
        let dur_le: Vec<String> = DURATION_BUCKETS.iter().map(|e| e.to_string()).collect();
        let name = "kmem_alloc_size_bytes";
        w.family(
            name,
            "histogram",
            "Bytes handed out per successful allocation (size class or block), by API.",
        );
        for api in AllocApi::ALL {
            let (b, sum) = self.totals(api, |c| (&c.size, &c.size_sum));
            write_histogram(w, name, api.name(), &size_le, &b, sum.to_string());
        }
        let name = "kmem_alloc_duration_seconds";
        w.family(
            name,
            "histogram",
            "Time to serve one allocation (options, allocator call, result; no transport), successful or not, by API.",
        );
        for api in AllocApi::ALL {
            let (b, sum) = self.totals(api, |c| (&c.dur, &c.dur_sum_ns));
            let secs = sum as f64 / 1e9;
            write_histogram(w, name, api.name(), &dur_le, &b, secs.to_string());
        }
        let name = "kmem_alloc_failures_total";
        w.family(
            name,
            "counter",
            "Failed allocations by API and ErrorInfo reason.",
        );
        for api in AllocApi::ALL {
            let row = &self.failures[api as usize];
            for (i, (reason, _, _)) in REASONS.iter().enumerate() {
                w.sample(
                    name,
                    &[("api", api.name()), ("reason", reason)],
                    row[i].load(Relaxed),
                );
            }
            let other = row[REASONS.len()].load(Relaxed);
            if other > 0 {
                w.sample(name, &[("api", api.name()), ("reason", "OTHER")], other);
            }
        }
    }
}

#[inline]
fn record_size(c: &Cells, size: u64) {
    c.size[SIZE_BUCKETS.partition_point(|&e| e < size)].fetch_add(1, Relaxed);
    c.size_sum.fetch_add(size, Relaxed);
}

fn write_histogram(w: &mut Writer, name: &str, api: &str, le: &[String], b: &[u64], sum: String) {
    let bucket = format!("{name}_bucket");
    let mut acc = 0u64;
    for (i, n) in b.iter().enumerate() {
        acc += n;
        let le = le.get(i).map_or("+Inf", |s| s.as_str());
        w.sample(&bucket, &[("api", api), ("le", le)], acc);
    }
    w.sample(&format!("{name}_sum"), &[("api", api)], sum);
    w.sample(&format!("{name}_count"), &[("api", api)], acc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_line_up_with_classes_and_orders() {
        for order in 0..=10u32 {
            assert!(SIZE_BUCKETS.contains(&(4096u64 << order)), "order {order}");
        }
        for class in [
            8u64, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
        ] {
            assert!(SIZE_BUCKETS.contains(&class), "kmalloc-{class}");
        }
        assert!(SIZE_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        for (s, ns) in DURATION_BUCKETS.iter().zip(DURATION_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn records_into_the_right_buckets() {
        let m = AllocMetrics::new();
        m.record_ok(AllocApi::Kmalloc, 96, 300);
        m.record_ok(AllocApi::Kmalloc, 97, 300);
        m.record_ok(AllocApi::AllocPages, 4096 << 10, 2_000);
        m.record_ok(AllocApi::Vmalloc, 1 << 30, 20_000_000_000);
        m.record_err(AllocApi::Kmalloc, "OUT_OF_MEMORY", 1_000);
        m.record_err(AllocApi::Kmalloc, "NOT_A_REASON", 1_000);
        let mut w = Writer::default();
        m.write(&mut w);
        let t = w.out;
        for line in [
            r#"kmem_alloc_size_bytes_bucket{api="kmalloc",le="64"} 0"#,
            r#"kmem_alloc_size_bytes_bucket{api="kmalloc",le="96"} 1"#,
            r#"kmem_alloc_size_bytes_bucket{api="kmalloc",le="128"} 2"#,
            r#"kmem_alloc_size_bytes_sum{api="kmalloc"} 193"#,
            r#"kmem_alloc_size_bytes_count{api="kmalloc"} 2"#,
            r#"kmem_alloc_size_bytes_bucket{api="alloc_pages",le="2097152"} 0"#,
            r#"kmem_alloc_size_bytes_bucket{api="alloc_pages",le="4194304"} 1"#,
            r#"kmem_alloc_size_bytes_bucket{api="vmalloc",le="4194304"} 0"#,
            r#"kmem_alloc_size_bytes_bucket{api="vmalloc",le="+Inf"} 1"#,
            r#"kmem_alloc_duration_seconds_bucket{api="kmalloc",le="0.00000025"} 0"#,
            r#"kmem_alloc_duration_seconds_bucket{api="kmalloc",le="0.0000005"} 2"#,
            r#"kmem_alloc_duration_seconds_bucket{api="kmalloc",le="0.000001"} 4"#,
            r#"kmem_alloc_duration_seconds_count{api="kmalloc"} 4"#,
            r#"kmem_alloc_duration_seconds_bucket{api="vmalloc",le="10"} 0"#,
            r#"kmem_alloc_failures_total{api="kmalloc",reason="OUT_OF_MEMORY"} 1"#,
            r#"kmem_alloc_failures_total{api="kmalloc",reason="OTHER"} 1"#,
            r#"kmem_alloc_failures_total{api="vmalloc",reason="OUT_OF_MEMORY"} 0"#,
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}\n{t}");
        }
        assert_eq!(m.failures(AllocApi::Kmalloc, "OUT_OF_MEMORY"), 1);
    }
}
