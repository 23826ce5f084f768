//! Host:port links that only Pylon can mint.
//!
//! `/a/<host>:<port>/…` (and `/yarn/…`, `/log-manager/…`) reach any node
//! that `hostport.allow` and `ports` admit. With a signing key, Pylon signs
//! the host:port links it produces itself (the WebHDFS datanode 307, body
//! rules with `{sign}`, rewritten `Location`/`Refresh`), and refuses those
//! it did not sign.
//!
//! # Link format
//!
//! ```text
//! /yarn/node-7:8042~AAAAAGeYw3L1x…(48 characters)/node/containerlogs/x
//! └┬──┘ └───┬─────┘└──────────┬─────────────────┘└─────────┬───────────┘
//! prefix  host:port         token                   forwarded path
//! ```
//!
//! - **Where:** the token is glued to the `host:port` segment with `~`
//!   (unreserved in URLs, so never escaped, and never part of a host name
//!   or a base64url alphabet). A browser resolves a relative link of the
//!   node's page (`./static/app.js`, `../logs`) against the page's own
//!   path, so it keeps the signed segment and goes through Pylon signed;
//!   a query string would be dropped by every relative link.
//! - **What it binds:** the prefix, the `host:port` as written and the
//!   expiry, not the rest of the path: a signed node link opens that node's
//!   whole UI (its own links, forms and scripts), and nothing else.
//! - **Token:** base64url without padding of the expiry (Unix seconds, 4
//!   bytes big-endian) and HMAC-SHA-256 over
//!   `"pylon-link-1\n" prefix "\n" host:port "\n" expiry` (36 bytes, 48
//!   characters). The whole tag is kept so that `ring::hmac::verify`
//!   compares it in constant time; the message is built on the stack.
//! - **Upstream** gets the path after the segment, `Host: host:port` and
//!   `X-Forwarded-Prefix: prefix/host:port`: never the token.
//! - **Rotation:** the previous key is accepted until a deadline (load
//!   time plus the configured grace); new links are always signed with the
//!   current key.
//!
//! Everything here is pure: the caller passes the time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

/// Joins the `host:port` segment and its token.
pub const SEP: char = '~';
/// Characters of a token: base64 of 4 + 32 bytes.
pub const TOKEN_LEN: usize = 48;
const RAW_LEN: usize = 4 + 32;
const DOMAIN: &[u8] = b"pylon-link-1\n";
/// Longest signed message: a destination is at most 261 bytes
/// (`[`253`]:65535`), which leaves room for any sensible prefix.
pub const MAX_MESSAGE: usize = 1024;

/// Why a host:port request is refused: the `reason` label of
/// `pylon_hostport_refused_total` and the access log's `refused=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, and one is required.
    Unsigned,
    /// A token that is malformed or was not made by Pylon for this prefix
    /// and destination (or only by a previous key past its grace).
    BadSignature,
    /// A genuine token past its expiry.
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
        }
    }
}

/// The signing key, and the previous one during its grace.
#[derive(Clone)]
pub struct Keys {
    current: hmac::Key,
    previous: Option<hmac::Key>,
    /// Unix seconds before which `previous` is still accepted.
    previous_until: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// `segment` without its token, and the token if there is one.
pub fn split_token(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once(SEP) {
        Some((dest, token)) => (dest, Some(token)),
        None => (segment, None),
    }
}

impl Keys {
    pub fn new(current: &[u8], previous: Option<&[u8]>, previous_until: u64) -> Keys {
        Keys {
            current: hmac::Key::new(hmac::HMAC_SHA256, current),
            previous: previous.map(|k| hmac::Key::new(hmac::HMAC_SHA256, k)),
            previous_until,
        }
    }

    /// The token for `prefix` (`/yarn`) and `dest` (`node-7:8042`) that
    /// is good until `expires` (Unix seconds); `None` when they are longer
    /// than [`MAX_MESSAGE`] allows.
    pub fn token(&self, prefix: &str, dest: &str, expires: u32) -> Option<[u8; TOKEN_LEN]> {
        let exp = expires.to_be_bytes();
        let mut buf = [0u8; MAX_MESSAGE];
        let msg = message(&mut buf, prefix, dest, exp)?;
        let mut raw = [0u8; RAW_LEN];
        raw[..4].copy_from_slice(&exp);
        raw[4..].copy_from_slice(hmac::sign(&self.current, msg).as_ref());
        let mut out = [0u8; TOKEN_LEN];
        // 36 bytes are exactly 48 characters: the buffer always fits.
        URL_SAFE_NO_PAD.encode_slice(raw, &mut out).ok()?;
        Some(out)
    }

