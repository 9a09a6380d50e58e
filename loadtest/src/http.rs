//! A lean HTTP/1.1 client: one keep-alive connection, one request in flight.
//!
//! The generator must cost little next to the server it drives on the same box (wrk2
//! costs ~12% of a core per 10k requests/s), so requests are written from one reused
//! buffer and responses parsed in place with `httparse`; no pools, header maps or
//! per-request tasks. Plain `http://` only: load tests run on loopback.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

/// Where requests go: the socket address and the `Host` header.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// `ws://host:port` for WebSocket connections.
    pub ws_base: String,
}

impl Target {
    /// Parses `http://host:port` (a trailing `/` allowed) and resolves it.
    ///
    /// # Errors
    /// Another scheme, a path, or a host that does not resolve.
    pub async fn resolve(url: &str) -> Result<Self> {
        let rest =
            url.strip_prefix("http://").with_context(|| format!("{url:?}: only http:// targets are supported"))?;
        let host = rest.trim_end_matches('/');
        if host.contains('/') {
            bail!("{url:?}: give the server's base URL without a path");
        }
        let with_port = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("resolving {with_port}"))?
            .next()
            .with_context(|| format!("{with_port} has no address"))?;
        Ok(Self { addr, host: host.to_owned(), ws_base: format!("ws://{host}") })
    }
}

/// Source addresses a loopback target's connections rotate over: the tool stands for many
/// clients, and a gateway caps connections per client address (1,000 by default), so
/// thousands of connections from one address would be refused as a flood.
const LOOPBACK_SOURCES: u32 = 250;

/// Opens a TCP connection to `addr` with `TCP_NODELAY`. To a loopback IPv4 target the
/// connections are spread over the source addresses 127.0.0.1–127.0.0.250 (all of
/// 127.0.0.0/8 is local on Linux); any other target is dialled from the default address.
///
/// # Errors
/// The connection failed.
pub async fn dial(addr: SocketAddr) -> io::Result<TcpStream> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let stream = match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) % LOOPBACK_SOURCES;
            let socket = TcpSocket::new_v4()?;
            let [_, _, hi, lo] = (n + 1).to_be_bytes();
            socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, hi, lo)), 0))?;
            socket.connect(addr).await?
        }
        _ => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket to `target`'s `/v1/ws` over [`dial`], with `headers` (e.g. the API
/// key) on the upgrade request.
///
/// # Errors
/// The connection or the upgrade failed.
pub async fn dial_ws(target: &Target, headers: &[(&'static str, &str)]) -> Result<WebSocketStream<TcpStream>> {
    let url = format!("{}/v1/ws", target.ws_base);
    let mut request = url.as_str().into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse()?);
    }
    let stream = dial(target.addr).await.with_context(|| format!("connecting {url}"))?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, None)
        .await
        .with_context(|| format!("upgrading {url}"))?;
    Ok(ws)
}

/// A parsed response: status and the body's range in the connection's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    body_start: usize,
    body_len: usize,
    close: bool,
}

/// One HTTP/1.1 keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

const MAX_RESPONSE: usize = 16 << 20;

impl Conn {
    /// Connects (with `TCP_NODELAY`: requests are small and latency-bound).
    ///
    /// # Errors
    /// The connection failed.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = dial(addr).await?;
        Ok(Self { stream, buf: vec![0; 8192], closed: false })
    }

    /// Whether the server asked to close the connection after the last response.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one request (already serialised) and reads its response.
    ///
    /// # Errors
    /// I/O errors, an unparseable response, or one without `Content-Length`.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<Head> {
        self.stream.write_all(request).await?;
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                if self.buf.len() >= MAX_RESPONSE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "response too large"));
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[filled..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            if let Some(head) = parse(&self.buf[..filled])? {
                if filled >= head.body_start + head.body_len {
                    self.closed = head.close;
                    return Ok(head);
                }
                let need = head.body_start + head.body_len;
                if need > self.buf.len() {
                    self.buf.resize(need, 0);
                }
            }
        }
    }

    /// The body of the last response.
    pub fn body(&self, head: &Head) -> &[u8] {
        &self.buf[head.body_start..head.body_start + head.body_len]
    }
}

/// Parses a response head, `None` until it is complete.
fn parse(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let body_start = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let mut body_len = None;
    let mut close = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "chunked responses are not supported"));
        }
    }
    let status = response.code.unwrap_or(0);
    // 204 and 304 carry no body and may omit the length.
    let body_len = match (body_len, status) {
        (Some(n), _) => n,
        (None, 204 | 304) => 0,
        (None, _) => return Err(io::Error::new(io::ErrorKind::InvalidData, "response without Content-Length")),
    };
    Ok(Some(Head { status, body_start, body_len, close }))
}

