//! SLUB's allocation and free paths.
//!
//! Each CPU owns an *active* slab whose free objects it holds privately (the kernel's
//! lockless per-CPU freelist) and a list of per-CPU partial slabs; every slab not
//! active on a CPU keeps its own free objects, and node partial lists hold slabs with
//! free objects. A cache's per-CPU state lives in the CPU's local state
//! ([`crate::percpu`], one lock per simulated CPU for every cache and the object
//! stock). Lock order: the CPU's local lock, then the cache's slab table
//! (`list_lock`), then the page allocator's locks.
//!
//! The fast paths ([`Machine::slab_alloc_fast`], [`Machine::slab_free_fast`]) take
//! the CPU's lock once and touch nothing else shared; everything else takes the
//! general paths below.
//!
//! Frees are checked exactly: every object's state is known (on its slab's freelist, on
//! the owning CPU's freelist, or allocated), so a double free or a free of a non-object
//! is an error instead of corruption (the kernel only notices with slab_debug).

use std::sync::atomic::Ordering::Relaxed;

use super::{KmemCache, ObjRef, SlabError, SlabFlags, PAGE_OFFSET};
use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::memcg::CgroupId;
use crate::page::{Owner, PageKind, PageWord, Pfn, PAGE_SIZE};
use crate::percpu::{CpuLocal, CpuSlabGuard};

/// What [`Machine::slab_free_fast`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FastFree {
    /// Freed (and uncharged, if it was charged).
    Done,
    DoubleFree,
    /// Not the fast case: take the general path.
    Miss,
}

/// Take the cgroup record of an object whose free was just admitted, before the
/// object can be allocated again (callers hold the lock that admitted it).
#[inline(always)]
fn take_objcg(c: &KmemCache, slab: u32, index: u32) -> Option<CgroupId> {
    c.obj_exts.get()?.take(slab, index)
}

/// `node_match`: a request naming a node is served from the CPU slab only if that
/// slab is on the node (every simulated node has memory, so the kernel's exception for
/// memoryless nodes never applies).
#[inline(always)]
fn node_match(cs: &CpuSlab, node: Option<u16>) -> bool {
    node.is_none_or(|n| cs.active.is_none() || cs.active_node == n)
}

/// Where a slab is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabState {
    /// A CPU's active slab: its free objects are on that CPU's freelist (plus any
    /// freed remotely since, on the slab's own list).
    Active(u16),
    /// On a CPU's partial list.
    CpuPartial(u16),
    /// On its node's partial list.
    NodePartial,
    /// No free objects, on no list.
    Full,
    /// Empty, waiting for an RCU grace period before its pages are freed.
    RcuPending,
}

/// One slab.
#[derive(Clone, Debug)]
pub struct Slab {
    pub pfn: Pfn,
    pub order: u8,
    pub node: u16,
    pub objects: u32,
    /// Free objects on the slab's own freelist.
    pub free: Vec<u32>,
    /// Bit per object: on `free`.
    pub free_bits: Vec<u64>,
    pub state: SlabState,
}

