//! Cache object entry points, object bytes and usercopy checks, and the visible state
//! (`/proc/slabinfo`, `/sys/kernel/slab/<cache>/`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::{CacheId, KmemCache, SlabError, SlabFlags, PAGE_OFFSET};
use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::memcg::CgroupId;
use crate::page::{Owner, PageKind, PAGE_SIZE};

impl KmemCache {
    /// `slab_ksize`: what `ksize` may hand out.
    pub fn slab_ksize(&self) -> u64 {
        if self
            .flags
            .intersects(SlabFlags(SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0))
        {
            self.layout.object_size as u64
        } else if self.flags.contains(SlabFlags::STORE_USER) {
            self.layout.inuse as u64
        } else {
            self.layout.size as u64
        }
    }
}

impl Machine {
    /// `kmem_cache_alloc(cache, gfp)`.
    pub fn kmem_cache_alloc(
        &self,
        id: CacheId,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<u64, SlabError> {
        if let Some(addr) = self.cache_alloc_fast(id, gfp, ctx, None) {
            return Ok(addr);
        }
        self.kmem_cache_alloc_general(id, gfp, ctx)
    }

    #[inline(never)]
    fn kmem_cache_alloc_general(
        &self,
        id: CacheId,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<u64, SlabError> {
        let c = self.live_cache(id)?;
        let gfp = ctx.scope.apply(gfp);
        let addr = loop {
            let addr = self.slab_alloc(c, gfp, ctx)?;
            // A debug cache checks the object first; a corrupted one is quarantined.
            if !c.debug() || self.debug_on_alloc(c, addr, ctx).is_ok() {
                break addr;
            }
        };
        if let Err(e) = self.memcg_slab_post_alloc(c, addr, gfp, ctx) {
            let _ = self.kmem_cache_free(id, addr, ctx);
            return Err(e);
        }
        if gfp.contains(Gfp::ZERO) || self.cfg.init_on_alloc {
            self.zero_virt(addr, c.layout.object_size as u64);
        }
        Ok(addr)
    }

    /// `memcg_slab_post_alloc_hook`: objects of SLAB_ACCOUNT caches, or allocated with
    /// `__GFP_ACCOUNT`, are charged `obj_full_size` bytes to the context's cgroup.
    #[inline]
    fn memcg_slab_post_alloc(
        &self,
        c: &KmemCache,
        addr: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        let Some(cg) = ctx.cgroup.filter(|c| *c != crate::memcg::CgroupId::ROOT) else {
            return Ok(());
        };
        if !c.flags.contains(SlabFlags::ACCOUNT) && !gfp.contains(Gfp::ACCOUNT) {
            return Ok(());
        }
        let cpu = self.resolve_cpu(ctx)?;
        let o = self
            .obj_ref(addr)
            .expect("a just allocated object resolves");
        self.memcgs
            .charge_obj(cpu, obj_bytes(c, cg), gfp, ctx)
            .map_err(|e| SlabError::NoMemory(e.into()))?;
        self.obj_exts(c).set(o.slab, o.index, cg);
        Ok(())
    }

    /// The cache's cgroup records, made on first use.
    pub(crate) fn obj_exts<'c>(&self, c: &'c KmemCache) -> &'c super::obj_exts::ObjExts {
        c.obj_exts.get_or_init(|| {
            let min_order = c.layout.min_order.min(c.layout.order);
            super::obj_exts::ObjExts::new(
                self.pages().nr_pages() >> min_order,
                c.layout.objects.max(c.layout.min_objects),
            )
        })
    }

    /// `memcg_slab_free_hook`: uncharge what a freed object was charged (its record
    /// was taken when the free was admitted).
    #[inline]
    pub(crate) fn memcg_slab_free(&self, c: &KmemCache, cg: CgroupId, ctx: &AllocContext) {
        let cpu = self.resolve_cpu(ctx).unwrap_or(0);
        self.memcgs.uncharge_obj(cpu, obj_bytes(c, cg));
    }

