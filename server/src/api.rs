//! The operations behind every RPC: decode the wire request into allocator arguments,
//! call the allocator, encode its answer. Unary calls, `Batch` and `Session` all go
//! through [`Api::run`] or the per-call functions here, so the three paths behave
//! the same. No allocator logic lives here.

use std::sync::Arc;

use kmem_allocator::slab::CacheArgs;
use kmem_allocator::{AllocContext, CacheId, Freed, Gfp, Machine, Scope, SlabFlags};
use kmem_client::pb;

use crate::auth::Caller;
pub use crate::convert::{mt_pb, zone_pb};
use crate::error::{ApiError, Detail};
use crate::metrics::{AllocApi, AllocMetrics};

/// Server-side limits an operation is checked against.
#[derive(Clone, Debug)]
pub struct OpLimits {
    /// Largest CopyToUser / CopyFromUser, in bytes.
    pub max_copy_bytes: u64,
}

/// The allocator as the RPC layer sees it.
pub struct Api {
    pub machine: Arc<Machine>,
    pub limits: OpLimits,
    /// Per-API size/latency histograms and failures by reason (`None`: not recorded).
    pub alloc_metrics: Option<Arc<AllocMetrics>>,
}

/// What an operation produced.
pub enum Outcome {
    Allocation(pb::Allocation),
    Data(Vec<u8>),
    Freed(pb::FreeResponse),
    Done,
}

fn u16_field(v: u32, field: &'static str) -> Result<u16, ApiError> {
    u16::try_from(v)
        .map_err(|_| ApiError::bad(field, "BAD_REQUEST", format!("{field} {v} is out of range")))
}

fn order_field(v: u32) -> Result<u8, ApiError> {
    u8::try_from(v).map_err(|_| {
        ApiError::bad(
            "order",
            "INVALID_ORDER",
            format!("order {v} is above MAX_PAGE_ORDER 10"),
        )
    })
}

/// The GFP mask of a request: the text form wins, then the numeric mask, then
/// GFP_KERNEL. Parsing the common names is a table lookup.
pub fn parse_gfp(text: &str, mask: Option<u32>) -> Result<Gfp, ApiError> {
    let from_text = match text {
        "" => None,
        "GFP_KERNEL" => Some(Gfp::GFP_KERNEL),
        "GFP_ATOMIC" => Some(Gfp::GFP_ATOMIC),
        "GFP_NOWAIT" => Some(Gfp::GFP_NOWAIT),
        "GFP_KERNEL_ACCOUNT" => Some(Gfp::GFP_KERNEL_ACCOUNT),
        t => Some(Gfp::parse(t)?),
    };
    let gfp = match (from_text, mask) {
        (Some(g), Some(m)) if g.bits() != m => {
            return Err(ApiError::bad(
                "gfp_mask",
                "INVALID_GFP_FLAGS",
                format!(
                    "gfp `{text}` ({:#x}) and gfp_mask {m:#x} disagree; send one",
                    g.bits()
                ),
            ))
        }
        (Some(g), _) => g,
        (None, Some(m)) => Gfp::from_bits(m)?,
        (None, None) => Gfp::GFP_KERNEL,
    };
    Ok(gfp.validate()?)
}

impl Api {
    pub fn new(machine: Arc<Machine>, limits: OpLimits) -> Self {
        Api {
            machine,
            limits,
            alloc_metrics: Some(Arc::new(AllocMetrics::new())),
        }
    }

    /// Record the allocation metrics into `m`, or not at all.
    pub fn with_alloc_metrics(mut self, m: Option<Arc<AllocMetrics>>) -> Self {
        self.alloc_metrics = m;
        self
    }

    /// Run an allocating operation, recording it when metrics are on.
    #[inline(always)]
    fn metered(
        &self,
        api: AllocApi,
        f: impl FnOnce() -> Result<pb::Allocation, ApiError>,
    ) -> Result<pb::Allocation, ApiError> {
        match &self.alloc_metrics {
            Some(m) => m.measure(api, f),
            None => f(),
        }
    }

