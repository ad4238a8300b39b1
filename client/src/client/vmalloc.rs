//! vmalloc, kvmalloc, the generic free, user copies, Batch and Session.

use super::{Client, Opts, R, allocation};
use crate::pb;

impl Client {
    /// `vmalloc` family by kind (`vmalloc_node` with [`Opts::node`]).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let v = c.vmalloc(1 << 20, pb::VmallocKind::Unspecified, &Opts::new()).await?;
    /// c.vfree(v.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let v = c.vmalloc_huge(4 << 20, &Opts::new()).await?;
    /// c.vfree(v.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let v = c.vmalloc(64 << 10, pb::VmallocKind::Unspecified, &Opts::new()).await?;
    /// c.vfree(v.addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn vfree(&self, addr: u64) -> R<()> {
        self.alloc
            .clone()
            .vfree(self.req(pb::VfreeRequest { addr, cpu: None }))
            .await?;
        Ok(())
    }

    /// `kvmalloc(size, gfp)` or `kvzalloc` with `zero`; the result names the backend.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kvmalloc(8 << 20, false, &Opts::new()).await?;
    /// println!("served by backend {:?}", a.backend());
    /// c.kvfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kvmalloc_array(1024, 4096, true, &Opts::new()).await?; // kvcalloc
    /// c.kvfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kvmalloc(4096, false, &Opts::new()).await?;
    /// let b = c.kvrealloc(a.addr, 1 << 20, &Opts::new()).await?;
    /// c.kvfree(b.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kvmalloc(100 << 10, false, &Opts::new()).await?;
    /// c.kvfree(a.addr).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.vmalloc(8192, pb::VmallocKind::Unspecified, &Opts::new()).await?;
    /// let f = c.free(a.addr).await?;
    /// assert_eq!(f.backend(), pb::Backend::Vmalloc);
    /// # Ok(()) }
    /// ```
    pub async fn free(&self, addr: u64) -> R<pb::FreeResponse> {
        Ok(self
            .alloc
            .clone()
            .free(self.req(pb::FreeRequest { addr, cpu: None }))
            .await?
            .into_inner())
    }

    /// [`Client::free`] on a given simulated CPU (its per-CPU lists receive what is
    /// freed), so that a replayed run frees exactly as the recorded one did.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(64, &Opts::new().cpu(1)).await?;
    /// c.free_on(a.addr, Some(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn free_on(&self, addr: u64, cpu: Option<u32>) -> R<pb::FreeResponse> {
        Ok(self
            .alloc
            .clone()
            .free(self.req(pb::FreeRequest { addr, cpu }))
            .await?
            .into_inner())
    }

    /// `copy_to_user`: read `len` bytes at `addr`.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(16, &Opts::new()).await?;
    /// c.copy_from_user(a.addr, b"hi".to_vec()).await?;
    /// assert_eq!(c.copy_to_user(a.addr, 2).await?, b"hi");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let a = c.kmalloc(16, &Opts::new()).await?;
    /// c.copy_from_user(a.addr, vec![0xde, 0xad]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn copy_from_user(&self, addr: u64, data: Vec<u8>) -> R<()> {
        self.alloc
            .clone()
            .copy_from_user(self.req(pb::CopyFromUserRequest { addr, data }))
            .await?;
        Ok(())
    }

    /// Run operations in one call; one result each (see [`Error::from_rpc_status`]).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// use pb::operation::Op;
    /// let op = Op::Kmalloc(Box::new(pb::KmallocRequest { size: 64, ..Default::default() }));
    /// let results = c
    ///     .batch(pb::BatchRequest {
    ///         operations: vec![pb::Operation { op: Some(op) }; 8],
    ///         defaults: Some(Opts::gfp("GFP_KERNEL").to_pb()),
    ///         stop_on_error: false,
    ///     })
    ///     .await?;
    /// for r in &results {
    ///     if let Some(e) = r.status.as_ref().and_then(kmem_client::Error::from_rpc_status) {
    ///         eprintln!("{e}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// // Prefer kmem_client::Session, which multiplexes calls over the stream.
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// let mut responses = c.session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await?;
    /// let op = pb::operation::Op::Ping(Box::new(pb::PingRequest {}));
    /// tx.send(pb::SessionRequest { id: 1, operation: Some(pb::Operation { op: Some(op) }) }).ok();
    /// let first = responses.message().await?;
    /// assert_eq!(first.map(|m| m.id), Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn session(
        &self,
        requests: impl tonic::IntoStreamingRequest<Message = pb::SessionRequest>,
    ) -> R<tonic::Streaming<pb::SessionResponse>> {
        let mut r = requests.into_streaming_request();
        self.authorize(&mut r);
        Ok(self.alloc.clone().session(r).await?.into_inner())
    }
}
