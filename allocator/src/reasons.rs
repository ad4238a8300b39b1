//! Error reasons as data: every stable reason string the allocator reports, the class
//! of failure it belongs to and what the caller can do about it.
//!
//! Each error type's `reason()` returns one of these strings; the server maps the
//! [`ErrorClass`] to a gRPC status code and sends the reason in `ErrorInfo`, and the
//! metrics label failures with it. The strings never change once published.

/// The kind of failure, independent of any transport. The server maps each to one
/// canonical gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Wrong whatever the machine's state: bad flags, orders, sizes, names.
    InvalidArgument,
    /// The named thing (address, cache, cgroup, file) does not exist.
    NotFound,
    AlreadyExists,
    /// Out of memory, over a cgroup limit, out of vmalloc space.
    ResourceExhausted,
    /// The state forbids it: busy cache, usercopy violation, corruption, wrong size.
    FailedPrecondition,
    PermissionDenied,
    Unauthenticated,
    DeadlineExceeded,
    Cancelled,
    Aborted,
    Unavailable,
    /// A broken invariant: never a client's mistake.
    Internal,
}

/// `(reason, class, what to do)`: the catalogue.
pub const REASONS: &[(&str, ErrorClass, &str)] = {
    use ErrorClass::*;
    &[
        ("INVALID_GFP_FLAGS", InvalidArgument, "use kernel GFP names such as GFP_KERNEL|__GFP_ZERO or a mask of defined bits"),
        ("IMPOSSIBLE_GFP_MIX", InvalidArgument, "drop one of the conflicting flags (see Documentation/core-api/memory-allocation.rst)"),
        ("INVALID_ORDER", InvalidArgument, "use an order from 0 to 10 (MAX_PAGE_ORDER)"),
        ("INVALID_SIZE", InvalidArgument, "use a size of at least 1 byte"),
        ("SIZE_TOO_LARGE", InvalidArgument, "kmalloc stops at 4 MiB and kvmalloc at INT_MAX; use vmalloc for larger buffers"),
        ("NO_SUCH_NODE", InvalidArgument, "use a node the machine has (GetMachine lists them)"),
        ("NO_SUCH_CPU", InvalidArgument, "use a CPU the machine has (GetMachine lists them)"),
        ("BAD_REQUEST", InvalidArgument, "fix the request fields"),
        ("INVALID_SLAB_FLAGS", InvalidArgument, "use SLAB_* names such as SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT"),
        ("INVALID_CACHE", InvalidArgument, "give a name, a size of 1..=4 MiB and a power-of-two align"),
        ("INVALID_CGROUP_PATH", InvalidArgument, "use /, /a or /a/b with letters, digits, - _ ."),
        ("INVALID_CGROUP_VALUE", InvalidArgument, "write a byte count with an optional K/M/G suffix, or max"),
        ("INVALID_SYSCTL_VALUE", InvalidArgument, "write a value in the sysctl's range"),
        ("PFN_OUT_OF_RANGE", InvalidArgument, "use a pfn inside the machine's memory"),
        ("ADDRESS_OUT_OF_RANGE", InvalidArgument, "use an address inside the machine's memory"),
        ("BATCH_TOO_LARGE", InvalidArgument, "split the batch (the server's max_batch is in --print-config)"),
        ("OUT_OF_MEMORY", ResourceExhausted, "free memory or retry with a smaller order; the report names each zone's refusal"),
        ("NO_FREE_BLOCK", ResourceExhausted, "memory is fragmented: free blocks or ask for a smaller order"),
        ("BELOW_MIN_WATERMARK", ResourceExhausted, "free memory, or allocate with a blocking mask (GFP_KERNEL) instead of GFP_ATOMIC/GFP_NOWAIT"),
        ("VMALLOC_SPACE_EXHAUSTED", ResourceExhausted, "vfree areas first"),
        ("CGROUP_LIMIT_EXCEEDED", ResourceExhausted, "raise the cgroup's memory.max or free memory charged to it"),
        ("TOO_MANY_CACHES", ResourceExhausted, "destroy caches you no longer use"),
        ("ALLOCATION_NOT_FOUND", NotFound, "free only addresses an allocation returned"),
        ("ADDRESS_NOT_ALLOCATED", NotFound, "access only allocated memory"),
        ("INVALID_FREE", NotFound, "free only addresses an allocation returned, at their start"),
        ("DOUBLE_FREE", NotFound, "the object is already free: do not free it twice"),
        ("PAGE_FAULT", NotFound, "access only mapped vmalloc pages, not guard pages or freed areas"),
        ("INVALID_PAGE", NotFound, "vmap only allocated pages"),
        ("CACHE_NOT_FOUND", NotFound, "create the cache first or use a name from slabinfo"),
        ("CGROUP_NOT_FOUND", NotFound, "create the cgroup first (ListCgroups shows the tree)"),
        ("UNKNOWN_CGROUP_FILE", NotFound, "use a memory.* file: memory.current, memory.max, memory.stat, ..."),
        ("UNKNOWN_SYSCTL", NotFound, "use a known sysctl name"),
        ("UNKNOWN_PROC_FILE", NotFound, "use buddyinfo, pagetypeinfo, zoneinfo, meminfo, vmstat, slabinfo or vmallocinfo"),
        ("CGROUP_EXISTS", AlreadyExists, "use the existing cgroup or remove it first"),
        ("WRONG_ORDER", FailedPrecondition, "free with the order the block was allocated with"),
        ("TAIL_PAGE", FailedPrecondition, "free the head page of the block"),
        ("BAD_RANGE", FailedPrecondition, "free_pages_exact needs the address and size alloc_pages_exact returned"),
        ("NOT_A_PAGE_ALLOCATION", FailedPrecondition, "free slab objects with kfree or kmem_cache_free"),
        ("WRONG_CACHE", FailedPrecondition, "free the object to the cache it came from"),
        ("CACHE_HAS_OBJECTS", FailedPrecondition, "free the cache's remaining objects, then destroy it"),
        ("CACHE_DESTROYED", FailedPrecondition, "create the cache again"),
        ("SLAB_CORRUPTION", FailedPrecondition, "the object was overwritten outside its bounds or after free; see dmesg"),
        ("USERCOPY_VIOLATION", FailedPrecondition, "copy only inside the object's usercopy window"),
        ("CGROUP_BUSY", FailedPrecondition, "remove the cgroup's children first"),
        ("ROOT_CGROUP", FailedPrecondition, "the root cgroup has no limits and cannot be removed"),
        ("TENANT_FORBIDDEN", PermissionDenied, "act only on cgroups under your tenant's root"),
        ("UNAUTHENTICATED", Unauthenticated, "send `authorization: Bearer <token>` with a token from the server's config"),
        ("DEADLINE_EXCEEDED", DeadlineExceeded, "give the call a longer deadline or free memory"),
        ("NOFAIL_CANCELLED", Cancelled, "the caller cancelled the __GFP_NOFAIL wait"),
        ("NOT_RUN", Aborted, "an earlier operation of the batch failed with stop_on_error set"),
        ("SHUTTING_DOWN", Unavailable, "the server is draining; retry on another instance"),
        ("INTERNAL", Internal, "a bug in kmemd: please report it with the request"),
    ]
};

