//! One request of a ModelStreamInfer stream: its responses in order, each when it is due, and the
//! empty final response that clients may ask for.

use crate::emulator::grpc::encode_infer;
use crate::emulator::service::{InferCall, InferReply, MODEL_VERSION, SharedCore};
use crate::emulator::shm::OutputTargets;
use crate::emulator::status::ServeError;
use crate::proto;
use tonic::Status;

pub(crate) type StreamSender =
    futures::channel::mpsc::UnboundedSender<Result<proto::ModelStreamInferResponse, Status>>;

/// What a stream's final empty response needs of its request.
pub(crate) struct StreamHead {
    pub model: String,
    pub id: String,
    pub empty_final: bool,
}

/// Answers one request of a stream. With `triton_enable_empty_final_response`, every response says
/// whether it is the last (`triton_final_response`), and a decoupled model ends with an empty one.
pub(crate) async fn stream_one(
    core: &SharedCore,
    head: StreamHead,
    call: Result<(InferCall, OutputTargets), ServeError>,
    tx: &StreamSender,
) {
    let StreamHead {
        model,
        id,
        empty_final,
    } = head;
    let (answer, targets) = match call {
        Ok((call, targets)) => (core.answer(call).await, targets),
        Err(e) => (Err(e), OutputTargets::default()),
    };
    let send = |message| tx.unbounded_send(Ok(message)).is_ok();
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            send(proto::ModelStreamInferResponse {
                error_message: e.message,
                infer_response: None,
            });
            return;
        }
    };
    let decoupled = answer.parts.len() != 1 || !answer.wait.is_zero();
    let count = answer.parts.len();
    for (i, (after, mut reply)) in answer.parts.into_iter().enumerate() {
        if !after.is_zero() {
            tokio::time::sleep(after).await;
        }
        let last = !decoupled && i + 1 == count;
        let flag = empty_final.then_some(last);
        let message = match targets.deliver(&mut reply) {
            Ok(()) => proto::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(encode_infer(reply, flag)),
            },
            Err(e) => proto::ModelStreamInferResponse {
                error_message: e.message,
                infer_response: None,
            },
        };
        if !send(message) {
            return;
        }
    }
    if decoupled {
        tokio::time::sleep(answer.wait).await;
        if empty_final {
            let end = InferReply {
                model,
                version: MODEL_VERSION.into(),
                id,
                outputs: Vec::new(),
            };
            send(proto::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(encode_infer(end, Some(true))),
            });
        }
    }
}
