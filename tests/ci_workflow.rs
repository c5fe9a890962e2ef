//! The GitHub Actions workflow cannot run here: check it against GitHub's
//! schema (check-jsonschema, when `make deps` could install it), its
//! structure (always, parsed with serde_yaml), and the rules it keeps with
//! the Makefile and the image builder (docs/ci.md says why each holds).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::{Mapping, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WORKFLOW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.github/workflows/ci.yml");
/// Where `make deps` puts check-jsonschema when it is not on PATH.
const VENV_TOOL: &str = "target/venv/bin/check-jsonschema";
/// Make targets the workflow may call before the Makefile defines them:
/// `gate` (the bench job's A/B regression gate) is being written alongside.
/// Once defined it is checked like every other target.
const PENDING_TARGETS: [&str; 1] = ["gate"];

fn workflow_text() -> String {
    std::fs::read_to_string(WORKFLOW).unwrap_or_else(|e| panic!("reading {WORKFLOW}: {e}"))
}

fn workflow() -> Value {
    serde_yaml::from_str(&workflow_text()).unwrap_or_else(|e| panic!("{WORKFLOW} is no YAML: {e}"))
}

fn jobs(workflow: &Value) -> &Mapping {
    workflow
        .get("jobs")
        .and_then(Value::as_mapping)
        .expect("workflow has no `jobs` mapping")
}

fn job_name(key: &Value) -> &str {
    key.as_str().expect("job ids are strings")
}

fn steps(job: &Value) -> &[Value] {
    job.get("steps")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn run_of(step: &Value) -> Option<&str> {
    step.get("run").and_then(Value::as_str)
}

fn uses_of(step: &Value) -> Option<&str> {
    step.get("uses").and_then(Value::as_str)
}

fn makefile_targets() -> BTreeSet<String> {
    let makefile = std::fs::read_to_string(Path::new(ROOT).join("Makefile")).unwrap();
    makefile
        .lines()
        .filter(|l| !l.starts_with('\t') && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(_, rest)| !rest.starts_with('='))
        .map(|(t, _)| t.trim())
        .filter(|t| !t.is_empty() && !t.contains(' ') && !t.starts_with('.'))
        .map(str::to_string)
        .collect()
}

/// check-jsonschema on PATH, else in the venv `make deps` makes.
fn find_check_jsonschema() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("check-jsonschema"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(Path::new(ROOT).join(VENV_TOOL)).filter(|p| p.is_file()))
}

#[test]
fn workflow_matches_the_github_schema() {
    let Some(tool) = find_check_jsonschema() else {
        eprintln!(
            "SKIPPED: workflow_matches_the_github_schema: check-jsonschema is neither on PATH \
             nor at {VENV_TOOL} (`make deps` installs it there from PyPI; that failed or was \
             not run). Checking the workflow's structure without GitHub's schema instead."
        );
        check_structure(&workflow());
        return;
    };
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.github-workflows", WORKFLOW])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        out.status.success(),
        "workflow schema check ({}) failed:\n{}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the schema would catch first, checked without it.
fn check_structure(workflow: &Value) {
    for key in ["name", "on", "jobs"] {
        assert!(
            workflow.get(key).is_some(),
            "workflow lacks top-level `{key}`"
        );
    }
    let jobs = jobs(workflow);
    assert!(!jobs.is_empty(), "workflow has no jobs");
    for (id, job) in jobs {
        let id = job_name(id);
        assert!(job.get("runs-on").is_some(), "job {id} lacks runs-on");
        if let Some(needs) = job.get("needs") {
            let needed: Vec<&str> = match needs {
                Value::String(s) => vec![s.as_str()],
                Value::Sequence(s) => s.iter().filter_map(Value::as_str).collect(),
                other => panic!("job {id}: needs is {other:?}"),
            };
            for n in needed {
                assert!(jobs.contains_key(n), "job {id} needs unknown job {n}");
            }
        }
        let steps = steps(job);
        assert!(!steps.is_empty(), "job {id} has no steps");
        for (i, step) in steps.iter().enumerate() {
            assert!(
                run_of(step).is_some() != uses_of(step).is_some(),
                "job {id} step {i}: exactly one of `run` and `uses`"
            );
        }
    }
}

#[test]
fn workflow_structure_is_sound() {
    check_structure(&workflow());
}

#[test]
fn every_job_has_a_timeout() {
    for (id, job) in jobs(&workflow()) {
        let minutes = job.get("timeout-minutes").and_then(Value::as_u64);
        assert!(
            matches!(minutes, Some(1..=360)),
            "job {} needs timeout-minutes (1-360), has {minutes:?}",
            job_name(id)
        );
    }
}

/// The image builder takes its mirror from the host's apt configuration
/// (src/image/mirror.rs): only a Debian host serves the bullseye, bookworm
/// and trixie suites the images pin. So every job runs in a Debian-based
/// container, with the project's Rust, and as root (no sudo, which reset
/// PATH and lost cargo).
#[test]
fn every_job_runs_in_a_debian_container_with_the_projects_rust() {
    let cargo_toml = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let rust_version = regex::Regex::new(r#"(?m)^rust-version = "([0-9.]+)""#)
        .unwrap()
        .captures(&cargo_toml)
        .expect("Cargo.toml states rust-version")[1]
        .to_string();
    let debian_rust =
        regex::Regex::new(r"^rust:([0-9.]+)-(bullseye|bookworm|trixie)(-slim)?$").unwrap();
    for (id, job) in jobs(&workflow()) {
        let id = job_name(id);
        let image = job
            .get("container")
            .and_then(|c| c.get("image").or(Some(c)))
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!("job {id} runs on the bare runner (its apt sources are Ubuntu's)")
            });
        let caps = debian_rust.captures(image).unwrap_or_else(|| {
            panic!("job {id}: container {image} is not a Debian-based rust:<version>-<suite> image")
        });
        assert_eq!(
            &caps[1], rust_version,
            "job {id}: container {image} is not the Rust of Cargo.toml's rust-version"
        );
        for step in steps(job) {
            if let Some(run) = run_of(step) {
                assert!(
                    !run.split_whitespace().any(|w| w == "sudo"),
                    "job {id}: `{run}` uses sudo (the container runs as root; sudo resets PATH)"
                );
            }
        }
    }
}

