//! The kernel's text views of the machine, byte for byte in the v6.18 formats:
//! `/proc/buddyinfo`, `/proc/pagetypeinfo`, `/proc/zoneinfo`, `/proc/meminfo`,
//! `/proc/vmstat`.
//!
//! Every renderer works from one [`Snapshot`], so a text is consistent with itself.
//! Counters for subsystems not modelled yet (page cache, LRU, slab, …) print 0 in their
//! kernel position, so tools that parse the files find every line they expect.

mod meminfo;
pub mod names;
mod vmstat;
mod zoneinfo;

use std::fmt::Write as _;

use crate::machine::Machine;
use crate::page::{MigrateType, MAX_ORDER, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::stats::Snapshot;

pub use meminfo::Meminfo;

/// The files this module renders.
pub const FILES: &[&str] = &[
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "meminfo",
    "vmstat",
    "slabinfo",
    "vmallocinfo",
];

/// Unknown file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no such /proc file `{0}`; known: buddyinfo, pagetypeinfo, zoneinfo, meminfo, vmstat, slabinfo, vmallocinfo"
)]
pub struct UnknownProcFile(pub String);

impl UnknownProcFile {
    pub fn reason(&self) -> &'static str {
        "UNKNOWN_PROC_FILE"
    }
}

impl Machine {
    /// Render `/proc/<name>` (the leading `/proc/` is optional).
    pub fn proc_file(&self, name: &str) -> Result<String, UnknownProcFile> {
        let snap = self.snapshot();
        let n = name.trim_start_matches("/proc/");
        Ok(match n {
            "buddyinfo" => buddyinfo(&snap),
            "pagetypeinfo" => self.pagetypeinfo(&snap),
            "zoneinfo" => zoneinfo::render(self, &snap),
            "meminfo" => meminfo::render(&Meminfo::from_snapshot(self, &snap)),
            "vmstat" => vmstat::render(self, &snap),
            "slabinfo" => self.slabinfo(),
            "vmallocinfo" => self.vmallocinfo(),
            _ => return Err(UnknownProcFile(name.to_string())),
        })
    }
}

impl Machine {
    /// `/proc/meminfo` as (name, value) pairs in file order: sizes in bytes, the
    /// `HugePages_*` fields as counts.
    pub fn meminfo_entries(&self) -> Vec<(&'static str, u64)> {
        let mi = Meminfo::from_snapshot(self, &self.snapshot());
        names::MEMINFO_FIELDS
            .iter()
            .map(|&n| {
                let v = mi.field(n);
                (
                    n,
                    if n.starts_with("HugePages_") {
                        v
                    } else {
                        v * 1024
                    },
                )
            })
            .collect()
    }

    /// `/proc/vmstat` as (name, value) pairs in file order.
    pub fn vmstat_entries(&self) -> Vec<(String, u64)> {
        vmstat::render(self, &self.snapshot())
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }
}

/// `/proc/buddyinfo`: free blocks per order, populated zones only.
pub fn buddyinfo(snap: &Snapshot) -> String {
    let mut s = String::new();
    for z in snap.zones.iter().filter(|z| z.populated) {
        let _ = write!(s, "Node {}, zone {:>8} ", z.node, z.zone.name());
        for row in &z.free_blocks {
            let _ = write!(s, "{:6} ", row.iter().sum::<u64>());
        }
        s.push('\n');
    }
    s
}

/// Migratetypes shown by pagetypeinfo: CMA only where the machine has CMA areas.
fn shown_types(has_cma: bool) -> Vec<MigrateType> {
    MigrateType::ALL
        .into_iter()
        .filter(|&t| t != MigrateType::Cma || has_cma)
        .collect()
}

impl Machine {
    fn pagetypeinfo(&self, snap: &Snapshot) -> String {
        let types = shown_types(false);
        let mut s = String::new();
        let _ = writeln!(s, "Page block order: {PAGEBLOCK_ORDER}");
        let _ = writeln!(s, "Pages per block:  {PAGEBLOCK_NR_PAGES}");
        s.push('\n');
        let _ = write!(s, "{:<43} ", "Free pages count per migrate type at order");
        for o in 0..=MAX_ORDER {
            let _ = write!(s, "{o:6} ");
        }
        s.push('\n');
        for z in snap.zones.iter().filter(|z| z.populated) {
            for &t in &types {
                let _ = write!(
                    s,
                    "Node {:4}, zone {:>8}, type {:>12} ",
                    z.node,
                    z.zone.name(),
                    t.name()
                );
                for row in &z.free_blocks {
                    let n = row[t as usize];
                    // The kernel stops counting a list at 100000 and prints ">".
                    let (pre, n) = if n > 100_000 { (">", 100_000) } else { ("", n) };
                    let _ = write!(s, "{pre}{n:6} ");
                }
                s.push('\n');
            }
        }
        s.push('\n');
        let _ = write!(s, "{:<23}", "Number of blocks type ");
        for &t in &types {
            let _ = write!(s, "{:>12} ", t.name());
        }
        s.push('\n');
        for z in snap.zones.iter().filter(|z| z.populated) {
            let _ = write!(s, "Node {}, zone {:>8} ", z.node, z.zone.name());
            for &t in &types {
                let _ = write!(s, "{:12} ", z.pageblocks[t as usize]);
            }
            s.push('\n');
        }
        s
    }
}
