//! slab_debug: poisoning, red zones, owner tracking and validation (mm/slub.c debug
//! paths, include/linux/poison.h).
//!
//! Object slot layout with debugging: `[left red zone][object][right red zone][free
//! pointer][alloc track][free track][padding]`, as `calculate_sizes` lays it out. The
//! bytes are real (in the content store), so a write past an object through
//! [`Machine::debug_write_raw`] really lands in the red zone and is found on free, and
//! a write to a freed object spoils its poison and is found on the next allocation.
//! A corrupted object is reported as the kernel's `BUG <cache>: …` lines in `dmesg`,
//! taken out of circulation (quarantined) and counted; allocator state stays intact.

use std::time::Instant;

use serde::Serialize;

use super::{CacheId, KmemCache, SlabError, SlabFlags, SlabState};
use crate::context::AllocContext;
use crate::machine::Machine;

pub const POISON_INUSE: u8 = 0x5a;
pub const POISON_FREE: u8 = 0x6b;
pub const POISON_END: u8 = 0xa5;
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
pub const SLUB_RED_ACTIVE: u8 = 0xcc;

/// One owner-tracking record (`struct track`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Track {
    pub caller: String,
    pub cpu: u16,
    /// Microseconds since boot.
    pub when_us: u64,
}

/// Alloc and free records of an object.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Tracks {
    pub alloc: Option<Track>,
    pub free: Option<Track>,
}

/// Per-cache debug state.
#[derive(Debug, Default)]
pub struct DebugState {
    pub tracks: rustc_hash::FxHashMap<u64, Tracks>,
    /// Objects taken out of circulation after a detected corruption.
    pub quarantine: Vec<u64>,
    pub corruptions: u64,
}

/// What `validate` found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ValidateReport {
    pub cache: String,
    pub slabs: u64,
    pub objects: u64,
    pub errors: Vec<String>,
}

fn boot_us(m: &Machine) -> u64 {
    Instant::now().duration_since(m.log_boot()).as_micros() as u64
}

impl KmemCache {
    pub fn debug(&self) -> bool {
        self.flags.intersects(SlabFlags::DEBUG)
    }
    fn red_zone(&self) -> bool {
        self.flags.contains(SlabFlags::RED_ZONE)
    }
    fn poison(&self) -> bool {
        // __OBJECT_POISON: not for RCU or constructed caches.
        self.flags.contains(SlabFlags::POISON)
            && !self.flags.contains(SlabFlags::TYPESAFE_BY_RCU)
            && self.ctor.is_none()
    }
}

impl Machine {
    /// Write bytes anywhere inside allocated memory, without the usercopy checks: the
    /// way a buggy driver overruns an object. For slab_debug tests and teaching.
    pub fn debug_write_raw(&self, addr: u64, data: &[u8]) -> Result<(), crate::phys::PhysError> {
        if addr < super::PAGE_OFFSET {
            return Err(crate::phys::PhysError::OutOfRange {
                addr,
                len: data.len(),
            });
        }
        self.write_phys(addr - super::PAGE_OFFSET, data)
    }

    /// `init_object`: red zones to active/inactive, poison a free object.
    pub(crate) fn init_object(&self, c: &KmemCache, addr: u64, active: bool) {
        let l = c.layout;
        let red = if active {
            SLUB_RED_ACTIVE
        } else {
            SLUB_RED_INACTIVE
        };
        if c.red_zone() {
            self.fill_virt(addr - l.red_left_pad as u64, l.red_left_pad as u64, red);
            self.fill_virt(
                addr + l.object_size as u64,
                (l.inuse - l.object_size) as u64,
                red,
            );
        }
        if c.poison() && !active {
            self.fill_virt(addr, l.object_size as u64 - 1, POISON_FREE);
            self.fill_virt(addr + l.object_size as u64 - 1, 1, POISON_END);
        }
    }

