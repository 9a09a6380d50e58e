//! Connection caps and timeouts: a total and a per-IP limit on open connections, enforced
//! at accept, and a stall timeout on every socket.
//!
//! Without them one client that opens connections and never finishes a request holds
//! descriptors until the process's limit, and every trader is locked out. The listener
//! ([`CappedListener`]) closes a connection over either cap at once (before a byte is
//! read) and counts it; a connection's slot is released when its socket is dropped.
//!
//! A socket on which nothing has moved either way for `idle_timeout` while the server
//! waits to read or write ([`CappedStream`]) fails its I/O with `TimedOut`, so the
//! connection closes: an idle keep-alive connection, a client that stops reading its
//! answers. A request head sent slowly is cut by hyper's header-read timeout
//! ([`crate::server`]), a silent WebSocket peer by the session's ping ([`crate::ws`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::metrics::write_metric;

/// The caps and timeouts (`[gateway] max_connections`, `max_connections_per_ip`,
/// `header_read_timeout_ms`, `idle_timeout_ms`, `ws_ping_interval_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_ip: usize,
    /// From accept (or a keep-alive request's first byte) to the end of its head.
    pub header_read_timeout: Duration,
    /// Nothing moved on a socket the server waits on; a WebSocket peer that sent nothing.
    pub idle_timeout: Duration,
    /// How often a WebSocket session pings its peer (so a live peer is never idle).
    pub ws_ping_interval: Duration,
}

impl Default for ConnectionLimits {
    /// Room for 10,000 market-data subscribers beside the order flow (fitted under the
    /// process's descriptor limit by [`ConnectionLimits::within_descriptor_limit`]); a
    /// request head within 10 s; a minute of silence; a ping every 20 s, so a WebSocket
    /// peer misses three before it is dropped.
    fn default() -> Self {
        Self {
            max_total: 16_000,
            max_per_ip: 1_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ws_ping_interval: Duration::from_secs(20),
        }
    }
}

/// Descriptors kept back from the connection cap for the journal, snapshots, the broker's
/// and the stores' sockets, and the process's own files.
const RESERVED_DESCRIPTORS: u64 = 1_024;

impl ConnectionLimits {
    /// These limits fitted under the open-file limit: the soft limit is raised to the hard
    /// one first (as Go's runtime and most servers do; Debian's soft default is 1,024), and
    /// a total cap the process could not hold is lowered, with a warning, to the limit less
    /// [`RESERVED_DESCRIPTORS`], so accepting never fails with "too many open files" while
    /// the process still needs a descriptor for its own work.
    #[must_use]
    pub fn within_descriptor_limit(self) -> Self {
        let Some(limit) = raise_descriptor_limit() else { return self };
        let room = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(1);
        if self.max_total <= room {
            return self;
        }
        tracing::warn!(
            configured = self.max_total,
            open_file_limit = limit,
            max_connections = room,
            "gateway.max_connections lowered to fit the open-file limit (raise it with ulimit -n or LimitNOFILE)"
        );
        Self { max_total: room, max_per_ip: self.max_per_ip.min(room), ..self }
    }
}

/// Raises the soft open-file limit to the hard one; the soft limit in force afterwards, or
/// `None` on a platform without the call.
fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        // An unlimited hard limit is still bounded by the kernel's `nr_open` (2^20).
        let target = hard.min(1 << 20);
        if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
            return Some(target);
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    None
}

/// Open connections, per IP and in total, and what was refused.
#[derive(Debug, Default)]
pub struct Connections {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    /// Connections closed because nothing moved on them for `idle_timeout`.
    stalled: AtomicU64,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

/// One open connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.connections.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// A place for a connection from `ip`, or why there is none.
    ///
    /// # Errors
    /// The cap that is full (and counts the refusal).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut per_ip = self.per_ip.lock();
        if self.open.load(Ordering::Acquire) >= self.limits.max_total {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_ip {
            self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Slot { connections: Arc::clone(self), ip })
    }

    /// The caps and timeouts in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Counts a connection closed for a stall ([`CappedStream`], a silent WebSocket peer).
    pub fn count_stall(&self) {
        self.stalled.fetch_add(1, Ordering::Relaxed);
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Appends the connection metrics to `out`.
    pub fn render(&self, out: &mut String) {
        write_metric(out, "tachyon_gateway_connections", "gauge", "", self.open());
        write_metric(out, "tachyon_gateway_connections_max", "gauge", "", self.limits.max_total);
        write_metric(out, "tachyon_gateway_connections_per_ip_max", "gauge", "", self.limits.max_per_ip);
        let _ = std::fmt::Write::write_fmt(
            out,
            format_args!(
                "# TYPE tachyon_gateway_connections_refused_total counter\n\
                 tachyon_gateway_connections_refused_total{{cap=\"total\"}} {}\n\
                 tachyon_gateway_connections_refused_total{{cap=\"per_ip\"}} {}\n",
                self.refused_total.load(Ordering::Relaxed),
                self.refused_per_ip.load(Ordering::Relaxed),
            ),
        );
        write_metric(
            out,
            "tachyon_gateway_connections_timed_out_total",
            "counter",
            "",
            self.stalled.load(Ordering::Relaxed),
        );
    }
}

/// A socket with its [`Slot`] (the place is freed when the connection closes) and its
/// stall timer.
#[derive(Debug)]
pub struct CappedStream {
    stream: TcpStream,
    slot: Slot,
    /// When a byte last moved either way.
    last_progress: tokio::time::Instant,
    /// Armed while a read or a write waits (each its own: a WebSocket's reader and writer
    /// are different tasks, and a timer wakes one waiter).
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    stalled: bool,
}

impl CappedStream {
    fn new(stream: TcpStream, slot: Slot) -> Self {
        Self {
            stream,
            slot,
            last_progress: tokio::time::Instant::now(),
            read_timer: None,
            write_timer: None,
            stalled: false,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    fn stalled_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "nothing moved on the connection for the idle timeout")
    }

