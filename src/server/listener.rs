//! The listening socket of one shard: SO_REUSEPORT so every shard binds the same port (the
//! kernel spreads connections), SO_REUSEADDR so a restarted broker does not wait out the
//! TIME_WAIT of its own closed connections, and a deep accept backlog for connection storms.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

/// A shard's listening socket, and its fd for [`close`] (glommio's listener does not expose it).
pub struct Listener {
    pub socket: TcpListener,
    fd: RawFd,
}

pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: a bound, listening TCP socket whose ownership moves to the glommio listener.
    let socket = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Listener { socket, fd })
}

/// Stops listening at once, then closes. Dropping alone is not enough: while io_uring still
/// holds a reference to the socket (a pending accept being cancelled), the kernel keeps it
/// listening, and a broker started meanwhile on the same port (SO_REUSEPORT) would share the
/// port with it and see some of its connections reset.
pub fn close(listener: Listener) {
    // SAFETY: shutdown on the listener's own fd, still open; on a listening socket it
    // unhashes it from the port, whatever else refers to it.
    unsafe { libc::shutdown(listener.fd, libc::SHUT_RDWR) };
    drop(listener);
}

/// How long a starting broker waits for a port still held by a process that is going away.
pub const PORT_WAIT: Duration = Duration::from_secs(5);

/// Checks that `addr` is free to listen on, waiting up to `wait` while it is in use: after a
/// `kill -9` the kernel releases sockets held by io_uring a moment after the process is gone.
/// A plain bind (SO_REUSEADDR, no SO_REUSEPORT) fails while anyone listens there, so a
/// broker never shares its port with another.
pub fn probe(addr: SocketAddr, wait: Duration) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    let mut logged = false;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    logged = true;
                    tracing::warn!(
                        %addr,
                        "address in use; waiting up to {} s for the process holding it to go",
                        wait.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}
