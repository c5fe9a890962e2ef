//! rulebench-ebpf: the guest-side loader for rulebench's eBPF dataplanes
//! (static binary, aya 0.14). Each subcommand is one process; state lives
//! in pinned maps under /sys/fs/bpf/rulebench.
//!
//! ```text
//! rulebench-ebpf services load     < ServicesInput JSON
//! rulebench-ebpf services update   < ServiceOp JSON
//! rulebench-ebpf firewall load     < FirewallInput JSON
//! rulebench-ebpf firewall update   < FirewallOp JSON
//! rulebench-ebpf dump              > sorted, normalized JSON of all maps
//! rulebench-ebpf reset             detach everything, unpin everything
//! rulebench-ebpf hooktime        < HookPlan JSON: per-call kernel function times per phase
//! rulebench-ebpf profile         < ProfilePlan JSON: commands under a kernel sampling profiler
//! ```

mod attach;
mod firewall;
mod hooktime;
mod lbvs;
mod model;
mod pins;
mod profile;
mod services;
mod symbols;
mod sys;

use std::io::Read;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

const USAGE: &str = "usage: rulebench-ebpf (services|firewall) (load|update) < JSON | dump | reset | hooktime < JSON | profile < JSON";

fn stdin_json<T: DeserializeOwned>(what: &str) -> Result<T> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    serde_json::from_str(&text).with_context(|| format!("parsing {what} JSON from stdin"))
}

#[derive(Serialize)]
struct Dump {
    services: Option<Vec<model::Service>>,
    firewall: Option<firewall::FirewallDump>,
}

fn run(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["services", "load"] => services::load(&stdin_json("services")?),
        ["services", "update"] => services::update(&stdin_json("service op")?),
        ["firewall", "load"] => firewall::commit(&stdin_json("firewall")?),
        ["firewall", "update"] => firewall::update(&stdin_json("firewall op")?),
        ["dump"] => {
            let dump = Dump {
                services: services::dump()?,
                firewall: firewall::dump()?,
            };
            println!("{}", serde_json::to_string_pretty(&dump)?);
            Ok(())
        }
        ["hooktime"] => hooktime::run(&stdin_json("hook plan")?),
        ["profile"] => profile::run(&stdin_json("profile plan")?),
        ["reset"] => {
            services::reset()?;
            firewall::reset()
        }
        _ => bail!("{USAGE}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("rulebench-ebpf: {e:#}");
        std::process::exit(1);
    }
}
