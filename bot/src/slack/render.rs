//! `Reply` → Block Kit. The only place that knows Slack's message layout and limits.
//!
//! Layout: a header (tone as an emoji, then the title), the text as a section, fields in
//! sections of up to ten, each monospace block as one or more code sections (split on line
//! boundaries so every text object stays within Slack's 3,000 characters), buttons as an actions
//! block, the footer as a context block. What does not fit is cut, and the message says so.

use opsbot_commands::reply::{ButtonStyle, Limits, Reply, Tone};
use slack_morphism::prelude::*;

/// Slack's limit for one text object in a section.
pub const TEXT_OBJECT_CHARS: usize = 3000;
/// Slack's limit for one field text.
pub const FIELD_CHARS: usize = 2000;
/// Slack's limit for a header's plain text.
pub const HEADER_CHARS: usize = 150;
/// Slack's limit for blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Fields per section block.
const FIELDS_PER_SECTION: usize = 10;
/// Elements per actions block.
const BUTTONS_PER_ACTIONS: usize = 25;
/// Button label limit.
const BUTTON_LABEL_CHARS: usize = 75;
/// Button value limit.
const BUTTON_VALUE_CHARS: usize = 2000;
/// Room left in a code section for the fences and a caption line.
const CODE_CHUNK_CHARS: usize = 2800;
/// A monospace block may be split into at most this many sections before it is cut.
const CODE_SECTIONS_PER_BLOCK: usize = 3;
/// Fallback (notification) text limit.
const FALLBACK_CHARS: usize = 500;

/// The limits opsbot's replies are cut to before rendering for Slack.
pub fn limits() -> Limits {
    Limits {
        title_chars: HEADER_CHARS - 3,
        text_chars: TEXT_OBJECT_CHARS,
        field_chars: FIELD_CHARS - 160,
        max_fields: 20,
        block_chars: CODE_CHUNK_CHARS * CODE_SECTIONS_PER_BLOCK,
        max_blocks: 10,
    }
}

