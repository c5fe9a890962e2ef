//! tc clsact ingress attachment through netlink (the same path on 5.10
//! and on kernels with TCX), on every interface of the root namespace
//! except lo: client and backend links alike, so both directions of a
//! forwarded connection pass the program.

use anyhow::{Context, Result};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};

/// tc filter priorities: services (DNAT) run before the firewall, as
/// netfilter's nat PREROUTING runs before filter FORWARD.
pub const SERVICES_PRIORITY: u16 = 1;
pub const FIREWALL_PRIORITY: u16 = 2;

pub fn interfaces() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .context("listing /sys/class/net")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    Ok(names)
}

/// Attaches `prog` (loaded) at ingress of every interface. The links are
/// deliberately leaked: the filter must outlive this process.
pub fn attach_everywhere(prog: &mut SchedClassifier, priority: u16) -> Result<Vec<String>> {
    let names = interfaces()?;
    for name in &names {
        // EEXIST when another program (or an earlier run) added it.
        let _ = tc::qdisc_add_clsact(name);
        let id = prog
            .attach_with_options(
                name,
                TcAttachType::Ingress,
                TcAttachOptions::Netlink(NlOptions {
                    priority,
                    ..Default::default()
                }),
            )
            .with_context(|| format!("attaching to {name} ingress"))?;
        std::mem::forget(prog.take_link(id).context("taking the tc link")?);
    }
    Ok(names)
}

/// Removes every filter running `program` (by name) from every interface.
pub fn detach_everywhere(program: &str) -> Result<()> {
    for name in interfaces()? {
        // Interfaces never attached answer "not found": nothing to undo.
        let _ = tc::qdisc_detach_program(&name, TcAttachType::Ingress, program);
    }
    Ok(())
}
