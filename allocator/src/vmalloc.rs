//! vmalloc: virtually contiguous, physically scattered memory (mm/vmalloc.c).
//!
//! Modelled rules (x86-64, 4-level paging, v6.18):
//! - the range [VMALLOC_START 0xffffc90000000000, +32 TiB); each area gets the lowest
//!   free address that fits its size and alignment, plus one guard page unless
//!   `VM_NO_GUARD`; `/proc/vmallocinfo` prints the size with the guard;
//! - pages come from the page allocator one by one (order 0), or as order-9 blocks for
//!   `vmalloc_huge` when the size allows, falling back to small pages; a failure frees
//!   everything taken and reports `vmalloc error: size N, <why>`;
//! - `vfree` frees the pages at once; the virtual range waits on a purge list and is
//!   returned in a batch once more than `lazy_max_pages` = fls(CPUs) × 32 MiB of pages
//!   are pending (`purge_vmap_area_lazy`);
//! - GFP flags as v6.18 honours them: a blocking mask is required (GFP_KERNEL, GFP_NOFS,
//!   GFP_NOIO, GFP_USER, with ZERO, NOWARN, NOFAIL, NORETRY, RETRY_MAYFAIL, ACCOUNT,
//!   HARDWALL); NOFS/NOIO act through the scope; zone modifiers other than the DMA32 of
//!   `vmalloc_32`, and mobility/compound/node bits, are stripped with a warning. (The
//!   GFP_VMALLOC_SUPPORTED mask with GFP_ATOMIC/NOWAIT support came after 6.18.)
//!
//! The page table is each area's page array: `vmalloc_to_pfn` looks the area up in an
//! ordered map (O(log n)) and indexes it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::page::{Owner, PageKind, Pfn, PAGEBLOCK_ORDER, PAGE_SIZE};
use crate::page_alloc::AllocError;

pub const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
/// One past the last vmalloc address (the kernel's VMALLOC_END is this minus 1).
pub const VMALLOC_END: u64 = VMALLOC_START + (32 << 40);
/// `PMD_SIZE`.
pub const PMD_SIZE: u64 = 2 << 20;
/// `INT_MAX`, kvmalloc's size limit.
pub const INT_MAX: u64 = i32::MAX as u64;

/// `VM_*` area flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct VmFlags(pub u32);

impl VmFlags {
    pub const ALLOC: VmFlags = VmFlags(0x2);
    pub const MAP: VmFlags = VmFlags(0x4);
    pub const USERMAP: VmFlags = VmFlags(0x8);
    pub const NO_GUARD: VmFlags = VmFlags(0x40);
    pub const ALLOW_HUGE_VMAP: VmFlags = VmFlags(0x400);
    pub fn contains(self, f: VmFlags) -> bool {
        self.0 & f.0 == f.0
    }
}

/// `is_vmalloc_addr`.
pub const fn is_vmalloc_addr(addr: u64) -> bool {
    addr >= VMALLOC_START && addr < VMALLOC_END
}

/// One busy area (`vmap_area` + `vm_struct`).
#[derive(Clone, Debug)]
pub struct VmArea {
    pub start: u64,
    /// Size including the guard page.
    pub size: u64,
    pub flags: VmFlags,
    /// The page table: the pfn behind each mapped virtual page.
    pub pages: Vec<Pfn>,
    /// Order of the blocks behind it (0, or 9 for huge mappings).
    pub page_order: u8,
    pub caller: Option<Arc<str>>,
    /// Pages per node.
    pub nodes: Vec<u32>,
    /// The cgroup charged for the pages (`__GFP_ACCOUNT`), memory.stat `vmalloc`.
    pub memcg: Option<crate::memcg::CgroupId>,
}

