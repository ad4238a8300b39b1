//! kmem-server: the kmemd daemon as a library, so tests can start it in-process on
//! `127.0.0.1:0` exactly as the binary does.
//!
//! Data flows one way: RPC → handler (decode, authorise) → allocator call → encode.
//! Handlers live in [`grpc`], the shared decode/encode in [`api`], errors in [`error`].
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod rpc_metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kmem_allocator::Machine;
use kmem_client::pb;
use kmem_client::pb::allocator_service_server::AllocatorServiceServer;
use kmem_client::pb::cgroup_service_server::CgroupServiceServer;
use kmem_client::pb::introspection_service_server::IntrospectionServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::api::{Api, OpLimits};
use crate::auth::Auth;
use crate::config::Config;
use crate::grpc::allocator::AllocatorSvc;
use crate::grpc::cgroup::CgroupSvc;
use crate::grpc::introspection::IntrospectionSvc;
use crate::grpc::Shared;

/// The gRPC service names, as health checking and reflection know them.
pub const SERVICES: [&str; 3] = [
    "kmem.v1.AllocatorService",
    "kmem.v1.CgroupService",
    "kmem.v1.IntrospectionService",
];

/// A started server.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub machine: Arc<Machine>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl Running {
    /// Begin a graceful shutdown: health goes NOT_SERVING, new calls are refused,
    /// in-flight calls finish within the drain timeout.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Wait until the server has stopped.
    pub async fn wait(self) -> Result<(), String> {
        self.task
            .await
            .map_err(|e| format!("server task failed: {e}"))?
    }
}

/// Boot the machine, bind both ports and serve until [`Running::shutdown`].
pub async fn start(cfg: Config) -> Result<Running, String> {
    let machine = Arc::new(Machine::boot(cfg.machine.clone()).map_err(|e| e.to_string())?);
    for t in &cfg.tenants {
        create_path(&machine, &t.cgroup)?;
    }
    let grpc = TcpListener::bind(cfg.grpc_addr)
        .await
        .map_err(|e| format!("cannot listen on {} for gRPC: {e}", cfg.grpc_addr))?;
    let http = TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|e| format!("cannot listen on {} for HTTP: {e}", cfg.http_addr))?;
    let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;

    let alloc_metrics = (cfg.metrics.enabled && cfg.metrics.alloc_histograms).then(|| {
        Arc::new(metrics::AllocMetrics::with_time_sampling(
            cfg.metrics.alloc_time_every,
        ))
    });
    let api = Arc::new(
        Api::new(
            machine.clone(),
            OpLimits {
                max_copy_bytes: cfg.limits.max_copy_size.0,
            },
        )
        .with_alloc_metrics(alloc_metrics.clone()),
    );
    let shared = Shared {
        api,
        auth: Arc::new(Auth::new(&cfg.tenants)),
        max_batch: cfg.limits.max_batch as usize,
        nofail_max_wait: Duration::from_millis(cfg.limits.nofail_max_wait_ms),
        throttle_cap: Duration::from_millis(cfg.limits.memory_high_throttle_cap_ms),
    };
    let (shutdown, mut rx) = watch::channel(false);
    let serving = Arc::new(AtomicBool::new(true));

    let (health, health_svc) = tonic_health::server::health_reporter();
    for s in SERVICES.iter().chain(&["", "liveness", "readiness"]) {
        health.set_service_status(*s, ServingStatus::Serving).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| e.to_string())?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| e.to_string())?;

    let max_msg = cfg.limits.max_message_size.0 as usize;
    let keepalive = (cfg.limits.http2_keepalive_interval_ms > 0)
        .then(|| Duration::from_millis(cfg.limits.http2_keepalive_interval_ms));
    let rpc_metrics = if cfg.metrics.enabled {
        Some(Arc::new(rpc_metrics::RpcMetrics::new(&[
            pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ])?))
    } else {
        None
    };
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(cfg.limits.max_concurrent_streams)
        // Batch replies (tens of KiB) must not stall on HTTP/2's 64 KiB default
        // windows. (TCP_NODELAY is set on the incoming stream below: without it every
        // reply waits ~40 ms for the peer's delayed ACK.)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .http2_keepalive_interval(keepalive)
        .layer(rpc_metrics::RpcMetricsLayer::new(rpc_metrics.clone()))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AllocatorServiceServer::new(AllocatorSvc {
                shared: shared.clone(),
            })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(max_msg),
        )
        .add_service(
            CgroupServiceServer::new(CgroupSvc {
                shared: shared.clone(),
            })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max_msg),
        )
        .add_service(
            IntrospectionServiceServer::new(IntrospectionSvc { shared })
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(max_msg),
        );

    let http_state = http::HttpState {
        machine: machine.clone(),
        serving: serving.clone(),
        metrics: cfg.metrics.enabled.then(|| {
            let m =
                metrics::Metrics::new(machine.clone(), cfg.metrics.clone(), rpc_metrics.clone())
                    .with_alloc(alloc_metrics.clone());
            Arc::new(move || m.render()) as Arc<dyn Fn() -> String + Send + Sync>
        }),
    };
    if let Some(rpc) = &rpc_metrics {
        // Drain the histogram buffers even when nobody scrapes.
        let handle = rpc.handle();
        let mut upkeep_rx = rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    _ = upkeep_rx.wait_for(|v| *v) => break,
                }
            }
        });
    }
    let drain = Duration::from_millis(cfg.limits.drain_timeout_ms);
    let mut http_rx = rx.clone();
    let mut drain_rx = rx.clone();
    let task = tokio::spawn(async move {
        let signalled = {
            let mut health = health.clone();
            let serving = serving.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
                serving.store(false, Ordering::Release);
                for s in SERVICES.iter().chain(&["", "readiness", "liveness"]) {
                    health
                        .set_service_status(*s, ServingStatus::NotServing)
                        .await;
                    // Dropping the entry ends open Watch streams once they have seen
                    // NOT_SERVING, so a client's health watch does not hold the drain.
                    health.clear_service_status(s).await;
                }
                tracing::info!("shutting down: draining in-flight calls");
            }
        };
        let grpc_server = router.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            signalled,
        );
        let http_server =
            axum::serve(http, http::router(http_state)).with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|v| *v).await;
            });
        tokio::select! {
            r = async { tokio::join!(grpc_server, http_server) } => {
                r.0.map_err(|e| format!("gRPC server: {e}"))?;
                r.1.map_err(|e| format!("HTTP server: {e}"))?;
                Ok(())
            }
            _ = async {
                let _ = drain_rx.wait_for(|v| *v).await;
                tokio::time::sleep(drain).await;
            } => {
                tracing::warn!("drain timeout passed with calls still running; stopping");
                Ok(())
            }
        }
    });
    tracing::info!(%grpc_addr, %http_addr, memory = %machine.config().memory, "kmemd serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        machine,
        shutdown,
        task,
    })
}

/// Create a cgroup path and its missing parents.
fn create_path(m: &Machine, path: &str) -> Result<(), String> {
    let mut p = String::new();
    for part in path.split('/').filter(|s| !s.is_empty()) {
        p.push('/');
        p.push_str(part);
        if m.memcg().lookup(&p).is_err() {
            m.memcg().create(&p).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
