//! Nodes and zones: the physical memory map computed at boot.
//!
//! Modelled rules (x86-64, `mm/mm_init.c`, `arch/x86/mm/init.c`):
//! - zones DMA [0, 16 MiB), DMA32 [16 MiB, 4 GiB), Normal above; Movable only when
//!   `movablecore=` asks for it, carved from the top of each node's highest zone; Device
//!   is configured but never populated. A zone that would span no page is absent.
//! - `spanned` counts the zone's pfn range, `present` subtracts firmware holes,
//!   `managed` subtracts boot reservations as well (kernel image, memmap, crashkernel).
//! - nodes split memory evenly in 4 MiB units unless given sizes; the distance table
//!   defaults to 10 local / 20 remote, as ACPI SLIT tables usually say.

use serde::Serialize;

use crate::config::MachineConfig;
use crate::page::{Pfn, MAX_ORDER, PAGE_SHIFT};
use crate::units::{ByteSize, GIB, MIB};

/// Zone types in the kernel's order for x86-64 (no HIGHMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[repr(u8)]
pub enum ZoneType {
    Dma = 0,
    Dma32 = 1,
    Normal = 2,
    Movable = 3,
    Device = 4,
}

/// `MAX_NR_ZONES` for the modelled configuration.
pub const MAX_NR_ZONES: usize = 5;

impl ZoneType {
    pub const ALL: [ZoneType; MAX_NR_ZONES] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::Movable,
        ZoneType::Device,
    ];
    /// The kernel's `zone_names`.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::Movable => "Movable",
            ZoneType::Device => "Device",
        }
    }
    /// vmstat suffix (`pgalloc_dma32`).
    pub const fn lower(self) -> &'static str {
        match self {
            ZoneType::Dma => "dma",
            ZoneType::Dma32 => "dma32",
            ZoneType::Normal => "normal",
            ZoneType::Movable => "movable",
            ZoneType::Device => "device",
        }
    }
    pub const fn idx(self) -> usize {
        self as usize
    }
}

/// Why a configuration cannot boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid machine config: {0}")]
pub struct ConfigError(pub String);

/// One zone of one node as laid out at boot.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneLayout {
    pub node: u16,
    pub zt: ZoneType,
    pub start_pfn: Pfn,
    pub spanned: u64,
    pub present: u64,
    pub managed: u64,
    /// Ranges handed to the buddy allocator at boot, sorted.
    #[serde(skip)]
    pub free_ranges: Vec<(Pfn, Pfn)>,
}

impl ZoneLayout {
    pub fn end_pfn(&self) -> Pfn {
        self.start_pfn + self.spanned
    }
    pub fn populated(&self) -> bool {
        self.present > 0
    }
}

/// The whole physical map.
#[derive(Clone, Debug)]
pub struct Layout {
    pub total_pages: u64,
    pub node_ranges: Vec<(Pfn, Pfn)>,
    /// Every zone of every node, node-major, `MAX_NR_ZONES` per node (absent zones
    /// have `spanned == 0`).
    pub zones: Vec<ZoneLayout>,
    pub cpu_node: Vec<u16>,
    pub distance: Vec<Vec<u8>>,
    /// Named boot reservations actually made, with their pfn ranges.
    pub reservations: Vec<(String, Pfn, Pfn)>,
}

const MAX_ORDER_PAGES: u64 = 1 << MAX_ORDER;

fn pages(b: u64) -> u64 {
    b >> PAGE_SHIFT
}

/// Subtract `cut` from a sorted, disjoint set of ranges.
fn subtract(ranges: &[(Pfn, Pfn)], cut: (Pfn, Pfn)) -> Vec<(Pfn, Pfn)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(s, e) in ranges {
        if cut.1 <= s || cut.0 >= e {
            out.push((s, e));
            continue;
        }
        if s < cut.0 {
            out.push((s, cut.0));
        }
        if cut.1 < e {
            out.push((cut.1, e));
        }
    }
    out
}

fn overlap(ranges: &[(Pfn, Pfn)], lo: Pfn, hi: Pfn) -> u64 {
    ranges
        .iter()
        .map(|&(s, e)| e.min(hi).saturating_sub(s.max(lo)))
        .sum()
}

