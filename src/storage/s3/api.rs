//! The S3 calls object_store does not make — `ListParts` (does a multipart upload still exist?)
//! and `ListMultipartUploads` (which are pending?) — signed with its SigV4 authorizer and sent
//! through its HTTP client.

use super::super::{ObjectKey, StoreError};
use http::{Method, Request, StatusCode};
use object_store::{
    ClientOptions,
    aws::{AwsAuthorizer, AwsCredentialProvider},
    client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use quick_xml::events::Event;
use std::collections::BTreeMap;

/// What S3 leaves unencoded in a query value (RFC 3986 unreserved), as SigV4 wants it.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub(super) struct Api {
    client: HttpClient,
    /// `{endpoint}/{bucket}` (or the bucket's own host), without a trailing `/`.
    base: String,
    region: String,
    credentials: AwsCredentialProvider,
    sign_payload: bool,
}

/// A pending multipart upload, as `ListMultipartUploads` reports it.
pub(super) struct Pending {
    pub(super) key: String,
    pub(super) upload_id: String,
    /// Seconds since the Unix epoch.
    pub(super) initiated: u64,
}

impl Api {
    pub(super) fn new(
        options: &ClientOptions,
        base: String,
        region: String,
        credentials: AwsCredentialProvider,
        sign_payload: bool,
    ) -> Result<Self, StoreError> {
        let client = ReqwestConnector::default()
            .connect(options)
            .map_err(|e| StoreError::Upstream(format!("S3 HTTP client: {e}").into()))?;
        Ok(Self { client, base, region, credentials, sign_payload })
    }

    /// Sends a signed `GET` of `path?query` (`path` starts with `/`), returning the body of a
    /// `2xx` answer.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<bytes::Bytes, StoreError> {
        let query: Vec<String> =
            query.iter().map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY), utf8_percent_encode(v, QUERY))).collect();
        let url = format!("{}{path}?{}", self.base, query.join("&"));
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .body(HttpRequestBody::empty())
            .map_err(|e| StoreError::Upstream(format!("S3 request {url}: {e}").into()))?;
        let credential = self.credentials.get_credential().await.map_err(|e| super::store_error(e, path))?;
        AwsAuthorizer::new(&credential, "s3", &self.region).with_sign_payload(self.sign_payload).authorize(&mut request, None);
        let response = self.client.execute(request).await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let code = fields(&text, "Error").0.remove("Code").unwrap_or_default();
        let err = format!("GET {url}: {status} {code}: {text}");
        Err(match status {
            StatusCode::NOT_FOUND if code != "NoSuchBucket" => StoreError::NotFound(path.to_owned()),
            StatusCode::TOO_MANY_REQUESTS => StoreError::Unavailable(err.into()),
            s if s.is_server_error() => StoreError::Unavailable(err.into()),
            _ => StoreError::Upstream(err.into()),
        })
    }

    /// Whether the multipart upload `upload_id` of `key` is still pending (neither completed nor
    /// aborted).
    pub(super) async fn upload_exists(&self, key: &ObjectKey, upload_id: &str) -> Result<bool, StoreError> {
        match self.get(&format!("/{key}"), &[("max-parts", "1"), ("uploadId", upload_id)]).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The parts the multipart upload `upload_id` of `key` holds: `(part number, ETag, size)`,
    /// page by page.
    pub(super) async fn parts(&self, key: &ObjectKey, upload_id: &str) -> Result<Vec<(u64, String, u64)>, StoreError> {
        let (mut found, mut marker) = (Vec::new(), String::new());
        loop {
            let mut query = vec![("uploadId", upload_id)];
            if !marker.is_empty() {
                query.push(("part-number-marker", &marker));
            }
            query.sort();
            let body = self.get(&format!("/{key}"), &query).await?;
            let text = String::from_utf8_lossy(&body);
            let (mut top, parts) = fields(&text, "Part");
            for part in parts {
                let number = part.get("PartNumber").and_then(|n| n.parse().ok());
                let size = part.get("Size").and_then(|n| n.parse().ok());
                if let (Some(number), Some(etag), Some(size)) = (number, part.get("ETag"), size) {
                    found.push((number, etag.clone(), size));
                }
            }
            let next = top.remove("NextPartNumberMarker").unwrap_or_default();
            if top.get("IsTruncated").is_none_or(|v| v != "true") || next.is_empty() || next == marker {
                return Ok(found);
            }
            marker = next;
        }
    }

    /// Every pending multipart upload in the bucket, page by page.
    pub(super) async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let (mut found, mut key_marker, mut id_marker) = (Vec::new(), String::new(), String::new());
        loop {
            let mut query = vec![("uploads", "")];
            if !key_marker.is_empty() {
                query.push(("key-marker", &key_marker));
                query.push(("upload-id-marker", &id_marker));
            }
            query.sort();
            let body = self.get("/", &query).await?;
            let text = String::from_utf8_lossy(&body);
            let (mut top, uploads) = fields(&text, "Upload");
            for upload in uploads {
                let initiated = upload
                    .get("Initiated")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(0, |t| t.timestamp().max(0) as u64);
                if let (Some(key), Some(upload_id)) = (upload.get("Key"), upload.get("UploadId")) {
                    found.push(Pending { key: key.clone(), upload_id: upload_id.clone(), initiated });
                }
            }
            let truncated = top.get("IsTruncated").is_some_and(|v| v == "true");
            let next_key = top.remove("NextKeyMarker").unwrap_or_default();
            if !truncated || next_key.is_empty() || next_key == key_marker && top.get("NextUploadIdMarker") == Some(&id_marker) {
                return Ok(found);
            }
            key_marker = next_key;
            id_marker = top.remove("NextUploadIdMarker").unwrap_or_default();
        }
    }
}

