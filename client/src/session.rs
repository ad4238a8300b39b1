//! [`Session`]: many operations in flight over one bidirectional `Session` stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::pb::{self, operation::Op};
use crate::{Client, Error};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<pb::OperationResult>>>>;

/// One `Session` stream shared by any number of concurrent callers: each call gets
/// an id, and a reader task hands every response to the caller that waits for it.
/// Cheaper than unary calls (no per-call HTTP/2 stream) and, unlike a Batch, each
/// operation completes on its own.
///
/// ```no_run
/// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
/// use kmem_client::{pb, pb::operation::Op, Session};
/// let s = Session::open(&c).await?;
/// let a = s
///     .exec(Op::Kmalloc(Box::new(pb::KmallocRequest { size: 64, ..Default::default() })))
///     .await?
///     .expect("an allocation");
/// s.exec(Op::Kfree(Box::new(pb::KfreeRequest { addr: a.addr, ..Default::default() }))).await?;
/// # Ok(()) }
/// ```
pub struct Session {
    tx: mpsc::UnboundedSender<pb::SessionRequest>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    next: AtomicU64,
}

fn closed() -> Error {
    Error::Transport("session stream closed".into())
}

impl Session {
    /// Open the stream (with the client's token) and start its reader task.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// let s = kmem_client::Session::open(&c).await?;
    /// s.exec(kmem_client::pb::operation::Op::Ping(Default::default())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(c: &Client) -> Result<Session, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut resp = c.session(stream).await?;
        let pending: Pending = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (pending.clone(), done.clone());
        tokio::spawn(async move {
            while let Ok(Some(m)) = resp.message().await {
                let waiter = p.lock().ok().and_then(|mut g| g.remove(&m.id));
                if let (Some(w), Some(r)) = (waiter, m.result) {
                    let _ = w.send(r);
                }
            }
            // The stream ended: every waiter (and every later call) gets an error.
            d.store(true, Ordering::SeqCst);
            if let Ok(mut g) = p.lock() {
                g.clear();
            }
        });
        Ok(Session {
            tx,
            pending,
            closed: done,
            next: AtomicU64::new(1),
        })
    }

    /// Send one operation and wait for its result as the server sent it (a failed
    /// operation is an `Ok` result with a `status`; see [`Session::exec`]).
    ///
    /// ```no_run
    /// # async fn f(s: kmem_client::Session) -> Result<(), kmem_client::Error> {
    /// use kmem_client::pb::{self, operation::Op};
    /// let r = s.call(Op::AllocPages(Box::new(pb::AllocPagesRequest { order: 2, options: None }))).await?;
    /// println!("{:?} {:?}", r.status, r.allocation);
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, op: Op) -> Result<pb::OperationResult, Error> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut g) = self.pending.lock() {
            g.insert(id, tx);
        }
        if self.closed.load(Ordering::SeqCst) {
            if let Ok(mut g) = self.pending.lock() {
                g.remove(&id);
            }
            return Err(closed());
        }
        let req = pb::SessionRequest {
            id,
            operation: Some(pb::Operation { op: Some(op) }),
        };
        self.tx.send(req).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// [`Session::call`] with a failed status turned into an [`Error`]; the
    /// allocation, if the operation made one.
    ///
    /// ```no_run
    /// # async fn f(s: kmem_client::Session) -> Result<(), kmem_client::Error> {
    /// use kmem_client::pb::{self, operation::Op};
    /// let e = s.exec(Op::Kfree(Box::new(pb::KfreeRequest { addr: 0x1234, ..Default::default() }))).await;
    /// assert!(matches!(e, Err(kmem_client::Error::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn exec(&self, op: Op) -> Result<Option<pb::Allocation>, Error> {
        let r = self.call(op).await?;
        match r.status.as_ref().and_then(Error::from_rpc_status) {
            Some(e) => Err(e),
            None => Ok(r.allocation.map(|a| *a)),
        }
    }
}
