//! An island: a network namespace of its own for one service (a propeller), whose loopback reaches the
//! machine's only through forwarders the harness owns. The harness can cut one of them (the broker's) while
//! the service's other connections (Postgres, Redis, the catalog) and its task processes keep running: a
//! network partition between one propeller and the broker, on one machine, without touching the others.
//!
//! The namespace is made by a short-lived thread (`unshare(CLONE_NEWNET)` is per thread), which brings its
//! loopback up and binds a listener there for every forwarded port; a service enters it with `setns` between
//! fork and exec. Making a namespace needs root (CAP_SYS_ADMIN), as CI has; elsewhere `Island::create`
//! answers `None` and the harness leaves the fault out.

// Entering a namespace between fork and exec and the loopback's interface ioctls have no safe wrappers;
// each unsafe block says why it holds.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Whether a forwarded port carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Nothing moves: connections made before stay open and silent, new ones are accepted and stay
    /// silent, as across a partition (no reset tells the service; its own timeouts must). When the link
    /// comes back these connections are closed, as a long partition's would have timed out.
    Cut,
}

pub struct Island {
    namespace: OwnedFd,
    links: Vec<(u16, watch::Sender<Link>)>,
    stop: CancellationToken,
}

impl Island {
    /// A namespace whose `127.0.0.1:PORT` leads to the machine's `127.0.0.1:PORT` for each of `ports`;
    /// `None` (with the reason on stderr) where this machine does not allow one. Call inside a Tokio runtime.
    pub fn create(ports: &[u16]) -> Option<Island> {
        let wanted = ports.to_vec();
        let made = std::thread::spawn(move || enter_new_namespace(&wanted))
            .join()
            .map_err(|_| std::io::Error::other("the namespace thread panicked"))
            .and_then(|made| made);
        let (namespace, listeners) = match made {
            Ok(made) => made,
            Err(error) => {
                eprintln!("cannot make a network namespace: {error}");
                return None;
            }
        };
        let stop = CancellationToken::new();
        let mut links = Vec::new();
        for (port, listener) in ports.iter().copied().zip(listeners) {
            let (link, watching) = watch::channel(Link::Up);
            let listener = TcpListener::from_std(listener).expect("a listener of the namespace");
            let until = stop.clone();
            aloft_testkit::accept_until(listener, stop.clone(), move |inside| {
                carry(inside, port, watching.clone(), until.clone())
            });
            links.push((port, link));
        }
        Some(Island {
            namespace,
            links,
            stop,
        })
    }

    /// Makes `command` start inside the namespace.
    pub fn enter(&self, command: &mut Command) {
        let namespace = self.namespace.as_raw_fd();
        // SAFETY: between fork and exec the closure calls only `setns`, a system call (async-signal-safe),
        // on a descriptor the parent keeps open for the island's life.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(namespace, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// Stops every byte on `port` until `heal`.
    pub fn cut(&self, port: u16) {
        self.set(port, Link::Cut);
    }

    /// Carries `port` again; the connections held silent during the cut are closed.
    pub fn heal(&self, port: u16) {
        self.set(port, Link::Up);
    }

    fn set(&self, port: u16, state: Link) {
        let (_, link) = self
            .links
            .iter()
            .find(|(forwarded, _)| *forwarded == port)
            .unwrap_or_else(|| panic!("the island does not forward port {port}"));
        link.send_replace(state);
    }
}

impl Drop for Island {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// On a thread of its own: a new network namespace, its loopback up, a listener per port in it.
fn enter_new_namespace(ports: &[u16]) -> std::io::Result<(OwnedFd, Vec<std::net::TcpListener>)> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    let namespace = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net")?);
    bring_loopback_up()?;
    let listeners = ports
        .iter()
        .map(|port| {
            let listener = std::net::TcpListener::bind(("127.0.0.1", *port))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((namespace, listeners))
}

/// `ip link set lo up` for the calling thread's namespace (a new one has its loopback down), without
/// needing iproute2.
fn bring_loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket for the interface ioctls, owned (and closed) by `socket` below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor just opened and owned by no one else.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero `ifreq` is valid (a name of NULs, flags 0).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write the `ifreq` passed, which outlives both calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One connection from inside the island to the machine's `127.0.0.1:port`, silent while the link is cut.
async fn carry(mut inside: TcpStream, port: u16, mut link: watch::Receiver<Link>, stop: CancellationToken) {
    if *link.borrow_and_update() == Link::Cut {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = link.wait_for(|state| *state == Link::Up) => {}
        }
        return;
    }
    let Ok(mut outside) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let cut = tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::io::copy_bidirectional(&mut inside, &mut outside) => false,
        _ = link.wait_for(|state| *state == Link::Cut) => true,
    };
    if cut {
        // Silent until the link is up again, then closed with `inside` and `outside`.
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = link.wait_for(|state| *state == Link::Up) => {}
        }
    }
}
