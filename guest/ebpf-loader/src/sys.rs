//! Byte-level access to a pinned map through the bpf(2) syscall: the
//! loader works with values whose size depends on the pipeline variant
//! (bit vectors of MAX_WORDS words), which typed aya maps cannot express.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::MapData;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// The `bpf_attr` variant for element operations.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

pub struct RawMap {
    data: MapData,
    pub key_size: usize,
    pub value_size: usize,
    pub name: String,
}

impl RawMap {
    pub fn open(path: &Path) -> Result<RawMap> {
        let data = MapData::from_pin(path)
            .with_context(|| format!("opening pinned map {}", path.display()))?;
        let info = data.info().context("map info")?;
        Ok(RawMap {
            key_size: info.key_size() as usize,
            value_size: info.value_size() as usize,
            name: path.display().to_string(),
            data,
        })
    }

    fn call(&self, cmd: libc::c_long, key: *const u8, value: *const u8, flags: u64) -> i64 {
        let attr = ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: key as u64,
            value: value as u64,
            flags,
        };
        // SAFETY: attr points at live buffers of the sizes the kernel
        // knows for this map (checked by the callers below).
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const ElemAttr,
                std::mem::size_of::<ElemAttr>() as u32,
            )
        }
    }

    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        assert_eq!((key.len(), value.len()), (self.key_size, self.value_size));
        if self.call(BPF_MAP_UPDATE_ELEM, key.as_ptr(), value.as_ptr(), 0) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("updating an entry of {}", self.name));
        }
        Ok(())
    }

    pub fn delete(&self, key: &[u8]) -> Result<()> {
        assert_eq!(key.len(), self.key_size);
        if self.call(BPF_MAP_DELETE_ELEM, key.as_ptr(), std::ptr::null(), 0) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("deleting an entry of {}", self.name));
        }
        Ok(())
    }

    pub fn lookup(&self, key: &[u8]) -> Option<Vec<u8>> {
        assert_eq!(key.len(), self.key_size);
        let mut value = vec![0u8; self.value_size];
        (self.call(BPF_MAP_LOOKUP_ELEM, key.as_ptr(), value.as_mut_ptr(), 0) == 0).then_some(value)
    }

    /// All keys (hash, LPM and array maps alike).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut next = vec![0u8; self.key_size];
        let mut prev: Option<Vec<u8>> = None;
        loop {
            let key_ptr = prev.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
            if self.call(BPF_MAP_GET_NEXT_KEY, key_ptr, next.as_mut_ptr(), 0) != 0 {
                return out;
            }
            out.push(next.clone());
            prev = Some(next.clone());
        }
    }

    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.keys()
            .into_iter()
            .filter_map(|k| self.lookup(&k).map(|v| (k, v)))
            .collect()
    }
}
