//! Allocation, free, cache and memory-access commands.

use clap::{Args, Subcommand};
use kmem_client::{Client, Error, Opts, pb};
use serde_json::json;

use super::{
    AllocOut, Global, hex, human, parse_addr, parse_gfp, parse_size, print_json, print_ok,
};

/// The GFP flags most callers need, shown by `--help`.
pub const GFP_HELP: &str = "\
GFP flags (--gfp) say how an allocation may behave; join them with `|`:
  GFP_KERNEL          normal kernel allocation: may sleep, reclaim, do I/O and FS calls
  GFP_KERNEL_ACCOUNT  GFP_KERNEL charged to the memory cgroup (--cgroup), memory.max applies
  GFP_ATOMIC          cannot sleep (IRQ/spinlock context): no reclaim, may dip into reserves
  GFP_NOWAIT          cannot sleep, no reserves, no warning on failure
  GFP_NOIO            may reclaim but start no I/O (block layer paths)
  GFP_NOFS            may reclaim and do I/O but not re-enter filesystems
  GFP_USER            userspace-backing memory, cpuset-hardwalled
  GFP_HIGHUSER_MOVABLE  user pages the kernel may migrate (movable zone/blocks)
  GFP_DMA / GFP_DMA32 take memory from ZONE_DMA (<16M) / ZONE_DMA32 (<4G)
Modifiers: __GFP_ZERO (zeroed), __GFP_NOWARN (no failure splat), __GFP_NORETRY (fail
fast), __GFP_RETRY_MAYFAIL (try hard, may fail), __GFP_NOFAIL (never fails: waits),
__GFP_HIGH (use part of the reserves), __GFP_ACCOUNT (charge the cgroup), __GFP_COMP
(compound page). Numbers work too: --gfp 0xcc0. `kmemctl gfp --list` lists every flag,
`kmemctl gfp 'GFP_KERNEL|__GFP_ZERO'` explains a mask.";

/// Options of an allocating call.
#[derive(Args, Debug, Clone)]
pub struct AllocArgs {
    /// GFP flags, e.g. 'GFP_KERNEL|__GFP_ZERO' or 0xcc0 (see `kmemctl --help`).
    #[arg(long, default_value = "GFP_KERNEL", value_parser = parse_gfp)]
    pub gfp: String,
    /// Memory cgroup charged by __GFP_ACCOUNT allocations (e.g. /tenants/a).
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Preferred NUMA node.
    #[arg(long)]
    pub node: Option<u32>,
    /// Simulated CPU to run on.
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Caller tag (shown by vmallocinfo and slab owner tracking).
    #[arg(long)]
    pub caller: Option<String>,
}

impl AllocArgs {
    pub fn opts(&self) -> Opts {
        let mut o = Opts::gfp(&self.gfp);
        if let Some(c) = &self.cgroup {
            o = o.cgroup(c);
        }
        if let Some(n) = self.node {
            o = o.node(n);
        }
        if let Some(c) = self.cpu {
            o = o.cpu(c);
        }
        if let Some(c) = &self.caller {
            o = o.caller(c);
        }
        o
    }
}

