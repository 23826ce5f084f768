//! Response-body substitution, the successor of the original's `sub_filter`
//! (literal) and `subs_filter` (regex) rules: services behind Pylon embed
//! their internal addresses and root-relative paths in HTML, JavaScript and
//! JSON, and those must become public URLs under the route's prefix.
//!
//! Semantics, which do not depend on how the body is cut into chunks:
//!
//! - Rules apply in order, each to the output of the previous one, as nginx
//!   applies `subs_filter` rules one after the other. Each rule replaces the
//!   leftmost match, continues after it, and never rescans its own output.
//! - A literal rule matches its bytes exactly. Consecutive literal rules are
//!   searched in one pass (Aho-Corasick) when that gives the same result as
//!   applying them one by one; that is checked when the rules are built.
//! - A regex rule uses the `regex` crate (linear time, no backtracking) on
//!   bytes, byte-oriented like nginx's PCRE: `[^/]` and `.` match any single
//!   byte, `\w` and `(?i)` are ASCII. A pattern that can match the empty
//!   string is refused.
//! - A regex rule has a window, `max_match` (default [`DEFAULT_MAX_MATCH`];
//!   the pattern's own maximum length when that is shorter). Each search
//!   looks at a fixed span ahead of the current position, and a match is
//!   only taken if it starts at least `max_match` (+ 8 bytes of look-ahead)
//!   before the end of that span, so every match had the same room whatever
//!   the chunking. When every match is shorter than `max_match`, the result
//!   is that of an unbounded search over the whole body; a longer match is
//!   not guaranteed to be found, and may be cut short at the window's edge.
//!   A pattern of bounded length (no `*`, `+`, `{n,}`) that fits its
//!   window is always exact.
//! - Replacements may use `$0`…`$N`, `${N}`, `${name}` (regex only; `$$` is
//!   a literal `$`) and the per-request placeholders `{scheme}`, `{host}`
//!   and `{prefix}` (the route's public prefix, empty for `/`). `{sign}`
//!   appends the signature of the host:port link that the replacement
//!   itself has written just before it (`/yarn/$1:8042{sign}/node`: the
//!   `host:port` segment and the host:port prefix before it, see
//!   `link_signing`); it writes nothing when signing is off or what
//!   precedes it is not such a link. Any other `{…}` is literal text, so
//!   JSON and JavaScript need no escaping.
//!
//! Memory per response: a literal stage holds back fewer bytes than its
//! longest pattern between chunks; a regex stage fewer than
//! `max_match + 8 + max(max_match + 8, 4 KiB)`, plus 8 bytes of look-behind
//! ([`RuleSet::max_pending`] adds them up). Each stage's buffer also grows
//! to the size of one chunk, once: nothing is allocated per chunk after
//! that but the output.

use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::Bytes;
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};

use crate::link_signing::Signer;

/// Window of a regex rule whose configuration does not set `max_match`.
pub const DEFAULT_MAX_MATCH: usize = 4096;
/// Larger windows would let one response hold megabytes per rule.
pub const MAX_MAX_MATCH: usize = 1 << 20;
/// Context kept on each side of a regex match for `\b`, `^`, `$` and their
/// multi-line and Unicode forms, which look at most one character away.
const LOOK: usize = 8;
/// The least a regex stage advances per search when nothing matches, so a
/// tiny window does not mean a search call every few bytes.
const MIN_STEP: usize = 4096;
/// The fusion check is quadratic in the text lengths; beyond this a rule
/// simply gets its own pass.
const FUSE_MAX_LEN: usize = 4096;

/// One rule as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub pattern: String,
    pub replacement: String,
    #[serde(default)]
    pub regex: bool,
    /// Regex rules only: the longest match that is guaranteed to be found.
    #[serde(default)]
    pub max_match: Option<usize>,
}

impl RuleSpec {
    pub fn literal(pattern: impl Into<String>, replacement: impl Into<String>) -> Self {
        RuleSpec {
            pattern: pattern.into(),
            replacement: replacement.into(),
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn regex(pattern: impl Into<String>, replacement: impl Into<String>) -> Self {
        RuleSpec {
            pattern: pattern.into(),
            replacement: replacement.into(),
            regex: true,
            max_match: None,
        }
    }
}

/// A refused rule: which one (index in the list), which field, and why, so
/// the configuration error can name `…rewrite[2].pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl RuleError {
    fn new(
        index: usize,
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        RuleError {
            index,
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The configuration key of the offending field under `list_key`, e.g.
    /// `pylon.routes.grafana.rewrite` → `pylon.routes.grafana.rewrite[2].pattern`.
    pub fn key(&self, list_key: &str) -> String {
        format!("{list_key}[{}].{}", self.index, self.field)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} {} {:?}: {}",
            self.index, self.field, self.value, self.reason
        )
    }
}

impl std::error::Error for RuleError {}

/// The per-request values of the placeholders, checked so that a client's
/// `Host` header cannot inject markup or script into a rewritten page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    scheme: &'static str,
    host: String,
    prefix: String,
    sign: Option<Stamp>,
}

/// What `{sign}` signs with: the signer and the links' expiry.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub signer: Arc<Signer>,
    pub expires: u32,
}

impl PartialEq for Stamp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.signer, &other.signer) && self.expires == other.expires
    }
}

impl Eq for Stamp {}

impl Vars {
    /// `scheme` is `http` or `https`; `host` is the public `host[:port]`;
    /// `prefix` the route's public prefix (`/` and a trailing `/` give the
    /// empty string, so `{prefix}/x` works for every route). `None` when any
    /// of them is not what a URL can hold as is.
    pub fn new(scheme: &str, host: &str, prefix: &str) -> Option<Vars> {
        let scheme = match scheme {
            s if s.eq_ignore_ascii_case("https") => "https",
            s if s.eq_ignore_ascii_case("http") => "http",
            _ => return None,
        };
        if !crate::redirect::valid_host(host) {
            return None;
        }
        let prefix = prefix.trim_end_matches('/');
        if !(prefix.is_empty() || prefix.starts_with('/'))
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
        {
            return None;
        }
        Some(Vars {
            scheme,
            host: host.to_string(),
            prefix: prefix.to_string(),
            sign: None,
        })
    }

    /// Makes `{sign}` sign links.
    pub fn signing(mut self, stamp: Stamp) -> Vars {
        self.sign = Some(stamp);
        self
    }
}

// ------------------------------------------------------------ replacements

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Group(usize),
    Scheme,
    Host,
    Prefix,
    Sign,
}

