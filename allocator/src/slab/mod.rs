//! Slab caches: the SLUB object allocator (mm/slab_common.c, mm/slub.c).
//!
//! A cache carves slabs (compound page blocks from the page allocator, owned by the
//! cache in their head page word) into fixed-size objects addressed by kernel virtual
//! addresses in the direct map (`PAGE_OFFSET + physical address`), so `kfree` finds
//! the cache and slab from the address alone, as `virt_to_slab` does.
//!
//! Modelled rules: flags that change behaviour (alignment, DMA zones, reclaimable,
//! accounting, merging, debugging, RCU type-safety), the kernel's layout and order
//! choice ([`layout`]), per-CPU slabs and per-CPU partial lists with node partial lists
//! sized by `min_partial`/`cpu_partial`, cache merging (aliases), and destroy with live
//! objects (refused, reported, the cache stays listed).

pub mod debug;
pub mod layout;
mod obj_exts;
mod objects;
pub(crate) mod slub;

pub use objects::CacheInfo;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde::Serialize;

use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::page::{Pfn, MAX_CACHES, PAGE_SIZE};

pub use layout::Layout;
pub use slub::{CpuSlab, Slab, SlabState};

const RECIPROCAL_SHIFT: u32 = 44;

/// `reciprocal_value(size)` for [`KmemCache::obj_index`].
fn reciprocal_size(size: u32) -> u64 {
    (1u64 << RECIPROCAL_SHIFT).div_ceil(size as u64)
}

#[inline]
fn reciprocal_index(off: u64, reciprocal: u64) -> u32 {
    ((off * reciprocal) >> RECIPROCAL_SHIFT) as u32
}

/// `PAGE_OFFSET` with 4-level paging: the direct map's base.
pub const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
/// `ZERO_SIZE_PTR`: what `kmalloc(0)` returns.
pub const ZERO_SIZE_PTR: u64 = 16;

/// The kernel virtual address of a physical address.
pub const fn phys_to_virt(phys: u64) -> u64 {
    PAGE_OFFSET + phys
}

/// Slab cache flags (`SLAB_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlabFlags(pub u32);

macro_rules! slab_flags {
    ($($name:ident = $bit:expr, $text:literal;)*) => {
        impl SlabFlags { $(pub const $name: SlabFlags = SlabFlags(1 << $bit);)* }
        /// Every flag with its kernel name.
        pub const SLAB_FLAG_NAMES: &[(&str, SlabFlags)] = &[$(($text, SlabFlags::$name)),*];
    };
}

slab_flags! {
    CONSISTENCY_CHECKS = 0, "SLAB_CONSISTENCY_CHECKS";
    RED_ZONE = 1, "SLAB_RED_ZONE";
    POISON = 2, "SLAB_POISON";
    KMALLOC = 3, "SLAB_KMALLOC";
    HWCACHE_ALIGN = 4, "SLAB_HWCACHE_ALIGN";
    CACHE_DMA = 5, "SLAB_CACHE_DMA";
    CACHE_DMA32 = 6, "SLAB_CACHE_DMA32";
    STORE_USER = 7, "SLAB_STORE_USER";
    PANIC = 8, "SLAB_PANIC";
    TYPESAFE_BY_RCU = 9, "SLAB_TYPESAFE_BY_RCU";
    TRACE = 10, "SLAB_TRACE";
    NOLEAKTRACE = 11, "SLAB_NOLEAKTRACE";
    NO_MERGE = 12, "SLAB_NO_MERGE";
    ACCOUNT = 13, "SLAB_ACCOUNT";
    RECLAIM_ACCOUNT = 14, "SLAB_RECLAIM_ACCOUNT";
    NO_USER_FLAGS = 15, "SLAB_NO_USER_FLAGS";
}

