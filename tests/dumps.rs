//! Normalized dumps per technology x small fixture, as insta snapshots:
//! what each technology really holds after an atomic full load.

mod support;

use rulebench::correctness::push;
use rulebench::guest_state;
use rulebench::tech::Tech;

#[test]
fn normalized_dumps_per_technology_and_fixture() {
    let mut vm = support::boot();
    for name in [
        "services-small",
        "services-single-endpoint",
        "firewall-small",
    ] {
        let workload = support::fixture(name);
        for &tech in Tech::for_workload(&workload) {
            guest_state::reset(&mut vm).unwrap_or_else(|e| panic!("reset before {tech}: {e}"));
            push::load(&mut vm, tech, &workload).unwrap_or_else(|e| panic!("{name}: {e}"));
            let dump = push::dump(&mut vm, tech).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!dump.trim().is_empty(), "{name}: {tech} dumped nothing");
            insta::assert_snapshot!(format!("{name}__{tech}"), dump);
        }
    }
    // The reset really cleans: nothing of any technology is left.
    guest_state::reset(&mut vm).expect("final reset");
    for tech in [
        Tech::IptablesLegacy,
        Tech::IptablesNft,
        Tech::Nftables,
        Tech::Ipvs,
        Tech::Ebpf,
    ] {
        let dump = push::dump(&mut vm, tech).expect("dump after reset");
        insta::assert_snapshot!(format!("after_reset__{tech}"), dump);
    }
}
