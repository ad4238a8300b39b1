//! The page allocator's entry points: `alloc_pages` / `__free_pages` and friends.
//!
//! Modelled path (`mm/page_alloc.c`, v6.18):
//! 1. refuse order > MAX_ORDER; filter the mask through the scope (`current_gfp_context`)
//!    and refuse impossible mixes;
//! 2. fast path: walk the zonelist from the preferred node's highest allowed zone down,
//!    then other nodes by distance, testing each zone against its LOW watermark (+boost)
//!    with `zone_watermark_fast`; ALLOC_NOFRAGMENT on Normal when DMA32 exists;
//! 3. take the block from the CPU's pcp list (orders ≤ 3 and the THP order) or the
//!    buddy lists (`rmqueue_buddy`), with the fallback rules of [`crate::fallback`];
//! 4. slow path: wake kswapd, retry at MIN with the reserve rights of
//!    `gfp_to_alloc_flags`; reserve overrides (MEMALLOC, PF_MEMALLOC, NOMEMALLOC); stop
//!    for non-blocking callers and PF_MEMALLOC tasks; direct reclaim (counted in
//!    `allocstall_*`; the reclaim hook frees nothing until vmscan exists), unreserve
//!    HighAtomic, drain pcp, retry; NORETRY / costly-without-RETRY_MAYFAIL stop;
//!    `should_reclaim_retry` (≤ 16 loops without progress); OOM (no tasks to kill yet);
//! 5. `__GFP_NOFAIL` never fails: it loops, waiting for frees, holding no lock, until
//!    the caller's deadline or cancel token ends the wait.
//!
//! Where the service differs from the kernel: a failed allocation returns a typed
//! error naming which zone refused and why, instead of NULL plus a log line (the log
//! line is also written to [`Machine::dmesg`]).

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use crate::context::{AllocContext, GiveUp, Scope};
use crate::gfp::{Gfp, GfpError};
use crate::machine::Machine;
use crate::mem::ZoneType;
use crate::memcg::CgroupId;
use crate::page::{
    MigrateType, PageKind, PageRef, PageWord, Pfn, MAX_ORDER, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE,
};
use crate::pcp::{pcp_allowed_order, pindex, Cpu, CpuState};
use crate::vmstat::{Event, RareEvents};
use crate::zone::{nonempty_from, Wmark, Zone};

/// `ALLOC_*` flags (mm/internal.h).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocFlags(pub u32);

impl AllocFlags {
    pub const WMARK_MIN: AllocFlags = AllocFlags(0);
    pub const WMARK_LOW: AllocFlags = AllocFlags(1);
    pub const WMARK_HIGH: AllocFlags = AllocFlags(2);
    pub const WMARK_MASK: u32 = 3;
    pub const NO_WATERMARKS: AllocFlags = AllocFlags(0x04);
    pub const OOM: AllocFlags = AllocFlags(0x08);
    pub const NON_BLOCK: AllocFlags = AllocFlags(0x10);
    pub const MIN_RESERVE: AllocFlags = AllocFlags(0x20);
    pub const CPUSET: AllocFlags = AllocFlags(0x40);
    pub const CMA: AllocFlags = AllocFlags(0x80);
    pub const NOFRAGMENT: AllocFlags = AllocFlags(0x100);
    pub const HIGHATOMIC: AllocFlags = AllocFlags(0x200);
    pub const KSWAPD: AllocFlags = AllocFlags(0x800);
    pub const RESERVES: AllocFlags = AllocFlags(0x10 | 0x20 | 0x200 | 0x08);

    #[inline]
    pub const fn contains(self, f: AllocFlags) -> bool {
        self.0 & f.0 == f.0
    }
    #[inline]
    pub const fn intersects(self, f: AllocFlags) -> bool {
        self.0 & f.0 != 0
    }
    #[inline]
    pub const fn with(self, f: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 | f.0)
    }
    #[inline]
    pub const fn without(self, f: AllocFlags) -> AllocFlags {
        AllocFlags(self.0 & !f.0)
    }
    pub fn wmark(self) -> Wmark {
        match self.0 & Self::WMARK_MASK {
            0 => Wmark::Min,
            1 => Wmark::Low,
            _ => Wmark::High,
        }
    }

    /// `gfp_to_alloc_flags` (slow path).
    pub fn from_gfp(gfp: Gfp, order: u8) -> AllocFlags {
        let mut f = AllocFlags::WMARK_MIN.with(AllocFlags::CPUSET);
        f.0 |= gfp.0 & (Gfp::HIGH.0 | Gfp::KSWAPD_RECLAIM.0);
        if !gfp.contains(Gfp::DIRECT_RECLAIM) {
            if !gfp.contains(Gfp::NOMEMALLOC) {
                f = f.with(AllocFlags::NON_BLOCK);
                if order > 0 && f.contains(AllocFlags::MIN_RESERVE) {
                    f = f.with(AllocFlags::HIGHATOMIC);
                }
            }
            if f.contains(AllocFlags::MIN_RESERVE) {
                f = f.without(AllocFlags::CPUSET);
            }
        }
        with_cma(gfp, f)
    }

    /// `__gfp_pfmemalloc_flags`: reserve rights that replace the normal ones.
    pub fn pfmemalloc(gfp: Gfp, scope: Scope) -> AllocFlags {
        if gfp.contains(Gfp::NOMEMALLOC) {
            AllocFlags(0)
        } else if gfp.contains(Gfp::MEMALLOC) || scope.contains(Scope::MEMALLOC) {
            AllocFlags::NO_WATERMARKS
        } else {
            AllocFlags(0)
        }
    }
}

/// `gfp_to_alloc_flags_cma`: movable allocations may use CMA pageblocks.
fn with_cma(gfp: Gfp, f: AllocFlags) -> AllocFlags {
    if gfp.migratetype() == MigrateType::Movable {
        f.with(AllocFlags::CMA)
    } else {
        f
    }
}

impl fmt::Debug for AllocFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ALLOC_WMARK_{}", self.wmark().name().to_uppercase())?;
        for (bit, name) in [
            (Self::NO_WATERMARKS, "NO_WATERMARKS"),
            (Self::OOM, "OOM"),
            (Self::NON_BLOCK, "NON_BLOCK"),
            (Self::MIN_RESERVE, "MIN_RESERVE"),
            (Self::CPUSET, "CPUSET"),
            (Self::CMA, "CMA"),
            (Self::NOFRAGMENT, "NOFRAGMENT"),
            (Self::HIGHATOMIC, "HIGHATOMIC"),
            (Self::KSWAPD, "KSWAPD"),
        ] {
            if self.contains(bit) {
                write!(f, "|ALLOC_{name}")?;
            }
        }
        Ok(())
    }
}

/// An allocated block, with what the kernel would know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageBlock {
    pub pfn: Pfn,
    pub order: u8,
    pub node: u16,
    pub zone: ZoneType,
    /// The migratetype asked for (`gfp_migratetype`).
    pub migratetype: MigrateType,
    /// The mask after the scope filter.
    #[serde(serialize_with = "ser_gfp")]
    pub gfp: Gfp,
    /// Taken ignoring watermarks (`page->pfmemalloc`).
    pub pfmemalloc: bool,
}

fn ser_gfp<S: serde::Serializer>(g: &Gfp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&g.to_string())
}

impl PageBlock {
    pub fn nr_pages(&self) -> u64 {
        1 << self.order
    }
    pub fn phys_addr(&self) -> u64 {
        self.pfn * PAGE_SIZE
    }
}

/// Why one zone did not serve a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Refusal {
    /// `zone_watermark_fast` said no.
    Watermark {
        watermark: Wmark,
        free: u64,
        mark: u64,
        lowmem_reserve: u64,
    },
    /// The watermark allowed it but no list had a block (fragmentation).
    NoBlock,
}

