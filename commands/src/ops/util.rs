//! Small helpers shared by the operations: API access with retries, names, ages, tables.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

use super::errors::{KubeFail, Res, call, explain, retry};
use super::{Ctx, OpError};
use crate::reply::Progress;

impl Ctx<'_> {
    /// The namespaced API of `K`.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `ns/cluster` for footers.
    pub fn place(&self) -> String {
        format!("namespace {} · cluster {}", self.ns, self.cluster)
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.opts.clock)()
    }

    pub fn progress(&self, text: impl Into<String>, done: u32, total: u32) {
        self.progress.send(Progress {
            text: text.into(),
            done,
            total,
        });
    }

    /// Explains a failed call.
    pub async fn fail(&self, fail: KubeFail) -> OpError {
        explain(self, fail).await
    }

    /// Gets `name`, with retries; not found becomes [`OpError::NotFound`] with suggestions.
    pub async fn get<K>(&self, res: Res, name: &str) -> Result<K, OpError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self.get_raw::<K>(res, name).await {
            Ok(k) => Ok(k),
            Err(f) => Err(self.fail(f).await),
        }
    }

    /// Gets `name` with retries, leaving the failure unexplained (so callers can try another
    /// kind on 404).
    pub async fn get_raw<K>(&self, res: Res, name: &str) -> Result<K, KubeFail>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api = &self.api::<K>();
        retry(&self.opts.retry, || async move {
            call(self, "get", res, None, Some(name), api.get(name)).await
        })
        .await
    }

    /// Gets `name`, or `None` when it does not exist.
    pub async fn get_opt<K>(&self, res: Res, name: &str) -> Result<Option<K>, OpError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self.get_raw::<K>(res, name).await {
            Ok(k) => Ok(Some(k)),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(self.fail(f).await),
        }
    }

    /// Lists `K` in the namespace, with retries.
    pub async fn list<K>(&self, res: Res, lp: &ListParams) -> Result<Vec<K>, OpError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api = &self.api::<K>();
        match retry(&self.opts.retry, || async move {
            call(self, "list", res, None, None, api.list(lp)).await
        })
        .await
        {
            Ok(list) => Ok(list.items),
            Err(f) => Err(self.fail(f).await),
        }
    }
}

/// Up to three names from `candidates` closest to `name`, best first: a small edit distance
/// (typos, transpositions), a high Jaro-Winkler similarity, or one name containing the other.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let name_l = name.to_lowercase();
    let allowed = (name_l.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, f64, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let c_l = c.to_lowercase();
            let d = strsim::damerau_levenshtein(&name_l, &c_l);
            let jw = strsim::jaro_winkler(&name_l, &c_l);
            let contains =
                name_l.chars().count() >= 3 && (c_l.contains(&name_l) || name_l.contains(&c_l));
            (d <= allowed || jw >= 0.85 || contains).then_some((d, jw, c))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)));
    scored.dedup_by(|a, b| a.2 == b.2);
    scored
        .into_iter()
        .take(3)
        .map(|(_, _, c)| c.to_owned())
        .collect()
}

/// `3d`, `5h`, `12m`, `40s`: how long ago `t` was (kubectl style).
pub(crate) fn age(now: jiff::Timestamp, t: Option<&Time>) -> String {
    match t {
        Some(t) => short_duration(signed_secs(now, t.0)),
        None => "-".to_owned(),
    }
}

/// Seconds from `t` to `now` (0 if `t` is in the future).
pub(crate) fn signed_secs(now: jiff::Timestamp, t: jiff::Timestamp) -> u64 {
    let d = now.as_second() - t.as_second();
    u64::try_from(d).unwrap_or(0)
}

/// `2d3h`, `5h12m`, `3m20s`, `45s`.
pub(crate) fn short_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        if h > 0 && d < 10 {
            format!("{d}d{h}h")
        } else {
            format!("{d}d")
        }
    } else if h > 0 {
        if m > 0 {
            format!("{h}h{m}m")
        } else {
            format!("{h}h")
        }
    } else if m > 0 {
        if s > 0 && m < 10 {
            format!("{m}m{s}s")
        } else {
            format!("{m}m")
        }
    } else {
        format!("{s}s")
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    short_duration(d.as_secs())
}

/// A timestamp as `2026-11-25 14:40 UTC (3h ago)`.
pub(crate) fn when(now: jiff::Timestamp, t: Option<&Time>) -> String {
    match t {
        Some(t) => format!(
            "{} ({} ago)",
            t.0.strftime("%Y-%m-%d %H:%M UTC"),
            age(now, Some(t))
        ),
        None => "never".to_owned(),
    }
}

/// Most characters a table cell other than the last may take; longer cells are cut with `…`.
pub(crate) const CELL_CHARS: usize = 60;
/// Most characters the last cell of a row (a message, typically) may take.
pub(crate) const LAST_CELL_CHARS: usize = 240;

/// Removes terminal escape sequences and control characters (but not tabs).
pub(crate) fn without_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// A cell as it can be shown in one line of a monospace table: whitespace (tabs, newlines)
/// becomes one space and escape sequences and control characters are dropped, since they would
/// break the alignment; then it is cut to `max` characters, ending with `…`.
fn cell(text: &str, max: usize) -> String {
    let clean = without_escapes(&text.replace(char::is_whitespace, " "));
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// How many terminal columns `s` takes (wide characters take two).
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// A left-aligned text table with a header row. Cells are cleaned and cut ([`CELL_CHARS`],
/// [`LAST_CELL_CHARS`]), so one long value never pushes the others out of line.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_cut(headers, rows, LAST_CELL_CHARS)
}

