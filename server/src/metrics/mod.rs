//! `/metrics`: the Prometheus text exposition (format 0.0.4).
//!
//! Two sources, two mechanisms:
//!
//! - **Allocator state** (zones, buddy free lists, vmstat, slab caches, vmalloc, cgroups)
//!   is written here at scrape time from one [`Machine::snapshot`] (each zone taken under
//!   its lock) plus the slab, vmalloc and memcg views read right after. Nothing is kept
//!   between scrapes and the allocator's hot paths are untouched. These are thousands of
//!   bounded series whose values already live in the allocator, so a small writer is
//!   simpler and cheaper than mirroring them into a metrics registry.
//! - **RPC metrics** come from [`crate::rpc_metrics`]: `metrics` +
//!   `metrics-exporter-prometheus` handles registered once at start and rendered after
//!   the state families. That crate has no scrape-time callbacks (hence the writer
//!   above) but has lock-free histograms with real buckets for the request path.
//! - **Allocation histograms** ([`alloc`]): per-API size and latency histograms and
//!   failures by reason, recorded by [`crate::api::Api`] for unary calls and for every
//!   operation of Batch and Session, into fixed arrays of atomics (no label lookup per
//!   allocation) and written here at scrape time.
//!
//! Naming: `kmem_` prefix, base units (`_bytes`, `_seconds`), counters end in `_total`.
//! Page counts are exported as bytes, except where a family mirrors a kernel name
//! (`kmem_vmstat_*` keeps the kernel's page counts, as /proc/vmstat does).
//!
//! With `metrics.node_exporter_compat = true` the node_exporter families
//! (`node_memory_*_bytes`, `node_buddyinfo_blocks`, `node_zoneinfo_*`, `node_vmstat_*`,
//! `node_slabinfo_*`, `node_uname_info`) are added with node_exporter's names and labels,
//! so its dashboards work against a kmemd target (scrape it under its own `job`).
//! With `metrics.cadvisor_compat = true` cAdvisor's cgroup memory families are added
//! (`container_memory_*`, `container_spec_memory_*`, `container_oom_events_total`),
//! labelled `id` = cgroup path, `name=""`, `image=""`.
//!
//! Layout: [`state`] native allocator-state families, [`compat`] node_exporter and
//! cAdvisor families, [`alloc`] the allocation histograms.

use std::fmt::{Display, Write as _};
use std::sync::Arc;

use kmem_allocator::stats::{Snapshot, ZoneSnapshot};
use kmem_allocator::{Machine, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use crate::rpc_metrics::RpcMetrics;

pub mod alloc;
mod compat;
mod state;
#[cfg(test)]
mod tests;

pub use alloc::{AllocApi, AllocMetrics};

/// The `[metrics]` config section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` and record RPC metrics.
    pub enabled: bool,
    /// Most cgroups exported with their own `cgroup` label (the largest by
    /// memory.current, root included); the rest are summed under `cgroup="other"`.
    pub max_cgroups: u32,
    /// Also export node_exporter's families (`node_memory_*`, `node_buddyinfo_blocks`,
    /// `node_zoneinfo_*`, `node_vmstat_*`, `node_slabinfo_*`, `node_uname_info`).
    pub node_exporter_compat: bool,
    /// Also export cAdvisor's cgroup families (`container_memory_*`,
    /// `container_spec_memory_*`, `container_oom_events_total`), one `id` per cgroup.
    pub cadvisor_compat: bool,
    /// Record the per-API allocation histograms (`kmem_alloc_size_bytes`,
    /// `kmem_alloc_duration_seconds`) and `kmem_alloc_failures_total`.
    pub alloc_histograms: bool,
    /// Time 1 allocation in this many for `kmem_alloc_duration_seconds` (each timed one
    /// counts this many times); 1 times every allocation. A clock read can cost more
    /// than the rest of the recording on VMs.
    pub alloc_time_every: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            max_cgroups: 100,
            node_exporter_compat: false,
            cadvisor_compat: false,
            alloc_histograms: true,
            alloc_time_every: alloc::DEFAULT_TIME_EVERY,
        }
    }
}

/// The `/metrics` renderer.
pub struct Metrics {
    machine: Arc<Machine>,
    cfg: MetricsConfig,
    rpc: Option<Arc<RpcMetrics>>,
    alloc: Option<Arc<AllocMetrics>>,
}

impl Metrics {
    pub fn new(machine: Arc<Machine>, cfg: MetricsConfig, rpc: Option<Arc<RpcMetrics>>) -> Self {
        Metrics {
            machine,
            cfg,
            rpc,
            alloc: None,
        }
    }

    /// Also render the per-API allocation histograms recorded by the [`crate::api::Api`].
    pub fn with_alloc(mut self, alloc: Option<Arc<AllocMetrics>>) -> Self {
        self.alloc = alloc;
        self
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let mut w = Writer::default();
        w.family("kmem_build_info", "gauge", "kmemd build information.");
        w.sample(
            "kmem_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        let snap = self.machine.snapshot();
        let cgroups = state::collect_cgroups(&self.machine, self.cfg.max_cgroups as usize);
        state::write_state(&mut w, &self.machine, &snap, &cgroups);
        if let Some(a) = &self.alloc {
            a.write(&mut w);
        }
        if self.cfg.node_exporter_compat {
            compat::write_node_exporter(&mut w, &self.machine, &snap);
        }
        if self.cfg.cadvisor_compat {
            compat::write_cadvisor(&mut w, &cgroups);
        }
        let mut out = w.out;
        if let Some(rpc) = &self.rpc {
            out.push_str(&rpc.render());
        }
        out
    }
}

/// A minimal text-format writer. Callers write each family's samples together.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

impl Writer {
    pub(crate) fn family(&mut self, name: &str, ty: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {ty}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }

    /// One family with one sample per populated zone.
    pub(crate) fn per_zone(
        &mut self,
        snap: &Snapshot,
        name: &str,
        ty: &str,
        help: &str,
        f: impl Fn(&ZoneSnapshot) -> u64,
    ) {
        self.family(name, ty, help);
        for z in populated(snap) {
            let node = z.node.to_string();
            self.sample(name, &[("node", &node), ("zone", z.zone.name())], f(z));
        }
    }
}

pub(crate) fn populated(snap: &Snapshot) -> impl Iterator<Item = &ZoneSnapshot> {
    snap.zones.iter().filter(|z| z.populated)
}

pub(crate) const PAGE: u64 = PAGE_SIZE;
