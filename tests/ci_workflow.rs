//! The GitHub Actions workflow cannot run here; check its schema and that it
//! stays in step with the Makefile.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const WORKFLOW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.github/workflows/ci.yml");

#[test]
fn workflow_matches_the_github_schema() {
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.github-workflows", WORKFLOW])
        .output()
        .expect("check-jsonschema is missing: run `make deps` (pip install check-jsonschema)");
    assert!(
        out.status.success(),
        "workflow schema check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflow_only_calls_existing_make_targets() {
    let workflow = std::fs::read_to_string(WORKFLOW).unwrap();
    let makefile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Makefile")).unwrap();
    let targets: BTreeSet<&str> = makefile
        .lines()
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .filter(|t| {
            !t.is_empty() && !t.contains(' ') && !t.starts_with('.') && !t.starts_with('\t')
        })
        .collect();
    let called = regex::Regex::new(r"make (?:-C \S+ )?([a-z][a-z-]*)").unwrap();
    let mut seen = 0;
    for cap in called.captures_iter(&workflow) {
        seen += 1;
        assert!(
            targets.contains(&cap[1]),
            "workflow calls `make {}`, which the Makefile lacks",
            &cap[1]
        );
    }
    assert!(seen >= 3, "expected the workflow to drive the Makefile");
    for must in [
        "99-kvm4all.rules",
        "--partition count:",
        "make test-matrix",
        "rulebench compare",
    ] {
        assert!(workflow.contains(must), "workflow lacks {must}");
    }
}
