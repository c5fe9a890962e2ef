//! The two workload families every measurement belongs to.

use crate::tech::Tech;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Services,
    Firewall,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Services => "services",
            Family::Firewall => "firewall",
        }
    }

    /// Technologies (and layouts) that can run the family.
    pub fn techs(self) -> &'static [Tech] {
        match self {
            Family::Services => Tech::for_services(),
            Family::Firewall => Tech::for_firewall(),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
