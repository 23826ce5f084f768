//! `pylon.hostport` signing keys: read, checked and kept out of every
//! printout (see `link_signing` for the link format).

use std::time::Duration;

use super::check::positive_duration;
use super::schema::RawHostPort;
use super::ConfigError;

/// Shortest key accepted: HMAC-SHA-256's own output length.
pub const MIN_KEY_BYTES: usize = 32;
const DEFAULT_REDIRECT_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_LINK_EXPIRY: Duration = Duration::from_secs(12 * 3600);
/// Links live at most this long (a token's expiry is a 32-bit time).
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Key material; its `Debug` shows neither the bytes nor their length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Signed host:port links: the keys and how long links live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The file the key came from, for `pylon -t`.
    pub key_file: String,
    pub key: Secret,
    /// The key being rotated out, and its file.
    pub previous: Option<(String, Secret)>,
    /// How long after start the previous key is still accepted.
    pub previous_grace: Duration,
    /// Unsigned host:port requests get 403 (otherwise links are signed but
    /// unsigned ones still pass: a migration step).
    pub require: bool,
    pub redirect_expiry: Duration,
    pub link_expiry: Duration,
}

fn read_key(key: &str, path: &str) -> Result<Secret, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, path, format!("cannot read: {e}")))?;
    // A trailing newline from `echo` or an editor is not part of the key.
    let text = bytes.trim_ascii();
    if text.len() < MIN_KEY_BYTES {
        return Err(ConfigError::new(
            key,
            path,
            format!(
                "the key has {} bytes, at least {MIN_KEY_BYTES} are needed \
                 (head -c 48 /dev/urandom | base64 > FILE)",
                text.len()
            ),
        ));
    }
    Ok(Secret(text.to_vec()))
}

fn expiry(
    key: &str,
    v: &Option<super::schema::Scalar>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = positive_duration(key, v, default)?;
    if d > MAX_EXPIRY || d.as_secs() == 0 {
        return Err(ConfigError::new(
            key,
            v.as_ref().map(|s| s.text()).unwrap_or_default(),
            "must be between 1s and 366 days",
        ));
    }
    Ok(d)
}

