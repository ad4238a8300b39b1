//! Compact per-page state: the simulator's `struct page`.
//!
//! The kernel spends 64 bytes per 4 KiB page; the simulator spends 9, split by how
//! often each part is touched:
//!
//! - a **hot byte** per page: the page's kind, the order of the block it heads, and
//!   one bit saying whether the cold word holds anything. Everything the fast paths
//!   decide on is here: "is this an allocated block of this order, with nothing else
//!   recorded?" on free, "is the buddy free, and of the same order?" on merge. One
//!   cache line covers 64 pages, so the heads of a workload's live blocks take an
//!   eighth of the cache that 8-byte words would (the mixed-order benchmark's 100k
//!   live blocks: 0.6 MiB instead of 3.6 MiB, which is what keeps it in L2);
//! - a **cold word** (`u64`) per page: migratetype, compound and pfmemalloc flags,
//!   owner and the auxiliary value. It is read only when the hot byte's bit says it
//!   is non-zero, and written only when the new value is non-zero, so a plain
//!   unaccounted `GFP_KERNEL` block is allocated, freed and parked on a pcp list
//!   without touching it.
//!
//! plus one byte per 2 MiB pageblock. Both arrays are allocated zeroed (`calloc`), so
//! the host only backs the parts that were written: at boot only the heads of the free
//! max-order blocks are written — the simulator's analogue of the kernel's deferred
//! struct-page init.
//!
//! A page's state as one value is a [`PageWord`] (little end first):
//!
//! | bits  | field |
//! |-------|-------|
//! | 0..3  | [`PageKind`] (5..=7: a guarded allocated block, see below) |
//! | 3..7  | order of the block this page heads (guarded: order in 3..5, CPU in 5..7) |
//! | 7     | (in the hot byte only: the cold word is non-zero) |
//! | 8..11 | migratetype (free list for a buddy page, requested type for an allocation) |
//! | 11    | compound (`__GFP_COMP`) |
//! | 12    | pfmemalloc (taken from the reserves, `ALLOC_NO_WATERMARKS`) |
//! | 16..28| owner of an allocated block: 0 page allocator user, 1 large kmalloc, 2 vmalloc, n+3 slab cache n |
//! | 32..64| index in its buddy free list (O(1) removal), the memcg charge of a page allocation, or a slab's id in its cache |
//!
//! Bits 0..7 are the hot byte, bits 8.. the cold word. Only block heads carry state;
//! tail pages stay zero ([`PageKind::None`]). So the buddy check is one load of the
//! buddy's hot byte: O(1), no list scan.
//!
//! Freeing an allocated block starts with a claim that exactly one caller can win, so
//! a double free or two racing frees of one block are a clean error. A claim is made
//! one of two ways, and the word says which:
//!
//! - **guarded** (raw kinds 5..=7, [`PageWord::alloc_guarded`]): a block of order
//!   0..=3 allocated from CPU c's pcp list (c < [`MAX_GUARD_CPUS`]) records c in the
//!   hot byte, and its word then changes only under CPU c's pcp lock. A free on CPU c
//!   (the common case) already takes that lock to park the block on c's list, so it
//!   claims with plain loads and stores under it: one locked instruction for the whole
//!   free instead of two. A free on another CPU takes c's lock just for the claim.
//! - **compare-and-swap** on the hot byte for every other allocated block.
//!
//! The two never meet: a compare-and-swap expecting a plain allocated byte cannot
//! match a guarded one, and a guarded word becomes plain only through a free.
//!
//! Ordering: a writer stores the cold word before the hot byte (release); a reader
//! loads the hot byte (acquire) before the cold word, so a reader never sees a cold bit
//! without the cold word it announces. The cold word is written only by whoever owns
//! the page in its current state (the zone lock for buddy pages, the CPU for pcp pages,
//! the winner of the claim for a page being freed).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use serde::Serialize;

/// Largest buddy order (`MAX_PAGE_ORDER`).
pub const MAX_ORDER: u8 = 10;
/// Number of orders (`NR_PAGE_ORDERS`).
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `pageblock_order`: min(HUGETLB_PAGE_ORDER 9, MAX_PAGE_ORDER).
pub const PAGEBLOCK_ORDER: u8 = 9;
pub const PAGEBLOCK_NR_PAGES: u64 = 1 << PAGEBLOCK_ORDER;
/// Orders 0..=3 are cheap; 4+ are "costly" (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u8 = 3;

