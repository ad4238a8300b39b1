//! `kmem.v1.AllocatorService`.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use kmem_allocator::AllocContext;
use kmem_client::pb;
use kmem_client::pb::allocator_service_server::AllocatorService;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::api::{may_wait, options_may_wait, Api};
use crate::auth::Caller;
use crate::error::ApiError;

pub struct AllocatorSvc {
    pub shared: Shared,
}

type AllocFn<R> = fn(&Api, &R, &Caller) -> Result<pb::Allocation, ApiError>;

impl AllocatorSvc {
    /// Run an allocating call: inline on the async worker, or — when the mask has
    /// `__GFP_NOFAIL` and the call may wait for memory — on the blocking pool, ending
    /// the wait at the deadline or when the client goes away. An allocation that
    /// completes after the client left is freed again, so nothing leaks.
    async fn alloc<R: Send + Sync + 'static>(
        &self,
        req: Request<R>,
        opts: fn(&R) -> Option<&pb::AllocOptions>,
        f: AllocFn<R>,
    ) -> Result<pb::Allocation, Status> {
        if !options_may_wait(opts(req.get_ref())) {
            let caller = self.shared.caller(&req)?;
            let a = f(&self.shared.api, req.get_ref(), &caller)?;
            self.shared.throttle(a.memory_high_delay_ms).await;
            return Ok(a);
        }
        let (caller, guard) = self.shared.waiting_caller(&req)?;
        let r = req.into_inner();
        let api = self.shared.api.clone();
        let token = guard.0.clone();
        let out = tokio::task::spawn_blocking(move || {
            let out = f(&api, &r, &caller);
            if let (Ok(a), true) = (&out, token.is_cancelled()) {
                let _ = api.machine.free_addr(a.addr, &AllocContext::default());
            }
            out
        })
        .await
        .map_err(|e| Status::internal(format!("allocation task failed: {e}")))?;
        drop(guard);
        let a = out?;
        self.shared.throttle(a.memory_high_delay_ms).await;
        Ok(a)
    }

    fn plain<R>(&self, req: &Request<R>) -> Result<Caller, Status> {
        self.shared.caller(req)
    }
}