/// The class of a reason; unknown reasons are internal errors.
pub fn class_of(reason: &str) -> ErrorClass {
    REASONS
        .iter()
        .find(|r| r.0 == reason)
        .map_or(ErrorClass::Internal, |r| r.1)
}

/// What to do about a reason.
pub fn hint(reason: &str) -> &'static str {
    REASONS.iter().find(|r| r.0 == reason).map_or("", |r| r.2)
}

/// An error with a stable reason.
pub trait Reason: std::error::Error {
    fn reason(&self) -> &'static str;
    fn class(&self) -> ErrorClass {
        class_of(self.reason())
    }
}

macro_rules! reason_impl {
    ($($t:ty),*) => {$(
        impl Reason for $t {
            fn reason(&self) -> &'static str {
                <$t>::reason(self)
            }
        }
    )*};
}
reason_impl!(
    crate::gfp::GfpError,
    crate::page_alloc::AllocError,
    crate::page_alloc::FreeError,
    crate::slab::SlabError,
    crate::vmalloc::VmallocError,
    crate::kvmalloc::KvError,
    crate::memcg::MemcgError,
    crate::machine::SysctlError,
    crate::phys::PhysError,
    crate::proc::UnknownProcFile
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reasons_are_unique_upper_snake_and_short() {
        let mut seen = HashSet::new();
        for (r, _, hint) in REASONS {
            assert!(seen.insert(r), "{r} twice");
            assert!(r.len() <= 63);
            assert!(r
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'));
            assert!(!hint.is_empty());
        }
    }

    #[test]
    fn every_reason_the_sources_return_is_catalogued() {
        // Scan this crate's sources for `=> "REASON"` arms of reason() functions.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut missing = vec![];
        let mut found = 0;
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let Some(start) = text.find("fn reason(&self) -> &'static str {") else {
                    continue;
                };
                let body = &text[start..];
                let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
                for part in body.split("\"").skip(1).step_by(2) {
                    let upper = part.len() > 2
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit());
                    if !upper {
                        continue;
                    }
                    found += 1;
                    if class_of(part) == ErrorClass::Internal {
                        missing.push(format!("{}: {part}", path.display()));
                    }
                }
            }
        }
        assert!(found >= 40, "scanned only {found} reasons");
        assert!(
            missing.is_empty(),
            "reasons missing from REASONS: {missing:?}"
        );
    }
}
