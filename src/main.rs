//! The `authgate` command line: `serve` and `check-config`.

use anyhow::Context;
use authgate::config::{self, Config};
use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the request path allocates a lot of small, short-lived buffers (futures,
/// commands, headers), where it measured faster than glibc's malloc (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenID Connect authentication server for Envoy ext_authz, Istio and forward-auth proxies.
#[derive(Debug, Parser)]
#[command(name = "authgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC (ext_authz, health, reflection), HTTP (forward-auth) and admin listeners.
    Serve(ConfigArgs),
    /// Load and validate the configuration, print it with secrets redacted, and exit:
    /// 0 when valid, 1 (after listing every problem) when not.
    CheckConfig(ConfigArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// YAML configuration file; environment variables (REDIS_*, AUTHGATE_*) override it.
    #[arg(long, short = 'c', env = "AUTHGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::CheckConfig(args) => check_config(&args, &env),
        Command::Serve(args) => match config::load(args.config.as_deref(), &env) {
            Err(error) => {
                eprintln!("authgate: {error}");
                ExitCode::from(2)
            }
            Ok(config) => match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("authgate: {error:#}");
                    ExitCode::FAILURE
                }
            },
        },
    }
}

fn check_config(args: &ConfigArgs, env: &HashMap<String, String>) -> ExitCode {
    let (config, problems) = config::load_lenient(args.config.as_deref(), env);
    if let Some(config) = &config {
        println!("# effective configuration (secrets redacted)");
        for line in config.effective_lines() {
            println!("{line}");
        }
    }
    if problems.is_empty() {
        eprintln!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", config::ConfigError { problems });
    ExitCode::FAILURE
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Before anything opens a TLS connection (OTLP, Redis, the provider).
    authgate::tls::install_crypto_provider();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    runtime.block_on(async {
        // Inside the runtime: the OTLP exporters need it.
        let telemetry = authgate::telemetry::Telemetry::init(config.log_level, config.log_format);
        let result = async {
            let server = authgate::server::Server::bind(config).await?.with_metrics(telemetry.registry());
            server.run(authgate::server::shutdown_signal()).await
        }
        .await;
        telemetry.shutdown();
        result.map_err(anyhow::Error::from)
    })
}
