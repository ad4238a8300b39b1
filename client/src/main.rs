//! kmemctl: the command line for kmemd.
//!
//! Every allocator, cgroup and introspection RPC as a subcommand with human input
//! (`4KiB`, `0x1000`, `GFP_KERNEL|__GFP_ZERO`) and output (hex addresses, or JSON with
//! `--output json`); `bench` is a ghz-like load generator; `gfp` and `size` work
//! offline.
#![forbid(unsafe_code)]

mod cli;

/// The load generator encodes and decodes many small messages: mimalloc keeps that
/// from dominating the client's share of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kmem_allocator::gfp::{COMPOSITES, SINGLE_FLAGS};
use kmem_allocator::{ByteSize, Gfp};

use cli::{Global, Output, admin, bench, ops, replay, top};

#[derive(Parser, Debug)]
#[command(
    name = "kmemctl",
    version,
    about = "Drive and inspect kmemd",
    after_long_help = ops::GFP_HELP
)]
struct Args {
    /// kmemd's gRPC address.
    #[arg(
        id = "server_addr",
        long = "addr",
        global = true,
        env = "KMEMCTL_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    server_addr: String,
    /// A tenant's bearer token.
    #[arg(long, global = true, env = "KMEMCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Deadline of every call: 5s, 500ms.
    #[arg(long, global = true, value_parser = cli::parse_duration)]
    timeout: Option<Duration>,
    /// text, json (every command) or csv (bench: one line per request).
    #[arg(short, long, global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Ops(ops::OpsCmd),
    #[command(flatten)]
    Admin(admin::AdminCmd),
    /// Load generator (ghz-like): `kmemctl bench --op kmalloc -c 64 -z 10s`.
    #[command(after_long_help = ops::GFP_HELP)]
    Bench(Box<bench::BenchArgs>),
    /// Live view: zones vs watermarks, buddyinfo, slab caches, cgroups, rates (`q` quits).
    Top(top::TopArgs),
    /// Replay a trace written by `bench --record FILE`, in order, on the recorded CPUs.
    Replay { file: std::path::PathBuf },
    /// Explain a GFP mask: `kmemctl gfp 'GFP_KERNEL|__GFP_ZERO'` or `kmemctl gfp 0xcc0`.
    ///
    /// Prints the mask, its %pGg form, the zone it allows, its migratetype, and whether
    /// it may block; with --list, every flag and composite with its value.
    #[command(after_long_help = ops::GFP_HELP)]
    Gfp {
        /// The mask as text or a number.
        mask: Option<String>,
        /// List every known flag and composite.
        #[arg(long)]
        list: bool,
    },
    /// Parse a size the way kmemd does: `kmemctl size 1.5MiB`.
    Size { size: String },
}

fn offline(cmd: &Cmd) -> Option<ExitCode> {
    match cmd {
        Cmd::Gfp { list: true, .. } => {
            for (name, g) in SINGLE_FLAGS.iter().chain(COMPOSITES) {
                println!("{name:<24} {:#10x}", g.0);
            }
            Some(ExitCode::SUCCESS)
        }
        Cmd::Gfp { mask: Some(m), .. } => Some(match Gfp::parse(m).and_then(|g| g.validate()) {
            Ok(g) => {
                println!("mask:        {:#x}", g.0);
                println!("%pGg:        {g}");
                println!("zone:        {}", g.zone().name());
                println!("migratetype: {}", g.migratetype().name());
                println!("may block:   {}", g.allows_blocking());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kmemctl: {e}");
                ExitCode::from(2)
            }
        }),
        Cmd::Gfp { .. } => {
            eprintln!("kmemctl: give a mask, or --list");
            Some(ExitCode::from(2))
        }
        Cmd::Size { size } => Some(match ByteSize::parse(size) {
            Ok(s) => {
                println!("{} bytes ({s})", s.0);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kmemctl: {e}");
                ExitCode::from(2)
            }
        }),
        _ => None,
    }
}

async fn online(g: &Global, cmd: Cmd) -> Result<(), kmem_client::Error> {
    match cmd {
        Cmd::Bench(a) => bench::run(g, *a).await,
        Cmd::Top(a) => top::run(&g.connect().await?, a).await,
        Cmd::Replay { file } => replay::replay(g, file).await,
        Cmd::Ops(o) => ops::run(g, &g.connect().await?, o).await,
        Cmd::Admin(a) => admin::run(g, &g.connect().await?, a).await,
        Cmd::Gfp { .. } | Cmd::Size { .. } => Ok(()),
    }
}

/// `kmemctl … | head`: a closed stdout ends the program quietly, as for C tools.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let args = Args::parse();
    if let Some(code) = offline(&args.cmd) {
        return code;
    }
    let g = Global {
        addr: args.server_addr,
        token: args.token,
        timeout: args.timeout,
        output: args.output,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kmemctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(online(&g, args.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::print_error(&g, &e);
            ExitCode::FAILURE
        }
    }
}
