//! The file's text → Pingora's [`ServerConf`] and `pylon:` as written, with
//! every YAML syntax error, wrong type and unknown key turned into a
//! [`ConfigError`] that names the position, the full key path, the value
//! and the nearest known key.

use pingora::server::configuration::ServerConf;
use serde_path_to_error::{Path, Segment};

use super::schema::RawFile;
use super::{ConfigError, Position};

/// Both halves of the file, each as written.
pub(super) fn read(text: &str) -> Result<(ServerConf, RawFile), ConfigError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let mut err = ConfigError::new("", "", format!("not valid YAML: {}", bare(&e)));
        err.at = Position::of(&e);
        err
    })?;
    if !matches!(doc, serde_yaml::Value::Mapping(_) | serde_yaml::Value::Null) {
        let mut err = ConfigError::new("", "", "the top level must be a mapping of settings");
        err.at = Some(Position { line: 1, column: 1 });
        return Err(err);
    }
    // Pylon's half first: it also refuses unknown top-level keys.
    let raw: RawFile = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| typed_error(&doc, e))?;
    let mut server: ServerConf =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
            .map_err(|e| typed_error(&doc, e))?;
    // Pylon's default is nginx's model: a connection stays on the worker
    // thread that accepted it. Tokio's work-stealing scheduler costs about
    // 1,400 instructions more per keep-alive request (bench/count.sh) and
    // buys nothing for short proxied requests. A file that names the key
    // keeps what it says.
    if lookup(&doc, &["work_stealing"]).is_none() {
        server.work_stealing = false;
    }
    let server = server.validate().map_err(|e| {
        let why = e
            .context
            .as_ref()
            .map_or_else(|| e.to_string(), |c| c.as_str().to_string());
        // Pingora's checks read "<key> must be …".
        let key = why.split(' ').next().unwrap_or_default().to_string();
        let value = lookup(&doc, &[key.as_str()]).unwrap_or_default();
        ConfigError::new(key, value, why)
    })?;
    Ok((server, raw))
}

/// The top-level keys Pingora reads: exactly the fields of its
/// `ServerConf` as this build has them.
pub(super) fn server_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let defaults = serde_yaml::to_value(ServerConf::default()).unwrap_or_default();
        let mut keys: Vec<&'static str> = defaults
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| k.as_str())
            // Built once per process: a few hundred bytes kept for its life.
            .map(|k| &*Box::leak(k.to_string().into_boxed_str()))
            .collect();
        keys.push("pylon");
        keys
    })
}

/// A serde error with its path → the error an operator reads.
fn typed_error(
    doc: &serde_yaml::Value,
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> ConfigError {
    let at = Position::of(e.inner());
    let path = e.path().clone();
    let message = bare(e.inner());
    let message = strip_path(&message, &path);
    let mut key = path.to_string();
    let (value, reason) = if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, known) = rest.split_once('`').unwrap_or((rest, ""));
        // The path ends at the unknown key, or (refused while the key was
        // read) at its mapping.
        if key != name && !key.ends_with(&format!(".{name}")) {
            key = join(&key, name);
        }
        (String::new(), unknown_key(name, &known_fields(known)))
    } else if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|f| f.strip_suffix('`'))
    {
        key = join(&key, field);
        (String::new(), "required".to_string())
    } else {
        let value = lookup_path(doc, &path).unwrap_or_default();
        (value, reword(&message))
    };
    let mut err = ConfigError::new(key, value, reason);
    err.at = at;
    err
}

fn join(parent: &str, field: &str) -> String {
    match parent {
        "" | "." => field.to_string(),
        p => format!("{p}.{field}"),
    }
}

/// serde's `, expected one of `a`, `b`` / `, expected `a`` / `, there are
/// no fields` → the names.
fn known_fields(tail: &str) -> Vec<&str> {
    tail.split('`').skip(1).step_by(2).collect()
}

/// "unknown key; did you mean `threads`?" or the keys allowed there.
pub(super) fn unknown_key(name: &str, known: &[&str]) -> String {
    match suggest(name, known) {
        Some(near) => format!("unknown key; did you mean `{near}`?"),
        None if known.is_empty() => "unknown key; nothing may be set here".to_string(),
        None => format!("unknown key; expected one of: {}", known.join(", ")),
    }
}

/// The known key nearest to `name`, if it is near enough to be the
/// intended one: a typo (one or two edits, a swap), a case or `-`/`_`
/// difference.
pub(super) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let canon = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let name_c = canon(name);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&name_c, &canon(k)), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// serde's wording → an operator's.
fn reword(message: &str) -> String {
    for (prefix, lead) in [("invalid type: ", "wrong type: "), ("invalid value: ", "")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!("{lead}expected {}, found {found}", plain_type(expected));
            }
        }
    }
    message.to_string()
}

/// Rust's type names, as serde states them, in words.
fn plain_type(expected: &str) -> &str {
    match expected {
        "usize" | "u64" | "u32" => "a whole number",
        "u16" => "a whole number up to 65535",
        "u8" => "a whole number up to 255",
        e if e.starts_with("struct ") => "a mapping of settings",
        e if e.starts_with("a map") => "a mapping",
        e => e,
    }
}

/// serde_yaml's message without the position it appends (" at line 3
/// column 7"), which Pylon prints in front as `FILE:3:7`.
fn bare(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    let mut text = match e.location() {
        Some(l) => text.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        ),
        None => text,
    };
    // A syntax error may name a second place, where the construct it is
    // in began: in the same `LINE:COLUMN` form.
    while let Some(start) = text.find(" at line ") {
        let rest = &text[start + " at line ".len()..];
        let line_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some(after) = rest[line_end..].strip_prefix(" column ") else {
            break;
        };
        let col_end = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let place = format!(" (begun at {}:{})", &rest[..line_end], &after[..col_end]);
        let end = text.len() - after.len() + col_end;
        text.replace_range(start..end, &place);
    }
    text
}

