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
