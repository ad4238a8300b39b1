//! vmalloc and kvmalloc as a user of the machine sees them.

mod common;
use common::soak_cases;

use kmem_allocator::vmalloc::{PMD_SIZE, VMALLOC_START};
use kmem_allocator::{AllocContext, Backend, ByteSize, Gfp, Machine, MachineConfig, ThpMode};
use proptest::prelude::*;

fn machine() -> Machine {
    Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap()
}

fn ctx() -> AllocContext {
    AllocContext::on_cpu(0).with_caller("test_module_init+0x1c/0x80")
}

fn ok(m: &Machine) {
    if let Err(e) = m.check_invariants() {
        panic!("invariants broken:\n{e}");
    }
}

#[test]
fn one_page_vmalloc_in_vmallocinfo() {
    let m = machine();
    let a = m.vmalloc(100, &ctx()).unwrap();
    assert_eq!(a, VMALLOC_START, "the lowest fitting address");
    assert_eq!(
        m.proc_file("vmallocinfo").unwrap(),
        "0xffffc90000000000-0xffffc90000002000    8192 test_module_init+0x1c/0x80 pages=1 vmalloc N0=1\n"
    );
    let b = m.vmalloc(3 * 4096, &ctx()).unwrap();
    assert_eq!(
        b,
        VMALLOC_START + 8192,
        "after the first area and its guard page"
    );
    assert!(m
        .proc_file("meminfo")
        .unwrap()
        .contains("VmallocUsed:          16 kB\n"));
    ok(&m);
    m.vfree(a).unwrap();
    m.vfree(b).unwrap();
    assert_eq!(
        m.vmalloc_counts().purge_pending_pages,
        6,
        "ranges wait for a lazy purge"
    );
    m.check_fully_merged().unwrap();
}

#[test]
fn reads_writes_cross_pages_and_faults_are_errors() {
    let m = machine();
    let a = m.vzalloc(3 * 4096, &ctx()).unwrap();
    let data: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    m.vwrite(a + 100, &data).unwrap();
    assert_eq!(m.vread(a + 100, data.len()).unwrap(), data);
    // The pages behind are scattered physical pages; the bytes are really there.
    let pfn1 = m.vmalloc_to_pfn(a + 4096).unwrap();
    assert_eq!(
        m.read_phys(pfn1 * 4096, 4).unwrap(),
        data[3996..4000].to_vec()
    );
    let e = m.vread(a + 3 * 4096, 1).unwrap_err();
    assert_eq!(e.reason(), "PAGE_FAULT");
    assert!(e.to_string().contains("guard page"), "{e}");
    let e = m.vwrite(a + 3 * 4096 - 2, b"xyz").unwrap_err();
    assert!(e.to_string().contains("guard page"), "{e}");
    assert_eq!(
        m.vread(a + 3 * 4096 - 2, 2).unwrap(),
        vec![0, 0],
        "a failed write wrote nothing"
    );
    let e = m.vread(a + (1 << 30), 1).unwrap_err();
    assert!(
        e.to_string().contains("no mapping")
            && e.to_string().contains("nearest area 0xffffc90000000000"),
        "{e}"
    );
    // usercopy through vmalloc stays inside the area.
    m.copy_from_user(a, b"user").unwrap();
    assert!(m.copy_to_user(a + 3 * 4096 - 2, 4).is_err());
    ok(&m);
}

