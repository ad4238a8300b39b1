//! Workloads shared by the `kmalloc` (glibc malloc baseline) and `kmalloc_mimalloc`
//! (mimalloc baseline) benches. Each workload runs on kmemd's kmalloc and on the
//! process's global allocator with the same sizes in the same order.
//!
//! Bias, written down:
//! - kmem objects are simulated: no bytes are touched, and neither are the host
//!   allocator's (`Vec::with_capacity` never writes), so both sides measure bookkeeping.
//! - the host allocator returns memory to a thread cache it owns; kmemd keeps kernel
//!   semantics (per-CPU slabs, exact double-free checks), which costs more.
//! - sizes come from a fixed xorshift sequence, identical for both sides.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn machine() -> Machine {
    Machine::boot(MachineConfig {
        cpus: 2,
        ..MachineConfig::bare(ByteSize::gib(16))
    })
    .unwrap()
}

fn sizes(n: usize) -> Vec<u64> {
    let mut r = Rng::new(42);
    (0..n).map(|_| 8 + r.next() % 4089).collect()
}

/// kmalloc+kfree pairs of 64 bytes, and of sizes uniform in 8..=4096.
pub fn pairs(c: &mut Criterion, host: &str) {
    let m = machine();
    let ctx = AllocContext::on_cpu(0);
    let mut g = c.benchmark_group("kmalloc_pair");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("64B", "kmem"), |b| {
        b.iter(|| {
            let o = m.kmalloc(black_box(64), Gfp::GFP_KERNEL, &ctx).unwrap();
            m.kfree(o.addr, &ctx).unwrap();
        })
    });
    // The same pair with the thread pinned to CPU 1 (`PinnedCpu`, the kernel's
    // get_cpu/put_cpu): no per-call CPU lock. One pin per measurement batch.
    g.bench_function(BenchmarkId::new("64B", "kmem_pinned"), |b| {
        let pin_ctx = AllocContext::on_cpu(1);
        b.iter_custom(|iters| {
            let mut p = m.pin_cpu(&pin_ctx).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                let o = p.kmalloc(black_box(64), Gfp::GFP_KERNEL).unwrap();
                p.kfree(o.addr).unwrap();
            }
            start.elapsed()
        })
    });
    g.bench_function(BenchmarkId::new("64B", host), |b| {
        b.iter(|| drop(black_box(Vec::<u8>::with_capacity(black_box(64)))))
    });
    let sz = sizes(4096);
    g.bench_function(BenchmarkId::new("uniform_8_4096", "kmem"), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            let o = m.kmalloc(sz[i], Gfp::GFP_KERNEL, &ctx).unwrap();
            m.kfree(o.addr, &ctx).unwrap();
        })
    });
    g.bench_function(BenchmarkId::new("uniform_8_4096", host), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            drop(black_box(Vec::<u8>::with_capacity(sz[i] as usize)));
        })
    });
    g.finish();
}

/// Churn: 1M live objects of sizes 8..=4096; each step frees a random one and
/// allocates a new one in its slot.
pub fn churn(c: &mut Criterion, host: &str) {
    const LIVE: usize = 1_000_000;
    let m = machine();
    let ctx = AllocContext::on_cpu(0);
    let mut g = c.benchmark_group("kmalloc_churn_1M_live");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let sz = sizes(LIVE);
    let mut live: Vec<u64> = sz
        .iter()
        .map(|&s| m.kmalloc(s, Gfp::GFP_KERNEL, &ctx).unwrap().addr)
        .collect();
    let mut r = Rng::new(7);
    g.bench_function(BenchmarkId::new("step", "kmem"), |b| {
        b.iter(|| {
            let i = (r.next() as usize) % LIVE;
            m.kfree(live[i], &ctx).unwrap();
            live[i] = m
                .kmalloc(sz[(i * 7) % LIVE], Gfp::GFP_KERNEL, &ctx)
                .unwrap()
                .addr;
        })
    });
    drop(live);
    let mut host_live: Vec<Vec<u8>> = sz.iter().map(|&s| Vec::with_capacity(s as usize)).collect();
    let mut r = Rng::new(7);
    g.bench_function(BenchmarkId::new("step", host), |b| {
        b.iter(|| {
            let i = (r.next() as usize) % LIVE;
            host_live[i] = Vec::with_capacity(sz[(i * 7) % LIVE] as usize);
            black_box(&host_live[i]);
        })
    });
    g.finish();
}

/// 64-byte pairs on 1 and 2 threads (each its own simulated CPU): throughput, through
/// the per-call API (`kmalloc_pair_threads`) and with each thread pinned to its CPU
/// (`kmalloc_pair_threads_pinned`).
///
/// Bias: the time runs from a barrier that releases all threads to the last thread's
/// end, so thread spawn and join (tens of microseconds, more for two threads than for
/// one) are not counted. Each thread works on its own CPU, so only the host's cores and
/// caches are shared; any other load on the 2-core host lands on the 2-thread case.
pub fn threads(c: &mut Criterion) {
    let m = machine();
    for (group, pinned) in [
        ("kmalloc_pair_threads", false),
        ("kmalloc_pair_threads_pinned", true),
    ] {
        let mut g = c.benchmark_group(group);
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for t in [1u16, 2] {
            g.throughput(Throughput::Elements(t as u64 * 10_000));
            g.bench_function(BenchmarkId::from_parameter(t), |b| {
                b.iter_custom(|iters| {
                    let n = iters * 10_000;
                    threaded(t, |cpu| {
                        let ctx = AllocContext::on_cpu(cpu);
                        if pinned {
                            let mut p = m.pin_cpu(&ctx).unwrap();
                            for _ in 0..n {
                                let o = p.kmalloc(64, Gfp::GFP_KERNEL).unwrap();
                                p.kfree(o.addr).unwrap();
                            }
                        } else {
                            for _ in 0..n {
                                let o = m.kmalloc(64, Gfp::GFP_KERNEL, &ctx).unwrap();
                                m.kfree(o.addr, &ctx).unwrap();
                            }
                        }
                    })
                })
            });
        }
        g.finish();
    }
}

/// Run `body(cpu)` on `t` threads released together by a barrier; the wall time from
/// the first thread's start to the last thread's end.
fn threaded(t: u16, body: impl Fn(u16) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(t as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..t)
            .map(|cpu| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    body(cpu);
                    (t0, Instant::now())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    end - start
}

/// `kmalloc_accounted_pair/{plain,accounted}`: 64-byte kmalloc+kfree from a task in a
/// memory cgroup, without and with `__GFP_ACCOUNT` (kmalloc-64 against kmalloc-cg-64
/// plus the object-cgroup charge through the CPU's byte and page stocks).
///
/// Bias: the stocks absorb nearly every charge (a page is charged every ~56 objects,
/// a batch every 64 pages), which is the steady state the kernel optimises for too.
pub fn accounted(c: &mut Criterion) {
    let m = machine();
    let cg = m.memcg().create("/bench").unwrap();
    let ctx = AllocContext {
        cgroup: Some(cg),
        cpu: Some(0),
        ..Default::default()
    };
    let mut g = c.benchmark_group("kmalloc_accounted_pair");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for (name, gfp) in [
        ("plain", Gfp::GFP_KERNEL),
        ("accounted", Gfp::GFP_KERNEL_ACCOUNT),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let o = m.kmalloc(black_box(64), gfp, &ctx).unwrap();
                m.kfree(o.addr, &ctx).unwrap();
            })
        });
    }
    g.finish();
}
