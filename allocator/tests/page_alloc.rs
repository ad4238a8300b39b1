//! Behaviour of the page allocator as a user of the machine sees it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmem_allocator::page::PAGEBLOCK_NR_PAGES;
use kmem_allocator::zone::Wmark;
use kmem_allocator::{
    AllocContext, AllocError, ByteSize, CancelToken, FreeError, Gfp, Machine, MachineConfig,
    MigrateType, Scope, ThpMode, ZoneType,
};

fn bare(mem: ByteSize) -> Machine {
    Machine::boot(MachineConfig::bare(mem)).unwrap()
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
fn default_machine_boots_with_kernel_numbers() {
    let m = Machine::boot(MachineConfig::default()).unwrap();
    // THP madvise, three populated zones ≤ Normal: khugepaged's 67584 kB.
    assert_eq!(m.sysctls().min_free_kbytes, 67_584);
    let normal = m.zone(0, ZoneType::Normal);
    let dma = m.zone(0, ZoneType::Dma);
    assert!(normal.populated() && dma.populated());
    assert!(!m.zone(0, ZoneType::Movable).populated());
    // min is the zone's managed share of min_free_kbytes/4.
    let lowmem: u64 = m
        .zones()
        .iter()
        .filter(|z| z.zt != ZoneType::Movable)
        .map(|z| z.managed)
        .sum();
    assert_eq!(normal.wmark(Wmark::Min), 16_896 * normal.managed / lowmem);
    // lowmem_reserve: DMA protects against DMA32+Normal users with ratio 256.
    let dma32 = m.zone(0, ZoneType::Dma32);
    assert_eq!(
        dma.lowmem_reserve(ZoneType::Normal.idx()),
        (dma32.managed + normal.managed) / 256
    );
    assert_eq!(
        dma32.lowmem_reserve(ZoneType::Normal.idx()),
        normal.managed / 256
    );
    assert_eq!(m.total_managed(), m.check_invariants().unwrap().free);
}

#[test]
fn thp_off_uses_the_sqrt_formula_and_user_value_sticks() {
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(16))
    };
    let m = Machine::boot(cfg).unwrap();
    let lowmem_kb = m.total_managed() * 4;
    assert_eq!(
        m.sysctls().min_free_kbytes,
        kmem_allocator::watermark::min_free_kbytes_for(lowmem_kb)
    );
    assert_eq!(m.sysctls().min_free_kbytes, 16_384);
    m.sysctl_set("vm.min_free_kbytes", "50000").unwrap();
    let n = m.zone(0, ZoneType::Normal);
    let before = n.wmark(Wmark::Min);
    assert!(before > 0);
    m.sysctl_set("vm.watermark_scale_factor", "100").unwrap();
    assert_eq!(m.sysctls().min_free_kbytes, 50_000, "a user value sticks");
    assert_eq!(n.wmark(Wmark::Min), before);
    assert_eq!(
        n.wmark(Wmark::Low) - n.wmark(Wmark::Min),
        n.managed * 100 / 10_000
    );
    assert!(m.sysctl_set("vm.watermark_scale_factor", "0").is_err());
    assert!(m
        .sysctl_set("vm.percpu_pagelist_high_fraction", "4")
        .is_err());
    assert!(m.sysctl_set("vm.nonsense", "1").is_err());
    // Turning THP on runs khugepaged's recommendation, which only raises.
    m.sysctl_set("kernel.mm.transparent_hugepage.enabled", "always")
        .unwrap();
    assert_eq!(m.sysctls().min_free_kbytes, 67_584);
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("raising min_free_kbytes")));
}