    /// `kmem_cache_alloc_node`.
    pub fn kmem_cache_alloc_node(
        &self,
        id: CacheId,
        gfp: Gfp,
        node: u16,
        ctx: &AllocContext,
    ) -> Result<u64, SlabError> {
        let mut c = ctx.clone();
        c.node = Some(node);
        self.kmem_cache_alloc(id, gfp, &c)
    }

    /// `kmem_cache_zalloc`.
    pub fn kmem_cache_zalloc(
        &self,
        id: CacheId,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<u64, SlabError> {
        self.kmem_cache_alloc(id, gfp.with(Gfp::ZERO), ctx)
    }

    /// `kmem_cache_alloc_bulk`: all or nothing, as the kernel's.
    pub fn kmem_cache_alloc_bulk(
        &self,
        id: CacheId,
        gfp: Gfp,
        n: usize,
        ctx: &AllocContext,
    ) -> Result<Vec<u64>, SlabError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            match self.kmem_cache_alloc(id, gfp, ctx) {
                Ok(a) => v.push(a),
                Err(e) => {
                    for a in v {
                        let _ = self.kmem_cache_free(id, a, ctx);
                    }
                    return Err(e);
                }
            }
        }
        Ok(v)
    }

    /// `kmem_cache_free_bulk`: every address is checked first, so a bad one frees
    /// nothing.
    pub fn kmem_cache_free_bulk(
        &self,
        id: CacheId,
        addrs: &[u64],
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        for &a in addrs {
            self.check_free(id, a)?;
        }
        for &a in addrs {
            self.kmem_cache_free(id, a, ctx)?;
        }
        Ok(())
    }

    fn live_cache(&self, id: CacheId) -> Result<&KmemCache, SlabError> {
        let c = self.cache(id)?;
        if c.destroyed.load(Relaxed) {
            return Err(SlabError::Destroyed(c.name.clone()));
        }
        Ok(c)
    }

    fn check_free(&self, id: CacheId, addr: u64) -> Result<super::ObjRef, SlabError> {
        let given = self.cache(id)?;
        let o = self.obj_ref(addr)?;
        let actual = self.caches.get(o.cache).expect("resolved");
        if o.cache != id.0 {
            return Err(SlabError::WrongCache {
                given: given.name.clone(),
                actual: actual.name.clone(),
                addr,
            });
        }
        Self::check_start(actual, o, addr)?;
        Ok(o)
    }

    fn check_start(c: &KmemCache, o: super::ObjRef, addr: u64) -> Result<(), SlabError> {
        if o.delta != 0 {
            return Err(SlabError::InvalidFree {
                addr,
                why: format!(
                    "{} bytes into an object of {}, not its start",
                    o.delta, c.name
                ),
            });
        }
        Ok(())
    }

    /// Free an object that `kfree` resolved (no cache was named).
    pub(crate) fn kfree_object(
        &self,
        addr: u64,
        o: super::ObjRef,
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        let c = self.caches.get(o.cache).expect("resolved");
        Self::check_start(c, o, addr)?;
        self.cache_free(c, o, addr, ctx)
    }

    /// `kmem_cache_free(cache, addr)`: the address must be an object start of this
    /// cache; a double free, a free to the wrong cache or of a non-object is an error
    /// and changes nothing.
    pub fn kmem_cache_free(
        &self,
        id: CacheId,
        addr: u64,
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        if self.kfree_fast(addr, Some(id), ctx, None).is_some() {
            return Ok(());
        }
        let o = self.check_free(id, addr)?;
        let c = self.caches.get(o.cache).expect("resolved");
        self.cache_free(c, o, addr, ctx)
    }

    fn cache_free(
        &self,
        c: &KmemCache,
        o: super::ObjRef,
        addr: u64,
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        if c.debug() {
            if self.object_is_free(c, o) {
                self.report_double_free(c, addr);
                return Err(SlabError::DoubleFree {
                    cache: c.name.clone(),
                    addr,
                });
            }
            if c.dbg.lock().quarantine.contains(&addr) {
                return Err(SlabError::InvalidFree {
                    addr,
                    why: "the object is quarantined after corruption".into(),
                });
            }
            self.debug_on_free(c, addr)?;
            self.debug_after_free(c, addr, ctx);
        }
        if let Some(cg) = self.slab_free(c, o, ctx)? {
            self.memcg_slab_free(c, cg, ctx);
        }
        if self.cfg.init_on_free && !c.flags.contains(SlabFlags::POISON) {
            self.zero_virt(addr, c.layout.object_size as u64);
        }
        Ok(())
    }

    // ---- object bytes -------------------------------------------------------------

    fn virt_pfn(addr: u64) -> (u64, usize) {
        let phys = addr - PAGE_OFFSET;
        (phys / PAGE_SIZE, (phys % PAGE_SIZE) as usize)
    }

    /// Write bytes at a direct-map address (no checks: callers checked the range).
    pub(crate) fn write_virt(&self, addr: u64, data: &[u8]) {
        let mut off = 0;
        while off < data.len() {
            let (pfn, in_page) = Self::virt_pfn(addr + off as u64);
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - off);
            self.content.write(pfn, in_page, &data[off..off + n]);
            off += n;
        }
    }

    pub(crate) fn read_virt(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut off = 0;
        while off < len {
            let (pfn, in_page) = Self::virt_pfn(addr + off as u64);
            let n = (PAGE_SIZE as usize - in_page).min(len - off);
            self.content.read(pfn, in_page, &mut out[off..off + n]);
            off += n;
        }
        out
    }

    /// Zero bytes, spending no host memory on pages that hold none.
    pub(crate) fn zero_virt(&self, addr: u64, len: u64) {
        let mut off = 0u64;
        while off < len {
            let (pfn, in_page) = Self::virt_pfn(addr + off);
            let n = (PAGE_SIZE - in_page as u64).min(len - off);
            if self.content.has_bytes(pfn) {
                self.content.write(pfn, in_page, &vec![0u8; n as usize]);
            }
            off += n;
        }
    }

    pub(crate) fn fill_virt(&self, addr: u64, len: u64, byte: u8) {
        if byte == 0 {
            return self.zero_virt(addr, len);
        }
        self.write_virt(addr, &vec![byte; len as usize]);
    }

    /// The span a user copy may touch at `addr` (`check_heap_object`): for a slab
    /// object the cache's usercopy window, for a large kmalloc or page block the block.
    fn usercopy_check(&self, addr: u64, len: u64, what: &'static str) -> Result<(), SlabError> {
        let bad = |why: &str| SlabError::InvalidFree {
            addr,
            why: why.to_string(),
        };
        if crate::vmalloc::is_vmalloc_addr(addr) {
            // check_heap_object for vmalloc: the copy must stay inside one area.
            return match self.find_vm_area(addr) {
                Some(a)
                    if addr
                        .checked_add(len)
                        .is_some_and(|e| e <= a.start + a.usable()) =>
                {
                    Ok(())
                }
                Some(a) => Err(SlabError::Usercopy {
                    cache: "vmalloc".into(),
                    what,
                    offset: addr - a.start,
                    len,
                    window: format!("area of {} bytes", a.usable()),
                }),
                None => Err(bad("no vmalloc area there")),
            };
        }
        if addr < PAGE_OFFSET || addr.checked_add(len).is_none() {
            return Err(bad("not a kernel direct-map address"));
        }
        let pfn = (addr - PAGE_OFFSET) / PAGE_SIZE;
        if pfn >= self.pages().nr_pages() {
            return Err(bad("beyond the end of memory"));
        }
        let Some((head, w)) = self
            .block_containing(pfn)
            .filter(|(_, w)| w.kind() == PageKind::Alloc)
        else {
            return Err(bad("not allocated memory"));
        };
        match w.owner() {
            Owner::Slab(_) => {
                let o = self.obj_ref(addr)?;
                let c = self.caches.get(o.cache).expect("resolved");
                let (uo, us) = (c.useroffset as u64, c.usersize as u64);
                // Hardened usercopy: the copy must lie inside one object's window.
                let off = o.delta;
                if us == 0 || off < uo || off - uo > us || len > uo + us - off {
                    return Err(SlabError::Usercopy {
                        cache: c.name.clone(),
                        what,
                        offset: off,
                        len,
                        window: if us == 0 {
                            "no usercopy window".into()
                        } else {
                            format!("window {uo}..{}", uo + us)
                        },
                    });
                }
                Ok(())
            }
            _ => {
                let end = PAGE_OFFSET + (head + (1 << w.order())) * PAGE_SIZE;
                if addr + len > end {
                    return Err(SlabError::Usercopy {
                        cache: "page".into(),
                        what,
                        offset: addr - PAGE_OFFSET - head * PAGE_SIZE,
                        len,
                        window: format!("block of {} bytes", PAGE_SIZE << w.order()),
                    });
                }
                Ok(())
            }
        }
    }

    /// `copy_from_user(addr, data)`: write `data` into kernel memory at `addr`.
    pub fn copy_from_user(&self, addr: u64, data: &[u8]) -> Result<(), SlabError> {
        self.usercopy_check(addr, data.len() as u64, "copy_from_user")?;
        if crate::vmalloc::is_vmalloc_addr(addr) {
            return self.vwrite(addr, data).map_err(|e| SlabError::InvalidFree {
                addr,
                why: e.to_string(),
            });
        }
        self.write_virt(addr, data);
        Ok(())
    }

    /// `copy_to_user(addr, len)`: read `len` bytes of kernel memory at `addr`.
    pub fn copy_to_user(&self, addr: u64, len: u64) -> Result<Vec<u8>, SlabError> {
        self.usercopy_check(addr, len, "copy_to_user")?;
        if crate::vmalloc::is_vmalloc_addr(addr) {
            return self
                .vread(addr, len as usize)
                .map_err(|e| SlabError::InvalidFree {
                    addr,
                    why: e.to_string(),
                });
        }
        Ok(self.read_virt(addr, len as usize))
    }

    // ---- visible state ------------------------------------------------------------

    /// Per-cache numbers (`/sys/kernel/slab/<cache>/`).
    pub fn cache_info(&self, id: CacheId) -> Result<CacheInfo, SlabError> {
        let c = self.cache(id)?;
        Ok(self.info_of(c))
    }

    fn info_of(&self, c: &KmemCache) -> CacheInfo {
        let t = c.slabs.lock();
        let partial: u64 = t.node_partial.iter().map(|l| l.len() as u64).sum();
        let free = t.partial_free_objects();
        let (nr_slabs, objects) = (t.nr_slabs, t.total_objects);
        drop(t);
        let (mut cpu_slabs, mut fast) = (0, [0u64; 3]);
        for cpu in 0..self.nr_cpus() {
            let cs = self.cpu_slab(c, cpu);
            cpu_slabs += cs.active.is_some() as u64 + cs.partial.len() as u64;
            fast[0] += cs.alloc_fastpath;
            fast[1] += cs.free_fastpath;
            fast[2] += cs.free_slow_done;
        }
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        CacheInfo {
            name: c.name.clone(),
            aliases: c.aliases.lock().clone(),
            object_size: c.layout.object_size,
            slab_size: c.layout.size,
            align: c.layout.align,
            order: c.layout.order,
            objs_per_slab: c.layout.objects,
            objects,
            active_objects: objects - free,
            slabs: nr_slabs,
            partial,
            cpu_slabs,
            min_partial: c.min_partial,
            cpu_partial: c.cpu_partial_objects,
            reclaim_account: c.flags.contains(SlabFlags::RECLAIM_ACCOUNT),
            flags: format!("{:?}", c.flags),
            alloc_fastpath: fast[0],
            alloc_slowpath: g(&c.stats.alloc_slowpath),
            free_fastpath: fast[1],
            free_slowpath: g(&c.stats.free_slowpath),
            alloc_slab: g(&c.stats.alloc_slab),
            free_slab: g(&c.stats.free_slab),
            order_fallback: g(&c.stats.order_fallback),
            alloc_node_mismatch: g(&c.stats.alloc_node_mismatch),
            alloc_total: fast[0] + g(&c.stats.alloc_slowpath),
            free_total: fast[1] + fast[2],
            destroyed: c.destroyed.load(Relaxed),
        }
    }

    /// Every listed cache, newest first (the `/proc/slabinfo` order).
    pub fn caches_info(&self) -> Vec<CacheInfo> {
        self.caches
            .ids()
            .into_iter()
            .rev()
            .filter_map(|id| self.caches.get(id))
            .map(|c| self.info_of(c))
            .collect()
    }

    /// `/proc/slabinfo`, version 2.1 as SLUB prints it.
    pub fn slabinfo(&self) -> String {
        let mut s = String::from("slabinfo - version: 2.1\n");
        s.push_str("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n");
        for i in self.caches_info() {
            let _ = writeln!(
                s,
                "{:<17} {:6} {:6} {:6} {:4} {:4} : tunables {:4} {:4} {:4} : slabdata {:6} {:6} {:6}",
                i.name, i.active_objects, i.objects, i.slab_size, i.objs_per_slab, 1u32 << i.order, 0, 0, 0, i.slabs, i.slabs, 0
            );
        }
        s
    }
}