/// Serialises a request into `out` (cleared first). `path` is written as it displays, so
/// callers can pass `format_args!` without allocating.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    path: impl std::fmt::Display,
    host: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(key) = key {
        let _ = write!(out, "X-API-Key: {key}\r\n");
    }
    match body {
        Some(body) => {
            let _ = write!(out, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            out.extend_from_slice(body);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
}

/// `GET` with a fresh connection, for setup calls: status and body.
///
/// # Errors
/// Connection or protocol errors.
pub async fn get(target: &Target, path: &str) -> io::Result<(u16, Vec<u8>)> {
    call(target, "GET", path, None).await
}

/// One request without a body on a fresh connection: status and body.
///
/// # Errors
/// Connection or protocol errors.
pub async fn call(target: &Target, method: &str, path: &str, key: Option<&str>) -> io::Result<(u16, Vec<u8>)> {
    let mut conn = Conn::connect(target.addr).await?;
    let mut req = Vec::new();
    write_request(&mut req, method, path, &target.host, key, None);
    let head = conn.roundtrip(&req).await?;
    Ok((head.status, conn.body(&head).to_vec()))
}

/// One request with a JSON body on a fresh connection: status and body.
///
/// # Errors
/// Connection or protocol errors.
pub async fn send(target: &Target, method: &str, path: &str, key: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut conn = Conn::connect(target.addr).await?;
    let mut req = Vec::new();
    write_request(&mut req, method, path, &target.host, Some(key), Some(body));
    let head = conn.roundtrip(&req).await?;
    Ok((head.status, conn.body(&head).to_vec()))
}

/// Deposits `amount` of every asset the server's symbols trade to each account of `keys`
/// (a server with balances on; `admin_key` must be an admin's). Idempotent: the transfer
/// ids are derived from the account, the asset and the amount, so a second run with the
/// same amount moves nothing. Returns the deposits made or replayed.
///
/// # Errors
/// The server is unreachable, has no balances, or refuses a deposit.
pub fn fund(url: &str, admin_key: &str, keys: &[String], amount: &str) -> Result<usize> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let target = Target::resolve(url).await?;
        let (status, body) = get(&target, "/v1/symbols").await?;
        anyhow::ensure!(status == 200, "GET /v1/symbols answered {status}");
        let symbols: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        let mut assets: Vec<String> = Vec::new();
        for s in &symbols {
            let name = s["symbol"].as_str().unwrap_or_default();
            for asset in name.split('-') {
                if !asset.is_empty() && !assets.iter().any(|a| a == asset) {
                    assets.push(asset.to_owned());
                }
            }
        }
        let mut done = 0;
        for key in keys {
            // Keys read `tk1.<account>.<tag>`.
            let account = key.split('.').nth(1).ok_or_else(|| anyhow::anyhow!("a key without an account"))?;
            for asset in &assets {
                let transfer_id = format!("lt-fund-{account}-{asset}-{}", amount.replace('.', "_"));
                let body = serde_json::json!({"account_id": account, "asset": asset, "amount": amount, "transfer_id": transfer_id});
                let (status, answer) =
                    send(&target, "POST", "/v1/admin/deposits", admin_key, body.to_string().as_bytes()).await?;
                anyhow::ensure!(
                    status == 200,
                    "depositing {amount} {asset} to {account}: {status} {}",
                    String::from_utf8_lossy(&answer)
                );
                done += 1;
            }
        }
        Ok(done)
    })
}

/// The server's hop latency histograms (`/v1/admin/latency`, needs an admin key);
/// `reset` clears them after reading. `None` when the target has no such endpoint.
pub fn server_hops(url: &str, admin_key: &str, reset: bool) -> Option<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    rt.block_on(async {
        let target = Target::resolve(url).await.ok()?;
        let method = if reset { "DELETE" } else { "GET" };
        match call(&target, method, "/v1/admin/latency", Some(admin_key)).await {
            Ok((200, body)) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_incrementally() {
        let full =
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":\"xyz\"}";
        assert_eq!(parse(&full[..20]).expect("ok"), None);
        let head = parse(full).expect("ok").expect("complete");
        assert_eq!(head.status, 201);
        assert_eq!(&full[head.body_start..head.body_start + head.body_len], b"{\"a\":\"xyz\"}");
        assert!(!head.close);
        let close = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let head = parse(close).expect("ok").expect("complete");
        assert!(head.close && head.body_len == 0);
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "a 200 without a length is refused");
        assert!(parse(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn requests_serialise() {
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/v1/orders", "h:1", Some("k"), Some(b"{}"));
        assert_eq!(
            out,
            b"POST /v1/orders HTTP/1.1\r\nHost: h:1\r\nX-API-Key: k\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        write_request(&mut out, "GET", "/x", "h", None, None);
        assert_eq!(out, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