#[test]
fn alloc_free_and_every_bad_free() {
    let m = bare(ByteSize::gib(1));
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 3, &ctx()).unwrap();
    assert_eq!(b.order, 3);
    assert_eq!(b.zone, ZoneType::Dma32);
    assert_eq!(b.migratetype, MigrateType::Unmovable);
    ok(&m);
    assert!(matches!(
        m.free_pages(b.pfn, 2),
        Err(FreeError::WrongOrder { actual: 3, .. })
    ));
    assert!(matches!(
        m.free_pages(b.pfn + 1, 0),
        Err(FreeError::TailPage { order: 3, .. })
    ));
    assert!(matches!(
        m.free_pages(b.pfn, 11),
        Err(FreeError::InvalidOrder { .. })
    ));
    assert!(matches!(
        m.free_pages(1 << 40, 0),
        Err(FreeError::OutOfRange { .. })
    ));
    ok(&m);
    m.free_pages(b.pfn, 3).unwrap();
    let e = m.free_pages(b.pfn, 3).unwrap_err();
    assert!(matches!(e, FreeError::DoubleFree { .. }), "{e}");
    assert_eq!(e.reason(), "DOUBLE_FREE");
    ok(&m);
    // A big block freed twice goes through the buddy path.
    let big = m.alloc_pages(Gfp::GFP_KERNEL, 10, &ctx()).unwrap();
    m.free_pages(big.pfn, 10).unwrap();
    assert!(matches!(
        m.free_pages(big.pfn, 10),
        Err(FreeError::DoubleFree { .. })
    ));
    assert!(m.rare_events().bad_free >= 6);
    m.check_fully_merged().unwrap();
}

#[test]
fn holes_and_reserved_pages_are_never_handed_out_or_freed() {
    let m = Machine::boot(MachineConfig {
        memory: ByteSize::gib(1),
        ..Default::default()
    })
    .unwrap();
    // pfn 0 is a firmware hole, pfn 0x1000.. is the kernel image.
    assert!(matches!(
        m.free_pages(0, 0),
        Err(FreeError::NotAllocated { .. })
    ));
    assert!(matches!(
        m.free_pages(0x1000, 0),
        Err(FreeError::NotAllocated { .. })
    ));
    let dma = m.zone(0, ZoneType::Dma);
    assert_eq!(dma.spanned, 4095);
    assert_eq!(dma.present, 4096 - 97);
    let mut got = Vec::new();
    while let Ok(b) = m.alloc_pages(Gfp::DMA | Gfp::NOWARN, 0, &ctx()) {
        assert_eq!(b.zone, ZoneType::Dma);
        assert!(
            b.pfn != 0 && !(160..256).contains(&b.pfn),
            "pfn {} is a hole",
            b.pfn
        );
        got.push(b.pfn);
    }
    ok(&m);
    for p in got {
        m.free_pages(p, 0).unwrap();
    }
    m.check_fully_merged().unwrap();
}

#[test]
fn gfp_errors_are_typed() {
    let m = bare(ByteSize::gib(1));
    let e = m.alloc_pages(Gfp::DMA | Gfp::DMA32, 0, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "IMPOSSIBLE_GFP_MIX");
    let e = m.alloc_pages(Gfp::GFP_KERNEL, 11, &ctx()).unwrap_err();
    assert!(matches!(e, AllocError::InvalidOrder { order: 11 }));
    assert!(m.dmesg().iter().any(|l| l.contains("order 11")));
    let e = m
        .alloc_pages(Gfp::GFP_KERNEL, 0, &AllocContext::on_node(3))
        .unwrap_err();
    assert_eq!(e.reason(), "NO_SUCH_NODE");
    let e = m.alloc_pages(Gfp(0x200), 0, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "INVALID_GFP_FLAGS");
    ok(&m);
}

#[test]
fn zeroing_and_stale_bytes() {
    let m = bare(ByteSize::gib(1));
    let c = ctx();
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
    assert_eq!(m.read_phys(b.phys_addr(), 4).unwrap(), vec![0; 4]);
    m.write_phys(b.phys_addr() + 10, b"secret").unwrap();
    assert_eq!(m.stored_pages(), 1);
    m.free_pages_on(b.pfn, 0, &c).unwrap();
    assert!(
        m.read_phys(b.phys_addr(), 1).is_err(),
        "free pages cannot be read"
    );
    // The pcp list is LIFO: the same page comes back, with its stale bytes.
    let again = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
    assert_eq!(again.pfn, b.pfn);
    assert_eq!(&m.read_phys(again.phys_addr() + 10, 6).unwrap(), b"secret");
    m.free_pages_on(again.pfn, 0, &c).unwrap();
    let zeroed = m.alloc_pages(Gfp::GFP_KERNEL | Gfp::ZERO, 0, &c).unwrap();
    assert_eq!(zeroed.pfn, b.pfn);
    assert_eq!(m.read_phys(zeroed.phys_addr() + 10, 6).unwrap(), vec![0; 6]);
    assert_eq!(m.stored_pages(), 0);
    // Writes across page boundaries of a multi-page block.
    let big = m.alloc_pages(Gfp::GFP_KERNEL, 2, &c).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    m.write_phys(big.phys_addr() + 100, &data).unwrap();
    assert_eq!(
        m.read_phys(big.phys_addr() + 100, data.len()).unwrap(),
        data
    );
    assert!(m.write_phys(big.phys_addr() + 16_000, &[0; 1000]).is_err());
    ok(&m);
}

