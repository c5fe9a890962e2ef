//! The request loop on the host channel.
//!
//! The virtio-serial port is not a stream that ends: while no host is
//! connected, reads report EOF; when a host (re)connects — for example a new
//! QEMU restored from a snapshot — data flows again on the same fd. So a
//! disconnect is an ordinary event here: drop whatever partial frame the old
//! host left behind, pause briefly, and keep reading.

use crate::handlers::After;
use crate::say;
use rulebench_proto::{
    read_frame, write_frame, Envelope, FrameError, Request, Response, MAX_FRAME,
};
use std::io;
use std::time::Duration;

pub enum ReadEvent {
    Data(usize),
    /// No host on the other end (EOF / hang-up); more data may come later.
    Disconnected,
}

pub enum WriteEvent {
    Written,
    /// The host left; the rest of the frame was dropped.
    Disconnected,
}

/// A byte channel to the host that survives the host going away.
pub trait Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadEvent>;
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<WriteEvent>;
}

/// Serve requests one at a time, in order, until a handler asks to power off
/// (its response has been sent by then). `Err` only for a broken channel.
/// A handler may send partial responses (streamed output) through the
/// emitter it is given; they carry the request's id like the final one.
pub fn serve<C, H>(channel: &mut C, mut handle: H, reconnect_pause: Duration) -> io::Result<()>
where
    C: Channel,
    H: FnMut(Request, &mut dyn FnMut(Response) -> bool) -> (Response, After),
{
    let mut frames = FrameBuffer::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(frame) = frames.next_frame() {
            let (id, response, after) = match frame {
                Frame::Request(Envelope { id, body }) => {
                    let mut broken: Option<io::Error> = None;
                    let mut emit = |partial: Response| {
                        if broken.is_some() {
                            return false;
                        }
                        match channel.write_all(&encode_response(id, partial)) {
                            Ok(WriteEvent::Written) => true,
                            Ok(WriteEvent::Disconnected) => false,
                            Err(err) => {
                                broken = Some(err);
                                false
                            }
                        }
                    };
                    let (response, after) = handle(body, &mut emit);
                    if let Some(err) = broken {
                        return Err(err);
                    }
                    (id, response, after)
                }
                Frame::Undecodable { id, error } => {
                    let message = format!("agent cannot decode request {id}: {error}");
                    say!("{message}");
                    (id, Response::Error { message }, After::Continue)
                }
            };
            match channel.write_all(&encode_response(id, response))? {
                WriteEvent::Written => {}
                WriteEvent::Disconnected => {
                    say!("host left before the answer to request {id}; answer dropped");
                    frames.clear();
                }
            }
            if after == After::PowerOff {
                return Ok(());
            }
        }
        match channel.read(&mut chunk)? {
            ReadEvent::Data(n) => frames.push(&chunk[..n]),
            ReadEvent::Disconnected => {
                frames.clear();
                std::thread::sleep(reconnect_pause);
            }
        }
    }
}

fn encode_response(id: u64, body: Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    match write_frame(&mut bytes, &Envelope { id, body }) {
        Ok(()) => bytes,
        Err(err) => {
            // Typically a GetFile or Exec output over MAX_FRAME: tell the host
            // instead of leaving it waiting.
            bytes.clear();
            let body = Response::Error {
                message: format!("agent cannot encode the response: {err}"),
            };
            write_frame(&mut bytes, &Envelope { id, body })
                .expect("a short error response always encodes");
            bytes
        }
    }
}

enum Frame {
    Request(Envelope<Request>),
    /// A complete frame whose body did not decode; bincode puts the envelope
    /// id first, so the host can still be told which request failed.
    Undecodable {
        id: u64,
        error: String,
    },
}

/// Splits received bytes into frames (u32 LE length + body).
#[derive(Default)]
struct FrameBuffer {
    pending: Vec<u8>,
    /// After an impossible length the frame boundaries are lost; ignore
    /// everything until the host disconnects and starts afresh.
    desynced: bool,
}

