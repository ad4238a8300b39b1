//! Allocator errors → gRPC status with exactly one `ErrorInfo` (domain [`DOMAIN`]) and
//! the one detail that fits: BadRequest for bad input, QuotaFailure for a cgroup limit,
//! ResourceInfo for an unknown address, cache or cgroup, PreconditionFailure for a
//! state that forbids the call. The reason strings and their classes are data in
//! `kmem_allocator::reasons`; this module only picks the details.

use std::collections::HashMap;

use kmem_allocator::memcg::MemcgError;
use kmem_allocator::page_alloc::{AllocError, FreeError};
use kmem_allocator::reasons::{class_of, hint, ErrorClass};
use kmem_allocator::{GfpError, KvError, SlabError, SysctlError, VmallocError};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every kmemd error.
pub const DOMAIN: &str = "kmem";

/// The one extra detail an error carries besides its `ErrorInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detail {
    None,
    BadRequest {
        field: &'static str,
        description: String,
    },
    Quota {
        subject: String,
        description: String,
    },
    Resource {
        kind: &'static str,
        name: String,
    },
    Precondition {
        kind: &'static str,
        subject: String,
        description: String,
    },
}

/// An error on its way to the wire.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub reason: &'static str,
    pub message: String,
    pub metadata: Vec<(&'static str, String)>,
    pub detail: Box<Detail>,
}

pub fn code_of(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorClass::Cancelled => Code::Cancelled,
        ErrorClass::Aborted => Code::Aborted,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Internal => Code::Internal,
    }
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

impl ApiError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            metadata: Vec::new(),
            detail: Box::new(Detail::None),
        }
    }
    pub fn meta(mut self, k: &'static str, v: impl ToString) -> Self {
        self.metadata.push((k, v.to_string()));
        self
    }
    pub fn detail(mut self, d: Detail) -> Self {
        self.detail = Box::new(d);
        self
    }
    pub fn bad(field: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(reason, message.clone()).detail(Detail::BadRequest {
            field,
            description: message,
        })
    }
    pub fn code(&self) -> Code {
        code_of(class_of(self.reason))
    }

    /// The status message: what happened, then what to do.
    pub fn full_message(&self) -> String {
        let h = hint(self.reason);
        if h.is_empty() {
            self.message.clone()
        } else {
            format!("{}; {h}", self.message)
        }
    }

    fn details(&self) -> ErrorDetails {
        let md: HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut d = ErrorDetails::with_error_info(self.reason, DOMAIN, md);
        match &*self.detail {
            Detail::None => {}
            Detail::BadRequest { field, description } => {
                d.add_bad_request_violation(*field, description.clone());
            }
            Detail::Quota {
                subject,
                description,
            } => {
                d.add_quota_failure_violation(subject.clone(), description.clone());
            }
            Detail::Resource { kind, name } => {
                d.set_resource_info(*kind, name.clone(), "", self.message.clone());
            }
            Detail::Precondition {
                kind,
                subject,
                description,
            } => {
                d.add_precondition_failure_violation(*kind, subject.clone(), description.clone());
            }
        }
        d
    }

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::with_error_details(self.code(), self.full_message(), self.details())
    }

    /// The same as a `google.rpc.Status` message, for per-item results of Batch and
    /// Session.
    pub fn to_rpc_status(&self) -> tonic_types::pb::Status {
        let s = self.to_status();
        prost::Message::decode(s.details()).unwrap_or_else(|_| tonic_types::pb::Status {
            code: self.code() as i32,
            message: self.full_message(),
            details: vec![],
        })
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

impl From<GfpError> for ApiError {
    fn from(e: GfpError) -> Self {
        ApiError::bad("gfp", e.reason(), e.to_string())
    }
}

impl From<MemcgError> for ApiError {
    fn from(e: MemcgError) -> Self {
        let msg = e.to_string();
        let base = ApiError::new(e.reason(), msg.clone());
        match &e {
            MemcgError::OverLimit {
                path,
                limit,
                usage,
                request,
            } => base
                .meta("cgroup", path)
                .meta("limitBytes", limit.0)
                .meta("usageBytes", usage.0)
                .meta("requestedBytes", request.0)
                .detail(Detail::Quota {
                    subject: format!("cgroups{path}"),
                    description: msg,
                }),
            MemcgError::NotFound(p) => base.meta("cgroup", p).detail(Detail::Resource {
                kind: "cgroup",
                name: p.clone(),
            }),
            MemcgError::BadPath(_) => base.detail(Detail::BadRequest {
                field: "cgroup",
                description: msg,
            }),
            MemcgError::UnknownFile(_) => base.detail(Detail::Resource {
                kind: "cgroup file",
                name: msg,
            }),
            MemcgError::BadValue { file, .. } => {
                let f = file.clone();
                base.meta("file", f).detail(Detail::BadRequest {
                    field: "value",
                    description: msg,
                })
            }
            MemcgError::Busy(p) => base.detail(Detail::Precondition {
                kind: "CGROUP_HAS_CHILDREN",
                subject: format!("cgroups{p}"),
                description: msg,
            }),
            _ => base,
        }
    }
}

impl From<AllocError> for ApiError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::Gfp(g) => g.into(),
            AllocError::Memcg(m) => m.into(),
            AllocError::InvalidOrder { order } => {
                ApiError::bad("order", e.reason(), e.to_string()).meta("order", order)
            }
            AllocError::NoSuchNode { .. } => {
                ApiError::bad("options.node", e.reason(), e.to_string())
            }
            AllocError::NoSuchCpu { .. } => ApiError::bad("options.cpu", e.reason(), e.to_string()),
            AllocError::BadRequest(_) => ApiError::bad("request", e.reason(), e.to_string()),
            AllocError::NoMemory(ref f) => {
                let mut a = ApiError::new(e.reason(), e.to_string())
                    .meta("order", f.order)
                    .meta("node", f.node)
                    .meta("gfp", f.gfp)
                    .meta("requestedBytes", 4096u64 << f.order);
                if let Some(z) = f.zones.first() {
                    a = a.meta("zone", z.zone.name());
                }
                a
            }
            AllocError::Cancelled { .. } | AllocError::DeadlineExceeded { .. } => {
                ApiError::new(e.reason(), e.to_string())
            }
        }
    }
}

