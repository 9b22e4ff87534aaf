//! Active content in markup stored as an image or other media: a streaming scan of the whole
//! file with an XML tokenizer ([`quick_xml`]).
//!
//! Browsers execute SVG, and render XML and HTML, wherever they are opened as documents, so a
//! file stored as `image/svg+xml` (or as any media type while it looks like markup) is refused
//! when it holds what the OWASP file-upload guidance calls active content: scripts, event
//! handlers, embedded documents, script URLs, DTDs that declare entities, external
//! references, and animations that would set any of these.
//!
//! # Design
//! The scan is fed chunk by chunk as the body streams ([`MarkupScan::feed`]) and never holds the
//! file: each chunk is tokenized in place, and only a token that a chunk boundary cut in two (a
//! tag, a processing instruction, a DOCTYPE) is carried over and tokenized again, whole, once its
//! end arrives. Comments and CDATA sections, whose content is never active, are skipped by
//! looking for their terminator, so they cost no memory however long they are. Memory is
//! therefore one chunk plus the longest single tag, and the scan stops at
//! [`ContentPolicy::markup_scan_limit`] bytes (4 MiB by default): markup beyond it is refused
//! as unchecked rather than stored, which also bounds the carried tag.
//!
//! quick-xml reports a syntax error only where its input ends inside a token, which is exactly
//! the "wait for more" signal a chunked scan needs; anything it cannot read otherwise
//! (control characters, which also betray UTF-16 or ISO-2022 text whose markup a byte scan
//! would miss, invalid character references in a checked attribute, unknown `<!` markup) is
//! refused as `invalid_markup`, since browsers stop at such errors and a scan that cannot read
//! on cannot vouch for what follows. A token left unfinished at the end of the input is not a
//! finding: browsers never build an element from an unterminated tag, and a resumable upload's
//! request may end anywhere.
//!
//! A carried tag is not tokenized again with every chunk: quick-xml's own end finder for its
//! kind ([`ElementParser`], [`PiParser`]) is fed only the new bytes and says when it can be
//! whole, so a tag that spans many chunks is read twice, not once per chunk.

use super::ContentPolicy;
use crate::error::{BoxError, Problem};
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use http::StatusCode;
use quick_xml::{
    Reader,
    errors::{Error as XmlError, SyntaxError},
    escape::{resolve_predefined_entity, unescape_with},
    events::{BytesStart, Event},
    parser::{ElementParser, Parser as _, PiParser},
};

/// Elements that run script or embed another document. Names are compared without their
/// namespace prefix and case-insensitively (HTML ignores case; being stricter costs nothing).
const ACTIVE_ELEMENTS: [&str; 11] =
    ["script", "foreignobject", "iframe", "frame", "frameset", "embed", "object", "applet", "handler", "meta", "base"];

/// Attributes whose value is a URL (or, for `values`, a `;`-separated list of them) that a
/// browser may navigate to or load.
const URL_ATTRIBUTES: [&str; 10] = ["href", "src", "from", "to", "values", "by", "action", "formaction", "data", "srcdoc"];

/// SMIL animation elements: they set other attributes of their target over time.
const ANIMATIONS: [&str; 5] = ["animate", "set", "animatemotion", "animatetransform", "animatecolor"];

/// Schemes that run script when navigated to.
const SCRIPT_SCHEMES: [&str; 3] = ["javascript:", "vbscript:", "livescript:"];

/// Types of `data:` URLs that are documents (and so may run script) rather than plain data.
const DOCUMENT_TYPES: [&str; 5] = ["text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A media type whose content might be markup: scan once it starts with `<`.
    Undecided,
    Scanning,
    /// Not markup: nothing to do.
    Off,
}

