//! rulebench: compare Linux packet filtering and service load balancing
//! technologies inside pinned QEMU guests.

pub mod ab;
pub mod bench;
pub mod bisect;
pub mod budgets;
pub mod cli;
pub mod compare;
pub mod correctness;
pub mod guest_state;
pub mod image;
pub mod kernel;
pub mod measure;
pub mod report;
pub mod results;
pub mod steps;
pub mod tech;
pub mod topo;
pub mod vm;
pub mod workload;