impl From<FreeError> for ApiError {
    fn from(e: FreeError) -> Self {
        let msg = e.to_string();
        let a = ApiError::new(e.reason(), msg.clone());
        match e {
            FreeError::InvalidOrder { .. } => ApiError::bad("order", e.reason(), msg),
            FreeError::OutOfRange { pfn, .. } => {
                ApiError::bad("pfn", e.reason(), msg).meta("pfn", hex(pfn))
            }
            FreeError::DoubleFree { pfn, .. } | FreeError::NotAllocated { pfn } => {
                a.meta("pfn", hex(pfn)).detail(Detail::Resource {
                    kind: "page",
                    name: format!("pfn/{pfn:#x}"),
                })
            }
            FreeError::WrongOrder { pfn, .. }
            | FreeError::TailPage { pfn, .. }
            | FreeError::BadRange { pfn, .. }
            | FreeError::NotPageAllocation { pfn, .. } => {
                a.meta("pfn", hex(pfn)).detail(Detail::Precondition {
                    kind: e.reason(),
                    subject: format!("pfn/{pfn:#x}"),
                    description: msg,
                })
            }
        }
    }
}

impl From<SlabError> for ApiError {
    fn from(e: SlabError) -> Self {
        let msg = e.to_string();
        let a = ApiError::new(e.reason(), msg.clone());
        match e {
            SlabError::NoMemory(a) => a.into(),
            SlabError::BadFlags(_) => ApiError::bad("flags", e.reason(), msg),
            SlabError::BadCache { .. } => ApiError::bad("name", e.reason(), msg),
            SlabError::TooLarge { size } => {
                ApiError::bad("size", e.reason(), msg).meta("requestedBytes", size)
            }
            SlabError::NoSuchCache(id) => a.detail(Detail::Resource {
                kind: "kmem_cache",
                name: id.to_string(),
            }),
            SlabError::InvalidFree { addr, .. } => {
                a.meta("addr", hex(addr)).detail(Detail::Resource {
                    kind: "allocation",
                    name: hex(addr),
                })
            }
            SlabError::DoubleFree { addr, ref cache } => a
                .meta("addr", hex(addr))
                .meta("cache", cache)
                .detail(Detail::Resource {
                    kind: "allocation",
                    name: hex(addr),
                }),
            SlabError::CacheBusy { ref name, objects } => {
                let subject = format!("caches/{name}");
                a.meta("cache", name)
                    .meta("objects", objects)
                    .detail(Detail::Precondition {
                        kind: "CACHE_HAS_OBJECTS",
                        subject,
                        description: msg,
                    })
            }
            SlabError::Destroyed(ref name)
            | SlabError::WrongCache {
                actual: ref name, ..
            } => {
                let subject = format!("caches/{name}");
                a.detail(Detail::Precondition {
                    kind: e.reason(),
                    subject,
                    description: msg,
                })
            }
            SlabError::Corruption {
                addr, ref cache, ..
            } => {
                let subject = format!("caches/{cache}");
                a.meta("addr", hex(addr)).detail(Detail::Precondition {
                    kind: "SLAB_CORRUPTION",
                    subject,
                    description: msg,
                })
            }
            SlabError::Usercopy {
                ref cache,
                offset,
                len,
                ..
            } => {
                let subject = format!("caches/{cache}");
                a.meta("offsetBytes", offset)
                    .meta("lenBytes", len)
                    .detail(Detail::Precondition {
                        kind: "USERCOPY",
                        subject,
                        description: msg,
                    })
            }
            SlabError::TooManyCaches => a,
        }
    }
}

