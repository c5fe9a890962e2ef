//! [`Channel`] over a file descriptor: the virtio-serial port in the guest,
//! a socket in tests.
//!
//! The fd is non-blocking and every wait is a `poll`, because the virtio
//! console driver signals "no host connected" with POLLHUP, and a blocking
//! write would otherwise sit until the *next* host connects and then hand it
//! the tail of an answer meant for the previous one.

use crate::serve_loop::{Channel, ReadEvent, WriteEvent};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

pub struct FdChannel {
    fd: OwnedFd,
}

impl FdChannel {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on an fd we own, no pointers involved.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if flags == -1 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1
        {
            return Err(io::Error::last_os_error());
        }
        Ok(FdChannel { fd })
    }

    /// Wait until `events` is possible; false when the peer hung up instead.
    fn wait_for(&self, events: libc::c_short) -> io::Result<bool> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pollfd, 1, -1) };
            if rc >= 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        if pollfd.revents & events != 0 {
            return Ok(true);
        }
        if pollfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ok(false);
        }
        if pollfd.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(true)
    }
}

impl Channel for FdChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadEvent> {
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Ok(ReadEvent::Data(n as usize));
            }
            if n == 0 {
                return Ok(ReadEvent::Disconnected);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if !self.wait_for(libc::POLLIN)? {
                        return Ok(ReadEvent::Disconnected);
                    }
                }
                io::ErrorKind::ConnectionReset => return Ok(ReadEvent::Disconnected),
                _ => return Err(err),
            }
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<WriteEvent> {
        while !bytes.is_empty() {
            // SAFETY: bytes is valid for bytes.len() bytes.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 {
                bytes = &bytes[n as usize..];
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    if !self.wait_for(libc::POLLOUT)? {
                        return Ok(WriteEvent::Disconnected);
                    }
                }
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    return Ok(WriteEvent::Disconnected)
                }
                _ => return Err(err),
            }
        }
        Ok(WriteEvent::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_data_then_disconnect() {
        let (agent_end, mut host_end) = UnixStream::pair().unwrap();
        let mut channel = FdChannel::new(agent_end.into()).unwrap();
        host_end.write_all(b"abc").unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(
            channel.read(&mut buf).unwrap(),
            ReadEvent::Data(3)
        ));
        drop(host_end);
        assert!(matches!(
            channel.read(&mut buf).unwrap(),
            ReadEvent::Disconnected
        ));
        assert!(matches!(
            channel.write_all(b"answer").unwrap(),
            WriteEvent::Disconnected
        ));
    }
}
