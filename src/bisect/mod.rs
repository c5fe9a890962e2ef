//! One step of `git bisect run`: which tests decide, and what their
//! outcome means for git (0 good, 1 bad, 125 skip, 128 abort).
//!
//! A step that cannot tell kernels apart must never answer "good": a
//! filter that selects only host-side unit tests, or nothing, would let
//! the bisection converge on an arbitrary commit. So the selection is
//! listed first (`cargo nextest list`), and it must contain at least one
//! test of a binary that boots guests (the `vm` test group of
//! .config/nextest.toml); ignored tests run only when the filter selects
//! nothing else, i.e. when they are named. And a kernel that builds but
//! does not come up is a skip (125), not "bad": a bisection of a
//! netfilter regression must not be steered onto an unrelated boot break.

pub mod step;

use crate::budgets::Budget;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

pub const GOOD: i32 = 0;
pub const BAD: i32 = 1;
pub const SKIP: i32 = 125;
pub const ABORT: i32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error("no budget in {path} matches {pattern:?}; known budgets:\n  {}", known.join("\n  "))]
    NoBudget {
        pattern: String,
        path: String,
        known: Vec<String>,
    },
    #[error("parsing `cargo nextest list --message-format json`: {0}")]
    List(#[from] serde_json::Error),
    #[error("no test matches {filter:?} (ignored tests included)")]
    NothingSelected { filter: String },
    #[error(
        "{filter:?} selects no test that boots a guest ({} host-only: {}): it cannot tell kernels \
         apart. Name a guest test binary (e.g. --test differential) or a budget (--budget NAME)",
        tests.len(), tests.join(", ")
    )]
    NoGuestTest { filter: String, tests: Vec<String> },
}

/// The nextest filterset of `--test`: a filterset verbatim when it has
/// any operator or predicate, else a bare word: the test binary of that
/// name (`differential` is `tests/differential.rs`, not also the host-only
/// unit tests of `correctness::differential`, nor every test whose name
/// contains the word), or else a part of test names. `binaries` are the
/// test binaries' names: nextest refuses a `binary()` that matches none.
pub fn filterset(test: &str, binaries: &BTreeSet<String>) -> String {
    let is_expression = test
        .chars()
        .any(|c| matches!(c, '(' | ')' | '&' | '|' | '!' | ' '));
    if is_expression {
        test.to_string()
    } else if binaries.contains(test) {
        format!("binary(={test})")
    } else {
        format!("test(/{test}/)")
    }
}

/// Names of the integration-test binaries: the `.rs` files of `tests/`.
pub fn test_binaries(tests_dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(tests_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect()
}

/// Budgets whose name is `pattern`, or else contains it (ignoring case):
/// budget names are sentences, so a step names a distinctive part.
pub fn matching_budgets<'a>(all: &'a [Budget], pattern: &str) -> Vec<&'a Budget> {
    let exact: Vec<&Budget> = all.iter().filter(|b| b.name == pattern).collect();
    if !exact.is_empty() {
        return exact;
    }
    let needle = pattern.to_lowercase();
    all.iter()
        .filter(|b| b.name.to_lowercase().contains(&needle))
        .collect()
}

/// What `--budget PATTERN` runs: the filterset of the budget tests that
/// check the matched budgets, and the value of [`budgets::SELECT_ENV`]
/// that restricts them to those budgets.
pub fn budget_selection(
    all: &[Budget],
    pattern: &str,
    path: &str,
) -> Result<(String, String), BisectError> {
    let chosen = matching_budgets(all, pattern);
    if chosen.is_empty() {
        return Err(BisectError::NoBudget {
            pattern: pattern.to_string(),
            path: path.to_string(),
            known: all.iter().map(|b| b.name.clone()).collect(),
        });
    }
    let functions: BTreeSet<&str> = chosen.iter().map(|b| b.test_function()).collect();
    let tests = functions
        .iter()
        .map(|f| format!("test(={f})"))
        .collect::<Vec<_>>()
        .join(" | ");
    let names = chosen
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Ok((format!("binary(=budgets) & ({tests})"), names))
}

/// A test of the listed selection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub binary_id: String,
    pub name: String,
    pub ignored: bool,
}

impl Listed {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.binary_id, self.name)
    }
}

#[derive(Deserialize)]
struct ListOutput {
    #[serde(rename = "rust-suites")]
    rust_suites: BTreeMap<String, Suite>,
}

