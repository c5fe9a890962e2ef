//! Which job this process does, from its argv.

pub const USAGE: &str = "\
usage:
  rulebench-agent init                          run as the guest's PID 1 (automatic when PID is 1)
  rulebench-agent serve --identity NAME --port P [--port P ...]
                                                answer TCP and UDP on 0.0.0.0:P with `NAME <ip>:<port>`
  rulebench-agent probe                         ProbePlan JSON on stdin -> ProbeReport JSON on stdout
  rulebench-agent load                          LoadPlan JSON on stdin -> LoadReport JSON on stdout (TCP_CRR-like)";

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Init,
    Serve { identity: String, ports: Vec<u16> },
    Probe,
    Load,
}

/// `args` excludes argv[0]. As PID 1 the arguments are whatever the kernel
/// passed through from its command line, so they are ignored.
pub fn parse(args: &[String], is_pid1: bool) -> Result<Mode, String> {
    if is_pid1 {
        return Ok(Mode::Init);
    }
    match args.first().map(String::as_str) {
        Some("init") => Ok(Mode::Init),
        Some("probe") if args.len() == 1 => Ok(Mode::Probe),
        Some("probe") => Err("probe takes no arguments (the plan comes on stdin)".into()),
        Some("load") if args.len() == 1 => Ok(Mode::Load),
        Some("load") => Err("load takes no arguments (the plan comes on stdin)".into()),
        Some("serve") => parse_serve(&args[1..]),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("no command given".into()),
    }
}

fn parse_serve(args: &[String]) -> Result<Mode, String> {
    let mut identity = None;
    let mut ports = Vec::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--identity" => identity = Some(value()?.clone()),
            "--port" => {
                let text = value()?;
                let port = text
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("--port {text:?} is not a port number 1-65535"))?;
                ports.push(port);
            }
            other => return Err(format!("serve: unknown option {other:?}")),
        }
    }
    let identity = identity.ok_or("serve needs --identity NAME")?;
    if identity.is_empty() || identity.chars().any(char::is_whitespace) {
        // The answer line is `NAME ADDR`; whitespace would make it ambiguous.
        return Err(format!(
            "--identity {identity:?} must be non-empty without whitespace"
        ));
    }
    if ports.is_empty() {
        return Err("serve needs at least one --port".into());
    }
    Ok(Mode::Serve { identity, ports })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn pid1_is_init_whatever_the_kernel_passed() {
        assert_eq!(parse(&args("quiet splash"), true), Ok(Mode::Init));
        assert_eq!(parse(&args("init"), false), Ok(Mode::Init));
    }

    #[test]
    fn serve_takes_identity_and_repeated_ports() {
        assert_eq!(
            parse(&args("serve --identity be-3 --port 80 --port 8080"), false),
            Ok(Mode::Serve {
                identity: "be-3".into(),
                ports: vec![80, 8080]
            })
        );
    }

    #[test]
    fn serve_rejects_bad_input() {
        for bad in [
            "serve --port 80",
            "serve --identity x",
            "serve --identity x --port 0",
            "serve --identity x --port http",
            "serve --identity x --port",
            "serve --identity x --port 80 --verbose",
        ] {
            assert!(parse(&args(bad), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn probe_and_unknown_commands() {
        assert_eq!(parse(&args("probe"), false), Ok(Mode::Probe));
        assert!(parse(&args("probe extra"), false).is_err());
        assert_eq!(parse(&args("load"), false), Ok(Mode::Load));
        assert!(parse(&args("load x"), false).is_err());
        assert!(parse(&args("frobnicate"), false).is_err());
        assert!(parse(&[], false).is_err());
    }
}
