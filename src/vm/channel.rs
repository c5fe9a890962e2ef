//! Host side of the agent channel: one request at a time, answers matched by
//! id, reads sliced so the caller can check QEMU and the console while it waits.

use rulebench_proto::{
    write_frame, Envelope, FrameError, OutputStream, Request, Response, MAX_FRAME,
};
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
        alive: impl FnMut() -> Result<(), String>,
    ) -> Result<Response, ChannelError> {
        self.call_streaming(request, timeout, alive, |_, _| {})
    }

    /// Like [`call`](Self::call), but hands each `ExecOutput` partial
    /// answer to `on_output` as it arrives and returns the final answer.
    pub fn call_streaming(
        &mut self,
        request: Request,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
        mut on_output: impl FnMut(OutputStream, &[u8]),
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
                    match env.body {
                        Response::ExecOutput { stream, data } => {
                            on_output(stream, &data);
                            continue;
                        }
                        body => return Ok(body),
                    }
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
    fn streamed_output_is_handed_over_before_the_final_answer() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let mut chan = AgentChannel::new(host).unwrap();
        let t = std::thread::spawn(move || {
            let req: Envelope<Request> = read_frame(&mut guest).unwrap();
            for (id, data) in [
                (req.id, "one\n"),
                (req.id + 100, "stale\n"),
                (req.id, "two\n"),
            ] {
                let body = Response::ExecOutput {
                    stream: OutputStream::Stdout,
                    data: data.as_bytes().to_vec(),
                };
                write_frame(&mut guest, &Envelope { id, body }).unwrap();
            }
            let body = Response::FileWritten;
            write_frame(&mut guest, &Envelope { id: req.id, body }).unwrap();
            guest
        });
        let mut seen = Vec::new();
        let last = chan
            .call_streaming(
                Request::Ping,
                Duration::from_secs(5),
                || Ok(()),
                |s, d| seen.push((s, String::from_utf8_lossy(d).into_owned())),
            )
            .unwrap();
        assert_eq!(last, Response::FileWritten);
        assert_eq!(
            seen,
            vec![
                (OutputStream::Stdout, "one\n".to_string()),
                (OutputStream::Stdout, "two\n".to_string())
            ]
        );
        let _guest = t.join().unwrap();
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
