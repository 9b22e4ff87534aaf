use crate::{declared::DeclaredFile, error::Problem};
use http::StatusCode;
use infer::MatcherType;

/// What sniffing found, handed to the inner service as a request extension (and to storage as
/// the file's content type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    /// The type recognised from magic bytes, if any.
    pub detected: Option<&'static str>,
    /// The type to store and serve: the detected one, else the declared one, else one guessed
    /// from the extension, else `text/plain` for UTF-8 text or `application/octet-stream`.
    pub content_type: String,
}

/// Decides which content an upload may carry, from its first bytes and what the client
/// declared.
///
/// The default policy allows any type but refuses:
/// - content whose magic bytes contradict the declared `Content-Type` or file extension
///   (`content_type_mismatch`), e.g. a ZIP named `photo.jpg`;
/// - executables (PE, ELF, Mach-O, Java class, DEX, WebAssembly, ... from `infer`'s tables)
///   declared as anything but themselves (`executable_content`);
/// - scripts and markup declared as media: a shebang, `<?php`, `<script`, `<html` or `<iframe`
///   in the first bytes of a file that claims to be an image, audio, video, font or PDF
///   (`script_content`);
/// - active content anywhere in markup that would be stored as a media type — every SVG, and
///   any image, audio, video or font that starts like markup: scripts, `on*` event handlers,
///   `<foreignObject>`, embedded documents, `javascript:` and document `data:` URLs (however
///   encoded), DTDs with entity declarations, `<use>` of other documents, animations of such
///   values (`active_content`), markup that cannot be tokenized (`invalid_markup`), and markup
///   longer than [`markup_scan_limit`](Self::markup_scan_limit) (`413 markup_too_large`). This
///   scan reads the whole file as it streams (see [`SniffBody`](super::SniffBody)).
///
/// Allow and deny lists take media types or `type/*` patterns.
#[derive(Clone, Debug)]
pub struct ContentPolicy {
    allow: Vec<String>,
    deny: Vec<String>,
    require_match: bool,
    refuse_disguised_code: bool,
    peek: usize,
    markup_limit: u64,
}

impl Default for ContentPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            require_match: true,
            refuse_disguised_code: true,
            peek: 8 * 1024,
            markup_limit: 4 << 20,
        }
    }
}

/// Markers of active content that have no business in a media file (matched case-insensitively).
const SCRIPT_MARKERS: [&[u8]; 5] = [b"<?php", b"<script", b"<html", b"<iframe", b"javascript:"];

