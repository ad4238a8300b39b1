//! Per-CPU page lists (`struct per_cpu_pages`) and the CPU's event counters.
//!
//! Each simulated CPU has one lock guarding its pcp lists for every zone and its
//! counters; a thread working as CPU n only ever takes CPU n's lock on the hot path, so
//! threads on different CPUs do not serialise. Modelled rules (v6.7+):
//! - lists for orders 0..=3 × the three pcp migratetypes, plus one for pageblock_order
//!   (THP); HighAtomic and CMA pages are freed onto the Movable list;
//! - `batch`, `high_min`, `high_max` from [`crate::watermark`]; `high` starts at 0 and
//!   is tuned between them as the CPU allocates (grows by a batch per refill) and frees;
//! - refill size `nr_pcp_alloc` with the `alloc_factor` scaling
//!   (CONFIG_PCP_BATCH_SCALE_MAX 5); free-back size `nr_pcp_free`, oldest pages first.
//!
//! Not modelled: the ZONE_BELOW_HIGH / ZONE_RECLAIM_ACTIVE adjustments (no kswapd yet),
//! the free_high heuristic for high-order frees, and the periodic `decay_pcp_high`.

use crossbeam_utils::CachePadded;

use crate::page::{MigrateType, Pfn, MIGRATE_PCPTYPES, PAGEBLOCK_ORDER, PAGE_ALLOC_COSTLY_ORDER};
use crate::vmstat::Events;

/// Lists per zone: 3 types × orders 0..=3, plus the THP list.
pub const NR_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1) + 1;
/// `CONFIG_PCP_BATCH_SCALE_MAX`.
pub const PCP_BATCH_SCALE_MAX: u32 = 5;

/// NUMA event counters per zone (`numa_hit` … `numa_other`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumaEvents {
    pub hit: u64,
    pub miss: u64,
    pub foreign: u64,
    pub interleave: u64,
    pub local: u64,
    pub other: u64,
}

/// One CPU's pcp state for one zone.
#[derive(Default)]
pub struct PcpSet {
    pub lists: [PcpList; NR_PCP_LISTS],
    /// Pages held (`pcp->count`).
    pub count: u32,
    pub high: u32,
    pub free_count: u32,
    pub alloc_factor: u32,
    pub numa: NumaEvents,
}

/// One pcp list: a stack of pfns with the newest block at the end (alloc pops and free
/// pushes there, LIFO as the kernel's list head) and the oldest at `start` (where
/// `free_pcppages_bulk` takes from, as the kernel takes the list tail). Taking the oldest
/// only moves `start`; the dead prefix is dropped once it is half the vector, so every
/// operation is amortised O(1) and the hot pop/push is a bounds check and a move.
#[derive(Default, Clone, Debug)]
pub struct PcpList {
    v: Vec<u32>,
    start: usize,
}

impl PcpList {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.v.len() == self.start
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.v.len() - self.start
    }
    /// The newest block.
    #[inline]
    pub fn pop(&mut self) -> Option<u32> {
        if self.v.len() > self.start {
            self.v.pop()
        } else {
            None
        }
    }
    /// A block becomes the newest.
    #[inline]
    pub fn push(&mut self, pfn: u32) {
        self.v.push(pfn);
    }
    /// The oldest block.
    pub fn pop_oldest(&mut self) -> Option<u32> {
        let p = *self.v.get(self.start)?;
        self.start += 1;
        if self.start == self.v.len() {
            self.v.clear();
            self.start = 0;
        } else if self.start >= 64 && self.start * 2 >= self.v.len() {
            self.v.drain(..self.start);
            self.start = 0;
        }
        Some(p)
    }
    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &u32> {
        self.v[self.start..].iter()
    }
}

impl<'a> IntoIterator for &'a PcpList {
    type Item = &'a u32;
    type IntoIter = std::slice::Iter<'a, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.v[self.start..].iter()
    }
}

/// Whether an order is cached on pcp lists (`pcp_allowed_order`).
#[inline]
pub fn pcp_allowed_order(order: u8, thp: bool) -> bool {
    order <= PAGE_ALLOC_COSTLY_ORDER || (thp && order == PAGEBLOCK_ORDER)
}

/// `order_to_pindex`.
#[inline]
pub fn pindex(order: u8, mt: MigrateType) -> usize {
    if order > PAGE_ALLOC_COSTLY_ORDER {
        return NR_PCP_LISTS - 1;
    }
    let mt = if (mt as usize) < MIGRATE_PCPTYPES {
        mt as usize
    } else {
        MigrateType::Movable as usize
    };
    MIGRATE_PCPTYPES * order as usize + mt
}

/// `pindex_to_order`.
#[inline]
pub fn pindex_order(pindex: usize) -> u8 {
    if pindex == NR_PCP_LISTS - 1 {
        PAGEBLOCK_ORDER
    } else {
        (pindex / MIGRATE_PCPTYPES) as u8
    }
}

/// Zone-wide pcp sizing, as every CPU's pageset holds it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PcpSizing {
    pub batch: u32,
    pub high_min: u32,
    pub high_max: u32,
}

