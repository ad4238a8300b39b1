//! The kmalloc family (include/linux/slab.h, mm/slab_common.c, mm/slub.c).
//!
//! Modelled rules: 13 size classes 8 … 8192 including 96 and 192, per type
//! (`kmalloc-*`, `kmalloc-rcl-*` for `__GFP_RECLAIMABLE`, `dma-kmalloc-*` for
//! `__GFP_DMA`, `kmalloc-cg-*` for `__GFP_ACCOUNT`); `__GFP_DMA32`/`__GFP_HIGHMEM` are
//! stripped with the kernel's "Fix your code!" warning; above 8 KiB a large kmalloc of
//! compound pages, above 4 MiB a failure; `kmalloc(0)` is `ZERO_SIZE_PTR`.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::memcg::CgroupId;
use crate::page::{Owner, PageKind, MAX_ORDER, PAGE_SIZE};
use crate::percpu::CpuLocal;
use crate::slab::layout::get_order;
use crate::slab::slub::FastFree;
use crate::slab::{
    phys_to_virt, CacheArgs, CacheId, KmemCache, SlabError, SlabFlags, PAGE_OFFSET, ZERO_SIZE_PTR,
};

/// `KMALLOC_MAX_CACHE_SIZE`: above this, kmalloc goes to the page allocator.
pub const KMALLOC_MAX_CACHE_SIZE: u64 = 8192;
/// `KMALLOC_MAX_SIZE`: 2^(MAX_PAGE_ORDER + PAGE_SHIFT).
pub const KMALLOC_MAX_SIZE: u64 = PAGE_SIZE << MAX_ORDER;

/// The size classes, in the kernel's creation order (96 and 192 first).
pub const KMALLOC_SIZES: [u32; 13] = [
    96, 192, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

/// `enum kmalloc_cache_type` (without the random copies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KmallocType {
    Normal = 0,
    Reclaim = 1,
    Dma = 2,
    Cgroup = 3,
}

impl KmallocType {
    pub const ALL: [KmallocType; 4] = [
        KmallocType::Normal,
        KmallocType::Reclaim,
        KmallocType::Dma,
        KmallocType::Cgroup,
    ];

    /// `kmalloc_type`: DMA wins, then RECLAIMABLE over ACCOUNT.
    pub fn of(gfp: Gfp) -> KmallocType {
        if gfp.contains(Gfp::DMA) {
            KmallocType::Dma
        } else if gfp.contains(Gfp::RECLAIMABLE) {
            KmallocType::Reclaim
        } else if gfp.contains(Gfp::ACCOUNT) {
            KmallocType::Cgroup
        } else {
            KmallocType::Normal
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KmallocType::Normal => "kmalloc-",
            KmallocType::Reclaim => "kmalloc-rcl-",
            KmallocType::Dma => "dma-kmalloc-",
            KmallocType::Cgroup => "kmalloc-cg-",
        }
    }

    fn flags(self) -> SlabFlags {
        match self {
            // With MEMCG the plain caches are never merged into.
            KmallocType::Normal => SlabFlags::NO_MERGE,
            KmallocType::Reclaim => SlabFlags::RECLAIM_ACCOUNT,
            KmallocType::Dma => SlabFlags::CACHE_DMA,
            KmallocType::Cgroup => SlabFlags::ACCOUNT,
        }
    }
}

/// Class index (into [`KMALLOC_SIZES`]) of sizes 1..=192 by (size - 1) / 8, the
/// kernel's `size_index` table.
const SMALL_CLASS: [u8; 24] = [
    2, 3, 4, 4, 5, 5, 5, 5, 0, 0, 0, 0, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1,
];

/// `kmalloc_index`: the class for `size` (1..=8192) as an index into [`KMALLOC_SIZES`].
#[inline]
pub fn kmalloc_class(size: u64) -> Option<usize> {
    match size {
        0 => None,
        1..=192 => Some(SMALL_CLASS[((size - 1) / 8) as usize] as usize),
        s if s <= KMALLOC_MAX_CACHE_SIZE => {
            // 256 is 2^8 at index 7, …, 8192 = 2^13 at index 12.
            let shift = 64 - (s - 1).leading_zeros() as usize;
            Some(shift - 1)
        }
        _ => None,
    }
}

