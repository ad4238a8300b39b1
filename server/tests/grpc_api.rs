//! Every RPC through the real client against the real server, including each error
//! code with its ErrorInfo reason.

mod common;

use kmem_client::pb::{self, operation::Op};
use kmem_client::{Client, Error, Opts};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_kmalloc_and_copies_round_trip() {
    let (srv, c) = common::start().await;
    c.ping().await.unwrap();

    let p = c
        .alloc_pages(3, &Opts::gfp("GFP_KERNEL|__GFP_ZERO"))
        .await
        .unwrap();
    assert_eq!(p.order, Some(3));
    assert_eq!(p.size, 8 * 4096);
    assert_eq!(p.backend, pb::Backend::Pages as i32);
    assert_eq!(
        p.zone,
        pb::ZoneType::Dma32 as i32,
        "a 1 GiB machine has no Normal zone"
    );
    assert_eq!(p.gfp, "GFP_KERNEL|__GFP_ZERO");
    assert_eq!(p.addr, 0xffff_8880_0000_0000 + p.pfn.unwrap() * 4096);
    let dma = c
        .alloc_pages(0, &Opts::gfp("GFP_KERNEL|GFP_DMA"))
        .await
        .unwrap();
    assert_eq!(dma.zone, pb::ZoneType::Dma as i32);
    c.free_pages(p.pfn.unwrap(), 3).await.unwrap();
    c.free(dma.addr).await.unwrap();

    let a = c
        .kmalloc(96, &Opts::new().caller("test_probe"))
        .await
        .unwrap();
    assert_eq!(a.cache, "kmalloc-96");
    assert_eq!(a.size, 96);
    assert_eq!(c.ksize(a.addr).await.unwrap(), 96);
    c.copy_from_user(a.addr, b"hello kernel".to_vec())
        .await
        .unwrap();
    assert_eq!(c.copy_to_user(a.addr, 12).await.unwrap(), b"hello kernel");
    let grown = c.krealloc(a.addr, 150, &Opts::new()).await.unwrap();
    assert_eq!(grown.cache, "kmalloc-192");
    assert_eq!(c.copy_to_user(grown.addr, 5).await.unwrap(), b"hello");
    c.kfree(grown.addr).await.unwrap();

    let z = c
        .kzalloc(192, &Opts::gfp("GFP_KERNEL_ACCOUNT"))
        .await
        .unwrap();
    assert_eq!(z.cache, "kmalloc-cg-192");
    assert_eq!(c.copy_to_user(z.addr, 192).await.unwrap(), vec![0u8; 192]);
    c.kfree_sensitive(z.addr).await.unwrap();
    let zero = c.kmalloc(0, &Opts::new()).await.unwrap();
    assert_eq!(zero.addr, 16, "ZERO_SIZE_PTR");
    c.kfree(16).await.unwrap();
    let arr = c.kmalloc_array(10, 100, true, &Opts::new()).await.unwrap();
    assert_eq!(arr.cache, "kmalloc-1k");
    c.kfree(arr.addr).await.unwrap();
    let big = c.kmalloc(64 << 10, &Opts::new()).await.unwrap();
    assert_eq!(big.backend, pb::Backend::LargeKmalloc as i32);
    assert_eq!(big.order, Some(4));
    let freed = c.free(big.addr).await.unwrap();
    assert_eq!(freed.backend, pb::Backend::LargeKmalloc as i32);

    let e = c.alloc_pages_exact(5 * 4096, &Opts::new()).await.unwrap();
    assert_eq!(e.size, 5 * 4096);
    c.free_pages_exact(e.addr, 5 * 4096).await.unwrap();
    srv.machine.drain_all_pages();
    srv.machine.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_vmalloc_kvmalloc_and_introspection() {
    let (srv, c) = common::start().await;
    let info = c
        .create_cache(pb::CreateCacheRequest {
            name: "test_obj".into(),
            size: 200,
            flags: "SLAB_HWCACHE_ALIGN".into(),
            useroffset: 8,
            usersize: 64,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.object_size, 200);
    let o = c.cache_alloc("test_obj", true, &Opts::new()).await.unwrap();
    assert_eq!(o.backend, pb::Backend::Slab as i32);
    c.copy_from_user(o.addr + 8, vec![7; 64]).await.unwrap();
    let slab = c.proc_file("slabinfo").await.unwrap();
    assert!(slab.lines().any(|l| l.starts_with("test_obj ")), "{slab}");
    let busy = c.destroy_cache("test_obj").await.unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert_eq!(busy.reason(), Some("CACHE_HAS_OBJECTS"));
    let v = c.validate_cache(&info.id.to_string()).await.unwrap();
    assert!(v.errors.is_empty());
    c.cache_free("test_obj", o.addr).await.unwrap();
    c.shrink_cache("test_obj").await.unwrap();
    c.destroy_cache("test_obj").await.unwrap();
    let gone = c
        .cache_alloc("test_obj", false, &Opts::new())
        .await
        .unwrap_err();
    assert_eq!(gone.reason(), Some("CACHE_NOT_FOUND"));
    let e = c
        .cache_alloc("4000", false, &Opts::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::NotFound, Some("CACHE_NOT_FOUND"))
    );

    let v = c
        .vmalloc(
            1 << 20,
            pb::VmallocKind::Vzalloc,
            &Opts::new().caller("test_vm"),
        )
        .await
        .unwrap();
    assert_eq!(v.backend, pb::Backend::Vmalloc as i32);
    assert_eq!(v.size, 1 << 20);
    assert!(v.addr >= 0xffff_c900_0000_0000);
    let info = c.proc_file("/proc/vmallocinfo").await.unwrap();
    assert!(info.contains("test_vm"), "{info}");
    c.copy_from_user(v.addr + 4096, b"abc".to_vec())
        .await
        .unwrap();
    assert_eq!(c.copy_to_user(v.addr + 4096, 3).await.unwrap(), b"abc");
    assert_eq!(c.vmalloc_info().await.unwrap().areas, 1);
    c.vfree(v.addr).await.unwrap();
    let h = c.vmalloc_huge(4 << 20, &Opts::new()).await.unwrap();
    c.vfree(h.addr).await.unwrap();

    let small = c.kvmalloc(1000, false, &Opts::new()).await.unwrap();
    assert_eq!(small.backend, pb::Backend::Slab as i32);
    let large = c.kvmalloc(8 << 20, true, &Opts::new()).await.unwrap();
    assert_eq!(large.backend, pb::Backend::Vmalloc as i32);
    let arr = c
        .kvmalloc_array(4, 1 << 20, false, &Opts::new())
        .await
        .unwrap();
    let re = c.kvrealloc(small.addr, 2000, &Opts::new()).await.unwrap();
    for a in [re.addr, large.addr, arr.addr] {
        c.kvfree(a).await.unwrap();
    }

    // Introspection: texts, structured views, sysctls.
    let buddy = c.proc_file("buddyinfo").await.unwrap();
    assert_eq!(buddy, srv.machine.proc_file("buddyinfo").unwrap());
    let names = c.list_proc_files().await.unwrap();
    assert!(names.contains(&"zoneinfo".to_string()));
    let mi = c.meminfo().await.unwrap();
    assert_eq!(mi[0].name, "MemTotal");
    assert!(mi[0].value > 900 << 20);
    let zones = c.zones().await.unwrap();
    assert!(zones
        .iter()
        .any(|z| z.name == "DMA32" && z.min_pages > 0 && z.free_per_order.len() == 11));
    let vm = c.vmstat().await.unwrap();
    assert!(vm.iter().any(|e| e.name == "pgfree" && e.value > 0));
    assert!(c
        .slab_info()
        .await
        .unwrap()
        .iter()
        .any(|s| s.name == "kmalloc-96"));
    let all = c.sysctls(&[]).await.unwrap();
    assert!(all.iter().any(|s| s.name == "vm.min_free_kbytes"));
    assert_eq!(
        c.set_sysctl("vm.watermark_scale_factor", "100")
            .await
            .unwrap(),
        "100"
    );
    let bad = c.set_sysctl("vm.nope", "1").await.unwrap_err();
    assert_eq!(bad.code(), Code::NotFound);
    let m = c.machine().await.unwrap();
    assert_eq!(m.memory_bytes, 1 << 30);
    srv.machine.drain_all_pages();
    srv.machine.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroups_and_their_limit_error() {
    let (_srv, c) = common::start().await;
    c.create_cgroup("/t").await.unwrap();
    c.create_cgroup("/t/a").await.unwrap();
    let exists = c.create_cgroup("/t").await.unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists);
    assert_eq!(c.list_cgroups().await.unwrap(), vec!["/", "/t", "/t/a"]);
    c.write_cgroup_file("/t/a", "memory.max", "64K")
        .await
        .unwrap();
    assert_eq!(
        c.read_cgroup_file("/t/a", "memory.max").await.unwrap(),
        "65536\n"
    );
    let acct = Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/t/a");
    let p = c.alloc_pages(2, &acct).await.unwrap();
    let err = c.alloc_pages(4, &acct).await.unwrap_err();
    match &err {
        Error::CgroupLimit {
            cgroup,
            limit_bytes,
            ..
        } => {
            assert_eq!(cgroup, "/t/a");
            assert_eq!(*limit_bytes, Some(65536));
        }
        e => panic!("expected a cgroup limit, got {e:?}"),
    }
    assert_eq!(err.code(), Code::ResourceExhausted);
    let g = c.get_cgroup("/t/a").await.unwrap();
    assert_eq!(g.max_bytes, Some(65536));
    assert!(g.current_bytes >= 16384);
    assert!(g.events.iter().any(|e| e.name == "max" && e.value >= 1));
    let stat = c.read_cgroup_file("/t/a", "memory.stat").await.unwrap();
    assert!(stat.starts_with("anon "), "{stat}");
    c.free_pages(p.pfn.unwrap(), 2).await.unwrap();
    let busy = c.remove_cgroup("/t").await.unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    c.remove_cgroup("/t/a").await.unwrap();
    let gone = c.get_cgroup("/t/a").await.unwrap_err();
    assert_eq!(gone.reason(), Some("CGROUP_NOT_FOUND"));
    let bad = c
        .write_cgroup_file("/t", "memory.max", "lots")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_code_with_its_reason() {
    let (_srv, c) =
        common::start_with(|cfg| cfg.machine.memory = kmem_allocator::ByteSize(128 << 20)).await;
    // INVALID_ARGUMENT: unknown flag, with a suggestion and the field.
    let e = c.kmalloc(64, &Opts::gfp("GFP_KERNAL")).await.unwrap_err();
    match &e {
        Error::InvalidArgument {
            reason,
            field,
            message,
        } => {
            assert_eq!(reason, "INVALID_GFP_FLAGS");
            assert_eq!(field.as_deref(), Some("gfp"));
            assert!(message.contains("GFP_KERNEL"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    let e = c.alloc_pages(11, &Opts::new()).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::InvalidArgument, Some("INVALID_ORDER"))
    );
    let e = c
        .kmalloc(64, &Opts::gfp("GFP_KERNEL").gfp_mask(0x820))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "text and mask disagree");
    let e = c.kmalloc(64, &Opts::new().node(5)).await.unwrap_err();
    assert_eq!(e.reason(), Some("NO_SUCH_NODE"));
    let e = c.kmalloc(5 << 20, &Opts::new()).await.unwrap_err();
    assert_eq!(e.reason(), Some("SIZE_TOO_LARGE"));
    let e = c
        .vmalloc(4096, pb::VmallocKind::Gfp, &Opts::gfp("GFP_ATOMIC"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // NOT_FOUND: double free and a wild address.
    let a = c.kmalloc(64, &Opts::new()).await.unwrap();
    c.kfree(a.addr).await.unwrap();
    let e = c.kfree(a.addr).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::NotFound, Some("DOUBLE_FREE"))
    );
    let e = c.vfree(0xffff_c900_dead_0000).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::NotFound, Some("ALLOCATION_NOT_FOUND"))
    );
    let e = c
        .free(0xffff_8880_0000_0000 + (100 << 20) + 8)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let p = c.alloc_pages(0, &Opts::new()).await.unwrap();
    c.free_pages(p.pfn.unwrap(), 0).await.unwrap();
    let e = c.free_pages(p.pfn.unwrap(), 0).await.unwrap_err();
    assert_eq!(e.reason(), Some("DOUBLE_FREE"));

    // FAILED_PRECONDITION: a usercopy outside the object, a wrong order.
    let o = c.kmalloc(64, &Opts::new()).await.unwrap();
    let e = c.copy_to_user(o.addr + 32, 64).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::FailedPrecondition, Some("USERCOPY_VIOLATION"))
    );
    let p = c.alloc_pages(2, &Opts::new()).await.unwrap();
    let e = c.free_pages(p.pfn.unwrap(), 1).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::FailedPrecondition, Some("WRONG_ORDER"))
    );

    // RESOURCE_EXHAUSTED: the machine runs out of order-10 blocks.
    let mut held = vec![];
    let oom = loop {
        match c
            .alloc_pages(10, &Opts::gfp("GFP_KERNEL|__GFP_NOWARN"))
            .await
        {
            Ok(b) => held.push(b),
            Err(e) => break e,
        }
        assert!(
            held.len() < 200,
            "a 128 MiB machine has fewer than 200 order-10 blocks"
        );
    };
    match &oom {
        Error::OutOfMemory {
            reason, metadata, ..
        } => {
            assert!(["NO_FREE_BLOCK", "BELOW_MIN_WATERMARK", "OUT_OF_MEMORY"]
                .contains(&reason.as_str()));
            assert_eq!(metadata["order"], "10");
            assert_eq!(metadata["requestedBytes"], "4194304");
        }
        e => panic!("{e:?}"),
    }
    for b in held {
        c.free_pages(b.pfn.unwrap(), 10).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_confined_to_their_subtree() {
    let tenants = vec![
        kmem_server::auth::Tenant {
            name: "a".into(),
            token: "token-aaaaaaaa".into(),
            cgroup: "/tenants/a".into(),
        },
        kmem_server::auth::Tenant {
            name: "b".into(),
            token: "token-bbbbbbbb".into(),
            cgroup: "/tenants/b".into(),
        },
    ];
    let (srv, anon) = common::start_with(|cfg| cfg.tenants = tenants).await;
    let e = anon.ping().await;
    assert!(e.is_ok(), "Ping needs no tenant");
    let e = anon.kmalloc(64, &Opts::new()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let a = Client::builder(&srv.grpc_addr.to_string())
        .token("token-aaaaaaaa")
        .connect()
        .await
        .unwrap();
    // Charged to its own root by default.
    let o = a
        .kmalloc(1000, &Opts::gfp("GFP_KERNEL_ACCOUNT"))
        .await
        .unwrap();
    assert!(a.get_cgroup("/tenants/a").await.unwrap().current_bytes > 0);
    a.create_cgroup("/tenants/a/job").await.unwrap();
    let e = a
        .kmalloc(64, &Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/tenants/b"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::PermissionDenied, Some("TENANT_FORBIDDEN"))
    );
    let e = a
        .read_cgroup_file("/tenants/b", "memory.current")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = a
        .write_cgroup_file("/tenants/a", "memory.max", "max")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a tenant may not lift its own limit"
    );
    let e = a.set_sysctl("vm.min_free_kbytes", "1").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        a.list_cgroups().await.unwrap(),
        vec!["/tenants/a", "/tenants/a/job"]
    );
    a.kfree(o.addr).await.unwrap();
}

