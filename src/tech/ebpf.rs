//! eBPF: rulebench's own tc dataplanes (guest/bpf) driven by the static
//! loader `rulebench-ebpf` (guest/ebpf-loader). The renderer turns the
//! workload into the loader's JSON input; the loader owns maps, attach and
//! the atomic swaps.
//!
//! Services: one `services` hash-map entry per service (whole backend list
//! in the value), so add / delete / change-backends is one map update.
//! Firewall: bpf-iptables' Linear Bit Vector Search; every load or update
//! builds a new pipeline generation and swaps it in through a prog array.

use serde_json::{json, Value};

use crate::workload::{Firewall, Rule, Service, Services, UpdateOp};

use super::{unsupported, Step, Tech, TechError};

/// Path of the loader in the guest image.
pub const LOADER: &str = "/usr/local/bin/rulebench-ebpf";
/// Backends one service map value holds (`MAX_BACKENDS` in services.bpf.c).
pub const MAX_BACKENDS: usize = 64;
const TOO_MANY_BACKENDS: &str = "the eBPF service map holds at most 64 backends per service";

fn loader_step(args: &[&str], input: &Value) -> Step {
    let mut argv = vec![LOADER];
    argv.extend_from_slice(args);
    Step::with_stdin(&argv, format!("{input}\n"))
}

fn service_json(s: &Service) -> Value {
    json!({
        "vip": s.vip.to_string(),
        "port": s.port,
        "proto": s.proto.as_str(),
        "affinity_timeout_s": s.affinity.map_or(0, |a| a.timeout_seconds),
        "backends": s.backends.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
    })
}

fn service_key_json(s: &Service) -> Value {
    json!({"vip": s.vip.to_string(), "port": s.port, "proto": s.proto.as_str()})
}

fn check_backends<'a>(services: impl IntoIterator<Item = &'a Service>) -> Result<(), TechError> {
    if services
        .into_iter()
        .any(|s| s.backends.len() > MAX_BACKENDS)
    {
        return Err(unsupported(Tech::Ebpf, "services", TOO_MANY_BACKENDS));
    }
    Ok(())
}

/// The loader's services input (also what `rulebench render` prints).
pub fn services_input(services: &Services) -> Value {
    json!({"services": services.services.iter().map(service_json).collect::<Vec<_>>()})
}

pub fn render_services(services: &Services) -> Result<Vec<Step>, TechError> {
    check_backends(&services.services)?;
    Ok(vec![loader_step(
        &["services", "load"],
        &services_input(services),
    )])
}

/// One service change = one loader call = one map update. `op` was
/// checked against `before` by the dispatcher.
pub fn render_services_update(before: &Services, op: &UpdateOp) -> Result<Vec<Step>, TechError> {
    let named = |name: &str| before.by_name(name).expect("op checked against the model");
    let op_json = match op {
        UpdateOp::AddService(s) => {
            check_backends([s])?;
            json!({"upsert": service_json(s)})
        }
        UpdateOp::DeleteService { name } => json!({"delete": service_key_json(named(name))}),
        UpdateOp::ChangeBackends { name, backends } => {
            let mut s = named(name).clone();
            s.backends = backends.clone();
            check_backends([&s])?;
            json!({"upsert": service_json(&s)})
        }
        UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => {
            unreachable!("the dispatcher rejects firewall ops on services")
        }
    };
    Ok(vec![loader_step(&["services", "update"], &op_json)])
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "src": r.src.map(|c| c.to_string()),
        "dst": r.dst.map(|c| c.to_string()),
        "proto": r.proto.map(|p| p.as_str()),
        "sport": r.sport.map(|p| p.dash()),
        "dport": r.dport.map(|p| p.dash()),
        "action": r.action.as_str(),
    })
}

pub fn firewall_input(fw: &Firewall) -> Value {
    json!({
        "default_policy": fw.default_policy.as_str(),
        "accept_established": fw.accept_established,
        "rules": fw.rules.iter().map(rule_json).collect::<Vec<_>>(),
    })
}

pub fn render_firewall(fw: &Firewall) -> Vec<Step> {
    vec![loader_step(&["firewall", "load"], &firewall_input(fw))]
}

/// The loader applies the op to the ruleset it last committed and swaps
/// in a rebuilt pipeline.
pub fn render_firewall_update(op: &UpdateOp) -> Vec<Step> {
    let op_json = match op {
        UpdateOp::InsertRule { index, rule } => {
            json!({"insert": {"index": index, "rule": rule_json(rule)}})
        }
        UpdateOp::DeleteRule { index } => json!({"delete": {"index": index}}),
        _ => unreachable!("the dispatcher rejects service ops on firewalls"),
    };
    vec![loader_step(&["firewall", "update"], &op_json)]
}

pub fn dump_commands() -> Vec<Step> {
    vec![Step::new(&[LOADER, "dump"])]
}

/// The loader already sorts and resolves ids; normalizing re-serializes
/// so formatting never differs.
pub fn normalize(dump: &str) -> String {
    match serde_json::from_str::<Value>(dump) {
        Ok(v) => serde_json::to_string_pretty(&v).expect("a Value serializes") + "\n",
        Err(_) => dump.to_string(),
    }
}

pub fn reset_steps() -> Vec<Step> {
    vec![Step::new(&[LOADER, "reset"])]
}