impl SlabFlags {
    pub const NONE: SlabFlags = SlabFlags(0);
    /// Flags that forbid merging (`SLAB_NEVER_MERGE`).
    pub const NEVER_MERGE: SlabFlags = SlabFlags(
        Self::RED_ZONE.0
            | Self::POISON.0
            | Self::STORE_USER.0
            | Self::TRACE.0
            | Self::TYPESAFE_BY_RCU.0
            | Self::NOLEAKTRACE.0
            | Self::NO_MERGE.0,
    );
    /// Flags that must match to merge (`SLAB_MERGE_SAME`).
    pub const MERGE_SAME: SlabFlags = SlabFlags(
        Self::RECLAIM_ACCOUNT.0 | Self::CACHE_DMA.0 | Self::CACHE_DMA32.0 | Self::ACCOUNT.0,
    );
    /// The slab_debug flags.
    pub const DEBUG: SlabFlags = SlabFlags(
        Self::CONSISTENCY_CHECKS.0
            | Self::RED_ZONE.0
            | Self::POISON.0
            | Self::STORE_USER.0
            | Self::TRACE.0,
    );
    pub const ALL: u32 = (1 << 16) - 1;

    pub const fn contains(self, f: SlabFlags) -> bool {
        self.0 & f.0 == f.0
    }
    pub const fn intersects(self, f: SlabFlags) -> bool {
        self.0 & f.0 != 0
    }
    #[must_use]
    pub const fn with(self, f: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | f.0)
    }

    /// Parse `SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT` (the `SLAB_` prefix is optional) or a
    /// number.
    pub fn parse(text: &str) -> Result<SlabFlags, SlabError> {
        let mut v = 0;
        for tok in text.split('|').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(h) = tok.strip_prefix("0x") {
                v |= u32::from_str_radix(h, 16).map_err(|_| SlabError::BadFlags(tok.into()))?;
                continue;
            }
            let up = tok.to_ascii_uppercase();
            let name = if up.starts_with("SLAB_") {
                up
            } else {
                format!("SLAB_{up}")
            };
            match SLAB_FLAG_NAMES.iter().find(|(n, _)| *n == name) {
                Some((_, f)) => v |= f.0,
                None => return Err(SlabError::BadFlags(tok.into())),
            }
        }
        if v & !Self::ALL != 0 {
            return Err(SlabError::BadFlags(format!("{v:#x}")));
        }
        Ok(SlabFlags(v))
    }
}

impl fmt::Debug for SlabFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = SLAB_FLAG_NAMES
            .iter()
            .filter(|(_, fl)| self.contains(*fl))
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("0")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// Errors of the slab layer. Each leaves every other allocation intact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    #[error("unknown or invalid slab flag `{0}`")]
    BadFlags(String),
    #[error("kmem_cache_create({name}): {why}")]
    BadCache { name: String, why: String },
    #[error("too many slab caches (at most {MAX_CACHES})")]
    TooManyCaches,
    #[error("no such slab cache (id {0})")]
    NoSuchCache(u32),
    #[error("kmem_cache {0} was destroyed")]
    Destroyed(String),
    #[error("kmem_cache_destroy {name}: Slab cache still has objects ({objects} remaining)")]
    CacheBusy { name: String, objects: u64 },
    #[error("{0}")]
    NoMemory(#[from] crate::page_alloc::AllocError),
    #[error("BUG {cache}: {what} (object {addr:#x})")]
    Corruption {
        cache: String,
        what: String,
        addr: u64,
    },
    #[error("invalid free of {addr:#x}: {why}")]
    InvalidFree { addr: u64, why: String },
    #[error("double free of {addr:#x} in {cache}")]
    DoubleFree { cache: String, addr: u64 },
    #[error("kmem_cache_free({given}) of an object of {actual} at {addr:#x}")]
    WrongCache {
        given: String,
        actual: String,
        addr: u64,
    },
    #[error("usercopy: {what} of {len} bytes at offset {offset} of a {cache} object ({window})")]
    Usercopy {
        cache: String,
        what: &'static str,
        offset: u64,
        len: u64,
        window: String,
    },
    #[error("size {size} is too large for kmalloc (KMALLOC_MAX_SIZE is 4194304)")]
    TooLarge { size: u64 },
}

