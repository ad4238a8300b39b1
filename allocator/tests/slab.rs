//! Slab caches and the kmalloc family as a user of the machine sees them.

mod common;
use common::soak_cases;

use kmem_allocator::slab::{PAGE_OFFSET, ZERO_SIZE_PTR};
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig, SlabError, SlabFlags};
use proptest::prelude::*;

fn machine() -> Machine {
    Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap()
}

fn ctx() -> AllocContext {
    AllocContext::on_cpu(0)
}

fn ok(m: &Machine) {
    if let Err(e) = m.check_invariants() {
        panic!("invariants broken:\n{e}");
    }
}

#[test]
fn kmalloc_picks_the_kernel_size_class() {
    let m = machine();
    for (size, cache) in [
        (1, "kmalloc-8"),
        (9, "kmalloc-16"),
        (72, "kmalloc-96"),
        (97, "kmalloc-128"),
        (136, "kmalloc-192"),
        (193, "kmalloc-256"),
        (1000, "kmalloc-1k"),
        (8192, "kmalloc-8k"),
    ] {
        let o = m.kmalloc(size, Gfp::GFP_KERNEL, &ctx()).unwrap();
        assert_eq!(
            o.cache.map(|c| m.cache_name(c)),
            Some(cache),
            "kmalloc({size})"
        );
        assert_eq!(m.ksize(o.addr).unwrap(), o.ksize);
        assert!(o.addr >= PAGE_OFFSET);
        // Power-of-two classes are naturally aligned, all at least to 8.
        assert_eq!(
            o.addr % (o.ksize & o.ksize.wrapping_neg()).min(4096),
            0,
            "{cache}"
        );
        m.kfree(o.addr, &ctx()).unwrap();
    }
    let big = m.kmalloc(8193, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!((big.cache, big.order, big.ksize), (None, Some(2), 16384));
    ok(&m);
    m.kfree(big.addr, &ctx()).unwrap();
    assert!(m.kmalloc(4 << 20, Gfp::GFP_KERNEL, &ctx()).is_ok());
    let e = m
        .kmalloc((4 << 20) + 1, Gfp::GFP_KERNEL, &ctx())
        .unwrap_err();
    assert_eq!(e.reason(), "SIZE_TOO_LARGE");
    let z = m.kmalloc(0, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(z.addr, ZERO_SIZE_PTR);
    m.kfree(ZERO_SIZE_PTR, &ctx()).unwrap();
    m.kfree(0, &ctx()).unwrap();
    assert!(
        m.kmalloc_array(u64::MAX / 2, 4, Gfp::GFP_KERNEL, &ctx())
            .is_err(),
        "overflow fails, never wraps"
    );
}

#[test]
fn kmalloc_types_follow_the_flags() {
    let m = machine();
    let name = |g: Gfp| {
        m.cache_name(m.kmalloc(64, g, &ctx()).unwrap().cache.unwrap())
            .to_string()
    };
    assert_eq!(name(Gfp::GFP_KERNEL), "kmalloc-64");
    assert_eq!(name(Gfp::GFP_KERNEL_ACCOUNT), "kmalloc-cg-64");
    assert_eq!(name(Gfp::GFP_KERNEL | Gfp::RECLAIMABLE), "kmalloc-rcl-64");
    assert_eq!(name(Gfp::GFP_KERNEL | Gfp::DMA), "dma-kmalloc-64");
    let d = m.kmalloc(64, Gfp::GFP_KERNEL | Gfp::DMA, &ctx()).unwrap();
    assert!(
        d.addr - PAGE_OFFSET < 16 << 20,
        "dma-kmalloc objects live in ZONE_DMA"
    );
    // DMA32 has no kmalloc caches: stripped with the kernel's warning.
    assert_eq!(name(Gfp::GFP_KERNEL | Gfp::DMA32), "kmalloc-64");
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("Unexpected gfp: 0x4 (GFP_DMA32)") && l.contains("Fix your code!")));
    ok(&m);
}

