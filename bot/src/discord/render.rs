//! `Reply` → a Discord message (embeds and buttons). The only place that knows Discord's
//! message layout and limits.
//!
//! Layout: one embed — the tone as colour and emoji, the title, the text and every monospace
//! block (as fenced code blocks) in the description, the fields as embed fields, the footer —
//! and the buttons as action rows. Discord's limits (title 256, description 4,096, 25 fields of
//! 256/1,024, 6,000 characters per embed, 5 rows of 5 buttons, `custom_id` ≤ 100) are kept by
//! cutting, and the footer says what was cut. Code fences are always closed, and a fence inside
//! the output cannot end the block early. `allowed_mentions` is empty on every message, so
//! text echoed from users or logs can never ping anyone (`@everyone` included) — except the
//! people and roles the reply names in [`Reply::notify`]: they are mentioned in the message's
//! `content` (Discord notifies for mentions there, never in embeds) and are the only ids in
//! `allowed_mentions.users` / `.roles`.

use opsbot_commands::reply::{ButtonStyle, Limits, Reply, Tone, cut_chars, cut_lines};
use serde_json::{Value, json};

pub const TITLE_CHARS: usize = 256;
pub const DESCRIPTION_CHARS: usize = 4096;
pub const FIELD_NAME_CHARS: usize = 256;
pub const FIELD_VALUE_CHARS: usize = 1024;
pub const MAX_FIELDS: usize = 25;
pub const FOOTER_CHARS: usize = 2048;
/// All text of one embed together.
pub const EMBED_TOTAL_CHARS: usize = 6000;
pub const MAX_ROWS: usize = 5;
pub const BUTTONS_PER_ROW: usize = 5;
pub const CUSTOM_ID_CHARS: usize = 100;
pub const LABEL_CHARS: usize = 80;
/// Message flag: only the person the interaction belongs to sees it.
pub const EPHEMERAL: u64 = 1 << 6;

/// Fields and footer together keep at most this much, leaving the rest to the description.
const FIELDS_BUDGET: usize = 2500;
/// Room for fences, captions and newlines around each code block.
const FENCE_OVERHEAD: usize = 16;

/// The limits a reply is cut to before rendering for Discord.
pub fn limits() -> Limits {
    Limits {
        title_chars: TITLE_CHARS - 4,
        text_chars: 2000,
        field_chars: FIELD_VALUE_CHARS,
        max_fields: MAX_FIELDS,
        block_chars: DESCRIPTION_CHARS,
        max_blocks: 10,
    }
}

pub fn tone_emoji(tone: Tone) -> &'static str {
    match tone {
        Tone::Ok => "✅",
        Tone::Info => "ℹ️",
        Tone::Warning => "⚠️",
        Tone::Danger => "🛑",
    }
}

fn tone_colour(tone: Tone) -> u32 {
    match tone {
        Tone::Ok => 0x2EB67D,
        Tone::Info => 0x5865F2,
        Tone::Warning => 0xECB22E,
        Tone::Danger => 0xE01E5A,
    }
}

/// `discord:123` subjects become mentions (`<@123>`), shown as the person's name; with
/// `allowed_mentions` empty they notify nobody.
pub fn mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("discord:") {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let id_part = &after["discord:".len()..];
        let digits = id_part.bytes().take_while(u8::is_ascii_digit).count();
        let boundary = before
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '-');
        if digits > 0 && boundary {
            out.push_str(&format!("<@{}>", &id_part[..digits]));
            rest = &id_part[digits..];
        } else {
            out.push_str("discord:");
            rest = id_part;
        }
    }
    out.push_str(rest);
    out
}

/// `body` unable to close a code fence (a zero-width space breaks each "```").
fn escape_fences(body: &str) -> String {
    body.replace("```", "`\u{200B}``")
}

/// A fenced code block around `body` (escaped with [`escape_fences`]).
fn code_block(caption: Option<&str>, body: &str) -> String {
    match caption {
        Some(c) => format!("{}\n```\n{body}\n```", mentions(c)),
        None => format!("```\n{body}\n```"),
    }
}

/// Discord's cap on `allowed_mentions.users` and `.roles`.
pub const MAX_ALLOWED_MENTIONS: usize = 100;
/// A message's `content`.
pub const CONTENT_CHARS: usize = 2000;

