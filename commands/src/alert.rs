//! The alert commands' vocabulary: `alerts` and `silence …`, platform-neutral. The bot keeps
//! alerts (`bot/src/alerts/`) and asks Alertmanager for silences; this crate only parses and
//! prints the commands.

use std::time::Duration;

/// What an alert command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertCmd {
    /// Stored alerts, firing first; `-n` filters by namespace.
    List {
        severity: Option<String>,
    },
    /// Alertmanager's active and pending silences.
    SilenceList,
    /// A new silence: matchers in Alertmanager's syntax (`alertname="X", namespace="prod"`).
    SilenceAdd {
        matchers: String,
        duration: Duration,
        comment: String,
    },
    SilenceExpire {
        id: String,
    },
}