#[derive(Deserialize)]
struct Suite {
    #[serde(rename = "binary-id")]
    binary_id: String,
    testcases: BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    ignored: bool,
    #[serde(rename = "filter-match")]
    filter_match: FilterMatch,
}

#[derive(Deserialize)]
struct FilterMatch {
    status: String,
}

/// The tests a `cargo nextest list --message-format json --run-ignored all
/// -E FILTER` output selects.
pub fn parse_list(json: &str) -> Result<Vec<Listed>, BisectError> {
    let out: ListOutput = serde_json::from_str(json)?;
    let mut listed = Vec::new();
    for suite in out.rust_suites.into_values() {
        for (name, case) in suite.testcases {
            if case.filter_match.status == "matches" {
                listed.push(Listed {
                    binary_id: suite.binary_id.clone(),
                    name,
                    ignored: case.ignored,
                });
            }
        }
    }
    listed.sort();
    Ok(listed)
}

/// Binary ids of the `vm` test group: the binaries whose tests boot
/// guests (.config/nextest.toml lists them as `binary_id(rulebench::X)`).
pub fn guest_binaries(nextest_toml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_vm_override = false;
    let mut filter = String::new();
    for line in nextest_toml.lines() {
        let line = line.trim();
        if line.starts_with("[[") || line.starts_with('[') {
            in_vm_override = false;
            filter.clear();
        }
        if let Some(value) = line.strip_prefix("filter") {
            filter = value.to_string();
        }
        if line.replace(' ', "") == "test-group=\"vm\"" {
            in_vm_override = true;
        }
        if in_vm_override {
            let mut rest = filter.as_str();
            while let Some(start) = rest.find("binary_id(") {
                let after = &rest[start + "binary_id(".len()..];
                let Some(end) = after.find(')') else { break };
                out.insert(after[..end].to_string());
                rest = &after[end..];
            }
        }
    }
    out
}

/// Which of the listed tests a step runs, and with which
/// `--run-ignored`: the non-ignored ones; the ignored ones only when
/// nothing else matches (the filter named them).
pub fn choose(filter: &str, listed: &[Listed]) -> Result<(Vec<Listed>, &'static str), BisectError> {
    let default: Vec<Listed> = listed.iter().filter(|t| !t.ignored).cloned().collect();
    if !default.is_empty() {
        return Ok((default, "default"));
    }
    if listed.is_empty() {
        return Err(BisectError::NothingSelected {
            filter: filter.to_string(),
        });
    }
    Ok((listed.to_vec(), "only"))
}

/// The selection must boot a guest, or the step cannot tell kernels apart.
pub fn require_guest(
    filter: &str,
    chosen: &[Listed],
    guest: &BTreeSet<String>,
) -> Result<(), BisectError> {
    if chosen.iter().any(|t| guest.contains(&t.binary_id)) {
        return Ok(());
    }
    Err(BisectError::NoGuestTest {
        filter: filter.to_string(),
        tests: chosen.iter().map(Listed::full_name).collect(),
    })
}

/// `cargo nextest run` arguments of a step.
pub fn run_args(filter: &str, run_ignored: &str) -> Vec<String> {
    [
        "nextest",
        "run",
        "--workspace",
        "--no-fail-fast",
        "--run-ignored",
        run_ignored,
        "-E",
        filter,
    ]
    .map(String::from)
    .to_vec()
}

/// `cargo nextest list` arguments of a step's selection.
pub fn list_args(filter: &str) -> Vec<String> {
    [
        "nextest",
        "list",
        "--workspace",
        "--message-format",
        "json",
        "--run-ignored",
        "all",
        "-E",
        filter,
    ]
    .map(String::from)
    .to_vec()
}

