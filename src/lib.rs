//! # authgate
//!
//! An OpenID Connect authentication server that Envoy (ext_authz gRPC), Istio and
//! forward-auth proxies (Traefik, Caddy, nginx) call before every request.
//!
//! # Layout
//!
//! - [`config`]: the configuration tree (YAML file + environment), defaults, validation.
//! - [`authz`]: the decision core, `Authorizer::decide(&AuthRequest) -> Decision`; no wire formats.
//! - [`grpc`]: adapter from Envoy ext_authz `Check` to the core; gRPC health and reflection.
//! - [`http`]: adapter from HTTP forward-auth to the core (`http::bridge`); admin endpoints
//!   `/healthz`, `/readyz`, `/metrics` (`http::admin`).
//! - [`oidc`]: the relying party: provider discovery, signing keys, bearer-token verification.
//! - [`cache`]: sessions and token state in memory, Redis or both, behind a circuit breaker.
//! - [`health`]: the health and readiness state the admin endpoints and gRPC health report.
//! - [`telemetry`]: logging setup.
//! - [`session`]: encrypted session records, the session cookie, the AES-256-GCM cipher.
//! - [`server`]: binds the listeners, runs them, drains on shutdown.
//!
//! The binary (`src/main.rs`) is the command line: `serve`, `check-config`.

pub mod authz;
pub mod cache;
pub mod config;
pub mod grpc;
pub mod health;
pub mod http;
pub mod oidc;
pub mod server;
pub mod session;
pub mod telemetry;
