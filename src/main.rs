//! Parse config → build the app → serve → drain on signal.
#![forbid(unsafe_code)]

/// jemalloc rather than the C library's allocator. The static musl binary in the container image
/// spent twice the CPU per 16 KB request of a glibc build with musl's allocator (it hands freed
/// buffers back to the kernel at once: 8 page faults per request, 50 per 200 KB one); glibc's
/// keeps memory freed after a burst of 1 MB bodies for good. jemalloc is as fast as glibc's on
/// both and, from its background thread, gives memory back about a second after a burst (see
/// .cargo/config.toml), so the benchmark and the image run the same allocator.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use amp_rw_proxy::app::{self, App};
use amp_rw_proxy::cli::{Args, Command};
use amp_rw_proxy::config::{Config, EXIT_CONFIG_ERROR, Environment};
use amp_rw_proxy::http::server::{Drain, shutdown_signal};
use amp_rw_proxy::{aws, ops, telemetry};
use clap::Parser;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let cli = match args.command {
        None => args.serve,
        Some(Command::Policies(p)) => return ops::policies::main(&p),
        Some(Command::Check(cli)) => return ops::check::main(&cli),
        Some(Command::Probe(p)) => return ops::probe::run(&p),
    };
    let config = match Config::from_cli(&cli, &Environment::from_process()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("amp-rw-proxy: {errors}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    telemetry::logging::init(config.log_format);
    match app::runtime(config.worker_threads) {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let shutdown = shutdown_signal();
    let sdk = aws::load_aws_config(&config.routes[0].region, &config.egress).await;
    let app = match App::build(&config, &sdk).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    app::log_startup(&config, listener.local_addr().unwrap_or(config.listen));
    match app.serve(listener, shutdown).await {
        Drain::Complete => tracing::info!("drained; exiting"),
        Drain::TimedOut => {
            tracing::warn!("shutdown grace period over with requests still in flight; exiting")
        }
    }
    ExitCode::SUCCESS
}
