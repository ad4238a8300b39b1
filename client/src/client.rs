//! [`Client`]: one connection, every kmemd RPC as a typed async method.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::pb;
use crate::pb::allocator_service_client::AllocatorServiceClient;
use crate::pb::cgroup_service_client::CgroupServiceClient;
use crate::pb::introspection_service_client::IntrospectionServiceClient;
use crate::Error;

/// Per-call allocation options (GFP flags, cgroup, node, CPU, scope, caller tag).
///
/// ```
/// use kmem_client::Opts;
/// let o = Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/tenants/a").node(0).caller("my_driver_init");
/// assert_eq!(o.to_pb().cgroup, "/tenants/a");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Opts(pb::AllocOptions);

impl Opts {
    /// GFP_KERNEL, root cgroup, any CPU.
    pub fn new() -> Self {
        Opts::default()
    }
    /// GFP flags in the kernel's text form (`GFP_ATOMIC|__GFP_NOWARN`) or a number.
    pub fn gfp(text: &str) -> Self {
        Opts::default().with_gfp(text)
    }
    pub fn with_gfp(mut self, text: &str) -> Self {
        self.0.gfp = text.to_string();
        self
    }
    /// The numeric mask instead of text.
    pub fn gfp_mask(mut self, mask: u32) -> Self {
        self.0.gfp_mask = Some(mask);
        self
    }
    pub fn cgroup(mut self, path: &str) -> Self {
        self.0.cgroup = path.to_string();
        self
    }
    pub fn node(mut self, node: u32) -> Self {
        self.0.node = Some(node);
        self
    }
    pub fn cpu(mut self, cpu: u32) -> Self {
        self.0.cpu = Some(cpu);
        self
    }
    pub fn scope(mut self, s: pb::Scope) -> Self {
        self.0.scope.push(s as i32);
        self
    }
    pub fn caller(mut self, tag: &str) -> Self {
        self.0.caller = tag.to_string();
        self
    }
    pub fn to_pb(&self) -> pb::AllocOptions {
        self.0.clone()
    }
    fn opt(&self) -> Option<pb::AllocOptions> {
        Some(self.0.clone())
    }
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    addr: String,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    token: Option<String>,
    max_message_size: usize,
}

impl ClientBuilder {
    /// Give up connecting after this long (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Deadline of every call (sent as grpc-timeout; ends __GFP_NOFAIL waits).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// A tenant's bearer token.
    pub fn token(mut self, t: &str) -> Self {
        self.token = Some(t.to_string());
        self
    }
    /// Largest message to send or receive (default 16 MiB, as the server).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    pub async fn connect(self) -> Result<Client, Error> {
        let addr = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        let ch = Endpoint::from_shared(addr)
            .map_err(|e| Error::Transport(format!("bad address {}: {e}", self.addr)))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .connect()
            .await?;
        Ok(Client::from_channel(ch, self))
    }
}

/// A kmemd client. Cheap to clone (the channel is shared); calls may run concurrently.
/// No call is retried: allocations are not idempotent.
#[derive(Clone, Debug)]
pub struct Client {
    alloc: AllocatorServiceClient<Channel>,
    cgroups: CgroupServiceClient<Channel>,
    intro: IntrospectionServiceClient<Channel>,
    timeout: Option<Duration>,
    token: Option<String>,
}

type R<T> = Result<T, Error>;

fn allocation(a: Option<pb::Allocation>) -> R<pb::Allocation> {
    a.ok_or_else(|| Error::Transport("response without an allocation".into()))
}

fn cache_ref(cache: &str) -> Option<pb::CacheRef> {
    Some(pb::CacheRef {
        cache: Some(match cache.parse::<u32>() {
            Ok(id) => pb::cache_ref::Cache::Id(id),
            Err(_) => pb::cache_ref::Cache::Name(cache.to_string()),
        }),
    })
}

