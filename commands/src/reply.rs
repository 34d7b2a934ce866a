//! The platform-neutral reply model.
//!
//! Operations answer with a [`Reply`]; chat adapters render it (Block Kit, Discord embeds, console
//! text). Long output is cut here, to the [`Limits`] an adapter passes in, so every platform says
//! the same thing about what was cut. Long-running operations also emit [`Progress`] updates
//! through a [`ProgressSender`], which adapters turn into message edits.

use serde::{Deserialize, Serialize};

/// How a reply should feel: adapters map it to a colour or an emoji.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Ok,
    #[default]
    Info,
    Warning,
    Danger,
}

/// A key-value pair shown side by side with others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// Monospace text (logs, tables), optionally with a caption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monospace {
    pub caption: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ButtonStyle {
    #[default]
    Default,
    Primary,
    Danger,
}

/// A button. `action_id` says what it does (e.g. `approve`), `value` what it does it to
/// (e.g. an approval id). The console renders it as the command to type: `{action_id} {value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub action_id: String,
    pub label: String,
    pub style: ButtonStyle,
    pub value: String,
}

/// Everything opsbot says in chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reply {
    pub title: String,
    pub tone: Tone,
    pub text: Option<String>,
    pub fields: Vec<Field>,
    pub blocks: Vec<Monospace>,
    pub buttons: Vec<Button>,
    pub footer: Option<String>,
    /// Whom the message is meant to notify (subjects such as `slack-group:S0ONCALL`,
    /// `discord-role:42`), mentioned in its text. Platforms that suppress mentions by default
    /// (Discord's `allowed_mentions`) allow exactly these; everything else echoed stays silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

impl Reply {
    pub fn new(tone: Tone, title: impl Into<String>) -> Self {
        Reply {
            title: title.into(),
            tone,
            ..Reply::default()
        }
    }

    pub fn ok(title: impl Into<String>) -> Self {
        Self::new(Tone::Ok, title)
    }

    pub fn info(title: impl Into<String>) -> Self {
        Self::new(Tone::Info, title)
    }

    pub fn warning(title: impl Into<String>) -> Self {
        Self::new(Tone::Warning, title)
    }

    pub fn danger(title: impl Into<String>) -> Self {
        Self::new(Tone::Danger, title)
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    pub fn block(mut self, caption: Option<String>, body: impl Into<String>) -> Self {
        self.blocks.push(Monospace {
            caption,
            body: body.into(),
        });
        self
    }

    pub fn button(
        mut self,
        action_id: impl Into<String>,
        label: impl Into<String>,
        style: ButtonStyle,
        value: impl Into<String>,
    ) -> Self {
        self.buttons.push(Button {
            action_id: action_id.into(),
            label: label.into(),
            style,
            value: value.into(),
        });
        self
    }

    /// Adds `who` (a subject) to [`Reply::notify`].
    pub fn notify(mut self, who: impl Into<String>) -> Self {
        self.notify.push(who.into());
        self
    }

    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.footer = Some(footer.into());
        self
    }

    /// A copy cut to `limits`; whatever was cut is said in the cut text itself
    /// (`… 1,234 more characters cut`) or, for whole blocks and fields, in the footer.
    pub fn truncated(&self, limits: &Limits) -> Reply {
        let mut out = self.clone();
        out.title = cut_chars(&out.title, limits.title_chars);
        if let Some(text) = &out.text {
            out.text = Some(cut_chars(text, limits.text_chars));
        }
        let mut dropped = Vec::new();
        if out.fields.len() > limits.max_fields {
            dropped.push(format!(
                "{} more fields",
                out.fields.len() - limits.max_fields
            ));
            out.fields.truncate(limits.max_fields);
        }
        for f in &mut out.fields {
            f.value = cut_chars(&f.value, limits.field_chars);
        }
        if out.blocks.len() > limits.max_blocks {
            dropped.push(format!(
                "{} more output blocks",
                out.blocks.len() - limits.max_blocks
            ));
            out.blocks.truncate(limits.max_blocks);
        }
        for b in &mut out.blocks {
            b.body = cut_lines(&b.body, limits.block_chars);
        }
        if !dropped.is_empty() {
            let note = format!("cut: {}", dropped.join(", "));
            out.footer = Some(match out.footer.take() {
                Some(f) => format!("{f} · {note}"),
                None => note,
            });
        }
        out
    }
}

