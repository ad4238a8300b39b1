//! kmemd: the simulated memory daemon. See `kmemd --help`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The RPC path allocates a few small buffers per operation (messages, names);
/// mimalloc's thread-local free lists make that ~2x cheaper than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use figment::value::Value;
use kmem_allocator::{ByteSize, Machine};
use kmem_server::config::{Config, LogFormat, Overrides};

const AFTER_HELP: &str = "\
Examples:
  kmemd                                 # 16 GiB, 1 node, 2 CPUs; gRPC :50051, HTTP :9464
  kmemd --memory 1TiB --nodes 4 --cpus 16
  kmemd --config kmemd.toml --print-config
  KMEMD_MACHINE__MEMORY=64GiB kmemd     # any config key, `__` for nesting
  kmemd --dump buddyinfo --dump zoneinfo   # boot, print, exit

Layering: defaults < --config file < KMEMD_* environment < flags.
Try it: grpcurl -plaintext 127.0.0.1:50051 list   (reflection is on)
        curl 127.0.0.1:9464/proc/buddyinfo";

/// Serve a simulated Linux machine's memory allocators over gRPC.
///
/// kmemd boots a simulated x86-64 machine (NUMA nodes, zones, the buddy allocator,
/// SLUB, vmalloc, memory cgroups) and serves the kernel's allocation API as
/// kmem.v1 gRPC services, with kernel-format /proc texts over HTTP.
#[derive(Parser, Debug)]
#[command(name = "kmemd", version, about, long_about, after_help = AFTER_HELP)]
struct Args {
    /// TOML configuration file (keys as in --print-config).
    #[arg(long, env = "KMEMD_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    grpc_addr: Option<String>,
    /// HTTP listen address for /proc, /cgroup, /healthz, /metrics [default: 127.0.0.1:9464].
    #[arg(long)]
    http_addr: Option<String>,
    /// Simulated memory size, e.g. 16GiB, 1TiB [default: 16GiB].
    #[arg(long)]
    memory: Option<ByteSize>,
    /// NUMA nodes, 1..=64 [default: 1].
    #[arg(long)]
    nodes: Option<u16>,
    /// Simulated CPUs [default: 2].
    #[arg(long)]
    cpus: Option<u16>,
    /// Most operations per Batch call [default: 10000].
    #[arg(long)]
    max_batch: Option<u32>,
    /// Log format: text or json [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Log filter in RUST_LOG syntax, e.g. info or kmem_server=debug [default: info].
    #[arg(long)]
    log_filter: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Boot, print these /proc files (buddyinfo, pagetypeinfo, zoneinfo, meminfo,
    /// vmstat, slabinfo, vmallocinfo) and exit; may repeat.
    #[arg(long = "dump", value_name = "FILE")]
    dump: Vec<String>,
}

impl Args {
    fn overrides(&self) -> Overrides {
        let mut o: Overrides = Vec::new();
        if let Some(a) = &self.grpc_addr {
            o.push(("grpc_addr", Value::from(a.clone())));
        }
        if let Some(a) = &self.http_addr {
            o.push(("http_addr", Value::from(a.clone())));
        }
        if let Some(m) = self.memory {
            o.push(("machine.memory", Value::from(m.0)));
        }
        if let Some(n) = self.nodes {
            o.push(("machine.nodes", Value::from(n)));
        }
        if let Some(c) = self.cpus {
            o.push(("machine.cpus", Value::from(c)));
        }
        if let Some(b) = self.max_batch {
            o.push(("limits.max_batch", Value::from(b)));
        }
        if let Some(f) = &self.log_format {
            o.push(("log.format", Value::from(f.clone())));
        }
        if let Some(f) = &self.log_filter {
            o.push(("log.filter", Value::from(f.clone())));
        }
        o
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match Config::load(args.config.as_deref(), "KMEMD_", args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kmemd: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    if !args.dump.is_empty() {
        let m = match Machine::boot(cfg.machine.clone()) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("kmemd: cannot boot: {e}");
                return ExitCode::from(2);
            }
        };
        for f in &args.dump {
            match m.proc_file(f) {
                Ok(t) => print!("{t}"),
                Err(e) => {
                    eprintln!("kmemd: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kmemd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let running = match kmem_server::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kmemd: {e}");
                return ExitCode::from(1);
            }
        };
        // Print the bound addresses on stdout: with port 0 in the config this is how
        // a caller learns them.
        println!(
            "kmemd listening grpc={} http={}",
            running.grpc_addr, running.http_addr
        );
        let signal = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            }
        };
        let which = signal.await;
        tracing::info!(signal = which, "shutdown requested");
        running.shutdown();
        // A second signal forces the exit.
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
        match running.wait().await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kmemd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