impl VmArea {
    /// Usable size (without the guard page), `get_vm_area_size`.
    pub fn usable(&self) -> u64 {
        if self.flags.contains(VmFlags::NO_GUARD) {
            self.size
        } else {
            self.size - PAGE_SIZE
        }
    }
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// Errors of vmalloc. Nothing is leaked by any of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmallocError {
    #[error("vmalloc error: size {size}, {why}, mode:{:#x}({}), nodemask=(null)", .gfp.0, .gfp)]
    Failed {
        size: u64,
        why: &'static str,
        gfp: Gfp,
        #[source]
        cause: Option<AllocError>,
    },
    #[error(
        "vmalloc needs a blocking mask in v6.18 (got {gfp}): use GFP_KERNEL and the scope API"
    )]
    NonBlocking { gfp: Gfp },
    #[error("Trying to vfree() nonexistent vm area ({addr:#x})")]
    NoSuchArea { addr: u64 },
    #[error("page fault at {addr:#x}: {what}{}", near.map(|(s, e)| format!(" (nearest area {s:#x}-{e:#x})")).unwrap_or_default())]
    PageFault {
        addr: u64,
        what: &'static str,
        near: Option<(u64, u64)>,
    },
    #[error("kvmalloc of {size} bytes is above INT_MAX")]
    TooLarge { size: u64 },
    #[error("vmap of page {pfn:#x}: not an allocated page")]
    BadPage { pfn: Pfn },
    #[error(transparent)]
    Memcg(#[from] crate::memcg::MemcgError),
    #[error("no CPU {cpu}: the machine has {cpus}")]
    NoSuchCpu { cpu: u16, cpus: u16 },
}

impl VmallocError {
    pub fn reason(&self) -> &'static str {
        match self {
            VmallocError::Failed { why, .. } => match *why {
                "vm_struct allocation failed" => "VMALLOC_SPACE_EXHAUSTED",
                "exceeds total pages" => "SIZE_TOO_LARGE",
                "size is 0" => "INVALID_SIZE",
                _ => "OUT_OF_MEMORY",
            },
            VmallocError::NonBlocking { .. } => "INVALID_GFP_FLAGS",
            VmallocError::NoSuchArea { .. } => "ALLOCATION_NOT_FOUND",
            VmallocError::PageFault { .. } => "PAGE_FAULT",
            VmallocError::TooLarge { .. } => "SIZE_TOO_LARGE",
            VmallocError::BadPage { .. } => "INVALID_PAGE",
            VmallocError::Memcg(e) => e.reason(),
            VmallocError::NoSuchCpu { .. } => "NO_SUCH_CPU",
        }
    }
}

/// Free virtual space, found lowest-address-first: free ranges by start, plus an index
/// by size class (floor log2) so a fit is found without scanning every hole.
#[derive(Debug)]
pub(crate) struct FreeSpace {
    by_start: BTreeMap<u64, u64>,
    by_class: Vec<BTreeSet<u64>>,
}

fn class(size: u64) -> usize {
    63 - size.leading_zeros() as usize
}

impl FreeSpace {
    fn new(start: u64, end: u64) -> Self {
        let mut f = FreeSpace {
            by_start: BTreeMap::new(),
            by_class: vec![BTreeSet::new(); 64],
        };
        f.insert_raw(start, end);
        f
    }
    fn insert_raw(&mut self, s: u64, e: u64) {
        self.by_start.insert(s, e);
        self.by_class[class(e - s)].insert(s);
    }
    fn remove_raw(&mut self, s: u64) -> u64 {
        let e = self.by_start.remove(&s).expect("free range");
        self.by_class[class(e - s)].remove(&s);
        e
    }
    /// The lowest address where `size` bytes aligned to `align` fit.
    fn find(&self, size: u64, align: u64) -> Option<u64> {
        let fits = |s: u64| {
            let e = self.by_start[&s];
            let a = s.next_multiple_of(align);
            (a + size <= e).then_some(a)
        };
        let mut best: Option<(u64, u64)> = None; // (range start, aligned address)
        for k in class(size)..64 {
            for &s in &self.by_class[k] {
                if best.is_some_and(|(bs, _)| s > bs) {
                    break;
                }
                if let Some(a) = fits(s) {
                    best = Some((s, a));
                    break;
                }
            }
        }
        best.map(|b| b.1)
    }
    fn take(&mut self, addr: u64, size: u64) {
        let (&s, &e) = self
            .by_start
            .range(..=addr)
            .next_back()
            .expect("inside a free range");
        debug_assert!(addr + size <= e);
        self.remove_raw(s);
        if s < addr {
            self.insert_raw(s, addr);
        }
        if addr + size < e {
            self.insert_raw(addr + size, e);
        }
    }
    /// Give a range back, merging with its neighbours.
    fn give(&mut self, mut s: u64, mut e: u64) {
        if let Some((&ps, &pe)) = self.by_start.range(..s).next_back() {
            if pe == s {
                self.remove_raw(ps);
                s = ps;
            }
        }
        if let Some(&ne) = self.by_start.get(&e) {
            self.remove_raw(e);
            e = ne;
        }
        self.insert_raw(s, e);
    }
    /// Every free range, by address.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.by_start.iter().map(|(&s, &e)| (s, e)).collect()
    }
    pub fn free_bytes(&self) -> u64 {
        self.by_start.iter().map(|(s, e)| e - s).sum()
    }
}

