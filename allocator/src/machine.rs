//! The simulated machine: boot, the sysctls, and the shared pieces every subsystem uses.
//!
//! Boot follows the kernel's order: lay out nodes and zones, hand every free range to
//! the buddy allocator in the largest aligned blocks (`memblock_free_all`), compute
//! `min_free_kbytes` and the watermarks (`init_per_zone_wmark_min`), lowmem reserves,
//! pcp sizes, and with THP on let khugepaged raise `min_free_kbytes`
//! (`set_recommended_min_free_kbytes`). A `min_free_kbytes` from the config is then
//! applied as if written to the sysctl after boot, so it sticks.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::config::{MachineConfig, ThpMode};
use crate::content::ContentStore;
use crate::context::AllocContext;
use crate::mem::{ConfigError, Layout, ZoneType, MAX_NR_ZONES};
use crate::page::{PageMap, Pfn, MAX_ORDER, NO_ZONE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::page_alloc::AllocError;
use crate::pcp::Cpu;
use crate::vmstat::RareEvents;
use crate::watermark::{self, MIN_PERCPU_PAGELIST_HIGH_FRACTION};
use crate::zone::{Wmark, Zone};

/// State shared by every zone lock holder.
pub(crate) struct Mm {
    pub pages: PageMap,
    pub ev: RareEvents,
    pub boost_factor: AtomicU32,
    /// `page_group_by_mobility_disabled`.
    pub grouping_disabled: AtomicBool,
    /// THP enabled: pageblock-order blocks get a pcp list.
    pub thp: AtomicBool,
}

/// The `vm.*` sysctls the page allocator reads.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Sysctl {
    pub min_free_kbytes: u64,
    /// Set when a user wrote `min_free_kbytes` (`user_min_free_kbytes`).
    pub user_min_free_kbytes: Option<u64>,
    pub watermark_scale_factor: u32,
    pub watermark_boost_factor: u32,
    pub lowmem_reserve_ratio: [u32; MAX_NR_ZONES],
    pub percpu_pagelist_high_fraction: u32,
    pub transparent_hugepage: ThpMode,
}

/// Why a sysctl write was refused (the kernel's -EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("unknown sysctl `{0}`; known: {known}", known = SYSCTL_NAMES.join(", "))]
    Unknown(String),
    #[error("invalid value `{value}` for {name}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

impl SysctlError {
    pub fn reason(&self) -> &'static str {
        match self {
            SysctlError::Unknown(_) => "UNKNOWN_SYSCTL",
            SysctlError::Invalid { .. } => "INVALID_SYSCTL_VALUE",
        }
    }
}

/// Sysctls by their `sysctl` names.
pub const SYSCTL_NAMES: &[&str] = &[
    "vm.min_free_kbytes",
    "vm.watermark_scale_factor",
    "vm.watermark_boost_factor",
    "vm.lowmem_reserve_ratio",
    "vm.percpu_pagelist_high_fraction",
    "kernel.mm.transparent_hugepage.enabled",
];

/// Threads waiting in `__GFP_NOFAIL` for a free.
pub(crate) struct FreeWaiters {
    waiters: AtomicUsize,
    gen: Mutex<u64>,
    cv: Condvar,
}

impl FreeWaiters {
    fn new() -> Self {
        FreeWaiters {
            waiters: AtomicUsize::new(0),
            gen: Mutex::new(0),
            cv: Condvar::new(),
        }
    }
    pub fn generation(&self) -> u64 {
        *self.gen.lock()
    }
    /// Called on every free: one relaxed load unless someone waits.
    #[inline(always)]
    pub fn notify(&self) {
        if self.waiters.load(Relaxed) > 0 {
            self.wake();
        }
    }
    #[cold]
    #[inline(never)]
    fn wake(&self) {
        *self.gen.lock() += 1;
        self.cv.notify_all();
    }
    /// Sleep until a free happens after generation `seen`, or `until`.
    pub fn wait_past(&self, seen: u64, until: Instant) {
        self.waiters.fetch_add(1, Relaxed);
        let mut g = self.gen.lock();
        while *g == seen {
            if self.cv.wait_until(&mut g, until).timed_out() {
                break;
            }
        }
        drop(g);
        self.waiters.fetch_sub(1, Relaxed);
    }
}