/// One zone's refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneRefusal {
    pub node: u16,
    pub zone: ZoneType,
    pub refusal: Refusal,
}

impl fmt::Display for ZoneRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} zone {}: ", self.node, self.zone.name())?;
        match &self.refusal {
            Refusal::Watermark {
                watermark,
                free,
                mark,
                lowmem_reserve,
            } => write!(
                f,
                "free {free} pages not above {} watermark {mark} + lowmem_reserve {lowmem_reserve}",
                watermark.name()
            ),
            Refusal::NoBlock => write!(f, "no free block of the order on any allowed list"),
        }
    }
}

/// Where in the slow path the request gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FailStage {
    /// Not allowed to block (no `__GFP_DIRECT_RECLAIM`).
    NoDirectReclaim,
    /// The task is itself reclaiming (PF_MEMALLOC).
    Memalloc,
    /// `__GFP_NORETRY` after one reclaim attempt.
    NoRetry,
    /// Costly order without `__GFP_RETRY_MAYFAIL`.
    Costly,
    /// Reclaim made no progress for MAX_RECLAIM_RETRIES loops; OOM found no victim.
    RetriesExhausted,
    /// `__GFP_THISNODE` or a constrained request the OOM killer does not serve.
    NoOom,
}

impl FailStage {
    fn text(self) -> &'static str {
        match self {
            FailStage::NoDirectReclaim => "the caller may not sleep (no __GFP_DIRECT_RECLAIM)",
            FailStage::Memalloc => "the caller is reclaiming (PF_MEMALLOC) and may not recurse",
            FailStage::NoRetry => "__GFP_NORETRY stopped after one reclaim attempt",
            FailStage::Costly => "costly order without __GFP_RETRY_MAYFAIL does not retry",
            FailStage::RetriesExhausted => "reclaim made no progress in 16 retries",
            FailStage::NoOom => "no OOM kill for this request",
        }
    }
}

/// A failed allocation's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllocFailure {
    pub order: u8,
    #[serde(serialize_with = "ser_gfp")]
    pub gfp: Gfp,
    pub node: u16,
    pub stage: FailStage,
    pub zones: Vec<ZoneRefusal>,
}

/// Errors of the page allocator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("order {order} is above MAX_PAGE_ORDER {MAX_ORDER}")]
    InvalidOrder { order: u8 },
    #[error(transparent)]
    Gfp(#[from] GfpError),
    #[error("node {node} does not exist (the machine has {nodes})")]
    NoSuchNode { node: u16, nodes: u16 },
    #[error("cpu {cpu} does not exist (the machine has {cpus})")]
    NoSuchCpu { cpu: u16, cpus: u16 },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("page allocation failure: order:{}, mode:{:#x}({}): {}", .0.order, .0.gfp.0, .0.gfp, fmt_failure(.0))]
    NoMemory(Box<AllocFailure>),
    #[error(transparent)]
    Memcg(#[from] crate::memcg::MemcgError),
    #[error("__GFP_NOFAIL allocation of order {order} cancelled while waiting for memory")]
    Cancelled { order: u8 },
    #[error("__GFP_NOFAIL allocation of order {order} gave up at its deadline")]
    DeadlineExceeded { order: u8 },
}

fn fmt_failure(f: &AllocFailure) -> String {
    let mut s = f.stage.text().to_string();
    if f.zones.is_empty() {
        s.push_str("; no zone allowed by the mask has memory on the allowed nodes");
    }
    for z in &f.zones {
        s.push_str("; ");
        s.push_str(&z.to_string());
    }
    s
}

impl AllocError {
    /// Stable reason string (error codes as data).
    pub fn reason(&self) -> &'static str {
        match self {
            AllocError::InvalidOrder { .. } => "INVALID_ORDER",
            AllocError::Gfp(g) => g.reason(),
            AllocError::NoSuchNode { .. } => "NO_SUCH_NODE",
            AllocError::NoSuchCpu { .. } => "NO_SUCH_CPU",
            AllocError::BadRequest(_) => "BAD_REQUEST",
            AllocError::NoMemory(f) => {
                if f.zones
                    .iter()
                    .any(|z| matches!(z.refusal, Refusal::Watermark { .. }))
                {
                    "BELOW_MIN_WATERMARK"
                } else if f.zones.is_empty() {
                    "OUT_OF_MEMORY"
                } else {
                    "NO_FREE_BLOCK"
                }
            }
            AllocError::Memcg(e) => e.reason(),
            AllocError::Cancelled { .. } => "NOFAIL_CANCELLED",
            AllocError::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED",
        }
    }
}

/// Errors of the free path. The allocator is unchanged after each of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FreeError {
    #[error("order {order} is above MAX_PAGE_ORDER {MAX_ORDER}")]
    InvalidOrder { order: u8 },
    #[error("pfn {pfn:#x} is outside every zone (the machine has {nr_pages:#x} page frames)")]
    OutOfRange { pfn: Pfn, nr_pages: u64 },
    #[error("double free of pfn {pfn:#x} (order {order}): the block is already free")]
    DoubleFree { pfn: Pfn, order: u8 },
    #[error("pfn {pfn:#x} was allocated with order {actual}, not order {given}")]
    WrongOrder { pfn: Pfn, given: u8, actual: u8 },
    #[error(
        "pfn {pfn:#x} is a tail page of the order-{order} block at pfn {head:#x}; free the head"
    )]
    TailPage { pfn: Pfn, head: Pfn, order: u8 },
    #[error("pfn {pfn:#x} is not an allocated block (free, reserved or a hole)")]
    NotAllocated { pfn: Pfn },
    #[error("range of {nr_pages} pages at pfn {pfn:#x} is not the exact allocation there")]
    BadRange { pfn: Pfn, nr_pages: u64 },
    #[error("pfn {pfn:#x} belongs to {owner}; free it with kfree / kmem_cache_free")]
    NotPageAllocation { pfn: Pfn, owner: String },
}

impl FreeError {
    pub fn reason(&self) -> &'static str {
        match self {
            FreeError::InvalidOrder { .. } => "INVALID_ORDER",
            FreeError::OutOfRange { .. } => "PFN_OUT_OF_RANGE",
            FreeError::DoubleFree { .. } => "DOUBLE_FREE",
            FreeError::WrongOrder { .. } => "WRONG_ORDER",
            FreeError::TailPage { .. } => "TAIL_PAGE",
            FreeError::NotAllocated { .. } => "ALLOCATION_NOT_FOUND",
            FreeError::BadRange { .. } => "BAD_RANGE",
            FreeError::NotPageAllocation { .. } => "NOT_A_PAGE_ALLOCATION",
        }
    }
}

/// A resolved request: mask, order, where it runs.
struct Request<'a> {
    gfp: Gfp,
    order: u8,
    mt: MigrateType,
    highest: ZoneType,
    node: u16,
    /// The CPU the call runs on (resolved once; its pcp lists and node).
    cpu: &'a Cpu,
    ctx: &'a AllocContext,
}

impl Request<'_> {
    /// The preferred node's zonelist (`__GFP_THISNODE`: its own zones only).
    fn zonelist<'m>(&self, m: &'m Machine) -> &'m [usize] {
        if self.gfp.contains(Gfp::THISNODE) {
            &m.zonelists_thisnode[self.node as usize]
        } else {
            &m.zonelists[self.node as usize]
        }
    }

    /// The block handed to the caller.
    #[inline(always)]
    fn block(&self, zone: &Zone, pfn: Pfn, pfmemalloc: bool) -> PageBlock {
        PageBlock {
            pfn,
            order: self.order,
            node: zone.node,
            zone: zone.zt,
            migratetype: self.mt,
            gfp: self.gfp,
            pfmemalloc,
        }
    }
}

