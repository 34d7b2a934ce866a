//! Interaction signatures, checked before anything in a request is parsed.
//!
//! Discord signs `{X-Signature-Timestamp}{raw body}` with the application's Ed25519 key and
//! sends the signature in hex in `X-Signature-Ed25519`; the public key is on the Developer
//! Portal (`discord.public_key`). A request is accepted only when the signature verifies
//! (strictly: no malleable signatures, no weak keys) and the timestamp is within five minutes
//! of now — Discord's own check stops at the signature, so without the second check a captured
//! request could be replayed forever. Every failure answers 401 (Discord sends bad signatures
//! on purpose when the interactions URL is saved, and expects exactly that).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::inbound::Signature;
pub use crate::inbound::{MAX_BODY_BYTES, MAX_SKEW_SECS, VerifyError};

pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// The public key is not 32 bytes of hex, or not a point on the curve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discord.public_key must be the application's public key: 64 hex digits")]
pub struct BadPublicKey;

/// Checks interaction signatures with the application's public key.
#[derive(Clone, Debug)]
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    /// From the key as the Developer Portal shows it (64 hex digits).
    pub fn new(public_key_hex: &str) -> Result<Self, BadPublicKey> {
        let bytes: [u8; 32] = hex::decode(public_key_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(BadPublicKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| BadPublicKey)?;
        if key.is_weak() {
            return Err(BadPublicKey);
        }
        Ok(Verifier { key })
    }
}

impl Signature for Verifier {
    const SIGNATURE_HEADER: &'static str = SIGNATURE_HEADER;
    const TIMESTAMP_HEADER: &'static str = TIMESTAMP_HEADER;

    /// 64 bytes in hex, verified strictly over the timestamp and the body.
    fn signs(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool {
        let Some(signature) = hex::decode(signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        self.key.verify_strict(&message, &signature).is_ok()
    }
}

/// Signs interactions as Discord does (tests, the benchmark and the fake use it).
pub struct TestSigner(SigningKey);

impl TestSigner {
    /// A signer from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        TestSigner(SigningKey::from_bytes(&seed))
    }

    /// The public key in hex, as the Developer Portal shows it.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    /// The `X-Signature-Ed25519` value for this timestamp and body.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        hex::encode(self.0.sign(&message).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TestSigner {
        TestSigner::from_seed([7; 32])
    }

    fn verifier() -> Verifier {
        Verifier::new(&signer().public_key_hex()).unwrap()
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_signed_fresh_request_verifies() {
        let body = br#"{"type":1}"#;
        let sig = signer().sign("1700000000", body);
        assert_eq!(
            verifier().verify(Some(&sig), Some("1700000000"), body, NOW),
            Ok(())
        );
    }

    #[test]
    fn forged_altered_and_stale_requests_are_refused() {
        let v = verifier();
        let body = br#"{"type":2}"#;
        let ts = NOW.to_string();
        let sig = signer().sign(&ts, body);
        // Another key.
        let other = TestSigner::from_seed([8; 32]).sign(&ts, body);
        assert_eq!(
            v.verify(Some(&other), Some(&ts), body, NOW),
            Err(VerifyError::BadSignature)
        );
        // One byte of the body changed.
        assert_eq!(
            v.verify(Some(&sig), Some(&ts), br#"{"type":3}"#, NOW),
            Err(VerifyError::BadSignature)
        );
        // The timestamp changed (it is signed too).
        let later = (NOW + 1).to_string();
        assert_eq!(
            v.verify(Some(&sig), Some(&later), body, NOW),
            Err(VerifyError::BadSignature)
        );
        // Correctly signed, but six minutes old or in the future.
        for skew in [-361, 361] {
            let ts = (NOW + skew).to_string();
            let sig = signer().sign(&ts, body);
            let err = v.verify(Some(&sig), Some(&ts), body, NOW).unwrap_err();
            assert_eq!(err, VerifyError::Stale { age: -skew });
        }
        // Garbage and missing headers.
        for (sig, ts, want) in [
            (Some("zz"), Some(ts.as_str()), VerifyError::BadSignature),
            (Some(""), Some(ts.as_str()), VerifyError::BadSignature),
            (
                None,
                Some(ts.as_str()),
                VerifyError::MissingHeader(SIGNATURE_HEADER),
            ),
            (
                Some(sig.as_str()),
                None,
                VerifyError::MissingHeader(TIMESTAMP_HEADER),
            ),
            (Some(sig.as_str()), Some("12a"), VerifyError::BadTimestamp),
        ] {
            assert_eq!(v.verify(sig, ts, body, NOW), Err(want));
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let err = v.verify(Some(&sig), Some(&ts), &big, NOW).unwrap_err();
        assert_eq!(err, VerifyError::TooLarge);
    }

    #[test]
    fn public_keys_must_be_32_bytes_of_hex() {
        assert!(Verifier::new("abc").is_err());
        assert!(Verifier::new(&"g".repeat(64)).is_err());
        // The identity point is a weak key: anything would verify against it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(Verifier::new(&hex::encode(identity)).is_err());
        assert!(Verifier::new(&format!(" {} ", signer().public_key_hex())).is_ok());
    }
}
