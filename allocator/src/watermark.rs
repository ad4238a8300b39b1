//! Watermark, reserve and pcp sizing formulas (`mm/page_alloc.c`, `mm/khugepaged.c`),
//! as pure functions so each can be checked against the kernel's numbers.

use crate::page::{MIGRATE_PCPTYPES, PAGEBLOCK_NR_PAGES};

/// `int_sqrt`: floor of the square root.
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    let mut r = (x as f64).sqrt() as u64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

/// `calculate_min_free_kbytes`: sqrt(16 × lowmem kB), clamped to [128, 262144], where
/// lowmem is the managed memory of zones up to Normal (`nr_free_buffer_pages` at boot,
/// when the high watermarks are still zero).
pub fn min_free_kbytes_for(lowmem_kbytes: u64) -> u64 {
    int_sqrt(lowmem_kbytes * 16).clamp(128, 262_144)
}

/// `set_recommended_min_free_kbytes` (khugepaged, THP enabled): two free pageblocks per
/// populated zone for fragmentation avoidance plus MIGRATE_PCPTYPES² pageblocks per zone
/// so fallbacks can steal whole blocks; at most 5% of lowmem pages. In kB.
pub fn thp_recommended_min_free_kbytes(nr_zones: u64, lowmem_pages: u64) -> u64 {
    let pcp = MIGRATE_PCPTYPES as u64;
    let mut pages = PAGEBLOCK_NR_PAGES * nr_zones * 2;
    pages += PAGEBLOCK_NR_PAGES * nr_zones * pcp * pcp;
    pages = pages.min(lowmem_pages / 20);
    pages * 4
}

/// A zone's watermarks in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Marks {
    pub min: u64,
    pub low: u64,
    pub high: u64,
    pub promo: u64,
}

/// `__setup_per_zone_wmarks`: `share` = the zone's part of min_free_kbytes/4 pages by
/// managed size (over `lowmem_pages`, the managed pages of every zone but Movable). A
/// normal zone's min is its share; Movable (treated like highmem) gets
/// clamp(managed/1024, 32, 128). Then `tmp` = max(share/4, managed × scale / 10000) is
/// stacked for low, high and promo.
pub fn zone_marks(
    min_free_kbytes: u64,
    managed: u64,
    lowmem_pages: u64,
    scale: u32,
    movable: bool,
) -> Marks {
    let pages_min = min_free_kbytes >> 2;
    let share = if lowmem_pages == 0 {
        0
    } else {
        (pages_min as u128 * managed as u128 / lowmem_pages as u128) as u64
    };
    let min = if movable {
        (managed / 1024).clamp(32, 128)
    } else {
        share
    };
    let tmp = (share >> 2).max(managed * scale as u64 / 10_000);
    Marks {
        min,
        low: min + tmp,
        high: min + 2 * tmp,
        promo: min + 3 * tmp,
    }
}

/// `setup_per_zone_lowmem_reserve` for one node: `reserve[i][j]` (j > i) protects zone
/// i from allocations that could have used zones up to j: the managed pages of zones
/// i+1..=j divided by `ratio[i]`; zero when the ratio is 0 or zone i has no managed
/// pages.
pub fn lowmem_reserves<const N: usize>(managed: &[u64; N], ratio: &[u32; N]) -> [[u64; N]; N] {
    let mut out = [[0u64; N]; N];
    for i in 0..N {
        let clear = ratio[i] == 0 || managed[i] == 0;
        let mut sum = 0;
        for j in i + 1..N {
            sum += managed[j];
            out[i][j] = if clear { 0 } else { sum / ratio[i] as u64 };
        }
    }
    out
}

/// `zone_batchsize`: a quarter of the zone's managed/1024 (at most 1 MiB of pages),
/// rounded down to a power of two after ×1.5, minus one.
pub fn pcp_batch(managed: u64) -> u32 {
    let mut batch = (managed >> 10).min(256) / 4;
    batch = batch.max(1);
    let b = batch + batch / 2;
    let pow = 1u64 << (63 - b.leading_zeros());
    ((pow - 1) as u32).max(1)
}