/// `kmalloc_size_roundup`.
pub fn kmalloc_size_roundup(size: u64) -> u64 {
    match size {
        0 => 0,
        s if s <= KMALLOC_MAX_CACHE_SIZE => {
            KMALLOC_SIZES[kmalloc_class(s).expect("in range")] as u64
        }
        s if s <= KMALLOC_MAX_SIZE => PAGE_SIZE << get_order(s),
        s => s,
    }
}

/// What a kmalloc returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KmallocObj {
    pub addr: u64,
    /// The cache that served it (`None` for a large kmalloc or ZERO_SIZE_PTR); its
    /// name is [`Machine::cache_name`].
    pub cache: Option<CacheId>,
    /// `ksize`: usable bytes.
    pub ksize: u64,
    /// Page order of a large kmalloc.
    pub order: Option<u8>,
}

impl KmallocObj {
    /// An object of slab cache `c`.
    #[inline(always)]
    pub(crate) fn slab(addr: u64, c: &KmemCache) -> KmallocObj {
        KmallocObj {
            addr,
            cache: Some(CacheId(c.id)),
            ksize: c.ksize,
            order: None,
        }
    }
}

/// Mask bits kmalloc may not get (`GFP_SLAB_BUG_MASK`).
const SLAB_BUG_MASK: u32 = Gfp::DMA32.0 | Gfp::HIGHMEM.0;

impl Machine {
    /// Create the kmalloc caches at boot, in the kernel's order.
    pub(crate) fn create_kmalloc_caches(&mut self) {
        let mut ids = [[CacheId(0); 13]; 4];
        for t in KmallocType::ALL {
            for (k, &size) in KMALLOC_SIZES.iter().enumerate() {
                let name = format!("{}{}", t.prefix(), size_name(size));
                // kmalloc caches align to the largest power of two dividing the size.
                let align = 1u32 << size.trailing_zeros();
                let flags = self.slab_debug_flags(&name, t.flags().with(SlabFlags::KMALLOC));
                let id = self
                    .create_cache(
                        &name,
                        size,
                        CacheArgs {
                            align,
                            flags,
                            useroffset: 0,
                            usersize: size,
                            ctor: None,
                        },
                    )
                    .expect("kmalloc caches always fit");
                ids[t as usize][k] = id;
            }
        }
        self.kmalloc_caches = ids;
    }

    /// The cache `kmalloc(size, gfp)` would use.
    pub fn kmalloc_cache(&self, size: u64, gfp: Gfp) -> Option<CacheId> {
        let k = kmalloc_class(size)?;
        Some(self.kmalloc_caches[KmallocType::of(gfp) as usize][k])
    }

    /// `kmalloc_fix_flags`.
    fn fix_kmalloc_flags(&self, gfp: Gfp) -> Gfp {
        if gfp.0 & SLAB_BUG_MASK == 0 {
            return gfp;
        }
        let fixed = Gfp(gfp.0 & !SLAB_BUG_MASK);
        self.kmalloc_fixups.fetch_add(1, Relaxed);
        self.log.warn(format!(
            "Unexpected gfp: {:#x} ({}). Fixing up to gfp: {:#x} ({}). Fix your code!",
            gfp.0 & SLAB_BUG_MASK,
            Gfp(gfp.0 & SLAB_BUG_MASK),
            fixed.0,
            fixed
        ));
        fixed
    }

    /// `kmalloc(size, gfp)`.
    #[inline]
    pub fn kmalloc(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        match self.kmalloc_fast(size, gfp, ctx, None) {
            Some((addr, c)) => Ok(KmallocObj::slab(addr, c)),
            None => self.kmalloc_general(size, gfp, ctx),
        }
    }

    /// kmalloc's fast path: a size with a cache, flags that need no fix-up or
    /// zeroing, a non-debug cache and an object on the CPU's freelist; an accounted
    /// object takes its bytes from the CPU's object stock and is recorded in its
    /// slab's cgroup slots, as the general path does. The scope is irrelevant here: it
    /// only strips IO/FS/MOVABLE, which matter when a new slab is allocated (the
    /// general path). Anything else, errors included, takes the general path, which
    /// checks everything in full. Returns the object and its cache: two registers.
    ///
    /// `held` is the context CPU's local state when the caller already holds its lock
    /// (a [`crate::PinnedCpu`]).
    #[inline(always)]
    pub(crate) fn kmalloc_fast(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
        held: Option<&mut CpuLocal>,
    ) -> Option<(u64, &KmemCache)> {
        if gfp.0 & (SLAB_BUG_MASK | Gfp::ZERO.0) != 0 || self.cfg.init_on_alloc {
            return None;
        }
        let k = kmalloc_class(size)?;
        let id = self.kmalloc_caches[KmallocType::of(gfp) as usize][k];
        let c = self.caches.get(id.0)?;
        Some((self.obj_alloc_fast(c, gfp, ctx, held)?, c))
    }

