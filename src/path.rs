//! Request-target normalisation: the one place that decides what path a
//! request is routed on. The same string is what the upstream receives, so
//! nothing can be routed as one thing and interpreted upstream as another.
//!
//! Rules (RFC 3986 §6.2.2 and §5.2.4, plus choices for the ambiguous cases):
//! - only origin-form targets (`/path?query`) are accepted;
//! - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded,
//!   every other escape is kept with upper-case hex, so `%2F` stays an
//!   escaped byte inside one segment and is never a separator;
//! - `%00` is refused, and so is a malformed escape;
//! - a raw `\` is refused: some upstreams treat it as `/`, we cannot know;
//! - bytes that may not appear in a path (non-ASCII, `"`, `<`, `>`, `{`…)
//!   are percent-encoded; control characters are refused;
//! - empty segments are merged (`//` → `/`), as nginx does by default;
//! - `.` and `..` segments are resolved; climbing above `/` is refused;
//! - `;` is an ordinary character, except that a segment `.;x` or `..;x`
//!   is refused, since servlet containers read those as dot-segments;
//! - the query string is passed on byte for byte.

use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadEscape,
    EncodedNul,
    Backslash,
    ControlChar,
    DotSegmentWithParams,
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "request target must be an absolute path (origin-form)",
            PathError::BadEscape => "malformed percent-escape in path",
            PathError::EncodedNul => "encoded NUL (%00) in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlChar => "control character in request target",
            PathError::DotSegmentWithParams => "dot-segment with ';' parameters in path",
            PathError::AboveRoot => "path climbs above the root",
        })
    }
}

impl std::error::Error for PathError {}

/// A normalised request target: the path to route on and the untouched query.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub path: Cow<'a, str>,
    /// Everything after the first `?`, without it; `Some("")` for a bare `?`.
    pub query: Option<&'a [u8]>,
}

/// Normalises a raw HTTP request target. Targets that are already normal,
/// the common case, are returned borrowed without allocating.
pub fn normalise(target: &[u8]) -> Result<Target<'_>, PathError> {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if let Some(q) = query {
        if q.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(PathError::ControlChar);
        }
    }
    let path = if is_already_normal(path) {
        // Only pchar bytes were accepted above, so this is ASCII.
        Cow::Borrowed(std::str::from_utf8(path).map_err(|_| PathError::ControlChar)?)
    } else {
        Cow::Owned(normalise_slow(path)?)
    };
    Ok(Target { path, query })
}

/// Which bytes are a pchar (RFC 3986 §3.3) or `/`, by value: the check runs
/// for every byte of every request's path, and a table is one load where
/// the list of sub-delimiters took a scan of it per byte.
static PCHAR_OR_SLASH: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