/// The kernel log (`dmesg`), bounded.
pub(crate) struct KernelLog {
    boot: Instant,
    lines: Mutex<VecDeque<String>>,
    /// `warn_alloc`'s ratelimit: one report per 10 s.
    last_ratelimited: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

const LOG_LINES: usize = 1024;

impl KernelLog {
    fn new() -> Self {
        KernelLog {
            boot: Instant::now(),
            lines: Mutex::new(VecDeque::new()),
            last_ratelimited: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }
    pub fn warn(&self, msg: String) {
        let t = self.boot.elapsed();
        let line = format!("[{:5}.{:06}] {msg}", t.as_secs(), t.subsec_micros());
        let mut l = self.lines.lock();
        if l.len() == LOG_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }
    pub fn warn_ratelimited(&self, msg: String) {
        let now = Instant::now();
        {
            let mut last = self.last_ratelimited.lock();
            if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
                self.suppressed.fetch_add(1, Relaxed);
                return;
            }
            *last = Some(now);
        }
        let n = self.suppressed.swap(0, Relaxed);
        if n > 0 {
            self.warn(format!("warn_alloc: {n} callbacks suppressed"));
        }
        self.warn(msg);
    }
}

/// The simulated machine.
pub struct Machine {
    pub(crate) cfg: MachineConfig,
    pub(crate) layout: Layout,
    pub(crate) mm: Mm,
    /// Every zone of every node, `MAX_NR_ZONES` per node, node-major.
    pub(crate) zones: Vec<Zone>,
    pub(crate) cpus: Vec<Cpu>,
    /// Per node: populated zones in fallback order.
    pub(crate) zonelists: Vec<Vec<usize>>,
    pub(crate) zonelists_thisnode: Vec<Vec<usize>>,
    /// Per node, the fast path's preferred zone for each `[THISNODE][highest zone]`
    /// (static after boot, like the zonelists it is read from).
    pub(crate) first_zones: Vec<[[FirstZone; MAX_NR_ZONES]; 2]>,
    pub(crate) sysctl: Mutex<Sysctl>,
    pub(crate) content: ContentStore,
    pub(crate) waiters: FreeWaiters,
    pub(crate) log: KernelLog,
    pub(crate) totalreserve: AtomicU64,
    /// The free blocks right after boot, per zone, sorted (for the full-merge check).
    pub(crate) boot_blocks: Vec<Vec<(Pfn, u8)>>,
    pub(crate) caches: crate::slab::Caches,
    pub(crate) kmalloc_caches: [[crate::slab::CacheId; 13]; 4],
    pub(crate) slab_debug: Option<crate::slab::SlabDebug>,
    pub(crate) slab_nomerge: bool,
    /// Pages of large kmallocs, per node.
    pub(crate) large_kmalloc_pages: Vec<AtomicU64>,
    /// kmalloc calls whose DMA32/HIGHMEM bits were stripped.
    pub(crate) kmalloc_fixups: AtomicU64,
    pub(crate) vmap: crate::vmalloc::Vmap,
    pub(crate) memcgs: crate::memcg::Memcgs,
    /// Each CPU's slab state and object stock, one lock per CPU ([`crate::percpu`]).
    pub(crate) cpu_locals: crate::percpu::CpuLocals,
    /// Per-CPU object stocks for byte-precise slab charging.
    /// The cgroup each accounted slab object was charged to, by address (the
    /// kernel's `slabobj_ext`), sharded.
    pub(crate) vstats: crate::vmalloc::VmallocStats,
}

/// The first zone of a zonelist at or below the highest zone a mask allows, packed
/// with whether `alloc_flags_nofragment` gives the fast path ALLOC_NOFRAGMENT there.
/// Both depend only on the boot-time layout, so they are looked up, not walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FirstZone(u16);

impl FirstZone {
    pub(crate) const NONE: FirstZone = FirstZone(u16::MAX);
    const NOFRAGMENT: u16 = 0x8000;

