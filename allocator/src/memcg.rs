//! The memory cgroup controller, cgroup v2 (mm/memcontrol.c,
//! Documentation/admin-guide/cgroup-v2.rst): a tree of cgroups with hierarchical page
//! counters, the `memory.*` interface files, events, and the `memory.high` throttling
//! formula.
//!
//! Modelled rules:
//! - a charge must fit `memory.max` of the cgroup and every ancestor; the first one over
//!   its limit (`mem_over_limit`) gets a `max` event (hierarchical in `memory.events`
//!   of it and its ancestors, local in its `memory.events.local`); nothing is
//!   reclaimable yet, so the charge then takes an `oom` event and fails, unless the
//!   caller may force it (`__GFP_NOFAIL`, `__GFP_HIGH`, PF_MEMALLOC), which is counted;
//! - above `memory.high` the charge succeeds, a `high` event is counted and the caller
//!   is told the penalty the kernel would impose:
//!   overage = ((usage − high) << 20) / high, penalty = overage² × HZ >> 20 >> 14,
//!   scaled by nr_pages / 64, capped at 2 s, ignored below 10 ms (HZ = 1000);
//! - values are read as the kernel prints them (bytes, `max`) and parsed as
//!   `page_counter_memparse` does (`max`, bytes with K/M/G/T suffixes, rounded down to
//!   pages).
//!
//! - slab objects of SLAB_ACCOUNT caches (and `__GFP_ACCOUNT` kmallocs, which use the
//!   `kmalloc-cg-*` caches) are charged `obj_full_size` = slot + 8 bytes through a
//!   per-CPU object stock that charges whole pages, as `obj_cgroup_charge` does;
//!   accounted page blocks (including large kmallocs) are charged in pages as "kernel".
//!
//! - pages are charged in batches of MEMCG_CHARGE_BATCH (64) through per-CPU stocks,
//!   so `memory.current` can exceed the real charge by 64 pages per CPU (uncharges go
//!   back to the stock; limit writes and a charge over a limit drain every stock).
//!
//! Not yet modelled (later work of the cgroup issue): reclaim within the cgroup, OOM
//! kills and `memory.oom.group` behaviour, memory.low/min protection in reclaim,
//! reparenting of charges, the service-side cap on applying the high delay.

use std::fmt::Write as _;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::context::{AllocContext, Scope};
use crate::gfp::Gfp;
use crate::page::PAGE_SIZE;
use crate::units::ByteSize;

mod objcg;
pub use objcg::{obj_full_size, ObjBytes, ObjStock};

/// `PAGE_COUNTER_MAX` (pages): "max".
pub const COUNTER_MAX: u64 = i64::MAX as u64 / PAGE_SIZE;
/// Most cgroups a machine can have had (ids are not reused).
pub const MAX_CGROUPS: usize = 4096;
/// `MEMCG_CHARGE_BATCH`.
pub const CHARGE_BATCH: u64 = 64;
/// The penalty cap, `MEMCG_MAX_HIGH_DELAY_JIFFIES` = 2 × HZ, in ms.
pub const MAX_HIGH_DELAY_MS: u64 = 2000;

/// `memory.events` keys, in the kernel's order.
pub const EVENT_NAMES: [&str; 6] = ["low", "high", "max", "oom", "oom_kill", "oom_group_kill"];

/// An event index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemcgEvent {
    Low = 0,
    High = 1,
    Max = 2,
    Oom = 3,
    OomKill = 4,
    OomGroupKill = 5,
}

/// What a charge is for (the `memory.stat` item it lands in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StatItem {
    Kernel = 0,
    Vmalloc = 1,
    SlabReclaimable = 2,
    SlabUnreclaimable = 3,
}
const NR_STAT: usize = 4;

impl StatItem {
    pub const ALL: [StatItem; NR_STAT] = [
        StatItem::Kernel,
        StatItem::Vmalloc,
        StatItem::SlabReclaimable,
        StatItem::SlabUnreclaimable,
    ];
}

/// A cgroup id (the root is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CgroupId(pub u16);

impl CgroupId {
    pub const ROOT: CgroupId = CgroupId(0);
}

