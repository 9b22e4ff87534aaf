//! The IETF resumable-upload draft at the tus endpoint: interop version 8 in depth, and what
//! each of the interop versions 5 to 9 owes its clients ([`INTEROP`]).

use crate::{Case, OFFSET_STREAM, PARTIAL_UPLOAD, Session, TUS, UNKNOWN_ID, app, uploads};
use intake::storage::InMemory;

const MISMATCHING_OFFSET: &str = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const COMPLETED_UPLOAD: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const INCONSISTENT_LENGTH: &str = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";
const LIMIT: &str = "min-size=0, max-size=4096";

fn create(name: &'static str, var: &'static str, complete: bool) -> Case {
    Case::new(name, "POST", TUS).draft().header("upload-complete", if complete { "?1" } else { "?0" }).capture(var)
}

fn append(name: &'static str, var: &str, offset: u64, complete: bool, body: &[u8]) -> Case {
    Case::new(name, "PATCH", format!("{{{var}}}"))
        .draft()
        .header("content-type", PARTIAL_UPLOAD)
        .header("upload-offset", offset.to_string())
        .header("upload-complete", if complete { "?1" } else { "?0" })
        .body(body)
}

fn head(name: &'static str, var: &str) -> Case {
    Case::new(name, "HEAD", format!("{{{var}}}")).draft()
}

fn session() -> (InMemory, Session) {
    let store = InMemory::new();
    let s = Session::new(app(uploads(&store).max_raw_body(4096)));
    (store, s)
}

