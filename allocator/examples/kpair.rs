//! One workload per run for callgrind/perf: `kpair kmalloc|pages N`.
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};
fn main() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(16))).unwrap();
    let c = AllocContext::on_cpu(0);
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        if what == "pages" {
            let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
            m.free_pages_on(b.pfn, 0, &c).unwrap();
        } else {
            let o = m
                .kmalloc(std::hint::black_box(64), Gfp::GFP_KERNEL, &c)
                .unwrap();
            m.kfree(o.addr, &c).unwrap();
        }
    }
    eprintln!("{what}: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