/// All of vmalloc's state (the kernel's vmap locks, folded into one).
pub(crate) struct VmapState {
    pub busy: BTreeMap<u64, VmArea>,
    pub free: FreeSpace,
    /// Freed ranges waiting for a lazy purge: (start, size).
    pub purge_list: Vec<(u64, u64)>,
    pub purge_pending_pages: u64,
}

impl VmapState {
    pub fn new() -> Self {
        VmapState {
            busy: BTreeMap::new(),
            free: FreeSpace::new(VMALLOC_START, VMALLOC_END),
            purge_list: Vec::new(),
            purge_pending_pages: 0,
        }
    }
}

/// vmalloc counters.
#[derive(Debug, Default)]
pub struct VmallocStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub purges: AtomicU64,
    pub purged_pages: AtomicU64,
    pub pages: AtomicU64,
    pub flag_fixups: AtomicU64,
}

/// Counters as numbers.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VmallocCounts {
    pub calls: u64,
    pub failures: u64,
    pub purges: u64,
    pub purged_pages: u64,
    /// Pages backing vmalloc areas (`nr_vmalloc_pages`).
    pub pages: u64,
    pub areas: u64,
    pub purge_pending_pages: u64,
    pub flag_fixups: u64,
    /// Free virtual space (not counting ranges waiting for a purge).
    pub free_space_bytes: u64,
}

/// Bits vmalloc honours in v6.18 (others are stripped with a warning).
const VMALLOC_HONOURED: u32 = Gfp::GFP_USER.0
    | Gfp::ZERO.0
    | Gfp::NOWARN.0
    | Gfp::NOFAIL.0
    | Gfp::NORETRY.0
    | Gfp::RETRY_MAYFAIL.0
    | Gfp::ACCOUNT.0
    | Gfp::HIGHMEM.0
    | Gfp::DMA32.0;

/// A vmalloc request.
struct VReq<'a> {
    size: u64,
    gfp: Gfp,
    align: u64,
    flags: VmFlags,
    node: Option<u16>,
    ctx: &'a AllocContext,
}

impl Machine {
    /// `lazy_max_pages`: fls(online CPUs) × 32 MiB worth of pages.
    pub fn lazy_max_pages(&self) -> u64 {
        let fls = 64 - (self.nr_cpus() as u64).leading_zeros() as u64;
        fls * ((32 << 20) / PAGE_SIZE)
    }

    fn vfix_gfp(&self, gfp: Gfp, ctx: &AllocContext) -> Result<Gfp, VmallocError> {
        let gfp = ctx.scope.apply(gfp);
        if !gfp.allows_blocking() {
            return Err(VmallocError::NonBlocking { gfp });
        }
        let bad = gfp.0 & !VMALLOC_HONOURED;
        if bad != 0 {
            self.vstats.flag_fixups.fetch_add(1, Relaxed);
            self.log.warn(format!(
                "vmalloc: Unexpected gfp: {:#x} ({}). Fixing up to gfp: {:#x} ({}). Fix your code!",
                bad,
                Gfp(bad),
                gfp.0 & VMALLOC_HONOURED,
                Gfp(gfp.0 & VMALLOC_HONOURED)
            ));
        }
        Ok(Gfp(gfp.0 & VMALLOC_HONOURED))
    }

