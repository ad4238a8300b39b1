//! Errors decoded from a kmemd status: the `ErrorInfo` reason picks the variant, so
//! out-of-memory, cgroup limits and bad flags are different cases, not strings.

use std::collections::HashMap;

use tonic::Code;
use tonic_types::StatusExt;

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The simulated machine has no memory for it (OUT_OF_MEMORY, NO_FREE_BLOCK,
    /// BELOW_MIN_WATERMARK, VMALLOC_SPACE_EXHAUSTED, TOO_MANY_CACHES).
    #[error("out of memory ({reason}): {message}")]
    OutOfMemory {
        reason: String,
        message: String,
        metadata: HashMap<String, String>,
    },
    /// A memory cgroup's memory.max (CGROUP_LIMIT_EXCEEDED).
    #[error("cgroup limit: {message}")]
    CgroupLimit {
        cgroup: String,
        limit_bytes: Option<u64>,
        usage_bytes: Option<u64>,
        message: String,
    },
    /// Bad GFP flags, orders, sizes, names (INVALID_ARGUMENT).
    #[error("invalid argument ({reason}{}): {message}", field.as_deref().map(|f| format!(", field {f}")).unwrap_or_default())]
    InvalidArgument {
        reason: String,
        field: Option<String>,
        message: String,
    },
    /// Unknown address, double free, unknown cache/cgroup (NOT_FOUND).
    #[error("not found ({reason}): {message}")]
    NotFound { reason: String, message: String },
    /// ALREADY_EXISTS (a cgroup).
    #[error("already exists ({reason}): {message}")]
    AlreadyExists { reason: String, message: String },
    /// The state forbids it: busy cache, usercopy violation, corruption, wrong order.
    #[error("failed precondition ({reason}): {message}")]
    FailedPrecondition { reason: String, message: String },
    /// A tenant acting outside its cgroup subtree.
    #[error("permission denied ({reason}): {message}")]
    PermissionDenied { reason: String, message: String },
    #[error("unauthenticated: {message}")]
    Unauthenticated { message: String },
    /// Anything else from the server, with its code and reason.
    #[error("{code:?} ({reason}): {message}")]
    Other {
        code: Code,
        reason: String,
        message: String,
    },
    /// No kmem ErrorInfo: the transport or gRPC library failed (connection refused,
    /// message too large, deadline, shutting down).
    #[error("transport: {0}")]
    Transport(String),
}

impl Error {
    /// The stable reason (`ErrorInfo.reason`), if the server sent one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::OutOfMemory { reason, .. }
            | Error::InvalidArgument { reason, .. }
            | Error::NotFound { reason, .. }
            | Error::AlreadyExists { reason, .. }
            | Error::FailedPrecondition { reason, .. }
            | Error::PermissionDenied { reason, .. }
            | Error::Other { reason, .. } => Some(reason),
            Error::CgroupLimit { .. } => Some("CGROUP_LIMIT_EXCEEDED"),
            Error::Unauthenticated { .. } => Some("UNAUTHENTICATED"),
            Error::Transport(_) => None,
        }
    }

    /// The gRPC code it arrived with.
    pub fn code(&self) -> Code {
        match self {
            Error::OutOfMemory { .. } | Error::CgroupLimit { .. } => Code::ResourceExhausted,
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::Other { code, .. } => *code,
            Error::Transport(_) => Code::Unavailable,
        }
    }

    /// Decode a per-item status of a Batch or Session result (`None` when OK).
    pub fn from_rpc_status(s: &tonic_types::pb::Status) -> Option<Error> {
        if s.code == 0 {
            return None;
        }
        let bytes = prost::Message::encode_to_vec(s);
        let status =
            tonic::Status::with_details(Code::from(s.code), s.message.clone(), bytes.into());
        Some(Error::from(status))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let d = s.get_error_details();
        let Some(info) = d.error_info().filter(|i| i.domain == "kmem") else {
            return Error::Transport(format!("{:?}: {}", s.code(), s.message()));
        };
        let reason = info.reason.clone();
        let message = s.message().to_string();
        match (s.code(), reason.as_str()) {
            (Code::ResourceExhausted, "CGROUP_LIMIT_EXCEEDED") => Error::CgroupLimit {
                cgroup: info.metadata.get("cgroup").cloned().unwrap_or_default(),
                limit_bytes: info.metadata.get("limitBytes").and_then(|v| v.parse().ok()),
                usage_bytes: info.metadata.get("usageBytes").and_then(|v| v.parse().ok()),
                message,
            },
            (Code::ResourceExhausted, _) => Error::OutOfMemory {
                reason,
                message,
                metadata: info.metadata.clone(),
            },
            (Code::InvalidArgument, _) => Error::InvalidArgument {
                reason,
                field: d
                    .bad_request()
                    .and_then(|b| b.field_violations.first())
                    .map(|v| v.field.clone()),
                message,
            },
            (Code::NotFound, _) => Error::NotFound { reason, message },
            (Code::AlreadyExists, _) => Error::AlreadyExists { reason, message },
            (Code::FailedPrecondition, _) => Error::FailedPrecondition { reason, message },
            (Code::PermissionDenied, _) => Error::PermissionDenied { reason, message },
            (Code::Unauthenticated, _) => Error::Unauthenticated { message },
            (code, _) => Error::Other {
                code,
                reason,
                message,
            },
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        Error::Transport(e.to_string())
    }
}