impl PcpSet {
    /// `nr_pcp_alloc`: how many blocks of `order` to take from the buddy on a refill.
    pub fn nr_alloc(&mut self, s: PcpSizing, order: u8) -> u32 {
        let base = s.batch;
        let mut high = self.high.clamp(s.high_min, s.high_max.max(s.high_min));
        self.high = high;
        if high < base {
            return 1;
        }
        let mut batch = if order > 0 {
            base
        } else {
            base << self.alloc_factor
        };
        if s.high_min != s.high_max {
            high = (high + batch).min(s.high_max);
            self.high = high;
        }
        if order == 0 {
            let max_nr_alloc = high.saturating_sub(self.count + base).max(base);
            if batch <= max_nr_alloc && self.alloc_factor < PCP_BATCH_SCALE_MAX {
                self.alloc_factor += 1;
            }
            batch = batch.min(max_nr_alloc);
        }
        if batch > 1 {
            batch = (batch >> order).max(2);
        }
        batch
    }

    /// After a free: how many pages to return to the buddy (`nr_pcp_high` +
    /// `nr_pcp_free`), 0 if the list may keep them.
    #[inline(always)]
    pub fn nr_to_free(&mut self, s: PcpSizing, order: u8) -> u32 {
        self.alloc_factor >>= 1;
        if self.free_count < s.batch << PCP_BATCH_SCALE_MAX {
            self.free_count += 1 << order;
        }
        // The common case, answered without the clamp below: `high` already within
        // its bounds (so the clamp would leave it) and the list under it.
        if self.count < self.high
            && self.high >= s.high_min
            && self.high <= s.high_max.max(s.high_min)
        {
            return 0;
        }
        // `clamp` without its min <= max assertion (high_max may be below high_min
        // while a sysctl is being changed; high_min wins then).
        let high = self.high.min(s.high_max.max(s.high_min)).max(s.high_min);
        self.high = high;
        if high != 0 && s.high_min != s.high_max && self.count >= high {
            let need = self.free_count + s.batch;
            if self.high < need {
                // Not `clamp`: it panics when high_max is below high_min.
                self.high = need.min(s.high_max.max(s.high_min)).max(s.high_min);
            }
        }
        if self.count < high {
            return 0;
        }
        if high < s.batch || high == 0 {
            return 1.min(self.count);
        }
        let hi = (high - s.batch).max(s.batch);
        self.free_count.clamp(s.batch, hi).min(self.count)
    }

    /// Pop the newest block of a list (the list head).
    #[inline]
    pub fn pop(&mut self, pindex: usize) -> Option<Pfn> {
        self.lists[pindex].pop().map(|p| p as Pfn)
    }

    /// Push a freed block at the head.
    #[inline]
    pub fn push(&mut self, pindex: usize, pfn: Pfn) {
        self.lists[pindex].push(pfn as u32);
    }
}

/// A CPU's lock-protected state.
pub struct CpuState {
    /// One set per zone (indexed like `Machine::zones`).
    pub pcp: Vec<PcpSet>,
    pub events: Events,
}

/// The lock of a simulated CPU's private state and of a zone's free lists (the kernel's
/// zone->lock is a spinlock too). CPU locks are almost never contended (a thread works
/// as one CPU); zone locks are held briefly. One atomic operation locks, a plain store
/// unlocks, and a waiter yields its thread while another holds the lock.
pub type SpinLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;

/// A simulated CPU.
pub struct Cpu {
    pub id: u16,
    pub node: u16,
    /// [`crate::page::PageWord::guard_bits`] of this CPU: what the blocks it allocates
    /// from its pcp lists record as their guard.
    pub guard: u8,
    pub state: CachePadded<SpinLock<CpuState>>,
}

/// A CPU's state for one operation: the caller's, when it already holds the lock (a
/// pinned CPU), or locked here until dropped.
pub enum CpuStateRef<'a> {
    Held(&'a mut CpuState),
    Locked(spin::mutex::SpinMutexGuard<'a, CpuState, spin::relax::Yield>),
}

impl std::ops::Deref for CpuStateRef<'_> {
    type Target = CpuState;
    #[inline(always)]
    fn deref(&self) -> &CpuState {
        match self {
            CpuStateRef::Held(st) => st,
            CpuStateRef::Locked(g) => g,
        }
    }
}

impl std::ops::DerefMut for CpuStateRef<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut CpuState {
        match self {
            CpuStateRef::Held(st) => st,
            CpuStateRef::Locked(g) => g,
        }
    }
}

impl Cpu {
    /// This CPU's state: `held` if the caller holds the lock already, else locked.
    #[inline(always)]
    pub fn state_or<'a>(&'a self, held: Option<&'a mut CpuState>) -> CpuStateRef<'a> {
        match held {
            Some(st) => CpuStateRef::Held(st),
            None => CpuStateRef::Locked(self.state.lock()),
        }
    }

