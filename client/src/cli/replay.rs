//! `kmemctl replay`: re-run a `bench --record` trace.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use kmem_client::{Client, Error, Opts};
use serde_json::json;

use super::bench::{new_hist, server_snapshot};
use super::report::{Report, ServerView};
use super::workload::{Conn, Live, Work};
use super::{Global, Output, print_json, status_key};

/// `kmemctl replay FILE`: re-run a `--record`ed trace in file order, one call at a time,
/// each on the simulated CPU it was recorded on, mapping recorded addresses to the new
/// ones. Deterministic: the same trace on fresh kmemds of the same config always ends
/// in the same state (and in the recorded run's state when it was recorded with -c 1).
pub async fn replay(g: &Global, file: PathBuf) -> Result<(), Error> {
    let f = std::fs::File::open(&file)
        .map_err(|e| Error::Transport(format!("cannot open {}: {e}", file.display())))?;
    let c = g.connect().await?;
    let conn = Conn::Unary(c);
    let before = server_snapshot(conn.client()).await?;
    let mut map: HashMap<u64, Live> = HashMap::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut hist = new_hist();
    let (mut frees, mut skipped) = (0u64, 0u64);
    let start = Instant::now();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Transport(format!("read {}: {e}", file.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| Error::Transport(format!("{}:{}: {e}", file.display(), n + 1)))?;
        let cpu = v["cpu"].as_u64().map(|c| c as u32);
        if let Some(h) = v.get("trace") {
            check_machine(conn.client(), h).await?;
        } else if let Ok(w) = serde_json::from_value::<Work>(v.clone()) {
            let old = v["addr"].as_u64();
            let mut opts = Opts::gfp(v["gfp"].as_str().unwrap_or("GFP_KERNEL"));
            if let Some(c) = v["cgroup"].as_str().filter(|c| !c.is_empty()) {
                opts = opts.cgroup(c);
            }
            if let Some(c) = cpu {
                opts = opts.cpu(c);
            }
            let t = Instant::now();
            let r = conn.exec(std::slice::from_ref(&w), &opts).await.remove(0);
            let _ = hist.record((t.elapsed().as_nanos() as u64).max(1));
            let key = match &r {
                Ok(Some(l)) => {
                    if let Some(o) = old {
                        map.insert(o, l.clone());
                    }
                    "OK".to_string()
                }
                Ok(None) => "OK".to_string(),
                Err(e) => status_key(e),
            };
            *statuses.entry(key).or_insert(0) += 1;
        } else if let Ok(l) = serde_json::from_value::<Live>(v) {
            match map.remove(&l.addr()) {
                Some(new) => {
                    frees += 1;
                    let now = l.with_addr(new.addr());
                    if conn.free(vec![now], cpu).await > 0 {
                        *statuses.entry("FREE_FAILED".into()).or_insert(0) += 1;
                    }
                }
                None => skipped += 1,
            }
        } else {
            skipped += 1;
        }
    }
    let mut r = Report::build(
        "replay",
        &hist,
        start.elapsed(),
        &statuses,
        0,
        json!({"file": file.display().to_string(), "frees": frees, "skipped": skipped}),
    );
    let after = server_snapshot(conn.client()).await?;
    r.server = Some(ServerView {
        pgalloc: after.pgalloc.saturating_sub(before.pgalloc),
        pgfree: after.pgfree.saturating_sub(before.pgfree),
        slab_allocs: after.slab_allocs.saturating_sub(before.slab_allocs),
        slab_frees: after.slab_frees.saturating_sub(before.slab_frees),
        mem_free: after.mem_free,
        mem_free_before: before.mem_free,
    });
    match g.output {
        Output::Json => print_json(&r),
        _ => r.print_text(),
    }
    Ok(())
}

/// A trace's header against the machine it is replayed on: a different size or CPU
/// count cannot reproduce the recorded state.
async fn check_machine(c: &Client, h: &serde_json::Value) -> Result<(), Error> {
    let m = c.machine().await?;
    let want = (
        h["memory"].as_u64(),
        h["nodes"].as_u64(),
        h["cpus"].as_u64(),
    );
    let have = (
        Some(m.memory_bytes),
        Some(u64::from(m.nodes)),
        Some(u64::from(m.cpus)),
    );
    if want != have {
        eprintln!(
            "kmemctl: the trace was recorded on memory {:?}, nodes {:?}, cpus {:?}; this \
             kmemd has {}, {}, {}: the replay will not reproduce the recorded state",
            want.0, want.1, want.2, m.memory_bytes, m.nodes, m.cpus
        );
    }
    Ok(())
}
