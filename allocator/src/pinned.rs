//! A host thread pinned to one simulated CPU for a run of calls.
//!
//! In the kernel, a task on the allocation fast path owns its CPU: `local_lock`
//! (preemption or interrupts off) costs no atomic instruction, so popping a pcp page
//! or a slab object is a few plain loads and stores. kmemd's per-call API cannot
//! assume that: any host thread may act as any simulated CPU, so every call takes the
//! CPU's locks: two locked instructions per alloc/free pair. Each one is a full
//! barrier that the loads after it wait for, which costs 7–8 ns of a 26 ns
//! kmalloc-64 pair on the benchmark host (BENCHMARKS.md).
//!
//! [`PinnedCpu`] is the kernel's model for a caller that does many operations in a
//! row (an in-process load generator's worker, a benchmark loop): it takes the CPU's
//! local lock (slab CPU state and object stock) and pcp lock once, like `get_cpu()`,
//! and keeps them until it is dropped (`put_cpu()`). Its fast paths then run without
//! any lock. Everything the fast paths cannot finish, such as refills, drains, memcg
//! charges of pages, errors and frees from another CPU's slab, releases the CPU for
//! that call and takes the general path, exactly as a kernel fast path falls back
//! to a slow path that may sleep. Results are identical to the per-call API's;
//! only the locking differs.
//!
//! While a pin is held, other threads that want the same simulated CPU wait for it,
//! as tasks on one CPU take turns. Hold a pin for a bounded run of operations, not
//! across waits for anything outside the machine.
//!
//! Lock order: the CPU's local lock, then its pcp lock. This is the same order the
//! slab slow path uses when it allocates pages with the local lock held.

use spin::mutex::SpinMutexGuard;
use spin::relax::Yield;

use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::kmalloc::KmallocObj;
use crate::machine::Machine;
use crate::page::Pfn;
use crate::page_alloc::{AllocError, FreeError, PageBlock};
use crate::pcp::CpuState;
use crate::percpu::CpuLocal;
use crate::slab::{CacheId, SlabError};

/// One simulated CPU held by the calling thread (see the module docs).
pub struct PinnedCpu<'m> {
    m: &'m Machine,
    cpu: usize,
    ctx: AllocContext,
    /// Both are `Some` except while a general-path call runs unpinned.
    local: Option<SpinMutexGuard<'m, CpuLocal, Yield>>,
    pcp: Option<SpinMutexGuard<'m, CpuState, Yield>>,
}

impl Machine {
    /// Pin the calling thread to the context's CPU (the thread's own CPU when the
    /// context names none), like the kernel's `get_cpu()`. Every call through the
    /// pin uses `ctx` (cgroup, scope, node, caller tag); dropping it is `put_cpu()`.
    pub fn pin_cpu(&self, ctx: &AllocContext) -> Result<PinnedCpu<'_>, AllocError> {
        let cpu = self.resolve_cpu(ctx)?;
        let mut ctx = ctx.clone();
        ctx.cpu = Some(cpu as u16);
        let mut p = PinnedCpu {
            m: self,
            cpu,
            ctx,
            local: None,
            pcp: None,
        };
        p.pin();
        Ok(p)
    }
}

impl<'m> PinnedCpu<'m> {
    /// The pinned CPU.
    pub fn cpu(&self) -> u16 {
        self.cpu as u16
    }

    /// The context every call through this pin uses.
    pub fn context(&self) -> &AllocContext {
        &self.ctx
    }

