//! GFP ("get free pages") flags as `include/linux/gfp_types.h` defines them.
//!
//! A [`Gfp`] is the kernel's `gfp_t`: a 32-bit mask. Every single-bit flag and every
//! composite of the header is here with the kernel's value for an x86-64 distribution
//! build of v6.18. Since v6.10 the bits come from an enum and optional bits take a slot
//! only when their config is on: such a build has `CONFIG_SLAB_OBJ_EXT` (via MEMCG), so
//! `__GFP_NO_OBJ_EXT` is bit 24, and no `KASAN_HW_TAGS` (x86 has no memory tags) or
//! `LOCKDEP`, so `__GFP_SKIP_ZERO`, `__GFP_SKIP_KASAN` and `__GFP_NOLOCKDEP` are 0 — as
//! the kernel defines them there. Their names still parse (to nothing).
//!
//! Text form: [`Gfp::from_str`] reads what people write (`GFP_KERNEL | __GFP_ZERO`,
//! `GFP_NOWAIT|__GFP_NOWARN`, `0xcc0`), and `Display` prints what the kernel's `%pGg`
//! prints: names taken greedily from the kernel's ordered name table (composites first),
//! joined with `|`, any bits left over as `0x…`.
//!
//! Rules derived from the flags (zone, migratetype, may-block, reserves) live here as
//! methods; the allocation-context flags (`ALLOC_*`) derived from them live in
//! [`crate::page_alloc`].

use std::fmt;
use std::str::FromStr;

use crate::mem::ZoneType;
use crate::page::MigrateType;

/// A GFP mask (`gfp_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gfp(pub u32);

