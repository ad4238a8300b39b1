//! `kmem.v1.CgroupService`: the memory controller's tree and files.

use kmem_client::pb;
use kmem_client::pb::cgroup_service_server::CgroupService;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error::ApiError;

pub struct CgroupSvc {
    pub shared: Shared,
}

/// Parse a `memory.stat`-style "name value" file.
fn entries(text: &str) -> Vec<pb::StatEntry> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some(pb::StatEntry {
                name: k.to_string(),
                value: v.trim().parse().ok()?,
            })
        })
        .collect()
}

fn limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

impl CgroupSvc {
    fn get(&self, path: &str) -> Result<pb::Cgroup, ApiError> {
        let m = &self.shared.api.machine;
        let mc = m.memcg();
        let read = |f: &str| mc.read_file(path, f);
        let num = |f: &str| -> Result<u64, ApiError> { Ok(limit(&read(f)?).unwrap_or(0)) };
        let (eff_min, eff_low) = if path == "/" {
            (0, 0)
        } else {
            let id = mc.lookup(path)?;
            let (min, low) = mc.effective_protection(id);
            (
                min * kmem_allocator::PAGE_SIZE,
                low * kmem_allocator::PAGE_SIZE,
            )
        };
        let root = path == "/";
        Ok(pb::Cgroup {
            path: path.to_string(),
            current_bytes: num("memory.current")?,
            peak_bytes: if root { 0 } else { num("memory.peak")? },
            max_bytes: if root {
                None
            } else {
                limit(&read("memory.max")?)
            },
            high_bytes: if root {
                None
            } else {
                limit(&read("memory.high")?)
            },
            low_bytes: if root { 0 } else { num("memory.low")? },
            min_bytes: if root { 0 } else { num("memory.min")? },
            effective_min_bytes: eff_min,
            effective_low_bytes: eff_low,
            oom_group: !root && read("memory.oom.group")?.trim() == "1",
            stat: entries(&read("memory.stat")?),
            events: if root {
                vec![]
            } else {
                entries(&read("memory.events")?)
            },
            events_local: if root {
                vec![]
            } else {
                entries(&read("memory.events.local")?)
            },
        })
    }
}

#[tonic::async_trait]
impl CgroupService for CgroupSvc {
    async fn create_cgroup(
        &self,
        req: Request<pb::CreateCgroupRequest>,
    ) -> Result<Response<pb::CreateCgroupResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let path = &req.get_ref().path;
        c.check_path(path)?;
        self.shared
            .api
            .machine
            .memcg()
            .create(path)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::CreateCgroupResponse {}))
    }

    async fn remove_cgroup(
        &self,
        req: Request<pb::RemoveCgroupRequest>,
    ) -> Result<Response<pb::RemoveCgroupResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let path = &req.get_ref().path;
        c.check_path(path)?;
        self.shared
            .api
            .machine
            .memcg_rmdir(path)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RemoveCgroupResponse {}))
    }

    async fn list_cgroups(
        &self,
        req: Request<pb::ListCgroupsRequest>,
    ) -> Result<Response<pb::ListCgroupsResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let paths = self
            .shared
            .api
            .machine
            .memcg()
            .list()
            .into_iter()
            .filter(|p| c.check_path(p).is_ok())
            .collect();
        Ok(Response::new(pb::ListCgroupsResponse { paths }))
    }

    async fn read_cgroup_file(
        &self,
        req: Request<pb::ReadCgroupFileRequest>,
    ) -> Result<Response<pb::ReadCgroupFileResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let r = req.get_ref();
        c.check_path(&r.path)?;
        let text = self
            .shared
            .api
            .machine
            .memcg()
            .read_file(&r.path, &r.file)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ReadCgroupFileResponse { text }))
    }

    async fn write_cgroup_file(
        &self,
        req: Request<pb::WriteCgroupFileRequest>,
    ) -> Result<Response<pb::WriteCgroupFileResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let r = req.get_ref();
        c.check_path(&r.path)?;
        if let Some(t) = &c.tenant {
            if r.path == t.cgroup {
                // A tenant may not raise its own limits: those are the operator's.
                return Err(ApiError::new(
                    "TENANT_FORBIDDEN",
                    format!(
                        "tenant {} may not write {} of its own root {}",
                        t.name, r.file, r.path
                    ),
                )
                .into());
            }
        }
        self.shared
            .api
            .machine
            .memcg()
            .write_file(&r.path, &r.file, &r.value)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::WriteCgroupFileResponse {}))
    }

    async fn get_cgroup(
        &self,
        req: Request<pb::GetCgroupRequest>,
    ) -> Result<Response<pb::GetCgroupResponse>, Status> {
        let c = self.shared.caller(&req)?;
        let path = &req.get_ref().path;
        c.check_path(path)?;
        Ok(Response::new(pb::GetCgroupResponse {
            cgroup: Some(self.get(path)?),
        }))
    }
}
