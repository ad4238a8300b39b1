//! The invariant checker: proves no page is lost or double-owned.
//!
//! [`Machine::check_invariants`] walks every zone under its lock and every CPU's pcp
//! lists and checks, for every page frame of every zone:
//! - it is in exactly one state: inside one free buddy block, inside one pcp block,
//!   inside one allocated block, or outside the buddy (hole or boot reservation);
//! - every buddy block is aligned, inside its zone, at the list position its head word
//!   records, on the list of its pageblock's type, and not mergeable with its buddy
//!   (below pageblock order a free buddy of the same order would have been merged;
//!   above it, a retype without a free — HighAtomic release — may leave compatible
//!   buddies unmerged, as in the kernel);
//! - the lockless counters (`nr_free`, per-list counts, free HighAtomic pages, pcp
//!   counts) equal what the lists hold, and free + pcp + allocated = managed.
//!
//! Allocations in flight on other threads make the picture inconsistent, so callers
//! run it when the machine is quiet (between steps of a test).

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::machine::Machine;
use crate::page::{
    MigrateType, PageKind, PageWord, Pfn, MAX_ORDER, NR_MIGRATETYPES, PAGEBLOCK_ORDER,
};
use crate::pcp::pindex_order;

/// Totals found by a successful check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCensus {
    pub free: u64,
    pub pcp: u64,
    pub allocated: u64,
    pub managed: u64,
    /// Allocated blocks owned by slab caches.
    pub slab_heads: u64,
    /// Allocated blocks backing vmalloc areas.
    pub vmalloc_heads: u64,
}