#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    fn has_groups(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Group(_)))
    }

    /// The replacement when it does not depend on the request or the match.
    fn constant(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                _ => return None,
            }
        }
        Some(out)
    }

    fn expand(&self, vars: &Vars, hay: &[u8], caps: Option<&CaptureLocations>, out: &mut Vec<u8>) {
        let start = out.len();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Scheme => out.extend_from_slice(vars.scheme.as_bytes()),
                Piece::Host => out.extend_from_slice(vars.host.as_bytes()),
                Piece::Prefix => out.extend_from_slice(vars.prefix.as_bytes()),
                Piece::Sign => {
                    let token = vars.sign.as_ref().and_then(|s| {
                        s.signer
                            .token_for_tail(out.get(start..).unwrap_or_default(), s.expires)
                    });
                    if let Some(t) = token {
                        out.extend_from_slice(&t);
                    }
                }
                Piece::Group(i) => {
                    if let Some((a, b)) = caps.and_then(|c| c.get(*i)) {
                        out.extend_from_slice(&hay[a..b]);
                    }
                }
            }
        }
    }
}

fn push_text(pieces: &mut Vec<Piece>, s: &[u8]) {
    if s.is_empty() {
        return;
    }
    if let Some(Piece::Text(t)) = pieces.last_mut() {
        t.extend_from_slice(s);
    } else {
        pieces.push(Piece::Text(s.to_vec()));
    }
}

/// Parses placeholders, and `$` references when `re` is given.
fn parse_template(text: &str, re: Option<&Regex>) -> Result<Template, String> {
    const VARS: [(&str, Piece); 4] = [
        ("{scheme}", Piece::Scheme),
        ("{host}", Piece::Host),
        ("{prefix}", Piece::Prefix),
        ("{sign}", Piece::Sign),
    ];
    let b = text.as_bytes();
    let mut pieces = Vec::new();
    let mut i = 0;
    'outer: while i < b.len() {
        if b[i] == b'{' {
            for (name, piece) in &VARS {
                if b[i..].starts_with(name.as_bytes()) {
                    pieces.push(piece.clone());
                    i += name.len();
                    continue 'outer;
                }
            }
        }
        if b[i] == b'$' {
            if let Some(re) = re {
                let (group, used) = parse_group_ref(&text[i + 1..], re)?;
                match group {
                    Some(g) => pieces.push(Piece::Group(g)),
                    None => push_text(&mut pieces, b"$"),
                }
                i += 1 + used;
                continue;
            }
        }
        push_text(&mut pieces, &b[i..i + 1]);
        i += 1;
    }
    Ok(Template { pieces })
}

/// After a `$`: the group it names (`None` for `$$`) and the bytes used.
fn parse_group_ref(rest: &str, re: &Regex) -> Result<(Option<usize>, usize), String> {
    let groups = re.captures_len();
    let by_number = |n: &str| -> Result<usize, String> {
        match n.parse::<usize>() {
            Ok(g) if g < groups => Ok(g),
            _ => Err(format!(
                "${n} refers to a group the pattern does not have (it has {})",
                groups - 1
            )),
        }
    };
    if rest.starts_with('$') {
        return Ok((None, 1));
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        return Ok((Some(by_number(&rest[..digits])?), digits));
    }
    if let Some(body) = rest.strip_prefix('{') {
        let Some(end) = body.find('}') else {
            return Err("unclosed ${ in the replacement".to_string());
        };
        let name = &body[..end];
        let g = if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
            by_number(name)?
        } else {
            re.capture_names()
                .position(|n| n == Some(name))
                .ok_or_else(|| format!("${{{name}}} names no group of the pattern"))?
        };
        return Ok((Some(g), end + 2));
    }
    Err("'$' starts a group reference ($1, ${1}, ${name}); write $$ for a literal '$' (and {scheme}, {host}, {prefix}, {sign} for the request's values)".to_string())
}

// ------------------------------------------------------------------ stages

#[derive(Debug)]
enum Stage {
    /// One or more literal rules searched together, leftmost-first.
    Literal {
        ac: AhoCorasick,
        longest: usize,
        #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
        patterns: Vec<Vec<u8>>,
        replacements: Vec<Template>,
    },
    Regex {
        re: Regex,
        replacement: Template,
        captures: bool,
        /// `max_match` plus look-ahead: the room a match must have had.
        room: usize,
        /// The span each search sees ahead of the current position.
        span: usize,
    },
}

impl Stage {
    /// Most bytes the stage holds back between chunks, look-behind included.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
    fn max_pending(&self) -> usize {
        match self {
            Stage::Literal { longest, .. } => longest - 1,
            Stage::Regex { span, .. } => span + LOOK,
        }
    }
}

/// Build-time choices that only tests and the fuzz targets change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Search consecutive literal rules in one pass where that is exact.
    pub fuse: bool,
    /// Least advance of a regex stage per search (default 4 KiB); small
    /// values make the window logic visible on small inputs.
    pub min_step: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fuse: true,
            min_step: MIN_STEP,
        }
    }
}

/// A compiled, immutable list of rules, shared by every response of a route.
#[derive(Debug)]
pub struct RuleSet {
    stages: Vec<Stage>,
    /// True when every regex rule's pattern fits in its window, so that the
    /// result is exactly that of unbounded whole-body replacement.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
    exact: bool,
    /// The rules it was built from: what makes two sets the same.
    specs: Vec<RuleSpec>,
}

/// Two sets are equal when built from the same rules (the configuration
/// model is compared this way in tests).
impl PartialEq for RuleSet {
    fn eq(&self, other: &Self) -> bool {
        self.specs == other.specs
    }
}

struct Literal {
    pattern: Vec<u8>,
    replacement: Template,
}

impl RuleSet {
    pub fn new(rules: &[RuleSpec]) -> Result<RuleSet, RuleError> {
        Self::with_options(rules, Options::default())
    }

