//! A simulated CPU's slab state and object stock, under one lock per CPU.
//!
//! The kernel protects a CPU's `kmem_cache_cpu` of every cache and its
//! `obj_stock_pcp` with that CPU's local lock (preemption and interrupts off): one
//! CPU does one thing at a time. kmemd does the same with one spin lock per simulated
//! CPU, so an accounted kmalloc pops the object, charges the stock and records the
//! owner under a single lock acquisition. Host threads on different simulated CPUs
//! never share it; threads on the same CPU take turns, as tasks on a CPU do.
//!
//! Lock order: a CPU's local lock, then a cache's slab table, then the page
//! allocator's and the memory controller's page-stock locks. Never two CPUs' local
//! locks at once, except the checkers, which take them in CPU order.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::memcg::ObjStock;
use crate::pcp::SpinLock;
use crate::slab::CpuSlab;

/// One CPU's local state.
#[derive(Default)]
pub struct CpuLocal {
    /// Per cache (indexed by cache id): `kmem_cache_cpu`, each on its own cache
    /// lines (the vectors of different CPUs are separate heap blocks that may touch).
    pub slabs: Vec<CachePadded<CpuSlab>>,
    /// `obj_stock_pcp`.
    pub obj_stock: ObjStock,
}

impl CpuLocal {
    /// Cache `id`'s `kmem_cache_cpu` and the CPU's object stock together.
    #[inline(always)]
    pub(crate) fn parts(&mut self, id: u16) -> (&mut CpuSlab, &mut ObjStock) {
        (&mut *self.slabs[id as usize], &mut self.obj_stock)
    }
}

/// Every CPU's local state; shared by the machine (slabs) and the memory
/// controller (stocks).
pub type CpuLocals = Arc<[CachePadded<SpinLock<CpuLocal>>]>;

/// `n` CPUs' empty local state.
pub fn new_locals(n: usize) -> CpuLocals {
    (0..n.max(1))
        .map(|_| CachePadded::new(SpinLock::new(CpuLocal::default())))
        .collect()
}

/// A locked CPU seen as one cache's `kmem_cache_cpu` (derefs to it); the object
/// stock is reachable through `parts`.
pub struct CpuSlabGuard<'a> {
    g: spin::mutex::SpinMutexGuard<'a, CpuLocal, spin::relax::Yield>,
    id: usize,
}

impl<'a> CpuSlabGuard<'a> {
    #[inline]
    pub(crate) fn new(l: &'a CachePadded<SpinLock<CpuLocal>>, id: u16) -> Self {
        CpuSlabGuard {
            g: l.lock(),
            id: id as usize,
        }
    }
}

impl Deref for CpuSlabGuard<'_> {
    type Target = CpuSlab;
    #[inline]
    fn deref(&self) -> &CpuSlab {
        &self.g.slabs[self.id]
    }
}

impl DerefMut for CpuSlabGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut CpuSlab {
        &mut self.g.slabs[self.id]
    }
}
