//! What lives at a kernel virtual address: the block, its node and zone, and a free
//! that works out which allocator owns it (what `kmemctl free <addr>` needs).

use crate::context::AllocContext;
use crate::mem::ZoneType;
use crate::page::{Owner, PageKind, Pfn, PAGE_SIZE};
use crate::slab::{SlabError, PAGE_OFFSET, ZERO_SIZE_PTR};
use crate::vmalloc::is_vmalloc_addr;
use crate::Machine;

/// Where an address's memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    pub pfn: Pfn,
    pub node: u16,
    pub zone: ZoneType,
}

/// Which allocator a generic free went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freed {
    /// Nothing: NULL or ZERO_SIZE_PTR (as kfree).
    Nothing,
    Pages {
        order: u8,
    },
    Slab {
        ksize: u64,
    },
    LargeKmalloc {
        order: u8,
    },
    Vmalloc {
        size: u64,
    },
}

impl Machine {
    /// The page frame, node and zone behind a direct-map or vmalloc address.
    pub fn addr_info(&self, addr: u64) -> Option<AddrInfo> {
        let pfn = if is_vmalloc_addr(addr) {
            self.vmalloc_to_pfn(addr).ok()?
        } else {
            addr.checked_sub(PAGE_OFFSET)? / PAGE_SIZE
        };
        self.pfn_info(pfn)
    }

    /// Node and zone of a page frame.
    pub fn pfn_info(&self, pfn: Pfn) -> Option<AddrInfo> {
        let z = &self.zones()[self.pages().zone_of(pfn)?];
        Some(AddrInfo {
            pfn,
            node: z.node,
            zone: z.zt,
        })
    }

    /// Free whatever an allocation returned at `addr`: a vmalloc area (vfree), a slab
    /// object or large kmalloc (kfree), or the head of a page block (`__free_pages`
    /// with the block's own order). Errors leave everything as it was.
    pub fn free_addr(&self, addr: u64, ctx: &AllocContext) -> Result<Freed, crate::KvError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(Freed::Nothing);
        }
        if is_vmalloc_addr(addr) {
            let size = self.find_vm_area(addr).map_or(0, |a| a.usable());
            self.vfree_on(addr, ctx)?;
            return Ok(Freed::Vmalloc { size });
        }
        let (head, w) = self.resolve_block(addr)?;
        debug_assert_eq!(w.kind(), PageKind::Alloc);
        match w.owner() {
            Owner::Pages => {
                if head * PAGE_SIZE + PAGE_OFFSET != addr {
                    return Err(SlabError::InvalidFree {
                        addr,
                        why: format!(
                            "inside the order-{} page block at {:#x}, not its start",
                            w.order(),
                            head * PAGE_SIZE + PAGE_OFFSET
                        ),
                    }
                    .into());
                }
                self.free_pages_on(head, w.order(), ctx).map_err(|e| {
                    crate::KvError::Slab(SlabError::InvalidFree {
                        addr,
                        why: e.to_string(),
                    })
                })?;
                Ok(Freed::Pages { order: w.order() })
            }
            Owner::LargeKmalloc => {
                self.kfree(addr, ctx)?;
                Ok(Freed::LargeKmalloc { order: w.order() })
            }
            Owner::Slab(_) => {
                let ksize = self.ksize(addr)?;
                self.kfree(addr, ctx)?;
                Ok(Freed::Slab { ksize })
            }
            Owner::Vmalloc => Err(SlabError::InvalidFree {
                addr,
                why: "a page behind a vmalloc area: vfree the area's address".into(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{AllocContext, Gfp, Machine, MachineConfig};

    use super::Freed;

    #[test]
    fn free_addr_dispatches_to_the_owner() {
        let m = Machine::boot(MachineConfig::default()).unwrap();
        let ctx = AllocContext::default();
        let before = m.snapshot().total_free;
        let b = m.alloc_pages(Gfp::GFP_KERNEL, 2, &ctx).unwrap();
        let o = m.kmalloc(96, Gfp::GFP_KERNEL, &ctx).unwrap();
        let l = m.kmalloc(64 << 10, Gfp::GFP_KERNEL, &ctx).unwrap();
        let v = m.vmalloc(1 << 20, &ctx).unwrap();
        let info = m.addr_info(o.addr).unwrap();
        assert_eq!(info.zone, crate::ZoneType::Normal);
        assert!(m.addr_info(v).is_some());
        let page_addr = crate::slab::phys_to_virt(b.phys_addr());
        assert!(
            m.free_addr(page_addr + 4096, &ctx).is_err(),
            "inside a block"
        );
        assert_eq!(
            m.free_addr(page_addr, &ctx).unwrap(),
            Freed::Pages { order: 2 }
        );
        assert_eq!(
            m.free_addr(o.addr, &ctx).unwrap(),
            Freed::Slab { ksize: 96 }
        );
        assert_eq!(
            m.free_addr(l.addr, &ctx).unwrap(),
            Freed::LargeKmalloc { order: 4 }
        );
        assert_eq!(
            m.free_addr(v, &ctx).unwrap(),
            Freed::Vmalloc { size: 1 << 20 }
        );
        assert_eq!(m.free_addr(16, &ctx).unwrap(), Freed::Nothing);
        assert!(m.free_addr(v, &ctx).is_err(), "double vfree");
        assert!(
            m.free_addr(page_addr, &ctx).is_err(),
            "double free of pages"
        );
        m.drain_all_pages();
        m.check_invariants().unwrap();
        let _ = before;
    }
}