    pub(crate) fn with_options(rules: &[RuleSpec], opts: Options) -> Result<RuleSet, RuleError> {
        let min_step = opts.min_step.max(1);
        let mut stages = Vec::new();
        let mut group: Vec<Literal> = Vec::new();
        let mut exact = true;
        for (index, spec) in rules.iter().enumerate() {
            if spec.pattern.is_empty() {
                return Err(RuleError::new(index, "pattern", "", "must not be empty"));
            }
            if !spec.regex {
                if let Some(m) = spec.max_match {
                    return Err(RuleError::new(
                        index,
                        "max_match",
                        m.to_string(),
                        "only applies to regex rules (a literal's window is its length)",
                    ));
                }
                let replacement = parse_template(&spec.replacement, None)
                    .map_err(|r| RuleError::new(index, "replacement", &spec.replacement, r))?;
                let lit = Literal {
                    pattern: spec.pattern.as_bytes().to_vec(),
                    replacement,
                };
                if !(opts.fuse && fusable(&group, &lit)) {
                    flush_literals(&mut group, &mut stages, index)?;
                }
                group.push(lit);
                continue;
            }
            flush_literals(&mut group, &mut stages, index)?;
            let (stage, stage_exact) = regex_stage(index, spec, min_step)?;
            exact &= stage_exact;
            stages.push(stage);
        }
        flush_literals(&mut group, &mut stages, rules.len())?;
        Ok(RuleSet {
            stages,
            exact,
            specs: rules.to_vec(),
        })
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Number of passes over the body after fusing literal rules.
    #[cfg(test)]
    pub fn passes(&self) -> usize {
        self.stages.len()
    }

    /// The most bytes a [`Streamer`] of this set holds between chunks.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
    pub fn max_pending(&self) -> usize {
        self.stages.iter().map(Stage::max_pending).sum()
    }

    /// A streamer for one response.
    pub fn streamer(self: &Arc<Self>, vars: Vars) -> Streamer {
        let states = self
            .stages
            .iter()
            .map(|s| StageState {
                buf: Vec::new(),
                cursor: 0,
                caps: match s {
                    Stage::Regex {
                        re, captures: true, ..
                    } => Some(re.capture_locations()),
                    _ => None,
                },
            })
            .collect();
        Streamer {
            rules: Arc::clone(self),
            vars,
            states,
            scratch: [Vec::new(), Vec::new()],
            finished: false,
        }
    }

    /// The whole body at once; the reference the streaming must equal.
    #[cfg(any(test, fuzzing))]
    pub fn apply(self: &Arc<Self>, vars: &Vars, body: &[u8]) -> Vec<u8> {
        let mut s = self.streamer(vars.clone());
        let mut out = Vec::with_capacity(body.len());
        s.push(body, &mut out);
        s.finish(&mut out);
        out
    }

    /// Unbounded whole-body replacement, rule by rule, with no windows and
    /// no fusion: `None` when a regex rule is longer than its window, where
    /// the windowed result may legitimately differ.
    #[cfg(any(test, fuzzing))]
    pub fn reference(&self, vars: &Vars, body: &[u8]) -> Option<Vec<u8>> {
        if !self.exact {
            return None;
        }
        let mut cur = body.to_vec();
        for stage in &self.stages {
            match stage {
                Stage::Literal {
                    patterns,
                    replacements,
                    ..
                } => {
                    for (pattern, replacement) in patterns.iter().zip(replacements) {
                        let mut out = Vec::with_capacity(cur.len());
                        let mut at = 0;
                        while at < cur.len() {
                            if cur[at..].starts_with(pattern) {
                                replacement.expand(vars, &cur, None, &mut out);
                                at += pattern.len();
                            } else {
                                out.push(cur[at]);
                                at += 1;
                            }
                        }
                        cur = out;
                    }
                }
                Stage::Regex {
                    re, replacement, ..
                } => {
                    let mut out = Vec::with_capacity(cur.len());
                    let mut locs = re.capture_locations();
                    let mut last = 0;
                    while let Some(m) = re.captures_read_at(&mut locs, &cur, last) {
                        out.extend_from_slice(&cur[last..m.start()]);
                        replacement.expand(vars, &cur, Some(&locs), &mut out);
                        last = m.end();
                    }
                    out.extend_from_slice(&cur[last..]);
                    cur = out;
                }
            }
        }
        Some(cur)
    }
}

fn regex_stage(index: usize, spec: &RuleSpec, min_step: usize) -> Result<(Stage, bool), RuleError> {
    let perr = |reason: String| RuleError::new(index, "pattern", &spec.pattern, reason);
    let re = RegexBuilder::new(&spec.pattern)
        .unicode(false)
        .build()
        .map_err(|e| perr(e.to_string()))?;
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(&spec.pattern)
        .map_err(|e| perr(e.to_string()))?;
    let props = hir.properties();
    let shortest = props.minimum_len().unwrap_or(0);
    if shortest == 0 {
        // Either it can match nothing at all or the empty string between
        // any two bytes; neither is a useful body rewrite.
        return Err(perr(
            "can match the empty string (or nothing at all); a rewrite pattern must consume at least one byte"
                .to_string(),
        ));
    }
    let configured = match spec.max_match {
        None => None,
        Some(m) if (1..=MAX_MAX_MATCH).contains(&m) && m >= shortest => Some(m),
        Some(m) => {
            return Err(RuleError::new(
                index,
                "max_match",
                m.to_string(),
                format!(
                    "must be between the shortest match ({shortest}) and {MAX_MAX_MATCH} bytes"
                ),
            ))
        }
    };
    let longest = props.maximum_len();
    let window = match (longest, configured) {
        (Some(l), Some(m)) => l.min(m),
        (Some(l), None) => l.min(DEFAULT_MAX_MATCH),
        (None, m) => m.unwrap_or(DEFAULT_MAX_MATCH),
    };
    let exact = longest.is_some_and(|l| l <= window);
    let replacement = parse_template(&spec.replacement, Some(&re))
        .map_err(|r| RuleError::new(index, "replacement", &spec.replacement, r))?;
    let room = window + LOOK;
    let captures = replacement.has_groups();
    Ok((
        Stage::Regex {
            re,
            replacement,
            captures,
            room,
            span: room + room.max(min_step),
        },
        exact,
    ))
}

/// Whether `lit` can join the literal rules in `group` in one leftmost-first
/// pass with the same result as applying them in order. That holds when no
/// occurrence of a pattern can overlap an occurrence of another (so the
/// pass picks, for each pattern, exactly the matches its own pass would),
/// and no earlier replacement can create or break a later pattern (so a
/// later rule sees the same occurrences as in the original text); a
/// placeholder's value is unknown, and an empty replacement joins its
/// neighbours, so either ends the group.
fn fusable(group: &[Literal], lit: &Literal) -> bool {
    if group.is_empty() {
        return true;
    }
    if lit.pattern.len() > FUSE_MAX_LEN {
        return false;
    }
    group.iter().all(|g| {
        let Some(rep) = g.replacement.constant() else {
            return false;
        };
        !rep.is_empty()
            && g.pattern.len() <= FUSE_MAX_LEN
            && rep.len() <= FUSE_MAX_LEN
            && !can_overlap(&g.pattern, &lit.pattern)
            && !can_overlap(&rep, &lit.pattern)
    })
}

/// Whether occurrences of `a` and `b` can share bytes in some text.
fn can_overlap(a: &[u8], b: &[u8]) -> bool {
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
    }
    fn suffix_is_prefix(a: &[u8], b: &[u8]) -> bool {
        (1..=a.len().min(b.len())).any(|k| a[a.len() - k..] == b[..k])
    }
    contains(a, b) || contains(b, a) || suffix_is_prefix(a, b) || suffix_is_prefix(b, a)
}