/// A block taken by `get_page_from_freelist`, packed into one register (pfn, zone
/// index, pfmemalloc): returning a [`PageBlock`] through memory and copying it made
/// the caller reload its small fields with wide loads, which stalls store forwarding
/// on the hot path.
#[derive(Clone, Copy)]
struct Got(std::num::NonZeroU64);

impl Got {
    const ZONE_BITS: u32 = 15;
    fn new(pfn: Pfn, zone: usize, pfmemalloc: bool) -> Got {
        debug_assert!(zone < 1 << Self::ZONE_BITS && pfn < 1 << 47);
        let v = (pfn << (Self::ZONE_BITS + 1)) | ((zone as u64) << 1) | pfmemalloc as u64;
        Got(std::num::NonZeroU64::new(v | 1 << 63).expect("top bit set"))
    }
    fn pfn(self) -> Pfn {
        (self.0.get() & !(1 << 63)) >> (Self::ZONE_BITS + 1)
    }
    fn zone(self) -> usize {
        ((self.0.get() >> 1) & ((1 << Self::ZONE_BITS) - 1)) as usize
    }
    fn pfmemalloc(self) -> bool {
        self.0.get() & 1 != 0
    }
}

/// `MAX_RECLAIM_RETRIES`.
const MAX_RECLAIM_RETRIES: u32 = 16;

impl Machine {
    /// `alloc_pages(gfp, order)` on the context's CPU and node.
    pub fn alloc_pages(
        &self,
        gfp: Gfp,
        order: u8,
        ctx: &AllocContext,
    ) -> Result<PageBlock, AllocError> {
        self.prepare_alloc(gfp, order, ctx, |req, first, flags| {
            self.alloc_prepared(req, first, flags, ctx)
        })
    }

    /// [`Machine::alloc_pages`] once the request is resolved.
    #[inline(always)]
    fn alloc_prepared(
        &self,
        req: Request<'_>,
        first: Option<usize>,
        flags: AllocFlags,
        ctx: &AllocContext,
    ) -> Result<PageBlock, AllocError> {
        // The common case, checked first without the general walk: the preferred zone
        // passes its low watermark and the CPU's pcp list has a block. This is exactly
        // the first step `get_page_from_freelist` would take.
        if let Some(zi) = first {
            let zone = &self.zones[zi];
            if let Some(pfn) = self.pcp_fast(zone, &req, flags, None) {
                // Built here, straight into the result: a block built in a callee and
                // copied would be reloaded with wider loads than its field stores,
                // which stalls store forwarding.
                return self.charge_page(req.block(zone, pfn, false), ctx);
            }
        }
        self.alloc_pages_general(req, flags, ctx)
    }

    /// Everything after the fast path: the zonelist walk, then the slow path.
    #[inline(never)]
    fn alloc_pages_general(
        &self,
        req: Request<'_>,
        flags: AllocFlags,
        ctx: &AllocContext,
    ) -> Result<PageBlock, AllocError> {
        let mut refusals = Vec::new();
        if let Some(g) = self.take_from_freelist(&req, flags, &mut refusals) {
            let b = req.block(&self.zones[g.zone()], g.pfn(), g.pfmemalloc());
            return self.charge_page(b, ctx);
        }
        match self.slowpath(&req, refusals) {
            Ok(b) => self.charge_page(b, ctx),
            e => e,
        }
    }

    /// [`Machine::alloc_pages`] for a caller that holds CPU `st`'s pcp lock (a
    /// [`crate::PinnedCpu`]): the fast path only, with no memcg charge. `None` means
    /// the caller must release the CPU and take the general path, which starts over.
    #[inline(always)]
    pub(crate) fn alloc_pages_pinned(
        &self,
        gfp: Gfp,
        order: u8,
        ctx: &AllocContext,
        st: &mut CpuState,
    ) -> Option<Result<PageBlock, AllocError>> {
        if gfp.contains(Gfp::ACCOUNT) && ctx.cgroup.is_some_and(|c| c != CgroupId::ROOT) {
            return None;
        }
        let r = self.prepare_alloc(gfp, order, ctx, |req, first, flags| {
            let Some(zi) = first else {
                return Ok(None);
            };
            let zone = &self.zones[zi];
            Ok(self
                .pcp_fast(zone, &req, flags, Some(st))
                .map(|pfn| req.block(zone, pfn, false)))
        });
        r.transpose()
    }

    /// The checks and the resolved request every allocation starts with: the order,
    /// the mask in its scope, the CPU, the node and its zonelist; then the preferred
    /// zone and the fast path's flags (low watermark, NOFRAGMENT, CMA), handed to
    /// `then`. (Passed on, not returned: a returned tuple went through memory.)
    #[inline(always)]
    fn prepare_alloc<'a, R>(
        &'a self,
        gfp: Gfp,
        order: u8,
        ctx: &'a AllocContext,
        then: impl FnOnce(Request<'a>, Option<usize>, AllocFlags) -> Result<R, AllocError>,
    ) -> Result<R, AllocError> {
        if order > MAX_ORDER {
            return Err(self.bad_order(order, gfp));
        }
        let gfp = match ctx.scope.apply(gfp).validate() {
            Ok(g) => g,
            Err(e) => {
                RareEvents::inc(&self.mm.ev.alloc_fail_gfp);
                return Err(e.into());
            }
        };
        let cpu = &self.cpus[self.resolve_cpu(ctx)?];
        let node = match ctx.node {
            Some(n) if n as usize >= self.nr_nodes() => {
                return Err(AllocError::NoSuchNode {
                    node: n,
                    nodes: self.nr_nodes() as u16,
                })
            }
            Some(n) => n,
            None => cpu.node,
        };
        let req = Request {
            gfp,
            order,
            mt: gfp.migratetype(),
            highest: gfp.zone(),
            node,
            cpu,
            ctx,
        };
        // Fast path at the low watermark, in the zonelist's first allowed zone.
        let fz = self.first_zones[node as usize][gfp.contains(Gfp::THISNODE) as usize]
            [req.highest as usize];
        let first = fz.zone();
        let mut flags = AllocFlags::WMARK_LOW.with(AllocFlags(gfp.0 & Gfp::KSWAPD_RECLAIM.0));
        if fz.nofragment() {
            flags = flags.with(AllocFlags::NOFRAGMENT);
        }
        flags = with_cma(gfp, flags);
        then(req, first, flags)
    }

    #[cold]
    fn bad_order(&self, order: u8, gfp: Gfp) -> AllocError {
        RareEvents::inc(&self.mm.ev.alloc_fail_order);
        if !gfp.contains(Gfp::NOWARN) {
            self.log.warn(format!(
                "WARNING: alloc_pages: order {order} > MAX_PAGE_ORDER {MAX_ORDER}, mode:{:#x}({gfp})",
                gfp.0
            ));
        }
        AllocError::InvalidOrder { order }
    }