/// serde_yaml prefixes its own path ("pylon.routes.g: …"; for an unknown
/// key, the mapping's): Pylon prints the full path itself.
fn strip_path(message: &str, path: &Path) -> String {
    let full = path.to_string();
    let parent = full.rfind(['.', '[']).map_or("", |cut| &full[..cut]);
    for p in [full.as_str(), parent] {
        if !p.is_empty() {
            if let Some(rest) = message.strip_prefix(&format!("{p}: ")) {
                return rest.to_string();
            }
        }
    }
    message.to_string()
}

fn lookup_path(doc: &serde_yaml::Value, path: &Path) -> Option<String> {
    let mut node = doc;
    for seg in path.iter() {
        node = match seg {
            Segment::Map { key } => node.as_mapping()?.get(key.as_str())?,
            Segment::Seq { index } => node.as_sequence()?.get(*index)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    Some(render(node))
}

fn lookup(doc: &serde_yaml::Value, keys: &[&str]) -> Option<String> {
    let mut node = doc;
    for k in keys {
        node = node.as_mapping()?.get(*k)?;
    }
    Some(render(node))
}

/// A node as a short one-line text: scalars as written, collections in
/// flow style, cut at 80 characters.
pub(super) fn render(node: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    let mut out = match node {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Tagged(t) => format!("{} {}", t.tag, render(&t.value)),
    };
    if out.chars().count() > 80 {
        out = out.chars().take(77).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        read(text).expect_err("refused")
    }

    fn at(e: &ConfigError) -> (usize, usize) {
        e.at.map(|p| (p.line, p.column)).expect("a position")
    }

    #[test]
    fn work_stealing_is_off_unless_the_file_says_otherwise() {
        let stealing = |text: &str| read(text).expect("accepted").0.work_stealing;
        assert!(!stealing("threads: 2\n"));
        assert!(!stealing("work_stealing: false\n"));
        assert!(stealing("work_stealing: true\n"));
    }

    #[test]
    fn typos_get_the_nearest_key() {
        let keys = ["threads", "pid_file", "grace_period_seconds", "pylon"];
        assert_eq!(suggest("threds", &keys), Some("threads"));
        assert_eq!(suggest("Threads", &keys), Some("threads"));
        assert_eq!(
            suggest("grace_period_secods", &keys),
            Some("grace_period_seconds")
        );
        assert_eq!(suggest("pid-file", &keys), Some("pid_file"));
        assert_eq!(suggest("colour", &keys), None);
        assert_eq!(
            suggest("x", &["y"]),
            None,
            "one letter is not a typo of another"
        );
    }

    #[test]
    fn unknown_top_level_keys_are_refused_where_written() {
        let e = err("version: 1\nthreds: 2\n");
        assert_eq!(e.key, "threds");
        assert_eq!(e.reason, "unknown key; did you mean `threads`?");
        assert_eq!(at(&e), (2, 1));
        let e = err("threds: 2\n");
        assert_eq!((e.key.as_str(), at(&e)), ("threds", (1, 1)));
        // Every Pingora key is still accepted by its exact name.
        for key in server_keys() {
            let text = format!("{key}: null\n");
            if let Err(e) = read(&text) {
                assert!(!e.reason.contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn wrong_types_name_path_value_and_position() {
        let e = err("pylon:\n  routes:\n    grafana:\n      upstream: 3000\n");
        assert_eq!(e.key, "pylon.routes.grafana.upstream");
        assert_eq!(e.value, "3000");
        assert_eq!(at(&e), (4, 17));
        assert!(e.reason.starts_with("wrong type: expected"), "{}", e.reason);
        assert!(!e.reason.contains("untagged"), "{}", e.reason);

        let e = err("threads: lots\n");
        assert_eq!((e.key.as_str(), e.value.as_str()), ("threads", "lots"));
        assert_eq!(at(&e), (1, 10));

        let e = err("pylon:\n  routes:\n    grafana:\n      rewrit: []\n");
        assert_eq!(e.key, "pylon.routes.grafana.rewrit");
        assert_eq!(e.reason, "unknown key; did you mean `rewrite`?");
        assert_eq!(at(&e), (4, 7));

        let e = err("pylon:\n  routes:\n    g:\n      rewrite: [{replacement: x}]\n");
        assert_eq!(e.key, "pylon.routes.g.rewrite[0].pattern");
        assert_eq!(e.reason, "required");
    }

    #[test]
    fn syntax_errors_have_a_position_and_no_path() {
        let e = err("pylon:\n  listen: [\"127.0.0.1:80\"\n  routes: {\n");
        assert!(e.reason.starts_with("not valid YAML: "), "{}", e.reason);
        assert!(!e.reason.contains(" at line "), "{}", e.reason);
        assert!(
            e.reason.ends_with("flow sequence (begun at 2:11)"),
            "{}",
            e.reason
        );
        assert_eq!(e.key, "");
        assert!(e.at.is_some());
        let e = err("- a\n- b\n");
        assert_eq!(e.reason, "the top level must be a mapping of settings");
    }

    #[test]
    fn pingora_checks_name_their_key() {
        let e = err("max_blocking_threads: 0\n");
        assert_eq!(e.key, "max_blocking_threads");
        assert_eq!(e.value, "0");
    }
}
