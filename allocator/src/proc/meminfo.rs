//! `/proc/meminfo` (fs/proc/meminfo.c): label and colon padded to 16 columns, the value
//! in kB right-aligned in 8, then ` kB` (HugePages_* counts have no unit).

use std::fmt::Write as _;

use serde::Serialize;

use super::names::MEMINFO_FIELDS;
use crate::machine::Machine;
use crate::stats::Snapshot;
use crate::units::GIB;

/// The modelled fields, in kB (the ones not listed are 0 until their subsystem exists).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Meminfo {
    pub mem_total_kb: u64,
    pub mem_free_kb: u64,
    pub mem_available_kb: u64,
    pub slab_kb: u64,
    pub sreclaimable_kb: u64,
    pub sunreclaim_kb: u64,
    pub commit_limit_kb: u64,
    pub vmalloc_total_kb: u64,
    pub vmalloc_used_kb: u64,
    pub hugepagesize_kb: u64,
    pub direct_map_4k_kb: u64,
    pub direct_map_2m_kb: u64,
    pub direct_map_1g_kb: u64,
}

/// `VMALLOC_END - VMALLOC_START` (4-level paging: 32 TiB) in kB.
pub const VMALLOC_TOTAL_KB: u64 = (32 << 30) - 1;

impl Meminfo {
    pub fn from_snapshot(m: &Machine, snap: &Snapshot) -> Meminfo {
        let kb = |pages: u64| pages * 4;
        let wmark_low: u64 = snap.zones.iter().map(|z| z.low).sum();
        // si_mem_available: free above the reserves, plus the reclaimable halves of page
        // cache and reclaimable kernel memory (both 0 until modelled).
        let (srec, sunrec) = m.slab_pages();
        let pagecache = 0u64;
        let reclaimable = srec;
        let mut avail = snap.total_free as i64 - snap.totalreserve as i64;
        avail += (pagecache - (pagecache / 2).min(wmark_low)) as i64;
        avail += (reclaimable - (reclaimable / 2).min(wmark_low)) as i64;
        let avail = avail.max(0) as u64;
        // The direct map: 4k pages for the first 2 MiB, 2M pages up to the first 1 GiB
        // and for any tail, 1G pages for whole gigabytes above.
        let total = m.layout().total_pages * 4096;
        let first_gib = total.min(GIB);
        let above = total - first_gib;
        let dm4k = (2u64 << 20).min(total);
        let dm1g = above / GIB * GIB;
        let dm2m = first_gib - dm4k + (above - dm1g);
        Meminfo {
            mem_total_kb: kb(snap.total_managed),
            mem_free_kb: kb(snap.total_free),
            mem_available_kb: kb(avail),
            slab_kb: kb(srec + sunrec),
            sreclaimable_kb: kb(srec),
            sunreclaim_kb: kb(sunrec),
            // vm_commit_limit: totalram × overcommit_ratio (50) / 100, no swap.
            commit_limit_kb: kb(snap.total_managed * 50 / 100),
            vmalloc_total_kb: VMALLOC_TOTAL_KB,
            vmalloc_used_kb: kb(m.vmalloc_nr_pages()),
            hugepagesize_kb: 2048,
            direct_map_4k_kb: dm4k >> 10,
            direct_map_2m_kb: dm2m >> 10,
            direct_map_1g_kb: dm1g >> 10,
        }
    }

    /// A field by its /proc/meminfo name, in kB (counts for `HugePages_*`).
    pub fn field(&self, name: &str) -> u64 {
        match name {
            "MemTotal" => self.mem_total_kb,
            "MemFree" => self.mem_free_kb,
            "MemAvailable" => self.mem_available_kb,
            "Slab" => self.slab_kb,
            "SReclaimable" | "KReclaimable" => self.sreclaimable_kb,
            "SUnreclaim" => self.sunreclaim_kb,
            "CommitLimit" => self.commit_limit_kb,
            "VmallocTotal" => self.vmalloc_total_kb,
            // VmallocChunk has printed 0 since v5.3.
            "VmallocUsed" => self.vmalloc_used_kb,
            "Hugepagesize" => self.hugepagesize_kb,
            "DirectMap4k" => self.direct_map_4k_kb,
            "DirectMap2M" => self.direct_map_2m_kb,
            "DirectMap1G" => self.direct_map_1g_kb,
            _ => 0,
        }
    }
}

pub fn render(mi: &Meminfo) -> String {
    let mut s = String::new();
    for name in MEMINFO_FIELDS {
        let label = format!("{name}:");
        let v = mi.field(name);
        if name.starts_with("HugePages_") {
            let _ = writeln!(s, "{label:<16}{v:>8}");
        } else {
            let _ = writeln!(s, "{label:<16}{v:>8} kB");
        }
    }
    s
}
