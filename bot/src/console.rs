//! The console adapter: a chat in the terminal, and the embedded default for `opsbot demo`.
//!
//! Every line is a command as typed after `/ops`, except for three console verbs:
//! `as NAME` switches the speaker (so one person can play requester and approver),
//! `approve ID` / `deny ID` click a button on an approval card (`approve` alone approves the
//! one pending request the speaker may approve, and lists them when there are none or several;
//! `deny` always needs the id),
//! `switch #CHANNEL` moves the speaker into another channel (an incident's), and `quit` ends
//! the session. A `#` starting a word starts a comment. Replies render as text; buttons render
//! as the command to type; channel actions (incidents) as `# created #inc-3-db-down` lines, and
//! messages in a channel other than `console` carry its name.
//!
//! [`run`] reads the next line as soon as the previous one is *answered* (its first reply,
//! e.g. an approval card or the `Running …` message of a long operation), so a long operation
//! goes on in the background while the next line is handled; its progress and result are
//! printed when they come. Lines therefore start in the order typed, and a line that depends
//! on an earlier one's answer (`approve` after `scale`) sees it. At the end of input `run` waits
//! for every line still running.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opsbot_commands::{ButtonStyle, Reply, Tone};
use opsbot_policies::Subject;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::chat::{ApprovalClick, ChannelRef, ChatSink, DeliveryError, Invocation, MessageRef};
use crate::engine::Engine;
use crate::store::{Approval, StoreError};

tokio::task_local! {
    /// The number of the typed line whose work runs in this task: what the sink writes for it
    /// answers that line.
    static LINE: u64;
}

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
    /// The highest line number answered so far (see [`LINE`]).
    answered: watch::Sender<u64>,
    /// Channels created in this session (besides `console`).
    channels: std::sync::Mutex<BTreeSet<String>>,
}

impl<W: AsyncWrite + Unpin + Send> ConsoleSink<W> {
    pub fn new(out: W) -> Self {
        ConsoleSink {
            out: Mutex::new(out),
            next_id: AtomicU64::new(1),
            answered: watch::Sender::new(0),
            channels: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    fn has_channel(&self, name: &str) -> bool {
        name == CHANNEL
            || self
                .channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(name)
    }

    /// Notes that the line whose task writes now has been answered.
    fn mark_answered(&self) {
        if let Ok(line) = LINE.try_with(|n| *n) {
            self.answered.send_if_modified(|seen| {
                let newer = line > *seen;
                if newer {
                    *seen = line;
                }
                newer
            });
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
        self.write(&format!("#{id}{} {}", place(channel), render(reply)))
            .await?;
        self.mark_answered();
        Ok(MessageRef {
            platform: PLATFORM.into(),
            channel: channel.into(),
            id,
        })
    }

    async fn update(&self, message: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        self.write(&format!(
            "#{}{} (updated) {}",
            message.id,
            place(&message.channel),
            render(reply)
        ))
        .await?;
        self.mark_answered();
        Ok(())
    }

    async fn post_private(
        &self,
        channel: &str,
        user: &Subject,
        _origin: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        self.write(&format!(
            "(only {user}){} {}",
            place(channel),
            render(reply)
        ))
        .await
    }

    async fn create_channel(&self, name: &str) -> Result<ChannelRef, DeliveryError> {
        let created = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        if !created || name == CHANNEL {
            return Err(DeliveryError::NameTaken {
                name: name.to_owned(),
            });
        }
        self.write(&format!("# created #{name}\n")).await?;
        Ok(ChannelRef {
            platform: PLATFORM.into(),
            id: name.to_owned(),
            name: name.to_owned(),
        })
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), DeliveryError> {
        self.write(&format!("# #{channel} topic: {topic}\n")).await
    }

    async fn invite(&self, channel: &str, who: &[Subject]) -> Result<(), DeliveryError> {
        let names: Vec<String> = who.iter().map(|w| self.mention(w)).collect();
        self.write(&format!("# invited {} to #{channel}\n", names.join(" ")))
            .await
    }

    async fn pin(&self, message: &MessageRef) -> Result<(), DeliveryError> {
        self.write(&format!(
            "# pinned #{} in #{}\n",
            message.id, message.channel
        ))
        .await
    }

    async fn archive(&self, channel: &str) -> Result<(), DeliveryError> {
        self.write(&format!("# archived #{channel}\n")).await
    }

    fn mention(&self, who: &Subject) -> String {
        match who.kind() {
            "console" => format!("@{}", who.id()),
            _ => who.to_string(),
        }
    }
}

/// ` [#inc-3-db-down]` for a message outside the console's own channel.
fn place(channel: &str) -> String {
    if channel == CHANNEL {
        String::new()
    } else {
        format!(" [#{channel}]")
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
    /// The channel the speaker is in (`switch #NAME`).
    channel: String,
    /// Lines started so far (numbers lines for [`LINE`]).
    started: u64,
    /// Lines whose work may still be running.
    running: Vec<JoinHandle<()>>,
}

/// What a line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// The engine work a line asks for.
type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

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
            channel: CHANNEL.to_owned(),
            started: 0,
            running: Vec::new(),
        })
    }