#[test]
fn frees_are_checked() {
    let m = machine();
    let a = m.kmalloc(100, Gfp::GFP_KERNEL, &ctx()).unwrap().addr;
    let e = m.kfree(a + 8, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "INVALID_FREE", "{e}");
    let foo = m
        .kmem_cache_create("foo", 100, 0, SlabFlags::NO_MERGE)
        .unwrap();
    let e = m.kmem_cache_free(foo, a, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "WRONG_CACHE", "{e}");
    m.kfree(a, &ctx()).unwrap();
    let e = m.kfree(a, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "DOUBLE_FREE", "{e}");
    // Double free from another CPU, and of an object on a non-active slab.
    let b = m.kmalloc(100, Gfp::GFP_KERNEL, &ctx()).unwrap().addr;
    m.kfree(b, &AllocContext::on_cpu(1)).unwrap();
    assert_eq!(m.kfree(b, &ctx()).unwrap_err().reason(), "DOUBLE_FREE");
    assert_eq!(
        m.kfree(b, &AllocContext::on_cpu(1)).unwrap_err().reason(),
        "DOUBLE_FREE"
    );
    // Page-allocator memory is not kmalloc memory, and slab pages are not pages.
    let p = m.alloc_pages(Gfp::GFP_KERNEL, 0, &ctx()).unwrap();
    assert_eq!(
        m.kfree(PAGE_OFFSET + p.phys_addr(), &ctx())
            .unwrap_err()
            .reason(),
        "INVALID_FREE"
    );
    let slab_pfn = (b - PAGE_OFFSET) / 4096;
    let (head, _) = m.block_containing(slab_pfn).unwrap();
    assert_eq!(
        m.free_pages(head, 0).unwrap_err().reason(),
        "NOT_A_PAGE_ALLOCATION"
    );
    assert_eq!(m.kfree(12345, &ctx()).unwrap_err().reason(), "INVALID_FREE");
    ok(&m);
    m.free_pages(p.pfn, 0).unwrap();
    m.kmem_cache_destroy(foo).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn caches_merge_by_the_kernel_rules() {
    let m = machine();
    // kmalloc caches whitelist their whole object for usercopy, and with
    // HARDENED_USERCOPY a cache with a usercopy region is never merged into.
    let a = m
        .kmem_cache_create("acct_obj", 60, 0, SlabFlags::ACCOUNT)
        .unwrap();
    assert_ne!(a, m.find_cache("kmalloc-cg-64").unwrap());
    // A second SLAB_ACCOUNT cache of a size within 8 bytes merges into the first.
    let a2 = m
        .kmem_cache_create("acct_obj2", 64, 0, SlabFlags::ACCOUNT)
        .unwrap();
    assert_eq!(a2, a);
    assert_eq!(
        m.cache_info(a).unwrap().aliases,
        vec!["acct_obj2".to_string()]
    );
    assert!(
        !m.slabinfo().contains("acct_obj2"),
        "slabinfo shows only the original"
    );
    assert_eq!(m.find_cache("acct_obj2"), Some(a));
    // Accounting must match to merge.
    let f = m.kmem_cache_create("foo", 60, 0, SlabFlags::NONE).unwrap();
    assert_ne!(f, a);
    assert_eq!(
        m.kmem_cache_create("bar", 60, 0, SlabFlags::NONE).unwrap(),
        f
    );
    assert_ne!(
        m.kmem_cache_create("baz", 56, 0, SlabFlags::NONE).unwrap(),
        f,
        "8 bytes smaller does not merge"
    );
    assert_ne!(
        m.kmem_cache_create("p", 60, 0, SlabFlags::POISON).unwrap(),
        f,
        "debug caches never merge"
    );
    assert_ne!(
        m.kmem_cache_create_usercopy("u", 60, 0, SlabFlags::NONE, 0, 16)
            .unwrap(),
        f,
        "usercopy caches never merge"
    );
    // Same name twice is allowed.
    assert!(m
        .kmem_cache_create("foo", 300, 0, SlabFlags::NO_MERGE)
        .is_ok());
    // Destroying an alias drops a reference; the cache stays.
    m.kmem_cache_destroy(f).unwrap();
    assert!(m.slabinfo().contains("\nfoo "));
    m.kmem_cache_destroy(f).unwrap();
    assert!(m.kmem_cache_destroy(f).is_err());
    assert_eq!(
        SlabFlags::parse("HWCACHE_ALIGN|SLAB_ACCOUNT").unwrap(),
        SlabFlags::HWCACHE_ALIGN.with(SlabFlags::ACCOUNT)
    );
    assert_eq!(
        SlabFlags::parse("SLAB_BOGUS").unwrap_err().reason(),
        "INVALID_SLAB_FLAGS"
    );
    assert!(m.kmem_cache_create("bad", 0, 0, SlabFlags::NONE).is_err());
    assert!(m.kmem_cache_create("bad", 64, 3, SlabFlags::NONE).is_err());
}

#[test]
fn destroy_with_live_objects_is_refused_and_reported() {
    let m = machine();
    let c = m
        .kmem_cache_create("leaky", 200, 0, SlabFlags::HWCACHE_ALIGN)
        .unwrap();
    let info = m.cache_info(c).unwrap();
    assert_eq!(info.align, 64);
    assert_eq!(info.slab_size, 256);
    let objs: Vec<u64> = (0..3)
        .map(|_| m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap())
        .collect();
    let e = m.kmem_cache_destroy(c).unwrap_err();
    assert!(matches!(e, SlabError::CacheBusy { objects: 3, .. }), "{e}");
    assert_eq!(
        m.dmesg()
            .iter()
            .filter(|l| l.contains("remaining on __kmem_cache_shutdown()"))
            .count(),
        3
    );
    assert!(m.slabinfo().contains("\nleaky "), "the cache stays listed");
    for a in objs {
        m.kmem_cache_free(c, a, &ctx()).unwrap();
    }
    m.kmem_cache_destroy(c).unwrap();
    assert!(!m.slabinfo().contains("leaky"));
    assert_eq!(
        m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx())
            .unwrap_err()
            .reason(),
        "CACHE_DESTROYED"
    );
    m.check_fully_merged().unwrap();
}