/// A cache's state, as `/sys/kernel/slab/<cache>/` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CacheInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub object_size: u32,
    pub slab_size: u32,
    pub align: u32,
    pub order: u8,
    pub objs_per_slab: u32,
    pub objects: u64,
    pub active_objects: u64,
    pub slabs: u64,
    pub partial: u64,
    pub cpu_slabs: u64,
    pub min_partial: u32,
    pub cpu_partial: u32,
    pub reclaim_account: bool,
    pub flags: String,
    pub alloc_fastpath: u64,
    pub alloc_slowpath: u64,
    pub free_fastpath: u64,
    pub free_slowpath: u64,
    pub alloc_slab: u64,
    pub free_slab: u64,
    pub order_fallback: u64,
    /// CPU slabs given up for a request naming another node.
    pub alloc_node_mismatch: u64,
    pub alloc_total: u64,
    pub free_total: u64,
    pub destroyed: bool,
}

impl Machine {
    /// A readable name for a block's owner, for error messages.
    pub(crate) fn owner_name(&self, o: Owner) -> String {
        match o {
            Owner::Pages => "the page allocator".into(),
            Owner::LargeKmalloc => "a large kmalloc".into(),
            Owner::Vmalloc => "a vmalloc area".into(),
            Owner::Slab(id) => match self.caches.get(id) {
                Some(c) => format!("slab cache {}", c.name),
                None => format!("slab cache #{id}"),
            },
        }
    }
}

/// What one object of `c` charged to `cg` costs.
#[inline]
pub(crate) fn obj_bytes(c: &KmemCache, cg: CgroupId) -> crate::memcg::ObjBytes {
    crate::memcg::ObjBytes {
        cg,
        bytes: crate::memcg::obj_full_size(c.layout.size),
        item: slab_item(c),
    }
}

fn slab_item(c: &KmemCache) -> crate::memcg::StatItem {
    if c.flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
        crate::memcg::StatItem::SlabReclaimable
    } else {
        crate::memcg::StatItem::SlabUnreclaimable
    }
}
