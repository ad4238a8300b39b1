//! `kmemctl bench`: a ghz-like load generator (`--record` writes a trace for replay.rs).

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kmem_client::{Client, Error, Opts, pb};
use serde_json::json;
use tokio::sync::Semaphore;

use super::report::{Report, ServerView};
use super::workload::{Conn, Live, OpKind, Rng, SizeDist, Transport, Work};
use super::{Global, Output, parse_duration, parse_gfp, parse_size, print_json, status_key};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Requests in flight.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// gRPC connections (in-flight requests are spread over them).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Operations to run (default 200 when no --duration).
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long: 10s, 1m.
    #[arg(short = 'z', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Run unmeasured for this long first.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Open loop: requests per second, latency measured from the scheduled send time.
    #[arg(long)]
    pub rps: Option<f64>,
    #[arg(long, value_enum, default_value = "kmalloc")]
    pub op: OpKind,
    /// Object size (kmalloc, vmalloc, kvmalloc, cache).
    #[arg(long, value_parser = parse_size, conflicts_with = "size_dist")]
    pub size: Option<u64>,
    /// Size distribution: fixed:N, uniform:A-B, or slabinfo (a real kernel's mix).
    #[arg(long, value_parser = SizeDist::parse)]
    pub size_dist: Option<SizeDist>,
    /// Page order of alloc-pages.
    #[arg(long, default_value_t = 0)]
    pub order: u32,
    #[arg(long, default_value = "GFP_KERNEL", value_parser = parse_gfp)]
    pub gfp: String,
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Keep N allocations live, freeing the oldest (0: free each at once).
    #[arg(long, default_value_t = 0)]
    pub hold: usize,
    #[arg(long, value_enum, default_value = "unary")]
    pub transport: Transport,
    /// Operations per Batch RPC (--transport batch).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Also run the same load as Ping and print the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write every operation to FILE (JSON lines) for `kmemctl replay`. Each request
    /// is pinned to a simulated CPU (request number mod CPUs) so a replay frees and
    /// allocates on the same per-CPU lists. Operations are written in the order they
    /// complete: with -c 1 (one connection) that is the server's order, and a replay
    /// on a fresh kmemd of the same config ends in the same state byte for byte.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

struct Plan {
    op: OpKind,
    sizes: SizeDist,
    order: u32,
    cache: String,
    opts: Opts,
    hold: usize,
    batch: usize,
    rps: Option<f64>,
    concurrency: usize,
    /// Recording: the machine's CPU count; request `seq` runs on CPU `seq % n`.
    pin: Option<u32>,
}

impl Plan {
    fn cpu(&self, seq: u64) -> Option<u32> {
        self.pin.map(|n| (seq % u64::from(n.max(1))) as u32)
    }

    fn work(&self, rng: &mut Rng) -> Work {
        match self.op {
            OpKind::Ping => Work::Ping,
            OpKind::Kmalloc | OpKind::KmallocFree => Work::Kmalloc {
                size: self.sizes.sample(rng),
            },
            OpKind::AllocPages => Work::AllocPages { order: self.order },
            OpKind::Vmalloc => Work::Vmalloc {
                size: self.sizes.sample(rng),
            },
            OpKind::Kvmalloc => Work::Kvmalloc {
                size: self.sizes.sample(rng),
            },
            OpKind::Cache => Work::CacheAlloc {
                cache: self.cache.clone(),
            },
        }
    }
}

type Recorder = Mutex<std::io::BufWriter<std::fs::File>>;

struct Shared {
    hist: Mutex<Histogram<u64>>,
    statuses: Mutex<BTreeMap<String, u64>>,
    details: Option<Mutex<Vec<(u64, String)>>>,
    held: Mutex<VecDeque<Live>>,
    done: AtomicU64,
    free_errors: AtomicU64,
    recorder: Option<Recorder>,
    start: Instant,
}

pub(super) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds")
}

fn record_line(sh: &Shared, v: serde_json::Value) {
    if let Some(r) = &sh.recorder {
        if let Ok(mut w) = r.lock() {
            let _ = writeln!(w, "{v}");
        }
    }
}