impl From<VmallocError> for ApiError {
    fn from(e: VmallocError) -> Self {
        let msg = e.to_string();
        let a = ApiError::new(e.reason(), msg.clone());
        match e {
            VmallocError::Memcg(m) => m.into(),
            VmallocError::Failed {
                size,
                cause: Some(c),
                ..
            } if e.reason() == "OUT_OF_MEMORY" => {
                let mut x: ApiError = c.into();
                x.message = msg;
                x.meta("requestedBytes", size)
            }
            VmallocError::Failed { size, .. } => {
                if class_of(e.reason()) == ErrorClass::InvalidArgument {
                    ApiError::bad("size", e.reason(), msg).meta("requestedBytes", size)
                } else {
                    a.meta("requestedBytes", size)
                }
            }
            VmallocError::NonBlocking { .. } => ApiError::bad("gfp", e.reason(), msg),
            VmallocError::TooLarge { size } => {
                ApiError::bad("size", e.reason(), msg).meta("requestedBytes", size)
            }
            VmallocError::NoSuchArea { addr } | VmallocError::PageFault { addr, .. } => {
                a.meta("addr", hex(addr)).detail(Detail::Resource {
                    kind: "vmalloc area",
                    name: hex(addr),
                })
            }
            VmallocError::BadPage { pfn } => a.detail(Detail::Resource {
                kind: "page",
                name: format!("pfn/{pfn:#x}"),
            }),
            VmallocError::NoSuchCpu { .. } => ApiError::bad("cpu", e.reason(), msg),
        }
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Slab(s) => s.into(),
            KvError::Vmalloc(v) => v.into(),
            KvError::TooLarge { size } => {
                ApiError::bad("size", e.reason(), e.to_string()).meta("requestedBytes", size)
            }
            KvError::NoFallback { .. } => ApiError::new(e.reason(), e.to_string()),
        }
    }
}

impl From<SysctlError> for ApiError {
    fn from(e: SysctlError) -> Self {
        match e {
            SysctlError::Unknown(ref n) => {
                let n = n.clone();
                ApiError::new(e.reason(), e.to_string()).detail(Detail::Resource {
                    kind: "sysctl",
                    name: n,
                })
            }
            SysctlError::Invalid { .. } => ApiError::bad("value", e.reason(), e.to_string()),
        }
    }
}

impl From<kmem_allocator::PhysError> for ApiError {
    fn from(e: kmem_allocator::PhysError) -> Self {
        ApiError::new(e.reason(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limit_is_resource_exhausted_with_quota_failure() {
        let e: ApiError = MemcgError::OverLimit {
            path: "/a".into(),
            limit: kmem_allocator::ByteSize(1 << 20),
            usage: kmem_allocator::ByteSize(1 << 20),
            request: kmem_allocator::ByteSize(4096),
        }
        .into();
        let s = e.to_status();
        assert_eq!(s.code(), Code::ResourceExhausted);
        let d = s.get_error_details();
        let info = d.error_info().unwrap();
        assert_eq!(info.reason, "CGROUP_LIMIT_EXCEEDED");
        assert_eq!(info.domain, "kmem");
        assert_eq!(info.metadata["limitBytes"], "1048576");
        assert_eq!(
            d.quota_failure().unwrap().violations[0].subject,
            "cgroups/a"
        );
        assert!(
            s.message().contains("raise the cgroup's memory.max"),
            "{}",
            s.message()
        );
        let rpc = e.to_rpc_status();
        assert_eq!(rpc.code, Code::ResourceExhausted as i32);
        assert_eq!(rpc.details.len(), 2);
    }

    #[test]
    fn gfp_errors_are_invalid_argument_with_bad_request() {
        let e: ApiError = kmem_allocator::Gfp::parse("GFP_KERNAL").unwrap_err().into();
        let s = e.to_status();
        assert_eq!(s.code(), Code::InvalidArgument);
        let d = s.get_error_details();
        assert_eq!(d.bad_request().unwrap().field_violations[0].field, "gfp");
        assert!(s.message().contains("GFP_KERNEL"), "{}", s.message());
    }
}
