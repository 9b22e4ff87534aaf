use super::{BodyLimitLayer, LimitedBody, ResponseFuture};
use crate::{body::Tripwire, error::Problem};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::Body;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that limits request body sizes. See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    limit: u64,
}

impl<S> BodyLimit<S> {
    /// Wraps `inner` with a limit of `limit` bytes.
    pub const fn new(inner: S, limit: u64) -> Self {
        Self { inner, limit }
    }

    /// A [`BodyLimitLayer`] with this limit.
    pub const fn layer(limit: u64) -> BodyLimitLayer {
        BodyLimitLayer::new(limit)
    }

    crate::inner_service_accessors!();
}

/// The headers that declare a length: the body's own, and the whole upload's in resumable
/// protocols (tus `Upload-Length`, the IETF draft's `Upload-Length`).
const DECLARED_LENGTHS: [&str; 2] = ["content-length", "upload-length"];

pub(crate) fn too_large(limit: u64, declared: Option<u64>) -> Problem {
    let detail = match declared {
        Some(n) => format!("the request declares {n} bytes; the limit is {limit} bytes"),
        None => format!("the request body is larger than the limit of {limit} bytes"),
    };
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", detail).with("limit", limit)
}

fn declared_length(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Problem> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse().ok()).map(Some).ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_length", format!("the {name} header is not a byte count"))
        }),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<LimitedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let mut content_length = None;
        for name in DECLARED_LENGTHS {
            match declared_length(req.headers(), name) {
                Err(problem) => return ResponseFuture::rejected(problem),
                Ok(Some(n)) if n > self.limit => return ResponseFuture::rejected(too_large(self.limit, Some(n))),
                Ok(n) if name == header::CONTENT_LENGTH.as_str() => content_length = n,
                Ok(_) => {}
            }
        }
        let tripwire = Tripwire::default();
        let req = req.map(|body| LimitedBody::new(body, self.limit, content_length, tripwire.clone()));
        ResponseFuture::future(self.inner.call(req), Some(tripwire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBody, chunked, json, read};
    use bytes::Bytes;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// Reads the whole body and answers with its length; answers 500 on a body error (the
    /// layer must turn that into its own rejection).
    fn echo_len() -> BodyLimit<impl Service<Request<LimitedBody<TestBody>>, Response = Response<Full<Bytes>>, Error = Infallible>>
    {
        BodyLimit::new(
            service_fn(|req: Request<LimitedBody<TestBody>>| async move {
                Ok(match read(req.into_body()).await {
                    Ok(b) => Response::new(Full::from(b.len().to_string())),
                    Err(_) => Response::builder().status(500).body(Full::default()).unwrap(),
                })
            }),
            10,
        )
    }

    async fn body_json<B: http_body::Body<Data = Bytes>>(res: Response<B>) -> serde_json::Value
    where
        B::Error: Into<crate::error::BoxError>,
    {
        json(res).await
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        let req = Request::post("/").header("content-length", "11").body(chunked(&[b"never read"])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let json = body_json(res).await;
        assert_eq!(json["code"], "body_too_large");
        assert_eq!(json["limit"], 10);
    }

    #[tokio::test]
    async fn declared_upload_length_over_the_limit_is_refused() {
        let req = Request::post("/").header("upload-length", "1000").body(chunked(&[])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn chunked_body_is_stopped_when_it_passes_the_limit() {
        let req = Request::post("/").body(chunked(&[b"12345", b"67890", b"X"])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "the inner 500 is replaced");
        assert_eq!(body_json(res).await["code"], "body_too_large");
    }

    #[tokio::test]
    async fn body_within_the_limit_passes() {
        let req = Request::post("/").body(chunked(&[b"12345", b"67890"])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(read(res.into_body()).await.unwrap(), "10");
    }

    #[tokio::test]
    async fn body_longer_than_declared_is_refused() {
        let req = Request::post("/").header("content-length", "3").body(chunked(&[b"12345"])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(res).await["code"], "length_mismatch");
    }

    #[tokio::test]
    async fn body_shorter_than_declared_is_refused() {
        let req = Request::post("/").header("content-length", "8").body(chunked(&[b"12345"])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(res).await["code"], "length_mismatch");
    }

    #[tokio::test]
    async fn malformed_declared_length_is_refused() {
        let req = Request::post("/").header("upload-length", "lots").body(chunked(&[])).unwrap();
        let res = echo_len().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(res).await["code"], "invalid_length");
    }
}
