//! Event counters (`/proc/vmstat` events and the simulator's own).
//!
//! Hot counters live per CPU inside the CPU's lock, as the kernel's per-CPU
//! `vm_event_states`; readers sum all CPUs. Rare events (fallbacks, boosts, wakeups)
//! are shared atomics in [`RareEvents`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::mem::{ZoneType, MAX_NR_ZONES};

/// Index of a per-CPU event counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `pgalloc_<zone>`: pages allocated from the zone.
    Pgalloc(ZoneType),
    /// `allocstall_<zone>`: direct reclaim entries, by the request's highest zone.
    Allocstall(ZoneType),
    /// `pgfree`: pages freed.
    Pgfree,
}

pub const NR_EVENTS: usize = 2 * MAX_NR_ZONES + 1;

impl Event {
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Event::Pgalloc(z) => z as usize,
            Event::Allocstall(z) => MAX_NR_ZONES + z as usize,
            Event::Pgfree => 2 * MAX_NR_ZONES,
        }
    }
}

/// One CPU's counters.
#[derive(Clone, Debug)]
pub struct Events(pub [u64; NR_EVENTS]);

impl Default for Events {
    fn default() -> Self {
        Events([0; NR_EVENTS])
    }
}

impl Events {
    #[inline]
    pub fn add(&mut self, e: Event, n: u64) {
        self.0[e.index()] += n;
    }
    pub fn get(&self, e: Event) -> u64 {
        self.0[e.index()]
    }
    pub fn accumulate(&mut self, other: &Events) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// Events too rare to need per-CPU counters. Names are the simulator's (the kernel
/// traces these but has no vmstat line for them), except where noted.
#[derive(Debug, Default)]
pub struct RareEvents {
    /// kswapd wakeups requested (`wakeup_kswapd` calls that found work).
    pub kswapd_wake: AtomicU64,
    /// Allocations served from another migratetype (`mm_page_alloc_extfrag`).
    pub extfrag_fallback: AtomicU64,
    /// Pageblocks whose type changed to the requester's by a fallback claim.
    pub pageblock_claim: AtomicU64,
    /// Times a zone's watermark was boosted.
    pub watermark_boost: AtomicU64,
    /// Pageblocks reserved / released as MIGRATE_HIGHATOMIC.
    pub highatomic_reserve: AtomicU64,
    pub highatomic_unreserve: AtomicU64,
    /// `drain_all_pages` calls from the slow path or a user request.
    pub pcp_drain: AtomicU64,
    /// Failed allocations, by cause.
    pub alloc_fail_nomem: AtomicU64,
    pub alloc_fail_order: AtomicU64,
    pub alloc_fail_gfp: AtomicU64,
    /// `__GFP_NOFAIL` waits, and those abandoned by deadline or cancel.
    pub nofail_wait: AtomicU64,
    pub nofail_gave_up: AtomicU64,
    /// Invalid frees refused (double, wrong order, tail, not allocated).
    pub bad_free: AtomicU64,
    /// Pages taken ignoring watermarks (pfmemalloc).
    pub pfmemalloc_alloc: AtomicU64,
}

impl RareEvents {
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn snapshot(&self) -> RareEventCounts {
        let g = |c: &AtomicU64| c.load(Relaxed);
        RareEventCounts {
            kswapd_wake: g(&self.kswapd_wake),
            extfrag_fallback: g(&self.extfrag_fallback),
            pageblock_claim: g(&self.pageblock_claim),
            watermark_boost: g(&self.watermark_boost),
            highatomic_reserve: g(&self.highatomic_reserve),
            highatomic_unreserve: g(&self.highatomic_unreserve),
            pcp_drain: g(&self.pcp_drain),
            alloc_fail_nomem: g(&self.alloc_fail_nomem),
            alloc_fail_order: g(&self.alloc_fail_order),
            alloc_fail_gfp: g(&self.alloc_fail_gfp),
            nofail_wait: g(&self.nofail_wait),
            nofail_gave_up: g(&self.nofail_gave_up),
            bad_free: g(&self.bad_free),
            pfmemalloc_alloc: g(&self.pfmemalloc_alloc),
        }
    }
}

/// A copy of [`RareEvents`].
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RareEventCounts {
    pub kswapd_wake: u64,
    pub extfrag_fallback: u64,
    pub pageblock_claim: u64,
    pub watermark_boost: u64,
    pub highatomic_reserve: u64,
    pub highatomic_unreserve: u64,
    pub pcp_drain: u64,
    pub alloc_fail_nomem: u64,
    pub alloc_fail_order: u64,
    pub alloc_fail_gfp: u64,
    pub nofail_wait: u64,
    pub nofail_gave_up: u64,
    pub bad_free: u64,
    pub pfmemalloc_alloc: u64,
}