    /// The machine.
    pub fn machine(&self) -> &'m Machine {
        self.m
    }

    fn pin(&mut self) {
        debug_assert!(self.local.is_none() && self.pcp.is_none());
        self.local = Some(self.m.cpu_locals[self.cpu].lock());
        self.pcp = Some(self.m.cpus[self.cpu].state.lock());
    }

    /// Run `f` with the CPU released (any machine call is allowed there), then pin
    /// again. The fast paths use this for everything they cannot finish.
    pub fn unpinned<R>(&mut self, f: impl FnOnce(&'m Machine, &AllocContext) -> R) -> R {
        self.pcp = None;
        self.local = None;
        let r = f(self.m, &self.ctx);
        self.pin();
        r
    }

    /// [`Machine::alloc_pages`] on the pinned CPU.
    #[inline]
    pub fn alloc_pages(&mut self, gfp: Gfp, order: u8) -> Result<PageBlock, AllocError> {
        let st = self.pcp.as_deref_mut().expect("pinned");
        if let Some(r) = self.m.alloc_pages_pinned(gfp, order, &self.ctx, st) {
            return r;
        }
        self.unpinned(|m, ctx| m.alloc_pages(gfp, order, ctx))
    }

    /// [`Machine::free_pages_on`] on the pinned CPU.
    #[inline]
    pub fn free_pages(&mut self, pfn: Pfn, order: u8) -> Result<(), FreeError> {
        let st = self.pcp.as_deref_mut().expect("pinned");
        if self
            .m
            .free_pages_fast(pfn, order, self.cpu, Some(st))
            .is_some()
        {
            return Ok(());
        }
        self.unpinned(|m, ctx| m.free_pages_on(pfn, order, ctx))
    }

    /// [`Machine::kmalloc`] on the pinned CPU.
    #[inline]
    pub fn kmalloc(&mut self, size: u64, gfp: Gfp) -> Result<KmallocObj, SlabError> {
        let l = self.local.as_deref_mut().expect("pinned");
        if let Some((addr, c)) = self.m.kmalloc_fast(size, gfp, &self.ctx, Some(l)) {
            return Ok(KmallocObj::slab(addr, c));
        }
        self.unpinned(|m, ctx| m.kmalloc(size, gfp, ctx))
    }

    /// [`Machine::kfree`] on the pinned CPU.
    #[inline]
    pub fn kfree(&mut self, addr: u64) -> Result<(), SlabError> {
        let l = self.local.as_deref_mut().expect("pinned");
        if self.m.kfree_fast(addr, None, &self.ctx, Some(l)).is_some() {
            return Ok(());
        }
        self.unpinned(|m, ctx| m.kfree(addr, ctx))
    }

    /// [`Machine::kmem_cache_alloc`] on the pinned CPU.
    #[inline]
    pub fn kmem_cache_alloc(&mut self, cache: CacheId, gfp: Gfp) -> Result<u64, SlabError> {
        let l = self.local.as_deref_mut().expect("pinned");
        if let Some(addr) = self.m.cache_alloc_fast(cache, gfp, &self.ctx, Some(l)) {
            return Ok(addr);
        }
        self.unpinned(|m, ctx| m.kmem_cache_alloc(cache, gfp, ctx))
    }

    /// [`Machine::kmem_cache_free`] on the pinned CPU.
    #[inline]
    pub fn kmem_cache_free(&mut self, cache: CacheId, addr: u64) -> Result<(), SlabError> {
        let l = self.local.as_deref_mut().expect("pinned");
        if self
            .m
            .kfree_fast(addr, Some(cache), &self.ctx, Some(l))
            .is_some()
        {
            return Ok(());
        }
        self.unpinned(|m, ctx| m.kmem_cache_free(cache, addr, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ByteSize, MachineConfig};

    fn machine() -> Machine {
        Machine::boot(MachineConfig::bare(ByteSize::gib(1))).expect("boot")
    }

    /// Enough blocks and objects to run every fallback (pcp refills and drains, new
    /// slabs, large kmalloc, accounted objects), then everything back.
    #[test]
    fn pinned_calls_do_what_per_call_calls_do() {
        let m = machine();
        let cg = m.memcg().create("/pinned").expect("cgroup");
        let ctx = AllocContext {
            cgroup: Some(cg),
            ..AllocContext::on_cpu(1)
        };
        let cache = m
            .kmem_cache_create("pinned_acct", 100, 0, crate::SlabFlags::ACCOUNT)
            .expect("cache");
        let mut p = m.pin_cpu(&ctx).expect("pin");
        assert_eq!(p.cpu(), 1);
        let mut blocks = Vec::new();
        let mut objs = Vec::new();
        let mut cached = Vec::new();
        for i in 0..3000u64 {
            let order = (i % 5) as u8;
            let gfp = if i % 7 == 0 {
                Gfp::GFP_KERNEL_ACCOUNT
            } else {
                Gfp::GFP_KERNEL
            };
            let b = p.alloc_pages(gfp, order).expect("alloc_pages");
            assert_eq!(b.order, order);
            blocks.push(b);
            let size = [8, 64, 96, 192, 4096, 8193][i as usize % 6];
            objs.push(p.kmalloc(size, gfp).expect("kmalloc"));
            cached.push(p.kmem_cache_alloc(cache, gfp).expect("kmem_cache_alloc"));
        }
        let usage = || m.memcg().get(cg).expect("cgroup").usage_pages();
        assert!(usage() > 0, "accounted blocks and objects are charged");
        // Free half on the pin, half on another CPU, interleaved.
        for (i, (b, o)) in blocks.iter().zip(&objs).enumerate() {
            if i % 2 == 0 {
                p.free_pages(b.pfn, b.order).expect("free_pages");
                p.kfree(o.addr).expect("kfree");
            } else {
                p.unpinned(|m, _| {
                    m.free_pages_on(b.pfn, b.order, &AllocContext::on_cpu(0))
                        .expect("free_pages_on");
                    m.kfree(o.addr, &AllocContext::on_cpu(0)).expect("kfree");
                });
            }
        }
        for a in cached {
            p.kmem_cache_free(cache, a).expect("kmem_cache_free");
        }
        drop(p);
        m.check_invariants().expect("pages");
        m.check_slabs().expect("slabs");
        m.check_memcg().expect("memcg");
        m.kmem_cache_destroy(cache).expect("empty cache");
        m.check_fully_merged().expect("everything back");
    }

    #[test]
    fn pinned_errors_are_the_per_call_errors_and_change_nothing() {
        let m = machine();
        let mut p = m.pin_cpu(&AllocContext::on_cpu(0)).expect("pin");
        let b = p.alloc_pages(Gfp::GFP_KERNEL, 2).expect("alloc");
        p.free_pages(b.pfn, 2).expect("free");
        assert!(matches!(
            p.free_pages(b.pfn, 2),
            Err(FreeError::DoubleFree { .. })
        ));
        let b = p.alloc_pages(Gfp::GFP_KERNEL, 1).expect("alloc");
        assert!(matches!(
            p.free_pages(b.pfn, 0),
            Err(FreeError::WrongOrder { .. })
        ));
        assert!(matches!(
            p.free_pages(b.pfn + 1, 1),
            Err(FreeError::TailPage { .. })
        ));
        assert!(matches!(
            p.alloc_pages(Gfp::GFP_KERNEL, 11),
            Err(AllocError::InvalidOrder { order: 11 })
        ));
        let o = p.kmalloc(64, Gfp::GFP_KERNEL).expect("kmalloc");
        assert!(matches!(
            p.kfree(o.addr + 8),
            Err(SlabError::InvalidFree { .. })
        ));
        p.kfree(o.addr).expect("kfree");
        assert!(matches!(p.kfree(o.addr), Err(SlabError::DoubleFree { .. })));
        assert!(matches!(
            p.kfree(phys_addr_of(b.pfn)),
            Err(SlabError::InvalidFree { .. })
        ));
        p.free_pages(b.pfn, 1).expect("the right free still works");
        let (x, y) = p.unpinned(|m, _| {
            let flags = crate::SlabFlags::NO_MERGE;
            (
                m.kmem_cache_create("pin_x", 40, 0, flags).expect("cache"),
                m.kmem_cache_create("pin_y", 40, 0, flags).expect("cache"),
            )
        });
        let a = p.kmem_cache_alloc(x, Gfp::GFP_KERNEL).expect("alloc");
        assert!(matches!(
            p.kmem_cache_free(y, a),
            Err(SlabError::WrongCache { .. })
        ));
        p.kmem_cache_free(x, a).expect("the right cache");
        assert!(matches!(
            p.kmem_cache_free(x, a),
            Err(SlabError::DoubleFree { .. })
        ));
        drop(p);
        m.check_invariants().expect("consistent");
        m.check_slabs().expect("slabs");
        m.check_fully_merged().expect("everything back");
    }

    fn phys_addr_of(pfn: Pfn) -> u64 {
        crate::slab::PAGE_OFFSET + pfn * crate::PAGE_SIZE
    }

    /// A pin holds only its own CPU: a thread on another CPU allocates and frees
    /// meanwhile, and a thread on the pinned CPU gets it once the pin is dropped.
    #[test]
    fn a_pin_holds_only_its_cpu() {
        let m = machine();
        let mut p = m.pin_cpu(&AllocContext::on_cpu(0)).expect("pin");
        let held = p.kmalloc(128, Gfp::GFP_KERNEL).expect("kmalloc");
        std::thread::scope(|s| {
            s.spawn(|| {
                let c = AllocContext::on_cpu(1);
                for _ in 0..1000 {
                    let b = m.alloc_pages(Gfp::GFP_KERNEL, 0, &c).expect("alloc");
                    m.free_pages_on(b.pfn, 0, &c).expect("free");
                    let o = m.kmalloc(128, Gfp::GFP_KERNEL, &c).expect("kmalloc");
                    m.kfree(o.addr, &c).expect("kfree");
                }
            })
            .join()
            .expect("CPU 1 is not held by the pin");
            let waiter = s.spawn(|| {
                m.kfree(held.addr, &AllocContext::on_cpu(0))
                    .expect("kfree on CPU 0 after the pin is gone")
            });
            drop(p);
            waiter.join().expect("CPU 0 free");
        });
        m.check_slabs().expect("slabs");
        m.check_fully_merged().expect("everything back");
    }
}
