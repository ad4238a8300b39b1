//! RPC-path throughput, each mode beside its `Ping` baseline in the same run.
//!
//! `cargo run --release -p kmem-server --example rpc_bench [-- SECONDS]` starts a
//! release `kmemd` as a separate process (client and server share the machine's
//! cores, as on a loopback deployment), then measures for SECONDS each (default 3):
//! - unary Ping, 64 calls in flight;
//! - unary kmalloc(64) / kfree alternating, 64 calls in flight;
//! - Session stream, 64 operations in flight (kmalloc then kfree of the result);
//! - Batch of 1,000 operations (500 kfree of the previous batch's objects + 500
//!   kmalloc), 2 batches in flight.
//!
//! Bias: one client connection; the client's own encode/decode cost is included;
//! kmalloc objects are freed promptly, so the slab fast path is hot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmem_client::pb::{self, operation::Op};
use kmem_client::{Client, Opts};
use tokio::io::{AsyncBufReadExt, BufReader};

const IN_FLIGHT: usize = 64;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn kmalloc(size: u64) -> pb::Operation {
    pb::Operation {
        op: Some(Op::Kmalloc(Box::new(pb::KmallocRequest {
            size,
            ..Default::default()
        }))),
    }
}

fn kfree(addr: u64) -> pb::Operation {
    pb::Operation {
        op: Some(Op::Kfree(Box::new(pb::KfreeRequest {
            addr,
            ..Default::default()
        }))),
    }
}

async fn unary(c: &Client, secs: f64, ping: bool) -> f64 {
    let calls = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let c = c.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                let opts = Opts::new();
                while Instant::now() < end {
                    if ping {
                        c.ping().await.unwrap();
                        calls.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let a = c.kmalloc(64, &opts).await.unwrap();
                        c.kfree(a.addr).await.unwrap();
                        calls.fetch_add(2, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let t = Instant::now();
    for h in tasks {
        h.await.unwrap();
    }
    calls.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

async fn session(c: &Client, secs: f64) -> f64 {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SessionRequest>(IN_FLIGHT * 2);
    let mut out = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let mut id = 0u64;
    for _ in 0..IN_FLIGHT {
        id += 1;
        tx.send(pb::SessionRequest {
            id,
            operation: Some(kmalloc(64)),
        })
        .await
        .unwrap();
    }
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(secs);
    let mut done = 0u64;
    let mut outstanding = IN_FLIGHT;
    while outstanding > 0 {
        let r = out.message().await.unwrap().unwrap();
        outstanding -= 1;
        done += 1;
        let res = r.result.unwrap();
        assert_eq!(res.status.as_ref().map_or(0, |s| s.code), 0);
        if Instant::now() >= end {
            continue;
        }
        // A kmalloc result is followed by its kfree; a kfree by a new kmalloc.
        let op = match res.allocation {
            Some(a) => kfree(a.addr),
            None => kmalloc(64),
        };
        id += 1;
        tx.send(pb::SessionRequest {
            id,
            operation: Some(op),
        })
        .await
        .unwrap();
        outstanding += 1;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

async fn batch(c: &Client, secs: f64) -> f64 {
    let ops = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let in_flight: usize =
        std::env::var("RPC_BENCH_BATCHES").map_or(2, |v| v.parse().expect("number"));
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let c = c.clone();
            let ops = ops.clone();
            tokio::spawn(async move {
                let mut live: Vec<u64> = vec![];
                while Instant::now() < end {
                    let mut operations: Vec<pb::Operation> = live.drain(..).map(kfree).collect();
                    let frees = operations.len();
                    operations.extend((0..1000 - frees).map(|_| kmalloc(64)));
                    let results = c
                        .batch(pb::BatchRequest {
                            operations,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    for r in &results[frees..] {
                        live.push(r.allocation.as_ref().unwrap().addr);
                    }
                    live.truncate(500);
                    ops.fetch_add(results.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t = Instant::now();
    for h in tasks {
        h.await.unwrap();
    }
    ops.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map_or(3.0, |s| s.parse().expect("seconds"));
    let exe = std::env::current_exe().unwrap();
    let kmemd = exe.parent().unwrap().parent().unwrap().join("kmemd");
    let mut child = tokio::process::Command::new(&kmemd)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-filter",
            "warn",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (cargo build --release -p kmem-server)",
                kmemd.display()
            )
        });
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .unwrap()
        .to_string();
    let c = Client::connect(&addr).await.unwrap();
    if std::env::var("RPC_BENCH_ONLY").as_deref() == Ok("batch") {
        println!(
            "Batch of 1000, 2 in flight: {:.0} ops/s",
            batch(&c, secs).await
        );
        return;
    }
    unary(&c, 0.5, true).await; // warm up
    let ping = unary(&c, secs, true).await;
    let km = unary(&c, secs, false).await;
    let ping2 = unary(&c, secs, true).await;
    let s = session(&c, secs).await;
    let b = batch(&c, secs).await;
    let base = (ping + ping2) / 2.0;
    println!("unary Ping, {IN_FLIGHT} in flight:            {base:>12.0} calls/s (runs {ping:.0}, {ping2:.0})");
    println!(
        "unary kmalloc(64)/kfree, {IN_FLIGHT} in flight: {km:>12.0} calls/s = {:.2}x Ping",
        km / base
    );
    println!("Session, {IN_FLIGHT} in flight:               {s:>12.0} ops/s");
    println!("Batch of 1000, 2 in flight:           {b:>12.0} ops/s");
    child.kill().await.ok();
}
