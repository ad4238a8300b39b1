//! The allocation context: what the kernel reads from `current` and the CPU it runs on.
//!
//! A service has no current task, so each call carries an [`AllocContext`]: the scope
//! flags set by `memalloc_nofs_save()` & co., the preferred node and CPU, and for
//! `__GFP_NOFAIL` waits a deadline and a cancel token.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::gfp::Gfp;

/// Task scope flags (`PF_MEMALLOC_NOFS`, `PF_MEMALLOC_NOIO`, `PF_MEMALLOC`,
/// `PF_MEMALLOC_PIN`), with the kernel's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scope(pub u32);

impl Scope {
    pub const NONE: Scope = Scope(0);
    /// `PF_MEMALLOC`: the task is reclaiming; it may use all reserves and never
    /// enters direct reclaim itself (`memalloc_noreclaim_save`).
    pub const MEMALLOC: Scope = Scope(0x0000_0800);
    pub const NOFS: Scope = Scope(0x0004_0000);
    pub const NOIO: Scope = Scope(0x0008_0000);
    /// `PF_MEMALLOC_PIN`: pages will be long-term pinned, so not from movable memory.
    pub const PIN: Scope = Scope(0x1000_0000);

    pub const fn contains(self, s: Scope) -> bool {
        self.0 & s.0 == s.0
    }

    fn save(&mut self, s: Scope) -> ScopeSave {
        let old = ScopeSave(self.0 & s.0, s.0);
        self.0 |= s.0;
        old
    }

    /// `memalloc_nofs_save`: returns the previous state for [`Scope::restore`].
    pub fn nofs_save(&mut self) -> ScopeSave {
        self.save(Scope::NOFS)
    }
    /// `memalloc_noio_save`.
    pub fn noio_save(&mut self) -> ScopeSave {
        self.save(Scope::NOIO)
    }
    /// `memalloc_noreclaim_save` (sets PF_MEMALLOC).
    pub fn noreclaim_save(&mut self) -> ScopeSave {
        self.save(Scope::MEMALLOC)
    }
    /// `memalloc_pin_save`.
    pub fn pin_save(&mut self) -> ScopeSave {
        self.save(Scope::PIN)
    }
    /// `memalloc_*_restore`: put back exactly the bit the matching save changed, so
    /// saves nest.
    pub fn restore(&mut self, saved: ScopeSave) {
        self.0 = (self.0 & !saved.1) | saved.0;
    }

    /// `current_gfp_context`: NOIO clears IO and FS (and wins over NOFS), NOFS clears
    /// FS, PIN clears MOVABLE.
    #[inline(always)]
    pub fn apply(self, gfp: Gfp) -> Gfp {
        // Most calls run in no scope: one test, then nothing to clear.
        if self.0 & (Scope::NOIO.0 | Scope::NOFS.0 | Scope::PIN.0) == 0 {
            return gfp;
        }
        let mut g = gfp;
        if self.contains(Scope::NOIO) {
            g = g.without(Gfp(Gfp::IO.0 | Gfp::FS.0));
        } else if self.contains(Scope::NOFS) {
            g = g.without(Gfp::FS);
        }
        if self.contains(Scope::PIN) {
            g = g.without(Gfp::MOVABLE);
        }
        g
    }
}

/// What a `*_save` call returns: (previous value of the bit, the bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "pass it to Scope::restore"]
pub struct ScopeSave(u32, u32);

/// Lets a caller give up a `__GFP_NOFAIL` wait from another thread.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Per-call context.
#[derive(Clone, Debug, Default)]
pub struct AllocContext {
    pub scope: Scope,
    /// Preferred node (`alloc_pages_node`); default: the node of the CPU.
    pub node: Option<u16>,
    /// Simulated CPU the call runs on (selects the pcp lists); default: one chosen
    /// per host thread.
    pub cpu: Option<u16>,
    /// Give up a `__GFP_NOFAIL` wait at this instant.
    pub deadline: Option<Instant>,
    pub cancel: Option<CancelToken>,
    /// Who is allocating (the kernel's `_RET_IP_` / `%pS`): shown by slab owner
    /// tracking and vmallocinfo.
    pub caller: Option<Arc<str>>,
    /// The memory cgroup `__GFP_ACCOUNT` allocations are charged to (the current
    /// task's); `None` is the root cgroup, which is never charged.
    pub cgroup: Option<crate::memcg::CgroupId>,
    /// Where the memory controller reports what this call's charges would cost the
    /// task: the `memory.high` throttle and forced charges. `None`: not reported.
    pub charge_report: Option<Arc<ChargeReport>>,
}

/// What a call's memory-cgroup charges would do to the calling task. The kernel
/// applies the `memory.high` penalty on the way back to user space
/// (`mem_cgroup_handle_over_high`); a service has no such return path, so the delay is
/// reported here and the caller decides whether to wait it.
#[derive(Debug, Default)]
pub struct ChargeReport {
    high_delay_ms: AtomicU64,
    forced: AtomicU64,
}

impl ChargeReport {
    /// The kernel caps one return's penalty at 2 s (`MEMCG_MAX_HIGH_DELAY_JIFFIES`).
    pub const MAX_DELAY_MS: u64 = 2000;

    pub(crate) fn add(&self, delay_ms: u64, forced: bool) {
        self.high_delay_ms.fetch_add(delay_ms, Ordering::Relaxed);
        self.forced.fetch_add(forced as u64, Ordering::Relaxed);
    }
    /// The total throttle the kernel would impose, capped at 2 s.
    pub fn high_delay_ms(&self) -> u64 {
        self.high_delay_ms
            .load(Ordering::Relaxed)
            .min(Self::MAX_DELAY_MS)
    }
    /// Charges that went past `memory.max` because the call may not fail.
    pub fn forced(&self) -> u64 {
        self.forced.load(Ordering::Relaxed)
    }
}

impl AllocContext {
    /// The same context with a caller tag.
    pub fn with_caller(mut self, caller: &str) -> Self {
        self.caller = Some(caller.into());
        self
    }
    pub fn on_cpu(cpu: u16) -> Self {
        AllocContext {
            cpu: Some(cpu),
            ..Default::default()
        }
    }
    pub fn on_node(node: u16) -> Self {
        AllocContext {
            node: Some(node),
            ..Default::default()
        }
    }
    pub(crate) fn gave_up(&self) -> Option<GiveUp> {
        if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Some(GiveUp::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(GiveUp::Deadline);
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    Cancelled,
    Deadline,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_filter() {
        let mut s = Scope::NONE;
        let a = s.nofs_save();
        assert_eq!(s.apply(Gfp::GFP_KERNEL), Gfp::GFP_NOFS);
        let b = s.nofs_save();
        let c = s.noio_save();
        assert_eq!(s.apply(Gfp::GFP_KERNEL), Gfp::GFP_NOIO);
        s.restore(c);
        assert_eq!(s.apply(Gfp::GFP_KERNEL), Gfp::GFP_NOFS);
        s.restore(b);
        assert!(
            s.contains(Scope::NOFS),
            "inner restore keeps the outer save"
        );
        s.restore(a);
        assert_eq!(s, Scope::NONE);
        let mut p = Scope::NONE;
        let _ = p.pin_save();
        assert_eq!(
            p.apply(Gfp::GFP_HIGHUSER_MOVABLE).migratetype(),
            crate::page::MigrateType::Unmovable
        );
    }
}
