//! Runs rendered [`Step`]s in a guest through the agent — the one place
//! where renderer output meets the VM. Timing is guest-side (monotonic).

use crate::tech::{Step, Tech};
use crate::vm::{ExecRequest, Vm, VmError};

/// Per-step guest timeout: a 100k-rule load under TCG takes minutes.
pub const STEP_TIMEOUT_MS: u64 = 30 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Guest-side time the command took.
    pub elapsed_ns: u64,
    /// CPU time of the command (and the children it waited for) in user
    /// mode and in the kernel, as the agent's `wait4` reported it. Kernel
    /// work inside the command's system calls is its sys time (nfnetlink
    /// processes a batch in the sender's `sendmsg`); work deferred to
    /// kworkers or RCU callbacks is in neither.
    pub user_ns: u64,
    pub sys_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{tech}: `{step}` failed (exit {exit:?}): {message}")]
    Failed {
        tech: Tech,
        step: String,
        exit: Option<i32>,
        /// The tool's own error output (it names the offending line).
        message: String,
    },
    #[error("{tech}: guest failure while running `{step}`: {source}")]
    Vm {
        tech: Tech,
        step: String,
        source: VmError,
    },
}

pub fn run_step(vm: &mut Vm, tech: Tech, step: &Step) -> Result<StepOutcome, StepError> {
    let r = vm
        .exec_request(ExecRequest {
            argv: step.argv.clone(),
            stdin: step.stdin.as_bytes().to_vec(),
            timeout_ms: STEP_TIMEOUT_MS,
            env: Vec::new(),
        })
        .map_err(|source| StepError::Vm {
            tech,
            step: step.display(),
            source,
        })?;
    let outcome = StepOutcome {
        exit_code: r.exit_code,
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        elapsed_ns: r.elapsed_ns,
        user_ns: r.user_ns,
        sys_ns: r.sys_ns,
    };
    check_exit(tech, step, outcome.exit_code, &outcome.stderr)?;
    Ok(outcome)
}

/// A step failed when it exited other than 0 and its failure is not
/// tolerated. The one rule for every runner of steps (the agent's exec and
/// the guest profiler).
pub fn check_exit(
    tech: Tech,
    step: &Step,
    exit: Option<i32>,
    stderr: &str,
) -> Result<(), StepError> {
    if exit != Some(0) && !step.tolerate_failure {
        return Err(StepError::Failed {
            tech,
            step: step.display(),
            exit,
            message: stderr.trim().to_string(),
        });
    }
    Ok(())
}

/// Run steps in order, stopping at the first failure.
pub fn run_steps(vm: &mut Vm, tech: Tech, steps: &[Step]) -> Result<Vec<StepOutcome>, StepError> {
    steps.iter().map(|s| run_step(vm, tech, s)).collect()
}

/// Total guest-side time of a sequence of outcomes.
pub fn total_ns(outcomes: &[StepOutcome]) -> u64 {
    outcomes.iter().map(|o| o.elapsed_ns).sum()
}

/// Guest time of a sequence of outcomes, whole and split by CPU mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepTimes {
    pub elapsed_ns: u64,
    pub user_ns: u64,
    pub sys_ns: u64,
}

/// Sums of elapsed, user and system time over `outcomes`.
pub fn total_times(outcomes: &[StepOutcome]) -> StepTimes {
    outcomes
        .iter()
        .fold(StepTimes::default(), |t, o| StepTimes {
            elapsed_ns: t.elapsed_ns + o.elapsed_ns,
            user_ns: t.user_ns + o.user_ns,
            sys_ns: t.sys_ns + o.sys_ns,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_every_step() {
        let outcome = |e, u, s| StepOutcome {
            exit_code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
            elapsed_ns: e,
            user_ns: u,
            sys_ns: s,
        };
        let steps = [outcome(10, 2, 7), outcome(5, 1, 3)];
        assert_eq!(total_ns(&steps), 15);
        assert_eq!(
            total_times(&steps),
            StepTimes {
                elapsed_ns: 15,
                user_ns: 3,
                sys_ns: 10
            }
        );
    }
}