    pub fn speaker(&self) -> &Subject {
        &self.speaker
    }

    /// Handles one typed line to the end (the command, its approval card or its result).
    pub async fn line(&mut self, line: &str) -> Result<Flow, DeliveryError> {
        match self.parse(line).await? {
            Ok(flow) => Ok(flow),
            Err(work) => {
                work.await;
                Ok(Flow::Continue)
            }
        }
    }

    /// Starts one typed line and returns once it is answered or done; a long operation goes
    /// on in the background (see the module docs). [`Session::finish`] waits for it.
    pub async fn start(&mut self, line: &str) -> Result<Flow, DeliveryError> {
        let work = match self.parse(line).await? {
            Ok(flow) => return Ok(flow),
            Err(work) => work,
        };
        self.started += 1;
        let number = self.started;
        let mut answered = self.sink.answered.subscribe();
        let mut task = tokio::spawn(LINE.scope(number, work));
        tokio::select! {
            _ = answered.wait_for(|seen| *seen >= number) => self.running.push(task),
            _ = &mut task => {}
        }
        self.running.retain(|t| !t.is_finished());
        Ok(Flow::Continue)
    }

    /// Waits until every started line is done.
    pub async fn finish(&mut self) {
        for task in self.running.drain(..) {
            let _ = task.await;
        }
    }

    /// What `line` asks for: done at once (`Ok`), or engine work to run (`Err`).
    async fn parse(&mut self, line: &str) -> Result<Result<Flow, Work>, DeliveryError> {
        // Before comments are cut: the channel's `#` is not one.
        if let Some(to) = line.trim().strip_prefix("switch ") {
            let name = to
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches('#');
            let note = if self.sink.has_channel(name) {
                self.channel = name.to_owned();
                format!("(now in #{name})\n")
            } else {
                format!("there is no channel #{name} in this session\n")
            };
            self.sink.write(&note).await?;
            return Ok(Ok(Flow::Continue));
        }
        let line = without_comment(line).trim();
        if line.is_empty() {
            return Ok(Ok(Flow::Continue));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let engine = self.engine.clone();
        let user = self.speaker.clone();
        let work: Work = match words.as_slice() {
            ["quit" | "exit"] => return Ok(Ok(Flow::Quit)),
            ["as", name] => {
                match console_subject(name) {
                    Ok(s) => {
                        self.speaker = s;
                        let note = format!("(now speaking as {})\n", self.speaker);
                        self.sink.write(&note).await?;
                    }
                    Err(e) => self.sink.write(&format!("{e}\n")).await?,
                }
                return Ok(Ok(Flow::Continue));
            }
            ["approve"] => Box::pin(approve_the_one(
                engine,
                self.sink.clone(),
                user,
                self.channel.clone(),
            )),
            ["deny"] => {
                // Unlike `approve`, never guessed: a denial ends the request for good.
                let note = "deny needs the request's id, as its card shows it: `deny ID`\n";
                self.sink.write(note).await?;
                return Ok(Ok(Flow::Continue));
            }
            [verb @ ("approve" | "deny"), id] => {
                let click = click(user, &self.channel, id, *verb == "approve");
                Box::pin(async move { engine.click(click).await })
            }
            _ => {
                let inv = Invocation {
                    platform: PLATFORM,
                    user,
                    groups: Vec::new(),
                    groups_unknown: false,
                    channel: self.channel.clone(),
                    text: line.trim_start_matches("/ops").trim().to_owned(),
                    delivery_id: None,
                    origin: None,
                };
                Box::pin(async move { engine.handle(inv).await })
            }
        };
        Ok(Err(work))
    }
}

fn click(user: Subject, channel: &str, approval_id: &str, approve: bool) -> ApprovalClick {
    ApprovalClick {
        platform: PLATFORM,
        user,
        groups: Vec::new(),
        groups_unknown: false,
        channel: channel.into(),
        approval_id: approval_id.to_owned(),
        approve,
        delivery_id: None,
        origin: None,
    }
}

/// `line` up to a `#` that starts a word (outside quotes), like a shell comment.
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return &line[..i],
            None => {}
        }
        previous = c;
    }
    line
}

