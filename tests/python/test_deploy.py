"""deploy/ files agree with kmemd: the compose file, the Kubernetes manifest and the
Grafana provisioning parse, name the ports kmemd listens on and the health-check
service names it serves. (No Docker engine or cluster here: this is what can be
checked without one.)"""

import os
import sys
import unittest

import yaml

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")


def load_all(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


class DeployTest(unittest.TestCase):
    def test_kubernetes_probes_use_kmemd_health_names(self):
        docs = {d["kind"]: d for d in load_all("kubernetes/kmemd.yaml")}
        c = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports, {"grpc": 50051, "http": 9464})
        self.assertEqual(c["livenessProbe"]["grpc"], {"port": 50051, "service": "liveness"})
        self.assertEqual(c["readinessProbe"]["grpc"], {"port": 50051, "service": "readiness"})
        env = {e["name"]: e["value"] for e in c["env"]}
        self.assertTrue(all(k.startswith("KMEMD_") for k in env))
        svc = docs["Service"]["spec"]
        self.assertEqual(svc["selector"], docs["Deployment"]["spec"]["selector"]["matchLabels"])

    def test_compose_wires_kmemd_prometheus_grafana(self):
        (compose,) = load_all("compose.yaml")
        s = compose["services"]
        self.assertIn("50051:50051", s["kmemd"]["ports"])
        self.assertEqual(s["kmemd"]["build"]["dockerfile"], "deploy/Dockerfile")
        for v in s["prometheus"]["volumes"] + s["grafana"]["volumes"]:
            src = v.split(":")[0]
            self.assertTrue(os.path.exists(os.path.join(DEPLOY, src)), src)
        (prom,) = load_all("prometheus/compose.yml")
        targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
        self.assertEqual(targets, ["kmemd:9464"])

    def test_dockerfile_exposes_the_ports(self):
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            text = f.read()
        self.assertIn("EXPOSE 50051 9464", text)
        self.assertIn("KMEMD_GRPC_ADDR=0.0.0.0:50051", text)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("python-deploy: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed or not result.testsRun else 0)