    fn new(zone: usize, nofragment: bool) -> FirstZone {
        assert!(
            zone < Self::NOFRAGMENT as usize - 1,
            "zone index fits 15 bits"
        );
        FirstZone(zone as u16 | if nofragment { Self::NOFRAGMENT } else { 0 })
    }
    #[inline(always)]
    pub(crate) fn zone(self) -> Option<usize> {
        (self != Self::NONE).then_some((self.0 & !Self::NOFRAGMENT) as usize)
    }
    #[inline(always)]
    pub(crate) fn nofragment(self) -> bool {
        self.0 & Self::NOFRAGMENT != 0 && self != Self::NONE
    }
}

/// `alloc_flags_nofragment`'s zone test: the zone is Normal with a DMA32 below it that
/// is populated, or the machine has a single node (where DMA32 counts even empty).
fn nofragment_zone(zones: &[Zone], zone: usize, nr_nodes: usize) -> bool {
    zones[zone].zt == ZoneType::Normal && (nr_nodes == 1 || zones[zone - 1].populated())
}

thread_local! {
    static THREAD_CPU: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

impl Machine {
    /// Boot a machine.
    pub fn boot(cfg: MachineConfig) -> Result<Machine, ConfigError> {
        let layout = Layout::compute(&cfg)?;
        let nr_nodes = layout.node_ranges.len();
        let nr_blocks = layout.total_pages.div_ceil(PAGEBLOCK_NR_PAGES) as usize;
        let mut pb_zone = vec![NO_ZONE; nr_blocks];
        let zones: Vec<Zone> = layout
            .zones
            .iter()
            .enumerate()
            .map(|(i, zl)| Zone::new(i, zl))
            .collect();
        for z in zones.iter().filter(|z| z.populated()) {
            let first = (z.start_pfn / PAGEBLOCK_NR_PAGES) as usize;
            let last = z.end_pfn().div_ceil(PAGEBLOCK_NR_PAGES) as usize;
            for e in &mut pb_zone[first..last] {
                *e = z.id as u16;
            }
        }
        let mm = Mm {
            pages: PageMap::new(layout.total_pages, pb_zone),
            ev: RareEvents::default(),
            boost_factor: AtomicU32::new(cfg.watermark_boost_factor),
            grouping_disabled: AtomicBool::new(false),
            thp: AtomicBool::new(cfg.transparent_hugepage.enabled()),
        };
        let cpus = layout
            .cpu_node
            .iter()
            .enumerate()
            .map(|(c, &n)| Cpu::new(c as u16, n, zones.len()))
            .collect();
        let mut zonelists = Vec::with_capacity(nr_nodes);
        let mut thisnode = Vec::with_capacity(nr_nodes);
        for n in 0..nr_nodes {
            let mut order: Vec<usize> = (0..nr_nodes).collect();
            order.sort_by_key(|&m| (layout.distance[n][m], m != n, m));
            let node_zones = |m: usize| {
                (0..MAX_NR_ZONES)
                    .rev()
                    .map(move |z| m * MAX_NR_ZONES + z)
                    .filter(|&zi| zones[zi].populated())
            };
            zonelists.push(order.iter().flat_map(|&m| node_zones(m)).collect());
            thisnode.push(node_zones(n).collect());
        }
        let first_zones = (0..nr_nodes)
            .map(|n| {
                [&zonelists[n], &thisnode[n]].map(|list: &Vec<usize>| {
                    ZoneType::ALL.map(|highest| {
                        match list.iter().find(|&&z| zones[z].zt <= highest) {
                            None => FirstZone::NONE,
                            Some(&z) => FirstZone::new(z, nofragment_zone(&zones, z, nr_nodes)),
                        }
                    })
                })
            })
            .collect();
        let sysctl = Sysctl {
            min_free_kbytes: 0,
            user_min_free_kbytes: None,
            watermark_scale_factor: cfg.watermark_scale_factor,
            watermark_boost_factor: cfg.watermark_boost_factor,
            lowmem_reserve_ratio: cfg.lowmem_reserve_ratio,
            percpu_pagelist_high_fraction: cfg.percpu_pagelist_high_fraction,
            transparent_hugepage: cfg.transparent_hugepage,
        };
        let slab_debug = match cfg.slab_debug.as_deref() {
            Some(s) => Some(
                crate::slab::SlabDebug::parse(s)
                    .map_err(|e| ConfigError(format!("slab_debug: {e}")))?,
            ),
            None => None,
        };
        let slab_nomerge = cfg.slab_nomerge;
        let cfg_cpus = cfg.cpus as usize;
        let cpu_locals = crate::percpu::new_locals(cfg_cpus);
        let mut m = Machine {
            content: ContentStore::new(layout.total_pages),
            cfg,
            mm,
            zones,
            cpus,
            zonelists,
            zonelists_thisnode: thisnode,
            first_zones,
            sysctl: Mutex::new(sysctl),
            waiters: FreeWaiters::new(),
            log: KernelLog::new(),
            totalreserve: AtomicU64::new(0),
            boot_blocks: Vec::new(),
            caches: crate::slab::Caches::new(),
            kmalloc_caches: [[crate::slab::CacheId(0); 13]; 4],
            slab_debug,
            slab_nomerge,
            large_kmalloc_pages: (0..nr_nodes).map(|_| AtomicU64::new(0)).collect(),
            kmalloc_fixups: AtomicU64::new(0),
            vmap: Mutex::new(crate::vmalloc::VmapState::new()),
            memcgs: crate::memcg::Memcgs::with_locals(cpu_locals.clone()),
            cpu_locals,
            vstats: Default::default(),
            layout,
        };
        m.free_boot_memory();
        m.init_watermarks();
        m.boot_blocks = m.zones.iter().map(|z| m.free_blocks(z.id)).collect();
        m.create_kmalloc_caches();
        Ok(m)
    }

    /// `memblock_free_all`: each free range in the largest naturally aligned blocks.
    fn free_boot_memory(&self) {
        for (zi, zl) in self.layout.zones.iter().enumerate() {
            let zone = &self.zones[zi];
            if zl.free_ranges.is_empty() {
                continue;
            }
            let mut b = zone.lock(&self.mm);
            for &(s, e) in &zl.free_ranges {
                let mut p = s;
                while p < e {
                    let mut order = (p.trailing_zeros() as u8).min(MAX_ORDER);
                    while p + (1 << order) > e {
                        order -= 1;
                    }
                    b.free_one(p, order);
                    p += 1 << order;
                }
            }
        }
    }

    /// `init_per_zone_wmark_min` followed by khugepaged's recommendation, then the
    /// configured `min_free_kbytes` as a post-boot sysctl write.
    fn init_watermarks(&self) {
        let mut s = self.sysctl.lock();
        s.min_free_kbytes = watermark::min_free_kbytes_for(self.nr_free_buffer_pages() * 4);
        self.setup_wmarks(&s);
        if s.transparent_hugepage.enabled() && self.total_managed() >= (512 << 20) / 4096 {
            self.set_recommended_min_free_kbytes(&mut s);
        }
        if let Some(v) = self.cfg.min_free_kbytes {
            s.min_free_kbytes = v;
            s.user_min_free_kbytes = Some(v);
            self.setup_wmarks(&s);
        }
        let movable_pages: u64 = self
            .zones
            .iter()
            .map(|z| z.managed.saturating_sub(z.wmark(Wmark::High)))
            .sum();
        self.mm.grouping_disabled.store(
            movable_pages < PAGEBLOCK_NR_PAGES * crate::page::NR_MIGRATETYPES as u64,
            Relaxed,
        );
    }

    /// `nr_free_buffer_pages`: managed minus high watermark over zones up to Normal.
    fn nr_free_buffer_pages(&self) -> u64 {
        self.zones
            .iter()
            .filter(|z| z.zt <= ZoneType::Normal)
            .map(|z| z.managed.saturating_sub(z.wmark(Wmark::High)))
            .sum()
    }

    fn set_recommended_min_free_kbytes(&self, s: &mut Sysctl) {
        let nr_zones = self
            .zones
            .iter()
            .filter(|z| z.populated() && z.zt <= ZoneType::Normal)
            .count() as u64;
        let rec = watermark::thp_recommended_min_free_kbytes(nr_zones, self.nr_free_buffer_pages());
        if rec > s.min_free_kbytes {
            if s.user_min_free_kbytes.is_some() {
                self.log.warn(format!(
                    "raising min_free_kbytes from {} to {rec} to help transparent hugepage allocations",
                    s.min_free_kbytes
                ));
            }
            s.min_free_kbytes = rec;
        }
        self.setup_wmarks(s);
    }

    /// `setup_per_zone_wmarks` + pcp update + `setup_per_zone_lowmem_reserve` +
    /// `calculate_totalreserve_pages`.
    fn setup_wmarks(&self, s: &Sysctl) {
        let lowmem: u64 = self
            .zones
            .iter()
            .filter(|z| z.zt != ZoneType::Movable)
            .map(|z| z.managed)
            .sum();
        for z in &self.zones {
            let m = watermark::zone_marks(
                s.min_free_kbytes,
                z.managed,
                lowmem,
                s.watermark_scale_factor,
                z.zt == ZoneType::Movable,
            );
            z.wmark[Wmark::Min as usize].store(m.min, Relaxed);
            z.wmark[Wmark::Low as usize].store(m.low, Relaxed);
            z.wmark[Wmark::High as usize].store(m.high, Relaxed);
            z.wmark[Wmark::Promo as usize].store(m.promo, Relaxed);
            z.boost.store(0, Relaxed);
        }
        self.update_pcp(s);
        self.setup_lowmem_reserve(s);
    }

    /// `zone_set_pageset_high_and_batch` for every populated zone (cpu_online 0).
    fn update_pcp(&self, s: &Sysctl) {
        for z in self.zones.iter().filter(|z| z.populated()) {
            let batch = watermark::pcp_batch(z.managed).max(1);
            let node_cpus = self.cpus.iter().filter(|c| c.node == z.node).count() as u32;
            let node_cpus = if node_cpus == 0 {
                self.cpus.len() as u32
            } else {
                node_cpus
            };
            let low = z.wmark(Wmark::Low);
            let (hmin, hmax) = if s.percpu_pagelist_high_fraction != 0 {
                let h = watermark::pcp_high(
                    low,
                    z.managed,
                    s.percpu_pagelist_high_fraction,
                    node_cpus,
                    batch,
                );
                (h, h)
            } else {
                (
                    watermark::pcp_high(low, z.managed, 0, node_cpus, batch),
                    watermark::pcp_high(
                        low,
                        z.managed,
                        MIN_PERCPU_PAGELIST_HIGH_FRACTION,
                        node_cpus,
                        batch,
                    ),
                )
            };
            z.pcp_batch.store(batch, Relaxed);
            z.pcp_high_min.store(hmin, Relaxed);
            z.pcp_high_max.store(hmax, Relaxed);
        }
    }

    fn setup_lowmem_reserve(&self, s: &Sysctl) {
        let mut total = 0;
        for n in 0..self.nr_nodes() {
            let zs = &self.zones[n * MAX_NR_ZONES..(n + 1) * MAX_NR_ZONES];
            let managed: [u64; MAX_NR_ZONES] = std::array::from_fn(|i| zs[i].managed);
            let r = watermark::lowmem_reserves(&managed, &s.lowmem_reserve_ratio);
            for (i, z) in zs.iter().enumerate() {
                for (j, v) in r[i].iter().enumerate() {
                    z.lowmem_reserve[j].store(*v, Relaxed);
                }
                let max_res = r[i][i..].iter().copied().max().unwrap_or(0);
                total += (max_res + z.wmark(Wmark::High)).min(z.managed);
            }
        }
        self.totalreserve.store(total, Relaxed);
    }

    /// Read a sysctl as `/proc/sys` prints it.
    pub fn sysctl_get(&self, name: &str) -> Result<String, SysctlError> {
        let s = self.sysctl.lock();
        Ok(
            match name
                .trim_start_matches("/proc/sys/")
                .replace('/', ".")
                .as_str()
            {
                "vm.min_free_kbytes" => s.min_free_kbytes.to_string(),
                "vm.watermark_scale_factor" => s.watermark_scale_factor.to_string(),
                "vm.watermark_boost_factor" => s.watermark_boost_factor.to_string(),
                "vm.lowmem_reserve_ratio" => s
                    .lowmem_reserve_ratio
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("\t"),
                "vm.percpu_pagelist_high_fraction" => s.percpu_pagelist_high_fraction.to_string(),
                "kernel.mm.transparent_hugepage.enabled" => match s.transparent_hugepage {
                    ThpMode::Always => "[always] madvise never",
                    ThpMode::Madvise => "always [madvise] never",
                    ThpMode::Never => "always madvise [never]",
                }
                .to_string(),
                other => return Err(SysctlError::Unknown(other.to_string())),
            },
        )
    }

    /// Write a sysctl; the watermarks, reserves and pcp sizes are recomputed as the
    /// kernel's handlers do.
    pub fn sysctl_set(&self, name: &str, value: &str) -> Result<(), SysctlError> {
        let key = name.trim_start_matches("/proc/sys/").replace('/', ".");
        let v = value.trim();
        let int = |n: &'static str| {
            v.parse::<u64>().map_err(|_| SysctlError::Invalid {
                name: n,
                value: v.to_string(),
                why: "not a non-negative integer",
            })
        };
        let mut s = self.sysctl.lock();
        match key.as_str() {
            "vm.min_free_kbytes" => {
                let n = int("vm.min_free_kbytes")?;
                s.min_free_kbytes = n;
                s.user_min_free_kbytes = Some(n);
            }
            "vm.watermark_scale_factor" => {
                let n = int("vm.watermark_scale_factor")?;
                if !(1..=3000).contains(&n) {
                    return Err(SysctlError::Invalid {
                        name: "vm.watermark_scale_factor",
                        value: v.into(),
                        why: "must be 1..=3000",
                    });
                }
                s.watermark_scale_factor = n as u32;
            }
            "vm.watermark_boost_factor" => {
                let n = int("vm.watermark_boost_factor")?;
                s.watermark_boost_factor = n.min(u32::MAX as u64) as u32;
                self.mm
                    .boost_factor
                    .store(s.watermark_boost_factor, Relaxed);
                return Ok(());
            }
            "vm.lowmem_reserve_ratio" => {
                let vals: Vec<&str> = v.split_whitespace().collect();
                if vals.is_empty() || vals.len() > MAX_NR_ZONES {
                    return Err(SysctlError::Invalid {
                        name: "vm.lowmem_reserve_ratio",
                        value: v.into(),
                        why: "give 1 to 5 integers (DMA DMA32 Normal Movable Device)",
                    });
                }
                for (i, t) in vals.iter().enumerate() {
                    let n: i64 = t.parse().map_err(|_| SysctlError::Invalid {
                        name: "vm.lowmem_reserve_ratio",
                        value: v.into(),
                        why: "not an integer",
                    })?;
                    s.lowmem_reserve_ratio[i] = if n < 1 {
                        0
                    } else {
                        n.min(u32::MAX as i64) as u32
                    };
                }
                self.setup_lowmem_reserve(&s);
                return Ok(());
            }
            "vm.percpu_pagelist_high_fraction" => {
                let n = int("vm.percpu_pagelist_high_fraction")?;
                if n != 0 && n < MIN_PERCPU_PAGELIST_HIGH_FRACTION as u64 {
                    return Err(SysctlError::Invalid {
                        name: "vm.percpu_pagelist_high_fraction",
                        value: v.into(),
                        why: "must be 0 or at least 8",
                    });
                }
                s.percpu_pagelist_high_fraction = n as u32;
                self.update_pcp(&s);
                return Ok(());
            }
            "kernel.mm.transparent_hugepage.enabled" => {
                let mode = match v {
                    "always" => ThpMode::Always,
                    "madvise" => ThpMode::Madvise,
                    "never" => ThpMode::Never,
                    _ => {
                        return Err(SysctlError::Invalid {
                            name: "kernel.mm.transparent_hugepage.enabled",
                            value: v.into(),
                            why: "must be always, madvise or never",
                        })
                    }
                };
                s.transparent_hugepage = mode;
                self.mm.thp.store(mode.enabled(), Relaxed);
                if mode.enabled() {
                    self.set_recommended_min_free_kbytes(&mut s);
                } else {
                    let computed = watermark::min_free_kbytes_for(self.nr_free_buffer_pages() * 4);
                    if s.user_min_free_kbytes.is_none_or(|u| computed > u) {
                        s.min_free_kbytes = computed;
                    }
                    self.setup_wmarks(&s);
                }
                return Ok(());
            }
            other => return Err(SysctlError::Unknown(other.to_string())),
        }
        self.setup_wmarks(&s);
        Ok(())
    }

    /// A copy of the sysctls.
    pub fn sysctls(&self) -> Sysctl {
        self.sysctl.lock().clone()
    }

    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn nr_nodes(&self) -> usize {
        self.layout.node_ranges.len()
    }
    pub fn nr_cpus(&self) -> usize {
        self.cpus.len()
    }
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
    pub fn zone(&self, node: u16, zt: ZoneType) -> &Zone {
        &self.zones[node as usize * MAX_NR_ZONES + zt.idx()]
    }
    #[inline]
    pub(crate) fn pages(&self) -> &PageMap {
        &self.mm.pages
    }
    #[inline]
    pub(crate) fn thp_pcp(&self) -> bool {
        self.mm.thp.load(Relaxed)
    }
    pub fn total_managed(&self) -> u64 {
        self.zones.iter().map(|z| z.managed).sum()
    }
    pub fn totalreserve_pages(&self) -> u64 {
        self.totalreserve.load(Relaxed)
    }
    /// Host bytes spent on page state.
    pub fn page_state_bytes(&self) -> usize {
        self.mm.pages.host_bytes()
    }
    /// Pages whose bytes are stored.
    pub fn stored_pages(&self) -> u64 {
        self.content.stored_pages()
    }
    pub(crate) fn log_boot(&self) -> Instant {
        self.log.boot
    }

    /// The memory cgroup controller.
    pub fn memcg(&self) -> &crate::memcg::Memcgs {
        &self.memcgs
    }

    /// `rmdir` of a memory cgroup: [`crate::memcg::Memcgs::remove`], then every CPU's
    /// object and page stocks are drained (`drain_all_stock` in the kernel's offline
    /// path), so what the removed cgroup had pre-charged goes back at once.
    pub fn memcg_rmdir(&self, path: &str) -> Result<(), crate::memcg::MemcgError> {
        self.memcgs.remove(path)?;
        self.drain_memcg_stocks();
        Ok(())
    }

    /// Drain every CPU's object stock and page stock back to their cgroups.
    pub fn drain_memcg_stocks(&self) {
        self.memcgs.drain_obj_stocks();
        self.memcgs.drain_stocks();
    }

    /// The kernel log lines (newest last).
    pub fn dmesg(&self) -> Vec<String> {
        self.log.lines.lock().iter().cloned().collect()
    }
    pub fn rare_events(&self) -> crate::vmstat::RareEventCounts {
        self.mm.ev.snapshot()
    }

    /// [`Machine::resolve_cpu`] for the fast paths: `None` for a CPU that does not
    /// exist (the general path reports it).
    #[inline]
    pub(crate) fn fast_cpu(&self, ctx: &AllocContext) -> Option<usize> {
        match ctx.cpu {
            Some(c) if (c as usize) < self.cpus.len() => Some(c as usize),
            Some(_) => None,
            None => self.thread_cpu(),
        }
    }

    #[inline(never)]
    fn thread_cpu(&self) -> Option<usize> {
        self.resolve_cpu(&AllocContext::default()).ok()
    }

    /// The CPU a call runs on: the context's, else one fixed per host thread.
    pub(crate) fn resolve_cpu(&self, ctx: &AllocContext) -> Result<usize, AllocError> {
        let n = self.cpus.len();
        match ctx.cpu {
            Some(c) if (c as usize) < n => Ok(c as usize),
            Some(c) => Err(AllocError::NoSuchCpu {
                cpu: c,
                cpus: n as u16,
            }),
            None => Ok(THREAD_CPU.with(|t| {
                if t.get() == usize::MAX {
                    t.set(NEXT_THREAD.fetch_add(1, Relaxed));
                }
                t.get() % n
            })),
        }
    }

    /// Every free buddy block of a zone as (pfn, order), sorted. Takes the zone lock.
    pub fn free_blocks(&self, zone: usize) -> Vec<(Pfn, u8)> {
        let z = &self.zones[zone];
        let b = z.lock(&self.mm);
        let mut v = Vec::new();
        for order in 0..=MAX_ORDER {
            for mt in crate::page::MigrateType::ALL {
                v.extend(b.list(order, mt).iter().map(|&p| (p as Pfn, order)));
            }
        }
        drop(b);
        v.sort_unstable();
        v
    }

    /// Return every HighAtomic pageblock to Movable (a debug/teaching aid; the kernel
    /// releases them one at a time under pressure).
    pub fn release_highatomic_reserves(&self) {
        for z in self.zones.iter().filter(|z| z.populated()) {
            z.lock(&self.mm).release_all_highatomic();
        }
    }

    /// Pageblock order, for callers that print it.
    pub const PAGEBLOCK_ORDER: u8 = PAGEBLOCK_ORDER;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;

    #[test]
    fn first_zones_follow_the_zonelists() {
        // Node 0: DMA, DMA32 and Normal (4-8 GiB); node 1: Normal only.
        let m = Machine::boot(MachineConfig {
            nodes: 2,
            cpus: 2,
            ..MachineConfig::bare(ByteSize::gib(16))
        })
        .unwrap();
        for node in 0..2 {
            for thisnode in 0..2 {
                let list = if thisnode == 1 {
                    &m.zonelists_thisnode[node]
                } else {
                    &m.zonelists[node]
                };
                for highest in [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal] {
                    let want = list.iter().copied().find(|&z| m.zones[z].zt <= highest);
                    let fz = m.first_zones[node][thisnode][highest as usize];
                    assert_eq!(
                        fz.zone(),
                        want,
                        "node {node} thisnode {thisnode} {highest:?}"
                    );
                }
            }
        }
        let n0 = m.first_zones[0][0][ZoneType::Normal as usize];
        let n1 = m.first_zones[1][0][ZoneType::Normal as usize];
        assert!(n0.nofragment(), "node 0's Normal has DMA32 below it");
        assert!(
            !n1.nofragment(),
            "two nodes and no DMA32 below node 1's Normal"
        );
        assert!(!m.first_zones[0][0][ZoneType::Dma32 as usize].nofragment());
        let none = m.first_zones[1][1][ZoneType::Dma32 as usize];
        assert_eq!((none.zone(), none.nofragment()), (None, false));
    }
}
