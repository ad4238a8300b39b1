//! The HTTP side port: kernel-format texts for curl users, a liveness probe and, with
//! the metrics issue, `/metrics`.
//!
//! - `GET /proc/<file>` — `/proc/buddyinfo`, `/proc/slabinfo`, … byte for byte.
//! - `GET /cgroup/<path>/<memory.file>` — e.g. `/cgroup/tenants/a/memory.stat`;
//!   `/cgroup/memory.stat` is the root.
//! - `GET /healthz` — 200 while serving, 503 while draining.
//! - `GET /metrics` — Prometheus text format (see [`crate::metrics`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kmem_allocator::Machine;

#[derive(Clone)]
pub struct HttpState {
    pub machine: Arc<Machine>,
    pub serving: Arc<AtomicBool>,
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn proc_file(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s.machine.proc_file(&name) {
        Ok(t) => text(StatusCode::OK, t),
        Err(e) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

async fn cgroup_file(State(s): State<HttpState>, Path(rest): Path<String>) -> Response {
    let (dir, file) = match rest.rsplit_once('/') {
        Some((d, f)) => (format!("/{d}"), f.to_string()),
        None => ("/".to_string(), rest),
    };
    match s.machine.memcg().read_file(&dir, &file) {
        Ok(t) => text(StatusCode::OK, t),
        Err(e) => {
            let code = match kmem_allocator::reasons::class_of(e.reason()) {
                kmem_allocator::ErrorClass::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            text(code, format!("{e}\n"))
        }
    }
}

async fn healthz(State(s): State<HttpState>) -> Response {
    if s.serving.load(Ordering::Acquire) {
        text(StatusCode::OK, "ok\n".into())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    match s.metrics.clone() {
        // Rendering takes the allocator's zone locks: keep it off the async workers.
        Some(render) => match tokio::task::spawn_blocking(move || render()).await {
            Ok(body) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
                .into_response(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        None => text(StatusCode::NOT_FOUND, "metrics are off\n".into()),
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/proc/{name}", get(proc_file))
        .route("/cgroup/{*rest}", get(cgroup_file))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}
