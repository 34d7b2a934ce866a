//! The text grammar: one declaration per command drives parsing, help and usage lines.
//! (Stub laid down by the workspace skeleton.)

use crate::command::Command;

/// Why a command line did not parse: names the bad token, shows the usage line and suggests the
/// nearest command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub token: Option<String>,
    pub usage: Option<String>,
    pub suggestion: Option<String>,
}

/// Parses what a user typed after `/ops`.
pub fn parse(_text: &str) -> Result<Command, ParseError> {
    unimplemented!("grammar work in progress")
}

impl Command {
    /// The canonical text of this command; `parse(&cmd.to_text()) == Ok(cmd)`.
    pub fn to_text(&self) -> String {
        unimplemented!("grammar work in progress")
    }
}