impl Machine {
    /// Check every invariant; `Err` lists the violations found (up to 20).
    pub fn check_invariants(&self) -> Result<PageCensus, String> {
        let mut errs = String::new();
        let mut n_err = 0;
        let mut bad = |s: String| {
            n_err += 1;
            if n_err <= 20 {
                let _ = writeln!(errs, "{s}");
            }
        };
        let pages = self.pages();
        let mut census = PageCensus::default();
        // pcp blocks, collected first (CPU locks before zone locks, as everywhere).
        let mut pcp_heads: HashSet<Pfn> = HashSet::new();
        let mut pcp_per_zone = vec![0u64; self.zones.len()];
        for cpu in &self.cpus {
            let st = cpu.state.lock();
            for (zi, set) in st.pcp.iter().enumerate() {
                let mut count = 0u64;
                for (pi, list) in set.lists.iter().enumerate() {
                    let order = pindex_order(pi);
                    for &p in list {
                        let p = p as Pfn;
                        let w = pages.get(p);
                        if w != PageWord::pcp(order) {
                            bad(format!(
                                "pcp cpu {} list {pi}: pfn {p:#x} has word {w:?}",
                                cpu.id
                            ));
                        }
                        if !self.zones[zi].contains(p) {
                            bad(format!("pcp pfn {p:#x} outside zone {zi}"));
                        }
                        if !pcp_heads.insert(p) {
                            bad(format!("pfn {p:#x} on two pcp lists"));
                        }
                        count += 1 << order;
                    }
                }
                if count != set.count as u64 {
                    bad(format!(
                        "cpu {} zone {zi}: pcp count {} but lists hold {count}",
                        cpu.id, set.count
                    ));
                }
                pcp_per_zone[zi] += count;
            }
        }
        for zone in self.zones.iter().filter(|z| z.populated()) {
            let b = zone.lock(&self.mm);
            // Free blocks from the lists.
            let mut covered: Vec<(Pfn, Pfn, u8)> = Vec::new(); // (start, end, kind)
            let mut free = 0u64;
            let mut free_ha = 0u64;
            let mut nonempty = 0u64;
            for order in 0..=MAX_ORDER {
                for mt in MigrateType::ALL {
                    let list = b.list(order, mt);
                    if zone.nr_free_blocks(order as usize, mt) != list.len() as u64 {
                        bad(format!(
                            "zone {} order {order} {mt:?}: count mirror wrong",
                            zone.zt.name()
                        ));
                    }
                    if !list.is_empty() && mt != MigrateType::Isolate {
                        nonempty |= crate::zone::nonempty_bit(order as usize, mt);
                    }
                    for (i, &p) in list.iter().enumerate() {
                        let p = p as Pfn;
                        let w = pages.get(p);
                        if w.kind() != PageKind::Buddy
                            || w.order() != order
                            || w.mt() != mt
                            || w.aux() as usize != i
                        {
                            bad(format!(
                                "free list {order}/{mt:?}[{i}]: pfn {p:#x} has word {w:?}"
                            ));
                        }
                        if p % (1 << order) != 0
                            || !zone.contains(p)
                            || p + (1 << order) > zone.end_pfn()
                        {
                            bad(format!("free block {p:#x} order {order} misplaced"));
                        }
                        let pbmt = pages.pageblock_mt(p);
                        if pbmt != mt {
                            bad(format!("free block {p:#x} order {order} on {mt:?} list in a {pbmt:?} pageblock"));
                        }
                        if order > PAGEBLOCK_ORDER {
                            let mut q = p;
                            while q < p + (1 << order) {
                                if pages.pageblock_mt(q) != mt {
                                    bad(format!(
                                        "block {p:#x} spans pageblock {q:#x} of another type"
                                    ));
                                }
                                q += 1 << PAGEBLOCK_ORDER;
                            }
                        }
                        if order < PAGEBLOCK_ORDER {
                            let buddy = p ^ (1 << order);
                            let bw = pages.get(buddy);
                            if zone.contains(buddy)
                                && bw.kind() == PageKind::Buddy
                                && bw.order() == order
                            {
                                {
                                    bad(format!("free blocks {p:#x} and {buddy:#x} (order {order}) were not merged"));
                                }
                            }
                        }
                        covered.push((p, p + (1 << order), 0));
                        free += 1 << order;
                        if mt == MigrateType::HighAtomic {
                            free_ha += 1 << order;
                        }
                    }
                }
            }
            if zone.free_lists_nonempty() != nonempty {
                bad(format!(
                    "zone {}: non-empty list mask {:#x}, lists say {nonempty:#x}",
                    zone.zt.name(),
                    zone.free_lists_nonempty()
                ));
            }
            if free != zone.free_pages() {
                bad(format!(
                    "zone {}: nr_free {} but lists hold {free}",
                    zone.zt.name(),
                    zone.free_pages()
                ));
            }
            if free_ha != zone.free_highatomic() {
                bad(format!(
                    "zone {}: nr_free_highatomic {} but lists hold {free_ha}",
                    zone.zt.name(),
                    zone.free_highatomic()
                ));
            }
            // Walk the zone's pages: heads of pcp and allocated blocks.
            let mut allocated = 0u64;
            let mut slab_heads = 0u64;
            let mut vmalloc_heads = 0u64;
            let mut p = zone.start_pfn;
            while p < zone.end_pfn() {
                let w = pages.get(p);
                match w.kind() {
                    PageKind::Alloc | PageKind::Freeing => {
                        if w.guard_cpu().is_some_and(|c| c >= self.cpus.len()) {
                            bad(format!(
                                "pfn {p:#x}: guarded by CPU {:?}, which does not exist",
                                w.guard_cpu()
                            ));
                        }
                        match w.owner() {
                            crate::page::Owner::Slab(_) => slab_heads += 1,
                            crate::page::Owner::Vmalloc => vmalloc_heads += 1,
                            _ => {}
                        }
                        covered.push((p, p + (1 << w.order()), 2));
                        allocated += 1 << w.order();
                        p += 1;
                    }
                    PageKind::Pcp => {
                        if !pcp_heads.contains(&p) {
                            bad(format!("pfn {p:#x} says pcp but is on no pcp list"));
                        }
                        covered.push((p, p + (1 << w.order()), 1));
                        p += 1;
                    }
                    _ => p += 1,
                }
            }
            drop(b);
            covered.sort_unstable();
            for w in covered.windows(2) {
                if w[1].0 < w[0].1 {
                    bad(format!(
                        "pfn {:#x}: blocks overlap ({:#x}..{:#x} kind {} and {:#x}..{:#x} kind {})",
                        w[1].0, w[0].0, w[0].1, w[0].2, w[1].0, w[1].1, w[1].2
                    ));
                }
            }
            // Every owned page must be a managed (boot-free) page.
            let zl = &self.layout.zones[zone.id];
            for &(s, e, _) in &covered {
                let inside = zl.free_ranges.iter().any(|&(a, b2)| s >= a && e <= b2);
                if !inside {
                    bad(format!("block {s:#x}..{e:#x} lies outside managed memory"));
                }
            }
            let pcp = pcp_per_zone[zone.id];
            if free + pcp + allocated != zone.managed {
                bad(format!(
                    "zone {} node {}: free {free} + pcp {pcp} + allocated {allocated} != managed {}",
                    zone.zt.name(),
                    zone.node,
                    zone.managed
                ));
            }
            census.slab_heads += slab_heads;
            census.vmalloc_heads += vmalloc_heads;
            census.free += free;
            census.pcp += pcp;
            census.allocated += allocated;
            census.managed += zone.managed;
        }
        let _ = NR_MIGRATETYPES;
        match self.check_slabs() {
            Ok(n) if n != census.slab_heads => bad(format!(
                "{} slab-owned blocks in memory but caches list {n} slabs",
                census.slab_heads
            )),
            Ok(_) => {}
            Err(e) => bad(e),
        }
        if let Err(e) = self.check_memcg() {
            bad(e);
        }
        match self.check_vmalloc() {
            Ok(n) if n != census.vmalloc_heads => bad(format!(
                "{} vmalloc-owned blocks in memory but areas map {n}",
                census.vmalloc_heads
            )),
            Ok(_) => {}
            Err(e) => bad(e),
        }
        if n_err > 0 {
            if n_err > 20 {
                let _ = writeln!(errs, "... and {} more", n_err - 20);
            }
            Err(errs)
        } else {
            Ok(census)
        }
    }

