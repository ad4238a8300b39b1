//! Object cgroups: byte-precise charging of slab objects (mm/memcontrol.c,
//! `obj_cgroup_charge` / `obj_cgroup_uncharge` / `__account_obj_stock`).
//!
//! Modelled rules: each CPU keeps one object stock, bytes already charged (in whole
//! pages) to one cgroup; a charge takes from it and charges more pages when it runs
//! dry; an uncharge gives bytes back and uncharges whole pages once more than a page
//! is stocked. Switching the stock to another cgroup drains it: whole pages are
//! uncharged and the sub-page rest is carried by the cgroup (`nr_charged_bytes`).
//! The stock also batches the cgroup's `slab_reclaimable_b` / `slab_unreclaimable_b`
//! updates and applies them once more than a page has accumulated, when the stock
//! changes hands, or before anyone reads `memory.stat` (the kernel's rstat flush on
//! read) — so reads are exact while each charge costs no shared write.

use std::sync::atomic::Ordering::Relaxed;

use super::{CgroupId, Charged, MemcgError, Memcgs, StatItem, NR_STAT};
use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::page::PAGE_SIZE;

/// A CPU's object stock (`struct obj_stock_pcp`).
#[derive(Debug, Default)]
pub struct ObjStock {
    pub cg: Option<CgroupId>,
    /// Bytes charged to `cg` and not used by objects.
    pub bytes: u64,
    /// `cg`'s stat updates not yet applied, per item, in bytes.
    pending: [i64; NR_STAT],
}

/// One object's charge: its cgroup, its bytes (`obj_full_size`) and the stat item
/// they count under.
#[derive(Clone, Copy, Debug)]
pub struct ObjBytes {
    pub cg: CgroupId,
    pub bytes: u64,
    pub item: StatItem,
}

/// `obj_full_size`: what one slab object costs its cgroup (the slot plus the pointer
/// to its object cgroup).
pub fn obj_full_size(slot: u32) -> u64 {
    slot as u64 + 8
}

impl Memcgs {
    /// Apply a stock's pending stat updates to its cgroup.
    fn flush_pending(&self, stock: &mut ObjStock) {
        if let Some(id) = stock.cg {
            for (item, p) in StatItem::ALL.into_iter().zip(stock.pending.iter_mut()) {
                if *p != 0 {
                    self.mod_stat(id, item, std::mem::take(p));
                }
            }
        }
    }

    /// Account a stat update through the stock (`__account_obj_stock`).
    #[inline]
    fn account_stock(&self, stock: &mut ObjStock, item: StatItem, delta: i64) {
        let p = &mut stock.pending[item as usize];
        *p += delta;
        if p.unsigned_abs() > PAGE_SIZE {
            let id = stock.cg.expect("a stock with pending updates has a cgroup");
            self.mod_stat(id, item, std::mem::take(p));
        }
    }

    /// Give a stock's bytes back to its cgroup: whole pages are uncharged, the rest is
    /// carried by the cgroup for its next charge.
    fn drain_stock(&self, stock: &mut ObjStock, cpu: usize) {
        self.flush_pending(stock);
        if let Some(old) = stock.cg.take() {
            if let Some(cg) = self.get(old) {
                let total = cg.carry.swap(0, Relaxed) + stock.bytes;
                self.uncharge_pages(old, total / PAGE_SIZE, cpu);
                cg.carry.fetch_add(total % PAGE_SIZE, Relaxed);
            }
        }
        stock.bytes = 0;
    }

    /// Drain every CPU's object stock (`drain_all_stock`'s object part).
    pub fn drain_obj_stocks(&self) {
        for (cpu, l) in self.locals.iter().enumerate() {
            self.drain_stock(&mut l.lock().obj_stock, cpu);
        }
    }

    /// Apply every CPU's pending stat updates (before `memory.stat` is read).
    pub fn flush_obj_stats(&self) {
        for l in self.locals.iter() {
            self.flush_pending(&mut l.lock().obj_stock);
        }
    }

    /// Bytes stocked per cgroup, for the invariant checker.
    pub(crate) fn obj_stock_bytes(&self) -> Vec<(CgroupId, u64)> {
        self.locals
            .iter()
            .filter_map(|l| {
                let st = &l.lock().obj_stock;
                st.cg.map(|cg| (cg, st.bytes))
            })
            .collect()
    }

