//! One bench run's results: schema-versioned JSON with the run's context
//! (image, kernel, accel, host, QEMU, rulebench revision) and every sample,
//! plus a flat CSV export. `compare` and `report` read only this.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Bumped on any incompatible change. 1 was the boot-time-only
/// `foundation.json`.
pub const SCHEMA: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    pub meta: RunMeta,
    pub samples: Vec<Sample>,
    /// Things that went wrong or were skipped, in words (kept in the file so
    /// a report never silently omits a figure).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where the per-packet kernel time goes: every traced (function,
    /// hook) of the hook-time phases (absent in files written before).
    #[serde(default)]
    pub hooks: Vec<HookRow>,
    /// Where a control-plane command's time went, sampled in the guest
    /// kernel (`bench --profile`; absent in files written before).
    #[serde(default)]
    pub profiles: Vec<ProfileRow>,
}

/// One profiled control-plane operation (a full load or one update) at
/// one (family, technology, N): timer samples on every guest CPU while
/// its commands ran, split by who was interrupted, and the kernel
/// functions the commands were in. A sample is one tick of one CPU: the
/// shares are of CPU time, the counts are not times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    pub family: String,
    pub tech: String,
    pub n: u64,
    /// The control-plane figure the operation belongs to
    /// (`services.full-load`, `services.add-one`, …).
    pub figure: String,
    /// primitive / kube-proxy for updates, empty for full loads.
    #[serde(default)]
    pub update_mode: String,
    /// Guest time of the profiled commands.
    pub elapsed_ns: u64,
    pub frequency_hz: u64,
    pub cpus: u32,
    pub samples: u64,
    pub idle: u64,
    pub command_user: u64,
    pub command_kernel: u64,
    pub other_user: u64,
    pub other_kernel: u64,
    /// Samples lost to a full sample map.
    pub dropped: u64,
    /// The commands' kernel samples by function, most first.
    pub command_functions: Vec<ProfiledFunction>,
    /// Other tasks' (kworkers, RCU, softirq threads) kernel samples.
    pub other_functions: Vec<ProfiledFunction>,
    /// Other tasks by name, most samples first.
    pub other_tasks: Vec<ProfiledFunction>,
}

/// A kernel function (or, in `other_tasks`, a task name) and its samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfiledFunction {
    pub name: String,
    /// The module it lives in; empty for the kernel image and for tasks.
    #[serde(default)]
    pub module: String,
    pub samples: u64,
}

impl ProfileRow {
    /// Share of the commands' own samples spent in the kernel.
    pub fn command_kernel_share(&self) -> Option<f64> {
        let own = self.command_user + self.command_kernel;
        (own > 0).then(|| self.command_kernel as f64 / own as f64)
    }
}

/// One traced kernel function at one netfilter hook, in one hook-time
/// phase of one repeat: the median ns of its calls and how many calls
/// each sent packet caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRow {
    pub family: String,
    pub tech: String,
    pub n: u64,
    pub repeat: u32,
    /// first / middle / last / miss (services), match (firewall).
    pub position: String,
    pub function: String,
    pub hook: String,
    pub median_ns: f64,
    pub calls_per_packet: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunMeta {
    pub image: String,
    pub image_sha256: String,
    pub kernel: String,
    /// "kvm" or "tcg".
    pub accel: String,
    pub host_cpu: String,
    pub qemu_version: String,
    pub rulebench_revision: String,
    pub started_unix: u64,
    pub duration_seconds: f64,
    pub sizes: Vec<u64>,
    pub techs: Vec<String>,
    pub families: Vec<String>,
    pub repeats: u32,
    /// Guest seconds the full loads of one job could take before they
    /// stopped repeating; absent in files written before the budget.
    #[serde(default)]
    pub full_load_budget_seconds: Option<u64>,
    pub guest_vcpus: u32,
    pub guest_memory_mb: u32,
    /// Guests measuring in parallel (one family per guest); 1 in files
    /// written before the field existed.
    #[serde(default = "one")]
    pub parallel_guests: u32,
    /// Phases that ran while no other guest of the run measured anything
    /// (an exclusive lock between lanes); others may overlap.
    #[serde(default)]
    pub exclusive_phases: Vec<String>,
    /// The image's Debian userland suite (the kernel may come from another).
    #[serde(default)]
    pub userland: String,
    /// `nft --version` and `iptables --version` in the guest ("" where
    /// absent or in files written before).
    #[serde(default)]
    pub nft_version: String,
    #[serde(default)]
    pub iptables_version: String,
    /// The job phases run (`--phases`); empty in files written before,
    /// which ran every phase.
    #[serde(default)]
    pub phases: Vec<String>,
    /// Minutes a job's projected time may take before it is skipped.
    #[serde(default)]
    pub job_budget_minutes: Option<f64>,
    /// Host time of every job that ran, the base of the projections.
    #[serde(default)]
    pub jobs: Vec<JobTime>,
    /// Jobs not run because their projected time exceeded the budget.
    #[serde(default)]
    pub skipped_jobs: Vec<SkippedJob>,
}

