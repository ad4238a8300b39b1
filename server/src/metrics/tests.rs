use super::*;
use kmem_allocator::mem::ZoneType;
use kmem_allocator::page::MigrateType;
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

#[test]
fn cadvisor_families_per_cgroup() {
    let m = Arc::new(Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap());
    m.memcg().create("/a").unwrap();
    m.memcg().write_file("/a", "memory.max", "1048576").unwrap();
    let cfg = MetricsConfig {
        cadvisor_compat: true,
        ..MetricsConfig::default()
    };
    let text = Metrics::new(m.clone(), cfg, None).render();
    let s = parse(&text);
    let a = [("id", "/a"), ("image", ""), ("name", "")];
    assert_eq!(get(&s, "container_spec_memory_limit_bytes", &a), 1048576.0);
    let root = [("id", "/"), ("image", ""), ("name", "")];
    assert_eq!(get(&s, "container_spec_memory_limit_bytes", &root), 0.0);
    assert_eq!(get(&s, "container_oom_events_total", &a), 0.0);
    assert!(get(&s, "container_memory_usage_bytes", &root) >= 0.0);
    assert!(
        get(&s, "container_memory_working_set_bytes", &a)
            <= get(&s, "container_memory_usage_bytes", &a)
    );
    let f = [
        ("failure_type", "pgfault"),
        ("id", "/a"),
        ("image", ""),
        ("name", ""),
        ("scope", "hierarchy"),
    ];
    assert_eq!(get(&s, "container_memory_failures_total", &f), 0.0);
}