macro_rules! gfp_bits {
    ($($(#[$m:meta])* $name:ident = $bit:expr, $text:literal;)*) => {
        impl Gfp { $($(#[$m])* pub const $name: Gfp = Gfp(1 << $bit);)* }
        /// Every single-bit flag, in bit order, with its kernel name.
        pub const SINGLE_FLAGS: &[(&str, Gfp)] = &[$(($text, Gfp::$name)),*];
    };
}

gfp_bits! {
    /// Zone modifier: allocate from ZONE_DMA.
    DMA = 0, "__GFP_DMA";
    /// Zone modifier: highmem (ZONE_NORMAL on 64-bit; with MOVABLE, ZONE_MOVABLE).
    HIGHMEM = 1, "__GFP_HIGHMEM";
    /// Zone modifier: below 4 GiB.
    DMA32 = 2, "__GFP_DMA32";
    /// The page can be migrated (mobility grouping: MIGRATE_MOVABLE).
    MOVABLE = 3, "__GFP_MOVABLE";
    /// Slab freeable by shrinkers (MIGRATE_RECLAIMABLE).
    RECLAIMABLE = 4, "__GFP_RECLAIMABLE";
    /// High priority: may dip into part of the min reserve.
    HIGH = 5, "__GFP_HIGH";
    /// May start physical IO.
    IO = 6, "__GFP_IO";
    /// May call into the filesystem layer.
    FS = 7, "__GFP_FS";
    /// Return zeroed memory.
    ZERO = 8, "__GFP_ZERO";
    /// May sleep in direct reclaim ("blocking" allocation).
    DIRECT_RECLAIM = 10, "__GFP_DIRECT_RECLAIM";
    /// Wake kswapd when the low watermark is reached.
    KSWAPD_RECLAIM = 11, "__GFP_KSWAPD_RECLAIM";
    /// The page will be dirtied (dirty-limit spreading).
    WRITE = 12, "__GFP_WRITE";
    /// Do not report failures.
    NOWARN = 13, "__GFP_NOWARN";
    /// Retry hard, may fail, never OOM-kills.
    RETRY_MAYFAIL = 14, "__GFP_RETRY_MAYFAIL";
    /// Never fail: retry until memory is there.
    NOFAIL = 15, "__GFP_NOFAIL";
    /// One light reclaim/compaction attempt, no OOM killer.
    NORETRY = 16, "__GFP_NORETRY";
    /// Ignore watermarks (memory-reserve user).
    MEMALLOC = 17, "__GFP_MEMALLOC";
    /// Compound page metadata.
    COMP = 18, "__GFP_COMP";
    /// Forbid memory reserves; wins over MEMALLOC and PF_MEMALLOC.
    NOMEMALLOC = 19, "__GFP_NOMEMALLOC";
    /// Enforce the cpuset memory policy.
    HARDWALL = 20, "__GFP_HARDWALL";
    /// No fallback to other nodes.
    THISNODE = 21, "__GFP_THISNODE";
    /// Charge to the memory cgroup (kmemcg).
    ACCOUNT = 22, "__GFP_ACCOUNT";
    /// Zero memory tags (hardware tag-based KASAN).
    ZEROTAGS = 23, "__GFP_ZEROTAGS";
    /// Do not allocate slab object extensions (CONFIG_SLAB_OBJ_EXT).
    NO_OBJ_EXT = 24, "__GFP_NO_OBJ_EXT";
}

impl Gfp {
    /// Skip zeroing on allocation: 0 without CONFIG_KASAN_HW_TAGS.
    pub const SKIP_ZERO: Gfp = Gfp(0);
    /// Skip KASAN unpoisoning: 0 without CONFIG_KASAN_HW_TAGS.
    pub const SKIP_KASAN: Gfp = Gfp(0);
    /// Not tracked by lockdep: 0 without CONFIG_LOCKDEP.
    pub const NOLOCKDEP: Gfp = Gfp(0);
}

/// Flags whose config is off in the modelled build: they parse, and are 0.
pub const DISABLED_FLAGS: &[&str] = &["__GFP_SKIP_ZERO", "__GFP_SKIP_KASAN", "__GFP_NOLOCKDEP"];

/// Number of defined bits (`__GFP_BITS_SHIFT`).
/// `GFP_ZONE_TABLE`, indexed by the four zone-modifier bits (DMA, HIGHMEM, DMA32,
/// MOVABLE): DMA wins, then DMA32; HIGHMEM with MOVABLE is ZONE_MOVABLE; everything
/// else is Normal (x86-64 has no highmem). Masks with two zone modifiers are refused
/// by [`Gfp::validate`] before anyone looks here.
const GFP_ZONE_TABLE: [ZoneType; 16] = {
    let mut t = [ZoneType::Normal; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = if i & 1 != 0 {
            ZoneType::Dma
        } else if i & 4 != 0 {
            ZoneType::Dma32
        } else if i & 2 != 0 && i & 8 != 0 {
            ZoneType::Movable
        } else {
            ZoneType::Normal
        };
        i += 1;
    }
    t
};

/// `gfp_migratetype`, indexed by (MOVABLE, RECLAIMABLE) >> 3; both at once is an
/// impossible mix that [`Gfp::validate`] refuses (Movable here, as MOVABLE is tested
/// first).
const GFP_MT_TABLE: [MigrateType; 4] = [
    MigrateType::Unmovable,
    MigrateType::Movable,
    MigrateType::Reclaimable,
    MigrateType::Movable,
];

pub const GFP_BITS_SHIFT: u32 = 25;
/// Every defined bit (`__GFP_BITS_MASK`).
pub const GFP_BITS_MASK: u32 = (1 << GFP_BITS_SHIFT) - 1;
/// Bit 9 was `__GFP_ATOMIC` until v6.3 and is unused since.
const UNUSED_BITS: u32 = 1 << 9;

/// Bit `b` is set when the low five bits `b` (DMA, HIGHMEM, DMA32, MOVABLE,
/// RECLAIMABLE) make a valid mask: at most one zone modifier, not both migratetypes.
const VALID_LOW5: u32 = {
    let mut t = 0u32;
    let mut b = 0u32;
    while b < 32 {
        let zone_mods = (b & 0b111).count_ones();
        if zone_mods <= 1 && b & 0b11000 != 0b11000 {
            t |= 1 << b;
        }
        b += 1;
    }
    t
};

impl Gfp {
    pub const NONE: Gfp = Gfp(0);
    /// `__GFP_RECLAIM`: direct and kswapd reclaim.
    pub const RECLAIM: Gfp = Gfp(Self::DIRECT_RECLAIM.0 | Self::KSWAPD_RECLAIM.0);
    pub const ZONEMASK: Gfp = Gfp(Self::DMA.0 | Self::HIGHMEM.0 | Self::DMA32.0 | Self::MOVABLE.0);
    pub const MOVABLE_MASK: Gfp = Gfp(Self::RECLAIMABLE.0 | Self::MOVABLE.0);

    pub const GFP_ATOMIC: Gfp = Gfp(Self::HIGH.0 | Self::KSWAPD_RECLAIM.0);
    pub const GFP_KERNEL: Gfp = Gfp(Self::RECLAIM.0 | Self::IO.0 | Self::FS.0);
    pub const GFP_KERNEL_ACCOUNT: Gfp = Gfp(Self::GFP_KERNEL.0 | Self::ACCOUNT.0);
    /// v6.8+: includes `__GFP_NOWARN`.
    pub const GFP_NOWAIT: Gfp = Gfp(Self::KSWAPD_RECLAIM.0 | Self::NOWARN.0);
    pub const GFP_NOIO: Gfp = Self::RECLAIM;
    pub const GFP_NOFS: Gfp = Gfp(Self::RECLAIM.0 | Self::IO.0);
    pub const GFP_USER: Gfp = Gfp(Self::GFP_KERNEL.0 | Self::HARDWALL.0);
    pub const GFP_DMA: Gfp = Self::DMA;
    pub const GFP_DMA32: Gfp = Self::DMA32;
    pub const GFP_HIGHUSER: Gfp = Gfp(Self::GFP_USER.0 | Self::HIGHMEM.0);
    pub const GFP_HIGHUSER_MOVABLE: Gfp =
        Gfp(Self::GFP_HIGHUSER.0 | Self::MOVABLE.0 | Self::SKIP_KASAN.0);
    pub const GFP_TRANSHUGE_LIGHT: Gfp = Gfp((Self::GFP_HIGHUSER_MOVABLE.0
        | Self::COMP.0
        | Self::NOMEMALLOC.0
        | Self::NOWARN.0)
        & !Self::RECLAIM.0);
    pub const GFP_TRANSHUGE: Gfp = Gfp(Self::GFP_TRANSHUGE_LIGHT.0 | Self::DIRECT_RECLAIM.0);
}

/// Composite masks of `gfp_types.h`, with their names.
pub const COMPOSITES: &[(&str, Gfp)] = &[
    ("GFP_ATOMIC", Gfp::GFP_ATOMIC),
    ("GFP_KERNEL", Gfp::GFP_KERNEL),
    ("GFP_KERNEL_ACCOUNT", Gfp::GFP_KERNEL_ACCOUNT),
    ("GFP_NOWAIT", Gfp::GFP_NOWAIT),
    ("GFP_NOIO", Gfp::GFP_NOIO),
    ("GFP_NOFS", Gfp::GFP_NOFS),
    ("GFP_USER", Gfp::GFP_USER),
    ("GFP_DMA", Gfp::GFP_DMA),
    ("GFP_DMA32", Gfp::GFP_DMA32),
    ("GFP_HIGHUSER", Gfp::GFP_HIGHUSER),
    ("GFP_HIGHUSER_MOVABLE", Gfp::GFP_HIGHUSER_MOVABLE),
    ("GFP_TRANSHUGE_LIGHT", Gfp::GFP_TRANSHUGE_LIGHT),
    ("GFP_TRANSHUGE", Gfp::GFP_TRANSHUGE),
    ("__GFP_RECLAIM", Gfp::RECLAIM),
];

/// The name table `%pGg` walks (the kernel's `__def_gfpflag_names` order): the first
/// entry whose whole mask is set is printed and its bits cleared, so composites win.
const PGG_NAMES: &[(&str, Gfp)] = &[
    ("GFP_TRANSHUGE", Gfp::GFP_TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", Gfp::GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", Gfp::GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", Gfp::GFP_HIGHUSER),
    ("GFP_USER", Gfp::GFP_USER),
    ("GFP_KERNEL_ACCOUNT", Gfp::GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", Gfp::GFP_KERNEL),
    ("GFP_NOFS", Gfp::GFP_NOFS),
    ("GFP_ATOMIC", Gfp::GFP_ATOMIC),
    ("GFP_NOIO", Gfp::GFP_NOIO),
    ("GFP_NOWAIT", Gfp::GFP_NOWAIT),
    ("GFP_DMA", Gfp::DMA),
    ("GFP_DMA32", Gfp::DMA32),
    ("__GFP_RECLAIM", Gfp::RECLAIM),
];

/// Why a GFP mask or its text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GfpError {
    #[error("unknown GFP flag `{name}`{}", suggest(.suggestions))]
    UnknownName {
        name: String,
        suggestions: Vec<&'static str>,
    },
    #[error("empty GFP flag expression")]
    Empty,
    #[error("GFP mask {mask:#x} has undefined bits {bits:#x}")]
    UndefinedBits { mask: u32, bits: u32 },
    #[error("impossible GFP mix {mask:#x} ({text}): {why}")]
    ImpossibleMix {
        mask: u32,
        text: String,
        why: &'static str,
    },
}

fn suggest(s: &[&str]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(" or "))
    }
}

impl GfpError {
    /// Stable reason string (error codes as data).
    pub fn reason(&self) -> &'static str {
        match self {
            GfpError::UnknownName { .. } | GfpError::Empty | GfpError::UndefinedBits { .. } => {
                "INVALID_GFP_FLAGS"
            }
            GfpError::ImpossibleMix { .. } => "IMPOSSIBLE_GFP_MIX",
        }
    }
}

impl Gfp {
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }
    #[inline]
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub const fn intersects(self, other: Gfp) -> bool {
        self.0 & other.0 != 0
    }
    #[inline]
    #[must_use]
    pub const fn with(self, other: Gfp) -> Gfp {
        Gfp(self.0 | other.0)
    }
    #[inline]
    #[must_use]
    pub const fn without(self, other: Gfp) -> Gfp {
        Gfp(self.0 & !other.0)
    }

    /// Build from a numeric mask, refusing undefined bits.
    pub fn from_bits(mask: u32) -> Result<Gfp, GfpError> {
        let bad = mask & (!GFP_BITS_MASK | UNUSED_BITS);
        if bad != 0 {
            return Err(GfpError::UndefinedBits { mask, bits: bad });
        }
        Ok(Gfp(mask))
    }

    /// Check the mix for combinations the kernel treats as bugs or refuses:
    /// more than one zone modifier (`GFP_ZONE_BAD`), MOVABLE with RECLAIMABLE (two
    /// migratetypes), NOFAIL with NORETRY (contradictory), NOFAIL without direct reclaim
    /// (the kernel cannot honour it and warns).
    #[inline]
    pub fn validate(self) -> Result<Gfp, GfpError> {
        // Fast accept with two tests: no undefined bit and no NOFAIL (rare; its rules
        // are checked below), and a valid pattern of the five zone and migratetype
        // bits, looked up in a 32-bit table. Errors are built below.
        if self.0 & (!GFP_BITS_MASK | UNUSED_BITS | Gfp::NOFAIL.0) == 0
            && (VALID_LOW5 >> (self.0 & 31)) & 1 != 0
        {
            return Ok(self);
        }
        self.validate_slow()
    }

    #[cold]
    fn validate_slow(self) -> Result<Gfp, GfpError> {
        Gfp::from_bits(self.0)?;
        let mix = |why| {
            Err(GfpError::ImpossibleMix {
                mask: self.0,
                text: self.to_string(),
                why,
            })
        };
        let zone_mods = (self.0 & (Gfp::DMA.0 | Gfp::HIGHMEM.0 | Gfp::DMA32.0)).count_ones();
        if zone_mods > 1 {
            return mix("more than one of __GFP_DMA, __GFP_DMA32 and __GFP_HIGHMEM");
        }
        if self.contains(Gfp::MOVABLE_MASK) {
            return mix("__GFP_MOVABLE and __GFP_RECLAIMABLE name two migratetypes");
        }
        if self.contains(Gfp(Gfp::NOFAIL.0 | Gfp::NORETRY.0)) {
            return mix("__GFP_NOFAIL and __GFP_NORETRY contradict each other");
        }
        if self.contains(Gfp::NOFAIL) && !self.contains(Gfp::DIRECT_RECLAIM) {
            return mix("__GFP_NOFAIL needs a blocking context (__GFP_DIRECT_RECLAIM)");
        }
        Ok(self)
    }

    /// `gfp_zone`: the highest zone this mask may use (x86-64, no highmem).
    /// The low four bits index the kernel's GFP_ZONE_TABLE; callers must have
    /// validated the mask (two zone modifiers have no entry).
    #[inline]
    pub fn zone(self) -> ZoneType {
        GFP_ZONE_TABLE[(self.0 & 0xf) as usize]
    }

    /// `gfp_migratetype`: (RECLAIMABLE|MOVABLE) >> 3.
    #[inline]
    pub fn migratetype(self) -> MigrateType {
        GFP_MT_TABLE[((self.0 >> 3) & 3) as usize]
    }

    /// `gfpflags_allow_blocking`: the caller may sleep in direct reclaim.
    pub fn allows_blocking(self) -> bool {
        self.contains(Gfp::DIRECT_RECLAIM)
    }

    /// `gfpflags_allow_spinning`: either reclaim bit set.
    pub fn allows_spinning(self) -> bool {
        self.intersects(Gfp::RECLAIM)
    }

    /// Parse the text forms people write. Tokens are separated by `|` (spaces allowed);
    /// each is a flag or composite name (case-insensitive) or a number (`0x…` or
    /// decimal). The result is checked with [`Gfp::from_bits`] but not [`Gfp::validate`].
    pub fn parse(text: &str) -> Result<Gfp, GfpError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(GfpError::Empty);
        }
        let mut mask = 0u32;
        for tok in text.split('|') {
            let tok = tok.trim();
            if tok.is_empty() {
                return Err(GfpError::Empty);
            }
            mask |= parse_token(tok)?;
        }
        Gfp::from_bits(mask)
    }
}

