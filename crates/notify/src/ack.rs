//! Signed acknowledgement links: `TOKEN = ID.LEVEL.EXPIRY.SIG`, where `SIG` is the URL-safe
//! base64 of HMAC-SHA256(secret, "ID.LEVEL.EXPIRY") and `EXPIRY` is in Unix seconds. A link
//! cannot be made without the secret, cannot be stretched past its expiry, and names the level
//! it was sent for, so a link from a warning does not silence the emergency that followed.

use base64::Engine as _;
use tocsin_model::{Level, TimestampMs};

fn key(secret: &[u8]) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)
}

fn sig(secret: &[u8], msg: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::hmac::sign(&key(secret), msg.as_bytes()))
}

/// A fresh random signing key (256 bits from the system's CSPRNG), hex.
pub fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A token for alert `id` at `level`, valid until `expires_ms`.
pub fn token(secret: &[u8], id: &str, level: Level, expires_ms: TimestampMs) -> String {
    let msg = format!("{id}.{}.{}", level.as_str(), expires_ms / 1000);
    let s = sig(secret, &msg);
    format!("{msg}.{s}")
}

/// The alert id and level a token names, if it is genuine and not expired at `now`.
pub fn verify(secret: &[u8], token: &str, now: TimestampMs) -> Result<(String, Level), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [id, level, exp, s] = parts[..] else {
        return Err("malformed acknowledgement token".into());
    };
    let msg = format!("{id}.{level}.{exp}");
    let bad = || "invalid acknowledgement token signature".to_string();
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    ring::hmac::verify(&key(secret), msg.as_bytes(), &tag).map_err(|_| bad())?;
    let exp: i64 = exp.parse().map_err(|_| "malformed expiry".to_string())?;
    if now / 1000 > exp {
        return Err("this acknowledgement link has expired".into());
    }
    let level = level.parse::<Level>().map_err(|e| e.to_string())?;
    Ok((id.to_string(), level))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_forged_and_expired() {
        let t = token(b"k", "00ab", Level::Critical, 10_000);
        assert_eq!(
            verify(b"k", &t, 9_000).unwrap(),
            ("00ab".to_string(), Level::Critical)
        );
        assert_eq!(
            verify(b"k", &t, 11_000).unwrap_err(),
            "this acknowledgement link has expired"
        );
        assert!(verify(b"other", &t, 9_000).is_err());
        let raised = t.replacen("critical", "emergency", 1);
        assert!(verify(b"k", &raised, 9_000).is_err(), "level is signed");
        let longer = t.replacen(".10.", ".99999.", 1);
        assert!(verify(b"k", &longer, 9_000).is_err(), "expiry is signed");
        assert!(verify(b"k", "x", 0).is_err());
    }
}