    /// After everything was freed: drain the pcp lists, release HighAtomic reserves,
    /// and check that the free blocks are exactly those of boot (full merge).
    pub fn check_fully_merged(&self) -> Result<(), String> {
        self.flush_and_shrink_all_caches();
        self.purge_vmap_areas();
        self.drain_all_pages();
        self.release_highatomic_reserves();
        let census = self.check_invariants()?;
        if census.allocated != 0 {
            return Err(format!("{} pages are still allocated", census.allocated));
        }
        let v = self.vmalloc_counts();
        if v.areas != 0
            || v.free_space_bytes != crate::vmalloc::VMALLOC_END - crate::vmalloc::VMALLOC_START
        {
            return Err(format!("vmalloc space not whole again: {v:?}"));
        }
        for z in &self.zones {
            let now = self.free_blocks(z.id);
            if now != self.boot_blocks[z.id] {
                let diff: Vec<_> = now
                    .iter()
                    .filter(|b| !self.boot_blocks[z.id].contains(b))
                    .take(5)
                    .collect();
                return Err(format!(
                    "zone {} node {}: {} free blocks now, {} at boot; first new ones {diff:?}",
                    z.zt.name(),
                    z.node,
                    now.len(),
                    self.boot_blocks[z.id].len()
                ));
            }
        }
        Ok(())
    }
}