#[test]
fn init_on_free_clears_bytes() {
    let m = Machine::boot(MachineConfig {
        init_on_free: true,
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .unwrap();
    let c = ctx();
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
    m.write_phys(b.phys_addr(), b"x").unwrap();
    m.free_pages_on(b.pfn, 0, &c).unwrap();
    let again = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
    assert_eq!(again.pfn, b.pfn);
    assert_eq!(m.read_phys(again.phys_addr(), 1).unwrap(), vec![0]);
}

/// Take order-0 pages from a zone until it holds at most `target` free pages with the
/// pcp lists drained.
fn drain_zone_to(m: &Machine, gfp: Gfp, zt: ZoneType, target: u64) -> Vec<u64> {
    let mut held = Vec::new();
    let c = ctx();
    loop {
        m.drain_all_pages();
        let z = m.zone(0, zt);
        if z.free_pages() <= target {
            break;
        }
        while m.zone(0, zt).free_pages() > target {
            let b = m
                .alloc_pages(gfp | Gfp::MEMALLOC | Gfp::NOWARN, 0, &c)
                .unwrap();
            held.push(b.pfn);
        }
    }
    held
}

#[test]
fn reserve_tiers_near_the_min_watermark() {
    // A hole over the first 16 MiB leaves DMA32 as the only zone.
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        holes: vec![kmem_allocator::Hole {
            start: ByteSize(0),
            size: ByteSize::mib(16),
            name: "no DMA".into(),
        }],
        ..MachineConfig::bare(ByteSize::mib(512))
    };
    let m = Machine::boot(cfg).unwrap();
    m.drain_all_pages();
    let z = m.zone(0, ZoneType::Dma32);
    let min = z.wmark(Wmark::Min);
    // Sit between 37.5% of min and min: only GFP_ATOMIC (HIGH + NON_BLOCK) gets in.
    let _held = drain_zone_to(&m, Gfp::DMA32, ZoneType::Dma32, min * 3 / 4);
    m.drain_all_pages();
    let e = m
        .alloc_pages(Gfp::GFP_NOWAIT | Gfp::DMA32, 0, &ctx())
        .unwrap_err();
    assert_eq!(e.reason(), "BELOW_MIN_WATERMARK", "{e}");
    assert!(e.to_string().contains("DMA32"), "{e}");
    let a = m
        .alloc_pages(Gfp::GFP_ATOMIC | Gfp::DMA32, 0, &ctx())
        .unwrap();
    // NOMEMALLOC strips the atomic reserve rights.
    let e = m
        .alloc_pages(
            Gfp::GFP_ATOMIC | Gfp::NOMEMALLOC | Gfp::DMA32 | Gfp::NOWARN,
            0,
            &ctx(),
        )
        .unwrap_err();
    assert!(matches!(e, AllocError::NoMemory(_)));
    // MEMALLOC ignores watermarks; the block is marked pfmemalloc.
    let p = m
        .alloc_pages(Gfp::MEMALLOC | Gfp::DMA32, 0, &ctx())
        .unwrap();
    assert!(p.pfmemalloc);
    // PF_MEMALLOC scope does the same, and NOMEMALLOC beats it.
    let mut s = AllocContext::on_cpu(0);
    let _saved = s.scope.noreclaim_save();
    assert!(
        m.alloc_pages(Gfp::GFP_KERNEL | Gfp::DMA32, 0, &s)
            .unwrap()
            .pfmemalloc
    );
    let e = m
        .alloc_pages(
            Gfp::GFP_KERNEL | Gfp::NOMEMALLOC | Gfp::DMA32 | Gfp::NOWARN,
            0,
            &s,
        )
        .unwrap_err();
    if let AllocError::NoMemory(f) = &e {
        assert_eq!(f.stage, kmem_allocator::page_alloc::FailStage::Memalloc);
    } else {
        panic!("{e}");
    }
    assert!(m.rare_events().kswapd_wake > 0);
    // A blocking GFP_KERNEL attempt entered direct reclaim and counted allocstall.
    let e = m
        .alloc_pages(Gfp::GFP_KERNEL | Gfp::DMA32 | Gfp::NOWARN, 0, &ctx())
        .unwrap_err();
    assert!(matches!(e, AllocError::NoMemory(_)));
    let vm = m.vm_events();
    assert!(vm.get(kmem_allocator::vmstat::Event::Allocstall(ZoneType::Dma32)) > 0);
    let _ = a;
    ok(&m);
}

#[test]
fn zonelist_falls_back_across_zones_and_nodes() {
    let cfg = MachineConfig {
        nodes: 2,
        cpus: 2,
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(8))
    };
    let m = Machine::boot(cfg).unwrap();
    // Node 1 is all Normal; node 0 has DMA, DMA32 and Normal.
    let b = m.alloc_pages_node(1, Gfp::GFP_KERNEL, 0).unwrap();
    assert_eq!((b.node, b.zone), (1, ZoneType::Normal));
    let d = m.alloc_pages_node(1, Gfp::GFP_DMA32, 0).unwrap();
    assert_eq!(
        (d.node, d.zone),
        (0, ZoneType::Dma32),
        "DMA32 only exists on node 0"
    );
    let e = m
        .alloc_pages_node(1, Gfp::GFP_DMA32 | Gfp::THISNODE | Gfp::NOWARN, 0)
        .unwrap_err();
    if let AllocError::NoMemory(f) = &e {
        assert!(f.zones.is_empty(), "{e}");
    } else {
        panic!("{e}");
    }
    // Filling node 1 spills to node 0 (numa_miss), unless THISNODE.
    let c1 = AllocContext {
        node: Some(1),
        cpu: Some(1),
        ..Default::default()
    };
    let mut held = Vec::new();
    loop {
        let b = m
            .alloc_pages(Gfp::GFP_KERNEL | Gfp::NOWARN, 10, &c1)
            .unwrap();
        held.push(b);
        if b.node == 0 {
            break;
        }
    }
    assert!(m.numa_events(m.zone(0, ZoneType::Dma32).id).miss > 0);
    assert!(m.numa_events(m.zone(1, ZoneType::Normal).id).foreign > 0);
    // THISNODE keeps taking node 1 (down to its min watermark), then fails.
    loop {
        match m.alloc_pages(Gfp::GFP_KERNEL | Gfp::THISNODE | Gfp::NOWARN, 10, &c1) {
            Ok(b) => {
                assert_eq!(b.node, 1);
                held.push(b);
            }
            Err(e) => {
                assert_eq!(e.reason(), "BELOW_MIN_WATERMARK", "{e}");
                break;
            }
        }
    }
    ok(&m);
    for b in held {
        m.free_pages(b.pfn, b.order).unwrap();
    }
    m.free_pages(b.pfn, 0).unwrap();
    m.free_pages(d.pfn, 0).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn migratetype_fallback_claims_pageblocks_and_boosts() {
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(1))
    };
    let m = Machine::boot(cfg).unwrap();
    let z = m.zone(0, ZoneType::Dma32);
    let movable_blocks = |m: &Machine| m.pageblock_counts(z.id)[MigrateType::Movable as usize];
    let before = movable_blocks(&m);
    // Every pageblock starts Movable. On a fresh machine the largest fallback block is
    // a free order-10 block, which an Unmovable request claims whole: two pageblocks.
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &ctx()).unwrap();
    assert_eq!(movable_blocks(&m), before - 2);
    assert_eq!(m.pageblock_counts(z.id)[MigrateType::Unmovable as usize], 2);
    assert_eq!(m.rare_events().pageblock_claim, 1);
    assert_eq!(z.boost(), 0, "whole-block claims do not boost");
    // A Reclaimable request claims another order-10 block.
    let r = m
        .alloc_pages(Gfp::GFP_KERNEL | Gfp::RECLAIMABLE, 0, &ctx())
        .unwrap();
    assert_eq!(
        m.pageblock_counts(z.id)[MigrateType::Reclaimable as usize],
        2
    );
    ok(&m);
    m.free_pages_on(b.pfn, 0, &ctx()).unwrap();
    m.free_pages_on(r.pfn, 0, &ctx()).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn partial_pageblock_fallback_steals_and_boosts() {
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(1))
    };
    let m = Machine::boot(cfg).unwrap();
    let movable = Gfp::GFP_KERNEL | Gfp::MOVABLE | Gfp::MEMALLOC | Gfp::NOWARN;
    // Take every free block as Movable order-10 allocations.
    let mut held = Vec::new();
    while let Ok(b) = m.alloc_pages(movable, 10, &ctx()) {
        held.push(b);
    }
    // Give one back and use all of it but one order-4 hole: its pageblock is then
    // mostly movable-allocated, too little to claim.
    let x = held.pop().unwrap();
    m.free_pages(x.pfn, 10).unwrap();
    for order in 4..=9 {
        held.push(m.alloc_pages(movable, order, &ctx()).unwrap());
    }
    let hole = held.iter().find(|b| b.order == 4).unwrap().pfn;
    m.free_pages(hole, 4).unwrap();
    held.retain(|b| b.pfn != hole);
    let z = m.zone(0, x.zone).id;
    let blocks_before = m.pageblock_counts(z);
    // An Unmovable request must fall back: the claim fails (free + alike < 256), the
    // watermark is boosted, kswapd woken, and the page stolen from the Movable block.
    let u = m
        .alloc_pages(Gfp::GFP_KERNEL | Gfp::MEMALLOC, 0, &ctx())
        .unwrap();
    let zone = m.zones().iter().find(|zz| zz.id == z).unwrap();
    assert!(zone.boost() >= 512, "boost {}", zone.boost());
    assert!(m.rare_events().watermark_boost >= 1);
    assert!(m.rare_events().kswapd_wake >= 1);
    assert_eq!(
        m.pageblock_counts(z),
        blocks_before,
        "a steal keeps the pageblock type"
    );
    assert_eq!(u.pfn >> 4, hole >> 4, "stolen from the hole");
    ok(&m);
    m.free_pages_on(u.pfn, 0, &ctx()).unwrap();
    for blk in held {
        m.free_pages(blk.pfn, blk.order).unwrap();
    }
    m.check_fully_merged().unwrap();
}
#[test]
fn highatomic_reserve_grows_and_is_released() {
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(2))
    };
    let m = Machine::boot(cfg).unwrap();
    let z = m.zone(0, ZoneType::Dma32);
    // Only the slow path reserves: sit between min and low.
    let held = drain_zone_to(
        &m,
        Gfp::DMA32,
        ZoneType::Dma32,
        (z.wmark(Wmark::Min) + z.wmark(Wmark::Low)) / 2,
    );
    let b = m.alloc_pages(Gfp::GFP_ATOMIC, 2, &ctx()).unwrap();
    assert_eq!(z.reserved_highatomic(), PAGEBLOCK_NR_PAGES);
    assert_eq!(
        m.pageblock_counts(z.id)[MigrateType::HighAtomic as usize],
        1
    );
    // A second high-order atomic allocation is served from the reserve.
    let b2 = m.alloc_pages(Gfp::GFP_ATOMIC, 2, &ctx()).unwrap();
    assert_eq!(b2.pfn >> 9, b.pfn >> 9, "same HighAtomic pageblock");
    ok(&m);
    // A plain order-2 GFP_KERNEL request does not see the reserve as free.
    m.free_pages(b.pfn, 2).unwrap();
    m.free_pages(b2.pfn, 2).unwrap();
    for p in held {
        m.free_pages(p, 0).unwrap();
    }
    m.check_fully_merged().unwrap();
    assert_eq!(z.reserved_highatomic(), 0);
}

