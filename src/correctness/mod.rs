//! Correctness half of the comparison: load a workload into a guest with
//! each technology, dump and normalize what the kernel holds, send probe
//! traffic from the client namespace, and judge every answer against the
//! workload's own reference semantics (the oracle) — and against the other
//! technologies (the differential).
//!
//! - [`probes`]: which connections to try for a workload, and the verdicts
//!   a probe can get (pure).
//! - [`verdict`]: judging what one probe's answers mean (pure).
//! - [`differential`]: verdict tables across technologies (pure).
//! - [`push`]: load / update / dump in the guest through the step runner
//!   (the reset between technologies is [`crate::guest_state::reset`]).
//! - [`session`]: a guest with its topology up, running probe sets.

pub mod differential;
pub mod probes;
pub mod push;
pub mod session;
pub mod verdict;

pub use differential::{Differential, Disagreement};
pub use probes::{
    firewall_probes, probes_for, service_probes, Check, Probe, ProbeOptions, Verdict,
};
pub use push::{dump, load, update};
pub use session::{topology_for, Session, TechRun};
pub use verdict::judge;

use crate::steps::StepError;
use crate::tech::TechError;
use crate::vm::VmError;

#[derive(Debug, thiserror::Error)]
pub enum CorrectnessError {
    #[error(transparent)]
    Render(Box<TechError>),
    // Boxed: guest errors are large and these travel through every Result.
    #[error(transparent)]
    Step(Box<StepError>),
    #[error("setting up the guest topology: {0}")]
    Topology(#[source] Box<VmError>),
    #[error("probe run: {0}")]
    Probe(#[source] Box<VmError>),
    #[error("probe report has {got} results for {want} probes")]
    ProbeCount { got: usize, want: usize },
}

impl From<StepError> for CorrectnessError {
    fn from(e: StepError) -> Self {
        CorrectnessError::Step(Box::new(e))
    }
}

impl From<TechError> for CorrectnessError {
    fn from(e: TechError) -> Self {
        CorrectnessError::Render(Box::new(e))
    }
}
