//! Taking pages when the wanted migratetype has none: `__rmqueue` with the v6.15+
//! claim-then-steal fallback, watermark boosting, and the HighAtomic reserve.
//!
//! Modelled rules (v6.18):
//! - fallback order: Unmovable → Reclaimable, Movable; Movable → Reclaimable,
//!   Unmovable; Reclaimable → Unmovable, Movable. HighAtomic, CMA, Isolate never fall
//!   back.
//! - claim: from MAX_ORDER down (down to pageblock_order under ALLOC_NOFRAGMENT) look
//!   for a fallback block that may be claimed (order ≥ pageblock_order/2, or an
//!   Unmovable/Reclaimable request). A block ≥ pageblock_order is converted whole.
//!   Otherwise the zone's watermark is boosted and the pageblock is claimed when its
//!   free pages plus "alike" pages reach half a pageblock; if not, try a lower order.
//! - steal (not under ALLOC_NOFRAGMENT): the smallest fallback block, split, leftovers
//!   staying on the fallback type's lists; the pageblock keeps its type.
//! - boost: +1 pageblock per boost, capped at max(pageblock, high × boost_factor /
//!   10000); none when the factor is 0 or the zone has fewer than 4 pageblocks.
//! - HighAtomic: after a successful ALLOC_HIGHATOMIC allocation its pageblock becomes
//!   HighAtomic, up to managed/100 rounded up to whole pageblocks; released one block at
//!   a time to the requester's type (keeping one block unless forced).
//!
//! Not modelled: `rmqueue_bulk`'s remembered mode (each refill block runs the whole
//! sequence), CMA balancing (no CMA areas yet).

use std::sync::atomic::Ordering::Relaxed;

