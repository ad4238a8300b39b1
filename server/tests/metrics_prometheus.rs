//! `/metrics` against a real Prometheus: kmemd in-process on 127.0.0.1:0, known
//! allocations over gRPC, `promtool check metrics` on the scrape, then a Prometheus on
//! loopback scraping it every second, polled through its HTTP API (never a fixed sleep)
//! until the expected series arrive.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`). Without them the test
//! is skipped, unless `KMEM_REQUIRE_PROMETHEUS=1` (as `scripts/prometheus-tests.sh` sets).

use std::process::Stdio;
use std::time::{Duration, Instant};

use kmem_client::Opts;
use tokio::io::AsyncWriteExt;

mod common;
use common::{find, get};

fn urlencode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's single value, if there is exactly one series.
async fn query(prom: &str, q: &str) -> Option<f64> {
    let body = get(prom, &format!("/api/v1/query?query={}", urlencode(q)))
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// Poll until `q` gives a value that `ok` accepts; panic after `limit`.
async fn wait_for(prom: &str, q: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let end = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < end {
        last = query(prom, q).await;
        if let Some(v) = last.filter(|v| ok(*v)) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{q}: no acceptable value within {limit:?} (last {last:?})");
}

/// The exposition without the compat families: node_exporter's `node_memory_MemTotal_bytes`
/// and cAdvisor's `container_memory_failcnt` break promtool's lint rules by design (they
/// are checked against the real names by `metrics_node_exporter.rs` and unit tests).
fn native(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            !name.starts_with("node_") && !name.starts_with("container_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_kmemd() {
    let required = std::env::var_os("KMEM_REQUIRE_PROMETHEUS").is_some();
    let (Some(prometheus), Some(promtool)) = (find("prometheus"), find("promtool")) else {
        assert!(!required, "prometheus/promtool not on PATH");
        eprintln!("skipped: prometheus/promtool not installed (apt-get install prometheus)");
        return;
    };
    let started = Instant::now();
    // Every family on: promtool lints the native ones, Prometheus ingests them all.
    let (r, c) = common::start_with(|cfg| {
        cfg.metrics.node_exporter_compat = true;
        cfg.metrics.cadvisor_compat = true;
        cfg.metrics.alloc_time_every = 1;
    })
    .await;
    let http = r.http_addr.to_string();

    // Known traffic: 7 OK Kmalloc calls and one InvalidArgument (a trailers-only answer).
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(c.kmalloc(1000, &Opts::gfp("GFP_KERNEL")).await.unwrap());
    }
    assert!(c.kmalloc(64, &Opts::gfp("NOT_A_FLAG")).await.is_err());
    let active_1k = r
        .machine
        .caches_info()
        .into_iter()
        .find(|c| c.name == "kmalloc-1k")
        .unwrap()
        .active_objects;

    // promtool lints the exposition.
    let text = get(&http, "/metrics").await.unwrap();
    assert!(
        text.contains("grpc_server_handling_seconds_bucket{"),
        "no histogram buckets"
    );
    let mut lint = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(native(&text).as_bytes())
        .await
        .unwrap();
    let out = lint.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus on loopback, scraping every second.
    let dir = std::env::temp_dir().join(format!("kmemd-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kmemd\n    static_configs:\n      - targets: ['{http}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("prometheus.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");

    // Keep some traffic flowing so rate() over the latency buckets is not zero.
    let pinger = {
        let c = c.clone();
        tokio::spawn(async move {
            loop {
                let _ = c.ping().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let limit = Duration::from_secs(60);
    wait_for(&prom, r#"up{job="kmemd"}"#, limit, |v| v == 1.0).await;
    wait_for(
        &prom,
        r#"kmem_slab_active_objects{cache="kmalloc-1k"}"#,
        limit,
        |v| v == active_1k as f64,
    )
    .await;
    wait_for(
        &prom,
        r#"grpc_server_handled_total{grpc_service="kmem.v1.AllocatorService",grpc_method="Kmalloc",grpc_code="OK"}"#,
        limit,
        |v| v == 7.0,
    )
    .await;
    wait_for(
        &prom,
        r#"sum(grpc_server_handled_total{grpc_method="Kmalloc",grpc_code!="OK"})"#,
        limit,
        |v| v == 1.0,
    )
    .await;
    wait_for(&prom, r#"kmem_build_info"#, limit, |v| v == 1.0).await;
    // The allocation histograms: 7 kmallocs of 1000 bytes → kmalloc-1k, one bad mask.
    wait_for(
        &prom,
        r#"kmem_alloc_size_bytes_bucket{api="kmalloc",le="1024"} - ignoring(le) kmem_alloc_size_bytes_bucket{api="kmalloc",le="512"}"#,
        limit,
        |v| v == 7.0,
    )
    .await;
    wait_for(
        &prom,
        r#"kmem_alloc_duration_seconds_count{api="kmalloc"}"#,
        limit,
        |v| v == 8.0,
    )
    .await;
    wait_for(
        &prom,
        r#"kmem_alloc_failures_total{api="kmalloc",reason="INVALID_GFP_FLAGS"}"#,
        limit,
        |v| v == 1.0,
    )
    .await;
    wait_for(
        &prom,
        r#"container_memory_usage_bytes{id="/"} >= 0"#,
        limit,
        |_| true,
    )
    .await;
    let p99 = wait_for(
        &prom,
        "histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket[1m])))",
        limit,
        |v| v.is_finite() && v > 0.0,
    )
    .await;
    assert!(p99 < 10.0, "p99 {p99}");
    pinger.abort();
    let _ = child.kill().await;
    r.shutdown();
    let _ = r.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "prometheus test passed in {:.1}s (p99 {p99:.6}s)",
        started.elapsed().as_secs_f64()
    );
    drop(held);
}