#[test]
fn huge_vmalloc_uses_pmd_blocks_and_alignment() {
    let m = Machine::boot(MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .unwrap();
    let _small = m.vmalloc(4096, &ctx()).unwrap();
    let h = m.vmalloc_huge(4 << 20, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(h % PMD_SIZE, 0);
    let area = m.find_vm_area(h).unwrap();
    assert_eq!(area.page_order, 9);
    assert_eq!(area.pages.len(), 1024);
    // Below 2 MiB, small pages.
    let s = m.vmalloc_huge(1 << 20, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(m.find_vm_area(s).unwrap().page_order, 0);
    ok(&m);
    m.vfree(h).unwrap();
    ok(&m);
}

#[test]
fn failures_leave_nothing_behind() {
    let m = Machine::boot(MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::mib(64))
    })
    .unwrap();
    assert_eq!(m.vmalloc(0, &ctx()).unwrap_err().reason(), "INVALID_SIZE");
    let e = m.vmalloc(1 << 30, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "SIZE_TOO_LARGE");
    assert!(
        e.to_string()
            .starts_with("vmalloc error: size 1073741824, exceeds total pages"),
        "{e}"
    );
    // 63.5 MiB of a 64 MiB machine cannot be had: the pages taken so far go back.
    let free_before = m.snapshot().total_free;
    let e = m.vmalloc((63 << 20) + (1 << 19), &ctx()).unwrap_err();
    assert_eq!(e.reason(), "OUT_OF_MEMORY");
    assert!(e.to_string().contains("failed to allocate pages"));
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("vmalloc error: size 66584576, failed to allocate pages")));
    m.drain_all_pages();
    assert_eq!(m.snapshot().total_free, free_before);
    assert_eq!(m.vmalloc_counts().areas, 0);
    ok(&m);
    // GFP rules of v6.18.
    assert_eq!(
        m.__vmalloc(4096, Gfp::GFP_ATOMIC, &ctx())
            .unwrap_err()
            .reason(),
        "INVALID_GFP_FLAGS"
    );
    let a = m
        .__vmalloc(4096, Gfp::GFP_KERNEL | Gfp::DMA | Gfp::COMP, &ctx())
        .unwrap();
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("vmalloc: Unexpected gfp")));
    m.vfree(a).unwrap();
    assert_eq!(m.vfree(a).unwrap_err().reason(), "ALLOCATION_NOT_FOUND");
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("Trying to vfree() nonexistent vm area")));
    m.vfree(0).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn lazy_purge_happens_in_batches() {
    let m = machine();
    let lazy = m.lazy_max_pages();
    assert_eq!(lazy, 2 * 8192, "2 CPUs: fls(2) × 32 MiB");
    let mut n = 0;
    while m.vmalloc_counts().purges == 0 {
        let a = m.vmalloc(1 << 20, &ctx()).unwrap();
        m.vfree(a).unwrap();
        n += 1;
        assert!(n < 100);
    }
    let c = m.vmalloc_counts();
    assert!(c.purged_pages > lazy, "{c:?}");
    assert_eq!(c.purge_pending_pages, 0);
    ok(&m);
}

