//! slab_debug detections: red zones, poison, double free with owner tracking,
//! validate, and the boot option.

use kmem_allocator::slab::debug::{POISON_END, POISON_FREE};
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig, SlabFlags};

fn machine() -> Machine {
    Machine::boot(MachineConfig::bare(ByteSize::gib(1))).unwrap()
}

fn ctx() -> AllocContext {
    AllocContext::on_cpu(0).with_caller("test_driver_probe+0x42")
}

fn debug_flags() -> SlabFlags {
    SlabFlags::parse("RED_ZONE|POISON|STORE_USER|CONSISTENCY_CHECKS").unwrap()
}

#[test]
fn right_and_left_red_zone_overwrites_are_caught_on_free() {
    let m = machine();
    let c = m.kmem_cache_create("rz", 100, 0, debug_flags()).unwrap();
    let a = m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap();
    // copy_from_user cannot reach past the object...
    assert!(m.copy_from_user(a + 100, &[0x41]).is_err());
    // ...a buggy driver can.
    m.debug_write_raw(a + 100, &[0x41]).unwrap();
    let e = m.kmem_cache_free(c, a, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "SLAB_CORRUPTION");
    assert!(e.to_string().contains("Right Redzone overwritten"), "{e}");
    let log = m.dmesg().join("\n");
    assert!(log.contains("BUG rz: Right Redzone overwritten"), "{log}");
    assert!(
        log.contains("INFO: Allocated in test_driver_probe+0x42"),
        "{log}"
    );
    // The object is quarantined: not freed, not handed out again.
    assert!(m.kmem_cache_free(c, a, &ctx()).is_err());
    let b = m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_ne!(a, b);
    m.debug_write_raw(b - 1, &[0]).unwrap();
    let e = m.kmem_cache_free(c, b, &ctx()).unwrap_err();
    assert!(e.to_string().contains("Left Redzone overwritten"), "{e}");
    assert_eq!(m.slab_corruptions(), vec![("rz".to_string(), 2)]);
    m.check_invariants().unwrap();
}

#[test]
fn use_after_free_spoils_the_poison() {
    let m = machine();
    let c = m.kmem_cache_create("uaf", 64, 0, debug_flags()).unwrap();
    let a = m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap();
    m.kmem_cache_free(c, a, &ctx()).unwrap();
    let mut poison = vec![POISON_FREE; 64];
    poison[63] = POISON_END;
    assert_eq!(
        m.read_phys(a - kmem_allocator::slab::PAGE_OFFSET, 64)
            .unwrap(),
        poison
    );
    m.debug_write_raw(a + 8, b"oops").unwrap();
    // The next allocation on this CPU would reuse `a`: its poison check fails, the
    // object is quarantined, and another one is handed out.
    let b = m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_ne!(a, b);
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("BUG uaf: Poison overwritten")));
    assert!(m
        .dmesg()
        .iter()
        .any(|l| l.contains("INFO: Freed in test_driver_probe+0x42")));
    m.check_invariants().unwrap();
}

#[test]
fn double_free_reports_the_owner() {
    let m = machine();
    let c = m.kmem_cache_create("df", 32, 0, debug_flags()).unwrap();
    let a = m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap();
    let t = m.object_tracks(a).unwrap();
    assert_eq!(t.alloc.unwrap().caller, "test_driver_probe+0x42");
    m.kmem_cache_free(
        c,
        a,
        &AllocContext::on_cpu(1).with_caller("release_thing+0x10"),
    )
    .unwrap();
    let e = m.kmem_cache_free(c, a, &ctx()).unwrap_err();
    assert_eq!(e.reason(), "DOUBLE_FREE");
    let log = m.dmesg().join("\n");
    assert!(log.contains("BUG df: Object already free"), "{log}");
    assert!(
        log.contains("INFO: Freed in release_thing+0x10 cpu=1"),
        "{log}"
    );
    m.kmem_cache_destroy(c).unwrap();
    m.check_fully_merged().unwrap();
}

#[test]
fn validate_finds_corruption_in_free_and_allocated_objects() {
    let m = machine();
    let c = m.kmem_cache_create("val", 128, 0, debug_flags()).unwrap();
    let objs: Vec<u64> = (0..10)
        .map(|_| m.kmem_cache_alloc(c, Gfp::GFP_KERNEL, &ctx()).unwrap())
        .collect();
    let r = m.kmem_cache_validate(c).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.objects >= 10);
    m.kmem_cache_free(c, objs[3], &ctx()).unwrap();
    m.debug_write_raw(objs[3] + 5, &[1]).unwrap(); // freed: poison
    m.debug_write_raw(objs[4] + 128, &[1]).unwrap(); // allocated: right red zone
    let r = m.kmem_cache_validate(c).unwrap();
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("Poison overwritten") && e.contains("free")));
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("Right Redzone overwritten") && e.contains("allocated")));
}

#[test]
fn slab_debug_boot_option_selects_caches() {
    let m = Machine::boot(MachineConfig {
        slab_debug: Some("FZPU,kmalloc-64;P,foo*".into()),
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .unwrap();
    let k64 = m.cache_info(m.find_cache("kmalloc-64").unwrap()).unwrap();
    assert!(
        k64.flags.contains("SLAB_RED_ZONE") && k64.flags.contains("SLAB_STORE_USER"),
        "{}",
        k64.flags
    );
    assert!(k64.slab_size > 64, "debug metadata makes the slot bigger");
    let k128 = m.cache_info(m.find_cache("kmalloc-128").unwrap()).unwrap();
    assert_eq!(k128.slab_size, 128);
    let foo = m
        .kmem_cache_create("foobar", 40, 0, SlabFlags::NONE)
        .unwrap();
    assert!(m.cache_info(foo).unwrap().flags.contains("SLAB_POISON"));
    // kmalloc through a debug cache still works, with ksize = the object size.
    let o = m.kmalloc(50, Gfp::GFP_KERNEL, &ctx()).unwrap();
    assert_eq!(o.cache.map(|c| m.cache_name(c)), Some("kmalloc-64"));
    assert_eq!(m.ksize(o.addr).unwrap(), 64);
    m.kfree(o.addr, &ctx()).unwrap();
    assert!(Machine::boot(MachineConfig {
        slab_debug: Some("Q".into()),
        ..MachineConfig::bare(ByteSize::gib(1))
    })
    .is_err());
    m.check_fully_merged().unwrap();
}