impl Machine {
    /// Flush every cache's CPU slabs, end RCU grace periods and give every empty slab
    /// back (`kmem_cache_shrink` on all caches).
    pub fn flush_and_shrink_all_caches(&self) {
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            self.flush_all_cpu_slabs(c);
            self.shrink_cache(c, true);
        }
        self.rcu_barrier();
    }

    /// Check every cache's slabs against their head pages and lists; returns the
    /// number of slabs.
    pub fn check_slabs(&self) -> Result<u64, String> {
        use crate::slab::SlabState;
        let mut total = 0;
        let mut errs = Vec::new();
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            let cpus: Vec<_> = (0..self.nr_cpus())
                .map(|cpu| self.cpu_slab(c, cpu))
                .collect();
            let t = c.slabs.lock();
            let (mut n, mut pages, mut objs) = (0u64, 0u64, 0u64);
            for (sid, s) in t.slabs.iter().enumerate() {
                let Some(s) = s else { continue };
                n += 1;
                pages += 1 << s.order;
                objs += s.objects as u64;
                let w = self.pages().get(s.pfn);
                if w.kind() != PageKind::Alloc
                    || w.owner() != crate::page::Owner::Slab(id)
                    || w.aux() as usize != sid
                    || w.order() != s.order
                {
                    errs.push(format!(
                        "{}: slab {sid} at pfn {:#x} has head word {w:?}",
                        c.name, s.pfn
                    ));
                }
                let bits: u32 = s.free_bits.iter().map(|b| b.count_ones()).sum();
                let mut seen = std::collections::HashSet::new();
                if bits as usize != s.free.len()
                    || !s
                        .free
                        .iter()
                        .all(|&i| i < s.objects && s.is_free(i) && seen.insert(i))
                {
                    errs.push(format!(
                        "{}: slab {sid} freelist and bitmap disagree",
                        c.name
                    ));
                }
                let listed = |l: &[u32]| l.contains(&(sid as u32));
                let ok = match s.state {
                    SlabState::Active(cpu) => {
                        let cs = &cpus[cpu as usize];
                        cs.active == Some(sid as u32)
                            && cs.freelist.iter().all(|&i| !s.is_free(i))
                            && cs.freelist.len() as u32 + s.free.len() as u32 <= s.objects
                    }
                    SlabState::CpuPartial(cpu) => {
                        listed(&cpus[cpu as usize].partial) && !s.free.is_empty()
                    }
                    SlabState::NodePartial => {
                        listed(&t.node_partial[s.node as usize]) && !s.free.is_empty()
                    }
                    SlabState::Full => {
                        s.free.is_empty() && !t.node_partial.iter().any(|l| listed(l))
                    }
                    SlabState::RcuPending => listed(&t.rcu_pending),
                };
                if !ok {
                    errs.push(format!(
                        "{}: slab {sid} in state {:?} is not where that state says",
                        c.name, s.state
                    ));
                }
            }
            if (n, pages, objs) != (t.nr_slabs, t.nr_pages, t.total_objects) {
                errs.push(format!(
                    "{}: counters ({}, {}, {}) but slabs hold ({n}, {pages}, {objs})",
                    c.name, t.nr_slabs, t.nr_pages, t.total_objects
                ));
            }
            total += n;
        }
        if errs.is_empty() {
            Ok(total)
        } else {
            Err(errs.join("\n"))
        }
    }
}

impl Machine {
    /// Check vmalloc: areas are disjoint and separate from free and purge-pending
    /// space, together covering the whole range; every allocated area's page-table
    /// entries are blocks owned by vmalloc. Returns the blocks mapped.
    pub fn check_vmalloc(&self) -> Result<u64, String> {
        use crate::vmalloc::{VmFlags, VMALLOC_END, VMALLOC_START};
        let st = self.vmap.lock();
        let mut errs = Vec::new();
        let mut spans: Vec<(u64, u64, &str)> = Vec::new();
        let mut blocks = 0u64;
        for (&s, a) in &st.busy {
            if s != a.start {
                errs.push(format!("area keyed {s:#x} starts at {:#x}", a.start));
            }
            spans.push((a.start, a.end(), "busy"));
            if a.flags.contains(VmFlags::ALLOC) {
                for chunk in a.pages.chunks(1 << a.page_order) {
                    let w = self.pages().get(chunk[0]);
                    if w.kind() != PageKind::Alloc
                        || w.owner() != crate::page::Owner::Vmalloc
                        || w.order() != a.page_order
                    {
                        errs.push(format!(
                            "area {:#x}: page {:#x} has word {w:?}",
                            a.start, chunk[0]
                        ));
                    }
                    blocks += 1;
                }
                let expect = (a.usable() / crate::page::PAGE_SIZE) as usize;
                if a.pages.len() != expect {
                    errs.push(format!(
                        "area {:#x}: {} pages mapped for {expect} usable",
                        a.start,
                        a.pages.len()
                    ));
                }
            }
        }
        for &(s, size) in &st.purge_list {
            spans.push((s, s + size, "purge"));
        }
        let free = st.free.ranges();
        for (s, e) in free {
            spans.push((s, e, "free"));
        }
        spans.sort_unstable();
        let mut at = VMALLOC_START;
        for (s, e, kind) in &spans {
            if *s != at {
                errs.push(format!(
                    "vmalloc space {at:#x}..{s:#x} is {} ({kind} follows)",
                    if *s > at { "lost" } else { "double-owned" }
                ));
            }
            at = *e;
        }
        if at != VMALLOC_END {
            errs.push(format!("vmalloc space ends at {at:#x}"));
        }
        if errs.is_empty() {
            Ok(blocks)
        } else {
            Err(errs.join("\n"))
        }
    }
}

