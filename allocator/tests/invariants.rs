//! Property and stress tests: random alloc/free sequences checked by the invariant
//! checker after every step, and a multi-threaded run that ends with a full merge.

mod common;
use common::soak_cases;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmem_allocator::{
    AllocContext, ByteSize, FreeError, Gfp, Machine, MachineConfig, PageBlock, ThpMode,
};
use proptest::prelude::*;

const GFPS: &[Gfp] = &[
    Gfp::GFP_KERNEL,
    Gfp::GFP_ATOMIC,
    Gfp::GFP_NOWAIT,
    Gfp::GFP_HIGHUSER_MOVABLE,
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::RECLAIMABLE.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::DMA32.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::DMA.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::THISNODE.0),
    Gfp(Gfp::GFP_ATOMIC.0 | Gfp::NOMEMALLOC.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::MEMALLOC.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::COMP.0 | Gfp::ZERO.0),
    Gfp(Gfp::GFP_KERNEL.0 | Gfp::NORETRY.0),
];

#[derive(Clone, Debug)]
enum Op {
    /// `pinned`: through a `PinnedCpu` taken for this one call.
    Alloc {
        order: u8,
        gfp: usize,
        node: u16,
        cpu: u16,
        pinned: bool,
    },
    Free {
        pick: usize,
        cpu: u16,
        pinned: bool,
    },
    DoubleFree {
        pick: usize,
    },
    WrongOrder {
        pick: usize,
    },
    TailFree {
        pick: usize,
    },
    Drain,
    Exact {
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let order = prop_oneof![8 => 0u8..=3, 3 => 4u8..=10, 1 => Just(11u8)];
    prop_oneof![
        10 => (order, 0..GFPS.len(), 0u16..2, 0u16..2, any::<bool>())
            .prop_map(|(order, gfp, node, cpu, pinned)| Op::Alloc { order, gfp, node, cpu, pinned }),
        7 => (any::<usize>(), 0u16..2, any::<bool>())
            .prop_map(|(pick, cpu, pinned)| Op::Free { pick, cpu, pinned }),
        1 => any::<usize>().prop_map(|pick| Op::DoubleFree { pick }),
        1 => any::<usize>().prop_map(|pick| Op::WrongOrder { pick }),
        1 => any::<usize>().prop_map(|pick| Op::TailFree { pick }),
        1 => Just(Op::Drain),
        1 => (1u64..40).prop_map(|pages| Op::Exact { pages }),
    ]
}

fn small_machine() -> Machine {
    Machine::boot(MachineConfig {
        nodes: 2,
        cpus: 2,
        transparent_hugepage: ThpMode::Always,
        ..MachineConfig::bare(ByteSize::mib(128))
    })
    .unwrap()
}

fn check(m: &Machine) -> Result<(), TestCaseError> {
    m.check_invariants()
        .map(|_| ())
        .map_err(|e| TestCaseError::fail(format!("invariants:\n{e}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: soak_cases(256), ..ProptestConfig::default() })]

    #[test]
    fn random_alloc_free_keeps_every_page_accounted(ops in prop::collection::vec(op(), 1..300)) {
        let m = small_machine();
        let mut live: Vec<PageBlock> = Vec::new();
        let mut freed: Vec<PageBlock> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { order, gfp, node, cpu, pinned } => {
                    let ctx = AllocContext { node: Some(node), cpu: Some(cpu), ..Default::default() };
                    let gfp_used = GFPS[gfp].with(Gfp::NOWARN);
                    let got = if pinned {
                        m.pin_cpu(&ctx).unwrap().alloc_pages(gfp_used, order)
                    } else {
                        m.alloc_pages(gfp_used, order, &ctx)
                    };
                    match got {
                        Ok(b) => {
                            prop_assert!(order <= 10);
                            prop_assert_eq!(b.order, order);
                            if GFPS[gfp].contains(Gfp::THISNODE) {
                                prop_assert_eq!(b.node, node);
                            }
                            prop_assert!(b.zone <= GFPS[gfp].zone());
                            live.push(b);
                        }
                        Err(e) => prop_assert!(order > 10 || matches!(e, kmem_allocator::AllocError::NoMemory(_)), "{e}"),
                    }
                }
                Op::Free { pick, cpu, pinned } if !live.is_empty() => {
                    let b = live.swap_remove(pick % live.len());
                    let ctx = AllocContext::on_cpu(cpu);
                    if pinned {
                        m.pin_cpu(&ctx).unwrap().free_pages(b.pfn, b.order).unwrap();
                    } else {
                        m.free_pages_on(b.pfn, b.order, &ctx).unwrap();
                    }
                    freed.push(b);
                }
                Op::DoubleFree { pick } if !freed.is_empty() => {
                    let b = freed[pick % freed.len()];
                    // It may have been handed out again; only a block that is not live
                    // now must be refused.
                    if !live.iter().any(|l| l.pfn <= b.pfn && b.pfn < l.pfn + (1 << l.order)) {
                        let e = m.free_pages(b.pfn, b.order).unwrap_err();
                        prop_assert!(matches!(e, FreeError::DoubleFree { .. } | FreeError::NotAllocated { .. }), "{e}");
                    }
                }
                Op::WrongOrder { pick } if !live.is_empty() => {
                    let b = live[pick % live.len()];
                    let wrong = if b.order == 10 { 9 } else { b.order + 1 };
                    prop_assert!(m.free_pages(b.pfn, wrong).is_err());
                }
                Op::TailFree { pick } if !live.is_empty() => {
                    let b = live[pick % live.len()];
                    if b.order > 0 {
                        let e = m.free_pages(b.pfn + 1, 0).unwrap_err();
                        prop_assert!(matches!(e, FreeError::TailPage { .. }), "{e}");
                    }
                }
                Op::Drain => m.drain_all_pages(),
                Op::Exact { pages } => {
                    if let Ok(b) = m.alloc_pages_exact(pages * 4096, Gfp::GFP_KERNEL | Gfp::NOWARN, &AllocContext::on_cpu(0)) {
                        for p in b.pfn..b.pfn + pages {
                            live.push(PageBlock { pfn: p, order: 0, ..b });
                        }
                    }
                }
                _ => {}
            }
            check(&m)?;
        }
        for b in live {
            m.free_pages(b.pfn, b.order).unwrap();
        }
        m.check_fully_merged().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn threads_hammering_their_own_cpus_lose_nothing() {
    let m = Machine::boot(MachineConfig {
        cpus: 4,
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .unwrap();
    let handoff: Mutex<Vec<PageBlock>> = Mutex::new(Vec::new());
    let ops = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (m, handoff, ops) = (&m, &handoff, &ops);
            s.spawn(move || {
                let ctx = AllocContext::on_cpu(t);
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut live: Vec<PageBlock> = Vec::new();
                for _ in 0..20_000 {
                    let r = next();
                    if r % 3 != 0 || live.is_empty() {
                        let order = [0, 0, 0, 0, 1, 2, 3, 4, 9][(r >> 8) as usize % 9];
                        let gfp = [Gfp::GFP_KERNEL, Gfp::GFP_HIGHUSER_MOVABLE, Gfp::GFP_ATOMIC]
                            [(r >> 16) as usize % 3];
                        if let Ok(b) = m.alloc_pages(gfp.with(Gfp::NOWARN), order, &ctx) {
                            live.push(b);
                        }
                    } else {
                        let b = live.swap_remove((r >> 20) as usize % live.len());
                        if r & (1 << 40) != 0 {
                            // hand it to another thread to free: frees land on other CPUs
                            handoff.lock().unwrap().push(b);
                        } else {
                            m.free_pages_on(b.pfn, b.order, &ctx).unwrap();
                        }
                    }
                    if r % 7 == 0 {
                        if let Some(b) = handoff.lock().unwrap().pop() {
                            m.free_pages_on(b.pfn, b.order, &ctx).unwrap();
                        }
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                for b in live {
                    m.free_pages_on(b.pfn, b.order, &ctx).unwrap();
                }
            });
        }
    });
    for b in handoff.into_inner().unwrap() {
        m.free_pages(b.pfn, b.order).unwrap();
    }
    assert_eq!(ops.load(Ordering::Relaxed), 80_000);
    m.check_fully_merged().unwrap();
}

#[test]
fn racing_double_frees_succeed_exactly_once() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap();
    for round in 0..200 {
        let order = (round % 4) as u8;
        let b = m
            .alloc_pages(Gfp::GFP_KERNEL, order, &AllocContext::on_cpu(0))
            .unwrap();
        let wins = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..2u16 {
                let (m, wins) = (&m, &wins);
                s.spawn(move || {
                    if m.free_pages_on(b.pfn, order, &AllocContext::on_cpu(t))
                        .is_ok()
                    {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(wins.load(Ordering::Relaxed), 1);
    }
    m.check_fully_merged().unwrap();
}

/// The guarded claim (a block of order 0..=3 freed on the CPU that allocated it is
/// claimed under that CPU's pcp lock, without a compare-and-swap) against a racing
/// free of the same block from the other CPU, per call and pinned: exactly one wins,
/// every round, and nothing is lost. The two freeing threads spin on a round counter
/// so that they start within a few hundred nanoseconds of each other.
#[test]
fn racing_frees_of_guarded_blocks_succeed_exactly_once() {
    use std::sync::atomic::AtomicU64;
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap();
    let rounds = 20_000u64;
    let go = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let next = std::sync::Mutex::new(None::<PageBlock>);
    let wins = AtomicUsize::new(0);
    let mut per_round = Vec::with_capacity(rounds as usize);
    std::thread::scope(|s| {
        for t in 0..2u16 {
            let (m, go, done, next, wins) = (&m, &go, &done, &next, &wins);
            s.spawn(move || {
                for round in 1..=rounds {
                    let mut spins = 0u32;
                    while go.load(Ordering::Acquire) < round {
                        // Spin briefly (to start together), then let the main thread run.
                        spins += 1;
                        if spins < 2000 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    let b = *next.lock().unwrap();
                    if let Some(b) = b {
                        let ok = if round % 3 == 2 {
                            m.pin_cpu(&AllocContext::on_cpu(t))
                                .is_ok_and(|mut p| p.free_pages(b.pfn, b.order).is_ok())
                        } else {
                            m.free_pages_on(b.pfn, b.order, &AllocContext::on_cpu(t))
                                .is_ok()
                        };
                        if ok {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                }
            });
        }
        for round in 1..=rounds {
            let order = (round % 4) as u8;
            let cpu = (round / 4 % 2) as u16;
            let b = m.alloc_pages(Gfp::GFP_KERNEL, order, &AllocContext::on_cpu(cpu));
            *next.lock().unwrap() = b.ok();
            go.store(round, Ordering::Release);
            while done.load(Ordering::Acquire) < 2 * round {
                std::thread::yield_now();
            }
            per_round.push(wins.swap(0, Ordering::Relaxed));
        }
    });
    let bad: Vec<(usize, usize)> = per_round
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, w)| w != 1)
        .collect();
    assert!(
        bad.is_empty(),
        "rounds without exactly one winning free: {bad:?}"
    );
    m.check_fully_merged().unwrap();
}