#[test]
fn nofail_waits_for_a_free_and_honours_cancel_and_deadline() {
    let cfg = MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::mib(64))
    };
    let m = Arc::new(Machine::boot(cfg).unwrap());
    let mut held = Vec::new();
    while let Ok(b) = m.alloc_pages(Gfp::GFP_KERNEL | Gfp::NOWARN | Gfp::MEMALLOC, 0, &ctx()) {
        held.push(b.pfn);
    }
    // Deadline: gives up cleanly.
    let deadline = AllocContext {
        deadline: Some(Instant::now() + Duration::from_millis(30)),
        cpu: Some(0),
        ..Default::default()
    };
    let e = m
        .alloc_pages(Gfp::GFP_KERNEL | Gfp::NOFAIL, 0, &deadline)
        .unwrap_err();
    assert!(matches!(e, AllocError::DeadlineExceeded { .. }));
    // Cancel from another thread.
    let token = CancelToken::new();
    let t2 = token.clone();
    let m2 = m.clone();
    let h = std::thread::spawn(move || {
        let c = AllocContext {
            cancel: Some(t2),
            cpu: Some(1),
            ..Default::default()
        };
        m2.alloc_pages(Gfp::GFP_KERNEL | Gfp::NOFAIL, 0, &c)
    });
    while m.rare_events().nofail_wait < 2 {
        std::thread::yield_now();
    }
    token.cancel();
    assert!(matches!(
        h.join().unwrap(),
        Err(AllocError::Cancelled { .. })
    ));
    // A free wakes a waiter, which then succeeds.
    let m3 = m.clone();
    let h = std::thread::spawn(move || {
        m3.alloc_pages(Gfp::GFP_KERNEL | Gfp::NOFAIL, 0, &AllocContext::on_cpu(1))
    });
    while m.rare_events().nofail_wait < 3 {
        std::thread::yield_now();
    }
    // Free pages until the waiter's watermark (half of min) is met.
    while !h.is_finished() {
        let p = held.pop().unwrap();
        m.free_pages_on(p, 0, &ctx()).unwrap();
        std::thread::yield_now();
    }
    let got = h.join().unwrap().unwrap();
    held.push(got.pfn);
    ok(&m);
    for p in held {
        m.free_pages(p, 0).unwrap();
    }
    m.check_fully_merged().unwrap();
}

