//! What the emulator does, independent of protocol: the gRPC and HTTP front ends translate their
//! messages into these calls, so both behave identically (same checks, same errors, same statistics).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::catalog::Compute;
use crate::catalog::{Catalog, GpuSpec};
use crate::emulator::admission::{Admission, REQUEST_OVERHEAD_BYTES};
use crate::emulator::examples;
use crate::emulator::realtime::{RealTime, SubmitError};
use crate::emulator::repository::{self, Entry, ModelState, Repository};
use crate::emulator::sequence::{SequenceFlags, Sequences};
use crate::emulator::settings::Settings;
use crate::emulator::sim::{GpuSetup, ModelCounters, ModelId, SimError};
use crate::emulator::statistics::statistics_message;
use crate::emulator::status::{Code, ServeError};
use crate::emulator::tensors::{self, InputData, InputTensor, OutputTensor, Signature};
use crate::proto;

/// The only version each emulated model has, as in Triton's example repositories.
pub(crate) const MODEL_VERSION: &str = "1";

/// The emulated GPU as the metrics endpoint describes it.
#[derive(Debug, Clone)]
pub(crate) struct GpuInfo {
    pub name: String,
    pub display: String,
    pub uuid: String,
    pub tdp_w: f64,
}

/// An inference request after decoding.
#[derive(Debug, Clone)]
pub(crate) struct InferCall {
    pub model: String,
    pub version: String,
    pub id: String,
    pub inputs: Vec<InputTensor<InputData>>,
    /// Empty: all outputs.
    pub outputs: Vec<String>,
    /// Outputs asked for as classes (Triton's classification extension): name and class count.
    pub classes: Vec<(String, u32)>,
    pub sequence: SequenceFlags,
}

#[derive(Debug, Clone)]
pub(crate) struct InferReply {
    pub model: String,
    pub version: String,
    pub id: String,
    pub outputs: Vec<OutputTensor>,
}

/// Everything a request is answered with: one reply, or for a decoupled model one per part, each
/// sent `after` the previous one, and then `wait` before the request completes.
#[derive(Debug)]
pub(crate) struct Answer {
    pub parts: Vec<(Duration, InferReply)>,
    pub wait: Duration,
}

pub(crate) struct Core {
    pub clock: RealTime,
    pub gpu: GpuInfo,
    repo: Mutex<Repository>,
    /// Unix time of the sim's epoch, in ns, for `last_inference`.
    unix_epoch_ns: u64,
    admission: Admission,
    sequences: Sequences,
    /// Logging and trace settings, as the front ends report and change them.
    pub settings: Settings,
    /// Registered system shared memory regions (see [`crate::emulator::shm`]).
    pub shm: crate::emulator::shm::Regions,
    /// Each model's latency summaries, for `/metrics`.
    pub summaries: crate::emulator::summaries::Summaries,
}

