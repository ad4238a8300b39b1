//! A zone at run time: its lock-protected free area (the buddy lists) and the counters
//! and watermarks that are read without the lock.
//!
//! Invariants (checked by [`crate::machine::Machine::check_invariants`]):
//! - every free block on list (order o, type t) is o-aligned, lies in the zone, has a
//!   head word `Buddy(o, t, index)` whose index is its position in that list, and tail
//!   words that are not heads;
//! - a block of order < pageblock_order is on the list of its pageblock's type; a larger
//!   block's pageblocks all have the type of its list;
//! - the lockless mirrors (`nr_free`, the per-list counts and the non-empty mask) equal
//!   the lists.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use serde::Serialize;

use crate::machine::Mm;
use crate::mem::{ZoneLayout, ZoneType, MAX_NR_ZONES};
use crate::page::{
    MigrateType, PageKind, PageMap, PageWord, Pfn, MAX_ORDER, NR_MIGRATETYPES, NR_ORDERS,
    PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
};

/// Watermark indices (`enum zone_watermarks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Wmark {
    Min = 0,
    Low = 1,
    High = 2,
    Promo = 3,
}

impl Wmark {
    pub fn name(self) -> &'static str {
        match self {
            Wmark::Min => "min",
            Wmark::Low => "low",
            Wmark::High => "high",
            Wmark::Promo => "promo",
        }
    }
}

/// The buddy lists of one zone. Each list is a stack whose *end* is the kernel's list
/// head; a page's word stores its position, so removal from the middle is O(1)
/// (`swap_remove`, then the moved page's index is fixed up).
pub struct FreeArea {
    lists: [[Vec<u32>; NR_MIGRATETYPES]; NR_ORDERS],
    /// Pages on the lists; mirrored to `Zone::nr_free` with plain stores (one writer:
    /// the lock holder), so list operations need no atomic read-modify-write.
    nr_free: u64,
    nr_free_highatomic: u64,
    /// Events of allocations and frees that went straight to the buddy lists (the
    /// pcp path counts on its CPU instead), so those need no second lock.
    pub events: ZoneEvents,
}

/// Event counts kept under the zone lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZoneEvents {
    pub pgalloc: u64,
    pub pgfree: u64,
    pub numa: crate::pcp::NumaEvents,
}

/// The lockless mirrors of the buddy lists, written under the zone lock.
#[derive(Default)]
struct FreeCounts {
    blocks: [[AtomicU32; NR_MIGRATETYPES]; NR_ORDERS],
    /// One bit per allocatable list ([`nonempty_bit`]): the high-order watermark
    /// check asks "is any list of these types at this order or above non-empty?" with
    /// one load, where the kernel walks `free_area[o].nr_free` order by order.
    nonempty: AtomicU64,
}

/// Bit of list (`order`, `mt`) in the non-empty mask: 11 bits per migratetype, for
/// every type but Isolate (never allocated from).
#[inline]
pub const fn nonempty_bit(order: usize, mt: MigrateType) -> u64 {
    1 << (mt as usize * NR_ORDERS + order)
}

/// The non-empty-mask bits of the lists of `mt` at `order` and above.
#[inline]
pub const fn nonempty_from(order: usize, mt: MigrateType) -> u64 {
    let orders = ((1u64 << NR_ORDERS) - 1) & !((1u64 << order) - 1);
    orders << (mt as usize * NR_ORDERS)
}

/// A zone.
pub struct Zone {
    /// Index in `Machine::zones`.
    pub id: usize,
    pub node: u16,
    pub zt: ZoneType,
    pub start_pfn: Pfn,
    pub spanned: u64,
    pub present: u64,
    pub managed: u64,
    /// The zone lock (`zone->lock`, a spinlock in the kernel too).
    area: CachePadded<crate::pcp::SpinLock<FreeArea>>,
    /// Pages on the buddy lists (`NR_FREE_PAGES`; pcp pages count as allocated).
    pub(crate) nr_free: CachePadded<AtomicU64>,
    /// Mirror of each list's length, for lockless watermark checks.
    /// Written on every list operation: kept on cache lines of its own so the
    /// read-mostly fields below (watermarks, reserves) do not bounce between CPUs.
    free_counts: CachePadded<FreeCounts>,
    pub(crate) wmark: [AtomicU64; 4],
    pub(crate) boost: AtomicU64,
    pub(crate) lowmem_reserve: [AtomicU64; MAX_NR_ZONES],
    pub(crate) nr_reserved_highatomic: AtomicU64,
    /// Free pages on HighAtomic lists (`nr_free_highatomic`).
    pub(crate) nr_free_highatomic: CachePadded<AtomicU64>,
    /// ZONE_BOOSTED_WATERMARK: a boost happened and kswapd should be woken.
    pub(crate) boosted: std::sync::atomic::AtomicBool,
    /// pcp sizing shared by every CPU (`batch`, `high_min`, `high_max`).
    pub(crate) pcp_batch: AtomicU32,
    pub(crate) pcp_high_min: AtomicU32,
    pub(crate) pcp_high_max: AtomicU32,
}