#[derive(Subcommand, Debug)]
pub enum OpsCmd {
    /// kmalloc SIZE bytes: `kmemctl kmalloc 96 --gfp 'GFP_KERNEL|__GFP_ZERO' --cgroup /a`.
    Kmalloc {
        #[arg(value_parser = parse_size)]
        size: u64,
        /// kzalloc: zero the object.
        #[arg(long)]
        zero: bool,
        #[command(flatten)]
        a: AllocArgs,
    },
    /// kfree an object (kfree_sensitive with --sensitive).
    Kfree {
        #[arg(value_parser = parse_addr)]
        addr: u64,
        #[arg(long)]
        sensitive: bool,
    },
    /// ksize: the usable size of an object.
    Ksize {
        #[arg(value_parser = parse_addr)]
        addr: u64,
    },
    /// alloc_pages: 2^order contiguous pages.
    AllocPages {
        #[arg(long, default_value_t = 0)]
        order: u32,
        #[command(flatten)]
        a: AllocArgs,
    },
    /// __free_pages: give back a block by --pfn (or --page-addr) and --order.
    FreePages {
        #[arg(long, value_parser = parse_addr, required_unless_present = "page_addr")]
        pfn: Option<u64>,
        /// The block's direct-map address instead of its pfn.
        #[arg(long, value_parser = parse_addr, conflicts_with = "pfn")]
        page_addr: Option<u64>,
        #[arg(long, default_value_t = 0)]
        order: u32,
    },
    /// vmalloc SIZE: virtually contiguous memory (`kmemctl vmalloc 1MiB`).
    Vmalloc {
        #[arg(value_parser = parse_size)]
        size: u64,
        /// vzalloc.
        #[arg(long)]
        zero: bool,
        /// vmalloc_huge (huge mappings when possible).
        #[arg(long, conflicts_with = "zero")]
        huge: bool,
        #[command(flatten)]
        a: AllocArgs,
    },
    /// vfree a vmalloc area.
    Vfree {
        #[arg(value_parser = parse_addr)]
        addr: u64,
    },
    /// kvmalloc SIZE: kmalloc, falling back to vmalloc.
    Kvmalloc {
        #[arg(value_parser = parse_size)]
        size: u64,
        /// kvzalloc.
        #[arg(long)]
        zero: bool,
        #[command(flatten)]
        a: AllocArgs,
    },
    /// kvfree what kvmalloc returned.
    Kvfree {
        #[arg(value_parser = parse_addr)]
        addr: u64,
    },
    /// Free whatever lives at ADDR (slab object, pages, vmalloc area); says what it was.
    Free {
        #[arg(value_parser = parse_addr)]
        addr: u64,
    },
    /// copy_to_user: read LEN bytes at ADDR (hex dump; raw hex in JSON).
    Read {
        #[arg(value_parser = parse_addr)]
        addr: u64,
        #[arg(value_parser = parse_size)]
        len: u64,
    },
    /// copy_from_user: write DATA at ADDR, as hex (`deadbeef`) or, with --text, as text.
    Write {
        #[arg(value_parser = parse_addr)]
        addr: u64,
        data: String,
        #[arg(long)]
        text: bool,
    },
    /// kmem_cache_* commands.
    #[command(subcommand)]
    Cache(CacheCmd),
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// kmem_cache_create NAME SIZE.
    Create {
        name: String,
        #[arg(value_parser = parse_size)]
        size: u64,
        /// Alignment (0 or a power of two).
        #[arg(long, default_value = "0", value_parser = parse_size)]
        align: u64,
        /// SLAB_* flags: 'SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT'.
        #[arg(long, default_value = "")]
        flags: String,
        #[arg(long, default_value = "0", value_parser = parse_size)]
        useroffset: u64,
        #[arg(long, default_value = "0", value_parser = parse_size)]
        usersize: u64,
        /// Return the existing cache of this name instead of failing.
        #[arg(long)]
        reuse: bool,
    },
    /// kmem_cache_alloc from CACHE (name or id).
    Alloc {
        cache: String,
        #[arg(long)]
        zero: bool,
        #[command(flatten)]
        a: AllocArgs,
    },
    /// kmem_cache_free.
    Free {
        cache: String,
        #[arg(value_parser = parse_addr)]
        addr: u64,
    },
    /// kmem_cache_shrink: give empty slabs back.
    Shrink { cache: String },
    /// kmem_cache_destroy.
    Destroy { cache: String },
    /// Check a cache's slabs for corruption (slub_debug validate).
    Validate { cache: String },
    /// Every slab cache (like slabinfo).
    List,
}

fn u32_arg(v: u64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::InvalidArgument {
        reason: "BAD_ARGUMENT".into(),
        field: Some(what.into()),
        message: format!("{what} {v} does not fit in 32 bits"),
    })
}

