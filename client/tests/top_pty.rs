//! `kmemctl top` in a real terminal: tmux runs it in a 120x40 pane; the screen shows the
//! header, zones, buddyinfo, cgroups and slab table, redraws on its timer, and `q`
//! ends the program. Skipped (with a message) where tmux is not installed.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kmem_allocator::ByteSize;
use kmem_client::{Client, Opts};
use kmem_server::config::Config;

/// A private tmux server (`-L`), killed when the test ends however it ends.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Poll the screen until `f` accepts it (or panic with the last screen).
async fn wait_for(t: &Tmux, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = t.screen();
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "no {what} on the screen:\n{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn refresh_count(screen: &str) -> Option<u64> {
    let rest = &screen[screen.find("refresh ")? + 8..];
    rest.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn top_draws_refreshes_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping: tmux is not installed (apt-get install tmux)");
        return;
    }
    let mut cfg = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    cfg.machine.memory = ByteSize(256 << 20);
    let r = kmem_server::start(cfg).await.expect("server starts");
    let c = Client::connect(&r.grpc_addr.to_string()).await.unwrap();
    c.create_cgroup("/top-test").await.unwrap();
    c.write_cgroup_file("/top-test", "memory.max", "1M")
        .await
        .unwrap();

    let t = Tmux(format!("kmemctl-top-{}", std::process::id()));
    let cmd = format!(
        "{} --addr {} top --interval 200ms",
        env!("CARGO_BIN_EXE_kmemctl"),
        r.grpc_addr
    );
    let o = t.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let first = wait_for(&t, "first frame", |s| {
        s.contains("MemFree") && s.contains("NAME") && refresh_count(s).is_some()
    })
    .await;
    for want in [
        "ZONES",
        "Node 0",
        "BUDDYINFO",
        "CGROUPS",
        "/top-test",
        "kmalloc-",
        "q: quit",
    ] {
        assert!(first.contains(want), "no {want}:\n{first}");
    }
    let n = refresh_count(&first).unwrap();

    // Allocate between frames: the counters the next frames show move.
    let o = Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/top-test");
    for _ in 0..64 {
        c.kmalloc(4096, &o).await.unwrap();
    }
    wait_for(&t, "a later refresh", |s| {
        refresh_count(s).is_some_and(|m| m >= n + 2)
    })
    .await;

    // Sort by name: the footer says so.
    t.run(&["send-keys", "-t", "top", "n"]);
    wait_for(&t, "the name sort", |s| s.contains("sort Name")).await;

    t.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.alive() {
        assert!(
            Instant::now() < deadline,
            "top still runs after q:\n{}",
            t.screen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