impl Zone {
    pub(crate) fn new(id: usize, l: &ZoneLayout) -> Zone {
        Zone {
            id,
            node: l.node,
            zt: l.zt,
            start_pfn: l.start_pfn,
            spanned: l.spanned,
            present: l.present,
            managed: l.managed,
            area: CachePadded::new(crate::pcp::SpinLock::new(FreeArea {
                lists: Default::default(),
                nr_free: 0,
                nr_free_highatomic: 0,
                events: ZoneEvents::default(),
            })),
            nr_free: CachePadded::new(AtomicU64::new(0)),
            free_counts: CachePadded::new(Default::default()),
            wmark: Default::default(),
            boost: AtomicU64::new(0),
            lowmem_reserve: Default::default(),
            nr_reserved_highatomic: AtomicU64::new(0),
            nr_free_highatomic: CachePadded::new(AtomicU64::new(0)),
            boosted: Default::default(),
            pcp_batch: AtomicU32::new(1),
            pcp_high_min: AtomicU32::new(0),
            pcp_high_max: AtomicU32::new(0),
        }
    }

    pub fn populated(&self) -> bool {
        self.present > 0
    }
    pub fn end_pfn(&self) -> Pfn {
        self.start_pfn + self.spanned
    }
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.start_pfn && pfn < self.end_pfn()
    }
    #[inline]
    pub fn free_pages(&self) -> u64 {
        self.nr_free.load(Relaxed)
    }
    /// Watermark without boost.
    #[inline]
    pub fn wmark(&self, w: Wmark) -> u64 {
        self.wmark[w as usize].load(Relaxed)
    }
    /// `wmark_pages`: watermark plus boost.
    #[inline]
    pub fn wmark_boosted(&self, w: Wmark) -> u64 {
        self.wmark(w) + self.boost.load(Relaxed)
    }
    #[inline]
    pub fn boost(&self) -> u64 {
        self.boost.load(Relaxed)
    }
    #[inline]
    pub fn lowmem_reserve(&self, z: usize) -> u64 {
        self.lowmem_reserve[z].load(Relaxed)
    }
    #[inline]
    pub fn reserved_highatomic(&self) -> u64 {
        self.nr_reserved_highatomic.load(Relaxed)
    }
    #[inline]
    pub fn free_highatomic(&self) -> u64 {
        self.nr_free_highatomic.load(Relaxed)
    }
    #[inline]
    pub fn pcp_sizing(&self) -> crate::pcp::PcpSizing {
        crate::pcp::PcpSizing {
            batch: self.pcp_batch.load(Relaxed),
            high_min: self.pcp_high_min.load(Relaxed),
            high_max: self.pcp_high_max.load(Relaxed),
        }
    }
    /// Free blocks on list (order, type), read without the lock.
    pub fn nr_free_blocks(&self, order: usize, mt: MigrateType) -> u64 {
        self.free_counts.blocks[order][mt as usize].load(Relaxed) as u64
    }

    /// The non-empty mask of the buddy lists ([`nonempty_bit`]), read without the lock.
    #[inline]
    pub fn free_lists_nonempty(&self) -> u64 {
        self.free_counts.nonempty.load(Relaxed)
    }

    /// Take the zone lock.
    pub(crate) fn lock<'a>(&'a self, mm: &'a Mm) -> Buddy<'a> {
        Buddy {
            zone: self,
            area: self.area.lock(),
            pages: &mm.pages,
            mm,
        }
    }
}

