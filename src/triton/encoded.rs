//! A tenant's request encoded once and sent as those bytes every time: its tensor is constant, so
//! re-encoding it (a walk of the message and a copy of every tensor) for each request buys nothing.
//! The bytes are kept with gRPC's message prefix, so they go to the HTTP/2 connection as they are,
//! without the copy into an encode buffer that tonic's codecs make: [`FramedSend`] swaps them in
//! as the request's body. Its answer is not decoded either: the load generator needs only its
//! status, which gRPC carries in the trailers, and its size; decoding would allocate every
//! output's name, datatype and shape.

use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::Service;
use tonic::codegen::http::{self, uri::PathAndQuery};
use tonic::transport::Channel;
use tonic::transport::channel::ResponseFuture;

use super::client::TritonClient;
use super::error::{Direction, TritonError};
use crate::proto::ModelInferRequest;

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// A request and its wire encoding, made once per tenant (and again when the tenant changes).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub request: ModelInferRequest,
    /// The message with its gRPC prefix (uncompressed), as it goes on the wire.
    framed: Bytes,
}

impl PreparedRequest {
    pub fn new(request: ModelInferRequest) -> PreparedRequest {
        let len = request.encoded_len();
        let mut framed = BytesMut::with_capacity(PREFIX + len);
        framed.put_u8(0);
        // A message over 4 GiB cannot be framed; its prefix saturates and the send-side size check
        // (`max_encode`, far below) refuses it before anything is sent.
        framed.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        request.encode_raw(&mut framed);
        PreparedRequest {
            request,
            framed: framed.freeze(),
        }
    }

    /// Bytes on the wire for one request (without gRPC's 5-byte prefix).
    pub fn encoded_len(&self) -> usize {
        self.framed.len() - PREFIX
    }
}

/// A request's body, ready-framed; carried to [`FramedSend`] in the request's extensions.
#[derive(Debug, Clone)]
struct Framed(Bytes);

/// The connection, with one difference: a request that carries [`Framed`] bytes is sent with those
/// as its body, in place of the (empty) one tonic encoded. Everything else about the call — its
/// headers, deadline, path, and the reading of its answer — stays tonic's.
#[derive(Debug, Clone)]
struct FramedSend(Channel);

impl Service<http::Request<Body>> for FramedSend {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> ResponseFuture {
        if let Some(Framed(bytes)) = request.extensions_mut().remove::<Framed>() {
            // A stream of one chunk rather than a sized body: a sized one would get a
            // content-length header, which gRPC requests do not carry.
            let chunk = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                http_body::Frame::data(bytes),
            )]);
            *request.body_mut() = Body::new(http_body_util::StreamBody::new(chunk));
        }
        self.0.call(request)
    }
}

/// Encodes nothing (the body is [`Framed`]); reads only the answer's size.
#[derive(Debug, Clone)]
struct PreEncodedCodec;

/// Skips an answer's message, keeping its length.
struct SizeDecoder;

impl Decoder for SizeDecoder {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let len = src.remaining();
        src.advance(len);
        Ok(Some(len))
    }
}

struct NothingEncoder;

impl Encoder for NothingEncoder {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, _: (), _: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Codec for PreEncodedCodec {
    type Encode = ();
    type Decode = usize;
    type Encoder = NothingEncoder;
    type Decoder = SizeDecoder;

    fn encoder(&mut self) -> NothingEncoder {
        NothingEncoder
    }

    fn decoder(&mut self) -> SizeDecoder {
        SizeDecoder
    }
}

impl TritonClient {
    /// Runs one inference of a prepared request with this deadline and returns the size of its
    /// answer (bytes of the message): on ModelInfer's own connection to a plaintext target, else
    /// on the channel. With [`super::ConnectOptions::legacy_grpc`] the request is encoded afresh
    /// and its answer decoded, as first shipped.
    pub async fn infer_prepared(
        &self,
        prepared: &PreparedRequest,
        timeout: std::time::Duration,
    ) -> Result<usize, TritonError> {
        if self.legacy_grpc() {
            let response = self.infer_within(prepared.request.clone(), timeout).await?;
            return Ok(prost::Message::encoded_len(&response));
        }
        let limits = self.limits();
        if prepared.encoded_len() > limits.max_encode {
            return Err(TritonError::MessageTooLarge {
                direction: Direction::Request,
                limit: limits.max_encode,
                message: format!("request is {} bytes", prepared.encoded_len()),
            });
        }
        if let Some(direct) = self.direct() {
            return direct.infer(prepared.framed.clone(), timeout).await;
        }
        let mut grpc = tonic::client::Grpc::new(FramedSend(self.channel()))
            .max_decoding_message_size(limits.max_decode)
            .max_encoding_message_size(limits.max_encode);
        let mut request = tonic::Request::new(());
        request.set_timeout(timeout);
        request
            .extensions_mut()
            .insert(Framed(prepared.framed.clone()));
        let codec = PreEncodedCodec;
        let sent = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
            grpc.unary(request, PathAndQuery::from_static(MODEL_INFER), codec)
                .await
        };
        match sent.await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(TritonError::from_status(status, Some(timeout), limits)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_bytes_are_the_message_with_its_grpc_prefix() {
        let request = ModelInferRequest {
            model_name: "resnet50".into(),
            raw_input_contents: vec![Bytes::from(vec![3u8; 1000])],
            ..Default::default()
        };
        let prepared = PreparedRequest::new(request.clone());
        let mut framed = prepared.framed.clone();
        assert_eq!(framed.get_u8(), 0, "uncompressed");
        assert_eq!(framed.get_u32() as usize, prepared.encoded_len());
        assert_eq!(prepared.encoded_len(), request.encoded_len());
        assert_eq!(ModelInferRequest::decode(framed).expect("decodes"), request);
    }
}
