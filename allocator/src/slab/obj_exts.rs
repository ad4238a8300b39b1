//! Per-object cgroup records (the kernel's `slabobj_ext` vector hanging off each
//! slab): which cgroup an object of a cache was charged to, so its free uncharges
//! that cgroup whoever frees it.
//!
//! Kept per cache as a two-level table indexed by slab id (ids are dense: the slab
//! table reuses freed ids), with one vector of slots per slab made the first time one
//! of its objects is charged, as the kernel allocates `obj_exts` lazily. A slot holds
//! cgroup id + 1 (0 = not charged). Lookups take no lock: a slot is written by the
//! allocating caller before the address is handed out, and cleared by the free that
//! the slab locks admitted, before the object can be allocated again.

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::memcg::CgroupId;

const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;

type SlabSlots = OnceLock<Box<[AtomicU16]>>;

/// One cache's records.
pub(crate) struct ObjExts {
    /// Slots per slab: the most objects a slab of the cache can hold.
    objects: u32,
    chunks: Box<[OnceLock<Box<[SlabSlots]>>]>,
}

impl ObjExts {
    /// Records for a cache that can have at most `max_slabs` slabs at once (the
    /// machine's pages over the smallest slab order) of up to `objects` objects.
    pub(crate) fn new(max_slabs: u64, objects: u32) -> Self {
        let n = (max_slabs as usize).div_ceil(CHUNK).max(1);
        let mut chunks = Vec::with_capacity(n);
        chunks.resize_with(n, OnceLock::new);
        ObjExts {
            objects,
            chunks: chunks.into_boxed_slice(),
        }
    }

    #[inline(always)]
    fn slab(&self, slab: u32) -> Option<&[AtomicU16]> {
        let chunk = self.chunks.get((slab >> CHUNK_SHIFT) as usize)?.get()?;
        chunk[slab as usize & (CHUNK - 1)].get().map(|b| &**b)
    }

    #[inline(never)]
    fn slab_or_init(&self, slab: u32) -> &[AtomicU16] {
        let chunk = self.chunks[(slab >> CHUNK_SHIFT) as usize].get_or_init(|| {
            let mut v = Vec::with_capacity(CHUNK);
            v.resize_with(CHUNK, OnceLock::new);
            v.into_boxed_slice()
        });
        chunk[slab as usize & (CHUNK - 1)]
            .get_or_init(|| (0..self.objects).map(|_| AtomicU16::new(0)).collect())
    }

    /// Record that object `index` of slab `slab` is charged to `cg`.
    #[inline]
    pub(crate) fn set(&self, slab: u32, index: u32, cg: CgroupId) {
        debug_assert!(index < self.objects);
        let slots = match self.slab(slab) {
            Some(s) => s,
            None => self.slab_or_init(slab),
        };
        slots[index as usize].store(cg.0 + 1, Relaxed);
    }

    /// Take (and clear) the record of an object being freed.
    #[inline(always)]
    pub(crate) fn take(&self, slab: u32, index: u32) -> Option<CgroupId> {
        let slot = self.slab(slab)?.get(index as usize)?;
        match slot.load(Relaxed) {
            0 => None,
            v => {
                slot.store(0, Relaxed);
                Some(CgroupId(v - 1))
            }
        }
    }

    /// Every record as (slab id, object index, cgroup), for the invariant checker.
    pub(crate) fn records(&self) -> Vec<(u32, u32, CgroupId)> {
        let mut out = Vec::new();
        for (ci, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk.get() else { continue };
            for (si, slots) in chunk.iter().enumerate() {
                let Some(slots) = slots.get() else { continue };
                for (i, v) in slots.iter().enumerate() {
                    let v = v.load(Relaxed);
                    if v != 0 {
                        let slab = (ci << CHUNK_SHIFT | si) as u32;
                        out.push((slab, i as u32, CgroupId(v - 1)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_take_and_records() {
        let x = ObjExts::new(5000, 32);
        assert_eq!(x.take(7, 3), None, "nothing recorded yet");
        x.set(7, 3, CgroupId(4));
        x.set(4095, 31, CgroupId(0));
        assert_eq!(
            x.records(),
            vec![(7, 3, CgroupId(4)), (4095, 31, CgroupId(0))]
        );
        assert_eq!(x.take(7, 3), Some(CgroupId(4)));
        assert_eq!(x.take(7, 3), None, "a record is taken once");
        assert_eq!(x.take(4095, 31), Some(CgroupId(0)));
        assert!(x.records().is_empty());
    }
}