#[test]
fn usercopy_windows() {
    let m = machine();
    let o = m.kmalloc(100, Gfp::GFP_KERNEL, &ctx()).unwrap();
    m.copy_from_user(o.addr, &[7; 128]).unwrap();
    assert_eq!(m.copy_to_user(o.addr + 120, 8).unwrap(), vec![7; 8]);
    let e = m.copy_to_user(o.addr + 120, 9).unwrap_err();
    assert_eq!(e.reason(), "USERCOPY_VIOLATION");
    assert!(e.to_string().contains("kmalloc-128"), "{e}");
    let w = m
        .kmem_cache_create_usercopy("win", 64, 0, SlabFlags::NONE, 16, 16)
        .unwrap();
    let a = m.kmem_cache_alloc(w, Gfp::GFP_KERNEL, &ctx()).unwrap();
    m.copy_from_user(a + 16, &[1; 16]).unwrap();
    assert!(m.copy_from_user(a + 8, &[1; 8]).is_err());
    assert!(m.copy_from_user(a + 24, &[1; 16]).is_err());
    let none = m
        .kmem_cache_create("nocopy", 64, 0, SlabFlags::NO_MERGE)
        .unwrap();
    let b = m.kmem_cache_alloc(none, Gfp::GFP_KERNEL, &ctx()).unwrap();
    let e = m.copy_to_user(b, 1).unwrap_err();
    assert!(e.to_string().contains("no usercopy window"), "{e}");
    let big = m.kmalloc(20_000, Gfp::GFP_KERNEL, &ctx()).unwrap();
    m.copy_from_user(big.addr + 20_000, &[3; 12_768]).unwrap();
    assert!(m.copy_from_user(big.addr + 20_000, &[3; 12_769]).is_err());
    ok(&m);
}

