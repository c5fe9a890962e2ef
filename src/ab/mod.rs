//! The A/B regression gate: base and head measured in one campaign,
//! alternating unit by unit, so host drift cancels in each pair.
//!
//! Two bench runs of the same code on a 2-core TCG host drift apart by up
//! to 2× on single series (`compare::TCG_THRESHOLD`): a two-run compare
//! can only catch regressions beyond 2.5×. Here each revision runs its own
//! `rulebench ab-worker` (its own renderers, measurement code and guest),
//! both guests boot before anything is measured, and the controller asks
//! them in turn for the same unit — a full load, then update rounds at
//! one position — step by step in the order A B, B A, A B … (A is base in
//! even repeats, head in odd ones): every step of one side is measured
//! within seconds of the same step of the other, and neither side is
//! always second. A slow spell of the host then hits both sides of a
//! pair, and the figure judged is the geometric mean over pairs of head /
//! base.
//!
//! ```text
//!   rulebench gate ──"load K" / "round K"──► base: rulebench ab-worker ─► guest A
//!        │         ◄──── samples (JSON) ─────
//!        └─────────"load K" / "round K"──► head: rulebench ab-worker ─► guest B
//!                  ◄──── samples (JSON) ─────
//! ```

pub mod controller;
pub mod decide;
pub mod plan;
pub mod worker;

/// Version of the line protocol between the controller and its workers
/// (both sides refuse another).
pub const PROTOCOL: u32 = 2;