fn parse_token(tok: &str) -> Result<u32, GfpError> {
    let num = if let Some(hex) = tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if tok.bytes().all(|b| b.is_ascii_digit()) {
        tok.parse::<u32>().ok()
    } else {
        None
    };
    if let Some(n) = num {
        return Ok(n);
    }
    if DISABLED_FLAGS.iter().any(|n| n.eq_ignore_ascii_case(tok)) {
        return Ok(0);
    }
    let names = SINGLE_FLAGS.iter().chain(COMPOSITES.iter());
    for (name, g) in names.clone() {
        if name.eq_ignore_ascii_case(tok) {
            return Ok(g.0);
        }
    }
    let upper = tok.to_ascii_uppercase();
    let mut scored: Vec<(usize, &'static str)> =
        names.map(|(n, _)| (edit_distance(&upper, n), *n)).collect();
    scored.sort();
    let best = scored.first().map(|s| s.0).unwrap_or(usize::MAX);
    let limit = (tok.len() / 3).max(3);
    let suggestions = scored
        .iter()
        .filter(|(d, _)| *d <= limit && *d <= best + 1)
        .take(3)
        .map(|(_, n)| *n)
        .collect();
    Err(GfpError::UnknownName {
        name: tok.to_string(),
        suggestions,
    })
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl FromStr for Gfp {
    type Err = GfpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Gfp::parse(s)
    }
}

/// `%pGg`: names from the ordered table, `|`-joined, leftover bits as hex.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        for (name, g) in PGG_NAMES.iter().chain(SINGLE_FLAGS) {
            if rest == 0 {
                break;
            }
            if g.0 != 0 && rest & g.0 == g.0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !g.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfp({:#x} {})", self.0, self)
    }
}

impl fmt::LowerHex for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl std::ops::BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_values_match_the_header() {
        assert_eq!(Gfp::RECLAIM.0, 0xc00);
        assert_eq!(Gfp::GFP_ATOMIC.0, 0x820);
        assert_eq!(Gfp::GFP_KERNEL.0, 0xcc0);
        assert_eq!(Gfp::GFP_KERNEL_ACCOUNT.0, 0x400cc0);
        assert_eq!(Gfp::GFP_NOWAIT.0, 0x2800);
        assert_eq!(Gfp::GFP_NOIO.0, 0xc00);
        assert_eq!(Gfp::GFP_NOFS.0, 0xc40);
        assert_eq!(Gfp::GFP_USER.0, 0x100cc0);
        assert_eq!(Gfp::GFP_HIGHUSER.0, 0x100cc2);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.0, 0x100cca);
        assert_eq!(Gfp::GFP_TRANSHUGE_LIGHT.0, 0x1c20ca);
        assert_eq!(Gfp::GFP_TRANSHUGE.0, 0x1c24ca);
        assert_eq!(Gfp::NO_OBJ_EXT.0, 0x1000000);
        assert_eq!(GFP_BITS_MASK, 0x1ff_ffff);
        assert_eq!(Gfp::ZERO.0, 0x100);
        assert_eq!(Gfp::NOFAIL.0, 0x8000);
        assert_eq!(Gfp::ACCOUNT.0, 0x400000);
    }

    #[test]
    fn gfp_zone_table() {
        let z = |g: u32| Gfp(g).zone();
        assert_eq!(z(0), ZoneType::Normal);
        assert_eq!(z(Gfp::DMA.0), ZoneType::Dma);
        assert_eq!(z(Gfp::HIGHMEM.0), ZoneType::Normal);
        assert_eq!(z(Gfp::DMA32.0), ZoneType::Dma32);
        assert_eq!(z(Gfp::MOVABLE.0), ZoneType::Normal);
        assert_eq!(z(Gfp::MOVABLE.0 | Gfp::HIGHMEM.0), ZoneType::Movable);
        assert_eq!(z(Gfp::MOVABLE.0 | Gfp::DMA.0), ZoneType::Dma);
        assert_eq!(z(Gfp::MOVABLE.0 | Gfp::DMA32.0), ZoneType::Dma32);
        assert_eq!(Gfp::GFP_HIGHUSER_MOVABLE.zone(), ZoneType::Movable);
        assert_eq!(Gfp::GFP_KERNEL.zone(), ZoneType::Normal);
        for bad in [0x3, 0x5, 0x6, 0x7, 0xb, 0xd, 0xe, 0xf] {
            assert!(
                matches!(Gfp(bad).validate(), Err(GfpError::ImpossibleMix { .. })),
                "{bad:#x}"
            );
        }
    }

    #[test]
    fn migratetype_from_flags() {
        assert_eq!(Gfp::GFP_KERNEL.migratetype(), MigrateType::Unmovable);
        assert_eq!(
            Gfp::GFP_HIGHUSER_MOVABLE.migratetype(),
            MigrateType::Movable
        );
        assert_eq!(
            (Gfp::GFP_KERNEL | Gfp::RECLAIMABLE).migratetype(),
            MigrateType::Reclaimable
        );
    }

    #[test]
    fn pgg_printing() {
        assert_eq!(Gfp::GFP_KERNEL.to_string(), "GFP_KERNEL");
        assert_eq!(
            (Gfp::GFP_KERNEL | Gfp::ZERO).to_string(),
            "GFP_KERNEL|__GFP_ZERO"
        );
        assert_eq!(Gfp::GFP_ATOMIC.to_string(), "GFP_ATOMIC");
        assert_eq!(Gfp::GFP_NOWAIT.to_string(), "GFP_NOWAIT");
        assert_eq!(Gfp::GFP_KERNEL_ACCOUNT.to_string(), "GFP_KERNEL_ACCOUNT");
        assert_eq!(
            Gfp::GFP_HIGHUSER_MOVABLE.to_string(),
            "GFP_HIGHUSER_MOVABLE"
        );
        assert_eq!(Gfp::GFP_TRANSHUGE.to_string(), "GFP_TRANSHUGE");
        assert_eq!(
            (Gfp::GFP_NOWAIT | Gfp::COMP).to_string(),
            "GFP_NOWAIT|__GFP_COMP"
        );
        assert_eq!(Gfp(0x200).to_string(), "0x200");
        assert_eq!((Gfp::DMA32 | Gfp(0x200)).to_string(), "GFP_DMA32|0x200");
        assert_eq!(Gfp(0).to_string(), "");
        assert_eq!(
            Gfp::RECLAIM.to_string(),
            "GFP_NOIO",
            "same mask, earlier entry"
        );
        assert_eq!(Gfp::KSWAPD_RECLAIM.to_string(), "__GFP_KSWAPD_RECLAIM");
        assert_eq!(
            (Gfp::GFP_ATOMIC | Gfp::NOWARN).to_string(),
            "GFP_ATOMIC|__GFP_NOWARN"
        );
        assert_eq!(
            (Gfp::GFP_KERNEL | Gfp(0x4000000)).to_string(),
            "GFP_KERNEL|0x4000000"
        );
        assert_eq!(
            (Gfp::HIGHMEM | Gfp::MOVABLE).to_string(),
            "__GFP_HIGHMEM|__GFP_MOVABLE"
        );
    }

    #[test]
    fn parse_text_forms() {
        assert_eq!(
            Gfp::parse("GFP_KERNEL | __GFP_ZERO").unwrap(),
            Gfp::GFP_KERNEL | Gfp::ZERO
        );
        assert_eq!(
            Gfp::parse("GFP_NOWAIT|__GFP_NOWARN").unwrap(),
            Gfp::GFP_NOWAIT
        );
        assert_eq!(Gfp::parse("0xcc0").unwrap(), Gfp::GFP_KERNEL);
        assert_eq!(Gfp::parse("3264").unwrap(), Gfp::GFP_KERNEL);
        assert_eq!(Gfp::parse("gfp_kernel").unwrap(), Gfp::GFP_KERNEL);
        assert!(matches!(Gfp::parse(""), Err(GfpError::Empty)));
        assert_eq!(
            Gfp::parse("GFP_KERNEL|__GFP_NOLOCKDEP").unwrap(),
            Gfp::GFP_KERNEL,
            "config-disabled flags are 0"
        );
        assert!(matches!(Gfp::parse("GFP_KERNEL|"), Err(GfpError::Empty)));
        assert!(matches!(
            Gfp::parse("0x200"),
            Err(GfpError::UndefinedBits { .. })
        ));
        match Gfp::parse("GFP_KERNAL") {
            Err(GfpError::UnknownName { suggestions, .. }) => {
                assert_eq!(suggestions[0], "GFP_KERNEL")
            }
            other => panic!("{other:?}"),
        }
        let e = Gfp::parse("__GFP_NOWARNING").unwrap_err().to_string();
        assert!(e.contains("did you mean __GFP_NOWARN"), "{e}");
    }

    #[test]
    fn round_trip_every_flag() {
        for (name, g) in SINGLE_FLAGS.iter().chain(COMPOSITES) {
            let printed = g.to_string();
            assert_eq!(
                Gfp::parse(&printed).unwrap(),
                *g,
                "{name} printed {printed}"
            );
        }
    }

    #[test]
    fn impossible_mixes() {
        let bad = [
            Gfp::MOVABLE | Gfp::RECLAIMABLE,
            Gfp::GFP_KERNEL | Gfp::NOFAIL | Gfp::NORETRY,
            Gfp::GFP_ATOMIC | Gfp::NOFAIL,
            Gfp::DMA | Gfp::DMA32,
        ];
        for g in bad {
            let e = g.validate().unwrap_err();
            assert_eq!(e.reason(), "IMPOSSIBLE_GFP_MIX", "{g:?}");
        }
        assert!((Gfp::GFP_KERNEL | Gfp::NOFAIL).validate().is_ok());
        assert!((Gfp::MEMALLOC | Gfp::NOMEMALLOC).validate().is_ok());
    }

    #[test]
    fn fast_accept_agrees_with_the_full_rules() {
        // Every pattern of the five zone/migratetype bits, with the flags that take
        // other routes through `validate` (NOFAIL, NORETRY, undefined bits).
        let extras = [
            0,
            Gfp::GFP_KERNEL.0,
            Gfp::GFP_ATOMIC.0,
            (Gfp::GFP_KERNEL | Gfp::NOFAIL).0,
            (Gfp::GFP_KERNEL | Gfp::NOFAIL | Gfp::NORETRY).0,
            (Gfp::GFP_NOWAIT | Gfp::NOFAIL).0,
            UNUSED_BITS,
            1 << GFP_BITS_SHIFT,
        ];
        for low in 0..32u32 {
            for extra in extras {
                let g = Gfp(low | extra);
                assert_eq!(
                    g.validate().is_ok(),
                    g.validate_slow().is_ok(),
                    "{:#x}",
                    g.0
                );
            }
        }
    }
}
