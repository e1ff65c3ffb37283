//! Wires the listeners together and runs them until shutdown.
//!
//! Shutdown (SIGTERM/SIGINT, or the future given to [`Server::run`]): readiness fails and
//! gRPC health turns NOT_SERVING at once, requests are still served for `drainDelay` (so
//! the proxies stop sending first), then the listeners stop accepting, in-flight Checks
//! finish (at most `shutdownTimeout`), and `run` returns.

use crate::authz::Authorizer;
use crate::authz::browser::Browser;
use crate::authz::refresh::Refresher;
use crate::cache::{Cache, CacheError, CacheSystem};
use crate::config::{Config, ListenAddresses};
use crate::health::HealthState;
use crate::oidc::backchannel::BackchannelLogout;
use crate::oidc::bearer::BearerVerifier;
use crate::oidc::client::RpClient;
use crate::oidc::discovery::Discovery;
use crate::oidc::jwks::Jwks;
use crate::session::{Cipher, Purpose, Sessions};
use crate::{grpc, http};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The I/O error is part of the message, not a chained source (printed once).
    #[error("cannot listen on {what} address {addr}: {error}")]
    Bind { what: &'static str, addr: String, error: std::io::Error },
    #[error("invalid listener address: {0}")]
    Address(String),
    #[error("cannot set up the cache: {0}")]
    Cache(#[from] CacheError),
    #[error("{what} listener failed: {message}")]
    Listener { what: &'static str, message: String },
}

/// A server whose listeners are bound (so their ports are known) but not yet serving.
pub struct Server {
    config: Config,
    metrics: Option<prometheus::Registry>,
    grpc: grpc::GrpcListener,
    http: TcpListener,
    admin: TcpListener,
}

impl Server {
    /// Binds the three listeners of `config`.
    pub async fn bind(config: Config) -> Result<Self, ServeError> {
        let addrs = config.listen_addresses().map_err(ServeError::Address)?;
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|error| ServeError::Bind { what, addr: addr.to_string(), error })
        };
        Ok(Server {
            grpc: grpc::GrpcListener::bind(&addrs.grpc).await.map_err(|error| ServeError::Bind {
                what: "grpc",
                addr: addrs.grpc.to_string(),
                error,
            })?,
            http: bind("http", addrs.http).await?,
            admin: bind("admin", addrs.admin).await?,
            config,
            metrics: None,
        })
    }

    /// Serves `registry` (filled by the OpenTelemetry Prometheus exporter) on `/metrics`.
    pub fn with_metrics(mut self, registry: prometheus::Registry) -> Self {
        self.metrics = Some(registry);
        self
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addresses(&self) -> ListenAddresses {
        let addr = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
        ListenAddresses { grpc: self.grpc.local_address(), http: addr(&self.http), admin: addr(&self.admin) }
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let addrs = self.local_addresses();
        let config = self.config;

        let cache = Arc::new(CacheSystem::start_observed(&config, Arc::new(crate::telemetry::metrics::CacheMetrics))?);
        crate::telemetry::metrics::observe_cache(&cache);
        let Components { authorizer, backchannel, discovery } = Components::build(&config, cache.cache());
        let authorizer = Arc::new(authorizer);
        let health = Arc::new(HealthState::new(cache.clone()).with_discovery(discovery.clone()));
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let stop = CancellationToken::new();

        let grpc_task = tokio::spawn(grpc::serve(
            self.grpc,
            authorizer.clone(),
            health_reporter.clone(),
            health_service,
            stop.clone().cancelled_owned(),
        ));
        let bridge = Arc::new(http::bridge::Bridge::new(&config, authorizer.clone()));
        let (callback, logout) = authorizer.login_paths().unwrap_or_default();
        let bridge_routes = http::bridge::router(bridge, callback, logout, Some(backchannel));
        let http_task = tokio::spawn(
            // The bridge checks who calls it (`forwardAuth.trustedProxies`).
            axum::serve(self.http, bridge_routes.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        let admin_task = tokio::spawn(
            axum::serve(
                self.admin,
                http::admin::router(http::admin::AdminState { health: health.clone(), metrics: self.metrics }),
            )
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
        );
        tracing::info!(
            grpc = %addrs.grpc, http = %addrs.http, admin = %addrs.admin,
            cache_mode = config.effective_cache_mode().as_str(),
            version = env!("CARGO_PKG_VERSION"),
            "authgate started"
        );

        // Any listener dying on its own is fatal; otherwise wait for the shutdown request.
        let mut tasks = Tasks { grpc: grpc_task, http: http_task, admin: admin_task };
        let early_exit = tokio::select! {
            () = shutdown => None,
            failure = tasks.first_failure() => Some(failure),
        };
        if let Some(failure) = early_exit {
            stop.cancel();
            return Err(failure);
        }

        tracing::info!("shutdown requested: draining");
        health.start_draining();
        health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        health_reporter.set_service_status(grpc::AUTHORIZATION_SERVICE, tonic_health::ServingStatus::NotServing).await;
        // Keep answering while the proxies notice: closing the listeners now would turn the
        // requests they still send into connection errors.
        let drain = config.drain_delay.get();
        if !drain.is_zero() {
            tracing::info!(drain_delay = ?drain, "still serving while proxies stop sending");
            tokio::time::sleep(drain).await;
        }
        stop.cancel();
        let timeout = config.shutdown_timeout.get();
        match tokio::time::timeout(timeout, tasks.join_all()).await {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!(timeout = ?timeout, "in-flight requests did not finish within shutdownTimeout")
            }
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The parts of a running server above the cache, wired together.
#[derive(Debug)]
pub struct Components {
    /// The decision core both adapters call.
    pub authorizer: Authorizer,
    /// The back-channel logout handler (`POST /backchannel-logout`).
    pub backchannel: Arc<BackchannelLogout>,
    /// The provider's discovery, which readiness waits for.
    pub discovery: Arc<Discovery>,
}

impl Components {
    /// Builds every part over `cache`; starts discovering the provider in the background.
    pub fn build(config: &Config, cache: &Cache) -> Components {
        if config.provider_url.starts_with("http://") && !is_loopback_url(&config.provider_url) {
            tracing::warn!(
                provider_url = %config.provider_url,
                "providerURL is plain http: whoever sits on that path can serve their own keys and forge tokens"
            );
        }
        let http = crate::oidc::http_client_with_timeout(config.provider_timeout.get());
        let discovery = Discovery::start(&config.provider_url, http.clone());
        let jwks = Arc::new(Jwks::new(discovery.clone(), http.clone()));
        let sessions = Sessions::new(
            cache.clone(),
            Arc::new(Cipher::new(config, Purpose::SessionRecord)),
            config.session_max_age.get(),
        );
        let client = Arc::new(RpClient::new(config, discovery.clone(), jwks.clone(), http));
        let bearer = BearerVerifier::new(
            config,
            discovery.clone(),
            jwks.clone(),
            cache.clone(),
            Cipher::new(config, Purpose::VerifiedToken),
        );
        let backchannel =
            Arc::new(BackchannelLogout::new(config, discovery.clone(), jwks, cache.clone(), sessions.clone()));
        let flow_cipher = Arc::new(Cipher::new(config, Purpose::FlowCookie));
        let browser = Browser::new(config, client.clone(), flow_cipher, sessions.clone(), cache.clone());
        let refresher = Refresher::new(client, sessions, cache.clone(), config.refresh_grace_period_seconds);
        let authorizer = Authorizer::new(config).with_bearer(bearer).with_browser(browser, refresher);
        Components { authorizer, backchannel, discovery }
    }
}

/// Whether a URL points at this machine (where plain http is a test set-up, not a risk).
fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).is_some_and(|host| {
        host == "localhost"
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

type TaskResult<E> = tokio::task::JoinHandle<Result<(), E>>;

struct Tasks {
    grpc: TaskResult<tonic::transport::Error>,
    http: TaskResult<std::io::Error>,
    admin: TaskResult<std::io::Error>,
}

fn listener_error(
    what: &'static str,
    result: Result<Result<(), impl std::fmt::Display>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Listener { what, message: e.to_string() }),
        Err(e) => Err(ServeError::Listener { what, message: e.to_string() }),
    }
}

impl Tasks {
    /// Resolves when a listener stops before shutdown was asked for.
    async fn first_failure(&mut self) -> ServeError {
        let (what, result) = tokio::select! {
            r = &mut self.grpc => ("grpc", listener_error("grpc", r)),
            r = &mut self.http => ("http", listener_error("http", r)),
            r = &mut self.admin => ("admin", listener_error("admin", r)),
        };
        result.err().unwrap_or(ServeError::Listener { what, message: "stopped unexpectedly".into() })
    }

    async fn join_all(self) -> Result<(), ServeError> {
        let (grpc, http, admin) = tokio::join!(self.grpc, self.http, self.admin);
        listener_error("grpc", grpc)?;
        listener_error("http", http)?;
        listener_error("admin", admin)
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}
