//! The gRPC services: thin handlers over [`crate::api::Api`].

pub mod allocator;
pub mod cgroup;
pub mod introspection;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmem_allocator::CancelToken;
use tonic::{Request, Status};

use crate::api::Api;
use crate::auth::{Auth, Caller};

/// What every service holds.
#[derive(Clone)]
pub struct Shared {
    pub api: Arc<Api>,
    pub auth: Arc<Auth>,
    pub max_batch: usize,
    pub nofail_max_wait: Duration,
    /// Longest `memory.high` throttle a call waits (zero: report only).
    pub throttle_cap: Duration,
}

impl Shared {
    /// Wait a reported `memory.high` throttle, up to the cap, without holding a
    /// worker thread (the kernel sleeps the task on its way back to user space).
    pub async fn throttle(&self, delay_ms: u64) {
        throttle(self.throttle_cap, delay_ms).await
    }
}

/// Sleep `delay_ms`, at most `cap` (nothing when either is zero).
pub async fn throttle(cap: Duration, delay_ms: u64) {
    if delay_ms > 0 && !cap.is_zero() {
        tokio::time::sleep(Duration::from_millis(delay_ms).min(cap)).await;
    }
}

impl Shared {
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        Ok(self.auth.caller(req.metadata())?)
    }

    /// A caller whose `__GFP_NOFAIL` waits end at the client's deadline (or the
    /// server's cap) and when the returned guard is dropped (the client went away).
    pub fn waiting_caller<T>(&self, req: &Request<T>) -> Result<(Caller, CancelOnDrop), Status> {
        let mut c = self.caller(req)?;
        // Give up a little before the client does, so it hears DEADLINE_EXCEEDED from
        // us rather than its own "Timeout expired".
        let wait = grpc_timeout(req).map_or(self.nofail_max_wait, |t| {
            t.saturating_sub((t / 10).max(Duration::from_millis(5)))
                .min(self.nofail_max_wait)
        });
        c.deadline = Some(Instant::now() + wait);
        let token = CancelToken::new();
        c.cancel = Some(token.clone());
        Ok((c, CancelOnDrop(token)))
    }
}

/// Cancels a NOFAIL wait when the handler's future is dropped.
pub struct CancelOnDrop(pub CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The `grpc-timeout` header: digits then one of H M S m u n.
pub fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}