/// A page frame number.
pub type Pfn = u64;

/// Migratetypes in the kernel's order (`enum migratetype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[repr(u8)]
pub enum MigrateType {
    Unmovable = 0,
    Movable = 1,
    Reclaimable = 2,
    HighAtomic = 3,
    Cma = 4,
    Isolate = 5,
}

pub const NR_MIGRATETYPES: usize = 6;
/// Types that have pcp lists (`MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;

impl MigrateType {
    pub const ALL: [MigrateType; NR_MIGRATETYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Cma,
        MigrateType::Isolate,
    ];

    #[inline]
    pub const fn from_u8(v: u8) -> MigrateType {
        match v {
            0 => MigrateType::Unmovable,
            1 => MigrateType::Movable,
            2 => MigrateType::Reclaimable,
            3 => MigrateType::HighAtomic,
            4 => MigrateType::Cma,
            _ => MigrateType::Isolate,
        }
    }

    /// The kernel's `migratetype_names`.
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Cma => "CMA",
            MigrateType::Isolate => "Isolate",
        }
    }

    /// Free blocks of these types may merge across pageblock boundaries with blocks of
    /// another mergeable type (`migratetype_is_mergeable`: below MIGRATE_PCPTYPES).
    #[inline]
    pub const fn is_mergeable(self) -> bool {
        (self as usize) < MIGRATE_PCPTYPES
    }
}

/// What a page's word says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    /// Not a block head: a tail page, a hole, or memory never given to the buddy.
    None = 0,
    /// Head of a free block on a zone's buddy free list.
    Buddy = 1,
    /// Head of a free block parked on a per-CPU list.
    Pcp = 2,
    /// Head of an allocated block.
    Alloc = 3,
    /// An allocated block being freed (between validation and list insertion).
    Freeing = 4,
}

/// A decoded page word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageWord(pub u64);

const KIND_MASK: u64 = 0x7;
const ORDER_SHIFT: u32 = 3;
/// Hot byte: the cold word is non-zero.
const HOT_COLD: u8 = 0x80;
/// The bits of a [`PageWord`] kept in the hot byte.
const HOT_MASK: u64 = 0x7f;
/// The cold word is the page word shifted down by this.
const COLD_SHIFT: u32 = 8;
const MT_SHIFT: u32 = 8;
const COMPOUND: u64 = 1 << 11;
const PFMEMALLOC: u64 = 1 << 12;
const AUX_SHIFT: u32 = 32;
const OWNER_SHIFT: u32 = 16;
const OWNER_MASK: u64 = 0xfff << OWNER_SHIFT;
/// Raw kinds 5..=7 are guarded allocated words: CPU `(kind - 5) * 4 + bits 5..7`,
/// order in bits 3..5.
const GUARDED_KIND: u64 = 5;
const GUARDED_CPU_SHIFT: u32 = 5;
const GUARDED_MAX_ORDER: u8 = 3;
/// The kind and CPU bits of a guarded word.
const GUARD_MASK: u64 = KIND_MASK | (3 << GUARDED_CPU_SHIFT);
/// CPUs whose allocations can be guarded by their pcp lock (see the module docs).
pub const MAX_GUARD_CPUS: usize = 12;

/// Who owns an allocated block (the kernel's page type / `slab` pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A page-allocator user (`alloc_pages`).
    Pages,
    /// A large kmalloc (> 8 KiB), freed by `kfree`.
    LargeKmalloc,
    /// Backing a vmalloc area, freed by `vfree`.
    Vmalloc,
    /// A slab of the cache with this id.
    Slab(u16),
}

/// Most slab caches a machine can hold.
pub const MAX_CACHES: usize = 0xfff - 3;

impl PageWord {
    pub const NONE: PageWord = PageWord(0);

    /// A block parked on a pcp list: kind and order only, so parking it writes just
    /// the hot byte. The list it is on says the rest.
    #[inline]
    pub const fn pcp(order: u8) -> PageWord {
        PageWord::new(PageKind::Pcp, order, MigrateType::Unmovable, 0)
    }

