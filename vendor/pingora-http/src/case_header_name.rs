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
}

impl IntoCaseHeaderName for &CasedHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case.clone()
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.name.clone(), self.case.clone()))
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
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(self))
    }

    fn into_name_and_case(self) -> Result<(HeaderName, CaseHeaderName)> {
        Ok((self.clone(), CaseHeaderName(titled_header_name(self))))
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
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // TODO: add more const header here to map to their titled case
        // TODO: automatically upper case the first letter?
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