/// Take `n` pages top-down from `ranges` within [lo, hi); returns the range taken.
fn take_top(ranges: &[(Pfn, Pfn)], lo: Pfn, hi: Pfn, n: u64) -> Option<(Pfn, Pfn)> {
    for &(s, e) in ranges.iter().rev() {
        let (s, e) = (s.max(lo), e.min(hi));
        if e > s && e - s >= n {
            return Some((e - n, e));
        }
    }
    None
}

impl Layout {
    pub fn compute(cfg: &MachineConfig) -> Result<Layout, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        let mem = cfg.memory.bytes();
        if mem % (4 * MIB) != 0 {
            return bad(format!("memory {} is not a multiple of 4MiB", cfg.memory));
        }
        if mem < 32 * MIB {
            return bad(format!("memory {} is below the 32MiB minimum", cfg.memory));
        }
        if mem > 16 * (1 << 40) {
            return bad(format!("memory {} is above the 16TiB maximum", cfg.memory));
        }
        let nodes = cfg.nodes as usize;
        if !(1..=64).contains(&nodes) {
            return bad(format!("nodes must be 1..=64, not {nodes}"));
        }
        if !(1..=1024).contains(&cfg.cpus) {
            return bad(format!("cpus must be 1..=1024, not {}", cfg.cpus));
        }
        if !(1..=3000).contains(&cfg.watermark_scale_factor) {
            return bad("watermark_scale_factor must be 1..=3000".into());
        }
        if cfg.percpu_pagelist_high_fraction != 0 && cfg.percpu_pagelist_high_fraction < 8 {
            return bad("percpu_pagelist_high_fraction must be 0 or >= 8".into());
        }
        let total_pages = pages(mem);

        // Node ranges.
        let sizes: Vec<u64> = match &cfg.node_memory {
            Some(v) => {
                if v.len() != nodes {
                    return bad(format!(
                        "node_memory has {} entries for {nodes} nodes",
                        v.len()
                    ));
                }
                if v.iter().map(|b| b.0).sum::<u64>() != mem {
                    return bad("node_memory does not add up to memory".into());
                }
                if v.iter().any(|b| b.0 % (4 * MIB) != 0 || b.0 == 0) {
                    return bad(
                        "every node_memory entry must be a non-zero multiple of 4MiB".into(),
                    );
                }
                v.iter().map(|b| pages(b.0)).collect()
            }
            None => {
                let units = total_pages / MAX_ORDER_PAGES;
                if units < nodes as u64 {
                    return bad(format!("{} is too small for {nodes} nodes", cfg.memory));
                }
                (0..nodes as u64)
                    .map(|i| {
                        let lo = units * i / nodes as u64;
                        let hi = units * (i + 1) / nodes as u64;
                        (hi - lo) * MAX_ORDER_PAGES
                    })
                    .collect()
            }
        };
        let mut node_ranges = Vec::with_capacity(nodes);
        let mut at = 0;
        for s in sizes {
            node_ranges.push((at, at + s));
            at += s;
        }

        // Distances.
        let distance = match &cfg.distance {
            Some(d) => {
                if d.len() != nodes || d.iter().any(|r| r.len() != nodes) {
                    return bad(format!("distance must be a {nodes}x{nodes} table"));
                }
                for (i, row) in d.iter().enumerate() {
                    if row[i] != 10 || row.iter().enumerate().any(|(j, &v)| j != i && v <= 10) {
                        return bad("distance: local must be 10 and remote above 10".into());
                    }
                }
                d.clone()
            }
            None => (0..nodes)
                .map(|i| (0..nodes).map(|j| if i == j { 10 } else { 20 }).collect())
                .collect(),
        };

        // CPUs.
        let cpu_node = match &cfg.cpu_nodes {
            Some(v) => {
                if v.len() != cfg.cpus as usize || v.iter().any(|&n| n as usize >= nodes) {
                    return bad("cpu_nodes must name a valid node for every cpu".into());
                }
                v.clone()
            }
            None => (0..cfg.cpus as usize)
                .map(|c| (c * nodes / cfg.cpus as usize) as u16)
                .collect(),
        };

        // Present ranges: all memory minus holes.
        let mut present = vec![(0, total_pages)];
        for h in &cfg.holes {
            let s = pages(h.start.0);
            let e = pages((h.start.0 + h.size.0).next_multiple_of(4096));
            present = subtract(&present, (s, e));
        }

