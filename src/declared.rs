//! What a request says about the file it carries: its name and its content type.

use crate::filename;
use http::{HeaderMap, Uri, header};
use percent_encoding::percent_decode_str;

/// A file as the client declares it, before any byte is looked at. The name is already
/// sanitised (see [`filename::sanitize`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeclaredFile {
    /// The sanitised file name, if any was given.
    pub name: Option<String>,
    /// The declared media type (parameters removed, lowercased), if any.
    pub content_type: Option<String>,
}

impl DeclaredFile {
    /// The file named by a raw upload request: `Content-Disposition` (`filename*` preferred over
    /// `filename`) or else the `name` query parameter; the type from `Content-Type`.
    pub fn from_request(uri: &Uri, headers: &HeaderMap) -> Self {
        Self {
            name: client_name(uri, headers).and_then(|n| filename::sanitize(&n)),
            content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(essence),
        }
    }

    /// The lowercased extension of the declared name.
    pub fn extension(&self) -> Option<String> {
        self.name.as_deref().and_then(filename::extension)
    }
}

/// The file name a raw upload request gives, exactly as sent (not sanitised): `Content-Disposition`
/// or else `?name=`.
pub(crate) fn client_name(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let from_disposition = headers.get(header::CONTENT_DISPOSITION).and_then(|v| v.to_str().ok()).and_then(disposition_filename);
    from_disposition.or_else(|| uri.query().and_then(|q| query_param(q, "name")))
}

/// Whether a request carries a `multipart/*` body.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

/// The media type without parameters, lowercased; `None` for an empty value.
pub fn essence(content_type: &str) -> Option<String> {
    let e = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    (!e.is_empty()).then_some(e)
}

/// One query parameter, percent-decoded (`+` as space).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

/// The file name of a `Content-Disposition` value (RFC 6266): `filename*=UTF-8''…` wins over
/// `filename="…"`.
pub(crate) fn disposition_filename(value: &str) -> Option<String> {
    let mut plain = None;
    for param in split_params(value).into_iter().skip(1) {
        let Some((k, v)) = param.split_once('=') else { continue };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        if k == "filename*" {
            let (charset, rest) = v.split_once('\'')?;
            let (_lang, encoded) = rest.split_once('\'')?;
            if charset.eq_ignore_ascii_case("utf-8") {
                return Some(percent_decode_str(encoded).decode_utf8_lossy().into_owned());
            }
        } else if k == "filename" {
            plain = Some(unquote(v));
        }
    }
    plain
}

fn split_params(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn declared(disposition: Option<&str>, uri: &str) -> DeclaredFile {
        let mut headers = HeaderMap::new();
        if let Some(d) = disposition {
            headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(d).unwrap());
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("Image/PNG; charset=x"));
        DeclaredFile::from_request(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn reads_content_disposition() {
        let d = declared(Some(r#"attachment; filename="a \"b\".png""#), "/raw");
        assert_eq!(d.name.as_deref(), Some("a _b_.png"));
        assert_eq!(d.content_type.as_deref(), Some("image/png"));
        let d = declared(Some("attachment; filename=\"x.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png"), "/raw");
        assert_eq!(d.name.as_deref(), Some("été.png"));
    }

    #[test]
    fn falls_back_to_the_query_and_sanitises() {
        let d = declared(None, "/raw?name=..%2F..%2Fetc%2Fpasswd");
        assert_eq!(d.name.as_deref(), Some("passwd"));
        assert_eq!(d.extension(), None);
        let d = declared(Some("inline; filename=\"../x.tar.gz\""), "/raw?name=y");
        assert_eq!(d.name.as_deref(), Some("x.tar.gz"));
        assert_eq!(d.extension().as_deref(), Some("gz"));
    }
}