/// How long one job took on the host: its phases' time, without waits
/// for another lane's exclusive phase. `failed` jobs do not project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTime {
    pub family: String,
    pub tech: String,
    pub n: u64,
    pub seconds: f64,
    #[serde(default)]
    pub failed: bool,
}

/// A job the run did not measure: its time, projected from the same
/// technology's smaller jobs, exceeded the job budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedJob {
    pub family: String,
    pub tech: String,
    pub n: u64,
    pub projected_seconds: f64,
    pub budget_seconds: f64,
    /// The model and parameters the projection came from, in words.
    pub fit: String,
    /// The measured jobs it was fitted to.
    pub from: Vec<JobTime>,
    /// "skipped: projected X min > budget Y min".
    pub reason: String,
}

fn one() -> u32 {
    1
}

/// One measured value. `position` is where in the ruleset an update
/// happened (first / middle / last), empty for other figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub figure: String,
    pub tech: String,
    pub n: u64,
    pub repeat: u32,
    #[serde(default)]
    pub position: String,
    pub value: f64,
    pub unit: String,
    /// How an update figure's change was sent: "primitive" or
    /// "kube-proxy" (`tech::UpdateMode`); empty for figures without an
    /// update and in files written before the field.
    #[serde(default)]
    pub update_mode: String,
}

/// Samples of one figure for one technology at one size and update
/// position: an add at the first, middle and last place are three
/// series (a linear layout pays differently for each), never pooled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub figure: String,
    pub tech: String,
    pub n: u64,
    /// first / middle / last, or empty for figures without a position.
    pub position: String,
    /// primitive / kube-proxy for update figures, empty otherwise.
    pub update_mode: String,
}

impl SeriesKey {
    pub fn of(sample: &Sample) -> SeriesKey {
        SeriesKey {
            figure: sample.figure.clone(),
            tech: sample.tech.clone(),
            n: sample.n,
            position: sample.position.clone(),
            update_mode: sample.update_mode.clone(),
        }
    }
}

