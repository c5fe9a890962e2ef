//! rulebench-agent: PID 1 and command agent of rulebench guests, plus the
//! identity server and traffic probe run inside the guest's namespaces.
//! One static binary, so the initramfs needs nothing else from us.

mod channel;
mod cli;
mod console;
mod exec;
mod exec_stream;
mod files;
mod handlers;
mod identity_server;
mod init;
mod load;
mod loopback;
mod mounts;
mod power;
mod probe;
mod reaper;
mod serve_loop;
mod virtio_port;

use cli::Mode;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // SAFETY: getpid has no preconditions.
    let is_pid1 = unsafe { libc::getpid() } == 1;
    let mode = match cli::parse(&args, is_pid1) {
        Ok(mode) => mode,
        Err(err) => {
            eprintln!("rulebench-agent: {err}\n{}", cli::USAGE);
            std::process::exit(2);
        }
    };
    match mode {
        Mode::Init => init::run(),
        Mode::Serve { identity, ports } => {
            if let Err(err) = identity_server::run(&identity, &ports) {
                eprintln!("rulebench-agent serve: {err}");
                std::process::exit(1);
            }
        }
        Mode::Probe => std::process::exit(probe::main()),
        Mode::Load => std::process::exit(load::main()),
    }
}
