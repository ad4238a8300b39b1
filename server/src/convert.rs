//! Domain → wire: the allocator's answers as `kmem.v1` messages. The one place that
//! builds `pb::Allocation` and the enum conversions, so every RPC (unary, Batch,
//! Session) reports an allocation the same way.

use kmem_allocator::kmalloc::KmallocObj;
use kmem_allocator::page_alloc::PageBlock;
use kmem_allocator::slab::{phys_to_virt, ZERO_SIZE_PTR};
use kmem_allocator::{AllocContext, Backend as KvBackend, CacheId, KvObj, MigrateType, ZoneType};
use kmem_client::pb;

use crate::api::Api;

pub fn zone_pb(z: ZoneType) -> pb::ZoneType {
    match z {
        ZoneType::Dma => pb::ZoneType::Dma,
        ZoneType::Dma32 => pb::ZoneType::Dma32,
        ZoneType::Normal => pb::ZoneType::Normal,
        ZoneType::Movable => pb::ZoneType::Movable,
        ZoneType::Device => pb::ZoneType::Device,
    }
}

pub fn mt_pb(m: MigrateType) -> pb::MigrateType {
    match m {
        MigrateType::Unmovable => pb::MigrateType::Unmovable,
        MigrateType::Movable => pb::MigrateType::Movable,
        MigrateType::Reclaimable => pb::MigrateType::Reclaimable,
        MigrateType::HighAtomic => pb::MigrateType::Highatomic,
        MigrateType::Cma => pb::MigrateType::Cma,
        MigrateType::Isolate => pb::MigrateType::Isolate,
    }
}

impl Api {
    /// What the call's cgroup charges would cost the caller: the `memory.high`
    /// throttle the kernel would impose on return to user space.
    pub(crate) fn charged(&self, mut a: pb::Allocation, ctx: &AllocContext) -> pb::Allocation {
        if let Some(r) = &ctx.charge_report {
            a.memory_high_delay_ms = r.high_delay_ms();
        }
        a
    }

    pub fn page_allocation(&self, b: &PageBlock) -> pb::Allocation {
        pb::Allocation {
            addr: phys_to_virt(b.phys_addr()),
            size: b.nr_pages() * kmem_allocator::PAGE_SIZE,
            backend: pb::Backend::Pages as i32,
            cache: String::new(),
            pfn: Some(b.pfn),
            order: Some(b.order as u32),
            node: Some(b.node as u32),
            zone: zone_pb(b.zone) as i32,
            migratetype: mt_pb(b.migratetype) as i32,
            gfp: b.gfp.to_string(),
            pfmemalloc: b.pfmemalloc,
            memory_high_delay_ms: 0,
        }
    }

    pub(crate) fn located(
        &self,
        addr: u64,
        size: u64,
        backend: pb::Backend,
        cache: Option<CacheId>,
        order: Option<u8>,
    ) -> pb::Allocation {
        let mut a = pb::Allocation {
            addr,
            size,
            backend: backend as i32,
            cache: cache
                .map(|c| self.machine.cache_name(c).to_string())
                .unwrap_or_default(),
            order: order.map(u32::from),
            ..Default::default()
        };
        if addr != ZERO_SIZE_PTR {
            if let Some(i) = self.machine.addr_info(addr) {
                a.pfn = Some(i.pfn);
                a.node = Some(i.node as u32);
                a.zone = zone_pb(i.zone) as i32;
            }
        }
        a
    }

    pub fn kmalloc_allocation(&self, o: &KmallocObj) -> pb::Allocation {
        let backend = if o.order.is_some() {
            pb::Backend::LargeKmalloc
        } else {
            pb::Backend::Slab
        };
        self.located(o.addr, o.ksize, backend, o.cache, o.order)
    }

    pub fn kv_allocation(&self, o: &KvObj) -> pb::Allocation {
        match o.backend {
            KvBackend::Vmalloc => self.vmalloc_allocation(o.addr),
            KvBackend::Kmalloc => {
                let backend = if o.cache.is_some() || o.addr == ZERO_SIZE_PTR {
                    pb::Backend::Slab
                } else {
                    pb::Backend::LargeKmalloc
                };
                let order = (backend == pb::Backend::LargeKmalloc).then(|| {
                    o.size
                        .div_ceil(kmem_allocator::PAGE_SIZE)
                        .next_power_of_two()
                        .trailing_zeros() as u8
                });
                self.located(o.addr, o.size, backend, o.cache, order)
            }
        }
    }

    pub fn vmalloc_allocation(&self, addr: u64) -> pb::Allocation {
        let area = self.machine.find_vm_area(addr);
        let size = area.as_ref().map_or(0, |a| a.usable());
        let mut a = self.located(addr, size, pb::Backend::Vmalloc, None, None);
        if let Some(area) = area {
            a.order = Some(area.page_order as u32);
        }
        a
    }
}
