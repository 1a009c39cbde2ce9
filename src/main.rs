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

use std::io::Write as _;
use std::process::ExitCode;

use amp_rw_proxy::app::App;
use amp_rw_proxy::cli::{Args, Command};
use amp_rw_proxy::config::{Cli, Config, EXIT_CONFIG_ERROR, Environment};
use amp_rw_proxy::policies::{Policies, PoliciesArgs};
use amp_rw_proxy::server::{self, Drain};
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
        Some(Command::Policies(p)) => return policies(&p),
        Some(Command::Check(cli)) => return check(&cli),
        Some(Command::Probe(p)) => return amp_rw_proxy::probe::run(&p),
    };
    let config = match Config::from_cli(&cli, &Environment::from_process()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("amp-rw-proxy: {errors}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    amp_rw_proxy::telemetry::init(config.log_format);
    // One worker thread: the single-threaded scheduler, without work-stealing machinery or
    // cross-thread wake-ups (measurably cheaper per request, see benches/).
    let mut runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let shutdown = server::shutdown_signal();
    let sdk = amp_rw_proxy::load_aws_config(&config.routes[0].region).await;
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
    let listen = listener.local_addr().unwrap_or(config.listen);
    for route in &config.routes {
        if route.upstream.plaintext {
            tracing::warn!(
                route = route.name,
                "upstream is plain http://: requests and signatures travel unencrypted (testing only)"
            );
        }
        tracing::info!(
            route = route.name,
            paths = %route.paths.iter().map(|p| p.path.as_str()).collect::<Vec<_>>().join(" "),
            upstream_host = %route.upstream.host_header.to_str().unwrap_or("?"),
            upstream_path = %route.upstream.path,
            region = %route.region,
            role_arn = route.role.as_ref().map_or("none (base credentials)", |r| r.arn.as_str()),
            inbound_auth = route.inbound_auth.is_some() || config.inbound_auth.is_some(),
            "serving route"
        );
    }
    tracing::info!(
        %listen,
        routes = config.routes.len(),
        tls = config.tls.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "amp-rw-proxy listening"
    );
    match server::serve(
        listener,
        app.service.clone(),
        shutdown,
        app.serve_options(&config),
    )
    .await
    {
        Drain::Complete => tracing::info!("drained; exiting"),
        Drain::TimedOut => {
            tracing::warn!("shutdown grace period over with requests still in flight; exiting")
        }
    }
    ExitCode::SUCCESS
}

fn policies(args: &PoliciesArgs) -> ExitCode {
    // Written without panicking when stdout is closed early (`| head`).
    let mut out = std::io::stdout().lock();
    match Policies::from_args(args) {
        Ok(p) if args.format == "json" => {
            let _ = writeln!(out, "{}", p.to_json());
        }
        Ok(p) => {
            let _ = write!(out, "{}", p.to_text());
        }
        Err(errors) => {
            eprintln!(
                "amp-rw-proxy policies: invalid arguments ({} error(s)):",
                errors.len()
            );
            for e in errors {
                eprintln!("  - {e}");
            }
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    }
    ExitCode::SUCCESS
}

fn check(cli: &Cli) -> ExitCode {
    let config = match Config::from_cli(cli, &Environment::from_process()) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("amp-rw-proxy check: {errors}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amp-rw-proxy check: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = runtime.block_on(amp_rw_proxy::load_aws_config(&config.routes[0].region));
    let mut out = std::io::stdout().lock();
    let mut all_passed = true;
    for route in &config.routes {
        if config.routes.len() > 1 {
            let _ = writeln!(out, "route {}:", route.name);
        }
        let steps = runtime.block_on(amp_rw_proxy::check::run(route, &config, &sdk));
        for step in &steps {
            let _ = write!(out, "{}", step.render());
        }
        // Four steps with a role, three without: all must be there and passed.
        let expected = if route.role.is_some() { 4 } else { 3 };
        all_passed &= steps.len() == expected && steps.iter().all(|s| s.ok);
    }
    if all_passed {
        let _ = writeln!(out, "all checks passed");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
