//! kmemd: boots the simulated machine.
//!
//! The gRPC service arrives with the daemon issue; until then `kmemd` boots a machine
//! from its configuration and prints what the kernel would report (`--dump`), which is
//! also how to check a configuration file.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kmem_allocator::{ByteSize, Machine, MachineConfig};

/// Boot a simulated Linux machine and show its memory layout.
#[derive(Parser, Debug)]
#[command(name = "kmemd", version, about, long_about = None)]
struct Args {
    /// TOML machine configuration (see MachineConfig); defaults to a 16 GiB, 2-CPU,
    /// one-node x86-64 machine with THP in madvise mode.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the memory size (e.g. 64GiB, 1T).
    #[arg(long)]
    memory: Option<ByteSize>,
    /// Override the number of NUMA nodes (1..=64).
    #[arg(long)]
    nodes: Option<u16>,
    /// Override the number of simulated CPUs.
    #[arg(long)]
    cpus: Option<u16>,
    /// Print these /proc files after boot (buddyinfo, pagetypeinfo, zoneinfo, meminfo,
    /// vmstat, slabinfo, vmallocinfo); may repeat.
    #[arg(long = "dump", value_name = "FILE")]
    dump: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<MachineConfig>(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kmemd: cannot use {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => MachineConfig::default(),
    };
    if let Some(m) = args.memory {
        cfg.memory = m;
    }
    if let Some(n) = args.nodes {
        cfg.nodes = n;
    }
    if let Some(c) = args.cpus {
        cfg.cpus = c;
    }
    let start = std::time::Instant::now();
    let m = match Machine::boot(cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kmemd: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "kmemd: booted {} in {:.0?}: {} nodes, {} cpus, {} managed, min_free_kbytes {}",
        m.config().memory,
        start.elapsed(),
        m.nr_nodes(),
        m.nr_cpus(),
        ByteSize(m.total_managed() * 4096),
        m.sysctls().min_free_kbytes
    );
    for z in m.zones().iter().filter(|z| z.populated()) {
        eprintln!(
            "  node {} zone {:>7}: pfn {:#x}..{:#x} spanned {} present {} managed {}",
            z.node,
            z.zt.name(),
            z.start_pfn,
            z.end_pfn(),
            z.spanned,
            z.present,
            z.managed
        );
    }
    for f in &args.dump {
        match m.proc_file(f) {
            Ok(t) => print!("{t}"),
            Err(e) => {
                eprintln!("kmemd: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
