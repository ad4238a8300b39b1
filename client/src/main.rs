//! kmemctl: the command line for kmemd.
//!
//! Until the daemon serves RPCs, kmemctl works offline on what needs no daemon:
//! decoding and encoding GFP masks and sizes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kmem_allocator::gfp::{COMPOSITES, SINGLE_FLAGS};
use kmem_allocator::{ByteSize, Gfp};

#[derive(Parser, Debug)]
#[command(name = "kmemctl", version, about = "Drive and inspect kmemd")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Explain a GFP mask: `kmemctl gfp 'GFP_KERNEL|__GFP_ZERO'` or `kmemctl gfp 0xcc0`.
    ///
    /// Prints the mask, its %pGg form, the zone it allows, its migratetype, and whether
    /// it may block; with --list, every flag and composite with its value.
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

fn main() -> ExitCode {
    match Args::parse().cmd {
        Cmd::Gfp { list: true, .. } => {
            for (name, g) in SINGLE_FLAGS.iter().chain(COMPOSITES) {
                println!("{name:<24} {:#10x}", g.0);
            }
            ExitCode::SUCCESS
        }
        Cmd::Gfp { mask: Some(m), .. } => match Gfp::parse(&m).and_then(|g| g.validate()) {
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
        },
        Cmd::Gfp { .. } => {
            eprintln!("kmemctl: give a mask, or --list");
            ExitCode::from(2)
        }
        Cmd::Size { size } => match ByteSize::parse(&size) {
            Ok(s) => {
                println!("{} bytes ({s})", s.0);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kmemctl: {e}");
                ExitCode::from(2)
            }
        },
    }
}
