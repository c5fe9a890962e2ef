//! Incremental changes to a workload, applied to the model so tests know
//! the expected state after the same change was pushed to a guest.

use super::firewall::{Firewall, Rule};
use super::services::{Service, Services};
use super::types::Endpoint;
use super::{validate, Workload, WorkloadError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOp {
    /// Appended after the existing services.
    AddService(Service),
    DeleteService {
        name: String,
    },
    /// Replace the backend list of one service (order matters, as in a
    /// full load).
    ChangeBackends {
        name: String,
        backends: Vec<Endpoint>,
    },
    /// The new rule ends up at `index` (0-based; `index == len` appends).
    InsertRule {
        index: usize,
        rule: Rule,
    },
    DeleteRule {
        index: usize,
    },
}

impl UpdateOp {
    pub fn family(&self) -> &'static str {
        match self {
            UpdateOp::AddService(_)
            | UpdateOp::DeleteService { .. }
            | UpdateOp::ChangeBackends { .. } => "services",
            UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => "firewall",
        }
    }

    /// The service an op changes; None for firewall ops.
    pub fn service_name(&self) -> Option<&str> {
        match self {
            UpdateOp::AddService(svc) => Some(svc.name.as_str()),
            UpdateOp::DeleteService { name } | UpdateOp::ChangeBackends { name, .. } => {
                Some(name.as_str())
            }
            UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            UpdateOp::AddService(s) => format!("add service {:?}", s.name),
            UpdateOp::DeleteService { name } => format!("delete service {name:?}"),
            UpdateOp::ChangeBackends { name, backends } => {
                format!(
                    "change backends of {name:?} to {} endpoints",
                    backends.len()
                )
            }
            UpdateOp::InsertRule { index, .. } => format!("insert rule at [{index}]"),
            UpdateOp::DeleteRule { index } => format!("delete rule [{index}]"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{op} is a {op_family} update but the workload is a {family} workload")]
    WrongFamily {
        op: String,
        op_family: &'static str,
        family: &'static str,
    },
    #[error("{op}: no service named {name:?}")]
    NoSuchService { op: String, name: String },
    #[error("{op}: index {index} is out of range (the firewall has {len} rules)")]
    RuleIndex {
        op: String,
        index: usize,
        len: usize,
    },
    #[error("{op} would make the workload invalid: {source}")]
    Invalid {
        op: String,
        #[source]
        source: WorkloadError,
    },
}

impl Services {
    /// Applies `op`; on error `self` is unchanged.
    pub fn apply(&mut self, op: &UpdateOp) -> Result<(), UpdateError> {
        let mut next = self.clone();
        let position = |name: &str| {
            next.services
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| UpdateError::NoSuchService {
                    op: op.describe(),
                    name: name.to_string(),
                })
        };
        match op {
            UpdateOp::AddService(s) => next.services.push(s.clone()),
            UpdateOp::DeleteService { name } => {
                let i = position(name)?;
                next.services.remove(i);
            }
            UpdateOp::ChangeBackends { name, backends } => {
                let i = position(name)?;
                next.services[i].backends = backends.clone();
            }
            UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => {
                return Err(wrong_family(op, "services"))
            }
        }
        validate::validate_services(&next).map_err(|source| UpdateError::Invalid {
            op: op.describe(),
            source,
        })?;
        *self = next;
        Ok(())
    }
}

impl Firewall {
    /// Applies `op`; on error `self` is unchanged.
    pub fn apply(&mut self, op: &UpdateOp) -> Result<(), UpdateError> {
        let len = self.rules.len();
        let out_of_range = |index| UpdateError::RuleIndex {
            op: op.describe(),
            index,
            len,
        };
        let mut next = self.clone();
        match op {
            UpdateOp::InsertRule { index, rule } => {
                if *index > len {
                    return Err(out_of_range(*index));
                }
                next.rules.insert(*index, *rule);
            }
            UpdateOp::DeleteRule { index } => {
                if *index >= len {
                    return Err(out_of_range(*index));
                }
                next.rules.remove(*index);
            }
            _ => return Err(wrong_family(op, "firewall")),
        }
        validate::validate_firewall(&next).map_err(|source| UpdateError::Invalid {
            op: op.describe(),
            source,
        })?;
        *self = next;
        Ok(())
    }
}

impl Workload {
    pub fn apply(&mut self, op: &UpdateOp) -> Result<(), UpdateError> {
        match self {
            Workload::Services(s) => s.apply(op),
            Workload::Firewall(f) => f.apply(op),
        }
    }
}

fn wrong_family(op: &UpdateOp, family: &'static str) -> UpdateError {
    UpdateError::WrongFamily {
        op: op.describe(),
        op_family: op.family(),
        family,
    }
}
