//! `kmem.v1.IntrospectionService`: /proc texts, structured views, sysctls, dmesg.

use kmem_allocator::machine::SYSCTL_NAMES;
use kmem_allocator::proc::FILES;
use kmem_allocator::MigrateType;
use kmem_client::pb;
use kmem_client::pb::introspection_service_server::IntrospectionService;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::api::{mt_pb, zone_pb};
use crate::error::ApiError;

pub struct IntrospectionSvc {
    pub shared: Shared,
}

fn entry(name: impl Into<String>, value: u64) -> pb::StatEntry {
    pb::StatEntry {
        name: name.into(),
        value,
    }
}

const MIGRATETYPES: [MigrateType; 6] = [
    MigrateType::Unmovable,
    MigrateType::Movable,
    MigrateType::Reclaimable,
    MigrateType::HighAtomic,
    MigrateType::Cma,
    MigrateType::Isolate,
];

#[tonic::async_trait]
impl IntrospectionService for IntrospectionSvc {
    async fn get_proc_file(
        &self,
        req: Request<pb::GetProcFileRequest>,
    ) -> Result<Response<pb::GetProcFileResponse>, Status> {
        self.shared.caller(&req)?;
        let name = &req.get_ref().name;
        let text = self.shared.api.machine.proc_file(name).map_err(|e| {
            ApiError::new(e.reason(), e.to_string()).detail(crate::error::Detail::Resource {
                kind: "proc file",
                name: name.clone(),
            })
        })?;
        Ok(Response::new(pb::GetProcFileResponse { text }))
    }

