//! vmalloc+vfree of 64 KiB and 4 MiB with 10k live areas around them, and kvmalloc of
//! 16 KiB (served by kmalloc's order-2 large path while memory is not fragmented).
//!
//! Bias, written down: areas are freed right after allocation, so the lowest-fit search
//! finds the hole just freed (until the lazy purge returns it, the next fit is above
//! the 10k live areas); the page allocator's pcp lists serve the order-0 pages warm.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

fn bench_vmalloc(c: &mut Criterion) {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(16))).unwrap();
    let ctx = AllocContext::on_cpu(0);
    // 10k live areas of 1..=16 pages around the measured ones.
    let live: Vec<u64> = (0..10_000u64)
        .map(|i| m.vmalloc(4096 * (1 + i % 16), &ctx).unwrap())
        .collect();
    let mut g = c.benchmark_group("vmalloc_vfree_10k_live");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for (name, size) in [("64KiB", 64u64 << 10), ("4MiB", 4 << 20)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let a = m.vmalloc(size, &ctx).unwrap();
                m.vfree(a).unwrap();
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("kvmalloc");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("16KiB", |b| {
        b.iter(|| {
            let o = m.kvmalloc(16 << 10, Gfp::GFP_KERNEL, &ctx).unwrap();
            m.kvfree(o.addr, &ctx).unwrap();
        })
    });
    g.finish();
    for a in live {
        m.vfree(a).unwrap();
    }
}

criterion_group!(benches, bench_vmalloc);
criterion_main!(benches);