    /// Whether `token` (from the request, `None` when absent) was made for
    /// `prefix` and `dest` and is still good at `now` (Unix seconds).
    pub fn verify(
        &self,
        prefix: &str,
        dest: &str,
        token: Option<&str>,
        now: u64,
    ) -> Result<(), Refusal> {
        let token = token.ok_or(Refusal::Unsigned)?;
        if token.len() != TOKEN_LEN {
            return Err(Refusal::BadSignature);
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(Refusal::BadSignature),
        }
        let (exp, tag) = raw.split_at(4);
        let exp = [exp[0], exp[1], exp[2], exp[3]];
        let mut buf = [0u8; MAX_MESSAGE];
        let msg = message(&mut buf, prefix, dest, exp).ok_or(Refusal::BadSignature)?;
        // hmac::verify compares the tags in constant time.
        let genuine = hmac::verify(&self.current, msg, tag).is_ok()
            || (now < self.previous_until
                && self
                    .previous
                    .as_ref()
                    .is_some_and(|k| hmac::verify(k, msg, tag).is_ok()));
        if !genuine {
            return Err(Refusal::BadSignature);
        }
        if u64::from(u32::from_be_bytes(exp)) < now {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

/// The signed message, built on the stack: `DOMAIN prefix \n dest \n expiry`.
fn message<'a>(
    buf: &'a mut [u8; MAX_MESSAGE],
    prefix: &str,
    dest: &str,
    exp: [u8; 4],
) -> Option<&'a [u8]> {
    let mut n = 0;
    for part in [
        DOMAIN,
        prefix.as_bytes(),
        b"\n",
        dest.as_bytes(),
        b"\n",
        &exp,
    ] {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(&buf[..n])
}

/// What signs links for one Pylon: the keys, the prefixes whose next
/// segment is a destination, and how long links live.
#[derive(Debug)]
pub struct Signer {
    pub keys: Keys,
    /// Normalised (`/a`, `/yarn`), as in `hostport.prefixes`.
    pub prefixes: Vec<String>,
    /// Lifetime of a redirect's link (followed at once), in seconds.
    pub redirect_ttl: u32,
    /// Lifetime of a link in a page (read, then clicked), in seconds.
    pub link_ttl: u32,
    /// Unsigned requests are refused (otherwise only links are signed).
    pub require: bool,
}

impl Signer {
    /// The prefix of `prefixes` that `before` (the text before a
    /// `/host:port` segment) ends with; the longest when several do.
    fn prefix_of<'a>(&'a self, before: &str) -> Option<&'a str> {
        self.prefixes
            .iter()
            .filter(|p| before.ends_with(p.as_str()))
            .max_by_key(|p| p.len())
            .map(String::as_str)
    }

    /// Signs the destination that `written` ends with: `…<prefix>/<host>:<port>`.
    /// The token (with its `~`) to append, or `None` when `written` does not
    /// end with a destination under a host:port prefix, or is already signed.
    pub fn token_for_tail(&self, written: &[u8], expires: u32) -> Option<[u8; TOKEN_LEN + 1]> {
        let slash = written.iter().rposition(|b| *b == b'/')?;
        let seg = std::str::from_utf8(&written[slash + 1..]).ok()?;
        let before = std::str::from_utf8(&written[..slash]).ok()?;
        crate::hostport::parse(seg)?;
        let prefix = self.prefix_of(before)?;
        let mut out = [0u8; TOKEN_LEN + 1];
        out[0] = SEP as u8;
        out[1..].copy_from_slice(&self.keys.token(prefix, seg, expires)?);
        Some(out)
    }