    /// Options → (mask, context). `defaults` are a Batch's shared options.
    pub fn resolve(
        &self,
        o: Option<&pb::AllocOptions>,
        defaults: Option<&pb::AllocOptions>,
        caller: &Caller,
    ) -> Result<(Gfp, AllocContext), ApiError> {
        let Some(o) = o.or(defaults) else {
            let cgroup = caller.default_cgroup(&self.machine)?;
            let ctx = AllocContext {
                charge_report: cgroup.map(|_| Default::default()),
                cgroup,
                deadline: caller.deadline,
                cancel: caller.cancel.clone(),
                ..Default::default()
            };
            return Ok((Gfp::GFP_KERNEL, ctx));
        };
        let gfp = parse_gfp(&o.gfp, o.gfp_mask)?;
        let mut ctx = AllocContext {
            cgroup: caller.cgroup(&self.machine, &o.cgroup)?,
            deadline: caller.deadline,
            cancel: caller.cancel.clone(),
            ..Default::default()
        };
        if let Some(n) = o.node {
            let n = u16_field(n, "options.node")?;
            if n as usize >= self.machine.nr_nodes() {
                return Err(ApiError::bad(
                    "options.node",
                    "NO_SUCH_NODE",
                    format!(
                        "node {n} does not exist (the machine has {})",
                        self.machine.nr_nodes()
                    ),
                ));
            }
            ctx.node = Some(n);
        }
        if let Some(c) = o.cpu {
            ctx.cpu = Some(self.cpu(c)?);
        }
        for s in &o.scope {
            let s = match pb::Scope::try_from(*s) {
                Ok(pb::Scope::Nofs) => Scope::NOFS,
                Ok(pb::Scope::Noio) => Scope::NOIO,
                Ok(pb::Scope::Noreclaim) => Scope::MEMALLOC,
                Ok(pb::Scope::Pin) => Scope::PIN,
                _ => {
                    return Err(ApiError::bad(
                        "options.scope",
                        "BAD_REQUEST",
                        format!("unknown scope {s}: use NOFS, NOIO, NORECLAIM or PIN"),
                    ))
                }
            };
            ctx.scope = Scope(ctx.scope.0 | s.0);
        }
        if !o.caller.is_empty() {
            ctx.caller = Some(o.caller.as_str().into());
        }
        if ctx.cgroup.is_some() {
            ctx.charge_report = Some(Default::default());
        }
        Ok((gfp, ctx))
    }

    fn cpu(&self, c: u32) -> Result<u16, ApiError> {
        let c = u16_field(c, "cpu")?;
        if c as usize >= self.machine.nr_cpus() {
            return Err(ApiError::bad(
                "cpu",
                "NO_SUCH_CPU",
                format!(
                    "cpu {c} does not exist (the machine has {})",
                    self.machine.nr_cpus()
                ),
            ));
        }
        Ok(c)
    }

    fn free_ctx(&self, cpu: Option<u32>) -> Result<AllocContext, ApiError> {
        Ok(match cpu {
            Some(c) => AllocContext::on_cpu(self.cpu(c)?),
            None => AllocContext::default(),
        })
    }

    // ---- operations ----