#[tokio::test]
async fn careful_creation_then_appends() {
    let (_store, mut s) = session();
    s.run(&[
        create("creation with Upload-Complete: ?0 and the first bytes", "a", false)
            .header("upload-length", "11")
            .body("hello")
            .status(201)
            .starts_with("location", "/files/tus/")
            .expect("upload-complete", "?0")
            .expect("upload-offset", "5")
            .starts_with("upload-limit", format!("{LIMIT}, max-age="))
            .expect("upload-draft-interop-version", "8"),
        head("offset retrieval", "a")
            .status(204)
            .expect("upload-offset", "5")
            .expect("upload-complete", "?0")
            .expect("upload-length", "11")
            .starts_with("upload-limit", LIMIT)
            .expect("cache-control", "no-store")
            .expect("upload-draft-interop-version", "8"),
        append("append with ?0", "a", 5, false, b" wor").status(204).expect("upload-complete", "?0").expect("upload-offset", "9"),
        append("an offset mismatch", "a", 3, false, b"xx")
            .status(409)
            .expect("upload-offset", "9")
            .expect("upload-complete", "?0")
            .json("type", MISMATCHING_OFFSET)
            .json("expected-offset", 9)
            .json("provided-offset", 3),
        append("the tus content type", "a", 9, false, b"ld").header("content-type", OFFSET_STREAM).status(415),
        append("without Upload-Complete", "a", 9, false, b"ld")
            .without("upload-complete")
            .status(400)
            .code("missing_upload_complete"),
        append("without Upload-Offset", "a", 9, false, b"ld").without("upload-offset").status(400).code("missing_offset"),
        append("a different Upload-Length", "a", 9, false, b"ld")
            .header("upload-length", "12")
            .status(400)
            .json("type", INCONSISTENT_LENGTH),
        head("the refused appends left the offset", "a").status(204).expect("upload-offset", "9"),
        append("append with ?1 completes", "a", 9, true, b"ld")
            .status(200)
            .expect("upload-complete", "?1")
            .expect("upload-draft-interop-version", "8"),
        head("a completed upload", "a")
            .status(204)
            .expect("upload-offset", "11")
            .expect("upload-complete", "?1")
            .expect("upload-length", "11"),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
        append("an empty append to the completed upload", "a", 11, true, b"")
            .status(400)
            .json("type", COMPLETED_UPLOAD)
            .code("upload_completed"),
        append("more bytes for the completed upload", "a", 11, true, b"!")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        Case::new("the file is unchanged", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
    ])
    .await;
}

#[tokio::test]
async fn creation_complete_in_one_request() {
    let (_store, mut s) = session();
    s.run(&[
        create("Upload-Complete: ?1 with the whole body", "a", true)
            .header("upload-length", "5")
            .body("hello")
            .status(200)
            .expect("upload-complete", "?1")
            .expect("upload-draft-interop-version", "8"),
        head("the upload is complete", "a")
            .status(204)
            .expect("upload-complete", "?1")
            .expect("upload-offset", "5")
            .expect("upload-length", "5"),
        Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello".to_vec()),
        create("?1 without Upload-Length: the length is the body's", "b", true)
            .body("hey")
            .status(200)
            .expect("upload-complete", "?1"),
        head("its length", "b").status(204).expect("upload-length", "3"),
        create("?1 with an empty body", "c", true).status(200).expect("upload-complete", "?1"),
        head("an empty upload", "c").status(204).expect("upload-offset", "0").expect("upload-complete", "?1"),
        create("?1 with an Upload-Length other than the body's", "x", true)
            .header("upload-length", "10")
            .body("hello")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        create("?1 over max-size", "y", true).body(vec![b'x'; 4097]).status(413),
    ])
    .await;
}

#[tokio::test]
async fn lengths() {
    let (_store, mut s) = session();
    s.run(&[
        create("?0 with Upload-Length and no body", "a", false).header("upload-length", "11").status(201),
        append("?1 before all of the length is in", "a", 0, true, b"hello")
            .status(400)
            .json("type", INCONSISTENT_LENGTH)
            .code("inconsistent_length"),
        create("?0 without a length", "b", false).body("hel").status(201).expect("upload-offset", "3"),
        head("no length known", "b").status(204).absent("upload-length").expect("upload-complete", "?0"),
        append("the length on an append", "b", 3, false, b"lo")
            .header("upload-length", "6")
            .status(204)
            .expect("upload-offset", "5"),
        head("the length is known", "b").status(204).expect("upload-length", "6"),
        append("past the length", "b", 5, false, b"!!").status(413),
        create("an Upload-Length over max-size", "c", false).header("upload-length", "4097").status(413),
    ])
    .await;
}

/// Only `Upload-Complete: ?1` completes an upload: an offset that reaches the length does not
/// (draft -11 §4.1: the client may still send an empty `?1` append).
#[tokio::test]
async fn reaching_the_length_does_not_complete() {
    let (_store, mut s) = session();
    s.run(&[
        create("?0 with Upload-Length 5 and all 5 bytes", "a", false)
            .header("upload-length", "5")
            .body("hello")
            .status(201)
            .expect("upload-complete", "?0")
            .expect("upload-offset", "5"),
        head("not complete yet", "a").status(204).expect("upload-complete", "?0"),
        append("an empty ?1 append completes it", "a", 5, true, b"").status(200).expect("upload-complete", "?1"),
    ])
    .await;
}

#[tokio::test]
async fn cancellation_and_versions() {
    let (_store, mut s) = session();
    s.run(&[
        create("an upload", "a", false).status(201),
        Case::new("DELETE", "DELETE", "{a}").draft().status(204),
        head("gone", "a").status(404),
        Case::new("an unknown upload", "HEAD", format!("/files/tus/{UNKNOWN_ID}")).draft().status(404),
        Case::new("interop version 4", "POST", TUS)
            .header("upload-draft-interop-version", "4")
            .header("upload-complete", "?0")
            .status(400)
            .code("unsupported_interop_version"),
        Case::new("interop version 10", "POST", TUS)
            .header("upload-draft-interop-version", "10")
            .header("upload-complete", "?0")
            .status(400)
            .code("unsupported_interop_version"),
        Case::new("an interop version that is not a number", "POST", TUS)
            .header("upload-draft-interop-version", "eight")
            .header("upload-complete", "?0")
            .status(400),
        create("creation without Upload-Complete", "x", false)
            .without("upload-complete")
            .status(400)
            .code("missing_upload_complete"),
        create("an Upload-Complete that is not a boolean", "x", false)
            .header("upload-complete", "yes")
            .status(400)
            .code("invalid_header"),
        create("interop version 6: the limit is `expires`", "v6", false)
            .header("upload-draft-interop-version", "6")
            .status(201)
            .expect("upload-draft-interop-version", "6")
            .expect("upload-offset", "0")
            .starts_with("upload-limit", format!("{LIMIT}, expires=")),
        Case::new("HEAD with interop version 7", "HEAD", "{v6}")
            .header("upload-draft-interop-version", "7")
            .status(204)
            .expect("upload-draft-interop-version", "7"),
    ])
    .await;
}

/// What the server owes a client of each interop version; the module docs of `src/tus/draft.rs`
/// give the draft text behind each member.
struct Interop {
    version: u8,
    /// The lifetime member of `Upload-Limit`; `None` where the header does not exist yet (-03).
    lifetime: Option<&'static str>,
    /// The status of an append that leaves the upload incomplete: `201` up to -05, `204` after.
    appended: u16,
    /// Appends must be `application/partial-upload` (from -04).
    partial_upload: bool,
    /// `OPTIONS` lists `Accept-Patch: application/partial-upload` (-04 to -11).
    accept_patch: bool,
    /// The headers a `HEAD` must not carry (-03 to -05).
    head_refuses: &'static [&'static str],
    /// The headers a `DELETE` must not carry (-03 to -05).
    delete_refuses: &'static [&'static str],
    /// -12 on: `GET` retrieves the offset, every refused creation or append answers
    /// `Upload-Complete: ?0`, and an empty completing append to a completed upload replays its
    /// final response.
    server_side_complete: bool,
}