impl Machine {
    /// Check the memory cgroups: every cgroup's own usage (its counter minus its
    /// children's) equals what is charged to it — accounted page blocks, accounted
    /// vmalloc areas, slab objects at `obj_full_size`, plus bytes held in object stocks
    /// and carried — and nothing is charged to a cgroup twice.
    pub fn check_memcg(&self) -> Result<(), String> {
        use crate::memcg::CgroupId;
        use crate::page::{Owner, PAGE_SIZE};
        use std::collections::HashMap;
        let mut expect: HashMap<u16, u64> = HashMap::new();
        for zone in self.zones.iter().filter(|z| z.populated()) {
            let mut p = zone.start_pfn;
            while p < zone.end_pfn() {
                let w = self.pages().get(p);
                if w.kind() == PageKind::Alloc
                    && matches!(w.owner(), Owner::Pages | Owner::LargeKmalloc)
                    && w.aux() != 0
                {
                    *expect.entry((w.aux() - 1) as u16).or_default() +=
                        (1u64 << w.order()) * PAGE_SIZE;
                }
                p += 1;
            }
        }
        for a in self.vmap.lock().busy.values() {
            if let Some(cg) = a.memcg {
                *expect.entry(cg.0).or_default() += a.pages.len() as u64 * PAGE_SIZE;
            }
        }
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            let Some(x) = c.obj_exts.get() else { continue };
            for (slab, index, cg) in x.records() {
                let (pfn, live) = self.slab_object_state(c, slab, index);
                if !live {
                    return Err(format!(
                        "{}: slab {slab} (pfn {pfn:?}) object {index} is charged to cgroup {} but not allocated",
                        c.name, cg.0
                    ));
                }
                *expect.entry(cg.0).or_default() += crate::memcg::obj_full_size(c.layout.size);
            }
        }
        for (cg, bytes) in self.memcgs.obj_stock_bytes() {
            *expect.entry(cg.0).or_default() += bytes;
        }
        let mut errs = Vec::new();
        // Every cgroup, removed ones included: a removed cgroup keeps the charges of
        // its objects until they are freed, and its parent's usage includes them.
        let all: Vec<_> = self.memcgs.all().collect();
        for cg in &all {
            if cg.id == CgroupId::ROOT {
                continue;
            }
            let children: u64 = all
                .iter()
                .filter(|c| c.parent == Some(cg.id))
                .map(|c| c.usage_pages())
                .sum();
            let own = (cg.usage_pages() - children) * PAGE_SIZE;
            let want = expect.get(&cg.id.0).copied().unwrap_or(0)
                + cg.carry.load(std::sync::atomic::Ordering::Relaxed)
                + self.memcgs.stocked_pages(cg.id) * PAGE_SIZE;
            if own != want {
                errs.push(format!(
                    "cgroup {}{}: own usage {own} bytes but charges add up to {want}",
                    cg.path,
                    if self.memcgs.is_removed(cg.id) {
                        " (removed)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }
}
