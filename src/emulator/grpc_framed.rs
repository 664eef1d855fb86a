//! ModelInfer without tonic's receive buffer. tonic copies every DATA frame of a request into a
//! buffer of its own and then grows that buffer once more when the length prefix arrives, so a
//! megabyte image is copied twice after the kernel has copied it in. With the emulator's large
//! HTTP/2 frames the whole message arrives as one frame, and decoding the message straight from
//! it leaves the tensors (`bytes` fields) as slices of what was received: no copy at all.
//!
//! Everything else — other RPCs, compressed requests — goes to the generated service unchanged,
//! and a request taken here reaches the same handler with its metadata and extensions, so what a
//! client sees is the same either way. Hand-written because tonic's server has no way to hand a
//! received frame to a codec; what it replaces is only gRPC's framing of one unary message.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderMap, HeaderValue, header};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::emulator::grpc::GrpcFront;
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// The generated service with ModelInfer's uncompressed requests taken off its receive path.
#[derive(Clone)]
pub(crate) struct FramedInfer {
    inner: GrpcInferenceServiceServer<GrpcFront>,
    front: std::sync::Arc<GrpcFront>,
    max_message: usize,
}

impl FramedInfer {
    pub(crate) fn new(
        inner: GrpcInferenceServiceServer<GrpcFront>,
        front: GrpcFront,
        max_message: usize,
    ) -> FramedInfer {
        FramedInfer {
            inner,
            front: std::sync::Arc::new(front),
            max_message,
        }
    }
}

impl NamedService for FramedInfer {
    const NAME: &'static str = <GrpcInferenceServiceServer<GrpcFront> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for FramedInfer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // A compressed message must be inflated first, which is what tonic's path is for.
        let compressed = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|e| e.as_bytes() != b"identity");
        if request.uri().path() != MODEL_INFER || compressed {
            return self.inner.call(request);
        }
        let (front, max_message) = (std::sync::Arc::clone(&self.front), self.max_message);
        Box::pin(async move {
            Ok(match model_infer(&front, request, max_message).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            })
        })
    }
}

async fn model_infer(
    front: &GrpcFront,
    request: http::Request<Body>,
    max_message: usize,
) -> Result<http::Response<Body>, Status> {
    let (parts, body) = request.into_parts();
    let message = read_message(body, max_message).await?;
    let decoded = crate::proto::ModelInferRequest::decode(message)
        .map_err(|e| Status::internal(e.to_string()))?;
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        decoded,
    );
    let (metadata, reply, _) = front.model_infer(request).await?.into_parts();
    let len = reply.encoded_len();
    let mut framed = BytesMut::with_capacity(PREFIX + len);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(len).map_err(|_| too_large(len, u32::MAX as usize))?);
    reply
        .encode(&mut framed)
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut trailers = HeaderMap::new();
    Status::new(Code::Ok, "").add_header(&mut trailers)?;
    let frames = [
        Ok::<_, Status>(http_body::Frame::data(framed.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(Body::new(http_body_util::StreamBody::new(
        futures::stream::iter(frames),
    )));
    *response.headers_mut() = metadata.into_headers();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// Reads a unary call's one message, without its prefix: the received bytes themselves when they
/// came in one piece, else joined once.
async fn read_message(mut body: Body, max_message: usize) -> Result<Bytes, Status> {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2);
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing a unary request needs
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > max_message.saturating_add(PREFIX) {
            return Err(too_large(total - PREFIX, max_message));
        }
        chunks.push(data);
    }
    let mut whole = match chunks.len() {
        0 => return Err(Status::internal("Missing request message.")),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = BytesMut::with_capacity(total);
            for chunk in chunks {
                joined.put(chunk);
            }
            joined.freeze()
        }
    };
    if whole.len() < PREFIX {
        return Err(Status::internal("Missing request message."));
    }
    if whole.get_u8() != 0 {
        return Err(Status::internal(
            "protocol error: received message with compressed-flag but no grpc-encoding was \
             specified",
        ));
    }
    let len = whole.get_u32() as usize;
    if len > max_message {
        return Err(too_large(len, max_message));
    }
    if whole.len() != len {
        return Err(Status::internal(format!(
            "a unary request carries one message: {len} bytes were announced and {} received",
            whole.len()
        )));
    }
    Ok(whole)
}

/// tonic's wording for the same refusal.
fn too_large(len: usize, limit: usize) -> Status {
    Status::out_of_range(format!(
        "Error, decoded message length too large: found {len} bytes, the limit is: {limit} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ModelInferRequest;

    fn framed(message: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u32(message.len() as u32);
        b.put_slice(message);
        b.freeze()
    }

    fn body_of(chunks: Vec<Bytes>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Status>(http_body::Frame::data(c)));
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames.collect::<Vec<_>>(),
        )))
    }

    fn read(chunks: Vec<Bytes>, max: usize) -> Result<Bytes, Status> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_message(body_of(chunks), max))
    }

    #[test]
    fn a_message_in_one_frame_decodes_in_place() {
        let request = ModelInferRequest {
            model_name: "resnet50".into(),
            raw_input_contents: vec![Bytes::from(vec![7u8; 4096])],
            ..Default::default()
        };
        let received = framed(&request.encode_to_vec());
        let message = read(vec![received.clone()], 1 << 20).expect("reads");
        let decoded = ModelInferRequest::decode(message).expect("decodes");
        assert_eq!(decoded, request);
        // The tensor is a view of the received frame, not a copy of it.
        let tensor = decoded.raw_input_contents[0].as_ptr_range();
        let frame = received.as_ptr_range();
        assert!(frame.start <= tensor.start && tensor.end <= frame.end);
    }

    #[test]
    fn a_message_in_several_frames_is_joined() {
        let whole = framed(b"0123456789");
        let message = read(
            vec![whole.slice(..3), whole.slice(3..8), whole.slice(8..)],
            1 << 20,
        )
        .expect("reads");
        assert_eq!(&message[..], b"0123456789");
    }

    #[test]
    fn bad_framing_gets_the_errors_tonic_gives() {
        let too_big = read(vec![framed(&[0u8; 64])], 16).expect_err("over the limit");
        assert_eq!(too_big.code(), Code::OutOfRange);
        assert!(too_big.message().contains("found"), "{}", too_big.message());

        let mut compressed = BytesMut::from(&framed(b"abc")[..]);
        compressed[0] = 1;
        let flagged = read(vec![compressed.freeze()], 1 << 20).expect_err("flag without encoding");
        assert_eq!(flagged.code(), Code::Internal);
        assert!(flagged.message().contains("compressed-flag"));

        let short = framed(b"abcdef").slice(..8);
        assert_eq!(
            read(vec![short], 1 << 20).expect_err("truncated").code(),
            Code::Internal
        );
        assert_eq!(
            read(Vec::new(), 1 << 20).expect_err("empty").message(),
            "Missing request message."
        );
    }
}
