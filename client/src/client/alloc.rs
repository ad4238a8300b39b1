//! The allocator service: pages, kmalloc, slab caches, vmalloc, kvmalloc, batches.

use super::{Client, Opts, R, allocation, cache_ref};
use crate::{Error, pb};

impl Client {
    /// No-op round trip (the benchmark baseline).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// c.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> R<()> {
        self.alloc
            .clone()
            .ping(self.req(pb::PingRequest {}))
            .await?;
        Ok(())
    }

    /// `alloc_pages(gfp, order)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let p = c.alloc_pages(2, &Opts::gfp("GFP_KERNEL")).await?;
    /// c.free_pages(p.pfn.unwrap_or_default(), 2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn alloc_pages(&self, order: u32, o: &Opts) -> R<pb::Allocation> {
        let r = pb::AllocPagesRequest {
            order,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .alloc_pages(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `__free_pages(pfn, order)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let p = c.alloc_pages(0, &Opts::new()).await?;
    /// c.free_pages(p.pfn.unwrap_or_default(), 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn free_pages(&self, pfn: u64, order: u32) -> R<()> {
        let r = pb::FreePagesRequest {
            pfn,
            addr: 0,
            order,
            cpu: None,
        };
        self.alloc.clone().free_pages(self.req(r)).await?;
        Ok(())
    }

    /// `__free_pages(page, order)` with the block's direct-map address instead of its pfn.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let p = c.alloc_pages(3, &Opts::new()).await?;
    /// c.free_pages_by_addr(p.addr, 3).await?;
    /// # Ok(()) }
    /// ```
    pub async fn free_pages_by_addr(&self, addr: u64, order: u32) -> R<()> {
        let r = pb::FreePagesRequest {
            pfn: 0,
            addr,
            order,
            cpu: None,
        };
        self.alloc.clone().free_pages(self.req(r)).await?;
        Ok(())
    }

    /// `alloc_pages_exact(size, gfp)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let p = c.alloc_pages_exact(12 << 10, &Opts::new()).await?;
    /// c.free_pages_exact(p.addr, 12 << 10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn alloc_pages_exact(&self, size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::AllocPagesExactRequest {
            size,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .alloc_pages_exact(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `free_pages_exact(addr, size)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let p = c.alloc_pages_exact(20 << 10, &Opts::new()).await?;
    /// c.free_pages_exact(p.addr, 20 << 10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn free_pages_exact(&self, addr: u64, size: u64) -> R<()> {
        self.alloc
            .clone()
            .free_pages_exact(self.req(pb::FreePagesExactRequest {
                addr,
                size,
                cpu: None,
            }))
            .await?;
        Ok(())
    }

    /// `kmalloc(size, gfp)` (`kmalloc_node` with [`Opts::node`]).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(96, &Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/a")).await?;
    /// assert_eq!(a.cache, "kmalloc-cg-96");
    /// c.kfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kmalloc(&self, size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::KmallocRequest {
            size,
            options: o.opt(),
            zero: false,
        };
        allocation(
            self.alloc
                .clone()
                .kmalloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kzalloc(size, gfp)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kzalloc(64, &Opts::new()).await?;
    /// assert_eq!(c.copy_to_user(a.addr, 4).await?, [0; 4]);
    /// # Ok(()) }
    /// ```
    pub async fn kzalloc(&self, size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::KmallocRequest {
            size,
            options: o.opt(),
            zero: true,
        };
        allocation(
            self.alloc
                .clone()
                .kmalloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kmalloc_array(n, size, gfp)`, or `kcalloc` with `zero`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc_array(16, 24, true, &Opts::new()).await?; // kcalloc
    /// c.kfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kmalloc_array(
        &self,
        n: u64,
        size: u64,
        zero: bool,
        o: &Opts,
    ) -> R<pb::Allocation> {
        let r = pb::KmallocArrayRequest {
            n,
            size,
            options: o.opt(),
            zero,
        };
        allocation(
            self.alloc
                .clone()
                .kmalloc_array(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `krealloc(addr, new_size, gfp)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(32, &Opts::new()).await?;
    /// let b = c.krealloc(a.addr, 200, &Opts::new()).await?;
    /// assert_eq!(b.cache, "kmalloc-256");
    /// # Ok(()) }
    /// ```
    pub async fn krealloc(&self, addr: u64, new_size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::KreallocRequest {
            addr,
            new_size,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .krealloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kfree(addr)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(8, &Opts::new()).await?;
    /// c.kfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kfree(&self, addr: u64) -> R<()> {
        self.alloc
            .clone()
            .kfree(self.req(pb::KfreeRequest {
                addr,
                sensitive: false,
                cpu: None,
            }))
            .await?;
        Ok(())
    }

    /// `kfree_sensitive(addr)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(32, &Opts::new()).await?;
    /// c.copy_from_user(a.addr, b"secret".to_vec()).await?;
    /// c.kfree_sensitive(a.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn kfree_sensitive(&self, addr: u64) -> R<()> {
        self.alloc
            .clone()
            .kfree(self.req(pb::KfreeRequest {
                addr,
                sensitive: true,
                cpu: None,
            }))
            .await?;
        Ok(())
    }

    /// `ksize(addr)`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(100, &Opts::new()).await?;
    /// assert_eq!(c.ksize(a.addr).await?, 128);
    /// # Ok(()) }
    /// ```
    pub async fn ksize(&self, addr: u64) -> R<u64> {
        Ok(self
            .alloc
            .clone()
            .ksize(self.req(pb::KsizeRequest { addr }))
            .await?
            .into_inner()
            .size)
    }

    /// `kmem_cache_create[_usercopy]`; `flags` as text (`SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT`).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let info = c
    ///     .create_cache(pb::CreateCacheRequest {
    ///         name: "my_obj".into(),
    ///         size: 72,
    ///         flags: "SLAB_HWCACHE_ALIGN".into(),
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// println!("{} objects per slab", info.objs_per_slab);
    /// # Ok(()) }
    /// ```
    pub async fn create_cache(&self, r: pb::CreateCacheRequest) -> R<pb::CacheInfo> {
        self.alloc
            .clone()
            .create_cache(self.req(r))
            .await?
            .into_inner()
            .cache
            .ok_or_else(|| Error::Transport("response without a cache".into()))
    }

    /// `kmem_cache_alloc` (`cache` is a name or a numeric id).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let o = c.cache_alloc("my_obj", false, &Opts::new()).await?;
    /// c.cache_free("my_obj", o.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cache_alloc(&self, cache: &str, zero: bool, o: &Opts) -> R<pb::Allocation> {
        let r = pb::CacheAllocRequest {
            cache: cache_ref(cache),
            options: o.opt(),
            zero,
        };
        allocation(
            self.alloc
                .clone()
                .cache_alloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kmem_cache_free`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let o = c.cache_alloc("my_obj", true, &Opts::new()).await?;
    /// c.cache_free("my_obj", o.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cache_free(&self, cache: &str, addr: u64) -> R<()> {
        let r = pb::CacheFreeRequest {
            cache: cache_ref(cache),
            addr,
            cpu: None,
        };
        self.alloc.clone().cache_free(self.req(r)).await?;
        Ok(())
    }

    /// `kmem_cache_shrink`: pages given back.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let pages = c.shrink_cache("my_obj").await?;
    /// println!("{pages} pages given back");
    /// # Ok(()) }
    /// ```
    pub async fn shrink_cache(&self, cache: &str) -> R<u64> {
        let r = pb::ShrinkCacheRequest {
            cache: cache_ref(cache),
        };
        Ok(self
            .alloc
            .clone()
            .shrink_cache(self.req(r))
            .await?
            .into_inner()
            .freed_pages)
    }

    /// `kmem_cache_destroy`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// c.destroy_cache("my_obj").await?;
    /// # Ok(()) }
    /// ```
    pub async fn destroy_cache(&self, cache: &str) -> R<()> {
        self.alloc
            .clone()
            .destroy_cache(self.req(pb::DestroyCacheRequest {
                cache: cache_ref(cache),
            }))
            .await?;
        Ok(())
    }

    /// Validate a debug cache's objects.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let v = c.validate_cache("my_obj").await?;
    /// println!("{v:?}");
    /// # Ok(()) }
    /// ```
    pub async fn validate_cache(&self, cache: &str) -> R<pb::ValidateCacheResponse> {
        let r = pb::ValidateCacheRequest {
            cache: cache_ref(cache),
        };
        Ok(self
            .alloc
            .clone()
            .validate_cache(self.req(r))
            .await?
            .into_inner())
    }
}