    /// `obj_cgroup_charge`: charge an object's bytes to its cgroup, byte-precisely,
    /// through CPU `cpu`'s stock; pages are charged as the stock runs dry.
    pub fn charge_obj(
        &self,
        cpu: usize,
        o: ObjBytes,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<Charged, MemcgError> {
        let cpu = cpu % self.locals.len();
        let stock = &mut self.locals[cpu].lock().obj_stock;
        self.charge_obj_stock(stock, cpu, o, gfp, ctx)
    }

    /// [`Memcgs::charge_obj`] with CPU `cpu`'s local state already locked.
    #[inline]
    pub(crate) fn charge_obj_stock(
        &self,
        stock: &mut ObjStock,
        cpu: usize,
        o: ObjBytes,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<Charged, MemcgError> {
        if self.consume_obj_stock(stock, o) {
            return Ok(Charged::default());
        }
        let charged = self.refill_stock_for(stock, cpu, o, gfp, ctx)?;
        let taken = self.consume_obj_stock(stock, o);
        debug_assert!(taken, "a refilled stock holds the bytes");
        Ok(charged)
    }

    /// `consume_obj_stock`: take `o` from the stock if it already holds the bytes
    /// for that cgroup; `false` (nothing changed) when a refill is needed.
    #[inline(always)]
    pub(crate) fn consume_obj_stock(&self, stock: &mut ObjStock, o: ObjBytes) -> bool {
        if stock.cg != Some(o.cg) || stock.bytes < o.bytes {
            return false;
        }
        stock.bytes -= o.bytes;
        self.account_stock(stock, o.item, o.bytes as i64);
        true
    }

    /// Make the stock hold at least `o.bytes` for `o.cg`: switch it to that cgroup
    /// (draining the old one), then charge whole pages for what is missing.
    #[inline(never)]
    fn refill_stock_for(
        &self,
        stock: &mut ObjStock,
        cpu: usize,
        o: ObjBytes,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<Charged, MemcgError> {
        if stock.cg != Some(o.cg) {
            self.drain_stock(stock, cpu);
            stock.cg = Some(o.cg);
            stock.bytes = self.get(o.cg).map_or(0, |c| c.carry.swap(0, Relaxed));
        }
        if stock.bytes >= o.bytes {
            return Ok(Charged::default());
        }
        let pages = (o.bytes - stock.bytes).div_ceil(PAGE_SIZE);
        let charged = self.try_charge(o.cg, pages, gfp, ctx, cpu)?;
        stock.bytes += pages * PAGE_SIZE;
        Ok(charged)
    }

    /// `obj_cgroup_uncharge`: the bytes go back to the stock (or the cgroup's carry);
    /// whole pages beyond a page of stock are uncharged.
    pub fn uncharge_obj(&self, cpu: usize, o: ObjBytes) {
        let cpu = cpu % self.locals.len();
        let stock = &mut self.locals[cpu].lock().obj_stock;
        self.uncharge_obj_stock(stock, cpu, o);
    }

    /// [`Memcgs::uncharge_obj`] with CPU `cpu`'s local state already locked.
    #[inline]
    pub(crate) fn uncharge_obj_stock(&self, stock: &mut ObjStock, cpu: usize, o: ObjBytes) {
        if stock.cg != Some(o.cg) {
            return self.uncharge_other(o.cg, o.bytes, o.item, cpu);
        }
        self.account_stock(stock, o.item, -(o.bytes as i64));
        stock.bytes += o.bytes;
        if stock.bytes > PAGE_SIZE {
            let pages = stock.bytes / PAGE_SIZE;
            self.uncharge_pages(o.cg, pages, cpu);
            stock.bytes -= pages * PAGE_SIZE;
        }
    }

    /// An uncharge for a cgroup the stock does not hold: straight to its stats and
    /// its carried bytes.
    #[inline(never)]
    fn uncharge_other(&self, id: CgroupId, bytes: u64, item: StatItem, cpu: usize) {
        self.mod_stat(id, item, -(bytes as i64));
        if let Some(cg) = self.get(id) {
            let total = cg.carry.fetch_add(bytes, Relaxed) + bytes;
            if total >= PAGE_SIZE {
                let take = cg.carry.swap(0, Relaxed);
                self.uncharge_pages(id, take / PAGE_SIZE, cpu);
                cg.carry.fetch_add(take % PAGE_SIZE, Relaxed);
            }
        }
    }
}
