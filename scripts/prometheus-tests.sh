#!/usr/bin/env bash
# Prometheus checks for kmemd's /metrics and deploy/ files, with a real Prometheus.
#   1. installs the Debian package `prometheus` (prometheus + promtool) if missing;
#   2. promtool check config / check rules / test rules on deploy/prometheus/;
#   3. every PromQL expression of deploy/grafana/kmemd.json must parse: they are put in a
#      generated rules file (Grafana variables substituted) and run through `check rules`;
#   4. server/tests/metrics_prometheus.rs: kmemd in-process on 127.0.0.1:0, known gRPC
#      allocations, `promtool check metrics` on a scrape, then Prometheus on loopback
#      scraping it, polled through its HTTP API until the expected values arrive.
#   5. server/tests/metrics_node_exporter.rs: installs the Debian package
#      `prometheus-node-exporter` if missing (its service is kept from starting), runs it
#      on a free loopback port with the collectors kmemd mirrors, and checks that kmemd's
#      node_* family names and label names match the real ones.
# Exits non-zero when anything fails.
set -euo pipefail
# Usage: prometheus-tests.sh [--install-only | --no-cargo]
cd "$(dirname "$0")/.."
root="$(pwd)"

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing prometheus (Debian package)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "prometheus-tests: promtool/prometheus missing and not root: apt-get install prometheus" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
promtool --version | head -1

if ! command -v prometheus-node-exporter >/dev/null; then
  echo "== installing prometheus-node-exporter (Debian package; service not started)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "prometheus-tests: prometheus-node-exporter missing and not root: apt-get install prometheus-node-exporter" >&2
    exit 1
  fi
  # Keep the package's init script from starting a node_exporter on :9100: a
  # policy-rc.d answering 101 ("action forbidden") unless one is already there.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
  if [[ $own_policy -eq 1 ]]; then rm -f "$policy"; fi
fi
prometheus-node-exporter --version 2>&1 | head -1

if [[ "${1:-}" == "--install-only" ]]; then
  exit 0
fi

echo "== promtool check config"
promtool check config "$root/deploy/prometheus/prometheus.yml"
promtool check config "$root/deploy/prometheus/compose.yml"
echo "== promtool check rules"
promtool check rules "$root/deploy/prometheus/rules.yml"
echo "== promtool test rules"
promtool test rules "$root/deploy/prometheus/rules_test.yml"

echo "== dashboard PromQL parses"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$root/deploy/grafana/kmemd.json" "$tmp/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
subst = {"$__rate_interval": "1m", "$__interval": "1m", "${datasource}": "x",
         "$job": "kmemd", "$instance": ".*", "$zone": ".*", "$cgroup": ".*", "$api": ".*"}
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
exprs = []
for p in panels(dash["panels"]):
    for t in p.get("targets", []):
        e = t["expr"]
        for k, v in subst.items():
            e = e.replace(k, v)
        assert "$" not in e, f"unsubstituted variable in {p['title']!r}: {e}"
        exprs.append((p["title"], e))
assert exprs, "no expressions in the dashboard"
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, e) in enumerate(exprs):
        f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} expressions from {sys.argv[1]}")
PY
promtool check rules "$tmp/dashboard-rules.yml"

if [[ "${1:-}" == "--no-cargo" ]]; then
  # The README's test command runs the two Rust tests below inside its own
  # `cargo test --workspace` (KMEM_REQUIRE_PROMETHEUS=1), which avoids a second build.
  exit 0
fi

echo "== kmemd scraped by Prometheus"
KMEM_REQUIRE_PROMETHEUS=1 cargo test -p kmem-server --test metrics_prometheus -- --nocapture

echo "== kmemd's node_exporter families against a real node_exporter"
KMEM_REQUIRE_PROMETHEUS=1 cargo test -p kmem-server --test metrics_node_exporter -- --nocapture
