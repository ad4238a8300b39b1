//! `/proc/zoneinfo` (mm/vmstat.c `zoneinfo_show_print`, v6.18 layout).

use std::fmt::Write as _;

use super::names::{NODE_ITEMS, NUMA_ITEMS, ZONE_ITEMS};
use crate::machine::Machine;
use crate::stats::{Snapshot, ZoneSnapshot};

/// `fls`: 1-based index of the highest set bit, 0 for 0.
fn fls(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// `calculate_normal_threshold`: the per-CPU counter drift allowed before folding.
pub fn stat_threshold(managed: u64, cpus: usize) -> u32 {
    let mem = managed >> (27 - 12);
    (2 * fls(cpus as u64) * (1 + fls(mem))).min(125)
}

/// A zone stat item's value.
pub(super) fn zone_item(z: &ZoneSnapshot, name: &str) -> u64 {
    match name {
        "nr_free_pages" => z.free,
        "nr_free_pages_blocks" => z
            .free_blocks
            .iter()
            .enumerate()
            .skip(crate::page::PAGEBLOCK_ORDER as usize)
            .map(|(o, row)| {
                // HighAtomic and Isolate blocks are not counted (6.15+).
                (row[0] + row[1] + row[2] + row[4]) << o
            })
            .sum(),
        _ => 0,
    }
}

pub(super) fn numa_item(z: &ZoneSnapshot, name: &str) -> u64 {
    let n = &z.numa;
    match name {
        "numa_hit" => n.numa_hit,
        "numa_miss" => n.numa_miss,
        "numa_foreign" => n.numa_foreign,
        "numa_interleave" => n.numa_interleave,
        "numa_local" => n.numa_local,
        "numa_other" => n.numa_other,
        _ => 0,
    }
}

/// A node stat item's value (per node).
pub(super) fn node_item(m: &Machine, node: u16, name: &str) -> u64 {
    match name {
        "nr_slab_reclaimable" => m.slab_pages_node(node).0,
        "nr_slab_unreclaimable" => m.slab_pages_node(node).1,
        _ => 0,
    }
}

pub fn render(m: &Machine, snap: &Snapshot) -> String {
    let mut s = String::new();
    let cpus = m.nr_cpus();
    for node in 0..m.nr_nodes() as u16 {
        let zones: Vec<&ZoneSnapshot> = snap.zones.iter().filter(|z| z.node == node).collect();
        let first_populated = zones.iter().position(|z| z.populated);
        for (i, z) in zones.iter().enumerate() {
            let _ = write!(s, "Node {}, zone {:>8}", node, z.zone.name());
            if Some(i) == first_populated {
                s.push_str("\n  per-node stats");
                for name in NODE_ITEMS {
                    let _ = write!(s, "\n      {:<12} {}", name, node_item(m, node, name));
                }
            }
            let _ = write!(
                s,
                "\n  pages free     {}\n        boost    {}\n        min      {}\n        low      {}\n        high     {}\n        promo    {}\n        spanned  {}\n        present  {}\n        managed  {}\n        cma      {}",
                z.free, z.boost, z.min, z.low, z.high, z.promo, z.spanned, z.present, z.managed, 0
            );
            let _ = write!(s, "\n        protection: ({}", z.lowmem_reserve[0]);
            for r in &z.lowmem_reserve[1..] {
                let _ = write!(s, ", {r}");
            }
            s.push(')');
            if !z.populated {
                s.push('\n');
                continue;
            }
            for name in ZONE_ITEMS {
                let _ = write!(s, "\n      {:<12} {}", name, zone_item(z, name));
            }
            for name in NUMA_ITEMS {
                let _ = write!(s, "\n      {:<12} {}", name, numa_item(z, name));
            }
            s.push_str("\n  pagesets");
            let threshold = stat_threshold(z.managed, cpus);
            for p in &z.pagesets {
                let _ = write!(
                    s,
                    "\n    cpu: {}\n              count:    {}\n              high:     {}\n              batch:    {}\n              high_min: {}\n              high_max: {}\n  vm stats threshold: {}",
                    p.cpu, p.count, p.high, p.batch, p.high_min, p.high_max, threshold
                );
            }
            let _ = write!(
                s,
                "\n  node_unreclaimable:  {}\n  start_pfn:           {}\n",
                0, z.start_pfn
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        // 8 CPUs, 248725 managed pages → 32 (seen on a real machine).
        assert_eq!(stat_threshold(248_725, 8), 32);
        assert_eq!(stat_threshold(1 << 30, 1024), 125);
    }
}
