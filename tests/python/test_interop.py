"""Interoperability test: the real kmemd binary against Python grpcio.

Nothing here comes from the Rust side but the .proto files: the stubs are generated
with grpc_tools.protoc into a temp dir, and health, reflection and the rich error
details are read with grpcio's own packages (grpcio-health-checking,
grpcio-reflection, grpcio-status with googleapis-common-protos).

Run with scripts/python-tests.sh, or by hand:
    cd tests/python && python3 -m unittest -v test_interop
with KMEMD_BIN naming the binary (default: target/debug/kmemd under the repo root).
"""

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")
KMEM_PROTOS = [
    "kmem/v1/common.proto",
    "kmem/v1/allocator.proto",
    "kmem/v1/cgroup.proto",
    "kmem/v1/introspection.proto",
]
KMEM_SERVICES = [
    "kmem.v1.AllocatorService",
    "kmem.v1.CgroupService",
    "kmem.v1.IntrospectionService",
]
HEALTH_SERVICE = "grpc.health.v1.Health"
# Per-call deadline: no call of this test may hang the run.
TIMEOUT = 10.0
# How long kmemd may take to boot and print its address line, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LISTEN_RE = re.compile(r"^kmemd listening grpc=(\S+) http=(\S+)$")

# Filled by setUpModule.
pb = {}  # "allocator" -> allocator_pb2, "allocator_grpc" -> allocator_pb2_grpc, ...
_stub_dir = None


def generate_stubs(out_dir):
    """Generates the kmem/v1 stubs only; google.rpc comes from googleapis-common-protos."""
    from grpc_tools import protoc

    try:
        from importlib.resources import files

        wkt = str(files("grpc_tools") / "_proto")
    except Exception:  # pragma: no cover - old Pythons
        import grpc_tools

        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        "-I" + PROTO_DIR,
        "-I" + wkt,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
    ] + KMEM_PROTOS
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed (exit %d): %s" % (rc, " ".join(args)))
    if os.path.exists(os.path.join(out_dir, "google")):
        raise RuntimeError("protoc generated a local google package; it would shadow google.protobuf")


def setUpModule():
    global _stub_dir
    _stub_dir = tempfile.mkdtemp(prefix="kmem-pystubs-")
    generate_stubs(_stub_dir)
    sys.path.insert(0, _stub_dir)
    for name in ("common", "allocator", "cgroup", "introspection"):
        pb[name] = importlib.import_module("kmem.v1.%s_pb2" % name)
        pb[name + "_grpc"] = importlib.import_module("kmem.v1.%s_pb2_grpc" % name)


def tearDownModule():
    if _stub_dir:
        shutil.rmtree(_stub_dir, ignore_errors=True)


