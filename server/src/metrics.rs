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
//!
//! Naming: `kmem_` prefix, base units (`_bytes`, `_seconds`), counters end in `_total`.
//! Page counts are exported as bytes, except where a family mirrors a kernel name
//! (`kmem_vmstat_*` keeps the kernel's page counts, as /proc/vmstat does).
//!
//! With `metrics.node_exporter_compat = true` the node_exporter families
//! (`node_memory_*_bytes`, `node_buddyinfo_blocks`, `node_zoneinfo_*`, `node_vmstat_*`,
//! `node_slabinfo_*`, `node_uname_info`) are added with node_exporter's names and labels,
//! so its dashboards work against a kmemd target (scrape it under its own `job`).

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::sync::Arc;

use kmem_allocator::mem::ZoneType;
use kmem_allocator::page::MigrateType;
use kmem_allocator::proc::names::{EVENT_ITEMS, NUMA_ITEMS};
use kmem_allocator::slab::CacheInfo;
use kmem_allocator::stats::{Snapshot, ZoneSnapshot};
use kmem_allocator::vmalloc::VmallocCounts;
use kmem_allocator::vmstat::RareEventCounts;
use kmem_allocator::{Machine, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use crate::rpc_metrics::RpcMetrics;

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
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            max_cgroups: 100,
            node_exporter_compat: false,
        }
    }
}

/// The `/metrics` renderer.
pub struct Metrics {
    machine: Arc<Machine>,
    cfg: MetricsConfig,
    rpc: Option<Arc<RpcMetrics>>,
}