/// [`table`] with the last cell of each row cut to `last_chars`.
fn table_cut(headers: &[&str], rows: &[Vec<String>], last_chars: usize) -> String {
    let last = headers.len().saturating_sub(1);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, c)| cell(c, if i == last { last_chars } else { CELL_CHARS }))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(width(cell)) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out.pop();
    out
}

/// A table of as many leading rows as fit in `max_chars` (chat adapters cut long blocks from
/// the top, which would drop the rows that matter most), and how many rows were left out.
///
/// Cells are cut, never the table: the last cell of each row is cut further when needed so
/// that the header and any one row always fit, so a single long message cannot empty it.
pub(crate) fn table_within(
    headers: &[&str],
    rows: &[Vec<String>],
    max_chars: usize,
) -> (String, usize) {
    let last_chars = last_cell_room(headers, rows, max_chars);
    let render = |n: usize| table_cut(headers, &rows[..n], last_chars);
    let fits = |n: usize| render(n).chars().count() <= max_chars;
    if fits(rows.len()) {
        return (render(rows.len()), 0);
    }
    // The largest n that fits (at least the header row is always shown).
    let (mut lo, mut hi) = (0usize, rows.len());
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (render(lo), rows.len() - lo)
}

/// How many characters the last cells may take so the header and any one row fit in
/// `max_chars` (at most [`LAST_CELL_CHARS`], at least a few).
fn last_cell_room(headers: &[&str], rows: &[Vec<String>], max_chars: usize) -> usize {
    // The table of every row with empty last cells is as wide as the columns before them get.
    let stripped: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.truncate(headers.len().saturating_sub(1));
            r.push(String::new());
            r
        })
        .collect();
    let header_line = table_cut(headers, &[], 0).chars().count() + 1;
    let prefix = table_cut(headers, &stripped, 0)
        .lines()
        .skip(1)
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    max_chars
        .saturating_sub(header_line + prefix)
        .clamp(8, LAST_CELL_CHARS)
}

/// Whether `meta` is owned by an object of `kind` named `name` (uid-checked when known).
pub(crate) fn owned_by(meta: &ObjectMeta, kind: &str, name: &str, uid: Option<&str>) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o: &OwnerReference| {
            o.kind == kind && o.name == name && uid.is_none_or(|u| u.is_empty() || o.uid == u)
        })
}

/// A human list of container images: `api=registry/api:1.2, sidecar=envoy:1.30`.
pub(crate) fn images(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> String {
    let Some(spec) = spec else {
        return "-".to_owned();
    };
    let list: Vec<String> = spec
        .containers
        .iter()
        .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("?")))
        .collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names() {
        let names = ["api", "api-gateway", "billing", "worker"];
        assert_eq!(nearest("apy", names), vec!["api"]);
        assert_eq!(nearest("wbe", ["web", "worker", "db"]), vec!["web"]);
        assert_eq!(nearest("gateway", names), vec!["api-gateway"]);
        assert_eq!(nearest("billng", names), vec!["billing"]);
        assert!(nearest("zzzz", names).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(200), "3m20s");
        assert_eq!(short_duration(3600 * 5 + 60 * 12), "5h12m");
        assert_eq!(short_duration(86_400 * 2 + 3600 * 3), "2d3h");
        assert_eq!(short_duration(86_400 * 30), "30d");
    }

    #[test]
    fn tables_fit_a_budget_keeping_the_top() {
        let rows: Vec<Vec<String>> = (0..100).map(|i| vec![format!("row-{i:03}")]).collect();
        let (t, cut) = table_within(&["NAME"], &rows, 100);
        assert!(t.chars().count() <= 100, "{t}");
        assert!(t.starts_with("NAME\nrow-000\n"));
        assert_eq!(cut, 100 - (t.lines().count() - 1));
        assert_eq!(
            table_within(&["NAME"], &rows[..2], 100),
            (table(&["NAME"], &rows[..2]), 0)
        );
    }

    #[test]
    fn a_huge_last_cell_is_cut_not_the_table() {
        let mut rows = vec![vec!["a".to_owned(), "m".repeat(10_000)]];
        rows.push(vec!["b".to_owned(), "short".to_owned()]);
        let (t, cut) = table_within(&["N", "MESSAGE"], &rows, 400);
        assert_eq!(cut, 0, "{t}");
        assert!(t.chars().count() <= 400, "{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("a  mmm") && lines[1].ends_with('…'),
            "{t}"
        );
        assert_eq!(lines[2], "b  short");
        // A budget smaller than the row: the cell gets what is left, the row stays.
        let (t, cut) = table_within(&["N", "MESSAGE"], &rows[..1], 60);
        assert_eq!(cut, 0, "{t}");
        assert!(t.chars().count() <= 60, "{t}");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "READY"],
            &[
                vec!["a".into(), "1/1".into()],
                vec!["longer".into(), "0/1".into()],
            ],
        );
        assert_eq!(t, "NAME    READY\na       1/1\nlonger  0/1");
    }

    proptest::proptest! {
        #[test]
        fn nearest_never_panics(name in "\\PC{0,20}", names in proptest::collection::vec("\\PC{0,20}", 0..8)) {
            let got = nearest(&name, names.iter().map(String::as_str));
            proptest::prop_assert!(got.len() <= 3);
        }

        #[test]
        fn short_durations_never_panic(secs in proptest::num::u64::ANY) {
            proptest::prop_assert!(!short_duration(secs).is_empty());
        }
    }
}
