//! The bpf-iptables style firewall: a fixed entry program attached at
//! tc ingress tail-calls the active pipeline through a one-slot prog
//! array. Every commit (full load or one update op) builds a new pipeline
//! generation — new program, new maps filled with the new bit vectors —
//! and only then swaps the prog-array slot: one map update, so a packet
//! sees either the old or the new ruleset, never a mix. A failed commit
//! (bad input, verifier rejection) leaves the old generation running.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, ProgramArray};
use aya::programs::SchedClassifier;
use aya::EbpfLoader;
use serde::Serialize;

use crate::lbvs::{self, Tables};
use crate::model::{Action, FirewallInput, FirewallOp, Proto};
use crate::sys::RawMap;
use crate::{attach, pins};

pub const ENTRY_OBJECT: &str = "firewall_entry.bpf.o";
pub const ENTRY_PROGRAM: &str = "firewall_ingress";
pub const PIPELINE_PROGRAM: &str = "firewall_pipeline";
const PIPELINE_MAPS: [&str; 8] = [
    "fw_config",
    "fw_src",
    "fw_dst",
    "fw_proto",
    "fw_sport",
    "fw_dport",
    "fw_vectors",
    "fw_actions",
];

pub fn pipeline_object(words: usize) -> String {
    format!("firewall_pipeline_w{words}.bpf.o")
}