/// The series label a report or gate shows for a technology's samples:
/// the technology, with " (kube-proxy)" for kube-proxy-mode updates
/// (primitive and mode-less samples keep the bare name).
pub fn tech_label(tech: &str, update_mode: &str) -> String {
    // Idempotent: the report labels its samples' tech once already.
    if update_mode == "kube-proxy" && !tech.ends_with(" (kube-proxy)") {
        format!("{tech} (kube-proxy)")
    } else {
        tech.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading results {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("results {path} are not valid JSON of this schema: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("results {path} have schema {found}, this rulebench reads schema {SCHEMA}")]
    Schema { path: String, found: u32 },
}

impl Results {
    pub fn load(path: &Path) -> Result<Results, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    pub fn from_json(text: &str, origin: &str) -> Result<Results, ResultsError> {
        // Check the version before the shape so an old file gets the clear error.
        let probe: serde_json::Value =
            serde_json::from_str(text).map_err(|source| ResultsError::Parse {
                path: origin.to_string(),
                source,
            })?;
        let found = probe.get("schema").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if found != SCHEMA {
            return Err(ResultsError::Schema {
                path: origin.to_string(),
                found,
            });
        }
        serde_json::from_value(probe).map_err(|source| ResultsError::Parse {
            path: origin.to_string(),
            source,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results serialize")
    }

    /// All samples grouped by (figure, tech, n, position), values in file
    /// order.
    pub fn series(&self) -> BTreeMap<SeriesKey, Vec<f64>> {
        let mut out: BTreeMap<SeriesKey, Vec<f64>> = BTreeMap::new();
        for s in &self.samples {
            out.entry(SeriesKey::of(s)).or_default().push(s.value);
        }
        out
    }

    /// The samples of technology `from` relabelled as `to`, replacing any
    /// `to` samples: compares a variant (e.g. a deliberately degraded
    /// renderer) against the reference it stands in for.
    pub fn with_tech_as(&self, from: &str, to: &str) -> Results {
        let mut out = self.clone();
        out.samples.retain(|s| s.tech != to);
        for s in &mut out.samples {
            if s.tech == from {
                s.tech = to.to_string();
            }
        }
        out
    }

    /// Flat CSV, one sample per line.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("figure,tech,n,repeat,position,value,unit,update_mode\n");
        for s in &self.samples {
            out += &format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&s.figure),
                csv_field(&s.tech),
                s.n,
                s.repeat,
                csv_field(&s.position),
                s.value,
                csv_field(&s.unit),
                csv_field(&s.update_mode)
            );
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn small() -> Results {
        Results {
            schema: SCHEMA,
            meta: RunMeta {
                image: "bullseye-5.10".into(),
                accel: "tcg".into(),
                sizes: vec![0, 100],
                repeats: 2,
                ..RunMeta::default()
            },
            samples: vec![
                Sample {
                    figure: "services.add-one".into(),
                    tech: "nftables".into(),
                    n: 100,
                    repeat: 0,
                    position: "first".into(),
                    value: 12.5,
                    unit: "ms".into(),
                    update_mode: "primitive".into(),
                },
                Sample {
                    figure: "services.add-one".into(),
                    tech: "nftables".into(),
                    n: 100,
                    repeat: 1,
                    position: "last, really".into(),
                    value: 13.0,
                    unit: "ms".into(),
                    update_mode: "primitive".into(),
                },
            ],
            notes: vec![],
            hooks: vec![],
            profiles: vec![],
        }
    }

    #[test]
    fn json_round_trip() {
        let r = small();
        let back = Results::from_json(&r.to_json(), "test").unwrap();
        assert_eq!(back, r);
        let series = back.series();
        assert_eq!(series[&key("services.add-one", 100, "first")], vec![12.5]);
        assert_eq!(
            series[&key("services.add-one", 100, "last, really")],
            vec![13.0]
        );
    }

    fn key(figure: &str, n: u64, position: &str) -> SeriesKey {
        SeriesKey {
            figure: figure.into(),
            tech: "nftables".into(),
            n,
            position: position.into(),
            update_mode: "primitive".into(),
        }
    }

    #[test]
    fn the_update_position_is_part_of_the_series() {
        let mut r = small();
        for (repeat, position) in ["first", "middle", "first"].into_iter().enumerate() {
            let mut s = r.samples[0].clone();
            s.repeat = repeat as u32 + 2;
            s.position = position.into();
            s.value = 20.0 + repeat as f64;
            r.samples.push(s);
        }
        let series = r.series();
        let positions: Vec<&str> = series.keys().map(|k| k.position.as_str()).collect();
        assert_eq!(positions, ["first", "last, really", "middle"]);
        assert_eq!(
            series[&key("services.add-one", 100, "first")],
            vec![12.5, 20.0, 22.0]
        );
        assert_eq!(series[&key("services.add-one", 100, "middle")], vec![21.0]);
    }

    #[test]
    fn the_update_mode_is_part_of_the_series_and_may_be_absent() {
        let mut r = small();
        let mut kp = r.samples[0].clone();
        kp.update_mode = "kube-proxy".into();
        kp.value = 40.0;
        r.samples.push(kp);
        let series = r.series();
        assert_eq!(series[&key("services.add-one", 100, "first")], vec![12.5]);
        let mut k = key("services.add-one", 100, "first");
        k.update_mode = "kube-proxy".into();
        assert_eq!(series[&k], vec![40.0]);
        assert_eq!(tech_label("ipvs", "kube-proxy"), "ipvs (kube-proxy)");
        assert_eq!(tech_label("ipvs", "primitive"), "ipvs");
        // A file written before the field loads, the samples mode-less.
        let mut old: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for s in old["samples"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("update_mode");
        }
        let old = old.to_string();
        let back = Results::from_json(&old, "old.json").unwrap();
        assert!(
            back.samples.iter().all(|s| s.update_mode.is_empty()),
            "{old}"
        );
    }

    #[test]
    fn wrong_schema_is_named() {
        let err = Results::from_json(r#"{"schema": 1, "image": "x"}"#, "old.json").unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn csv_quotes_commas() {
        let csv = small().to_csv();
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.contains("\"last, really\""), "{csv}");
        assert!(csv.starts_with("figure,tech,n,repeat,position,value,unit,update_mode\n"));
    }

    #[test]
    fn a_variant_stands_in_for_its_reference() {
        let mut r = small();
        let mut variant = r.samples[0].clone();
        variant.tech = "nftables-linear".into();
        variant.value = 99.0;
        r.samples.push(variant);
        let as_ref = r.with_tech_as("nftables-linear", "nftables");
        let series = as_ref.series();
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(series[&key("services.add-one", 100, "first")], vec![99.0]);
    }
}
