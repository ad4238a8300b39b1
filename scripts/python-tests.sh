#!/usr/bin/env bash
# Interoperability test with a gRPC client written elsewhere: Python grpcio.
# Makes (or reuses) a virtualenv at target/pyenv with tests/python/requirements.txt,
# builds kmemd, and runs tests/python/test_interop.py against the real binary.
# `--setup-only` stops after the virtualenv: the README's test command uses that and
# runs the test from `cargo test` (server/tests/python_interop.rs), so kmemd is not
# built a second time with another feature set.
# Needs python3 (3.11+, with venv and pip) and access to PyPI on the first run.
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

venv="$root/target/pyenv"
req="$root/tests/python/requirements.txt"
stamp="$venv/.requirements.sha256"
py="${PYTHON:-python3}"

# The stamp holds the hash of the requirements and of the interpreter version: when
# either changes, the venv is made anew.
want="$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
  && "$venv/bin/python" -c 'import grpc, grpc_tools, grpc_status, grpc_health, grpc_reflection' 2>/dev/null; then
  echo "== python venv: $venv (up to date)"
else
  echo "== python venv: installing $req into $venv"
  rm -rf "$venv"
  mkdir -p "$root/target"
  if ! "$py" -m venv "$venv"; then
    echo "python-tests: '$py -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q -r "$req"
  echo "$want" >"$stamp"
fi

if [[ "${1:-}" == "--setup-only" ]]; then
  exit 0
fi

echo "== cargo build -p kmem-server"
cargo build -q -p kmem-server
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export KMEMD_BIN="${KMEMD_BIN:-$target_dir/debug/kmemd}"

echo "== python grpcio interop test ($KMEMD_BIN)"
cd "$root/tests/python"
exec "$venv/bin/python" test_interop.py -v
