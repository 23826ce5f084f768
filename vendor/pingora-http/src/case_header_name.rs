// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;
use pingora_error::Error;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(Bytes);

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        CaseHeaderName(name.into())
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        CaseHeaderName(Bytes::copy_from_slice(buf))
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// The parsed [`HeaderName`] together with its case, as the header maps store them.
    ///
    /// The default parses the case-sensitive name; a name that is already parsed
    /// ([`HeaderName`], [`CasedHeaderName`]) returns it instead of parsing its text again.
    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)>
    where
        Self: Sized,
    {
        let case = self.into_case_header_name();
        let name = HeaderName::from_bytes(case.as_slice())
            .or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok((name, case))
    }

    /// The parsed [`HeaderName`], and its case only where it is not the name's
    /// [`default_spelling`]: what a header that preserves case needs to record.
    ///
    /// The default compares [`Self::into_name_and_case`]'s case with the default spelling; a
    /// [`HeaderName`] is always written in its default spelling, so it returns `None` without
    /// building a case at all.
    fn into_name_and_spelling(self) -> Result<(HeaderName, Option<CaseHeaderName>)>
    where
        Self: Sized,
    {
        let (name, case) = self.into_name_and_case()?;
        if is_default_spelling(&name, case.as_slice()) {
            Ok((name, None))
        } else {
            Ok((name, Some(case)))
        }
    }
}

/// How a header name goes out on HTTP/1 when no other case was recorded for it: the usual
/// spelling of a registered name (`Content-Type`, `ETag`, `WWW-Authenticate`), otherwise the
/// name in lower case, as [`HeaderName`] stores it.
pub fn default_spelling(name: &HeaderName) -> &str {
    titled_header_name_str(name).unwrap_or(name.as_str())
}

fn is_default_spelling(name: &HeaderName, case: &[u8]) -> bool {
    default_spelling(name).as_bytes() == case
}

/// A header name parsed once, together with the case it is written in on HTTP/1.
///
/// Passing a name as text to [`RequestHeader::insert_header()`] and friends parses it on every
/// call, and a [`HeaderName`] alone is written in its titled form, which exists only for a
/// dozen standard names (others go out in lower case). A `CasedHeaderName` built once, e.g. in
/// a `static`, is inserted without either: both the name and its case are cloned, never parsed.
///
/// ```
/// use http::header::HeaderName;
/// use pingora_http::{CasedHeaderName, RequestHeader};
///
/// let xff = CasedHeaderName::new(HeaderName::from_static("x-forwarded-for"), "X-Forwarded-For")
///     .unwrap();
/// let mut req = RequestHeader::build("GET", b"/", None).unwrap();
/// req.insert_header(&xff, "192.0.2.1").unwrap();
/// let mut wire = vec![];
/// req.header_to_h1_wire(&mut wire);
/// assert_eq!(wire, b"X-Forwarded-For: 192.0.2.1\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct CasedHeaderName {
    name: HeaderName,
    case: CaseHeaderName,
    // `case` is the name's default spelling, so a header need not record it.
    is_default: bool,
}

impl CasedHeaderName {
    /// `name` written as `case` on the wire.
    ///
    /// # Errors
    ///
    /// `InvalidHTTPHeader` when `case` is not `name` up to ASCII case.
    pub fn new(name: HeaderName, case: &'static str) -> Result<Self> {
        if !name.as_str().eq_ignore_ascii_case(case) {
            return Error::e_explain(
                InvalidHTTPHeader,
                format!("header case {case:?} does not spell {name}"),
            );
        }
        Ok(CasedHeaderName {
            is_default: is_default_spelling(&name, case.as_bytes()),
            name,
            case: CaseHeaderName(Bytes::from_static(case.as_bytes())),
        })
    }

    /// The parsed name, e.g. for lookups in the header map.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The name as written on the wire.
    pub fn as_slice(&self) -> &[u8] {
        self.case.as_slice()
    }
}

impl IntoCaseHeaderName for CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.name, self.case))
    }

    fn into_name_and_spelling(self) -> Result<(HeaderName, Option<CaseHeaderName>)> {
        Ok((self.name, (!self.is_default).then_some(self.case)))
    }
}

impl IntoCaseHeaderName for &CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case.clone()
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.name.clone(), self.case.clone()))
    }

    fn into_name_and_spelling(self) -> Result<(HeaderName, Option<CaseHeaderName>)> {
        Ok((
            self.name.clone(),
            (!self.is_default).then(|| self.case.clone()),
        ))
    }
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(&self))
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        let case = CaseHeaderName(titled_header_name(&self));
        Ok((self, case))
    }

    fn into_name_and_spelling(self) -> Result<(HeaderName, Option<CaseHeaderName>)> {
        Ok((self, None))
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(self))
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.clone(), CaseHeaderName(titled_header_name(self))))
    }

    fn into_name_and_spelling(self) -> Result<(HeaderName, Option<CaseHeaderName>)> {
        Ok((self.clone(), None))
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self)
    }
}