/// The message `content` that pings the Discord people and roles of `notify` (subjects of
/// other platforms are left out), and the `allowed_mentions` that lets exactly those ping.
pub fn notifications(notify: &[String]) -> (String, Value) {
    let (mut users, mut roles): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut content = String::new();
    for who in notify {
        let Some((kind, id)) = who.split_once(':') else {
            continue;
        };
        let (list, mention) = match kind {
            "discord" if super::is_snowflake(id) => (&mut users, format!("<@{id}>")),
            "discord-role" if super::is_snowflake(id) => (&mut roles, format!("<@&{id}>")),
            _ => continue,
        };
        if list.contains(&id) || list.len() >= MAX_ALLOWED_MENTIONS {
            continue;
        }
        if content.chars().count() + mention.chars().count() + 1 > CONTENT_CHARS {
            break;
        }
        if !content.is_empty() {
            content.push(' ');
        }
        content.push_str(&mention);
        list.push(id);
    }
    let mut allowed = json!({ "parse": [] });
    if !users.is_empty() {
        allowed["users"] = json!(users);
    }
    if !roles.is_empty() {
        allowed["roles"] = json!(roles);
    }
    (content, allowed)
}

/// The message body (`content`, `embeds`, `components`, `allowed_mentions`) for `reply`.
pub fn render(reply: &Reply) -> Value {
    let mut r = reply.truncated(&limits());
    let mut cut: Vec<String> = Vec::new();

    let title = cut_chars(&format!("{} {}", tone_emoji(r.tone), r.title), TITLE_CHARS);

    // Fields: within their own limits, and together with the footer within FIELDS_BUDGET.
    let mut fields = Vec::new();
    let mut used = r.footer.as_deref().map_or(0, |f| f.chars().count());
    for (i, f) in r.fields.iter().enumerate() {
        let name = cut_chars(&mentions(&f.name), FIELD_NAME_CHARS);
        let value = cut_chars(&mentions(&f.value), FIELD_VALUE_CHARS);
        let value = if value.trim().is_empty() {
            "-".to_owned()
        } else {
            value
        };
        let len = name.chars().count() + value.chars().count();
        if used + len > FIELDS_BUDGET {
            cut.push(format!("{} more fields", r.fields.len() - i));
            break;
        }
        used += len;
        fields.push(json!({ "name": name, "value": value, "inline": len < 60 }));
    }

    // Buttons: rows of five, at most five rows; a custom_id that would be too long is left out.
    let mut buttons = Vec::new();
    for b in &r.buttons {
        let custom_id = format!("{}:{}", b.action_id, b.value);
        if custom_id.chars().count() > CUSTOM_ID_CHARS {
            cut.push(format!("button {:?} (id too long)", b.label));
            continue;
        }
        let style = match b.style {
            ButtonStyle::Primary => 1,
            ButtonStyle::Default => 2,
            ButtonStyle::Danger => 4,
        };
        buttons.push(json!({
            "type": 2,
            "style": style,
            "label": cut_chars(&b.label, LABEL_CHARS),
            "custom_id": custom_id,
        }));
    }
    if buttons.len() > MAX_ROWS * BUTTONS_PER_ROW {
        cut.push(format!(
            "{} more buttons",
            buttons.len() - MAX_ROWS * BUTTONS_PER_ROW
        ));
        buttons.truncate(MAX_ROWS * BUTTONS_PER_ROW);
    }
    let components: Vec<Value> = buttons
        .chunks(BUTTONS_PER_ROW)
        .map(|row| json!({ "type": 1, "components": row }))
        .collect();

    if !cut.is_empty() {
        let note = format!("cut: {}", cut.join(", "));
        r.footer = Some(match r.footer.take() {
            Some(f) => format!("{f} · {note}"),
            None => note,
        });
    }
    let footer = r.footer.as_deref().map(|f| cut_chars(f, FOOTER_CHARS));

    // The description gets what the title, fields and footer leave of the embed's total.
    let others = title.chars().count() + used + footer.as_deref().map_or(0, |f| f.chars().count());
    let budget = DESCRIPTION_CHARS.min(EMBED_TOTAL_CHARS.saturating_sub(others + 100));
    let description = description(&r, budget);

    let mut embed = json!({ "title": title, "color": tone_colour(r.tone) });
    if !description.is_empty() {
        embed["description"] = description.into();
    }
    if !fields.is_empty() {
        embed["fields"] = fields.into();
    }
    if let Some(footer) = footer {
        embed["footer"] = json!({ "text": footer });
    }
    let (content, allowed_mentions) = notifications(&r.notify);
    json!({
        "content": content,
        "embeds": [embed],
        "components": components,
        "allowed_mentions": allowed_mentions,
    })
}

