//! The gRPC listener: Envoy's ext_authz `Authorization/Check` (the adapter in
//! [`ext_authz`]), `grpc.health.v1.Health`, and server reflection v1 and v1alpha (grpcurl
//! 1.8 speaks only v1alpha).

pub mod ext_authz;

use crate::authz::Authorizer;
use crate::config::ListenAddress;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};
use tonic_health::server::HealthReporter;

/// The bound gRPC listener: TCP, or a Unix-domain socket (`grpcAddress: unix:/path`).
#[derive(Debug)]
pub enum GrpcListener {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A listening Unix-domain socket, whose file is removed when the listener is dropped
/// (so a restart binds again without anyone cleaning up).
#[derive(Debug)]
pub struct UnixSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.listener.take();
        let _ = std::fs::remove_file(&self.path);
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
                Ok(GrpcListener::Unix(UnixSocket { listener: Some(listener), path: path.clone() }))
            }
        }
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_address(&self) -> ListenAddress {
        match self {
            GrpcListener::Tcp(listener) => {
                ListenAddress::Tcp(listener.local_addr().expect("a bound listener has an address"))
            }
            GrpcListener::Unix(socket) => ListenAddress::Unix(socket.path.clone()),
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
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
        GrpcListener::Unix(mut socket) => {
            let listener = socket.listener.take().expect("a bound socket has its listener");
            // `socket` lives until serving ends, then removes the file.
            let served = router
                .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), shutdown)
                .await;
            drop(socket);
            served
        }
    }
}