        // Zone spans per node.
        let dma_end = pages(16 * MIB);
        let dma32_end = pages(4 * GIB);
        let movable_per_node = pages(cfg.movablecore.0)
            .div_ceil(nodes as u64)
            .next_multiple_of(MAX_ORDER_PAGES);
        let mut zones = Vec::with_capacity(nodes * MAX_NR_ZONES);
        for (n, &(ns, ne)) in node_ranges.iter().enumerate() {
            let clip = |lo: Pfn, hi: Pfn| (lo.max(ns), hi.min(ne).max(lo.max(ns)));
            let mut spans = [
                clip(0, dma_end),
                clip(dma_end, dma32_end),
                clip(dma32_end, u64::MAX),
                (0, 0),
                (0, 0),
            ];
            if movable_per_node > 0 {
                // The highest populated zone gives its top to Movable.
                if let Some(hi) = (0..3).rev().find(|&z| spans[z].1 > spans[z].0) {
                    let (s, e) = spans[hi];
                    let take = movable_per_node.min(e - s);
                    spans[hi] = (s, e - take);
                    spans[3] = (e - take, e);
                }
            }
            for (zi, &(s, e)) in spans.iter().enumerate() {
                let (s, e) = if e > s { (s, e) } else { (0, 0) };
                let zpresent: Vec<(Pfn, Pfn)> = present
                    .iter()
                    .filter_map(|&(ps, pe)| {
                        let (a, b) = (ps.max(s), pe.min(e));
                        (b > a).then_some((a, b))
                    })
                    .collect();
                let p = overlap(&zpresent, s, e);
                // The zone spans from its first to its last present page
                // (`zone_spanned_pages_in_node` clips to memblock memory).
                let (s, e) = match (zpresent.first(), zpresent.last()) {
                    (Some(f), Some(l)) => (f.0, l.1),
                    _ => (0, 0),
                };
                zones.push(ZoneLayout {
                    node: n as u16,
                    zt: ZoneType::ALL[zi],
                    start_pfn: s,
                    spanned: e - s,
                    present: p,
                    managed: p,
                    free_ranges: zpresent,
                });
            }
        }

