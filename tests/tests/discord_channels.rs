//! Incident channels on Discord: the sink's channel automation (create, topic, invite, pin,
//! archive) against the wire-level fake, a taken name, missing permissions named exactly,
//! mentions that ping only the notified; and, through `app::start` in gateway mode, a reaction
//! reaching the engine's incidents desk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opsbot::chat::{ChannelRef, ChatSink, DeliveryError, MessageRef, Reaction};
use opsbot::config::Config;
use opsbot::discord::{DiscordConfig, DiscordSink, Interactions};
use opsbot::engine::{Caller, Desk, DeskFor, Facts};
use opsbot_commands::{Command, Reply};
use opsbot_policies::Subject;
use opsbot_tests::discord_fake::{DiscordFake, Permission, signer};
use opsbot_tests::eventually;
use serde_json::json;

const TOKEN: &str = "discord-channels-bot-token";
const APP: &str = "1000000000000000001";
const GUILD: &str = "2000000000000000001";
const USER: &str = "4000000000000000001";
const ROLE: &str = "6000000000000000001";
const PATIENCE: Duration = Duration::from_secs(60);

const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;

struct Setup {
    fake: DiscordFake,
    category: String,
    archive: String,
}

async fn setup() -> Setup {
    let fake = DiscordFake::start(TOKEN, APP).await;
    fake.add_guild(GUILD);
    let category = fake.add_channel(GUILD, "Incidents", 4, None);
    let archive = fake.add_channel(GUILD, "Incident archive", 4, None);
    Setup {
        fake,
        category,
        archive,
    }
}

fn sink_with(fake: &DiscordFake, category: Option<&str>, archive: Option<&str>) -> DiscordSink {
    let mut cfg = DiscordConfig::new(TOKEN, signer().public_key_hex(), APP)
        .with_api_url(&fake.api_url())
        .with_incidents(category.map(str::to_owned), archive.map(str::to_owned));
    cfg.guilds = vec![GUILD.to_owned()];
    cfg.retry.base_backoff = Duration::from_millis(10);
    cfg.update_interval = Duration::from_millis(10);
    DiscordSink::new(&cfg, Interactions::new(cfg.interaction_lifetime))
}

fn sink(s: &Setup) -> DiscordSink {
    sink_with(&s.fake, Some(&s.category), Some(&s.archive))
}

