//! Start the real server in-process on 127.0.0.1:0 and connect the real client.
#![allow(dead_code)]

use kmem_allocator::ByteSize;
use kmem_client::Client;
use kmem_server::config::Config;
use kmem_server::Running;

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