        // Boot reservations: the free set is present minus reservations.
        let mut free: Vec<(Pfn, Pfn)> = present.clone();
        let mut reservations = Vec::new();
        for r in &cfg.reserved {
            let n = pages(r.size.0.next_multiple_of(4096));
            if n == 0 {
                continue;
            }
            let range = match r.start {
                Some(st) => {
                    let s = pages(st.0);
                    if s + n > total_pages {
                        return bad(format!("reservation {} lies beyond memory", r.name));
                    }
                    (s, s + n)
                }
                None => {
                    let kernel_hi = node_ranges[0].1.min(dma32_end);
                    match take_top(&free, dma_end, kernel_hi, n)
                        .or_else(|| take_top(&free, 0, total_pages, n))
                    {
                        Some(r) => r,
                        None => return bad(format!("no room for reservation {}", r.name)),
                    }
                }
            };
            free = subtract(&free, range);
            reservations.push((r.name.clone(), range.0, range.1));
        }
        if cfg.reserve_memmap {
            for (n, &(ns, ne)) in node_ranges.iter().enumerate() {
                let node_present = overlap(&present, ns, ne);
                let memmap = (node_present * 64).div_ceil(4096);
                // Below this node's Movable zone: the kernel keeps movable memory free
                // of kernel allocations.
                let mz = &zones[n * MAX_NR_ZONES + ZoneType::Movable.idx()];
                let hi = if mz.spanned > 0 { mz.start_pfn } else { ne };
                if let Some(r) = take_top(&free, ns, hi, memmap) {
                    free = subtract(&free, r);
                    reservations.push((format!("memmap node {n}"), r.0, r.1));
                }
            }
        }
        for z in &mut zones {
            let (s, e) = (z.start_pfn, z.end_pfn());
            z.free_ranges = free
                .iter()
                .filter_map(|&(fs, fe)| {
                    let (a, b) = (fs.max(s), fe.min(e));
                    (b > a).then_some((a, b))
                })
                .collect();
            z.managed = z.free_ranges.iter().map(|(a, b)| b - a).sum();
            if z.present == 0 {
                z.start_pfn = 0;
                z.spanned = 0;
            }
        }
        if zones.iter().all(|z| z.managed == 0) {
            return bad("no memory left after holes and reservations".into());
        }
        Ok(Layout {
            total_pages,
            node_ranges,
            zones,
            cpu_node,
            distance,
            reservations,
        })
    }

    /// Bytes of a page count, for messages.
    pub fn bytes(pages: u64) -> ByteSize {
        ByteSize(pages << PAGE_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Hole, Reservation};

    fn zone(l: &Layout, node: usize, zt: ZoneType) -> &ZoneLayout {
        &l.zones[node * MAX_NR_ZONES + zt.idx()]
    }

    #[test]
    fn default_sixteen_gib() {
        let l = Layout::compute(&MachineConfig::default()).unwrap();
        let dma = zone(&l, 0, ZoneType::Dma);
        assert_eq!(
            (dma.start_pfn, dma.spanned),
            (1, 4095),
            "pfn 0 is not memory"
        );
        // page 0 and 640K..1M are holes
        assert_eq!(dma.present, 4096 - 1 - 96);
        let dma32 = zone(&l, 0, ZoneType::Dma32);
        assert_eq!(dma32.start_pfn, 4096);
        assert_eq!(dma32.spanned, (1 << 20) - 4096);
        // the kernel image lies in DMA32 (16 MiB + 32 MiB)
        assert_eq!(dma32.managed, dma32.present - 8192);
        let normal = zone(&l, 0, ZoneType::Normal);
        assert_eq!(normal.spanned, 3 << 20);
        // memmap: 64 bytes per present page, from the top of Normal
        let memmap = ((4u64 << 20) - 97) * 64 / 4096 + 1;
        assert_eq!(normal.managed, normal.present - memmap);
        assert_eq!(zone(&l, 0, ZoneType::Movable).spanned, 0);
        assert_eq!(zone(&l, 0, ZoneType::Device).spanned, 0);
    }

    #[test]
    fn small_machine_has_no_normal_zone() {
        let l = Layout::compute(&MachineConfig::bare(ByteSize::gib(1))).unwrap();
        assert_eq!(zone(&l, 0, ZoneType::Normal).present, 0);
        assert_eq!(zone(&l, 0, ZoneType::Dma32).managed, (1 << 18) - 4096);
    }

    #[test]
    fn numa_split_and_movable() {
        let cfg = MachineConfig {
            nodes: 4,
            cpus: 8,
            movablecore: ByteSize::gib(4),
            ..MachineConfig::bare(ByteSize::gib(32))
        };
        let l = Layout::compute(&cfg).unwrap();
        assert_eq!(l.node_ranges[1], (2 << 20, 4 << 20));
        assert_eq!(l.cpu_node, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        for n in 0..4 {
            assert_eq!(zone(&l, n, ZoneType::Movable).spanned, 1 << 18);
        }
        // node 0 is all DMA+DMA32 below 8 GiB? no: node 0 spans [0, 8G)
        assert_eq!(zone(&l, 0, ZoneType::Normal).spanned, (1 << 20) - (1 << 18));
        assert_eq!(zone(&l, 2, ZoneType::Dma32).spanned, 0);
        assert_eq!(l.distance[0][3], 20);
    }

    #[test]
    fn holes_and_reservations_shape_present_and_managed() {
        let cfg = MachineConfig {
            holes: vec![Hole {
                start: ByteSize::gib(3),
                size: ByteSize::gib(1),
                name: "PCI".into(),
            }],
            reserved: vec![Reservation {
                name: "crashkernel".into(),
                size: ByteSize::mib(256),
                start: None,
            }],
            ..MachineConfig::bare(ByteSize::gib(8))
        };
        let l = Layout::compute(&cfg).unwrap();
        let dma32 = zone(&l, 0, ZoneType::Dma32);
        // The hole ends the zone: spanned stops at the last present page.
        assert_eq!(dma32.spanned, (3 << 18) - 4096);
        assert_eq!(dma32.present, dma32.spanned);
        let normal = zone(&l, 0, ZoneType::Normal);
        assert_eq!(normal.start_pfn, 1 << 20);
        assert_eq!(dma32.managed, dma32.present - (1 << 16));
        let ck = &l.reservations[0];
        assert_eq!(ck.2, 3 << 18, "crashkernel placed top-down below the hole");
    }

    #[test]
    fn refuses_nonsense() {
        for cfg in [
            MachineConfig::bare(ByteSize::mib(5)),
            MachineConfig {
                nodes: 65,
                ..Default::default()
            },
            MachineConfig {
                cpus: 0,
                ..Default::default()
            },
        ] {
            assert!(Layout::compute(&cfg).is_err());
        }
    }
}