use crate::page::{MigrateType, PageKind, Pfn, MAX_ORDER, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::page_alloc::AllocFlags;
use crate::vmstat::RareEvents;
use crate::zone::{Buddy, Wmark};

/// The kernel's `fallbacks[]` table for the three pcp types.
pub const FALLBACKS: [[MigrateType; 2]; 3] = [
    [MigrateType::Reclaimable, MigrateType::Movable],
    [MigrateType::Reclaimable, MigrateType::Unmovable],
    [MigrateType::Unmovable, MigrateType::Movable],
];

enum Fallback {
    Found(MigrateType),
    Empty,
    TooSmallToClaim,
}

impl Buddy<'_> {
    /// `__rmqueue`: the wanted type, then claim, then (unless NOFRAGMENT) steal.
    pub fn rmqueue(&mut self, order: u8, mt: MigrateType, flags: AllocFlags) -> Option<Pfn> {
        if let Some(p) = self.rmqueue_smallest(order, mt) {
            return Some(p);
        }
        if (mt as usize) >= FALLBACKS.len() {
            return None;
        }
        if let Some(p) = self.rmqueue_claim(order, mt, flags) {
            RareEvents::inc(&self.mm.ev.extfrag_fallback);
            return Some(p);
        }
        if !flags.contains(AllocFlags::NOFRAGMENT) {
            if let Some(p) = self.rmqueue_steal(order, mt) {
                RareEvents::inc(&self.mm.ev.extfrag_fallback);
                return Some(p);
            }
        }
        None
    }

    /// `rmqueue_buddy`'s list order: HighAtomic first for ALLOC_HIGHATOMIC, then the
    /// normal path, then HighAtomic again for OOM victims and non-blocking callers.
    pub fn rmqueue_buddy(&mut self, order: u8, mt: MigrateType, flags: AllocFlags) -> Option<Pfn> {
        if flags.contains(AllocFlags::HIGHATOMIC) {
            if let Some(p) = self.rmqueue_smallest(order, MigrateType::HighAtomic) {
                return Some(p);
            }
        }
        if let Some(p) = self.rmqueue(order, mt, flags) {
            return Some(p);
        }
        if flags.intersects(AllocFlags(AllocFlags::OOM.0 | AllocFlags::NON_BLOCK.0)) {
            return self.rmqueue_smallest(order, MigrateType::HighAtomic);
        }
        None
    }

    /// `should_try_claim_block`.
    fn claimable(&self, order: u8, start: MigrateType) -> bool {
        order >= PAGEBLOCK_ORDER / 2
            || start != MigrateType::Movable
            || self.mm.grouping_disabled.load(Relaxed)
    }

    /// `find_suitable_fallback`.
    fn find_fallback(&self, order: u8, start: MigrateType, claim: bool) -> Fallback {
        if claim && !self.claimable(order, start) {
            return Fallback::TooSmallToClaim;
        }
        for fb in FALLBACKS[start as usize] {
            if !self.list(order, fb).is_empty() {
                return Fallback::Found(fb);
            }
        }
        Fallback::Empty
    }

    /// `__rmqueue_claim`: largest fallback block first.
    fn rmqueue_claim(&mut self, order: u8, start: MigrateType, flags: AllocFlags) -> Option<Pfn> {
        let min_order = if order < PAGEBLOCK_ORDER && flags.contains(AllocFlags::NOFRAGMENT) {
            PAGEBLOCK_ORDER
        } else {
            order
        };
        for cur in (min_order..=MAX_ORDER).rev() {
            match self.find_fallback(cur, start, true) {
                Fallback::Empty => continue,
                Fallback::TooSmallToClaim => break,
                Fallback::Found(fb) => {
                    let pfn = self.peek(cur, fb).expect("non-empty list");
                    if let Some(p) = self.try_claim_block(pfn, cur, order, start, fb, flags) {
                        return Some(p);
                    }
                }
            }
        }
        None
    }

    /// `try_to_claim_block`.
    fn try_claim_block(
        &mut self,
        pfn: Pfn,
        cur: u8,
        order: u8,
        start: MigrateType,
        block_type: MigrateType,
        flags: AllocFlags,
    ) -> Option<Pfn> {
        if cur >= PAGEBLOCK_ORDER {
            self.del(pfn);
            self.set_range_mt(pfn, cur, start);
            RareEvents::inc(&self.mm.ev.pageblock_claim);
            return Some(self.expand(pfn, order, cur, start));
        }
        if self.boost_watermark() && flags.contains(AllocFlags::KSWAPD) {
            self.zone.boosted.store(true, Relaxed);
        }
        let start_pfn = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let end_pfn = start_pfn + PAGEBLOCK_NR_PAGES;
        if start_pfn < self.zone.start_pfn || end_pfn > self.zone.end_pfn() {
            return None;
        }
        let (free, movable) = self.scan_pageblock(start_pfn, end_pfn, None);
        let alike = if start == MigrateType::Movable {
            movable
        } else if block_type == MigrateType::Movable {
            PAGEBLOCK_NR_PAGES - (free + movable)
        } else {
            0
        };
        if free + alike >= PAGEBLOCK_NR_PAGES / 2 || self.mm.grouping_disabled.load(Relaxed) {
            self.move_freepages_block(start_pfn, start);
            RareEvents::inc(&self.mm.ev.pageblock_claim);
            return self.rmqueue_smallest(order, start);
        }
        None
    }

    /// `__rmqueue_steal`: the smallest fallback block; the pageblock keeps its type.
    fn rmqueue_steal(&mut self, order: u8, start: MigrateType) -> Option<Pfn> {
        for cur in order..=MAX_ORDER {
            if let Fallback::Found(fb) = self.find_fallback(cur, start, false) {
                let pfn = self.peek(cur, fb).expect("non-empty list");
                self.del(pfn);
                return Some(self.expand(pfn, order, cur, fb));
            }
        }
        None
    }

    /// `boost_watermark`.
    fn boost_watermark(&mut self) -> bool {
        let factor = self.mm.boost_factor.load(Relaxed) as u64;
        if factor == 0 || PAGEBLOCK_NR_PAGES * 4 > self.zone.managed {
            return false;
        }
        let max_boost = self.zone.wmark(Wmark::High) * factor / 10_000;
        if max_boost == 0 {
            return false;
        }
        let max_boost = max_boost.max(PAGEBLOCK_NR_PAGES);
        let b = (self.zone.boost() + PAGEBLOCK_NR_PAGES).min(max_boost);
        self.zone.boost.store(b, Relaxed);
        RareEvents::inc(&self.mm.ev.watermark_boost);
        true
    }

    /// `reserve_highatomic_pageblock`, after an ALLOC_HIGHATOMIC allocation at `pfn`.
    pub fn reserve_highatomic(&mut self, pfn: Pfn, order: u8) {
        let managed = self.zone.managed;
        if managed / 100 < PAGEBLOCK_NR_PAGES {
            return;
        }
        let max = (managed / 100).next_multiple_of(PAGEBLOCK_NR_PAGES);
        if self.zone.reserved_highatomic() >= max {
            return;
        }
        let mt = self.pages.pageblock_mt(pfn);
        if !mt.is_mergeable() {
            return;
        }
        let added = if order < PAGEBLOCK_ORDER {
            let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
            if start < self.zone.start_pfn || start + PAGEBLOCK_NR_PAGES > self.zone.end_pfn() {
                return;
            }
            self.move_freepages_block(start, MigrateType::HighAtomic);
            PAGEBLOCK_NR_PAGES
        } else {
            self.set_range_mt(pfn, order, MigrateType::HighAtomic);
            1 << order
        };
        self.zone.nr_reserved_highatomic.fetch_add(added, Relaxed);
        RareEvents::inc(&self.mm.ev.highatomic_reserve);
    }

    /// One step of `unreserve_highatomic_pageblock` in this zone: give one HighAtomic
    /// pageblock that has free pages back to type `to`.
    pub fn unreserve_highatomic(&mut self, to: MigrateType, force: bool) -> bool {
        let reserved = self.zone.reserved_highatomic();
        if !force && reserved <= PAGEBLOCK_NR_PAGES {
            return false;
        }
        for order in 0..=MAX_ORDER {
            let Some(pfn) = self.peek(order, MigrateType::HighAtomic) else {
                continue;
            };
            let size = PAGEBLOCK_NR_PAGES.max(1 << order).min(reserved);
            self.zone.nr_reserved_highatomic.fetch_sub(size, Relaxed);
            if order < PAGEBLOCK_ORDER {
                self.move_freepages_block(pfn, to);
            } else {
                self.del(pfn);
                self.set_range_mt(pfn, order, to);
                self.add(pfn, order, to, false);
            }
            RareEvents::inc(&self.mm.ev.highatomic_unreserve);
            return true;
        }
        false
    }

    /// Give every HighAtomic pageblock back and merge what that makes mergeable (used
    /// by tests and the full-merge check; the kernel releases one block at a time under
    /// pressure, and like the kernel, retyping alone never merges buddies).
    pub fn release_all_highatomic(&mut self) {
        let start = self.zone.start_pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let mut pb = start;
        while pb < self.zone.end_pfn() {
            if pb >= self.zone.start_pfn && self.pages.pageblock_mt(pb) == MigrateType::HighAtomic {
                let end = (pb + PAGEBLOCK_NR_PAGES).min(self.zone.end_pfn());
                // A block bigger than a pageblock was retyped as a range.
                let w = self.pages.get(pb);
                if w.kind() == PageKind::Buddy && w.order() > PAGEBLOCK_ORDER {
                    self.del(pb);
                    self.set_range_mt(pb, w.order(), MigrateType::Movable);
                    self.add(pb, w.order(), MigrateType::Movable, false);
                } else {
                    self.scan_pageblock(pb, end, Some(MigrateType::Movable));
                    self.pages.set_pageblock_mt(pb, MigrateType::Movable);
                }
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        self.zone.nr_reserved_highatomic.store(0, Relaxed);
        self.remerge();
    }

    /// Free again every free block of pageblock order or more, so buddies whose types
    /// became compatible merge.
    pub fn remerge(&mut self) {
        let mut blocks = Vec::new();
        for order in PAGEBLOCK_ORDER..MAX_ORDER {
            for mt in MigrateType::ALL {
                blocks.extend(self.list(order, mt).iter().map(|&p| (p as Pfn, order)));
            }
        }
        for (p, order) in blocks {
            let w = self.pages.get(p);
            if w.kind() == PageKind::Buddy && w.order() == order {
                self.del(p);
                self.free_one(p, order);
            }
        }
    }
}