/// A locked zone: every buddy-list operation goes through this.
pub(crate) struct Buddy<'a> {
    pub zone: &'a Zone,
    area: spin::mutex::SpinMutexGuard<'a, FreeArea, spin::relax::Yield>,
    pub pages: &'a PageMap,
    pub mm: &'a Mm,
}

impl Buddy<'_> {
    fn sync_count(&self, order: u8, mt: MigrateType) {
        let n = self.area.lists[order as usize][mt as usize].len() as u32;
        let counts = &self.zone.free_counts;
        counts.blocks[order as usize][mt as usize].store(n, Relaxed);
        if mt != MigrateType::Isolate {
            // Only the lock holder writes the mask, so load + store is enough.
            let bit = nonempty_bit(order as usize, mt);
            let was = counts.nonempty.load(Relaxed);
            let now = if n > 0 { was | bit } else { was & !bit };
            if now != was {
                counts.nonempty.store(now, Relaxed);
            }
        }
    }

    /// Put a free block on a list (`__add_to_free_list`); `tail` places it where it is
    /// taken last.
    pub fn add(&mut self, pfn: Pfn, order: u8, mt: MigrateType, tail: bool) {
        debug_assert!(
            pfn % (1 << order) == 0,
            "misaligned block {pfn} order {order}"
        );
        debug_assert!(self.zone.contains(pfn));
        let list = &mut self.area.lists[order as usize][mt as usize];
        let idx = list.len();
        list.push(pfn as u32);
        self.pages
            .set(pfn, PageWord::new(PageKind::Buddy, order, mt, idx as u32));
        if tail && idx > 0 {
            // Swap with the current tail (position 0): O(1), at the cost of moving that
            // block to the head.
            let other = list[0] as Pfn;
            list.swap(0, idx);
            self.pages
                .set(pfn, PageWord::new(PageKind::Buddy, order, mt, 0));
            let ow = self.pages.get(other);
            self.pages.set(other, ow.with_aux(idx as u32));
        }
        self.area.nr_free += 1 << order;
        self.zone.nr_free.store(self.area.nr_free, Relaxed);
        if mt == MigrateType::HighAtomic {
            self.area.nr_free_highatomic += 1 << order;
            self.zone
                .nr_free_highatomic
                .store(self.area.nr_free_highatomic, Relaxed);
        }
        self.sync_count(order, mt);
    }

    /// Take a free block off its list (`__del_page_from_free_list`).
    pub fn del(&mut self, pfn: Pfn) -> (u8, MigrateType) {
        let w = self.pages.get(pfn);
        debug_assert_eq!(w.kind(), PageKind::Buddy, "del of non-buddy pfn {pfn}");
        let (order, mt, idx) = (w.order(), w.mt(), w.aux() as usize);
        let list = &mut self.area.lists[order as usize][mt as usize];
        debug_assert_eq!(list[idx] as Pfn, pfn);
        list.swap_remove(idx);
        if idx < list.len() {
            let moved = list[idx] as Pfn;
            let mw = self.pages.get(moved);
            self.pages.set(moved, mw.with_aux(idx as u32));
        }
        self.pages.set(pfn, PageWord::NONE);
        self.area.nr_free -= 1 << order;
        self.zone.nr_free.store(self.area.nr_free, Relaxed);
        if mt == MigrateType::HighAtomic {
            self.area.nr_free_highatomic -= 1 << order;
            self.zone
                .nr_free_highatomic
                .store(self.area.nr_free_highatomic, Relaxed);
        }
        self.sync_count(order, mt);
        (order, mt)
    }

    /// Count a buddy-path allocation (`pgalloc`, NUMA hit/miss/local/other).
    pub fn count_alloc(&mut self, order: u8, preferred: bool, local: bool) {
        let e = &mut self.area.events;
        e.pgalloc += 1 << order;
        if preferred {
            e.numa.hit += 1;
        } else {
            e.numa.miss += 1;
        }
        if local {
            e.numa.local += 1;
        } else {
            e.numa.other += 1;
        }
    }

    /// Count a buddy-path free.
    pub fn count_free(&mut self, order: u8) {
        self.area.events.pgfree += 1 << order;
    }

    pub fn events(&self) -> ZoneEvents {
        self.area.events
    }

    /// The block at the head of a list, if any.
    pub fn peek(&self, order: u8, mt: MigrateType) -> Option<Pfn> {
        self.area.lists[order as usize][mt as usize]
            .last()
            .map(|&p| p as Pfn)
    }

    pub fn list(&self, order: u8, mt: MigrateType) -> &[u32] {
        &self.area.lists[order as usize][mt as usize]
    }

    /// Is `buddy` the head of a free buddy block of exactly `order` (`page_is_buddy`)?
    #[inline]
    fn is_buddy(&self, buddy: Pfn, order: u8) -> Option<PageWord> {
        if !self.zone.contains(buddy) {
            return None;
        }
        let w = self.pages.get(buddy);
        (w.kind() == PageKind::Buddy && w.order() == order).then_some(w)
    }

    /// Free a block into the buddy lists, merging with free buddies
    /// (`free_one_page` / `__free_one_page`). A block larger than a pageblock is freed
    /// as pageblock-sized chunks, each with its own pageblock's type
    /// (`split_large_buddy`), which then merge back if their types allow.
    pub fn free_one(&mut self, pfn: Pfn, order: u8) {
        // Splitting only matters when the pageblocks' types differ; a uniform block
        // (always so at boot) is freed whole, touching one head word.
        let uniform = || {
            let mt = self.pages.pageblock_mt(pfn);
            (1..1u64 << (order - PAGEBLOCK_ORDER))
                .all(|i| self.pages.pageblock_mt(pfn + i * PAGEBLOCK_NR_PAGES) == mt)
        };
        if order > PAGEBLOCK_ORDER && !uniform() {
            let mut p = pfn;
            while p < pfn + (1 << order) {
                self.free_one_block(p, PAGEBLOCK_ORDER);
                p += PAGEBLOCK_NR_PAGES;
            }
        } else {
            self.free_one_block(pfn, order);
        }
    }

    /// `__free_one_page`: the type comes from the pageblock. At and above
    /// pageblock_order, blocks of different types merge only when both are mergeable
    /// (Unmovable/Movable/Reclaimable), and the buddy's pageblocks take the freed
    /// block's type.
    fn free_one_block(&mut self, mut pfn: Pfn, mut order: u8) {
        // The caller's head word (Freeing) must not survive a merge into a lower head.
        self.pages.set(pfn, PageWord::NONE);
        let mt = self.pages.pageblock_mt(pfn);
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            let Some(bw) = self.is_buddy(buddy, order) else {
                break;
            };
            if order >= PAGEBLOCK_ORDER {
                let bmt = bw.mt();
                if bmt != mt && (!mt.is_mergeable() || !bmt.is_mergeable()) {
                    break;
                }
            }
            self.del(buddy);
            if order >= PAGEBLOCK_ORDER && bw.mt() != mt {
                self.set_range_mt(buddy, order, mt);
            }
            pfn &= buddy;
            order += 1;
        }
        let tail = self.merge_likely(pfn, order);
        self.add(pfn, order, mt, tail);
    }

    /// `buddy_merge_likely`: if the buddy of the next-larger block is free, this block is
    /// likely to merge soon, so it goes to the tail where it stays longer.
    fn merge_likely(&self, pfn: Pfn, order: u8) -> bool {
        if order >= MAX_ORDER - 1 {
            return false;
        }
        let higher = pfn & !((1u64 << (order + 1)) - 1);
        let higher_buddy = higher ^ (1 << (order + 1));
        self.is_buddy(higher_buddy, order + 1).is_some()
    }

    /// Set the type of every pageblock a block covers.
    pub fn set_range_mt(&self, pfn: Pfn, order: u8, mt: MigrateType) {
        let n = (1u64 << order).max(PAGEBLOCK_NR_PAGES);
        let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let mut p = start;
        while p < start + n {
            self.pages.set_pageblock_mt(p, mt);
            p += PAGEBLOCK_NR_PAGES;
        }
    }

    /// Split a block of order `high` down to `low` (`expand`): upper halves go back on
    /// the lists of type `mt`. Returns the head of the kept block.
    pub fn expand(&mut self, pfn: Pfn, low: u8, mut high: u8, mt: MigrateType) -> Pfn {
        while high > low {
            high -= 1;
            self.add(pfn + (1 << high), high, mt, false);
        }
        pfn
    }

    /// `__rmqueue_smallest`: the first non-empty list of `mt` at `order` or above.
    pub fn rmqueue_smallest(&mut self, order: u8, mt: MigrateType) -> Option<Pfn> {
        for o in order..=MAX_ORDER {
            if let Some(pfn) = self.peek(o, mt) {
                self.del(pfn);
                return Some(self.expand(pfn, order, o, mt));
            }
        }
        None
    }

    /// Move every free block of one pageblock to the lists of `mt` and retype the
    /// pageblock (`move_freepages_block`). Returns (free pages moved, movable pages
    /// allocated in the block) — the counts the steal decision needs.
    pub fn move_freepages_block(&mut self, pfn: Pfn, mt: MigrateType) -> (u64, u64) {
        let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let end = (start + PAGEBLOCK_NR_PAGES).min(self.zone.end_pfn());
        let (free, movable) = self.scan_pageblock(start, end, Some(mt));
        self.pages.set_pageblock_mt(start, mt);
        (free, movable)
    }

    /// Count free and movable-allocated pages in [start, end); with `retype`, move the
    /// free blocks to that type's lists.
    pub fn scan_pageblock(
        &mut self,
        start: Pfn,
        end: Pfn,
        retype: Option<MigrateType>,
    ) -> (u64, u64) {
        let (mut free, mut movable) = (0, 0);
        let mut p = start.max(self.zone.start_pfn);
        while p < end {
            let w = self.pages.get(p);
            match w.kind() {
                PageKind::Buddy => {
                    let o = w.order();
                    free += 1 << o;
                    if let Some(mt) = retype {
                        if w.mt() != mt {
                            self.del(p);
                            self.add(p, o, mt, true);
                        }
                    }
                    p += 1 << o;
                }
                PageKind::Alloc | PageKind::Freeing => {
                    if w.mt() == MigrateType::Movable {
                        movable += 1 << w.order();
                    }
                    p += 1 << w.order();
                }
                PageKind::Pcp => p += 1 << w.order(),
                PageKind::None => p += 1,
            }
        }
        (free, movable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonempty_masks_select_orders_and_types() {
        let from3 = nonempty_from(3, MigrateType::Movable);
        assert_eq!(from3 & nonempty_bit(2, MigrateType::Movable), 0);
        assert_ne!(from3 & nonempty_bit(3, MigrateType::Movable), 0);
        assert_ne!(
            from3 & nonempty_bit(MAX_ORDER as usize, MigrateType::Movable),
            0
        );
        assert_eq!(from3 & nonempty_bit(3, MigrateType::Unmovable), 0);
        assert_eq!(from3 & nonempty_bit(0, MigrateType::Reclaimable), 0);
        assert_eq!(from3.count_ones(), (NR_ORDERS - 3) as u32);
        // Every allocatable type fits in the 64-bit mask without overlap.
        let all: u64 = MigrateType::ALL[..5].iter().fold(0, |m, &mt| {
            let b = nonempty_from(0, mt);
            assert_eq!(m & b, 0);
            m | b
        });
        assert_eq!(all.count_ones(), 5 * NR_ORDERS as u32);
    }

    #[test]
    fn nonempty_mask_follows_the_lists() {
        let m = crate::Machine::boot(crate::MachineConfig::bare(crate::ByteSize::mib(64)))
            .expect("boot");
        let z = m.zones().iter().find(|z| z.populated()).expect("a zone");
        assert_ne!(z.free_lists_nonempty(), 0);
        // Take every free page of the zone's lists, then give them back.
        let mut taken = Vec::new();
        {
            let mut b = z.lock(&m.mm);
            for o in (0..=MAX_ORDER).rev() {
                for mt in MigrateType::ALL {
                    while let Some(p) = b.peek(o, mt) {
                        b.del(p);
                        taken.push((p, o));
                    }
                }
            }
        }
        assert_eq!(z.free_lists_nonempty(), 0);
        {
            let mut b = z.lock(&m.mm);
            for &(p, o) in &taken {
                b.free_one(p, o);
            }
        }
        assert_ne!(z.free_lists_nonempty(), 0);
        m.check_invariants().expect("invariants");
    }
}
