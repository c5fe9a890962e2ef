//! Several images under one plan (`bench --images A,B,C`): the same
//! ladder as a full campaign per image, one after the other (they share
//! the host's cores), each into its own directory, then the side-by-side
//! report over all of them. One image failing (a build error, a guest
//! that does not boot) is recorded and the others still run.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};

use super::campaign::{run_image, BenchOutcome, BenchPlan};
use super::progress::BenchEvent;
use super::schedule::weight;

/// One image's campaign: where it wrote, and its outcome or the error
/// that stopped it.
pub struct ImageRun {
    /// As given (name or lock path).
    pub image: String,
    pub result: Result<BenchOutcome, String>,
}

pub struct ImagesOutcome {
    pub runs: Vec<ImageRun>,
    /// OUT/report.md over every image that finished, with several images.
    pub side_by_side: Option<PathBuf>,
}

impl ImagesOutcome {
    /// (image, error) of every image whose campaign stopped.
    pub fn failed_images(&self) -> Vec<(&str, &str)> {
        self.runs
            .iter()
            .filter_map(|r| {
                r.result
                    .as_ref()
                    .err()
                    .map(|e| (r.image.as_str(), e.as_str()))
            })
            .collect()
    }
}

/// The directory of one image's campaign under OUT: the image's name, a
/// lock path without its directories and `.lock.toml`.
pub fn dir_name(image: &str) -> String {
    let file = Path::new(image)
        .file_name()
        .map_or(image.to_string(), |f| f.to_string_lossy().into_owned());
    file.strip_suffix(".lock.toml")
        .or_else(|| file.strip_suffix(".toml"))
        .unwrap_or(&file)
        .to_string()
}

/// Run `plan` on each of its images. With one image (or none: the
/// default) the campaign writes straight into OUT, as it always did;
/// with several, into OUT/<image>/ each, then OUT/report.md side by side.
pub fn run(plan: &BenchPlan, events: &Sender<BenchEvent>) -> Result<ImagesOutcome> {
    let images: Vec<Option<&str>> = if plan.images.is_empty() {
        vec![None]
    } else {
        plan.images.iter().map(|i| Some(i.as_str())).collect()
    };
    let count = images.len();
    let total_weight = plan
        .ladder
        .jobs()?
        .iter()
        .map(|j| weight(j, &plan.phases))
        .sum();
    let mut runs = Vec::new();
    for (index, image) in images.into_iter().enumerate() {
        let name = image.map_or_else(
            || dir_name(&crate::image::lock_path(None).display().to_string()),
            dir_name,
        );
        let _ = events.send(BenchEvent::ImageStarting {
            index,
            count,
            name: name.clone(),
            total_weight,
        });
        let out = if count == 1 {
            plan.out.clone()
        } else {
            plan.out.join(&name)
        };
        let result = run_image(plan, image, &out, events).map_err(|e| format!("{e:#}"));
        let _ = events.send(BenchEvent::ImageFinished {
            index,
            name: name.clone(),
            failure: result.as_ref().err().cloned(),
        });
        runs.push(ImageRun {
            image: image.map_or(name, str::to_string),
            result,
        });
    }
    let side_by_side = if count > 1 {
        let finished: Vec<&crate::results::Results> = runs
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|o| &o.results))
            .collect();
        let failed: Vec<(String, String)> = runs
            .iter()
            .filter_map(|r| {
                r.result
                    .as_ref()
                    .err()
                    .map(|e| (r.image.clone(), e.clone()))
            })
            .collect();
        crate::report::side_by_side::write(&finished, &failed, &plan.out)
            .context("writing the side-by-side report")?;
        Some(plan.out.join("report.md"))
    } else {
        None
    };
    Ok(ImagesOutcome { runs, side_by_side })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_directory_is_its_name() {
        assert_eq!(dir_name("bullseye-5.10"), "bullseye-5.10");
        assert_eq!(dir_name("images/trixie-6.12.lock.toml"), "trixie-6.12");
        assert_eq!(dir_name("/tmp/custom.toml"), "custom");
    }
}