    /// After the socket said `Pending`: whether the idle timeout has passed since the last
    /// progress (the timer is armed, or moved on, to wake this waiter when it does).
    fn stalled(&mut self, cx: &mut Context<'_>, write: bool) -> bool {
        let idle = self.slot.connections.limits.idle_timeout;
        let deadline = self.last_progress + idle;
        let timer = if write { &mut self.write_timer } else { &mut self.read_timer };
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if !self.stalled {
            self.stalled = true;
            self.slot.connections.count_stall();
        }
        true
    }

    fn after_write(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.last_progress = tokio::time::Instant::now();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.stalled(cx, true) => Poll::Ready(Err(Self::stalled_error())),
            other => other,
        }
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.stalled {
            return Poll::Ready(Err(Self::stalled_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last_progress = tokio::time::Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.stalled(cx, false) => Poll::Ready(Err(Self::stalled_error())),
            other => other,
        }
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.stalled {
            return Poll::Ready(Err(Self::stalled_error()));
        }
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.after_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.stalled {
            return Poll::Ready(Err(Self::stalled_error()));
        }
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A TCP listener that admits connections under [`Connections`]' caps and closes the
/// others at once.
#[derive(Debug)]
pub struct CappedListener {
    listener: TcpListener,
    connections: Arc<Connections>,
    /// Refusals are logged at most once a second (a flood must not flood the log).
    last_warning: Option<Instant>,
}

impl CappedListener {
    pub fn new(listener: TcpListener, connections: Arc<Connections>) -> Self {
        Self { listener, connections, last_warning: None }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.connections.admit(peer.ip()) {
                Ok(slot) => {
                    // Answers and WebSocket frames are small and latency-bound: without
                    // TCP_NODELAY, Nagle's algorithm holds a second small write until the
                    // first is acknowledged, and the client's delayed ACK turns that into
                    // 40 ms stalls.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY");
                    }
                    return (CappedStream::new(stream, slot), peer);
                }
                Err(cap) => {
                    if self.last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        self.last_warning = Some(Instant::now());
                        tracing::warn!(ip = %peer.ip(), ?cap, open = self.connections.open(), "connection refused: cap reached");
                    }
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn caps_are_fitted_under_the_open_file_limit_after_raising_it() {
        use nix::sys::resource::{getrlimit, Resource};
        let small = ConnectionLimits { max_total: 10, max_per_ip: 5, ..ConnectionLimits::default() };
        assert_eq!(small.within_descriptor_limit(), small, "a cap that fits is kept");
        let fitted = ConnectionLimits { max_total: usize::MAX, max_per_ip: usize::MAX, ..ConnectionLimits::default() }
            .within_descriptor_limit();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(soft, hard.min(1 << 20), "the soft limit was raised to the hard one");
        let room = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS)).expect("fits").max(1);
        assert_eq!(fitted, ConnectionLimits { max_total: room, max_per_ip: room, ..ConnectionLimits::default() });
    }

    #[test]
    fn the_caps_hold_per_ip_and_in_total_and_a_closed_connection_frees_its_place() {
        let connections =
            Arc::new(Connections::new(ConnectionLimits { max_total: 3, max_per_ip: 2, ..ConnectionLimits::default() }));
        let (a, b, c) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into(), [127, 0, 0, 4].into());
        let first = connections.admit(a).expect("room");
        let _second = connections.admit(a).expect("room");
        assert_eq!(connections.admit(a).err(), Some(Refusal::PerIp));
        let _third = connections.admit(b).expect("another ip");
        assert_eq!(connections.admit(c).err(), Some(Refusal::Total));
        drop(first);
        assert_eq!(connections.open(), 2);
        let _again = connections.admit(a).expect("a freed place");
        let mut out = String::new();
        connections.render(&mut out);
        assert!(out.contains("tachyon_gateway_connections 3\n"), "{out}");
        assert!(out.contains("{cap=\"total\"} 1") && out.contains("{cap=\"per_ip\"} 1"), "{out}");
    }
}