#[test]
fn scope_api_filters_flags() {
    let m = bare(ByteSize::gib(1));
    let mut c = ctx();
    let saved = c.scope.nofs_save();
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
    assert_eq!(b.gfp, Gfp::GFP_NOFS);
    c.scope.restore(saved);
    assert_eq!(c.scope, Scope::NONE);
    m.free_pages(b.pfn, 0).unwrap();
}

#[test]
fn exact_and_bulk() {
    let m = bare(ByteSize::gib(1));
    let c = ctx();
    let b = m.alloc_pages_exact(5 * 4096, Gfp::GFP_KERNEL, &c).unwrap();
    ok(&m);
    // The 3 tail pages of the order-3 block went back.
    assert!(
        m.free_pages_exact(b.pfn, 6 * 4096).is_err(),
        "6 pages were not allocated"
    );
    m.free_pages_exact(b.pfn, 5 * 4096).unwrap();
    let v = m.alloc_pages_bulk(Gfp::GFP_KERNEL, 100, &c).unwrap();
    assert_eq!(v.len(), 100);
    ok(&m);
    for b in v {
        m.free_pages(b.pfn, 0).unwrap();
    }
    m.check_fully_merged().unwrap();
}

#[test]
fn compound_and_movable_zone() {
    let cfg = MachineConfig {
        movablecore: ByteSize::gib(1),
        ..MachineConfig::bare(ByteSize::gib(8))
    };
    let m = Machine::boot(cfg).unwrap();
    let b = m
        .alloc_pages(Gfp::GFP_HIGHUSER_MOVABLE | Gfp::COMP, 9, &ctx())
        .unwrap();
    assert_eq!(b.zone, ZoneType::Movable);
    assert_eq!(b.migratetype, MigrateType::Movable);
    let k = m.alloc_pages(Gfp::GFP_KERNEL, 0, &ctx()).unwrap();
    assert_eq!(
        k.zone,
        ZoneType::Normal,
        "kernel memory never comes from Movable"
    );
    m.free_pages(b.pfn, 9).unwrap();
    m.free_pages(k.pfn, 0).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn one_tib_boots() {
    let m = Machine::boot(MachineConfig {
        memory: ByteSize(1 << 40),
        ..Default::default()
    })
    .unwrap();
    assert!(m.page_state_bytes() as u64 <= 16 * ((1u64 << 40) / 4096));
    let b = m.alloc_pages(Gfp::GFP_KERNEL, 10, &ctx()).unwrap();
    m.free_pages(b.pfn, 10).unwrap();
    // The sqrt rule (capped at 262144) beats khugepaged's 67584 on a big machine.
    let lowmem_kb = m.total_managed() * 4;
    assert_eq!(
        m.sysctls().min_free_kbytes,
        kmem_allocator::watermark::min_free_kbytes_for(lowmem_kb)
    );
}
