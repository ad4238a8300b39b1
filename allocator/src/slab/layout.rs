//! Object layout and slab sizing (mm/slub.c `calculate_sizes`, `calculate_order`,
//! `set_min_partial`, `set_cpu_partial`; mm/slab_common.c `calculate_alignment`), as
//! pure functions of the cache's parameters.

use super::SlabFlags;
use crate::page::{MAX_ORDER, PAGE_SIZE};

/// `cache_line_size()` on x86-64.
pub const CACHE_LINE: u32 = 64;
/// `ARCH_SLAB_MINALIGN` / pointer size.
pub const MINALIGN: u32 = 8;
/// `slub_max_order` default (PAGE_ALLOC_COSTLY_ORDER).
pub const SLUB_MAX_ORDER: u8 = 3;
/// `MAX_OBJS_PER_PAGE`.
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// `sizeof(struct track)` with stack depot: addr, handle, cpu, pid, when.
pub const TRACK_SIZE: u32 = 32;

/// `calculate_alignment`.
pub fn calculate_alignment(flags: SlabFlags, align: u32, size: u32) -> u32 {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align.max(MINALIGN).next_multiple_of(8)
}

/// The decided layout of one object slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub object_size: u32,
    /// Slot stride (`s->size`).
    pub size: u32,
    pub align: u32,
    /// Offset of the free pointer (`s->offset`).
    pub offset: u32,
    /// End of object + right red zone (`s->inuse`).
    pub inuse: u32,
    /// Left red zone before each object (`s->red_left_pad`).
    pub red_left_pad: u32,
    /// Preferred slab order and objects (`s->oo`).
    pub order: u8,
    pub objects: u32,
    /// Fallback order and objects (`s->min`).
    pub min_order: u8,
    pub min_objects: u32,
}

/// `get_order`: smallest order whose pages hold `size` bytes.
pub fn get_order(size: u64) -> u8 {
    let pages = size.div_ceil(PAGE_SIZE).max(1);
    (64 - (pages - 1).leading_zeros()) as u8
}

fn order_objects(order: u8, size: u32) -> u32 {
    ((PAGE_SIZE << order) / size as u64) as u32
}

fn calc_slab_order(size: u32, min_order: u8, max_order: u8, fract: u64) -> u8 {
    let mut order = min_order;
    while order <= max_order {
        let slab = PAGE_SIZE << order;
        if slab % size as u64 <= slab / fract {
            break;
        }
        order += 1;
    }
    order
}

fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// `calculate_order`: the smallest order with acceptable waste (1/16, then 1/8, 1/4,
/// 1/2) holding at least `min_objects` = 4 × (fls(cpus) + 1) objects where possible.
pub fn calculate_order(size: u32, cpus: u32) -> Option<u8> {
    let min_objects = 4 * (fls(cpus) + 1);
    let max_objects = order_objects(SLUB_MAX_ORDER, size);
    let min_objects = min_objects.min(max_objects).max(1);
    let min_order = get_order(min_objects as u64 * size as u64);
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return Some(get_order(size as u64 * MAX_OBJS_PER_PAGE as u64) - 1);
    }
    for fract in [16, 8, 4, 2] {
        let order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fract);
        if order <= SLUB_MAX_ORDER {
            return Some(order);
        }
    }
    let order = get_order(size as u64);
    (order <= MAX_ORDER).then_some(order)
}

/// `calculate_sizes`.
pub fn calculate_sizes(
    object_size: u32,
    align: u32,
    flags: SlabFlags,
    has_ctor: bool,
    cpus: u32,
) -> Option<Layout> {
    let mut size = object_size.next_multiple_of(8);
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        size += 8;
    }
    let inuse = size;
    let offset;
    if flags.intersects(SlabFlags(
        SlabFlags::TYPESAFE_BY_RCU.0 | SlabFlags::POISON.0,
    )) || has_ctor
        || (flags.contains(SlabFlags::RED_ZONE) && object_size < 8)
    {
        offset = size;
        size += 8;
    } else {
        offset = (object_size / 2) & !7;
    }
    if flags.contains(SlabFlags::STORE_USER) {
        size += 2 * TRACK_SIZE;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4;
        }
    }
    let mut red_left_pad = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        size += 8;
        red_left_pad = 8u32.next_multiple_of(align);
        size += red_left_pad;
    }
    let size = size.next_multiple_of(align);
    let order = calculate_order(size, cpus)?;
    let min_order = get_order(size as u64);
    Some(Layout {
        object_size,
        size,
        align,
        offset,
        inuse,
        red_left_pad,
        order,
        objects: order_objects(order, size),
        min_order,
        min_objects: order_objects(min_order, size),
    })
}