    pub fn alloc_pages(
        &self,
        r: &pb::AllocPagesRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::AllocPages, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let order = order_field(r.order)?;
            let b = self.machine.alloc_pages(gfp, order, &ctx)?;
            Ok(self.charged(self.page_allocation(&b), &ctx))
        })
    }

    /// The pfn a FreePages names: its pfn, or its direct-map address.
    fn pfn_of(&self, pfn: u64, addr: u64) -> Result<u64, ApiError> {
        match (pfn, addr) {
            (0, 0) => Err(ApiError::bad(
                "pfn",
                "BAD_REQUEST",
                "give the block's pfn or its address",
            )),
            (p, 0) => Ok(p),
            (_, a)
                if a >= kmem_allocator::slab::PAGE_OFFSET && a % kmem_allocator::PAGE_SIZE == 0 =>
            {
                Ok((a - kmem_allocator::slab::PAGE_OFFSET) / kmem_allocator::PAGE_SIZE)
            }
            (_, a) => Err(ApiError::bad(
                "addr",
                "BAD_REQUEST",
                format!("{a:#x} is not a page-aligned direct-map address"),
            )),
        }
    }

    pub fn free_pages(&self, r: &pb::FreePagesRequest) -> Result<(), ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        let pfn = self.pfn_of(r.pfn, r.addr)?;
        let order = order_field(r.order)?;
        Ok(self.machine.free_pages_on(pfn, order, &ctx)?)
    }

    pub fn alloc_pages_exact(
        &self,
        r: &pb::AllocPagesExactRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::AllocPagesExact, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let b = self.machine.alloc_pages_exact(r.size, gfp, &ctx)?;
            let mut a = self.page_allocation(&b);
            a.size = r.size.next_multiple_of(kmem_allocator::PAGE_SIZE);
            Ok(self.charged(a, &ctx))
        })
    }

    pub fn free_pages_exact(&self, r: &pb::FreePagesExactRequest) -> Result<(), ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        let pfn = self.pfn_of(0, r.addr)?;
        Ok(self.machine.free_pages_exact_on(pfn, r.size, &ctx)?)
    }

    pub fn kmalloc(
        &self,
        r: &pb::KmallocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::Kmalloc, || {
            let (mut gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            if r.zero {
                gfp = gfp.with(Gfp::ZERO);
            }
            let o = match ctx.node {
                Some(n) => self.machine.kmalloc_node(r.size, gfp, n, &ctx)?,
                None => self.machine.kmalloc(r.size, gfp, &ctx)?,
            };
            Ok(self.charged(self.kmalloc_allocation(&o), &ctx))
        })
    }

    pub fn kmalloc_array(
        &self,
        r: &pb::KmallocArrayRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::KmallocArray, || {
            let (mut gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            if r.zero {
                gfp = gfp.with(Gfp::ZERO);
            }
            let o = self.machine.kmalloc_array(r.n, r.size, gfp, &ctx)?;
            Ok(self.charged(self.kmalloc_allocation(&o), &ctx))
        })
    }

    pub fn krealloc(
        &self,
        r: &pb::KreallocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::Krealloc, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let o = self.machine.krealloc(r.addr, r.new_size, gfp, &ctx)?;
            Ok(self.charged(self.kmalloc_allocation(&o), &ctx))
        })
    }

    pub fn kfree(&self, r: &pb::KfreeRequest) -> Result<(), ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        if r.sensitive {
            Ok(self.machine.kfree_sensitive(r.addr, &ctx)?)
        } else {
            Ok(self.machine.kfree(r.addr, &ctx)?)
        }
    }

    pub fn ksize(&self, addr: u64) -> Result<u64, ApiError> {
        Ok(self.machine.ksize(addr)?)
    }

    /// A cache named by id or name.
    pub fn cache(&self, r: Option<&pb::CacheRef>) -> Result<CacheId, ApiError> {
        let not_found = |name: String| {
            ApiError::new("CACHE_NOT_FOUND", format!("no slab cache `{name}`")).detail(
                Detail::Resource {
                    kind: "kmem_cache",
                    name,
                },
            )
        };
        match r.and_then(|r| r.cache.as_ref()) {
            // An unknown id is reported by the operation itself (CACHE_NOT_FOUND).
            Some(pb::cache_ref::Cache::Id(id)) => u16::try_from(*id)
                .map(CacheId)
                .map_err(|_| not_found(id.to_string())),
            // find_cache knows aliases: a merged name finds the cache it joined.
            Some(pb::cache_ref::Cache::Name(n)) => self
                .machine
                .find_cache(n)
                .ok_or_else(|| not_found(n.clone())),
            None => Err(ApiError::bad(
                "cache",
                "BAD_REQUEST",
                "name the cache by id or name",
            )),
        }
    }

    pub fn cache_info(&self, id: CacheId) -> Result<pb::CacheInfo, ApiError> {
        let i = self.machine.cache_info(id)?;
        Ok(pb::CacheInfo {
            id: id.0 as u32,
            name: i.name,
            aliases: i.aliases,
            object_size: i.object_size,
            slab_size: i.slab_size,
            align: i.align,
            order: i.order as u32,
            objs_per_slab: i.objs_per_slab,
            active_objects: i.active_objects,
            total_objects: i.objects,
            slabs: i.slabs,
            flags: i.flags,
            alloc_total: i.alloc_total,
            free_total: i.free_total,
            destroyed: i.destroyed,
        })
    }

    pub fn create_cache(&self, r: &pb::CreateCacheRequest) -> Result<pb::CacheInfo, ApiError> {
        let flags = if r.flags.is_empty() {
            SlabFlags::default()
        } else {
            SlabFlags::parse(&r.flags)?
        };
        let args = CacheArgs {
            align: r.align,
            flags,
            useroffset: r.useroffset,
            usersize: r.usersize,
            ctor: None,
        };
        let id = if r.reuse_existing {
            self.machine
                .kmem_cache_get_or_create(&r.name, r.size, args)?
        } else {
            self.machine.kmem_cache_create_args(&r.name, r.size, args)?
        };
        self.cache_info(id)
    }

    pub fn cache_alloc(
        &self,
        r: &pb::CacheAllocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::CacheAlloc, || {
            let id = self.cache(r.cache.as_ref())?;
            let (mut gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            if r.zero {
                gfp = gfp.with(Gfp::ZERO);
            }
            let addr = match ctx.node {
                Some(n) => self.machine.kmem_cache_alloc_node(id, gfp, n, &ctx)?,
                None => self.machine.kmem_cache_alloc(id, gfp, &ctx)?,
            };
            let size = self.machine.ksize(addr)?;
            Ok(self.charged(
                self.located(addr, size, pb::Backend::Slab, Some(id), None),
                &ctx,
            ))
        })
    }

    pub fn cache_free(&self, r: &pb::CacheFreeRequest) -> Result<(), ApiError> {
        let id = self.cache(r.cache.as_ref())?;
        let ctx = self.free_ctx(r.cpu)?;
        Ok(self.machine.kmem_cache_free(id, r.addr, &ctx)?)
    }

    pub fn vmalloc(
        &self,
        r: &pb::VmallocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::Vmalloc, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let m = &self.machine;
            let kind = pb::VmallocKind::try_from(r.kind).map_err(|_| {
                ApiError::bad(
                    "kind",
                    "BAD_REQUEST",
                    format!("unknown vmalloc kind {}", r.kind),
                )
            })?;
            let addr = match (kind, ctx.node) {
                (pb::VmallocKind::Unspecified, None) => m.__vmalloc(r.size, gfp, &ctx)?,
                (pb::VmallocKind::Unspecified, Some(n)) => m.vmalloc_node(r.size, n, &ctx)?,
                (pb::VmallocKind::Vzalloc, None) => {
                    m.__vmalloc(r.size, gfp.with(Gfp::ZERO), &ctx)?
                }
                (pb::VmallocKind::Vzalloc, Some(n)) => m.vzalloc_node(r.size, n, &ctx)?,
                (pb::VmallocKind::User, _) => m.vmalloc_user(r.size, &ctx)?,
                (pb::VmallocKind::Vmalloc32, _) => m.vmalloc_32(r.size, &ctx)?,
                (pb::VmallocKind::Gfp, _) => m.__vmalloc(r.size, gfp, &ctx)?,
            };
            Ok(self.charged(self.vmalloc_allocation(addr), &ctx))
        })
    }

    pub fn vmalloc_huge(
        &self,
        r: &pb::VmallocHugeRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::VmallocHuge, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let addr = self.machine.vmalloc_huge(r.size, gfp, &ctx)?;
            Ok(self.charged(self.vmalloc_allocation(addr), &ctx))
        })
    }

    pub fn vfree(&self, r: &pb::VfreeRequest) -> Result<(), ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        Ok(self.machine.vfree_on(r.addr, &ctx)?)
    }

    pub fn kvmalloc(
        &self,
        r: &pb::KvmallocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::Kvmalloc, || {
            let (mut gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            if r.zero {
                gfp = gfp.with(Gfp::ZERO);
            }
            let o = self.machine.kvmalloc_node(r.size, gfp, ctx.node, &ctx)?;
            Ok(self.charged(self.kv_allocation(&o), &ctx))
        })
    }

    pub fn kvmalloc_array(
        &self,
        r: &pb::KvmallocArrayRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::KvmallocArray, || {
            let (mut gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            if r.zero {
                gfp = gfp.with(Gfp::ZERO);
            }
            let o = self.machine.kvmalloc_array(r.n, r.size, gfp, &ctx)?;
            Ok(self.charged(self.kv_allocation(&o), &ctx))
        })
    }

    pub fn kvrealloc(
        &self,
        r: &pb::KvreallocRequest,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<pb::Allocation, ApiError> {
        self.metered(AllocApi::Kvrealloc, || {
            let (gfp, ctx) = self.resolve(r.options.as_ref(), d, c)?;
            let o = self.machine.kvrealloc(r.addr, r.new_size, gfp, &ctx)?;
            Ok(self.charged(self.kv_allocation(&o), &ctx))
        })
    }

    pub fn kvfree(&self, r: &pb::KvfreeRequest) -> Result<(), ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        if r.sensitive_len > 0 {
            Ok(self
                .machine
                .kvfree_sensitive(r.addr, r.sensitive_len, &ctx)?)
        } else {
            Ok(self.machine.kvfree(r.addr, &ctx)?)
        }
    }

    pub fn free(&self, r: &pb::FreeRequest) -> Result<pb::FreeResponse, ApiError> {
        let ctx = self.free_ctx(r.cpu)?;
        let f = self.machine.free_addr(r.addr, &ctx)?;
        let page = kmem_allocator::PAGE_SIZE;
        let (backend, size) = match f {
            Freed::Nothing => (pb::Backend::Unspecified, 0),
            Freed::Pages { order } => (pb::Backend::Pages, page << order),
            Freed::Slab { ksize } => (pb::Backend::Slab, ksize),
            Freed::LargeKmalloc { order } => (pb::Backend::LargeKmalloc, page << order),
            Freed::Vmalloc { size } => (pb::Backend::Vmalloc, size),
        };
        Ok(pb::FreeResponse {
            backend: backend as i32,
            size,
        })
    }

    fn check_copy(&self, len: u64) -> Result<(), ApiError> {
        if len > self.limits.max_copy_bytes {
            return Err(ApiError::bad(
                "len",
                "SIZE_TOO_LARGE",
                format!(
                    "copies are limited to {} bytes per call",
                    self.limits.max_copy_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn copy_to_user(&self, r: &pb::CopyToUserRequest) -> Result<Vec<u8>, ApiError> {
        self.check_copy(r.len)?;
        Ok(self.machine.copy_to_user(r.addr, r.len)?)
    }

    pub fn copy_from_user(&self, r: &pb::CopyFromUserRequest) -> Result<(), ApiError> {
        self.check_copy(r.data.len() as u64)?;
        Ok(self.machine.copy_from_user(r.addr, &r.data)?)
    }

    /// One operation of a Batch or Session.
    pub fn run(
        &self,
        op: &pb::operation::Op,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> Result<Outcome, ApiError> {
        use pb::operation::Op;
        use Outcome::*;
        Ok(match op {
            Op::AllocPages(r) => Allocation(self.alloc_pages(r, d, c)?),
            Op::FreePages(r) => self.free_pages(r).map(|_| Done)?,
            Op::Kmalloc(r) => Allocation(self.kmalloc(r, d, c)?),
            Op::Kfree(r) => self.kfree(r).map(|_| Done)?,
            Op::CacheAlloc(r) => Allocation(self.cache_alloc(r, d, c)?),
            Op::CacheFree(r) => self.cache_free(r).map(|_| Done)?,
            Op::Vmalloc(r) => Allocation(self.vmalloc(r, d, c)?),
            Op::Vfree(r) => self.vfree(r).map(|_| Done)?,
            Op::Kvmalloc(r) => Allocation(self.kvmalloc(r, d, c)?),
            Op::Kvfree(r) => self.kvfree(r).map(|_| Done)?,
            Op::Krealloc(r) => Allocation(self.krealloc(r, d, c)?),
            Op::Free(r) => Freed(self.free(r)?),
            Op::CopyToUser(r) => Data(self.copy_to_user(r)?),
            Op::CopyFromUser(r) => self.copy_from_user(r).map(|_| Done)?,
            Op::KmallocArray(r) => Allocation(self.kmalloc_array(r, d, c)?),
            Op::KvmallocArray(r) => Allocation(self.kvmalloc_array(r, d, c)?),
            Op::AllocPagesExact(r) => Allocation(self.alloc_pages_exact(r, d, c)?),
            Op::FreePagesExact(r) => self.free_pages_exact(r).map(|_| Done)?,
            Op::Ping(_) => Done,
        })
    }

    /// [`Api::run`] as a per-item result.
    pub fn run_result(
        &self,
        op: Option<&pb::operation::Op>,
        d: Option<&pb::AllocOptions>,
        c: &Caller,
    ) -> pb::OperationResult {
        let r = match op {
            Some(op) => self.run(op, d, c),
            None => Err(ApiError::bad("operation", "BAD_REQUEST", "empty operation")),
        };
        match r {
            Ok(Outcome::Allocation(a)) => pb::OperationResult {
                status: None,
                allocation: Some(Box::new(a)),
                data: vec![],
            },
            Ok(Outcome::Data(data)) => pb::OperationResult {
                status: None,
                allocation: None,
                data,
            },
            Ok(Outcome::Freed(f)) => pb::OperationResult {
                status: None,
                allocation: Some(Box::new(pb::Allocation {
                    backend: f.backend,
                    size: f.size,
                    ..Default::default()
                })),
                data: vec![],
            },
            Ok(Outcome::Done) => pb::OperationResult {
                status: None,
                allocation: None,
                data: vec![],
            },
            Err(e) => pb::OperationResult {
                status: Some(e.to_rpc_status()),
                allocation: None,
                data: vec![],
            },
        }
    }
}

/// Whether an operation may wait (`__GFP_NOFAIL`): it then runs off the async workers.
pub fn may_wait(op: &pb::operation::Op, d: Option<&pb::AllocOptions>) -> bool {
    use pb::operation::Op;
    let o = match op {
        Op::AllocPages(r) => r.options.as_ref(),
        Op::Kmalloc(r) => r.options.as_ref(),
        Op::CacheAlloc(r) => r.options.as_ref(),
        Op::Vmalloc(r) => r.options.as_ref(),
        Op::Kvmalloc(r) => r.options.as_ref(),
        Op::Krealloc(r) => r.options.as_ref(),
        Op::KmallocArray(r) => r.options.as_ref(),
        Op::KvmallocArray(r) => r.options.as_ref(),
        Op::AllocPagesExact(r) => r.options.as_ref(),
        _ => return false,
    };
    options_may_wait(o.or(d))
}

/// `__GFP_NOFAIL` in the options' mask (a malformed mask fails later, not here).
pub fn options_may_wait(o: Option<&pb::AllocOptions>) -> bool {
    o.is_some_and(|o| parse_gfp(&o.gfp, o.gfp_mask).is_ok_and(|g| g.contains(Gfp::NOFAIL)))
}
