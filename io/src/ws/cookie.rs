//! Crossbar's WebSocket cookie tracking (`cbtid`) as signed, expiring tokens.
//!
//! A WebSocket transport with a `cookie` option gives every browser a tracking cookie on
//! the upgrade: `Set-Cookie: cbtid=<token>; Max-Age=<max_age>`. The token is
//! `<id>.<expires>.<mac>`: a random id (`length` characters, base64url), the Unix time it
//! expires at, and an HMAC-SHA256 over both with a per-node key, truncated to 128 bits. Any
//! core (and any worker process holding the same key) verifies a presented token without a
//! shared store: a forged, altered or expired token is ignored and a fresh one is set.
//!
//! What it does not do: remember who a cookie belongs to (the router binds a verified id
//! to the principal a session authenticated as; see `core::router` cookie
//! authentication), read clocks or randomness (the caller passes `now` and random bytes),
//! persist anything (Crossbar's `store` is not used).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Crossbar's default cookie name.
pub const DEFAULT_NAME: &str = "cbtid";
/// Crossbar's default id length in characters.
pub const DEFAULT_LENGTH: usize = 24;
/// Crossbar's default lifetime: 360 days (`86400 * 30 * 12`).
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400 * 30 * 12;

/// The MAC bytes kept in a token (128 bits).
const MAC_LEN: usize = 16;

/// A transport's cookie settings (`"cookie": {"name", "length", "max_age"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie's name, `^[a-z][a-z0-9_]+$`.
    pub name: String,
    /// Characters of the random id, 6 to 64.
    pub length: usize,
    /// Lifetime in seconds.
    pub max_age: u64,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            length: DEFAULT_LENGTH,
            max_age: DEFAULT_MAX_AGE_SECS,
        }
    }
}

/// A verified (or freshly minted) tracking cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The random id (Crossbar's `cbtid`).
    pub id: String,
    /// The Unix time (seconds) the cookie expires at.
    pub expires: u64,
    /// `Some(header line)` when the cookie is new and must be set on the response:
    /// `Set-Cookie: ...\r\n`.
    pub set_cookie: Option<String>,
}

/// The per-node key tokens are signed with.
#[derive(Clone)]
pub struct CookieKey([u8; 32]);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: it never appears in logs.
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key from 32 bytes (random, from the OS, in production).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The token's MAC over `id.expires`.
    fn mac(&self, id: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(id.as_bytes());
        m.update(b".");
        m.update(expires.to_string().as_bytes());
        m
    }

    /// The token for `id` expiring at `expires`.
    fn token(&self, id: &str, expires: u64) -> String {
        let tag = self.mac(id, expires).finalize().into_bytes();
        format!("{id}.{expires}.{}", B64.encode(&tag[..MAC_LEN]))
    }

    /// The id and expiry of `token` if this key signed it and it has not expired at `now`.
    fn verify(&self, token: &str, now: u64) -> Option<(String, u64)> {
        let mut parts = token.split('.');
        let (id, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.is_empty() {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        let mac = B64.decode(mac).ok()?;
        if mac.len() != MAC_LEN {
            return None;
        }
        // Constant-time comparison of the truncated tag.
        self.mac(id, expires).verify_truncated_left(&mac).ok()?;
        (now < expires).then(|| (id.to_owned(), expires))
    }
}

/// The tracking cookie of an upgrade request: the presented one (`cookie_header` is the
/// request's `Cookie` header(s)) if it is valid at `now` (Unix seconds), else a new one
/// made from `random` (at least `config.length` bytes) with its `Set-Cookie` line.
pub fn track(
    key: &CookieKey,
    config: &CookieConfig,
    cookie_header: Option<&str>,
    now: u64,
    random: &[u8],
) -> Tracked {
    let presented = cookie_header.and_then(|h| {
        h.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == config.name)
            .find_map(|(_, v)| key.verify(v.trim_matches('"'), now))
    });
    if let Some((id, expires)) = presented {
        return Tracked {
            id,
            expires,
            set_cookie: None,
        };
    }
    let mut id = B64.encode(random);
    id.truncate(config.length);
    let expires = now.saturating_add(config.max_age);
    let token = key.token(&id, expires);
    let set_cookie = format!(
        "Set-Cookie: {}={token}; Max-Age={}; Path=/; HttpOnly\r\n",
        config.name, config.max_age
    );
    Tracked {
        id,
        expires,
        set_cookie: Some(set_cookie),
    }
}