fn kmalloc_op(size: u64) -> pb::Operation {
    pb::Operation {
        op: Some(Op::Kmalloc(Box::new(pb::KmallocRequest {
            size,
            ..Default::default()
        }))),
    }
}

fn kfree_op(addr: u64) -> pb::Operation {
    pb::Operation {
        op: Some(Op::Kfree(Box::new(pb::KfreeRequest {
            addr,
            ..Default::default()
        }))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_session() {
    let (srv, c) = common::start_with(|cfg| cfg.limits.max_batch = 100).await;
    let results = c
        .batch(pb::BatchRequest {
            operations: vec![
                kmalloc_op(64),
                kmalloc_op(100),
                kfree_op(0xffff_8880_0000_1234),
                kmalloc_op(8),
            ],
            defaults: Some(Opts::gfp("GFP_KERNEL_ACCOUNT").to_pb()),
            stop_on_error: false,
        })
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[0].allocation.as_ref().unwrap().cache,
        "kmalloc-cg-64",
        "batch defaults apply"
    );
    assert_eq!(
        results[1].allocation.as_ref().unwrap().cache,
        "kmalloc-cg-128"
    );
    let e = Error::from_rpc_status(results[2].status.as_ref().unwrap()).unwrap();
    assert_eq!(e.code(), Code::NotFound);
    assert!(results[3].status.is_none(), "OK carries no status");
    let frees: Vec<_> = [0, 1, 3]
        .iter()
        .map(|&i| kfree_op(results[i].allocation.as_ref().unwrap().addr))
        .collect();
    let r = c
        .batch(pb::BatchRequest {
            operations: frees,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.iter().all(|x| x.status.is_none()));

    // stop_on_error: the rest are ABORTED.
    let r = c
        .batch(pb::BatchRequest {
            operations: vec![kfree_op(0xffff_8880_0000_1234), kmalloc_op(64)],
            stop_on_error: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r[1].status.as_ref().unwrap().code, Code::Aborted as i32);
    assert!(r[1].allocation.is_none());

    // Too large a batch.
    let e = c
        .batch(pb::BatchRequest {
            operations: (0..101).map(|_| kmalloc_op(8)).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::InvalidArgument, Some("BATCH_TOO_LARGE"))
    );

    // Session: pipelined, ids echoed, an error does not end the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut out = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    for i in 0..10u64 {
        tx.send(pb::SessionRequest {
            id: i,
            operation: Some(kmalloc_op(32)),
        })
        .await
        .unwrap();
    }
    tx.send(pb::SessionRequest {
        id: 99,
        operation: Some(kfree_op(1234)),
    })
    .await
    .unwrap();
    let mut addrs = vec![];
    for i in 0..10u64 {
        let r = out.message().await.unwrap().unwrap();
        assert_eq!(r.id, i);
        addrs.push(r.result.unwrap().allocation.unwrap().addr);
    }
    let r = out.message().await.unwrap().unwrap();
    assert_eq!(r.id, 99);
    assert_ne!(r.result.unwrap().status.unwrap().code, 0);
    for (i, a) in addrs.iter().enumerate() {
        tx.send(pb::SessionRequest {
            id: 100 + i as u64,
            operation: Some(kfree_op(*a)),
        })
        .await
        .unwrap();
    }
    drop(tx);
    let mut n = 0;
    while let Some(r) = out.message().await.unwrap() {
        assert!(r.result.unwrap().status.is_none());
        n += 1;
    }
    assert_eq!(n, 10);
    srv.machine.drain_all_pages();
    srv.machine.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nofail_waits_end_at_the_deadline_without_blocking_workers() {
    let (srv, _) =
        common::start_with(|cfg| cfg.machine.memory = kmem_allocator::ByteSize(64 << 20)).await;
    let c = Client::builder(&srv.grpc_addr.to_string())
        .timeout(std::time::Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let mut held = vec![];
    while let Ok(b) = c
        .alloc_pages(10, &Opts::gfp("GFP_KERNEL|__GFP_NOWARN"))
        .await
    {
        held.push(b);
    }
    // Two NOFAIL waits at once on a 2-worker runtime: a Ping still answers.
    let waits: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.alloc_pages(10, &Opts::gfp("GFP_KERNEL|__GFP_NOFAIL"))
                    .await
            })
        })
        .collect();
    c.ping().await.unwrap();
    for w in waits {
        let e = w.await.unwrap().unwrap_err();
        assert!(
            matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
            "NOFAIL gives up at the deadline: {e:?}"
        );
    }
    for b in held {
        c.free_pages(b.pfn.unwrap(), 10).await.unwrap();
    }
    srv.machine.drain_all_pages();
    srv.machine.check_invariants().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let (srv, _c) = common::start().await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", srv.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(ch.clone());
    for s in [
        "",
        "kmem.v1.AllocatorService",
        "kmem.v1.CgroupService",
        "kmem.v1.IntrospectionService",
    ] {
        let r = h
            .check(HealthCheckRequest { service: s.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{s} SERVING");
    }
    let e = h
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_clients_leave_nothing_half_done() {
    let (srv, c) = common::start().await;
    // A session dropped mid-stream, with operations still queued.
    {
        let other = Client::connect(&srv.grpc_addr.to_string()).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut out = other
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
        for i in 0..50u64 {
            tx.send(pb::SessionRequest {
                id: i,
                operation: Some(kmalloc_op(128)),
            })
            .await
            .unwrap();
        }
        let first = out.message().await.unwrap().unwrap();
        assert_eq!(first.id, 0);
        drop(out);
        drop(tx);
        drop(other);
    }
    // A NOFAIL wait whose client goes away is cancelled; nothing it took leaks.
    let mut held = vec![];
    while let Ok(b) = c
        .alloc_pages(10, &Opts::gfp("GFP_KERNEL|__GFP_NOWARN"))
        .await
    {
        held.push(b);
    }
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.alloc_pages(10, &Opts::gfp("GFP_KERNEL|__GFP_NOFAIL"))
                .await
        })
    };
    c.ping().await.unwrap();
    waiter.abort();
    let _ = waiter.await;
    for b in held {
        c.free_pages(b.pfn.unwrap(), 10).await.unwrap();
    }
    // The server keeps serving and its books balance: every page is free or owned.
    c.ping().await.unwrap();
    srv.machine.drain_all_pages();
    srv.machine.check_invariants().unwrap();
    let census = srv.machine.caches_info();
    let k128 = census.iter().find(|i| i.name == "kmalloc-128").unwrap();
    assert!(k128.alloc_total >= 1, "the session's first kmalloc ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_high_throttle_is_reported_and_waited_up_to_the_cap() {
    let (_srv, c) = common::start_with(|cfg| cfg.limits.memory_high_throttle_cap_ms = 30).await;
    c.create_cgroup("/hot").await.unwrap();
    c.write_cgroup_file("/hot", "memory.high", "1M")
        .await
        .unwrap();
    let acct = Opts::gfp("GFP_KERNEL_ACCOUNT").cgroup("/hot");
    let first = c.alloc_pages(0, &acct).await.unwrap();
    assert_eq!(first.memory_high_delay_ms, 0, "under memory.high");
    let mut held = vec![first];
    let mut throttled = None;
    for _ in 0..8 {
        let t = std::time::Instant::now();
        let b = c.alloc_pages(9, &acct).await.unwrap();
        if b.memory_high_delay_ms > 0 {
            throttled = Some((b.memory_high_delay_ms, t.elapsed()));
        }
        held.push(b);
    }
    let (delay, took) = throttled.expect("over memory.high the kernel throttles");
    assert!(delay <= 2000);
    assert!(
        took >= std::time::Duration::from_millis(delay.min(30)),
        "waited {took:?} for a {delay} ms throttle capped at 30 ms"
    );
    let events = c.read_cgroup_file("/hot", "memory.events").await.unwrap();
    assert!(!events.contains("high 0\n"), "{events}");
    for b in held {
        c.free_pages(b.pfn.unwrap(), b.order.unwrap())
            .await
            .unwrap();
    }
}

/// FreePages, FreePagesExact and Vfree run on the CPU they name (a replayed trace frees
/// where it was recorded); a CPU the machine lacks is INVALID_ARGUMENT / NO_SUCH_CPU
/// and frees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_vmalloc_frees_take_a_cpu() {
    let (_srv, c) = common::start().await;
    let op = |op| pb::Operation { op: Some(op) };
    let r = c
        .batch(pb::BatchRequest {
            operations: vec![
                op(Op::AllocPages(Box::new(pb::AllocPagesRequest {
                    order: 1,
                    ..Default::default()
                }))),
                op(Op::Vmalloc(Box::new(pb::VmallocRequest {
                    size: 16 << 10,
                    ..Default::default()
                }))),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let pages = r[0].allocation.as_ref().unwrap().clone();
    let area = r[1].allocation.as_ref().unwrap().addr;
    let frees = |cpu| {
        vec![
            op(Op::FreePages(Box::new(pb::FreePagesRequest {
                pfn: pages.pfn.unwrap(),
                order: 1,
                cpu: Some(cpu),
                ..Default::default()
            }))),
            op(Op::Vfree(Box::new(pb::VfreeRequest {
                addr: area,
                cpu: Some(cpu),
            }))),
        ]
    };
    let bad = c
        .batch(pb::BatchRequest {
            operations: frees(99),
            ..Default::default()
        })
        .await
        .unwrap();
    for x in &bad {
        let e = Error::from_rpc_status(x.status.as_ref().expect("refused")).unwrap();
        assert_eq!(
            (e.code(), e.reason()),
            (Code::InvalidArgument, Some("NO_SUCH_CPU"))
        );
    }
    let ok = c
        .batch(pb::BatchRequest {
            operations: frees(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ok.iter().all(|x| x.status.is_none()), "{ok:?}");
}
