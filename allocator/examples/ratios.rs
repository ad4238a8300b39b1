//! Same-period ratios of the benchmark workloads, for a VM whose speed drifts.
//!
//! criterion measures each benchmark in its own window of seconds, so a ratio of two
//! benchmarks mixes two speeds of a host that changes speed by up to 1.5x between
//! minutes. This runs the workloads in alternating rounds of short chunks (each round
//! runs every workload once, ~1 ms each) and reports, per comparison, the median
//! over rounds of the ratio *within* each round, with the 10th-90th percentile
//! range. Absolute times are medians too. It complements the criterion benches
//! (`cargo bench -p kmem-allocator`), which remain the reference for absolute figures.
//!
//! A second phase measures 2-thread scaling the same way: two persistent threads (on
//! simulated CPUs 0 and 1) run a chunk alone (thread 0) and then together, round after
//! round, and each round's scaling is 2 x (time alone) / (time together). Thread
//! spawn is outside every timing; barrier hand-offs (a few microseconds) are inside.
//!
//! `cargo run --release -p kmem-allocator --example ratios [seconds]` (default 10;
//! each phase runs that long).
//!
//! Bias: each chunk of 20k timed iterations follows 2k untimed ones. The mixed-order
//! workloads run in a phase of their own, alternating only with each other on a
//! machine of their own, as the criterion bench runs them: interleaved with the
//! kmalloc workloads, each mixed chunk started with an L2 those had emptied, and
//! kmem (0.6 MiB of page state for its live blocks, against a few KiB of free-block
//! trees for the baseline) paid for refilling it, a cold-cache regime criterion's
//! steady loop never sees (1.02-1.08 interleaved, 0.83-1.01 alone, in runs minutes
//! apart; the host phase moves both). The mixed workloads keep their 100k live
//! blocks across rounds. The host allocator baseline is the process's global
//! allocator (glibc malloc here).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[path = "../benches/common/page_workloads.rs"]
mod page_workloads;

use kmem_allocator::{AllocContext, Gfp, Machine};
use page_workloads::*;

const CHUNK: u32 = 20_000;

/// Untimed iterations before each timed chunk.
const WARM: u32 = CHUNK / 10;

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..WARM {
        f();
    }
    let t = Instant::now();
    for _ in 0..CHUNK {
        f();
    }
    t.elapsed().as_nanos() as f64 / CHUNK as f64
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Run `workloads` in rounds for `secs` seconds; each returns one chunk's ns/iteration.
fn rounds(secs: u64, workloads: &mut [&mut dyn FnMut() -> f64]) -> Vec<Vec<f64>> {
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        for (v, w) in t.iter_mut().zip(workloads.iter_mut()) {
            v.push(w());
        }
    }
    t
}