fn done<T>(r: Result<(), ApiError>, t: T) -> Result<Response<T>, Status> {
    r.map(|_| Response::new(t)).map_err(Into::into)
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AllocatorService for AllocatorSvc {
    async fn ping(
        &self,
        _req: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {}))
    }

    async fn alloc_pages(
        &self,
        req: Request<pb::AllocPagesRequest>,
    ) -> Result<Response<pb::AllocPagesResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.alloc_pages(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::AllocPagesResponse {
            allocation: Some(a),
        }))
    }

    async fn free_pages(
        &self,
        req: Request<pb::FreePagesRequest>,
    ) -> Result<Response<pb::FreePagesResponse>, Status> {
        self.plain(&req)?;
        done(
            self.shared.api.free_pages(req.get_ref()),
            pb::FreePagesResponse {},
        )
    }

    async fn alloc_pages_exact(
        &self,
        req: Request<pb::AllocPagesExactRequest>,
    ) -> Result<Response<pb::AllocPagesExactResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.alloc_pages_exact(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::AllocPagesExactResponse {
            allocation: Some(a),
        }))
    }

    async fn free_pages_exact(
        &self,
        req: Request<pb::FreePagesExactRequest>,
    ) -> Result<Response<pb::FreePagesExactResponse>, Status> {
        self.plain(&req)?;
        done(
            self.shared.api.free_pages_exact(req.get_ref()),
            pb::FreePagesExactResponse {},
        )
    }

    async fn kmalloc(
        &self,
        req: Request<pb::KmallocRequest>,
    ) -> Result<Response<pb::KmallocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.kmalloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KmallocResponse {
            allocation: Some(a),
        }))
    }

    async fn kmalloc_array(
        &self,
        req: Request<pb::KmallocArrayRequest>,
    ) -> Result<Response<pb::KmallocArrayResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.kmalloc_array(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KmallocArrayResponse {
            allocation: Some(a),
        }))
    }

    async fn krealloc(
        &self,
        req: Request<pb::KreallocRequest>,
    ) -> Result<Response<pb::KreallocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.krealloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KreallocResponse {
            allocation: Some(a),
        }))
    }

    async fn kfree(
        &self,
        req: Request<pb::KfreeRequest>,
    ) -> Result<Response<pb::KfreeResponse>, Status> {
        self.plain(&req)?;
        done(self.shared.api.kfree(req.get_ref()), pb::KfreeResponse {})
    }

    async fn ksize(
        &self,
        req: Request<pb::KsizeRequest>,
    ) -> Result<Response<pb::KsizeResponse>, Status> {
        self.plain(&req)?;
        let size = self.shared.api.ksize(req.get_ref().addr)?;
        Ok(Response::new(pb::KsizeResponse { size }))
    }

    async fn create_cache(
        &self,
        req: Request<pb::CreateCacheRequest>,
    ) -> Result<Response<pb::CreateCacheResponse>, Status> {
        self.plain(&req)?;
        let cache = self.shared.api.create_cache(req.get_ref())?;
        Ok(Response::new(pb::CreateCacheResponse {
            cache: Some(cache),
        }))
    }

    async fn cache_alloc(
        &self,
        req: Request<pb::CacheAllocRequest>,
    ) -> Result<Response<pb::CacheAllocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.cache_alloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::CacheAllocResponse {
            allocation: Some(a),
        }))
    }

    async fn cache_free(
        &self,
        req: Request<pb::CacheFreeRequest>,
    ) -> Result<Response<pb::CacheFreeResponse>, Status> {
        self.plain(&req)?;
        done(
            self.shared.api.cache_free(req.get_ref()),
            pb::CacheFreeResponse {},
        )
    }

    async fn shrink_cache(
        &self,
        req: Request<pb::ShrinkCacheRequest>,
    ) -> Result<Response<pb::ShrinkCacheResponse>, Status> {
        self.plain(&req)?;
        let api = &self.shared.api;
        let id = api.cache(req.get_ref().cache.as_ref())?;
        let freed_pages = api.machine.kmem_cache_shrink(id).map_err(ApiError::from)?;
        Ok(Response::new(pb::ShrinkCacheResponse { freed_pages }))
    }

    async fn destroy_cache(
        &self,
        req: Request<pb::DestroyCacheRequest>,
    ) -> Result<Response<pb::DestroyCacheResponse>, Status> {
        self.plain(&req)?;
        let api = &self.shared.api;
        let id = api.cache(req.get_ref().cache.as_ref())?;
        api.machine.kmem_cache_destroy(id).map_err(ApiError::from)?;
        Ok(Response::new(pb::DestroyCacheResponse {}))
    }

    async fn validate_cache(
        &self,
        req: Request<pb::ValidateCacheRequest>,
    ) -> Result<Response<pb::ValidateCacheResponse>, Status> {
        self.plain(&req)?;
        let api = &self.shared.api;
        let id = api.cache(req.get_ref().cache.as_ref())?;
        let r = api
            .machine
            .kmem_cache_validate(id)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ValidateCacheResponse {
            cache: r.cache,
            slabs: r.slabs,
            objects: r.objects,
            errors: r.errors,
        }))
    }

    async fn vmalloc(
        &self,
        req: Request<pb::VmallocRequest>,
    ) -> Result<Response<pb::VmallocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.vmalloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::VmallocResponse {
            allocation: Some(a),
        }))
    }

    async fn vmalloc_huge(
        &self,
        req: Request<pb::VmallocHugeRequest>,
    ) -> Result<Response<pb::VmallocHugeResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.vmalloc_huge(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::VmallocHugeResponse {
            allocation: Some(a),
        }))
    }

    async fn vfree(
        &self,
        req: Request<pb::VfreeRequest>,
    ) -> Result<Response<pb::VfreeResponse>, Status> {
        self.plain(&req)?;
        done(self.shared.api.vfree(req.get_ref()), pb::VfreeResponse {})
    }

    async fn kvmalloc(
        &self,
        req: Request<pb::KvmallocRequest>,
    ) -> Result<Response<pb::KvmallocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.kvmalloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KvmallocResponse {
            allocation: Some(a),
        }))
    }

    async fn kvmalloc_array(
        &self,
        req: Request<pb::KvmallocArrayRequest>,
    ) -> Result<Response<pb::KvmallocArrayResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.kvmalloc_array(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KvmallocArrayResponse {
            allocation: Some(a),
        }))
    }

    async fn kvrealloc(
        &self,
        req: Request<pb::KvreallocRequest>,
    ) -> Result<Response<pb::KvreallocResponse>, Status> {
        let a = self
            .alloc(
                req,
                |r| r.options.as_ref(),
                |api, r, c| api.kvrealloc(r, None, c),
            )
            .await?;
        Ok(Response::new(pb::KvreallocResponse {
            allocation: Some(a),
        }))
    }

    async fn kvfree(
        &self,
        req: Request<pb::KvfreeRequest>,
    ) -> Result<Response<pb::KvfreeResponse>, Status> {
        self.plain(&req)?;
        done(self.shared.api.kvfree(req.get_ref()), pb::KvfreeResponse {})
    }

    async fn free(
        &self,
        req: Request<pb::FreeRequest>,
    ) -> Result<Response<pb::FreeResponse>, Status> {
        self.plain(&req)?;
        Ok(Response::new(self.shared.api.free(req.get_ref())?))
    }

    async fn copy_to_user(
        &self,
        req: Request<pb::CopyToUserRequest>,
    ) -> Result<Response<pb::CopyToUserResponse>, Status> {
        self.plain(&req)?;
        let data = self.shared.api.copy_to_user(req.get_ref())?;
        Ok(Response::new(pb::CopyToUserResponse { data }))
    }

    async fn copy_from_user(
        &self,
        req: Request<pb::CopyFromUserRequest>,
    ) -> Result<Response<pb::CopyFromUserResponse>, Status> {
        self.plain(&req)?;
        done(
            self.shared.api.copy_from_user(req.get_ref()),
            pb::CopyFromUserResponse {},
        )
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let n = req.get_ref().operations.len();
        if n > self.shared.max_batch {
            return Err(ApiError::bad(
                "operations",
                "BATCH_TOO_LARGE",
                format!(
                    "{n} operations in one batch; this server takes at most {}",
                    self.shared.max_batch
                ),
            )
            .meta("maxBatch", self.shared.max_batch)
            .into());
        }
        let r = req.get_ref();
        let waits = r.operations.iter().any(|o| {
            o.op.as_ref()
                .is_some_and(|op| may_wait(op, r.defaults.as_ref()))
        });
        let run = |api: &Api, r: &pb::BatchRequest, caller: &Caller| {
            let mut results = Vec::with_capacity(r.operations.len());
            let mut failed = false;
            for o in &r.operations {
                if failed {
                    results.push(pb::OperationResult {
                        status: Some(
                            ApiError::new("NOT_RUN", "not run: an earlier operation failed")
                                .to_rpc_status(),
                        ),
                        ..Default::default()
                    });
                    continue;
                }
                let res = api.run_result(o.op.as_ref(), r.defaults.as_ref(), caller);
                failed = r.stop_on_error && res.status.as_ref().is_some_and(|s| s.code != 0);
                results.push(res);
            }
            pb::BatchResponse { results }
        };
        let delay = |r: &pb::BatchResponse| {
            r.results
                .iter()
                .filter_map(|x| x.allocation.as_ref())
                .map(|a| a.memory_high_delay_ms)
                .sum::<u64>()
                .min(kmem_allocator::ChargeReport::MAX_DELAY_MS)
        };
        if !waits {
            let caller = self.shared.caller(&req)?;
            let out = run(&self.shared.api, req.get_ref(), &caller);
            self.shared.throttle(delay(&out)).await;
            return Ok(Response::new(out));
        }
        let (caller, guard) = self.shared.waiting_caller(&req)?;
        let r = req.into_inner();
        let api = self.shared.api.clone();
        let out = tokio::task::spawn_blocking(move || run(&api, &r, &caller))
            .await
            .map_err(|e| Status::internal(format!("batch task failed: {e}")))?;
        drop(guard);
        self.shared.throttle(delay(&out)).await;
        Ok(Response::new(out))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<SessionStream>, Status> {
        let caller = self.shared.caller(&req)?;
        let max_wait = self.shared.nofail_max_wait;
        let cap = self.shared.throttle_cap;
        // Dropped with the response stream: cancels NOFAIL waits of a gone client.
        let guard = super::CancelOnDrop(kmem_allocator::CancelToken::new());
        let api = self.shared.api.clone();
        let inbound = req.into_inner();
        // Results are produced as tonic pulls them; ops that may wait go to the
        // blocking pool, the rest run inline. The stream ends when the client ends it;
        // an item's error is in its result and never ends the stream.
        let out = inbound.then(move |msg| {
            let api = api.clone();
            let mut caller = caller.clone();
            let token = guard.0.clone();
            async move {
                let m = msg?;
                let id = m.id;
                let op = m.operation.as_ref().and_then(|o| o.op.as_ref());
                let result = if op.is_some_and(|op| may_wait(op, None)) {
                    caller.deadline = Some(std::time::Instant::now() + max_wait);
                    caller.cancel = Some(token);
                    tokio::task::spawn_blocking(move || {
                        let op = m.operation.as_ref().and_then(|o| o.op.as_ref());
                        api.run_result(op, None, &caller)
                    })
                    .await
                    .map_err(|e| Status::internal(format!("session task failed: {e}")))?
                } else {
                    api.run_result(op, None, &caller)
                };
                if let Some(a) = &result.allocation {
                    // The memory.high throttle delays this stream's next result, as
                    // the kernel delays the task's next step.
                    super::throttle(cap, a.memory_high_delay_ms).await;
                }
                Ok(pb::SessionResponse {
                    id,
                    result: Some(result),
                })
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}
