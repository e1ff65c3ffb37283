//! The gRPC listener: Envoy's ext_authz `Authorization/Check` (the adapter in
//! [`ext_authz`]), `grpc.health.v1.Health`, and server reflection v1 and v1alpha (grpcurl
//! 1.8 speaks only v1alpha).

pub mod ext_authz;

use crate::authz::Authorizer;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;

/// The ext_authz descriptor set compiled by `build.rs` from `proto/`.
pub const EXT_AUTHZ_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ext_authz_descriptor.bin"));

/// Name under which gRPC health reports the ext_authz service.
pub const AUTHORIZATION_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// Serves every gRPC service on `listener` until `shutdown` resolves, then lets in-flight
/// calls finish. Health is SERVING from the start: Checks on excluded paths and with cached
/// state work before the IdP answers.
pub async fn serve(
    listener: TcpListener,
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

    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthorizationServer::new(ext_authz::ExtAuthz::new(authorizer)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