    /// `kmem_cache_alloc`'s fast path: the same as kmalloc's once the cache is known,
    /// for a cache that is neither debugged nor destroyed.
    #[inline(always)]
    pub(crate) fn cache_alloc_fast(
        &self,
        id: CacheId,
        gfp: Gfp,
        ctx: &AllocContext,
        held: Option<&mut CpuLocal>,
    ) -> Option<u64> {
        if gfp.0 & Gfp::ZERO.0 != 0 || self.cfg.init_on_alloc {
            return None;
        }
        let c = self.caches.get(id.0)?;
        if c.destroyed.load(Relaxed) {
            return None;
        }
        self.obj_alloc_fast(c, gfp, ctx, held)
    }

    /// The part of the allocation fast paths after the cache is known: a non-debug
    /// cache, the memcg charge the general path would make, the CPU freelist pop.
    #[inline(always)]
    fn obj_alloc_fast(
        &self,
        c: &KmemCache,
        gfp: Gfp,
        ctx: &AllocContext,
        held: Option<&mut CpuLocal>,
    ) -> Option<u64> {
        if !c.fast {
            return None;
        }
        let charge = ctx.cgroup.filter(|&cg| {
            cg != CgroupId::ROOT
                && (gfp.contains(Gfp::ACCOUNT) || c.flags.contains(SlabFlags::ACCOUNT))
        });
        let cpu = self.fast_cpu(ctx)?;
        match held {
            Some(l) => self.slab_alloc_fast_in(l, c, ctx.node, charge),
            None => self.slab_alloc_fast(c, cpu, ctx.node, charge),
        }
    }

    #[inline(never)]
    fn kmalloc_general(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        let gfp = self.fix_kmalloc_flags(ctx.scope.apply(gfp));
        if size == 0 {
            return Ok(KmallocObj {
                addr: ZERO_SIZE_PTR,
                cache: None,
                ksize: 0,
                order: None,
            });
        }
        if size > KMALLOC_MAX_CACHE_SIZE {
            return self.kmalloc_large(size, gfp, ctx);
        }
        let id = self.kmalloc_cache(size, gfp).expect("size in range");
        let addr = self.kmem_cache_alloc(id, gfp, ctx)?;
        let c = self.caches.get(id.0).expect("kmalloc cache");
        Ok(KmallocObj {
            addr,
            cache: Some(id),
            ksize: c.slab_ksize(),
            order: None,
        })
    }

    /// `kmalloc_node`.
    pub fn kmalloc_node(
        &self,
        size: u64,
        gfp: Gfp,
        node: u16,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        let mut c = ctx.clone();
        c.node = Some(node);
        self.kmalloc(size, gfp, &c)
    }

    /// `kzalloc`.
    pub fn kzalloc(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        self.kmalloc(size, gfp.with(Gfp::ZERO), ctx)
    }

    /// `kmalloc_array`: fails (never wraps) when n × size overflows.
    pub fn kmalloc_array(
        &self,
        n: u64,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        let total = n
            .checked_mul(size)
            .ok_or(SlabError::TooLarge { size: u64::MAX })?;
        self.kmalloc(total, gfp, ctx)
    }

    /// `kcalloc`.
    pub fn kcalloc(
        &self,
        n: u64,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        self.kmalloc_array(n, size, gfp.with(Gfp::ZERO), ctx)
    }

    /// `kmemdup`: a kmalloc'd copy of `data`.
    pub fn kmemdup(
        &self,
        data: &[u8],
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        let o = self.kmalloc(data.len() as u64, gfp, ctx)?;
        if !data.is_empty() {
            self.write_virt(o.addr, data);
        }
        Ok(o)
    }