#[test]
fn zeroing_stale_bytes_and_krealloc() {
    let m = machine();
    let a = m.kmalloc(64, Gfp::GFP_KERNEL, &ctx()).unwrap().addr;
    m.copy_from_user(a, b"stale!").unwrap();
    m.kfree(a, &ctx()).unwrap();
    let b = m.kmalloc(64, Gfp::GFP_KERNEL, &ctx()).unwrap().addr;
    assert_eq!(b, a, "LIFO reuse on the same CPU");
    assert_eq!(&m.copy_to_user(b, 6).unwrap(), b"stale!");
    m.kfree(b, &ctx()).unwrap();
    let z = m.kzalloc(64, Gfp::GFP_KERNEL, &ctx()).unwrap().addr;
    assert_eq!(z, a);
    assert_eq!(m.copy_to_user(z, 6).unwrap(), vec![0; 6]);
    // krealloc: shrink reuses, grow moves and copies, 0 frees.
    m.copy_from_user(z, b"hello").unwrap();
    let s = m.krealloc(z, 10, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(s.addr, z);
    let g = m.krealloc(z, 500, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(g.cache.map(|c| m.cache_name(c)), Some("kmalloc-512"));
    assert_eq!(&m.copy_to_user(g.addr, 5).unwrap(), b"hello");
    assert_eq!(
        m.kfree(z, &ctx()).unwrap_err().reason(),
        "DOUBLE_FREE",
        "the old object was freed"
    );
    let zero = m.krealloc(g.addr, 0, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(zero.addr, ZERO_SIZE_PTR);
    // kfree_sensitive wipes.
    let k = m.kmemdup(b"key material", Gfp::GFP_KERNEL, &ctx()).unwrap();
    m.kfree_sensitive(k.addr, &ctx()).unwrap();
    let again = m.kmalloc(12, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(again.addr, k.addr);
    assert_eq!(m.copy_to_user(again.addr, 12).unwrap(), vec![0; 12]);
    let c = m.kcalloc(4, 100, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(c.cache.map(|c| m.cache_name(c)), Some("kmalloc-512"));
    ok(&m);
}

#[test]
fn slab_pages_are_accounted_and_returned() {
    let m = machine();
    let before = m.proc_file("meminfo").unwrap();
    assert!(
        before.contains("\nSlab:                  0 kB\n"),
        "{before}"
    );
    let rcl: Vec<u64> = (0..1000)
        .map(|_| {
            m.kmalloc(192, Gfp::GFP_KERNEL | Gfp::RECLAIMABLE, &ctx())
                .unwrap()
                .addr
        })
        .collect();
    let un: Vec<u64> = (0..1000)
        .map(|_| m.kmalloc(512, Gfp::GFP_KERNEL, &ctx()).unwrap().addr)
        .collect();
    let (r, u) = m.slab_pages();
    assert_eq!(
        r,
        1000u64.div_ceil(21),
        "21 objects per kmalloc-rcl-192 slab"
    );
    assert_eq!(
        u,
        1000u64.div_ceil(16) * 2,
        "16 objects per order-1 kmalloc-512 slab"
    );
    let mi = m.proc_file("meminfo").unwrap();
    assert!(
        mi.contains(&format!("SReclaimable:   {:>8} kB\n", r * 4)),
        "{mi}"
    );
    let vm = m.proc_file("vmstat").unwrap();
    assert!(vm.contains(&format!("\nnr_slab_reclaimable {r}\n")));
    let si = m.slabinfo();
    let row = si.lines().find(|l| l.starts_with("kmalloc-512 ")).unwrap();
    assert!(
        row.contains("   512   16    2 : tunables    0    0    0 : slabdata "),
        "{row}"
    );
    ok(&m);
    for a in rcl.into_iter().chain(un) {
        m.kfree(a, &AllocContext::on_cpu(1)).unwrap();
    }
    ok(&m);
    m.check_fully_merged().unwrap();
    assert_eq!(m.slab_pages(), (0, 0));
}

#[test]
fn typesafe_by_rcu_slabs_wait_for_a_grace_period() {
    let m = machine();
    let c = m
        .kmem_cache_create("rcu_obj", 1000, 0, SlabFlags::TYPESAFE_BY_RCU)
        .unwrap();
    let objs: Vec<u64> = (0..100)
        .map(|_| m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap())
        .collect();
    let pages = m.slab_pages().1;
    for a in objs {
        m.kmem_cache_free(c, a, &ctx()).unwrap();
    }
    m.kmem_cache_shrink(c).unwrap();
    assert_eq!(
        m.slab_pages().1,
        pages,
        "slab pages stay until the grace period ends"
    );
    assert!(m.rcu_barrier() > 0);
    ok(&m);
    m.check_fully_merged().unwrap();
}

#[test]
fn slabinfo_matches_the_kernel_format() {
    let m = machine();
    let text = m.slabinfo();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert_eq!(
        lines.next(),
        Some("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>")
    );
    // The kernel's creation order, newest first: cg, dma, rcl, then plain; 96 and 192
    // after 8k within each type.
    let names: Vec<&str> = lines.map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        &names[..3],
        &["kmalloc-cg-8k", "kmalloc-cg-4k", "kmalloc-cg-2k"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        &["kmalloc-8", "kmalloc-192", "kmalloc-96"]
    );
    assert_eq!(names.len(), 52);
    let row = text.lines().find(|l| l.starts_with("kmalloc-96 ")).unwrap();
    assert_eq!(row, "kmalloc-96             0      0     96   42    1 : tunables    0    0    0 : slabdata      0      0      0");
}

#[derive(Clone, Debug)]
enum Op {
    /// `pinned`: through a `PinnedCpu` taken for this one call.
    Kmalloc {
        size: u64,
        gfp: usize,
        cpu: u16,
        pinned: bool,
    },
    Kfree {
        pick: usize,
        cpu: u16,
        pinned: bool,
    },
    Krealloc {
        pick: usize,
        size: u64,
    },
    CacheAlloc {
        cache: usize,
        cpu: u16,
    },
    Shrink,
    DoubleFree {
        pick: usize,
        pinned: bool,
    },
}

const GFPS: &[Gfp] = &[
    Gfp::GFP_KERNEL,
    Gfp::GFP_KERNEL_ACCOUNT,
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::RECLAIMABLE.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::DMA.0),
    Gfp::GFP_ATOMIC,
];

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![6 => 0u64..=256, 3 => 257u64..=8192, 1 => 8193u64..=70_000];
    prop_oneof![
        8 => (size, 0..GFPS.len(), 0u16..2, any::<bool>())
            .prop_map(|(size, gfp, cpu, pinned)| Op::Kmalloc { size, gfp, cpu, pinned }),
        6 => (any::<usize>(), 0u16..2, any::<bool>())
            .prop_map(|(pick, cpu, pinned)| Op::Kfree { pick, cpu, pinned }),
        2 => (any::<usize>(), 0u64..3000).prop_map(|(pick, size)| Op::Krealloc { pick, size }),
        3 => (0usize..3, 0u16..2).prop_map(|(cache, cpu)| Op::CacheAlloc { cache, cpu }),
        1 => Just(Op::Shrink),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, pinned)| Op::DoubleFree { pick, pinned }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: soak_cases(64), ..ProptestConfig::default() })]

    #[test]
    fn random_slab_sequences_keep_every_object_accounted(ops in prop::collection::vec(op(), 1..200)) {
        let m = Machine::boot(MachineConfig { cpus: 2, ..MachineConfig::bare(ByteSize::mib(256)) }).unwrap();
        let caches = [
            m.kmem_cache_create("a", 24, 0, SlabFlags::NO_MERGE).unwrap(),
            m.kmem_cache_create("b", 700, 0, SlabFlags::HWCACHE_ALIGN.with(SlabFlags::NO_MERGE)).unwrap(),
            m.kmem_cache_create("c", 3000, 0, SlabFlags::RECLAIM_ACCOUNT.with(SlabFlags::NO_MERGE)).unwrap(),
        ];
        let mut live: Vec<(u64, Option<usize>)> = Vec::new();
        let mut freed: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Kmalloc { size, gfp, cpu, pinned } => {
                    let c = AllocContext::on_cpu(cpu);
                    let o = if pinned {
                        m.pin_cpu(&c).unwrap().kmalloc(size, GFPS[gfp]).unwrap()
                    } else {
                        m.kmalloc(size, GFPS[gfp], &c).unwrap()
                    };
                    prop_assert!(o.ksize >= size);
                    if o.addr != ZERO_SIZE_PTR {
                        prop_assert!(!live.iter().any(|l| l.0 == o.addr), "handed out twice");
                        live.push((o.addr, None));
                    }
                }
                Op::Kfree { pick, cpu, pinned } if !live.is_empty() => {
                    let (a, c) = live.swap_remove(pick % live.len());
                    match c {
                        Some(k) => m.kmem_cache_free(caches[k], a, &AllocContext::on_cpu(cpu)).unwrap(),
                        None if pinned => m.pin_cpu(&AllocContext::on_cpu(cpu)).unwrap().kfree(a).unwrap(),
                        None => m.kfree(a, &AllocContext::on_cpu(cpu)).unwrap(),
                    }
                    freed.push(a);
                }
                Op::Krealloc { pick, size } if !live.is_empty() => {
                    let i = pick % live.len();
                    if live[i].1.is_none() {
                        let (a, _) = live.swap_remove(i);
                        let o = m.krealloc(a, size, Gfp::GFP_KERNEL, &ctx()).unwrap();
                        if o.addr != ZERO_SIZE_PTR {
                            live.push((o.addr, None));
                        }
                    }
                }
                Op::CacheAlloc { cache, cpu } => {
                    let a = m.kmem_cache_alloc(caches[cache], Gfp::GFP_KERNEL, &AllocContext::on_cpu(cpu)).unwrap();
                    live.push((a, Some(cache)));
                }
                Op::Shrink => {
                    for c in caches {
                        m.kmem_cache_shrink(c).unwrap();
                    }
                }
                Op::DoubleFree { pick, pinned } if !freed.is_empty() => {
                    let a = freed[pick % freed.len()];
                    if !live.iter().any(|l| l.0 == a) {
                        let r = if pinned {
                            m.pin_cpu(&ctx()).unwrap().kfree(a)
                        } else {
                            m.kfree(a, &ctx())
                        };
                        prop_assert!(r.is_err());
                    }
                }
                _ => {}
            }
            if let Err(e) = m.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
        for (a, c) in live {
            match c {
                Some(k) => m.kmem_cache_free(caches[k], a, &ctx()).unwrap(),
                None => m.kfree(a, &ctx()).unwrap(),
            }
        }
        m.check_fully_merged().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn two_threads_share_caches_without_losing_objects() {
    let m = Machine::boot(MachineConfig {
        cpus: 2,
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .unwrap();
    let handoff = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..2u16 {
            let (m, handoff) = (&m, &handoff);
            s.spawn(move || {
                let c = AllocContext::on_cpu(t);
                let mut live = Vec::new();
                let mut r = 0x1234_5678u64 + t as u64;
                for _ in 0..30_000 {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    if r % 5 < 3 || live.is_empty() {
                        live.push(m.kmalloc(8 + r % 1024, Gfp::GFP_KERNEL, &c).unwrap().addr);
                    } else {
                        let a = live.swap_remove((r >> 8) as usize % live.len());
                        if r & 64 != 0 {
                            handoff.lock().unwrap().push(a);
                        } else {
                            m.kfree(a, &c).unwrap();
                        }
                    }
                    if r % 11 == 0 {
                        let x = handoff.lock().unwrap().pop();
                        if let Some(a) = x {
                            m.kfree(a, &c).unwrap();
                        }
                    }
                }
                for a in live {
                    m.kfree(a, &c).unwrap();
                }
            });
        }
    });
    for a in handoff.into_inner().unwrap() {
        m.kfree(a, &ctx()).unwrap();
    }
    m.check_fully_merged().unwrap();
}

/// `kmalloc_node` / `kmem_cache_alloc_node` follow `node_match`: an object comes from
/// the named node even when the CPU's slab (on another node) has free objects; that
/// slab is deactivated, and a request without a node then uses the new CPU slab.
#[test]
fn allocations_on_a_named_node_come_from_that_node() {
    let m = Machine::boot(MachineConfig {
        nodes: 2,
        cpus: 2,
        ..MachineConfig::bare(ByteSize::mib(512))
    })
    .unwrap();
    let c0 = AllocContext::on_cpu(0);
    let node_of = |a: u64| m.addr_info(a).expect("a direct-map address").node;
    let local = m.kmalloc(64, Gfp::GFP_KERNEL, &c0).unwrap();
    let here = node_of(local.addr);
    let there = 1 - here;
    let mut objs = vec![local.addr];
    for _ in 0..3 {
        let o = m.kmalloc_node(64, Gfp::GFP_KERNEL, there, &c0).unwrap();
        assert_eq!(node_of(o.addr), there, "kmalloc_node({there})");
        objs.push(o.addr);
        let p = m
            .pin_cpu(&AllocContext {
                node: Some(there),
                ..c0.clone()
            })
            .unwrap()
            .kmalloc(64, Gfp::GFP_KERNEL)
            .unwrap();
        assert_eq!(node_of(p.addr), there, "pinned kmalloc on node {there}");
        objs.push(p.addr);
    }
    let back = m.kmalloc_node(64, Gfp::GFP_KERNEL, here, &c0).unwrap();
    assert_eq!(node_of(back.addr), here);
    objs.push(back.addr);
    let info = m
        .caches_info()
        .into_iter()
        .find(|i| i.name == "kmalloc-64")
        .unwrap();
    assert_eq!(info.alloc_node_mismatch, 2, "there and back again");
    let cache = m
        .kmem_cache_create("numa_obj", 200, 0, SlabFlags::NO_MERGE)
        .unwrap();
    for node in [here, there, here] {
        let a = m
            .kmem_cache_alloc_node(cache, Gfp::GFP_KERNEL, node, &c0)
            .unwrap();
        assert_eq!(node_of(a), node, "kmem_cache_alloc_node({node})");
        m.kmem_cache_free(cache, a, &c0).unwrap();
    }
    for a in objs {
        m.kfree(a, &c0).unwrap();
    }
    m.check_slabs().unwrap();
    m.kmem_cache_destroy(cache).unwrap();
    m.check_fully_merged().unwrap();
}
