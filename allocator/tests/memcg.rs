//! Memory cgroup charging of page allocations (`__GFP_ACCOUNT`).

mod common;
use common::soak_cases;

use kmem_allocator::memcg::MemcgEvent;
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

/// memory.current with every CPU's charge stock drained first: exactly what is
/// charged (the stocks make the raw value move in MEMCG_CHARGE_BATCH steps).
fn exact(m: &Machine, path: &str) -> String {
    m.memcg().drain_stocks();
    m.memcg().read_file(path, "memory.current").unwrap()
}

fn machine() -> Machine {
    Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap()
}

#[test]
fn accounted_pages_are_charged_and_uncharged_by_their_owner() {
    let m = machine();
    let cg = m.memcg().create("/job").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let a = m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 3, &ctx).unwrap();
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 3, &ctx).unwrap();
    assert_eq!(exact(&m, "/job"), "32768\n", "only the accounted block");
    assert!(m
        .memcg()
        .read_file("/job", "memory.stat")
        .unwrap()
        .contains("\nkernel 32768\n"));
    // Freed by someone else, on another CPU: the charge still goes back to /job.
    m.free_pages_on(a.pfn, 3, &AllocContext::on_cpu(1)).unwrap();
    assert_eq!(exact(&m, "/job"), "0\n");
    m.free_pages(b.pfn, 3).unwrap();
    // alloc_pages_exact keeps the owner on every page it splits off.
    let e = m
        .alloc_pages_exact(3 * 4096, Gfp::GFP_KERNEL_ACCOUNT, &ctx)
        .unwrap();
    assert_eq!(exact(&m, "/job"), "12288\n");
    m.free_pages_exact(e.pfn, 3 * 4096).unwrap();
    assert_eq!(exact(&m, "/job"), "0\n");
    m.check_fully_merged().unwrap();
}

#[test]
fn memory_max_refuses_and_leaves_nothing_behind() {
    let m = machine();
    let cg = m.memcg().create("/small").unwrap();
    m.memcg().write_file("/small", "memory.max", "64K").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 0, &ctx).unwrap());
    }
    let free_before = m.snapshot().total_free;
    let e = m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 0, &ctx).unwrap_err();
    assert_eq!(e.reason(), "CGROUP_LIMIT_EXCEEDED");
    assert!(e.to_string().contains("/small"), "{e}");
    m.drain_all_pages();
    let _ = free_before;
    let c = m.memcg().get(cg).unwrap();
    assert_eq!(c.usage_pages(), 16);
    assert_eq!(c.event(MemcgEvent::Max), 1);
    assert_eq!(c.event(MemcgEvent::Oom), 1);
    // __GFP_NOFAIL may go over, and that is counted.
    let f = m
        .alloc_pages(Gfp::GFP_KERNEL_ACCOUNT | Gfp::NOFAIL, 0, &ctx)
        .unwrap();
    assert_eq!(c.usage_pages(), 17);
    assert_eq!(c.forced_charges(), 1);
    held.push(f);
    m.check_invariants().unwrap();
    for b in held {
        m.free_pages(b.pfn, 0).unwrap();
    }
    m.memcg().drain_stocks();
    assert_eq!(c.usage_pages(), 0);
    m.check_fully_merged().unwrap();
}

#[test]
fn both_cpus_charging_one_cgroup_at_its_limit() {
    let m = machine();
    let cg = m.memcg().create("/contended").unwrap();
    m.memcg()
        .write_file("/contended", "memory.max", "4M")
        .unwrap(); // 1024 pages
    let got = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..2u16 {
            let (m, got) = (&m, &got);
            s.spawn(move || {
                let ctx = AllocContext {
                    cgroup: Some(cg),
                    cpu: Some(cpu),
                    ..Default::default()
                };
                let mut held = Vec::new();
                for _ in 0..2000 {
                    if let Ok(b) = m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 0, &ctx) {
                        held.push(b.pfn);
                    }
                }
                got.fetch_add(held.len() as u64, std::sync::atomic::Ordering::Relaxed);
                held
            });
        }
    });
    let c = m.memcg().get(cg).unwrap();
    assert_eq!(
        got.load(std::sync::atomic::Ordering::Relaxed),
        1024,
        "exactly the limit, no charge lost"
    );
    assert_eq!(c.usage_pages(), 1024);
}