impl Client {
    /// Settings for a connection to `addr` (`127.0.0.1:50051` or `http://…`).
    pub fn builder(addr: &str) -> ClientBuilder {
        ClientBuilder {
            addr: addr.to_string(),
            connect_timeout: Duration::from_secs(5),
            timeout: None,
            token: None,
            max_message_size: 16 << 20,
        }
    }

    /// Connect with the defaults.
    pub async fn connect(addr: &str) -> R<Client> {
        Client::builder(addr).connect().await
    }

    fn from_channel(ch: Channel, b: ClientBuilder) -> Client {
        let n = b.max_message_size;
        Client {
            alloc: AllocatorServiceClient::new(ch.clone())
                .max_decoding_message_size(n)
                .max_encoding_message_size(n),
            cgroups: CgroupServiceClient::new(ch.clone()),
            intro: IntrospectionServiceClient::new(ch).max_decoding_message_size(n),
            timeout: b.timeout,
            token: b.token,
        }
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = self.timeout {
            r.set_timeout(t);
        }
        if let Some(tok) = &self.token {
            if let Ok(v) = format!("Bearer {tok}").parse() {
                r.metadata_mut().insert("authorization", v);
            }
        }
        r
    }

    /// The raw generated stubs, for what the typed methods do not cover.
    pub fn allocator_stub(&self) -> AllocatorServiceClient<Channel> {
        self.alloc.clone()
    }

    // ---- allocator ----

    /// No-op round trip (the benchmark baseline).
    pub async fn ping(&self) -> R<()> {
        self.alloc
            .clone()
            .ping(self.req(pb::PingRequest {}))
            .await?;
        Ok(())
    }

    /// `alloc_pages(gfp, order)`.
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
    pub async fn free_pages(&self, pfn: u64, order: u32) -> R<()> {
        let r = pb::FreePagesRequest {
            pfn,
            addr: 0,
            order,
        };
        self.alloc.clone().free_pages(self.req(r)).await?;
        Ok(())
    }

    /// `alloc_pages_exact(size, gfp)`.
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
    pub async fn free_pages_exact(&self, addr: u64, size: u64) -> R<()> {
        self.alloc
            .clone()
            .free_pages_exact(self.req(pb::FreePagesExactRequest { addr, size }))
            .await?;
        Ok(())
    }

    /// `kmalloc(size, gfp)` (`kmalloc_node` with [`Opts::node`]).
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