    /// The first step of `get_page_from_freelist` without the general walk: the
    /// preferred zone passes its low watermark and serves the block from the CPU's pcp
    /// list (no refill here) or, for orders the pcp does not cache, from the buddy
    /// lists directly.
    #[inline(always)]
    fn pcp_fast(
        &self,
        zone: &Zone,
        req: &Request,
        flags: AllocFlags,
        held: Option<&mut CpuState>,
    ) -> Option<Pfn> {
        if req.gfp.intersects(Gfp(Gfp::ZERO.0 | Gfp::COMP.0)) || self.cfg.init_on_alloc {
            return None;
        }
        let mark = zone.wmark_boosted(Wmark::Low);
        if !watermark_fast(zone, req.order, mark, req.highest, flags) {
            return None;
        }
        let pfn = if pcp_allowed_order(req.order, self.thp_pcp()) {
            let pi = pindex(req.order, req.mt);
            let mut st = req.cpu.state_or(held);
            let st = &mut *st;
            let pcp = &mut st.pcp[zone.id];
            let pfn = pcp.pop(pi)?;
            pcp.free_count >>= 1;
            pcp.count -= 1 << req.order;
            // The common NUMA case counted on the set already in hand.
            let local = zone.node == req.node && zone.node == req.cpu.node;
            if local {
                pcp.numa.hit += 1;
                pcp.numa.local += 1;
            }
            st.events.add(Event::Pgalloc(zone.zt), 1 << req.order);
            if !local {
                self.account_numa(st, zone, req);
            }
            // Published last: an atomic store would make the compiler reload what
            // it had already loaded above.
            self.pages().set(
                pfn,
                PageWord::alloc_guarded(req.order, req.mt, req.cpu.guard),
            );
            pfn
        } else {
            if zone.node != req.node {
                return None;
            }
            // With NOFRAGMENT a miss here is retried by the general path without it,
            // exactly as `get_page_from_freelist` retries.
            let mut b = zone.lock(&self.mm);
            let p = b.rmqueue_buddy(req.order, req.mt, flags)?;
            self.pages()
                .set(p, PageWord::new(PageKind::Alloc, req.order, req.mt, 0));
            b.count_alloc(req.order, true, zone.node == req.cpu.node);
            p
        };
        self.wake_if_boosted(zone, flags);
        Some(pfn)
    }

    /// `__memcg_kmem_charge_page`: charge an `__GFP_ACCOUNT` block to the context's
    /// cgroup (never the root) and record the owner in the head word, so the free
    /// uncharges that cgroup whoever frees it; a failed charge frees the block.
    #[inline(always)]
    fn charge_page(&self, b: PageBlock, ctx: &AllocContext) -> Result<PageBlock, AllocError> {
        match ctx.cgroup {
            Some(cg) if cg != CgroupId::ROOT && b.gfp.contains(Gfp::ACCOUNT) => {
                // Scalars only: `b` itself goes nowhere but into the result, so it is
                // built there directly.
                self.charge_block(b.pfn, b.order, b.gfp, cg, ctx)?;
                Ok(b)
            }
            _ => Ok(b),
        }
    }

    #[inline(never)]
    fn charge_block(
        &self,
        pfn: Pfn,
        order: u8,
        gfp: Gfp,
        cg: CgroupId,
        ctx: &AllocContext,
    ) -> Result<(), AllocError> {
        let cpu = self.resolve_cpu(ctx)?;
        match self.memcgs.charge(
            cg,
            1 << order,
            crate::memcg::StatItem::Kernel,
            gfp,
            ctx,
            cpu,
        ) {
            Ok(_) => {
                let w = self.pages().get(pfn);
                self.pages().set(pfn, w.with_aux(cg.0 as u32 + 1));
                Ok(())
            }
            Err(e) => {
                let _ = self.free_pages_on(pfn, order, ctx);
                Err(AllocError::Memcg(e))
            }
        }
    }

    /// `alloc_pages_node`.
    pub fn alloc_pages_node(
        &self,
        node: u16,
        gfp: Gfp,
        order: u8,
    ) -> Result<PageBlock, AllocError> {
        self.alloc_pages(gfp, order, &AllocContext::on_node(node))
    }

    /// `get_page_from_freelist`.
    fn get_page_from_freelist(
        &self,
        req: &Request,
        flags: AllocFlags,
        refusals: &mut Vec<ZoneRefusal>,
    ) -> Option<PageBlock> {
        let g = self.take_from_freelist(req, flags, refusals)?;
        Some(req.block(&self.zones[g.zone()], g.pfn(), g.pfmemalloc()))
    }