impl Core {
    /// `max_queued_bytes` bounds what admitted, unanswered requests hold (see [`Admission`]).
    pub(crate) fn new(
        catalog: &Catalog,
        gpu: &GpuSpec,
        profile: Option<&str>,
        max_queued_bytes: u64,
    ) -> std::io::Result<Core> {
        let clock = RealTime::start(GpuSetup {
            name: gpu.name.clone(),
            ..crate::emulator::sim::gpu_setup(gpu)
        })?;
        let since_epoch = clock.epoch().elapsed();
        let unix_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.saturating_sub(since_epoch).as_nanos() as u64);
        Ok(Core {
            clock,
            gpu: GpuInfo {
                name: gpu.name.clone(),
                display: gpu.display.clone(),
                uuid: format!("GPU-perseus-emulated-{}", gpu.name.to_lowercase()),
                tdp_w: gpu.tdp_w,
            },
            repo: Mutex::new(Repository::new(catalog, gpu, profile)),
            unix_epoch_ns,
            admission: Admission::new(max_queued_bytes),
            sequences: Sequences::default(),
            settings: Settings::default(),
            shm: Default::default(),
            summaries: Default::default(),
        })
    }

    fn repo(&self) -> MutexGuard<'_, Repository> {
        self.repo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Names of the models resident now, in repository order.
    pub(crate) fn loaded(&self) -> Vec<String> {
        let repo = self.repo();
        repo.models
            .iter()
            .filter(|(_, e)| e.ready_id().is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Names of every model this GPU's catalog offers.
    pub(crate) fn available(&self) -> Vec<String> {
        self.repo().models.keys().cloned().collect()
    }

    /// Loads (or reloads, with a new configuration) a model. A reload first unloads, as Triton does, so
    /// a configuration that no longer fits leaves the model unavailable with the reason in the index.
    pub(crate) fn load(&self, name: &str, config_json: Option<&str>) -> Result<(), ServeError> {
        let mut repo = self.repo();
        let entry = repo.get_mut(name).ok_or_else(|| ServeError {
            code: Code::NotFound,
            message: format!(
                "failed to load '{name}', failed to poll from model repository: no model '{name}' for GPU {}",
                self.gpu.name
            ),
        })?;
        let settings = match config_json {
            Some(json) => repository::apply_config_json(&entry.defaults, json)
                .map_err(|e| ServeError::invalid(format!("failed to load '{name}': {e}")))?,
            None => entry.defaults.clone(),
        };
        if let Some(id) = entry.ready_id() {
            self.clock.unload(id).map_err(|e| sim_error(name, e))?;
            entry.state = ModelState::Unavailable("unloaded".into());
        }
        self.sequences.forget(name);
        entry.settings = settings;
        match self.clock.load(entry.setup()) {
            Ok(id) => {
                entry.state = ModelState::Ready(id);
                Ok(())
            }
            Err(e) => {
                let err = sim_error(name, e);
                entry.state = ModelState::Unavailable(err.message.clone());
                Err(err)
            }
        }
    }

    /// Unloads a model; requests still queued for it fail with UNAVAILABLE.
    pub(crate) fn unload(&self, name: &str) -> Result<(), ServeError> {
        let mut repo = self.repo();
        let entry = repo.get_mut(name).ok_or_else(|| ServeError {
            code: Code::NotFound,
            message: format!("failed to unload '{name}', no model '{name}' in the repository"),
        })?;
        if let Some(id) = entry.ready_id() {
            self.clock.unload(id).map_err(|e| sim_error(name, e))?;
        }
        entry.state = ModelState::Unavailable("unloaded".into());
        self.sequences.forget(name);
        Ok(())
    }

    /// Whether a model (and version) is ready; unknown models are simply not ready, as in Triton.
    pub(crate) fn is_ready(&self, name: &str, version: &str) -> bool {
        self.with_ready(name, version, |_, _| ()).is_ok()
    }

    /// Triton's error for a model that is unknown or not loaded, so a front end can answer that
    /// before it decodes a body meant for the model.
    pub(crate) fn require_ready(&self, name: &str, version: &str) -> Result<(), ServeError> {
        self.with_ready(name, version, |_, _| ())
    }

    /// A loaded model's entry, or Triton's error for an unknown / unloaded one.
    pub(crate) fn ready_entry(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(ModelId, Entry), ServeError> {
        self.with_ready(name, version, |id, entry| (id, entry.clone()))
    }

    /// Runs `f` on a loaded model's entry under the repository lock, so the inference path takes
    /// only what it needs rather than a copy of the whole entry.
    fn with_ready<R>(
        &self,
        name: &str,
        version: &str,
        f: impl FnOnce(ModelId, &Entry) -> R,
    ) -> Result<R, ServeError> {
        let repo = self.repo();
        let entry = repo
            .get(name)
            .ok_or_else(|| ServeError::unknown_model(name))?;
        let id = entry
            .ready_id()
            .ok_or_else(|| ServeError::unavailable_model(name))?;
        if !version.is_empty() && version != MODEL_VERSION {
            return Err(ServeError {
                code: Code::Unavailable,
                message: format!(
                    "Request for unknown model: '{name}' version {version} is not available"
                ),
            });
        }
        Ok(f(id, entry))
    }

    /// A request on a one-answer endpoint (ModelInfer, HTTP): a decoupled model is refused there
    /// with Triton's wording, as its responses need a stream.
    pub(crate) async fn infer(
        &self,
        call: InferCall,
        endpoint: &str,
    ) -> Result<InferReply, ServeError> {
        let decoupled = self.with_ready(&call.model, &call.version, |_, e| {
            e.signature.compute == Compute::Repeat
        })?;
        if decoupled {
            return Err(ServeError {
                code: Code::Unsupported,
                message: format!(
                    "{endpoint} doesn't support models with decoupled transaction policy"
                ),
            });
        }
        let mut answer = self.answer(call).await?;
        let (_, reply) = answer.parts.pop().ok_or_else(|| ServeError {
            code: Code::Internal,
            message: "the model produced no response".into(),
        })?;
        Ok(reply)
    }

    /// Admits a request to its sequence now, for a front end that must keep its requests' order
    /// (a stream) while answering them concurrently; other models are left alone.
    pub(crate) fn admit_sequence(&self, call: &mut InferCall) -> Result<(), ServeError> {
        let (sig, max_batch) = self.with_ready(&call.model, &call.version, |_, e| {
            (Arc::clone(&e.signature), e.settings.max_batch)
        })?;
        if sig.compute == Compute::Sequence {
            let batch = tensors::validate_inputs(&sig, max_batch, &call.inputs)?;
            let start = self.sequences.admit(&call.model, batch, &call.sequence)?;
            call.sequence.admitted = Some(start);
        }
        Ok(())
    }

    /// Validates, queues on the modelled GPU, and answers when the model says the batch finished.
    pub(crate) async fn answer(&self, call: InferCall) -> Result<Answer, ServeError> {
        let (id, sig, max_batch, max_queue_size) =
            self.with_ready(&call.model, &call.version, |id, entry| {
                (
                    id,
                    Arc::clone(&entry.signature),
                    entry.settings.max_batch,
                    entry.settings.max_queue_size,
                )
            })?;
        let sig: &Signature = &sig;
        tensors::validate_outputs(sig, &call.outputs)?;
        let batch = tensors::validate_inputs(sig, max_batch, &call.inputs)?;
        let start = match (sig.compute, call.sequence.admitted) {
            (Compute::Sequence, Some(start)) => start,
            (Compute::Sequence, None) => {
                self.sequences.admit(&call.model, batch, &call.sequence)?
            }
            _ => false,
        };
        // What the request holds until it is answered: its own input bytes (a shared-memory input
        // holds none, it is read in place), its outputs, and the fixed cost of a request.
        let input_bytes: u64 = call.inputs.iter().map(|t| t.data.held()).sum();
        let output_bytes =
            Signature::bytes_per_image(&sig.outputs).saturating_mul(u64::from(batch));
        let charge = input_bytes
            .saturating_add(output_bytes)
            .saturating_add(REQUEST_OVERHEAD_BYTES);
        let _held = self.admission.admit(charge).map_err(|held| ServeError {
            code: Code::Unavailable,
            message: format!(
                "{}Exceeds the emulator's memory bound for queued requests: {} MiB held, {} MiB \
                 allowed",
                log_request(&call.id),
                held / (1 << 20),
                self.admission.limit / (1 << 20)
            ),
        })?;
        self.execute(id, batch, max_queue_size, &call).await?;
        // The outputs are made once the modelled batch is done, so a queued request holds neither
        // them nor a copy of its shared-memory inputs. Placeholder outputs depend on no input, so
        // their windows are never read: the emulator models a copy's time, not its bytes.
        let inputs = match sig.compute {
            Compute::Placeholder => Vec::new(),
            _ => call
                .inputs
                .iter()
                .map(InputTensor::load)
                .collect::<Result<Vec<_>, _>>()?,
        };
        let parts = match sig.compute {
            Compute::Repeat => {
                let (parts, wait_ms) = examples::repeat(&inputs, &call.outputs)?;
                let parts = parts
                    .into_iter()
                    .map(|p| (Duration::from_millis(u64::from(p.delay_ms)), p.outputs))
                    .collect();
                (parts, Duration::from_millis(u64::from(wait_ms)))
            }
            _ => {
                let outputs =
                    tensors::compute_outputs(sig, max_batch, batch, &inputs, &call.outputs, start)?;
                let outputs = classify(sig, max_batch, outputs, &call.classes)?;
                (vec![(Duration::ZERO, outputs)], Duration::ZERO)
            }
        };
        let (parts, wait) = parts;
        Ok(Answer {
            parts: parts
                .into_iter()
                .map(|(after, outputs)| {
                    let reply = InferReply {
                        model: call.model.clone(),
                        version: MODEL_VERSION.into(),
                        id: call.id.clone(),
                        outputs,
                    };
                    (after, reply)
                })
                .collect(),
            wait,
        })
    }

    /// Queues the request's batch on the modelled GPU and waits until the model says it finished.
    async fn execute(
        &self,
        id: ModelId,
        batch: u32,
        max_queue_size: u32,
        call: &InferCall,
    ) -> Result<(), ServeError> {
        let done = self
            .clock
            .submit(id, batch, max_queue_size)
            .map_err(|e| match e {
                SubmitError::Sim(e) => sim_error(&call.model, e),
                // Triton's wording (`PriorityQueue::PolicyQueue::Enqueue`).
                SubmitError::QueueFull => ServeError {
                    code: Code::Unavailable,
                    message: format!("{}Exceeds maximum queue size", log_request(&call.id)),
                },
            })?;
        let completion = self.clock.completion(done).await.map_err(|_| ServeError {
            code: Code::Unavailable,
            message: "the emulator is shutting down".into(),
        })?;
        self.clock.catch_up();
        if !completion.ok {
            return Err(ServeError {
                code: Code::Unavailable,
                message: format!(
                    "model '{}' was unloaded before the request executed",
                    call.model
                ),
            });
        }
        self.summaries.observe(&call.model, &completion);
        Ok(())
    }

    /// Triton's ModelStatistics for one ready model, or for every ready model when `name` is empty.
    pub(crate) fn statistics(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Vec<proto::ModelStatistics>, ServeError> {
        let targets: Vec<(String, ModelId, u64)> = if name.is_empty() {
            let repo = self.repo();
            repo.models
                .iter()
                .filter_map(|(n, e)| Some((n.clone(), e.ready_id()?, e.setup().memory_bytes)))
                .collect()
        } else {
            let (id, entry) = self.ready_entry(name, version)?;
            vec![(name.to_string(), id, entry.setup().memory_bytes)]
        };
        let unix_epoch_ns = self.unix_epoch_ns;
        Ok(self.clock.with_sim(|sim, _| {
            targets
                .iter()
                .filter_map(|(name, id, memory)| {
                    let c = sim.counters(*id)?;
                    Some(statistics_message(name, c, *memory, unix_epoch_ns))
                })
                .collect()
        }))
    }

    /// RepositoryIndex: every catalog model for this GPU with its state.
    pub(crate) fn index(
        &self,
        ready_only: bool,
    ) -> Vec<proto::repository_index_response::ModelIndex> {
        let repo = self.repo();
        repo.models
            .iter()
            .filter(|(_, e)| !ready_only || e.ready_id().is_some())
            .map(|(name, e)| {
                let (state, reason) = match &e.state {
                    ModelState::Ready(_) => ("READY", String::new()),
                    ModelState::Unavailable(reason) => ("UNAVAILABLE", reason.clone()),
                };
                proto::repository_index_response::ModelIndex {
                    name: name.clone(),
                    version: MODEL_VERSION.into(),
                    state: state.into(),
                    reason,
                }
            })
            .collect()
    }

    /// (model name, counters) for every ready model, read at the current instant (for /metrics).
    pub(crate) fn all_counters(&self) -> Vec<(String, ModelCounters)> {
        let ids: Vec<(String, ModelId)> = {
            let repo = self.repo();
            repo.models
                .iter()
                .filter_map(|(n, e)| Some((n.clone(), e.ready_id()?)))
                .collect()
        };
        self.clock.with_sim(|sim, _| {
            ids.into_iter()
                .filter_map(|(n, id)| Some((n, sim.counters(id)?.clone())))
                .collect()
        })
    }
}

/// Replaces each output asked for as classes with its top classes (the model's labels name the
/// classes of its first output).
fn classify(
    sig: &Signature,
    max_batch: u32,
    mut outputs: Vec<OutputTensor>,
    classes: &[(String, u32)],
) -> Result<Vec<OutputTensor>, ServeError> {
    for (name, count) in classes.iter().filter(|(_, count)| *count > 0) {
        let labels = (sig.outputs.first().map(|t| &t.name) == Some(name))
            .then_some(sig.labels.as_deref())
            .flatten();
        if let Some(output) = outputs.iter_mut().find(|o| &o.name == name) {
            *output = examples::classify(output, max_batch > 0, *count, labels)?;
        }
    }
    Ok(outputs)
}

/// Triton's prefix for messages about one request (`InferenceRequest::LogRequest`).
fn log_request(id: &str) -> String {
    let id = if id.is_empty() { "<id_unknown>" } else { id };
    format!("[request id: {id}] ")
}

/// The sim's refusals in Triton's codes and wording.
fn sim_error(model: &str, err: SimError) -> ServeError {
    match err {
        SimError::DoesNotFit {
            model,
            need_mib,
            free_mib,
            total_mib,
        } => ServeError {
            code: Code::ResourceExhausted,
            message: format!(
                "failed to load '{model}': out of GPU memory: the model needs {need_mib} MiB but only \
                 {free_mib} MiB of {total_mib} MiB are free"
            ),
        },
        SimError::UnknownModel(_) => ServeError::unavailable_model(model),
        SimError::BatchTooLarge { model, batch, max } => ServeError::invalid(format!(
            "inference request batch-size must be <= {max} for '{model}' (got {batch})"
        )),
        err @ SimError::InvalidSetup { .. } => {
            ServeError::invalid(format!("failed to load '{model}': {err}"))
        }
        err @ SimError::AlreadyLoaded { .. } => ServeError {
            code: Code::Internal,
            message: err.to_string(),
        },
    }
}

/// Shared handle the front ends hold.
pub(crate) type SharedCore = Arc<Core>;