    /// `vmalloc` family by kind (`vmalloc_node` with [`Opts::node`]).
    pub async fn vmalloc(&self, size: u64, kind: pb::VmallocKind, o: &Opts) -> R<pb::Allocation> {
        let r = pb::VmallocRequest {
            size,
            kind: kind as i32,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .vmalloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `vmalloc_huge(size, gfp)`.
    pub async fn vmalloc_huge(&self, size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::VmallocHugeRequest {
            size,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .vmalloc_huge(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `vfree(addr)`.
    pub async fn vfree(&self, addr: u64) -> R<()> {
        self.alloc
            .clone()
            .vfree(self.req(pb::VfreeRequest { addr }))
            .await?;
        Ok(())
    }

    /// `kvmalloc(size, gfp)` or `kvzalloc` with `zero`; the result names the backend.
    pub async fn kvmalloc(&self, size: u64, zero: bool, o: &Opts) -> R<pb::Allocation> {
        let r = pb::KvmallocRequest {
            size,
            options: o.opt(),
            zero,
        };
        allocation(
            self.alloc
                .clone()
                .kvmalloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kvmalloc_array` / `kvcalloc`.
    pub async fn kvmalloc_array(
        &self,
        n: u64,
        size: u64,
        zero: bool,
        o: &Opts,
    ) -> R<pb::Allocation> {
        let r = pb::KvmallocArrayRequest {
            n,
            size,
            options: o.opt(),
            zero,
        };
        allocation(
            self.alloc
                .clone()
                .kvmalloc_array(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kvrealloc(addr, new_size, gfp)`.
    pub async fn kvrealloc(&self, addr: u64, new_size: u64, o: &Opts) -> R<pb::Allocation> {
        let r = pb::KvreallocRequest {
            addr,
            new_size,
            options: o.opt(),
        };
        allocation(
            self.alloc
                .clone()
                .kvrealloc(self.req(r))
                .await?
                .into_inner()
                .allocation,
        )
    }

    /// `kvfree(addr)`.
    pub async fn kvfree(&self, addr: u64) -> R<()> {
        self.alloc
            .clone()
            .kvfree(self.req(pb::KvfreeRequest {
                addr,
                sensitive_len: 0,
                cpu: None,
            }))
            .await?;
        Ok(())
    }

    /// Free whatever lives at `addr`; says what it was.
    pub async fn free(&self, addr: u64) -> R<pb::FreeResponse> {
        Ok(self
            .alloc
            .clone()
            .free(self.req(pb::FreeRequest { addr, cpu: None }))
            .await?
            .into_inner())
    }

    /// `copy_to_user`: read `len` bytes at `addr`.
    pub async fn copy_to_user(&self, addr: u64, len: u64) -> R<Vec<u8>> {
        Ok(self
            .alloc
            .clone()
            .copy_to_user(self.req(pb::CopyToUserRequest { addr, len }))
            .await?
            .into_inner()
            .data)
    }

    /// `copy_from_user`: write `data` at `addr`.
    pub async fn copy_from_user(&self, addr: u64, data: Vec<u8>) -> R<()> {
        self.alloc
            .clone()
            .copy_from_user(self.req(pb::CopyFromUserRequest { addr, data }))
            .await?;
        Ok(())
    }

    /// Run operations in one call; one result each (see [`Error::from_rpc_status`]).
    pub async fn batch(&self, r: pb::BatchRequest) -> R<Vec<pb::OperationResult>> {
        Ok(self
            .alloc
            .clone()
            .batch(self.req(r))
            .await?
            .into_inner()
            .results)
    }

    /// Open a `Session` stream: send requests on the returned sender, read results from
    /// the stream.
    pub async fn session(
        &self,
        requests: impl tonic::IntoStreamingRequest<Message = pb::SessionRequest>,
    ) -> R<tonic::Streaming<pb::SessionResponse>> {
        let mut r = requests.into_streaming_request();
        if let Some(tok) = &self.token {
            if let Ok(v) = format!("Bearer {tok}").parse() {
                r.metadata_mut().insert("authorization", v);
            }
        }
        Ok(self.alloc.clone().session(r).await?.into_inner())
    }

    // ---- cgroups ----

    pub async fn create_cgroup(&self, path: &str) -> R<()> {
        self.cgroups
            .clone()
            .create_cgroup(self.req(pb::CreateCgroupRequest { path: path.into() }))
            .await?;
        Ok(())
    }

    pub async fn remove_cgroup(&self, path: &str) -> R<()> {
        self.cgroups
            .clone()
            .remove_cgroup(self.req(pb::RemoveCgroupRequest { path: path.into() }))
            .await?;
        Ok(())
    }

    pub async fn list_cgroups(&self) -> R<Vec<String>> {
        Ok(self
            .cgroups
            .clone()
            .list_cgroups(self.req(pb::ListCgroupsRequest {}))
            .await?
            .into_inner()
            .paths)
    }

    /// A memory.* file as the kernel prints it.
    pub async fn read_cgroup_file(&self, path: &str, file: &str) -> R<String> {
        let r = pb::ReadCgroupFileRequest {
            path: path.into(),
            file: file.into(),
        };
        Ok(self
            .cgroups
            .clone()
            .read_cgroup_file(self.req(r))
            .await?
            .into_inner()
            .text)
    }

    /// Write a memory.* file (`max`, `512M`, …).
    pub async fn write_cgroup_file(&self, path: &str, file: &str, value: &str) -> R<()> {
        let r = pb::WriteCgroupFileRequest {
            path: path.into(),
            file: file.into(),
            value: value.into(),
        };
        self.cgroups.clone().write_cgroup_file(self.req(r)).await?;
        Ok(())
    }

    pub async fn get_cgroup(&self, path: &str) -> R<pb::Cgroup> {
        self.cgroups
            .clone()
            .get_cgroup(self.req(pb::GetCgroupRequest { path: path.into() }))
            .await?
            .into_inner()
            .cgroup
            .ok_or_else(|| Error::Transport("response without a cgroup".into()))
    }

    // ---- introspection ----

    /// `/proc/<name>` byte for byte.
    pub async fn proc_file(&self, name: &str) -> R<String> {
        Ok(self
            .intro
            .clone()
            .get_proc_file(self.req(pb::GetProcFileRequest { name: name.into() }))
            .await?
            .into_inner()
            .text)
    }

    pub async fn list_proc_files(&self) -> R<Vec<String>> {
        Ok(self
            .intro
            .clone()
            .list_proc_files(self.req(pb::ListProcFilesRequest {}))
            .await?
            .into_inner()
            .names)
    }

    pub async fn meminfo(&self) -> R<Vec<pb::StatEntry>> {
        Ok(self
            .intro
            .clone()
            .get_mem_info(self.req(pb::GetMemInfoRequest {}))
            .await?
            .into_inner()
            .entries)
    }

    pub async fn vmstat(&self) -> R<Vec<pb::StatEntry>> {
        Ok(self
            .intro
            .clone()
            .get_vmstat(self.req(pb::GetVmstatRequest {}))
            .await?
            .into_inner()
            .entries)
    }

    pub async fn zones(&self) -> R<Vec<pb::Zone>> {
        Ok(self
            .intro
            .clone()
            .get_zones(self.req(pb::GetZonesRequest {}))
            .await?
            .into_inner()
            .zones)
    }

    pub async fn slab_info(&self) -> R<Vec<pb::SlabCache>> {
        Ok(self
            .intro
            .clone()
            .get_slab_info(self.req(pb::GetSlabInfoRequest {}))
            .await?
            .into_inner()
            .caches)
    }

    pub async fn vmalloc_info(&self) -> R<pb::GetVmallocInfoResponse> {
        Ok(self
            .intro
            .clone()
            .get_vmalloc_info(self.req(pb::GetVmallocInfoRequest {}))
            .await?
            .into_inner())
    }

    /// Sysctls by name (all when empty), as /proc/sys prints them.
    pub async fn sysctls(&self, names: &[&str]) -> R<Vec<pb::Sysctl>> {
        let r = pb::GetSysctlsRequest {
            names: names.iter().map(|s| s.to_string()).collect(),
        };
        Ok(self
            .intro
            .clone()
            .get_sysctls(self.req(r))
            .await?
            .into_inner()
            .sysctls)
    }

    /// Write a sysctl; returns its value as read back.
    pub async fn set_sysctl(&self, name: &str, value: &str) -> R<String> {
        let r = pb::SetSysctlRequest {
            name: name.into(),
            value: value.into(),
        };
        Ok(self
            .intro
            .clone()
            .set_sysctl(self.req(r))
            .await?
            .into_inner()
            .sysctl
            .map(|s| s.value)
            .unwrap_or_default())
    }

    pub async fn dmesg(&self) -> R<Vec<String>> {
        Ok(self
            .intro
            .clone()
            .get_dmesg(self.req(pb::GetDmesgRequest {}))
            .await?
            .into_inner()
            .lines)
    }

    pub async fn machine(&self) -> R<pb::GetMachineResponse> {
        Ok(self
            .intro
            .clone()
            .get_machine(self.req(pb::GetMachineRequest {}))
            .await?
            .into_inner())
    }
}
