//! Slack request signatures (the `v0` scheme), checked before anything in a request is parsed.
//!
//! Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with HMAC-SHA256 keyed by the app's
//! signing secret and sends `v0={hex}` in `X-Slack-Signature`. A request is accepted only when the
//! signature matches (compared in constant time) and the timestamp is within five minutes of now.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::inbound::Signature;
pub use crate::inbound::{MAX_BODY_BYTES, MAX_SKEW_SECS, VerifyError, unix_now};

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// Checks request signatures with one signing secret.
#[derive(Clone)]
pub struct Verifier {
    key: Hmac<Sha256>,
    /// False for an empty signing secret: then nothing verifies (an empty HMAC key is one
    /// anybody can sign with).
    usable: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { secret: *** }")
    }
}

impl Verifier {
    pub fn new(signing_secret: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let key = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Verifier {
            key,
            usable: !signing_secret.is_empty(),
        }
    }

    /// The `X-Slack-Signature` value Slack would send for this timestamp and body.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!("v0={}", hex::encode(self.mac(timestamp, body)))
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = self.key.clone();
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

impl Signature for Verifier {
    const SIGNATURE_HEADER: &'static str = SIGNATURE_HEADER;
    const TIMESTAMP_HEADER: &'static str = TIMESTAMP_HEADER;

    /// `v0=` and the hex HMAC, compared in constant time.
    fn signs(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool {
        let expected = self.mac(timestamp, body);
        let given = signature
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok());
        self.usable
            && given.is_some_and(|g| g.len() == expected.len() && bool::from(g.ct_eq(&expected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RejectionKind;

    // The worked example from Slack's "Verifying requests from Slack" documentation.
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn v() -> Verifier {
        Verifier::new("s3cret")
    }

    #[test]
    fn slack_documentation_example_verifies() {
        let verifier = Verifier::new(DOC_SECRET);
        assert_eq!(verifier.sign(DOC_TS, DOC_BODY.as_bytes()), DOC_SIG);
        let now = DOC_TS.parse::<i64>().unwrap() + 10;
        verifier
            .verify(Some(DOC_SIG), Some(DOC_TS), DOC_BODY.as_bytes(), now)
            .unwrap();
    }

    #[test]
    fn agrees_with_slack_morphism_verifier() {
        let ts = unix_now().to_string();
        let body = "command=%2Fops&text=status";
        let sig = v().sign(&ts, body.as_bytes());
        let theirs = slack_morphism::signature_verifier::SlackEventSignatureVerifier::new(
            &"s3cret".to_string().into(),
        );
        theirs.verify(&sig, body, &ts).unwrap();
    }

    #[test]
    fn good_signature_within_window_passes() {
        let now = 1_700_000_000;
        for skew in [-MAX_SKEW_SECS, -3, 0, 42, MAX_SKEW_SECS] {
            let ts = (now + skew).to_string();
            let sig = v().sign(&ts, b"a=b");
            assert_eq!(v().verify(Some(&sig), Some(&ts), b"a=b", now), Ok(()));
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let now = 1_700_000_000;
        for skew in [-MAX_SKEW_SECS - 1, MAX_SKEW_SECS + 1, -86_400] {
            let ts = (now + skew).to_string();
            let sig = v().sign(&ts, b"a=b");
            let err = v().verify(Some(&sig), Some(&ts), b"a=b", now).unwrap_err();
            assert!(matches!(err, VerifyError::Stale { .. }), "{err:?}");
            assert_eq!(err.kind(), RejectionKind::StaleTimestamp);
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn altered_body_is_refused() {
        let now = 1_700_000_000;
        let ts = now.to_string();
        let sig = v().sign(&ts, b"text=status");
        let err = v()
            .verify(Some(&sig), Some(&ts), b"text=scale+api+0", now)
            .unwrap_err();
        assert_eq!(err, VerifyError::BadSignature);
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn altered_timestamp_is_refused() {
        let now = 1_700_000_000;
        let sig = v().sign(&now.to_string(), b"x");
        let err = v()
            .verify(Some(&sig), Some(&(now + 1).to_string()), b"x", now)
            .unwrap_err();
        assert_eq!(err, VerifyError::BadSignature);
    }

    #[test]
    fn other_secret_is_refused() {
        let now = 1_700_000_000;
        let ts = now.to_string();
        let sig = Verifier::new("other").sign(&ts, b"x");
        assert_eq!(
            v().verify(Some(&sig), Some(&ts), b"x", now),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let now = 1_700_000_000;
        let ts = now.to_string();
        let good = v().sign(&ts, b"x");
        let cases: Vec<(Option<&str>, Option<&str>, VerifyError)> = vec![
            (
                None,
                Some(&ts),
                VerifyError::MissingHeader(SIGNATURE_HEADER),
            ),
            (
                Some(&good),
                None,
                VerifyError::MissingHeader(TIMESTAMP_HEADER),
            ),
            (Some(&good), Some("abc"), VerifyError::BadTimestamp),
            (Some(&good), Some("-5"), VerifyError::BadTimestamp),
            (
                Some(&good),
                Some("99999999999999999999999"),
                VerifyError::BadTimestamp,
            ),
            (Some(&good), Some(""), VerifyError::BadTimestamp),
            (Some("v0=zz"), Some(&ts), VerifyError::BadSignature),
            (Some("v1=00"), Some(&ts), VerifyError::BadSignature),
            (Some(""), Some(&ts), VerifyError::BadSignature),
            (Some("v0="), Some(&ts), VerifyError::BadSignature),
            (
                Some(&good[..good.len() - 2]),
                Some(&ts),
                VerifyError::BadSignature,
            ),
        ];
        for (sig, ts, want) in cases {
            assert_eq!(v().verify(sig, ts, b"x", now), Err(want.clone()));
            let status = want.status();
            assert!(status == 400 || status == 401, "{status}");
        }
    }

    #[test]
    fn oversized_body_is_refused_before_hashing() {
        let body = vec![b'a'; MAX_BODY_BYTES + 1];
        let err = v().verify(Some("v0=00"), Some("1"), &body, 1).unwrap_err();
        assert_eq!(err, VerifyError::TooLarge);
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.kind(), RejectionKind::TooLarge);
    }

    #[test]
    fn an_empty_signing_secret_verifies_nothing() {
        let empty = Verifier::new("");
        let now = 1_700_000_000;
        let ts = now.to_string();
        let sig = empty.sign(&ts, b"x");
        assert_eq!(
            empty.verify(Some(&sig), Some(&ts), b"x", now),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        assert!(!format!("{:?}", v()).contains("s3cret"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_and_bodies_never_panic_or_pass(
            sig in proptest::option::of(".{0,80}"),
            ts in proptest::option::of(".{0,30}"),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let now = 1_700_000_000;
            let result = v().verify(sig.as_deref(), ts.as_deref(), &body, now);
            // Only a correct signature passes; random ones never do.
            if let (Some(sig), Some(ts)) = (&sig, &ts)
                && *sig == v().sign(ts, &body)
            {
                return Ok(());
            }
            proptest::prop_assert!(result.is_err());
        }
    }
}
