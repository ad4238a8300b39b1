//! kvmalloc: kmalloc when it comes easily, vmalloc otherwise (mm/util.c, v6.12–v6.17
//! rules, which v6.18 keeps for blocking callers).
//!
//! Above a page, kmalloc is tried with `__GFP_NOWARN`, with `__GFP_NORETRY` unless the
//! caller asked for `__GFP_RETRY_MAYFAIL`, and without `__GFP_NOFAIL`; requests of a page
//! or less never fall back; sizes above INT_MAX fail with a warning; non-blocking
//! callers do not fall back; the fallback is vmalloc with huge mappings allowed.

use serde::Serialize;

use crate::context::AllocContext;
use crate::gfp::Gfp;
use crate::machine::Machine;
use crate::page::PAGE_SIZE;
use crate::slab::{CacheId, SlabError, ZERO_SIZE_PTR};
use crate::vmalloc::{is_vmalloc_addr, VmallocError, INT_MAX};

/// Which allocator served a kvmalloc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Backend {
    Kmalloc,
    Vmalloc,
}

/// A kvmalloc result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KvObj {
    pub addr: u64,
    pub backend: Backend,
    /// Usable bytes (`ksize` or the area without its guard page).
    pub size: u64,
    pub cache: Option<CacheId>,
}

/// Errors of the kvmalloc family.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error(transparent)]
    Slab(#[from] SlabError),
    #[error(transparent)]
    Vmalloc(#[from] VmallocError),
    #[error("kvmalloc of {size} bytes is above INT_MAX ({INT_MAX})")]
    TooLarge { size: u64 },
    #[error("kvmalloc of {size} bytes: kmalloc failed and a non-blocking mask ({gfp}) may not fall back to vmalloc")]
    NoFallback { size: u64, gfp: Gfp },
}

impl KvError {
    pub fn reason(&self) -> &'static str {
        match self {
            KvError::Slab(e) => e.reason(),
            KvError::Vmalloc(e) => e.reason(),
            KvError::TooLarge { .. } => "SIZE_TOO_LARGE",
            KvError::NoFallback { .. } => "OUT_OF_MEMORY",
        }
    }
}

impl Machine {
    /// `kvmalloc_node(size, gfp, node)`.
    pub fn kvmalloc_node(
        &self,
        size: u64,
        gfp: Gfp,
        node: Option<u16>,
        ctx: &AllocContext,
    ) -> Result<KvObj, KvError> {
        let gfp = ctx.scope.apply(gfp);
        let mut kgfp = gfp;
        if size > PAGE_SIZE {
            kgfp = kgfp.with(Gfp::NOWARN);
            if !kgfp.contains(Gfp::RETRY_MAYFAIL) {
                kgfp = kgfp.with(Gfp::NORETRY);
            }
            kgfp = kgfp.without(Gfp::NOFAIL);
        }
        let mut kctx = ctx.clone();
        if node.is_some() {
            kctx.node = node;
        }
        let err = match self.kmalloc(size, kgfp, &kctx) {
            Ok(o) => {
                return Ok(KvObj {
                    addr: o.addr,
                    backend: Backend::Kmalloc,
                    size: o.ksize,
                    cache: o.cache,
                })
            }
            Err(e) => e,
        };
        if size <= PAGE_SIZE {
            return Err(err.into());
        }
        if size > INT_MAX {
            if !gfp.contains(Gfp::NOWARN) {
                self.log
                    .warn(format!("WARNING: kvmalloc of {size} bytes exceeds INT_MAX"));
            }
            return Err(KvError::TooLarge { size });
        }
        if !gfp.allows_blocking() {
            return Err(KvError::NoFallback { size, gfp });
        }
        let addr = match node {
            Some(n) => self.vmalloc_node_gfp(size, gfp, n, true, &kctx)?,
            None => self.vmalloc_huge(size, gfp, &kctx)?,
        };
        let usable = self.find_vm_area(addr).map_or(size, |a| a.usable());
        Ok(KvObj {
            addr,
            backend: Backend::Vmalloc,
            size: usable,
            cache: None,
        })
    }