/// The emoji that stands for a tone in the header.
pub fn tone_emoji(tone: Tone) -> &'static str {
    match tone {
        Tone::Ok => "✅",
        Tone::Info => "ℹ️",
        Tone::Warning => "⚠️",
        Tone::Danger => "🛑",
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters, so text from users
/// or Kubernetes can never become a mention (`<!channel>`) or a link.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` for mrkdwn and turns Slack user subjects (`slack:U123ABC`) into mentions
/// (`<@U123ABC>`), which Slack shows as the person's name, and channel references
/// (`slack-channel:C123`) into channel links. Nothing else becomes markup.
pub fn mrkdwn(s: &str) -> String {
    mrkdwn_notifying(s, &[])
}

/// [`mrkdwn`], and user groups named in `notify` (`slack-group:S123`, from [`Reply::notify`])
/// become group mentions (`<!subteam^S123>`) that notify them. Other group subjects stay text,
/// so echoed text can never ping a group.
pub fn mrkdwn_notifying(s: &str, notify: &[String]) -> String {
    let escaped = escape(s);
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(pos) = rest.find("slack") {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let boundary_before = before
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'));
        let kinds = [
            ("slack:", "user"),
            ("slack-group:", "group"),
            ("slack-channel:", "channel"),
        ];
        let found = kinds.iter().find(|(p, _)| after.starts_with(p));
        let Some((prefix, kind)) = found.filter(|_| boundary_before) else {
            out.push_str("slack");
            rest = &after["slack".len()..];
            continue;
        };
        let after_prefix = &after[prefix.len()..];
        let id_len = after_prefix
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .count();
        let id = &after_prefix[..id_len];
        let boundary_after = after_prefix[id_len..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let markup = match *kind {
            _ if !boundary_after || id.len() < 3 => None,
            "user" if id.starts_with('U') || id.starts_with('W') => Some(format!("<@{id}>")),
            "channel" if id.starts_with('C') || id.starts_with('G') => Some(format!("<#{id}>")),
            "group"
                if id.starts_with('S')
                    && notify.iter().any(|n| n == &format!("slack-group:{id}")) =>
            {
                Some(format!("<!subteam^{id}>"))
            }
            _ => None,
        };
        match markup {
            Some(m) => {
                out.push_str(&m);
                rest = &after_prefix[id_len..];
            }
            None => {
                out.push_str(prefix);
                rest = after_prefix;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders a reply as message content for `chat.postMessage` / `chat.update`.
pub fn render(reply: &Reply) -> SlackMessageContent {
    // The footer is cut first, so the notes `truncated` appends to it always fit.
    let mut reply = reply.clone();
    reply.footer = reply.footer.map(|f| cut(&f, 1000));
    let reply = reply.truncated(&limits());
    let mut blocks: Vec<SlackBlock> = Vec::new();

    // A header is plain text: the title's `code` marks would show as literal backticks.
    let header = format!(
        "{} {}",
        tone_emoji(reply.tone),
        reply.title.replace('`', "")
    );
    blocks.push(SlackHeaderBlock::new(cut(&header, HEADER_CHARS).into()).into());

    if let Some(text) = reply.text.as_deref().filter(|t| !t.trim().is_empty()) {
        blocks.push(section(&cut(
            &mrkdwn_notifying(text, &reply.notify),
            TEXT_OBJECT_CHARS,
        )));
    }

    for chunk in reply.fields.chunks(FIELDS_PER_SECTION) {
        let fields = chunk
            .iter()
            .map(|f| {
                let text = format!(
                    "*{}*\n{}",
                    escape(&f.name),
                    mrkdwn_notifying(&f.value, &reply.notify)
                );
                SlackBlockText::from(SlackBlockMarkDownText::new(cut(&text, FIELD_CHARS)))
            })
            .collect();
        blocks.push(SlackSectionBlock::new().with_fields(fields).into());
    }

    for mono in &reply.blocks {
        // Chunks are measured as escaped (`<none>` becomes `&lt;none&gt;`), so escaping never
        // pushes one past the limit and cuts a table mid-row.
        let chunks = split_lines_by(&mono.body, CODE_CHUNK_CHARS, escaped_len);
        let parts = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut text = String::new();
            if let Some(caption) = mono.caption.as_deref().filter(|c| !c.is_empty()) {
                let caption = cut(&escape(caption), 120);
                if parts > 1 {
                    text.push_str(&format!("*{caption}* ({}/{parts})\n", i + 1));
                } else {
                    text.push_str(&format!("*{caption}*\n"));
                }
            }
            // The chunk fits once escaped; still, the closing fence must survive.
            let room = TEXT_OBJECT_CHARS.saturating_sub(text.chars().count() + "```\n\n```".len());
            text.push_str("```\n");
            text.push_str(&cut(&code(&chunk), room));
            text.push_str("\n```");
            blocks.push(section(&text));
        }
    }

    let mut buttons_cut = 0;
    if !reply.buttons.is_empty() {
        let max_buttons = BUTTONS_PER_ACTIONS * 2;
        buttons_cut = reply.buttons.len().saturating_sub(max_buttons);
        for chunk in
            reply.buttons[..reply.buttons.len().min(max_buttons)].chunks(BUTTONS_PER_ACTIONS)
        {
            let elements = chunk
                .iter()
                .map(|b| {
                    let mut button = SlackBlockButtonElement::new(
                        cut(&b.label, BUTTON_LABEL_CHARS).as_str().into(),
                    )
                    .with_action_id(b.action_id.clone().into())
                    .with_value(cut(&b.value, BUTTON_VALUE_CHARS));
                    match b.style {
                        ButtonStyle::Primary => {
                            button = button.with_style(SlackBlockButtonStyle::Primary)
                        }
                        ButtonStyle::Danger => {
                            button = button.with_style(SlackBlockButtonStyle::Danger)
                        }
                        ButtonStyle::Default => {}
                    }
                    SlackActionBlockElement::Button(button)
                })
                .collect();
            blocks.push(SlackActionsBlock::new(elements).into());
        }
    }

    let mut footer = reply.footer.clone().unwrap_or_default();
    let mut blocks = fit_blocks(blocks, &mut footer);
    if buttons_cut > 0 {
        push_note(&mut footer, &format!("cut: {buttons_cut} more buttons"));
    }
    if !footer.is_empty() {
        blocks.push(
            SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
                SlackBlockMarkDownText::new(cut(&mrkdwn(&footer), TEXT_OBJECT_CHARS)),
            )])
            .into(),
        );
    }

    SlackMessageContent::new()
        .with_text(fallback_text(&reply))
        .with_blocks(blocks)
}

/// The plain text Slack shows in notifications and where blocks cannot be displayed.
pub fn fallback_text(reply: &Reply) -> String {
    let mut s = format!("{} {}", tone_emoji(reply.tone), reply.title);
    if let Some(text) = reply.text.as_deref().filter(|t| !t.is_empty()) {
        s.push_str(": ");
        s.push_str(text);
    }
    cut(&mrkdwn(&s), FALLBACK_CHARS)
}

/// Keeps a message within Slack's 50 blocks (one kept free for the footer): the header and the
/// actions (the buttons matter most) stay, blocks are cut from the end of the body, and the
/// footer says how many.
fn fit_blocks(blocks: Vec<SlackBlock>, footer: &mut String) -> Vec<SlackBlock> {
    if blocks.len() < MAX_BLOCKS {
        return blocks;
    }
    let (actions, mut body): (Vec<SlackBlock>, Vec<SlackBlock>) = blocks
        .into_iter()
        .partition(|b| matches!(b, SlackBlock::Actions(_)));
    let keep = (MAX_BLOCKS - 1).saturating_sub(actions.len());
    let cut_count = body.len().saturating_sub(keep);
    body.truncate(keep);
    body.extend(actions);
    push_note(footer, &format!("cut: {cut_count} more blocks"));
    body
}

fn section(mrkdwn: &str) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockMarkDownText::new(mrkdwn.to_owned()).into())
        .into()
}

