//! # authgate
//!
//! An OpenID Connect authentication server that Envoy (ext_authz gRPC), Istio and
//! forward-auth proxies (Traefik, Caddy, nginx) call before every request.
//!
//! # Layout
//!
//! Layers, top to bottom; a module imports only from layers below it.
//!
//! - [`server`]: binds the listeners, wires the parts together, drains on shutdown.
//! - [`grpc`]: adapter from Envoy ext_authz `Check` to the core; gRPC health and reflection.
//! - [`http`]: adapter from HTTP forward-auth to the core (`http::bridge`, plus back-channel
//!   logout); admin endpoints `/healthz`, `/readyz`, `/metrics` (`http::admin`).
//! - [`health`]: the health and readiness state the admin endpoints and gRPC health report.
//! - [`authz`]: the decision core, `Authorizer::decide(&AuthRequest) -> Decision`, with the
//!   browser login flow as HTTP (`authz::browser`), token refresh (`authz::refresh`),
//!   identity and policy (`authz::identity`) and the span/metrics/log around each decision
//!   (`authz::observe`); no wire formats.
//! - [`telemetry`]: logs, metrics (every instrument) and traces.
//! - [`oidc`]: the OpenID Connect protocol, free of decisions: discovery, signing keys, the
//!   relying-party client on `openidconnect` (`oidc::client`), bearer-token verification,
//!   back-channel logout tokens.
//! - [`session`]: encrypted session records, their cipher, and logout markers.
//! - [`cache`]: sessions and token state in memory, Redis or both, behind a circuit breaker.
//! - [`config`]: the configuration tree (YAML file + environment), defaults, validation.
//! - Leaves used by every layer: [`reason`] (the closed set of reason codes), [`claims`],
//!   [`clock`], [`retry`] (backoff with jitter), [`tls`] (the process's rustls provider).
//!
//! "The seed" in comments is the traefikoidc plugin's Redis cache guide, which this design
//! started from and whose configuration keys authgate keeps.
//!
//! The binary (`src/main.rs`) is the command line: `serve`, `check-config`.

pub mod authz;
pub mod cache;
pub mod claims;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod health;
pub mod http;
pub mod oidc;
pub mod reason;
pub mod retry;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;
