//! What a raw upload declares about its file. The input's lines are the `Content-Disposition`
//! value, the query string and the `Content-Type` value. The declared name is the sanitised
//! `Content-Disposition` file name (else the `name` query parameter), the type a bare media type.
#![no_main]

use http::{HeaderMap, Uri, header};
use intake::{__fuzz, declared::DeclaredFile, filename::sanitize};
use intake_fuzz::{assert_essence, assert_safe_name, header_value, lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = lines(data);
    let (disposition, query, content_type) = (fields.next(), fields.next(), fields.next());
    let disposition = disposition.and_then(header_value);
    let mut headers = HeaderMap::new();
    if let Some(value) = &disposition {
        headers.insert(header::CONTENT_DISPOSITION, value.clone());
    }
    if let Some(value) = content_type.and_then(header_value) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let uri = match query.and_then(|q| std::str::from_utf8(q).ok()) {
        Some(q) => format!("/raw?{q}").parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/raw")),
        None => Uri::from_static("/raw"),
    };

    let from_disposition = disposition.as_ref().and_then(|v| v.to_str().ok()).and_then(__fuzz::disposition_filename);
    if let (Some(_), Some(value)) = (&from_disposition, &disposition) {
        let lower = value.to_str().expect("ASCII").to_ascii_lowercase();
        assert!(lower.contains("filename"), "a file name from {value:?}");
    }
    let declared = DeclaredFile::from_request(&uri, &headers);
    if let Some(name) = &declared.name {
        assert_safe_name(name);
        if let Some(raw) = &from_disposition {
            assert_eq!(Some(name), sanitize(raw).as_ref(), "Content-Disposition names {raw:?}");
        }
    }
    if from_disposition.is_none() && uri.query().is_none_or(|q| !q.contains("name")) {
        assert_eq!(declared.name, None, "a name from nowhere: {headers:?} {uri}");
    }
    if let Some(essence) = &declared.content_type {
        assert_essence(essence);
    }
    if let Some(ext) = declared.extension() {
        assert!(!ext.is_empty() && !ext.contains('.') && ext == ext.to_ascii_lowercase(), "{ext:?}");
    }
});
