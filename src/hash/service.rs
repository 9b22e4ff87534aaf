use super::{FormHashing, HashAlgorithm, HashBody, HashLayer, ResponseFuture, expected_digests};
use crate::body::Tripwire;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::{
    sync::Arc,
    task::{Context, Poll},
};
use tower_service::Service;

/// Middleware that hashes request bodies as they stream and verifies client digests. See the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct Hashing<S> {
    inner: S,
    algorithms: Arc<[HashAlgorithm]>,
}

impl<S> Hashing<S> {
    /// Wraps `inner`, computing `algorithms`.
    pub fn new(inner: S, algorithms: Arc<[HashAlgorithm]>) -> Self {
        Self { inner, algorithms }
    }

    /// A [`HashLayer`] computing `algorithms`.
    pub fn layer(algorithms: impl IntoIterator<Item = HashAlgorithm>) -> HashLayer {
        HashLayer::new(algorithms)
    }

    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Hashing<S>
where
    S: Service<Request<HashBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let expected = match expected_digests(req.headers()) {
            Ok(e) => e,
            Err(problem) => return ResponseFuture::rejected(problem),
        };
        let multipart = crate::declared::is_multipart(req.headers());
        // A form's files are hashed one by one by the form handler; the whole body is hashed
        // only to verify a digest the client sent for it.
        let algorithms: &[HashAlgorithm] = if multipart { &[] } else { &self.algorithms };
        let tripwire = Tripwire::default();
        let (mut parts, body) = req.into_parts();
        let (body, handle) = HashBody::with_tripwire(body, algorithms, expected, tripwire.clone());
        parts.extensions.insert(handle);
        if multipart {
            parts.extensions.insert(FormHashing(self.algorithms.clone()));
        }
        ResponseFuture::future(self.inner.call(Request::from_parts(parts, body)), Some(tripwire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        hash::DigestHandle,
        test_util::{TestBody, chunked, json, read},
    };
    use http::StatusCode;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// Reads the body and answers with the SHA-256 it saw; a body error becomes a 500 that the
    /// layer must replace.
    fn svc() -> Hashing<impl Service<Request<HashBody<TestBody>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone> {
        Hashing::new(
            service_fn(|req: Request<HashBody<TestBody>>| async move {
                let handle = req.extensions().get::<DigestHandle>().cloned().unwrap();
                Ok(match read(req.into_body()).await {
                    Ok(_) => Response::new(Full::from(handle.get().unwrap().get("sha-256").unwrap().to_owned())),
                    Err(_) => Response::builder().status(500).body(Full::default()).unwrap(),
                })
            }),
            Arc::from([HashAlgorithm::Sha256]),
        )
    }

    #[tokio::test]
    async fn digests_reach_the_service() {
        let res = svc().oneshot(Request::post("/").body(chunked(&[b"a", b"bc"])).unwrap()).await.unwrap();
        assert_eq!(read(res.into_body()).await.unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[tokio::test]
    async fn matching_client_digests_pass() {
        let req = Request::post("/")
            .header("content-digest", "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:")
            .header("content-md5", "kAFQmDzST7DWlj99KOF/cg==")
            .body(chunked(&[b"abc"]))
            .unwrap();
        assert_eq!(svc().oneshot(req).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_wrong_client_digest_is_refused() {
        let req = Request::post("/").header("content-md5", "kAFQmDzST7DWlj99KOF/cg==").body(chunked(&[b"abd"])).unwrap();
        let res = svc().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let json = json(res).await;
        assert_eq!(json["code"], "digest_mismatch");
        assert_eq!(json["algorithm"], "md5");
    }

    fn large_body() -> (Vec<Vec<u8>>, String, String) {
        // Past the (test-sized) offload threshold, so hashing moves to its own thread midway.
        let chunks: Vec<Vec<u8>> = (0..40u32).map(|i| (0..16_384u32).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
        let mut sha256 = HashAlgorithm::Sha256.hasher();
        let mut md5 = HashAlgorithm::Md5.hasher();
        for c in &chunks {
            sha256.update(c);
            md5.update(c);
        }
        (chunks, crate::id::to_hex(&sha256.finalize()), crate::hash::base64(&md5.finalize()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_bodies_hashed_on_their_own_thread_give_the_same_digests() {
        let (chunks, sha256, md5) = large_body();
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let req = Request::post("/").header("content-md5", md5).body(chunked(&slices)).unwrap();
        let res = svc().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(read(res.into_body()).await.unwrap(), sha256);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_bodies_hashed_on_their_own_thread_are_still_verified() {
        let (chunks, _, _) = large_body();
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let req = Request::post("/").header("content-md5", "kAFQmDzST7DWlj99KOF/cg==").body(chunked(&slices)).unwrap();
        let res = svc().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json(res).await["code"], "digest_mismatch");
    }

    #[tokio::test]
    async fn a_malformed_digest_header_is_refused_before_reading() {
        let req = Request::post("/").header("repr-digest", "sha-256=:xyz").body(chunked(&[b"abc"])).unwrap();
        let res = svc().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json(res).await["code"], "invalid_digest");
    }
}