fn routes(fake: &DiscordFake) -> Vec<(&'static str, u16)> {
    fake.calls().iter().map(|c| (c.route, c.status)).collect()
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

fn not_permitted(err: &DeliveryError) -> (&str, &str) {
    match err {
        DeliveryError::NotPermitted { method, grant } => (method, grant),
        other => panic!("expected NotPermitted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_channel_is_created_in_the_incident_category_and_a_taken_name_is_refused() {
    let s = setup().await;
    let old = s.fake.add_channel(GUILD, "inc-1-old", 0, Some(&s.category));
    // A category of that name is no channel one could mix up.
    s.fake.add_channel(GUILD, "inc-9-cache", 4, None);
    let sink = sink(&s);

    let created = sink.create_channel("inc-2-db-down").await.unwrap();
    assert_eq!(created.platform, "discord");
    assert_eq!(created.name, "inc-2-db-down");
    let c = s.fake.channel(&created.id).expect("created on Discord");
    assert_eq!((c.kind, c.guild.as_str()), (0, GUILD));
    assert_eq!(c.parent.as_deref(), Some(s.category.as_str()));
    assert_eq!(
        routes(&s.fake),
        [("get_guild_channels", 200), ("create_channel", 201)]
    );
    assert_eq!(
        s.fake.calls()[1].body,
        json!({"name": "inc-2-db-down", "type": 0, "parent_id": s.category})
    );

    // Discord would allow a second channel of the same name: opsbot does not.
    for name in ["inc-1-old", "INC-1-OLD", "inc-2-db-down"] {
        let err = sink.create_channel(name).await.unwrap_err();
        assert!(
            matches!(&err, DeliveryError::NameTaken { name: n } if n == name),
            "{err:?}"
        );
    }
    let creates = |f: &DiscordFake| {
        f.calls()
            .iter()
            .filter(|c| c.route == "create_channel")
            .count()
    };
    assert_eq!(creates(&s.fake), 1);
    assert_eq!(s.fake.channel(&old).unwrap().name, "inc-1-old");
    sink.create_channel("inc-9-cache").await.unwrap();
    assert_eq!(creates(&s.fake), 2);

    // Without a category the channel goes to the top of the server.
    let plain = sink_with(&s.fake, None, None);
    let top = plain.create_channel("inc-3-queue").await.unwrap();
    assert_eq!(s.fake.channel(&top.id).unwrap().parent, None);
    assert!(
        s.fake
            .calls()
            .last()
            .unwrap()
            .body
            .get("parent_id")
            .is_none()
    );
}

#[tokio::test]
async fn topic_invitations_pins_and_archiving_change_the_channel() {
    let s = setup().await;
    let sink = sink(&s);
    let ch = sink.create_channel("inc-4-api-errors").await.unwrap();

    sink.set_topic(&ch.id, "P1 · investigating · API errors · commander <@4>")
        .await
        .unwrap();
    assert_eq!(
        s.fake.channel(&ch.id).unwrap().topic.as_deref(),
        Some("P1 · investigating · API errors · commander <@4>")
    );
    // Discord's topic limit is 1,024 characters: a longer one is cut, not refused.
    sink.set_topic(&ch.id, &"x".repeat(3000)).await.unwrap();
    assert_eq!(s.fake.channel(&ch.id).unwrap().topic.unwrap().len(), 1024);

    // People become member overwrites, roles role overwrites; Slack subjects have no place here.
    let who = [
        subject(&format!("discord:{USER}")),
        subject(&format!("discord-role:{ROLE}")),
        subject("slack:U0ALICE"),
    ];
    sink.invite(&ch.id, &who).await.unwrap();
    let c = s.fake.channel(&ch.id).unwrap();
    let person = &c.overwrites[USER];
    assert_eq!(
        (person.kind, person.allow, person.deny),
        (1, VIEW_CHANNEL | SEND_MESSAGES, 0)
    );
    let role = &c.overwrites[ROLE];
    assert_eq!(
        (role.kind, role.allow, role.deny),
        (0, VIEW_CHANNEL | SEND_MESSAGES, 0)
    );
    assert_eq!(c.overwrites.len(), 2);
    let puts: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "edit_permissions")
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(
        puts[0].body,
        json!({"type": 1, "allow": "3072", "deny": "0"})
    );

    // The card is pinned; a message that is not there is Discord's refusal.
    let card = sink
        .post(&ch.id, &Reply::danger("INC-4 API errors"))
        .await
        .unwrap();
    sink.pin(&card).await.unwrap();
    assert_eq!(s.fake.channel(&ch.id).unwrap().pins, vec![card.id.clone()]);
    let ghost = MessageRef {
        id: "9999".into(),
        ..card.clone()
    };
    let err = sink.pin(&ghost).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Refused { error, .. } if error.contains("10008")),
        "{err:?}"
    );

    // Archived: in the archive category, and nobody but opsbot may write any more.
    sink.archive(&ch.id).await.unwrap();
    let c = s.fake.channel(&ch.id).unwrap();
    assert_eq!(c.parent.as_deref(), Some(s.archive.as_str()));
    let everyone = &c.overwrites[GUILD];
    assert_eq!(everyone.kind, 0);
    assert!(everyone.deny & SEND_MESSAGES != 0 && everyone.allow & SEND_MESSAGES == 0);
    for id in [USER, ROLE] {
        let o = &c.overwrites[id];
        assert_eq!(o.allow, VIEW_CHANNEL, "{id} may still read, not write");
    }
    let bot = &c.overwrites[APP];
    assert_eq!(bot.kind, 1);
    assert_eq!(
        bot.allow & (VIEW_CHANNEL | SEND_MESSAGES),
        VIEW_CHANNEL | SEND_MESSAGES
    );
    assert!(
        s.fake
            .calls()
            .iter()
            .any(|c| c.route == "modify_channel" && c.body == json!({"parent_id": s.archive}))
    );

    // Without an archive category the channel stays where it is, read-only all the same.
    let plain = sink_with(&s.fake, Some(&s.category), None);
    let other = plain.create_channel("inc-5-dns").await.unwrap();
    let before = s.fake.calls().len();
    plain.archive(&other.id).await.unwrap();
    let c = s.fake.channel(&other.id).unwrap();
    assert_eq!(c.parent.as_deref(), Some(s.category.as_str()));
    assert!(c.overwrites[GUILD].deny & SEND_MESSAGES != 0);
    assert!(
        !s.fake.calls()[before..]
            .iter()
            .any(|c| c.route == "modify_channel")
    );
}

