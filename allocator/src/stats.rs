//! Structured views of the machine's state, for the `/proc` renderers and for the server
//! to export. A [`Snapshot`] is taken zone by zone (each under its lock), so each zone is
//! self-consistent.

use serde::Serialize;

use crate::machine::Machine;
use crate::mem::ZoneType;
use crate::page::{MigrateType, NR_MIGRATETYPES, NR_ORDERS, PAGEBLOCK_NR_PAGES};
use crate::pcp::NumaEvents;
use crate::vmstat::{Event, Events, RareEventCounts};
use crate::zone::Wmark;

/// One CPU's pageset for a zone (zoneinfo "pagesets").
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct PagesetStat {
    pub cpu: u16,
    pub count: u32,
    pub high: u32,
    pub batch: u32,
    pub high_min: u32,
    pub high_max: u32,
}

/// One zone.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneSnapshot {
    pub node: u16,
    pub zone: ZoneType,
    pub populated: bool,
    pub start_pfn: u64,
    pub spanned: u64,
    pub present: u64,
    pub managed: u64,
    pub free: u64,
    pub min: u64,
    pub low: u64,
    pub high: u64,
    pub promo: u64,
    pub boost: u64,
    pub lowmem_reserve: Vec<u64>,
    pub reserved_highatomic: u64,
    pub free_highatomic: u64,
    /// Free blocks per order and migratetype.
    pub free_blocks: [[u64; NR_MIGRATETYPES]; NR_ORDERS],
    /// Pageblocks per migratetype.
    pub pageblocks: [u64; NR_MIGRATETYPES],
    pub pagesets: Vec<PagesetStat>,
    pub numa: NumaEventsSer,
    /// Pages allocated from this zone (`pgalloc_<zone>` is by zone type; this is the
    /// zone's own share).
    pub pcp_pages: u64,
}

/// Serializable NUMA counters.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NumaEventsSer {
    pub numa_hit: u64,
    pub numa_miss: u64,
    pub numa_foreign: u64,
    pub numa_interleave: u64,
    pub numa_local: u64,
    pub numa_other: u64,
}

impl From<NumaEvents> for NumaEventsSer {
    fn from(n: NumaEvents) -> Self {
        NumaEventsSer {
            numa_hit: n.hit,
            numa_miss: n.miss,
            numa_foreign: n.foreign,
            numa_interleave: n.interleave,
            numa_local: n.local,
            numa_other: n.other,
        }
    }
}

/// The whole machine.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub zones: Vec<ZoneSnapshot>,
    pub pgalloc: Vec<(ZoneType, u64)>,
    pub allocstall: Vec<(ZoneType, u64)>,
    pub pgfree: u64,
    pub rare: RareEventCounts,
    pub total_managed: u64,
    pub total_free: u64,
    pub totalreserve: u64,
    pub stored_pages: u64,
    pub min_free_kbytes: u64,
}

impl Machine {
    /// Event counters summed over CPUs and zones.
    pub fn vm_events(&self) -> Events {
        let mut e = Events::default();
        for c in &self.cpus {
            e.accumulate(&c.state.lock().events);
        }
        for z in self.zones.iter().filter(|z| z.populated()) {
            let ze = z.lock(&self.mm).events();
            e.add(Event::Pgalloc(z.zt), ze.pgalloc);
            e.add(Event::Pgfree, ze.pgfree);
        }
        e
    }

    /// NUMA counters of a zone summed over CPUs and the zone's own.
    pub fn numa_events(&self, zone: usize) -> NumaEvents {
        let mut n = if self.zones[zone].populated() {
            self.zones[zone].lock(&self.mm).events().numa
        } else {
            NumaEvents::default()
        };
        for c in &self.cpus {
            let st = c.state.lock();
            let z = &st.pcp[zone].numa;
            n.hit += z.hit;
            n.miss += z.miss;
            n.foreign += z.foreign;
            n.interleave += z.interleave;
            n.local += z.local;
            n.other += z.other;
        }
        n
    }

    /// Pageblocks of each migratetype in a zone (pagetypeinfo's second table).
    pub fn pageblock_counts(&self, zone: usize) -> [u64; NR_MIGRATETYPES] {
        let z = &self.zones[zone];
        let mut out = [0u64; NR_MIGRATETYPES];
        if !z.populated() {
            return out;
        }
        // Pageblocks whose first page lies in the zone, as the kernel counts them.
        let mut pb = z.start_pfn.next_multiple_of(PAGEBLOCK_NR_PAGES);
        if z.start_pfn % PAGEBLOCK_NR_PAGES != 0 {
            pb -= PAGEBLOCK_NR_PAGES;
        }
        while pb < z.end_pfn() {
            let first = pb.max(z.start_pfn);
            out[self.pages().pageblock_mt(first) as usize] += 1;
            pb += PAGEBLOCK_NR_PAGES;
        }
        out
    }

    /// Per-CPU pagesets of a zone.
    pub fn pagesets(&self, zone: usize) -> Vec<PagesetStat> {
        let z = &self.zones[zone];
        let s = z.pcp_sizing();
        self.cpus
            .iter()
            .map(|c| {
                let st = c.state.lock();
                let p = &st.pcp[zone];
                PagesetStat {
                    cpu: c.id,
                    count: p.count,
                    high: p.high,
                    batch: s.batch,
                    high_min: s.high_min,
                    high_max: s.high_max,
                }
            })
            .collect()
    }

    /// A structured view of everything the page allocator shows.
    pub fn snapshot(&self) -> Snapshot {
        let mut zones = Vec::with_capacity(self.zones.len());
        for z in &self.zones {
            let mut free_blocks = [[0u64; NR_MIGRATETYPES]; NR_ORDERS];
            for (o, row) in free_blocks.iter_mut().enumerate() {
                for mt in MigrateType::ALL {
                    row[mt as usize] = z.nr_free_blocks(o, mt);
                }
            }
            let pagesets = self.pagesets(z.id);
            zones.push(ZoneSnapshot {
                node: z.node,
                zone: z.zt,
                populated: z.populated(),
                start_pfn: z.start_pfn,
                spanned: z.spanned,
                present: z.present,
                managed: z.managed,
                free: z.free_pages(),
                min: z.wmark(Wmark::Min),
                low: z.wmark(Wmark::Low),
                high: z.wmark(Wmark::High),
                promo: z.wmark(Wmark::Promo),
                boost: z.boost(),
                lowmem_reserve: (0..crate::mem::MAX_NR_ZONES)
                    .map(|i| z.lowmem_reserve(i))
                    .collect(),
                reserved_highatomic: z.reserved_highatomic(),
                free_highatomic: z.free_highatomic(),
                free_blocks,
                pageblocks: self.pageblock_counts(z.id),
                pcp_pages: pagesets.iter().map(|p| p.count as u64).sum(),
                pagesets,
                numa: self.numa_events(z.id).into(),
            });
        }
        let ev = self.vm_events();
        Snapshot {
            pgalloc: ZoneType::ALL
                .iter()
                .map(|&z| (z, ev.get(Event::Pgalloc(z))))
                .collect(),
            allocstall: ZoneType::ALL
                .iter()
                .map(|&z| (z, ev.get(Event::Allocstall(z))))
                .collect(),
            pgfree: ev.get(Event::Pgfree),
            rare: self.rare_events(),
            total_managed: self.total_managed(),
            total_free: zones.iter().map(|z| z.free).sum(),
            totalreserve: self.totalreserve_pages(),
            stored_pages: self.stored_pages(),
            min_free_kbytes: self.sysctls().min_free_kbytes,
            zones,
        }
    }
}