    fn vfail(&self, r: &VReq, why: &'static str, cause: Option<AllocError>) -> VmallocError {
        self.vstats.failures.fetch_add(1, Relaxed);
        let e = VmallocError::Failed {
            size: r.size,
            why,
            gfp: r.gfp,
            cause,
        };
        if !r.gfp.contains(Gfp::NOWARN) {
            self.log.warn(format!("kmemd: {e}"));
        }
        e
    }

    /// `__vmalloc_node_range`.
    fn vmalloc_range(&self, r: VReq) -> Result<u64, VmallocError> {
        self.vstats.calls.fetch_add(1, Relaxed);
        if r.size == 0 {
            return Err(self.vfail(&r, "size is 0", None));
        }
        let huge = r.flags.contains(VmFlags::ALLOW_HUGE_VMAP) && r.size >= PMD_SIZE;
        let (order, unit) = if huge {
            (PAGEBLOCK_ORDER, PMD_SIZE)
        } else {
            (0, PAGE_SIZE)
        };
        let real = r.size.next_multiple_of(unit);
        if real / PAGE_SIZE > self.total_managed() {
            return Err(self.vfail(&r, "exceeds total pages", None));
        }
        let guard = if r.flags.contains(VmFlags::NO_GUARD) {
            0
        } else {
            PAGE_SIZE
        };
        let align = r.align.max(if huge { PMD_SIZE } else { PAGE_SIZE });
        let start = {
            let mut st = self.vmap.lock();
            let found = st.free.find(real + guard, align).or_else(|| {
                self.purge_locked(&mut st);
                st.free.find(real + guard, align)
            });
            let Some(a) = found else {
                drop(st);
                return Err(self.vfail(&r, "vm_struct allocation failed", None));
            };
            st.free.take(a, real + guard);
            a
        };
        // Pages, one block at a time; on failure everything goes back. A huge area
        // that cannot get all its order-9 blocks is retried with small pages, as the
        // kernel does.
        let mut ctx = r.ctx.clone();
        ctx.node = r.node.or(ctx.node);
        // The pages themselves are not charged one by one: the area is, below.
        let page_gfp = r
            .gfp
            .without(Gfp(Gfp::ZERO.0 | Gfp::ACCOUNT.0))
            .with(Gfp::NOWARN);
        let mut pages = Vec::with_capacity((real / PAGE_SIZE) as usize);
        let mut nodes = vec![0u32; self.nr_nodes()];
        let mut cause = None;
        for _ in 0..real / unit {
            match self.alloc_pages(page_gfp, order, &ctx) {
                Ok(b) => {
                    let w = self.pages().get(b.pfn);
                    self.pages().set(b.pfn, w.with_owner(Owner::Vmalloc));
                    pages.extend(b.pfn..b.pfn + (1 << b.order));
                    nodes[b.node as usize] += 1 << b.order;
                }
                Err(e) => {
                    cause = Some(e);
                    break;
                }
            }
        }
        // Undone pages go back to the allocating CPU, as they came.
        let cpu = self.resolve_cpu(&ctx).unwrap_or(0);
        if let Some(e) = cause {
            self.release_pages(&pages, order, cpu);
            self.vmap.lock().free.give(start, start + real + guard);
            if huge {
                self.vstats.calls.fetch_sub(1, Relaxed);
                let small = VReq {
                    flags: VmFlags(r.flags.0 & !VmFlags::ALLOW_HUGE_VMAP.0),
                    ..r
                };
                return self.vmalloc_range(small);
            }
            return Err(self.vfail(&r, "failed to allocate pages", Some(e)));
        }
        let page_order = order;
        // __GFP_ACCOUNT: the area's pages are charged as a whole (memory.stat
        // `vmalloc`); a refused charge undoes the area.
        let memcg = r
            .ctx
            .cgroup
            .filter(|c| *c != crate::memcg::CgroupId::ROOT && r.gfp.contains(Gfp::ACCOUNT));
        if let Some(cg) = memcg {
            if let Err(e) = self.memcgs.charge(
                cg,
                pages.len() as u64,
                crate::memcg::StatItem::Vmalloc,
                r.gfp,
                r.ctx,
                cpu,
            ) {
                self.release_pages(&pages, page_order, cpu);
                self.vmap.lock().free.give(start, start + real + guard);
                self.vstats.failures.fetch_add(1, Relaxed);
                return Err(VmallocError::Memcg(e));
            }
        }
        self.vstats.pages.fetch_add(pages.len() as u64, Relaxed);
        let area = VmArea {
            start,
            size: real + guard,
            flags: VmFlags(r.flags.0 | VmFlags::ALLOC.0),
            pages,
            page_order,
            caller: r.ctx.caller.clone(),
            nodes,
            memcg,
        };
        if r.gfp.contains(Gfp::ZERO) || self.cfg.init_on_alloc {
            for &p in &area.pages {
                self.content.clear(p, 1);
            }
        }
        self.vmap.lock().busy.insert(start, area);
        Ok(start)
    }