/// Inserts `line` (a complete header line ending in CRLF) into an HTTP response head,
/// before the blank line that ends it.
pub fn add_header(response: &mut Vec<u8>, line: &str) {
    let at = response.len().saturating_sub(2);
    response.splice(at..at, line.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn key(b: u8) -> CookieKey {
        CookieKey::new([b; 32])
    }

    fn fresh(config: &CookieConfig) -> Tracked {
        track(&key(1), config, None, NOW, &[7; 48])
    }

    /// The token a fresh cookie carries.
    fn token_of(t: &Tracked, name: &str) -> String {
        let line = t.set_cookie.as_deref().unwrap();
        let v = line.strip_prefix(&format!("Set-Cookie: {name}=")).unwrap();
        v.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_fresh_cookie_is_set_and_then_recognised_until_it_expires() {
        let config = CookieConfig {
            max_age: 60,
            ..CookieConfig::default()
        };
        let t = fresh(&config);
        assert_eq!(t.id.len(), DEFAULT_LENGTH);
        assert_eq!(t.expires, NOW + 60);
        let line = t.set_cookie.clone().unwrap();
        assert!(line.starts_with("Set-Cookie: cbtid="), "{line}");
        assert!(
            line.ends_with("; Max-Age=60; Path=/; HttpOnly\r\n"),
            "{line}"
        );
        let token = token_of(&t, "cbtid");
        let check = |header: &str, now: u64| track(&key(1), &config, Some(header), now, &[9; 48]);
        // Presented among other cookies: the same id, nothing to set.
        let again = check(&format!("a=b; cbtid={token}; c=d"), NOW + 59);
        assert_eq!((again.id.as_str(), again.set_cookie), (t.id.as_str(), None));
        // Expired, altered, signed by another key, or malformed: a new cookie.
        assert!(check(&format!("cbtid={token}"), NOW + 60)
            .set_cookie
            .is_some());
        let altered = token.replacen(&t.id[..1], "Z", 1);
        assert!(check(&format!("cbtid={altered}"), NOW).set_cookie.is_some());
        let longer = token.replace(&format!(".{}.", NOW + 60), &format!(".{}.", NOW + 999));
        assert!(check(&format!("cbtid={longer}"), NOW).set_cookie.is_some());
        let other = track(
            &key(2),
            &config,
            Some(&format!("cbtid={token}")),
            NOW,
            &[9; 48],
        );
        assert!(other.set_cookie.is_some());
        for bad in [
            "cbtid=",
            "cbtid=x",
            "cbtid=a.b.c",
            "cbtid=a.1.c.d",
            "other=1",
        ] {
            assert!(check(bad, NOW).set_cookie.is_some(), "{bad}");
        }
    }

    #[test]
    fn name_and_length_follow_the_configuration() {
        let config = CookieConfig {
            name: "mycookie".into(),
            length: 8,
            max_age: 5,
        };
        let t = fresh(&config);
        assert_eq!(t.id.len(), 8);
        let token = token_of(&t, "mycookie");
        let again = track(
            &key(1),
            &config,
            Some(&format!("mycookie={token}")),
            NOW,
            &[0; 48],
        );
        assert_eq!(again.id, t.id);
    }

    #[test]
    fn header_goes_before_the_blank_line() {
        let mut r = b"HTTP/1.1 101 Switching Protocols\r\nServer: x\r\n\r\n".to_vec();
        add_header(&mut r, "Set-Cookie: a=b\r\n");
        assert_eq!(
            r,
            b"HTTP/1.1 101 Switching Protocols\r\nServer: x\r\nSet-Cookie: a=b\r\n\r\n".to_vec()
        );
    }
}
