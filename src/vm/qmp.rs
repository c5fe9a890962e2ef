//! QEMU lifecycle over QMP (qapi crate): handshake, status, quit.

use qapi::{qmp, Qmp};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::time::Duration;

type Stream = qapi::Stream<BufReader<UnixStream>, UnixStream>;

pub struct QmpClient {
    qmp: Qmp<Stream>,
    pub qemu_version: String,
}

impl QmpClient {
    pub fn connect(stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| format!("QMP socket: {e}"))?;
        let reader = stream.try_clone().map_err(|e| format!("QMP socket: {e}"))?;
        let mut qmp = Qmp::new(qapi::Stream::new(BufReader::new(reader), stream));
        let info = qmp.handshake().map_err(|e| format!("QMP handshake: {e}"))?;
        let v = &info.version.qemu;
        Ok(QmpClient {
            qmp,
            qemu_version: format!("{}.{}.{}", v.major, v.minor, v.micro),
        })
    }

    /// e.g. "running", "paused", "shutdown".
    pub fn status(&mut self) -> Result<String, String> {
        let st = self
            .qmp
            .execute(&qmp::query_status {})
            .map_err(|e| format!("QMP query-status: {e}"))?;
        Ok(format!("{:?}", st.status).to_lowercase())
    }

    pub fn quit(&mut self) -> Result<(), String> {
        self.qmp
            .execute(&qmp::quit {})
            .map(|_| ())
            .map_err(|e| format!("QMP quit: {e}"))
    }
}

impl QmpClient {
    pub fn stop(&mut self) -> Result<(), String> {
        self.qmp
            .execute(&qmp::stop {})
            .map(|_| ())
            .map_err(|e| format!("QMP stop: {e}"))
    }

    pub fn cont(&mut self) -> Result<(), String> {
        self.qmp
            .execute(&qmp::cont {})
            .map(|_| ())
            .map_err(|e| format!("QMP cont: {e}"))
    }

    /// Start saving the (stopped) guest's state through `uri`.
    pub fn migrate(&mut self, uri: &str) -> Result<(), String> {
        self.qmp
            .execute(&qmp::migrate {
                uri: Some(uri.to_string()),
                channels: None,
                detach: None,
                resume: None,
            })
            .map(|_| ())
            .map_err(|e| format!("QMP migrate: {e}"))
    }

    /// Start loading state into a QEMU started with `-incoming defer`.
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), String> {
        self.qmp
            .execute(&qmp::migrate_incoming {
                uri: Some(uri.to_string()),
                channels: None,
                exit_on_error: None,
            })
            .map(|_| ())
            .map_err(|e| format!("QMP migrate-incoming: {e}"))
    }

    /// Poll query-migrate until it completes, fails, or `timeout` passes.
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<(), String> {
        let started = std::time::Instant::now();
        loop {
            let info = self
                .qmp
                .execute(&qmp::query_migrate {})
                .map_err(|e| format!("QMP query-migrate: {e}"))?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(qmp::MigrationStatus::failed) | Some(qmp::MigrationStatus::cancelled) => {
                    return Err(format!(
                        "migration {:?}: {}",
                        info.status,
                        info.error_desc.unwrap_or_default()
                    ))
                }
                _ => {}
            }
            if started.elapsed() > timeout {
                return Err(format!("migration did not complete within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