const INTEROP: [Interop; 5] = [
    Interop {
        version: 5,
        lifetime: None,
        appended: 201,
        partial_upload: false,
        accept_patch: false,
        head_refuses: &["upload-offset", "upload-complete"],
        delete_refuses: &["upload-offset", "upload-complete"],
        server_side_complete: false,
    },
    Interop {
        version: 6,
        lifetime: Some("expires"),
        appended: 201,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &["upload-offset", "upload-complete", "upload-length"],
        delete_refuses: &["upload-offset", "upload-complete"],
        server_side_complete: false,
    },
    Interop {
        version: 7,
        lifetime: Some("max-age"),
        appended: 204,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: false,
    },
    Interop {
        version: 8,
        lifetime: Some("max-age"),
        appended: 204,
        partial_upload: true,
        accept_patch: true,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: false,
    },
    Interop {
        version: 9,
        lifetime: Some("max-age"),
        appended: 204,
        partial_upload: true,
        accept_patch: false,
        head_refuses: &[],
        delete_refuses: &[],
        server_side_complete: true,
    },
];

impl Interop {
    /// `case` sent with this interop version.
    fn at(&self, case: Case) -> Case {
        case.header("upload-draft-interop-version", self.version.to_string())
    }

    /// `case`'s answer must echo this version and carry `Upload-Limit` (with the upload's lifetime
    /// when `alive`), or not carry it where the version has no such header.
    fn limited(&self, case: Case, alive: bool) -> Case {
        let case = case.expect("upload-draft-interop-version", self.version.to_string());
        match (self.lifetime, alive) {
            (None, _) => case.absent("upload-limit"),
            (Some(key), true) => case.starts_with("upload-limit", format!("{LIMIT}, {key}=")),
            (Some(_), false) => case.expect("upload-limit", LIMIT),
        }
    }

    /// A refused creation or append: `Upload-Complete: ?0` from -12 on (the answer is the
    /// resumable upload's, not the target resource's); earlier versions leave it out.
    fn refused(&self, case: Case) -> Case {
        if self.server_side_complete { case.expect("upload-complete", "?0") } else { case.absent("upload-complete") }
    }
}

