//! Draws a bench run's [`BenchEvent`]s on stderr: an indicatif bar on a
//! terminal; without one (CI logs, `make bench > log`) a line per job and,
//! every two minutes, a line saying which jobs are running — so a quiet
//! log is never mistaken for a hang (jobs at 10k run for minutes).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::{BenchEvent, Progress};

/// How often a log without a terminal says what is running.
const HEARTBEAT: Duration = Duration::from_secs(120);

pub struct ProgressView {
    started: Instant,
    progress: Progress,
    /// Made when the lanes start (the job weights are known then).
    bar: Option<ProgressBar>,
    last_heartbeat: Instant,
}

impl ProgressView {
    /// A view of a run that started at `started` (the ETA counts from it).
    pub fn new(started: Instant) -> Self {
        ProgressView {
            started,
            progress: Progress::default(),
            bar: None,
            last_heartbeat: started,
        }
    }

    pub fn show(&mut self, event: &BenchEvent) {
        self.progress.apply(event, Instant::now());
        match event {
            BenchEvent::ImageStarting { .. } => {
                let line = self.progress.image_line();
                if !line.is_empty() {
                    self.say(&format!("=== {line}"));
                }
            }
            BenchEvent::ImageFinished {
                name,
                failure: Some(error),
                ..
            } => self.say(&format!("FAILED image {name}: {error}")),
            BenchEvent::ImageFinished { .. } => self.advance(None),
            BenchEvent::ImageReady {
                name,
                sha256,
                elapsed,
            } => self.say(&format!(
                "image {name} ready in {:.1} s (sha256 {sha256})",
                elapsed.as_secs_f64()
            )),
            BenchEvent::LanesStarting { guests, .. } => {
                if self.bar.is_none() {
                    let bar = ProgressBar::new(self.progress.total_weight());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>28} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta} {wide_msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    self.bar = Some(bar);
                }
                self.advance(None);
                self.last_heartbeat = Instant::now();
                if *guests > 1 {
                    self.say(&format!(
                        "{guests} guests in parallel, each technology's sizes in increasing N"
                    ));
                }
            }
            BenchEvent::JobStarted { .. } => {}
            BenchEvent::JobFinished { job, failure, .. } => {
                if let Some(note) = failure {
                    self.say(&format!("FAILED {note}"));
                }
                self.advance(Some(&format!("{job} done")));
            }
            BenchEvent::JobSkipped { job, reason, .. } => {
                self.say(&format!("SKIPPED {job}: {reason}"));
                self.advance(Some(&format!("{job} skipped")));
            }
            BenchEvent::LaneFailed { note, .. } => self.say(&format!("FAILED {note}")),
        }
        self.redraw();
    }

    /// Move the bar to the weighted share done; without a terminal, say
    /// `what` happened in one line with the elapsed time and the ETA over
    /// every image.
    fn advance(&self, what: Option<&str>) {
        let Some(bar) = &self.bar else { return };
        bar.set_position(self.progress.done_weight());
        let image = self.progress.image_line();
        bar.set_prefix(image.clone());
        if let (true, Some(what)) = (bar.is_hidden(), what) {
            let elapsed = self.started.elapsed().as_secs_f64();
            let image = if image.is_empty() {
                image
            } else {
                format!("[{image}] ")
            };
            eprintln!(
                "{:>3.0}% {image}{what}; elapsed {:.1} min, ETA {:.1} min",
                self.progress.fraction() * 100.0,
                elapsed / 60.0,
                self.progress.eta_seconds(elapsed) / 60.0
            );
        }
    }

    /// Refresh the running jobs in the bar's message (or, without a
    /// terminal, print them once per [`HEARTBEAT`]).
    pub fn redraw(&mut self) {
        let Some(bar) = &self.bar else { return };
        let line = self.progress.running_line(Instant::now());
        bar.set_message(line.clone());
        if bar.is_hidden() && self.last_heartbeat.elapsed() >= HEARTBEAT && !line.is_empty() {
            eprintln!("     running: {line}");
            self.last_heartbeat = Instant::now();
        }
    }

    /// A line above the bar.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
