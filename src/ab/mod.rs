//! The A/B regression gate: base and head measured in one campaign,
//! alternating unit by unit, so host drift cancels in each pair.
//!
//! Two bench runs of the same code on a 2-core TCG host drift apart by up
//! to 2× on single series (`compare::TCG_THRESHOLD`): a two-run compare
//! can only catch regressions beyond 2.5×. Here each revision runs its own
//! `rulebench ab-worker` (its own renderers, measurement code and guest),
//! both guests boot before anything is measured, and the controller asks
//! them in turn for the same unit — a full load and one update round at
//! one position — base first in even repeats, head first in odd ones. A
//! slow spell of the host then hits both sides of a pair, and the figure
//! judged is the median over pairs of head / base.
//!
//! ```text
//!   rulebench gate ──stdin "unit K"──► base: rulebench ab-worker ─► guest A
//!        │        ◄──stdout samples──
//!        └────────stdin "unit K"──► head: rulebench ab-worker ─► guest B
//!                 ◄──stdout samples──
//! ```

pub mod controller;
pub mod decide;
pub mod plan;
pub mod worker;

/// Version of the line protocol between the controller and its workers
/// (both sides refuse another).
pub const PROTOCOL: u32 = 1;