    /// `check_object`: the first thing wrong with an object, if any.
    pub(crate) fn check_object(&self, c: &KmemCache, addr: u64, active: bool) -> Option<String> {
        let l = c.layout;
        let red = if active {
            SLUB_RED_ACTIVE
        } else {
            SLUB_RED_INACTIVE
        };
        let first_bad = |start: u64, len: u64, want: &dyn Fn(u64) -> u8| -> Option<u64> {
            let bytes = self.read_virt(start, len as usize);
            bytes
                .iter()
                .enumerate()
                .find(|(i, &b)| b != want(*i as u64))
                .map(|(i, _)| start + i as u64)
        };
        if c.red_zone() {
            if let Some(at) =
                first_bad(addr - l.red_left_pad as u64, l.red_left_pad as u64, &|_| {
                    red
                })
            {
                return Some(format!("Left Redzone overwritten at {at:#x}"));
            }
            let rlen = (l.inuse - l.object_size) as u64;
            if let Some(at) = first_bad(addr + l.object_size as u64, rlen, &|_| red) {
                return Some(format!("Right Redzone overwritten at {at:#x}"));
            }
        }
        if c.poison() && !active {
            let n = l.object_size as u64;
            let want = |i: u64| if i == n - 1 { POISON_END } else { POISON_FREE };
            if let Some(at) = first_bad(addr, n, &want) {
                return Some(format!("Poison overwritten at {at:#x}"));
            }
        }
        None
    }

    /// Print a kernel-style BUG report, quarantine the object, count it.
    pub(crate) fn report_corruption(&self, c: &KmemCache, addr: u64, what: &str) -> SlabError {
        let mut d = c.dbg.lock();
        d.corruptions += 1;
        d.quarantine.push(addr);
        let tracks = d.tracks.get(&addr).cloned().unwrap_or_default();
        drop(d);
        self.log.warn(format!("BUG {}: {what}", c.name));
        if let Some(t) = &tracks.alloc {
            self.log.warn(format!(
                "INFO: Allocated in {} age={}us cpu={}",
                t.caller,
                boot_us(self).saturating_sub(t.when_us),
                t.cpu
            ));
        }
        if let Some(t) = &tracks.free {
            self.log.warn(format!(
                "INFO: Freed in {} age={}us cpu={}",
                t.caller,
                boot_us(self).saturating_sub(t.when_us),
                t.cpu
            ));
        }
        self.log.warn(format!(
            "INFO: Object {addr:#x} @offset=0 in {} size={}",
            c.name, c.layout.size
        ));
        self.log.warn(format!(
            "FIX {}: Object at {addr:#x} not freed (quarantined)",
            c.name
        ));
        SlabError::Corruption {
            cache: c.name.clone(),
            what: what.to_string(),
            addr,
        }
    }

    fn track(&self, ctx: &AllocContext, cpu: usize) -> Track {
        Track {
            caller: ctx.caller.as_deref().unwrap_or("unknown").to_string(),
            cpu: cpu as u16,
            when_us: boot_us(self),
        }
    }

    /// The debug half of an allocation: check the object that came off the freelist;
    /// a corrupted one is quarantined and `Err` asks the caller to take another.
    pub(crate) fn debug_on_alloc(
        &self,
        c: &KmemCache,
        addr: u64,
        ctx: &AllocContext,
    ) -> Result<(), SlabError> {
        if c.flags.intersects(SlabFlags(
            SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0 | SlabFlags::CONSISTENCY_CHECKS.0,
        )) {
            if let Some(what) = self.check_object(c, addr, false) {
                return Err(self.report_corruption(c, addr, &what));
            }
        }
        self.init_object(c, addr, true);
        if c.flags.contains(SlabFlags::STORE_USER) {
            let cpu = self.resolve_cpu(ctx).unwrap_or(0);
            let t = self.track(ctx, cpu);
            c.dbg.lock().tracks.entry(addr).or_default().alloc = Some(t);
        }
        Ok(())
    }

