//! Start the real server in-process on 127.0.0.1:0 and connect the real client.
#![allow(dead_code)]

use std::path::PathBuf;

use kmem_allocator::ByteSize;
use kmem_client::Client;
use kmem_server::config::Config;
use kmem_server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A small machine (1 GiB unless `f` changes it) on ephemeral ports.
pub async fn start_with(f: impl FnOnce(&mut Config)) -> (Running, Client) {
    let mut cfg = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    cfg.machine.memory = ByteSize(1 << 30);
    f(&mut cfg);
    let r = kmem_server::start(cfg).await.expect("server starts");
    let c = Client::connect(&r.grpc_addr.to_string())
        .await
        .expect("client connects");
    (r, c)
}

pub async fn start() -> (Running, Client) {
    start_with(|_| {}).await
}

/// A binary on PATH.
pub fn find(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// A GET over HTTP/1.0; returns the body of a 200 answer.
pub async fn get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{path}: {head}\n{body}"));
    }
    Ok(body.to_string())
}