impl FrameBuffer {
    fn push(&mut self, bytes: &[u8]) {
        if !self.desynced {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.desynced = false;
    }

    fn next_frame(&mut self) -> Option<Frame> {
        let header: [u8; 4] = self.pending.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(header);
        if len > MAX_FRAME {
            say!(
                "frame length {len} exceeds {MAX_FRAME}; ignoring input until the host reconnects"
            );
            self.pending.clear();
            self.desynced = true;
            return None;
        }
        let total = 4 + len as usize;
        if self.pending.len() < total {
            return None;
        }
        let frame: Vec<u8> = self.pending.drain(..total).collect();
        Some(
            match read_frame::<_, Envelope<Request>>(&mut frame.as_slice()) {
                Ok(envelope) => Frame::Request(envelope),
                Err(err) => {
                    let id = frame
                        .get(4..12)
                        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                    let error = match err {
                        FrameError::Codec(e) => e.to_string(),
                        other => other.to_string(),
                    };
                    Frame::Undecodable { id, error }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::FdChannel;
    use std::collections::VecDeque;
    use std::os::unix::net::UnixStream;

    fn frame(id: u64, body: Request) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Envelope { id, body }).unwrap();
        bytes
    }

    fn decode_all(mut bytes: &[u8]) -> Vec<Envelope<Response>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(read_frame(&mut bytes).unwrap());
        }
        out
    }

    /// Plays back reads (Some = data, None = host gone) and records writes.
    /// When the script runs out it fails, which ends `serve`.
    struct ScriptedChannel {
        reads: VecDeque<Option<Vec<u8>>>,
        written: Vec<u8>,
    }

    impl Channel for ScriptedChannel {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadEvent> {
            match self.reads.pop_front() {
                Some(Some(data)) => {
                    assert!(data.len() <= buf.len());
                    buf[..data.len()].copy_from_slice(&data);
                    Ok(ReadEvent::Data(data.len()))
                }
                Some(None) => Ok(ReadEvent::Disconnected),
                None => Err(io::Error::other("script finished")),
            }
        }

        fn write_all(&mut self, bytes: &[u8]) -> io::Result<WriteEvent> {
            self.written.extend_from_slice(bytes);
            Ok(WriteEvent::Written)
        }
    }

    fn echo_handler(request: Request, emit: &mut dyn FnMut(Response) -> bool) -> (Response, After) {
        match request {
            Request::ExecStream(req) => {
                for word in &req.exec.argv {
                    emit(Response::ExecOutput {
                        stream: rulebench_proto::OutputStream::Stdout,
                        data: word.clone().into_bytes(),
                    });
                }
                (Response::FileWritten, After::Continue)
            }
            Request::GetFile { path } => (
                Response::File {
                    contents: path.into_bytes(),
                },
                After::Continue,
            ),
            Request::PowerOff => (Response::PoweringOff, After::PowerOff),
            other => (
                Response::Error {
                    message: format!("{other:?}"),
                },
                After::Continue,
            ),
        }
    }

    fn get(id: u64, path: &str) -> Vec<u8> {
        frame(id, Request::GetFile { path: path.into() })
    }

    #[test]
    fn partial_frame_is_dropped_on_disconnect_and_serving_continues() {
        let first = get(1, "/one");
        let abandoned = get(2, "/abandoned");
        let after_reconnect = get(3, "/three");
        // Frame 1 split over two reads, then half of frame 2, the host goes
        // away, and a new host sends frame 3 and then a frame 4 split in bytes.
        let mut reads: VecDeque<Option<Vec<u8>>> = VecDeque::new();
        reads.push_back(Some(first[..3].to_vec()));
        reads.push_back(Some(first[3..].to_vec()));
        reads.push_back(Some(abandoned[..abandoned.len() / 2].to_vec()));
        reads.push_back(None);
        reads.push_back(None);
        reads.push_back(Some(after_reconnect));
        for byte in get(4, "/four") {
            reads.push_back(Some(vec![byte]));
        }
        let mut channel = ScriptedChannel {
            reads,
            written: Vec::new(),
        };
        let err = serve(&mut channel, echo_handler, Duration::from_millis(1)).unwrap_err();
        assert_eq!(err.to_string(), "script finished");
        let answers = decode_all(&channel.written);
        let seen: Vec<(u64, Response)> = answers.into_iter().map(|e| (e.id, e.body)).collect();
        let file = |p: &str| Response::File {
            contents: p.as_bytes().to_vec(),
        };
        assert_eq!(
            seen,
            vec![(1, file("/one")), (3, file("/three")), (4, file("/four"))]
        );
    }

    #[test]
    fn partial_responses_carry_the_request_id_and_precede_the_last() {
        let req = Request::ExecStream(rulebench_proto::ExecStreamRequest {
            exec: rulebench_proto::ExecRequest {
                argv: vec!["a".into(), "b".into()],
                ..Default::default()
            },
            cwd: String::new(),
        });
        let mut channel = ScriptedChannel {
            reads: VecDeque::from([Some(frame(9, req)), Some(get(10, "/x"))]),
            written: Vec::new(),
        };
        serve(&mut channel, echo_handler, Duration::from_millis(1)).unwrap_err();
        let seen: Vec<(u64, Response)> = decode_all(&channel.written)
            .into_iter()
            .map(|e| (e.id, e.body))
            .collect();
        let out = |s: &str| Response::ExecOutput {
            stream: rulebench_proto::OutputStream::Stdout,
            data: s.as_bytes().to_vec(),
        };
        assert_eq!(
            seen,
            vec![
                (9, out("a")),
                (9, out("b")),
                (9, Response::FileWritten),
                (
                    10,
                    Response::File {
                        contents: b"/x".to_vec()
                    }
                )
            ]
        );
    }

    #[test]
    fn undecodable_request_gets_an_error_with_its_id() {
        let mut bad = Vec::new();
        bad.extend_from_slice(&12u32.to_le_bytes());
        bad.extend_from_slice(&77u64.to_le_bytes());
        bad.extend_from_slice(&999u32.to_le_bytes()); // no such Request variant
        let mut channel = ScriptedChannel {
            reads: VecDeque::from([Some(bad), Some(get(78, "/ok"))]),
            written: Vec::new(),
        };
        serve(&mut channel, echo_handler, Duration::from_millis(1)).unwrap_err();
        let answers = decode_all(&channel.written);
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].id, 77);
        assert!(matches!(&answers[0].body, Response::Error { .. }));
        assert_eq!(answers[1].id, 78);
    }

    #[test]
    fn oversized_length_ignores_input_until_reconnect() {
        let mut reads = VecDeque::new();
        reads.push_back(Some((MAX_FRAME + 1).to_le_bytes().to_vec()));
        reads.push_back(Some(get(5, "/lost")));
        reads.push_back(None);
        reads.push_back(Some(get(6, "/kept")));
        let mut channel = ScriptedChannel {
            reads,
            written: Vec::new(),
        };
        serve(&mut channel, echo_handler, Duration::from_millis(1)).unwrap_err();
        let ids: Vec<u64> = decode_all(&channel.written).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![6]);
    }

    #[test]
    fn serves_over_a_socket_pair_until_power_off() {
        let (agent_end, mut host_end) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut channel = FdChannel::new(agent_end.into()).unwrap();
            serve(
                &mut channel,
                crate::handlers::handle,
                Duration::from_millis(1),
            )
        });
        write_frame(
            &mut host_end,
            &Envelope {
                id: 10,
                body: Request::Ping,
            },
        )
        .unwrap();
        let pong: Envelope<Response> = read_frame(&mut host_end).unwrap();
        assert_eq!(pong.id, 10);
        assert!(matches!(pong.body, Response::Pong { .. }));

        let exec = Request::Exec(rulebench_proto::ExecRequest {
            argv: vec!["echo".into(), "over the channel".into()],
            ..Default::default()
        });
        write_frame(&mut host_end, &Envelope { id: 11, body: exec }).unwrap();
        let answer: Envelope<Response> = read_frame(&mut host_end).unwrap();
        assert_eq!(answer.id, 11);
        match answer.body {
            Response::Exec(result) => assert_eq!(result.stdout, b"over the channel\n"),
            other => panic!("unexpected {other:?}"),
        }

        write_frame(
            &mut host_end,
            &Envelope {
                id: 12,
                body: Request::PowerOff,
            },
        )
        .unwrap();
        let bye: Envelope<Response> = read_frame(&mut host_end).unwrap();
        assert_eq!((bye.id, bye.body), (12, Response::PoweringOff));
        server.join().unwrap().unwrap();
    }
}