fn flush_literals(
    group: &mut Vec<Literal>,
    stages: &mut Vec<Stage>,
    next_index: usize,
) -> Result<(), RuleError> {
    if group.is_empty() {
        return Ok(());
    }
    let patterns: Vec<&[u8]> = group.iter().map(|l| l.pattern.as_slice()).collect();
    let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(1);
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(&patterns)
        .map_err(|e| {
            let first = next_index - group.len();
            RuleError::new(
                first,
                "pattern",
                "",
                format!("cannot build the literal search: {e}"),
            )
        })?;
    let (patterns, replacements) = group.drain(..).map(|l| (l.pattern, l.replacement)).unzip();
    stages.push(Stage::Literal {
        ac,
        longest,
        patterns,
        replacements,
    });
    Ok(())
}

// --------------------------------------------------------------- streaming

#[derive(Debug)]
struct StageState {
    /// Bytes not yet emitted from `cursor` on, after up to [`LOOK`] bytes
    /// already emitted (regex look-behind) and a consumed prefix that is
    /// dropped once it is at least half the buffer, so that dropping costs
    /// O(1) per byte.
    buf: Vec<u8>,
    cursor: usize,
    caps: Option<CaptureLocations>,
}

impl StageState {
    fn run(&mut self, stage: &Stage, vars: &Vars, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        self.buf.extend_from_slice(input);
        match stage {
            Stage::Literal {
                ac,
                longest,
                replacements,
                ..
            } => self.run_literal(ac, *longest, replacements, vars, eof, out),
            Stage::Regex {
                re,
                replacement,
                room,
                span,
                ..
            } => self.run_regex(re, replacement, *room, *span, vars, eof, out),
        }
        let keep = self.cursor.saturating_sub(LOOK);
        if eof {
            self.buf.clear();
            self.cursor = 0;
        } else if keep > 0 && keep >= self.buf.len() / 2 {
            self.buf.drain(..keep);
            self.cursor -= keep;
        }
    }

    fn run_literal(
        &mut self,
        ac: &AhoCorasick,
        longest: usize,
        replacements: &[Template],
        vars: &Vars,
        eof: bool,
        out: &mut Vec<u8>,
    ) {
        let buf = &self.buf;
        let end = buf.len();
        let mut at = self.cursor;
        while at < end {
            let found = ac.find(aho_corasick::Input::new(buf).span(at..end));
            match found {
                // Every match that could start at or before this one is
                // complete in the buffer, so leftmost-first is decided.
                Some(m) if eof || m.start() + longest <= end => {
                    out.extend_from_slice(&buf[at..m.start()]);
                    replacements[m.pattern().as_usize()].expand(vars, buf, None, out);
                    at = m.end();
                }
                _ if eof => {
                    out.extend_from_slice(&buf[at..]);
                    at = end;
                }
                other => {
                    let partial = end.saturating_sub(longest - 1).max(at);
                    let stop = other.map_or(partial, |m| m.start().min(partial));
                    out.extend_from_slice(&buf[at..stop]);
                    at = stop;
                    break;
                }
            }
        }
        self.cursor = at;
    }

    #[allow(clippy::too_many_arguments)]
    fn run_regex(
        &mut self,
        re: &Regex,
        replacement: &Template,
        room: usize,
        span: usize,
        vars: &Vars,
        eof: bool,
        out: &mut Vec<u8>,
    ) {
        let buf = &self.buf;
        let end = buf.len();
        let mut at = self.cursor;
        // Before the end of the body, search only full spans: the haystack of
        // every search then depends on the position alone, not on how much
        // happened to have arrived.
        while at < end && (eof || end - at >= span) {
            let last = end - at <= span;
            let hay_start = at.saturating_sub(LOOK);
            let hay_end = if last { end } else { at + span };
            let hay = &buf[hay_start..hay_end];
            let from = at - hay_start;
            let found = match &mut self.caps {
                Some(locs) => re
                    .captures_read_at(locs, hay, from)
                    .map(|m| (m.start(), m.end())),
                None => re.find_at(hay, from).map(|m| (m.start(), m.end())),
            };
            match found {
                Some((s, e)) if (eof && last) || s + room <= hay.len() => {
                    out.extend_from_slice(&hay[from..s]);
                    replacement.expand(vars, hay, self.caps.as_ref(), out);
                    at = hay_start + e;
                }
                _ if eof && last => {
                    out.extend_from_slice(&hay[from..]);
                    at = end;
                }
                _ => {
                    // No match with enough room starts before `span - room`.
                    let step = span - room + 1;
                    out.extend_from_slice(&buf[at..at + step]);
                    at += step;
                }
            }
        }
        self.cursor = at;
    }

    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
    fn pending(&self) -> usize {
        self.buf.len() - self.cursor
    }
}

/// Rewrites one response body as it streams.
#[derive(Debug)]
pub struct Streamer {
    rules: Arc<RuleSet>,
    vars: Vars,
    states: Vec<StageState>,
    /// Hand-off buffers between consecutive stages, reused for every chunk.
    scratch: [Vec<u8>; 2],
    finished: bool,
}