    /// The hot byte of this word (without the cold bit).
    #[inline]
    const fn hot(self) -> u8 {
        (self.0 & HOT_MASK) as u8
    }

    /// The cold word of this word.
    #[inline]
    const fn cold(self) -> u64 {
        self.0 >> COLD_SHIFT
    }

    #[inline]
    pub const fn new(kind: PageKind, order: u8, mt: MigrateType, aux: u32) -> PageWord {
        PageWord(
            kind as u64
                | ((order as u64) << ORDER_SHIFT)
                | ((mt as u64) << MT_SHIFT)
                | ((aux as u64) << AUX_SHIFT),
        )
    }
    /// The hot-byte bits that name CPU `cpu` as a block's guard (kind and CPU bits),
    /// or 0 if the CPU is beyond the guarded encoding. Computed once per CPU.
    pub const fn guard_bits(cpu: usize) -> u8 {
        if cpu < MAX_GUARD_CPUS {
            (GUARDED_KIND as u8 + (cpu / 4) as u8) | (((cpu % 4) as u8) << GUARDED_CPU_SHIFT)
        } else {
            0
        }
    }

    /// An allocated block of `order` made under the pcp lock of the CPU whose
    /// [`PageWord::guard_bits`] are `guard`: guarded by that lock (see the module docs)
    /// when the order fits the guarded encoding and `guard` is not 0, else a plain
    /// allocated word, claimed by compare-and-swap.
    #[inline(always)]
    pub const fn alloc_guarded(order: u8, mt: MigrateType, guard: u8) -> PageWord {
        if order <= GUARDED_MAX_ORDER && guard != 0 {
            PageWord(guard as u64 | ((order as u64) << ORDER_SHIFT) | ((mt as u64) << MT_SHIFT))
        } else {
            PageWord::new(PageKind::Alloc, order, mt, 0)
        }
    }

    /// Whether this word is guarded by the CPU whose guard bits are `guard`.
    #[inline(always)]
    pub const fn guarded_by(self, guard: u8) -> bool {
        guard != 0 && (self.0 & GUARD_MASK) as u8 == guard
    }

    #[inline]
    pub const fn kind(self) -> PageKind {
        match self.0 & KIND_MASK {
            1 => PageKind::Buddy,
            2 => PageKind::Pcp,
            3 | 5 | 6 | 7 => PageKind::Alloc,
            4 => PageKind::Freeing,
            _ => PageKind::None,
        }
    }
    #[inline]
    pub const fn order(self) -> u8 {
        if self.0 & KIND_MASK >= GUARDED_KIND {
            ((self.0 >> ORDER_SHIFT) & GUARDED_MAX_ORDER as u64) as u8
        } else {
            ((self.0 >> ORDER_SHIFT) & 0xf) as u8
        }
    }
    /// The CPU whose pcp lock guards this allocated block's word, if it is guarded.
    #[inline]
    pub const fn guard_cpu(self) -> Option<usize> {
        let k = self.0 & KIND_MASK;
        if k >= GUARDED_KIND {
            Some(((k - GUARDED_KIND) * 4 + ((self.0 >> GUARDED_CPU_SHIFT) & 3)) as usize)
        } else {
            None
        }
    }
    #[inline]
    pub const fn mt(self) -> MigrateType {
        MigrateType::from_u8(((self.0 >> MT_SHIFT) & 0x7) as u8)
    }
    #[inline]
    pub const fn aux(self) -> u32 {
        (self.0 >> AUX_SHIFT) as u32
    }
    #[inline]
    pub const fn owner(self) -> Owner {
        match (self.0 & OWNER_MASK) >> OWNER_SHIFT {
            0 => Owner::Pages,
            1 => Owner::LargeKmalloc,
            2 => Owner::Vmalloc,
            n => Owner::Slab((n - 3) as u16),
        }
    }
    #[inline]
    #[must_use]
    pub const fn with_owner(self, o: Owner) -> PageWord {
        let v = match o {
            Owner::Pages => 0,
            Owner::LargeKmalloc => 1,
            Owner::Vmalloc => 2,
            Owner::Slab(id) => id as u64 + 3,
        };
        PageWord((self.0 & !OWNER_MASK) | (v << OWNER_SHIFT))
    }
    #[inline]
    pub const fn compound(self) -> bool {
        self.0 & COMPOUND != 0
    }
    #[inline]
    pub const fn pfmemalloc(self) -> bool {
        self.0 & PFMEMALLOC != 0
    }
    #[inline]
    #[must_use]
    pub const fn with_compound(self, on: bool) -> PageWord {
        if on {
            PageWord(self.0 | COMPOUND)
        } else {
            PageWord(self.0 & !COMPOUND)
        }
    }
    #[inline]
    #[must_use]
    pub const fn with_pfmemalloc(self, on: bool) -> PageWord {
        if on {
            PageWord(self.0 | PFMEMALLOC)
        } else {
            PageWord(self.0 & !PFMEMALLOC)
        }
    }
    #[inline]
    #[must_use]
    pub const fn with_kind(self, kind: PageKind) -> PageWord {
        // Rebuilt from the decoded order, so a guarded word becomes a plain one.
        PageWord((self.0 & !HOT_MASK) | kind as u64 | ((self.order() as u64) << ORDER_SHIFT))
    }
    #[inline]
    #[must_use]
    pub const fn with_aux(self, aux: u32) -> PageWord {
        PageWord((self.0 & ((1 << AUX_SHIFT) - 1)) | ((aux as u64) << AUX_SHIFT))
    }
}

