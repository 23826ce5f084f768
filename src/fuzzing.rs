//! The properties the fuzz targets check, in the library so that the
//! targets under `fuzz/` and the corpus replays under `cargo test` run the
//! same code. Each function takes arbitrary bytes and panics when a
//! property does not hold.

use std::sync::Arc;

use crate::config::normalise_prefix;
use crate::path::normalise;
use crate::redirect::{self, PublicOrigin, Redirects};
use crate::rewrite::{Options, RuleSet, RuleSpec, Vars};
use crate::routing::{upstream_target, Router};
use crate::upstream_uri::UpstreamUri;

/// Splits at the first blank line: a small header, then free-form bytes.
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

fn is_dot_segment(seg: &str) -> bool {
    let before_params = seg.split(';').next().unwrap_or_default();
    before_params == "." || before_params == ".."
}

/// Path normalisation never panics; what it accepts comes out absolute,
/// without empty or dot-segments or escaped unreserved characters, with
/// upper-case escapes, unchanged by a second pass, and with the query
/// passed on byte for byte.
pub fn path_normalise(data: &[u8]) {
    let Ok(t) = normalise(data) else {
        return;
    };
    let path: &str = &t.path;
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains("//"), "{path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(!is_dot_segment(seg), "dot-segment in {path:?}");
        assert!(
            !seg.is_empty() || i + 1 == segments.len(),
            "empty segment in {path:?}"
        );
    }
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        assert!(
            c.is_ascii_graphic() && c != b'\\',
            "byte {c:#x} in {path:?}"
        );
        if c == b'%' {
            let hex = &b[i + 1..(i + 3).min(b.len())];
            assert!(
                hex.len() == 2
                    && hex
                        .iter()
                        .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape in {path:?}"
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0);
            assert!(
                !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                "escaped unreserved byte in {path:?}"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
    let again = normalise(b).expect("a normalised path is accepted again");
    assert_eq!(again.path, path, "not idempotent");
    // The allocation-free fast path takes escapes to the slow one, by design.
    assert!(
        path.contains('%') || matches!(again.path, std::borrow::Cow::Borrowed(_)),
        "a normalised path is not recognised as normal: {path:?}"
    );
    let expected_query = data.iter().position(|&c| c == b'?').map(|q| &data[q + 1..]);
    assert_eq!(t.query, expected_query);
}

/// Input: prefixes one per line, a blank line, then a request target.
/// On any normalised path, the route found is the longest prefix that
/// matches on a segment boundary; what follows it is empty or starts with
/// `/`; and the upstream target starts with `/`.
pub fn route(data: &[u8]) {
    let (head, target) = split_head(data);
    let prefixes: Vec<String> = head
        .split(|&b| b == b'\n')
        .take(16)
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(normalise_prefix)
        .collect();
    let Ok(t) = normalise(target) else {
        return;
    };
    let path: &str = &t.path;
    let router = Router::new(prefixes.iter().map(String::as_str));
    let matches = |p: &str| {
        p == "/"
            || path
                .strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    };
    let longest = prefixes
        .iter()
        .filter(|p| matches(p))
        .map(|p| p.len())
        .max();
    match router.find(path) {
        None => assert_eq!(longest, None, "{path:?} unrouted"),
        Some(m) => {
            let prefix = &prefixes[m.route];
            assert!(matches(prefix), "{prefix:?} does not match {path:?}");
            assert_eq!(Some(prefix.len()), longest, "{path:?}: not the longest");
            let rest = &path[m.rest_start..];
            assert!(rest.is_empty() || rest.starts_with('/'), "rest {rest:?}");
            if prefix != "/" {
                assert_eq!(format!("{prefix}{rest}"), path);
            }
            for base in ["", "/base"] {
                let up = upstream_target(base, rest, t.query);
                assert!(up.starts_with(b"/"), "{up:?}");
            }
        }
    }
}

const UPSTREAMS: &[&str] = &[
    "http://10.0.3.9:9186",
    "http://10.0.3.9:5070/webhdfs",
    "http://10.0.3.9:5070",
    "https://10.0.3.9:6443",
    "http://[::1]:8080/base/path",
    "https://Grafana.cluster",
];

fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Input: a control line (byte 0: scheme and current route, byte 1: ETag
/// suffix choice), the public host line, route lines `PREFIX INDEX`, a
/// blank line, then one header value (any bytes). No function panics,
/// and nothing they return holds a control character or a non-ASCII byte.
pub fn redirect(data: &[u8]) {
    let (head, value) = split_head(data);
    let mut lines = head.split(|&b| b == b'\n');
    let control = lines.next().unwrap_or_default();
    let host = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut routes: Vec<(String, UpstreamUri)> = Vec::new();
    for line in lines.take(8) {
        let line = String::from_utf8_lossy(line);
        let (prefix, index) = line.split_once(' ').unwrap_or((&line, "0"));
        let i = index.bytes().map(usize::from).sum::<usize>() % UPSTREAMS.len();
        if let (Some(p), Ok(u)) = (normalise_prefix(prefix), UpstreamUri::parse(UPSTREAMS[i])) {
            routes.push((p, u));
        }
    }
    let c0 = control.first().copied().unwrap_or(0);
    let public = PublicOrigin::new(if c0 & 1 == 1 { "https" } else { "http" }, Some(&host));
    let current = usize::from(c0 >> 1) % routes.len().max(1);
    let table = Redirects::new(routes.iter().map(|(p, u)| (p.as_str(), u)));
    let value = String::from_utf8_lossy(value);

    let check = |what: &str, out: Option<String>| {
        if let Some(o) = out {
            assert!(header_safe(&o), "{what} produced {o:?}");
            o
        } else {
            String::new()
        }
    };
    let loc = check("location", table.location(&value, &public, current));
    if !loc.is_empty() {
        assert!(
            loc.starts_with('/') || loc.starts_with("http://") || loc.starts_with("https://"),
            "{loc:?}"
        );
    }
    check("refresh", table.refresh(&value, &public, current));
    check(
        "refresh url=",
        table.refresh(&format!("0; url={value}"), &public, current),
    );
    let dn = check("datanode", redirect::datanode_redirect(&value));
    assert!(dn.is_empty() || dn.starts_with("/a/"), "{dn:?}");

    let suffix = match control.get(1).copied().unwrap_or(0) % 3 {
        0 => redirect::config_suffix(value.as_bytes()),
        1 => "S".to_string(),
        _ => String::from_utf8_lossy(control).into_owned(),
    };
    let tagged = redirect::etag_out(&value, &suffix);
    if tagged != value {
        assert!(header_safe(&tagged), "{tagged:?}");
        assert_eq!(
            redirect::if_none_match_in(&tagged, &suffix).as_deref(),
            Some(value.trim_matches(' ')),
            "ETag round trip"
        );
    }
    check("if-none-match", redirect::if_none_match_in(&value, &suffix));
}

/// Input: a prefix line, then a request path after that prefix
/// (`/host:port~token/rest`, any bytes). Parsing and checking never panic;
/// no token is accepted but the one Pylon mints for that prefix, host:port
/// and expiry; what Pylon signs verifies, for that prefix and destination
/// only, and keeps the rest of the URL byte for byte.
pub fn link_signing(data: &[u8]) {
    use crate::link_signing::{split_token, Keys, Refusal, Signer};
    const NOW: u64 = 1_800_000_000;
    let (prefix, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/a"[..], data),
    };
    let prefix = normalise_prefix(&String::from_utf8_lossy(prefix))
        .filter(|p| p != "/")
        .unwrap_or_else(|| "/a".to_string());
    let rest = String::from_utf8_lossy(rest);
    let signer = Signer {
        keys: Keys::new(
            b"fuzzing key, thirty-two bytes ok",
            Some(b"previous"),
            NOW + 5,
        ),
        prefixes: vec![prefix.clone(), "/yarn".to_string()],
        redirect_ttl: 60,
        link_ttl: 3600,
        require: true,
    };
    let Some((segment, _)) = crate::hostport::split(&rest) else {
        return;
    };
    let (dest, token) = split_token(segment);
    match signer.keys.verify(&prefix, dest, token, NOW) {
        Ok(()) | Err(Refusal::Expired) => {
            // Only a token made with the key for exactly these: the fuzzer
            // cannot find one by chance.
            let token = token.unwrap_or_default();
            let exp = token_expiry(token);
            let real = signer.keys.token(&prefix, dest, exp);
            assert_eq!(real.as_ref().map(|t| &t[..]), Some(token.as_bytes()));
        }
        Err(_) => {}
    }
    signer.token_for_tail(rest.as_bytes(), 1);
    signer.token_for_tail(data, 1);

    let url = format!("{prefix}{rest}");
    let Some(signed) = signer.sign_url(&url, (NOW + 60) as u32) else {
        return;
    };
    let path_end = signed.find(['?', '#']).unwrap_or(signed.len());
    let (seg, _) = crate::hostport::split(&signed[prefix.len()..path_end]).expect("signed segment");
    let (d, t) = split_token(seg);
    assert!(crate::hostport::parse(d).is_some(), "{signed:?}");
    assert_eq!(signer.keys.verify(&prefix, d, t, NOW), Ok(()), "{signed:?}");
    assert_eq!(
        signer.keys.verify(&prefix, d, t, NOW + 61),
        Err(Refusal::Expired)
    );
    assert_eq!(
        signer.keys.verify("/other", d, t, NOW),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        signer.keys.verify(&prefix, &format!("x{d}"), t, NOW),
        Err(Refusal::BadSignature)
    );
    let token = format!("~{}", t.unwrap_or_default());
    assert_eq!(
        signed.replacen(&token, "", 1),
        url,
        "only the token is added"
    );
}

/// The expiry a token claims (0 when it is not one).
fn token_expiry(token: &str) -> u32 {
    use base64::Engine as _;
    let mut raw = [0u8; 36];
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(token, &mut raw) {
        Ok(36) => u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        _ => 0,
    }
}

const CHUNK_PLANS: usize = 4;

/// Input: a control line (byte 0: search step, then chunk sizes), rule
/// lines (`L`, `R` or `M<max_match byte>`, then `pattern<TAB>replacement`),
/// a blank line, then the body. Whatever the chunking, the output equals
/// the whole-body output; fused and unfused literal rules agree; with no
/// over-long regex, both equal an unbounded rule-by-rule replacement; and
/// the bytes held between chunks stay within the advertised bound.
// One property after another on the same decoded input; kept together so
// a failure reads as one story.
pub fn rewrite_chunks(data: &[u8]) {
    let (head, body) = split_head(data);
    let mut lines = head.split(|&b| b == b'\n');
    let control = lines.next().unwrap_or_default();
    let mut rules = Vec::new();
    for line in lines.take(6) {
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            return;
        };
        let (rest, max_match) = match kind {
            b'M' => match rest.char_indices().nth(1) {
                Some((i, _)) => (&rest[i..], Some(1 + usize::from(rest.as_bytes()[0] % 32))),
                None => (rest, Some(1)),
            },
            _ => (rest, None),
        };
        let (pattern, replacement) = rest.split_once('\t').unwrap_or((rest, ""));
        rules.push(RuleSpec {
            pattern: pattern.chars().take(64).collect(),
            replacement: replacement.chars().take(64).collect(),
            regex: kind != b'L',
            max_match,
        });
    }
    let min_step = 1 + usize::from(control.first().copied().unwrap_or(0) % 64);
    let opts = Options {
        fuse: true,
        min_step,
    };
    let Ok(fused) = RuleSet::with_options(&rules, opts) else {
        return;
    };
    let fused = Arc::new(fused);
    let unfused = Arc::new(
        RuleSet::with_options(
            &rules,
            Options {
                fuse: false,
                ..opts
            },
        )
        .expect("fusion does not change which rules are valid"),
    );
    let Some(vars) = Vars::new("https", "pylon.example:8443", "/yarn") else {
        return;
    };
    let whole = fused.apply(&vars, body);
    assert_eq!(
        unfused.apply(&vars, body),
        whole,
        "fused and unfused differ"
    );
    if let Some(reference) = fused.reference(&vars, body) {
        assert_eq!(
            String::from_utf8_lossy(&reference),
            String::from_utf8_lossy(&whole),
            "differs from unbounded replacement"
        );
    }
    let sizes: Vec<usize> = control
        .iter()
        .skip(1)
        .map(|&b| 1 + usize::from(b % 17))
        .collect();
    for plan in 0..CHUNK_PLANS {
        let mut s = fused.streamer(vars.clone());
        let mut out = Vec::new();
        let mut at = 0;
        let mut k = 0;
        while at < body.len() {
            let size = match plan {
                0 => 1,
                1 => sizes.get(k % sizes.len().max(1)).copied().unwrap_or(7),
                2 => 1 + (k * 7 + 3) % 29,
                _ => body.len() / 2 + 1,
            };
            let end = (at + size).min(body.len());
            s.push(&body[at..end], &mut out);
            assert!(
                s.pending() <= fused.max_pending(),
                "{} bytes held, bound {}",
                s.pending(),
                fused.max_pending()
            );
            at = end;
            k += 1;
        }
        s.finish(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&whole),
            "chunk plan {plan} differs from the whole body"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/<target>`, so that a finding checked in
    /// there stays fixed without a fuzzing engine.
    fn replay(target: &str, check: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{} fails", f.display());
        }
    }

    /// A fixed-seed sweep of generated inputs, so that every test run
    /// exercises the properties beyond the corpus, fuzzer or not.
    #[test]
    fn generated_inputs_hold_the_properties() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        const PATTERNS: &[&str] = &[
            "a",
            "ab",
            "b",
            "abc",
            "ba",
            "<",
            "'",
            "x",
            "a[^z]*z",
            "(a|ab)(c|bcd)?",
            r"\bab\b",
            "(?m)^a",
            "a$",
            "b+",
            "[ab]{2,3}",
            "(?i)AB",
            "a.b",
            "'[^']*'",
        ];
        const REPLACEMENTS: &[&str] = &["", "X", "ab", "$0$0", "{host}", "{prefix}/", "[$1]", "b"];
        const BODY: &[u8] = b"aabbxz<'\n ";
        for _ in 0..3000 {
            let mut data = vec![next(256) as u8];
            for _ in 0..next(8) {
                data.push(next(256) as u8);
            }
            for _ in 0..1 + next(4) {
                let kind = [b"\nL", b"\nR", b"\nM"][next(3)];
                data.extend_from_slice(kind);
                if kind == b"\nM" {
                    data.push(b'0' + next(10) as u8);
                }
                data.extend_from_slice(PATTERNS[next(PATTERNS.len())].as_bytes());
                data.push(b'\t');
                data.extend_from_slice(REPLACEMENTS[next(REPLACEMENTS.len())].as_bytes());
            }
            data.extend_from_slice(b"\n\n");
            for _ in 0..next(200) {
                data.push(BODY[next(BODY.len())]);
            }
            super::rewrite_chunks(&data);
        }
        for _ in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..next(40) {
                data.push(b"/.%2e5Ca?;x\\"[next(12)]);
            }
            super::path_normalise(&data);
        }
        for _ in 0..3000 {
            let mut data = b"/a\n/".to_vec();
            for _ in 0..next(70) {
                data.push(b"n1:8042~AZaz09-_/.[]?#%"[next(23)]);
            }
            super::link_signing(&data);
        }
    }

    #[test]
    fn replay_path_normalise_corpus() {
        replay("path_normalise", super::path_normalise);
    }

    #[test]
    fn replay_route_corpus() {
        replay("route", super::route);
    }

    #[test]
    fn replay_redirect_corpus() {
        replay("redirect", super::redirect);
    }

    #[test]
    fn replay_link_signing_corpus() {
        replay("link_signing", super::link_signing);
    }

    #[test]
    fn replay_rewrite_chunks_corpus() {
        replay("rewrite_chunks", super::rewrite_chunks);
    }
}
