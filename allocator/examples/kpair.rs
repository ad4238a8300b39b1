//! One workload per run, for callgrind and perf: `kpair kmalloc|pages|mixed|mixed-baseline N`.
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

#[path = "../benches/common/page_workloads.rs"]
mod page_workloads;

fn main() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(16))).unwrap();
    let c = AllocContext::on_cpu(0);
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut k = page_workloads::Kmem::on_cpu(&m, 0);
    let mut mixed = (what == "mixed").then(|| page_workloads::Mixed::fill(&mut k, 42));
    let mut b = (what == "mixed-baseline").then(page_workloads::baseline);
    let mut mixed_b = b.as_mut().map(|b| page_workloads::Mixed::fill(b, 42));
    let t = std::time::Instant::now();
    for _ in 0..n {
        match what.as_str() {
            "pages" => {
                let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).unwrap();
                m.free_pages_on(b.pfn, 0, &c).unwrap();
            }
            "mixed" => mixed.as_mut().unwrap().step(&mut k),
            "mixed-baseline" => mixed_b.as_mut().unwrap().step(b.as_mut().unwrap()),
            _ => {
                let o = m
                    .kmalloc(std::hint::black_box(64), Gfp::GFP_KERNEL, &c)
                    .unwrap();
                m.kfree(o.addr, &c).unwrap();
            }
        }
    }
    eprintln!("{what}: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
