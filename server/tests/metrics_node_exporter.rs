//! With `metrics.node_exporter_compat` on, kmemd's node_exporter families must look like
//! a real node_exporter's: a Debian `prometheus-node-exporter` is started on loopback with
//! the collectors kmemd mirrors (buddyinfo, zoneinfo, meminfo, vmstat with every field,
//! slabinfo, uname) and both scrapes are compared family by family:
//!
//! - every kmemd family under a mirrored prefix exists in node_exporter's scrape, unless
//!   the host's kernel lacks the source field (a /proc/meminfo or /proc/vmstat key of
//!   another kernel version) or the collector has nothing on this host (slabinfo needs
//!   root): those are listed, not failed;
//! - for each family both have, the label NAMES and the TYPE are equal (values differ).
//!
//! Skipped when `prometheus-node-exporter` is not on PATH, unless
//! `KMEM_REQUIRE_PROMETHEUS=1` (as `scripts/prometheus-tests.sh` sets).

use std::collections::{BTreeMap, BTreeSet};

use std::process::Stdio;
use std::time::{Duration, Instant};

use kmem_client::Opts;

mod common;
use common::{find, get};

/// Family → (type, label names over all its samples).
type Families = BTreeMap<String, (String, BTreeSet<String>)>;

fn families(text: &str) -> Families {
    let mut f: Families = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, ty) = (it.next().unwrap(), it.next().unwrap_or("untyped"));
            f.entry(name.to_string()).or_default().0 = ty.to_string();
            continue;
        }
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let (name, labels) = match l.split_once('{') {
            Some((n, rest)) => (n, &rest[..rest.rfind('}').expect("closing brace")]),
            None => (l.split_whitespace().next().unwrap(), ""),
        };
        let e = f.entry(name.to_string()).or_default();
        // Label values here never contain `",` followed by a name and `=`; split on `",`.
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, _) = kv.split_once('=').expect("label=value");
            e.1.insert(k.trim().to_string());
        }
    }
    f
}

const PREFIXES: [&str; 6] = [
    "node_buddyinfo_",
    "node_zoneinfo_",
    "node_memory_",
    "node_vmstat_",
    "node_slabinfo_",
    "node_uname_info",
];

/// The /proc key a kmemd family comes from, and the file, when the host's kernel may
/// simply not have it (meminfo and vmstat fields vary between kernel versions).
fn host_key(family: &str) -> Option<(&'static str, String)> {
    if let Some(k) = family.strip_prefix("node_memory_") {
        let k = k.strip_suffix("_bytes").unwrap_or(k);
        let k = if let Some(s) = k.strip_suffix("_anon") {
            format!("{s}(anon)")
        } else if let Some(s) = k.strip_suffix("_file") {
            format!("{s}(file)")
        } else {
            k.to_string()
        };
        return Some(("/proc/meminfo", k));
    }
    family
        .strip_prefix("node_vmstat_")
        .map(|k| ("/proc/vmstat", k.to_string()))
}

fn host_has(file: &str, key: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| {
        t.lines().any(|l| {
            l.split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .is_some_and(|k| k == key)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_families_match_a_real_node_exporter() {
    let required = std::env::var_os("KMEM_REQUIRE_PROMETHEUS").is_some();
    let Some(exporter) = find("prometheus-node-exporter").or_else(|| find("node_exporter")) else {
        assert!(!required, "prometheus-node-exporter not on PATH");
        eprintln!("skipped: prometheus-node-exporter not installed");
        return;
    };
    let started = Instant::now();
    let (r, c) = common::start_with(|cfg| {
        cfg.metrics.node_exporter_compat = true;
        cfg.metrics.cadvisor_compat = true;
    })
    .await;
    let _held = c.kmalloc(1000, &Opts::gfp("GFP_KERNEL")).await.unwrap();

    // The reference node_exporter on a free loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&exporter)
        .args([
            &format!("--web.listen-address={addr}"),
            "--collector.disable-defaults",
            "--collector.buddyinfo",
            "--collector.zoneinfo",
            "--collector.meminfo",
            "--collector.vmstat",
            "--collector.vmstat.fields=.*",
            "--collector.slabinfo",
            "--collector.uname",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node_exporter starts");
    let end = Instant::now() + Duration::from_secs(20);
    let reference = loop {
        match get(&addr, "/metrics").await {
            Ok(t) if t.contains("node_uname_info") => break t,
            r if Instant::now() > end => panic!("node_exporter on {addr} did not answer: {r:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let _ = child.kill().await;
    let ours = get(&r.http_addr.to_string(), "/metrics").await.unwrap();
    let (theirs, ours) = (families(&reference), families(&ours));

    let mut errors = Vec::new();
    let mut absent_on_host = Vec::new();
    let mut compared = 0;
    for prefix in PREFIXES {
        let mine: Vec<_> = ours.iter().filter(|f| f.0.starts_with(prefix)).collect();
        assert!(!mine.is_empty(), "kmemd exports nothing under {prefix}");
        let host_collects = theirs.keys().any(|k| k.starts_with(prefix));
        if !host_collects {
            // slabinfo without root, or a kernel without the file.
            absent_on_host.push(format!("{prefix}* (the collector has nothing here)"));
            continue;
        }
        for (name, (ty, labels)) in mine {
            match theirs.get(name) {
                Some((their_ty, their_labels)) => {
                    compared += 1;
                    if labels != their_labels {
                        errors.push(format!(
                            "{name}: labels {labels:?}, node_exporter has {their_labels:?}"
                        ));
                    }
                    if ty != their_ty {
                        errors.push(format!("{name}: type {ty}, node_exporter has {their_ty}"));
                    }
                }
                None => match host_key(name) {
                    Some((file, key)) if !host_has(file, &key) => {
                        absent_on_host.push(format!("{name} ({key} not in {file})"))
                    }
                    _ => errors.push(format!("{name}: node_exporter has no such family")),
                },
            }
        }
    }
    r.shutdown();
    let _ = r.wait().await;
    eprintln!(
        "compared {compared} families with node_exporter; not on this host: {}",
        if absent_on_host.is_empty() {
            "none".to_string()
        } else {
            absent_on_host.join(", ")
        }
    );
    assert!(
        errors.is_empty(),
        "kmemd's node_exporter families differ:\n  {}",
        errors.join("\n  ")
    );
    assert!(compared >= 40, "only {compared} families compared");
    eprintln!(
        "node_exporter comparison passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