impl Slab {
    fn bit(bits: &[u64], i: u32) -> bool {
        bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    fn set(bits: &mut [u64], i: u32, on: bool) {
        if on {
            bits[(i / 64) as usize] |= 1 << (i % 64);
        } else {
            bits[(i / 64) as usize] &= !(1 << (i % 64));
        }
    }
    pub fn is_free(&self, i: u32) -> bool {
        Self::bit(&self.free_bits, i)
    }
}

/// A cache's slabs and node partial lists.
pub struct SlabTable {
    pub slabs: Vec<Option<Slab>>,
    free_ids: Vec<u32>,
    pub node_partial: Vec<Vec<u32>>,
    pub nr_slabs: u64,
    pub nr_pages: u64,
    pub total_objects: u64,
    pub rcu_pending: Vec<u32>,
}

impl SlabTable {
    pub fn new(nodes: usize) -> Self {
        SlabTable {
            slabs: Vec::new(),
            free_ids: Vec::new(),
            node_partial: vec![Vec::new(); nodes],
            nr_slabs: 0,
            nr_pages: 0,
            total_objects: 0,
            rcu_pending: Vec::new(),
        }
    }
    fn slab(&mut self, id: u32) -> &mut Slab {
        self.slabs[id as usize].as_mut().expect("live slab id")
    }
    fn insert(&mut self, s: Slab) -> u32 {
        self.nr_slabs += 1;
        self.nr_pages += 1 << s.order;
        self.total_objects += s.objects as u64;
        match self.free_ids.pop() {
            Some(id) => {
                self.slabs[id as usize] = Some(s);
                id
            }
            None => {
                self.slabs.push(Some(s));
                (self.slabs.len() - 1) as u32
            }
        }
    }
    fn remove(&mut self, id: u32) -> Slab {
        let s = self.slabs[id as usize].take().expect("live slab id");
        self.free_ids.push(id);
        self.nr_slabs -= 1;
        self.nr_pages -= 1 << s.order;
        self.total_objects -= s.objects as u64;
        s
    }
    fn unlink_partial(&mut self, id: u32, node: u16) {
        let l = &mut self.node_partial[node as usize];
        if let Some(p) = l.iter().position(|&x| x == id) {
            l.swap_remove(p);
        }
    }
    /// Free objects on node partial slabs (`count_partial(n, count_free)`).
    pub fn partial_free_objects(&self) -> u64 {
        self.node_partial
            .iter()
            .flatten()
            .map(|&id| {
                self.slabs[id as usize]
                    .as_ref()
                    .map_or(0, |s| s.free.len() as u64)
            })
            .sum()
    }
}

/// A CPU's view of one cache (`struct kmem_cache_cpu`).
#[derive(Default, Debug)]
pub struct CpuSlab {
    pub active: Option<u32>,
    pub active_pfn: Pfn,
    /// Node of the active slab (`slab_nid`), for `node_match`.
    pub active_node: u16,
    /// Free objects of the active slab, owned by this CPU.
    pub freelist: Vec<u32>,
    pub bits: Vec<u64>,
    /// Per-CPU partial slabs.
    pub partial: Vec<u32>,
    /// Objects other CPUs freed into the active slab's own list since it was taken;
    /// while 0 the fast free path needs no lock beyond this CPU's.
    pub remote: u32,
    pub alloc_fastpath: u64,
    pub free_fastpath: u64,
    /// Frees that took the slow path and succeeded (the total is this plus
    /// `free_fastpath`; allocations need no such count: every one is either a fast
    /// pop or counted in the cache's `alloc_slowpath`).
    pub free_slow_done: u64,
}

impl Machine {
    /// The allocated block holding a direct-map address (`virt_to_folio`).
    pub(crate) fn resolve_block(&self, addr: u64) -> Result<(Pfn, PageWord), SlabError> {
        let invalid = |why: &str| SlabError::InvalidFree {
            addr,
            why: why.into(),
        };
        if addr < PAGE_OFFSET {
            return Err(invalid("not a kernel direct-map address"));
        }
        let pfn = (addr - PAGE_OFFSET) / PAGE_SIZE;
        if pfn >= self.pages().nr_pages() {
            return Err(invalid("beyond the end of memory"));
        }
        let Some((head, w)) = self.block_containing(pfn) else {
            return Err(invalid("not inside any allocated block"));
        };
        if w.kind() != PageKind::Alloc {
            return Err(invalid("inside a free block"));
        }
        Ok((head, w))
    }

    /// Resolve an address to (cache, slab, object): `virt_to_slab` + object index.
    pub(crate) fn obj_ref(&self, addr: u64) -> Result<ObjRef, SlabError> {
        let (head, w) = self.resolve_block(addr)?;
        self.obj_ref_in(addr, head, w)
    }

    /// [`Machine::obj_ref`] for an already resolved block.
    #[inline]
    pub(crate) fn obj_ref_in(
        &self,
        addr: u64,
        head: Pfn,
        w: PageWord,
    ) -> Result<ObjRef, SlabError> {
        let invalid = |why: &str| SlabError::InvalidFree {
            addr,
            why: why.into(),
        };
        let Owner::Slab(cache) = w.owner() else {
            return Err(invalid("not a slab object"));
        };
        let c = self
            .caches
            .get(cache)
            .ok_or_else(|| invalid("unknown cache"))?;
        let base = c.obj_addr(head, 0);
        if addr < base {
            return Err(invalid("inside the slab's left red zone"));
        }
        let off = addr - base;
        let slab_bytes = PAGE_SIZE << w.order();
        if off >= slab_bytes {
            return Err(invalid("in the slab's unused tail"));
        }
        let size = c.layout.size;
        let index = c.obj_index(off);
        if (index as u64 + 1) * size as u64 > slab_bytes {
            return Err(invalid("in the slab's unused tail"));
        }
        Ok(ObjRef {
            cache,
            slab: w.aux(),
            slab_pfn: head,
            index,
            delta: (off as u32 - index * size) as u64,
        })
    }

