//! `/proc/vmstat`: zone items, NUMA items, node items, dirty thresholds and memmap
//! counters, then events, each `name value`.

use std::fmt::Write as _;

use super::names::{EVENT_ITEMS, NODE_ITEMS, NUMA_ITEMS, VMSTAT_GLOBAL_ITEMS, ZONE_ITEMS};
use super::zoneinfo::{node_item, numa_item, zone_item};
use crate::machine::Machine;
use crate::mem::ZoneType;
use crate::stats::Snapshot;

/// `global_dirty_limits` with the default ratios (dirty 20%, background 10%) over the
/// dirtyable memory: free pages (and page cache, none yet) above the total reserve.
fn dirty_limits(snap: &Snapshot) -> (u64, u64) {
    let dirtyable = snap.total_free.saturating_sub(snap.totalreserve);
    let thresh = dirtyable * 20 / 100;
    let mut bg = dirtyable * 10 / 100;
    if bg >= thresh {
        bg = thresh / 2;
    }
    (thresh, bg)
}

fn event(snap: &Snapshot, name: &str) -> u64 {
    let by_zone = |list: &[(ZoneType, u64)], suffix: &str| {
        list.iter()
            .find(|(z, _)| z.lower() == suffix)
            .map(|x| x.1)
            .unwrap_or(0)
    };
    if let Some(z) = name.strip_prefix("pgalloc_") {
        return by_zone(&snap.pgalloc, z);
    }
    if let Some(z) = name.strip_prefix("allocstall_") {
        return by_zone(&snap.allocstall, z);
    }
    match name {
        "pgfree" => snap.pgfree,
        _ => 0,
    }
}

pub fn render(m: &Machine, snap: &Snapshot) -> String {
    let mut s = String::new();
    for name in ZONE_ITEMS {
        let v: u64 = snap.zones.iter().map(|z| zone_item(z, name)).sum();
        let _ = writeln!(s, "{name} {v}");
    }
    for name in NUMA_ITEMS {
        let v: u64 = snap.zones.iter().map(|z| numa_item(z, name)).sum();
        let _ = writeln!(s, "{name} {v}");
    }
    for name in NODE_ITEMS {
        let v: u64 = (0..m.nr_nodes() as u16)
            .map(|n| node_item(m, n, name))
            .sum();
        let _ = writeln!(s, "{name} {v}");
    }
    let (thresh, bg) = dirty_limits(snap);
    let memmap_boot: u64 = m
        .layout()
        .reservations
        .iter()
        .filter(|r| r.0.starts_with("memmap"))
        .map(|r| r.2 - r.1)
        .sum();
    for name in VMSTAT_GLOBAL_ITEMS {
        let v = match *name {
            "nr_dirty_threshold" => thresh,
            "nr_dirty_background_threshold" => bg,
            "nr_memmap_boot_pages" => memmap_boot,
            _ => 0,
        };
        let _ = writeln!(s, "{name} {v}");
    }
    for name in EVENT_ITEMS {
        let _ = writeln!(s, "{name} {}", event(snap, name));
    }
    s
}
