//! Host side of the agent channel: one request at a time, answers matched by
//! id, reads sliced so the caller can check QEMU and the console while it waits.

use rulebench_proto::{write_frame, Envelope, FrameError, Request, Response, MAX_FRAME};
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const SLICE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("agent channel closed by the guest side")]
    Closed,
    #[error("no answer from the guest agent within {0:?}")]
    Deadline(Duration),
    /// The liveness check failed (QEMU exited, guest panicked); its message.
    #[error("{0}")]
    Dead(String),
}

pub struct AgentChannel {
    stream: UnixStream,
    next_id: u64,
    buf: Vec<u8>,
}

/// Take one complete frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len as u64));
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf[4..total].to_vec();
    buf.drain(..total);
    Ok(Some(body))
}

impl AgentChannel {
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(SLICE))?;
        Ok(AgentChannel {
            stream,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    pub fn call(
        &mut self,
        request: Request,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<Response, ChannelError> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &Envelope { id, body: request })?;
        let started = Instant::now();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            while let Some(body) = take_frame(&mut self.buf)? {
                let env: Envelope<Response> =
                    bincode::deserialize(&body).map_err(FrameError::Codec)?;
                if env.id == id {
                    return Ok(env.body);
                }
                // A stale answer to a request we gave up on: drop it.
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    alive().map_err(ChannelError::Dead)?;
                    if started.elapsed() > timeout {
                        return Err(ChannelError::Deadline(timeout));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebench_proto::read_frame;

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let mut wire = Vec::new();
        write_frame(
            &mut wire,
            &Envelope {
                id: 1,
                body: Response::FileWritten,
            },
        )
        .unwrap();
        let mut buf = wire[..3].to_vec();
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&wire[3..]);
        assert!(take_frame(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
    }

    #[test]
    fn stale_answers_are_skipped_and_liveness_errors_surface() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let mut chan = AgentChannel::new(host).unwrap();
        let t = std::thread::spawn(move || {
            let req: Envelope<Request> = read_frame(&mut guest).unwrap();
            write_frame(
                &mut guest,
                &Envelope {
                    id: 999,
                    body: Response::FileWritten,
                },
            )
            .unwrap();
            write_frame(
                &mut guest,
                &Envelope {
                    id: req.id,
                    body: Response::PoweringOff,
                },
            )
            .unwrap();
            guest
        });
        let got = chan
            .call(Request::Ping, Duration::from_secs(5), || Ok(()))
            .unwrap();
        assert_eq!(got, Response::PoweringOff);
        let _guest = t.join().unwrap();
        let err = chan
            .call(Request::Ping, Duration::from_secs(5), || {
                Err("QEMU exited".into())
            })
            .unwrap_err();
        assert!(err.to_string().contains("QEMU exited"));
    }
}
