//! kmem-allocator: a simulated machine running the Linux kernel's allocation stack.
//!
//! The crate models behaviour and numbers of Linux v6.18 (x86-64, 4 KiB pages) in user
//! space: NUMA nodes and zones ([`mem`]), per-page state ([`page`]), GFP flags
//! ([`gfp`]), the buddy page allocator with per-CPU lists, migratetype fallback and
//! watermarks ([`page_alloc`], [`zone`], [`fallback`], [`pcp`], [`watermark`]), and the
//! kernel's text views of it ([`proc`]). It knows nothing of RPC.
//!
//! ```
//! use kmem_allocator::{Machine, MachineConfig, Gfp, AllocContext};
//! let m = Machine::boot(MachineConfig::default()).unwrap();
//! let b = m.alloc_pages(Gfp::GFP_KERNEL | Gfp::ZERO, 3, &AllocContext::default()).unwrap();
//! assert_eq!(b.order, 3);
//! m.free_pages(b.pfn, 3).unwrap();
//! assert!(m.free_pages(b.pfn, 3).is_err(), "double free is an error, not a crash");
//! ```
#![forbid(unsafe_code)]

pub mod addr;
pub mod config;
pub mod content;
pub mod context;
pub mod debug;
pub mod fallback;
pub mod gfp;
pub mod kmalloc;
pub mod kvmalloc;
pub mod machine;
pub mod mem;
pub mod memcg;
pub mod overflow;
pub mod page;
pub mod page_alloc;
pub mod pcp;
pub mod percpu;
pub mod phys;
pub mod pinned;
pub mod proc;
pub mod reasons;
pub mod slab;
pub mod stats;
pub mod units;
pub mod vmalloc;
pub mod vmstat;
pub mod watermark;
pub mod zone;

pub use addr::{AddrInfo, Freed};
pub use config::{Hole, MachineConfig, Reservation, ThpMode};
pub use context::{AllocContext, CancelToken, ChargeReport, Scope};
pub use gfp::{Gfp, GfpError};
pub use kmalloc::KmallocObj;
pub use kvmalloc::{Backend, KvError, KvObj};
pub use machine::{Machine, Sysctl, SysctlError};
pub use mem::{ConfigError, ZoneType};
pub use page::{MigrateType, Pfn, MAX_ORDER, PAGE_SIZE};
pub use page_alloc::{AllocError, FreeError, PageBlock};
pub use phys::PhysError;
pub use pinned::PinnedCpu;
pub use reasons::{ErrorClass, Reason};
pub use slab::{CacheId, SlabError, SlabFlags};
pub use units::ByteSize;
pub use vmalloc::VmallocError;