/// Containers that `infer` may report as their generic format.
const CONTAINERS: [(&str, &[&str]); 2] = [
    (
        "application/zip",
        &["docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "jar", "apk", "xpi", "kmz", "ipa", "whl", "nupkg", "vsix"],
    ),
    ("application/x-ole-storage", &["doc", "xls", "ppt", "msi", "msg"]),
];

const GENERIC_TYPES: [&str; 3] = ["application/octet-stream", "binary/octet-stream", "application/unknown"];

impl ContentPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows only these types (`image/*`, `application/pdf`, ...). Empty means any.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.allow = types.into_iter().map(|t| t.into().to_ascii_lowercase()).collect();
        self
    }

    /// Refuses these types.
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.deny = types.into_iter().map(|t| t.into().to_ascii_lowercase()).collect();
        self
    }

    /// Whether the declared type and extension must agree with the sniffed type (default true).
    pub fn require_match(mut self, yes: bool) -> Self {
        self.require_match = yes;
        self
    }

    /// Whether executables and scripts declared as something else, and active content in
    /// markup stored as media, are refused (default true).
    pub fn refuse_disguised_code(mut self, yes: bool) -> Self {
        self.refuse_disguised_code = yes;
        self
    }

    pub(crate) fn refuses_disguised_code(&self) -> bool {
        self.refuse_disguised_code
    }

    /// How much of an SVG (or other markup stored as a media type) is scanned for active
    /// content (default 4 MiB). Longer markup is refused with `413 markup_too_large` rather
    /// than stored unchecked; the scan holds at most one tag of it in memory at a time.
    pub fn markup_scan_limit(mut self, bytes: u64) -> Self {
        self.markup_limit = bytes;
        self
    }

    /// How much of a file stored as SVG is scanned for active content.
    pub fn markup_limit(&self) -> u64 {
        self.markup_limit
    }

    /// How many leading bytes are examined (default 8 KiB).
    pub fn peek_len(mut self, bytes: usize) -> Self {
        self.peek = bytes.max(262);
        self
    }

    /// How many leading bytes are examined.
    pub fn peek(&self) -> usize {
        self.peek
    }

    /// Applies the policy to the first bytes of a file (`head`, at most [`peek`](Self::peek)
    /// bytes; fewer only when the file is shorter).
    pub fn check(&self, head: &[u8], declared: &DeclaredFile) -> Result<Sniffed, Problem> {
        let kind = if head.is_empty() { None } else { infer::get(head) };
        let ext = declared.extension();
        let declared_ct = declared.content_type.as_deref().filter(|ct| !GENERIC_TYPES.contains(ct)).map(normalise);
        let mut claimed: Vec<String> = declared_ct.iter().map(|s| s.to_string()).collect();
        if let Some(ext) = &ext {
            claimed.extend(mime_guess::from_ext(ext).iter().map(|m| m.essence_str().to_owned()));
        }
        // "Some bytes" claims nothing.
        claimed.retain(|c| !GENERIC_TYPES.contains(&c.as_str()));
        let detected = kind.map(|k| k.mime_type());
        let is_code =
            kind.is_some_and(|k| k.matcher_type() == MatcherType::App && !k.mime_type().starts_with("application/x-x509"));
        let honest_code = kind.is_some_and(|k| ext.as_deref() == Some(k.extension()) || declared_ct == Some(k.mime_type()));
        let disguised = |reason: &'static str, what: String| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason,
                format!("the file is {what} but was declared as {}", describe(declared)),
            )
            .with("detected", detected.unwrap_or("text"))
        };

        if self.refuse_disguised_code && !head.is_empty() {
            if is_code && (!claimed.is_empty() || ext.is_some()) && !honest_code {
                return Err(disguised("executable_content", format!("an executable ({})", detected.unwrap_or("?"))));
            }
            let claims_media = claimed.iter().any(|c| is_media(c));
            if claims_media && !is_code {
                let shebang = head.starts_with(b"#!");
                if let Some(marker) = SCRIPT_MARKERS.iter().find(|m| contains_ignore_case(head, m)) {
                    return Err(disguised("script_content", format!("active content ({})", String::from_utf8_lossy(marker))));
                }
                if shebang {
                    return Err(disguised("script_content", "a script (#!)".to_owned()));
                }
            }
        }

        if self.require_match && !head.is_empty() && !claimed.is_empty() {
            let agrees = match kind {
                Some(k) => {
                    claimed.iter().any(|c| c == k.mime_type())
                        || (k.mime_type() == "text/xml" && claimed.iter().any(|c| is_xml(c)))
                        || ext.as_deref() == Some(k.extension())
                        || CONTAINERS
                            .iter()
                            .any(|(generic, exts)| *generic == k.mime_type() && ext.as_deref().is_some_and(|e| exts.contains(&e)))
                }
                // Nothing recognised: only a contradiction when the declared type is a binary
                // format that magic bytes would have recognised.
                None => !claimed.iter().any(|c| is_detectable_binary(c)),
            };
            if !agrees {
                let what = match detected {
                    Some(d) if is_code => format!("an executable ({d})"),
                    Some(d) => d.to_owned(),
                    None => "not recognisable as the declared type".to_owned(),
                };
                let code = if is_code { "executable_content" } else { "content_type_mismatch" };
                return Err(disguised(code, what));
            }
        }

        // `infer` reports any document with an XML declaration as text/xml: an SVG says more.
        let xml_dialect = claimed.iter().find(|c| detected == Some("text/xml") && is_xml(c)).cloned();
        let content_type =
            xml_dialect
                .or_else(|| detected.map(str::to_owned))
                .or_else(|| declared_ct.map(str::to_owned))
                .or_else(|| ext.as_deref().and_then(|e| mime_guess::from_ext(e).first()).map(|m| m.essence_str().to_owned()))
                .unwrap_or_else(|| {
                    if looks_like_text(head) { "text/plain".to_owned() } else { "application/octet-stream".to_owned() }
                });
        if let Some(pattern) = self.deny.iter().find(|p| matches(p, &content_type)) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_denied",
                format!("{content_type} files are not accepted (denied: {pattern})"),
            )
            .with("detected", content_type.clone()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| matches(p, &content_type)) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_not_allowed",
                format!("{content_type} files are not accepted; allowed: {}", self.allow.join(", ")),
            )
            .with("detected", content_type.clone())
            .with("allowed", self.allow.clone()));
        }
        Ok(Sniffed { detected, content_type })
    }
}

