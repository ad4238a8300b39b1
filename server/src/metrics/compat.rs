//! Compatibility families: node_exporter's (names and labels as its collectors make
//! them, checked against a real node_exporter by `tests/metrics_node_exporter.rs`) and
//! cAdvisor's cgroup memory families.

use kmem_allocator::stats::Snapshot;
use kmem_allocator::Machine;

use super::state::{CacheFn, Cg, Cgroups, ZoneField, NUMA};
use super::{populated, Writer};

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

/// node_exporter's families, names and labels as its collectors make them.
pub(super) fn write_node_exporter(w: &mut Writer, m: &Machine, snap: &Snapshot) {
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

type CgFn = fn(&Cg) -> u64;

/// cAdvisor's memory gauges (cgroup v2 mapping, as cAdvisor reads memory.stat).
#[rustfmt::skip]
const CADVISOR_GAUGES: [(&str, &str, CgFn); 10] = [
    ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", |c| c.current),
    ("container_memory_working_set_bytes", "Current working set in bytes.", |c| c.current.saturating_sub(c.stat("inactive_file"))),
    ("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", |c| c.peak),
    ("container_memory_rss", "Size of RSS in bytes.", |c| c.stat("anon")),
    ("container_memory_cache", "Number of bytes of page cache memory.", |c| c.stat("file")),
    ("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", |c| c.stat("kernel")),
    ("container_memory_mapped_file", "Size of memory mapped files in bytes.", |c| c.stat("file_mapped")),
    ("container_memory_swap", "Container swap usage in bytes.", |_| 0),
    // memory.max / memory.low; cAdvisor reports an unlimited value as 0.
    ("container_spec_memory_limit_bytes", "Memory limit for the container.", |c| limit(c, 0)),
    ("container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", |c| limit(c, 2)),
];

fn limit(c: &Cg, i: usize) -> u64 {
    match c.limits[i] {
        Some(v) if v.is_finite() => v as u64,
        _ => 0,
    }
}

/// cAdvisor's cgroup memory families: label `id` = cgroup path, `name` and `image`
/// empty (no containers here). The cgroups past `max_cgroups` are left out (cAdvisor has
/// no aggregate series).
pub(super) fn write_cadvisor(w: &mut Writer, cgroups: &Cgroups) {
    let cgs: Vec<&Cg> = cgroups.shown.iter().filter(|c| !c.other).collect();
    let base = |c: &Cg| {
        [
            ("id", c.path.clone()),
            ("image", String::new()),
            ("name", String::new()),
        ]
    };
    const CADVISOR_COUNTERS: [(&str, &str, CgFn); 2] = [
        (
            "container_memory_failcnt",
            "Number of memory usage hits limits",
            |c| c.event("max"),
        ),
        (
            "container_oom_events_total",
            "Count of out of memory events observed for the container",
            |c| c.event("oom_kill"),
        ),
    ];
    let families = CADVISOR_GAUGES
        .iter()
        .map(|f| (f, "gauge"))
        .chain(CADVISOR_COUNTERS.iter().map(|f| (f, "counter")));
    for (&(name, help, get), kind) in families {
        w.family(name, kind, help);
        for c in &cgs {
            let l = base(c);
            w.sample(
                name,
                &[(l[0].0, &l[0].1), (l[1].0, &l[1].1), (l[2].0, &l[2].1)],
                get(c),
            );
        }
    }
    let name = "container_memory_failures_total";
    w.family(
        name,
        "counter",
        "Cumulative count of memory allocation failures.",
    );
    for c in &cgs {
        let l = base(c);
        for (ty, key) in [("pgfault", "pgfault"), ("pgmajfault", "pgmajfault")] {
            // memory.stat is hierarchical in cgroup v2: both scopes read the same value.
            for scope in ["container", "hierarchy"] {
                w.sample(
                    name,
                    &[
                        ("failure_type", ty),
                        (l[0].0, &l[0].1),
                        (l[1].0, &l[1].1),
                        (l[2].0, &l[2].1),
                        ("scope", scope),
                    ],
                    c.stat(key),
                );
            }
        }
    }
}
