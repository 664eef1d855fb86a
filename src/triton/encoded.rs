//! A tenant's request encoded once and sent as those bytes every time: its tensor is constant, so
//! re-encoding it (a walk of the message and a copy of every tensor) for each request buys nothing.
//! Its answer is not decoded either: the load generator needs only its status, which gRPC carries
//! in the trailers, and its size; decoding would allocate every output's name, datatype and shape.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

use super::client::TritonClient;
use super::error::{Direction, TritonError};
use crate::proto::ModelInferRequest;

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A request and its wire encoding, made once per tenant (and again when the tenant changes).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub request: ModelInferRequest,
    encoded: Bytes,
}

impl PreparedRequest {
    pub fn new(request: ModelInferRequest) -> PreparedRequest {
        let encoded = request.encode_to_vec().into();
        PreparedRequest { request, encoded }
    }

    /// Bytes on the wire for one request (without gRPC's 5-byte frame header).
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }
}

/// Sends bytes that already are an encoded `ModelInferRequest`; reads only the answer's size.
#[derive(Debug, Clone)]
struct PreEncodedCodec {
    len: usize,
}

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

struct BytesEncoder {
    len: usize,
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }

    /// One buffer the size of the message, so tonic reserves once instead of growing in steps.
    fn buffer_settings(&self) -> BufferSettings {
        // 8 KiB and 32 KiB are tonic's defaults for the buffer and the yield threshold.
        BufferSettings::new(self.len.max(8 * 1024) + 8, 32 * 1024)
    }
}

impl Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = usize;
    type Encoder = BytesEncoder;
    type Decoder = SizeDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder { len: self.len }
    }

    fn decoder(&mut self) -> SizeDecoder {
        SizeDecoder
    }
}

impl TritonClient {
    /// Runs one inference of a prepared request with this deadline and returns the size of its
    /// answer (bytes of the message). With [`super::ConnectOptions::legacy_grpc`] the request is
    /// encoded afresh and its answer decoded, as first shipped.
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
        if prepared.encoded.len() > limits.max_encode {
            return Err(TritonError::MessageTooLarge {
                direction: Direction::Request,
                limit: limits.max_encode,
                message: format!("request is {} bytes", prepared.encoded.len()),
            });
        }
        let mut grpc = tonic::client::Grpc::new(self.channel())
            .max_decoding_message_size(limits.max_decode)
            .max_encoding_message_size(limits.max_encode);
        let mut request = tonic::Request::new(prepared.encoded.clone());
        request.set_timeout(timeout);
        let codec = PreEncodedCodec {
            len: prepared.encoded.len(),
        };
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