/// `set_min_partial`: ilog2(size)/2 clamped to [5, 10].
pub fn min_partial(size: u32) -> u32 {
    ((31 - size.leading_zeros()) / 2).clamp(5, 10)
}

/// `set_cpu_partial` (v5.16+): objects by size tier, turned into slabs.
pub fn cpu_partial(size: u32, objects_per_slab: u32, debug: bool) -> (u32, u32) {
    if debug {
        return (0, 0);
    }
    let objs = if size as u64 >= PAGE_SIZE {
        6
    } else if size >= 1024 {
        24
    } else if size >= 256 {
        52
    } else {
        120
    };
    (objs, (objs * 2).div_ceil(objects_per_slab.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kmalloc_layout(size: u32, cpus: u32) -> Layout {
        let align = 1 << size.trailing_zeros().min(13);
        calculate_sizes(size, align.max(8), SlabFlags::KMALLOC, false, cpus).unwrap()
    }

    #[test]
    fn kmalloc_caches_on_two_cpus() {
        // (size, objperslab, pagesperslab) as /proc/slabinfo shows them on a 2-CPU
        // 6.18 machine (min_objects = 12).
        for (size, objs, pages) in [
            (8, 512, 1),
            (16, 256, 1),
            (32, 128, 1),
            (64, 64, 1),
            (96, 42, 1),
            (128, 32, 1),
            (192, 21, 1),
            (256, 16, 1),
            (512, 16, 2),
            (1024, 16, 4),
            (2048, 16, 8),
            (4096, 8, 8),
            (8192, 4, 8),
        ] {
            let l = kmalloc_layout(size, 2);
            assert_eq!(
                (l.objects, 1u32 << l.order),
                (objs, pages),
                "kmalloc-{size}"
            );
            assert_eq!(l.size, size);
        }
    }

    #[test]
    fn min_objects_grow_with_cpus() {
        assert_eq!(
            kmalloc_layout(512, 1).order,
            0,
            "1 cpu wants 8 objects: one page"
        );
        assert_eq!(kmalloc_layout(256, 64).order, 1, "64 cpus want 32 objects");
    }

    #[test]
    fn alignment_rules() {
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 20), 32);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 100), 64);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 8), 8);
        assert_eq!(calculate_alignment(SlabFlags::NONE, 0, 100), 8);
        assert_eq!(calculate_alignment(SlabFlags::NONE, 128, 100), 128);
    }

    #[test]
    fn debug_layout_adds_red_zones_and_tracks() {
        let plain = calculate_sizes(64, 8, SlabFlags::NONE, false, 2).unwrap();
        assert_eq!((plain.size, plain.offset, plain.red_left_pad), (64, 32, 0));
        let f = SlabFlags(SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0 | SlabFlags::STORE_USER.0);
        let d = calculate_sizes(64, 8, f, false, 2).unwrap();
        // 64 + 8 right red zone = inuse 72; free pointer after it; 2 tracks; left
        // red zone 8 plus 8 of padding.
        assert_eq!(d.inuse, 72);
        assert_eq!(d.offset, 72);
        assert_eq!(d.red_left_pad, 8);
        assert_eq!(d.size, 72 + 8 + 64 + 8 + 8);
    }

    #[test]
    fn partial_tiers() {
        assert_eq!(min_partial(8), 5);
        assert_eq!(min_partial(2048), 5);
        assert_eq!(min_partial(4096), 6);
        assert_eq!(min_partial(8192), 6);
        assert_eq!(cpu_partial(64, 64, false), (120, 4));
        assert_eq!(cpu_partial(256, 16, false), (52, 7));
        assert_eq!(cpu_partial(1024, 16, false), (24, 3));
        assert_eq!(cpu_partial(4096, 8, false), (6, 2));
        assert_eq!(cpu_partial(64, 64, true), (0, 0));
    }

    #[test]
    fn huge_objects() {
        // Bigger than slub_max_order allows: falls back to get_order(size).
        let l = calculate_sizes(100_000, 8, SlabFlags::NONE, false, 2).unwrap();
        assert_eq!(l.order, 5);
        assert_eq!(l.objects, 1);
        assert!(calculate_sizes(5 << 20, 8, SlabFlags::NONE, false, 2).is_none());
    }
}