    /// CPU `cpu`'s local state, locked, as cache `c`'s `kmem_cache_cpu`.
    #[inline(always)]
    pub(crate) fn cpu_slab(&self, c: &KmemCache, cpu: usize) -> CpuSlabGuard<'_> {
        CpuSlabGuard::new(&self.cpu_locals[cpu], c.id)
    }

    /// The allocation fast path (`slab_alloc_node`'s lockless case): pop the CPU's
    /// freelist and, for an accounted object, take its bytes from the CPU's object
    /// stock and record the owner, all under the CPU's one lock. `None` when the
    /// freelist is empty or the stock does not already hold the bytes for that cgroup
    /// (`consume_obj_stock` failing); the caller then takes the general path, which
    /// refills the stock (charging pages, and reporting a limit) and starts with the
    /// same pop. Nothing changes on `None`.
    #[inline(always)]
    pub(crate) fn slab_alloc_fast(
        &self,
        c: &KmemCache,
        cpu: usize,
        node: Option<u16>,
        charge: Option<CgroupId>,
    ) -> Option<u64> {
        let mut g = self.cpu_locals[cpu].lock();
        self.slab_alloc_fast_in(&mut g, c, node, charge)
    }

    /// [`Machine::slab_alloc_fast`] with CPU `cpu`'s local lock already held.
    #[inline(always)]
    pub(crate) fn slab_alloc_fast_in(
        &self,
        local: &mut CpuLocal,
        c: &KmemCache,
        node: Option<u16>,
        charge: Option<CgroupId>,
    ) -> Option<u64> {
        let (cs, stock) = local.parts(c.id);
        if cs.freelist.is_empty() || !node_match(cs, node) {
            return None;
        }
        if let Some(cg) = charge {
            let o = super::objects::obj_bytes(c, cg);
            if !self.memcgs.consume_obj_stock(stock, o) {
                return None;
            }
        }
        let i = cs.freelist.pop().expect("not empty");
        Slab::set(&mut cs.bits, i, false);
        let slab = cs
            .active
            .expect("a CPU with free objects has an active slab");
        if let Some(cg) = charge {
            self.obj_exts(c).set(slab, i, cg);
        }
        cs.alloc_fastpath += 1;
        Some(c.obj_addr(cs.active_pfn, i))
    }

    /// The free fast path (`do_slab_free`'s lockless case): the object belongs to the
    /// CPU's active slab and no other CPU freed into that slab since it was taken, so
    /// the CPU's bitmap alone says whether it is already free; a charged object is
    /// uncharged into the CPU's object stock under the same lock. [`FastFree::Miss`]
    /// sends the caller to [`Machine::slab_free`], which decides with the slab table.
    /// Scalars in, a byte out: no struct goes through memory on the hot path.
    #[inline(always)]
    pub(crate) fn slab_free_fast(
        &self,
        c: &KmemCache,
        slab: u32,
        slab_pfn: Pfn,
        index: u32,
        cpu: usize,
    ) -> FastFree {
        let mut g = self.cpu_locals[cpu].lock();
        self.slab_free_fast_in(&mut g, c, slab, slab_pfn, index, cpu)
    }

    /// [`Machine::slab_free_fast`] with CPU `cpu`'s local lock already held.
    #[inline(always)]
    pub(crate) fn slab_free_fast_in(
        &self,
        local: &mut CpuLocal,
        c: &KmemCache,
        slab: u32,
        slab_pfn: Pfn,
        index: u32,
        cpu: usize,
    ) -> FastFree {
        let (cs, stock) = local.parts(c.id);
        if cs.active != Some(slab) || cs.active_pfn != slab_pfn || cs.remote > 0 {
            return FastFree::Miss;
        }
        if Slab::bit(&cs.bits, index) {
            return FastFree::DoubleFree;
        }
        let cg = take_objcg(c, slab, index);
        Slab::set(&mut cs.bits, index, true);
        cs.freelist.push(index);
        cs.free_fastpath += 1;
        if let Some(cg) = cg {
            let o = super::objects::obj_bytes(c, cg);
            self.memcgs.uncharge_obj_stock(stock, cpu, o);
        }
        FastFree::Done
    }

