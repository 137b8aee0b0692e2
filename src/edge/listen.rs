//! Binding a listening socket with an accept queue deep enough for a fleet
//! that reconnects at once.
//!
//! `tokio::net::TcpListener::bind` listens with std's backlog of 128. When
//! hundreds of members reconnect together (a server that resumes after a
//! pause, a replica's members failing over to its peers) the kernel's accept
//! queue overflows and it drops the SYNs beyond it; each dropped client
//! retransmits only after its initial RTO of one second, the length of a
//! whole timeout at the shortest settings. Measured here: 200 members of a
//! server SIGSTOPped for 2 s, one to four of them went DEAD in one run of
//! three, every one with a TCP connect that timed out after the resume. The
//! backlog asked for here is clamped by the kernel to `net.core.somaxconn`
//! (4096 by default since Linux 5.4), as Go's listeners and nginx do.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Accept queue length asked of the kernel.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (address reuse as `TcpListener::bind` sets it) and listens
/// with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_any_port_and_accepts() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (c, a) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        assert!(c.is_ok() && a.is_ok());
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = listen(l.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