fn is_pchar_or_slash(b: u8) -> bool {
    PCHAR_OR_SLASH[usize::from(b)]
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Whether `path` (starting with `/`) is its own normal form: only pchar
/// bytes and `/`, and no segment that normalising would change: an empty
/// one other than the last (`/a/` is normal), `.` or `..`, with or without
/// `;` parameters. One pass, since it runs for every request.
fn is_already_normal(path: &[u8]) -> bool {
    // Of the current segment: whether it has any byte yet, whether its `;`
    // parameters began, and the length and dots of the part before them.
    let (mut empty, mut params, mut head, mut dots) = (true, false, 0usize, 0usize);
    let dot_segment = |head: usize, dots: usize| head == dots && (head == 1 || head == 2);
    for &b in path.get(1..).unwrap_or_default() {
        if !is_pchar_or_slash(b) {
            return false;
        }
        match b {
            b'/' => {
                if empty || dot_segment(head, dots) {
                    return false;
                }
                (empty, params, head, dots) = (true, false, 0, 0);
            }
            b';' => (empty, params) = (false, true),
            _ => {
                empty = false;
                if !params {
                    head += 1;
                    dots += usize::from(b == b'.');
                }
            }
        }
    }
    !dot_segment(head, dots)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

fn normalise_slow(path: &[u8]) -> Result<String, PathError> {
    // Pass 1: canonical escapes, one segment at a time.
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_seg in path[1..].split(|&b| b == b'/') {
        let mut seg = String::with_capacity(raw_seg.len());
        let mut i = 0;
        while i < raw_seg.len() {
            let b = raw_seg[i];
            match b {
                b'%' => {
                    let (h, l) = match (
                        raw_seg.get(i + 1).and_then(|&c| hex(c)),
                        raw_seg.get(i + 2).and_then(|&c| hex(c)),
                    ) {
                        (Some(h), Some(l)) => (h, l),
                        _ => return Err(PathError::BadEscape),
                    };
                    let v = h << 4 | l;
                    if v == 0 {
                        return Err(PathError::EncodedNul);
                    }
                    if is_unreserved(v) {
                        seg.push(v as char);
                    } else {
                        push_escaped(&mut seg, v);
                    }
                    i += 3;
                    continue;
                }
                b'\\' => return Err(PathError::Backslash),
                0..=0x20 | 0x7f => return Err(PathError::ControlChar),
                _ if is_pchar_or_slash(b) => seg.push(b as char),
                _ => push_escaped(&mut seg, b),
            }
            i += 1;
        }
        // Pass 2 (RFC 3986 §5.2.4), folded in: resolve this segment now.
        let before_params = seg.split(';').next().unwrap_or_default();
        if seg.contains(';') && (before_params == "." || before_params == "..") {
            return Err(PathError::DotSegmentWithParams);
        }
        match seg.as_str() {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                segments.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        normalise(s.as_bytes()).map(|t| t.path.into_owned())
    }

    #[test]
    fn pchar_table_is_the_rfc_set() {
        for b in 0..=u8::MAX {
            let listed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
            assert_eq!(is_pchar_or_slash(b), listed, "{b:#04x}");
        }
    }

    #[test]
    fn paths_needing_work_are_not_normal() {
        for p in [
            "//", "/a//b", "/.", "/./a", "/a/..", "/..;x/a", "/.;/a", "/a/.;", "/a%41", "/a b",
            "/a/./", "/a\\b", "/é",
        ] {
            assert!(!is_already_normal(p.as_bytes()), "{p}");
        }
        for p in [
            "/", "/a/", "/a;b/c", "/...", "/.a/..b", "/;x/a", "/a;./b", "/a/;", "/.../",
        ] {
            assert!(is_already_normal(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/rest-server/api/v1/jobs",
            "/a;b=c/d",
            "/a.b/..c/.d",
        ] {
            let t = normalise(p.as_bytes()).unwrap();
            assert!(matches!(t.path, Cow::Borrowed(_)), "{p}");
            assert_eq!(t.path, p);
        }
    }

    #[test]
    fn dot_segments_and_escapes() {
        assert_eq!(
            norm("/grafana/../kubernetes/api/v1/secrets").unwrap(),
            "/kubernetes/api/v1/secrets"
        );
        assert_eq!(
            norm("/grafana/%2e%2e/kubernetes/api").unwrap(),
            "/kubernetes/api"
        );
        assert_eq!(
            norm("/grafana/%2E%2E/kubernetes/api").unwrap(),
            "/kubernetes/api"
        );
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("//kubernetes//api").unwrap(), "/kubernetes/api");
        assert_eq!(norm("/%61%62c").unwrap(), "/abc");
        assert_eq!(norm("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(norm("/a%2F..%2Fb").unwrap(), "/a%2F..%2Fb");
        assert_eq!(norm("/a%5cb").unwrap(), "/a%5Cb");
        assert_eq!(norm("/a%3Fb%23c").unwrap(), "/a%3Fb%23c");
        assert_eq!(norm("/caf\u{e9}").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/a\"b").unwrap(), "/a%22b");
    }

    #[test]
    fn refusals() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a/..;/b"), Err(PathError::DotSegmentWithParams));
        assert_eq!(norm("/a/.;x/b"), Err(PathError::DotSegmentWithParams));
        assert_eq!(norm("http://evil/a"), Err(PathError::NotOriginForm));
        assert_eq!(norm("*"), Err(PathError::NotOriginForm));
        assert_eq!(norm("/a\tb"), Err(PathError::ControlChar));
    }

    #[test]
    fn query_is_untouched() {
        let t = normalise(b"/a/../b?x=%2e%2e/../&y=1").unwrap();
        assert_eq!(t.path, "/b");
        assert_eq!(t.query, Some(&b"x=%2e%2e/../&y=1"[..]));
        assert_eq!(normalise(b"/a?").unwrap().query, Some(&b""[..]));
        assert_eq!(normalise(b"/a").unwrap().query, None);
    }

    #[test]
    fn normalising_is_idempotent() {
        for p in ["/a/%2e/b//c/../d%2f", "/x/%7euser/.", "/%41%42/..%2f"] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
        }
    }
}