/// Size limits an adapter passes to [`Reply::truncated`], in characters (not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub title_chars: usize,
    pub text_chars: usize,
    pub field_chars: usize,
    pub max_fields: usize,
    pub block_chars: usize,
    pub max_blocks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            title_chars: 150,
            text_chars: 3000,
            field_chars: 1000,
            max_fields: 20,
            block_chars: 2900,
            max_blocks: 10,
        }
    }
}

/// Cuts `s` to at most `max` characters, ending with a note of how many were cut.
pub fn cut_chars(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_owned();
    }
    let note_len = 40;
    let keep = max.saturating_sub(note_len);
    let kept: String = s.chars().take(keep).collect();
    format!("{kept}… ({} more characters cut)", total - keep)
}

/// Cuts monospace output to at most `max` characters on a line boundary, keeping the *end*
/// (the newest log lines), and says how many lines were cut at the top.
pub fn cut_lines(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let budget = max.saturating_sub(40);
    let lines: Vec<&str> = s.lines().collect();
    let mut kept = Vec::new();
    let mut used = 0usize;
    for line in lines.iter().rev() {
        let len = line.chars().count() + 1;
        if used + len > budget {
            break;
        }
        used += len;
        kept.push(*line);
    }
    kept.reverse();
    if kept.is_empty() {
        // One enormous line: keep its end.
        let total = s.chars().count();
        let tail: String = s.chars().skip(total - budget).collect();
        return format!("({} characters cut)\n{tail}", total - budget);
    }
    format!(
        "({} earlier lines cut)\n{}",
        lines.len() - kept.len(),
        kept.join("\n")
    )
}

/// One step of a long-running operation, e.g. a rollout at `3/6 updated, 2 ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Short status line, e.g. `3/6 updated, 2 ready`.
    pub text: String,
    /// How far along, out of `total` (both 0 when unknown).
    pub done: u32,
    pub total: u32,
}

impl Progress {
    /// A text progress bar such as `▓▓▓▓░░ 4/6 updated`, `width` cells wide.
    pub fn bar(&self, width: usize) -> String {
        if self.total == 0 {
            return self.text.clone();
        }
        let filled = (self.done.min(self.total) as usize * width) / self.total as usize;
        format!(
            "{}{} {}",
            "▓".repeat(filled),
            "░".repeat(width - filled),
            self.text
        )
    }
}

/// Where an operation reports progress. Dropping the receiver never fails the operation.
#[derive(Debug, Clone)]
pub struct ProgressSender(Option<tokio::sync::mpsc::UnboundedSender<Progress>>);

/// The receiving end adapters read progress from.
pub type ProgressReceiver = tokio::sync::mpsc::UnboundedReceiver<Progress>;

