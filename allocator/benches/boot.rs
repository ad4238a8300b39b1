//! Machine boot time, and the host memory a 1 TiB machine costs.
//!
//! Run with `cargo bench -p kmem-allocator --bench boot`. Before criterion starts, a
//! one-shot measurement boots a 1 TiB machine in a fresh process and prints its boot
//! time and the process's peak RSS (`VmHWM` in `/proc/self/status`) to stderr; the
//! peak is read then, before any benchmark has run, so it is the cost of that boot
//! plus the process's small baseline (also printed).
//!
//! Bias of the timed benchmarks: `Machine::boot` with the default configuration
//! (holes, kernel and memmap reservations, 2 CPUs, THP madvise) at 16 GiB and 1 TiB.
//! The time covers layout, the page map, handing all memory to the buddy lists and the
//! watermark setup; dropping the machine (freeing its host memory) is not timed. Boots
//! run back to back, so after the first one the host allocator may hand back memory it
//! already has mapped, which makes the later boots cheaper than a cold process start
//! (the one-shot figure printed first is the cold one).

use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, SamplingMode};
use kmem_allocator::{ByteSize, Machine, MachineConfig};

const TIB: u64 = 1 << 40;

fn config(memory: u64) -> MachineConfig {
    MachineConfig {
        memory: ByteSize(memory),
        ..Default::default()
    }
}

/// A `/proc/self/status` field in kB.
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn gib(kb: u64) -> f64 {
    kb as f64 / (1u64 << 20) as f64
}

/// Boot 1 TiB once and print the boot time and the peak RSS.
fn one_shot_1tib() {
    let before = status_kb("VmHWM");
    let t = Instant::now();
    let m = Machine::boot(config(TIB)).expect("boot 1 TiB");
    let took = t.elapsed();
    let after = status_kb("VmHWM");
    let rss = status_kb("VmRSS");
    eprintln!("boot 1TiB one-shot: {took:.3?}");
    match after {
        Some(kb) => eprintln!(
            "boot 1TiB peak RSS (VmHWM): {kb} kB = {:.3} GiB (VmHWM before boot: {} kB; VmRSS after boot: {} kB; page state: {:.3} GiB)",
            gib(kb),
            before.map_or("?".into(), |v| v.to_string()),
            rss.map_or("?".into(), |v| v.to_string()),
            m.page_state_bytes() as f64 / (1u64 << 30) as f64,
        ),
        None => eprintln!("boot 1TiB peak RSS: /proc/self/status has no VmHWM"),
    }
    drop(m);
}

fn bench_boot(c: &mut Criterion) {
    let mut g = c.benchmark_group("boot");
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    // One machine alive at a time: PerIteration drops each before the next boot.
    g.bench_function("16GiB", |b| {
        b.iter_batched(
            || config(16 << 30),
            |cfg| Machine::boot(cfg).expect("boot 16 GiB"),
            BatchSize::PerIteration,
        )
    });
    // 10 samples (the minimum); at ~0.5 s a boot that is 2 boots per sample, and a
    // slower boot just stretches the run (criterion warns) rather than failing.
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("1TiB", |b| {
        b.iter_batched(
            || config(TIB),
            |cfg| Machine::boot(cfg).expect("boot 1 TiB"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_boot);

fn main() {
    // `--list` (and friends) only enumerate; don't spend a 1 TiB boot on them.
    if !std::env::args().any(|a| a == "--list") {
        one_shot_1tib();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