pub async fn run(g: &Global, c: &Client, cmd: OpsCmd) -> Result<(), Error> {
    match cmd {
        OpsCmd::Kmalloc { size, zero, a } => {
            let r = if zero {
                c.kzalloc(size, &a.opts()).await?
            } else {
                c.kmalloc(size, &a.opts()).await?
            };
            AllocOut::from(&r).print(g);
        }
        OpsCmd::Kfree { addr, sensitive } => {
            if sensitive {
                c.kfree_sensitive(addr).await?;
            } else {
                c.kfree(addr).await?;
            }
            print_ok(
                g,
                &format!("freed {}", hex(addr)),
                json!({"freed": hex(addr)}),
            );
        }
        OpsCmd::Ksize { addr } => {
            let n = c.ksize(addr).await?;
            print_ok(g, &human(n), json!({"addr": hex(addr), "size": n}));
        }
        OpsCmd::AllocPages { order, a } => {
            AllocOut::from(&c.alloc_pages(order, &a.opts()).await?).print(g);
        }
        OpsCmd::FreePages {
            pfn,
            page_addr: addr,
            order,
        } => {
            match pfn {
                Some(p) => c.free_pages(p, order).await?,
                None => c.free_pages_by_addr(addr.unwrap_or(0), order).await?,
            }
            let what = pfn.map(|p| format!("pfn {}", hex(p)));
            let what = what.unwrap_or_else(|| format!("addr {}", hex(addr.unwrap_or(0))));
            print_ok(
                g,
                &format!("freed order-{order} block at {what}"),
                json!({"freed": what, "order": order}),
            );
        }
        OpsCmd::Vmalloc {
            size,
            zero,
            huge,
            a,
        } => {
            let r = if huge {
                c.vmalloc_huge(size, &a.opts()).await?
            } else {
                let kind = if zero {
                    pb::VmallocKind::Vzalloc
                } else {
                    pb::VmallocKind::Unspecified
                };
                c.vmalloc(size, kind, &a.opts()).await?
            };
            AllocOut::from(&r).print(g);
        }
        OpsCmd::Vfree { addr } => {
            c.vfree(addr).await?;
            print_ok(
                g,
                &format!("freed {}", hex(addr)),
                json!({"freed": hex(addr)}),
            );
        }
        OpsCmd::Kvmalloc { size, zero, a } => {
            AllocOut::from(&c.kvmalloc(size, zero, &a.opts()).await?).print(g);
        }
        OpsCmd::Kvfree { addr } => {
            c.kvfree(addr).await?;
            print_ok(
                g,
                &format!("freed {}", hex(addr)),
                json!({"freed": hex(addr)}),
            );
        }
        OpsCmd::Free { addr } => {
            let r = c.free(addr).await?;
            let b = super::backend_name(r.backend);
            print_ok(
                g,
                &format!("freed {} ({b}, {})", hex(addr), human(r.size)),
                json!({"freed": hex(addr), "backend": b, "size": r.size}),
            );
        }
        OpsCmd::Read { addr, len } => {
            let data = c.copy_to_user(addr, len).await?;
            if g.json() {
                print_json(&json!({"addr": hex(addr), "len": data.len(), "hex": to_hex(&data)}));
            } else {
                print!("{}", hexdump(addr, &data));
            }
        }
        OpsCmd::Write { addr, data, text } => {
            let bytes = if text {
                data.into_bytes()
            } else {
                from_hex(&data).map_err(|m| Error::InvalidArgument {
                    reason: "BAD_HEX".into(),
                    field: Some("data".into()),
                    message: m,
                })?
            };
            let n = bytes.len();
            c.copy_from_user(addr, bytes).await?;
            print_ok(
                g,
                &format!("wrote {n} bytes at {}", hex(addr)),
                json!({"addr": hex(addr), "written": n}),
            );
        }
        OpsCmd::Cache(cc) => cache(g, c, cc).await?,
    }
    Ok(())
}

