//! Helpers shared by the integration tests.

/// Cases for a property test: the given default, or `KMEM_PROPTEST_CASES` for a soak.
pub fn soak_cases(default: u32) -> u32 {
    std::env::var("KMEM_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