    /// `url` (a path, or an absolute URL through Pylon) with a token after
    /// the `host:port` segment that follows one of the prefixes; `None`
    /// when it names no destination or is signed already.
    pub fn sign_url(&self, url: &str, expires: u32) -> Option<String> {
        let path_start = match url.find("://") {
            Some(i) => i + 3 + url[i + 3..].find('/')?,
            None => 0,
        };
        let path = &url[path_start..];
        let path_end = path.find(['?', '#']).unwrap_or(path.len());
        let path = &path[..path_end];
        let prefix = self
            .prefixes
            .iter()
            .filter(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|p| p.len())?;
        let seg_start = prefix.len() + 1;
        let seg_len = path[seg_start..]
            .find('/')
            .unwrap_or(path.len() - seg_start);
        let seg = &path[seg_start..seg_start + seg_len];
        crate::hostport::parse(seg)?;
        let at = path_start + seg_start + seg_len;
        let token = self.keys.token(prefix, seg, expires)?;
        let mut out = String::with_capacity(url.len() + 1 + TOKEN_LEN);
        out.push_str(&url[..at]);
        out.push(SEP);
        // base64url: always ASCII.
        out.push_str(std::str::from_utf8(&token).ok()?);
        out.push_str(&url[at..]);
        Some(out)
    }
}

impl Signer {
    /// The signer of a checked `hostport` section, `None` without a key;
    /// `now` (Unix seconds, at load) starts the previous key's grace.
    pub(crate) fn from_config(h: &crate::config::HostPort, now: u64) -> Option<Signer> {
        let s = h.signing.as_ref()?;
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Some(Signer {
            keys: Keys::new(
                s.key.bytes(),
                s.previous.as_ref().map(|(_, k)| k.bytes()),
                now.saturating_add(s.previous_grace.as_secs()),
            ),
            prefixes: h.prefixes.clone(),
            redirect_ttl: secs(s.redirect_expiry),
            link_ttl: secs(s.link_expiry),
            require: s.require,
        })
    }
}

/// `n` rounds of signing a WebHDFS redirect (`sign`) and/or checking its
/// token (`verify`), for bench/link-signing; returns a count so that
/// nothing is optimised away.
pub fn cost_rounds(n: u64, sign: bool, verify: bool) -> u64 {
    let signer = Signer {
        keys: Keys::new(b"bench key: forty-eight bytes of key material....", None, 0),
        prefixes: vec!["/a".into(), "/yarn".into(), "/log-manager".into()],
        redirect_ttl: 60,
        link_ttl: 43_200,
        require: true,
    };
    let now = 1_800_000_000;
    let url = "/a/10.0.4.17:9864/webhdfs/v1/user/alice/data/part-00001?op=CREATE&namenoderpcaddress=nn1:8020&overwrite=false";
    let Some(presigned) = signer.sign_url(url, expiry(now, 60)) else {
        return 0;
    };
    let mut ok = 0;
    for i in 0..n {
        let exp = expiry(now + (i & 1), signer.redirect_ttl);
        let signed = if sign {
            match signer.sign_url(std::hint::black_box(url), exp) {
                Some(s) => s,
                None => continue,
            }
        } else {
            String::new()
        };
        if verify {
            let path = std::hint::black_box(if sign { &signed } else { &presigned });
            // What the request path does: split the segment, then check.
            let Some((seg, _)) = path.get(2..).and_then(crate::hostport::split) else {
                continue;
            };
            let (dest, token) = split_token(seg);
            if signer.keys.verify("/a", dest, token, now).is_ok() {
                ok += 1;
            }
        } else {
            ok += signed.len() as u64;
        }
    }
    ok
}

/// `now + ttl` as a token's expiry, saturating in 2106.
pub fn expiry(now: u64, ttl: u32) -> u32 {
    u32::try_from(now.saturating_add(u64::from(ttl))).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn keys() -> Keys {
        Keys::new(b"0123456789abcdef0123456789abcdef", None, 0)
    }

    fn signer() -> Signer {
        Signer {
            keys: keys(),
            prefixes: vec!["/a".into(), "/yarn".into(), "/log-manager".into()],
            redirect_ttl: 60,
            link_ttl: 3600,
            require: true,
        }
    }

    fn tok(k: &Keys, prefix: &str, dest: &str, exp: u32) -> String {
        String::from_utf8(k.token(prefix, dest, exp).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn round_trip_and_what_it_binds() {
        let k = keys();
        let t = tok(&k, "/yarn", "node1:8042", (NOW + 60) as u32);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(k.verify("/yarn", "node1:8042", Some(&t), NOW), Ok(()));
        assert_eq!(
            k.verify("/yarn", "node1:8042", None, NOW),
            Err(Refusal::Unsigned)
        );
        for (prefix, dest) in [
            ("/a", "node1:8042"),
            ("/yarn", "node2:8042"),
            ("/yarn", "node1:8088"),
            ("/yarn", "Node1:8042"),
        ] {
            assert_eq!(
                k.verify(prefix, dest, Some(&t), NOW),
                Err(Refusal::BadSignature),
                "{prefix} {dest}"
            );
        }
        assert_eq!(
            k.verify("/yarn", "node1:8042", Some(&t), NOW + 61),
            Err(Refusal::Expired)
        );
        assert_eq!(k.verify("/yarn", "node1:8042", Some(&t), NOW + 60), Ok(()));
        let other = Keys::new(b"another key of thirty-two bytes!", None, 0);
        assert_eq!(
            other.verify("/yarn", "node1:8042", Some(&t), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn tampering_is_caught() {
        let k = keys();
        let t = tok(&k, "/a", "10.0.0.5:9864", (NOW + 60) as u32);
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(b).unwrap();
            assert_eq!(
                k.verify("/a", "10.0.0.5:9864", Some(&bad), NOW),
                Err(Refusal::BadSignature),
                "byte {i}"
            );
        }
        for bad in [
            "",
            "x",
            &t[1..],
            &format!("{t}A"),
            &format!("{}=", &t[..TOKEN_LEN - 1]),
            &format!("{}+", &t[..TOKEN_LEN - 1]),
        ] {
            assert_eq!(
                k.verify("/a", "10.0.0.5:9864", Some(bad), NOW),
                Err(Refusal::BadSignature)
            );
        }
        // A later expiry with the old tag is a forgery, not an expiry.
        let mut raw = [0u8; RAW_LEN];
        URL_SAFE_NO_PAD.decode_slice(&t, &mut raw).unwrap();
        raw[3] ^= 1;
        let moved = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            k.verify("/a", "10.0.0.5:9864", Some(&moved), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn previous_key_only_during_its_grace() {
        let old = Keys::new(b"the old key, thirty-two bytes ok", None, 0);
        let t = tok(&old, "/a", "dn:9864", (NOW + 600) as u32);
        let new = Keys::new(
            b"the new key, thirty-two bytes ok",
            Some(b"the old key, thirty-two bytes ok"),
            NOW + 10,
        );
        assert_eq!(new.verify("/a", "dn:9864", Some(&t), NOW), Ok(()));
        assert_eq!(
            new.verify("/a", "dn:9864", Some(&t), NOW + 10),
            Err(Refusal::BadSignature)
        );
        // New links are made with the new key.
        let t2 = tok(&new, "/a", "dn:9864", (NOW + 600) as u32);
        assert_eq!(new.verify("/a", "dn:9864", Some(&t2), NOW + 20), Ok(()));
        assert_eq!(
            old.verify("/a", "dn:9864", Some(&t2), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn splitting_segments() {
        assert_eq!(split_token("node1:8042"), ("node1:8042", None));
        assert_eq!(split_token("node1:8042~abc"), ("node1:8042", Some("abc")));
        assert_eq!(split_token("[::1]:80~"), ("[::1]:80", Some("")));
        assert_eq!(split_token("a~b~c"), ("a", Some("b~c")));
    }

    #[test]
    fn signing_urls_and_rewritten_text() {
        let s = signer();
        let exp = (NOW + 60) as u32;
        let t = tok(&s.keys, "/a", "dn-3:9864", exp);
        assert_eq!(
            s.sign_url("/a/dn-3:9864/webhdfs/v1/f?op=OPEN#x", exp)
                .as_deref(),
            Some(format!("/a/dn-3:9864~{t}/webhdfs/v1/f?op=OPEN#x").as_str())
        );
        assert_eq!(
            s.sign_url("https://pylon.example:8443/a/dn-3:9864", exp)
                .as_deref(),
            Some(format!("https://pylon.example:8443/a/dn-3:9864~{t}").as_str())
        );
        let ty = tok(&s.keys, "/yarn", "[fe80::1]:8042", exp);
        assert_eq!(
            s.sign_url("/yarn/[fe80::1]:8042/node?x=/a/b:1/", exp)
                .as_deref(),
            Some(format!("/yarn/[fe80::1]:8042~{ty}/node?x=/a/b:1/").as_str())
        );
        for unsigned in [
            "/yarn/cluster/apps",
            "/ab/dn:1/x",
            "/a/dn:1~x/y",
            "/grafana/a/dn:1",
            "http://x",
            "/a?x=/a/dn:1/",
        ] {
            assert_eq!(s.sign_url(unsigned, exp), None, "{unsigned}");
        }

        let written = b"href='https://pylon.example/yarn/node1:8042";
        let got = s.token_for_tail(written, exp).unwrap();
        assert_eq!(got[0], b'~');
        assert_eq!(
            &got[1..],
            tok(&s.keys, "/yarn", "node1:8042", exp).as_bytes()
        );
        assert_eq!(s.keys.token(&"/x".repeat(600), "n:1", exp), None);
        for not_a_destination in [
            &b"href='https://pylon.example/yarn/cluster"[..],
            b"href='https://pylon.example/myyarn/node1:8042",
            b"node1:8042",
            b"/yarn/node1:8042/",
            b"/yarn/node1:8042~x",
            b"/yarn/\xff:1",
        ] {
            assert_eq!(s.token_for_tail(not_a_destination, exp), None);
        }
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expiry(NOW, 60), (NOW + 60) as u32);
        assert_eq!(expiry(u64::MAX, 60), u32::MAX);
    }
}
