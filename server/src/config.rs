//! kmemd's configuration, layered: built-in defaults < TOML file (`--config`) <
//! `KMEMD_*` environment variables (`__` separates nesting: `KMEMD_MACHINE__MEMORY=64GiB`)
//! < command-line flags. `kmemd --print-config` shows the result.

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use kmem_allocator::{ByteSize, MachineConfig};
use serde::{Deserialize, Serialize};

use crate::auth::Tenant;
use crate::metrics::MetricsConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// HTTP listen address: /metrics, /proc/<file>, /cgroup/<path>/<file>, /healthz.
    pub http_addr: SocketAddr,
    /// The simulated machine (memory, nodes, CPUs, zones, sysctls at boot).
    pub machine: MachineConfig,
    pub limits: Limits,
    pub log: LogConfig,
    /// `/metrics`: on/off, the cgroup cap, node_exporter and cAdvisor compatibility,
    /// the allocation histograms.
    pub metrics: MetricsConfig,
    /// Bearer-token tenants; empty = no authentication.
    pub tenants: Vec<Tenant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request or response message (tonic's own default is 4 MiB).
    pub max_message_size: ByteSize,
    /// Most operations in one Batch call.
    pub max_batch: u32,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest CopyToUser / CopyFromUser.
    pub max_copy_size: ByteSize,
    /// How long in-flight calls may run after SIGTERM before the server stops.
    pub drain_timeout_ms: u64,
    /// Longest a __GFP_NOFAIL call waits for memory when the client set no deadline.
    pub nofail_max_wait_ms: u64,
    /// HTTP/2 keepalive ping interval (0 = off, tonic's default).
    pub http2_keepalive_interval_ms: u64,
    /// Wait the `memory.high` throttle the kernel would impose (reported in each
    /// result as `memory_high_delay_ms`) before replying, up to this many ms per call.
    /// 0: report it only.
    pub memory_high_throttle_cap_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// text or json (one JSON object per line, for containers).
    pub format: LogFormat,
    /// `RUST_LOG` syntax: "info", "kmem_server=debug".
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_addr: "127.0.0.1:50051".parse().expect("literal"),
            http_addr: "127.0.0.1:9464".parse().expect("literal"),
            machine: MachineConfig::default(),
            limits: Limits::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            tenants: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: ByteSize(16 << 20),
            max_batch: 10_000,
            max_concurrent_streams: 1024,
            max_copy_size: ByteSize(4 << 20),
            drain_timeout_ms: 10_000,
            nofail_max_wait_ms: 60_000,
            http2_keepalive_interval_ms: 0,
            memory_high_throttle_cap_ms: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// The top-level keys of [`Config`] that `KMEMD_*` variables may set.
const TOP_LEVEL_KEYS: &[&str] = &[
    "grpc_addr",
    "http_addr",
    "machine",
    "limits",
    "log",
    "tenants",
    "metrics",
];

/// One layer of explicit overrides (command-line flags), as dotted keys.
pub type Overrides = Vec<(&'static str, figment::value::Value)>;

impl Config {
    /// Defaults < file < environment (`prefix`, usually `KMEMD_`) < overrides.
    pub fn load(
        file: Option<&Path>,
        env_prefix: &str,
        overrides: Overrides,
    ) -> Result<Config, String> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = file {
            if !p.exists() {
                return Err(format!("config file {} does not exist", p.display()));
            }
            f = f.merge(Toml::file(p));
        }
        // Only the config's own keys: other KMEMD_* variables (KMEMD_CONFIG, a test
        // harness's KMEMD_BIN) are not configuration.
        f = f.merge(Env::prefixed(env_prefix).split("__").filter(|k| {
            let top = k.as_str().split('.').next().unwrap_or("");
            TOP_LEVEL_KEYS.iter().any(|t| t.eq_ignore_ascii_case(top))
        }));
        for (k, v) in overrides {
            f = f.merge(Serialized::global(k, v));
        }
        let cfg: Config = f.extract().map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.limits.max_batch == 0 {
            return Err("limits.max_batch must be at least 1".into());
        }
        for t in &self.tenants {
            if t.token.len() < 8 {
                return Err(format!(
                    "tenant {}: use a token of at least 8 characters",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_defaults_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("kmemd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kmemd.toml");
        std::fs::write(
            &file,
            "grpc_addr = \"127.0.0.1:7000\"\n[machine]\nmemory = \"8GiB\"\ncpus = 4\n[limits]\nmax_batch = 5\n",
        )
        .unwrap();
        // The environment wins over the file; a flag wins over both.
        std::env::set_var("KMEMDTEST_MACHINE__CPUS", "8");
        std::env::set_var("KMEMDTEST_LIMITS__MAX_BATCH", "6");
        std::env::set_var("KMEMDTEST_BIN", "/not/config");
        let c = Config::load(
            Some(&file),
            "KMEMDTEST_",
            vec![("limits.max_batch", figment::value::Value::from(7u32))],
        )
        .unwrap();
        assert_eq!(c.grpc_addr.port(), 7000);
        assert_eq!(c.machine.memory, ByteSize(8 << 30));
        assert_eq!(c.machine.cpus, 8);
        assert_eq!(c.limits.max_batch, 7);
        assert_eq!(c.http_addr.port(), 9464, "untouched default");
        let printed = c.to_toml();
        assert!(printed.contains("max_batch = 7"), "{printed}");
        assert!(Config::load(Some(&dir.join("nope.toml")), "KMEMDTEST_", vec![]).is_err());
    }
}