#[tokio::test]
async fn missing_permissions_come_back_naming_the_permission_to_grant() {
    let s = setup().await;
    let sink = sink(&s);
    let ch = sink.create_channel("inc-6-disk-full").await.unwrap();
    let card = sink.post(&ch.id, &Reply::danger("INC-6")).await.unwrap();

    // Discord's answer, as the fake gives it.
    s.fake.deny(Permission::ManageChannels);
    let raw = reqwest::Client::new()
        .patch(format!("{}/channels/{}", s.fake.api_url(), ch.id))
        .header("authorization", format!("Bot {TOKEN}"))
        .json(&json!({"topic": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 403);
    assert_eq!(
        raw.json::<serde_json::Value>().await.unwrap(),
        json!({"message": "Missing Permissions", "code": 50013})
    );

    let err = sink.create_channel("inc-7-x").await.unwrap_err();
    assert_eq!(
        not_permitted(&err),
        ("create_channel", "the Manage Channels permission")
    );
    assert_eq!(
        err.remedy().as_deref(),
        Some("give the bot the Manage Channels permission (and reinstall the app if it asks)")
    );
    let err = sink.set_topic(&ch.id, "P2").await.unwrap_err();
    assert_eq!(not_permitted(&err).1, "the Manage Channels permission");
    let err = sink.archive(&ch.id).await.unwrap_err();
    assert_eq!(not_permitted(&err).1, "the Manage Channels permission");
    s.fake.grant(Permission::ManageChannels);

    // Overwrites need Manage Roles; the first refusal ends the invitations (the rest would
    // fail alike).
    s.fake.deny(Permission::ManageRoles);
    let before = s.fake.calls().len();
    let who = [
        subject(&format!("discord:{USER}")),
        subject(&format!("discord-role:{ROLE}")),
    ];
    let err = sink.invite(&ch.id, &who).await.unwrap_err();
    assert_eq!(
        not_permitted(&err),
        (
            "edit_channel_permissions",
            "the Manage Roles permission (Manage Permissions on a channel)"
        )
    );
    assert_eq!(
        s.fake.calls()[before..]
            .iter()
            .map(|c| (c.route, c.status))
            .collect::<Vec<_>>(),
        [("edit_permissions", 403)]
    );
    let err = sink.archive(&ch.id).await.unwrap_err();
    assert!(not_permitted(&err).1.contains("Manage Roles"), "{err}");
    s.fake.grant(Permission::ManageRoles);

    s.fake.deny(Permission::PinMessages);
    let err = sink.pin(&card).await.unwrap_err();
    assert_eq!(
        not_permitted(&err),
        ("pin_message", "the Pin Messages permission")
    );
    assert!(
        err.to_string()
            .contains("needs the Pin Messages permission"),
        "{err}"
    );
    s.fake.grant(Permission::PinMessages);
    sink.pin(&card).await.unwrap();

    // 50001 Missing Access: a channel (or a server) the bot cannot see.
    s.fake.refuse_channel(&ch.id);
    let err = sink.set_topic(&ch.id, "P2").await.unwrap_err();
    assert_eq!(not_permitted(&err).1, "the View Channel permission");
    let elsewhere = DiscordFake::start(TOKEN, APP).await;
    let err = sink_with(&elsewhere, None, None)
        .create_channel("inc-8-x")
        .await
        .unwrap_err();
    assert_eq!(
        not_permitted(&err),
        ("get_guild_channels", "the View Channel permission")
    );
}

#[tokio::test]
async fn only_the_notified_people_and_roles_may_be_pinged() {
    let s = setup().await;
    let sink = sink(&s);
    let ch = sink.create_channel("inc-10-latency").await.unwrap();
    let page = Reply::danger("INC-10 escalated")
        .text(format!("@everyone discord:{USER} please look"))
        .notify(format!("discord-role:{ROLE}"))
        .notify(format!("discord:{USER}"))
        .notify("slack-group:S0ONCALL");
    sink.post(&ch.id, &page).await.unwrap();
    sink.post(&ch.id, &Reply::info("INC-10 note"))
        .await
        .unwrap();
    let posted: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.route == "create_message")
        .collect();
    assert_eq!(
        posted[0].body["allowed_mentions"],
        json!({"parse": [], "users": [USER], "roles": [ROLE]})
    );
    // Discord notifies for mentions in the content only (never in embeds).
    assert_eq!(posted[0].body["content"], format!("<@&{ROLE}> <@{USER}>"));
    assert_eq!(posted[1].body["allowed_mentions"], json!({"parse": []}));
    assert_eq!(posted[1].body["content"], "");

    assert_eq!(
        sink.mention(&subject(&format!("discord:{USER}"))),
        format!("<@{USER}>")
    );
    assert_eq!(
        sink.mention(&subject(&format!("discord-role:{ROLE}"))),
        format!("<@&{ROLE}>")
    );
    let link = ChannelRef {
        platform: "discord".into(),
        id: ch.id.clone(),
        name: ch.name.clone(),
    };
    assert_eq!(sink.channel_link(&link), format!("<#{}>", ch.id));
}

/// A stand-in for the incidents service that records the reactions it hears.
#[derive(Default)]
struct RecordingDesk {
    reactions: Mutex<Vec<Reaction>>,
}

#[async_trait]
impl Desk for RecordingDesk {
    async fn prepare(&self, _: &Caller, _: &Command) -> Result<Facts, Reply> {
        Err(Reply::danger("no incidents in this test"))
    }
    async fn execute(&self, _: &Caller, _: &Command) -> Result<Reply, Reply> {
        Err(Reply::danger("no incidents in this test"))
    }
    async fn reaction(&self, reaction: Reaction) {
        self.reactions.lock().unwrap().push(reaction);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_in_a_served_guild_reaches_the_incidents_desk_over_the_gateway() {
    let sim = kubesim::KubeSim::start(kubesim::Seed::default_seed())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = setup().await;
    s.fake.enable_gateway().await;
    std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), opsbot::app::EXAMPLE_POLICY).unwrap();
    let yaml = format!(
        "data_dir: {dir}\npolicy: policy.yaml\nlisten: 127.0.0.1:0\n\
         clusters:\n  - name: sim\n    kubeconfig: kubeconfig\n    default_namespace: production\n\
         discord:\n  api_url: {api}\n  application_id: \"{APP}\"\n  guilds: [\"{GUILD}\"]\n  mode: gateway\n\
         incidents:\n  discord_category: \"{cat}\"\n  discord_archive_category: \"{archive}\"\n",
        dir = dir.path().display(),
        api = s.fake.api_url(),
        cat = s.category,
        archive = s.archive,
    );
    let file = dir.path().join("opsbot.yaml");
    std::fs::write(&file, yaml).unwrap();
    let env: BTreeMap<String, String> =
        [("OPSBOT_DISCORD_TOKEN".to_owned(), TOKEN.to_owned())].into();
    let config = Config::load_with_env(Some(&file), &env).unwrap();
    let bot = opsbot::app::start(&config).await.unwrap();
    let desk = Arc::new(RecordingDesk::default());
    // In place of the incidents service `app::start` registered.
    bot.engine.register_desk(DeskFor::Incidents, desk.clone());

    // Incidents on Discord: GUILDS and GUILD_MESSAGE_REACTIONS, still no privileged intent.
    s.fake.wait_for_gateway(PATIENCE, |r| !r.is_empty()).await;
    assert_eq!(s.fake.gateway_received()[0]["intents"], 1 | (1 << 10));

    let add = |guild: Option<&str>, user: &str, message: &str| {
        let mut d = json!({
            "user_id": user,
            "channel_id": "3000000000000000009",
            "message_id": message,
            "emoji": {"id": null, "name": "📌"},
            "burst": false,
            "type": 0,
            "message_author_id": USER,
        });
        if let Some(g) = guild {
            d["guild_id"] = g.into();
            d["member"] = json!({"user": {"id": user}, "roles": []});
        }
        d
    };
    // In order: another server's, a direct message's, opsbot's own (the fake's READY says the
    // bot is user 1), then one in the served guild. Reactions reach the desk in the order they
    // came, so when the last has arrived the others were already passed over.
    for d in [
        add(Some("2999999999999999999"), USER, "5000000000000000001"),
        add(None, USER, "5000000000000000002"),
        add(Some(GUILD), "1", "5000000000000000003"),
        add(Some(GUILD), USER, "5000000000000000004"),
    ] {
        assert!(s.fake.gateway_dispatch("MESSAGE_REACTION_ADD", d));
    }
    let heard = eventually(
        PATIENCE,
        "a reaction heard by the desk",
        || async { desk.reactions.lock().unwrap().clone() },
        |heard| !heard.is_empty(),
    )
    .await;
    assert_eq!(heard.len(), 1, "{heard:?}");
    let r = &heard[0];
    assert_eq!(r.platform, "discord");
    assert_eq!(r.user.to_string(), format!("discord:{USER}"));
    assert_eq!(r.channel, "3000000000000000009");
    assert_eq!(r.message_id, "5000000000000000004");
    assert_eq!(r.emoji, "📌");
    assert_eq!(
        r.link.as_deref(),
        Some(
            format!("https://discord.com/channels/{GUILD}/3000000000000000009/5000000000000000004")
                .as_str()
        )
    );
    assert!(r.text.is_none() && r.author.is_none());
    bot.stop().await.unwrap();
}