    fn kmalloc_large(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            if !gfp.contains(Gfp::NOWARN) {
                self.log.warn(format!(
                    "WARNING: kmalloc of {size} bytes exceeds KMALLOC_MAX_SIZE"
                ));
            }
            return Err(SlabError::TooLarge { size });
        }
        let order = get_order(size);
        // With __GFP_ACCOUNT the pages are charged like any accounted page
        // allocation ("kernel" in memory.stat) and uncharged when kfree'd.
        let b = self.alloc_pages(gfp.with(Gfp::COMP), order, ctx)?;
        let w = self.pages().get(b.pfn);
        self.pages().set(b.pfn, w.with_owner(Owner::LargeKmalloc));
        self.large_kmalloc_pages[b.node as usize].fetch_add(1 << order, Relaxed);
        Ok(KmallocObj {
            addr: phys_to_virt(b.phys_addr()),
            cache: None,
            ksize: PAGE_SIZE << order,
            order: Some(order),
        })
    }

    /// kfree's fast path: an object start in the CPU's active slab of a non-debug
    /// cache (a charged object is uncharged as on the general path). `None` for
    /// anything else, including every error (a double free found here too): the
    /// general path then resolves and reports it in full. Nothing changes on `None`.
    #[inline(always)]
    ///
    /// `cache` is the cache `kmem_cache_free` names: an object of any other cache is
    /// left to the general path, which reports the mismatch.
    pub(crate) fn kfree_fast(
        &self,
        addr: u64,
        cache: Option<CacheId>,
        ctx: &AllocContext,
        held: Option<&mut CpuLocal>,
    ) -> Option<()> {
        let pfn = addr.checked_sub(PAGE_OFFSET)? / PAGE_SIZE;
        // The head page itself first (every order-0 slab), then the general search.
        let w = self.pages().try_get(pfn)?;
        let (head, w) = if w.kind() == PageKind::Alloc {
            (pfn, w)
        } else {
            self.block_containing(pfn)?
        };
        let Owner::Slab(id) = w.owner() else {
            return None;
        };
        if cache.is_some_and(|c| c.0 != id) {
            return None;
        }
        if w.kind() != PageKind::Alloc {
            return None;
        }
        let c = self.caches.get(id)?;
        if !c.fast {
            return None;
        }
        let off = addr.checked_sub(c.obj_addr(head, 0))?;
        let index = c.obj_index(off);
        let size = c.layout.size as u64;
        if index as u64 * size != off || off + size > PAGE_SIZE << w.order() {
            return None;
        }
        let cpu = self.fast_cpu(ctx)?;
        let freed = match held {
            Some(l) => self.slab_free_fast_in(l, c, w.aux(), head, index, cpu),
            None => self.slab_free_fast(c, w.aux(), head, index, cpu),
        };
        (freed == FastFree::Done).then_some(())
    }

    /// `kfree`: NULL and ZERO_SIZE_PTR are no-ops; the cache or page order is found
    /// from the address.
    #[inline]
    pub fn kfree(&self, addr: u64, ctx: &AllocContext) -> Result<(), SlabError> {
        match self.kfree_fast(addr, None, ctx, None) {
            Some(()) => Ok(()),
            None => self.kfree_general(addr, ctx),
        }
    }

    #[inline(never)]
    fn kfree_general(&self, addr: u64, ctx: &AllocContext) -> Result<(), SlabError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(());
        }
        let (head, w) = self.resolve_block(addr)?;
        match w.owner() {
            Owner::Slab(_) => {
                let o = self.obj_ref_in(addr, head, w)?;
                self.kfree_object(addr, o, ctx)
            }
            Owner::LargeKmalloc => {
                if phys_to_virt(head * PAGE_SIZE) != addr {
                    return Err(SlabError::InvalidFree {
                        addr,
                        why: "inside a large kmalloc, not its start".into(),
                    });
                }
                let order = w.order();
                self.pages().set(head, w.with_owner(Owner::Pages));
                let cpu = self.resolve_cpu(ctx)?;
                if let Err(e) = self.free_owned_pages(head, order, cpu) {
                    self.pages().set(head, w);
                    return Err(SlabError::InvalidFree {
                        addr,
                        why: e.to_string(),
                    });
                }
                let node = self
                    .pages()
                    .zone_of(head)
                    .map_or(0, |z| self.zones[z].node as usize);
                self.large_kmalloc_pages[node].fetch_sub(1 << order, Relaxed);
                Ok(())
            }
            Owner::Pages | Owner::Vmalloc => Err(SlabError::InvalidFree {
                addr,
                why: "not a slab object or large kmalloc (a page allocation)".into(),
            }),
        }
    }

    /// The large kmalloc block holding `addr`, if that is what it is.
    fn large_kmalloc_at(&self, addr: u64) -> Result<Option<(u64, u8)>, SlabError> {
        if addr < PAGE_OFFSET {
            return Err(SlabError::InvalidFree {
                addr,
                why: "not a kernel direct-map address".into(),
            });
        }
        let pfn = (addr - PAGE_OFFSET) / PAGE_SIZE;
        if pfn >= self.pages().nr_pages() {
            return Err(SlabError::InvalidFree {
                addr,
                why: "beyond the end of memory".into(),
            });
        }
        Ok(match self.block_containing(pfn) {
            Some((head, w)) if w.kind() == PageKind::Alloc && w.owner() == Owner::LargeKmalloc => {
                Some((head, w.order()))
            }
            _ => None,
        })
    }

    /// `ksize`: the usable size of a kmalloc'd or cache object.
    pub fn ksize(&self, addr: u64) -> Result<u64, SlabError> {
        if addr == ZERO_SIZE_PTR {
            return Ok(0);
        }
        if let Some((head, order)) = self.large_kmalloc_at(addr)? {
            return Ok((PAGE_SIZE << order) - (addr - phys_to_virt(head * PAGE_SIZE)));
        }
        let o = self.obj_ref(addr)?;
        let c = self.caches.get(o.cache).expect("resolved");
        Ok(c.slab_ksize())
    }

    /// `krealloc`: reuses the object when it is big enough, else moves the contents to
    /// a new one; `krealloc(p, 0)` frees and returns ZERO_SIZE_PTR.
    pub fn krealloc(
        &self,
        addr: u64,
        new_size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KmallocObj, SlabError> {
        if new_size == 0 {
            self.kfree(addr, ctx)?;
            return Ok(KmallocObj {
                addr: ZERO_SIZE_PTR,
                cache: None,
                ksize: 0,
                order: None,
            });
        }
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return self.kmalloc(new_size, gfp, ctx);
        }
        let ks = self.ksize(addr)?;
        if new_size <= ks {
            if gfp.contains(Gfp::ZERO) {
                self.zero_virt(addr + new_size, ks - new_size);
            }
            let cache = self.obj_ref(addr).ok().map(|o| CacheId(o.cache));
            return Ok(KmallocObj {
                addr,
                cache,
                ksize: ks,
                order: None,
            });
        }
        let n = self.kmalloc(new_size, gfp, ctx)?;
        let old = self.read_virt(addr, ks as usize);
        self.write_virt(n.addr, &old);
        self.kfree(addr, ctx)?;
        Ok(n)
    }

    /// `kfree_sensitive`: zero the whole usable size, then free.
    pub fn kfree_sensitive(&self, addr: u64, ctx: &AllocContext) -> Result<(), SlabError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(());
        }
        let ks = self.ksize(addr)?;
        self.zero_virt(addr, ks);
        self.kfree(addr, ctx)
    }
}

