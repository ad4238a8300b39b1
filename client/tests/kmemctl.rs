//! Run the real kmemctl binary against an in-process kmemd.

use kmem_allocator::ByteSize;
use kmem_client::Client;
use kmem_server::Running;
use kmem_server::config::Config;
use serde_json::Value;

async fn start(memory: u64) -> (Running, Client) {
    let mut cfg = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    cfg.machine.memory = ByteSize(memory);
    let r = kmem_server::start(cfg).await.expect("server starts");
    let c = Client::connect(&r.grpc_addr.to_string()).await.unwrap();
    (r, c)
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn kmemctl(r: &Running, args: &[&str]) -> Out {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_kmemctl"))
        .arg("--addr")
        .arg(r.grpc_addr.to_string())
        .args(args)
        .env_remove("KMEMCTL_ADDR")
        .output()
        .await
        .expect("kmemctl runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

async fn ok(r: &Running, args: &[&str]) -> String {
    let o = kmemctl(r, args).await;
    assert_eq!(o.code, 0, "kmemctl {args:?}: {}", o.stderr);
    o.stdout
}

async fn json(r: &Running, args: &[&str]) -> Value {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    let s = ok(r, &a).await;
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{args:?}: {e}: {s}"))
}

fn addr_of(v: &Value) -> String {
    v["addr"].as_str().expect("addr").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocations_text_and_json() {
    let (r, _c) = start(1 << 30).await;

    let t = ok(&r, &["kmalloc", "96", "--gfp", "GFP_KERNEL|__GFP_ZERO"]).await;
    assert!(t.contains("cache:       kmalloc-96"), "{t}");
    let addr = t
        .lines()
        .find_map(|l| l.strip_prefix("addr:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(addr.starts_with("0xffff888"), "{addr}");
    assert_eq!(
        ok(&r, &["kfree", &addr]).await.trim(),
        format!("freed {addr}")
    );

    let v = json(&r, &["kmalloc", "0x40"]).await;
    assert_eq!(v["cache"], "kmalloc-64");
    assert_eq!(v["size"], 64);
    let v = json(&r, &["kfree", &addr_of(&v)]).await;
    assert!(v["freed"].as_str().unwrap().starts_with("0x"));

    let v = json(&r, &["alloc-pages", "--order", "3"]).await;
    assert_eq!(v["size"], 32768);
    assert_eq!(v["order"], 3);
    assert_eq!(v["backend"], "pages");
    let pfn = v["pfn"].as_str().unwrap().to_string();
    ok(&r, &["free-pages", "--pfn", &pfn, "--order", "3"]).await;

    let v = json(&r, &["vmalloc", "1MiB"]).await;
    assert_eq!(v["size"], 1 << 20);
    assert!(addr_of(&v).starts_with("0xffffc9"), "{v}");
    ok(&r, &["vfree", &addr_of(&v)]).await;

    let v = json(&r, &["kvmalloc", "64KiB"]).await;
    let f = json(&r, &["free", &addr_of(&v)]).await;
    assert_eq!(f["size"], 65536);

    // write then read back
    let v = json(&r, &["kmalloc", "32"]).await;
    let a = addr_of(&v);
    ok(&r, &["write", &a, "--text", "hello"]).await;
    let d = json(&r, &["read", &a, "5"]).await;
    assert_eq!(d["hex"], "68656c6c6f");
    ok(&r, &["write", &a, "deadbeef"]).await;
    let top = ok(&r, &["top", "--once", "-d", "100ms"]).await;
    assert!(top.contains("MemFree") && top.contains("kmalloc-"), "{top}");
    assert!(ok(&r, &["read", &a, "4"]).await.contains("de ad be ef"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cgroups_proc_sysctl_and_errors() {
    let (r, _c) = start(1 << 30).await;
    ok(&r, &["cgroup", "create", "/a"]).await;
    ok(&r, &["cgroup", "set", "/a", "memory.max", "1M"]).await;
    let v = json(&r, &["cgroup", "get", "/a"]).await;
    assert_eq!(v["max_bytes"], 1 << 20);
    assert_eq!(
        ok(&r, &["cgroup", "cat", "/a", "memory.max"]).await,
        "1048576\n"
    );
    assert!(ok(&r, &["cgroup", "ls"]).await.lines().any(|l| l == "/a"));

    // proc: byte for byte
    let text = ok(&r, &["proc", "buddyinfo"]).await;
    assert_eq!(text, r.machine.proc_file("buddyinfo").unwrap());

    let v = json(&r, &["sysctl", "vm.min_free_kbytes=4096"]).await;
    assert_eq!(v["vm.min_free_kbytes"], "4096");
    let s = ok(&r, &["sysctl", "vm.min_free_kbytes"]).await;
    assert_eq!(s.trim(), "vm.min_free_kbytes = 4096");

    // a cgroup limit: message, reason, exit code 1
    let o = kmemctl(
        &r,
        &[
            "alloc-pages",
            "--order",
            "9",
            "--gfp",
            "GFP_KERNEL_ACCOUNT",
            "--cgroup",
            "/a",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("CGROUP_LIMIT_EXCEEDED"), "{}", o.stderr);
    assert!(o.stderr.contains("RESOURCE_EXHAUSTED"), "{}", o.stderr);
    let o = kmemctl(&r, &["-o", "json", "kfree", "0x1234"]).await;
    assert_eq!(o.code, 1);
    let e: Value = serde_json::from_str(o.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "NOT_FOUND");

    // usage errors: exit 2, with a suggestion
    let o = kmemctl(&r, &["kmalloc", "64", "--gfp", "GFP_KERNAL"]).await;
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("did you mean GFP_KERNEL"), "{}", o.stderr);
    assert_eq!(kmemctl(&r, &["kmalloc", "12XB"]).await.code, 2);
    assert_eq!(kmemctl(&r, &["kfree", "nothex"]).await.code, 2);

    assert!(
        ok(&r, &["machine"])
            .await
            .contains("memory:       1073741824 (1GiB)")
    );
    let help = ok(&r, &["--help"]).await;
    assert!(help.contains("GFP_KERNEL_ACCOUNT") && help.contains("GFP_ATOMIC"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_memory_on_a_small_machine() {
    let (r, _c) = start(64 << 20).await;
    let mut failed = None;
    for _ in 0..40 {
        let o = kmemctl(&r, &["alloc-pages", "--order", "10"]).await;
        if o.code != 0 {
            failed = Some(o);
            break;
        }
    }
    let o = failed.expect("a 64 MiB machine runs out of order-10 blocks");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("out of memory"), "{}", o.stderr);
    assert!(o.stderr.contains("RESOURCE_EXHAUSTED"), "{}", o.stderr);
}

fn kmalloc_allocs(caches: &[kmem_client::pb::SlabCache], name: &str) -> u64 {
    caches
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.alloc_total)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_counts_match_the_server() {
    let (r, c) = start(1 << 30).await;
    let before = kmalloc_allocs(&c.slab_info().await.unwrap(), "kmalloc-96");
    let v = json(
        &r,
        &["bench", "-n", "2000", "--size", "96", "-c", "16", "-q"],
    )
    .await;
    let after = kmalloc_allocs(&c.slab_info().await.unwrap(), "kmalloc-96");
    assert_eq!(v["count"], 2000);
    assert_eq!(after - before, 2000);
    assert_eq!(v["statusCodeDistribution"]["OK"], 2000);
    assert_eq!(v["latencyDistribution"].as_array().unwrap().len(), 8);
    let h = v["histogram"].as_array().unwrap();
    assert_eq!(h.len(), 11);
    assert_eq!(
        h.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(),
        2000
    );
    assert!(v["fastest"].as_u64().unwrap() <= v["average"].as_u64().unwrap());
    assert!(v["rps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["server"]["slabAllocs"], 2000);

    // pages over Batch, with a baseline
    let v = json(
        &r,
        &[
            "bench",
            "--op",
            "alloc-pages",
            "-n",
            "512",
            "--transport",
            "batch",
            "--batch-size",
            "32",
            "--hold",
            "64",
            "--baseline",
            "-q",
        ],
    )
    .await;
    assert_eq!(v["count"], 512);
    assert_eq!(v["server"]["pgalloc"], 512);
    assert_eq!(v["baseline"]["count"], 512);

    // a cgroup limit shows up as a reason in the distribution
    ok(&r, &["cgroup", "create", "/lim"]).await;
    ok(&r, &["cgroup", "set", "/lim", "memory.max", "256K"]).await;
    let v = json(
        &r,
        &[
            "bench",
            "--op",
            "kmalloc",
            "--size",
            "4KiB",
            "-n",
            "200",
            "--hold",
            "200",
            "--gfp",
            "GFP_KERNEL_ACCOUNT",
            "--cgroup",
            "/lim",
            "--transport",
            "session",
            "-q",
        ],
    )
    .await;
    let errs = &v["errorDistribution"]["RESOURCE_EXHAUSTED CGROUP_LIMIT_EXCEEDED"];
    assert!(errs.as_u64().unwrap_or(0) > 0, "{v}");
    let sum: u64 = v["statusCodeDistribution"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(sum, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_and_replay() {
    let (r, _c) = start(1 << 30).await;
    let dir = std::env::temp_dir().join(format!("kmemctl-trace-{}", std::process::id()));
    let path = dir.to_string_lossy().into_owned();
    let v = json(
        &r,
        &[
            "bench",
            "-n",
            "300",
            "--size-dist",
            "slabinfo",
            "--hold",
            "50",
            "--record",
            &path,
            "-q",
        ],
    )
    .await;
    assert_eq!(v["count"], 300);
    let v = json(&r, &["replay", &path]).await;
    let _ = std::fs::remove_file(&dir);
    assert_eq!(v["count"], 300);
    assert_eq!(v["statusCodeDistribution"]["OK"], 300);
    assert_eq!(v["options"]["frees"], 300);
}

/// A fragmenting run recorded on one fresh kmemd and replayed on another ends with
/// the same /proc/buddyinfo, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_reproduces_buddyinfo_exactly() {
    let (a, ca) = start(256 << 20).await;
    let fresh = ca.proc_file("buddyinfo").await.unwrap();
    let path = std::env::temp_dir().join(format!("kmemctl-frag-{}", std::process::id()));
    let p = path.to_string_lossy().into_owned();
    // slab objects and large kmallocs of orders 1-4, 300 held at a time: the buddy
    // lists end up fragmented, and the slabs and per-CPU lists keep pages.
    let v = json(
        &a,
        &[
            "bench",
            "-c",
            "1",
            "-n",
            "1500",
            "--size-dist",
            "uniform:8-64KiB",
            "--hold",
            "300",
            "--record",
            &p,
            "-q",
        ],
    )
    .await;
    assert_eq!(v["count"], 1500);
    let v = json(
        &a,
        &[
            "bench",
            "-c",
            "1",
            "-n",
            "200",
            "--op",
            "alloc-pages",
            "--order",
            "2",
            "--hold",
            "100",
            "--transport",
            "session",
            "--record",
            &format!("{p}.2"),
            "-q",
        ],
    )
    .await;
    assert_eq!(v["count"], 200);
    let recorded = ca.proc_file("buddyinfo").await.unwrap();
    assert_ne!(recorded, fresh, "the workload changed nothing");

    let (b, cb) = start(256 << 20).await;
    for f in [p.clone(), format!("{p}.2")] {
        let v = json(&b, &["replay", &f]).await;
        assert_eq!(v["options"]["skipped"], 0, "{v}");
    }
    let replayed = cb.proc_file("buddyinfo").await.unwrap();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(format!("{p}.2"));
    assert_eq!(replayed, recorded);
    assert_eq!(
        cb.proc_file("pagetypeinfo").await.ok(),
        ca.proc_file("pagetypeinfo").await.ok()
    );
}
