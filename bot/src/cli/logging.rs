//! Tracing set-up: JSON lines for servers (`OPSBOT_LOG_FORMAT=json`), compact text otherwise;
//! the level from `RUST_LOG` (default `info` for servers, `warn` in the terminal chat).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Server,
    Interactive,
}

pub fn init(mode: Mode) {
    let default = match mode {
        Mode::Server => "info",
        Mode::Interactive => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("OPSBOT_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
