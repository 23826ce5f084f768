//! Where a key path (`pylon.routes.grafana.upstream[1]`) is written in the
//! file, so every refused value names its line and column.
//!
//! serde_yaml keeps the position of every event of its parser and attaches
//! it to an error raised while that event is being deserialized. The
//! locator walks the document with serde_yaml's own deserializer down the
//! key path and raises a marker error at the node it names: the position
//! serde_yaml reports is then exactly that node's, from the same parser
//! that read the configuration (no second YAML parser that could disagree
//! on a position). It runs only when a configuration is refused, once.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// 1-based, as editors and compilers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Position {
    pub(super) fn of(e: &serde_yaml::Error) -> Option<Position> {
        e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        })
    }
}

/// Where the value at `key` is written; for a key that is not in the file
/// (a required one that is missing, a default that clashes), where its
/// nearest written ancestor is. `None` when not even `pylon:` is written,
/// or for an environment variable's name.
pub(super) fn locate(text: &str, key: &str) -> Option<Position> {
    let mut key = key;
    while !key.is_empty() {
        if let Some(p) = locate_exactly(text, key) {
            return Some(p);
        }
        key = parent(key)?;
    }
    None
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(key: &str) -> Option<&str> {
    let cut = key.rfind(['.', '['])?;
    Some(&key[..cut])
}

const HERE: &str = "\u{0}pylon-locate";

fn locate_exactly(text: &str, key: &str) -> Option<Position> {
    match (Seek {
        rest: key,
        top: true,
    })
    .deserialize(serde_yaml::Deserializer::from_str(text))
    {
        Err(e) if e.to_string().contains(HERE) => Position::of(&e),
        _ => None,
    }
}

/// Walks down `rest`; at its end, fails with [`HERE`].
#[derive(Clone, Copy)]
struct Seek<'k> {
    rest: &'k str,
    /// At the document's root mapping, whose keys are not preceded by `.`.
    top: bool,
}

impl<'k> Seek<'k> {
    fn here<E: de::Error>(self) -> Result<(), E> {
        match self.rest.is_empty() {
            true => Err(E::custom(HERE)),
            false => Ok(()),
        }
    }

    /// What follows `key` in the path, if the path goes through it.
    fn after_key(self, key: &str) -> Option<&'k str> {
        let rest = match self.top {
            true => self.rest,
            false => self.rest.strip_prefix('.')?,
        };
        let after = rest.strip_prefix(key)?;
        (after.is_empty() || after.starts_with(['.', '['])).then_some(after)
    }

    /// The index the path takes next (`[3]…`) and what follows it.
    fn index(self) -> Option<(usize, &'k str)> {
        let inner = self.rest.strip_prefix('[')?;
        let (digits, after) = inner.split_once(']')?;
        Some((digits.parse().ok()?, after))
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            let after = match &key {
                serde_yaml::Value::String(k) => self.after_key(k),
                serde_yaml::Value::Number(n) => self.after_key(&n.to_string()),
                _ => None,
            };
            match after {
                Some(rest) => map.next_value_seed(Seek { rest, top: false })?,
                None => map.next_value::<IgnoredAny>().map(drop)?,
            };
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let target = self.index();
        let mut i = 0;
        loop {
            let more = match target {
                Some((want, rest)) if want == i => {
                    seq.next_element_seed(Seek { rest, top: false })?.is_some()
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
threads: 2
pylon:
  listen: [\"a\", \"b\"]
  routes:
    my.tool:
      prefix: /x
    grafana:
      upstream:
        - http://a:1
        - http://b:2
      health_check: {interval: 5s}
";

    fn at(key: &str) -> Option<(usize, usize)> {
        locate(TEXT, key).map(|p| (p.line, p.column))
    }

    #[test]
    fn values_are_found_by_key_path() {
        assert_eq!(at("threads"), Some((1, 10)));
        assert_eq!(at("pylon.listen"), Some((3, 11)));
        assert_eq!(at("pylon.listen[1]"), Some((3, 17)));
        assert_eq!(at("pylon.routes.grafana.upstream[1]"), Some((10, 11)));
        assert_eq!(
            at("pylon.routes.grafana.health_check.interval"),
            Some((11, 32))
        );
        // A route name with a dot is one key, not two.
        assert_eq!(at("pylon.routes.my.tool.prefix"), Some((6, 15)));
    }

    #[test]
    fn a_missing_key_is_placed_at_its_nearest_written_ancestor() {
        assert_eq!(at("pylon.routes.grafana.prefix"), Some((8, 7)));
        assert_eq!(at("pylon.listen[7]"), Some((3, 11)));
        assert_eq!(at("pylon.tls.cert"), Some((3, 3)));
        assert_eq!(at("GRAFANA_URI"), None);
        assert_eq!(locate("", "pylon.listen"), None);
    }
}