/// Where the previous chunk left the tokenizer.
#[derive(Debug)]
enum Pending {
    /// Between tokens (or in text, which needs no context).
    Nothing,
    /// A token cut by the chunk boundary, from its `<`: tokenized again, once, when quick-xml's
    /// own end finder for its kind has seen its end.
    Token { bytes: Vec<u8>, end: EndFinder },
    /// Inside a comment or CDATA section: everything up to this terminator is skipped. Holds the
    /// last bytes seen, in case the terminator straddles the boundary.
    Skip { terminator: &'static [u8], tail: Vec<u8> },
}

/// A scan of one file for active content, fed its bytes in order. See the module docs.
#[derive(Debug)]
pub(crate) struct MarkupScan {
    mode: Mode,
    /// The type the file would be stored as, for messages.
    content_type: String,
    limit: u64,
    /// Bytes fed so far.
    seen: u64,
    /// Bytes given to the tokenizer so far (more than `seen` when tokens are carried).
    tokenized: u64,
    pending: Pending,
}

/// Finds where a carried token ends, fed only the bytes that arrive after it was carried, so a
/// long tag costs one pass however many chunks it spans.
#[derive(Debug)]
enum EndFinder {
    /// A start or empty tag: `>` outside quoted attribute values.
    Element(ElementParser),
    /// A processing instruction or XML declaration: `?>`.
    Pi(PiParser),
    /// Anything else (an end tag, the start of `<!` markup): any `>`.
    AnyGt,
}

impl EndFinder {
    /// The finder for `token` (which starts with `<`), fed what it holds already, from the
    /// byte after `<` as quick-xml feeds its own.
    fn new(token: &[u8]) -> Self {
        let mut finder = match token.get(1) {
            Some(b'?') => EndFinder::Pi(PiParser::default()),
            // quick-xml's DOCTYPE parser is not public; comments and CDATA are skipped once
            // recognised. Any `>` may end these: sometimes too early, never too late.
            Some(b'!') => EndFinder::AnyGt,
            // Start, empty and end tags alike.
            _ => EndFinder::Element(ElementParser::default()),
        };
        finder.ends_in(token.get(1..).unwrap_or_default());
        finder
    }

    /// Whether the token ends within `bytes`, the next ones after those seen before.
    fn ends_in(&mut self, bytes: &[u8]) -> bool {
        match self {
            EndFinder::Element(p) => p.feed(bytes).is_some(),
            EndFinder::Pi(p) => p.feed(bytes).is_some(),
            EndFinder::AnyGt => bytes.contains(&b'>'),
        }
    }
}

/// What the tokenizer needs once a buffer is used up.
enum Stop {
    /// Everything was tokenized.
    Done,
    /// The token starting here is unfinished.
    Carry(usize),
    /// A comment or CDATA section is open; its content starts here.
    Skip(&'static [u8], usize),
}

impl MarkupScan {
    /// The scan `policy` asks for on a file it accepted as `content_type`, if any.
    pub(crate) fn for_type(policy: &ContentPolicy, content_type: &str) -> Option<Self> {
        if !policy.refuses_disguised_code() {
            return None;
        }
        let mode = if content_type == "image/svg+xml" {
            Mode::Scanning
        } else if super::policy::is_media(content_type) {
            Mode::Undecided
        } else {
            return None;
        };
        Some(Self {
            mode,
            content_type: content_type.to_owned(),
            limit: policy.markup_limit(),
            seen: 0,
            tokenized: 0,
            pending: Pending::Nothing,
        })
    }

    /// Whether the rest of the file needs no scanning (it is not markup).
    pub(crate) fn is_done(&self) -> bool {
        self.mode == Mode::Off
    }

