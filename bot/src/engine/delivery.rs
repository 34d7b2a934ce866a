//! Replies through the platforms' sinks: private ones (`say`), public answers (`post`), edits.
//! Every reply leaves masked for secrets; every one that cannot be delivered is audited.

use opsbot_commands::Reply;
use opsbot_commands::ops::mask_reply;
use opsbot_policies::Subject;
use serde_json::json;

use super::{Ctx, Engine};
use crate::chat::{DeliveryError, MessageRef};
use crate::store::{AuditEntry, AuditKind};

impl Engine {
    /// Shows `reply` only to the person in `ctx` (refusals, denials, help, notices): nobody
    /// else in the channel sees it. An undeliverable reply is audited.
    pub(super) async fn say(&self, ctx: &Ctx<'_>, reply: &Reply) {
        let Some(sink) = self.sink(ctx.platform) else {
            tracing::error!(platform = ctx.platform, "no chat sink registered");
            return;
        };
        let reply = &mask_reply(reply.clone());
        if let Err(e) = sink
            .post_private(ctx.channel, ctx.user, ctx.origin, reply)
            .await
        {
            self.undelivered(ctx.platform, ctx.channel, reply, &e.to_string())
                .await;
        }
    }

    /// `Engine::say` for features outside the request pipeline (alert clicks): shows
    /// `reply` to `user` alone, in `channel` of `platform`, through the request `origin`.
    pub async fn tell(
        &self,
        platform: &str,
        channel: &str,
        user: &Subject,
        origin: Option<&str>,
        reply: &Reply,
    ) {
        let ctx = Ctx {
            platform,
            channel,
            user,
            origin,
        };
        self.say(&ctx, reply).await
    }

    /// Posts `reply` for everyone in the context's channel, as an answer to the context's
    /// request; an undeliverable reply is audited. Every reply leaves with secret-looking
    /// values masked (commands echo what people typed).
    pub(super) async fn post(&self, ctx: &Ctx<'_>, reply: &Reply) -> Option<MessageRef> {
        let Some(sink) = self.sink(ctx.platform) else {
            tracing::error!(platform = ctx.platform, "no chat sink registered");
            return None;
        };
        let reply = &mask_reply(reply.clone());
        match sink.answer(ctx.channel, ctx.origin, reply).await {
            Ok(msg) => Some(msg),
            Err(e) => {
                self.undelivered(ctx.platform, ctx.channel, reply, &e.to_string())
                    .await;
                None
            }
        }
    }

    /// Replaces a message opsbot posted; an undeliverable update is audited.
    pub(super) async fn update(&self, msg: &MessageRef, reply: &Reply) {
        self.update_for(msg, None, reply).await
    }

    /// [`Engine::update`] on behalf of the request `origin` that changed the message (see
    /// [`ChatSink::update_for`]).
    pub(super) async fn update_for(&self, msg: &MessageRef, origin: Option<&str>, reply: &Reply) {
        let Some(sink) = self.sink(&msg.platform) else {
            return;
        };
        let reply = &mask_reply(reply.clone());
        if let Err(e) = sink.update_for(msg, origin, reply).await {
            self.undelivered(&msg.platform, &msg.channel, reply, &e.to_string())
                .await;
        }
    }

    /// Posts `reply` in `channel` of `platform`, masked like every reply, for the bot's own
    /// announcements (audit checkpoints). Not audited when it fails, so an unreachable channel
    /// cannot feed the log it announces; the caller logs the error.
    pub async fn announce(
        &self,
        platform: &str,
        channel: &str,
        reply: &Reply,
    ) -> Result<MessageRef, crate::chat::DeliveryError> {
        let Some(sink) = self.sink(platform) else {
            return Err(crate::chat::DeliveryError::Refused {
                method: "post".to_owned(),
                error: format!("no chat adapter for platform {platform:?} is running"),
            });
        };
        sink.post(channel, &mask_reply(reply.clone())).await
    }

    /// Posts `reply` in `channel` on `platform` for features outside the request pipeline
    /// (alert messages). Masked like every reply; an undeliverable one is audited, and the
    /// error returned so the caller can retry.
    pub async fn post_in(
        &self,
        platform: &str,
        channel: &str,
        reply: &Reply,
    ) -> Result<MessageRef, DeliveryError> {
        let reply = &mask_reply(reply.clone());
        let result = match self.sink(platform) {
            Some(sink) => sink.post(channel, reply).await,
            None => Err(no_sink(platform)),
        };
        if let Err(e) = &result {
            self.undelivered(platform, channel, reply, &e.to_string())
                .await;
        }
        result
    }

    /// Replaces a message opsbot posted, like [`Engine::post_in`].
    pub async fn edit(&self, msg: &MessageRef, reply: &Reply) -> Result<(), DeliveryError> {
        let reply = &mask_reply(reply.clone());
        let result = match self.sink(&msg.platform) {
            Some(sink) => sink.update(msg, reply).await,
            None => Err(no_sink(&msg.platform)),
        };
        if let Err(e) = &result {
            self.undelivered(&msg.platform, &msg.channel, reply, &e.to_string())
                .await;
        }
        result
    }

    pub(super) async fn undelivered(
        &self,
        platform: &str,
        channel: &str,
        reply: &Reply,
        error: &str,
    ) {
        self.inner.metrics.undelivered.inc();
        tracing::error!(platform, channel, error, "reply not delivered");
        self.audit(
            AuditEntry::new(AuditKind::Delivery, platform)
                .channel(channel)
                .outcome("undelivered")
                .detail(json!({ "error": error, "title": reply.title, "text": reply.text })),
        )
        .await;
    }

    pub(super) async fn refuse_unrecorded(&self, ctx: &Ctx<'_>) {
        let reply = Reply::danger("Nothing was run").text(
            "opsbot could not record this request in its audit log (database unavailable), \
             so it did nothing. Try again in a moment.",
        );
        self.say(ctx, &reply).await;
    }

    pub(super) async fn store_failed(&self, ctx: &Ctx<'_>, error: &(dyn std::fmt::Display + Sync)) {
        tracing::error!(error = %error, "store failure");
        let reply = Reply::danger("Nothing was run")
            .text("opsbot's database did not answer; nothing was changed. Try again in a moment.");
        self.say(ctx, &reply).await;
    }
}

fn no_sink(platform: &str) -> DeliveryError {
    DeliveryError::Refused {
        method: "post".to_owned(),
        error: format!("no chat adapter for {platform} is running"),
    }
}
