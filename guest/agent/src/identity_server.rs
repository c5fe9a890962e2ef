//! `rulebench-agent serve`: the backend's "who am I" server.
//!
//! Every answer is `NAME <local-ip>:<local-port>\n`, where the local address
//! is the one the packet actually arrived at. Behind DNAT / IPVS / eBPF that
//! tells the probe exactly which backend address served it.

use std::io::{self, Write};
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

const LISTEN_BACKLOG: i32 = 4096;

/// Bind TCP and UDP on 0.0.0.0:port for every port, then serve forever.
pub fn run(identity: &str, ports: &[u16]) -> io::Result<()> {
    let identity: Arc<str> = Arc::from(identity);
    let mut sockets = Vec::new();
    for &port in ports {
        let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let tcp = bind_tcp(addr).map_err(|e| annotate(e, "tcp", addr))?;
        let udp = bind_udp(addr).map_err(|e| annotate(e, "udp", addr))?;
        sockets.push((tcp, udp));
    }
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    // One line so the host can tell from the log that binding is done.
    println!(
        "rulebench-agent serve: {identity} listening on tcp+udp ports {}",
        port_list.join(",")
    );
    let mut threads = Vec::new();
    for (tcp, udp) in sockets {
        let id = Arc::clone(&identity);
        threads.push(std::thread::spawn(move || serve_tcp(&id, tcp)));
        let id = Arc::clone(&identity);
        threads.push(std::thread::spawn(move || serve_udp(&id, udp)));
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn annotate(err: io::Error, proto: &str, addr: SocketAddrV4) -> io::Error {
    io::Error::new(err.kind(), format!("bind {proto} {addr}: {err}"))
}

pub fn answer_line(identity: &str, local: SocketAddr) -> String {
    format!("{identity} {local}\n")
}

/// Answer each connection with the identity line and close it.
pub fn serve_tcp(identity: &str, listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((mut stream, _peer)) => {
                if let Ok(local) = stream.local_addr() {
                    // A client that already left is not our problem.
                    let _ = stream.write_all(answer_line(identity, local).as_bytes());
                }
            }
            Err(err) => {
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    // Out of resources: let in-flight connections finish
                    // instead of spinning on accept.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Answer each datagram with the identity line, from the address it was sent to.
pub fn serve_udp(identity: &str, socket: UdpSocket) {
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut buf = [0u8; 2048];
    loop {
        let Ok((peer, local_ip)) = recv_with_destination(&socket, &mut buf) else {
            continue;
        };
        let line = answer_line(identity, SocketAddr::V4(SocketAddrV4::new(local_ip, port)));
        if send_from(&socket, line.as_bytes(), peer, local_ip).is_err() {
            let _ = socket.send_to(line.as_bytes(), peer);
        }
    }
}

/// TCP listener with SO_REUSEADDR and a backlog deep enough for connection
/// storms (std's default backlog is small).
pub fn bind_tcp(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let fd = reusable_socket(libc::SOCK_STREAM, addr)?;
    // SAFETY: listen on an fd we own.
    if unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// UDP socket with SO_REUSEADDR and IP_PKTINFO, so each datagram's
/// destination address is known and replies leave from it.
pub fn bind_udp(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let fd = reusable_socket(libc::SOCK_DGRAM, addr)?;
    set_int_option(&fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    Ok(UdpSocket::from(fd))
}

fn reusable_socket(kind: i32, addr: SocketAddrV4) -> io::Result<OwnedFd> {
    // SAFETY: plain socket syscall; ownership taken right away.
    let raw = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let sockaddr = to_sockaddr_in(addr);
    // SAFETY: sockaddr is a valid sockaddr_in of the given length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sockaddr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_int_option(fd: &OwnedFd, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value is a c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn to_sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_in_addr(addr: libc::in_addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(addr.s_addr))
}

/// Control buffer for one in_pktinfo, aligned for cmsghdr.
#[repr(C, align(8))]
struct PktinfoControl([u8; 64]);

/// recvmsg one datagram; returns the sender and the destination address.
fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(SocketAddrV4, Ipv4Addr)> {
    // SAFETY: all structs are plain data; msghdr points at buffers that live
    // across the call, with their true lengths; cmsg walking stays within
    // msg_controllen as the CMSG_* helpers guarantee.
    unsafe {
        let mut peer: libc::sockaddr_in = std::mem::zeroed();
        let mut control = PktinfoControl([0; 64]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut peer as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        if libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        let sender = SocketAddrV4::new(from_in_addr(peer.sin_addr), u16::from_be(peer.sin_port));
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Ok((sender, from_in_addr(info.ipi_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Err(io::Error::other("datagram without IP_PKTINFO"))
    }
}

/// sendmsg with IP_PKTINFO fixing the source address, so the reply matches
/// the connection-tracking entry of the (possibly DNATed) request even when
/// the backend owns several addresses.
fn send_from(
    socket: &UdpSocket,
    data: &[u8],
    peer: SocketAddrV4,
    source: Ipv4Addr,
) -> io::Result<()> {
    // SAFETY: as in recv_with_destination; the control buffer is large enough
    // for CMSG_SPACE(in_pktinfo) and zeroed before the header is written.
    unsafe {
        let mut dest = to_sockaddr_in(peer);
        let mut control = PktinfoControl([0; 64]);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut dest as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(source).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        if libc::sendmsg(socket.as_raw_fd(), &msg, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