    /// Scans the next bytes of the file; the first finding is the error.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Problem> {
        let start = self.seen;
        self.seen += chunk.len() as u64;
        if self.mode == Mode::Undecided {
            // A byte order mark and white space may come before the first tag.
            match chunk.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0xEF | 0xBB | 0xBF)) {
                None => return Ok(()),
                Some(b'<') => self.mode = Mode::Scanning,
                Some(_) => self.mode = Mode::Off,
            }
        }
        if self.mode == Mode::Off {
            return Ok(());
        }
        if self.seen > self.limit {
            return Err(self.too_large());
        }
        if let Some(i) = chunk.iter().position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) {
            return Err(self.invalid(format!("a control character (0x{:02x})", chunk[i]), start + i as u64));
        }
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => self.scan(chunk, start),
            Pending::Token { bytes: mut token, mut end } => {
                let token_start = start - token.len() as u64;
                token.extend_from_slice(chunk);
                if !end.ends_in(chunk) {
                    self.pending = Pending::Token { bytes: token, end };
                    return Ok(());
                }
                self.scan(&token, token_start)
            }
            Pending::Skip { terminator, mut tail } => {
                let tail_start = start - tail.len() as u64;
                tail.extend_from_slice(chunk);
                match find(&tail, terminator) {
                    Some(i) => {
                        let resume = i + terminator.len();
                        self.scan(&tail[resume..], tail_start + resume as u64)
                    }
                    None => {
                        let keep = tail.len().saturating_sub(terminator.len() - 1);
                        tail.drain(..keep);
                        self.pending = Pending::Skip { terminator, tail };
                        Ok(())
                    }
                }
            }
        }
    }

    /// The input ended. A token still carried is tokenized as it is — a safety net should an end
    /// finder ever wait for more than quick-xml's reader would; whatever stays unfinished is no
    /// finding.
    pub(crate) fn finish(&mut self) -> Result<(), Problem> {
        if let Pending::Token { bytes, .. } = std::mem::replace(&mut self.pending, Pending::Nothing) {
            let at = self.seen - bytes.len() as u64;
            self.tokenize(&bytes, at)?;
        }
        Ok(())
    }

    /// Tokenizes `buf`, which starts at byte `at` of the file and between two tokens (or in
    /// text), and leaves what the next chunk must continue in `self.pending`.
    fn scan(&mut self, buf: &[u8], at: u64) -> Result<(), Problem> {
        match self.tokenize(buf, at)? {
            Stop::Done => {}
            Stop::Carry(from) => {
                let bytes = buf[from..].to_vec();
                self.pending = Pending::Token { end: EndFinder::new(&bytes), bytes };
            }
            Stop::Skip(terminator, from) => {
                let rest = &buf[from.min(buf.len())..];
                match find(rest, terminator) {
                    // Cannot happen for a token quick-xml found unclosed; kept for safety.
                    Some(i) => return self.scan(&rest[i + terminator.len()..], at + (from + i + terminator.len()) as u64),
                    None => {
                        let keep = rest.len().saturating_sub(terminator.len() - 1);
                        self.pending = Pending::Skip { terminator, tail: rest[keep..].to_vec() };
                    }
                }
            }
        }
        Ok(())
    }

    fn tokenize(&mut self, buf: &[u8], at: u64) -> Result<Stop, Problem> {
        self.tokenized += buf.len() as u64;
        let mut reader = Reader::from_reader(buf);
        let config = reader.config_mut();
        // The scan starts readers in the middle of documents and reads HTML too: only the
        // tokens matter, not whether they nest.
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.allow_dangling_amp = true;
        config.check_comments = false;
        loop {
            let pos = reader.buffer_position() as usize;
            let offset = at + pos as u64;
            match reader.read_event() {
                Ok(Event::Eof) => return Ok(Stop::Done),
                Ok(Event::Start(e) | Event::Empty(e)) => self.check_element(&e, offset)?,
                Ok(Event::DocType(doctype)) => {
                    if doctype.as_ref().contains(&b'[') {
                        return Err(self.active("a DOCTYPE with an internal subset (entity declarations)", offset));
                    }
                }
                Ok(Event::PI(pi)) => {
                    let target = pi.target().to_ascii_lowercase();
                    if target.is_empty() || target.starts_with(b"php") || target.starts_with(b"=") {
                        return Err(self.active("a server-side script processing instruction", offset));
                    }
                    if target == b"xml-stylesheet" {
                        return Err(self.active("an xml-stylesheet processing instruction", offset));
                    }
                }
                Ok(_) => {}
                Err(XmlError::Syntax(e)) => return self.unfinished(e, &buf[pos..], pos, offset),
                Err(e) => return Err(self.invalid(e.to_string(), offset)),
            }
        }
    }

    /// Input ended inside the token at `pos` (`rest` is it): carry it, skip it, or refuse it.
    fn unfinished(&self, error: SyntaxError, rest: &[u8], pos: usize, offset: u64) -> Result<Stop, Problem> {
        let is_prefix = |of: &[u8]| rest.len() < of.len() && of[..rest.len()].eq_ignore_ascii_case(rest);
        match error {
            SyntaxError::UnclosedComment if rest.starts_with(b"<!--") => Ok(Stop::Skip(b"-->", pos + 4)),
            SyntaxError::UnclosedCData if rest.starts_with(b"<![CDATA[") => Ok(Stop::Skip(b"]]>", pos + 9)),
            SyntaxError::UnclosedDoctype if rest.contains(&b'[') => {
                Err(self.active("a DOCTYPE with an internal subset (entity declarations)", offset))
            }
            SyntaxError::UnclosedComment | SyntaxError::UnclosedCData | SyntaxError::InvalidBangMarkup
                if [&b"<!--"[..], b"<![CDATA[", b"<!DOCTYPE", b"<!ENTITY"].iter().any(|of| is_prefix(of)) =>
            {
                Ok(Stop::Carry(pos))
            }
            SyntaxError::InvalidBangMarkup if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"<!ENTITY") => {
                Err(self.active("an entity declaration", offset))
            }
            SyntaxError::InvalidBangMarkup | SyntaxError::UnclosedComment | SyntaxError::UnclosedCData => {
                Err(self.invalid("markup that is neither a comment, CDATA nor a DOCTYPE", offset))
            }
            SyntaxError::UnclosedTag
            | SyntaxError::UnclosedSingleQuotedAttributeValue
            | SyntaxError::UnclosedDoubleQuotedAttributeValue
            | SyntaxError::UnclosedPI
            | SyntaxError::UnclosedXmlDecl
            | SyntaxError::UnclosedDoctype => Ok(Stop::Carry(pos)),
        }
    }

    fn check_element(&self, element: &BytesStart<'_>, offset: u64) -> Result<(), Problem> {
        // Characters no name may hold, which an HTML parser would read as separators
        // (`<svg/onload=...>`): refused rather than guessed at.
        let unnamable = |name: &[u8]| name.iter().any(|b| b"/=\"'<>".contains(b));
        let qualified = element.name();
        if unnamable(qualified.as_ref()) {
            return Err(self.invalid("a malformed element name", offset));
        }
        let name = local(qualified.as_ref());
        if one_of(name, &ACTIVE_ELEMENTS) {
            return Err(self.active(format!("a <{}> element", String::from_utf8_lossy(name)), offset));
        }
        let is_use = name.eq_ignore_ascii_case(b"use");
        let is_animation = one_of(name, &ANIMATIONS);
        for attribute in element.html_attributes().with_checks(false) {
            let attribute = attribute.map_err(|e| self.invalid(e.to_string(), offset))?;
            let qualified = attribute.key.as_ref();
            if unnamable(qualified) {
                return Err(self.invalid("a malformed attribute name", offset));
            }
            if qualified.len() > 6 && qualified[..6].eq_ignore_ascii_case(b"xmlns:") {
                continue;
            }
            let key = local(qualified);
            let text = || String::from_utf8_lossy(key).to_ascii_lowercase();
            if is_event_handler(key) {
                return Err(self.active(format!("an {} event handler", text()), offset));
            }
            let is_url = one_of(key, &URL_ATTRIBUTES);
            let is_use_href = is_use && key.eq_ignore_ascii_case(b"href");
            let is_animated_name = is_animation && key.eq_ignore_ascii_case(b"attributename");
            if !(is_url || is_use_href || is_animated_name) {
                continue;
            }
            let value =
                decode(&attribute.value).map_err(|why| self.invalid(format!("the {} attribute holds {why}", text()), offset))?;
            if is_url {
                let urls: Box<dyn Iterator<Item = &str>> = if key.eq_ignore_ascii_case(b"values") {
                    Box::new(value.split(';'))
                } else {
                    Box::new(std::iter::once(value.as_str()))
                };
                for url in urls {
                    if let Some(kind) = script_url(url) {
                        return Err(self.active(format!("a {kind} URL in {}", text()), offset));
                    }
                }
            }
            if is_use_href && !value.trim().starts_with('#') {
                return Err(self.active("a <use> of another document", offset));
            }
            if is_animated_name && is_event_handler(local(value.trim().as_bytes())) {
                return Err(self.active("an animation of an event handler", offset));
            }
        }
        Ok(())
    }

    fn active(&self, found: impl Into<String>, offset: u64) -> Problem {
        let found = found.into();
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "active_content",
            format!(
                "the file holds active content ({found}) at byte {offset}, which a file stored as {} may not",
                self.content_type
            ),
        )
        .with("found", found)
        .with("offset", offset)
        .with("detected", self.content_type.clone())
    }

    fn invalid(&self, why: impl Into<String>, offset: u64) -> Problem {
        let why = why.into();
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_markup",
            format!(
                "the file cannot be read as markup at byte {offset} ({why}), so it cannot be shown to be free of active content as a file stored as {} must be",
                self.content_type
            ),
        )
        .with("offset", offset)
        .with("detected", self.content_type.clone())
    }

    fn too_large(&self) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "markup_too_large",
            format!(
                "markup stored as {} is checked for active content up to {} bytes, and this file is larger",
                self.content_type, self.limit
            ),
        )
        .with("limit", self.limit)
        .with("detected", self.content_type.clone())
    }
}