    /// Free the pages of an area (blocks of `order`).
    fn release_pages(&self, pages: &[Pfn], order: u8, cpu: usize) {
        let step = 1usize << order;
        for chunk in pages.chunks(step) {
            let p = chunk[0];
            if order > 0 && chunk.len() < step {
                continue;
            }
            let w = self.pages().get(p);
            self.pages().set(p, w.with_owner(Owner::Pages));
            self.free_owned_pages(p, order, cpu)
                .expect("vmalloc pages are allocated blocks");
        }
    }

    /// Filter the mask (v6.18 rules, scope) and allocate an area.
    fn vmalloc_with(
        &self,
        size: u64,
        gfp: Gfp,
        flags: VmFlags,
        node: Option<u16>,
        ctx: &AllocContext,
    ) -> Result<u64, VmallocError> {
        let gfp = self.vfix_gfp(gfp, ctx)?;
        self.vmalloc_range(VReq {
            size,
            gfp,
            align: PAGE_SIZE,
            flags,
            node,
            ctx,
        })
    }

    /// `vmalloc(size)`.
    pub fn vmalloc(&self, size: u64, ctx: &AllocContext) -> Result<u64, VmallocError> {
        self.__vmalloc(size, Gfp::GFP_KERNEL, ctx)
    }

    /// `vzalloc(size)`.
    pub fn vzalloc(&self, size: u64, ctx: &AllocContext) -> Result<u64, VmallocError> {
        self.__vmalloc(size, Gfp::GFP_KERNEL | Gfp::ZERO, ctx)
    }

    /// `vmalloc_node(size, node)`.
    pub fn vmalloc_node(
        &self,
        size: u64,
        node: u16,
        ctx: &AllocContext,
    ) -> Result<u64, VmallocError> {
        self.vmalloc_with(size, Gfp::GFP_KERNEL, VmFlags::default(), Some(node), ctx)
    }

    /// vmalloc on a node with a mask, optionally with huge mappings (kvmalloc_node's
    /// fallback).
    pub(crate) fn vmalloc_node_gfp(
        &self,
        size: u64,
        gfp: Gfp,
        node: u16,
        huge: bool,
        ctx: &AllocContext,
    ) -> Result<u64, VmallocError> {
        let flags = if huge {
            VmFlags::ALLOW_HUGE_VMAP
        } else {
            VmFlags::default()
        };
        self.vmalloc_with(size, gfp, flags, Some(node), ctx)
    }

    /// `vzalloc_node(size, node)`.
    pub fn vzalloc_node(
        &self,
        size: u64,
        node: u16,
        ctx: &AllocContext,
    ) -> Result<u64, VmallocError> {
        self.vmalloc_with(
            size,
            Gfp::GFP_KERNEL | Gfp::ZERO,
            VmFlags::default(),
            Some(node),
            ctx,
        )
    }

    /// `__vmalloc(size, gfp)`.
    pub fn __vmalloc(&self, size: u64, gfp: Gfp, ctx: &AllocContext) -> Result<u64, VmallocError> {
        self.vmalloc_with(size, gfp, VmFlags::default(), None, ctx)
    }

