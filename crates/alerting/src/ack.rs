//! Signed acknowledgement links: `TOKEN = ID.LEVEL.SINCE.EXPIRY.SIG`, where `SIG` is the
//! URL-safe base64 of HMAC-SHA256(secret, "ID.LEVEL.SINCE.EXPIRY"), `SINCE` is when the alert
//! started firing and `EXPIRY` when the link ends, both in Unix seconds. A link cannot be made
//! without the secret, cannot be stretched past its expiry, names the level it was sent for
//! (a link from a warning does not silence the emergency that followed) and the firing it was
//! sent for (a link from last week's firing does not acknowledge today's). A link whose expiry
//! lies further ahead than links are ever made for is refused too: only a stolen key makes one.

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

/// What a genuine link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    pub level: Level,
    /// When the firing it was sent for started, in Unix seconds.
    pub since_s: i64,
}

/// A token for the firing of alert `id` that started at `since_ms`, at `level`, valid until
/// `expires_ms`.
pub fn token(
    secret: &[u8],
    id: &str,
    level: Level,
    since_ms: TimestampMs,
    expires_ms: TimestampMs,
) -> String {
    let msg = format!(
        "{id}.{}.{}.{}",
        level.as_str(),
        since_ms.div_euclid(1000),
        expires_ms.div_euclid(1000)
    );
    let s = sig(secret, &msg);
    format!("{msg}.{s}")
}

/// Why a link acknowledges nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("malformed acknowledgement token")]
    Malformed,
    #[error("invalid acknowledgement token signature")]
    Forged,
    #[error("this acknowledgement link has expired")]
    Expired,
    #[error("this acknowledgement link is valid for longer than links are made for")]
    TooLong,
    /// Genuine, but sent for an earlier firing of the alert (the caller knows the current one).
    #[error("this link was sent for an earlier firing of the alert")]
    EarlierFiring,
}

/// What a token names, if it is genuine, not expired at `now`, and not valid for longer than
/// `max_ttl_ms` (the lifetime links are made with; a minute of clock leeway).
pub fn verify(
    secret: &[u8],
    token: &str,
    now: TimestampMs,
    max_ttl_ms: i64,
) -> Result<Link, LinkError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [id, level, since, exp, s] = parts[..] else {
        return Err(LinkError::Malformed);
    };
    let msg = format!("{id}.{level}.{since}.{exp}");
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| LinkError::Forged)?;
    ring::hmac::verify(&key(secret), msg.as_bytes(), &tag).map_err(|_| LinkError::Forged)?;
    // Signed by us: what follows cannot fail for a token we made.
    let exp: i64 = exp.parse().map_err(|_| LinkError::Malformed)?;
    let since_s: i64 = since.parse().map_err(|_| LinkError::Malformed)?;
    if now.div_euclid(1000) > exp {
        return Err(LinkError::Expired);
    }
    if exp > (now + max_ttl_ms + 60_000).div_euclid(1000) {
        return Err(LinkError::TooLong);
    }
    let level = level.parse::<Level>().map_err(|_| LinkError::Malformed)?;
    Ok(Link {
        id: id.to_string(),
        level,
        since_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 86_400_000;

    #[test]
    fn genuine_forged_and_expired() {
        let t = token(b"k", "00ab", Level::Critical, 5_000, 10_000);
        assert_eq!(
            verify(b"k", &t, 9_000, TTL).unwrap(),
            Link {
                id: "00ab".to_string(),
                level: Level::Critical,
                since_s: 5
            }
        );
        assert_eq!(
            verify(b"k", &t, 11_000, TTL).unwrap_err(),
            LinkError::Expired
        );
        assert_eq!(
            verify(b"k", &t, 11_000, TTL).unwrap_err().to_string(),
            "this acknowledgement link has expired"
        );
        assert_eq!(
            verify(b"other", &t, 9_000, TTL).unwrap_err(),
            LinkError::Forged
        );
        let raised = t.replacen("critical", "emergency", 1);
        assert!(
            verify(b"k", &raised, 9_000, TTL).is_err(),
            "level is signed"
        );
        let longer = t.replacen(".10.", ".99999.", 1);
        assert!(
            verify(b"k", &longer, 9_000, TTL).is_err(),
            "expiry is signed"
        );
        let other_firing = t.replacen(".5.", ".6.", 1);
        assert!(
            verify(b"k", &other_firing, 9_000, TTL).is_err(),
            "firing is signed"
        );
        assert_eq!(verify(b"k", "x", 0, TTL).unwrap_err(), LinkError::Malformed);
    }

    #[test]
    fn a_link_valid_for_longer_than_links_are_made_for_is_refused() {
        // Made with the key (stolen from a readable database) to last until 2100.
        let now = 1_800_000_000_000;
        let t = token(b"k", "00ab", Level::Critical, now, 4_102_444_800_000);
        assert_eq!(verify(b"k", &t, now, TTL).unwrap_err(), LinkError::TooLong);
        let t = token(b"k", "00ab", Level::Critical, now, now + TTL);
        assert!(verify(b"k", &t, now, TTL).is_ok());
    }
}