/// Whether a file of `detected_type` is scanned for active content under `policy` (else
/// [`scan_active_content`] accepts it without reading a byte).
pub(crate) fn may_hold_active_content(policy: &ContentPolicy, detected_type: &str) -> bool {
    MarkupScan::for_type(policy, detected_type).is_some()
}

/// Scans a whole file (a finished resumable upload read back from storage) for active content,
/// as the one-shot routes do while the body streams; `detected_type` is the type it is stored
/// as. Reads no further than the policy's scan limit, and nothing past the first bytes of a
/// media file that is not markup.
///
/// The resumable engine calls this once an upload is whole and before it is catalogued
/// ([`Resumable::scan`](crate::resumable::Resumable::scan)); a refusal discards the upload.
pub(crate) async fn scan_active_content<S, E>(policy: &ContentPolicy, detected_type: &str, bytes: S) -> Result<(), Problem>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    let Some(mut scan) = MarkupScan::for_type(policy, detected_type) else { return Ok(()) };
    let mut bytes = std::pin::pin!(bytes);
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| crate::storage::StoreError::backend(e).to_problem())?;
        scan.feed(&chunk)?;
        if scan.is_done() {
            return Ok(());
        }
    }
    scan.finish()
}

/// Whether `name` is one of `names` (lowercase), in any case.
fn one_of(name: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// `on*` attributes are event handlers (in any case: HTML ignores it).
fn is_event_handler(name: &[u8]) -> bool {
    name.len() > 2 && name[..2].eq_ignore_ascii_case(b"on")
}

/// The local part of a qualified name (`xlink:href` → `href`).
fn local(name: &[u8]) -> &[u8] {
    name.rsplit(|&b| b == b':').next().unwrap_or(name)
}

/// An attribute value with its character references and entities replaced, as a browser sees
/// it. Entities a DTD would have to declare count as nothing, except the HTML ones that spell
/// URL syntax (`&colon;`, `&Tab;`, `&NewLine;`), in case the markup is read as HTML.
fn decode(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let decoded = unescape_with(&text, |entity| {
        resolve_predefined_entity(entity).or(Some(match entity {
            "colon" => ":",
            "Tab" => "\t",
            "NewLine" => "\n",
            _ => "",
        }))
    })
    .map_err(|e| e.to_string())?;
    Ok(decoded.into_owned())
}

/// The kind of script URL `url` is, as a browser's URL parser reads it: leading and trailing
/// controls and spaces dropped, tabs and newlines removed anywhere, scheme in any case.
fn script_url(url: &str) -> Option<String> {
    let url: String = url
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect::<String>()
        .to_ascii_lowercase();
    if let Some(scheme) = SCRIPT_SCHEMES.iter().find(|s| url.starts_with(**s)) {
        return Some((*scheme).to_owned());
    }
    let data = url.strip_prefix("data:")?;
    let media_type = data.split([',', ';']).next().unwrap_or_default().trim();
    DOCUMENT_TYPES.contains(&media_type).then(|| format!("data:{media_type}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict on `doc` fed in `chunks`-sized pieces: `Ok` or the problem's code and offset.
    fn verdict(scan: Option<MarkupScan>, doc: &[u8], chunks: usize) -> Result<(), (&'static str, Option<u64>)> {
        let mut scan = scan.expect("a scan");
        for chunk in doc.chunks(chunks.max(1)) {
            scan.feed(chunk).map_err(|p| (p.code(), p.extension("offset").and_then(|o| o.as_u64())))?;
        }
        Ok(())
    }

    fn svg_scan() -> Option<MarkupScan> {
        MarkupScan::for_type(&ContentPolicy::default(), "image/svg+xml")
    }

    const SVG: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">"#;

    /// (what, markup inside an `<svg>`, expected code). Every case is also checked split at
    /// every byte, and one byte at a time.
    const CASES: &[(&str, &str, Option<&str>)] = &[
        // What real SVGs hold.
        ("shapes", r##"<rect x="1" y="1" width="2" height="2" fill="#c0ffee"/><circle r="4"/>"##, None),
        ("links within the file and to the web", r##"<a href="#top"/><a xlink:href="https://example.com/?a=1&amp;b=2"/>"##, None),
        ("an embedded raster image", r#"<image href="data:image/png;base64,iVBORw0KGgo=" width="1"/>"#, None),
        ("use of a symbol in the file", r##"<use href="#icon"/><use xlink:href=" #icon2"/>"##, None),
        ("an animation of opacity", r#"<animate attributeName="opacity" values="0;1" dur="1s"/>"#, None),
        ("attributes that merely start with o", r#"<text font-family="one" opacity="0.5" orient="auto">on</text>"#, None),
        ("script-like text", "<text>javascript:alert(1) onload=&lt;script&gt;</text>", None),
        ("a comment about scripts", "<!-- <script>alert(1)</script> onload=x <foreignObject> -->", None),
        ("CSS in CDATA", "<style><![CDATA[ .a { fill: red } /* <script> onload= ]]> */ ]]></style>", None),
        ("metadata and an XMP packet", r#"<metadata><?xpacket begin="" id="W5M0"?><rdf:RDF/></metadata>"#, None),
        ("an attribute without a value", "<g data-flag/>", None),
        // Scripts and event handlers.
        ("an onload handler", r#"<g onload="alert(1)"/>"#, Some("active_content")),
        ("an event handler in capitals", "<g ONCLICK='x'/>", Some("active_content")),
        ("a prefixed event handler", r#"<g ev:onclick="x"/>"#, Some("active_content")),
        ("an event handler without a value", "<g onmouseover>", Some("active_content")),
        ("a script element", "<script>alert(1)</script>", Some("active_content")),
        ("an empty script element with a source", r#"<script href="https://evil.example/x.js"/>"#, Some("active_content")),
        ("a script in capitals", "<SCRIPT>alert(1)</SCRIPT>", Some("active_content")),
        ("an XHTML script", r#"<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>"#, Some("active_content")),
        ("a foreignObject", "<foreignObject><div/></foreignObject>", Some("active_content")),
        ("an iframe", r#"<iframe src="https://example.com"/>"#, Some("active_content")),
        ("an embed", r#"<embed src="x.swf"/>"#, Some("active_content")),
        ("an object", r#"<object data="x.html"/>"#, Some("active_content")),
        // Script URLs, however spelled.
        ("a javascript: link", r#"<a href="javascript:alert(1)"/>"#, Some("active_content")),
        ("an xlink in mixed case", r#"<a xlink:href="JaVaScRiPt:alert(1)"/>"#, Some("active_content")),
        ("a tab as a character reference", r#"<a href="jav&#x09;ascript:alert(1)"/>"#, Some("active_content")),
        ("a letter as a character reference", r#"<a href="&#106;avascript:alert(1)"/>"#, Some("active_content")),
        ("leading spaces and a newline reference", r#"<a href="  &#x0A; javascript:alert(1)"/>"#, Some("active_content")),
        ("a carriage return inside", "<a href=\"java\rscript:alert(1)\"/>", Some("active_content")),
        ("the HTML colon entity", r#"<a href="javascript&colon;alert(1)"/>"#, Some("active_content")),
        ("an unknown entity inside", r#"<a href="java&shy;script:alert(1)"/>"#, Some("active_content")),
        (
            "another prefix for xlink",
            r#"<a x:href="javascript:alert(1)" xmlns:x="http://www.w3.org/1999/xlink"/>"#,
            Some("active_content"),
        ),
        ("vbscript", r#"<a href="vbscript:msgbox(1)"/>"#, Some("active_content")),
        ("an HTML data: URL", r#"<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"/>"#, Some("active_content")),
        ("a base64 HTML data: URL", r#"<a href="data:text/html;base64,PHNjcmlwdD4="/>"#, Some("active_content")),
        ("a spaced, capitalised data: URL", r#"<a href="data: TEXT/HTML ,x"/>"#, Some("active_content")),
        ("an SVG data: URL", r#"<a href="data:image/svg+xml,&lt;svg onload=alert(1)&gt;"/>"#, Some("active_content")),
        // Animations that would set them.
        ("set to a javascript: URL", r#"<a><set attributeName="href" to="javascript:alert(1)"/></a>"#, Some("active_content")),
        (
            "a script URL among animated values",
            r##"<animate attributeName="href" values="#a; javascript:alert(1)"/>"##,
            Some("active_content"),
        ),
        (
            "animated from a script URL",
            r#"<animate attributeName="xlink:href" from="javascript:alert(1)"/>"#,
            Some("active_content"),
        ),
        ("an animated event handler", r#"<set attributeName="onclick" to="alert(1)"/>"#, Some("active_content")),
        // Other documents and DTDs.
        ("use of another document", r#"<use href="https://evil.example/sprite.svg#x"/>"#, Some("active_content")),
        ("use of a relative document", r##"<use xlink:href="sprite.svg#x"/>"##, Some("active_content")),
        ("an entity declaration outside a DTD", r#"<!ENTITY x "y">"#, Some("active_content")),
        ("an XSLT stylesheet", r#"<?xml-stylesheet type="text/xsl" href="evil.xsl"?>"#, Some("active_content")),
        ("PHP", "<?php system($_GET['c']); ?>", Some("active_content")),
        ("a short PHP tag", "<? echo 1; ?>", Some("active_content")),
        // What cannot be read.
        ("a slash for a space", "<svg/onload=alert(1)>", Some("invalid_markup")),
        ("a slash between attributes", r#"<g x/onload="alert(1)"/>"#, Some("invalid_markup")),
        ("an invalid character reference", r#"<a href="&#0;javascript:alert(1)"/>"#, Some("invalid_markup")),
        ("unknown markup", "<!x>", Some("invalid_markup")),
        ("a control character", "<text>\u{1b}$B</text>", Some("invalid_markup")),
    ];

    #[test]
    fn markup_is_judged_by_its_tokens() {
        let mut failures = Vec::new();
        for (what, markup, expected) in CASES {
            let doc = format!("{SVG}\n{markup}\n</svg>\n");
            let whole = verdict(svg_scan(), doc.as_bytes(), doc.len());
            if whole.map_err(|(code, _)| code) != expected.map_or(Ok(()), Err) {
                failures.push(format!("{what}: expected {expected:?}, got {whole:?}"));
                continue;
            }
            // Wherever the chunks are cut, the verdict and where it was found are the same.
            for cut in 1..doc.len() {
                let mut scan = svg_scan().unwrap();
                let got = scan.feed(&doc.as_bytes()[..cut]).and_then(|()| scan.feed(&doc.as_bytes()[cut..]));
                let got = got.map_err(|p| (p.code(), p.extension("offset").and_then(|o| o.as_u64())));
                if got != whole {
                    failures.push(format!("{what}, cut at {cut}: {got:?}, not {whole:?}"));
                    break;
                }
            }
            let bytewise = verdict(svg_scan(), doc.as_bytes(), 1);
            if bytewise != whole {
                failures.push(format!("{what}, one byte at a time: {bytewise:?}, not {whole:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn prologs_and_dtds() {
        let cases: [(&str, &str, Option<&str>); 6] = [
            ("an XML declaration", "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n", None),
            ("a byte order mark", "\u{feff}<?xml version=\"1.0\"?>", None),
            (
                "the SVG 1.1 DTD by reference",
                r#"<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">"#,
                None,
            ),
            ("an internal subset", r#"<!DOCTYPE svg [ <!ENTITY x SYSTEM "file:///etc/passwd"> ]>"#, Some("active_content")),
            (
                "billion laughs",
                r#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>"#,
                Some("active_content"),
            ),
            ("an empty internal subset", "<!doctype svg []>", Some("active_content")),
        ];
        for (what, prolog, expected) in cases {
            let doc = format!("{prolog}{SVG}<g/></svg>");
            for chunks in [doc.len(), 7, 1] {
                let got = verdict(svg_scan(), doc.as_bytes(), chunks).map_err(|(code, _)| code);
                assert_eq!(got, expected.map_or(Ok(()), Err), "{what} in chunks of {chunks}");
            }
        }
    }

    #[test]
    fn offsets_point_at_the_finding() {
        let doc = format!("{SVG}<g/><g onload=\"x\"/></svg>");
        let at = doc.find("<g onload").unwrap() as u64;
        for chunks in [doc.len(), 10, 1] {
            assert_eq!(verdict(svg_scan(), doc.as_bytes(), chunks), Err(("active_content", Some(at))), "chunks of {chunks}");
        }
        let err = svg_scan().unwrap().feed(doc.as_bytes()).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.extension("found").unwrap(), "an onload event handler");
        assert!(err.detail().contains("image/svg+xml"), "{}", err.detail());
    }

    #[test]
    fn utf16_markup_cannot_hide_behind_its_zero_bytes() {
        let utf16: Vec<u8> = "\u{feff}<svg onload=\"alert(1)\"/>".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(verdict(svg_scan(), &utf16, 4096).map_err(|(code, _)| code), Err("invalid_markup"));
    }

    #[test]
    fn comments_and_long_text_hold_no_memory() {
        let mut scan = svg_scan().unwrap();
        scan.feed(SVG.as_bytes()).unwrap();
        scan.feed(b"<text>").unwrap();
        for _ in 0..64 {
            scan.feed(&[b'a'; 16 * 1024]).unwrap();
            assert!(matches!(scan.pending, Pending::Nothing), "text is not carried");
        }
        scan.feed(b"</text><!-- ").unwrap();
        for _ in 0..64 {
            scan.feed(&[b'-'; 16 * 1024]).unwrap();
            assert!(matches!(&scan.pending, Pending::Skip { tail, .. } if tail.len() <= 2), "{:?}", scan.pending);
        }
        scan.feed(b"-><g onload=\"x\"/>").unwrap_err();
    }

    #[test]
    fn a_tag_cut_by_chunks_is_read_whole() {
        let mut scan = svg_scan().unwrap();
        scan.feed(SVG.as_bytes()).unwrap();
        scan.feed(b"<path d=\"").unwrap();
        for _ in 0..16 {
            scan.feed(b"M0 0L1 1 ").unwrap();
        }
        assert!(matches!(&scan.pending, Pending::Token { bytes, .. } if bytes.starts_with(b"<path")));
        let err = scan.feed(b"\" onload=\"x\"/>").unwrap_err();
        assert_eq!(err.code(), "active_content");
        assert_eq!(err.extension("offset").unwrap(), SVG.len());
    }

    #[test]
    fn a_long_tag_is_tokenized_twice_not_once_per_chunk() {
        let mut scan = svg_scan().unwrap();
        scan.feed(SVG.as_bytes()).unwrap();
        scan.feed(b"<text title=\"").unwrap();
        // A `>` in every chunk, inside the quoted value: only quick-xml's quote-aware end finder
        // knows the tag goes on.
        for _ in 0..1024 {
            scan.feed(b"a > b, ".repeat(128).as_slice()).unwrap();
        }
        scan.feed(b"\" onclick=\"x\">").unwrap_err();
        assert!(scan.tokenized < 2 * scan.seen + 1024, "{} bytes tokenized for {} fed", scan.tokenized, scan.seen);
    }

    #[test]
    fn an_unfinished_token_at_the_end_is_no_finding() {
        for tail in [
            "<g onload=\"alert(1)\"",
            "<g title='>' onload='x'",
            "</g ' > <g onload='x'/>",
            "<?php echo 1; ?",
            "<!-- <g onload='x'/>",
        ] {
            let doc = format!("{SVG}<g/>{tail}");
            for chunks in [doc.len(), 3, 1] {
                let mut scan = svg_scan().unwrap();
                for chunk in doc.as_bytes().chunks(chunks) {
                    scan.feed(chunk).unwrap();
                }
                assert_eq!(scan.finish(), Ok(()), "{tail:?} in chunks of {chunks}");
            }
        }
        // Ended between tokens, or after complete ones, the verdict stands.
        let mut scan = svg_scan().unwrap();
        scan.feed(format!("{SVG}<g/>").as_bytes()).unwrap();
        assert_eq!(scan.finish(), Ok(()));
    }

    #[test]
    fn markup_past_the_limit_is_refused() {
        let policy = ContentPolicy::default().markup_scan_limit(1000);
        let mut scan = MarkupScan::for_type(&policy, "image/svg+xml").unwrap();
        scan.feed(SVG.as_bytes()).unwrap();
        let err = (0..100).find_map(|_| scan.feed(b"<rect width=\"1\"/>").err()).expect("refused");
        assert_eq!((err.status(), err.code()), (StatusCode::PAYLOAD_TOO_LARGE, "markup_too_large"));
        assert_eq!(err.extension("limit").unwrap(), 1000);
        assert!(scan.seen <= 1000 + 17, "refused at the chunk that passed the limit");
    }

    #[test]
    fn which_files_are_scanned() {
        let policy = ContentPolicy::default();
        assert!(MarkupScan::for_type(&policy, "text/plain").is_none());
        assert!(MarkupScan::for_type(&policy, "application/json").is_none());
        assert!(MarkupScan::for_type(&policy.clone().refuse_disguised_code(false), "image/svg+xml").is_none());
        // Media that turns out to be markup is scanned; media that is not is left alone.
        let png = MarkupScan::for_type(&policy, "image/png");
        let onload = b"  <svg onload=\"alert(1)\"/>";
        assert_eq!(verdict(png, onload, 3).map_err(|(code, _)| code), Err("active_content"));
        let mut png = MarkupScan::for_type(&policy, "image/png").unwrap();
        png.feed(b"\x89PNG\r\n\x1a\n").unwrap();
        assert!(png.is_done());
        png.feed(onload).unwrap();
        let mut font = MarkupScan::for_type(&policy, "font/woff2").unwrap();
        font.feed(b"\n \n").unwrap();
        assert!(!font.is_done(), "undecided while only white space has come");
    }

    #[tokio::test]
    async fn finished_uploads_are_scanned_from_storage() {
        let policy = ContentPolicy::default();
        let chunks = |parts: Vec<Result<&'static [u8], std::io::Error>>| {
            futures_util::stream::iter(parts.into_iter().map(|r| r.map(Bytes::from_static)))
        };
        let padding: &'static [u8] = Box::leak(vec![b' '; 100 * 1024].into_boxed_slice());
        let clean = chunks(vec![Ok(b"<svg>"), Ok(padding), Ok(b"<g/></svg>")]);
        assert_eq!(scan_active_content(&policy, "image/svg+xml", clean).await, Ok(()));
        let hostile = chunks(vec![Ok(b"<svg>"), Ok(padding), Ok(b"<g onl"), Ok(b"oad=\"x\"/></svg>")]);
        let err = scan_active_content(&policy, "image/svg+xml", hostile).await.unwrap_err();
        assert_eq!((err.code(), err.extension("offset").unwrap().as_u64()), ("active_content", Some(5 + 100 * 1024)));
        let broken = chunks(vec![Ok(b"<svg>"), Err(std::io::Error::other("disk gone"))]);
        assert_eq!(scan_active_content(&policy, "image/svg+xml", broken).await.unwrap_err().code(), "storage_error");
        // A PNG is left after its first bytes: the failing read after them is never reached.
        let png = chunks(vec![Ok(b"\x89PNG\r\n\x1a\n"), Err(std::io::Error::other("not read"))]);
        assert_eq!(scan_active_content(&policy, "image/png", png).await, Ok(()));
        let text = chunks(vec![Err(std::io::Error::other("not read"))]);
        assert_eq!(scan_active_content(&policy, "text/plain", text).await, Ok(()));
    }
}
