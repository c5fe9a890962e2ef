//! Where Debian packages come from: the host's own apt configuration (or
//! `RULEBENCH_DEBIAN_MIRROR`), so the repository never names a mirror.

use std::path::Path;

pub const MIRROR_ENV: &str = "RULEBENCH_DEBIAN_MIRROR";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "no Debian mirror found in the host's apt configuration \
         (/etc/apt/sources.list, /etc/apt/sources.list.d/*); set {MIRROR_ENV}=<mirror URI>"
    )]
    NotFound,
}

/// The mirror URI: the env override, else the first non-security `deb`
/// source of the host.
pub fn host_mirror() -> Result<String, MirrorError> {
    if let Ok(uri) = std::env::var(MIRROR_ENV) {
        if !uri.trim().is_empty() {
            return Ok(uri.trim().trim_end_matches('/').to_string());
        }
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("sources.list".to_string(), t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut entries: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push((file_name(&p), t));
            }
        }
    }
    texts
        .iter()
        .find_map(|(name, text)| {
            if name.ends_with(".sources") {
                mirror_from_deb822(text)
            } else if name.ends_with(".list") {
                mirror_from_one_line(text)
            } else {
                None
            }
        })
        .ok_or(MirrorError::NotFound)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// First URI of a deb822 stanza of type `deb` whose suites are not security ones.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let mut types = "";
        let mut uris = "";
        let mut suites = "";
        let mut enabled = true;
        for line in stanza.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "types" => types = value.trim(),
                    "uris" => uris = value.trim(),
                    "suites" => suites = value.trim(),
                    "enabled" => enabled = value.trim() != "no",
                    _ => {}
                }
            }
        }
        let is_security = suites.split_whitespace().any(|s| s.contains("security"));
        if enabled && types.split_whitespace().any(|t| t == "deb") && !is_security {
            if let Some(uri) = uris.split_whitespace().next() {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// First `deb URI suite ...` line (one-line format) that is not a security suite.
pub fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("deb ")?;
        let mut words = rest.split_whitespace().peekable();
        if words.peek()?.starts_with('[') {
            // Options may contain spaces inside the brackets.
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let uri = words.next()?;
        let suite = words.next()?;
        (!suite.contains("security")).then(|| uri.trim_end_matches('/').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_skips_security_and_comments() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        let only_security = "Types: deb\nURIs: http://sec.example/x\nSuites: bookworm-security\n";
        assert_eq!(mirror_from_deb822(only_security), None);
    }

    #[test]
    fn one_line_with_options() {
        let text = "# deb http://old.example/ x main\ndeb http://sec.example/ bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_one_line(text).as_deref(),
            Some("http://m.example/debian")
        );
    }
}
