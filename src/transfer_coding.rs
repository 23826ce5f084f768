//! Which request `Transfer-Encoding`s Pylon forwards (RFC 9112 §6.1, §7).
//!
//! Pingora accepts any list that ends in `chunked`, decodes the chunked
//! framing and re-frames the body for the upstream, which drops every other
//! coding: `gzip, chunked` would reach the upstream as `chunked` alone, a
//! different message from the one the client sent. Pylon therefore forwards
//! only a plain `chunked` and refuses the rest before anything is sent
//! upstream, as nginx does: an unknown coding is 501, a malformed list or
//! `chunked` applied twice is 400.

/// A refusal: the status and the one-line body.
pub type Refusal = (u16, &'static str);

/// `Ok` when the request's `Transfer-Encoding` field values (all lines)
/// are absent or exactly one `chunked`.
pub fn check<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), Refusal> {
    let mut chunked = 0;
    for value in values {
        for token in value.split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                // An empty list element (RFC 9110 §5.6.1) changes nothing,
                // but a field that is only commas names no coding at all.
                continue;
            }
            if token.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
                if chunked > 1 {
                    return Err((400, "Bad request: chunked applied more than once.\n"));
                }
            } else if token
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!#$%&'*+^`|".contains(b))
            {
                return Err((501, "Transfer coding not implemented: only chunked is.\n"));
            } else {
                // Parameters (`chunked;x=1`), quotes, controls, bare CR/LF.
                return Err((400, "Bad request: malformed Transfer-Encoding.\n"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(values: &[&str]) -> u16 {
        match check(values.iter().map(|v| v.as_bytes())) {
            Ok(()) => 200,
            Err((code, _)) => code,
        }
    }

    #[test]
    fn only_a_single_chunked_passes() {
        assert_eq!(status(&[]), 200);
        assert_eq!(status(&["chunked"]), 200);
        assert_eq!(status(&["Chunked"]), 200);
        assert_eq!(status(&[" chunked , "]), 200);
        assert_eq!(status(&["gzip, chunked"]), 501);
        assert_eq!(status(&["gzip", "chunked"]), 501);
        assert_eq!(status(&["identity"]), 501);
        assert_eq!(status(&["chunked, chunked"]), 400);
        assert_eq!(status(&["chunked", "chunked"]), 400);
        assert_eq!(status(&["chunked;q=1"]), 400);
        assert_eq!(status(&["\"chunked\""]), 400);
        assert_eq!(status(&["chunked\x0b"]), 400);
    }
}
