//! The native allocator-state families (`kmem_zone_*`, `kmem_vmstat_*`, `kmem_slab_*`,
//! `kmem_vmalloc_*`, `kmem_cgroup_*`), written at scrape time.

use std::collections::HashMap;

use kmem_allocator::mem::ZoneType;
use kmem_allocator::page::MigrateType;
use kmem_allocator::proc::names::{EVENT_ITEMS, NUMA_ITEMS};
use kmem_allocator::slab::CacheInfo;
use kmem_allocator::stats::{Snapshot, ZoneSnapshot};
use kmem_allocator::vmalloc::VmallocCounts;
use kmem_allocator::vmstat::RareEventCounts;
use kmem_allocator::Machine;

use super::{populated, Writer, PAGE};

pub(super) type ZoneFn = fn(&ZoneSnapshot) -> u64;
pub(super) type CacheFn = fn(&CacheInfo) -> u64;
pub(super) type ZoneField = (&'static str, &'static str, ZoneFn);
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
pub(super) const NUMA: [(&str, ZoneFn); 6] = [
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

pub(super) fn write_state(w: &mut Writer, m: &Machine, snap: &Snapshot, cgroups: &Cgroups) {
    write_zones(w, snap);
    write_vmstat(w, m, snap);
    write_slab(w, m);
    write_vmalloc(w, m);
    write_cgroups(w, cgroups);
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
pub(super) struct Cg {
    pub path: String,
    pub current: u64,
    pub peak: u64,
    /// max, high, low, min (`None` on the root; `max` → +Inf).
    pub limits: [Option<f64>; 4],
    pub stat: Vec<(String, u64)>,
    pub events: Vec<(String, u64)>,
    /// The sum of the cgroups past the cap (`cgroup="other"`), not a real cgroup.
    pub other: bool,
}

/// The exported cgroups and how many there are in all.
pub(super) struct Cgroups {
    pub total: usize,
    pub shown: Vec<Cg>,
}

impl Cg {
    pub fn stat(&self, key: &str) -> u64 {
        self.stat.iter().find(|s| s.0 == key).map_or(0, |s| s.1)
    }

    pub fn event(&self, key: &str) -> u64 {
        self.events.iter().find(|s| s.0 == key).map_or(0, |s| s.1)
    }
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

/// The cgroups exported with their own label (root first, then the largest by
/// memory.current, `cap` in all), then the rest summed as `other`.
pub(super) fn collect_cgroups(m: &Machine, cap: usize) -> Cgroups {
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
    let total = all.len();
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
                other: true,
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
    Cgroups { total, shown }
}

fn write_cgroups(w: &mut Writer, cgroups: &Cgroups) {
    let shown = &cgroups.shown;
    w.family("kmem_cgroups", "gauge", "Memory cgroups, root included.");
    w.sample("kmem_cgroups", &[], cgroups.total);
    let name = "kmem_cgroup_memory_current_bytes";
    w.family(
        name,
        "gauge",
        "memory.current: memory charged to the cgroup and its descendants.",
    );
    for c in shown {
        w.sample(name, &[("cgroup", &c.path)], c.current);
    }
    let name = "kmem_cgroup_memory_peak_bytes";
    w.family(
        name,
        "gauge",
        "memory.peak: the highest memory.current seen.",
    );
    for c in shown {
        w.sample(name, &[("cgroup", &c.path)], c.peak);
    }
    for (i, f) in LIMIT_FILES.iter().enumerate() {
        let name = format!("kmem_cgroup_memory_{f}_bytes");
        w.family(&name, "gauge", &format!("memory.{f} (+Inf = no limit)."));
        for c in shown {
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
            for c in shown {
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
    for c in shown {
        for (e, v) in &c.events {
            w.sample(name, &[("cgroup", &c.path), ("event", e)], v);
        }
    }
}
