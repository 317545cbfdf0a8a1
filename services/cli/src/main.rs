//! The `aloft` binary: parses the command line, starts tracing and runs the command (`aloft_cli::commands`).

use aloft_cli::args::{Cli, Command};
use clap::Parser;

/// Makes `aloft history X | head` end quietly, as command-line tools do, instead of panicking on a closed
/// stdout: Rust ignores SIGPIPE by default.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs the default disposition before any other thread exists; no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn main() {
    restore_default_sigpipe();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    };
    runtime.block_on(async_main());
}

async fn async_main() {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Dev { .. }) {
        "info"
    } else {
        "warn"
    };
    aloft_telemetry::init_tracing("aloft", default_level);
    match aloft_cli::commands::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    }
}
