//! A stand-in for the engine behind a chat adapter, for tests of the adapter layer alone.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::future::BoxFuture;
use opsbot::chat::Membership;
use opsbot::chat::{ApprovalClick, ChatSink, Invocation, Platform};
use opsbot::engine::{Inbound, Refusal, RejectionKind};
use opsbot::slack::{Pipeline, SlackSink};
use opsbot_commands::reply::Reply;
use tokio::sync::mpsc;

/// What reached the pipeline.
#[derive(Debug)]
pub enum Seen {
    Handle(Invocation),
    Click(ApprovalClick),
    Reject(RejectionKind, String),
}

/// Takes each delivery once (a repeat is a duplicate, recorded as a replay, as the engine's
/// inbox does), records what it was handed, and answers every invocation with one message
/// (`ran <text>`) through the real Slack sink.
pub struct Recorder {
    seen: mpsc::UnboundedSender<Seen>,
    sink: SlackSink,
    delivered: Mutex<HashSet<String>>,
}

impl Recorder {
    pub fn new(seen: mpsc::UnboundedSender<Seen>, sink: SlackSink) -> Recorder {
        Recorder {
            seen,
            sink,
            delivered: Mutex::default(),
        }
    }
}

#[async_trait]
impl Pipeline for Recorder {
    async fn take(
        &self,
        inbound: Inbound,
        groups: BoxFuture<'static, Membership>,
    ) -> Result<(), Refusal> {
        let id = match &inbound {
            Inbound::Command(i) => i.delivery_id.clone(),
            Inbound::Click(c) => c.delivery_id.clone(),
        }
        .unwrap_or_default();
        if !self.delivered.lock().unwrap().insert(id.clone()) {
            let detail = format!("delivery {id} seen before");
            let _ = self.seen.send(Seen::Reject(RejectionKind::Replay, detail));
            return Err(Refusal::Duplicate);
        }
        let (seen, sink) = (self.seen.clone(), self.sink.clone());
        tokio::spawn(async move {
            match inbound.with_groups(groups.await) {
                Inbound::Command(inv) => {
                    let reply = Reply::ok(format!("ran {}", inv.text));
                    let _ = sink.post(&inv.channel, &reply).await;
                    let _ = seen.send(Seen::Handle(inv));
                }
                Inbound::Click(click) => {
                    let _ = seen.send(Seen::Click(click));
                }
            }
        });
        Ok(())
    }
    async fn tell_refused(&self, _inbound: &Inbound, _refusal: Refusal) {}
    async fn reject(&self, _platform: Platform, kind: RejectionKind, detail: &str) {
        let _ = self.seen.send(Seen::Reject(kind, detail.to_owned()));
    }
}
