//! The bench report: ghz's summary, histogram and distributions, as text, JSON or CSV.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What the server's counters say happened during the run.
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    /// Pages handed out (sum of vmstat pgalloc_*), delta over the run.
    pub pgalloc: u64,
    /// Pages freed (vmstat pgfree), delta.
    pub pgfree: u64,
    /// Slab objects allocated (sum of every cache's alloc_total), delta.
    pub slab_allocs: u64,
    /// Slab objects freed, delta.
    pub slab_frees: u64,
    /// MemFree (bytes) at the end.
    pub mem_free: u64,
    /// MemFree (bytes) at the start.
    pub mem_free_before: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct LatencyDistribution {
    pub percentage: f64,
    /// Nanoseconds.
    pub latency: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct Bucket {
    /// Upper edge in seconds (as ghz).
    pub mark: f64,
    pub count: u64,
    pub frequency: f64,
}

/// ghz-compatible summary (durations in nanoseconds).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub name: String,
    pub count: u64,
    pub total: u64,
    pub average: u64,
    pub fastest: u64,
    pub slowest: u64,
    pub rps: f64,
    pub latency_distribution: Vec<LatencyDistribution>,
    pub histogram: Vec<Bucket>,
    /// By gRPC code name (`OK`, `RESOURCE_EXHAUSTED`).
    pub status_code_distribution: BTreeMap<String, u64>,
    /// By `CODE REASON` (`RESOURCE_EXHAUSTED CGROUP_LIMIT_EXCEEDED`).
    pub error_distribution: BTreeMap<String, u64>,
    /// Untimed frees (--hold, cleanup) that failed.
    pub free_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Box<Report>>,
    pub options: serde_json::Value,
}

pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

impl Report {
    pub fn build(
        name: &str,
        h: &Histogram<u64>,
        total: Duration,
        statuses: &BTreeMap<String, u64>,
        free_errors: u64,
        options: serde_json::Value,
    ) -> Report {
        let count = h.len();
        let (fastest, slowest) = if count == 0 {
            (0, 0)
        } else {
            (h.min(), h.max())
        };
        let mut codes = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for (k, v) in statuses {
            let code = k.split(' ').next().unwrap_or(k).to_string();
            *codes.entry(code).or_insert(0) += v;
            if k != "OK" {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        let secs = total.as_secs_f64();
        Report {
            name: name.to_string(),
            count,
            total: total.as_nanos() as u64,
            average: if count == 0 { 0 } else { h.mean() as u64 },
            fastest,
            slowest,
            rps: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            latency_distribution: if count == 0 {
                Vec::new()
            } else {
                PERCENTILES
                    .iter()
                    .map(|&p| LatencyDistribution {
                        percentage: p,
                        latency: h.value_at_quantile(p / 100.0),
                    })
                    .collect()
            },
            histogram: histogram(h, fastest, slowest),
            status_code_distribution: codes,
            error_distribution: errors,
            free_errors,
            server: None,
            baseline: None,
            options,
        }
    }

    pub fn print_text(&self) {
        println!("Summary:");
        println!("  Name:\t{}", self.name);
        println!("  Count:\t{}", self.count);
        println!("  Total:\t{}", ms(self.total));
        println!("  Slowest:\t{}", ms(self.slowest));
        println!("  Fastest:\t{}", ms(self.fastest));
        println!("  Average:\t{}", ms(self.average));
        println!("  Requests/sec:\t{:.2}", self.rps);
        println!();
        if !self.histogram.is_empty() {
            println!("Response time histogram:");
            let max = self
                .histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1)
                .max(1);
            for b in &self.histogram {
                let bar = "∎".repeat((b.count * 40 / max) as usize);
                println!("  {:.3} [{}]\t|{bar}", b.mark * 1e3, b.count);
            }
            println!();
            println!("Latency distribution:");
            for l in &self.latency_distribution {
                println!("  {} % in {} ", l.percentage, ms(l.latency));
            }
            println!();
        }
        println!("Status code distribution:");
        let mut keys: Vec<(&String, &u64)> = self
            .status_code_distribution
            .iter()
            .filter(|(k, _)| k.as_str() == "OK")
            .chain(&self.error_distribution)
            .collect();
        keys.sort_by(|a, b| b.1.cmp(a.1));
        for (k, v) in keys {
            println!("  [{k}]\t{v} responses");
        }
        if self.free_errors > 0 {
            println!("  ({} untimed frees failed)", self.free_errors);
        }
        if let Some(s) = &self.server {
            println!();
            println!("Server:");
            println!("  pgalloc:\t+{} pages", s.pgalloc);
            println!("  pgfree:\t+{} pages", s.pgfree);
            println!("  slab allocs:\t+{}", s.slab_allocs);
            println!("  slab frees:\t+{}", s.slab_frees);
            println!(
                "  MemFree:\t{} kB (was {} kB)",
                s.mem_free / 1024,
                s.mem_free_before / 1024
            );
        }
        if let Some(b) = &self.baseline {
            println!();
            println!("Baseline ({}):", b.name);
            println!("  Count:\t{}", b.count);
            println!("  Average:\t{}", ms(b.average));
            println!("  Requests/sec:\t{:.2}", b.rps);
            let p50 = |r: &Report| {
                r.latency_distribution
                    .get(2)
                    .map(|l| l.latency)
                    .unwrap_or(0)
            };
            if b.average > 0 && b.rps > 0.0 {
                println!(
                    "  Ratio {}/{}:\taverage {:.2}x, p50 {:.2}x, throughput {:.2}x",
                    self.name,
                    b.name,
                    self.average as f64 / b.average as f64,
                    p50(self) as f64 / p50(b).max(1) as f64,
                    self.rps / b.rps
                );
            }
        }
    }
}

/// `1.23 ms`.
pub fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// ghz's histogram: 11 marks from fastest to slowest, each counting the latencies up
/// to it.
fn histogram(h: &Histogram<u64>, fastest: u64, slowest: u64) -> Vec<Bucket> {
    let total = h.len();
    if total == 0 {
        return Vec::new();
    }
    let bc = 10u64;
    let step = (slowest - fastest) as f64 / bc as f64;
    let marks: Vec<f64> = (0..=bc)
        .map(|i| {
            if i == bc {
                slowest as f64
            } else {
                fastest as f64 + step * i as f64
            }
        })
        .collect();
    let mut counts = vec![0u64; marks.len()];
    for v in h.iter_recorded() {
        let x = h.lowest_equivalent(v.value_iterated_to()).min(slowest) as f64;
        let i = marks
            .iter()
            .position(|&m| x <= m)
            .unwrap_or(marks.len() - 1);
        counts[i] += v.count_at_value();
    }
    marks
        .iter()
        .zip(counts)
        .map(|(&m, count)| Bucket {
            mark: m / 1e9,
            count,
            frequency: count as f64 / total as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_to_count() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in [1000u64, 2000, 3000, 50_000, 1_000_000] {
            h.record(v).unwrap();
        }
        let r = Report::build(
            "x",
            &h,
            Duration::from_secs(1),
            &BTreeMap::from([("OK".to_string(), 5)]),
            0,
            serde_json::Value::Null,
        );
        assert_eq!(r.histogram.len(), 11);
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(r.count, 5);
        assert_eq!(r.latency_distribution.len(), 8);
    }
}
