//! Page contents: real bytes, stored only for pages that were written.
//!
//! A bitmap (one bit per page, allocated zeroed so untouched parts cost nothing) says
//! which pages have bytes; the bytes live in sharded hash maps. A page without bytes
//! reads as zeros. Zeroing a block only visits pages whose bit is set, 64 at a time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::page::{Pfn, PAGE_SIZE};

const SHARDS: usize = 64;
type PageBytes = Box<[u8; PAGE_SIZE as usize]>;

pub struct ContentStore {
    written: Vec<AtomicU64>,
    shards: Vec<Mutex<FxHashMap<u32, PageBytes>>>,
    stored: AtomicU64,
}

impl ContentStore {
    pub fn new(nr_pages: u64) -> Self {
        let mut shards = Vec::with_capacity(SHARDS);
        shards.resize_with(SHARDS, || Mutex::new(FxHashMap::default()));
        ContentStore {
            written: bytemuck::zeroed_vec(nr_pages.div_ceil(64) as usize),
            shards,
            stored: AtomicU64::new(0),
        }
    }

    #[inline]
    fn shard(&self, pfn: Pfn) -> &Mutex<FxHashMap<u32, PageBytes>> {
        &self.shards[(pfn as usize) % SHARDS]
    }

    /// Pages that hold stored bytes (host memory spent ≈ this × 4 KiB).
    pub fn stored_pages(&self) -> u64 {
        self.stored.load(Relaxed)
    }

    pub fn has_bytes(&self, pfn: Pfn) -> bool {
        self.written[(pfn / 64) as usize].load(Relaxed) & (1 << (pfn % 64)) != 0
    }

    /// Write `data` at byte `offset` of page `pfn` (within the page).
    pub fn write(&self, pfn: Pfn, offset: usize, data: &[u8]) {
        debug_assert!(offset + data.len() <= PAGE_SIZE as usize);
        if data.is_empty() {
            return;
        }
        let mut shard = self.shard(pfn).lock();
        let page = shard.entry(pfn as u32).or_insert_with(|| {
            self.stored.fetch_add(1, Relaxed);
            self.written[(pfn / 64) as usize].fetch_or(1 << (pfn % 64), Relaxed);
            Box::new([0u8; PAGE_SIZE as usize])
        });
        page[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Read into `buf` from byte `offset` of page `pfn`.
    pub fn read(&self, pfn: Pfn, offset: usize, buf: &mut [u8]) {
        if !self.has_bytes(pfn) {
            buf.fill(0);
            return;
        }
        match self.shard(pfn).lock().get(&(pfn as u32)) {
            Some(p) => buf.copy_from_slice(&p[offset..offset + buf.len()]),
            None => buf.fill(0),
        }
    }

    /// Forget the bytes of `n` pages from `pfn`: they read as zero afterwards.
    pub fn clear(&self, pfn: Pfn, n: u64) {
        let mut p = pfn;
        let end = pfn + n;
        while p < end {
            let word = (p / 64) as usize;
            let bits = self.written[word].load(Relaxed);
            if bits == 0 {
                p = (p / 64 + 1) * 64;
                continue;
            }
            if bits & (1 << (p % 64)) != 0 {
                self.written[word].fetch_and(!(1 << (p % 64)), Relaxed);
                if self.shard(p).lock().remove(&(p as u32)).is_some() {
                    self.stored.fetch_sub(1, Relaxed);
                }
            }
            p += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_bytes() {
        let c = ContentStore::new(1 << 20);
        let mut buf = [1u8; 8];
        c.read(77, 100, &mut buf);
        assert_eq!(buf, [0; 8]);
        c.write(77, 100, b"kmemd!!!");
        c.read(77, 100, &mut buf);
        assert_eq!(&buf, b"kmemd!!!");
        assert_eq!(c.stored_pages(), 1);
        c.clear(0, 1 << 20);
        c.read(77, 100, &mut buf);
        assert_eq!(buf, [0; 8]);
        assert_eq!(c.stored_pages(), 0);
    }
}
