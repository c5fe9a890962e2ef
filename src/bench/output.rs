//! Where a run writes: results JSON and CSV (rewritten after every job,
//! so a long run interrupted late still leaves data) and the report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::results::Results;

use super::meta::unix_now;

pub const RESULTS_JSON: &str = "results.json";
pub const RESULTS_CSV: &str = "results.csv";
/// Written by `crate::report::write` into the same directory.
pub const REPORT_MD: &str = "report.md";

/// `bench-results/<YYYYmmdd-HHMMSS>` (local time, from `date`), or the
/// Unix time when `date` is unavailable.
pub fn default_out_dir() -> PathBuf {
    let stamp = std::process::Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| unix_now().to_string());
    PathBuf::from("bench-results").join(stamp)
}

pub fn write_results(out: &Path, results: &Results) -> Result<()> {
    let json = out.join(RESULTS_JSON);
    std::fs::write(&json, results.to_json())
        .with_context(|| format!("writing {}", json.display()))?;
    let csv = out.join(RESULTS_CSV);
    std::fs::write(&csv, results.to_csv()).with_context(|| format!("writing {}", csv.display()))?;
    Ok(())
}
