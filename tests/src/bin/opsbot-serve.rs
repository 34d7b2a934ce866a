//! `opsbot serve` as a separate process for the crash tests (`tests/tests/crash.rs`), which kill
//! it with SIGKILL: the same [`opsbot::app::serve`] the `opsbot` binary runs, on the configuration
//! file given as the only argument. (The tests cannot name the `opsbot` binary itself: Cargo
//! hands a test only the binaries of its own package.)

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: opsbot-serve CONFIG");
        return ExitCode::from(2);
    };
    let config = match opsbot::config::Config::load(Some(path.as_ref())) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(opsbot::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("opsbot-serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}
