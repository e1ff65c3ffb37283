//! The gRPC listener: Envoy's ext_authz `Authorization/Check` (the adapter in
//! [`ext_authz`]), `grpc.health.v1.Health`, and server reflection v1 and v1alpha (grpcurl
//! 1.8 speaks only v1alpha).

pub mod ext_authz;

use crate::authz::Authorizer;
use crate::config::ListenAddress;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use futures_util::StreamExt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tonic_health::server::HealthReporter;

/// A connection that tells the HTTP/2 layer it has no vectored writes, so that a Check's
/// answer goes out in one write. With vectored writes, h2 sends a DATA frame of 256 bytes
/// or more as its own buffer and writes the trailers that follow it separately: every
/// answer authgate gives (the identity headers to remove alone pass 256 bytes) cost two
/// `writev` calls and woke the proxy twice (+40 µs per Check at one connection, measured).
/// Without them h2 copies frames up to 1 KiB into its write buffer, trailers included.
#[derive(Debug)]
pub struct SingleWrite<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for SingleWrite<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SingleWrite<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for SingleWrite<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

/// The bound gRPC listener: TCP, or a Unix-domain socket (`grpcAddress: unix:/path`)
/// with the guard that removes its file (declared after the listener, so dropped after it).
#[derive(Debug)]
pub enum GrpcListener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// A listening socket's file, removed when this is dropped (after serving ends, or when a
/// bound server is dropped unused), so a restart binds again without anyone cleaning up.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl GrpcListener {
    /// Binds `address`. A socket file left by a process that is gone is replaced; one that a
    /// live process still listens on, or a file that is not a socket, is an error.
    pub async fn bind(address: &ListenAddress) -> std::io::Result<GrpcListener> {
        match address {
            ListenAddress::Tcp(addr) => TcpListener::bind(addr).await.map(GrpcListener::Tcp),
            ListenAddress::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path)?;
                Ok(GrpcListener::Unix(listener, SocketFile(path.clone())))
            }
        }
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_address(&self) -> ListenAddress {
        match self {
            GrpcListener::Tcp(listener) => {
                ListenAddress::Tcp(listener.local_addr().expect("a bound listener has an address"))
            }
            GrpcListener::Unix(_, file) => ListenAddress::Unix(file.0.clone()),
        }
    }
}

/// Removes the socket file at `path` if nothing listens on it any more.
async fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !metadata.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// The ext_authz descriptor set compiled by `build.rs` from `proto/`.
pub const EXT_AUTHZ_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ext_authz_descriptor.bin"));

/// Name under which gRPC health reports the ext_authz service.
pub const AUTHORIZATION_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// Serves every gRPC service on `listener` until `shutdown` resolves, then lets in-flight
/// calls finish. Health is SERVING from the start: Checks on excluded paths and with cached
/// state work before the IdP answers.
pub async fn serve(
    listener: GrpcListener,
    authorizer: Arc<Authorizer>,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    health.set_service_status(AUTHORIZATION_SERVICE, tonic_health::ServingStatus::Serving).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(EXT_AUTHZ_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("compiled-in descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(EXT_AUTHZ_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("compiled-in descriptor sets are valid");

    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthorizationServer::new(ext_authz::ExtAuthz::new(authorizer)));
    match listener {
        GrpcListener::Tcp(listener) => {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true))
                        .map(|accepted| accepted.map(SingleWrite)),
                    shutdown,
                )
                .await
        }
        GrpcListener::Unix(listener, file) => {
            let served = router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener).map(|accepted| accepted.map(SingleWrite)),
                    shutdown,
                )
                .await;
            // Serving has ended: the socket is closed, its file goes.
            drop(file);
            served
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SingleWrite;
    use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// The wrapper hides vectored writes (so h2 buffers a whole answer) and passes bytes
    /// through unchanged both ways.
    #[tokio::test]
    async fn a_single_write_connection_passes_bytes_and_hides_vectored_writes() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut ours = SingleWrite(ours);
        assert!(!AsyncWrite::is_write_vectored(&ours));
        ours.write_all(b"answer").await.unwrap();
        theirs.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 7];
        ours.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"request");
        let mut buf = [0u8; 6];
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"answer");
    }
}