/// The state of every page frame and every pageblock of the machine.
pub struct PageMap {
    /// Hot byte per page (see the module doc).
    hot: Vec<AtomicU8>,
    /// Cold word per page, meaningful only where the hot byte's cold bit is set.
    cold: Vec<AtomicU64>,
    /// Each pageblock's zone and migratetype, side by side: a free reads both with
    /// one bounds check from one cache line.
    pageblocks: Vec<Pageblock>,
}

/// One pageblock's state.
struct Pageblock {
    /// Index of the zone (in `Machine::zones`) the pageblock belongs to; [`NO_ZONE`]
    /// where no zone spans it. Fixed at boot.
    zone: u16,
    /// The pageblock's migratetype (the kernel's 4-bit pageblock flags).
    mt: AtomicU8,
}

/// One page's state, bounds-checked once: a hot path reads, claims and re-parks a
/// page through one reference instead of indexing the map at every step.
#[derive(Clone, Copy)]
pub struct PageRef<'a> {
    map: &'a PageMap,
    i: usize,
    hot: &'a AtomicU8,
}

impl PageRef<'_> {
    #[inline(always)]
    pub fn pfn(self) -> Pfn {
        self.i as Pfn
    }
    /// [`PageMap::get`].
    #[inline(always)]
    pub fn get(self) -> PageWord {
        self.map.word(self.i, self.hot.load(Ordering::Acquire))
    }
    /// [`PageMap::set`].
    #[inline(always)]
    pub fn set(self, w: PageWord) {
        let h = self.map.store_cold(self.i, w);
        self.hot.store(h, Ordering::Release);
    }
    /// [`PageMap::cas`].
    #[inline(always)]
    pub fn cas(self, old: PageWord, new: PageWord) -> Result<PageWord, PageWord> {
        debug_assert_eq!(old.cold(), new.cold(), "cas may change only the hot byte");
        let cold_bit = if old.cold() == 0 { 0 } else { HOT_COLD };
        match self.hot.compare_exchange(
            old.hot() | cold_bit,
            new.hot() | cold_bit,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) if cold_bit == 0 => Ok(old),
            Ok(h) => Ok(self.map.word(self.i, h)),
            Err(h) => Err(self.map.word(self.i, h)),
        }
    }
}

pub const NO_ZONE: u16 = u16::MAX;

impl PageMap {
    /// A map for `nr_pages` frames, all zero: no page is free until the machine frees it.
    pub fn new(nr_pages: u64, pageblock_zone: Vec<u16>) -> PageMap {
        let nr_blocks = nr_pages.div_ceil(PAGEBLOCK_NR_PAGES) as usize;
        debug_assert_eq!(pageblock_zone.len(), nr_blocks);
        let pageblocks = pageblock_zone
            .into_iter()
            .map(|zone| Pageblock {
                zone,
                mt: AtomicU8::new(MigrateType::Movable as u8),
            })
            .collect();
        PageMap {
            hot: bytemuck::zeroed_vec(nr_pages as usize),
            cold: bytemuck::zeroed_vec(nr_pages as usize),
            pageblocks,
        }
    }