/// MAX_WORDS of the pipeline variants the image carries (the image
/// builder decides which; the loader only looks).
fn variants() -> Result<Vec<usize>> {
    let dir = pins::object_dir();
    let mut out: Vec<usize> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("firewall_pipeline_w")?
                .strip_suffix(".bpf.o")?
                .parse()
                .ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn state_file() -> PathBuf {
    Path::new(pins::STATE_DIR).join("firewall.json")
}

fn generations() -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let dir = pins::firewall_dir();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        if let Some(n) = e.file_name().to_string_lossy().strip_prefix("gen-") {
            if let Ok(n) = n.parse() {
                out.push((n, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ensure_entry() -> Result<()> {
    let dir = pins::firewall_dir();
    if dir.join("fw_pipeline").exists() {
        return Ok(());
    }
    pins::ensure_bpffs()?;
    std::fs::create_dir_all(&dir)?;
    let path = pins::object(ENTRY_OBJECT);
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&dir)
        .load_file(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(ENTRY_PROGRAM)
        .with_context(|| format!("{} has no program {ENTRY_PROGRAM}", path.display()))?
        .try_into()?;
    prog.load()
        .context("verifying the firewall entry program")?;
    attach::attach_everywhere(prog, attach::FIREWALL_PRIORITY)?;
    Ok(())
}

fn variant_for(rules: usize) -> Result<usize> {
    let words = lbvs::words_for(rules);
    let built = variants()?;
    built.iter().copied().find(|w| *w >= words).with_context(|| {
        format!(
            "no firewall pipeline variant in {} holds {rules} rules ({words} bit-vector words; built: {built:?})",
            pins::object_dir().display()
        )
    })
}

fn u32s(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn lpm_key(p: crate::model::Prefix) -> Vec<u8> {
    let mut k = u32::from(p.len).to_ne_bytes().to_vec();
    k.extend(p.addr.to_be_bytes());
    k
}

fn vector_value(v: &[u64], variant_words: usize) -> Vec<u8> {
    let first = v.iter().position(|w| *w != 0);
    let last = v.iter().rposition(|w| *w != 0);
    let (first, last) = match (first, last) {
        (Some(f), Some(l)) => (f as u32, l as u32),
        _ => (1, 0), // empty: first > last, the program exits early
    };
    let mut b = first.to_ne_bytes().to_vec();
    b.extend(last.to_ne_bytes());
    for i in 0..variant_words {
        b.extend(v.get(i).copied().unwrap_or(0).to_ne_bytes());
    }
    b
}

fn fill(dir: &Path, fw: &FirewallInput, t: &Tables, variant_words: usize) -> Result<()> {
    let open = |name: &str| RawMap::open(&dir.join(name));
    let mut cfg = u32s(t.nwords as u32);
    cfg.extend(u32s(t.proto_default));
    cfg.extend(u32s(t.sport_default));
    cfg.extend(u32s(t.dport_default));
    cfg.extend([
        u8::from(fw.default_policy == Action::Accept),
        u8::from(fw.accept_established),
        0,
        0,
    ]);
    let vectors = open("fw_vectors")?;
    for (i, v) in t.vectors.iter().enumerate() {
        vectors.update(&u32s(i as u32 + 1), &vector_value(v, variant_words))?;
    }
    let actions = open("fw_actions")?;
    for (i, a) in t.accept.iter().enumerate() {
        actions.update(&u32s(i as u32), &[u8::from(*a)])?;
    }
    for (name, table) in [("fw_src", &t.src), ("fw_dst", &t.dst)] {
        let map = open(name)?;
        for (p, id) in table {
            map.update(&lpm_key(*p), &u32s(*id))?;
        }
    }
    let proto = open("fw_proto")?;
    for (p, id) in &t.proto {
        proto.update(&u32s(u32::from(*p)), &u32s(*id))?;
    }
    for (name, table) in [("fw_sport", &t.sport), ("fw_dport", &t.dport)] {
        let map = open(name)?;
        for (lo, hi, id) in table {
            for port in *lo..=*hi {
                map.update(&u32s(u32::from(port)), &u32s(*id))?;
            }
        }
    }
    // Config last: it is what makes the pipeline classify at all.
    open("fw_config")?.update(&u32s(0), &cfg)
}

/// Loads, fills and pins a new generation, returning its program fd
/// holder; nothing is visible to packets yet.
fn build_generation(dir: &Path, fw: &FirewallInput, t: &Tables) -> Result<aya::Ebpf> {
    let words = variant_for(fw.rules.len())?;
    let path = pins::object(&pipeline_object(words));
    // Sized to this ruleset: the vectors cost rules/8 bytes each and their
    // number grows with the rules, so a fixed worst-case size would exceed
    // what the kernel lets one map reserve (E2BIG) long before memory runs out.
    let vector_slots =
        u32::try_from(t.vectors.len() + 1).context("more bit vectors than a map can index")?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins::firewall_dir())
        .map_max_entries("fw_vectors", vector_slots)
        .load_file(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PIPELINE_PROGRAM)
        .with_context(|| format!("{} has no program {PIPELINE_PROGRAM}", path.display()))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("verifying {PIPELINE_PROGRAM} ({words} words)"))?;
    std::fs::create_dir_all(dir)?;
    for name in PIPELINE_MAPS {
        ebpf.map(name)
            .with_context(|| format!("{} has no map {name}", path.display()))?
            .pin(dir.join(name))
            .with_context(|| format!("pinning {name}"))?;
    }
    fill(dir, fw, t, words)?;
    Ok(ebpf)
}

/// Builds a new generation for `fw` and swaps it in.
pub fn commit(fw: &FirewallInput) -> Result<()> {
    let rules = fw.parse_rules()?;
    let tables = lbvs::compile(&rules);
    ensure_entry()?;
    let old = generations()?;
    let next = old.last().map_or(0, |(n, _)| n + 1);
    let dir = pins::firewall_dir().join(format!("gen-{next}"));
    let built = build_generation(&dir, fw, &tables).and_then(|mut ebpf| {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PIPELINE_PROGRAM)
            .expect("loaded above")
            .try_into()?;
        let slot = MapData::from_pin(pins::firewall_dir().join("fw_pipeline"))
            .context("opening the pinned fw_pipeline prog array")?;
        let mut slot = ProgramArray::try_from(Map::ProgramArray(slot))?;
        // The swap: one prog-array update.
        slot.set(0, prog.fd()?, 0)
            .context("swapping the pipeline in fw_pipeline[0]")?;
        Ok(())
    });
    if let Err(e) = built {
        pins::remove_dir(&dir)?;
        return Err(e);
    }
    for (_, d) in old {
        pins::remove_dir(&d)?;
    }
    std::fs::create_dir_all(pins::STATE_DIR)?;
    std::fs::write(state_file(), serde_json::to_vec(fw)?)
        .with_context(|| format!("writing {}", state_file().display()))
}

pub fn committed() -> Result<FirewallInput> {
    let path = state_file();
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "no committed firewall ({}): run `rulebench-ebpf firewall load` first",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn update(op: &FirewallOp) -> Result<()> {
    let next = committed()?.apply(op)?;
    commit(&next)
}

pub fn reset() -> Result<()> {
    attach::detach_everywhere(ENTRY_PROGRAM)?;
    pins::remove_dir(&pins::firewall_dir())?;
    match std::fs::remove_file(state_file()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// A field value class and the rules it allows.
#[derive(Debug, Serialize)]
pub struct FieldEntry {
    pub value: String,
    pub rules: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct FirewallDump {
    pub variant_words: usize,
    pub words: u32,
    pub default_policy: Action,
    pub accept_established: bool,
    pub actions: Vec<Action>,
    pub vectors: usize,
    pub src: Vec<FieldEntry>,
    pub dst: Vec<FieldEntry>,
    pub proto: Vec<FieldEntry>,
    pub sport: Vec<FieldEntry>,
    pub dport: Vec<FieldEntry>,
}

fn ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Port array entries as (lo-hi, id) runs of equal nonzero ids.
fn port_runs(map: &RawMap) -> Vec<(u16, u16, u32)> {
    let mut runs: Vec<(u16, u16, u32)> = Vec::new();
    for port in 0..=65535u32 {
        let id = map.lookup(&u32s(port)).map_or(0, |v| ne32(&v, 0));
        if id == 0 {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.2 == id && u32::from(r.1) + 1 == port => r.1 = port as u16,
            _ => runs.push((port as u16, port as u16, id)),
        }
    }
    runs
}

/// Reads the active generation's maps back (ids resolved to rule lists,
/// so the dump depends only on the ruleset).
pub fn dump() -> Result<Option<FirewallDump>> {
    let Some((_, dir)) = generations()?.pop() else {
        return Ok(None);
    };
    let open = |name: &str| RawMap::open(&dir.join(name));
    let cfg = open("fw_config")?
        .lookup(&u32s(0))
        .context("fw_config[0] missing")?;
    let vectors = open("fw_vectors")?;
    let variant_words = (vectors.value_size - 8) / 8;
    let vec_members = |id: u32| -> Result<Vec<usize>> {
        let v = vectors
            .lookup(&u32s(id))
            .with_context(|| format!("vector {id} missing"))?;
        let words: Vec<u64> = v[8..]
            .chunks(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(lbvs::members(&words))
    };
    let entry = |value: String, id: u32| -> Result<FieldEntry> {
        Ok(FieldEntry {
            value,
            rules: vec_members(id)?,
        })
    };
    let words = ne32(&cfg, 0);
    let prefixes = |name: &str| -> Result<Vec<FieldEntry>> {
        let mut out = open(name)?
            .entries()
            .into_iter()
            .map(|(k, v)| {
                let len = ne32(&k, 0);
                let addr = Ipv4Addr::new(k[4], k[5], k[6], k[7]);
                Ok((
                    (u32::from(addr), len),
                    entry(format!("{addr}/{len}"), ne32(&v, 0))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(k, _)| *k);
        Ok(out.into_iter().map(|(_, e)| e).collect())
    };
    let ports = |name: &str, default: u32| -> Result<Vec<FieldEntry>> {
        let mut out = vec![entry("*".into(), default)?];
        for (lo, hi, id) in port_runs(&open(name)?) {
            let value = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            out.push(entry(value, id)?);
        }
        Ok(out)
    };
    let mut proto = vec![entry("*".into(), ne32(&cfg, 4))?];
    let proto_map = open("fw_proto")?;
    for p in 0..=255u32 {
        let id = proto_map.lookup(&u32s(p)).map_or(0, |v| ne32(&v, 0));
        if id != 0 {
            let name = Proto::from_number(p as u8)
                .map_or_else(|| p.to_string(), |x| format!("{x:?}").to_lowercase());
            proto.push(entry(name, id)?);
        }
    }
    let actions_map = open("fw_actions")?;
    let nrules = committed().map(|c| c.rules.len()).unwrap_or(0);
    let actions = (0..nrules as u32)
        .map(|i| match actions_map.lookup(&u32s(i)) {
            Some(v) if v[0] == 1 => Action::Accept,
            _ => Action::Drop,
        })
        .collect();
    Ok(Some(FirewallDump {
        variant_words,
        words,
        default_policy: if cfg[16] == 1 {
            Action::Accept
        } else {
            Action::Drop
        },
        accept_established: cfg[17] == 1,
        actions,
        vectors: vectors.keys().len(),
        src: prefixes("fw_src")?,
        dst: prefixes("fw_dst")?,
        proto,
        sport: ports("fw_sport", ne32(&cfg, 8))?,
        dport: ports("fw_dport", ne32(&cfg, 12))?,
    }))
}
