#!/usr/bin/env bash
# The one command that runs every test (README: "Run every test").
# It installs what the tests need on a fresh machine: the rustfmt and clippy
# components, a Python virtualenv with grpcio for the interoperability test, and the
# Debian `prometheus` package (prometheus + promtool) for the metrics checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== test dependencies: tmux (kmemctl top in a terminal)"
if ! command -v tmux >/dev/null && [[ $(id -u) -eq 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
fi
echo "== test dependencies: Python virtualenv with grpcio"
bash scripts/python-tests.sh --setup-only
export KMEM_REQUIRE_PYTHON=1
echo "== test dependencies: prometheus, promtool, prometheus-node-exporter (Debian)"
bash scripts/prometheus-tests.sh --install-only
export KMEM_REQUIRE_PROMETHEUS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
echo "== doc tests"
cargo test --workspace --doc
echo "== Prometheus: promtool checks, rule tests, a real Prometheus scraping kmemd"
bash scripts/prometheus-tests.sh --no-cargo