    /// `kvmalloc(size, gfp)`.
    pub fn kvmalloc(&self, size: u64, gfp: Gfp, ctx: &AllocContext) -> Result<KvObj, KvError> {
        self.kvmalloc_node(size, gfp, None, ctx)
    }

    /// `kvzalloc`.
    pub fn kvzalloc(&self, size: u64, gfp: Gfp, ctx: &AllocContext) -> Result<KvObj, KvError> {
        self.kvmalloc(size, gfp.with(Gfp::ZERO), ctx)
    }

    /// `kvmalloc_array`: an overflowing n × size fails, never wraps.
    pub fn kvmalloc_array(
        &self,
        n: u64,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KvObj, KvError> {
        match n.checked_mul(size) {
            Some(total) => self.kvmalloc(total, gfp, ctx),
            None => Err(KvError::TooLarge { size: u64::MAX }),
        }
    }

    /// `kvcalloc`.
    pub fn kvcalloc(
        &self,
        n: u64,
        size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KvObj, KvError> {
        self.kvmalloc_array(n, size, gfp.with(Gfp::ZERO), ctx)
    }

    /// `kvfree`: vfree or kfree, chosen by `is_vmalloc_addr`.
    pub fn kvfree(&self, addr: u64, ctx: &AllocContext) -> Result<(), KvError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(());
        }
        if is_vmalloc_addr(addr) {
            Ok(self.vfree_on(addr, ctx)?)
        } else {
            Ok(self.kfree(addr, ctx)?)
        }
    }

    /// `kvfree_sensitive(addr, len)`: zero `len` bytes, then free.
    pub fn kvfree_sensitive(&self, addr: u64, len: u64, ctx: &AllocContext) -> Result<(), KvError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(());
        }
        if is_vmalloc_addr(addr) {
            self.vwrite(addr, &vec![0u8; len as usize])?;
        } else {
            self.copy_from_user(addr, &vec![0u8; len as usize])?;
        }
        self.kvfree(addr, ctx)
    }

    /// `kvrealloc(p, size, gfp)`: reuse when the block is big enough, else move the
    /// contents to a new kvmalloc and free the old one.
    pub fn kvrealloc(
        &self,
        addr: u64,
        new_size: u64,
        gfp: Gfp,
        ctx: &AllocContext,
    ) -> Result<KvObj, KvError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return self.kvmalloc(new_size, gfp, ctx);
        }
        if new_size == 0 {
            self.kvfree(addr, ctx)?;
            return Ok(KvObj {
                addr: ZERO_SIZE_PTR,
                backend: Backend::Kmalloc,
                size: 0,
                cache: None,
            });
        }
        let (old, backend) = if is_vmalloc_addr(addr) {
            let a = self
                .find_vm_area(addr)
                .ok_or(VmallocError::NoSuchArea { addr })?;
            (a.usable(), Backend::Vmalloc)
        } else {
            (self.ksize(addr)?, Backend::Kmalloc)
        };
        if new_size <= old {
            if gfp.contains(Gfp::ZERO) {
                let zeros = vec![0u8; (old - new_size) as usize];
                match backend {
                    Backend::Vmalloc => self.vwrite(addr + new_size, &zeros)?,
                    Backend::Kmalloc => self.copy_from_user(addr + new_size, &zeros)?,
                }
            }
            let cache = self.obj_ref(addr).ok().map(|o| CacheId(o.cache));
            return Ok(KvObj {
                addr,
                backend,
                size: old,
                cache,
            });
        }
        let n = self.kvmalloc(new_size, gfp, ctx)?;
        let data = match backend {
            Backend::Vmalloc => self.vread(addr, old as usize)?,
            Backend::Kmalloc => self.copy_to_user(addr, old)?,
        };
        match n.backend {
            Backend::Vmalloc => self.vwrite(n.addr, &data)?,
            Backend::Kmalloc => self.copy_from_user(n.addr, &data)?,
        }
        self.kvfree(addr, ctx)?;
        Ok(n)
    }
}
