//! The service load balancer: load + attach once, then keep the pinned
//! `services` map equal to the input. One service = one map value, so
//! every service change is a single atomic map update.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use aya::programs::SchedClassifier;
use aya::Ebpf;

use crate::model::{Proto, Service, ServiceKey, ServiceOp, ServicesInput, MAX_BACKENDS};
use crate::sys::RawMap;
use crate::{attach, pins};

pub const OBJECT: &str = "services.bpf.o";
pub const PROGRAM: &str = "services_ingress";
const MAPS: [&str; 4] = ["services", "ct_forward", "ct_reverse", "affinity"];
const VALUE_SIZE: usize = 8 + 8 * MAX_BACKENDS;

fn map_path(name: &str) -> PathBuf {
    pins::services_dir().join(name)
}

pub fn is_loaded() -> bool {
    map_path("services").exists()
}

fn encode_key(k: &ServiceKey) -> Vec<u8> {
    let mut b = k.vip.octets().to_vec();
    b.extend(k.port.to_be_bytes());
    b.extend([k.proto.number(), 0]);
    b
}

fn decode_key(b: &[u8]) -> Result<ServiceKey> {
    Ok(ServiceKey {
        vip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port: u16::from_be_bytes([b[4], b[5]]),
        proto: Proto::from_number(b[6])
            .with_context(|| format!("proto {} in services map", b[6]))?,
    })
}

fn encode_value(s: &Service) -> Result<Vec<u8>> {
    let eps = s.endpoints()?;
    let mut b = Vec::with_capacity(VALUE_SIZE);
    b.extend((eps.len() as u32).to_ne_bytes());
    b.extend(s.affinity_timeout_s.to_ne_bytes());
    for (ip, port) in &eps {
        b.extend(ip.octets());
        b.extend(port.to_be_bytes());
        b.extend([0, 0]);
    }
    b.resize(VALUE_SIZE, 0);
    Ok(b)
}

fn decode_value(key: ServiceKey, b: &[u8]) -> Service {
    let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let count = (word(0) as usize).min(MAX_BACKENDS);
    let backends = (0..count)
        .map(|i| {
            let e = &b[8 + 8 * i..];
            format!(
                "{}:{}",
                Ipv4Addr::new(e[0], e[1], e[2], e[3]),
                u16::from_be_bytes([e[4], e[5]])
            )
        })
        .collect();
    Service {
        vip: key.vip,
        port: key.port,
        proto: key.proto,
        affinity_timeout_s: word(4),
        backends,
    }
}

fn load_and_attach() -> Result<()> {
    pins::ensure_bpffs()?;
    let path = pins::object(OBJECT);
    let mut ebpf = Ebpf::load_file(&path).with_context(|| format!("loading {}", path.display()))?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .with_context(|| format!("{} has no program {PROGRAM}", path.display()))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("verifying {PROGRAM} from {}", path.display()))?;
    std::fs::create_dir_all(pins::services_dir())?;
    for name in MAPS {
        ebpf.map(name)
            .with_context(|| format!("{} has no map {name}", path.display()))?
            .pin(map_path(name))
            .with_context(|| format!("pinning map {name}"))?;
    }
    let prog: &mut SchedClassifier = ebpf.program_mut(PROGRAM).expect("checked").try_into()?;
    attach::attach_everywhere(prog, attach::SERVICES_PRIORITY)?;
    Ok(())
}

fn services_map() -> Result<RawMap> {
    let map = RawMap::open(&map_path("services"))?;
    if map.value_size != VALUE_SIZE {
        bail!(
            "services map value is {} bytes, loader expects {VALUE_SIZE}",
            map.value_size
        );
    }
    Ok(map)
}

/// Makes the dataplane serve exactly `input` (loading it on first use).
pub fn load(input: &ServicesInput) -> Result<()> {
    input.validate()?;
    let values = input
        .services
        .iter()
        .map(|s| Ok((encode_key(&s.key()), encode_value(s)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    if !is_loaded() {
        load_and_attach()?;
    }
    let map = services_map()?;
    for key in map.keys() {
        if !values.contains_key(&key) {
            map.delete(&key)?;
        }
    }
    for (k, v) in &values {
        map.update(k, v)?;
    }
    Ok(())
}

pub fn update(op: &ServiceOp) -> Result<()> {
    if !is_loaded() {
        bail!("no services dataplane loaded: run `rulebench-ebpf services load` first");
    }
    let map = services_map()?;
    match op {
        ServiceOp::Upsert(s) => map.update(&encode_key(&s.key()), &encode_value(s)?),
        ServiceOp::Delete(k) => map.delete(&encode_key(k)),
    }
}

/// The services map, sorted by (VIP, port, proto). Conntrack maps are left
/// out: their content depends on traffic, not on the ruleset.
pub fn dump() -> Result<Option<Vec<Service>>> {
    if !is_loaded() {
        return Ok(None);
    }
    let mut out = services_map()?
        .entries()
        .into_iter()
        .map(|(k, v)| Ok(decode_value(decode_key(&k)?, &v)))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(Service::key);
    Ok(Some(out))
}

pub fn reset() -> Result<()> {
    attach::detach_everywhere(PROGRAM)?;
    pins::remove_dir(&pins::services_dir())
}