impl Streamer {
    /// Rewrites what it can of `chunk` into `out` (appending); the rest is
    /// held back until the next chunk or [`Streamer::finish`].
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.run(chunk, false, out);
    }

    /// The end of the body: emits everything held back. Later calls, and
    /// pushes after it, pass bytes through unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.run(&[], true, out);
        self.finished = true;
    }

    /// For `response_body_filter`: rewrites `body` in place; holds data back
    /// (`None`) when nothing can be emitted yet; flushes at the end.
    pub fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let input = body.take();
        let len = input.as_ref().map_or(0, |b| b.len());
        let mut out = Vec::with_capacity(len + len / 8 + 64);
        if let Some(b) = &input {
            self.push(b, &mut out);
        }
        if end_of_stream {
            self.finish(&mut out);
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }

    /// Bytes received but not yet emitted.
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))] // for the fuzz properties and tests
    pub fn pending(&self) -> usize {
        self.states.iter().map(StageState::pending).sum()
    }

    fn run(&mut self, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        let Streamer {
            rules,
            vars,
            states,
            scratch,
            finished,
        } = self;
        if *finished || states.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        let [mut a, mut b] = std::mem::take(scratch);
        let n = states.len();
        for (i, (state, stage)) in states.iter_mut().zip(&rules.stages).enumerate() {
            let src: &[u8] = if i == 0 { input } else { &a };
            if i + 1 == n {
                state.run(stage, vars, src, eof, out);
            } else {
                b.clear();
                state.run(stage, vars, src, eof, &mut b);
                std::mem::swap(&mut a, &mut b);
            }
        }
        *scratch = [a, b];
    }
}

// ------------------------------------------------------ content-type gate

/// What is rewritten when a route does not list its own types: text that
/// carries URLs. Binary types never are.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/xml",
    "text/xml",
    "text/plain",
];

/// The content types whose bodies a route rewrites, parsed once at load.
/// Entries are `type/subtype`, `type/*`, a structured-syntax suffix such as
/// `+json`, or `*` (everything, also a response without a type, like nginx's
/// `sub_filter_types *`). Parameters (`; charset=…`) and case are ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentTypes {
    /// As written: what the ETag suffix is derived from.
    written: Vec<String>,
    patterns: Vec<TypePattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TypePattern {
    Any,
    /// `text/*`: the bytes before `*`, lower case.
    Major(Vec<u8>),
    /// `+json`, lower case.
    Suffix(Vec<u8>),
    Exact(Vec<u8>),
}

impl ContentTypes {
    pub fn parse(types: &[String]) -> Self {
        let patterns = types
            .iter()
            .map(|t| {
                let t = t.trim().to_ascii_lowercase().into_bytes();
                if t == b"*" {
                    TypePattern::Any
                } else if let Some(major) = t.strip_suffix(b"*") {
                    TypePattern::Major(major.to_vec())
                } else if t.first() == Some(&b'+') {
                    TypePattern::Suffix(t)
                } else {
                    TypePattern::Exact(t)
                }
            })
            .collect();
        ContentTypes {
            written: types.to_vec(),
            patterns,
        }
    }

    /// The list as written, for `pylon -T`.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// Whether a response with this `Content-Type` is rewritten.
    pub fn matches(&self, content_type: Option<&[u8]>) -> bool {
        let Some(ct) = content_type else {
            return self.patterns.contains(&TypePattern::Any);
        };
        let media = ct
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        self.patterns.iter().any(|p| match p {
            TypePattern::Any => true,
            TypePattern::Major(major) => {
                media.len() > major.len() && media[..major.len()].eq_ignore_ascii_case(major)
            }
            TypePattern::Suffix(t) => {
                media.len() > t.len() && media[media.len() - t.len()..].eq_ignore_ascii_case(t)
            }
            TypePattern::Exact(t) => media.eq_ignore_ascii_case(t),
        })
    }
}

impl Default for ContentTypes {
    fn default() -> Self {
        let types: Vec<String> = DEFAULT_TYPES.iter().map(|s| s.to_string()).collect();
        ContentTypes::parse(&types)
    }
}