    #[inline]
    pub fn nr_pages(&self) -> u64 {
        self.hot.len() as u64
    }

    #[inline]
    pub fn get(&self, pfn: Pfn) -> PageWord {
        self.word(pfn as usize, self.hot[pfn as usize].load(Ordering::Acquire))
    }

    /// A reference to page `pfn`'s state, `None` beyond the end of memory.
    #[inline(always)]
    pub fn page(&self, pfn: Pfn) -> Option<PageRef<'_>> {
        let i = usize::try_from(pfn).ok()?;
        Some(PageRef {
            map: self,
            i,
            hot: self.hot.get(i)?,
        })
    }

    /// [`PageMap::get`] for a pfn that may be beyond the end of memory.
    #[inline]
    pub fn try_get(&self, pfn: Pfn) -> Option<PageWord> {
        let i = usize::try_from(pfn).ok()?;
        let h = self.hot.get(i)?.load(Ordering::Acquire);
        Some(self.word(i, h))
    }

    /// The word for hot byte `h` of page `i`: the cold word is loaded only if `h`
    /// says it is non-zero.
    #[inline(always)]
    fn word(&self, i: usize, h: u8) -> PageWord {
        if h & HOT_COLD == 0 {
            PageWord(h as u64)
        } else {
            let c = self.cold[i].load(Ordering::Relaxed);
            PageWord((h & !HOT_COLD) as u64 | c << COLD_SHIFT)
        }
    }

    /// The hot byte `w` stores, writing its cold word first if that is non-zero.
    #[inline(always)]
    fn store_cold(&self, i: usize, w: PageWord) -> u8 {
        let c = w.cold();
        if c == 0 {
            w.hot()
        } else {
            self.cold[i].store(c, Ordering::Relaxed);
            w.hot() | HOT_COLD
        }
    }

    /// Plain store: only for pages whose owner holds the lock that guards them (a zone
    /// lock for buddy pages, the CPU's lock for pcp pages).
    #[inline(always)]
    pub fn set(&self, pfn: Pfn, w: PageWord) {
        let i = pfn as usize;
        let h = self.store_cold(i, w);
        self.hot[i].store(h, Ordering::Release);
    }

    /// Swap `old` for `new` only if the page still holds `old`: a compare-and-swap of
    /// the hot byte. `old` and `new` must have the same cold word (they differ in kind
    /// or order: the claim of a block being freed), so the cold word is not part of
    /// the comparison. On success the word as it was swapped out is returned, with its
    /// cold word read after the swap made the caller the page's owner.
    #[inline]
    pub fn cas(&self, pfn: Pfn, old: PageWord, new: PageWord) -> Result<PageWord, PageWord> {
        debug_assert_eq!(old.cold(), new.cold(), "cas may change only the hot byte");
        let i = pfn as usize;
        let cold_bit = if old.cold() == 0 { 0 } else { HOT_COLD };
        match self.hot[i].compare_exchange(
            old.hot() | cold_bit,
            new.hot() | cold_bit,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) if cold_bit == 0 => Ok(old),
            Ok(h) => Ok(self.word(i, h)),
            Err(h) => Err(self.word(i, h)),
        }
    }

    #[inline]
    pub fn pageblock_mt(&self, pfn: Pfn) -> MigrateType {
        MigrateType::from_u8(
            self.pageblocks[(pfn >> PAGEBLOCK_ORDER) as usize]
                .mt
                .load(Ordering::Relaxed),
        )
    }

    /// Change a pageblock's type. Callers hold the zone lock.
    #[inline]
    pub fn set_pageblock_mt(&self, pfn: Pfn, mt: MigrateType) {
        self.pageblocks[(pfn >> PAGEBLOCK_ORDER) as usize]
            .mt
            .store(mt as u8, Ordering::Relaxed);
    }

    /// The zone index of the pageblock holding `pfn`, if any zone spans it.
    #[inline]
    pub fn zone_of(&self, pfn: Pfn) -> Option<usize> {
        match self.pageblocks.get((pfn >> PAGEBLOCK_ORDER) as usize) {
            Some(b) if b.zone != NO_ZONE => Some(b.zone as usize),
            _ => None,
        }
    }

    /// [`PageMap::zone_of`] and [`PageMap::pageblock_mt`] with one lookup.
    #[inline(always)]
    pub fn zone_and_mt(&self, pfn: Pfn) -> Option<(usize, MigrateType)> {
        match self.pageblocks.get((pfn >> PAGEBLOCK_ORDER) as usize) {
            Some(b) if b.zone != NO_ZONE => Some((
                b.zone as usize,
                MigrateType::from_u8(b.mt.load(Ordering::Relaxed)),
            )),
            _ => None,
        }
    }

    /// Host bytes spent on page state (for the "16 bytes per page" budget).
    pub fn host_bytes(&self) -> usize {
        self.hot.len()
            + self.cold.len() * 8
            + self.pageblocks.len() * std::mem::size_of::<Pageblock>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trip() {
        let w = PageWord::new(PageKind::Buddy, 10, MigrateType::Reclaimable, 123_456)
            .with_compound(true);
        assert_eq!(w.kind(), PageKind::Buddy);
        assert_eq!(w.order(), 10);
        assert_eq!(w.mt(), MigrateType::Reclaimable);
        assert_eq!(w.aux(), 123_456);
        assert!(w.compound());
        assert!(!w.pfmemalloc());
        let w2 = w.with_aux(7).with_kind(PageKind::Alloc);
        assert_eq!(w2.aux(), 7);
        assert_eq!(w2.kind(), PageKind::Alloc);
        assert_eq!(w2.order(), 10);
        assert_eq!(PageWord::NONE.kind(), PageKind::None);
        let s = w2.with_owner(Owner::Slab(4000));
        assert_eq!(s.owner(), Owner::Slab(4000));
        assert_eq!(s.aux(), 7);
        assert_eq!(s.order(), 10);
        assert_eq!(s.with_owner(Owner::Pages).owner(), Owner::Pages);
    }

    #[test]
    fn hot_byte_and_cold_word() {
        let map = PageMap::new(1024, vec![0; 2]);
        // A plain allocation lives in the hot byte alone: the cold word is never written.
        let plain = PageWord::new(PageKind::Alloc, 3, MigrateType::Unmovable, 0);
        map.set(8, plain);
        assert_eq!(map.get(8), plain);
        assert_eq!(map.cold[8].load(Ordering::Relaxed), 0);
        assert_eq!(map.hot[8].load(Ordering::Relaxed) & HOT_COLD, 0);
        // Anything beyond kind and order goes to the cold word, announced by the bit.
        let rich = PageWord::new(PageKind::Buddy, 10, MigrateType::Movable, 77)
            .with_owner(Owner::Slab(12))
            .with_compound(true);
        map.set(16, rich);
        assert_eq!(map.get(16), rich);
        assert_eq!(map.try_get(16), Some(rich));
        assert_ne!(map.hot[16].load(Ordering::Relaxed) & HOT_COLD, 0);
        // A later plain word hides the stale cold word without rewriting it.
        map.set(16, PageWord::pcp(10));
        assert_eq!(map.get(16), PageWord::pcp(10));
        assert_ne!(map.cold[16].load(Ordering::Relaxed), 0);
        assert_eq!(map.try_get(1024), None);
    }

    #[test]
    fn cas_swaps_the_hot_byte_and_keeps_the_cold_word() {
        let map = PageMap::new(64, vec![0; 1]);
        let charged = PageWord::new(PageKind::Alloc, 2, MigrateType::Unmovable, 5);
        map.set(4, charged);
        let freeing = charged.with_kind(PageKind::Freeing);
        assert_eq!(map.cas(4, charged, freeing), Ok(charged));
        assert_eq!(map.get(4), freeing);
        // A second claim of the same block fails and reports what is there now.
        assert_eq!(map.cas(4, charged, freeing), Err(freeing));
        // Plain words: the comparison covers the whole word.
        let plain = PageWord::new(PageKind::Alloc, 0, MigrateType::Unmovable, 0);
        map.set(5, plain);
        let wrong_order = PageWord::new(PageKind::Alloc, 1, MigrateType::Unmovable, 0);
        assert_eq!(
            map.cas(5, wrong_order, wrong_order.with_kind(PageKind::Freeing)),
            Err(plain)
        );
        assert_eq!(
            map.cas(5, plain, plain.with_kind(PageKind::Freeing)),
            Ok(plain)
        );
    }

    #[test]
    fn page_state_budget() {
        // 9 bytes per page plus 3 per 512-page block: under the 16-byte budget.
        let map = PageMap::new(1 << 20, vec![0; 2048]);
        assert!(map.host_bytes() as u64 <= 16 * map.nr_pages());
        assert_eq!(map.pageblock_mt(0), MigrateType::Movable);
    }

    #[test]
    fn page_ref_reads_claims_and_sets_one_page() {
        let map = PageMap::new(1024, vec![0, NO_ZONE]);
        assert!(map.page(1024).is_none(), "beyond the end");
        let p = map.page(7).unwrap();
        assert_eq!(p.pfn(), 7);
        let w = PageWord::new(PageKind::Alloc, 1, MigrateType::Movable, 3);
        p.set(w);
        assert_eq!((p.get(), map.get(7)), (w, w));
        let freeing = w.with_kind(PageKind::Freeing);
        assert_eq!(p.cas(w, freeing), Ok(w));
        assert_eq!(p.cas(w, freeing), Err(freeing), "a second claim fails");
        assert_eq!(map.zone_and_mt(7), Some((0, MigrateType::Movable)));
        assert_eq!(map.zone_and_mt(512), None, "no zone spans block 1");
        map.set_pageblock_mt(0, MigrateType::Unmovable);
        assert_eq!(map.zone_and_mt(511), Some((0, MigrateType::Unmovable)));
    }

    #[test]
    fn guarded_words_name_their_cpu_and_decode_like_plain_ones() {
        for cpu in 0..MAX_GUARD_CPUS {
            let g = PageWord::guard_bits(cpu);
            assert_ne!(g, 0);
            for order in 0..=GUARDED_MAX_ORDER {
                for mt in [MigrateType::Unmovable, MigrateType::Movable] {
                    let w = PageWord::alloc_guarded(order, mt, g);
                    assert_eq!((w.kind(), w.order(), w.mt()), (PageKind::Alloc, order, mt));
                    assert_eq!(w.guard_cpu(), Some(cpu));
                    assert!(w.guarded_by(g));
                    assert!(
                        (0..MAX_GUARD_CPUS)
                            .filter(|&o| o != cpu)
                            .all(|o| !w.guarded_by(PageWord::guard_bits(o))),
                        "one guard per word"
                    );
                    assert_eq!(w.hot() & HOT_COLD, 0, "the cold bit stays free");
                    // Owner and charge live in the cold word and keep the guard.
                    let charged = w.with_owner(Owner::LargeKmalloc).with_aux(9);
                    assert_eq!((charged.guard_cpu(), charged.order()), (Some(cpu), order));
                    // A claim makes it a plain word of the same order.
                    let f = w.with_kind(PageKind::Freeing);
                    assert_eq!(
                        (f.kind(), f.order(), f.guard_cpu()),
                        (PageKind::Freeing, order, None)
                    );
                    assert_eq!(f.mt(), mt);
                }
            }
            // Orders the pcp does not keep are never guarded.
            let big = PageWord::alloc_guarded(4, MigrateType::Unmovable, g);
            assert_eq!((big.guard_cpu(), big.order()), (None, 4));
        }
        assert_eq!(PageWord::guard_bits(MAX_GUARD_CPUS), 0);
        let plain = PageWord::alloc_guarded(0, MigrateType::Unmovable, 0);
        assert_eq!(
            plain,
            PageWord::new(PageKind::Alloc, 0, MigrateType::Unmovable, 0)
        );
        assert!(!plain.guarded_by(0), "guard 0 guards nothing");
        // A guarded word survives the map's hot byte and cold word.
        let map = PageMap::new(512, vec![0]);
        let w =
            PageWord::alloc_guarded(2, MigrateType::Movable, PageWord::guard_bits(11)).with_aux(5);
        map.set(3, w);
        assert_eq!(map.get(3), w);
    }
}