    /// The debug half of a free, before the object goes back: red zones must be
    /// intact.
    pub(crate) fn debug_on_free(&self, c: &KmemCache, addr: u64) -> Result<(), SlabError> {
        if c.red_zone() {
            if let Some(what) = self.check_object(c, addr, true) {
                return Err(self.report_corruption(c, addr, &what));
            }
        }
        Ok(())
    }

    pub(crate) fn debug_after_free(&self, c: &KmemCache, addr: u64, ctx: &AllocContext) {
        self.init_object(c, addr, false);
        if c.flags.contains(SlabFlags::STORE_USER) {
            let cpu = self.resolve_cpu(ctx).unwrap_or(0);
            let t = self.track(ctx, cpu);
            c.dbg.lock().tracks.entry(addr).or_default().free = Some(t);
        }
    }

    /// Report a double free the kernel way (with tracks when stored).
    pub(crate) fn report_double_free(&self, c: &KmemCache, addr: u64) {
        if c.debug() {
            let tracks = c.dbg.lock().tracks.get(&addr).cloned().unwrap_or_default();
            self.log
                .warn(format!("BUG {}: Object already free", c.name));
            if let Some(t) = tracks.free {
                self.log
                    .warn(format!("INFO: Freed in {} cpu={}", t.caller, t.cpu));
            }
        }
    }

    /// Owner tracking of an object (`/sys/kernel/slab/<cache>/alloc_traces` …).
    pub fn object_tracks(&self, addr: u64) -> Result<Tracks, SlabError> {
        let o = self.obj_ref(addr)?;
        let c = self.caches.get(o.cache).expect("resolved");
        Ok(c.dbg.lock().tracks.get(&addr).cloned().unwrap_or_default())
    }

    /// `/sys/kernel/slab/<cache>/validate`: check every object of every slab.
    pub fn kmem_cache_validate(&self, id: CacheId) -> Result<ValidateReport, SlabError> {
        let c = self.cache(id)?;
        let cpus: Vec<_> = (0..self.nr_cpus())
            .map(|cpu| self.cpu_slab(c, cpu))
            .collect();
        let t = c.slabs.lock();
        let quarantine = c.dbg.lock().quarantine.clone();
        let mut r = ValidateReport {
            cache: c.name.clone(),
            ..Default::default()
        };
        for (sid, s) in t.slabs.iter().enumerate() {
            let Some(s) = s else { continue };
            r.slabs += 1;
            let cpu_free = |i: u32| match s.state {
                SlabState::Active(cpu) => {
                    let cs = &cpus[cpu as usize];
                    cs.active == Some(sid as u32) && cs.freelist.contains(&i)
                }
                _ => false,
            };
            for i in 0..s.objects {
                r.objects += 1;
                let addr = c.obj_addr(s.pfn, i);
                if quarantine.contains(&addr) {
                    continue;
                }
                let free = s.is_free(i) || cpu_free(i);
                if c.debug() {
                    if let Some(what) = self.check_object(c, addr, !free) {
                        r.errors.push(format!(
                            "BUG {}: {what} (object {addr:#x}, {})",
                            c.name,
                            if free { "free" } else { "allocated" }
                        ));
                    }
                }
            }
        }
        drop(t);
        drop(cpus);
        for e in &r.errors {
            self.log.warn(e.clone());
        }
        c.dbg.lock().corruptions += r.errors.len() as u64;
        Ok(r)
    }

    /// Objects quarantined after corruption, per cache name.
    pub fn slab_corruptions(&self) -> Vec<(String, u64)> {
        self.caches
            .ids()
            .into_iter()
            .filter_map(|id| self.caches.get(id))
            .filter_map(|c| {
                let n = c.dbg.lock().corruptions;
                (n > 0).then(|| (c.name.clone(), n))
            })
            .collect()
    }
}