/// The verdict of a finished `cargo nextest run`: nextest's exit 4 means
/// no test ran — a usage error, never a verdict.
pub fn verdict(exit_code: Option<i32>) -> i32 {
    match exit_code {
        Some(0) => GOOD,
        Some(4) => ABORT,
        Some(_) => BAD,
        // Killed by a signal (a user's ^C, an OOM kill): not a verdict.
        None => ABORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_word_is_a_binary_or_a_test_name_part_and_an_expression_is_verbatim() {
        let binaries = test_binaries(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests"
        )));
        assert!(binaries.contains("differential"), "{binaries:?}");
        assert_eq!(
            filterset("differential", &binaries),
            "binary(=differential)"
        );
        assert_eq!(
            filterset("kernel_is_5_10", &binaries),
            "test(/kernel_is_5_10/)"
        );
        assert_eq!(
            filterset("test(=kernel_is_5_10)", &binaries),
            "test(=kernel_is_5_10)"
        );
        assert_eq!(
            filterset("binary(dumps) & test(nftables)", &binaries),
            "binary(dumps) & test(nftables)"
        );
    }

    fn listed(binary: &str, name: &str, ignored: bool) -> Listed {
        Listed {
            binary_id: binary.into(),
            name: name.into(),
            ignored,
        }
    }

    #[test]
    fn ignored_tests_run_only_when_nothing_else_matches() {
        let both = [
            listed("rulebench::bisect", "kernel_is_5_10", true),
            listed("rulebench::boot", "boots", false),
        ];
        let (chosen, mode) = choose("f", &both).unwrap();
        assert_eq!(mode, "default");
        assert_eq!(chosen, vec![both[1].clone()]);
        let (chosen, mode) = choose("f", &both[..1]).unwrap();
        assert_eq!(mode, "only");
        assert_eq!(chosen.len(), 1);
        assert!(matches!(
            choose("f", &[]),
            Err(BisectError::NothingSelected { .. })
        ));
    }

    #[test]
    fn a_selection_of_host_only_tests_is_refused() {
        let guest = guest_binaries(
            "[[profile.default.overrides]]\nfilter = \"binary_id(rulebench::boot) | binary_id(rulebench::differential)\"\ntest-group = \"vm\"\n\n[[profile.default.overrides]]\nfilter = \"binary_id(rulebench::other)\"\nslow-timeout = 1\n",
        );
        assert_eq!(
            guest,
            BTreeSet::from(["rulebench::boot".into(), "rulebench::differential".into()])
        );
        let unit = [listed(
            "rulebench",
            "correctness::differential::tests::x",
            false,
        )];
        let err = require_guest("differential", &unit, &guest).unwrap_err();
        assert!(
            err.to_string().contains("cannot tell kernels apart"),
            "{err}"
        );
        let vm = [listed("rulebench::differential", "services_agree", false)];
        require_guest("differential", &vm, &guest).unwrap();
    }

    #[test]
    fn the_project_config_names_guest_binaries() {
        let toml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.config/nextest.toml"))
                .unwrap();
        let guest = guest_binaries(&toml);
        for b in [
            "rulebench::differential",
            "rulebench::budgets",
            "rulebench::boot",
        ] {
            assert!(guest.contains(b), "{b} not in {guest:?}");
        }
        assert!(!guest.contains("rulebench"), "the unit tests boot no guest");
    }

    #[test]
    fn list_output_keeps_matching_tests() {
        let json = r#"{"rust-build-meta":{},"test-count":3,"rust-suites":{
          "rulebench::bisect":{"binary-id":"rulebench::bisect","testcases":{
            "kernel_is_5_10":{"kind":"test","ignored":true,"filter-match":{"status":"matches"}},
            "other":{"kind":"test","ignored":false,"filter-match":{"status":"mismatch","reason":"expression"}}}}}}"#;
        assert_eq!(
            parse_list(json).unwrap(),
            vec![listed("rulebench::bisect", "kernel_is_5_10", true)]
        );
    }

    #[test]
    fn budgets_are_chosen_by_name_or_a_part_of_it() {
        let all = crate::budgets::load(&crate::budgets::default_path()).unwrap();
        let (filter, names) = budget_selection(&all, "nftables add-one", "budgets.toml").unwrap();
        assert_eq!(filter, "binary(=budgets) & (test(=control_budgets_hold))");
        assert!(names.starts_with("nftables add-one grows"), "{names}");
        let err = budget_selection(&all, "nftables_add_one", "budgets.toml").unwrap_err();
        assert!(err.to_string().contains("known budgets"), "{err}");
    }

    #[test]
    fn verdicts_keep_gits_contract() {
        assert_eq!(verdict(Some(0)), GOOD);
        assert_eq!(verdict(Some(100)), BAD);
        assert_eq!(verdict(Some(4)), ABORT);
        assert_eq!(verdict(None), ABORT);
    }
}
