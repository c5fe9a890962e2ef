//! Kernel symbols for the profiler: /proc/kallsyms text symbols, and the
//! reduction of raw (instruction pointer, count) samples to functions —
//! a sample belongs to the nearest symbol at or below its address.

use std::collections::BTreeMap;

use rulebench_proto::ProfileFunction;

/// One text symbol: start address, name, module ("" for the kernel image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub name: String,
    pub module: String,
}

/// Text symbols of a /proc/kallsyms listing, by address. Data symbols are
/// left out so a sample never lands on a variable that happens to lie
/// between two functions.
pub fn parse_kallsyms(text: &str) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
            let kind = fields.next()?;
            let name = fields.next()?;
            if !matches!(kind, "t" | "T" | "w" | "W") {
                return None;
            }
            let module = fields
                .next()
                .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_default();
            Some(Symbol {
                addr,
                name: name.to_string(),
                module,
            })
        })
        .collect();
    out.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
    out
}

/// True when the listing shows real addresses (kptr_restrict hides them
/// as zeros from a reader the kernel does not trust).
pub fn addresses_visible(symbols: &[Symbol]) -> bool {
    symbols.iter().any(|s| s.addr != 0)
}

/// The symbol `ip` is in: the last one starting at or below it.
pub fn resolve(symbols: &[Symbol], ip: u64) -> Option<&Symbol> {
    let after = symbols.partition_point(|s| s.addr <= ip);
    after.checked_sub(1).map(|i| &symbols[i])
}

/// Samples per function, most first (ties by name), at most `top`; an
/// address below every symbol counts as `[unknown]`.
pub fn top_functions(
    symbols: &[Symbol],
    samples: impl IntoIterator<Item = (u64, u64)>,
    top: usize,
) -> Vec<ProfileFunction> {
    let mut by_function: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (ip, count) in samples {
        let key = resolve(symbols, ip).map_or_else(
            || ("[unknown]".to_string(), String::new()),
            |s| (s.name.clone(), s.module.clone()),
        );
        *by_function.entry(key).or_default() += count;
    }
    let mut out: Vec<ProfileFunction> = by_function
        .into_iter()
        .map(|((name, module), samples)| ProfileFunction {
            name,
            module,
            samples,
        })
        .collect();
    out.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
    out.truncate(top);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
ffffffff81000000 T _stext
ffffffff81001000 t do_one
ffffffff81002000 D some_data
ffffffff81003000 T do_two
ffffffffc0100000 t nf_tables_newset\t[nf_tables]
ffffffffc0100800 t __nft_set_trans_bind\t[nf_tables]
";

    #[test]
    fn text_symbols_with_their_modules() {
        let s = parse_kallsyms(LISTING);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "_stext",
                "do_one",
                "do_two",
                "nf_tables_newset",
                "__nft_set_trans_bind"
            ]
        );
        assert_eq!(s[3].module, "nf_tables");
        assert_eq!(s[0].module, "");
        assert!(addresses_visible(&s));
        assert!(!addresses_visible(&parse_kallsyms(
            "0000000000000000 T _stext\n0000000000000000 t do_one\n"
        )));
    }

    #[test]
    fn an_address_belongs_to_the_nearest_symbol_below() {
        let s = parse_kallsyms(LISTING);
        let name = |ip| resolve(&s, ip).map(|s| s.name.as_str());
        assert_eq!(name(0xffffffff81001000), Some("do_one"));
        // Past the data symbol: still the function before it.
        assert_eq!(name(0xffffffff81002500), Some("do_one"));
        assert_eq!(name(0xffffffffc0100900), Some("__nft_set_trans_bind"));
        assert_eq!(name(0xffffffff80000000), None);
    }

    #[test]
    fn functions_are_summed_and_ranked() {
        let s = parse_kallsyms(LISTING);
        let top = top_functions(
            &s,
            [
                (0xffffffffc0100010, 3),
                (0xffffffffc0100020, 4),
                (0xffffffffc0100810, 5),
                (0xffffffff81001010, 1),
                (0x10, 2),
            ],
            3,
        );
        let got: Vec<(&str, &str, u64)> = top
            .iter()
            .map(|f| (f.name.as_str(), f.module.as_str(), f.samples))
            .collect();
        assert_eq!(
            got,
            [
                ("nf_tables_newset", "nf_tables", 7),
                ("__nft_set_trans_bind", "nf_tables", 5),
                ("[unknown]", "", 2)
            ]
        );
    }
}