impl SlabError {
    pub fn reason(&self) -> &'static str {
        match self {
            SlabError::BadFlags(_) => "INVALID_SLAB_FLAGS",
            SlabError::BadCache { .. } => "INVALID_CACHE",
            SlabError::TooManyCaches => "TOO_MANY_CACHES",
            SlabError::NoSuchCache(_) => "CACHE_NOT_FOUND",
            SlabError::Destroyed(_) => "CACHE_DESTROYED",
            SlabError::CacheBusy { .. } => "CACHE_HAS_OBJECTS",
            SlabError::NoMemory(e) => e.reason(),
            SlabError::Corruption { .. } => "SLAB_CORRUPTION",
            SlabError::InvalidFree { .. } => "INVALID_FREE",
            SlabError::DoubleFree { .. } => "DOUBLE_FREE",
            SlabError::WrongCache { .. } => "WRONG_CACHE",
            SlabError::Usercopy { .. } => "USERCOPY_VIOLATION",
            SlabError::TooLarge { .. } => "SIZE_TOO_LARGE",
        }
    }
}

/// Per-cache slow-path event counters (`/sys/kernel/slab/<cache>/alloc_slowpath` …);
/// the fast-path ones live in each [`CpuSlab`].
#[derive(Debug, Default)]
pub struct CacheStats {
    pub alloc_slowpath: AtomicU64,
    pub free_slowpath: AtomicU64,
    pub alloc_slab: AtomicU64,
    pub free_slab: AtomicU64,
    pub cpu_partial_alloc: AtomicU64,
    /// `ALLOC_NODE_MISMATCH`: CPU slabs deactivated for a request naming another node.
    pub alloc_node_mismatch: AtomicU64,
    pub cpu_partial_free: AtomicU64,
    pub order_fallback: AtomicU64,
}

/// A slab cache (`struct kmem_cache`).
pub struct KmemCache {
    pub id: u16,
    pub name: String,
    pub flags: SlabFlags,
    pub layout: Layout,
    pub useroffset: u32,
    pub usersize: u32,
    pub min_partial: u32,
    pub cpu_partial_objects: u32,
    pub cpu_partial_slabs: u32,
    /// Simulated constructor: objects are filled with this byte when a slab is made.
    pub ctor: Option<u8>,
    /// GFP bits every slab allocation carries (`s->allocflags`).
    pub allocflags: Gfp,
    pub(crate) refcount: AtomicI64,
    pub(crate) destroyed: AtomicBool,
    pub(crate) aliases: Mutex<Vec<String>>,
    /// Slabs, node partial lists (the kernel's `n->list_lock`).
    pub(crate) slabs: Mutex<slub::SlabTable>,
    pub stats: CacheStats,
    /// Which cgroup each charged object belongs to, made when the cache's first object
    /// is charged (so frees of never-charged caches skip the lookup entirely).
    pub(crate) obj_exts: OnceLock<obj_exts::ObjExts>,
    pub(crate) dbg: Mutex<debug::DebugState>,
    /// No debugging: allocations and frees may take the fast paths.
    pub(crate) fast: bool,
    /// `ksize` of every object (fixed by the flags).
    pub(crate) ksize: u64,
    /// `s->reciprocal_size`: ceil(2^44 / size), so an object index is a multiply and
    /// a shift ([`KmemCache::obj_index`]).
    pub(crate) reciprocal: u64,
}

/// A cache's identity as returned by `kmem_cache_create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CacheId(pub u16);

/// The machine's caches: an append-only table (ids are never reused, so a lookup is a
/// lock-free index) plus the creation order for `/proc/slabinfo`.
pub(crate) struct Caches {
    table: Vec<OnceLock<Box<KmemCache>>>,
    order: Mutex<Vec<u16>>,
}

impl Caches {
    pub fn new() -> Self {
        let mut table = Vec::with_capacity(MAX_CACHES);
        table.resize_with(MAX_CACHES, OnceLock::new);
        Caches {
            table,
            order: Mutex::new(Vec::new()),
        }
    }
    #[inline]
    pub fn get(&self, id: u16) -> Option<&KmemCache> {
        self.table.get(id as usize)?.get().map(|b| &**b)
    }
    /// Every cache id, oldest first.
    pub fn ids(&self) -> Vec<u16> {
        self.order.lock().clone()
    }
}

