//! Integration tests: the configuration loader and CLI, and the running server reached
//! through its real clients (Envoy, grpcurl, plain HTTP). One test binary, many modules,
//! so the crate links once.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod backchannel;
mod bearer;
mod bridge;
mod cache_conformance;
mod cache_resilience;
mod config_cli;
mod config_files;
mod decisions;
mod deploy;
mod envoy_ext_authz;
mod faults;
mod grpcurl;
mod hostile;
mod lifecycle;
mod login;
mod observability;
mod proxies;
mod reasons;
mod redis_ops;
mod refresh;
mod replicas;
mod security;
mod soak;
mod unix_socket;