fn print_phase(title: &str, names: &[&str], t: &[Vec<f64>], ratios: &[(usize, usize, &str)]) {
    println!(
        "{title}: {} rounds of {CHUNK} iterations per workload\n",
        t[0].len()
    );
    println!("{:<48} {:>10}", "workload", "median ns");
    for (n, v) in names.iter().zip(t) {
        println!("{n:<48} {:>10.1}", pct(&mut v.clone(), 0.5));
    }
    println!(
        "\n{:<48} {:>8} {:>8} {:>8}",
        "same-round ratio", "p10", "median", "p90"
    );
    for &(a, bb, what) in ratios {
        let mut r: Vec<f64> = t[a].iter().zip(&t[bb]).map(|(x, y)| x / y).collect();
        println!(
            "{what:<48} {:>8.2} {:>8.2} {:>8.2}",
            pct(&mut r, 0.1),
            pct(&mut r, 0.5),
            pct(&mut r, 0.9)
        );
    }
    println!();
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let m = machine();
    let cg = m.memcg().create("/ratios").expect("cgroup");
    let cpu0 = AllocContext::on_cpu(0);
    let in_cg = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let mut k = Kmem::on_cpu(&m, 0);
    let mut b0 = baseline();
    let _held = page_workloads::PageAllocator::alloc(&mut b0, 0);

    let names = [
        "order0_pair/kmem",
        "order0_pair/buddy_system_allocator",
        "kmalloc_pair/64B/kmem",
        "kmalloc_pair/64B/host_malloc",
        "kmalloc_accounted_pair/plain",
        "kmalloc_accounted_pair/accounted",
        "order0_pair/kmem_pinned",
        "kmalloc_pair/64B/kmem_pinned",
        "host_lock_control/lock_unlock",
    ];
    let lock = std::sync::atomic::AtomicU8::new(0);
    let t = rounds(
        secs,
        &mut [
            &mut || time(|| order0_pair(&mut k)),
            &mut || time(|| order0_pair(&mut b0)),
            &mut || {
                time(|| {
                    let o = m.kmalloc(black_box(64), Gfp::GFP_KERNEL, &cpu0).unwrap();
                    m.kfree(o.addr, &cpu0).unwrap();
                })
            },
            &mut || time(|| drop(black_box(Vec::<u8>::with_capacity(black_box(64))))),
            &mut || {
                time(|| {
                    let o = m.kmalloc(black_box(64), Gfp::GFP_KERNEL, &in_cg).unwrap();
                    m.kfree(o.addr, &in_cg).unwrap();
                })
            },
            &mut || {
                time(|| {
                    let o = m
                        .kmalloc(black_box(64), Gfp::GFP_KERNEL_ACCOUNT, &in_cg)
                        .unwrap();
                    m.kfree(o.addr, &in_cg).unwrap();
                })
            },
            // A pin per chunk, as a Batch would take one: its cost is amortised.
            &mut || {
                let mut p = m.pin_cpu(&cpu0).expect("pin");
                time(|| order0_pair(&mut p))
            },
            &mut || {
                let mut p = m.pin_cpu(&cpu0).expect("pin");
                time(|| {
                    let o = p.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
                    p.kfree(o.addr).unwrap();
                })
            },
            &mut || time(|| lock_unlock(&lock)),
        ],
    );
    print_phase(
        "Small workloads",
        &names,
        &t,
        &[
            (0, 1, "order0 kmem / buddy_system_allocator"),
            (2, 3, "kmalloc-64 pair / host malloc pair"),
            (5, 4, "accounted / plain kmalloc-64 pair"),
            (6, 1, "order0 pinned / buddy_system_allocator"),
            (7, 3, "kmalloc-64 pinned / host malloc pair"),
            (6, 0, "order0 pinned / per-call"),
            (7, 2, "kmalloc-64 pinned / per-call"),
            (0, 8, "order0 kmem / one lock+unlock"),
        ],
    );

    // The mixed workloads alternate only with each other, on a machine of their own
    // (as in the criterion bench): see the module docs.
    let mm = machine();
    let mut km = Kmem::on_cpu(&mm, 0);
    let mut b = baseline();
    // One live set, continued by the per-call and the pinned workload in turn.
    let mk = std::cell::RefCell::new(Mixed::fill(&mut km, SEED));
    let mut mb = Mixed::fill(&mut b, SEED);
    let t = rounds(
        secs,
        &mut [
            &mut || time(|| mk.borrow_mut().step(&mut km)),
            &mut || time(|| mb.step(&mut b)),
            &mut || {
                let mut p = mm.pin_cpu(&cpu0).expect("pin");
                time(|| mk.borrow_mut().step(&mut p))
            },
        ],
    );
    print_phase(
        "Mixed orders, 100k live blocks",
        &[
            "mixed_orders_100k_live/kmem",
            "mixed_orders_100k_live/buddy_system_allocator",
            "mixed_orders_100k_live/kmem_pinned",
        ],
        &t,
        &[
            (0, 1, "mixed kmem / buddy_system_allocator"),
            (2, 1, "mixed pinned / buddy_system_allocator"),
        ],
    );
    drop(k);
    scaling(&m, secs);
}

/// The threaded workloads of the scaling phase, one per simulated CPU.
const THREADED: [&str; 3] = [
    "order0 pair, per-call",
    "kmalloc-64 pair, per-call",
    "kmalloc-64 pair, pinned",
];

fn run_threaded(m: &Machine, which: usize, cpu: u16) {
    let ctx = AllocContext::on_cpu(cpu);
    match which {
        0 => {
            let mut k = Kmem::on_cpu(m, cpu);
            for _ in 0..CHUNK {
                order0_pair(&mut k);
            }
        }
        1 => {
            for _ in 0..CHUNK {
                let o = m.kmalloc(black_box(64), Gfp::GFP_KERNEL, &ctx).unwrap();
                m.kfree(o.addr, &ctx).unwrap();
            }
        }
        _ => {
            let mut p = m.pin_cpu(&ctx).expect("pin");
            for _ in 0..CHUNK {
                let o = p.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
                p.kfree(o.addr).unwrap();
            }
        }
    }
}

/// Same-round 2-thread scaling (see the module docs).
fn scaling(m: &Machine, secs: u64) {
    const ALONE: usize = 1 << 8;
    let start = Barrier::new(3);
    let done = Barrier::new(3);
    // Workload index, plus ALONE when only thread 0 runs.
    let job = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut r: Vec<Vec<f64>> = vec![Vec::new(); THREADED.len()];
    std::thread::scope(|s| {
        for cpu in 0..2u16 {
            let (start, done, job, stop) = (&start, &done, &job, &stop);
            s.spawn(move || loop {
                start.wait();
                if stop.load(SeqCst) {
                    return;
                }
                let j = job.load(SeqCst);
                if cpu == 0 || j & ALONE == 0 {
                    run_threaded(m, j & !ALONE, cpu);
                }
                done.wait();
            });
        }
        let timed = |j: usize| {
            job.store(j, SeqCst);
            let t = Instant::now();
            start.wait();
            done.wait();
            t.elapsed().as_nanos() as f64
        };
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            for (w, v) in r.iter_mut().enumerate() {
                let alone = timed(w | ALONE);
                let both = timed(w);
                v.push(2.0 * alone / both);
            }
        }
        stop.store(true, SeqCst);
        start.wait();
    });
    println!(
        "\n{:<48} {:>8} {:>8} {:>8}",
        format!("2-thread scaling, {} rounds", r[0].len()),
        "p10",
        "median",
        "p90"
    );
    for (name, v) in THREADED.iter().zip(&mut r) {
        println!(
            "{name:<48} {:>8.2} {:>8.2} {:>8.2}",
            pct(v, 0.1),
            pct(v, 0.5),
            pct(v, 0.9)
        );
    }
}
