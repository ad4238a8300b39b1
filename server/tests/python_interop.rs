//! The Python grpcio interoperability test (tests/python/test_interop.py) against the
//! `kmemd` binary this build made. Its virtualenv comes from `scripts/python-tests.sh
//! --setup-only` (the README's test command runs that first); without it the test is
//! skipped, unless KMEM_REQUIRE_PYTHON=1 says it must run.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn python_grpcio_client_interoperates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("KMEM_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/pyenv"));
    let python = venv.join("bin/python");
    let required = std::env::var("KMEM_REQUIRE_PYTHON").as_deref() == Ok("1");
    if !python.exists() {
        assert!(
            !required,
            "no Python venv at {}: run scripts/python-tests.sh --setup-only",
            venv.display()
        );
        eprintln!(
            "skipped: no Python venv at {} (scripts/python-tests.sh --setup-only)",
            venv.display()
        );
        return;
    }
    let out = Command::new(&python)
        .arg("test_interop.py")
        .arg("-v")
        .current_dir(root.join("tests/python"))
        .env("KMEMD_BIN", env!("CARGO_BIN_EXE_kmemd"))
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python interop test failed:\n{text}");
    assert!(text.contains("passed, 0 failed"), "{text}");
}

/// deploy/ (compose, Kubernetes, Grafana provisioning) parses and agrees with kmemd's
/// ports and health names (tests/python/test_deploy.py).
#[test]
fn deploy_files_agree_with_kmemd() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("KMEM_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/pyenv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        assert!(
            std::env::var("KMEM_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "no Python venv"
        );
        eprintln!("skipped: no Python venv at {}", venv.display());
        return;
    }
    let out = Command::new(&python)
        .arg("test_deploy.py")
        .current_dir(root.join("tests/python"))
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("passed, 0 failed"),
        "{text}"
    );
}