/// Arguments of `kmem_cache_create_usercopy`.
#[derive(Clone, Debug, Default)]
pub struct CacheArgs {
    pub align: u32,
    pub flags: SlabFlags,
    pub useroffset: u32,
    pub usersize: u32,
    pub ctor: Option<u8>,
}

impl Machine {
    pub(crate) fn cache(&self, id: CacheId) -> Result<&KmemCache, SlabError> {
        self.caches
            .get(id.0)
            .ok_or(SlabError::NoSuchCache(id.0 as u32))
    }

    /// A cache's name ("?" for an unknown id).
    pub fn cache_name(&self, id: CacheId) -> &str {
        self.caches.get(id.0).map_or("?", |c| c.name.as_str())
    }

    /// Look up a cache by name (the original or an alias), newest first.
    pub fn find_cache(&self, name: &str) -> Option<CacheId> {
        self.caches.ids().into_iter().rev().find_map(|id| {
            let c = self.caches.get(id)?;
            let live = !c.destroyed.load(Relaxed) || c.refcount.load(Relaxed) > 0;
            (live && (c.name == name || c.aliases.lock().iter().any(|a| a == name)))
                .then_some(CacheId(id))
        })
    }

    /// `kmem_cache_create(name, size, align, flags, NULL)`.
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: u32,
        align: u32,
        flags: SlabFlags,
    ) -> Result<CacheId, SlabError> {
        self.kmem_cache_create_args(
            name,
            size,
            CacheArgs {
                align,
                flags,
                ..Default::default()
            },
        )
    }

    /// Like `kmem_cache_create`, but hand back the existing cache when one with this
    /// name (or alias) is listed — Linux itself allows duplicate names.
    pub fn kmem_cache_get_or_create(
        &self,
        name: &str,
        size: u32,
        args: CacheArgs,
    ) -> Result<CacheId, SlabError> {
        match self.find_cache(name) {
            Some(id) => Ok(id),
            None => self.kmem_cache_create_args(name, size, args),
        }
    }

    /// Slabs of TYPESAFE_BY_RCU caches waiting for a grace period ([`Machine::rcu_barrier`]).
    pub fn rcu_pending_slabs(&self) -> u64 {
        self.caches
            .ids()
            .into_iter()
            .filter_map(|id| self.caches.get(id))
            .map(|c| c.slabs.lock().rcu_pending.len() as u64)
            .sum()
    }

    /// `kmem_cache_create_usercopy`: objects may be copied to and from user space only
    /// within [useroffset, useroffset + usersize).
    pub fn kmem_cache_create_usercopy(
        &self,
        name: &str,
        size: u32,
        align: u32,
        flags: SlabFlags,
        useroffset: u32,
        usersize: u32,
    ) -> Result<CacheId, SlabError> {
        self.kmem_cache_create_args(
            name,
            size,
            CacheArgs {
                align,
                flags,
                useroffset,
                usersize,
                ctor: None,
            },
        )
    }

    /// The full form: validates, applies `slab_debug`, merges with a compatible cache
    /// (returning it, with `name` as an alias) or creates a new one.
    pub fn kmem_cache_create_args(
        &self,
        name: &str,
        size: u32,
        args: CacheArgs,
    ) -> Result<CacheId, SlabError> {
        let bad = |why: String| SlabError::BadCache {
            name: name.to_string(),
            why,
        };
        if name.is_empty() {
            return Err(bad("a cache needs a name".into()));
        }
        if size == 0 || size as u64 > crate::kmalloc::KMALLOC_MAX_SIZE {
            return Err(bad(format!("size {size} is outside 1..=4194304")));
        }
        if args.flags.0 & !SlabFlags::ALL != 0 || args.flags.contains(SlabFlags::KMALLOC) {
            return Err(SlabError::BadFlags(format!("{:#x}", args.flags.0)));
        }
        if args.align != 0 && !args.align.is_power_of_two() {
            return Err(bad(format!("align {} is not a power of two", args.align)));
        }
        let flags = self.slab_debug_flags(name, args.flags);
        // A bad usercopy window is dropped (no usercopy), as the kernel does.
        let (useroffset, usersize) = if args.usersize == 0
            || args
                .useroffset
                .checked_add(args.usersize)
                .is_none_or(|e| e > size)
        {
            (0, 0)
        } else {
            (args.useroffset, args.usersize)
        };
        if args.ctor.is_none() && usersize == 0 {
            if let Some(id) = self.find_mergeable(size, args.align, flags) {
                let c = self.caches.get(id).expect("listed");
                c.refcount.fetch_add(1, Relaxed);
                c.aliases.lock().push(name.to_string());
                return Ok(CacheId(id));
            }
        }
        self.create_cache(
            name,
            size,
            CacheArgs {
                flags,
                useroffset,
                usersize,
                ..args
            },
        )
    }

    /// `find_mergeable`.
    fn find_mergeable(&self, size: u32, align: u32, flags: SlabFlags) -> Option<u16> {
        if flags.intersects(SlabFlags::NEVER_MERGE) || self.slab_nomerge {
            return None;
        }
        let size = size.next_multiple_of(8);
        let align = layout::calculate_alignment(flags, align, size);
        let size = size.next_multiple_of(align);
        self.caches.ids().into_iter().rev().find(|&id| {
            let Some(s) = self.caches.get(id) else {
                return false;
            };
            // `slab_unmergeable` with HARDENED_USERCOPY: a usercopy region (kmalloc
            // caches whitelist everything) rules a cache out.
            let unmergeable = s.flags.intersects(SlabFlags::NEVER_MERGE)
                || s.ctor.is_some()
                || s.usersize != 0
                || s.destroyed.load(Relaxed);
            !unmergeable
                && size <= s.layout.size
                && (flags.0 & SlabFlags::MERGE_SAME.0) == (s.flags.0 & SlabFlags::MERGE_SAME.0)
                && s.layout.size & !(align - 1) == s.layout.size
                && s.layout.size - size < 8
        })
    }

    pub(crate) fn create_cache(
        &self,
        name: &str,
        size: u32,
        args: CacheArgs,
    ) -> Result<CacheId, SlabError> {
        let flags = args.flags;
        let align = if flags.contains(SlabFlags::KMALLOC) {
            args.align
        } else {
            layout::calculate_alignment(flags, args.align, size)
        };
        let lay = layout::calculate_sizes(
            size,
            align,
            flags,
            args.ctor.is_some(),
            self.nr_cpus() as u32,
        )
        .ok_or_else(|| SlabError::BadCache {
            name: name.into(),
            why: "objects too large for any slab order".into(),
        })?;
        let debug = flags.intersects(SlabFlags::DEBUG);
        let (cp_objs, cp_slabs) = layout::cpu_partial(lay.size, lay.objects, debug);
        let mut allocflags = Gfp::COMP;
        if flags.contains(SlabFlags::CACHE_DMA) {
            allocflags = allocflags.with(Gfp::DMA);
        }
        if flags.contains(SlabFlags::CACHE_DMA32) {
            allocflags = allocflags.with(Gfp::DMA32);
        }
        if flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
            allocflags = allocflags.with(Gfp::RECLAIMABLE);
        }
        let mut order = self.caches.order.lock();
        let id = order.len();
        if id >= MAX_CACHES {
            return Err(SlabError::TooManyCaches);
        }
        // Every CPU gets this cache's `kmem_cache_cpu` before the cache is visible.
        for l in self.cpu_locals.iter() {
            let mut l = l.lock();
            debug_assert_eq!(l.slabs.len(), id, "cache ids are dense");
            l.slabs
                .push(crossbeam_utils::CachePadded::new(CpuSlab::default()));
        }
        let cache = KmemCache {
            id: id as u16,
            name: name.to_string(),
            flags,
            layout: lay,
            useroffset: args.useroffset,
            usersize: args.usersize,
            min_partial: layout::min_partial(lay.size),
            cpu_partial_objects: cp_objs,
            cpu_partial_slabs: cp_slabs,
            ctor: args.ctor,
            allocflags,
            refcount: AtomicI64::new(1),
            destroyed: AtomicBool::new(false),
            aliases: Mutex::new(Vec::new()),
            slabs: Mutex::new(slub::SlabTable::new(self.nr_nodes())),
            stats: CacheStats::default(),
            obj_exts: OnceLock::new(),
            dbg: Mutex::new(debug::DebugState::default()),
            fast: !debug,
            ksize: 0,
            reciprocal: reciprocal_size(lay.size),
        };
        let cache = KmemCache {
            ksize: cache.slab_ksize(),
            ..cache
        };
        if self.caches.table[id].set(Box::new(cache)).is_err() {
            unreachable!("cache ids are handed out under the order lock");
        }
        order.push(id as u16);
        Ok(CacheId(id as u16))
    }

    /// The flags `slab_debug=` adds for a cache (`kmem_cache_flags`).
    pub(crate) fn slab_debug_flags(&self, name: &str, flags: SlabFlags) -> SlabFlags {
        match &self.slab_debug {
            Some(d) => flags.with(d.flags_for(name)),
            None => flags,
        }
    }

    /// `kmem_cache_destroy`: drop a reference; at the last one the cache is shut down.
    /// With live objects it is not freed: each object is reported in `dmesg`, the cache
    /// stays listed, and the error names how many remain.
    pub fn kmem_cache_destroy(&self, id: CacheId) -> Result<(), SlabError> {
        let c = self.cache(id)?;
        if c.destroyed.load(Relaxed) && c.refcount.load(Relaxed) <= 0 {
            return Err(SlabError::Destroyed(c.name.clone()));
        }
        if c.refcount.fetch_sub(1, Relaxed) > 1 {
            c.aliases.lock().pop();
            return Ok(());
        }
        self.flush_all_cpu_slabs(c);
        self.rcu_barrier();
        let live = self.cache_live_objects(c);
        if !live.is_empty() {
            c.refcount.fetch_add(1, Relaxed);
            for a in &live {
                self.log.warn(format!(
                    "Object {a:#x} remaining on __kmem_cache_shutdown() in {}",
                    c.name
                ));
            }
            self.log.warn(format!(
                "kmem_cache_destroy {}: Slab cache still has objects when called from kmem_cache_destroy",
                c.name
            ));
            return Err(SlabError::CacheBusy {
                name: c.name.clone(),
                objects: live.len() as u64,
            });
        }
        self.shrink_cache(c, true);
        c.destroyed.store(true, Relaxed);
        self.caches.order.lock().retain(|&x| x != id.0);
        Ok(())
    }

    /// `kmem_cache_shrink`: flush the CPU slabs and give every empty slab back.
    pub fn kmem_cache_shrink(&self, id: CacheId) -> Result<u64, SlabError> {
        let c = self.cache(id)?;
        self.flush_all_cpu_slabs(c);
        Ok(self.shrink_cache(c, true))
    }

    /// Slab pages on one node, (reclaimable, unreclaimable); large kmallocs count as
    /// unreclaimable slab, as in the kernel.
    pub fn slab_pages_node(&self, node: u16) -> (u64, u64) {
        let (mut r, mut u) = (0, 0);
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            let pages: u64 = c
                .slabs
                .lock()
                .slabs
                .iter()
                .flatten()
                .filter(|s| s.node == node)
                .map(|s| 1u64 << s.order)
                .sum();
            if c.flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
                r += pages;
            } else {
                u += pages;
            }
        }
        (r, u + self.large_kmalloc_pages[node as usize].load(Relaxed))
    }

    /// Slab pages in use by all caches, (reclaimable, unreclaimable), in pages.
    pub fn slab_pages(&self) -> (u64, u64) {
        let (mut r, mut u) = (0, 0);
        for id in self.caches.ids() {
            let c = self.caches.get(id).expect("listed");
            let pages = c.slabs.lock().nr_pages;
            if c.flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
                r += pages;
            } else {
                u += pages;
            }
        }
        let large: u64 = self
            .large_kmalloc_pages
            .iter()
            .map(|p| p.load(Relaxed))
            .sum();
        (r, u + large)
    }
}