    /// `vmalloc_user`: zeroed, marked for mapping to user space (VM_USERMAP), SHMLBA
    /// aligned.
    pub fn vmalloc_user(&self, size: u64, ctx: &AllocContext) -> Result<u64, VmallocError> {
        self.vmalloc_with(
            size,
            Gfp::GFP_KERNEL | Gfp::ZERO,
            VmFlags::USERMAP,
            None,
            ctx,
        )
    }

    /// `vmalloc_32`: pages below 4 GiB.
    pub fn vmalloc_32(&self, size: u64, ctx: &AllocContext) -> Result<u64, VmallocError> {
        self.vmalloc_with(
            size,
            Gfp::GFP_KERNEL | Gfp::DMA32,
            VmFlags::default(),
            None,
            ctx,
        )
    }

    /// `vmalloc_huge(size, gfp)`: 2 MiB blocks and alignment where the size allows,
    /// small pages otherwise or when no order-9 block can be had.
    pub fn vmalloc_huge(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<u64, VmallocError> {
        self.vmalloc_with(size, gfp, VmFlags::ALLOW_HUGE_VMAP, None, ctx)
    }

    /// `vmap(pages, count, VM_MAP)`: map caller-owned pages (allocated with
    /// `alloc_pages`) contiguously. The pages stay the caller's; `vunmap` unmaps.
    pub fn vmap(&self, pfns: &[Pfn], ctx: &AllocContext) -> Result<u64, VmallocError> {
        for &p in pfns {
            let ok = p < self.pages().nr_pages()
                && self
                    .block_containing(p)
                    .is_some_and(|(_, w)| w.kind() == PageKind::Alloc && w.owner() == Owner::Pages);
            if !ok {
                return Err(VmallocError::BadPage { pfn: p });
            }
        }
        if pfns.is_empty() {
            return Err(VmallocError::Failed {
                size: 0,
                why: "size is 0",
                gfp: Gfp::GFP_KERNEL,
                cause: None,
            });
        }
        let size = pfns.len() as u64 * PAGE_SIZE;
        let mut st = self.vmap.lock();
        let Some(start) = st.free.find(size + PAGE_SIZE, PAGE_SIZE) else {
            return Err(VmallocError::Failed {
                size,
                why: "vm_struct allocation failed",
                gfp: Gfp::GFP_KERNEL,
                cause: None,
            });
        };
        st.free.take(start, size + PAGE_SIZE);
        let mut nodes = vec![0u32; self.nr_nodes()];
        for &p in pfns {
            if let Some(z) = self.pages().zone_of(p) {
                nodes[self.zones[z].node as usize] += 1;
            }
        }
        st.busy.insert(
            start,
            VmArea {
                start,
                size: size + PAGE_SIZE,
                flags: VmFlags::MAP,
                pages: pfns.to_vec(),
                page_order: 0,
                caller: ctx.caller.clone(),
                nodes,
                memcg: None,
            },
        );
        Ok(start)
    }

    /// `vunmap`: remove a vmap mapping (the pages are not freed).
    pub fn vunmap(&self, addr: u64) -> Result<(), VmallocError> {
        self.vremove(addr, true, 0).map(|_| ())
    }

    /// `vfree(addr)`: free the pages now, purge the range lazily. `vfree(NULL)` is a
    /// no-op; an unknown address is an error (the kernel WARNs and leaks nothing).
    pub fn vfree(&self, addr: u64) -> Result<(), VmallocError> {
        self.vfree_on(addr, &AllocContext::default())
    }

    /// `vfree` on the context's CPU: its pcp lists receive the area's pages and its
    /// page stock the uncharge (plain [`Machine::vfree`] runs on the calling thread's).
    pub fn vfree_on(&self, addr: u64, ctx: &AllocContext) -> Result<(), VmallocError> {
        if addr == 0 {
            return Ok(());
        }
        let cpu = self.resolve_cpu(ctx).map_err(|_| VmallocError::NoSuchCpu {
            cpu: ctx.cpu.unwrap_or_default(),
            cpus: self.nr_cpus() as u16,
        })?;
        self.vremove(addr, false, cpu).map(|_| ())
    }

    /// `vfree_atomic`: the kernel defers to a workqueue; the simulator frees at once.
    pub fn vfree_atomic(&self, addr: u64) -> Result<(), VmallocError> {
        self.vfree(addr)
    }

    fn vremove(&self, addr: u64, vmap: bool, cpu: usize) -> Result<VmArea, VmallocError> {
        let mut st = self.vmap.lock();
        let is_vmap = st.busy.get(&addr).map(|a| a.flags.contains(VmFlags::MAP));
        if is_vmap != Some(vmap) {
            if is_vmap.is_none() {
                self.log
                    .warn(format!("Trying to vfree() nonexistent vm area ({addr:#x})"));
            }
            return Err(VmallocError::NoSuchArea { addr });
        }
        let area = st.busy.remove(&addr).expect("checked");
        st.purge_list.push((area.start, area.size));
        st.purge_pending_pages += area.size / PAGE_SIZE;
        if st.purge_pending_pages > self.lazy_max_pages() {
            self.purge_locked(&mut st);
        }
        drop(st);
        if !vmap {
            if self.cfg.init_on_free {
                for &p in &area.pages {
                    self.content.clear(p, 1);
                }
            }
            if let Some(cg) = area.memcg {
                self.memcgs.uncharge(
                    cg,
                    area.pages.len() as u64,
                    crate::memcg::StatItem::Vmalloc,
                    cpu,
                );
            }
            self.release_pages(&area.pages, area.page_order, cpu);
            self.vstats
                .pages
                .fetch_sub(area.pages.len() as u64, Relaxed);
        }
        Ok(area)
    }

    fn purge_locked(&self, st: &mut VmapState) {
        if st.purge_list.is_empty() {
            return;
        }
        for (s, size) in std::mem::take(&mut st.purge_list) {
            st.free.give(s, s + size);
        }
        self.vstats.purges.fetch_add(1, Relaxed);
        self.vstats
            .purged_pages
            .fetch_add(st.purge_pending_pages, Relaxed);
        st.purge_pending_pages = 0;
    }

    /// `vm_unmap_aliases` / `purge_vmap_area_lazy`: return every pending range now.
    pub fn purge_vmap_areas(&self) {
        let mut st = self.vmap.lock();
        self.purge_locked(&mut st);
    }

    /// The area holding `addr` (guard page included), by an ordered-map lookup.
    pub fn find_vm_area(&self, addr: u64) -> Option<VmArea> {
        let st = self.vmap.lock();
        st.busy
            .range(..=addr)
            .next_back()
            .filter(|(_, a)| addr < a.end())
            .map(|(_, a)| a.clone())
    }

    /// `vmalloc_to_pfn`.
    pub fn vmalloc_to_pfn(&self, addr: u64) -> Result<Pfn, VmallocError> {
        let st = self.vmap.lock();
        Self::translate(&st, addr)
    }

    fn translate(st: &VmapState, addr: u64) -> Result<Pfn, VmallocError> {
        let near = |st: &VmapState| {
            let below = st
                .busy
                .range(..=addr)
                .next_back()
                .map(|(_, a)| (a.start, a.end()));
            let above = st
                .busy
                .range(addr..)
                .next()
                .map(|(_, a)| (a.start, a.end()));
            match (below, above) {
                (Some(b), Some(a)) => Some(if addr - b.1 <= a.0 - addr { b } else { a }),
                (b, a) => b.or(a),
            }
        };
        if !is_vmalloc_addr(addr) {
            return Err(VmallocError::PageFault {
                addr,
                what: "not a vmalloc address",
                near: None,
            });
        }
        match st.busy.range(..=addr).next_back() {
            Some((_, a)) if addr < a.end() => {
                let idx = ((addr - a.start) / PAGE_SIZE) as usize;
                a.pages.get(idx).copied().ok_or(VmallocError::PageFault {
                    addr,
                    what: "guard page",
                    near: Some((a.start, a.end())),
                })
            }
            _ => Err(VmallocError::PageFault {
                addr,
                what: "no mapping",
                near: near(st),
            }),
        }
    }

    /// Read `len` bytes through a vmalloc address.
    pub fn vread(&self, addr: u64, len: usize) -> Result<Vec<u8>, VmallocError> {
        let st = self.vmap.lock();
        let mut out = vec![0u8; len];
        let mut off = 0;
        while off < len {
            let a = addr + off as u64;
            let pfn = Self::translate(&st, a)?;
            let in_page = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(len - off);
            self.content.read(pfn, in_page, &mut out[off..off + n]);
            off += n;
        }
        Ok(out)
    }

    /// Write bytes through a vmalloc address. Checked before any byte is written.
    pub fn vwrite(&self, addr: u64, data: &[u8]) -> Result<(), VmallocError> {
        let st = self.vmap.lock();
        let mut off = 0;
        let mut plan = Vec::new();
        while off < data.len() {
            let a = addr + off as u64;
            let pfn = Self::translate(&st, a)?;
            let in_page = (a % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - off);
            plan.push((pfn, in_page, off, n));
            off += n;
        }
        for (pfn, in_page, off, n) in plan {
            self.content.write(pfn, in_page, &data[off..off + n]);
        }
        Ok(())
    }

    /// vmalloc counters.
    pub fn vmalloc_counts(&self) -> VmallocCounts {
        let st = self.vmap.lock();
        let g = |a: &AtomicU64| a.load(Relaxed);
        VmallocCounts {
            calls: g(&self.vstats.calls),
            failures: g(&self.vstats.failures),
            purges: g(&self.vstats.purges),
            purged_pages: g(&self.vstats.purged_pages),
            pages: g(&self.vstats.pages),
            areas: st.busy.len() as u64,
            purge_pending_pages: st.purge_pending_pages,
            flag_fixups: g(&self.vstats.flag_fixups),
            free_space_bytes: st.free.free_bytes(),
        }
    }

    /// `/proc/vmallocinfo`.
    pub fn vmallocinfo(&self) -> String {
        let st = self.vmap.lock();
        let mut s = String::new();
        for a in st.busy.values() {
            let _ = write!(s, "0x{:016x}-0x{:016x} {:7}", a.start, a.end(), a.size);
            let _ = write!(s, " {}", a.caller.as_deref().unwrap_or("unknown+0x0/0x0"));
            if !a.pages.is_empty() {
                let _ = write!(s, " pages={}", a.pages.len());
            }
            if a.flags.contains(VmFlags::ALLOC) {
                s.push_str(" vmalloc");
            }
            if a.flags.contains(VmFlags::MAP) {
                s.push_str(" vmap");
            }
            if a.flags.contains(VmFlags::USERMAP) {
                s.push_str(" user");
            }
            // The page array itself was vmalloc'd when larger than a page.
            if a.pages.len() * 8 > PAGE_SIZE as usize {
                s.push_str(" vpages");
            }
            for (n, &c) in a.nodes.iter().enumerate() {
                if c > 0 {
                    let _ = write!(s, " N{n}={c}");
                }
            }
            s.push('\n');
        }
        s
    }

    /// Pages backing vmalloc areas (`vmalloc_nr_pages`, meminfo VmallocUsed).
    pub fn vmalloc_nr_pages(&self) -> u64 {
        self.vstats.pages.load(Relaxed)
    }
}

/// The lock type the machine keeps vmalloc state under.
pub(crate) type Vmap = Mutex<VmapState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_finds_the_lowest_fit() {
        let mut f = FreeSpace::new(0, 1 << 30);
        let a = f.find(8192, 4096).unwrap();
        assert_eq!(a, 0);
        f.take(a, 8192);
        let b = f.find(4096, 4096).unwrap();
        assert_eq!(b, 8192);
        f.take(b, 4096);
        f.give(0, 8192);
        assert_eq!(
            f.find(4096, 4096),
            Some(0),
            "a hole at the bottom is reused first"
        );
        assert_eq!(
            f.find(16384, 4096),
            Some(12288),
            "a larger request goes above"
        );
        assert_eq!(f.find(4096, 1 << 21), Some(0), "address 0 is 2 MiB aligned");
        assert_eq!(
            f.find(16384, 1 << 21),
            Some(1 << 21),
            "alignment is honoured"
        );
        f.give(8192, 12288);
        assert_eq!(f.by_start.len(), 1, "neighbours merge");
        assert_eq!(f.free_bytes(), 1 << 30);
    }
}
