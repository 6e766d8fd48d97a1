//! The listening sockets of `serve`, one per `--web.listen-address`, and the
//! one task that serves them all with the same router and web config.

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use anyhow::Context as _;
use axum::Router;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::TcpListener, task::JoinHandle};

use super::web_config::{TlsListener, WebState};
use crate::config::values::ListenAddress;

/// A socket listening on `address` (as `std`'s and tokio's bind do:
/// SO_REUSEADDR, so that a restart does not wait out TIME_WAIT), with
/// IPv4-mapped addresses accepted on `[::]` when `dual_stack`.
fn bind_socket(address: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    if address.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The errors of an IPv6 socket on a host without IPv6 (booted with
/// `ipv6.disable=1`, or a kernel without it).
fn no_ipv6(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL))
}

/// Binds `address`: `:PORT` is `[::]:PORT` with IPV6_V6ONLY off (every IPv6
/// and IPv4 address, as Go's `:PORT` listens), or `0.0.0.0:PORT` on a host
/// without IPv6, said in one log line.
pub fn bind(address: ListenAddress) -> anyhow::Result<TcpListener> {
    let bound = match address {
        ListenAddress::At(at) => bind_socket(at, false),
        ListenAddress::EveryAddress(port) => match bind_socket((Ipv6Addr::UNSPECIFIED, port).into(), true) {
            Err(error) if no_ipv6(&error) => {
                tracing::info!("this host has no IPv6 ({error}): listening on {} for {address}, IPv4 only", SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
                bind_socket((Ipv4Addr::UNSPECIFIED, port).into(), false)
            }
            other => other,
        },
    };
    bound.with_context(|| format!("listening on {address}"))
}

/// Binds every address, in order; the first that fails is the error.
pub fn bind_all(addresses: &[ListenAddress]) -> anyhow::Result<Vec<TcpListener>> {
    addresses.iter().map(|&a| bind(a)).collect()
}

type Server = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Serves `app` on every listener (through TLS when the web config has it at
/// start; a reload changes certificates, not whether TLS is on), in one task
/// that ends when any server does: a listener that stops is an error of the
/// whole exporter, not a silently missing address.
pub fn serve_all(listeners: Vec<TcpListener>, app: Router, web: &Arc<WebState>) -> anyhow::Result<JoinHandle<io::Result<()>>> {
    let tls = web.current().tls().is_some();
    let mut servers: Vec<Server> = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let app = app.clone();
        if tls {
            let listener = TlsListener::new(listener, web.clone())?;
            servers.push(Box::pin(async move { axum::serve(listener, app).await }));
        } else {
            servers.push(Box::pin(async move { axum::serve(listener, app).await }));
        }
    }
    anyhow::ensure!(!servers.is_empty(), "no listen address");
    Ok(tokio::spawn(async move { futures::future::select_all(servers).await.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ipv6_is_told_from_other_errors() {
        assert!(no_ipv6(&io::Error::from_raw_os_error(libc::EAFNOSUPPORT)));
        assert!(!no_ipv6(&io::Error::from_raw_os_error(libc::EADDRINUSE)));
        assert!(!no_ipv6(&io::Error::from_raw_os_error(libc::EACCES)));
    }

    /// `:0` on this host (which has IPv6) takes IPv6 and IPv4 on one port.
    #[test]
    fn every_address_is_dual_stack() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = bind(ListenAddress::EveryAddress(0)).unwrap();
            let port = listener.local_addr().unwrap().port();
            assert!(listener.local_addr().unwrap().is_ipv6(), "{:?}", listener.local_addr());
            for to in [SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SocketAddr::from((Ipv6Addr::LOCALHOST, port))] {
                let connect = tokio::net::TcpStream::connect(to);
                let (connected, accepted) = tokio::join!(connect, listener.accept());
                connected.unwrap_or_else(|e| panic!("{to}: {e}"));
                accepted.unwrap();
            }
            let busy = bind(ListenAddress::At(listener.local_addr().unwrap())).unwrap_err();
            assert!(format!("{busy:#}").starts_with(&format!("listening on [::]:{port}: ")), "{busy:#}");
        });
    }
}