    async fn list_proc_files(
        &self,
        _req: Request<pb::ListProcFilesRequest>,
    ) -> Result<Response<pb::ListProcFilesResponse>, Status> {
        Ok(Response::new(pb::ListProcFilesResponse {
            names: FILES.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn get_mem_info(
        &self,
        req: Request<pb::GetMemInfoRequest>,
    ) -> Result<Response<pb::GetMemInfoResponse>, Status> {
        self.shared.caller(&req)?;
        let entries = self
            .shared
            .api
            .machine
            .meminfo_entries()
            .into_iter()
            .map(|(n, v)| entry(n, v))
            .collect();
        Ok(Response::new(pb::GetMemInfoResponse { entries }))
    }

    async fn get_vmstat(
        &self,
        req: Request<pb::GetVmstatRequest>,
    ) -> Result<Response<pb::GetVmstatResponse>, Status> {
        self.shared.caller(&req)?;
        let entries = self
            .shared
            .api
            .machine
            .vmstat_entries()
            .into_iter()
            .map(|(n, v)| entry(n, v))
            .collect();
        Ok(Response::new(pb::GetVmstatResponse { entries }))
    }

    async fn get_zones(
        &self,
        req: Request<pb::GetZonesRequest>,
    ) -> Result<Response<pb::GetZonesResponse>, Status> {
        self.shared.caller(&req)?;
        let snap = self.shared.api.machine.snapshot();
        let zones = snap
            .zones
            .iter()
            .filter(|z| z.populated)
            .map(|z| pb::Zone {
                node: z.node as u32,
                zone: zone_pb(z.zone) as i32,
                name: z.zone.name().to_string(),
                start_pfn: z.start_pfn,
                spanned_pages: z.spanned,
                present_pages: z.present,
                managed_pages: z.managed,
                free_pages: z.free,
                min_pages: z.min,
                low_pages: z.low,
                high_pages: z.high,
                boost_pages: z.boost,
                protection_pages: z.lowmem_reserve.clone(),
                free_per_order: z.free_blocks.iter().map(|o| o.iter().sum()).collect(),
                free_by_migratetype: MIGRATETYPES
                    .iter()
                    .map(|&mt| pb::FreeBlocks {
                        migratetype: mt_pb(mt) as i32,
                        counts: z.free_blocks.iter().map(|o| o[mt as usize]).collect(),
                    })
                    .collect(),
                pagesets: z
                    .pagesets
                    .iter()
                    .map(|p| pb::Pageset {
                        cpu: p.cpu as u32,
                        count: p.count as u64,
                        high: p.high as u64,
                        batch: p.batch as u64,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::GetZonesResponse { zones }))
    }

    async fn get_slab_info(
        &self,
        req: Request<pb::GetSlabInfoRequest>,
    ) -> Result<Response<pb::GetSlabInfoResponse>, Status> {
        self.shared.caller(&req)?;
        let caches = self
            .shared
            .api
            .machine
            .caches_info()
            .into_iter()
            .filter(|c| !c.destroyed)
            .map(|c| pb::SlabCache {
                name: c.name,
                aliases: c.aliases,
                active_objects: c.active_objects,
                total_objects: c.objects,
                object_size: c.object_size,
                slab_size: c.slab_size,
                objs_per_slab: c.objs_per_slab,
                pages_per_slab: 1 << c.order,
                slabs: c.slabs,
                partial_slabs: c.partial,
                alloc_total: c.alloc_total,
                free_total: c.free_total,
                reclaim_account: c.reclaim_account,
                flags: c.flags,
            })
            .collect();
        Ok(Response::new(pb::GetSlabInfoResponse { caches }))
    }

    async fn get_vmalloc_info(
        &self,
        req: Request<pb::GetVmallocInfoRequest>,
    ) -> Result<Response<pb::GetVmallocInfoResponse>, Status> {
        self.shared.caller(&req)?;
        let c = self.shared.api.machine.vmalloc_counts();
        Ok(Response::new(pb::GetVmallocInfoResponse {
            used_bytes: c.pages * kmem_allocator::PAGE_SIZE,
            areas: c.areas,
            lazy_pages: c.purge_pending_pages,
            purged_pages: c.purged_pages,
            purges: c.purges,
            total_bytes: kmem_allocator::vmalloc::VMALLOC_END
                - kmem_allocator::vmalloc::VMALLOC_START,
        }))
    }

    async fn get_sysctls(
        &self,
        req: Request<pb::GetSysctlsRequest>,
    ) -> Result<Response<pb::GetSysctlsResponse>, Status> {
        self.shared.caller(&req)?;
        let m = &self.shared.api.machine;
        let names: Vec<String> = if req.get_ref().names.is_empty() {
            SYSCTL_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            req.get_ref().names.clone()
        };
        let sysctls = names
            .into_iter()
            .map(|name| {
                let value = m.sysctl_get(&name).map_err(ApiError::from)?;
                Ok(pb::Sysctl { name, value })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(Response::new(pb::GetSysctlsResponse { sysctls }))
    }

    async fn set_sysctl(
        &self,
        req: Request<pb::SetSysctlRequest>,
    ) -> Result<Response<pb::SetSysctlResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let r = req.get_ref();
        c.check_admin(&r.name)?;
        let m = &self.shared.api.machine;
        m.sysctl_set(&r.name, &r.value).map_err(ApiError::from)?;
        let value = m.sysctl_get(&r.name).map_err(ApiError::from)?;
        Ok(Response::new(pb::SetSysctlResponse {
            sysctl: Some(pb::Sysctl {
                name: r.name.clone(),
                value,
            }),
        }))
    }

    async fn get_dmesg(
        &self,
        req: Request<pb::GetDmesgRequest>,
    ) -> Result<Response<pb::GetDmesgResponse>, Status> {
        self.shared.caller(&req)?;
        Ok(Response::new(pb::GetDmesgResponse {
            lines: self.shared.api.machine.dmesg(),
        }))
    }

    async fn get_machine(
        &self,
        req: Request<pb::GetMachineRequest>,
    ) -> Result<Response<pb::GetMachineResponse>, Status> {
        self.shared.caller(&req)?;
        let m = &self.shared.api.machine;
        let snap = m.snapshot();
        Ok(Response::new(pb::GetMachineResponse {
            memory_bytes: m.config().memory.0,
            nodes: m.nr_nodes() as u32,
            cpus: m.nr_cpus() as u32,
            managed_bytes: snap.total_managed * kmem_allocator::PAGE_SIZE,
            free_bytes: snap.total_free * kmem_allocator::PAGE_SIZE,
            page_state_host_bytes: m.page_state_bytes() as u64,
            stored_pages: snap.stored_pages,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}
