//! Helpers for the unit tests of the layers.

use crate::error::BoxError;
use bytes::Bytes;
use futures_util::stream;
use http::Response;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};

/// The request body the layer tests send: a sequence of data frames.
pub(crate) type TestBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

/// A body that sends `chunks` one frame each.
pub(crate) fn chunked(chunks: &[&[u8]]) -> TestBody {
    let frames: Vec<Result<_, BoxError>> = chunks.iter().map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
    StreamBody::new(stream::iter(frames))
}

/// Reads a whole body.
pub(crate) async fn read<B>(body: B) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    Ok(body.collect().await.map_err(Into::into)?.to_bytes())
}

/// The JSON document of a response.
pub(crate) async fn json<B>(res: Response<B>) -> serde_json::Value
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    serde_json::from_slice(&read(res.into_body()).await.unwrap_or_default()).expect("a JSON body")
}
