//! [`Client`]: one connection, every kmemd RPC as a typed async method.
//!
//! The methods live in three files: this one (options, connecting), `alloc.rs` (pages,
//! kmalloc, slab caches), `vmalloc.rs` (vmalloc, kvmalloc, free, Batch, Session) and
//! `info.rs` (cgroups and introspection).

mod alloc;
mod info;
mod vmalloc;

use std::time::Duration;

use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::pb;
use crate::pb::allocator_service_client::AllocatorServiceClient;
use crate::pb::cgroup_service_client::CgroupServiceClient;
use crate::pb::introspection_service_client::IntrospectionServiceClient;

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
    /// Replace the GFP flags: `Opts::new().with_gfp("GFP_NOWAIT")`.
    pub fn with_gfp(mut self, text: &str) -> Self {
        self.0.gfp = text.to_string();
        self
    }
    /// The numeric mask instead of text: `Opts::new().gfp_mask(0xcc0)` is GFP_KERNEL.
    pub fn gfp_mask(mut self, mask: u32) -> Self {
        self.0.gfp_mask = Some(mask);
        self
    }
    /// The memory cgroup that __GFP_ACCOUNT allocations charge (`/tenants/a`).
    pub fn cgroup(mut self, path: &str) -> Self {
        self.0.cgroup = path.to_string();
        self
    }
    /// The preferred NUMA node (`kmalloc_node`, `alloc_pages_node`, `vmalloc_node`).
    pub fn node(mut self, node: u32) -> Self {
        self.0.node = Some(node);
        self
    }
    /// Run on this simulated CPU (its per-CPU page lists and slabs); without it the
    /// server picks one per worker thread, so pin it for reproducible runs.
    pub fn cpu(mut self, cpu: u32) -> Self {
        self.0.cpu = Some(cpu);
        self
    }
    /// Add a task scope (`memalloc_nofs_save` & co.): `Opts::new().scope(pb::Scope::Nofs)`.
    pub fn scope(mut self, s: pb::Scope) -> Self {
        self.0.scope.push(s as i32);
        self
    }
    /// Who allocates: shown by /proc/vmallocinfo and slab owner tracking.
    pub fn caller(mut self, tag: &str) -> Self {
        self.0.caller = tag.to_string();
        self
    }
    /// The wire message (for [`pb::BatchRequest::defaults`] or raw stubs).
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
    /// Connect (the address may be `host:port` or a `http://` URI).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kmem_client::Error> {
    /// use std::time::Duration;
    /// let c = kmem_client::Client::builder("127.0.0.1:50051")
    ///     .timeout(Duration::from_secs(2))
    ///     .token("tenant-a-secret")
    ///     .connect()
    ///     .await?;
    /// c.ping().await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kmem_client::Error> {
    /// let c = kmem_client::Client::connect("127.0.0.1:50051").await?;
    /// println!("{} CPUs", c.machine().await?.cpus);
    /// # Ok(()) }
    /// ```
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
        self.authorize(&mut r);
        r
    }

    /// Add the tenant's bearer token, if any.
    pub(crate) fn authorize<T>(&self, r: &mut Request<T>) {
        if let Some(tok) = &self.token {
            if let Ok(v) = format!("Bearer {tok}").parse() {
                r.metadata_mut().insert("authorization", v);
            }
        }
    }

    /// The raw generated allocator stub, for what the typed methods do not cover
    /// (requests made through it carry neither the deadline nor the token).
    pub fn allocator_stub(&self) -> AllocatorServiceClient<Channel> {
        self.alloc.clone()
    }
}
