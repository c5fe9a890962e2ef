//! What each request does. Pure dispatch; the serve loop owns the channel.

use crate::{exec, exec_stream, files};
use rulebench_proto::{Request, Response};

/// What the serve loop does after sending a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The response has been sent; stop serving and power off.
    PowerOff,
}

/// Answer `request`. Requests that stream (`ExecStream`) send their partial
/// responses through `emit` first (false: the host has left); the returned
/// response is always the last one.
pub fn handle(request: Request, emit: &mut dyn FnMut(Response) -> bool) -> (Response, After) {
    let response = match request {
        Request::Ping => Response::Pong {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: kernel_release(),
        },
        Request::Exec(exec_request) => exec::run(&exec_request).map_or_else(error, Response::Exec),
        Request::Spawn { argv, log_path } => exec::spawn_detached(&argv, &log_path)
            .map_or_else(error, |pid| Response::Spawned { pid }),
        Request::PutFile {
            path,
            mode,
            contents,
        } => files::put(&path, mode, &contents).map_or_else(error, |()| Response::FileWritten),
        Request::GetFile { path } => {
            files::get(&path).map_or_else(error, |contents| Response::File { contents })
        }
        Request::PowerOff => return (Response::PoweringOff, After::PowerOff),
        Request::ExecStream(stream_request) => exec_stream::run(&stream_request, |stream, data| {
            emit(Response::ExecOutput {
                stream,
                data: data.to_vec(),
            })
        })
        .map_or_else(error, Response::Exec),
    };
    (response, After::Continue)
}

fn error(message: String) -> Response {
    Response::Error { message }
}

pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it and we read a NUL-terminated field.
    unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return format!("unknown ({})", std::io::Error::last_os_error());
        }
        std::ffi::CStr::from_ptr(uts.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_exec_emits_chunks_then_the_exit() {
        let mut chunks = Vec::new();
        let request = Request::ExecStream(rulebench_proto::ExecStreamRequest {
            exec: rulebench_proto::ExecRequest {
                argv: vec!["sh".into(), "-c".into(), "echo out; echo err >&2".into()],
                ..Default::default()
            },
            cwd: String::new(),
        });
        let (last, after) = handle(request, &mut |r| {
            chunks.push(r);
            true
        });
        assert_eq!(after, After::Continue);
        assert!(
            matches!(last, Response::Exec(ref r) if r.exit_code == Some(0)),
            "{last:?}"
        );
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Response::ExecOutput { data, .. } => out.extend(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        out.sort();
        let mut want = b"out\nerr\n".to_vec();
        want.sort();
        assert_eq!(out, want);
    }

    #[test]
    fn ping_reports_version_and_kernel() {
        let (response, after) = handle(Request::Ping, &mut |_| true);
        assert_eq!(after, After::Continue);
        match response {
            Response::Pong {
                agent_version,
                kernel_release,
            } => {
                assert_eq!(agent_version, env!("CARGO_PKG_VERSION"));
                assert!(!kernel_release.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn power_off_answers_before_stopping() {
        assert_eq!(
            handle(Request::PowerOff, &mut |_| true),
            (Response::PoweringOff, After::PowerOff)
        );
    }

    #[test]
    fn agent_failures_become_error_responses() {
        let (response, _) = handle(
            Request::GetFile {
                path: "/nonexistent/x".into(),
            },
            &mut |_| true,
        );
        assert!(
            matches!(response, Response::Error { message } if message.contains("/nonexistent/x"))
        );
    }
}
