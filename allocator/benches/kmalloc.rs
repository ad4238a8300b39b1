//! kmalloc workloads against glibc malloc (the default global allocator).
use criterion::Criterion;

#[path = "common/kmalloc_workloads.rs"]
mod common;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    common::pairs(&mut c, "glibc_malloc");
    common::churn(&mut c, "glibc_malloc");
    common::threads(&mut c);
    common::accounted(&mut c);
    c.final_summary();
}
