use crate::image::{self, LockFile};
use crate::vm::share::parse_share;
use crate::vm::{ExecRequest, ExecStreamRequest, OutputStream, Vm, VmError, VmOptions};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Exit code for infrastructure failures (boot, panic, agent), as sysexits' EX_UNAVAILABLE.
pub const EXIT_INFRA: i32 = 69;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a fresh guest, run CMD through the agent, exit with its exit code.
    Run {
        /// Image name under images/ or a lock file path.
        #[arg(long)]
        image: Option<String>,
        /// Boot this bzImage instead of the image's kernel.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Guest-side timeout for CMD in seconds (0 = none).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Pass this process's stdin to CMD.
        #[arg(long)]
        stdin: bool,
        /// Make host directory DIR visible in the guest at GUEST_PATH
        /// (default /share) over virtio-fs, or copied in when virtiofsd or
        /// the image's virtiofs module is missing. Repeatable; CMD runs in
        /// the first share.
        #[arg(long = "share", value_name = "DIR[:GUEST_PATH]")]
        shares: Vec<String>,
        /// Shares are read-only in the guest.
        #[arg(long)]
        ro: bool,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

/// What one `vm run` does.
struct RunPlan {
    image: Option<String>,
    kernel: Option<PathBuf>,
    timeout: u64,
    stdin: bool,
    shares: Vec<String>,
    ro: bool,
    cmd: Vec<String>,
}

pub fn run(cmd: VmCommand) -> Result<()> {
    match cmd {
        VmCommand::Run {
            image,
            kernel,
            timeout,
            stdin,
            shares,
            ro,
            cmd,
        } => {
            let plan = RunPlan {
                image,
                kernel,
                timeout,
                stdin,
                shares,
                ro,
                cmd,
            };
            let code = match run_once(plan) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("rulebench: {e:#}");
                    EXIT_INFRA
                }
            };
            std::process::exit(code);
        }
    }
}

fn run_once(plan: RunPlan) -> Result<i32> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let shares = plan
        .shares
        .iter()
        .map(|spec| parse_share(spec, plan.ro, &cwd))
        .collect::<Result<Vec<_>, _>>()?;
    let workdir = shares
        .first()
        .map(|s| s.guest_path.clone())
        .unwrap_or_default();
    let lock_path = image::lock_path(plan.image.as_deref());
    let lock = LockFile::load(&lock_path)?;
    let built = image::build(&lock, true).context("building the guest image")?;
    let opts = VmOptions {
        kernel: plan.kernel,
        shares,
        ..VmOptions::default()
    };
    let mut vm = Vm::boot(&built, &opts).context("booting the guest")?;
    let mut input = Vec::new();
    if plan.stdin {
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
    }
    let request = ExecStreamRequest {
        exec: ExecRequest {
            argv: plan.cmd,
            stdin: input,
            timeout_ms: plan.timeout * 1000,
            env: Vec::new(),
        },
        cwd: workdir,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let result = vm.exec_streaming(request, |stream, data| {
        // A closed host pipe (`| head`) must not end the guest command early.
        let _ = match stream {
            OutputStream::Stdout => out.write_all(data).and_then(|()| out.flush()),
            OutputStream::Stderr => err.write_all(data).and_then(|()| err.flush()),
        };
    });
    let result = match result {
        Ok(r) => r,
        Err(e @ VmError::CommandTimeout { .. }) => return Err(e.into()),
        Err(e) => return Err(e).context("running the command in the guest"),
    };
    vm.shutdown()?;
    Ok(exit_code(result.exit_code, result.signal))
}

/// The command's exit code as the shell would report it.
fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => EXIT_INFRA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(Some(3), None), 3);
        assert_eq!(exit_code(None, Some(9)), 137);
        assert_eq!(exit_code(None, None), EXIT_INFRA);
    }
}