fn push_note(footer: &mut String, note: &str) {
    if !footer.is_empty() {
        footer.push_str(" · ");
    }
    footer.push_str(note);
}

/// Escapes text for a code fence: mrkdwn escapes, and no ``` that would close the fence early.
fn code(s: &str) -> String {
    escape(s).replace("```", "`\u{200b}`\u{200b}`")
}

/// Cuts `s` to at most `max` characters, saying how many were cut.
pub fn cut(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_owned();
    }
    let note_room = 32.min(max);
    let keep = max - note_room;
    let kept: String = s.chars().take(keep).collect();
    let note = format!("… ({} chars cut)", total - keep);
    let mut out = kept;
    out.push_str(&note);
    // The note is at most 32 characters for any realistic count, but never exceed `max`.
    out.chars().take(max).collect()
}

/// How many characters `c` takes once escaped for mrkdwn.
fn escaped_len(c: char) -> usize {
    match c {
        '&' => "&amp;".len(),
        '<' | '>' => "&lt;".len(),
        _ => 1,
    }
}

/// Splits monospace text into chunks of at most `max` characters, on line boundaries where
/// possible (a single longer line is split hard).
pub fn split_lines(s: &str, max: usize) -> Vec<String> {
    split_lines_by(s, max, |_| 1)
}