/// Pending console requests that `speaker` may approve, and those they may not (with why).
async fn pending_for(
    engine: &Engine,
    speaker: &Subject,
) -> Result<(Vec<Approval>, Vec<(Approval, String)>), StoreError> {
    let now = jiff::Timestamp::now();
    let policy = engine.policy().current();
    let mut may = Vec::new();
    let mut may_not = Vec::new();
    for a in engine.store().pending().await? {
        if a.platform != PLATFORM || a.expires <= now {
            continue;
        }
        let requirement: opsbot_policies::Requirement = (&a.requirement).into();
        let earlier: Vec<Subject> = a
            .approvers
            .iter()
            .filter_map(|v| Subject::parse(&v.subject).ok())
            .collect();
        let standing = Subject::parse(&a.requester)
            .map_err(|e| e.to_string())
            .and_then(|requester| {
                policy.may_approve(&requirement, &requester, speaker, &[], &earlier)
            });
        match standing {
            Ok(()) => may.push(a),
            Err(why) => may_not.push((a, why)),
        }
    }
    Ok((may, may_not))
}

/// `approve` without an id: approves the one pending request `speaker` may approve; with none
/// or several, says so and lists them.
async fn approve_the_one<W: AsyncWrite + Unpin + Send + 'static>(
    engine: Engine,
    sink: Arc<ConsoleSink<W>>,
    speaker: Subject,
    channel: String,
) {
    let reply = match pending_for(&engine, &speaker).await {
        Ok((mut may, _)) if may.len() == 1 => {
            let one = may.remove(0);
            return engine.click(click(speaker, &channel, &one.id, true)).await;
        }
        Ok((may, may_not)) if may.is_empty() => {
            let mut reply = Reply::info("Nothing to approve").text(format!(
                "No pending request is waiting for {speaker}'s approval."
            ));
            for (a, why) in &may_not {
                reply = reply.field(
                    format!("{} · {}", a.id, a.command),
                    format!("asked by {}; you may not approve it: {why}", a.requester),
                );
            }
            reply
        }
        Ok((may, _)) => {
            let mut reply = Reply::info("Which one?").text(format!(
                "{} pending requests wait for {speaker}'s approval: type `approve ID`.",
                may.len()
            ));
            for a in &may {
                reply = reply
                    .field(&a.id, format!("{} (asked by {})", a.command, a.requester))
                    .button(
                        crate::engine::cards::APPROVE,
                        format!("Approve {}", a.id),
                        ButtonStyle::Primary,
                        &a.id,
                    );
            }
            reply
        }
        Err(e) => Reply::danger("Cannot read the pending approvals").text(e.to_string()),
    };
    if let Err(e) = sink.post(&channel, &reply).await {
        tracing::error!(error = %e, "cannot write to the console");
    }
}

/// Reads commands line by line from `input` until it ends or says `quit`, speaking as `speaker`,
/// then waits for the lines still running. Prompts are written only when `interactive`.
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
        if session.start(&line).await? == Flow::Quit {
            break;
        }
    }
    session.finish().await;
    Ok(())
}

fn console_subject(name: &str) -> Result<Subject, ConsoleError> {
    Subject::parse(&format!("console:{name}")).map_err(|_| ConsoleError::BadName(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn comments_start_at_a_word_outside_quotes() {
        assert_eq!(without_comment("status api   # read-only"), "status api   ");
        assert_eq!(without_comment("# a whole line"), "");
        assert_eq!(
            without_comment("logs api --grep \"a #1\""),
            "logs api --grep \"a #1\""
        );
        assert_eq!(
            without_comment("logs api --grep a#1"),
            "logs api --grep a#1"
        );
    }
}