impl Metrics {
    pub fn new(machine: Arc<Machine>, cfg: MetricsConfig, rpc: Option<Arc<RpcMetrics>>) -> Self {
        Metrics { machine, cfg, rpc }
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
        write_state(&mut w, &self.machine, &snap, &self.cfg);
        if self.cfg.node_exporter_compat {
            write_node_exporter(&mut w, &self.machine, &snap);
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
struct Writer {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

impl Writer {
    fn family(&mut self, name: &str, ty: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {ty}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Display) {
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
    fn per_zone(
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

fn populated(snap: &Snapshot) -> impl Iterator<Item = &ZoneSnapshot> {
    snap.zones.iter().filter(|z| z.populated)
}

const PAGE: u64 = PAGE_SIZE;

type ZoneFn = fn(&ZoneSnapshot) -> u64;
type CacheFn = fn(&CacheInfo) -> u64;
type ZoneField = (&'static str, &'static str, ZoneFn);
type CacheField = (&'static str, &'static str, &'static str, CacheFn);

#[rustfmt::skip]
const ZONE_GAUGES: [ZoneField; 10] = [
    ("kmem_zone_managed_bytes", "Memory managed by the buddy allocator in the zone.", |z| z.managed * PAGE),
    ("kmem_zone_present_bytes", "Physical memory present in the zone.", |z| z.present * PAGE),
    ("kmem_zone_spanned_bytes", "Memory spanned by the zone, holes included.", |z| z.spanned * PAGE),
    ("kmem_zone_free_bytes", "Free memory in the zone (buddy free lists).", |z| z.free * PAGE),
    ("kmem_zone_watermark_min_bytes", "The zone's min watermark.", |z| z.min * PAGE),
    ("kmem_zone_watermark_low_bytes", "The zone's low watermark (kswapd wakes below it).", |z| z.low * PAGE),
    ("kmem_zone_watermark_high_bytes", "The zone's high watermark (kswapd sleeps above it).", |z| z.high * PAGE),
    ("kmem_zone_watermark_boost_bytes", "Current watermark boost of the zone.", |z| z.boost * PAGE),
    ("kmem_zone_highatomic_reserved_bytes", "Memory reserved for high-order atomic allocations.", |z| z.reserved_highatomic * PAGE),
    ("kmem_zone_pcp_bytes", "Free pages held on the per-CPU lists of the zone, all CPUs.", |z| z.pcp_pages * PAGE),
];

#[rustfmt::skip]
const NUMA: [(&str, ZoneFn); 6] = [
    ("numa_hit", |z| z.numa.numa_hit),
    ("numa_miss", |z| z.numa.numa_miss),
    ("numa_foreign", |z| z.numa.numa_foreign),
    ("numa_interleave", |z| z.numa.numa_interleave),
    ("numa_local", |z| z.numa.numa_local),
    ("numa_other", |z| z.numa.numa_other),
];

#[rustfmt::skip]
fn rare_counters(r: &RareEventCounts) -> [(&'static str, &'static str, u64); 9] {
    [
        ("kmem_kswapd_wakeups_total", "kswapd wakeups.", r.kswapd_wake),
        ("kmem_extfrag_fallbacks_total", "Allocations that fell back to another migratetype.", r.extfrag_fallback),
        ("kmem_pageblock_claims_total", "Pageblocks claimed by a fallback allocation.", r.pageblock_claim),
        ("kmem_watermark_boosts_total", "Watermark boosts.", r.watermark_boost),
        ("kmem_highatomic_reserves_total", "Pageblocks reserved for high-order atomic allocations.", r.highatomic_reserve),
        ("kmem_pcp_drains_total", "Per-CPU list drains.", r.pcp_drain),
        ("kmem_nofail_waits_total", "__GFP_NOFAIL allocations that had to wait.", r.nofail_wait),
        ("kmem_nofail_gave_up_total", "__GFP_NOFAIL allocations that gave up.", r.nofail_gave_up),
        ("kmem_bad_frees_total", "Frees of pages that were not allocated.", r.bad_free),
    ]
}

#[rustfmt::skip]
const SLAB_FIELDS: [CacheField; 9] = [
    ("kmem_slab_active_objects", "gauge", "Objects in use in the cache.", |c| c.active_objects),
    ("kmem_slab_objects", "gauge", "Object slots in the cache's slabs.", |c| c.objects),
    ("kmem_slab_object_size_bytes", "gauge", "Object size of the cache.", |c| c.object_size as u64),
    ("kmem_slab_slot_size_bytes", "gauge", "Bytes one object takes in a slab, metadata included.", |c| c.slab_size as u64),
    ("kmem_slab_objects_per_slab", "gauge", "Objects per slab.", |c| c.objs_per_slab as u64),
    ("kmem_slab_pages_per_slab", "gauge", "Pages per slab.", |c| 1u64 << c.order),
    ("kmem_slab_slabs", "gauge", "Slabs in the cache.", |c| c.slabs),
    ("kmem_slab_allocs_total", "counter", "Objects allocated from the cache.", |c| c.alloc_total),
    ("kmem_slab_frees_total", "counter", "Objects freed to the cache.", |c| c.free_total),
];

#[rustfmt::skip]
fn vmalloc_rows(v: &VmallocCounts) -> [(&'static str, &'static str, &'static str, u64); 8] {
    [
        ("kmem_vmalloc_used_bytes", "gauge", "Memory backing vmalloc areas.", v.pages * PAGE),
        ("kmem_vmalloc_areas", "gauge", "Live vmalloc areas.", v.areas),
        ("kmem_vmalloc_free_space_bytes", "gauge", "Free vmalloc address space.", v.free_space_bytes),
        ("kmem_vmalloc_purge_pending_bytes", "gauge", "Lazily freed vmalloc space waiting for a purge.", v.purge_pending_pages * PAGE),
        ("kmem_vmalloc_calls_total", "counter", "vmalloc calls.", v.calls),
        ("kmem_vmalloc_failures_total", "counter", "vmalloc calls that failed.", v.failures),
        ("kmem_vmalloc_purges_total", "counter", "Lazy-free purges.", v.purges),
        ("kmem_vmalloc_purged_bytes_total", "counter", "Address space released by purges.", v.purged_pages * PAGE),
    ]
}

#[rustfmt::skip]
const ZONEINFO_GAUGES: [ZoneField; 7] = [
    ("nr_free_pages", "Total number of free pages in the zone", |z| z.free),
    ("min_pages", "Zone watermark pages_min", |z| z.min),
    ("low_pages", "Zone watermark pages_low", |z| z.low),
    ("high_pages", "Zone watermark pages_high", |z| z.high),
    ("spanned_pages", "Total pages spanned by the zone, including holes", |z| z.spanned),
    ("present_pages", "Physical pages existing within the zone", |z| z.present),
    ("managed_pages", "Present pages managed by the buddy system", |z| z.managed),
];

#[rustfmt::skip]
const SLABINFO: [(&str, &str, CacheFn); 5] = [
    ("active_objects", "The number of objects that are currently active (i.e., in use).", |c| c.active_objects),
    ("objects", "The total number of allocated objects (i.e., objects that are both in use and not in use).", |c| c.objects),
    ("object_size_bytes", "The size of objects in this slab, in bytes.", |c| c.object_size as u64),
    ("objects_per_slab", "The number of objects stored in each slab.", |c| c.objs_per_slab as u64),
    ("pages_per_slab", "The number of pages allocated for each slab.", |c| 1u64 << c.order),
];

fn write_state(w: &mut Writer, m: &Machine, snap: &Snapshot, cfg: &MetricsConfig) {
    write_zones(w, snap);
    write_vmstat(w, m, snap);
    write_slab(w, m);
    write_vmalloc(w, m);
    write_cgroups(w, m, cfg.max_cgroups as usize);
}

fn write_zones(w: &mut Writer, snap: &Snapshot) {
    for (name, help, f) in ZONE_GAUGES {
        w.per_zone(snap, name, "gauge", help, f);
    }
    let name = "kmem_zone_lowmem_reserve_bytes";
    w.family(
        name,
        "gauge",
        "Lowmem protection: memory the zone keeps from allocations that could use zone `for_zone` (zoneinfo protection).",
    );
    for z in populated(snap) {
        let node = z.node.to_string();
        for (i, v) in z.lowmem_reserve.iter().enumerate() {
            let for_zone = ZoneType::ALL.get(i).map_or("?", |t| t.name());
            w.sample(
                name,
                &[
                    ("node", &node),
                    ("zone", z.zone.name()),
                    ("for_zone", for_zone),
                ],
                v * PAGE,
            );
        }
    }
    let name = "kmem_zone_free_blocks";
    w.family(
        name,
        "gauge",
        "Free blocks on the buddy free lists by order and migratetype (/proc/pagetypeinfo).",
    );
    for z in populated(snap) {
        let node = z.node.to_string();
        for (order, row) in z.free_blocks.iter().enumerate() {
            let o = order.to_string();
            for mt in MigrateType::ALL {
                w.sample(
                    name,
                    &[
                        ("node", &node),
                        ("zone", z.zone.name()),
                        ("order", &o),
                        ("migratetype", mt.name()),
                    ],
                    row[mt as usize],
                );
            }
        }
    }
    let name = "kmem_zone_pcp_cpu_bytes";
    w.family(
        name,
        "gauge",
        "Free pages on one CPU's per-CPU list of the zone.",
    );
    for z in populated(snap) {
        let node = z.node.to_string();
        for p in &z.pagesets {
            let cpu = p.cpu.to_string();
            w.sample(
                name,
                &[("node", &node), ("zone", z.zone.name()), ("cpu", &cpu)],
                p.count as u64 * PAGE,
            );
        }
    }
    for (n, f) in NUMA {
        let name = format!("kmem_zone_{n}_total");
        w.per_zone(
            snap,
            &name,
            "counter",
            &format!("NUMA {n} allocations from the zone."),
            f,
        );
    }
    w.family(
        "kmem_memory_managed_bytes",
        "gauge",
        "Memory managed by the buddy allocator, all zones.",
    );
    w.sample("kmem_memory_managed_bytes", &[], snap.total_managed * PAGE);
    w.family("kmem_memory_free_bytes", "gauge", "Free memory, all zones.");
    w.sample("kmem_memory_free_bytes", &[], snap.total_free * PAGE);
    w.family(
        "kmem_memory_reserve_bytes",
        "gauge",
        "totalreserve_pages: high watermarks plus lowmem reserves.",
    );
    w.sample("kmem_memory_reserve_bytes", &[], snap.totalreserve * PAGE);
}

/// Split a per-zone vmstat name (`pgalloc_dma32`) into its stem and zone.
fn zone_suffix(name: &str) -> Option<(&str, ZoneType)> {
    let (stem, z) = name.rsplit_once('_')?;
    ZoneType::ALL
        .into_iter()
        .find(|t| t.lower() == z)
        .map(|t| (stem, t))
}

/// Kernel names promtool rejects (`sec` reads as an abbreviated unit) spelled out.
fn lint_name(name: String) -> String {
    name.replace("_sec_", "_secondary_")
}

fn write_vmstat(w: &mut Writer, m: &Machine, snap: &Snapshot) {
    // Group samples by family, in file order, so each family is contiguous.
    let mut order: Vec<(String, bool)> = Vec::new();
    let mut fams: HashMap<String, Vec<(Option<&'static str>, u64)>> = HashMap::new();
    for (name, v) in m.vmstat_entries() {
        let counter = EVENT_ITEMS.contains(&name.as_str()) || NUMA_ITEMS.contains(&name.as_str());
        let (fam, zone) = match zone_suffix(&name) {
            Some((stem, z)) if counter => (format!("kmem_vmstat_{stem}_total"), Some(z.name())),
            _ if counter => (format!("kmem_vmstat_{name}_total"), None),
            _ => (format!("kmem_vmstat_{name}"), None),
        };
        let fam = lint_name(fam);
        let e = fams.entry(fam.clone()).or_default();
        if e.is_empty() {
            order.push((fam, counter));
        }
        e.push((zone, v));
    }
    for (fam, counter) in order {
        let (ty, help) = if counter {
            ("counter", "/proc/vmstat event counter (kernel name).")
        } else {
            ("gauge", "/proc/vmstat item in pages (kernel name).")
        };
        w.family(&fam, ty, help);
        for (zone, v) in &fams[&fam] {
            match zone {
                Some(z) => w.sample(&fam, &[("zone", z)], v),
                None => w.sample(&fam, &[], v),
            }
        }
    }
    let r = &snap.rare;
    let name = "kmem_page_alloc_failures_total";
    w.family(name, "counter", "Page allocations that failed, by reason.");
    for (reason, v) in [
        ("nomem", r.alloc_fail_nomem),
        ("order", r.alloc_fail_order),
        ("gfp", r.alloc_fail_gfp),
    ] {
        w.sample(name, &[("reason", reason)], v);
    }
    for (name, help, v) in rare_counters(r) {
        w.family(name, "counter", help);
        w.sample(name, &[], v);
    }
}

fn write_slab(w: &mut Writer, m: &Machine) {
    let caches: Vec<_> = m
        .caches_info()
        .into_iter()
        .filter(|c| !c.destroyed)
        .collect();
    for (name, ty, help, f) in SLAB_FIELDS {
        w.family(name, ty, help);
        for c in &caches {
            w.sample(name, &[("cache", &c.name)], f(c));
        }
    }
}

fn write_vmalloc(w: &mut Writer, m: &Machine) {
    let v = m.vmalloc_counts();
    for (name, ty, help, val) in vmalloc_rows(&v) {
        w.family(name, ty, help);
        w.sample(name, &[], val);
    }
}

/// One cgroup's values, as its interface files print them.
#[derive(Default)]
struct Cg {
    path: String,
    current: u64,
    peak: u64,
    /// max, high, low, min (`None` on the root; `max` → +Inf).
    limits: [Option<f64>; 4],
    stat: Vec<(String, u64)>,
    events: Vec<(String, u64)>,
}

const LIMIT_FILES: [&str; 4] = ["max", "high", "low", "min"];

fn read_u64(m: &Machine, path: &str, file: &str) -> u64 {
    m.memcg()
        .read_file(path, file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_pairs(m: &Machine, path: &str, file: &str) -> Vec<(String, u64)> {
    m.memcg()
        .read_file(path, file)
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// memory.stat keys that are event counts rather than bytes.
const STAT_EVENTS: [&str; 4] = ["pgscan", "pgsteal", "pgfault", "pgmajfault"];

fn write_cgroups(w: &mut Writer, m: &Machine, cap: usize) {
    let paths = m.memcg().list();
    let mut all: Vec<(u64, String)> = paths
        .into_iter()
        .map(|p| (read_u64(m, &p, "memory.current"), p))
        .collect();
    // Root first, then the largest.
    all.sort_by(|a, b| {
        (b.1 == "/")
            .cmp(&(a.1 == "/"))
            .then(b.0.cmp(&a.0))
            .then(a.1.cmp(&b.1))
    });
    w.family("kmem_cgroups", "gauge", "Memory cgroups, root included.");
    w.sample("kmem_cgroups", &[], all.len());
    let cap = cap.max(1);
    let mut shown = Vec::new();
    let mut other: Option<Cg> = None;
    for (i, (current, path)) in all.into_iter().enumerate() {
        if i < cap {
            let mut cg = Cg {
                current,
                peak: read_u64(m, &path, "memory.peak"),
                stat: read_pairs(m, &path, "memory.stat"),
                events: read_pairs(m, &path, "memory.events"),
                ..Cg::default()
            };
            for (slot, f) in cg.limits.iter_mut().zip(LIMIT_FILES) {
                *slot = m
                    .memcg()
                    .read_file(&path, &format!("memory.{f}"))
                    .ok()
                    .map(|s| s.trim().parse::<f64>().unwrap_or(f64::INFINITY));
            }
            cg.path = path;
            shown.push(cg);
        } else {
            // The rest: usage, peak and events summed (limits and memory.stat are not).
            let o = other.get_or_insert_with(|| Cg {
                path: "other".into(),
                ..Cg::default()
            });
            o.current += current;
            o.peak += read_u64(m, &path, "memory.peak");
            for (k, v) in read_pairs(m, &path, "memory.events") {
                match o.events.iter_mut().find(|e| e.0 == k) {
                    Some(e) => e.1 += v,
                    None => o.events.push((k, v)),
                }
            }
        }
    }
    shown.extend(other);
    let name = "kmem_cgroup_memory_current_bytes";
    w.family(
        name,
        "gauge",
        "memory.current: memory charged to the cgroup and its descendants.",
    );
    for c in &shown {
        w.sample(name, &[("cgroup", &c.path)], c.current);
    }
    let name = "kmem_cgroup_memory_peak_bytes";
    w.family(
        name,
        "gauge",
        "memory.peak: the highest memory.current seen.",
    );
    for c in &shown {
        w.sample(name, &[("cgroup", &c.path)], c.peak);
    }
    for (i, f) in LIMIT_FILES.iter().enumerate() {
        let name = format!("kmem_cgroup_memory_{f}_bytes");
        w.family(&name, "gauge", &format!("memory.{f} (+Inf = no limit)."));
        for c in &shown {
            if let Some(v) = c.limits[i] {
                let v = if v.is_infinite() {
                    "+Inf".to_string()
                } else {
                    v.to_string()
                };
                w.sample(&name, &[("cgroup", &c.path)], v);
            }
        }
    }
    // memory.stat: byte items as gauges, event items as counters, one family per key.
    if let Some(first) = shown.iter().find(|c| !c.stat.is_empty()) {
        let keys: Vec<String> = first.stat.iter().map(|s| s.0.clone()).collect();
        for k in keys {
            let ev = STAT_EVENTS.contains(&k.as_str());
            let name = lint_name(if ev {
                format!("kmem_cgroup_memory_stat_{k}_total")
            } else {
                format!("kmem_cgroup_memory_stat_{k}_bytes")
            });
            w.family(
                &name,
                if ev { "counter" } else { "gauge" },
                &format!("memory.stat {k}."),
            );
            for c in &shown {
                if let Some((_, v)) = c.stat.iter().find(|s| s.0 == k) {
                    w.sample(&name, &[("cgroup", &c.path)], v);
                }
            }
        }
    }
    let name = "kmem_cgroup_memory_events_total";
    w.family(
        name,
        "counter",
        "memory.events: limit hits and OOM events (hierarchical).",
    );
    for c in &shown {
        for (e, v) in &c.events {
            w.sample(name, &[("cgroup", &c.path), ("event", e)], v);
        }
    }
}

/// node_exporter's families, names and labels as its collectors make them.
fn write_node_exporter(w: &mut Writer, m: &Machine, snap: &Snapshot) {
    for (field, v) in m.meminfo_entries() {
        let key = field.replace('(', "_").replace(')', "");
        let name = if field.starts_with("HugePages_") {
            format!("node_memory_{key}")
        } else {
            format!("node_memory_{key}_bytes")
        };
        let suffix = name.trim_start_matches("node_memory_");
        w.family(
            &name,
            "gauge",
            &format!("Memory information field {suffix}."),
        );
        w.sample(&name, &[], v);
    }
    let name = "node_buddyinfo_blocks";
    w.family(name, "gauge", "Count of free blocks according to size.");
    for z in populated(snap) {
        let node = z.node.to_string();
        for (order, row) in z.free_blocks.iter().enumerate() {
            let size = order.to_string();
            let n: u64 = row.iter().sum();
            w.sample(
                name,
                &[("node", &node), ("size", &size), ("zone", z.zone.name())],
                n,
            );
        }
    }
    for (f, help, get) in ZONEINFO_GAUGES {
        w.per_zone(snap, &format!("node_zoneinfo_{f}"), "gauge", help, get);
    }
    for i in 0..kmem_allocator::mem::MAX_NR_ZONES {
        let name = format!("node_zoneinfo_protection_{i}");
        w.family(&name, "gauge", &format!("Protection array {i}. field"));
        for z in populated(snap) {
            let node = z.node.to_string();
            let v = z.lowmem_reserve.get(i).copied().unwrap_or(0);
            w.sample(&name, &[("node", &node), ("zone", z.zone.name())], v);
        }
    }
    for (f, get) in NUMA {
        let name = format!("node_zoneinfo_{f}_total");
        w.per_zone(snap, &name, "counter", &format!("Zone {f} counter."), get);
    }
    for (k, v) in m.vmstat_entries() {
        let name = format!("node_vmstat_{k}");
        w.family(
            &name,
            "untyped",
            &format!("/proc/vmstat information field {k}."),
        );
        w.sample(&name, &[], v);
    }
    let caches: Vec<_> = m
        .caches_info()
        .into_iter()
        .filter(|c| !c.destroyed)
        .collect();
    for (f, help, get) in SLABINFO {
        let name = format!("node_slabinfo_{f}");
        w.family(&name, "gauge", help);
        for c in &caches {
            w.sample(&name, &[("slab", &c.name)], get(c));
        }
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kmemd".into());
    w.family(
        "node_uname_info",
        "gauge",
        "Labeled system information as provided by the uname system call.",
    );
    w.sample(
        "node_uname_info",
        &[
            ("domainname", "(none)"),
            ("machine", "x86_64"),
            ("nodename", &host),
            ("release", concat!("kmemd-", env!("CARGO_PKG_VERSION"))),
            ("sysname", "Linux"),
            ("version", "#1 SMP kmemd simulated"),
        ],
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmem_allocator::{AllocContext, ByteSize, Gfp, MachineConfig};

    /// `name{labels} value` lines as (name, sorted labels, value).
    type Samples = Vec<(String, Vec<(String, String)>, f64)>;

    fn parse(text: &str) -> Samples {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, v) = l.rsplit_once(' ').expect("value");
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => {
                        let mut ls: Vec<(String, String)> = rest
                            .trim_end_matches('}')
                            .split("\",")
                            .filter(|s| !s.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').expect("label");
                                (k.to_string(), v.trim_matches('"').to_string())
                            })
                            .collect();
                        ls.sort();
                        (n.to_string(), ls)
                    }
                    None => (series.to_string(), vec![]),
                };
                let v = if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().expect(l)
                };
                (name, labels, v)
            })
            .collect()
    }

    fn get(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        let hits: Vec<f64> = samples
            .iter()
            .filter(|s| s.0 == name && s.1 == want)
            .map(|s| s.2)
            .collect();
        assert_eq!(hits.len(), 1, "{name}{labels:?}: {hits:?}");
        hits[0]
    }

    #[test]
    fn renders_state_after_known_allocations() {
        let m = Arc::new(Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap());
        m.memcg().create("/a").unwrap();
        m.memcg().create("/b").unwrap();
        m.memcg().create("/c").unwrap();
        let ctx = AllocContext::on_cpu(0);
        let before = m
            .caches_info()
            .into_iter()
            .find(|c| c.name == "kmalloc-1k")
            .unwrap();
        let objs: Vec<_> = (0..10)
            .map(|_| m.kmalloc(1000, Gfp::GFP_KERNEL, &ctx).unwrap())
            .collect();
        let block = m.alloc_pages(Gfp::GFP_KERNEL, 3, &ctx).unwrap();
        let cfg = MetricsConfig {
            max_cgroups: 2,
            node_exporter_compat: true,
            ..MetricsConfig::default()
        };
        let text = Metrics::new(m.clone(), cfg, None).render();
        let s = parse(&text);

        assert_eq!(
            get(
                &s,
                "kmem_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        let snap = m.snapshot();
        let normal = snap
            .zones
            .iter()
            .find(|z| z.populated && z.zone == ZoneType::Normal);
        let z = normal
            .or_else(|| snap.zones.iter().rfind(|z| z.populated))
            .unwrap();
        let zl = [("node", "0"), ("zone", z.zone.name())];
        assert_eq!(
            get(&s, "kmem_zone_managed_bytes", &zl),
            (z.managed * PAGE) as f64
        );
        assert_eq!(
            get(&s, "kmem_zone_watermark_min_bytes", &zl),
            (z.min * PAGE) as f64
        );
        assert!(get(&s, "kmem_zone_free_bytes", &zl) > 0.0);
        let blocks = get(
            &s,
            "kmem_zone_free_blocks",
            &[
                ("node", "0"),
                ("zone", z.zone.name()),
                ("order", "10"),
                ("migratetype", "Movable"),
            ],
        );
        assert_eq!(
            blocks,
            z.free_blocks[10][MigrateType::Movable as usize] as f64
        );
        let c = m
            .caches_info()
            .into_iter()
            .find(|c| c.name == "kmalloc-1k")
            .unwrap();
        assert_eq!(c.alloc_total, before.alloc_total + 10);
        let cl = [("cache", "kmalloc-1k")];
        assert_eq!(get(&s, "kmem_slab_allocs_total", &cl), c.alloc_total as f64);
        assert_eq!(
            get(&s, "kmem_slab_active_objects", &cl),
            c.active_objects as f64
        );
        assert_eq!(get(&s, "kmem_slab_object_size_bytes", &cl), 1024.0);
        let pgalloc: u64 = snap.pgalloc.iter().map(|p| p.1).sum();
        let exported: f64 = s
            .iter()
            .filter(|x| x.0 == "kmem_vmstat_pgalloc_total")
            .map(|x| x.2)
            .sum();
        assert_eq!(exported, pgalloc as f64);
        assert!(pgalloc >= 8, "the order-3 block counts 8 pages");
        // Cgroups: root plus one, the other two summed.
        assert_eq!(get(&s, "kmem_cgroups", &[]), 4.0);
        let cgs: Vec<_> = s
            .iter()
            .filter(|x| x.0 == "kmem_cgroup_memory_current_bytes")
            .map(|x| x.1[0].1.clone())
            .collect();
        assert_eq!(cgs, ["/", "/a", "other"]);
        assert_eq!(
            get(&s, "kmem_cgroup_memory_max_bytes", &[("cgroup", "/a")]),
            f64::INFINITY
        );
        assert_eq!(
            get(
                &s,
                "kmem_cgroup_memory_events_total",
                &[("cgroup", "other"), ("event", "oom_kill")]
            ),
            0.0
        );
        // node_exporter compat.
        let mi = m.meminfo_entries();
        let total = mi.iter().find(|e| e.0 == "MemTotal").unwrap().1;
        assert_eq!(get(&s, "node_memory_MemTotal_bytes", &[]), total as f64);
        assert!(s.iter().any(|x| x.0 == "node_memory_Active_anon_bytes"));
        assert!(s.iter().any(|x| x.0 == "node_memory_HugePages_Total"));
        let bl = [("node", "0"), ("zone", z.zone.name()), ("size", "10")];
        let sum10: u64 = z.free_blocks[10].iter().sum();
        assert_eq!(get(&s, "node_buddyinfo_blocks", &bl), sum10 as f64);
        assert_eq!(get(&s, "node_zoneinfo_min_pages", &zl), z.min as f64);
        assert!(s.iter().any(|x| x.0 == "node_vmstat_pgfree"));
        // Every family is contiguous and declared once.
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = l.split(' ').nth(2).unwrap();
            assert!(
                seen.insert(name.to_string()),
                "family {name} declared twice"
            );
        }
        drop(objs);
        let _ = block;
    }
}