    pub fn new(id: u16, node: u16, nr_zones: usize) -> Cpu {
        let mut pcp = Vec::with_capacity(nr_zones);
        pcp.resize_with(nr_zones, PcpSet::default);
        Cpu {
            id,
            node,
            guard: crate::page::PageWord::guard_bits(id as usize),
            state: CachePadded::new(SpinLock::new(CpuState {
                pcp,
                events: Events::default(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pindex_round_trip() {
        assert_eq!(NR_PCP_LISTS, 13);
        for order in 0..=3u8 {
            for mt in [
                MigrateType::Unmovable,
                MigrateType::Movable,
                MigrateType::Reclaimable,
            ] {
                assert_eq!(pindex_order(pindex(order, mt)), order);
            }
        }
        assert_eq!(
            pindex(0, MigrateType::HighAtomic),
            pindex(0, MigrateType::Movable)
        );
        assert_eq!(pindex_order(pindex(9, MigrateType::Movable)), 9);
    }

    #[test]
    fn refill_grows_high_and_batch() {
        let s = PcpSizing {
            batch: 63,
            high_min: 1000,
            high_max: 5000,
        };
        let mut p = PcpSet::default();
        let first = p.nr_alloc(s, 0);
        assert_eq!(first, 63, "first refill is one batch");
        assert_eq!(p.high, 1063);
        assert_eq!(p.alloc_factor, 1);
        let second = p.nr_alloc(s, 0);
        assert_eq!(second, 126, "alloc_factor doubles the next refill");
        assert_eq!(p.nr_alloc(s, 3), 7, "order-3 refill is batch >> 3");
    }

    #[test]
    fn free_back_keeps_a_batch() {
        let s = PcpSizing {
            batch: 63,
            high_min: 252,
            high_max: 252,
        };
        let mut p = PcpSet {
            count: 252,
            ..Default::default()
        };
        let n = p.nr_to_free(s, 0);
        assert_eq!(n, 63);
        p.count = 10;
        assert_eq!(p.nr_to_free(s, 0), 0);
    }

    /// `nr_to_free` with its common-case exit gives what the full rule gives (the
    /// rule written out here once more, without the exit), over random states,
    /// including `high` out of bounds after a sysctl change.
    #[test]
    fn nr_to_free_shortcut_matches_the_full_rule() {
        fn full(p: &mut PcpSet, s: PcpSizing, order: u8) -> u32 {
            p.alloc_factor >>= 1;
            if p.free_count < s.batch << PCP_BATCH_SCALE_MAX {
                p.free_count += 1 << order;
            }
            let high = p.high.min(s.high_max.max(s.high_min)).max(s.high_min);
            p.high = high;
            if high != 0 && s.high_min != s.high_max && p.count >= high {
                let need = p.free_count + s.batch;
                if p.high < need {
                    p.high = need.min(s.high_max.max(s.high_min)).max(s.high_min);
                }
            }
            if p.count < high {
                return 0;
            }
            if high < s.batch || high == 0 {
                return 1.min(p.count);
            }
            let hi = (high - s.batch).max(s.batch);
            p.free_count.clamp(s.batch, hi).min(p.count)
        }
        let mut rng = 0x9E37_79B9u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n) as u32
        };
        for _ in 0..200_000 {
            let high_min = next(600);
            let s = PcpSizing {
                batch: 1 + next(70),
                high_min,
                high_max: if next(4) == 0 { high_min } else { next(3000) },
            };
            let p = PcpSet {
                count: next(3500),
                high: next(3500),
                free_count: next(2500),
                alloc_factor: next(6),
                ..Default::default()
            };
            let order = next(4) as u8;
            let (mut a, mut b) = (p_clone(&p), p);
            assert_eq!(a.nr_to_free(s, order), full(&mut b, s, order), "{s:?}");
            assert_eq!(
                (a.high, a.free_count, a.alloc_factor),
                (b.high, b.free_count, b.alloc_factor)
            );
        }
    }

    fn p_clone(p: &PcpSet) -> PcpSet {
        PcpSet {
            count: p.count,
            high: p.high,
            free_count: p.free_count,
            alloc_factor: p.alloc_factor,
            ..Default::default()
        }
    }

    /// Newest out first on pop, oldest out first on pop_oldest, across compactions.
    #[test]
    fn pcp_list_is_lifo_at_the_head_and_fifo_at_the_tail() {
        let mut l = PcpList::default();
        let mut model = std::collections::VecDeque::new();
        let mut next = 0u32;
        let mut rng = 0x1234_5678u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            match rng % 5 {
                0 | 1 => {
                    l.push(next);
                    model.push_front(next);
                    next += 1;
                }
                2 => assert_eq!(l.pop(), model.pop_front()),
                _ => assert_eq!(l.pop_oldest(), model.pop_back()),
            }
            assert_eq!(l.len(), model.len());
            assert_eq!(l.is_empty(), model.is_empty());
        }
        let oldest_first: Vec<u32> = l.iter().copied().collect();
        let want: Vec<u32> = model.iter().rev().copied().collect();
        assert_eq!(oldest_first, want);
    }
}
