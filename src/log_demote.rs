//! Pingora logs at `error` every TLS or HTTP/2 handshake that a client
//! abandons (`Downstream handshake error … tls handshake eof`, `H2 handshake
//! error … Connection reset by peer`). Browsers do so on ordinary visits
//! (speculative and raced connections), so these lines are noise on stderr
//! that any client can turn into a flood. This logger passes them on at
//! `debug`; every other record is passed on unchanged.

use log::{Level, Log, Metadata, Record};

/// Whether a record is Pingora's report of a handshake the client broke
/// off: `target` is the record's module, `message` its text.
pub fn is_abandoned_handshake(target: &str, message: &str) -> bool {
    (target.starts_with("pingora_core::services::listening")
        && message.starts_with("Downstream handshake"))
        || (target.starts_with("pingora_core::apps") && message.starts_with("H2 handshake error"))
}

/// Wraps the process's logger; see the module documentation.
pub struct Demote<L>(pub L);

impl<L: Log> Log for Demote<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        let pingora = record.target().starts_with("pingora_core::");
        if record.level() == Level::Error && pingora {
            // Formatting only on this rare path: Pingora's error records.
            let message = record.args().to_string();
            if is_abandoned_handshake(record.target(), &message) {
                let debug = Metadata::builder()
                    .level(Level::Debug)
                    .target(record.target())
                    .build();
                if self.0.enabled(&debug) {
                    self.0.log(
                        &Record::builder()
                            .metadata(debug)
                            .args(format_args!("{message}"))
                            .module_path(record.module_path())
                            .file(record.file())
                            .line(record.line())
                            .build(),
                    );
                }
                return;
            }
        }
        self.0.log(record);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_abandoned_handshakes_are_demoted() {
        assert!(is_abandoned_handshake(
            "pingora_core::services::listening",
            "Downstream handshake error from 1.2.3.4:5: TLSHandshakeFailure"
        ));
        assert!(is_abandoned_handshake(
            "pingora_core::services::listening",
            "Downstream handshake timeout"
        ));
        assert!(is_abandoned_handshake(
            "pingora_core::apps",
            "H2 handshake error  HandshakeError context: Broken pipe"
        ));
        assert!(!is_abandoned_handshake(
            "pingora_core::apps",
            "something else failed"
        ));
        assert!(!is_abandoned_handshake(
            "pylon::proxy",
            "H2 handshake error"
        ));
    }
}
