//! The do-nothing ext_authz server: the baseline of `scripts/bench-check.sh`. Same tonic
//! stack, same allocator and same server settings as authgate's gRPC listener; every Check
//! is answered OK at once, so what it costs is the floor for any external authorizer
//! (its connections are wrapped like authgate's, `authgate::grpc::SingleWrite`).
//!
//!     authgate-null-authz 127.0.0.1:9101
//!     authgate-null-authz unix:/tmp/null-authz.sock

use authgate::grpc::SingleWrite;
use envoy_types::ext_authz::v3::CheckResponseExt;
use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use futures_util::StreamExt;
use tonic::{Request, Response, Status};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Allow;

#[tonic::async_trait]
impl Authorization for Allow {
    async fn check(&self, _request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse::with_status(tonic::Status::ok(""))))
    }
}

#[tokio::main]
async fn main() {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9101".into());
    let server = tonic::transport::Server::builder().add_service(AuthorizationServer::new(Allow));
    if let Some(path) = address.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("bind");
        println!("null-authz listening on {address}");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        server.serve_with_incoming(incoming.map(|accepted| accepted.map(SingleWrite))).await.expect("serve");
        return;
    }
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    println!("null-authz listening on {}", listener.local_addr().unwrap());
    server
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(|accepted| accepted.map(SingleWrite)),
        )
        .await
        .expect("serve");
}