/// One memory cgroup.
#[derive(Debug)]
pub struct MemCgroup {
    pub id: CgroupId,
    pub path: String,
    pub parent: Option<CgroupId>,
    usage: AtomicU64,
    peak: AtomicU64,
    max: AtomicU64,
    high: AtomicU64,
    low: AtomicU64,
    min: AtomicU64,
    oom_group: AtomicBool,
    events: [AtomicU64; 6],
    events_local: [AtomicU64; 6],
    stat: [AtomicU64; NR_STAT],
    /// Charges forced past `memory.max` (NOFAIL, HIGH, PF_MEMALLOC).
    forced: AtomicU64,
    /// Object bytes charged (in whole pages) but not in use, outside any CPU's stock
    /// (the object cgroup's `nr_charged_bytes`).
    pub(crate) carry: AtomicU64,
    removed: AtomicBool,
}

impl MemCgroup {
    fn new(id: CgroupId, path: String, parent: Option<CgroupId>) -> Self {
        MemCgroup {
            id,
            path,
            parent,
            usage: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            max: AtomicU64::new(COUNTER_MAX),
            high: AtomicU64::new(COUNTER_MAX),
            low: AtomicU64::new(0),
            min: AtomicU64::new(0),
            oom_group: AtomicBool::new(false),
            events: Default::default(),
            events_local: Default::default(),
            stat: Default::default(),
            forced: AtomicU64::new(0),
            carry: AtomicU64::new(0),
            removed: AtomicBool::new(false),
        }
    }
    /// Pages charged to this cgroup and its descendants (`memory.current` / 4096).
    pub fn usage_pages(&self) -> u64 {
        self.usage.load(Relaxed)
    }
    pub fn event(&self, e: MemcgEvent) -> u64 {
        self.events[e as usize].load(Relaxed)
    }
    pub fn event_local(&self, e: MemcgEvent) -> u64 {
        self.events_local[e as usize].load(Relaxed)
    }
    pub fn forced_charges(&self) -> u64 {
        self.forced.load(Relaxed)
    }
}

/// Errors of the controller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemcgError {
    #[error("no cgroup {0}")]
    NotFound(String),
    #[error("cgroup {0} already exists")]
    Exists(String),
    #[error("bad cgroup path `{0}`: use /, /a, /a/b (letters, digits, - _ .)")]
    BadPath(String),
    #[error("cgroup {0} has children; remove them first")]
    Busy(String),
    #[error("the root cgroup cannot be {0}")]
    Root(&'static str),
    #[error("unknown cgroup file `{0}`")]
    UnknownFile(String),
    #[error("invalid value `{value}` for {file}: {why}")]
    BadValue {
        file: String,
        value: String,
        why: &'static str,
    },
    #[error(
        "memory cgroup {path} out of memory: limit {limit}, usage {usage}, charging {request}"
    )]
    OverLimit {
        path: String,
        limit: ByteSize,
        usage: ByteSize,
        request: ByteSize,
    },
}

impl MemcgError {
    pub fn reason(&self) -> &'static str {
        match self {
            MemcgError::NotFound(_) => "CGROUP_NOT_FOUND",
            MemcgError::Exists(_) => "CGROUP_EXISTS",
            MemcgError::BadPath(_) => "INVALID_CGROUP_PATH",
            MemcgError::Busy(_) => "CGROUP_BUSY",
            MemcgError::Root(_) => "ROOT_CGROUP",
            MemcgError::UnknownFile(_) => "UNKNOWN_CGROUP_FILE",
            MemcgError::BadValue { .. } => "INVALID_CGROUP_VALUE",
            MemcgError::OverLimit { .. } => "CGROUP_LIMIT_EXCEEDED",
        }
    }
}

/// A successful charge and what the kernel would do to the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Charged {
    /// The `memory.high` throttle the kernel would apply, in ms (0 if none).
    pub high_delay_ms: u64,
    /// The charge went past `memory.max` because the caller may not fail.
    pub forced: bool,
}

/// `calculate_overage` + `calculate_high_delay` for one charge of `nr_pages`.
pub fn high_delay_ms(usage: u64, high: u64, nr_pages: u64) -> u64 {
    if usage <= high || high == 0 {
        return 0;
    }
    let overage = ((usage - high) << 20) / high;
    let mut penalty = overage * overage * 1000;
    penalty >>= 20;
    penalty >>= 14;
    let penalty = penalty * nr_pages.max(1) / CHARGE_BATCH;
    let penalty = penalty.min(MAX_HIGH_DELAY_MS);
    if penalty <= 10 {
        0
    } else {
        penalty
    }
}