/// [`split_lines`], with each character counted as `weight` says (e.g. its escaped length).
fn split_lines_by(s: &str, max: usize, weight: impl Fn(char) -> usize) -> Vec<String> {
    let max = max.max(1);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_len = 0usize;
    for line in s.split('\n') {
        // Hard-split a line that alone is over `max`.
        let mut pieces = Vec::new();
        let (mut piece, mut piece_len) = (String::new(), 0usize);
        for c in line.chars() {
            let w = weight(c);
            if piece_len + w > max && piece_len > 0 {
                pieces.push((std::mem::take(&mut piece), piece_len));
                piece_len = 0;
            }
            piece.push(c);
            piece_len += w;
        }
        pieces.push((piece, piece_len));
        for (piece, len) in pieces {
            let extra = if current_len == 0 { len } else { len + 1 };
            if current_len > 0 && current_len + extra > max {
                chunks.push(std::mem::take(&mut current));
                current_len = 0;
            }
            if current_len > 0 {
                current.push('\n');
                current_len += 1;
            }
            current.push_str(&piece);
            current_len += len;
        }
    }
    if current_len > 0 || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_commands::reply::Progress;

    fn json(content: &SlackMessageContent) -> serde_json::Value {
        serde_json::to_value(content).unwrap()
    }

    fn texts(v: &serde_json::Value) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(t)) = m.get("text") {
                        out.push(t.clone());
                    }
                    for (_, x) in m {
                        walk(x, out);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&v["blocks"], &mut out);
        out
    }

    /// A table whose escaped form is longer than a text object is split between rows, never
    /// cut inside one.
    #[test]
    fn escaped_tables_are_split_between_rows() {
        let table: String = (0..60)
            .map(|i| format!("pod-{i:02}  <none>  <none>  <none>  Running\n"))
            .collect();
        assert!(table.chars().count() < CODE_CHUNK_CHARS);
        let v = json(&render(&Reply::info("t").block(None, table.trim_end())));
        let code: Vec<String> = texts(&v)
            .into_iter()
            .filter(|t| t.starts_with("```"))
            .collect();
        assert!(code.len() > 1, "{code:?}");
        let rows: Vec<&str> = code
            .iter()
            .flat_map(|t| t.trim_matches('`').trim().lines())
            .collect();
        assert_eq!(rows.len(), 60, "{code:?}");
        assert!(
            rows.iter().all(|r| r.ends_with("&lt;none&gt;  Running")),
            "{rows:?}"
        );
        assert!(!code.iter().any(|t| t.contains("chars cut")));
    }

    #[test]
    fn headers_show_no_literal_backticks() {
        let v = json(&render(&Reply::info("Running `scale api 5`").text("`x`")));
        assert_eq!(v["blocks"][0]["type"], "header");
        assert_eq!(v["blocks"][0]["text"]["text"], "ℹ️ Running scale api 5");
        // mrkdwn text keeps them: there they are code.
        assert_eq!(v["blocks"][1]["text"]["text"], "`x`");
    }

    #[test]
    fn full_reply_renders_every_part() {
        let reply = Reply::warning("Approval needed")
            .text("`scale api 5 -n production` needs 1 approval")
            .field("Requested by", "<@U1>")
            .field("Rule", "prod-changes")
            .block(Some("plan".into()), "replicas: 2 -> 5")
            .button("approve", "Approve", ButtonStyle::Primary, "7f3k")
            .button("deny", "Deny", ButtonStyle::Danger, "7f3k")
            .footer("expires in 30m");
        let v = json(&render(&reply));
        let blocks = v["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "header", "section", "section", "section", "actions", "context"
            ]
        );
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[0]["text"]["text"], "⚠️ Approval needed");
        assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
        assert_eq!(
            blocks[2]["fields"][0]["text"],
            "*Requested by*\n&lt;@U1&gt;"
        );
        assert_eq!(
            blocks[3]["text"]["text"],
            "*plan*\n```\nreplicas: 2 -&gt; 5\n```"
        );
        let buttons = blocks[4]["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["type"], "button");
        assert_eq!(buttons[0]["action_id"], "approve");
        assert_eq!(buttons[0]["value"], "7f3k");
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[0]["text"]["text"], "Approve");
        assert_eq!(buttons[1]["action_id"], "deny");
        assert_eq!(buttons[1]["style"], "danger");
        assert_eq!(blocks[5]["elements"][0]["text"], "expires in 30m");
        assert!(v["text"].as_str().unwrap().contains("Approval needed"));
    }

    #[test]
    fn tone_is_shown_as_emoji() {
        for (tone, emoji) in [
            (Tone::Ok, "✅"),
            (Tone::Info, "ℹ️"),
            (Tone::Warning, "⚠️"),
            (Tone::Danger, "🛑"),
        ] {
            let v = json(&render(&Reply::new(tone, "t")));
            assert_eq!(v["blocks"][0]["text"]["text"], format!("{emoji} t"));
        }
    }

    #[test]
    fn mentions_and_links_are_neutralised() {
        let v = json(&render(
            &Reply::info("x").text("<!channel> & <https://evil|click>"),
        ));
        let t = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(t, "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;");
        assert!(!v["text"].as_str().unwrap().contains('<'));
    }

    #[test]
    fn slack_user_subjects_become_mentions() {
        assert_eq!(mrkdwn("by slack:U01SRELEAD."), "by <@U01SRELEAD>.");
        assert_eq!(mrkdwn("slack:UENG, slack:W123"), "<@UENG>, <@W123>");
        // Not user ids, or not standing alone: left as they are.
        for s in [
            "slack-group:S01OPS",
            "slack:C0CHANNEL",
            "xslack:UABC",
            "slack:U1",
            "slack:UABCdef",
            "slack:",
            "slack:<@U1>",
        ] {
            assert_eq!(mrkdwn(s), escape(s), "{s}");
        }
        let v = json(&render(
            &Reply::info("t").field("Requested by", "slack:UENG"),
        ));
        assert_eq!(
            v["blocks"][1]["fields"][0]["text"],
            "*Requested by*\n<@UENG>"
        );
    }

    #[test]
    fn code_fences_inside_output_cannot_close_the_block() {
        let v = json(&render(&Reply::info("x").block(None, "a```b")));
        let t = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(t.matches("```").count(), 2, "{t}");
    }

    #[test]
    fn code_that_grows_when_escaped_is_split_not_cut() {
        // 2,000 `<` fit a chunk but escape to 8,000 characters: three sections, all of it.
        let v = json(&render(
            &Reply::info("x").block(Some("out".into()), "<".repeat(2000)),
        ));
        let code: Vec<&str> = (1..=3)
            .map(|i| v["blocks"][i]["text"]["text"].as_str().unwrap())
            .collect();
        for t in &code {
            assert!(
                t.chars().count() <= TEXT_OBJECT_CHARS,
                "{}",
                t.chars().count()
            );
            assert_eq!(t.matches("```").count(), 2, "{t}");
            assert!(!t.contains("chars cut"), "{t}");
        }
        assert!(code[0].starts_with("*out* (1/3)\n```\n&lt;"), "{}", code[0]);
        let all: usize = code.iter().map(|t| t.matches("&lt;").count()).sum();
        assert_eq!(all, 2000);
    }

    #[test]
    fn every_text_object_stays_within_slack_limits() {
        let logs: String = (0..5000)
            .map(|i| format!("2026-11-25T14:00:{i:05} log line {i} <&>\n"))
            .collect();
        let mut reply = Reply::danger("t".repeat(400))
            .text("y".repeat(10_000))
            .footer("z".repeat(5000));
        for i in 0..40 {
            reply = reply.field(format!("f{i}"), "v".repeat(3000));
        }
        for _ in 0..15 {
            reply = reply.block(Some("logs".into()), logs.clone());
        }
        for i in 0..60 {
            reply = reply.button(
                format!("b{i}"),
                "L".repeat(200),
                ButtonStyle::Default,
                "v".repeat(3000),
            );
        }
        let v = json(&render(&reply));
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{}", blocks.len());
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= HEADER_CHARS);
        for b in blocks {
            if let Some(fields) = b["fields"].as_array() {
                assert!(fields.len() <= 10);
                for f in fields {
                    assert!(f["text"].as_str().unwrap().chars().count() <= FIELD_CHARS);
                }
            }
            if b["type"] == "actions" {
                let els = b["elements"].as_array().unwrap();
                assert!(els.len() <= 25);
                for e in els {
                    assert!(e["text"]["text"].as_str().unwrap().chars().count() <= 75);
                    assert!(e["value"].as_str().unwrap().chars().count() <= 2000);
                }
            }
        }
        for t in texts(&v) {
            assert!(
                t.chars().count() <= TEXT_OBJECT_CHARS,
                "{}",
                t.chars().count()
            );
        }
        // What was cut is said.
        let footer = blocks.last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(footer.contains("cut:"), "{footer}");
        assert!(footer.contains("more buttons"), "{footer}");
        let code = texts(&v).into_iter().find(|t| t.contains("```")).unwrap();
        assert!(code.contains("earlier lines cut"), "{code}");
        // Code is split on line boundaries into numbered parts.
        assert!(texts(&v).iter().any(|t| t.starts_with("*logs* (2/")));
    }

    #[test]
    fn more_than_fifty_blocks_are_cut_and_said() {
        let mut blocks = vec![SlackHeaderBlock::new("h".into()).into()];
        for i in 0..60 {
            blocks.push(section(&format!("s{i}")));
        }
        blocks.push(SlackActionsBlock::new(vec![]).into());
        let mut footer = "f".to_owned();
        let fitted = fit_blocks(blocks, &mut footer);
        assert_eq!(fitted.len(), MAX_BLOCKS - 1);
        assert!(matches!(fitted[0], SlackBlock::Header(_)));
        assert!(matches!(fitted.last(), Some(SlackBlock::Actions(_))));
        assert_eq!(footer, "f · cut: 13 more blocks");
        let mut footer = String::new();
        let small = fit_blocks(vec![section("a")], &mut footer);
        assert_eq!(small.len(), 1);
        assert!(footer.is_empty());
    }

    #[test]
    fn progress_bar_renders_in_text() {
        let p = Progress {
            text: "4/6 updated".into(),
            done: 4,
            total: 6,
        };
        let v = json(&render(&Reply::info("Rollout api").text(p.bar(6))));
        assert_eq!(v["blocks"][1]["text"]["text"], "▓▓▓▓░░ 4/6 updated");
    }

    #[test]
    fn split_lines_respects_the_limit_and_keeps_everything() {
        let s = format!("{}\n{}\nshort\n", "a".repeat(25), "b".repeat(7));
        let chunks = split_lines(&s, 10);
        assert!(chunks.iter().all(|c| c.chars().count() <= 10), "{chunks:?}");
        assert_eq!(chunks.concat().replace('\n', ""), s.replace('\n', ""));
        assert_eq!(split_lines("", 10), vec![String::new()]);
    }

    #[test]
    fn cut_never_exceeds_max() {
        for max in [0, 1, 5, 31, 32, 33, 100] {
            let c = cut(&"é".repeat(500), max);
            assert!(c.chars().count() <= max, "{max}: {c}");
        }
        assert_eq!(cut("short", 10), "short");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,40}",
                "[a-z<>&`\n ]{0,4000}",
                (0usize..9000).prop_map(|n| "é\n".repeat(n / 2)),
            ]
        }

        fn any_reply() -> impl Strategy<Value = Reply> {
            (
                any_text(),
                prop::option::of(any_text()),
                prop::collection::vec((any_text(), any_text()), 0..30),
                prop::collection::vec((prop::option::of(any_text()), any_text()), 0..14),
                prop::collection::vec((".{0,300}", ".{0,300}", any_text()), 0..60),
                prop::option::of(any_text()),
            )
                .prop_map(|(title, text, fields, blocks, buttons, footer)| {
                    let mut r = Reply::danger(title);
                    r.text = text;
                    for (n, v) in fields {
                        r = r.field(n, v);
                    }
                    for (c, b) in blocks {
                        r = r.block(c, b);
                    }
                    for (a, l, v) in buttons {
                        r = r.button(a, l, ButtonStyle::Primary, v);
                    }
                    r.footer = footer;
                    r
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn any_reply_renders_within_slack_limits(reply in any_reply()) {
                let v = json(&render(&reply));
                let blocks = v["blocks"].as_array().unwrap();
                prop_assert!(!blocks.is_empty() && blocks.len() <= MAX_BLOCKS);
                prop_assert!(
                    blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= HEADER_CHARS
                );
                for t in texts(&v) {
                    prop_assert!(t.chars().count() <= TEXT_OBJECT_CHARS);
                }
                for b in blocks {
                    if let Some(fields) = b["fields"].as_array() {
                        prop_assert!(fields.len() <= 10);
                    }
                    if let Some(els) = b["elements"].as_array() {
                        prop_assert!(els.len() <= 25);
                    }
                }
            }
        }
    }
}
