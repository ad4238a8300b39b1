//! The kernel's saturating size helpers (include/linux/overflow.h): on overflow they
//! give `SIZE_MAX`, which every allocator then refuses — a request never wraps to a
//! small size.

/// `SIZE_MAX` on x86-64.
pub const SIZE_MAX: u64 = u64::MAX;

/// `size_mul`.
pub const fn size_mul(a: u64, b: u64) -> u64 {
    match a.checked_mul(b) {
        Some(v) => v,
        None => SIZE_MAX,
    }
}

/// `size_add`.
pub const fn size_add(a: u64, b: u64) -> u64 {
    match a.checked_add(b) {
        Some(v) => v,
        None => SIZE_MAX,
    }
}

/// `size_sub`: SIZE_MAX on underflow or when either side is SIZE_MAX.
pub const fn size_sub(a: u64, b: u64) -> u64 {
    if a == SIZE_MAX || b == SIZE_MAX || a < b {
        SIZE_MAX
    } else {
        a - b
    }
}

/// `array_size(n, size)`.
pub const fn array_size(n: u64, size: u64) -> u64 {
    size_mul(n, size)
}

/// `array3_size(a, b, c)`.
pub const fn array3_size(a: u64, b: u64, c: u64) -> u64 {
    size_mul(size_mul(a, b), c)
}

/// `struct_size(p, member, n)`: a header of `header` bytes followed by `n` elements of
/// `elem` bytes.
pub const fn struct_size(header: u64, elem: u64, n: u64) -> u64 {
    size_add(header, size_mul(n, elem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates() {
        assert_eq!(array_size(1 << 40, 1 << 30), SIZE_MAX);
        assert_eq!(array_size(10, 8), 80);
        assert_eq!(array3_size(1 << 32, 1 << 32, 2), SIZE_MAX);
        assert_eq!(struct_size(16, 8, 4), 48);
        assert_eq!(struct_size(16, 8, u64::MAX / 4), SIZE_MAX);
        assert_eq!(size_sub(3, 4), SIZE_MAX);
        assert_eq!(size_sub(SIZE_MAX, 1), SIZE_MAX);
    }
}