/// The controller: every cgroup, addressed by id and by path.
pub struct Memcgs {
    /// Append-only: ids are never reused, so a lookup is a lock-free index.
    table: Vec<std::sync::OnceLock<Box<MemCgroup>>>,
    /// Path → id of live cgroups; also the lock that hands out ids.
    by_path: RwLock<FxHashMap<String, u16>>,
    next_id: std::sync::atomic::AtomicUsize,
    /// Per-CPU page stocks (`memcg_stock`): pages charged ahead to one cgroup.
    stocks: Vec<crate::pcp::SpinLock<PageStock>>,
    /// Per-CPU object stocks (`obj_stock_pcp`: bytes charged ahead to one cgroup,
    /// and that cgroup's slab stat updates not yet applied), in each CPU's local state.
    locals: crate::percpu::CpuLocals,
}

/// A CPU's page stock.
#[derive(Debug, Default)]
pub struct PageStock {
    pub cg: Option<CgroupId>,
    pub pages: u64,
}

fn valid_path(p: &str) -> bool {
    p == "/"
        || (p.starts_with('/')
            && !p.ends_with('/')
            && p[1..].split('/').all(|c| {
                !c.is_empty()
                    && c.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            }))
}

fn parent_of(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "/",
    }
}

/// `page_counter_memparse`: `max` or a size, rounded down to pages.
pub fn memparse(file: &str, v: &str) -> Result<u64, MemcgError> {
    let t = v.trim();
    if t == "max" {
        return Ok(COUNTER_MAX);
    }
    let b = ByteSize::parse(t).map_err(|_| MemcgError::BadValue {
        file: file.to_string(),
        value: t.to_string(),
        why: "write `max` or a size (bytes, K, M, G, T)",
    })?;
    Ok((b.0 / PAGE_SIZE).min(COUNTER_MAX))
}

fn print_limit(pages: u64) -> String {
    if pages >= COUNTER_MAX {
        "max".to_string()
    } else {
        (pages * PAGE_SIZE).to_string()
    }
}

impl Default for Memcgs {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Memcgs {
    /// A controller for a machine with `cpus` CPUs (one page stock each).
    pub fn new(cpus: usize) -> Self {
        Self::with_locals(crate::percpu::new_locals(cpus))
    }

    /// A controller whose object stocks live in the machine's per-CPU state.
    pub fn with_locals(locals: crate::percpu::CpuLocals) -> Self {
        let cpus = locals.len();
        let root = MemCgroup::new(CgroupId::ROOT, "/".into(), None);
        let mut by_path = FxHashMap::default();
        by_path.insert("/".to_string(), 0);
        Memcgs {
            table: {
                let mut t = Vec::with_capacity(MAX_CGROUPS);
                t.resize_with(MAX_CGROUPS, std::sync::OnceLock::new);
                let _ = t[0].set(Box::new(root));
                t
            },
            by_path: RwLock::new(by_path),
            next_id: std::sync::atomic::AtomicUsize::new(1),
            stocks: (0..cpus.max(1)).map(|_| Default::default()).collect(),
            locals,
        }
    }

    #[inline]
    pub fn get(&self, id: CgroupId) -> Option<&MemCgroup> {
        self.table.get(id.0 as usize)?.get().map(|b| &**b)
    }

    pub fn lookup(&self, path: &str) -> Result<CgroupId, MemcgError> {
        self.by_path
            .read()
            .get(path)
            .map(|&i| CgroupId(i))
            .ok_or_else(|| MemcgError::NotFound(path.to_string()))
    }

    /// Create a cgroup; its parent must exist.
    pub fn create(&self, path: &str) -> Result<CgroupId, MemcgError> {
        if !valid_path(path) {
            return Err(MemcgError::BadPath(path.to_string()));
        }
        if path == "/" {
            return Err(MemcgError::Exists("/".into()));
        }
        let parent = self.lookup(parent_of(path))?;
        let mut by_path = self.by_path.write();
        if by_path.contains_key(path) {
            return Err(MemcgError::Exists(path.to_string()));
        }
        let id = self.next_id.load(Relaxed);
        if id >= MAX_CGROUPS {
            return Err(MemcgError::BadPath(format!(
                "{path}: at most {MAX_CGROUPS} cgroups"
            )));
        }
        let cg = MemCgroup::new(CgroupId(id as u16), path.to_string(), Some(parent));
        if self.table[id].set(Box::new(cg)).is_err() {
            unreachable!("ids are handed out under the path lock");
        }
        self.next_id.store(id + 1, Relaxed);
        by_path.insert(path.to_string(), id as u16);
        Ok(CgroupId(id as u16))
    }