/// The text of the root element's children, and of the children of each `record` element
/// (one map per record), unescaped. Enough for S3's flat list answers.
pub(super) fn fields(xml: &str, record: &str) -> (BTreeMap<String, String>, Vec<BTreeMap<String, String>>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut top, mut records) = (BTreeMap::new(), Vec::new());
    // Element names from the root down, and the text of the innermost one.
    let (mut path, mut text): (Vec<String>, String) = (Vec::new(), String::new());
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.len() == 1 && name == record {
                    records.push(BTreeMap::new());
                }
                path.push(name);
                text.clear();
            }
            Ok(Event::Text(e)) => text.push_str(&e.decode().unwrap_or_default()),
            Ok(Event::GeneralRef(e)) => {
                text.push('&');
                text.push_str(&e.decode().unwrap_or_default());
                text.push(';');
            }
            Ok(Event::CData(e)) => text.push_str(&String::from_utf8_lossy(&e)),
            Ok(Event::End(_)) => {
                let value = quick_xml::escape::unescape(&text).map(|v| v.into_owned()).unwrap_or_else(|_| text.clone());
                match path.as_slice() {
                    [_, name] if name != record => {
                        top.insert(name.clone(), value);
                    }
                    [_, parent, name] if parent == record => {
                        if let Some(fields) = records.last_mut() {
                            fields.insert(name.clone(), value);
                        }
                    }
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (top, records)
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_answers_are_read_with_their_entities() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><IsTruncated>true</IsTruncated><NextKeyMarker>a/k2</NextKeyMarker>
  <Upload><Key>a/k1</Key><UploadId>id&amp;1</UploadId><Initiator><ID>x</ID></Initiator>
    <Initiated>2024-05-01T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>a/k2</Key><UploadId>id2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let (top, uploads) = super::fields(xml, "Upload");
        assert_eq!(top.get("IsTruncated").map(String::as_str), Some("true"));
        assert_eq!(top.get("NextKeyMarker").map(String::as_str), Some("a/k2"));
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].get("UploadId").map(String::as_str), Some("id&1"), "entities are unescaped");
        assert_eq!(uploads[0].get("ID"), None, "grandchildren are not the record's");
        assert_eq!(uploads[1].get("Key").map(String::as_str), Some("a/k2"));
        let (error, _) = super::fields("<Error><Code>NoSuchUpload</Code><Message>m</Message></Error>", "Upload");
        assert_eq!(error.get("Code").map(String::as_str), Some("NoSuchUpload"));
    }
}
