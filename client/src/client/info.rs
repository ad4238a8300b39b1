//! The cgroup and introspection services.

use super::{Client, R};
use crate::{Error, pb};

impl Client {
    /// Create a memory cgroup (`mkdir /sys/fs/cgroup/<path>`).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// c.create_cgroup("/tenants/a").await?;
    /// c.write_cgroup_file("/tenants/a", "memory.max", "64M").await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_cgroup(&self, path: &str) -> R<()> {
        self.cgroups
            .clone()
            .create_cgroup(self.req(pb::CreateCgroupRequest { path: path.into() }))
            .await?;
        Ok(())
    }

    /// Remove an empty memory cgroup (`rmdir`).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// c.remove_cgroup("/tenants/a").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_cgroup(&self, path: &str) -> R<()> {
        self.cgroups
            .clone()
            .remove_cgroup(self.req(pb::RemoveCgroupRequest { path: path.into() }))
            .await?;
        Ok(())
    }

    /// Every cgroup path, the root first.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for path in c.list_cgroups().await? {
    ///     println!("{path}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_cgroups(&self) -> R<Vec<String>> {
        Ok(self
            .cgroups
            .clone()
            .list_cgroups(self.req(pb::ListCgroupsRequest {}))
            .await?
            .into_inner()
            .paths)
    }

    /// A memory.* file as the kernel prints it.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let usage = c.read_cgroup_file("/tenants/a", "memory.current").await?;
    /// println!("{}", usage.trim());
    /// # Ok(()) }
    /// ```
    pub async fn read_cgroup_file(&self, path: &str, file: &str) -> R<String> {
        let r = pb::ReadCgroupFileRequest {
            path: path.into(),
            file: file.into(),
        };
        Ok(self
            .cgroups
            .clone()
            .read_cgroup_file(self.req(r))
            .await?
            .into_inner()
            .text)
    }

    /// Write a memory.* file (`max`, `512M`, …).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// c.write_cgroup_file("/tenants/a", "memory.high", "max").await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_cgroup_file(&self, path: &str, file: &str, value: &str) -> R<()> {
        let r = pb::WriteCgroupFileRequest {
            path: path.into(),
            file: file.into(),
            value: value.into(),
        };
        self.cgroups.clone().write_cgroup_file(self.req(r)).await?;
        Ok(())
    }

    /// A cgroup's counters, limits and events.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let g = c.get_cgroup("/tenants/a").await?;
    /// println!("{} of {:?} bytes", g.current_bytes, g.max_bytes);
    /// # Ok(()) }
    /// ```
    pub async fn get_cgroup(&self, path: &str) -> R<pb::Cgroup> {
        self.cgroups
            .clone()
            .get_cgroup(self.req(pb::GetCgroupRequest { path: path.into() }))
            .await?
            .into_inner()
            .cgroup
            .ok_or_else(|| Error::Transport("response without a cgroup".into()))
    }

    /// `/proc/<name>` byte for byte.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// print!("{}", c.proc_file("buddyinfo").await?);
    /// # Ok(()) }
    /// ```
    pub async fn proc_file(&self, name: &str) -> R<String> {
        Ok(self
            .intro
            .clone()
            .get_proc_file(self.req(pb::GetProcFileRequest { name: name.into() }))
            .await?
            .into_inner()
            .text)
    }

    /// The names [`Client::proc_file`] serves.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// println!("{:?}", c.list_proc_files().await?);
    /// # Ok(()) }
    /// ```
    pub async fn list_proc_files(&self) -> R<Vec<String>> {
        Ok(self
            .intro
            .clone()
            .list_proc_files(self.req(pb::ListProcFilesRequest {}))
            .await?
            .into_inner()
            .names)
    }

    /// `/proc/meminfo` as name → bytes.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for e in c.meminfo().await? {
    ///     println!("{}: {}", e.name, e.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn meminfo(&self) -> R<Vec<pb::StatEntry>> {
        Ok(self
            .intro
            .clone()
            .get_mem_info(self.req(pb::GetMemInfoRequest {}))
            .await?
            .into_inner()
            .entries)
    }

    /// `/proc/vmstat` counters.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let vm = c.vmstat().await?;
    /// let pgalloc: u64 = vm.iter().filter(|e| e.name.starts_with("pgalloc_")).map(|e| e.value).sum();
    /// println!("{pgalloc} pages allocated");
    /// # Ok(()) }
    /// ```
    pub async fn vmstat(&self) -> R<Vec<pb::StatEntry>> {
        Ok(self
            .intro
            .clone()
            .get_vmstat(self.req(pb::GetVmstatRequest {}))
            .await?
            .into_inner()
            .entries)
    }

    /// Every zone: free pages against its watermarks, buddyinfo per order, pagesets.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for z in c.zones().await? {
    ///     println!("node {} {}: free {} min {} low {} high {}", z.node, z.name, z.free_pages, z.min_pages, z.low_pages, z.high_pages);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn zones(&self) -> R<Vec<pb::Zone>> {
        Ok(self
            .intro
            .clone()
            .get_zones(self.req(pb::GetZonesRequest {}))
            .await?
            .into_inner()
            .zones)
    }

    /// Every slab cache (`/proc/slabinfo`, with allocation totals).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for s in c.slab_info().await? {
    ///     println!("{} {}/{}", s.name, s.active_objects, s.total_objects);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn slab_info(&self) -> R<Vec<pb::SlabCache>> {
        Ok(self
            .intro
            .clone()
            .get_slab_info(self.req(pb::GetSlabInfoRequest {}))
            .await?
            .into_inner()
            .caches)
    }

    /// `/proc/vmallocinfo` areas and vmalloc totals.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let v = c.vmalloc_info().await?;
    /// println!("{v:?}");
    /// # Ok(()) }
    /// ```
    pub async fn vmalloc_info(&self) -> R<pb::GetVmallocInfoResponse> {
        Ok(self
            .intro
            .clone()
            .get_vmalloc_info(self.req(pb::GetVmallocInfoRequest {}))
            .await?
            .into_inner())
    }

    /// Sysctls by name (all when empty), as /proc/sys prints them.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for s in c.sysctls(&["vm.min_free_kbytes"]).await? {
    ///     println!("{} = {}", s.name, s.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn sysctls(&self, names: &[&str]) -> R<Vec<pb::Sysctl>> {
        let r = pb::GetSysctlsRequest {
            names: names.iter().map(|s| s.to_string()).collect(),
        };
        Ok(self
            .intro
            .clone()
            .get_sysctls(self.req(r))
            .await?
            .into_inner()
            .sysctls)
    }

    /// Write a sysctl; returns its value as read back.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// assert_eq!(c.set_sysctl("vm.min_free_kbytes", "8192").await?, "8192");
    /// # Ok(()) }
    /// ```
    pub async fn set_sysctl(&self, name: &str, value: &str) -> R<String> {
        let r = pb::SetSysctlRequest {
            name: name.into(),
            value: value.into(),
        };
        Ok(self
            .intro
            .clone()
            .set_sysctl(self.req(r))
            .await?
            .into_inner()
            .sysctl
            .map(|s| s.value)
            .unwrap_or_default())
    }

    /// The kernel log (newest last).
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// for line in c.dmesg().await? {
    ///     println!("{line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn dmesg(&self) -> R<Vec<String>> {
        Ok(self
            .intro
            .clone()
            .get_dmesg(self.req(pb::GetDmesgRequest {}))
            .await?
            .into_inner()
            .lines)
    }

    /// The simulated machine: memory, nodes, CPUs, zones.
    ///
    /// ```no_run
    /// # async fn f(c: kmem_client::Client) -> Result<(), kmem_client::Error> {
    /// # use kmem_client::{pb, Opts};
    /// let m = c.machine().await?;
    /// println!("{} CPUs", m.cpus);
    /// # Ok(()) }
    /// ```
    pub async fn machine(&self) -> R<pb::GetMachineResponse> {
        Ok(self
            .intro
            .clone()
            .get_machine(self.req(pb::GetMachineRequest {}))
            .await?
            .into_inner())
    }
}