/// The text, then each code block, within `budget` characters: the text takes at most half
/// when there are blocks, the blocks share the rest (each keeps its newest lines).
fn description(r: &Reply, budget: usize) -> String {
    let text = r.text.as_deref().map(mentions).unwrap_or_default();
    if r.blocks.is_empty() {
        return cut_chars(&text, budget);
    }
    let text = cut_chars(&text, budget / 2);
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(text);
    }
    let left = budget.saturating_sub(parts.first().map_or(0, |t| t.chars().count() + 1));
    let share = left / r.blocks.len();
    for b in &r.blocks {
        let caption = b.caption.as_deref().map(|c| cut_chars(c, 100));
        let room = share
            .saturating_sub(FENCE_OVERHEAD + caption.as_deref().map_or(0, |c| c.chars().count()));
        if room < 60 {
            continue;
        }
        // Escaped before it is cut, so the escapes count against the room.
        let body = escape_fences(&b.body);
        parts.push(code_block(caption.as_deref(), &cut_lines(&body, room)));
    }
    parts.join("\n")
}

/// The same message shown only to the person who asked (an ephemeral follow-up).
pub fn render_private(reply: &Reply) -> Value {
    let mut body = render(reply);
    body["flags"] = EPHEMERAL.into();
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed_total(e: &Value) -> usize {
        let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        len(&e["title"])
            + len(&e["description"])
            + len(&e["footer"]["text"])
            + e["fields"].as_array().map_or(0, |fs| {
                fs.iter().map(|f| len(&f["name"]) + len(&f["value"])).sum()
            })
    }

    #[test]
    fn a_reply_becomes_one_embed_with_buttons_and_no_mentions() {
        let reply = Reply::warning("Approval needed")
            .text("discord:42 asks to scale @everyone")
            .field("Command", "`scale api 5`")
            .block(Some("logs".into()), "a\nb")
            .footer("expires in 15m")
            .button("approve", "Approve", ButtonStyle::Primary, "7f3k")
            .button("deny", "Deny", ButtonStyle::Danger, "7f3k");
        let m = render(&reply);
        let e = &m["embeds"][0];
        assert_eq!(e["title"], "⚠️ Approval needed");
        assert_eq!(e["color"], 0xECB22E);
        assert_eq!(
            e["description"],
            "<@42> asks to scale @everyone\nlogs\n```\na\nb\n```"
        );
        assert_eq!(e["fields"][0]["name"], "Command");
        assert_eq!(e["footer"]["text"], "expires in 15m");
        let row = &m["components"][0];
        assert_eq!(row["type"], 1);
        assert_eq!(row["components"][0]["custom_id"], "approve:7f3k");
        assert_eq!(row["components"][0]["style"], 1);
        assert_eq!(row["components"][1]["custom_id"], "deny:7f3k");
        assert_eq!(row["components"][1]["style"], 4);
        assert_eq!(m["allowed_mentions"], json!({"parse": []}));
        assert!(m.get("flags").is_none());
        assert_eq!(render_private(&reply)["flags"], 64);
    }

    #[test]
    fn fences_in_a_log_block_count_against_the_description() {
        // Short lines full of fences: each escape adds a character after the cut.
        let logs: String = (0..3000).map(|n| format!("{n} ``` ```\n")).collect();
        let reply = Reply::info("Logs").block(None, logs);
        let d = render(&reply)["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            d.chars().count() <= DESCRIPTION_CHARS,
            "{}",
            d.chars().count()
        );
        assert_eq!(d.matches("```").count(), 2, "only the block's own fences");
    }

    #[test]
    fn huge_replies_stay_within_every_limit_and_say_what_was_cut() {
        let mut reply = Reply::danger("t".repeat(400)).text("x".repeat(9000));
        for i in 0..40 {
            reply = reply.field(format!("f{i}").repeat(100), "v".repeat(3000));
        }
        for i in 0..12 {
            let logs: String = (0..2000)
                .map(|n| format!("block {i} line {n} ```\n"))
                .collect();
            reply = reply.block(Some(format!("block {i}")), logs);
        }
        for i in 0..30 {
            reply = reply.button("a", format!("b{i}"), ButtonStyle::Default, i.to_string());
        }
        reply = reply.button("approve", "long", ButtonStyle::Primary, "z".repeat(120));
        let m = render(&reply);
        let e = &m["embeds"][0];
        assert!(e["title"].as_str().unwrap().chars().count() <= TITLE_CHARS);
        let d = e["description"].as_str().unwrap();
        assert!(d.chars().count() <= DESCRIPTION_CHARS, "{}", d.len());
        // Every fence is closed, and output cannot close one early.
        assert_eq!(d.matches("```").count() % 2, 0, "{d}");
        assert!(d.contains("earlier lines cut"));
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        for f in fields {
            assert!(f["name"].as_str().unwrap().chars().count() <= FIELD_NAME_CHARS);
            assert!(f["value"].as_str().unwrap().chars().count() <= FIELD_VALUE_CHARS);
        }
        assert!(embed_total(e) <= EMBED_TOTAL_CHARS, "{}", embed_total(e));
        let footer = e["footer"]["text"].as_str().unwrap();
        assert!(footer.contains("more fields"), "{footer}");
        assert!(footer.contains("more buttons"), "{footer}");
        assert!(footer.contains("id too long"), "{footer}");
        let rows = m["components"].as_array().unwrap();
        assert_eq!(rows.len(), MAX_ROWS);
        for row in rows {
            let buttons = row["components"].as_array().unwrap();
            assert!(buttons.len() <= BUTTONS_PER_ROW);
            for b in buttons {
                assert!(b["custom_id"].as_str().unwrap().len() <= CUSTOM_ID_CHARS);
            }
        }
    }

    #[test]
    fn only_the_notified_may_ping_and_they_are_in_the_content() {
        let reply = Reply::danger("P1 opened")
            .text("@everyone discord:7 discord-role:8")
            .notify("discord-role:42")
            .notify("discord:123")
            .notify("slack-group:S0ONCALL")
            .notify("discord:123")
            .notify("discord-role:abc");
        let m = render(&reply);
        assert_eq!(
            m["allowed_mentions"],
            json!({"parse": [], "users": ["123"], "roles": ["42"]})
        );
        assert_eq!(m["content"], "<@&42> <@123>");
        let only_roles = render(&Reply::info("x").notify("discord-role:1"));
        assert_eq!(
            only_roles["allowed_mentions"],
            json!({"parse": [], "roles": ["1"]})
        );
        // Nobody to notify (or nobody on Discord): nothing may ping.
        for r in [Reply::info("x"), Reply::info("x").notify("slack:U1")] {
            let m = render(&r);
            assert_eq!(m["allowed_mentions"], json!({"parse": []}));
            assert_eq!(m["content"], "");
        }
        // Discord's caps: 100 ids per list, 2,000 characters of content.
        let many: Vec<String> = (0..300)
            .map(|i| format!("discord:{}", 100_000_000_000_000_000u64 + i))
            .collect();
        let (content, allowed) = notifications(&many);
        let users = allowed["users"].as_array().unwrap();
        assert!(content.chars().count() <= CONTENT_CHARS);
        assert!(users.len() <= MAX_ALLOWED_MENTIONS && users.len() > 50);
        assert_eq!(content.matches("<@").count(), users.len());
    }

    #[test]
    fn mentions_only_for_whole_discord_subjects() {
        assert_eq!(mentions("by discord:123, ok"), "by <@123>, ok");
        assert_eq!(mentions("discord-role:5"), "discord-role:5");
        assert_eq!(mentions("xdiscord:5 discord:"), "xdiscord:5 discord:");
    }
}