fn titled_header_name(header_name: &HeaderName) -> Bytes {
    titled_header_name_str(header_name).map_or_else(
        || Bytes::copy_from_slice(header_name.as_str().as_bytes()),
        |s| Bytes::from_static(s.as_bytes()),
    )
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    // The spellings of the IANA registry for the names `http` knows, so that a header that
    // arrived in its usual spelling needs no case of its own (see `default_spelling`).
    Some(match *header_name {
        header::ACCEPT => "Accept",
        header::ACCEPT_CHARSET => "Accept-Charset",
        header::ACCEPT_ENCODING => "Accept-Encoding",
        header::ACCEPT_LANGUAGE => "Accept-Language",
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS => "Access-Control-Allow-Credentials",
        header::ACCESS_CONTROL_ALLOW_HEADERS => "Access-Control-Allow-Headers",
        header::ACCESS_CONTROL_ALLOW_METHODS => "Access-Control-Allow-Methods",
        header::ACCESS_CONTROL_ALLOW_ORIGIN => "Access-Control-Allow-Origin",
        header::ACCESS_CONTROL_EXPOSE_HEADERS => "Access-Control-Expose-Headers",
        header::ACCESS_CONTROL_MAX_AGE => "Access-Control-Max-Age",
        header::ACCESS_CONTROL_REQUEST_HEADERS => "Access-Control-Request-Headers",
        header::ACCESS_CONTROL_REQUEST_METHOD => "Access-Control-Request-Method",
        header::AGE => "Age",
        header::ALLOW => "Allow",
        header::ALT_SVC => "Alt-Svc",
        header::AUTHORIZATION => "Authorization",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_DISPOSITION => "Content-Disposition",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LANGUAGE => "Content-Language",
        header::CONTENT_LENGTH => "Content-Length",
        header::CONTENT_LOCATION => "Content-Location",
        header::CONTENT_RANGE => "Content-Range",
        header::CONTENT_SECURITY_POLICY => "Content-Security-Policy",
        header::CONTENT_TYPE => "Content-Type",
        header::COOKIE => "Cookie",
        header::DATE => "Date",
        header::ETAG => "ETag",
        header::EXPECT => "Expect",
        header::EXPIRES => "Expires",
        header::FORWARDED => "Forwarded",
        header::FROM => "From",
        header::HOST => "Host",
        header::IF_MATCH => "If-Match",
        header::IF_MODIFIED_SINCE => "If-Modified-Since",
        header::IF_NONE_MATCH => "If-None-Match",
        header::IF_RANGE => "If-Range",
        header::IF_UNMODIFIED_SINCE => "If-Unmodified-Since",
        header::LAST_MODIFIED => "Last-Modified",
        header::LINK => "Link",
        header::LOCATION => "Location",
        header::MAX_FORWARDS => "Max-Forwards",
        header::ORIGIN => "Origin",
        header::PRAGMA => "Pragma",
        header::PROXY_AUTHENTICATE => "Proxy-Authenticate",
        header::PROXY_AUTHORIZATION => "Proxy-Authorization",
        header::RANGE => "Range",
        header::REFERER => "Referer",
        header::RETRY_AFTER => "Retry-After",
        header::SEC_WEBSOCKET_ACCEPT => "Sec-WebSocket-Accept",
        header::SEC_WEBSOCKET_EXTENSIONS => "Sec-WebSocket-Extensions",
        header::SEC_WEBSOCKET_KEY => "Sec-WebSocket-Key",
        header::SEC_WEBSOCKET_PROTOCOL => "Sec-WebSocket-Protocol",
        header::SEC_WEBSOCKET_VERSION => "Sec-WebSocket-Version",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        header::STRICT_TRANSPORT_SECURITY => "Strict-Transport-Security",
        header::TE => "TE",
        header::TRAILER => "Trailer",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::UPGRADE => "Upgrade",
        header::UPGRADE_INSECURE_REQUESTS => "Upgrade-Insecure-Requests",
        header::USER_AGENT => "User-Agent",
        header::VARY => "Vary",
        header::VIA => "Via",
        header::WARNING => "Warning",
        header::WWW_AUTHENTICATE => "WWW-Authenticate",
        header::X_CONTENT_TYPE_OPTIONS => "X-Content-Type-Options",
        header::X_FRAME_OPTIONS => "X-Frame-Options",
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }

    #[test]
    fn test_name_and_case() {
        let (name, case) = "X-Foo".into_name_and_case().unwrap();
        assert_eq!((name.as_str(), case.as_slice()), ("x-foo", &b"X-Foo"[..]));
        assert!("bad name".into_name_and_case().is_err());
        let (name, case) = header::HOST.into_name_and_case().unwrap();
        assert_eq!((name, case.as_slice()), (header::HOST, &b"Host"[..]));
        let custom = HeaderName::from_static("x-foo");
        let (name, case) = (&custom).into_name_and_case().unwrap();
        assert_eq!((name, case.as_slice()), (custom, &b"x-foo"[..]));
    }

    #[test]
    fn test_cased_header_name() {
        let xff = HeaderName::from_static("x-forwarded-for");
        let cased = CasedHeaderName::new(xff.clone(), "X-Forwarded-For").unwrap();
        assert_eq!(cased.name(), &xff);
        assert_eq!(cased.as_slice(), b"X-Forwarded-For");
        let (name, case) = (&cased).into_name_and_case().unwrap();
        assert_eq!((name, case.as_slice()), (xff, &b"X-Forwarded-For"[..]));
        assert!(CasedHeaderName::new(header::HOST, "X-Forwarded-For").is_err());
        assert!(CasedHeaderName::new(header::HOST, "Hos").is_err());
    }
}
