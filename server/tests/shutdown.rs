//! The real `kmemd` binary: starts with ephemeral ports, serves, and on SIGTERM lets
//! in-flight calls finish before it exits 0.

use std::process::Stdio;

use kmem_client::pb::{self, operation::Op};
use kmem_client::{Client, Opts};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn kmalloc(id: u64) -> pb::SessionRequest {
    pb::SessionRequest {
        id,
        operation: Some(pb::Operation {
            op: Some(Op::Kmalloc(Box::new(pb::KmallocRequest {
                size: 64,
                ..Default::default()
            }))),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmemd"))
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--memory",
            "1GiB",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kmemd starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("kmemd prints its addresses");
    let grpc = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("grpc= in the banner")
        .to_string();
    let c = Client::connect(&grpc).await.unwrap();
    c.kmalloc(96, &Opts::new()).await.unwrap();

    // A session is in flight: one result received, the stream still open.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut out = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    tx.send(kmalloc(1)).await.unwrap();
    assert_eq!(out.message().await.unwrap().unwrap().id, 1);

    let pid = child.id().unwrap().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());

    // The in-flight stream keeps working until the client ends it.
    tx.send(kmalloc(2)).await.unwrap();
    let r = out.message().await.unwrap().unwrap();
    assert_eq!(r.id, 2);
    assert!(
        r.result.unwrap().status.is_none(),
        "OK results carry no status"
    );
    drop(tx);
    assert!(out.message().await.unwrap().is_none());

    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("kmemd exits after draining")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn print_config_shows_the_layers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmemd"))
        .args(["--print-config", "--cpus", "4"])
        .env("KMEMD_LIMITS__MAX_BATCH", "77")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("grpc_addr = \"127.0.0.1:50051\""), "{text}");
    assert!(text.contains("cpus = 4"), "{text}");
    assert!(text.contains("max_batch = 77"), "{text}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kmemd"))
        .args(["--print-config"])
        .env("KMEMD_LIMITS__MAX_BATCH", "lots")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .to_lowercase()
        .contains("max_batch"));
}
