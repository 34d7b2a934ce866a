//! The console adapter: a chat in the terminal, and the embedded default for `opsbot demo`.
//!
//! Every line is a command as typed after `/ops`, except for three console verbs:
//! `as NAME` switches the speaker (so one person can play requester and approver),
//! `approve ID` / `deny ID` click a button on an approval card, and `quit` ends the session.
//! Replies render as text; buttons render as the command to type.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opsbot_commands::{Reply, Tone};
use opsbot_policies::Subject;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::chat::{ApprovalClick, ChatSink, DeliveryError, Invocation, MessageRef};
use crate::engine::Engine;

pub const PLATFORM: &str = "console";
/// The one channel of a console session.
pub const CHANNEL: &str = "console";

/// Renders a reply as plain text for a terminal.
pub fn render(reply: &Reply) -> String {
    let icon = match reply.tone {
        Tone::Ok => "✅",
        Tone::Info => "ℹ️ ",
        Tone::Warning => "⚠️ ",
        Tone::Danger => "⛔",
    };
    let mut out = format!("{icon} {}\n", reply.title);
    if let Some(text) = &reply.text {
        for line in text.lines() {
            out.push_str(&format!("   {line}\n"));
        }
    }
    let width = reply
        .fields
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0);
    for f in &reply.fields {
        out.push_str(&format!("   {:width$}  {}\n", f.name, f.value));
    }
    for b in &reply.blocks {
        if let Some(caption) = &b.caption {
            out.push_str(&format!("   {caption}:\n"));
        }
        for line in b.body.lines() {
            out.push_str(&format!("   │ {line}\n"));
        }
    }
    for b in &reply.buttons {
        out.push_str(&format!(
            "   [{}] type: {} {}\n",
            b.label, b.action_id, b.value
        ));
    }
    if let Some(footer) = &reply.footer {
        out.push_str(&format!("   — {footer}\n"));
    }
    out
}

/// A [`ChatSink`] that writes rendered replies to a terminal (or any writer).
pub struct ConsoleSink<W> {
    out: Mutex<W>,
    next_id: AtomicU64,
}

impl<W: AsyncWrite + Unpin + Send> ConsoleSink<W> {
    pub fn new(out: W) -> Self {
        ConsoleSink {
            out: Mutex::new(out),
            next_id: AtomicU64::new(1),
        }
    }

    async fn write(&self, text: &str) -> Result<(), DeliveryError> {
        let mut out = self.out.lock().await;
        let result = async {
            out.write_all(text.as_bytes()).await?;
            out.flush().await
        }
        .await;
        result.map_err(|e| DeliveryError::Failed {
            method: "console.write".into(),
            error: e.to_string(),
        })
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> ChatSink for ConsoleSink<W> {
    async fn post(&self, channel: &str, reply: &Reply) -> Result<MessageRef, DeliveryError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        self.write(&format!("#{id} {}", render(reply))).await?;
        Ok(MessageRef {
            platform: PLATFORM.into(),
            channel: channel.into(),
            id,
        })
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        self.write(&format!("#{} (updated) {}", message.id, render(reply)))
            .await
    }

    async fn post_private(
        &self,
        _channel: &str,
        user: &Subject,
        _origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        self.write(&format!("(only {user}) {}", render(reply)))
            .await
    }
}

/// Why the console stopped or refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("`{0}` is not a name: use letters, digits and dashes")]
    BadName(String),
    #[error("cannot read the terminal: {0}")]
    Input(#[from] std::io::Error),
    #[error("{0}")]
    Output(#[from] DeliveryError),
}

/// One person (or a script) chatting in the console; `as NAME` changes who that is.
pub struct Session<W> {
    engine: Engine,
    sink: Arc<ConsoleSink<W>>,
    speaker: Subject,
}

/// What a line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Session<W> {
    /// A session speaking as `console:{speaker}`; registers `sink` as the console's sink.
    pub fn new(
        engine: Engine,
        sink: Arc<ConsoleSink<W>>,
        speaker: &str,
    ) -> Result<Self, ConsoleError> {
        engine.register_sink(PLATFORM, sink.clone());
        Ok(Session {
            engine,
            sink,
            speaker: console_subject(speaker)?,
        })
    }

    pub fn speaker(&self) -> &Subject {
        &self.speaker
    }

    /// Handles one typed line to the end (the command, its approval card or its result).
    pub async fn line(&mut self, line: &str) -> Result<Flow, DeliveryError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(Flow::Continue);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["quit" | "exit"] => return Ok(Flow::Quit),
            ["as", name] => match console_subject(name) {
                Ok(s) => {
                    self.speaker = s;
                    let note = format!("(now speaking as {})\n", self.speaker);
                    self.sink.write(&note).await?;
                }
                Err(e) => self.sink.write(&format!("{e}\n")).await?,
            },
            [verb @ ("approve" | "deny"), id] => {
                self.engine
                    .click(ApprovalClick {
                        platform: PLATFORM,
                        user: self.speaker.clone(),
                        groups: Vec::new(),
                        channel: CHANNEL.into(),
                        approval_id: (*id).to_owned(),
                        approve: *verb == "approve",
                        delivery_id: None,
                        origin: None,
                    })
                    .await
            }
            _ => {
                self.engine
                    .handle(Invocation {
                        platform: PLATFORM,
                        user: self.speaker.clone(),
                        groups: Vec::new(),
                        channel: CHANNEL.into(),
                        text: line.trim_start_matches("/ops").trim().to_owned(),
                        delivery_id: None,
                        origin: None,
                    })
                    .await
            }
        }
        Ok(Flow::Continue)
    }
}

/// Reads commands line by line from `input` until it ends or says `quit`, speaking as `speaker`.
/// Prompts are written only when `interactive`.
pub async fn run<R, W>(
    engine: &Engine,
    sink: Arc<ConsoleSink<W>>,
    input: R,
    speaker: &str,
    interactive: bool,
) -> Result<(), ConsoleError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session::new(engine.clone(), sink.clone(), speaker)?;
    let mut lines = input.lines();
    loop {
        if interactive {
            let prompt = format!(
                "{}> ",
                session.speaker().as_str().trim_start_matches("console:")
            );
            sink.write(&prompt).await?;
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        if session.line(&line).await? == Flow::Quit {
            break;
        }
    }
    Ok(())
}

fn console_subject(name: &str) -> Result<Subject, ConsoleError> {
    Subject::parse(&format!("console:{name}")).map_err(|_| ConsoleError::BadName(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_commands::ButtonStyle;

    #[test]
    fn renders_every_part_of_a_reply() {
        let reply = Reply::warning("Approval needed")
            .text("scale api 5 -n production")
            .field("Rule", "scale-production")
            .field("Expires", "in 15m")
            .block(Some("pods".into()), "api-1 Running\napi-2 Pending")
            .button("approve", "Approve", ButtonStyle::Primary, "7f3k")
            .footer("asked by console:bob");
        let text = render(&reply);
        assert_eq!(
            text,
            "⚠️  Approval needed\n   scale api 5 -n production\n   Rule     scale-production\n   \
             Expires  in 15m\n   pods:\n   │ api-1 Running\n   │ api-2 Pending\n   \
             [Approve] type: approve 7f3k\n   — asked by console:bob\n"
        );
    }
}