/// The first bytes of a PNG image.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Discovery, creation, appends, offset retrieval and completion, as each version has them.
#[tokio::test]
async fn each_interop_version_from_options_to_completion() {
    for v in &INTEROP {
        println!("interop version {}", v.version);
        let (_store, mut s) = session();
        let options = v.limited(v.at(Case::new("OPTIONS", "OPTIONS", TUS)).status(204), false);
        let options =
            if v.accept_patch { options.expect("accept-patch", PARTIAL_UPLOAD) } else { options.absent("accept-patch") };
        let get = v.at(Case::new("GET on the unfinished upload", "GET", "{a}"));
        let get = if v.server_side_complete {
            v.limited(get.status(204), true)
                .expect("upload-offset", "3")
                .expect("upload-complete", "?0")
                .expect("upload-length", "11")
                .expect("cache-control", "no-store")
                .expect_body(Vec::new())
        } else {
            // Before -12 a GET is no part of the draft: the URL downloads a finished upload.
            get.status(409).code("upload_incomplete")
        };
        let untyped = append("an append without Content-Type", "a", 5, false, b" wo").without("content-type");
        let (untyped, rest_at, rest) = if v.partial_upload {
            (v.refused(untyped.status(415).code("invalid_content_type")), 5, &b" world"[..])
        } else {
            // -03 defines no media type for appends.
            (untyped.status(v.appended).expect("upload-offset", "8").expect("upload-complete", "?0"), 8, &b"rld"[..])
        };
        let done = v.at(Case::new("GET on the completed upload", "GET", "{a}"));
        let done = if v.server_side_complete {
            v.limited(done.status(204), false)
                .expect("upload-offset", "11")
                .expect("upload-complete", "?1")
                .expect("upload-length", "11")
                .expect_body(Vec::new())
        } else {
            done.status(200).expect_body(b"hello world".to_vec())
        };
        s.run(&[
            options,
            v.limited(
                v.at(create("creation with the first bytes", "a", false)).header("upload-length", "11").body("hel").status(201),
                true,
            )
            .expect("upload-complete", "?0")
            .expect("upload-offset", "3")
            .starts_with("location", "/files/tus/"),
            v.limited(v.at(head("offset retrieval", "a")).status(204), true)
                .expect("upload-offset", "3")
                .expect("upload-complete", "?0")
                .expect("cache-control", "no-store"),
            get,
            v.at(append("an append that leaves the upload incomplete", "a", 3, false, b"lo"))
                .status(v.appended)
                .expect("upload-draft-interop-version", v.version.to_string())
                .expect("upload-offset", "5")
                .expect("upload-complete", "?0"),
            v.at(untyped),
            v.at(append("the completing append", "a", rest_at, true, rest))
                .status(200)
                .expect("upload-draft-interop-version", v.version.to_string())
                .expect("upload-complete", "?1")
                .expect("upload-offset", "11"),
            v.limited(v.at(head("offset retrieval of the completed upload", "a")).status(204), false)
                .expect("upload-offset", "11")
                .expect("upload-complete", "?1"),
            done,
            Case::new("the file", "GET", "{a}").tus().status(200).expect_body(b"hello world".to_vec()),
        ])
        .await;
    }
}

/// -03 to -05: `HEAD` and `DELETE` refuse the headers of creations and appends with `400`.
#[tokio::test]
async fn headers_offset_retrieval_and_cancellation_refuse() {
    for v in &INTEROP {
        println!("interop version {}", v.version);
        let (_store, mut s) = session();
        let mut cases = vec![v.at(create("an upload", "a", false)).header("upload-length", "3").status(201)];
        for (name, value) in [("upload-offset", "0"), ("upload-complete", "?0"), ("upload-length", "3")] {
            let case = v.at(head("HEAD with an upload header", "a")).header(name, value);
            cases.push(if v.head_refuses.contains(&name) {
                // A HEAD answer has no body to name the problem in.
                case.status(400)
            } else {
                case.status(204).expect("upload-offset", "0")
            });
        }
        for (name, value) in [("upload-offset", "0"), ("upload-complete", "?0")] {
            if v.delete_refuses.contains(&name) {
                let case = Case::new("DELETE with an upload header", "DELETE", "{a}").header(name, value);
                cases.push(v.at(case).status(400).code("invalid_header"));
            }
        }
        cases.push(v.at(Case::new("DELETE", "DELETE", "{a}")).status(204));
        cases.push(v.at(head("the upload is gone", "a")).status(404));
        s.run(&cases).await;
    }
}

/// -12 gives `Upload-Complete` a meaning in responses: `?0` is the resumable upload's answer, so
/// every refused creation or append carries it; a `413` also states the limits.
#[tokio::test]
async fn refusals_say_whose_answer_they_are() {
    for v in &INTEROP {
        println!("interop version {}", v.version);
        let (_store, mut s) = session();
        let past = v.refused(v.at(append("past the length", "a", 0, false, b"hello!")).status(413));
        let past = if v.server_side_complete { past.expect("upload-limit", LIMIT) } else { past.absent("upload-limit") };
        let mut cases = vec![
            // The router's size limit refuses this before the draft's handler sees it: a plain 413.
            v.at(create("an Upload-Length over max-size", "x", false)).header("upload-length", "4097").status(413),
            v.refused(v.at(create("creation without Upload-Complete", "x", false)).without("upload-complete"))
                .status(400)
                .code("missing_upload_complete"),
            v.at(create("an upload", "a", false)).header("upload-length", "5").status(201),
            v.refused(v.at(append("without Upload-Offset", "a", 0, false, b"he")).without("upload-offset"))
                .status(400)
                .code("missing_offset"),
            past,
            v.at(append("a wrong offset", "a", 2, false, b"he"))
                .status(409)
                .expect("upload-complete", "?0")
                .expect("upload-offset", "0")
                .json("type", MISMATCHING_OFFSET),
            v.refused(v.at(append("a completion short of the length", "a", 0, true, b"he")))
                .status(400)
                .json("type", INCONSISTENT_LENGTH),
        ];
        if v.partial_upload {
            cases.push(
                v.refused(v.at(append("the tus media type", "a", 0, false, b"he")).header("content-type", OFFSET_STREAM))
                    .status(415),
            );
        }
        s.run(&cases).await;
    }
}