async fn cache(g: &Global, c: &Client, cmd: CacheCmd) -> Result<(), Error> {
    match cmd {
        CacheCmd::Create {
            name,
            size,
            align,
            flags,
            useroffset,
            usersize,
            reuse,
        } => {
            let i = c
                .create_cache(pb::CreateCacheRequest {
                    name,
                    size: u32_arg(size, "size")?,
                    align: u32_arg(align, "align")?,
                    flags,
                    useroffset: u32_arg(useroffset, "useroffset")?,
                    usersize: u32_arg(usersize, "usersize")?,
                    reuse_existing: reuse,
                })
                .await?;
            if g.json() {
                print_json(&json!({
                    "id": i.id, "name": i.name, "aliases": i.aliases,
                    "object_size": i.object_size, "slab_size": i.slab_size, "align": i.align,
                    "order": i.order, "objs_per_slab": i.objs_per_slab, "flags": i.flags,
                }));
            } else {
                println!("cache:       {} (id {})", i.name, i.id);
                if !i.aliases.is_empty() {
                    println!("aliases:     {}", i.aliases.join(", "));
                }
                println!("object size: {}", i.object_size);
                println!("slab size:   {} (align {})", i.slab_size, i.align);
                println!(
                    "slab:        order {}, {} objects",
                    i.order, i.objs_per_slab
                );
                if !i.flags.is_empty() {
                    println!("flags:       {}", i.flags);
                }
            }
        }
        CacheCmd::Alloc { cache, zero, a } => {
            AllocOut::from(&c.cache_alloc(&cache, zero, &a.opts()).await?).print(g);
        }
        CacheCmd::Free { cache, addr } => {
            c.cache_free(&cache, addr).await?;
            print_ok(
                g,
                &format!("freed {} to {cache}", hex(addr)),
                json!({"freed": hex(addr), "cache": cache}),
            );
        }
        CacheCmd::Shrink { cache } => {
            let n = c.shrink_cache(&cache).await?;
            print_ok(
                g,
                &format!("{cache}: {n} pages freed"),
                json!({"cache": cache, "freed_pages": n}),
            );
        }
        CacheCmd::Destroy { cache } => {
            c.destroy_cache(&cache).await?;
            print_ok(
                g,
                &format!("destroyed {cache}"),
                json!({"destroyed": cache}),
            );
        }
        CacheCmd::Validate { cache } => {
            let r = c.validate_cache(&cache).await?;
            if g.json() {
                print_json(&json!({"cache": r.cache, "slabs": r.slabs,
                    "objects": r.objects, "errors": r.errors}));
            } else {
                println!("{}: {} slabs, {} objects", r.cache, r.slabs, r.objects);
                for e in &r.errors {
                    println!("{e}");
                }
                if r.errors.is_empty() {
                    println!("no errors");
                }
            }
        }
        CacheCmd::List => {
            let caches = c.slab_info().await?;
            if g.json() {
                let v: Vec<_> = caches
                    .iter()
                    .map(|s| {
                        json!({"name": s.name, "aliases": s.aliases,
                        "active_objects": s.active_objects, "total_objects": s.total_objects,
                        "object_size": s.object_size, "slab_size": s.slab_size,
                        "objs_per_slab": s.objs_per_slab, "pages_per_slab": s.pages_per_slab,
                        "slabs": s.slabs, "partial_slabs": s.partial_slabs,
                        "alloc_total": s.alloc_total, "free_total": s.free_total,
                        "flags": s.flags})
                    })
                    .collect();
                print_json(&v);
            } else {
                println!(
                    "{:<24} {:>10} {:>10} {:>8} {:>6} {:>8} {:>12}",
                    "NAME", "ACTIVE", "TOTAL", "OBJSIZE", "PERSL", "SLABS", "ALLOCS"
                );
                for s in &caches {
                    println!(
                        "{:<24} {:>10} {:>10} {:>8} {:>6} {:>8} {:>12}",
                        s.name,
                        s.active_objects,
                        s.total_objects,
                        s.object_size,
                        s.objs_per_slab,
                        s.slabs,
                        s.alloc_total
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn to_hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let t: String = s
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if t.len() % 2 != 0 {
        return Err(format!(
            "odd number of hex digits in `{s}` (use --text for text)"
        ));
    }
    (0..t.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&t[i..i + 2], 16)
                .map_err(|_| format!("bad hex `{s}` (use --text for text)"))
        })
        .collect()
}

/// `print_hex_dump` style: address, 16 bytes, ASCII.
pub fn hexdump(base: u64, d: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in d.chunks(16).enumerate() {
        let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:016x}: {:<47}  {ascii}\n",
            base + (i * 16) as u64,
            bytes.join(" ")
        ));
    }
    out
}