#[test]
fn kmalloc_cg_objects_are_charged_byte_precisely() {
    let m = machine();
    let cg = m.memcg().create("/tenant").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let objs: Vec<u64> = (0..1000)
        .map(|_| {
            let o = m.kmalloc(64, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap();
            assert_eq!(m.cache_name(o.cache.unwrap()), "kmalloc-cg-64");
            o.addr
        })
        .collect();
    // Each object costs its 64-byte slot plus the 8-byte object-cgroup pointer; pages
    // are charged as the CPU's byte stock runs dry: ceil(72000 / 4096) = 18 pages.
    assert_eq!(exact(&m, "/tenant"), "73728\n");
    let stat = m.memcg().read_file("/tenant", "memory.stat").unwrap();
    assert!(stat.contains("\nslab_unreclaimable 72000\n"), "{stat}");
    assert!(stat.contains("\nkernel 72000\n"), "{stat}");
    // Plain GFP_KERNEL from the same cgroup is not charged.
    let plain = m.kmalloc(64, Gfp::GFP_KERNEL, &ctx).unwrap();
    assert_eq!(exact(&m, "/tenant"), "73728\n");
    m.kfree(plain.addr, &ctx).unwrap();
    // Freed from another CPU and context: the charge returns to /tenant.
    for a in objs {
        m.kfree(a, &AllocContext::on_cpu(1)).unwrap();
    }
    assert!(m
        .memcg()
        .read_file("/tenant", "memory.stat")
        .unwrap()
        .contains("\nslab_unreclaimable 0\n"));
    let cur: u64 = exact(&m, "/tenant").trim().parse().unwrap();
    assert!(
        cur <= 4096,
        "at most the object stock's page stays charged: {cur}"
    );
}

/// Allocated and freed on one CPU, accounted objects take the fast paths (the charge
/// and the uncharge happen under the CPU's lock): the counts match the general path's,
/// and the checker agrees after every phase.
#[test]
fn accounted_fast_path_charges_and_uncharges_exactly() {
    let m = machine();
    let cg = m.memcg().create("/fast").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let before = m
        .cache_info(m.kmalloc_cache(64, Gfp::GFP_KERNEL_ACCOUNT).unwrap())
        .unwrap();
    let objs: Vec<u64> = (0..1000)
        .map(|_| m.kmalloc(64, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap().addr)
        .collect();
    assert_eq!(
        exact(&m, "/fast"),
        "73728
"
    );
    m.check_memcg().unwrap();
    for &a in objs.iter().rev() {
        m.kfree(a, &ctx).unwrap();
    }
    let after = m
        .cache_info(m.kmalloc_cache(64, Gfp::GFP_KERNEL_ACCOUNT).unwrap())
        .unwrap();
    assert!(
        after.free_fastpath > before.free_fastpath,
        "frees on the allocating CPU took the fast path"
    );
    let stat = m.memcg().read_file("/fast", "memory.stat").unwrap();
    assert!(stat.contains("\nslab_unreclaimable 0\n"), "{stat}");
    let cur: u64 = exact(&m, "/fast").trim().parse().unwrap();
    assert!(
        cur <= 4096,
        "at most the object stock's page stays charged: {cur}"
    );
    m.check_memcg().unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn slab_account_caches_and_limits() {
    let m = machine();
    let cg = m.memcg().create("/lim").unwrap();
    m.memcg().write_file("/lim", "memory.max", "8K").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let c = m
        .kmem_cache_create("acct_cache", 1000, 0, kmem_allocator::SlabFlags::ACCOUNT)
        .unwrap();
    let mut held = Vec::new();
    let err = loop {
        match m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx) {
            Ok(a) => held.push(a),
            Err(e) => break e,
        }
    };
    assert_eq!(err.reason(), "CGROUP_LIMIT_EXCEEDED", "{err}");
    // 2 pages of charge hold 8192 / (slot + 8) objects.
    let slot = m.cache_info(c).unwrap().slab_size as u64;
    assert_eq!(held.len() as u64, 8192 / (slot + 8));
    m.check_invariants().unwrap();
    for a in held {
        m.kmem_cache_free(c, a, &ctx).unwrap();
    }
    m.kmem_cache_destroy(c).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn large_kmalloc_with_account_charges_pages() {
    let m = machine();
    let cg = m.memcg().create("/big").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let o = m.kmalloc(100_000, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap();
    assert_eq!(exact(&m, "/big"), "131072\n");
    m.kfree(o.addr, &AllocContext::on_cpu(1)).unwrap();
    assert_eq!(exact(&m, "/big"), "0\n");
}

#[test]
fn accounted_vmalloc_charges_its_pages() {
    let m = machine();
    let cg = m.memcg().create("/v").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let a = m
        .__vmalloc(10 * 4096, Gfp::GFP_KERNEL_ACCOUNT, &ctx)
        .unwrap();
    assert_eq!(exact(&m, "/v"), "40960\n");
    assert!(m
        .memcg()
        .read_file("/v", "memory.stat")
        .unwrap()
        .contains("\nvmalloc 40960\n"));
    let k = m.kvmalloc(1 << 23, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap();
    assert_eq!(k.backend, kmem_allocator::Backend::Vmalloc);
    m.memcg().write_file("/v", "memory.max", "100K").unwrap();
    let e = m
        .__vmalloc(1 << 20, Gfp::GFP_KERNEL_ACCOUNT, &ctx)
        .unwrap_err();
    assert_eq!(e.reason(), "CGROUP_LIMIT_EXCEEDED");
    m.vfree(a).unwrap();
    m.kvfree(k.addr, &ctx).unwrap();
    assert_eq!(exact(&m, "/v"), "0\n");
    m.check_fully_merged().unwrap();
}

/// Four host threads share two simulated CPUs (so they take turns on each CPU's lock)
/// and charge two cgroups through accounted kmallocs; half of every thread's objects
/// are freed by another thread on the other CPU. Afterwards nothing is charged, every
/// stat is zero and the checkers agree: no charge, stock byte or owner record is lost.
#[test]
fn threads_sharing_cpus_charge_and_uncharge_exactly() {
    let m = machine();
    let cgs = [
        m.memcg().create("/s0").unwrap(),
        m.memcg().create("/s1").unwrap(),
    ];
    let handed: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (m, handed) = (&m, &handed);
            s.spawn(move || {
                let ctx = AllocContext {
                    cgroup: Some(cgs[t as usize % 2]),
                    cpu: Some(t % 2),
                    ..Default::default()
                };
                let mut mine = Vec::new();
                for i in 0..20_000u64 {
                    let size = [64, 192, 8, 1024][(i % 4) as usize];
                    mine.push(m.kmalloc(size, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap().addr);
                    if mine.len() > 64 {
                        m.kfree(mine.swap_remove((i % 64) as usize), &ctx).unwrap();
                    }
                }
                let (keep, give) = mine.split_at(mine.len() / 2);
                handed.lock().unwrap().extend_from_slice(give);
                for &a in keep {
                    m.kfree(a, &ctx).unwrap();
                }
            });
        }
    });
    // The other halves, freed on the other CPU from this thread.
    for a in handed.into_inner().unwrap() {
        m.kfree(a, &AllocContext::on_cpu(1)).unwrap();
    }
    m.check_memcg().unwrap();
    m.check_invariants().unwrap();
    // Object stocks keep up to a page charged per CPU; drained, nothing may remain.
    m.drain_memcg_stocks();
    for p in ["/s0", "/s1"] {
        let stat = m.memcg().read_file(p, "memory.stat").unwrap();
        assert!(stat.contains("\nslab_unreclaimable 0\n"), "{p}: {stat}");
        assert_eq!(exact(&m, p), "0\n", "{p}: every charge came back");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Pages { cg: usize, order: u8, nofail: bool },
        Kmalloc { cg: usize, size: u64 },
        Vmalloc { cg: usize, pages: u64 },
        Free { pick: usize, cpu: u16 },
        Limit { cg: usize, kib: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0usize..3, 0u8..4, proptest::bool::weighted(0.1)).prop_map(|(cg, order, nofail)| Op::Pages { cg, order, nofail }),
            4 => (0usize..3, 1u64..3000).prop_map(|(cg, size)| Op::Kmalloc { cg, size }),
            1 => (0usize..3, 1u64..40).prop_map(|(cg, pages)| Op::Vmalloc { cg, pages }),
            4 => (any::<usize>(), 0u16..2).prop_map(|(pick, cpu)| Op::Free { pick, cpu }),
            1 => (0usize..3, 0u64..600).prop_map(|(cg, kib)| Op::Limit { cg, kib }),
        ]
    }

    enum Held {
        Pages(u64, u8),
        Obj(u64),
        Vm(u64),
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: soak_cases(32), ..ProptestConfig::default() })]

        #[test]
        fn charges_always_add_up_and_limits_hold(ops in proptest::collection::vec(op(), 1..120)) {
            let m = Machine::boot(MachineConfig::bare(ByteSize::mib(256))).unwrap();
            let paths = ["/a", "/a/b", "/c"];
            let ids: Vec<_> = paths.iter().map(|p| m.memcg().create(p).unwrap()).collect();
            let mut held: Vec<Held> = Vec::new();
            for op in ops {
                match op {
                    Op::Pages { cg, order, nofail } => {
                        let ctx = AllocContext { cgroup: Some(ids[cg]), cpu: Some(0), ..Default::default() };
                        let g = if nofail { Gfp::GFP_KERNEL_ACCOUNT | Gfp::NOFAIL } else { Gfp::GFP_KERNEL_ACCOUNT };
                        if let Ok(b) = m.alloc_pages(g, order, &ctx) { held.push(Held::Pages(b.pfn, order)) }
                    }
                    Op::Kmalloc { cg, size } => {
                        let ctx = AllocContext { cgroup: Some(ids[cg]), cpu: Some(1), ..Default::default() };
                        if let Ok(o) = m.kmalloc(size, Gfp::GFP_KERNEL_ACCOUNT, &ctx) { held.push(Held::Obj(o.addr)) }
                    }
                    Op::Vmalloc { cg, pages } => {
                        let ctx = AllocContext { cgroup: Some(ids[cg]), cpu: Some(0), ..Default::default() };
                        if let Ok(a) = m.__vmalloc(pages * 4096, Gfp::GFP_KERNEL_ACCOUNT, &ctx) { held.push(Held::Vm(a)) }
                    }
                    Op::Free { pick, cpu } if !held.is_empty() => {
                        let ctx = AllocContext::on_cpu(cpu);
                        match held.swap_remove(pick % held.len()) {
                            Held::Pages(p, o) => m.free_pages_on(p, o, &ctx).unwrap(),
                            Held::Obj(a) => m.kfree(a, &ctx).unwrap(),
                            Held::Vm(a) => m.vfree(a).unwrap(),
                        }
                    }
                    Op::Limit { cg, kib } => m.memcg().write_file(paths[cg], "memory.max", &format!("{kib}K")).unwrap(),
                    _ => {}
                }
                if let Err(e) = m.check_invariants() {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }
}

fn stat(m: &Machine, path: &str, key: &str) -> u64 {
    let text = m.memcg().read_file(path, "memory.stat").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn rmdir_reparents_charges_to_the_parent() {
    let m = machine();
    m.memcg().create("/p").unwrap();
    let a = m.memcg().create("/p/a").unwrap();
    let ctx = AllocContext {
        cgroup: Some(a),
        cpu: Some(0),
        ..Default::default()
    };
    let pages = m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 2, &ctx).unwrap();
    let objs: Vec<_> = (0..10)
        .map(|_| m.kmalloc(512, Gfp::GFP_KERNEL_ACCOUNT, &ctx).unwrap())
        .collect();
    let current = exact(&m, "/p");
    let kernel = stat(&m, "/p", "kernel");
    let slab = stat(&m, "/p", "slab");
    assert!(kernel >= 16384 + 5120, "{kernel}");

    m.memcg_rmdir("/p/a").unwrap();
    assert!(m.memcg().lookup("/p/a").is_err(), "gone by name");
    m.check_invariants().unwrap();
    assert_eq!(exact(&m, "/p"), current, "the parent's usage is unchanged");
    assert_eq!(
        stat(&m, "/p", "kernel"),
        kernel,
        "nothing lost from memory.stat"
    );
    assert_eq!(stat(&m, "/p", "slab"), slab);

    // Recreated by name: a new, empty cgroup.
    m.memcg().create("/p/a").unwrap();
    assert_eq!(exact(&m, "/p/a"), "0\n");
    assert_eq!(stat(&m, "/p/a", "kernel"), 0);

    // Whoever frees the reparented memory uncharges the parent.
    m.free_pages_on(pages.pfn, 2, &AllocContext::on_cpu(1))
        .unwrap();
    for o in objs {
        m.kfree(o.addr, &AllocContext::on_cpu(1)).unwrap();
    }
    m.flush_and_shrink_all_caches();
    assert_eq!(stat(&m, "/p", "kernel"), 0);
    assert_eq!(stat(&m, "/p", "slab"), 0);
    assert_eq!(exact(&m, "/p"), "0\n");
    assert_eq!(exact(&m, "/p/a"), "0\n", "the new /p/a was never charged");
    m.check_invariants().unwrap();
}

#[test]
fn memory_high_throttle_is_reported_to_the_caller() {
    let m = machine();
    let cg = m.memcg().create("/hot").unwrap();
    m.memcg().write_file("/hot", "memory.high", "1M").unwrap();
    let report = std::sync::Arc::new(kmem_allocator::ChargeReport::default());
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        charge_report: Some(report.clone()),
        ..Default::default()
    };
    // Under memory.high: no throttle.
    let small = m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 4, &ctx).unwrap();
    assert_eq!(report.high_delay_ms(), 0);
    // Well over it: the allocations succeed, with a penalty that grows with the
    // overage and never exceeds the kernel's 2 s cap.
    let mut held = vec![small];
    let mut last = 0;
    for _ in 0..12 {
        held.push(m.alloc_pages(Gfp::GFP_KERNEL_ACCOUNT, 9, &ctx).unwrap());
        let d = report.high_delay_ms();
        assert!(d >= last);
        last = d;
    }
    assert!(last > 0, "over memory.high the kernel throttles");
    assert!(last <= kmem_allocator::ChargeReport::MAX_DELAY_MS);
    assert!(m.memcg().get(cg).unwrap().event(MemcgEvent::High) > 0);
    assert_eq!(report.forced(), 0);
    for b in held {
        m.free_pages(b.pfn, b.order).unwrap();
    }
}
