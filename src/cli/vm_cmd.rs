use crate::image::{self, LockFile};
use crate::vm::{ExecRequest, Vm, VmError, VmOptions};
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
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

pub fn run(cmd: VmCommand) -> Result<()> {
    match cmd {
        VmCommand::Run {
            image,
            kernel,
            timeout,
            stdin,
            cmd,
        } => {
            let code = match run_once(image, kernel, timeout, stdin, cmd) {
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

fn run_once(
    image: Option<String>,
    kernel: Option<PathBuf>,
    timeout: u64,
    stdin: bool,
    cmd: Vec<String>,
) -> Result<i32> {
    let lock_path = image::lock_path(image.as_deref());
    let lock = LockFile::load(&lock_path)?;
    let built = image::build(&lock, true).context("building the guest image")?;
    let opts = VmOptions {
        kernel,
        ..VmOptions::default()
    };
    let mut vm = Vm::boot(&built, &opts).context("booting the guest")?;
    let mut input = Vec::new();
    if stdin {
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
    }
    let result = vm.exec_request(ExecRequest {
        argv: cmd,
        stdin: input,
        timeout_ms: timeout * 1000,
        env: Vec::new(),
    });
    let result = match result {
        Ok(r) => r,
        Err(e @ VmError::CommandTimeout { .. }) => return Err(e.into()),
        Err(e) => return Err(e).context("running the command in the guest"),
    };
    std::io::stdout().write_all(&result.stdout)?;
    std::io::stderr().write_all(&result.stderr)?;
    vm.shutdown()?;
    Ok(match (result.exit_code, result.signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => EXIT_INFRA,
    })
}
