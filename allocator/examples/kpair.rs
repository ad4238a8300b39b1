//! One workload per run, for callgrind and perf:
//! `kpair kmalloc|kmalloc-pinned|pages|pages-pinned|pages-baseline|mixed|mixed-pinned|mixed-baseline N`.
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig};

#[path = "../benches/common/page_workloads.rs"]
mod page_workloads;
use page_workloads::{Mixed, PageAllocator};

fn main() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(16))).unwrap();
    let c = AllocContext::on_cpu(0);
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t: std::time::Instant;
    match what.as_str() {
        "pages" | "mixed" => t = run(&mut page_workloads::Kmem::on_cpu(&m, 0), &what, n),
        "pages-pinned" | "mixed-pinned" => t = run(&mut m.pin_cpu(&c).unwrap(), &what, n),
        "mixed-baseline" => t = run(&mut page_workloads::baseline(), &what, n),
        "pages-baseline" => {
            // As the bench: one frame held, so each pair is a remove + insert at order 0.
            let mut b = page_workloads::baseline();
            let _held = page_workloads::PageAllocator::alloc(&mut b, 0);
            t = run(&mut b, &what, n)
        }
        "kmalloc-pinned" => {
            let mut p = m.pin_cpu(&c).unwrap();
            t = std::time::Instant::now();
            for _ in 0..n {
                let o = p
                    .kmalloc(std::hint::black_box(64), Gfp::GFP_KERNEL)
                    .unwrap();
                p.kfree(o.addr).unwrap();
            }
        }
        _ => {
            t = std::time::Instant::now();
            for _ in 0..n {
                let o = m
                    .kmalloc(std::hint::black_box(64), Gfp::GFP_KERNEL, &c)
                    .unwrap();
                m.kfree(o.addr, &c).unwrap();
            }
        }
    }
    eprintln!("{what}: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
    if std::env::var_os("KPAIR_VMSTAT").is_some() {
        eprint!("{}", m.proc_file("vmstat").unwrap());
    }
}

/// Time `n` steps of the page workload `what` names (the mixed workload pre-filled).
fn run<A: PageAllocator>(a: &mut A, what: &str, n: u32) -> std::time::Instant {
    let mut mixed = what.starts_with("mixed").then(|| Mixed::fill(a, 42));
    let t = std::time::Instant::now();
    for _ in 0..n {
        match &mut mixed {
            Some(x) => x.step(a),
            None => page_workloads::order0_pair(a),
        }
    }
    if let (Some(x), true) = (&mixed, std::env::var_os("KPAIR_SPREAD").is_some()) {
        // One hot byte per page: 64 pages per cache line.
        let lines: std::collections::HashSet<u64> = x.live.iter().map(|&(p, _)| p >> 6).collect();
        let lo = x.live.iter().map(|l| l.0).min().unwrap_or(0);
        let hi = x.live.iter().map(|l| l.0).max().unwrap_or(0);
        eprintln!(
            "live heads: {} blocks, {} distinct hot-byte lines ({} KiB), pfn {lo:#x}..{hi:#x}",
            x.live.len(),
            lines.len(),
            lines.len() * 64 / 1024
        );
    }
    t
}
