//! The process-wide TLS set-up: one rustls crypto provider (aws-lc-rs) for every TLS client
//! authgate has (Redis, the OpenID Provider, OTLP). Installed once at start-up; without it a
//! `rediss://` connection panics.

/// Installs aws-lc-rs as the process's rustls provider; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
