use super::{ContentPolicy, ResponseFuture, SniffBody, SniffLayer, future::FormPolicy};
use crate::declared::DeclaredFile;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tower_service::Service;

/// Middleware that checks what a request body really is before the inner service sees it.
/// See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Sniff<S> {
    inner: S,
    policy: Arc<ContentPolicy>,
}

impl<S> Sniff<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: Arc<ContentPolicy>) -> Self {
        Self { inner, policy }
    }

    /// A [`SniffLayer`] with `policy`.
    pub fn layer(policy: ContentPolicy) -> SniffLayer {
        SniffLayer::new(policy)
    }

    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Sniff<S>
where
    S: Service<Request<SniffBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
    ReqBody::Error: Into<crate::BoxError>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was driven to readiness serves this request; a clone stays behind.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE) {
            return ResponseFuture::call(inner, req.map(SniffBody::unchecked));
        }
        if crate::declared::is_multipart(req.headers()) {
            // Each file of a form is sniffed on its own by the form handler.
            let mut req = req.map(SniffBody::unchecked);
            req.extensions_mut().insert(FormPolicy(self.policy.clone()));
            return ResponseFuture::call(inner, req);
        }
        let declared = DeclaredFile::from_request(req.uri(), req.headers());
        let (parts, body) = req.into_parts();
        let (body, _) = SniffBody::checking(body, self.policy.clone(), declared);
        ResponseFuture::peek(inner, parts, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        sniff::Sniffed,
        test_util::{TestBody, chunked, json, read},
    };
    use http::StatusCode;
    use http_body_util::Full;
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
    };
    use tower::{ServiceExt, service_fn};

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

    fn svc(
        calls: Arc<AtomicUsize>,
    ) -> Sniff<impl Service<Request<SniffBody<TestBody>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone> {
        Sniff::new(
            service_fn(move |req: Request<SniffBody<TestBody>>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let ct = req.extensions().get::<Sniffed>().map(|s| s.content_type.clone()).unwrap_or_default();
                    let body = read(req.into_body()).await.unwrap();
                    Ok(Response::builder().header("x-sniffed", ct).body(Full::new(body)).unwrap())
                }
            }),
            Arc::new(ContentPolicy::default()),
        )
    }

    #[tokio::test]
    async fn executable_renamed_png_is_refused_before_the_service_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let req = Request::post("/raw?name=cat.png").body(chunked(&[&ELF[..4], &ELF[4..]])).unwrap();
        let res = svc(calls.clone()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let json = json(res).await;
        assert_eq!(json["code"], "executable_content");
        assert_eq!(json["detected"], "application/x-executable");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn peeked_bytes_pass_on_unchanged() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let rest = vec![42u8; 20_000];
        let req = Request::post("/")
            .header("content-type", "image/png")
            .body(chunked(&[&png[..3], &png[3..], &rest[..9000], &rest[9000..]]))
            .unwrap();
        let res = svc(Arc::default()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-sniffed"], "image/png");
        let body = read(res.into_body()).await.unwrap();
        assert_eq!(body, [&png[..], &rest[..]].concat());
    }

    #[tokio::test]
    async fn multipart_requests_pass_with_the_policy_for_the_form_handler() {
        let req = Request::post("/").header("content-type", "multipart/form-data; boundary=x").body(chunked(&[ELF])).unwrap();
        let res = svc(Arc::default()).oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