/// `slab_debug=` settings, parsed from the kernel's option syntax:
/// `<flags>[,<cache>[,<cache>…]][;<flags>,<caches>…]`, flags from `FZPUT`, `-` for
/// none, a cache glob with a trailing `*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlabDebug {
    /// (flags, cache patterns); empty patterns mean every cache.
    pub blocks: Vec<(SlabFlags, Vec<String>)>,
}

impl SlabDebug {
    pub fn parse(s: &str) -> Result<SlabDebug, SlabError> {
        let mut blocks = Vec::new();
        for block in s.split(';').filter(|b| !b.is_empty()) {
            let mut parts = block.split(',');
            let letters = parts.next().unwrap_or("");
            let mut f = SlabFlags::NONE;
            let letters = if letters.is_empty() { "FZPU" } else { letters };
            for ch in letters.chars() {
                f = f.with(match ch.to_ascii_uppercase() {
                    'F' => SlabFlags::CONSISTENCY_CHECKS,
                    'Z' => SlabFlags::RED_ZONE,
                    'P' => SlabFlags::POISON,
                    'U' => SlabFlags::STORE_USER,
                    'T' => SlabFlags::TRACE,
                    '-' => SlabFlags::NONE,
                    'A' | 'O' => SlabFlags::NONE,
                    _ => return Err(SlabError::BadFlags(format!("slab_debug option `{ch}`"))),
                });
            }
            blocks.push((
                f,
                parts
                    .map(str::to_string)
                    .filter(|p| !p.is_empty())
                    .collect(),
            ));
        }
        Ok(SlabDebug { blocks })
    }

