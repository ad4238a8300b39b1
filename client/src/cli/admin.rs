//! cgroup, /proc, sysctl, dmesg and machine commands.

use clap::Subcommand;
use kmem_client::{Client, Error};
use serde_json::json;

use super::{Global, human, print_json, print_ok, stats};

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Memory cgroups: create, rm, ls, get, set, cat.
    #[command(subcommand)]
    Cgroup(CgroupCmd),
    /// /proc files byte for byte: `kmemctl proc buddyinfo` (`kmemctl proc` lists them).
    Proc { name: Option<String> },
    /// Read or write sysctls: `kmemctl sysctl vm.min_free_kbytes[=VALUE]` (none: all).
    Sysctl { settings: Vec<String> },
    /// The kernel log (allocation failure reports, OOM kills, warnings).
    Dmesg,
    /// The simulated machine: memory, nodes, CPUs, free memory.
    Machine,
    /// /proc/meminfo as name/value pairs (bytes).
    Meminfo,
    /// /proc/vmstat counters.
    Vmstat,
}

#[derive(Subcommand, Debug)]
pub enum CgroupCmd {
    /// Create a cgroup: `kmemctl cgroup create /a`.
    Create { path: String },
    /// Remove an empty cgroup.
    #[command(alias = "remove")]
    Rm { path: String },
    /// List every cgroup.
    #[command(alias = "list")]
    Ls,
    /// Usage, limits, stat and events of one cgroup.
    Get { path: String },
    /// Write a memory.* file: `kmemctl cgroup set /a memory.max 512M`.
    Set {
        path: String,
        file: String,
        value: String,
    },
    /// Print a memory.* file as the kernel does: `kmemctl cgroup cat /a memory.stat`.
    Cat { path: String, file: String },
}

pub async fn run(g: &Global, c: &Client, cmd: AdminCmd) -> Result<(), Error> {
    match cmd {
        AdminCmd::Cgroup(cc) => cgroup(g, c, cc).await?,
        AdminCmd::Proc { name: Some(name) } => {
            let text = c.proc_file(&name).await?;
            if g.json() {
                print_json(&json!({"name": name, "text": text}));
            } else {
                print!("{text}");
            }
        }
        AdminCmd::Proc { name: None } => {
            let names = c.list_proc_files().await?;
            if g.json() {
                print_json(&names);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        AdminCmd::Sysctl { settings } => sysctl(g, c, settings).await?,
        AdminCmd::Dmesg => {
            let lines = c.dmesg().await?;
            if g.json() {
                print_json(&lines);
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
        }
        AdminCmd::Machine => {
            let m = c.machine().await?;
            if g.json() {
                print_json(&json!({
                    "memory_bytes": m.memory_bytes, "nodes": m.nodes, "cpus": m.cpus,
                    "managed_bytes": m.managed_bytes, "free_bytes": m.free_bytes,
                    "page_state_host_bytes": m.page_state_host_bytes,
                    "stored_pages": m.stored_pages, "version": m.version,
                }));
            } else {
                println!("version:      {}", m.version);
                println!("memory:       {}", human(m.memory_bytes));
                println!("nodes:        {}", m.nodes);
                println!("cpus:         {}", m.cpus);
                println!("managed:      {}", human(m.managed_bytes));
                println!("free:         {}", human(m.free_bytes));
                println!("stored pages: {}", m.stored_pages);
                println!("host bytes:   {}", human(m.page_state_host_bytes));
            }
        }
        AdminCmd::Meminfo | AdminCmd::Vmstat => {
            let meminfo = matches!(cmd, AdminCmd::Meminfo);
            let e = if meminfo {
                c.meminfo().await?
            } else {
                c.vmstat().await?
            };
            if g.json() {
                print_json(&stats(&e));
            } else {
                for s in e {
                    println!("{:<28} {}", s.name, s.value);
                }
            }
        }
    }
    Ok(())
}

async fn cgroup(g: &Global, c: &Client, cmd: CgroupCmd) -> Result<(), Error> {
    match cmd {
        CgroupCmd::Create { path } => {
            c.create_cgroup(&path).await?;
            print_ok(g, &format!("created {path}"), json!({"created": path}));
        }
        CgroupCmd::Rm { path } => {
            c.remove_cgroup(&path).await?;
            print_ok(g, &format!("removed {path}"), json!({"removed": path}));
        }
        CgroupCmd::Ls => {
            let paths = c.list_cgroups().await?;
            if g.json() {
                print_json(&paths);
            } else {
                for p in paths {
                    println!("{p}");
                }
            }
        }
        CgroupCmd::Get { path } => {
            let cg = c.get_cgroup(&path).await?;
            if g.json() {
                print_json(&json!({
                    "path": cg.path, "current_bytes": cg.current_bytes,
                    "peak_bytes": cg.peak_bytes, "max_bytes": cg.max_bytes,
                    "high_bytes": cg.high_bytes, "low_bytes": cg.low_bytes,
                    "min_bytes": cg.min_bytes, "effective_low_bytes": cg.effective_low_bytes,
                    "effective_min_bytes": cg.effective_min_bytes, "oom_group": cg.oom_group,
                    "stat": stats(&cg.stat), "events": stats(&cg.events),
                    "events_local": stats(&cg.events_local),
                }));
            } else {
                let lim = |v: Option<u64>| v.map(human).unwrap_or_else(|| "max".into());
                println!("path:    {}", cg.path);
                println!("current: {}", human(cg.current_bytes));
                println!("peak:    {}", human(cg.peak_bytes));
                println!("max:     {}", lim(cg.max_bytes));
                println!("high:    {}", lim(cg.high_bytes));
                println!("low:     {}", human(cg.low_bytes));
                println!("min:     {}", human(cg.min_bytes));
                if cg.oom_group {
                    println!("oom.group: 1");
                }
                let nonzero: Vec<_> = cg.events.iter().filter(|e| e.value != 0).collect();
                if !nonzero.is_empty() {
                    println!("events:");
                    for e in nonzero {
                        println!("  {} {}", e.name, e.value);
                    }
                }
            }
        }
        CgroupCmd::Set { path, file, value } => {
            c.write_cgroup_file(&path, &file, &value).await?;
            print_ok(
                g,
                &format!("{path}/{file} = {value}"),
                json!({"path": path, "file": file, "value": value}),
            );
        }
        CgroupCmd::Cat { path, file } => {
            let text = c.read_cgroup_file(&path, &file).await?;
            if g.json() {
                print_json(&json!({"path": path, "file": file, "text": text}));
            } else {
                print!("{text}");
            }
        }
    }
    Ok(())
}

async fn sysctl(g: &Global, c: &Client, settings: Vec<String>) -> Result<(), Error> {
    let mut out = Vec::new();
    let (writes, reads): (Vec<_>, Vec<_>) = settings.iter().partition(|s| s.contains('='));
    for w in writes {
        let (name, value) = w.split_once('=').unwrap_or((w, ""));
        let v = c.set_sysctl(name.trim(), value.trim()).await?;
        out.push((name.trim().to_string(), v));
    }
    if !reads.is_empty() || out.is_empty() {
        let names: Vec<&str> = reads.iter().map(|s| s.as_str()).collect();
        for s in c.sysctls(&names).await? {
            out.push((s.name, s.value));
        }
    }
    if g.json() {
        let m: serde_json::Map<String, serde_json::Value> = out
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        print_json(&m);
    } else {
        for (k, v) in out {
            println!("{k} = {v}");
        }
    }
    Ok(())
}