/// Jobs that boot guests get the runner's KVM passed into the container.
#[test]
fn guest_jobs_get_kvm() {
    let workflow = workflow();
    let boots =
        regex::Regex::new(r"cargo nextest run|make (test|test-matrix|gate|bench)\b").unwrap();
    let mut seen = 0;
    for (id, job) in jobs(&workflow) {
        if !steps(job)
            .iter()
            .filter_map(run_of)
            .any(|r| boots.is_match(r))
        {
            continue;
        }
        seen += 1;
        let options = job
            .get("container")
            .and_then(|c| c.get("options"))
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(
            options.contains("--device /dev/kvm"),
            "job {} boots guests but its container lacks `--device /dev/kvm` (options: {options:?})",
            job_name(id)
        );
    }
    assert!(
        seen >= 3,
        "expected test, kernel-matrix and bench to boot guests"
    );
}

/// nextest comes prebuilt, before anything that would compile it (`make
/// deps` runs `cargo install` only when it is missing), at one version in
/// every job (the archive and its runs must agree).
#[test]
fn nextest_is_installed_prebuilt() {
    let workflow = workflow();
    let needs_nextest = regex::Regex::new(r"cargo nextest|make [a-z]").unwrap();
    let mut versions = BTreeSet::new();
    for (id, job) in jobs(&workflow) {
        let id = job_name(id);
        let mut installed = false;
        for step in steps(job) {
            if uses_of(step).is_some_and(|u| u.starts_with("taiki-e/install-action@")) {
                let tool = step
                    .get("with")
                    .and_then(|w| w.get("tool"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(version) = tool.strip_prefix("cargo-nextest") {
                    versions.insert(version.to_string());
                    installed = true;
                }
            }
            if let Some(run) = run_of(step) {
                assert!(
                    !run.contains("cargo install"),
                    "job {id}: `{run}` compiles a tool from source"
                );
                assert!(
                    installed || !needs_nextest.is_match(run),
                    "job {id}: `{run}` runs before cargo-nextest is installed prebuilt"
                );
            }
        }
    }
    assert_eq!(
        versions.len(),
        1,
        "every job installs the same pinned cargo-nextest (@version): {versions:?}"
    );
    assert!(
        versions.iter().all(|v| v.starts_with('@')),
        "pin cargo-nextest's version: {versions:?}"
    );
}

#[test]
fn workflow_only_calls_existing_make_targets() {
    let workflow = workflow();
    let targets = makefile_targets();
    let called = regex::Regex::new(r"\bmake (?:-C \S+ )?([a-z][a-z-]*)").unwrap();
    let mut seen = BTreeSet::new();
    for (_, job) in jobs(&workflow) {
        for run in steps(job).iter().filter_map(run_of) {
            for cap in called.captures_iter(run) {
                seen.insert(cap[1].to_string());
            }
        }
    }
    for target in &seen {
        if targets.contains(target) {
            continue;
        }
        assert!(
            PENDING_TARGETS.contains(&target.as_str()),
            "workflow calls `make {target}`, which the Makefile lacks"
        );
        eprintln!("PENDING: the workflow calls `make {target}`, not yet in the Makefile");
    }
    for must in ["deps", "test-matrix", "gate"] {
        assert!(seen.contains(must), "workflow never calls `make {must}`");
    }
}

fn job<'a>(workflow: &'a Value, id: &str) -> &'a Value {
    jobs(workflow)
        .get(id)
        .unwrap_or_else(|| panic!("workflow lacks job {id}"))
}

fn runs(job: &Value) -> String {
    steps(job)
        .iter()
        .filter_map(run_of)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn jobs_do_what_docs_ci_says() {
    let workflow = workflow();
    let test = runs(job(&workflow, "test"));
    assert!(test.contains("--archive-file") && test.contains("--partition count:"));
    assert!(runs(job(&workflow, "kernel-matrix")).contains("make test-matrix"));
    let bench = job(&workflow, "bench");
    assert_eq!(
        bench.get("if").and_then(Value::as_str),
        Some("github.event_name == 'pull_request'")
    );
    assert_eq!(
        bench.get("timeout-minutes").and_then(Value::as_u64),
        Some(60)
    );
    let bench_runs = runs(bench);
    assert!(bench_runs.contains("make gate"));
    assert!(
        bench_runs.contains("target/gate/summary.md")
            && bench_runs.contains("$GITHUB_STEP_SUMMARY"),
        "the bench job's summary comes from the gate's target/gate/summary.md"
    );
    let env = workflow.get("env").expect("workflow env");
    assert_eq!(
        env.get("RULEBENCH_ACCEL").and_then(Value::as_str),
        Some("kvm")
    );

    // The header comment and docs/ci.md name every job.
    let text = workflow_text();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let docs = std::fs::read_to_string(Path::new(ROOT).join("docs/ci.md")).unwrap();
    for (id, _) in jobs(&workflow) {
        let id = job_name(id);
        assert!(
            header.contains(id),
            "the workflow's header comment omits job {id}"
        );
        assert!(
            docs.contains(&format!("`{id}`")),
            "docs/ci.md omits job `{id}`"
        );
    }
}