#[test]
fn vmap_maps_caller_pages() {
    let m = machine();
    let pages: Vec<u64> = (0..3)
        .map(|_| m.alloc_pages(Gfp::GFP_KERNEL, 0, &ctx()).unwrap().pfn)
        .collect();
    m.write_phys(pages[1] * 4096, b"second").unwrap();
    let v = m.vmap(&pages, &ctx()).unwrap();
    assert_eq!(&m.vread(v + 4096, 6).unwrap(), b"second");
    assert!(m
        .proc_file("vmallocinfo")
        .unwrap()
        .contains(" pages=3 vmap N0=3\n"));
    assert!(m.vfree(v).is_err(), "a vmap area is unmapped with vunmap");
    m.vunmap(v).unwrap();
    for p in pages {
        m.free_pages(p, 0).unwrap();
    }
    let a = m.vmalloc(4096, &ctx()).unwrap();
    let pfn = m.vmalloc_to_pfn(a).unwrap();
    assert_eq!(
        m.free_pages(pfn, 0).unwrap_err().reason(),
        "NOT_A_PAGE_ALLOCATION"
    );
    assert!(
        m.vmap(&[pfn], &ctx()).is_err(),
        "vmalloc pages are not the caller's"
    );
    m.vfree(a).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn kvmalloc_picks_its_backend_at_the_boundaries() {
    let m = Machine::boot(MachineConfig::bare(ByteSize::gib(4))).unwrap();
    let c = ctx();
    for (size, backend) in [
        (4096, Backend::Kmalloc),
        (4097, Backend::Kmalloc),
        (4 << 20, Backend::Kmalloc),
        ((4 << 20) + 1, Backend::Vmalloc),
    ] {
        let o = m.kvmalloc(size, Gfp::GFP_KERNEL, &c).unwrap();
        assert_eq!(o.backend, backend, "kvmalloc({size})");
        assert!(o.size >= size);
        assert_eq!(
            kmem_allocator::vmalloc::is_vmalloc_addr(o.addr),
            backend == Backend::Vmalloc
        );
        m.kvfree(o.addr, &c).unwrap();
    }
    let e = m
        .kvmalloc((i32::MAX as u64) + 1, Gfp::GFP_KERNEL, &c)
        .unwrap_err();
    assert_eq!(e.reason(), "SIZE_TOO_LARGE");
    assert!(m
        .kvmalloc_array(u64::MAX / 2, 4, Gfp::GFP_KERNEL, &c)
        .is_err());
    // kvrealloc moves kmalloc contents into vmalloc when growing past 4 MiB.
    let o = m.kvzalloc(10_000, Gfp::GFP_KERNEL, &c).unwrap();
    m.copy_from_user(o.addr, b"grow me").unwrap();
    let g = m.kvrealloc(o.addr, 5 << 20, Gfp::GFP_KERNEL, &c).unwrap();
    assert_eq!(g.backend, Backend::Vmalloc);
    assert_eq!(&m.vread(g.addr, 7).unwrap(), b"grow me");
    m.kvfree_sensitive(g.addr, 7, &c).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn kvmalloc_falls_back_under_fragmentation() {
    let m = Machine::boot(MachineConfig {
        transparent_hugepage: ThpMode::Never,
        ..MachineConfig::bare(ByteSize::mib(64))
    })
    .unwrap();
    let c = ctx();
    // Take every page, then give back every other one: no free block above order 0.
    let mut held = Vec::new();
    while let Ok(b) = m.alloc_pages(Gfp::GFP_KERNEL | Gfp::MEMALLOC | Gfp::NOWARN, 0, &c) {
        held.push(b.pfn);
    }
    held.sort_unstable();
    let (keep, give): (Vec<u64>, Vec<u64>) = held.iter().partition(|&&p| p % 2 == 0);
    for p in &give {
        m.free_pages(*p, 0).unwrap();
    }
    m.drain_all_pages();
    let o = m.kvmalloc(16 << 10, Gfp::GFP_KERNEL, &c).unwrap();
    assert_eq!(
        o.backend,
        Backend::Vmalloc,
        "kmalloc's light order-2 attempt fails"
    );
    assert!(
        m.dmesg()
            .iter()
            .all(|l| !l.contains("page allocation failure")),
        "NOWARN on the light attempt"
    );
    // A sub-page request never falls back.
    let small = m.kvmalloc(2048, Gfp::GFP_KERNEL, &c).unwrap();
    assert_eq!(small.backend, Backend::Kmalloc);
    // Non-blocking callers do not fall back either.
    let e = m.kvmalloc(16 << 10, Gfp::GFP_NOWAIT, &c).unwrap_err();
    assert_eq!(e.reason(), "OUT_OF_MEMORY");
    ok(&m);
    m.kvfree(o.addr, &c).unwrap();
    m.kvfree(small.addr, &c).unwrap();
    for p in keep {
        m.free_pages(p, 0).unwrap();
    }
    m.check_fully_merged().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Vmalloc(u64),
    Kvmalloc(u64),
    Kmalloc(u64),
    Free(usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..300_000).prop_map(Op::Vmalloc),
        3 => (1u64..6_000_000).prop_map(Op::Kvmalloc),
        2 => (1u64..20_000).prop_map(Op::Kmalloc),
        5 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Purge),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: soak_cases(48), ..ProptestConfig::default() })]

    #[test]
    fn random_vmalloc_kvmalloc_kmalloc_mixes_lose_nothing(ops in prop::collection::vec(op(), 1..80)) {
        let m = Machine::boot(MachineConfig::bare(ByteSize::mib(256))).unwrap();
        let c = ctx();
        let mut live: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Vmalloc(s) => if let Ok(a) = m.vmalloc(s, &c) { live.push(a) },
                Op::Kvmalloc(s) => if let Ok(o) = m.kvmalloc(s, Gfp::GFP_KERNEL, &c) { live.push(o.addr) },
                Op::Kmalloc(s) => if let Ok(o) = m.kmalloc(s, Gfp::GFP_KERNEL | Gfp::NOWARN, &c) { live.push(o.addr) },
                Op::Free(i) if !live.is_empty() => {
                    let a = live.swap_remove(i % live.len());
                    m.kvfree(a, &c).unwrap();
                }
                Op::Purge => m.purge_vmap_areas(),
                _ => {}
            }
            if let Err(e) = m.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
        for a in live {
            m.kvfree(a, &c).unwrap();
        }
        m.check_fully_merged().map_err(TestCaseError::fail)?;
    }
}

/// `vfree_on` returns an area's pages to the named CPU's pcp lists (plain `vfree` to
/// the calling thread's), so a replayed trace frees where it was recorded; an unknown
/// CPU is an error that frees nothing.
#[test]
fn vfree_on_a_cpu_fills_that_cpus_pcp_lists() {
    let m = machine();
    // vmalloc takes GFP_KERNEL pages: on a 1 GiB machine, DMA32 is the highest zone.
    let zone = m
        .zones()
        .iter()
        .rposition(|z| z.populated())
        .expect("a populated zone");
    let pcp = |cpu: usize| m.pagesets(zone)[cpu].count;
    let a = m.vmalloc(8 * 4096, &ctx()).unwrap();
    let before = pcp(1);
    let bad = m.vfree_on(a, &AllocContext::on_cpu(7)).unwrap_err();
    assert_eq!(bad.reason(), "NO_SUCH_CPU");
    m.vfree_on(a, &AllocContext::on_cpu(1)).unwrap();
    assert_eq!(pcp(1), before + 8, "eight order-0 pages on CPU 1's lists");
    ok(&m);
}