    /// `slab_alloc_node`.
    pub(crate) fn slab_alloc(
        &self,
        c: &KmemCache,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<u64, SlabError> {
        let cpu = self.resolve_cpu(ctx)?;
        let mut cs = self.cpu_slab(c, cpu);
        if node_match(&cs, ctx.node) {
            if let Some(i) = cs.freelist.pop() {
                Slab::set(&mut cs.bits, i, false);
                cs.alloc_fastpath += 1;
                return Ok(c.obj_addr(cs.active_pfn, i));
            }
        }
        c.stats.alloc_slowpath.fetch_add(1, Relaxed);
        let node = ctx.node.unwrap_or(self.cpus[cpu].node);
        loop {
            let mut t = c.slabs.lock();
            // `node_match` failed: the CPU slab goes back to its node and a slab of
            // the named node takes its place (`deactivate_slab`).
            if !node_match(&cs, ctx.node) {
                c.stats.alloc_node_mismatch.fetch_add(1, Relaxed);
                self.deactivate_cpu_slab(c, &mut cs, &mut t, cpu);
            }
            // Objects freed remotely into the active slab.
            if let Some(id) = cs.active {
                let s = t.slab(id);
                if !s.free.is_empty() {
                    let taken = std::mem::take(&mut s.free);
                    for &i in &taken {
                        Slab::set(&mut s.free_bits, i, false);
                        Slab::set(&mut cs.bits, i, true);
                    }
                    cs.freelist.extend(taken.iter().rev());
                    cs.remote = 0;
                    drop(t);
                    let i = cs.freelist.pop().expect("just filled");
                    Slab::set(&mut cs.bits, i, false);
                    return Ok(c.obj_addr(cs.active_pfn, i));
                }
                t.slab(id).state = SlabState::Full;
                cs.active = None;
            }
            // Per-CPU partial (of the named node, if any), then the node's partial list,
            // then any node's.
            let cpu_partial = match ctx.node {
                None => cs.partial.pop(),
                Some(n) => {
                    let at = cs.partial.iter().rposition(|&id| t.slab(id).node == n);
                    at.map(|i| cs.partial.remove(i))
                }
            };
            let next = if let Some(id) = cpu_partial {
                c.stats.cpu_partial_alloc.fetch_add(1, Relaxed);
                Some(id)
            } else {
                // `get_partial`: the node's own list, then (`get_any_partial`, unless
                // __GFP_THISNODE) another node's, but only one holding more than
                // min_partial slabs, so a node is not drained of its last few.
                let nodes = self.nr_nodes();
                let thisnode = gfp.contains(Gfp::THISNODE);
                let pick = (0..nodes).map(|k| (node as usize + k) % nodes).find(|&n| {
                    let len = t.node_partial[n].len();
                    if n == node as usize {
                        len > 0
                    } else {
                        !thisnode && len as u32 > c.min_partial
                    }
                });
                pick.map(|n| {
                    let id = t.node_partial[n].pop().expect("non-empty");
                    // Also refill the CPU partial list up to half its budget.
                    while (cs.partial.len() as u32) < c.cpu_partial_slabs / 2 {
                        let Some(more) = t.node_partial[n].pop() else {
                            break;
                        };
                        t.slab(more).state = SlabState::CpuPartial(cpu as u16);
                        cs.partial.push(more);
                    }
                    id
                })
            };
            if let Some(id) = next {
                self.activate(&mut cs, &mut t, id, cpu);
                drop(t);
                let i = cs.freelist.pop().expect("a partial slab has free objects");
                Slab::set(&mut cs.bits, i, false);
                return Ok(c.obj_addr(cs.active_pfn, i));
            }
            drop(t);
            // Allocate the slab holding no slab lock: the page allocator may wait
            // (__GFP_NOFAIL) and other users of this CPU must be able to free meanwhile.
            drop(cs);
            let id = self.new_slab(c, gfp, node, ctx)?;
            cs = self.cpu_slab(c, cpu);
            let mut t = c.slabs.lock();
            if cs.active.is_none() && cs.freelist.is_empty() {
                self.activate(&mut cs, &mut t, id, cpu);
            } else {
                // Someone refilled this CPU meanwhile: the new slab joins the node list.
                let s = t.slab(id);
                s.state = SlabState::NodePartial;
                let n = s.node as usize;
                t.node_partial[n].push(id);
            }
            drop(t);
            if let Some(i) = cs.freelist.pop() {
                Slab::set(&mut cs.bits, i, false);
                return Ok(c.obj_addr(cs.active_pfn, i));
            }
        }
    }

    /// Make a slab the CPU's active slab, moving its free objects to the CPU.
    fn activate(&self, cs: &mut CpuSlab, t: &mut SlabTable, id: u32, cpu: usize) {
        let s = t.slab(id);
        s.state = SlabState::Active(cpu as u16);
        let taken = std::mem::take(&mut s.free);
        for &i in &taken {
            Slab::set(&mut s.free_bits, i, false);
        }
        cs.bits.clear();
        cs.bits.resize(s.free_bits.len(), 0);
        for &i in &taken {
            Slab::set(&mut cs.bits, i, true);
        }
        cs.active = Some(id);
        cs.remote = 0;
        cs.active_pfn = s.pfn;
        cs.active_node = s.node;
        cs.freelist.clear();
        cs.freelist.extend(taken.iter().rev());
    }

    /// `allocate_slab`: the preferred order without retrying hard, then the minimum.
    fn new_slab(
        &self,
        c: &KmemCache,
        gfp: Gfp,
        node: u16,
        ctx: &AllocContext,
    ) -> Result<u32, SlabError> {
        let mut pctx = ctx.clone();
        pctx.node = Some(node);
        let base = Gfp(
            (gfp.0 & !(Gfp::ZERO.0 | Gfp::COMP.0 | Gfp::ACCOUNT.0 | Gfp::ZONEMASK.0))
                | c.allocflags.0,
        );
        let lay = c.layout;
        let mut first = None;
        if lay.order > lay.min_order {
            let light = Gfp((base.0 | Gfp::NOWARN.0 | Gfp::NORETRY.0) & !Gfp::NOFAIL.0);
            first = self.alloc_pages(light, lay.order, &pctx).ok();
            if first.is_none() {
                c.stats.order_fallback.fetch_add(1, Relaxed);
            }
        }
        let block = match first {
            Some(b) => b,
            None => self.alloc_pages(
                base,
                if lay.order > lay.min_order {
                    lay.min_order
                } else {
                    lay.order
                },
                &pctx,
            )?,
        };
        let objects = ((PAGE_SIZE << block.order) / lay.size as u64) as u32;
        let words = objects.div_ceil(64) as usize;
        let mut s = Slab {
            pfn: block.pfn,
            order: block.order,
            node: block.node,
            objects,
            free: (0..objects).rev().collect(),
            free_bits: vec![0; words],
            state: SlabState::Full,
        };
        for i in 0..objects {
            Slab::set(&mut s.free_bits, i, true);
        }
        let id = c.slabs.lock().insert(s);
        // Mark the head page as this cache's slab (PageSlab + slab->slab_cache).
        let w = self.pages().get(block.pfn);
        self.pages()
            .set(block.pfn, w.with_owner(Owner::Slab(c.id)).with_aux(id));
        if let Some(b) = c.ctor {
            for i in 0..objects {
                let a = c.obj_addr(block.pfn, i);
                self.fill_virt(a, lay.object_size as u64, b);
            }
        }
        if c.debug() {
            for i in 0..objects {
                self.init_object(c, c.obj_addr(block.pfn, i), false);
            }
        }
        c.stats.alloc_slab.fetch_add(1, Relaxed);
        Ok(id)
    }

    /// `slab_free` after the object was resolved and checked to be an object start.
    pub(crate) fn slab_free(
        &self,
        c: &KmemCache,
        o: ObjRef,
        ctx: &AllocContext,
    ) -> Result<Option<CgroupId>, SlabError> {
        let cpu = self.resolve_cpu(ctx)?;
        let addr = c.obj_addr(o.slab_pfn, o.index);
        {
            let mut cs = self.cpu_slab(c, cpu);
            if cs.active == Some(o.slab) && cs.active_pfn == o.slab_pfn {
                if Slab::bit(&cs.bits, o.index) || (cs.remote > 0 && self.slab_has_free(c, o)) {
                    return Err(SlabError::DoubleFree {
                        cache: c.name.clone(),
                        addr,
                    });
                }
                let cg = take_objcg(c, o.slab, o.index);
                Slab::set(&mut cs.bits, o.index, true);
                cs.freelist.push(o.index);
                cs.free_fastpath += 1;
                return Ok(cg);
            }
        }
        c.stats.free_slowpath.fetch_add(1, Relaxed);
        loop {
            let state = c.slabs.lock().slab(o.slab).state;
            let owner = match state {
                SlabState::Active(x) => x as usize,
                _ => cpu,
            };
            let mut cs = self.cpu_slab(c, owner);
            let mut t = c.slabs.lock();
            let s = t.slab(o.slab);
            if s.state != state {
                continue;
            }
            let on_cpu = matches!(state, SlabState::Active(_))
                && cs.active == Some(o.slab)
                && Slab::bit(&cs.bits, o.index);
            if s.is_free(o.index) || on_cpu || state == SlabState::RcuPending {
                return Err(SlabError::DoubleFree {
                    cache: c.name.clone(),
                    addr,
                });
            }
            let cg = take_objcg(c, o.slab, o.index);
            let s = t.slab(o.slab);
            s.free.push(o.index);
            Slab::set(&mut s.free_bits, o.index, true);
            cs.free_slow_done += 1;
            if matches!(state, SlabState::Active(_)) {
                cs.remote += 1;
            }
            let empty = s.free.len() as u32 == s.objects;
            let node = s.node;
            match state {
                SlabState::Full => {
                    if c.cpu_partial_slabs > 0 {
                        t.slab(o.slab).state = SlabState::CpuPartial(cpu as u16);
                        cs.partial.push(o.slab);
                        c.stats.cpu_partial_free.fetch_add(1, Relaxed);
                        if cs.partial.len() as u32 > c.cpu_partial_slabs {
                            let list = std::mem::take(&mut cs.partial);
                            for id in list {
                                self.unfreeze_partial(c, &mut t, id);
                            }
                        }
                    } else if empty && t.node_partial[node as usize].len() as u32 >= c.min_partial {
                        self.discard_slab(c, &mut t, o.slab);
                    } else {
                        t.slab(o.slab).state = SlabState::NodePartial;
                        t.node_partial[node as usize].push(o.slab);
                    }
                }
                SlabState::NodePartial
                    if empty && t.node_partial[node as usize].len() as u32 > c.min_partial =>
                {
                    t.unlink_partial(o.slab, node);
                    self.discard_slab(c, &mut t, o.slab);
                }
                _ => {}
            }
            return Ok(cg);
        }
    }

    /// Is the object free (on its slab's list or its CPU's freelist)? Takes the owner
    /// CPU's lock, then the table, like the slow free path.
    pub(crate) fn object_is_free(&self, c: &KmemCache, o: ObjRef) -> bool {
        loop {
            let state = c.slabs.lock().slab(o.slab).state;
            let SlabState::Active(x) = state else {
                return c.slabs.lock().slab(o.slab).is_free(o.index);
            };
            let cs = self.cpu_slab(c, x as usize);
            let mut t = c.slabs.lock();
            if t.slab(o.slab).state != state {
                continue;
            }
            return t.slab(o.slab).is_free(o.index)
                || (cs.active == Some(o.slab) && Slab::bit(&cs.bits, o.index));
        }
    }

    /// For the invariant checker: slab `slab`'s first pfn, and whether its object
    /// `index` is allocated (false for a slab id not in use).
    pub(crate) fn slab_object_state(
        &self,
        c: &KmemCache,
        slab: u32,
        index: u32,
    ) -> (Option<Pfn>, bool) {
        let (pfn, objects) = {
            let t = c.slabs.lock();
            match t.slabs.get(slab as usize).and_then(|s| s.as_ref()) {
                Some(s) => (s.pfn, s.objects),
                None => return (None, false),
            }
        };
        let o = ObjRef {
            cache: c.id,
            slab,
            slab_pfn: pfn,
            index,
            delta: 0,
        };
        (Some(pfn), index < objects && !self.object_is_free(c, o))
    }

    fn slab_has_free(&self, c: &KmemCache, o: ObjRef) -> bool {
        c.slabs.lock().slab(o.slab).is_free(o.index)
    }

    /// Move a CPU partial slab to its node's list (`__put_partials`), discarding it if
    /// it is empty and the node has enough partial slabs.
    fn unfreeze_partial(&self, c: &KmemCache, t: &mut SlabTable, id: u32) {
        let s = t.slab(id);
        let (empty, full, node) = (s.free.len() as u32 == s.objects, s.free.is_empty(), s.node);
        if empty && t.node_partial[node as usize].len() as u32 >= c.min_partial {
            self.discard_slab(c, t, id);
        } else if full {
            t.slab(id).state = SlabState::Full;
        } else {
            t.slab(id).state = SlabState::NodePartial;
            t.node_partial[node as usize].push(id);
        }
    }

    /// Give a slab's pages back (after a grace period for TYPESAFE_BY_RCU caches).
    fn discard_slab(&self, c: &KmemCache, t: &mut SlabTable, id: u32) {
        if c.flags.contains(SlabFlags::TYPESAFE_BY_RCU) {
            t.slab(id).state = SlabState::RcuPending;
            t.rcu_pending.push(id);
            return;
        }
        let s = t.remove(id);
        let w = self.pages().get(s.pfn);
        self.pages()
            .set(s.pfn, w.with_owner(Owner::Pages).with_aux(0));
        self.free_owned_pages(s.pfn, s.order, 0)
            .expect("a slab's pages are an allocated block");
        c.stats.free_slab.fetch_add(1, Relaxed);
    }

    /// `deactivate_slab`: the CPU's active slab takes its CPU freelist back and goes
    /// to its node's list (or is discarded when empty and the node has enough).
    fn deactivate_cpu_slab(&self, c: &KmemCache, cs: &mut CpuSlab, t: &mut SlabTable, cpu: usize) {
        let Some(id) = cs.active.take() else {
            return;
        };
        let s = t.slab(id);
        for &i in &cs.freelist {
            s.free.push(i);
            Slab::set(&mut s.free_bits, i, true);
        }
        cs.freelist.clear();
        cs.bits.clear();
        cs.remote = 0;
        s.state = SlabState::CpuPartial(cpu as u16);
        self.unfreeze_partial(c, t, id);
    }

    /// Return every CPU's active and partial slabs to the node lists (`flush_all`).
    pub(crate) fn flush_all_cpu_slabs(&self, c: &KmemCache) {
        for cpu in 0..self.nr_cpus() {
            let mut cs = self.cpu_slab(c, cpu);
            let mut t = c.slabs.lock();
            self.deactivate_cpu_slab(c, &mut cs, &mut t, cpu);
            for id in std::mem::take(&mut cs.partial) {
                self.unfreeze_partial(c, &mut t, id);
            }
        }
    }

    /// Discard empty node-partial slabs (all of them with `all`, else those above
    /// `min_partial`). Returns the pages freed.
    pub(crate) fn shrink_cache(&self, c: &KmemCache, all: bool) -> u64 {
        let mut t = c.slabs.lock();
        let before = t.nr_pages;
        for n in 0..t.node_partial.len() {
            let empties: Vec<u32> = t.node_partial[n]
                .iter()
                .copied()
                .filter(|&id| {
                    t.slabs[id as usize]
                        .as_ref()
                        .is_some_and(|s| s.free.len() as u32 == s.objects)
                })
                .collect();
            let keep = if all { 0 } else { c.min_partial as usize };
            for id in empties {
                if !all && t.node_partial[n].len() <= keep {
                    break;
                }
                t.unlink_partial(id, n as u16);
                self.discard_slab(c, &mut t, id);
            }
        }
        before - t.nr_pages
    }

    /// Live (allocated) objects of a cache, assuming CPU slabs were flushed.
    pub(crate) fn cache_live_objects(&self, c: &KmemCache) -> Vec<u64> {
        let t = c.slabs.lock();
        let mut out = Vec::new();
        for s in t.slabs.iter().flatten() {
            for i in 0..s.objects {
                if !s.is_free(i) {
                    out.push(c.obj_addr(s.pfn, i));
                }
            }
        }
        out
    }

    /// `rcu_barrier()`: end the grace period of every TYPESAFE_BY_RCU slab waiting for
    /// one, freeing its pages. Returns the slabs freed.
    pub fn rcu_barrier(&self) -> u64 {
        let mut n = 0;
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            let mut t = c.slabs.lock();
            for sid in std::mem::take(&mut t.rcu_pending) {
                let s = t.remove(sid);
                let w = self.pages().get(s.pfn);
                self.pages()
                    .set(s.pfn, w.with_owner(Owner::Pages).with_aux(0));
                self.free_owned_pages(s.pfn, s.order, 0)
                    .expect("slab pages");
                c.stats.free_slab.fetch_add(1, Relaxed);
                n += 1;
            }
        }
        n
    }
}
