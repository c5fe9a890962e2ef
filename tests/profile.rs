//! `bench --profile` in a real guest: the kernel sampler must see a
//! control-plane operation's commands, split their samples into user and
//! kernel, and name the kernel functions they ran — for nftables, the
//! nf_tables module's — and a failing step must fail the profile.

#[path = "common/mod.rs"]
mod common;

use rulebench::measure::{self, Recorder, Setting};
use rulebench::tech::{Step, Tech};

#[test]
fn an_nftables_load_and_its_adds_are_profiled_in_the_kernel() {
    let mut vm = common::boot();
    let setting = Setting {
        tech: Tech::Nftables,
        n: 1000,
        repeats: 1,
        full_load_budget_ms: 1,
    };
    let mut rec = Recorder::default();
    measure::profile::services(&mut vm, &setting, &mut rec).expect("profiling nftables at 1k");
    let ops: Vec<(String, String)> = rec
        .profiles
        .iter()
        .map(|p| (p.figure.clone(), p.update_mode.clone()))
        .collect();
    assert_eq!(
        ops,
        [
            ("services.full-load".to_string(), String::new()),
            ("services.add-one".into(), "primitive".into()),
            ("services.add-one".into(), "kube-proxy".into()),
        ]
    );
    let load = &rec.profiles[0];
    eprintln!(
        "full load of 1k: {:.2} s, {} samples, user {} kernel {}, other {}; top {:?}",
        load.elapsed_ns as f64 / 1e9,
        load.samples,
        load.command_user,
        load.command_kernel,
        load.other_user + load.other_kernel,
        &load.command_functions[..load.command_functions.len().min(5)]
    );
    // The sampler ticks at ~1 kHz: a load of a second or more gives
    // hundreds of samples, most of them the commands'.
    assert!(load.samples >= 200, "{} samples", load.samples);
    assert!(
        load.command_user > 0 && load.command_kernel > 0,
        "the commands' samples are split into user and kernel: {load:?}"
    );
    assert!(
        load.command_functions
            .iter()
            .any(|f| f.module == "nf_tables"),
        "an nftables load runs in nf_tables functions: {:?}",
        load.command_functions
    );
}

#[test]
fn a_failing_step_fails_the_profile_and_names_it() {
    let mut vm = common::boot();
    let steps = [Step::with_stdin(
        &["nft", "-f", "-"],
        "this is not an nftables ruleset\n",
    )];
    let err = measure::profile::run(&mut vm, Tech::Nftables, &steps)
        .expect_err("a ruleset nft refuses must fail the profile");
    let text = format!("{err:#}");
    assert!(
        text.contains("under the profiler: nftables: `nft -f -"),
        "{text}"
    );
    assert!(text.contains("failed (exit Some(1))"), "{text}");
}