class Kmemd:
    """The real daemon on ephemeral ports; its address is read from its stdout line."""

    def __init__(self):
        self.bin = os.environ.get("KMEMD_BIN") or os.path.join(REPO, "target", "debug", "kmemd")
        if not os.path.isabs(self.bin):
            self.bin = os.path.join(REPO, self.bin)
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError("kmemd binary not found at %s (cargo build -p kmem-server)" % self.bin)
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        # kmemd reads KMEMD_* variables as configuration: give it none, so the
        # defaults hold whatever the caller's environment says.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KMEMD_")}
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [self.bin, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.lines = []
        self._first = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        if not self._first.wait(START_TIMEOUT):
            self.kill()
            raise RuntimeError("kmemd printed no address line in %ss\n%s" % (START_TIMEOUT, self.log()))
        if not self.lines:
            self.proc.wait(5)
            raise RuntimeError(
                "kmemd exited (code %s) before listening\n%s" % (self.proc.returncode, self.log())
            )
        m = LISTEN_RE.match(self.lines[0])
        if not m:
            self.kill()
            raise RuntimeError("unexpected first stdout line from kmemd: %r" % self.lines[0])
        self.grpc_addr, self.http_addr = m.group(1), m.group(2)

    def _read_stdout(self):
        # Keeps reading so kmemd never blocks on (or breaks) its stdout.
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            self._first.set()
        self._first.set()

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def unpack_details(status):
    """google.rpc.Status -> {type name: message}; asserts each type appears once."""
    out = {}
    kinds = {
        "google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
        "google.rpc.QuotaFailure": error_details_pb2.QuotaFailure,
        "google.rpc.BadRequest": error_details_pb2.BadRequest,
        "google.rpc.ResourceInfo": error_details_pb2.ResourceInfo,
        "google.rpc.PreconditionFailure": error_details_pb2.PreconditionFailure,
    }
    for any_msg in status.details:
        name = any_msg.TypeName()
        if name in out:
            raise AssertionError("detail %s appears twice in %s" % (name, status))
        cls = kinds.get(name)
        if cls is None:
            out[name] = any_msg
            continue
        msg = cls()
        if not any_msg.Unpack(msg):
            raise AssertionError("cannot unpack %s" % name)
        out[name] = msg
    return out


class InteropTest(unittest.TestCase):
    """One kmemd for the class; tests run in name order and test_99 stops it."""

    server = None
    channel = None

    @classmethod
    def setUpClass(cls):
        cls.server = Kmemd()
        cls.channel = grpc.insecure_channel(
            cls.server.grpc_addr,
            # kmemd's max_message_size is 16 MiB; grpcio's default receive limit 4 MiB.
            options=[("grpc.max_receive_message_length", 16 << 20)],
        )
        try:
            grpc.channel_ready_future(cls.channel).result(timeout=TIMEOUT)
        except Exception:
            # tearDownClass does not run when setUpClass fails.
            cls.tearDownClass()
            raise
        cls.alloc = pb["allocator_grpc"].AllocatorServiceStub(cls.channel)
        cls.cgroups = pb["cgroup_grpc"].CgroupServiceStub(cls.channel)
        cls.intro = pb["introspection_grpc"].IntrospectionServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        if cls.channel is not None:
            cls.channel.close()
        if cls.server is not None:
            cls.server.kill()

    # -- helpers ---------------------------------------------------------------

    def call_error(self, rpc, request):
        """Makes a call that must fail; returns (grpc.RpcError, google.rpc.Status, details)."""
        with self.assertRaises(grpc.RpcError) as cm:
            rpc(request, timeout=TIMEOUT)
        err = cm.exception
        # from_call checks that the status in grpc-status-details-bin agrees with
        # grpc-status and grpc-message (ValueError otherwise).
        status = rpc_status.from_call(err)
        self.assertIsNotNone(status, "no grpc-status-details-bin on %s: %s" % (err.code(), err.details()))
        self.assertEqual(status.code, err.code().value[0])
        self.assertEqual(status.message, err.details())
        details = unpack_details(status)
        self.assertIn("google.rpc.ErrorInfo", details, status)
        info = details["google.rpc.ErrorInfo"]
        self.assertEqual(info.domain, "kmem")
        return err, status, details

    def opts(self, **kw):
        return pb["common"].AllocOptions(**kw)

    # -- health and reflection -------------------------------------------------

    def test_01_health(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        for svc in ["", "kmem.v1.AllocatorService", "kmem.v1.CgroupService", "kmem.v1.IntrospectionService"]:
            with self.subTest(service=svc):
                resp = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=TIMEOUT)
                self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as cm:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        # Watch: the first message is the current status.
        stream = health.Watch(health_pb2.HealthCheckRequest(service="kmem.v1.AllocatorService"), timeout=TIMEOUT)
        try:
            first = next(stream)
            self.assertEqual(first.status, health_pb2.HealthCheckResponse.SERVING)
        finally:
            stream.cancel()

    def test_02_reflection_v1alpha(self):
        db = ProtoReflectionDescriptorDatabase(self.channel)
        services = db.get_services()
        for svc in KMEM_SERVICES + [HEALTH_SERVICE]:
            self.assertIn(svc, services)
        # The descriptors served (with their imports, google/rpc/status.proto among
        # them) build a pool a dynamic client can use.
        pool = descriptor_pool.DescriptorPool(db)
        alloc = pool.FindServiceByName("kmem.v1.AllocatorService")
        methods = {m.name for m in alloc.methods}
        for m in ["Ping", "Kmalloc", "Kfree", "CopyFromUser", "CopyToUser", "AllocPages", "Batch", "Session"]:
            self.assertIn(m, methods)
        self.assertEqual(
            alloc.methods_by_name["Kmalloc"].input_type.full_name, "kmem.v1.KmallocRequest"
        )
        result = pool.FindMessageTypeByName("kmem.v1.OperationResult")
        self.assertEqual(result.fields_by_name["status"].message_type.full_name, "google.rpc.Status")
        cg = pool.FindServiceByName("kmem.v1.CgroupService")
        self.assertIn("CreateCgroup", {m.name for m in cg.methods})

    def test_03_reflection_v1(self):
        # grpcio-reflection ships only v1alpha; the v1 messages are identical on the
        # wire, so a raw call on the v1 method uses the v1alpha classes.
        rpc = self.channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="kmem.v1.CgroupService"),
        ]
        resps = list(rpc(iter(reqs), timeout=TIMEOUT))
        self.assertEqual(len(resps), 2)
        names = {s.name for s in resps[0].list_services_response.service}
        for svc in KMEM_SERVICES + [HEALTH_SERVICE]:
            self.assertIn(svc, names)
        self.assertTrue(resps[1].HasField("file_descriptor_response"), resps[1])
        self.assertGreater(len(resps[1].file_descriptor_response.file_descriptor_proto), 0)

    # -- allocator ----------------------------------------------------------------

    def test_10_ping(self):
        self.alloc.Ping(pb["allocator"].PingRequest(), timeout=TIMEOUT)

    def test_11_kmalloc_copy_kfree_double_free(self):
        a = pb["allocator"]
        common = pb["common"]
        resp = self.alloc.Kmalloc(a.KmallocRequest(size=96), timeout=TIMEOUT)
        obj = resp.allocation
        self.assertNotEqual(obj.addr, 0)
        self.assertGreaterEqual(obj.size, 96)
        self.assertEqual(obj.backend, common.BACKEND_SLAB)
        self.assertEqual(obj.cache, "kmalloc-96")

        data = bytes(range(96))
        self.alloc.CopyFromUser(a.CopyFromUserRequest(addr=obj.addr, data=data), timeout=TIMEOUT)
        back = self.alloc.CopyToUser(a.CopyToUserRequest(addr=obj.addr, len=96), timeout=TIMEOUT)
        self.assertEqual(back.data, data)
        # A part in the middle of the object.
        mid = self.alloc.CopyToUser(a.CopyToUserRequest(addr=obj.addr + 10, len=5), timeout=TIMEOUT)
        self.assertEqual(mid.data, data[10:15])

        self.alloc.Kfree(a.KfreeRequest(addr=obj.addr), timeout=TIMEOUT)

        err, status, details = self.call_error(self.alloc.Kfree, a.KfreeRequest(addr=obj.addr))
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        info = details["google.rpc.ErrorInfo"]
        self.assertEqual(info.reason, "DOUBLE_FREE")
        self.assertEqual(info.metadata.get("cache"), "kmalloc-96")
        self.assertEqual(int(info.metadata["addr"], 16), obj.addr)
        self.assertIn("google.rpc.ResourceInfo", details)

        # Not an object's start: INVALID_FREE, also NOT_FOUND.
        live = self.alloc.Kmalloc(a.KmallocRequest(size=96), timeout=TIMEOUT).allocation
        err, status, details = self.call_error(self.alloc.Kfree, a.KfreeRequest(addr=live.addr + 8))
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(details["google.rpc.ErrorInfo"].reason, "INVALID_FREE")
        self.alloc.Kfree(a.KfreeRequest(addr=live.addr), timeout=TIMEOUT)

    def test_12_invalid_gfp(self):
        a = pb["allocator"]
        err, status, details = self.call_error(
            self.alloc.Kmalloc, a.KmallocRequest(size=64, options=self.opts(gfp="GFP_NO_SUCH_FLAG"))
        )
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(details["google.rpc.ErrorInfo"].reason, "INVALID_GFP_FLAGS")
        self.assertIn("google.rpc.BadRequest", details)

    def test_13_pages_and_vmalloc(self):
        a = pb["allocator"]
        common = pb["common"]
        pages = self.alloc.AllocPages(a.AllocPagesRequest(order=2), timeout=TIMEOUT).allocation
        self.assertEqual(pages.size, 4096 << 2)
        self.assertEqual(pages.order, 2)
        self.alloc.FreePages(a.FreePagesRequest(pfn=pages.pfn, order=2), timeout=TIMEOUT)

        area = self.alloc.Vmalloc(a.VmallocRequest(size=3 * 4096), timeout=TIMEOUT).allocation
        self.assertEqual(area.backend, common.BACKEND_VMALLOC)
        self.assertGreaterEqual(area.size, 3 * 4096)
        self.alloc.Vfree(a.VfreeRequest(addr=area.addr), timeout=TIMEOUT)

    def test_14_large_copy(self):
        # 4 MiB is kmemd's max_copy_size; a grpcio client must raise its own 4 MiB
        # receive limit (the channel does) to read it back.
        a = pb["allocator"]
        n = 4 << 20
        area = self.alloc.Vmalloc(a.VmallocRequest(size=n), timeout=TIMEOUT).allocation
        data = os.urandom(n)
        self.alloc.CopyFromUser(a.CopyFromUserRequest(addr=area.addr, data=data), timeout=TIMEOUT)
        back = self.alloc.CopyToUser(a.CopyToUserRequest(addr=area.addr, len=n), timeout=TIMEOUT)
        self.assertEqual(len(back.data), n)
        self.assertTrue(back.data == data, "4 MiB round trip differs")
        err, status, details = self.call_error(
            self.alloc.CopyToUser, a.CopyToUserRequest(addr=area.addr, len=n + 1)
        )
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.alloc.Vfree(a.VfreeRequest(addr=area.addr), timeout=TIMEOUT)

    # -- cgroups --------------------------------------------------------------------

    def test_20_cgroup_limit_resource_exhausted(self):
        a = pb["allocator"]
        c = pb["cgroup"]
        self.cgroups.CreateCgroup(c.CreateCgroupRequest(path="/py"), timeout=TIMEOUT)
        self.cgroups.WriteCgroupFile(
            c.WriteCgroupFileRequest(path="/py", file="memory.max", value="64K"), timeout=TIMEOUT
        )
        text = self.cgroups.ReadCgroupFile(
            c.ReadCgroupFileRequest(path="/py", file="memory.max"), timeout=TIMEOUT
        ).text
        self.assertEqual(text, "65536\n")
        self.assertIn("/py", self.cgroups.ListCgroups(c.ListCgroupsRequest(), timeout=TIMEOUT).paths)

        # kmalloc(8192, GFP_KERNEL_ACCOUNT) charged to /py until the limit says no.
        accounted = self.opts(gfp="GFP_KERNEL_ACCOUNT", cgroup="/py")
        addrs = []
        failure = None
        for _ in range(64):
            try:
                resp = self.alloc.Kmalloc(a.KmallocRequest(size=8192, options=accounted), timeout=TIMEOUT)
                addrs.append(resp.allocation.addr)
            except grpc.RpcError as e:
                failure = e
                break
        self.assertIsNotNone(failure, "64 accounted kmalloc(8192) calls in a 64K cgroup all succeeded")
        self.assertEqual(failure.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, failure.details())
        self.assertGreater(len(addrs), 0, "not even one 8K object fitted in 64K")
        self.assertLessEqual(len(addrs), 8)
        self.check_limit_status(failure, "/py")

        # One order-5 (128K) page block can never fit.
        err, status, details = self.call_error(
            self.alloc.AllocPages, a.AllocPagesRequest(order=5, options=accounted)
        )
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.check_limit_status(err, "/py")

        events = self.cgroups.ReadCgroupFile(
            c.ReadCgroupFileRequest(path="/py", file="memory.events"), timeout=TIMEOUT
        ).text
        fields = dict(line.split() for line in events.splitlines() if line.strip())
        self.assertGreaterEqual(int(fields.get("max", "0")), 1, events)

        for addr in addrs:
            self.alloc.Kfree(a.KfreeRequest(addr=addr), timeout=TIMEOUT)

    def check_limit_status(self, err, path):
        status = rpc_status.from_call(err)
        self.assertIsNotNone(status)
        self.assertEqual(status.code, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        self.assertEqual(status.message, err.details())
        details = unpack_details(status)
        info = details["google.rpc.ErrorInfo"]
        self.assertEqual(info.domain, "kmem")
        self.assertEqual(info.reason, "CGROUP_LIMIT_EXCEEDED")
        self.assertEqual(info.metadata.get("cgroup"), path)
        self.assertEqual(info.metadata.get("limitBytes"), "65536")
        quota = details.get("google.rpc.QuotaFailure")
        self.assertIsNotNone(quota, "no QuotaFailure in %s" % status)
        self.assertEqual(len(quota.violations), 1)
        self.assertIn(path, quota.violations[0].subject)
        self.assertTrue(quota.violations[0].description)

    # -- batch and session ----------------------------------------------------------

    def test_30_batch(self):
        a = pb["allocator"]
        common = pb["common"]
        ok = grpc.StatusCode.OK.value[0]
        ops = [
            a.Operation(kmalloc=a.KmallocRequest(size=128)),
            a.Operation(kmalloc=a.KmallocRequest(size=64, options=self.opts(gfp="GFP_BOGUS"))),
            a.Operation(ping=a.PingRequest()),
            a.Operation(vmalloc=a.VmallocRequest(size=2 * 4096)),
        ]
        res = self.alloc.Batch(a.BatchRequest(operations=ops), timeout=TIMEOUT).results
        self.assertEqual(len(res), 4)
        self.assertEqual(res[0].status.code, ok, res[0].status)
        self.assertEqual(res[0].allocation.cache, "kmalloc-128")
        self.assertEqual(res[1].status.code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        info = unpack_details(res[1].status)["google.rpc.ErrorInfo"]
        self.assertEqual((info.domain, info.reason), ("kmem", "INVALID_GFP_FLAGS"))
        self.assertEqual(res[2].status.code, ok, res[2].status)
        self.assertEqual(res[3].status.code, ok, res[3].status)
        self.assertEqual(res[3].allocation.backend, common.BACKEND_VMALLOC)
        obj, area = res[0].allocation.addr, res[3].allocation.addr

        payload = b"kmemd interop from python\x00\xff"
        ops = [
            a.Operation(copy_from_user=a.CopyFromUserRequest(addr=obj, data=payload)),
            a.Operation(copy_to_user=a.CopyToUserRequest(addr=obj, len=len(payload))),
            a.Operation(kfree=a.KfreeRequest(addr=obj)),
            a.Operation(kfree=a.KfreeRequest(addr=obj)),
            a.Operation(vfree=a.VfreeRequest(addr=area)),
        ]
        res = self.alloc.Batch(a.BatchRequest(operations=ops), timeout=TIMEOUT).results
        self.assertEqual([r.status.code for r in res], [ok, ok, ok, grpc.StatusCode.NOT_FOUND.value[0], ok])
        self.assertEqual(res[1].data, payload)
        info = unpack_details(res[3].status)["google.rpc.ErrorInfo"]
        self.assertEqual((info.domain, info.reason), ("kmem", "DOUBLE_FREE"))

        # stop_on_error: what follows the first failure is ABORTED.
        ops = [
            a.Operation(ping=a.PingRequest()),
            a.Operation(vfree=a.VfreeRequest(addr=area)),
            a.Operation(ping=a.PingRequest()),
        ]
        res = self.alloc.Batch(a.BatchRequest(operations=ops, stop_on_error=True), timeout=TIMEOUT).results
        self.assertEqual(len(res), 3)
        self.assertEqual(res[0].status.code, ok)
        self.assertNotEqual(res[1].status.code, ok)
        self.assertEqual(res[2].status.code, grpc.StatusCode.ABORTED.value[0])

    def test_31_session_stream(self):
        a = pb["allocator"]
        reqs = [
            a.SessionRequest(id=7, operation=a.Operation(kmalloc=a.KmallocRequest(size=32))),
            a.SessionRequest(id=8, operation=a.Operation(ping=a.PingRequest())),
            a.SessionRequest(id=9, operation=a.Operation(kfree=a.KfreeRequest(addr=0xDEAD0000))),
        ]
        resps = list(self.alloc.Session(iter(reqs), timeout=TIMEOUT))
        self.assertEqual(sorted(r.id for r in resps), [7, 8, 9])
        by_id = {r.id: r.result for r in resps}
        self.assertEqual(by_id[7].status.code, 0)
        self.assertEqual(by_id[8].status.code, 0)
        self.assertNotEqual(by_id[9].status.code, 0)
        self.assertEqual(unpack_details(by_id[9].status)["google.rpc.ErrorInfo"].domain, "kmem")
        self.alloc.Kfree(a.KfreeRequest(addr=by_id[7].allocation.addr), timeout=TIMEOUT)

    # -- introspection --------------------------------------------------------------

    def test_40_proc_file(self):
        i = pb["introspection"]
        text = self.intro.GetProcFile(i.GetProcFileRequest(name="meminfo"), timeout=TIMEOUT).text
        self.assertRegex(text, r"(?m)^MemTotal:\s+\d+ kB$")
        slab = self.intro.GetProcFile(i.GetProcFileRequest(name="/proc/slabinfo"), timeout=TIMEOUT).text
        self.assertIn("kmalloc-96", slab)

    # -- shutdown (last) --------------------------------------------------------------

    def test_99_sigterm_exits_zero(self):
        # The grpcio channel stays connected (idle): a graceful stop must not wait on it.
        self.alloc.Ping(pb["allocator"].PingRequest(), timeout=TIMEOUT)
        health = health_pb2_grpc.HealthStub(self.channel)
        watch = health.Watch(
            health_pb2.HealthCheckRequest(service="kmem.v1.AllocatorService"), timeout=STOP_TIMEOUT
        )
        self.assertEqual(next(watch).status, health_pb2.HealthCheckResponse.SERVING)
        t0 = time.monotonic()
        self.server.proc.send_signal(signal.SIGTERM)
        # Watchers hear NOT_SERVING as the drain begins, then kmemd ends the stream
        # itself, so an open watch does not hold the drain.
        self.assertEqual(next(watch).status, health_pb2.HealthCheckResponse.NOT_SERVING)
        ended = False
        try:
            next(watch)
        except StopIteration:
            ended = True
        except grpc.RpcError as e:
            ended = e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
        self.assertTrue(ended, "the health watch ends after NOT_SERVING")
        try:
            rc = self.server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.fail("kmemd still running %ss after SIGTERM\n%s" % (STOP_TIMEOUT, self.server.log()))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "kmemd exited %s after SIGTERM\n%s" % (rc, self.server.log()))
        # Well under the 10 s drain timeout: nothing was left in flight.
        self.assertLess(took, 5.0, "kmemd took %.1fs to stop\n%s" % (took, self.server.log()))
        self.assertNotIn("drain timeout passed", self.server.log())
        sys.stderr.write("(kmemd stopped in %.2fs) " % took)


def main():
    prog = unittest.main(module=__name__, exit=False)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    passed = max(0, r.testsRun - failed - len(r.skipped))
    line = "python-interop: %d passed, %d failed" % (passed, failed)
    if r.skipped:
        line += ", %d skipped" % len(r.skipped)
    print(line)
    sys.exit(0 if failed == 0 and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