    /// Remove a cgroup without children (`rmdir`). As the kernel's offlining does
    /// (`memcg_reparent_objcgs`), what it holds is reparented: its `memory.stat`
    /// items move to the parent, and later uncharges and stat updates of its objects
    /// go to the nearest live ancestor. Its page counters stay charged (the
    /// offline-but-not-freed "zombie"), so the parent's `memory.current` — which
    /// already included them — is unchanged and drops as the objects are freed.
    /// A cgroup created again at the same path is new and starts empty.
    pub fn remove(&self, path: &str) -> Result<(), MemcgError> {
        if path == "/" {
            return Err(MemcgError::Root("removed"));
        }
        let id = self.lookup(path)?;
        let prefix = format!("{path}/");
        // Pending slab stat updates first, so the move below carries them.
        self.flush_obj_stats();
        let mut by_path = self.by_path.write();
        if by_path.keys().any(|k| k.starts_with(&prefix)) {
            return Err(MemcgError::Busy(path.to_string()));
        }
        by_path.remove(path);
        if let Some(cg) = self.get(id) {
            cg.removed.store(true, Release);
            let heir = self.live_ancestor(id);
            if let Some(h) = self.get(heir) {
                for (mine, theirs) in cg.stat.iter().zip(h.stat.iter()) {
                    theirs.fetch_add(mine.swap(0, AcqRel), Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Every cgroup ever created, removed ones included (they may still hold charges).
    pub(crate) fn all(&self) -> impl Iterator<Item = &MemCgroup> {
        self.table.iter().map_while(|slot| slot.get().map(|b| &**b))
    }

    /// Whether `rmdir` removed this cgroup.
    pub fn is_removed(&self, id: CgroupId) -> bool {
        self.get(id).is_some_and(|c| c.removed.load(Acquire))
    }

    /// `id` itself, or its nearest ancestor that was not removed (stats of removed
    /// cgroups are kept there).
    fn live_ancestor(&self, id: CgroupId) -> CgroupId {
        let mut cur = id;
        while let Some(cg) = self.get(cur) {
            match cg.parent {
                Some(p) if cg.removed.load(Acquire) => cur = p,
                _ => break,
            }
        }
        cur
    }

    /// Effective `memory.min` and `memory.low` of a cgroup in pages
    /// (`mem_cgroup_calculate_protection` / `effective_protection`, without the
    /// memory_recursiveprot extension): a cgroup's protection is min(usage, setting),
    /// and where the siblings together claim more than their parent's effective
    /// protection, each gets its share in proportion. Reclaim will honour these.
    pub fn effective_protection(&self, id: CgroupId) -> (u64, u64) {
        let cg = self.get(id).expect("live cgroup");
        let Some(parent) = cg.parent else {
            return (0, 0); // the root is not protected
        };
        let usage = cg.usage_pages();
        let own = |c: &MemCgroup, v: &AtomicU64| c.usage_pages().min(v.load(Relaxed));
        if parent == CgroupId::ROOT {
            return (
                usage.min(cg.min.load(Relaxed)),
                usage.min(cg.low.load(Relaxed)),
            );
        }
        let (pmin, plow) = self.effective_protection(parent);
        let siblings: Vec<&MemCgroup> = self
            .table
            .iter()
            .map_while(|s| s.get())
            .map(|b| &**b)
            .filter(|c| c.parent == Some(parent) && !c.removed.load(Relaxed))
            .collect();
        let share = |mine: u64, parent_eff: u64, claimed: u64| {
            if claimed > parent_eff && claimed > 0 {
                (mine as u128 * parent_eff as u128 / claimed as u128) as u64
            } else {
                mine.min(parent_eff)
            }
        };
        let claimed_min: u64 = siblings.iter().map(|c| own(c, &c.min)).sum();
        let claimed_low: u64 = siblings.iter().map(|c| own(c, &c.low)).sum();
        (
            share(own(cg, &cg.min), pmin, claimed_min),
            share(own(cg, &cg.low), plow, claimed_low),
        )
    }

    /// Every cgroup path, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_path.read().keys().cloned().collect();
        v.sort();
        v
    }

    fn chain(&self, id: CgroupId) -> Vec<&MemCgroup> {
        let mut out = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            let cg = self.get(c).expect("live cgroup in a chain");
            cur = cg.parent;
            out.push(cg);
        }
        out
    }

    fn event(&self, chain: &[&MemCgroup], at: usize, e: MemcgEvent) {
        chain[at].events_local[e as usize].fetch_add(1, Relaxed);
        for cg in &chain[at..] {
            cg.events[e as usize].fetch_add(1, Relaxed);
        }
    }

    /// Charge `nr_pages` and account them as `item` in `memory.stat`.
    pub fn charge(
        &self,
        id: CgroupId,
        nr_pages: u64,
        item: StatItem,
        gfp: Gfp,
        ctx: &AllocContext,
        cpu: usize,
    ) -> Result<Charged, MemcgError> {
        let c = self.try_charge(id, nr_pages, gfp, ctx, cpu)?;
        self.mod_stat(id, item, (nr_pages * PAGE_SIZE) as i64);
        Ok(c)
    }

    /// Add to a `memory.stat` byte item of one cgroup.
    pub fn mod_stat(&self, id: CgroupId, item: StatItem, delta: i64) {
        if let Some(cg) = self.get(self.live_ancestor(id)) {
            if delta >= 0 {
                cg.stat[item as usize].fetch_add(delta as u64, Relaxed);
            } else {
                cg.stat[item as usize].fetch_sub(delta.unsigned_abs(), Relaxed);
            }
        }
    }

    /// `try_charge_memcg` for `nr_pages` against cgroup `id` and its ancestors: from
    /// the CPU's stock if it holds enough for this cgroup, else a whole batch
    /// (MEMCG_CHARGE_BATCH pages, the rest stocked), else just `nr_pages`; over a limit
    /// every stock is drained once and the charge retried.
    pub fn try_charge(
        &self,
        id: CgroupId,
        nr_pages: u64,
        gfp: Gfp,
        ctx: &AllocContext,
        cpu: usize,
    ) -> Result<Charged, MemcgError> {
        let cpu = cpu % self.stocks.len();
        {
            let mut st = self.stocks[cpu].lock();
            if st.cg == Some(id) && st.pages >= nr_pages {
                st.pages -= nr_pages;
                return Ok(Charged::default());
            }
        }
        let chain = self.chain(id);
        let may_force = gfp.contains(Gfp::NOFAIL)
            || gfp.contains(Gfp::HIGH)
            || (ctx.scope.contains(Scope::MEMALLOC) && !gfp.contains(Gfp::NOMEMALLOC));
        let mut batch = nr_pages.max(CHARGE_BATCH);
        let mut drained = false;
        let over = loop {
            match Self::counter_try_charge(&chain, batch) {
                None => break None,
                Some(_) if batch > nr_pages => batch = nr_pages,
                Some(_) if !drained => {
                    self.drain_stocks();
                    drained = true;
                }
                Some(i) => break Some(i),
            }
        };
        let mut forced = false;
        if let Some(i) = over {
            self.event(&chain, i, MemcgEvent::Max);
            // Reclaim plugs in here; nothing is reclaimable yet, so retries cannot help.
            if !may_force {
                self.event(&chain, i, MemcgEvent::Oom);
                let cg = &chain[i];
                return Err(MemcgError::OverLimit {
                    path: cg.path.clone(),
                    limit: ByteSize(cg.max.load(Relaxed) * PAGE_SIZE),
                    usage: ByteSize(cg.usage.load(Relaxed) * PAGE_SIZE),
                    request: ByteSize(nr_pages * PAGE_SIZE),
                });
            }
            for cg in &chain {
                cg.usage.fetch_add(nr_pages, Relaxed);
            }
            chain[0].forced.fetch_add(1, Relaxed);
            forced = true;
            batch = nr_pages;
        }
        if batch > nr_pages {
            self.refill_stock(cpu, id, batch - nr_pages);
        }
        let mut delay = 0;
        for (i, cg) in chain.iter().enumerate() {
            let u = cg.usage.load(Relaxed);
            cg.peak.fetch_max(u, Relaxed);
            let high = cg.high.load(Relaxed);
            if u > high {
                self.event(&chain, i, MemcgEvent::High);
                delay = delay.max(high_delay_ms(u, high, nr_pages));
            }
        }
        if let Some(r) = &ctx.charge_report {
            if delay > 0 || forced {
                r.add(delay, forced);
            }
        }
        Ok(Charged {
            high_delay_ms: delay,
            forced,
        })
    }

    /// Return a charge to the cgroup that took it (and its ancestors).
    pub fn uncharge(&self, id: CgroupId, nr_pages: u64, item: StatItem, cpu: usize) {
        self.mod_stat(id, item, -((nr_pages * PAGE_SIZE) as i64));
        self.uncharge_pages(id, nr_pages, cpu);
    }

    /// Charge every level or none; the index of the first level over its max.
    fn counter_try_charge(chain: &[&MemCgroup], nr: u64) -> Option<usize> {
        for (i, cg) in chain.iter().enumerate() {
            let new = cg.usage.fetch_add(nr, Relaxed) + nr;
            if cg.id != CgroupId::ROOT && new > cg.max.load(Relaxed) {
                for done in &chain[..=i] {
                    done.usage.fetch_sub(nr, Relaxed);
                }
                return Some(i);
            }
        }
        None
    }

    fn counter_uncharge(&self, id: CgroupId, nr_pages: u64) {
        if nr_pages == 0 {
            return;
        }
        let mut cur = Some(id);
        while let Some(c) = cur {
            let cg = self.get(c).expect("live cgroup");
            cg.usage.fetch_sub(nr_pages, Relaxed);
            cur = cg.parent;
        }
    }

    /// `refill_stock`: keep uncharged or surplus pages on the CPU for this cgroup;
    /// a stock for another cgroup, or one above a batch, goes back to its counters.
    fn refill_stock(&self, cpu: usize, id: CgroupId, nr_pages: u64) {
        let mut st = self.stocks[cpu % self.stocks.len()].lock();
        if st.cg != Some(id) {
            if let Some(old) = st.cg {
                self.counter_uncharge(old, st.pages);
            }
            st.cg = Some(id);
            st.pages = 0;
        }
        st.pages += nr_pages;
        if st.pages > CHARGE_BATCH {
            self.counter_uncharge(id, st.pages);
            st.pages = 0;
        }
    }

    /// `drain_all_stock`: every CPU's stocked pages back to their cgroups.
    pub fn drain_stocks(&self) {
        for s in &self.stocks {
            let mut st = s.lock();
            if let Some(cg) = st.cg.take() {
                self.counter_uncharge(cg, st.pages);
            }
            st.pages = 0;
        }
    }

    /// Pages stocked for a cgroup on any CPU.
    pub fn stocked_pages(&self, id: CgroupId) -> u64 {
        self.stocks
            .iter()
            .map(|s| {
                let st = s.lock();
                if st.cg == Some(id) {
                    st.pages
                } else {
                    0
                }
            })
            .sum()
    }

    /// Return pages without touching `memory.stat`: they go to the CPU's stock.
    pub fn uncharge_pages(&self, id: CgroupId, nr_pages: u64, cpu: usize) {
        if nr_pages > 0 {
            self.refill_stock(cpu, id, nr_pages);
        }
    }

    /// Read an interface file as the kernel prints it.
    pub fn read_file(&self, path: &str, file: &str) -> Result<String, MemcgError> {
        let cg = self.get(self.lookup(path)?).expect("listed");
        let root = cg.id == CgroupId::ROOT;
        let only_child = |f: &str| {
            if root {
                Err(MemcgError::UnknownFile(format!(
                    "{f} (not present on the root cgroup)"
                )))
            } else {
                Ok(())
            }
        };
        Ok(match file {
            "memory.current" => format!("{}\n", cg.usage_pages() * PAGE_SIZE),
            "memory.peak" => format!("{}\n", cg.peak.load(Relaxed) * PAGE_SIZE),
            "memory.max" | "memory.high" | "memory.low" | "memory.min" => {
                only_child(file)?;
                let v = match file {
                    "memory.max" => &cg.max,
                    "memory.high" => &cg.high,
                    "memory.low" => &cg.low,
                    _ => &cg.min,
                };
                format!("{}\n", print_limit(v.load(Relaxed)))
            }
            "memory.oom.group" => {
                only_child(file)?;
                format!("{}\n", cg.oom_group.load(Relaxed) as u8)
            }
            "memory.events" | "memory.events.local" => {
                only_child(file)?;
                let src = if file == "memory.events" {
                    &cg.events
                } else {
                    &cg.events_local
                };
                let mut s = String::new();
                for (n, v) in EVENT_NAMES.iter().zip(src.iter()) {
                    let _ = writeln!(s, "{n} {}", v.load(Relaxed));
                }
                s
            }
            "memory.stat" => self.stat_text(cg),
            other => return Err(MemcgError::UnknownFile(other.to_string())),
        })
    }

    /// `memory.stat`: byte items, then event counts, in the kernel's key order (items
    /// not modelled print 0).
    fn stat_text(&self, cg: &MemCgroup) -> String {
        // Hierarchical sums: this cgroup and every descendant.
        let prefix = if cg.path == "/" {
            "/".to_string()
        } else {
            format!("{}/", cg.path)
        };
        self.flush_obj_stats();
        let mut sums = [0u64; NR_STAT];
        for c in self.table.iter().map_while(|slot| slot.get()) {
            if c.id == cg.id || (c.path.starts_with(&prefix) && !c.removed.load(Acquire)) {
                for (s, v) in sums.iter_mut().zip(c.stat.iter()) {
                    *s += v.load(Relaxed);
                }
            }
        }
        let [kernel_pages, vmalloc, srec, sunrec] = sums;
        let kernel = kernel_pages + vmalloc + srec + sunrec;
        let mut s = String::new();
        for (k, v) in [
            ("anon", 0),
            ("file", 0),
            ("kernel", kernel),
            ("kernel_stack", 0),
            ("pagetables", 0),
            ("sec_pagetables", 0),
            ("percpu", 0),
            ("sock", 0),
            ("vmalloc", vmalloc),
            ("shmem", 0),
            ("zswap", 0),
            ("zswapped", 0),
            ("file_mapped", 0),
            ("file_dirty", 0),
            ("file_writeback", 0),
            ("swapcached", 0),
            ("anon_thp", 0),
            ("file_thp", 0),
            ("shmem_thp", 0),
            ("inactive_anon", 0),
            ("active_anon", 0),
            ("inactive_file", 0),
            ("active_file", 0),
            ("unevictable", 0),
            ("slab_reclaimable", srec),
            ("slab_unreclaimable", sunrec),
            ("slab", srec + sunrec),
            ("pgscan", 0),
            ("pgsteal", 0),
            ("pgfault", 0),
            ("pgmajfault", 0),
        ] {
            let _ = writeln!(s, "{k} {v}");
        }
        s
    }

    /// Write an interface file (the limits, `memory.oom.group`, `memory.peak` reset).
    pub fn write_file(&self, path: &str, file: &str, value: &str) -> Result<(), MemcgError> {
        let cg = self.get(self.lookup(path)?).expect("listed");
        if cg.id == CgroupId::ROOT {
            return Err(MemcgError::Root("limited"));
        }
        // Limit writes return every stock first, as the kernel drains before reclaim.
        self.drain_stocks();
        match file {
            "memory.max" => cg.max.store(memparse(file, value)?, Relaxed),
            "memory.high" => cg.high.store(memparse(file, value)?, Relaxed),
            "memory.low" => cg.low.store(memparse(file, value)?, Relaxed),
            "memory.min" => cg.min.store(memparse(file, value)?, Relaxed),
            "memory.oom.group" => match value.trim() {
                "0" => cg.oom_group.store(false, Relaxed),
                "1" => cg.oom_group.store(true, Relaxed),
                v => {
                    return Err(MemcgError::BadValue {
                        file: file.into(),
                        value: v.into(),
                        why: "write 0 or 1",
                    })
                }
            },
            // Any write resets the high-water mark to the current usage.
            "memory.peak" => cg.peak.store(cg.usage_pages(), Relaxed),
            other => return Err(MemcgError::UnknownFile(other.to_string())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_penalty_matches_the_kernel_examples() {
        let m = 256; // pages per MiB
                     // memory.high = 100M, one 64-page charge: 101M → ~6 ms (under 10 ms: none),
                     // 105M → 159 ms, 110M → 639 ms, ≥ 118M → capped at 2 s.
        assert_eq!(high_delay_ms(101 * m, 100 * m, 64), 0);
        assert_eq!(high_delay_ms(105 * m, 100 * m, 64), 159);
        assert_eq!(high_delay_ms(110 * m, 100 * m, 64), 639);
        assert_eq!(high_delay_ms(118 * m, 100 * m, 64), 2000);
        assert_eq!(high_delay_ms(99 * m, 100 * m, 64), 0);
    }

    #[test]
    fn files_parse_and_print_like_the_kernel() {
        let c = Memcgs::new(1);
        c.create("/tenants").unwrap();
        c.create("/tenants/a").unwrap();
        assert_eq!(c.read_file("/tenants/a", "memory.max").unwrap(), "max\n");
        c.write_file("/tenants/a", "memory.max", "512M").unwrap();
        assert_eq!(
            c.read_file("/tenants/a", "memory.max").unwrap(),
            "536870912\n"
        );
        c.write_file("/tenants/a", "memory.high", "1000").unwrap();
        assert_eq!(
            c.read_file("/tenants/a", "memory.high").unwrap(),
            "0\n",
            "rounded down to pages"
        );
        c.write_file("/tenants/a", "memory.high", "max").unwrap();
        assert_eq!(
            c.read_file("/tenants/a", "memory.events").unwrap(),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
        );
        assert!(c.write_file("/tenants/a", "memory.max", "lots").is_err());
        assert!(
            c.write_file("/", "memory.max", "1G").is_err(),
            "the root is never limited"
        );
        assert!(c.read_file("/", "memory.max").is_err());
        assert_eq!(c.create("/x/y").unwrap_err().reason(), "CGROUP_NOT_FOUND");
        assert_eq!(
            c.create("/bad//path").unwrap_err().reason(),
            "INVALID_CGROUP_PATH"
        );
        assert_eq!(c.remove("/tenants").unwrap_err().reason(), "CGROUP_BUSY");
        c.remove("/tenants/a").unwrap();
        c.remove("/tenants").unwrap();
        assert_eq!(c.list(), vec!["/".to_string()]);
    }

    #[test]
    fn effective_protection_is_shared_by_siblings() {
        let c = Memcgs::new(1);
        let p = c.create("/p").unwrap();
        let a = c.create("/p/a").unwrap();
        let b = c.create("/p/b").unwrap();
        let ctx = AllocContext::default();
        for (id, pages) in [(a, 300), (b, 100)] {
            c.try_charge(id, pages, Gfp::GFP_KERNEL_ACCOUNT, &ctx, 0)
                .unwrap();
        }
        c.drain_stocks();
        c.write_file("/p", "memory.low", "1M").unwrap(); // 256 pages
        c.write_file("/p/a", "memory.low", "1M").unwrap();
        c.write_file("/p/b", "memory.low", "1M").unwrap();
        // /p: min(400 used, 256); children claim min(300,256) + min(100,256) = 356 > 256.
        assert_eq!(c.effective_protection(p).1, 256);
        assert_eq!(c.effective_protection(a).1, 256 * 256 / 356);
        assert_eq!(c.effective_protection(b).1, 100 * 256 / 356);
        assert_eq!(c.effective_protection(a).0, 0, "no memory.min set");
        assert_eq!(c.effective_protection(CgroupId::ROOT), (0, 0));
    }

    #[test]
    fn hierarchical_limits_and_events() {
        let c = Memcgs::new(1);
        let p = c.create("/p").unwrap();
        let a = c.create("/p/a").unwrap();
        c.write_file("/p", "memory.max", "1M").unwrap(); // 256 pages
        let ctx = AllocContext::default();
        c.charge(a, 200, StatItem::Kernel, Gfp::GFP_KERNEL_ACCOUNT, &ctx, 0)
            .unwrap();
        let e = c
            .charge(a, 100, StatItem::Kernel, Gfp::GFP_KERNEL_ACCOUNT, &ctx, 0)
            .unwrap_err();
        assert_eq!(e.reason(), "CGROUP_LIMIT_EXCEEDED");
        assert!(
            e.to_string().contains("/p") && e.to_string().contains("limit 1MiB"),
            "{e}"
        );
        let pc = c.get(p).unwrap();
        let ac = c.get(a).unwrap();
        assert_eq!(
            (pc.usage_pages(), ac.usage_pages()),
            (200, 200),
            "a failed charge leaves nothing"
        );
        assert_eq!(pc.event_local(MemcgEvent::Max), 1);
        assert_eq!(
            ac.event(MemcgEvent::Max),
            0,
            "events go up the tree, not down"
        );
        assert_eq!(pc.event(MemcgEvent::Oom), 1);
        // NOFAIL may exceed the limit, and that is counted.
        let f = c
            .charge(
                a,
                100,
                StatItem::Kernel,
                Gfp::GFP_KERNEL_ACCOUNT | Gfp::NOFAIL,
                &ctx,
                0,
            )
            .unwrap();
        assert!(f.forced);
        assert_eq!(pc.usage_pages(), 300);
        assert_eq!(c.get(CgroupId::ROOT).unwrap().usage_pages(), 300);
        c.uncharge(a, 300, StatItem::Kernel, 0);
        assert_eq!(pc.usage_pages(), 0);
        assert_eq!(
            c.read_file("/p", "memory.peak").unwrap(),
            (300 * 4096).to_string() + "\n"
        );
        // memory.high: succeeds, counts, reports the penalty.
        c.write_file("/p/a", "memory.high", "400K").unwrap(); // 100 pages
        let h = c
            .charge(a, 200, StatItem::Kernel, Gfp::GFP_KERNEL_ACCOUNT, &ctx, 0)
            .unwrap();
        assert_eq!(h.high_delay_ms, 2000);
        assert_eq!(ac.event(MemcgEvent::High), 1);
        assert!(c
            .read_file("/p/a", "memory.stat")
            .unwrap()
            .contains("\nkernel 819200\n"));
        assert!(
            c.read_file("/p", "memory.stat")
                .unwrap()
                .contains("\nkernel 819200\n"),
            "stat is hierarchical"
        );
    }
}