/// Prints as the list written, so the ETag suffix is that of the list.
impl std::fmt::Debug for ContentTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.written).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_types() -> Vec<String> {
        DEFAULT_TYPES.iter().map(|s| s.to_string()).collect()
    }

    fn rewritable(content_type: Option<&[u8]>, types: &[String]) -> bool {
        ContentTypes::parse(types).matches(content_type)
    }

    fn vars() -> Vars {
        Vars::new("https", "pylon.example.com:8443", "/grafana").unwrap()
    }

    fn set(rules: &[RuleSpec]) -> Arc<RuleSet> {
        Arc::new(RuleSet::new(rules).unwrap())
    }

    /// The body pushed in chunks of every size from 1 to 9 and whole; all
    /// must agree. Returns the whole-body result.
    fn run_all_chunkings(rules: &Arc<RuleSet>, v: &Vars, body: &[u8]) -> Vec<u8> {
        let whole = rules.apply(v, body);
        for size in 1..10 {
            let mut s = rules.streamer(v.clone());
            let mut out = Vec::new();
            for c in body.chunks(size) {
                s.push(c, &mut out);
                assert!(s.pending() <= rules.max_pending());
            }
            s.finish(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "chunk size {size}"
            );
        }
        whole
    }

    fn rewrite(rules: &[RuleSpec], body: &str) -> String {
        let r = set(rules);
        let out = run_all_chunkings(&r, &vars(), body.as_bytes());
        if let Some(reference) = r.reference(&vars(), body.as_bytes()) {
            assert_eq!(out, reference);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn grafana_rules_of_the_original() {
        let rules = [
            RuleSpec::literal(r#"<base href="/" />"#, r#"<base href="{prefix}/" />"#),
            RuleSpec::literal(r#""url":"/"#, r#""url":"./"#),
            RuleSpec::literal(r#"appSubUrl+"/""#, r#"appSubUrl+"{prefix}/""#),
        ];
        let body = r#"<head><base href="/" /></head><script>var nav=[{"url":"/d/home"},{"url":"/explore"}];x=appSubUrl+"/";</script>"#;
        assert_eq!(
            rewrite(&rules, body),
            r#"<head><base href="/grafana/" /></head><script>var nav=[{"url":"./d/home"},{"url":"./explore"}];x=appSubUrl+"/grafana/";</script>"#
        );
    }

    #[test]
    fn yarn_node_manager_links_of_the_original() {
        let rules = [
            RuleSpec::regex(
                r"href='http://([^/]*):8042'",
                "href='{scheme}://{host}/yarn/$1:8042/node'",
            ),
            RuleSpec::regex(
                r"href='http://([^/]*):8042/([^']*)'",
                "href='{scheme}://{host}/yarn/$1:8042/$2'",
            ),
            RuleSpec::regex(
                r#"href="http://([^/]*):8088/([^"]*)""#,
                r#"href="{scheme}://{host}/yarn/$1:8088/$2""#,
            ),
            RuleSpec::regex(
                r#"url=http://([^/]*):8188/([^"]*)">"#,
                r#"url={scheme}://{host}/yarn/$1:8188/$2">"#,
            ),
            RuleSpec::literal("8088/proxy/application", "8088/cluster/app/application"),
        ];
        let body = "<a href='http://nm-3:8042'>node</a> <a href='http://nm-3:8042/node/containerlogs/c_1/u'>logs</a>\n\
                    <a href=\"http://rm:8088/cluster/apps\">apps</a> <meta http-equiv=\"refresh\" content=\"0;url=http://jh:8188/applicationhistory\">\n\
                    http://rm:8088/proxy/application_1_2/";
        let v = Vars::new("http", "10.0.0.1", "/yarn").unwrap();
        let r = set(&rules);
        let out = String::from_utf8(run_all_chunkings(&r, &v, body.as_bytes())).unwrap();
        assert_eq!(
            out,
            "<a href='http://10.0.0.1/yarn/nm-3:8042/node'>node</a> <a href='http://10.0.0.1/yarn/nm-3:8042/node/containerlogs/c_1/u'>logs</a>\n\
             <a href=\"http://10.0.0.1/yarn/rm:8088/cluster/apps\">apps</a> <meta http-equiv=\"refresh\" content=\"0;url=http://10.0.0.1/yarn/jh:8188/applicationhistory\">\n\
             http://rm:8088/cluster/app/application_1_2/"
        );
    }

    #[test]
    fn portal_replaces_each_upstream_by_its_prefix_in_one_pass() {
        let rules = [
            RuleSpec::literal("http://10.0.3.9:9186", "/rest-server"),
            RuleSpec::literal("https://10.0.3.9:6443", "/kubernetes"),
            RuleSpec::literal("http://10.0.3.9:9091/prometheus", "/prometheus"),
            RuleSpec::literal("http://10.0.3.9:9090", "/kubernetes-dashboard/"),
            RuleSpec::literal("http://10.0.3.9:3000", "/grafana"),
            RuleSpec::literal("http://10.0.3.9:8088", "/yarn"),
        ];
        let r = set(&rules);
        assert_eq!(r.passes(), 1);
        let body = r#"window.ENV={restServerUri:"http://10.0.3.9:9186",k8s:"https://10.0.3.9:6443",prom:"http://10.0.3.9:9091/prometheus",grafana:"http://10.0.3.9:3000",dash:"http://10.0.3.9:9090"};"#;
        assert_eq!(
            rewrite(&rules, body),
            r#"window.ENV={restServerUri:"/rest-server",k8s:"/kubernetes",prom:"/prometheus",grafana:"/grafana",dash:"/kubernetes-dashboard/"};"#
        );
    }

    #[test]
    fn rules_apply_in_order_each_on_the_previous_output() {
        // The second rule sees the first one's output.
        let rules = [RuleSpec::literal("a", "bc"), RuleSpec::literal("cd", "X")];
        assert_eq!(set(&rules).passes(), 2);
        assert_eq!(rewrite(&rules, "ad acd"), "bX bcX");
        // Overlapping patterns: one pass would pick "abc" first; in order,
        // "b" goes first and "abc" no longer exists.
        let rules = [RuleSpec::literal("b", "B"), RuleSpec::literal("abc", "X")];
        assert_eq!(set(&rules).passes(), 2);
        assert_eq!(rewrite(&rules, "abc"), "aBc");
        // A placeholder's value is unknown at build time: no fusion after it.
        let rules = [
            RuleSpec::literal("a", "{host}"),
            RuleSpec::literal("z", "Z"),
        ];
        assert_eq!(set(&rules).passes(), 2);
        let rules = [
            RuleSpec::literal("z", "Z"),
            RuleSpec::literal("a", "{host}"),
        ];
        assert_eq!(set(&rules).passes(), 1);
        // An empty replacement joins its neighbours.
        let rules = [RuleSpec::literal("-", ""), RuleSpec::literal("ab", "X")];
        assert_eq!(set(&rules).passes(), 2);
        assert_eq!(rewrite(&rules, "a-b ab"), "X X");
    }

    #[test]
    fn fused_and_unfused_agree() {
        let rules = [
            RuleSpec::literal("abc", "1"),
            RuleSpec::literal("xyz", "22"),
            RuleSpec::literal("zz", "3"),
            RuleSpec::literal("q", ""),
            RuleSpec::literal("cq", "4"),
        ];
        let fused = Arc::new(RuleSet::new(&rules).unwrap());
        let unfused = Arc::new(
            RuleSet::with_options(
                &rules,
                Options {
                    fuse: false,
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        assert!(fused.passes() < unfused.passes());
        let body = b"abcxyzzq abcq xyzz cqq zzz abxyzc";
        assert_eq!(fused.apply(&vars(), body), unfused.apply(&vars(), body));
        assert_eq!(
            fused.apply(&vars(), body),
            fused.reference(&vars(), body).unwrap()
        );
    }

    #[test]
    fn captures_and_escapes() {
        let rules = [RuleSpec::regex(
            r"(?P<k>\w+)=(\d+)",
            "${k}:$2$$ {prefix} {other} ${1}x $0",
        )];
        assert_eq!(
            rewrite(&rules, "a=1, bb=22"),
            "a:1$ /grafana {other} ax a=1, bb:22$ /grafana {other} bbx bb=22"
        );
        // Literal rules take `$` literally.
        assert_eq!(rewrite(&[RuleSpec::literal("x", "$1")], "x"), "$1");
    }

    #[test]
    fn byte_oriented_like_pcre() {
        // `[^/]` and `.` match any byte, valid UTF-8 or not.
        let rules = [RuleSpec::regex("<([^/>]*)>", "[$1]")];
        let r = set(&rules);
        let body = b"<caf\xe9> <\xff\xfe> </x>";
        assert_eq!(
            r.apply(&vars(), body),
            b"[caf\xe9] [\xff\xfe] </x>".to_vec()
        );
    }

    #[test]
    fn matches_straddling_chunks_are_found() {
        let rules = [RuleSpec::literal("http://10.0.3.9:3000", "/grafana")];
        let r = set(&rules);
        let body = b"x http://10.0.3.9:3000/a http://10.0.3.9:300 http://10.0.3.9:3000";
        let mut out = Vec::new();
        let mut s = r.streamer(vars());
        for part in [&body[..10], &body[10..30], &body[30..]] {
            s.push(part, &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, b"x /grafana/a http://10.0.3.9:300 /grafana".to_vec());
    }

    #[test]
    fn regex_window_bounds_memory_and_is_chunking_independent() {
        // An unbounded pattern with a small window: matches longer than the
        // window may be missed, but the result never depends on chunking.
        let rules = [RuleSpec {
            max_match: Some(4),
            ..RuleSpec::regex("a[^z]*z", "<$0>")
        }];
        let r = Arc::new(
            RuleSet::with_options(
                &rules,
                Options {
                    fuse: true,
                    min_step: 3,
                },
            )
            .unwrap(),
        );
        assert!(r.reference(&vars(), b"").is_none());
        let body = b"az abz abcdefghijklmnopqrstuvwxyz aaaaaaaaaaaaaaaaaaaaz abz";
        let out = run_all_chunkings(&r, &vars(), body);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("<az> <abz> "), "{text}");
        assert!(text.ends_with(" <abz>"), "{text}");
    }

    #[test]
    fn assertions_see_the_real_neighbours() {
        let rules = [
            RuleSpec::regex(r"\bsrc\b", "SRC"),
            RuleSpec::regex(r"(?m)^#", "//"),
            RuleSpec::regex(r"^<", "{"),
            RuleSpec::regex(r"x$", "X"),
        ];
        let r = Arc::new(
            RuleSet::with_options(
                &rules,
                Options {
                    fuse: true,
                    min_step: 1,
                },
            )
            .unwrap(),
        );
        let body = b"<src srcs src-#\n# asrc src\n#x x";
        let out = run_all_chunkings(&r, &vars(), body);
        assert_eq!(out, r.reference(&vars(), body).unwrap());
        assert_eq!(out, b"{SRC srcs SRC-#\n// asrc SRC\n//x X".to_vec());
    }

    #[test]
    fn refused_rules_name_index_and_field() {
        let cases: &[(RuleSpec, &str)] = &[
            (RuleSpec::literal("", "x"), "pattern"),
            (RuleSpec::regex("(", "x"), "pattern"),
            (RuleSpec::regex("a*", "x"), "pattern"),
            (RuleSpec::regex(r"\b", "x"), "pattern"),
            (RuleSpec::regex("[a&&b]", "x"), "pattern"),
            (RuleSpec::regex("(a)", "$2"), "replacement"),
            (RuleSpec::regex("(a)", "${nope}"), "replacement"),
            (RuleSpec::regex("(a)", "$scheme"), "replacement"),
            (RuleSpec::regex("(a)", "${1"), "replacement"),
            (
                RuleSpec {
                    max_match: Some(1),
                    ..RuleSpec::regex("abc.*", "x")
                },
                "max_match",
            ),
            (
                RuleSpec {
                    max_match: Some(10),
                    ..RuleSpec::literal("a", "b")
                },
                "max_match",
            ),
        ];
        for (spec, field) in cases {
            let rules = [RuleSpec::literal("ok", "fine"), spec.clone()];
            let e = RuleSet::new(&rules).unwrap_err();
            assert_eq!((e.index, e.field), (1, *field), "{e}");
            assert_eq!(
                e.key("pylon.routes.grafana.rewrite"),
                format!("pylon.routes.grafana.rewrite[1].{field}")
            );
        }
    }

    #[test]
    fn vars_refuse_what_could_inject_markup() {
        assert!(Vars::new("https", "a.example:443", "/").is_some());
        assert!(Vars::new("HTTP", "[::1]:8080", "/x/").is_some());
        assert!(Vars::new("ftp", "a", "/").is_none());
        assert!(Vars::new("http", "a\"><script>", "/").is_none());
        assert!(Vars::new("http", "", "/").is_none());
        assert!(Vars::new("http", "a", "x").is_none());
        assert!(Vars::new("http", "a", "/<x>").is_none());
        let v = Vars::new("http", "a", "/").unwrap();
        let r = set(&[RuleSpec::literal("P", "{prefix}/")]);
        assert_eq!(r.apply(&v, b"P"), b"/".to_vec());
    }

    #[test]
    fn sign_signs_the_link_the_replacement_wrote() {
        use crate::link_signing::{Keys, Signer};
        let signer = Arc::new(Signer {
            keys: Keys::new(b"0123456789abcdef0123456789abcdef", None, 0),
            prefixes: vec!["/a".into(), "/yarn".into()],
            redirect_ttl: 60,
            link_ttl: 3600,
            require: true,
        });
        let stamp = Stamp {
            signer: signer.clone(),
            expires: 1_900_000_000,
        };
        let v = Vars::new("http", "pub:8080", "/yarn")
            .unwrap()
            .signing(stamp);
        let rules = set(&[
            RuleSpec::regex(
                "href='http://([^/']*):8042/([^']*)'",
                "href='{scheme}://{host}/yarn/$1:8042{sign}/$2'",
            ),
            RuleSpec::literal("<a>", "<a href=\"/a/x:1{sign}\">{sign}"),
        ]);
        let body = b"<p><a href='http://node-1:8042/logs/x'>l</a> <a href='http://bad host:8042/'>b</a> <a>";
        let tok = |prefix: &str, dest: &str| {
            String::from_utf8(
                signer
                    .keys
                    .token(prefix, dest, 1_900_000_000)
                    .unwrap()
                    .to_vec(),
            )
            .unwrap()
        };
        let want = format!(
            "<p><a href='http://pub:8080/yarn/node-1:8042~{}/logs/x'>l</a> <a href='http://pub:8080/yarn/bad host:8042/'>b</a> <a href=\"/a/x:1~{}\">",
            tok("/yarn", "node-1:8042"),
            tok("/a", "x:1"),
        );
        assert_eq!(
            String::from_utf8(run_all_chunkings(&rules, &v, body)).unwrap(),
            want
        );
        // Signing off: {sign} writes nothing.
        let off = Vars::new("http", "pub:8080", "/yarn").unwrap();
        assert_eq!(rules.apply(&off, b"<a>"), b"<a href=\"/a/x:1\">".to_vec());
    }

    #[test]
    fn pingora_filter_holds_back_and_flushes() {
        let r = set(&[RuleSpec::literal("abcdef", "X")]);
        let mut s = r.streamer(vars());
        let mut body = Some(Bytes::from_static(b"abc"));
        s.filter(&mut body, false);
        assert_eq!(body, None);
        let mut body = Some(Bytes::from_static(b"def abc"));
        s.filter(&mut body, false);
        assert_eq!(
            body.as_deref(),
            Some(&b"X"[..]),
            "\" abc\" could still start a match"
        );
        let mut body = None;
        s.filter(&mut body, true);
        assert_eq!(body.as_deref(), Some(&b" abc"[..]));
        let mut body = Some(Bytes::from_static(b"abcdef"));
        s.filter(&mut body, true);
        assert_eq!(
            body.as_deref(),
            Some(&b"abcdef"[..]),
            "after the end: unchanged"
        );
        let empty = set(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.apply(&vars(), b"abc"), b"abc".to_vec());
    }

    #[test]
    fn content_type_gate() {
        let d = default_types();
        let yes = |ct: &str, t: &[String]| rewritable(Some(ct.as_bytes()), t);
        assert!(yes("text/html; charset=utf-8", &d));
        assert!(yes("Application/JSON", &d));
        assert!(yes("application/javascript", &d));
        assert!(yes(" text/css ", &d));
        assert!(!yes("image/png", &d));
        assert!(!yes("application/octet-stream", &d));
        assert!(!yes("text/html-x", &d));
        assert!(!rewritable(None, &d));
        let custom: Vec<String> = ["text/*", "+json"].iter().map(|s| s.to_string()).collect();
        assert!(yes("text/markdown", &custom));
        assert!(yes("application/vnd.api+json", &custom));
        assert!(!yes("text", &custom));
        assert!(!yes("application/json", &custom));
        let all = vec!["*".to_string()];
        assert!(yes("image/png", &all));
        assert!(rewritable(None, &all));
    }

    #[test]
    fn specs_deserialize_from_the_configuration() {
        let rules: Vec<RuleSpec> = serde_yaml::from_str(
            "- pattern: '<base href=\"/\" />'\n  replacement: '<base href=\"{prefix}/\" />'\n- pattern: 'x(\\d+)'\n  replacement: 'y$1'\n  regex: true\n  max_match: 64\n",
        )
        .unwrap();
        assert_eq!(rules[1].max_match, Some(64));
        assert!(RuleSet::new(&rules).is_ok());
        assert!(serde_yaml::from_str::<Vec<RuleSpec>>(
            "- pattern: a\n  replacement: b\n  once: true\n"
        )
        .is_err());
    }

    /// A synthetic HTML page with the original's targets sprinkled in.
    fn synthetic_html(size: usize) -> Vec<u8> {
        let page = concat!(
            "<!DOCTYPE html><html><head><base href=\"/\" /><title>Cluster</title>",
            "<link rel=\"stylesheet\" href=\"/public/build/grafana.css\"></head><body>\n",
            "<table class=\"jobs\"><tr><td><a href='http://10.0.4.17:8042/node/containerlogs/container_1_0001_01_000002/root'>logs</a></td>",
            "<td><a href=\"http://10.0.3.9:8088/cluster/app/application_1_0001\">app</a></td>",
            "<td>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.</td></tr></table>\n",
            "<script>window.ENV={rest:\"http://10.0.3.9:9186/api/v1\",prom:\"http://10.0.3.9:9091/prometheus\",",
            "grafana:\"http://10.0.3.9:3000\"};var nav=[{\"url\":\"/d/home\"}];var u=appSubUrl+\"/\";</script>\n",
            "<p>Quisque velit nisi, pretium ut lacinia in, elementum id enim. Vivamus suscipit tortor eget felis porttitor volutpat.</p>\n",
            "</body></html>\n"
        );
        page.bytes().cycle().take(size).collect()
    }

    fn throughput(name: &str, rules: &[RuleSpec], body: &[u8]) -> f64 {
        let r = set(rules);
        let v = vars();
        let mut s = r.streamer(v);
        let mut out = Vec::with_capacity(2048);
        let mut total_out = 0usize;
        let start = std::time::Instant::now();
        for chunk in body.chunks(1024) {
            out.clear();
            s.push(chunk, &mut out);
            total_out += out.len();
        }
        out.clear();
        s.finish(&mut out);
        total_out += out.len();
        let secs = start.elapsed().as_secs_f64();
        let mbps = body.len() as f64 / 1e6 / secs;
        println!(
            "rewrite throughput [{name}]: {:.1} MB in, {:.1} MB out, {} pass(es), 1 KiB chunks: {mbps:.0} MB/s",
            body.len() as f64 / 1e6,
            total_out as f64 / 1e6,
            r.passes()
        );
        mbps
    }

    #[test]
    fn throughput_on_a_large_html_body() {
        // 50 MB in release builds; debug builds only check the plumbing.
        let size = if cfg!(debug_assertions) {
            2 << 20
        } else {
            50_000_000
        };
        let body = synthetic_html(size);
        let portal: Vec<RuleSpec> = [
            ("http://10.0.3.9:9186", "/rest-server"),
            ("https://10.0.3.9:6443", "/kubernetes"),
            ("http://10.0.3.9:9091/prometheus", "/prometheus"),
            ("http://10.0.3.9:9090", "/kubernetes-dashboard/"),
            ("http://10.0.3.9:3000", "/grafana"),
            ("http://10.0.3.9:8088", "/yarn"),
            ("http://10.0.3.9:5070", "/webhdfs"),
        ]
        .iter()
        .map(|(p, r)| RuleSpec::literal(*p, *r))
        .collect();
        let grafana = [
            RuleSpec::literal(r#"<base href="/" />"#, r#"<base href="{prefix}/" />"#),
            RuleSpec::literal(r#""url":"/"#, r#""url":"./"#),
            RuleSpec::literal(r#"appSubUrl+"/""#, r#"appSubUrl+"{prefix}/""#),
        ];
        let yarn = [
            RuleSpec::regex(
                r"href='http://([^/]*):8042/([^']*)'",
                "href='{scheme}://{host}/yarn/$1:8042/$2'",
            ),
            RuleSpec::regex(
                r#"href="http://([^/]*):8088/([^"]*)""#,
                r#"href="{scheme}://{host}/yarn/$1:8088/$2""#,
            ),
        ];
        let mut all = portal.clone();
        all.extend(grafana.iter().cloned());
        all.extend(yarn.iter().cloned());
        for (name, rules) in [
            ("portal, 7 literals", &portal[..]),
            ("grafana, 3 literals", &grafana[..]),
            ("yarn, 2 regexes", &yarn[..]),
            ("all 12 rules", &all[..]),
        ] {
            assert!(throughput(name, rules, &body) > 0.0);
        }
    }
}
