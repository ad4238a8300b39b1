//! The same kmalloc workloads, with mimalloc as the host allocator baseline.
use criterion::Criterion;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

// The thread-scaling workload measures kmemd only; it runs in the `kmalloc` bench.
#[allow(dead_code)]
#[path = "common/kmalloc_workloads.rs"]
mod common;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    common::pairs(&mut c, "mimalloc");
    common::churn(&mut c, "mimalloc");
    c.final_summary();
}
