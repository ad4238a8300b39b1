//! Peak RSS and time of booting a big machine: `cargo run --release --example rss -- 1TiB`.
use std::time::Instant;

fn rss_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let size = std::env::args().nth(1).unwrap_or_else(|| "1TiB".into());
    let cfg = kmem_allocator::MachineConfig {
        memory: size.parse().expect("a size like 1TiB"),
        ..Default::default()
    };
    let t = Instant::now();
    let m = kmem_allocator::Machine::boot(cfg).unwrap();
    println!(
        "boot {size}: {:.3}s, VmRSS {} MiB, VmHWM {} MiB, page state {} MiB",
        t.elapsed().as_secs_f64(),
        rss_kb("VmRSS:") / 1024,
        rss_kb("VmHWM:") / 1024,
        m.page_state_bytes() >> 20
    );
    let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    for l in smaps
        .lines()
        .filter(|l| l.starts_with("AnonHugePages") || l.starts_with("Anonymous"))
    {
        println!("{l}");
    }
}
