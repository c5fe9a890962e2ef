//! Helpers shared by the correctness tests: fixtures and a booted guest
//! with the probe topology up.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Instant;

use rulebench::correctness::{topology_for, Session};
use rulebench::workload::Workload;

#[path = "../common/mod.rs"]
mod common;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.toml"))
}

pub fn fixture(name: &str) -> Workload {
    let path = fixture_path(name);
    Workload::from_file(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A freshly booted guest (no topology).
pub fn boot() -> rulebench::vm::Vm {
    common::boot()
}

/// Boot a guest and set up the namespaces every given workload needs.
pub fn session(workloads: &[&Workload]) -> Session {
    let started = Instant::now();
    let vm = common::boot();
    let booted = started.elapsed();
    let session = Session::start(vm, topology_for(workloads))
        .unwrap_or_else(|e| panic!("guest topology: {e}"));
    eprintln!(
        "guest booted in {:.1}s, topology up after {:.1}s",
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    session
}

/// `what` took how long (stderr, shown by nextest on failure or with
/// --no-capture).
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
    out
}
