//! Tenants: when the config lists tenants, every call must carry
//! `authorization: Bearer <token>`; a tenant charges only cgroups under its own root
//! (its allocations default to that root) and may read and write only those cgroups'
//! files. Without tenants the server is open, as a local test tool usually is.
//!
//! Differs from a kernel: the kernel has no tenants; this is the service's own
//! isolation. Frees are not owner-checked (an address is a capability, as in the kernel).

use std::collections::HashMap;
use std::sync::Arc;

use kmem_allocator::memcg::CgroupId;
use kmem_allocator::Machine;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::error::{ApiError, Detail};

/// One tenant of the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    pub token: String,
    /// The cgroup subtree the tenant owns, e.g. "/tenants/a" (created at start).
    pub cgroup: String,
}

/// Who is calling, and how long they wait (`__GFP_NOFAIL`).
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub tenant: Option<Arc<Tenant>>,
    /// The client's deadline (`grpc-timeout`) or the server's NOFAIL wait cap.
    pub deadline: Option<std::time::Instant>,
    /// Set when the client goes away, to end a NOFAIL wait.
    pub cancel: Option<kmem_allocator::CancelToken>,
}

fn under(root: &str, path: &str) -> bool {
    root == "/"
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

impl Caller {
    /// The cgroup to charge for `path` ("" = the default).
    pub fn cgroup(&self, m: &Machine, path: &str) -> Result<Option<CgroupId>, ApiError> {
        if path.is_empty() {
            return self.default_cgroup(m);
        }
        self.check_path(path)?;
        if path == "/" {
            return Ok(None);
        }
        Ok(Some(m.memcg().lookup(path)?))
    }

    pub fn default_cgroup(&self, m: &Machine) -> Result<Option<CgroupId>, ApiError> {
        match &self.tenant {
            Some(t) if t.cgroup != "/" => Ok(Some(m.memcg().lookup(&t.cgroup)?)),
            _ => Ok(None),
        }
    }

    /// May this caller act on the cgroup at `path`?
    pub fn check_path(&self, path: &str) -> Result<(), ApiError> {
        match &self.tenant {
            Some(t) if !under(&t.cgroup, path) => Err(ApiError::new(
                "TENANT_FORBIDDEN",
                format!(
                    "tenant {} may only use cgroups under {}, not {path}",
                    t.name, t.cgroup
                ),
            )
            .meta("tenant", &t.name)
            .meta("cgroup", path)
            .detail(Detail::Resource {
                kind: "cgroup",
                name: path.to_string(),
            })),
            _ => Ok(()),
        }
    }

    /// Machine-wide changes (sysctls) are for the operator, not tenants.
    pub fn check_admin(&self, what: &str) -> Result<(), ApiError> {
        match &self.tenant {
            Some(t) => Err(ApiError::new(
                "TENANT_FORBIDDEN",
                format!(
                    "tenant {} may not change {what}: it affects every tenant",
                    t.name
                ),
            )
            .meta("tenant", &t.name)),
            None => Ok(()),
        }
    }
}

/// The token table.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    by_token: HashMap<String, Arc<Tenant>>,
}

impl Auth {
    pub fn new(tenants: &[Tenant]) -> Self {
        Auth {
            by_token: tenants
                .iter()
                .map(|t| (t.token.clone(), Arc::new(t.clone())))
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.by_token.is_empty()
    }

    /// The caller a request's metadata names.
    pub fn caller(&self, md: &MetadataMap) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller::default());
        }
        let token = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    "UNAUTHENTICATED",
                    "this server has tenants: send a bearer token",
                )
            })?;
        self.by_token
            .get(token.trim())
            .map(|t| Caller {
                tenant: Some(t.clone()),
                ..Default::default()
            })
            .ok_or_else(|| ApiError::new("UNAUTHENTICATED", "unknown bearer token"))
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn subtree() {
        assert!(under("/a", "/a"));
        assert!(under("/a", "/a/b"));
        assert!(!under("/a", "/ab"));
        assert!(!under("/a", "/"));
        assert!(under("/", "/x"));
    }
}