impl ProgressSender {
    /// A connected sender and its receiver.
    pub fn channel() -> (ProgressSender, ProgressReceiver) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (ProgressSender(Some(tx)), rx)
    }

    /// A sender nobody listens to.
    pub fn none() -> ProgressSender {
        ProgressSender(None)
    }

    pub fn send(&self, progress: Progress) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(progress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(cut_chars("hello", 10), "hello");
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let s = "x".repeat(5000);
        let cut = cut_chars(&s, 3000);
        assert!(cut.chars().count() <= 3000, "{}", cut.chars().count());
        assert!(cut.ends_with("(2040 more characters cut)"), "{cut}");
    }

    #[test]
    fn long_logs_keep_the_newest_lines() {
        let logs: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let cut = cut_lines(&logs, 500);
        assert!(cut.chars().count() <= 500);
        assert!(cut.starts_with('('), "{cut}");
        assert!(cut.ends_with("line 999"), "{cut}");
    }

    #[test]
    fn dropped_blocks_are_named_in_the_footer() {
        let mut r = Reply::info("t").footer("f");
        for i in 0..12 {
            r = r.block(None, format!("b{i}"));
        }
        let t = r.truncated(&Limits::default());
        assert_eq!(t.blocks.len(), 10);
        assert_eq!(t.footer.as_deref(), Some("f · cut: 2 more output blocks"));
    }

    fn reply_strategy() -> impl proptest::strategy::Strategy<Value = Reply> {
        use proptest::prelude::*;
        (
            "\\PC{0,300}",
            proptest::option::of("\\PC{0,600}"),
            proptest::collection::vec("\\PC{0,200}", 0..30),
            proptest::collection::vec("([a-zé ]{0,90}\n){0,12}[a-z]{0,400}", 0..15),
            proptest::option::of("[a-z ]{0,30}"),
        )
            .prop_map(|(title, text, fields, blocks, footer)| {
                let mut r = Reply::info(title);
                r.text = text;
                for (i, v) in fields.into_iter().enumerate() {
                    r = r.field(format!("f{i}"), v);
                }
                for b in blocks {
                    r = r.block(None, b);
                }
                r.footer = footer;
                r
            })
    }

    proptest::proptest! {
        #[test]
        fn truncated_fits_the_limits_and_says_what_was_cut(
            r in reply_strategy(),
            title_chars in 60usize..200,
            text_chars in 60usize..700,
            field_chars in 60usize..250,
            max_fields in 0usize..25,
            block_chars in 60usize..500,
            max_blocks in 0usize..12,
        ) {
            let limits = Limits { title_chars, text_chars, field_chars, max_fields, block_chars, max_blocks };
            let t = r.truncated(&limits);
            let n = |s: &str| s.chars().count();
            proptest::prop_assert!(n(&t.title) <= title_chars, "{:?}", t.title);
            if n(&r.title) > title_chars {
                proptest::prop_assert!(t.title.ends_with("more characters cut)"), "{:?}", t.title);
            } else {
                proptest::prop_assert_eq!(&t.title, &r.title);
            }
            if let Some(text) = &t.text {
                proptest::prop_assert!(n(text) <= text_chars);
            }
            proptest::prop_assert_eq!(t.fields.len(), r.fields.len().min(max_fields));
            for (f, orig) in t.fields.iter().zip(&r.fields) {
                proptest::prop_assert!(n(&f.value) <= field_chars);
                proptest::prop_assert!(f.value == orig.value || f.value.ends_with("more characters cut)"));
            }
            proptest::prop_assert_eq!(t.blocks.len(), r.blocks.len().min(max_blocks));
            for (b, orig) in t.blocks.iter().zip(&r.blocks) {
                proptest::prop_assert!(n(&b.body) <= block_chars, "{:?}", b.body);
                proptest::prop_assert!(b.body == orig.body || b.body.starts_with('('), "{:?}", b.body);
            }
            let footer = t.footer.clone().unwrap_or_default();
            proptest::prop_assert_eq!(
                footer.contains(&format!("{} more fields", r.fields.len().saturating_sub(max_fields))),
                r.fields.len() > max_fields
            );
            proptest::prop_assert_eq!(
                footer.contains(&format!("{} more output blocks", r.blocks.len().saturating_sub(max_blocks))),
                r.blocks.len() > max_blocks
            );
        }
    }

    #[test]
    fn progress_bar() {
        let p = Progress {
            text: "4/6 updated".into(),
            done: 4,
            total: 6,
        };
        assert_eq!(p.bar(6), "▓▓▓▓░░ 4/6 updated");
    }
}
