//! Page-allocator workloads shared by the `page_alloc` bench and the `ratios`
//! example: the allocators behind one trait, the same-size baseline, the seeded RNG
//! and the mixed-order workload. Each item says which way its numbers lean where
//! that matters; the bench's doc comments say the rest.

#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use buddy_system_allocator::FrameAllocator;
use kmem_allocator::{AllocContext, ByteSize, Gfp, Machine, MachineConfig, Pfn, PinnedCpu};

/// Simulated memory of every benchmark machine.
pub const MEMORY_GIB: u64 = 16;
/// Frames the baseline manages: the same memory in 4 KiB pages.
pub const FRAMES: usize = (MEMORY_GIB << 30) as usize / 4096;
/// `FrameAllocator<ORDER>` serves blocks up to order `ORDER - 1`; 11 gives it the
/// kernel's `MAX_PAGE_ORDER` of 10, so both allocators hold the same block sizes.
pub type Baseline = FrameAllocator<11>;
/// Live blocks kept by the mixed workload (per thread in the threaded variant).
pub const LIVE: usize = 100_000;
/// The mixed workload draws orders from `0..=MIXED_MAX_ORDER`.
pub const MIXED_MAX_ORDER: u64 = 4;
pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

pub const WARM_UP: Duration = Duration::from_secs(1);
pub const MEASURE: Duration = Duration::from_secs(4);

/// xorshift64* (Vigna): deterministic, no dependency, a couple of ns per draw.
pub struct XorShift64(pub u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        XorShift64(seed.max(1))
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A value in `0..n` (the modulo bias is irrelevant for n this small).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The two operations the workloads need, so one workload body drives both allocators.
pub trait PageAllocator {
    fn alloc(&mut self, order: u8) -> u64;
    fn free(&mut self, pfn: u64, order: u8);
}

/// kmem on one simulated CPU.
pub struct Kmem<'m> {
    pub m: &'m Machine,
    pub ctx: AllocContext,
}

impl<'m> Kmem<'m> {
    pub fn on_cpu(m: &'m Machine, cpu: u16) -> Self {
        Kmem {
            m,
            ctx: AllocContext::on_cpu(cpu),
        }
    }
}

impl PageAllocator for Kmem<'_> {
    #[inline]
    fn alloc(&mut self, order: u8) -> u64 {
        self.m
            .alloc_pages(Gfp::GFP_KERNEL, order, &self.ctx)
            .expect("alloc_pages")
            .pfn
    }
    #[inline]
    fn free(&mut self, pfn: u64, order: u8) {
        self.m
            .free_pages_on(pfn as Pfn, order, &self.ctx)
            .expect("free_pages_on");
    }
}

/// kmem with the thread pinned to one simulated CPU ([`PinnedCpu`]): the same calls
/// without the per-call CPU locks, as a kernel task on its CPU runs them.
impl PageAllocator for PinnedCpu<'_> {
    #[inline]
    fn alloc(&mut self, order: u8) -> u64 {
        self.alloc_pages(Gfp::GFP_KERNEL, order)
            .expect("alloc_pages")
            .pfn
    }
    #[inline]
    fn free(&mut self, pfn: u64, order: u8) {
        self.free_pages(pfn as Pfn, order).expect("free_pages");
    }
}

impl PageAllocator for Baseline {
    #[inline]
    fn alloc(&mut self, order: u8) -> u64 {
        FrameAllocator::alloc(self, 1 << order).expect("FrameAllocator::alloc") as u64
    }
    #[inline]
    fn free(&mut self, pfn: u64, order: u8) {
        self.dealloc(pfn as usize, 1 << order);
    }
}

pub fn machine() -> Machine {
    Machine::boot(MachineConfig::bare(ByteSize::gib(MEMORY_GIB))).expect("boot 16 GiB")
}

pub fn baseline() -> Baseline {
    let mut f = Baseline::new();
    f.add_frame(0, FRAMES);
    f
}

/// One order-0 alloc + free.
#[inline]
pub fn order0_pair<A: PageAllocator>(a: &mut A) {
    let pfn = a.alloc(0);
    a.free(black_box(pfn), 0);
}

/// The mixed workload's state: `LIVE` blocks of random orders and the RNG.
pub struct Mixed {
    pub live: Vec<(u64, u8)>,
    pub rng: XorShift64,
}

impl Mixed {
    /// Pre-fill `LIVE` blocks of orders drawn from the seeded RNG.
    pub fn fill<A: PageAllocator>(a: &mut A, seed: u64) -> Mixed {
        let mut rng = XorShift64::new(seed);
        let live = (0..LIVE)
            .map(|_| {
                let o = rng.below(MIXED_MAX_ORDER + 1) as u8;
                (a.alloc(o), o)
            })
            .collect();
        Mixed { live, rng }
    }

    /// Free a random live block, allocate one of a random order into its slot.
    #[inline]
    pub fn step<A: PageAllocator>(&mut self, a: &mut A) {
        let slot = self.rng.below(self.live.len() as u64) as usize;
        let (pfn, order) = self.live[slot];
        a.free(pfn, order);
        let o = self.rng.below(MIXED_MAX_ORDER + 1) as u8;
        self.live[slot] = (a.alloc(o), o);
    }
}

/// A control, not a kmem workload: one uncontended spin-lock acquire (a locked
/// compare-and-swap) and release (a plain store) on a byte, as a simulated CPU's lock
/// costs. A per-call order-0 pair performs two locked instructions (the CPU's pcp lock
/// on alloc and on free; a block freed on the CPU that allocated it is claimed under
/// that lock, see `page.rs`); a pinned pair none. On a VM the price of one swings with
/// the host, which is why it is measured beside the workloads rather than assumed.
#[inline]
pub fn lock_unlock(l: &std::sync::atomic::AtomicU8) {
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    let _ = black_box(l.compare_exchange(0, 1, Acquire, Relaxed));
    l.store(0, Release);
}
