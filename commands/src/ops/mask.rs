//! Masking values that look like secrets before they reach a chat.

use crate::reply::Reply;
use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

struct Rule {
    re: Regex,
    with: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |re: &str, with: &'static str| Rule {
        re: Regex::new(re).expect("secret-masking regex"),
        with,
    };
    vec![
        // PEM private keys, from their header to their footer (or the end of the text).
        rule(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            "-----PRIVATE KEY ****-----",
        ),
        // The end of a private key whose header is not in the text (a log's tail cut into
        // it): everything up to its footer.
        rule(
            r"\A[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            "-----PRIVATE KEY ****-----",
        ),
        // `Authorization: Bearer x`, `authorization=Basic x`, `"Authorization": "x"`.
        rule(
            r#"(?i)((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:(bearer|basic|token|digest|negotiate)\s+)?[^\s"',;]+"#,
            "${1}${2} ****",
        ),
        // Bearer tokens anywhere else.
        rule(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*", "${1} ****"),
        // URLs with credentials: scheme://user:password@host.
        rule(
            r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@",
            "${1}****@",
        ),
        // key=value / key: value / "key": "value" for secret-looking keys.
        rule(
            r#"(?i)([A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?|session[_\-]?id|cookie)[A-Za-z0-9_.\-]*["']?\s*[=:]\s*["']?)([^\s"'&,;]+)"#,
            "${1}****",
        ),
        // JSON Web Tokens.
        rule(
            r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
            "****",
        ),
        // AWS access key ids.
        rule(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b", "****"),
        // GitHub, Slack, GitLab, Stripe-style tokens.
        rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "****"),
        rule(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "****"),
        rule(r"\bglpat-[A-Za-z0-9_\-]{20,}", "****"),
        rule(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}", "****"),
    ]
});

/// Every rule's pattern in one set: one pass over a text tells whether any rule applies, so the
/// common text without secrets is scanned once, not once per rule.
static ANY: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|r| r.re.as_str())).expect("secret-masking regex set")
});

/// `text` with values that look like secrets (bearer tokens, `Authorization:` headers,
/// `password=…`, `token=…`, AWS-style keys, JWTs, credentials in URLs, private keys) replaced
/// by `****`.
pub fn mask_secrets(text: &str) -> String {
    if !ANY.is_match(text) {
        return text.to_owned();
    }
    let mut out = Cow::Borrowed(text);
    for r in RULES.iter() {
        if let Cow::Owned(s) = r.re.replace_all(&out, r.with) {
            out = Cow::Owned(s);
        }
    }
    out.into_owned()
}

/// Every string of a reply with secret-looking values masked: the last guard, whatever the
/// cluster returned.
pub fn mask_reply(mut r: Reply) -> Reply {
    r.title = mask_secrets(&r.title);
    r.text = r.text.map(|t| mask_secrets(&t));
    for f in &mut r.fields {
        f.value = mask_secrets(&f.value);
    }
    for b in &mut r.blocks {
        b.body = mask_secrets(&b.body);
        b.caption = b.caption.as_deref().map(mask_secrets);
    }
    r.footer = r.footer.map(|t| mask_secrets(&t));
    r
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn masks_common_secrets() {
        let cases = [
            (
                "GET / Authorization: Bearer abc.def-123",
                "GET / Authorization: Bearer ****",
            ),
            (
                "curl -H 'authorization: token ghx'",
                "curl -H 'authorization: token ****'",
            ),
            ("login password=hunter2 ok", "login password=**** ok"),
            ("db_password: 's3cr3t'", "db_password: '****'"),
            (
                r#"{"api_key": "abcd1234", "user": "bob"}"#,
                r#"{"api_key": "****", "user": "bob"}"#,
            ),
            ("?token=xyz&x=1", "?token=****&x=1"),
            ("key AKIAABCDEFGHIJKLMNOP used", "key **** used"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG",
                "aws_secret_access_key=****",
            ),
            (
                "postgres://app:pa55@db:5432/x",
                "postgres://app:****@db:5432/x",
            ),
            ("sent Bearer eyJhbGciOi.eyJzdWIiOi.sig", "sent Bearer ****"),
            ("jwt eyJhbGciOiJI.eyJzdWIiOiIx.abc_def", "jwt ****"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_secrets(input), want, "input: {input}");
        }
    }

    #[test]
    fn masks_private_keys_across_lines_also_when_cut() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7secret\nQ2FzZSBib2R5\n\
                   -----END RSA PRIVATE KEY-----";
        let masked = mask_secrets(&format!("loading key\n{key}\nready"));
        assert_eq!(masked, "loading key\n-----PRIVATE KEY ****-----\nready");
        // A tail that starts inside the key: up to its footer.
        let cut = "Q2FzZSBib2R5\n-----END RSA PRIVATE KEY-----\nready";
        assert_eq!(mask_secrets(cut), "-----PRIVATE KEY ****-----\nready");
        // A header without a footer: to the end.
        let open = "x\n-----BEGIN PRIVATE KEY-----\nMIIEsecret\nmore";
        assert_eq!(mask_secrets(open), "x\n-----PRIVATE KEY ****-----");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let s = "GET /healthz 200 in 3ms; replicas=3 tokenizer ready";
        assert_eq!(mask_secrets(s), s);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = mask_secrets(&s);
        }

        #[test]
        fn key_value_secrets_never_survive(
            key in "(password|token|api_key|secret|DB_PASSWORD|client-secret)",
            sep in "(=|: |=\"|: \")",
            value in "[A-Za-z0-9/+]{6,30}",
            before in "[a-z ]{0,10}",
        ) {
            let line = format!("{before} {key}{sep}{value} tail");
            let masked = mask_secrets(&line);
            proptest::prop_assert!(!masked.contains(&value), "{} -> {}", line, masked);
        }

        #[test]
        fn bearer_tokens_never_survive(token in "[A-Za-z0-9._~+/-]{8,60}") {
            let line = format!("GET /x Authorization: Bearer {token}");
            proptest::prop_assert!(!mask_secrets(&line).contains(&token));
            let line = format!("sent bearer {token} upstream");
            proptest::prop_assert!(!mask_secrets(&line).contains(&token));
        }
    }
}
