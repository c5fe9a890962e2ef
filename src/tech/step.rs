//! The unit of work a renderer hands to the VM side: one guest command.

/// One command run in the guest's root namespace through the agent, in
/// order. A step fails the push when it exits non-zero, unless
/// `tolerate_failure` is set (used only for "already exists / does not
/// exist" cases that the tools cannot express idempotently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    /// Fed to the command's stdin (empty: no input).
    pub stdin: String,
    pub tolerate_failure: bool,
}

impl Step {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Step {
        Step {
            argv: argv.iter().map(|a| a.as_ref().to_string()).collect(),
            stdin: String::new(),
            tolerate_failure: false,
        }
    }

    pub fn with_stdin<S: AsRef<str>>(argv: &[S], stdin: impl Into<String>) -> Step {
        Step {
            stdin: stdin.into(),
            ..Step::new(argv)
        }
    }

    /// A `sh -c SCRIPT` step, for the few cases that need a lookup in the
    /// guest before acting (e.g. an nft rule handle).
    pub fn shell(script: impl Into<String>) -> Step {
        Step::new(&["sh".to_string(), "-c".to_string(), script.into()])
    }

    pub fn tolerant(mut self) -> Step {
        self.tolerate_failure = true;
        self
    }

    /// The command line as a person would type it (for logs and errors).
    pub fn display(&self) -> String {
        let mut s = self
            .argv
            .iter()
            .map(|a| {
                if a.is_empty()
                    || a.contains(|c: char| c.is_whitespace() || "\"'$|;&<>".contains(c))
                {
                    format!("'{}'", a.replace('\'', r"'\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if !self.stdin.is_empty() {
            s.push_str(&format!(" <<< ({} lines)", self.stdin.lines().count()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes() {
        let s = Step::with_stdin(&["nft", "-f", "-"], "a\nb\n");
        assert_eq!(s.display(), "nft -f - <<< (2 lines)");
        assert_eq!(Step::shell("echo $x").display(), "sh -c 'echo $x'");
        assert!(Step::new(&["ip"]).tolerant().tolerate_failure);
    }
}
