//! The machine's configuration: what a real x86-64 box would have set in firmware and
//! on the kernel command line. Every field has a default, so `MachineConfig::default()`
//! is a sensible 16 GiB, 2-CPU, single-node machine.

use serde::{Deserialize, Serialize};

use crate::units::ByteSize;

/// Transparent hugepage mode (`/sys/kernel/mm/transparent_hugepage/enabled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ThpMode {
    Always,
    /// The common distribution default.
    #[default]
    Madvise,
    Never,
}

impl ThpMode {
    /// khugepaged runs (and raises min_free_kbytes) in `always` and `madvise`.
    pub fn enabled(self) -> bool {
        !matches!(self, ThpMode::Never)
    }
}

/// A physical range the firmware does not give to the kernel (E820 reserved): it is
/// spanned by a zone but not present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hole {
    pub start: ByteSize,
    pub size: ByteSize,
    #[serde(default)]
    pub name: String,
}

/// Memory the kernel reserves at boot (memblock): present, never managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub name: String,
    pub size: ByteSize,
    /// Physical start; absent means top-down from the end of node 0's memory below
    /// 4 GiB where it fits (as memblock places `crashkernel=`), else from the top.
    #[serde(default)]
    pub start: Option<ByteSize>,
}

/// Everything that shapes a [`crate::Machine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineConfig {
    /// Physical address space spanned by RAM, from address 0 (holes included).
    pub memory: ByteSize,
    /// NUMA nodes (1..=64); memory is split evenly unless `node_memory` is given.
    pub nodes: u16,
    /// Explicit per-node memory sizes (must add up to `memory`).
    pub node_memory: Option<Vec<ByteSize>>,
    /// SLIT distance table, `nodes`×`nodes`; default 10 local, 20 remote.
    pub distance: Option<Vec<Vec<u8>>>,
    /// Simulated CPUs (1..=1024).
    pub cpus: u16,
    /// The node of each CPU; default spreads CPUs over nodes in contiguous runs.
    pub cpu_nodes: Option<Vec<u16>>,
    /// `movablecore=`: memory for ZONE_MOVABLE, taken evenly from the top of each node.
    pub movablecore: ByteSize,
    /// Firmware holes in the physical map.
    pub holes: Vec<Hole>,
    /// Boot-time reservations (kernel image, crashkernel, …).
    pub reserved: Vec<Reservation>,
    /// Reserve the memmap (64 bytes of `struct page` per present page) at the top of
    /// each node, as the kernel does.
    pub reserve_memmap: bool,
    pub transparent_hugepage: ThpMode,
    /// Set `vm.min_free_kbytes` instead of computing it (a user value sticks).
    pub min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor` (1..=3000, in 1/10000 of managed memory).
    pub watermark_scale_factor: u32,
    /// `vm.watermark_boost_factor` (in 1/10000 of the high watermark; 0 disables).
    pub watermark_boost_factor: u32,
    /// `vm.lowmem_reserve_ratio` for DMA, DMA32, Normal, Movable, Device.
    pub lowmem_reserve_ratio: [u32; 5],
    /// `vm.percpu_pagelist_high_fraction` (0 = automatic, else >= 8).
    pub percpu_pagelist_high_fraction: u32,
    /// `init_on_alloc=1`: zero every allocation.
    pub init_on_alloc: bool,
    /// `init_on_free=1`: zero every page when it is freed.
    pub init_on_free: bool,
    /// Freed blocks of at least this order give their stored bytes back to the host
    /// (a simulator economy; they then read as zero). 11 disables it.
    pub release_bytes_order: u8,
    /// `slab_debug=` boot option (e.g. `FZPU`, `P,kmalloc-64`, `Z,dentry;U,kmalloc-*`).
    pub slab_debug: Option<String>,
    /// `slab_nomerge`: never merge caches.
    pub slab_nomerge: bool,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            memory: ByteSize::gib(16),
            nodes: 1,
            node_memory: None,
            distance: None,
            cpus: 2,
            cpu_nodes: None,
            movablecore: ByteSize(0),
            holes: vec![
                Hole {
                    start: ByteSize(0),
                    size: ByteSize::kib(4),
                    name: "BIOS data".into(),
                },
                Hole {
                    start: ByteSize::kib(640),
                    size: ByteSize::kib(384),
                    name: "legacy VGA/ROM".into(),
                },
            ],
            reserved: vec![Reservation {
                name: "kernel".into(),
                size: ByteSize::mib(32),
                start: Some(ByteSize::mib(16)),
            }],
            reserve_memmap: true,
            transparent_hugepage: ThpMode::default(),
            min_free_kbytes: None,
            watermark_scale_factor: 10,
            watermark_boost_factor: 15000,
            lowmem_reserve_ratio: [256, 256, 32, 0, 0],
            percpu_pagelist_high_fraction: 0,
            init_on_alloc: false,
            init_on_free: false,
            release_bytes_order: crate::page::PAGEBLOCK_ORDER,
            slab_debug: None,
            slab_nomerge: false,
        }
    }
}

impl MachineConfig {
    /// A bare machine of `memory` bytes: no holes, no reservations, no memmap.
    /// Handy for tests that want round numbers.
    pub fn bare(memory: ByteSize) -> Self {
        MachineConfig {
            memory,
            holes: vec![],
            reserved: vec![],
            reserve_memmap: false,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_with_defaults_and_human_sizes() {
        let cfg: MachineConfig = toml::from_str(
            r#"
            memory = "64GiB"
            nodes = 2
            cpus = 8
            movablecore = "4G"
            transparent_hugepage = "never"
            min_free_kbytes = 90000
            holes = [{ start = "3GiB", size = "1GiB", name = "PCI" }]
            reserved = [{ name = "crashkernel", size = "256MiB" }]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.memory, ByteSize::gib(64));
        assert_eq!(cfg.movablecore, ByteSize::gib(4));
        assert_eq!(cfg.transparent_hugepage, ThpMode::Never);
        assert_eq!(cfg.watermark_scale_factor, 10, "unset fields keep defaults");
        assert_eq!(cfg.holes[0].start, ByteSize::gib(3));
        assert!(cfg.reserved[0].start.is_none());
        let m = crate::Machine::boot(cfg).unwrap();
        assert_eq!(m.sysctls().min_free_kbytes, 90_000);
        assert!(
            toml::from_str::<MachineConfig>("memroy = 1").is_err(),
            "typos are errors"
        );
        assert!(toml::from_str::<MachineConfig>("memory = \"12 parsecs\"").is_err());
    }
}