    pub fn flags_for(&self, name: &str) -> SlabFlags {
        let mut out = SlabFlags::NONE;
        for (f, pats) in &self.blocks {
            let hit = pats.is_empty()
                || pats.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => p == name,
                });
            if hit {
                out = out.with(*f);
            }
        }
        out
    }
}

/// Where an object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjRef {
    pub cache: u16,
    pub slab: u32,
    pub slab_pfn: Pfn,
    pub index: u32,
    /// Offset of the address from the object's start (0 for a valid pointer).
    pub delta: u64,
}

impl KmemCache {
    /// The address of object `index` of a slab at `pfn`.
    pub fn obj_addr(&self, slab_pfn: Pfn, index: u32) -> u64 {
        phys_to_virt(slab_pfn * PAGE_SIZE)
            + self.layout.red_left_pad as u64
            + index as u64 * self.layout.size as u64
    }
    /// `obj_to_index`: the slot holding byte `off` of a slab, without a division. With
    /// m = ceil(2^44 / size) the error of `off * m / 2^44` is below `off / 2^44`, and
    /// off * size < 2^44 (a slab and a slot are at most 4 MiB = 2^22), so the floor
    /// is exact.
    #[inline]
    pub(crate) fn obj_index(&self, off: u64) -> u32 {
        debug_assert!(off <= crate::kmalloc::KMALLOC_MAX_SIZE);
        let i = reciprocal_index(off, self.reciprocal);
        debug_assert_eq!(i as u64, off / self.layout.size as u64);
        i
    }
    /// `kmem_cache_size` / what `ksize` reports for this cache.
    pub fn object_size(&self) -> u32 {
        self.layout.object_size
    }
}

#[cfg(test)]
mod reciprocal_tests {
    use super::*;

    /// The multiply-shift index equals the division for every slot size up to 8 KiB
    /// and some larger ones, at both ends of each slot, near the start and the end of
    /// the largest (4 MiB) slab, where the error would show first.
    #[test]
    fn reciprocal_index_is_exact() {
        let max = crate::kmalloc::KMALLOC_MAX_SIZE;
        let sizes = (8..=8192u32)
            .step_by(8)
            .chain([12_345, 65_536, 1 << 20, 1 << 22]);
        for size in sizes {
            let r = reciprocal_size(size);
            let n = max / size as u64;
            for k in (0..n.min(64)).chain(n.saturating_sub(64)..n) {
                for off in [k * size as u64, k * size as u64 + size as u64 - 1] {
                    assert_eq!(
                        reciprocal_index(off, r) as u64,
                        off / size as u64,
                        "size {size} off {off}"
                    );
                }
            }
        }
    }
}
