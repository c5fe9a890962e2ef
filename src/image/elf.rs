//! The two things the image builder needs from ELF files: which shared
//! libraries a binary needs, and a kernel module's declared dependencies.

use goblin::elf::Elf;

#[derive(Debug, Default, PartialEq)]
pub struct DynamicNeeds {
    pub interpreter: Option<String>,
    pub libraries: Vec<String>,
}

/// `None` when the bytes are not an ELF file (scripts, data).
pub fn dynamic_needs(bytes: &[u8]) -> Option<DynamicNeeds> {
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    let elf = Elf::parse(bytes).ok()?;
    Some(DynamicNeeds {
        interpreter: elf.interpreter.map(str::to_string),
        libraries: elf.libraries.iter().map(|s| s.to_string()).collect(),
    })
}

/// Names from the `depends=` entry of a module's `.modinfo` section.
pub fn module_depends(bytes: &[u8]) -> Option<Vec<String>> {
    let elf = Elf::parse(bytes).ok()?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))?;
    let start = section.sh_offset as usize;
    let data = bytes.get(start..start + section.sh_size as usize)?;
    Some(parse_modinfo_depends(data))
}

/// `.modinfo` is a sequence of NUL-terminated `key=value` strings.
pub fn parse_modinfo_depends(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.strip_prefix("depends="))
        .flat_map(|list| list.split(','))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_are_split() {
        let data = b"license=GPL\0depends=nf_conntrack,nf_defrag_ipv4\0vermagic=5.10\0";
        assert_eq!(
            parse_modinfo_depends(data),
            vec!["nf_conntrack", "nf_defrag_ipv4"]
        );
        assert!(parse_modinfo_depends(b"depends=\0").is_empty());
    }

    #[test]
    fn non_elf_has_no_needs() {
        assert_eq!(dynamic_needs(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn host_binary_has_interpreter_and_libc() {
        let bytes = std::fs::read("/bin/sh").unwrap();
        let needs = dynamic_needs(&bytes).unwrap();
        assert!(needs.interpreter.is_some());
        assert!(needs.libraries.iter().any(|l| l.starts_with("libc.so")));
    }
}
