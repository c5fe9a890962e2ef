//! Diagnostics for people reading the serial console or a server's log file.
//!
//! Everything goes to stderr: as PID 1 that is /dev/console, as `serve` it is
//! the log file the host chose, and as `probe` it stays out of the JSON on stdout.

/// Print one prefixed diagnostic line to stderr.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("rulebench-agent: {}", format_args!($($arg)*))
    };
}