/// `zone_highsize`: the zone's low watermark (or managed/fraction) split over the CPUs
/// of the zone's node, at least 4 batches.
pub fn pcp_high(low_wmark: u64, managed: u64, fraction: u32, node_cpus: u32, batch: u32) -> u32 {
    let total = if fraction == 0 {
        low_wmark
    } else {
        managed / fraction as u64
    };
    let high = total / node_cpus.max(1) as u64;
    high.max((batch as u64) << 2).min(u32::MAX as u64) as u32
}

/// Least `percpu_pagelist_high_fraction` that may be written; also the divisor for
/// `high_max` when the fraction is 0.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_kbytes_reference_values() {
        // Documentation/admin-guide/sysctl/vm.rst table / kernel-mm-facts §4.
        assert_eq!(min_free_kbytes_for(16 * 1024), 512);
        assert_eq!(min_free_kbytes_for(1024 * 1024), 4096);
        assert_eq!(min_free_kbytes_for(4 * 1024 * 1024), 8192);
        assert_eq!(min_free_kbytes_for(16 * 1024 * 1024), 16384);
        assert_eq!(min_free_kbytes_for(1), 128);
        assert_eq!(min_free_kbytes_for(1 << 40), 262_144);
    }

    #[test]
    fn thp_recommendation_three_zones() {
        // 6.18 with THP madvise and three populated zones shows 67584 kB.
        assert_eq!(thp_recommended_min_free_kbytes(3, 10 << 18), 67_584);
        // capped at 5% of lowmem
        assert_eq!(thp_recommended_min_free_kbytes(3, 100_000), 5000 * 4);
    }

    #[test]
    fn watermarks() {
        let m = zone_marks(16384, 1 << 20, 1 << 20, 10, false);
        assert_eq!(m.min, 4096);
        assert_eq!(m.low, 4096 + 1048);
        assert_eq!(m.high, 4096 + 2096);
        assert_eq!(m.promo, 4096 + 3144);
        // min/4 wins on a small zone
        let s = zone_marks(16384, 1000, 1 << 20, 10, false);
        assert_eq!(s.min, 3);
        assert_eq!(s.low, 4);
        // Movable: min clamped to [32, 128], empty zone shows 32 (as on real machines)
        let mv = zone_marks(16384, 0, 1 << 20, 10, true);
        assert_eq!((mv.min, mv.low, mv.high, mv.promo), (32, 32, 32, 32));
        let mv = zone_marks(16384, 1 << 20, 1 << 20, 10, true);
        assert_eq!(mv.min, 128);
        assert_eq!(mv.low, 128 + 1048);
    }

    #[test]
    fn lowmem_reserve_matches_kernel() {
        // DMA 3840, DMA32 700000, Normal 3000000 managed; ratios 256/256/32/0/0
        let r = lowmem_reserves(&[3840, 700_000, 3_000_000, 0, 0], &[256, 256, 32, 0, 0]);
        assert_eq!(
            r[0],
            [
                0,
                700_000 / 256,
                3_700_000 / 256,
                3_700_000 / 256,
                3_700_000 / 256
            ]
        );
        assert_eq!(
            r[1],
            [0, 0, 3_000_000 / 256, 3_000_000 / 256, 3_000_000 / 256]
        );
        assert_eq!(r[2], [0; 5]);
        let z = lowmem_reserves(&[0, 10, 10, 0, 0], &[256, 0, 32, 0, 0]);
        assert_eq!(z[0], [0; 5], "empty zone reserves nothing");
        assert_eq!(z[1], [0; 5], "ratio 0 reserves nothing");
    }

    #[test]
    fn pcp_sizes() {
        assert_eq!(pcp_batch(4 << 20), 63);
        assert_eq!(pcp_batch(3976), 1, "at least one");
        assert_eq!(pcp_batch(1 << 17), 31);
        assert_eq!(pcp_high(400, 0, 0, 2, 63), 63 * 4);
        assert_eq!(pcp_high(100_000, 0, 0, 2, 63), 50_000);
        assert_eq!(pcp_high(0, 80_000, 8, 2, 63), 5000);
    }
}