/// Appends to a completed upload: refused up to -11 (`completed-upload`); from -12, whose draft
/// drops that problem type, an empty completing append at the end is valid and gets the final
/// response again, so a client that lost it can recover it.
#[tokio::test]
async fn appending_to_a_completed_upload() {
    for v in &INTEROP {
        println!("interop version {}", v.version);
        let (_store, mut s) = session();
        let first = s.send(&v.at(create("a completed upload", "a", true)).body("hello")).await;
        assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
        let more = append("more bytes", "a", 5, true, b"!");
        let cases = if v.server_side_complete {
            vec![
                v.at(more).status(400).json("type", INCONSISTENT_LENGTH).expect("upload-complete", "?0"),
                v.at(append("an empty ?0 append", "a", 5, false, b""))
                    .status(400)
                    .code("upload_completed")
                    .json("type", "urn:intake:problem:upload_completed")
                    .expect("upload-complete", "?0"),
                v.at(append("an empty ?1 append at a wrong offset", "a", 3, true, b""))
                    .status(409)
                    .json("type", MISMATCHING_OFFSET)
                    .json("expected-offset", 5)
                    .expect("upload-offset", "5")
                    .expect("upload-complete", "?0"),
            ]
        } else {
            vec![
                v.at(more).status(400).json("type", INCONSISTENT_LENGTH),
                v.at(append("an empty ?1 append", "a", 5, true, b""))
                    .status(400)
                    .code("upload_completed")
                    .json("type", COMPLETED_UPLOAD),
            ]
        };
        s.run(&cases).await;
        if v.server_side_complete {
            let replayed = s.send(&v.at(append("an empty ?1 append at the end", "a", 5, true, b""))).await;
            assert_eq!(replayed.status, 200, "{}", String::from_utf8_lossy(&replayed.body));
            assert_eq!(replayed.header("upload-complete"), Some("?1"));
            assert_eq!(replayed.header("upload-offset"), Some("5"));
            assert_eq!(replayed.body, first.body, "the final response, replayed");
        }
        s.run(&[Case::new("the file is unchanged", "GET", "{a}").tus().status(200).expect_body(b"hello".to_vec())]).await;
    }
}

/// tus-js-client 5 labels a creation that carries bytes `application/partial-upload`, the media
/// type of appends: that says nothing about the file, so its content decides its type.
#[tokio::test]
async fn the_append_media_type_on_a_creation_declares_nothing() {
    for v in &INTEROP {
        println!("interop version {}", v.version);
        let (_store, mut s) = session();
        s.run(&[
            v.at(create("a PNG created whole, labelled as an append", "a", true))
                .header("content-type", PARTIAL_UPLOAD)
                .body(PNG)
                .status(200),
            Case::new("its type", "GET", "{a}").tus().status(200).expect("content-type", "image/png"),
            v.at(create("a PNG's first bytes, labelled as an append", "b", false))
                .header("content-type", PARTIAL_UPLOAD)
                .body(&PNG[..16])
                .status(201),
            v.at(append("the rest", "b", 16, true, &PNG[16..])).status(200),
            Case::new("its type", "GET", "{b}").tus().status(200).expect("content-type", "image/png"),
        ])
        .await;
    }
}

#[tokio::test]
async fn options_refuses_versions_it_does_not_serve() {
    let (_store, mut s) = session();
    s.run(&[
        Case::new("OPTIONS with interop version 4", "OPTIONS", TUS)
            .header("upload-draft-interop-version", "4")
            .status(400)
            .code("unsupported_interop_version"),
        Case::new("OPTIONS with interop version 10", "OPTIONS", TUS)
            .header("upload-draft-interop-version", "10")
            .status(400)
            .code("unsupported_interop_version"),
    ])
    .await;
}
