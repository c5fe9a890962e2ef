//! Boot timing before the measuring guests start: one cold boot always,
//! so the report shows what a snapshot restore saves, then the timed
//! boots (restored from a snapshot unless RULEBENCH_SNAPSHOT=0; the first
//! restore of a fresh cache includes making the snapshot).

use std::time::Instant;

use anyhow::{Context, Result};

use crate::image::BuiltImage;
use crate::measure::figures::{self, Figure};
use crate::results::Sample;
use crate::vm::{Vm, VmOptions};

/// Seconds from starting QEMU to the first guest command's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BootTimes {
    pub cold_seconds: f64,
    pub boot_seconds: Vec<f64>,
}

/// Time one cold boot and `boots` (at least one) ordinary boots. The
/// last guest is handed back still running: it tells the run metadata
/// what the guests run.
pub fn time_boots(built: &BuiltImage, opts: &VmOptions, boots: usize) -> Result<(BootTimes, Vm)> {
    let cold_seconds = {
        let t = Instant::now();
        let cold = VmOptions {
            snapshot: false,
            ..opts.clone()
        };
        let mut booted = Vm::boot(built, &cold).context("cold-booting the guest")?;
        booted.sh("uname -r").context("first guest command")?;
        let s = t.elapsed().as_secs_f64();
        booted.shutdown()?;
        s
    };
    let mut boot_seconds = Vec::new();
    let mut last = None;
    for _ in 0..boots.max(1) {
        let t = Instant::now();
        let mut booted = Vm::boot(built, opts).context("booting the guest")?;
        booted.sh("uname -r").context("first guest command")?;
        boot_seconds.push(t.elapsed().as_secs_f64());
        if let Some(old) = last.replace(booted) {
            old.shutdown()?;
        }
    }
    let last = last.expect("at least one boot");
    let times = BootTimes {
        cold_seconds,
        boot_seconds,
    };
    Ok((times, last))
}

impl BootTimes {
    /// The cold boot, then one sample per timed boot.
    pub fn samples(&self) -> Vec<Sample> {
        let sample = |figure: &Figure, repeat: usize, value: f64| Sample {
            figure: figure.id.into(),
            tech: "guest".into(),
            n: 0,
            repeat: repeat as u32,
            position: String::new(),
            value,
            unit: figure.unit.into(),
            update_mode: String::new(),
        };
        let mut out = vec![sample(&figures::COLD_BOOT, 0, self.cold_seconds)];
        for (i, &s) in self.boot_seconds.iter().enumerate() {
            out.push(sample(&figures::BOOT, i, s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_samples_are_the_cold_boot_then_each_timed_boot() {
        let times = BootTimes {
            cold_seconds: 5.4,
            boot_seconds: vec![0.8, 0.7],
        };
        let got: Vec<(String, u32, f64)> = times
            .samples()
            .into_iter()
            .map(|s| (s.figure, s.repeat, s.value))
            .collect();
        assert_eq!(
            got,
            [
                (figures::COLD_BOOT.id.to_string(), 0, 5.4),
                (figures::BOOT.id.to_string(), 0, 0.8),
                (figures::BOOT.id.to_string(), 1, 0.7),
            ]
        );
    }
}