fn describe(declared: &DeclaredFile) -> String {
    match (&declared.name, &declared.content_type) {
        (Some(n), Some(ct)) => format!("{n:?} ({ct})"),
        (Some(n), None) => format!("{n:?}"),
        (None, Some(ct)) => ct.clone(),
        (None, None) => "nothing".to_owned(),
    }
}

fn normalise(ct: &str) -> &str {
    match ct {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        other => other,
    }
}

pub(super) fn is_media(mime: &str) -> bool {
    ["image/", "audio/", "video/", "font/"].iter().any(|p| mime.starts_with(p)) || mime == "application/pdf"
}

/// XML and the formats built on it (`image/svg+xml`, `application/xhtml+xml`, ...).
fn is_xml(mime: &str) -> bool {
    mime.ends_with("+xml") || mime == "application/xml" || mime == "text/xml"
}

/// Binary formats with magic bytes `infer` knows: claiming one of them for content it does not
/// recognise is a contradiction. Text-based formats (SVG, HTML, XML, JSON, CSV) are not.
fn is_detectable_binary(mime: &str) -> bool {
    !mime.starts_with("text/") && !mime.contains("xml") && !mime.contains("json") && infer::Infer::new().is_mime_supported(mime)
}

fn matches(pattern: &str, mime: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(top) => mime.split('/').next() == Some(top),
        None => pattern == "*/*" || pattern == mime,
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

fn looks_like_text(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(s) => !s.contains('\0'),
        // A multi-byte character cut off at the end of the peeked bytes is still text.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    const PE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
    const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0\x08\0";

    fn file(name: Option<&str>, ct: Option<&str>) -> DeclaredFile {
        DeclaredFile { name: name.map(Into::into), content_type: ct.map(Into::into) }
    }

    fn code(r: Result<Sniffed, Problem>) -> &'static str {
        r.err().map_or("ok", |p| p.code())
    }

    #[test]
    fn honest_files_pass_with_the_detected_type() {
        let p = ContentPolicy::default();
        let s = p.check(PNG, &file(Some("a.png"), Some("image/png"))).unwrap();
        assert_eq!((s.detected, s.content_type.as_str()), (Some("image/png"), "image/png"));
        let s = p.check(b"hello, world", &file(Some("notes.txt"), None)).unwrap();
        assert_eq!(s.content_type, "text/plain");
        let s = p.check(b"{\"a\":1}", &file(Some("a.json"), Some("application/json"))).unwrap();
        assert_eq!(s.content_type, "application/json");
        let s = p.check(&[0xde, 0xad, 0xbe, 0xef, 0], &file(None, None)).unwrap();
        assert_eq!(s.content_type, "application/octet-stream");
        assert_eq!(code(p.check(b"", &file(Some("empty.png"), None))), "ok");
        assert_eq!(code(p.check(ZIP, &file(Some("report.docx"), None))), "ok");
        assert_eq!(code(p.check(PNG, &file(Some("a.jpg.png"), Some("image/x-png")))), "ok");
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(code(p.check(&noise, &file(Some("r.bin"), Some("application/octet-stream")))), "ok");
        assert_eq!(code(p.check(&noise, &file(Some("r.dat"), None))), "ok");
    }

    #[test]
    fn executables_disguised_as_anything_else_are_refused() {
        let p = ContentPolicy::default();
        assert_eq!(code(p.check(ELF, &file(Some("cat.png"), None))), "executable_content");
        assert_eq!(code(p.check(PE, &file(Some("invoice.pdf"), Some("application/pdf")))), "executable_content");
        assert_eq!(code(p.check(ELF, &file(None, Some("image/png")))), "executable_content");
        assert_eq!(code(p.check(PE, &file(Some("setup.exe"), None))), "ok", "an honest executable is not disguised");
        let err = p.check(ELF, &file(Some("cat.png"), None)).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.extension("detected").unwrap(), "application/x-executable");
        assert!(err.detail().contains("application/x-executable"), "{}", err.detail());
    }

    #[test]
    fn scripts_in_media_are_refused() {
        let p = ContentPolicy::default();
        let html = b"<html><body><script>alert(1)</script></body></html>";
        assert_eq!(code(p.check(html, &file(Some("kitten.jpg"), None))), "script_content");
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        assert_eq!(code(p.check(svg, &file(Some("logo.svg"), None))), "script_content");
        assert_eq!(code(p.check(b"#!/bin/sh\nrm -rf /", &file(Some("a.gif"), None))), "script_content");
        let polyglot = [PNG, b"tEXt<?php system($_GET['c']); ?>"].concat();
        assert_eq!(code(p.check(&polyglot, &file(Some("a.png"), None))), "script_content");
        assert_eq!(code(p.check(b"#!/bin/sh\necho hi", &file(Some("install.sh"), None))), "ok");
        assert_eq!(code(p.check(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", &file(Some("a.svg"), None))), "ok");
    }

    #[test]
    fn svg_with_an_xml_declaration_is_svg() {
        let p = ContentPolicy::default();
        let svg = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        for declared in
            [file(Some("logo.svg"), None), file(None, Some("image/svg+xml")), file(Some("logo.svg"), Some("image/svg+xml"))]
        {
            let s = p.check(svg, &declared).unwrap();
            assert_eq!((s.detected, s.content_type.as_str()), (Some("text/xml"), "image/svg+xml"), "{declared:?}");
        }
        assert_eq!(p.check(svg, &file(Some("feed.xml"), None)).unwrap().content_type, "text/xml");
        assert_eq!(code(p.check(svg, &file(Some("logo.png"), None))), "content_type_mismatch");
    }

    #[test]
    fn declared_types_must_agree_with_the_content() {
        let p = ContentPolicy::default();
        assert_eq!(code(p.check(ZIP, &file(Some("photo.jpg"), None))), "content_type_mismatch");
        assert_eq!(code(p.check(PNG, &file(None, Some("image/jpeg")))), "content_type_mismatch");
        assert_eq!(code(p.check(b"plain text", &file(Some("a.png"), None))), "content_type_mismatch");
        assert_eq!(code(ContentPolicy::default().require_match(false).check(ZIP, &file(Some("photo.jpg"), None))), "ok");
    }

    #[test]
    fn allow_and_deny_lists() {
        let images = ContentPolicy::default().allow(["image/*"]);
        assert_eq!(code(images.check(PNG, &file(None, None))), "ok");
        assert_eq!(code(images.check(b"text", &file(None, None))), "content_not_allowed");
        let no_zip = ContentPolicy::default().deny(["application/zip"]);
        assert_eq!(code(no_zip.check(ZIP, &file(None, None))), "content_denied");
    }
}