/// The signing part of `pylon.hostport`; `None` when no key is configured.
pub(super) fn check_signing(h: &RawHostPort) -> Result<Option<Signing>, ConfigError> {
    let Some(key_file) = &h.signing_key_file else {
        if h.require_signature == Some(true) {
            return Err(ConfigError::new(
                "pylon.hostport.require_signature",
                "true",
                "needs pylon.hostport.signing_key_file",
            ));
        }
        if h.previous_signing_key_file.is_some() {
            return Err(ConfigError::new(
                "pylon.hostport.previous_signing_key_file",
                "",
                "needs pylon.hostport.signing_key_file",
            ));
        }
        return Ok(None);
    };
    let key = read_key("pylon.hostport.signing_key_file", key_file)?;
    let previous = match &h.previous_signing_key_file {
        Some(p) => Some((
            p.clone(),
            read_key("pylon.hostport.previous_signing_key_file", p)?,
        )),
        None => None,
    };
    if previous.as_ref().is_some_and(|(_, k)| *k == key) {
        return Err(ConfigError::new(
            "pylon.hostport.previous_signing_key_file",
            previous
                .as_ref()
                .map(|(p, _)| p.as_str())
                .unwrap_or_default(),
            "holds the same key as signing_key_file",
        ));
    }
    let link_expiry = expiry(
        "pylon.hostport.link_expiry",
        &h.link_expiry,
        DEFAULT_LINK_EXPIRY,
    )?;
    Ok(Some(Signing {
        key_file: key_file.clone(),
        key,
        previous,
        // By default, as long as the links the previous key signed live.
        previous_grace: positive_duration(
            "pylon.hostport.previous_key_grace",
            &h.previous_key_grace,
            link_expiry,
        )?,
        require: h.require_signature.unwrap_or(true),
        redirect_expiry: expiry(
            "pylon.hostport.redirect_expiry",
            &h.redirect_expiry,
            DEFAULT_REDIRECT_EXPIRY,
        )?,
        link_expiry,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{from_yaml, ConfigError};
    use std::collections::BTreeMap;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pylon-signing-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn load(extra: &str) -> Result<super::super::Config, ConfigError> {
        let text = format!("pylon:\n  hostport:\n    allow: [\"10.0.0.0/8\"]\n{extra}");
        from_yaml(&text, &BTreeMap::<String, String>::new())
    }

    #[test]
    fn keys_are_read_checked_and_never_shown() {
        let d = dir();
        let good = d.join("good.key");
        let old = d.join("old.key");
        let short = d.join("short.key");
        std::fs::write(&good, "k3y-material-that-is-long-enough-0123456789\n").unwrap();
        std::fs::write(&old, "old-material-that-is-long-enough-0123456789").unwrap();
        std::fs::write(&short, "tooshort-secret\n").unwrap();

        let c = load(&format!(
            "    signing_key_file: {}\n    previous_signing_key_file: {}\n    link_expiry: 1h\n",
            good.display(),
            old.display()
        ))
        .unwrap();
        let s = c.hostport.as_ref().unwrap().signing.as_ref().unwrap();
        assert_eq!(
            s.key.bytes(),
            b"k3y-material-that-is-long-enough-0123456789"
        );
        assert!(s.require);
        assert_eq!(s.redirect_expiry.as_secs(), 60);
        assert_eq!(s.link_expiry.as_secs(), 3600);
        assert_eq!(s.previous_grace.as_secs(), 3600);
        let shown = format!("{c:?}");
        assert!(!shown.contains("k3y-material"), "{shown}");
        assert!(!shown.contains("old-material"), "{shown}");

        let c = load(&format!(
            "    signing_key_file: {}\n    require_signature: false\n",
            good.display()
        ))
        .unwrap();
        assert!(!c.hostport.unwrap().signing.unwrap().require);
        assert_eq!(load("").unwrap().hostport.unwrap().signing, None);

        let missing = d.join("missing.key");
        for (extra, key, why) in [
            (
                format!("    signing_key_file: {}\n", missing.display()),
                "pylon.hostport.signing_key_file",
                "cannot read",
            ),
            (
                format!("    signing_key_file: {}\n", short.display()),
                "pylon.hostport.signing_key_file",
                "the key has 15 bytes",
            ),
            (
                format!("    signing_key_file: {}\n", d.display()),
                "pylon.hostport.signing_key_file",
                "cannot read",
            ),
            (
                format!(
                    "    signing_key_file: {}\n    previous_signing_key_file: {}\n",
                    good.display(),
                    short.display()
                ),
                "pylon.hostport.previous_signing_key_file",
                "the key has 15 bytes",
            ),
            (
                format!(
                    "    signing_key_file: {}\n    previous_signing_key_file: {}\n",
                    good.display(),
                    good.display()
                ),
                "pylon.hostport.previous_signing_key_file",
                "same key",
            ),
            (
                "    require_signature: true\n".to_string(),
                "pylon.hostport.require_signature",
                "needs",
            ),
            (
                format!(
                    "    signing_key_file: {}\n    link_expiry: 0\n",
                    good.display()
                ),
                "pylon.hostport.link_expiry",
                "positive",
            ),
            (
                format!(
                    "    signing_key_file: {}\n    redirect_expiry: 9000h\n",
                    good.display()
                ),
                "pylon.hostport.redirect_expiry",
                "366 days",
            ),
        ] {
            let e = load(&extra).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.reason.contains(why), "{e}");
            assert!(!e.to_string().contains("tooshort-secret"), "{e}");
            assert!(!e.to_string().contains("k3y-material"), "{e}");
        }
        std::fs::remove_dir_all(&d).ok();
    }
}
