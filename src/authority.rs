//! The request's authority: the host and port the client addressed, taken
//! once per request from where its protocol puts it.
//!
//! HTTP/2 clients (every browser on HTTPS) send `:authority`, which Pingora
//! keeps in the request URI, and usually no `Host` header; HTTP/1.x clients
//! send `Host`. Every use of "the client's host" — `{host}` in rewritten
//! pages, redirects, `server_names`, the HTTPS redirect, `X-Forwarded-Host`,
//! the access log — reads the one value derived here, so no protocol sees a
//! different Pylon.

use http::Version;

/// Why a request's authority is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// HTTP/1.1 without `Host` (RFC 9112 §3.2: "MUST respond with 400").
    MissingHost,
    /// More than one `Host` field (RFC 9112 §3.2, same rule).
    DuplicateHost,
    /// HTTP/2 `:authority` and `Host` that name different hosts
    /// (RFC 9113 §8.3.1).
    Conflicting,
}

impl Refusal {
    /// The body of the 400, one line.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingHost => "Bad request: HTTP/1.1 requires a Host header.\n",
            Refusal::DuplicateHost => "Bad request: more than one Host header.\n",
            Refusal::Conflicting => "Bad request: Host differs from :authority.\n",
        }
    }
}

/// The authority of a request, as the client sent it: `:authority` for
/// HTTP/2 (or `Host` when a client sends only that, which RFC 9113 §8.3.1
/// allows), `Host` for HTTP/1.x. `Ok(None)` when the request names no host
/// and may do so: HTTP/1.0 without `Host`, or an empty `Host` (which RFC
/// 9112 §3.2 prescribes for a target without authority).
///
/// `hosts` are the request's `Host` field values, `uri_authority` the
/// authority of its parsed target (HTTP/2's `:authority`; Pingora leaves it
/// empty for HTTP/1.x, whose absolute-form targets Pylon refuses anyway).
pub fn of_request<'a>(
    version: Version,
    uri_authority: Option<&'a [u8]>,
    mut hosts: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a [u8]>, Refusal> {
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    let named = match (uri_authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => return Err(Refusal::Conflicting),
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => {
            return Ok(None)
        }
        (None, None) => return Err(Refusal::MissingHost),
    };
    Ok((!named.is_empty()).then_some(named))
}

/// The authority as a public `host[:port]` that may go into a URL, a page
/// or a header: `None` unless it passes [`crate::redirect::valid_host`], so
/// a crafted `Host` or `:authority` can never reshape what Pylon writes.
pub fn public(authority: Option<&[u8]>) -> Option<&str> {
    authority
        .and_then(|a| std::str::from_utf8(a).ok())
        .filter(|h| crate::redirect::valid_host(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(
        version: Version,
        authority: Option<&'static str>,
        hosts: &[&'static str],
    ) -> Result<Option<&'static str>, Refusal> {
        of_request(
            version,
            authority.map(str::as_bytes),
            hosts.iter().map(|h| h.as_bytes()),
        )
        .map(|a| a.map(|b| std::str::from_utf8(b).unwrap()))
    }

    #[test]
    fn http2_uses_authority() {
        let h2 = Version::HTTP_2;
        assert_eq!(
            of(h2, Some("pylon.example:8443"), &[]),
            Ok(Some("pylon.example:8443"))
        );
        assert_eq!(
            of(h2, Some("a.example"), &["A.example"]),
            Ok(Some("a.example"))
        );
        assert_eq!(of(h2, None, &["b.example"]), Ok(Some("b.example")));
        assert_eq!(of(h2, Some("a"), &["b"]), Err(Refusal::Conflicting));
        assert_eq!(of(h2, Some("a"), &["a", "a"]), Err(Refusal::DuplicateHost));
        assert_eq!(of(h2, None, &[]), Err(Refusal::MissingHost));
    }

    #[test]
    fn http1_uses_host() {
        let h1 = Version::HTTP_11;
        assert_eq!(of(h1, None, &["pylon.example"]), Ok(Some("pylon.example")));
        assert_eq!(of(h1, None, &[]), Err(Refusal::MissingHost));
        assert_eq!(of(h1, None, &["a", "b"]), Err(Refusal::DuplicateHost));
        assert_eq!(of(h1, None, &[""]), Ok(None), "empty Host is allowed");
        // HTTP/1.0 predates Host: its absence is no error.
        assert_eq!(of(Version::HTTP_10, None, &[]), Ok(None));
        assert_eq!(of(Version::HTTP_10, None, &["h"]), Ok(Some("h")));
        assert_eq!(
            of(Version::HTTP_10, None, &["h", "h"]),
            Err(Refusal::DuplicateHost)
        );
    }

    #[test]
    fn only_plain_hosts_are_public() {
        assert_eq!(
            public(Some(b"pylon.example:8080")),
            Some("pylon.example:8080")
        );
        assert_eq!(public(Some(b"[::1]:443")), Some("[::1]:443"));
        assert_eq!(public(Some(b"x\"><script>")), None);
        assert_eq!(public(Some(b"evil.example/x")), None);
        assert_eq!(public(Some(b"a@b")), None);
        assert_eq!(public(Some(&[0xff])), None);
        assert_eq!(public(None), None);
    }
}