/// One request: B operations, timed; then the lifetime policy.
async fn one(
    conn: &Conn,
    plan: &Plan,
    sh: &Shared,
    seq: u64,
    n: usize,
    sched: Instant,
    measure: bool,
) {
    let mut rng = Rng::new(seq.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let works: Vec<Work> = (0..n).map(|_| plan.work(&mut rng)).collect();
    let t0 = if plan.rps.is_some() {
        sched
    } else {
        Instant::now()
    };
    let cpu = plan.cpu(seq);
    let opts = match cpu {
        Some(c) => plan.opts.clone().cpu(c),
        None => plan.opts.clone(),
    };
    let results = conn.exec(&works, &opts).await;
    let mut lives = Vec::new();
    let mut keys = Vec::with_capacity(n);
    for (w, r) in works.iter().zip(results) {
        let key = match &r {
            Ok(_) => "OK".to_string(),
            Err(e) => status_key(e),
        };
        if sh.recorder.is_some() {
            let (st, addr) = match &r {
                Ok(l) => ("OK".to_string(), l.as_ref().map(|l| l.addr())),
                Err(e) => (status_key(e), None),
            };
            let mut v = serde_json::to_value(w).unwrap_or_default();
            v["status"] = json!(st);
            v["addr"] = json!(addr);
            v["t_ns"] = json!(sh.start.elapsed().as_nanos() as u64);
            let o = plan.opts.to_pb();
            v["gfp"] = json!(o.gfp);
            v["cgroup"] = json!(o.cgroup);
            v["cpu"] = json!(cpu);
            record_line(sh, v);
        }
        if let Ok(Some(l)) = r {
            lives.push(l);
        }
        keys.push(key);
    }
    if plan.op == OpKind::KmallocFree {
        let lv = std::mem::take(&mut lives);
        record_frees(sh, &lv, cpu);
        let f = conn.free(lv, cpu).await;
        sh.free_errors.fetch_add(f, Ordering::Relaxed);
    }
    let lat = (t0.elapsed().as_nanos() as u64).max(1);
    if measure {
        if let Ok(mut h) = sh.hist.lock() {
            let _ = h.record_n(lat, n as u64);
        }
        if let Ok(mut s) = sh.statuses.lock() {
            for k in &keys {
                *s.entry(k.clone()).or_insert(0) += 1;
            }
        }
        if let Some(d) = &sh.details {
            if let Ok(mut d) = d.lock() {
                d.extend(keys.into_iter().map(|k| (lat, k)));
            }
        }
        sh.done.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Lifetime: free now, or keep `hold` live and free the oldest.
    let to_free = if plan.hold == 0 {
        lives
    } else {
        let mut held = sh.held.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(lives);
        let over = held.len().saturating_sub(plan.hold);
        held.drain(..over).collect()
    };
    record_frees(sh, &to_free, cpu);
    let f = conn.free(to_free, cpu).await;
    sh.free_errors.fetch_add(f, Ordering::Relaxed);
}

fn record_frees(sh: &Shared, lives: &[Live], cpu: Option<u32>) {
    if sh.recorder.is_some() {
        for l in lives {
            let mut v = serde_json::to_value(l).unwrap_or_default();
            v["cpu"] = json!(cpu);
            record_line(sh, v);
        }
    }
}

/// Dispatch requests until `total` operations or `duration` have passed.
async fn phase(
    conns: &[Arc<Conn>],
    plan: &Arc<Plan>,
    sh: &Arc<Shared>,
    total: Option<u64>,
    duration: Option<Duration>,
    measure: bool,
) -> Duration {
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let start = Instant::now();
    let mut issued = 0u64;
    let mut i = 0u64;
    loop {
        let n = match total {
            Some(t) if issued >= t => break,
            Some(t) => (t - issued).min(plan.batch as u64) as usize,
            None => plan.batch,
        };
        let sched = match plan.rps {
            Some(r) => start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        if let Some(d) = duration {
            if sched.saturating_duration_since(start) >= d || start.elapsed() >= d {
                break;
            }
        }
        if plan.rps.is_some() {
            tokio::time::sleep_until(sched.into()).await;
        }
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let conn = conns[(i as usize) % conns.len()].clone();
        let (plan, sh) = (plan.clone(), sh.clone());
        tokio::spawn(async move {
            one(&conn, &plan, &sh, i, n, sched, measure).await;
            drop(permit);
        });
        issued += n as u64;
        i += 1;
    }
    let _ = sem.acquire_many(plan.concurrency.max(1) as u32).await;
    start.elapsed()
}

pub(super) async fn server_snapshot(c: &Client) -> Result<ServerView, Error> {
    let vm = c.vmstat().await?;
    let slab = c.slab_info().await?;
    let mem = c.meminfo().await?;
    Ok(ServerView {
        pgalloc: vm
            .iter()
            .filter(|e| e.name.starts_with("pgalloc_"))
            .map(|e| e.value)
            .sum(),
        pgfree: vm
            .iter()
            .find(|e| e.name == "pgfree")
            .map(|e| e.value)
            .unwrap_or(0),
        slab_allocs: slab.iter().map(|s| s.alloc_total).sum(),
        slab_frees: slab.iter().map(|s| s.free_total).sum(),
        mem_free: mem
            .iter()
            .find(|e| e.name == "MemFree")
            .map(|e| e.value)
            .unwrap_or(0),
        mem_free_before: 0,
    })
}

async fn run_load(
    conns: &[Arc<Conn>],
    plan: Arc<Plan>,
    a: &BenchArgs,
    g: &Global,
    name: &str,
    record: Option<Recorder>,
) -> Result<Report, Error> {
    let client = conns[0].client().clone();
    let sh = Arc::new(Shared {
        hist: Mutex::new(new_hist()),
        statuses: Mutex::default(),
        details: (g.output == Output::Csv).then(Mutex::default),
        held: Mutex::default(),
        done: AtomicU64::new(0),
        free_errors: AtomicU64::new(0),
        recorder: record,
        start: Instant::now(),
    });
    if let Some(w) = a.warmup {
        phase(conns, &plan, &sh, None, Some(w), false).await;
    }
    let before = server_snapshot(&client).await?;
    let total = match (a.total, a.duration) {
        (None, None) => Some(200),
        (t, _) => t,
    };
    let bar = progress(a, total);
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = bar.clone().map(|bar| {
        let (sh, stop) = (sh.clone(), stop.clone());
        let start = Instant::now();
        let by_time = total.is_none();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let done = sh.done.load(Ordering::Relaxed);
                let el = start.elapsed();
                bar.set_position(if by_time { el.as_millis() as u64 } else { done });
                bar.set_message(format!(
                    "{:.0} ops/s",
                    done as f64 / el.as_secs_f64().max(1e-9)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let took = phase(conns, &plan, &sh, total, a.duration, true).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.await;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Free what --hold kept.
    let rest: Vec<Live> = sh
        .held
        .lock()
        .map(|mut h| h.drain(..).collect())
        .unwrap_or_default();
    let cpu = plan.cpu(0);
    record_frees(&sh, &rest, cpu);
    let f = conns[0].free(rest, cpu).await;
    sh.free_errors.fetch_add(f, Ordering::Relaxed);
    if let Some(r) = &sh.recorder {
        if let Ok(mut w) = r.lock() {
            let _ = w.flush();
        }
    }
    let after = server_snapshot(&client).await?;
    let hist = sh
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| new_hist());
    let statuses = sh.statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let mut r = Report::build(
        name,
        &hist,
        took,
        &statuses,
        sh.free_errors.load(Ordering::Relaxed),
        options_json(a, &plan),
    );
    r.server = Some(ServerView {
        pgalloc: after.pgalloc.saturating_sub(before.pgalloc),
        pgfree: after.pgfree.saturating_sub(before.pgfree),
        slab_allocs: after.slab_allocs.saturating_sub(before.slab_allocs),
        slab_frees: after.slab_frees.saturating_sub(before.slab_frees),
        mem_free: after.mem_free,
        mem_free_before: before.mem_free,
    });
    if g.output == Output::Csv {
        if let Some(d) = &sh.details {
            let d = d.lock().map(|d| d.clone()).unwrap_or_default();
            println!("duration (ms),status,error");
            for (lat, k) in d {
                let (code, reason) = k.split_once(' ').unwrap_or((&k, ""));
                println!("{:.4},{code},{reason}", lat as f64 / 1e6);
            }
        }
    }
    Ok(r)
}

fn progress(a: &BenchArgs, total: Option<u64>) -> Option<ProgressBar> {
    if a.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let len = total.unwrap_or_else(|| a.duration.map(|d| d.as_millis() as u64).unwrap_or(0));
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(s) = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}") {
        bar.set_style(s.progress_chars("=> "));
    }
    Some(bar)
}

fn options_json(a: &BenchArgs, p: &Plan) -> serde_json::Value {
    json!({
        "op": p.op, "transport": a.transport, "concurrency": a.concurrency,
        "connections": a.connections, "total": a.total,
        "duration": a.duration.map(|d| d.as_nanos() as u64), "rps": a.rps,
        "sizes": p.sizes.describe(), "order": a.order, "gfp": a.gfp, "cgroup": a.cgroup,
        "hold": a.hold, "batchSize": p.batch,
    })
}

async fn connect_all(g: &Global, a: &BenchArgs) -> Result<Vec<Arc<Conn>>, Error> {
    let mut conns = Vec::new();
    for _ in 0..a.connections.max(1) {
        conns.push(Arc::new(Conn::open(g.connect().await?, a.transport).await?));
    }
    Ok(conns)
}

pub async fn run(g: &Global, a: BenchArgs) -> Result<(), Error> {
    let conns = connect_all(g, &a).await?;
    let sizes = match (&a.size_dist, a.size) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => SizeDist::Fixed(s),
        (None, None) if a.op == OpKind::Vmalloc || a.op == OpKind::Kvmalloc => {
            SizeDist::Fixed(64 << 10)
        }
        (None, None) => SizeDist::Fixed(64),
    };
    let mut cache = String::new();
    if a.op == OpKind::Cache {
        let size = a.size.unwrap_or(64);
        cache = format!("kmemctl-bench-{size}");
        conns[0]
            .client()
            .create_cache(pb::CreateCacheRequest {
                name: cache.clone(),
                size: size as u32,
                reuse_existing: true,
                ..Default::default()
            })
            .await?;
    }
    let mut opts = Opts::gfp(&a.gfp);
    if let Some(c) = &a.cgroup {
        opts = opts.cgroup(c);
    }
    let batch = if a.transport == Transport::Batch {
        a.batch_size.max(1)
    } else {
        1
    };
    let mut plan = Plan {
        op: a.op,
        sizes,
        order: a.order,
        cache,
        opts,
        hold: a.hold,
        batch,
        rps: a.rps,
        concurrency: a.concurrency,
        pin: None,
    };
    let record = match &a.record {
        Some(p) => {
            let m = conns[0].client().machine().await?;
            plan.pin = Some(m.cpus.max(1));
            if (a.concurrency > 1 || a.connections > 1) && !a.quiet {
                eprintln!(
                    "kmemctl: recording with -c {} over {} connection(s): the trace is in \
                     completion order, which may differ from the server's; record with -c 1 \
                     for an exact replay",
                    a.concurrency, a.connections
                );
            }
            let mut w =
                std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| {
                    Error::Transport(format!("cannot create {}: {e}", p.display()))
                })?);
            let header = json!({"trace": {"version": 1, "memory": m.memory_bytes,
                "nodes": m.nodes, "cpus": m.cpus, "concurrency": a.concurrency}});
            let _ = writeln!(w, "{header}");
            Some(Mutex::new(w))
        }
        None => None,
    };
    let name = clap::ValueEnum::to_possible_value(&a.op)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let mut report = run_load(&conns, Arc::new(plan), &a, g, &name, record).await?;
    if a.baseline {
        let ping = Plan {
            op: OpKind::Ping,
            sizes: SizeDist::Fixed(0),
            order: 0,
            cache: String::new(),
            opts: Opts::new(),
            hold: 0,
            batch,
            rps: a.rps,
            concurrency: a.concurrency,
            pin: None,
        };
        let mut b = run_load(&conns, Arc::new(ping), &a, g, "ping", None).await?;
        b.server = None;
        report.baseline = Some(Box::new(b));
    }
    match g.output {
        Output::Json => print_json(&report),
        Output::Text => report.print_text(),
        Output::Csv => {}
    }
    Ok(())
}