/// `kmalloc-1k` style names.
fn size_name(size: u32) -> String {
    if size >= 1024 {
        format!("{}k", size / 1024)
    } else {
        size.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        let class = |s| KMALLOC_SIZES[kmalloc_class(s).unwrap()];
        for (s, c) in [
            (1, 8),
            (8, 8),
            (9, 16),
            (24, 32),
            (33, 64),
            (64, 64),
            (65, 96),
            (72, 96),
            (96, 96),
            (97, 128),
            (136, 192),
            (192, 192),
            (193, 256),
            (1000, 1024),
            (4097, 8192),
            (8192, 8192),
        ] {
            assert_eq!(class(s), c, "kmalloc({s})");
        }
        assert_eq!(kmalloc_class(0), None);
        assert_eq!(kmalloc_class(8193), None);
        assert_eq!(get_order(8193), 2);
        assert_eq!(kmalloc_size_roundup(8193), 16384);
        assert_eq!(kmalloc_size_roundup(100), 128);
        assert_eq!(kmalloc_size_roundup(5 << 20), 5 << 20);
    }

    #[test]
    fn types_from_flags() {
        assert_eq!(KmallocType::of(Gfp::GFP_KERNEL), KmallocType::Normal);
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT),
            KmallocType::Cgroup
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL_ACCOUNT | Gfp::RECLAIMABLE),
            KmallocType::Reclaim
        );
        assert_eq!(
            KmallocType::of(Gfp::GFP_KERNEL | Gfp::DMA | Gfp::RECLAIMABLE),
            KmallocType::Dma
        );
        assert_eq!(size_name(1024), "1k");
        assert_eq!(size_name(96), "96");
    }
}
