//! Rough timings of the hot paths (the real numbers come from `cargo bench`).
use std::time::Instant;

use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

fn main() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(16))).unwrap();
    let c = AllocContext::on_cpu(0);
    let n: u32 = std::env::var("QUICKPERF_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    for _ in 0..2 {
        let t = Instant::now();
        for _ in 0..n {
            let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
            m.free_pages_on(b.pfn, 0, &c).unwrap();
        }
        println!(
            "order-0 pair: {:.1} ns",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        let t = Instant::now();
        for _ in 0..n {
            let o = m.kmalloc(64, Gfp::GFP_KERNEL, &c).unwrap();
            m.kfree(o.addr, &c).unwrap();
        }
        println!(
            "kmalloc-64 pair: {:.1} ns",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