    /// [`Machine::get_page_from_freelist`] returning the block packed.
    fn take_from_freelist(
        &self,
        req: &Request,
        mut flags: AllocFlags,
        refusals: &mut Vec<ZoneRefusal>,
    ) -> Option<Got> {
        'retry: loop {
            refusals.clear();
            let no_fallback = flags.contains(AllocFlags::NOFRAGMENT);
            for &zi in req.zonelist(self) {
                let zone = &self.zones[zi];
                if zone.zt > req.highest {
                    continue;
                }
                if no_fallback && self.nr_nodes() > 1 && zone.node != req.node {
                    flags = flags.without(AllocFlags::NOFRAGMENT);
                    continue 'retry;
                }
                let wm = flags.wmark();
                let mark = zone.wmark_boosted(wm);
                if !flags.contains(AllocFlags::NO_WATERMARKS)
                    && !watermark_fast(zone, req.order, mark, req.highest, flags)
                {
                    refusals.push(ZoneRefusal {
                        node: zone.node,
                        zone: zone.zt,
                        refusal: Refusal::Watermark {
                            watermark: wm,
                            free: zone.free_pages(),
                            mark,
                            lowmem_reserve: zone.lowmem_reserve(req.highest.idx()),
                        },
                    });
                    continue;
                }
                if let Some((pfn, counted)) = self.rmqueue(zone, req, flags) {
                    let pfmemalloc = self.prep_new_page(zone, req, flags, pfn, counted);
                    return Some(Got::new(pfn, zi, pfmemalloc));
                }
                refusals.push(ZoneRefusal {
                    node: zone.node,
                    zone: zone.zt,
                    refusal: Refusal::NoBlock,
                });
            }
            if no_fallback {
                flags = flags.without(AllocFlags::NOFRAGMENT);
                continue;
            }
            return None;
        }
    }

    /// `rmqueue`: pcp for small orders, else the buddy lists. Returns the block and
    /// whether its events were already counted (under the pcp lock).
    fn rmqueue(&self, zone: &Zone, req: &Request, flags: AllocFlags) -> Option<(Pfn, bool)> {
        let pcp = if pcp_allowed_order(req.order, self.thp_pcp()) {
            self.rmqueue_pcplist(zone, req, flags).map(|p| (p, true))
        } else {
            None
        };
        let got = pcp.or_else(|| {
            let mut b = zone.lock(&self.mm);
            let p = b.rmqueue_buddy(req.order, req.mt, flags)?;
            self.pages()
                .set(p, PageWord::new(PageKind::Alloc, req.order, req.mt, 0));
            b.count_alloc(req.order, zone.node == req.node, zone.node == req.cpu.node);
            // Only numa_foreign (another zone's counter) still needs the CPU.
            Some((p, zone.node == req.node))
        })?;
        self.wake_if_boosted(zone, flags);
        Some(got)
    }

    /// Count an allocation: `pgalloc_<zone>` and the NUMA hit/miss/local/other events.
    #[inline(always)]
    fn account_alloc(&self, st: &mut CpuState, zone: &Zone, req: &Request) {
        st.events.add(Event::Pgalloc(zone.zt), 1 << req.order);
        if zone.node == req.node && zone.node == req.cpu.node {
            let numa = &mut st.pcp[zone.id].numa;
            numa.hit += 1;
            numa.local += 1;
        } else {
            self.account_numa(st, zone, req);
        }
    }

    /// The NUMA events of one allocation (`zone_statistics`): hit or miss against the
    /// preferred node, local or other against the CPU's node, and `numa_foreign` on
    /// the preferred node when another node served it.
    #[inline(never)]
    fn account_numa(&self, st: &mut CpuState, zone: &Zone, req: &Request) {
        let local = req.cpu.node;
        let numa = &mut st.pcp[zone.id].numa;
        if zone.node == req.node {
            numa.hit += 1;
        } else {
            numa.miss += 1;
        }
        if zone.node == local {
            numa.local += 1;
        } else {
            numa.other += 1;
        }
        if zone.node != req.node {
            // numa_foreign is counted on the preferred node's first zone.
            if let Some(&pz) = self.zonelists_thisnode[req.node as usize].first() {
                st.pcp[pz].numa.foreign += 1;
            }
        }
    }

    /// `rmqueue_pcplist`: pop from the CPU's list, refilling it from the buddy first.
    fn rmqueue_pcplist(&self, zone: &Zone, req: &Request, flags: AllocFlags) -> Option<Pfn> {
        let pi = pindex(req.order, req.mt);
        let mut st = req.cpu.state.lock();
        let pcp = &mut st.pcp[zone.id];
        pcp.free_count >>= 1;
        if pcp.lists[pi].is_empty() {
            let n = pcp.nr_alloc(zone.pcp_sizing(), req.order);
            let mut b = zone.lock(&self.mm);
            let mut taken = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let Some(p) = b.rmqueue(req.order, req.mt, flags) else {
                    break;
                };
                self.pages().set(p, PageWord::pcp(req.order));
                taken.push(p as u32);
                pcp.count += 1 << req.order;
            }
            drop(b);
            // Each block goes behind the ones taken before it (`list_add_tail`): the
            // first taken is the newest, served first.
            for &p in taken.iter().rev() {
                pcp.lists[pi].push(p);
            }
        }
        let pfn = pcp.pop(pi)?;
        pcp.count -= 1 << req.order;
        self.pages().set(
            pfn,
            PageWord::alloc_guarded(req.order, req.mt, req.cpu.guard),
        );
        self.account_alloc(&mut st, zone, req);
        Some(pfn)
    }

    /// `prep_new_page` plus the bookkeeping of a successful allocation; returns
    /// whether the block was taken ignoring watermarks (`page->pfmemalloc`).
    fn prep_new_page(
        &self,
        zone: &Zone,
        req: &Request,
        flags: AllocFlags,
        pfn: Pfn,
        counted: bool,
    ) -> bool {
        let pfmemalloc = flags.contains(AllocFlags::NO_WATERMARKS);
        let compound = req.gfp.contains(Gfp::COMP) && req.order > 0;
        if compound || pfmemalloc {
            let w = self.pages().get(pfn);
            self.pages()
                .set(pfn, w.with_compound(compound).with_pfmemalloc(pfmemalloc));
        }
        if pfmemalloc {
            RareEvents::inc(&self.mm.ev.pfmemalloc_alloc);
        }
        if req.gfp.contains(Gfp::ZERO) || self.cfg.init_on_alloc {
            self.content.clear(pfn, 1 << req.order);
        }
        if flags.contains(AllocFlags::HIGHATOMIC) && req.order > 0 {
            zone.lock(&self.mm).reserve_highatomic(pfn, req.order);
        }
        if !counted {
            // A buddy-path allocation off the preferred node: numa_foreign is counted
            // on the preferred node's first zone.
            if let Some(&pz) = self.zonelists_thisnode[req.node as usize].first() {
                req.cpu.state.lock().pcp[pz].numa.foreign += 1;
            }
        }
        pfmemalloc
    }

    /// `__alloc_pages_slowpath`.
    fn slowpath(
        &self,
        req: &Request,
        mut refusals: Vec<ZoneRefusal>,
    ) -> Result<PageBlock, AllocError> {
        let gfp = req.gfp;
        let order = req.order;
        let costly = order > PAGE_ALLOC_COSTLY_ORDER;
        let can_reclaim = gfp.contains(Gfp::DIRECT_RECLAIM);
        let mut flags = AllocFlags::from_gfp(gfp, order);
        if flags.contains(AllocFlags::KSWAPD) {
            self.wake_all_kswapds(req);
        }
        if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
            return Ok(b);
        }
        let mut no_progress_loops = 0u32;
        let mut drained = false;
        let stage = loop {
            if flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kswapds(req);
            }
            let reserve = AllocFlags::pfmemalloc(gfp, req.ctx.scope);
            if reserve.0 != 0 {
                flags = with_cma(gfp, reserve).with(AllocFlags(flags.0 & AllocFlags::KSWAPD.0));
            }
            if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
                return Ok(b);
            }
            if !can_reclaim {
                break FailStage::NoDirectReclaim;
            }
            if req.ctx.scope.contains(Scope::MEMALLOC) {
                break FailStage::Memalloc;
            }
            // Direct reclaim. vmscan plugs in here; until it exists nothing is reclaimed.
            {
                let mut st = req.cpu.state.lock();
                st.events.add(Event::Allocstall(req.highest), 1);
            }
            let progress = self.direct_reclaim(req);
            if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
                return Ok(b);
            }
            if !drained {
                self.unreserve_highatomic(req, false);
                self.drain_all_pages();
                drained = true;
                if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
                    return Ok(b);
                }
            }
            // Direct compaction plugs in here.
            if gfp.contains(Gfp::NORETRY) {
                break FailStage::NoRetry;
            }
            if costly && !gfp.contains(Gfp::RETRY_MAYFAIL) {
                break FailStage::Costly;
            }
            // should_reclaim_retry
            if progress > 0 && !costly {
                no_progress_loops = 0;
            } else {
                no_progress_loops += 1;
            }
            if no_progress_loops > MAX_RECLAIM_RETRIES {
                if self.unreserve_highatomic(req, true) {
                    continue;
                }
                break FailStage::RetriesExhausted;
            }
            if progress > 0 {
                continue;
            }
            // Nothing reclaimable: retrying cannot help; go to OOM.
            if gfp.contains(Gfp::RETRY_MAYFAIL) || gfp.contains(Gfp::THISNODE) || costly {
                break FailStage::NoOom;
            }
            // __alloc_pages_may_oom: a last try at the high watermark; there are no
            // tasks to kill yet.
            let hw = AllocFlags::WMARK_HIGH.with(AllocFlags::CPUSET);
            if let Some(b) = self.get_page_from_freelist(req, hw, &mut refusals) {
                return Ok(b);
            }
            break FailStage::RetriesExhausted;
        };
        if gfp.contains(Gfp::NOFAIL) {
            return self.nofail_wait(req, flags);
        }
        RareEvents::inc(&self.mm.ev.alloc_fail_nomem);
        if !gfp.contains(Gfp::NOWARN) {
            self.log.warn_ratelimited(format!(
                "kmemd: page allocation failure: order:{order}, mode:{:#x}({gfp}), nodemask=(null)",
                gfp.0
            ));
        }
        Err(AllocError::NoMemory(Box::new(AllocFailure {
            order,
            gfp,
            node: req.node,
            stage,
            zones: refusals,
        })))
    }

    /// The NOFAIL loop: retry with the MIN_RESERVE discount, then wait for a free.
    fn nofail_wait(&self, req: &Request, flags: AllocFlags) -> Result<PageBlock, AllocError> {
        RareEvents::inc(&self.mm.ev.nofail_wait);
        if req.order > 1 {
            self.log.warn(format!(
                "WARNING: __GFP_NOFAIL with order {} > 1 (mode:{:#x}({}))",
                req.order, req.gfp.0, req.gfp
            ));
        }
        let flags = flags.with(AllocFlags::MIN_RESERVE);
        let mut refusals = Vec::new();
        loop {
            let seen = self.waiters.generation();
            if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
                return Ok(b);
            }
            self.drain_all_pages();
            if let Some(b) = self.get_page_from_freelist(req, flags, &mut refusals) {
                return Ok(b);
            }
            if let Some(g) = req.ctx.gave_up() {
                RareEvents::inc(&self.mm.ev.nofail_gave_up);
                return Err(match g {
                    GiveUp::Cancelled => AllocError::Cancelled { order: req.order },
                    GiveUp::Deadline => AllocError::DeadlineExceeded { order: req.order },
                });
            }
            // Wake on a free, or at most every 10 ms to notice a cancel.
            let mut until = std::time::Instant::now() + Duration::from_millis(10);
            if let Some(d) = req.ctx.deadline {
                until = until.min(d);
            }
            self.waiters.wait_past(seen, until);
        }
    }

    /// The direct-reclaim hook: pages reclaimed. Nothing is reclaimable until vmscan.
    fn direct_reclaim(&self, _req: &Request) -> u64 {
        0
    }

    /// ZONE_BOOSTED_WATERMARK: after a boost, the next allocation wakes kswapd.
    #[inline]
    fn wake_if_boosted(&self, zone: &Zone, flags: AllocFlags) {
        if flags.contains(AllocFlags::KSWAPD)
            && zone.boosted.load(Relaxed)
            && zone.boosted.swap(false, Relaxed)
        {
            self.wake_kswapd(zone.node);
        }
    }

    fn wake_kswapd(&self, _node: u16) {
        RareEvents::inc(&self.mm.ev.kswapd_wake);
    }

    /// `wake_all_kswapds`: once per node in the zonelist.
    fn wake_all_kswapds(&self, req: &Request) {
        let mut last = u16::MAX;
        for &z in req.zonelist(self) {
            let n = self.zones[z].node;
            if n != last && self.zones[z].zt <= req.highest {
                self.wake_kswapd(n);
                last = n;
            }
        }
    }

    /// `unreserve_highatomic_pageblock` over the request's zonelist.
    fn unreserve_highatomic(&self, req: &Request, force: bool) -> bool {
        for &zi in req.zonelist(self) {
            let z = &self.zones[zi];
            if z.zt > req.highest {
                continue;
            }
            if z.lock(&self.mm).unreserve_highatomic(req.mt, force) {
                return true;
            }
        }
        false
    }

    /// `__free_pages(page, order)` from the calling thread's CPU.
    pub fn free_pages(&self, pfn: Pfn, order: u8) -> Result<(), FreeError> {
        self.free_pages_on(pfn, order, &AllocContext::default())
    }

    /// `__free_pages` on the context's CPU (its pcp lists receive small blocks).
    #[inline]
    pub fn free_pages_on(&self, pfn: Pfn, order: u8, ctx: &AllocContext) -> Result<(), FreeError> {
        if let Some(cpu) = self.fast_cpu(ctx) {
            if self.free_pages_fast(pfn, order, cpu, None).is_some() {
                return Ok(());
            }
        }
        self.free_pages_general(pfn, order, ctx)
    }

    /// [`Machine::free_pages_on`] in full: every check, every error, memcg uncharge.
    #[inline(never)]
    fn free_pages_general(&self, pfn: Pfn, order: u8, ctx: &AllocContext) -> Result<(), FreeError> {
        if order > MAX_ORDER {
            RareEvents::inc(&self.mm.ev.bad_free);
            return Err(FreeError::InvalidOrder { order });
        }
        let cpu = self
            .resolve_cpu(ctx)
            .map_err(|_| FreeError::NotAllocated { pfn })?;
        let Some(zi) = self
            .pages()
            .zone_of(pfn)
            .filter(|_| pfn < self.pages().nr_pages())
        else {
            RareEvents::inc(&self.mm.ev.bad_free);
            return Err(FreeError::OutOfRange {
                pfn,
                nr_pages: self.pages().nr_pages(),
            });
        };
        let w = self.pages().get(pfn);
        if w.kind() == PageKind::Alloc && w.owner() != crate::page::Owner::Pages {
            RareEvents::inc(&self.mm.ev.bad_free);
            return Err(FreeError::NotPageAllocation {
                pfn,
                owner: self.owner_name(w.owner()),
            });
        }
        let w = self.claim_for_free(pfn, order)?;
        self.uncharge_block(w, order, cpu);
        self.free_claimed_pfn(zi, cpu, pfn, order);
        Ok(())
    }

    /// The common case of [`Machine::free_pages_on`]: a plain page allocation of
    /// this order with no memcg charge, read once and claimed (see `page.rs` on the
    /// two kinds of claim). `held` is CPU `cpu`'s pcp state when the caller holds its
    /// lock (a [`crate::PinnedCpu`]). `None` leaves everything unchanged and sends the
    /// caller to the general path, which checks everything again and reports errors.
    #[inline(always)]
    pub(crate) fn free_pages_fast(
        &self,
        pfn: Pfn,
        order: u8,
        cpu: usize,
        held: Option<&mut CpuState>,
    ) -> Option<()> {
        let pages = self.pages();
        // In range (the word exists), a page allocation of this order, uncharged.
        let page = pages.page(pfn)?;
        let w = page.get();
        let cpu = self.cpus.get(cpu)?;
        let guard = cpu.guard;
        // An unmovable block this CPU allocated has a word that is its hot byte
        // alone: one compare accepts it.
        if w != PageWord::alloc_guarded(order, MigrateType::Unmovable, guard)
            && (w.kind() != PageKind::Alloc
                || w.order() != order
                || w.owner() != crate::page::Owner::Pages
                || w.aux() != 0)
        {
            return None;
        }
        let (zi, mt) = pages.zone_and_mt(pfn)?;
        if w.guarded_by(guard) {
            return self.free_guarded_here((zi, mt), cpu, page, w, order, held);
        }
        if w.guard_cpu().is_some() {
            // Claimed under the other CPU's lock by the general path.
            return None;
        }
        page.cas(w, w.with_kind(PageKind::Freeing)).ok()?;
        self.free_claimed(zi, mt, cpu, page, order, held);
        Some(())
    }

    /// Free a block guarded by this CPU's lock onto this CPU's pcp list: the claim
    /// and the parking under one acquisition of the lock. `(zi, mt)`: the zone and
    /// migratetype of its pageblock. `None` (nothing changed)
    /// when the block does not go to the pcp list or its word changed since `w` was
    /// read; the general path then claims it the long way.
    #[inline(always)]
    fn free_guarded_here(
        &self,
        (zi, mt): (usize, MigrateType),
        cpu: &Cpu,
        page: PageRef<'_>,
        w: PageWord,
        order: u8,
        held: Option<&mut CpuState>,
    ) -> Option<()> {
        debug_assert_eq!(w.order(), order);
        if mt == MigrateType::Isolate
            || self.cfg.init_on_free
            || order >= self.cfg.release_bytes_order
        {
            return None;
        }
        let zone = &self.zones[zi];
        let mut st = cpu.state_or(held);
        let st = &mut *st;
        // Under the guarding lock nobody else can change the word: if it is still
        // `w`, this free owns the block.
        if page.get() != w {
            return None;
        }
        self.pcp_free_locked(st, zone, page, order, mt);
        self.waiters.notify();
        Some(())
    }

    /// Free a block on behalf of a subsystem that owns it (slab, large kmalloc): the
    /// owner was checked by the caller.
    pub(crate) fn free_owned_pages(
        &self,
        pfn: Pfn,
        order: u8,
        cpu: usize,
    ) -> Result<(), FreeError> {
        let zi = self.pages().zone_of(pfn).ok_or(FreeError::OutOfRange {
            pfn,
            nr_pages: self.pages().nr_pages(),
        })?;
        let w = self.claim_for_free(pfn, order)?;
        self.uncharge_block(w, order, cpu);
        self.free_claimed_pfn(zi, cpu, pfn, order);
        Ok(())
    }

    /// Return the memcg charge recorded in a block's head word, if any.
    #[inline]
    fn uncharge_block(&self, w: PageWord, order: u8, cpu: usize) {
        if w.aux() != 0 {
            let cg = CgroupId((w.aux() - 1) as u16);
            self.memcgs
                .uncharge(cg, 1 << order, crate::memcg::StatItem::Kernel, cpu);
        }
    }

    /// Validate a free and move the head word to `Freeing` (atomically, so two racing
    /// frees of one block cannot both succeed).
    #[inline(always)]
    pub(crate) fn claim_for_free(&self, pfn: Pfn, order: u8) -> Result<PageWord, FreeError> {
        let pages = self.pages();
        let w = pages.get(pfn);
        if w.kind() == PageKind::Alloc && w.order() == order {
            let claimed = match w.guard_cpu() {
                Some(c) => self.claim_guarded(pfn, c, w),
                None => pages.cas(pfn, w, w.with_kind(PageKind::Freeing)).ok(),
            };
            if let Some(w) = claimed {
                return Ok(w);
            }
        }
        self.claim_for_free_slow(pfn, order)
    }

    /// Claim a block whose word `w` is guarded by CPU `c`'s pcp lock: under that
    /// lock, move it to `Freeing` if it still holds `w`. `None` if it changed.
    ///
    /// Lock order: no pcp lock may be held by the caller (a pinned CPU releases its
    /// own before taking the general path); a CPU's local lock or a cache's slab
    /// table may be, as before any pcp lock.
    fn claim_guarded(&self, pfn: Pfn, c: usize, w: PageWord) -> Option<PageWord> {
        let _guard = self.cpus[c].state.lock();
        let pages = self.pages();
        let now = pages.get(pfn);
        if now != w {
            return None;
        }
        pages.set(pfn, now.with_kind(PageKind::Freeing));
        Some(now)
    }

    /// [`Machine::claim_for_free`] when the first attempt did not claim: a race to
    /// retry, or a bad free to report.
    #[inline(never)]
    fn claim_for_free_slow(&self, pfn: Pfn, order: u8) -> Result<PageWord, FreeError> {
        let pages = self.pages();
        let mut w = pages.get(pfn);
        loop {
            match w.kind() {
                PageKind::Alloc => {
                    if w.order() != order {
                        RareEvents::inc(&self.mm.ev.bad_free);
                        return Err(FreeError::WrongOrder {
                            pfn,
                            given: order,
                            actual: w.order(),
                        });
                    }
                    if let Some(c) = w.guard_cpu() {
                        match self.claim_guarded(pfn, c, w) {
                            Some(w) => return Ok(w),
                            None => w = pages.get(pfn),
                        }
                        continue;
                    }
                    match pages.cas(pfn, w, w.with_kind(PageKind::Freeing)) {
                        Ok(w) => return Ok(w),
                        Err(now) => w = now,
                    }
                }
                PageKind::Buddy | PageKind::Pcp | PageKind::Freeing => {
                    RareEvents::inc(&self.mm.ev.bad_free);
                    return Err(FreeError::DoubleFree { pfn, order });
                }
                PageKind::None => {
                    RareEvents::inc(&self.mm.ev.bad_free);
                    return Err(match self.block_containing(pfn) {
                        Some((head, hw)) if hw.kind() == PageKind::Alloc => FreeError::TailPage {
                            pfn,
                            head,
                            order: hw.order(),
                        },
                        Some((head, hw)) if head != pfn => FreeError::DoubleFree {
                            pfn,
                            order: hw.order(),
                        },
                        _ => FreeError::NotAllocated { pfn },
                    });
                }
            }
        }
    }

    /// [`Machine::free_claimed`] for callers off the hot path, which have only the pfn.
    fn free_claimed_pfn(&self, zi: usize, cpu: usize, pfn: Pfn, order: u8) {
        let pages = self.pages();
        let page = pages.page(pfn).expect("a claimed block is in range");
        let cpu = &self.cpus[cpu];
        self.free_claimed(zi, pages.pageblock_mt(pfn), cpu, page, order, None);
    }

    /// Put a claimed block on the pcp list or the buddy lists. `mt` is its
    /// pageblock's migratetype, read at the free as `free_unref_page` reads it.
    /// `held` is CPU `cpu`'s pcp state when the caller already holds its lock.
    #[inline(always)]
    fn free_claimed(
        &self,
        zi: usize,
        mt: MigrateType,
        cpu: &Cpu,
        page: PageRef<'_>,
        order: u8,
        held: Option<&mut CpuState>,
    ) {
        let zone = &self.zones[zi];
        let pfn = page.pfn();
        if self.cfg.init_on_free || order >= self.cfg.release_bytes_order {
            self.content.clear(pfn, 1 << order);
        }
        if pcp_allowed_order(order, self.thp_pcp()) && mt != MigrateType::Isolate {
            let mut st = cpu.state_or(held);
            let st = &mut *st;
            self.pcp_free_locked(st, zone, page, order, mt);
        } else {
            let mut b = zone.lock(&self.mm);
            b.count_free(order);
            b.free_one(pfn, order);
        }
        self.waiters.notify();
    }

    /// `free_unref_page_commit`: park a claimed block on the CPU's pcp list (its lock
    /// held: `st`) and give pages back to the buddy if the list is now too long.
    #[inline(always)]
    fn pcp_free_locked(
        &self,
        st: &mut CpuState,
        zone: &Zone,
        page: PageRef<'_>,
        order: u8,
        mt: MigrateType,
    ) {
        st.events.add(Event::Pgfree, 1 << order);
        let pcp = &mut st.pcp[zone.id];
        let pi = pindex(order, mt);
        page.set(PageWord::pcp(order));
        pcp.push(pi, page.pfn());
        pcp.count += 1 << order;
        let n = pcp.nr_to_free(zone.pcp_sizing(), order);
        if n > 0 {
            self.free_pcppages_bulk(zone, pcp, n, pi);
        }
    }

    /// `free_pcppages_bulk`: return `count` pages, oldest first, round-robin over the
    /// lists starting with `start`.
    pub(crate) fn free_pcppages_bulk(
        &self,
        zone: &Zone,
        pcp: &mut crate::pcp::PcpSet,
        count: u32,
        start: usize,
    ) {
        let mut left = count.min(pcp.count) as i64;
        let mut b = zone.lock(&self.mm);
        let mut pi = start;
        let nr = pcp.lists.len();
        let mut empty_rounds = 0;
        while left > 0 && empty_rounds < nr {
            if let Some(p) = pcp.lists[pi].pop_oldest() {
                let p = p as Pfn;
                let order = crate::pcp::pindex_order(pi);
                self.pages().set(p, PageWord::NONE);
                b.free_one(p, order);
                pcp.count -= 1 << order;
                left -= 1 << order;
                empty_rounds = 0;
            } else {
                empty_rounds += 1;
            }
            pi = (pi + 1) % nr;
        }
    }

    /// `drain_all_pages(NULL)`: every CPU's pcp lists back to the buddy.
    pub fn drain_all_pages(&self) {
        RareEvents::inc(&self.mm.ev.pcp_drain);
        for cpu in &self.cpus {
            let mut st = cpu.state.lock();
            for zone in &self.zones {
                let pcp = &mut st.pcp[zone.id];
                if pcp.count > 0 {
                    let n = pcp.count;
                    self.free_pcppages_bulk(zone, pcp, n, 0);
                }
            }
        }
    }

    /// The allocated or free block whose span holds `pfn`, by its head.
    pub fn block_containing(&self, pfn: Pfn) -> Option<(Pfn, PageWord)> {
        let pages = self.pages();
        for o in 0..=MAX_ORDER {
            let head = pfn & !((1u64 << o) - 1);
            let w = pages.get(head);
            if w.kind() != PageKind::None && head + (1u64 << w.order()) > pfn {
                return Some((head, w));
            }
        }
        None
    }

    /// `alloc_pages_exact`: the smallest order block, with the tail pages past
    /// `size` freed at once (each a separate order-0 allocation until freed).
    pub fn alloc_pages_exact(
        &self,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<PageBlock, AllocError> {
        if size == 0 {
            return Err(AllocError::BadRequest(
                "alloc_pages_exact of 0 bytes".into(),
            ));
        }
        if gfp.contains(Gfp::COMP) {
            return Err(AllocError::BadRequest(
                "alloc_pages_exact does not take __GFP_COMP".into(),
            ));
        }
        let nr = size.div_ceil(PAGE_SIZE);
        let order = (64 - (nr - 1).leading_zeros()) as u8;
        let order = if nr == 1 { 0 } else { order };
        let block = self.alloc_pages(gfp, order, ctx)?;
        // split_page: every page becomes an order-0 allocation (keeping the cgroup
        // that was charged), then the tail is freed.
        let owner = self.pages().get(block.pfn).aux();
        for p in block.pfn..block.pfn + (1 << order) {
            self.pages().set(
                p,
                PageWord::new(PageKind::Alloc, 0, block.migratetype, owner),
            );
        }
        for p in block.pfn + nr..block.pfn + (1 << order) {
            let _ = self.free_pages_on(p, 0, ctx);
        }
        Ok(PageBlock { order: 0, ..block })
    }

    /// `free_pages_exact`: free the `size` bytes at `pfn` page by page. All pages are
    /// checked first, so a bad range changes nothing.
    pub fn free_pages_exact(&self, pfn: Pfn, size: u64) -> Result<(), FreeError> {
        self.free_pages_exact_on(pfn, size, &AllocContext::default())
    }

    /// `free_pages_exact` on the context's CPU.
    pub fn free_pages_exact_on(
        &self,
        pfn: Pfn,
        size: u64,
        ctx: &AllocContext,
    ) -> Result<(), FreeError> {
        let nr = size.div_ceil(PAGE_SIZE);
        for p in pfn..pfn + nr {
            let w = (p < self.pages().nr_pages()).then(|| self.pages().get(p));
            if !w.is_some_and(|w| w.kind() == PageKind::Alloc && w.order() == 0) {
                return Err(FreeError::BadRange { pfn, nr_pages: nr });
            }
        }
        for p in pfn..pfn + nr {
            self.free_pages_on(p, 0, ctx)?;
        }
        Ok(())
    }

    /// `alloc_pages_bulk`: up to `nr` order-0 pages; stops at the first failure and
    /// returns what it got (the kernel's partial-success contract).
    pub fn alloc_pages_bulk(
        &self,
        gfp: Gfp,
        nr: usize,
        ctx: &AllocContext,
    ) -> Result<Vec<PageBlock>, AllocError> {
        let mut out = Vec::with_capacity(nr);
        for _ in 0..nr {
            match self.alloc_pages(gfp, 0, ctx) {
                Ok(b) => out.push(b),
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(out)
    }
}

/// `zone_watermark_fast`.
#[inline]
pub(crate) fn watermark_fast(
    z: &Zone,
    order: u8,
    mark: u64,
    highest: ZoneType,
    flags: AllocFlags,
) -> bool {
    let free = z.free_pages() as i64;
    let reserve = z.lowmem_reserve(highest.idx()) as i64;
    if order == 0 {
        let unusable = unusable_free(z, 0, flags);
        let usable = free - free.min(unusable);
        if usable > mark as i64 + reserve {
            return true;
        }
    }
    if watermark_ok(z, order, mark, highest, flags, free) {
        return true;
    }
    if order == 0
        && flags.contains(AllocFlags::MIN_RESERVE)
        && z.boost() > 0
        && flags.wmark() == Wmark::Min
    {
        return watermark_ok(z, order, z.wmark(Wmark::Min), highest, flags, free);
    }
    false
}

/// `__zone_watermark_unusable_free`.
#[inline]
fn unusable_free(z: &Zone, order: u8, flags: AllocFlags) -> i64 {
    let mut u = (1i64 << order) - 1;
    if !flags.intersects(AllocFlags::RESERVES) {
        u += z.free_highatomic() as i64;
    }
    u
}

/// `__zone_watermark_ok`.
pub(crate) fn watermark_ok(
    z: &Zone,
    order: u8,
    mark: u64,
    highest: ZoneType,
    flags: AllocFlags,
    free: i64,
) -> bool {
    let free = free - unusable_free(z, order, flags);
    let mut min = mark as i64;
    if flags.intersects(AllocFlags::RESERVES) {
        if flags.contains(AllocFlags::MIN_RESERVE) {
            min -= min / 2;
            if flags.contains(AllocFlags::NON_BLOCK) {
                min -= min / 4;
            }
        }
        if flags.contains(AllocFlags::OOM) {
            min -= min / 2;
        }
    }
    if free <= min + z.lowmem_reserve(highest.idx()) as i64 {
        return false;
    }
    if order == 0 {
        return true;
    }
    // Some list at this order or above that the request may take from: the types
    // with pcp lists, CMA with ALLOC_CMA, HighAtomic with ALLOC_HIGHATOMIC/OOM.
    let o = order as usize;
    let mut want = nonempty_from(o, MigrateType::Unmovable)
        | nonempty_from(o, MigrateType::Movable)
        | nonempty_from(o, MigrateType::Reclaimable);
    if flags.contains(AllocFlags::CMA) {
        want |= nonempty_from(o, MigrateType::Cma);
    }
    if flags.intersects(AllocFlags(AllocFlags::HIGHATOMIC.0 | AllocFlags::OOM.0)) {
        want |= nonempty_from(o, MigrateType::HighAtomic);
    }
    if z.free_lists_nonempty() & want != 0 {
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn got_packs_pfn_zone_and_pfmemalloc() {
        for (pfn, zone, pm) in [(0, 0, false), (1, 3, true), ((1 << 47) - 1, 255, true)] {
            let g = Got::new(pfn, zone, pm);
            assert_eq!((g.pfn(), g.zone(), g.pfmemalloc()), (pfn, zone, pm));
        }
    }

    #[test]
    fn alloc_flags_from_gfp() {
        let k = AllocFlags::from_gfp(Gfp::GFP_KERNEL, 0);
        assert_eq!(k, AllocFlags::CPUSET.with(AllocFlags::KSWAPD));
        let a = AllocFlags::from_gfp(Gfp::GFP_ATOMIC, 0);
        assert_eq!(
            a,
            AllocFlags::KSWAPD
                .with(AllocFlags::MIN_RESERVE)
                .with(AllocFlags::NON_BLOCK)
        );
        let a3 = AllocFlags::from_gfp(Gfp::GFP_ATOMIC, 3);
        assert!(a3.contains(AllocFlags::HIGHATOMIC));
        let nw = AllocFlags::from_gfp(Gfp::GFP_NOWAIT, 3);
        assert!(nw.contains(AllocFlags::NON_BLOCK));
        assert!(
            !nw.contains(AllocFlags::HIGHATOMIC),
            "v6.18: HIGHATOMIC needs __GFP_HIGH"
        );
        let nm = AllocFlags::from_gfp(Gfp::GFP_ATOMIC | Gfp::NOMEMALLOC, 0);
        assert!(!nm.contains(AllocFlags::NON_BLOCK));
        assert!(AllocFlags::from_gfp(Gfp::GFP_HIGHUSER_MOVABLE, 0).contains(AllocFlags::CMA));
        assert_eq!(
            AllocFlags::pfmemalloc(Gfp::MEMALLOC | Gfp::NOMEMALLOC, Scope::MEMALLOC),
            AllocFlags(0)
        );
        assert_eq!(
            AllocFlags::pfmemalloc(Gfp::GFP_KERNEL, Scope::MEMALLOC),
            AllocFlags::NO_WATERMARKS
        );
    }
}
