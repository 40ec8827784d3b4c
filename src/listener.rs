//! The mail listeners' sockets: TCP, or a unix socket with its mode and group (Postfix's
//! `lmtp:unix:...`), a stale socket of an earlier run removed, a live one left alone; and the
//! client side of the same endpoints (the pipe hook, pass-through).

use crate::config::Endpoint;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound mail listener.
pub enum Listener {
    /// On a TCP address.
    Tcp(TcpListener),
    /// On a unix socket, removed again when the listener goes.
    Unix(UnixListener, PathBuf),
}

/// How a unix socket is made available.
#[derive(Debug, Clone, Default)]
pub struct SocketAccess {
    /// Permissions.
    pub mode: u32,
    /// Owning group (name or number); empty: the daemon's.
    pub group: String,
}

impl Listener {
    /// Binds an endpoint.
    pub async fn bind(endpoint: &Endpoint, access: &SocketAccess) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Tcp(address) => TcpListener::bind(address).await.map(Listener::Tcp),
            Endpoint::Unix(path) => {
                remove_stale(path).await?;
                let listener = UnixListener::bind(path)?;
                let bound = Listener::Unix(listener, path.clone());
                set_access(path, access)?;
                Ok(bound)
            }
        }
    }

    /// The next client and a name for it in the log.
    pub async fn accept(&self) -> io::Result<(Connection, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Connection::Tcp(stream), peer.to_string()))
            }
            Listener::Unix(listener, path) => {
                let (stream, _) = listener.accept().await?;
                Ok((Connection::Unix(stream), format!("unix:{}", path.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a run that did not stop cleanly is removed; one that answers
/// belongs to a running daemon, and is an error, as is a path that is no socket.
async fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is no socket", path.display()),
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

fn set_access(path: &Path, access: &SocketAccess) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !access.group.trim().is_empty() {
        let gid = crate::config::group_id(access.group.trim())?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
}

/// A connection to or from a mail endpoint.
pub enum Connection {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

impl Connection {
    /// Connects to an endpoint.
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Connection> {
        match endpoint {
            Endpoint::Tcp(address) => TcpStream::connect(address).await.map(Connection::Tcp),
            Endpoint::Unix(path) => UnixStream::connect(path).await.map(Connection::Unix),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_flush(cx),
            Connection::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_sockets_go_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmtp.sock");
        let endpoint = Endpoint::Unix(path.clone());
        let access = SocketAccess {
            mode: 0o660,
            group: String::new(),
        };
        // A socket file nobody listens on any more (a killed daemon's).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = Listener::bind(&endpoint, &access).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // A second daemon on the same socket is refused; the first keeps it.
        let err = Listener::bind(&endpoint, &access).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(Connection::connect(&endpoint).await.is_ok());
        drop(listener);
        assert!(!path.exists());
        // A file in the way is not removed.
        std::fs::write(&path, b"data").unwrap();
        assert!(Listener::bind(&endpoint, &access).await.is_err());
        assert!(path.exists());
    }

    #[test]
    fn groups_by_name_or_number() {
        use crate::config::group_id;
        assert_eq!(group_id("0").unwrap(), 0);
        assert_eq!(group_id("root").unwrap(), 0);
        assert!(group_id("no-such-group-here").is_err());
    }
}
