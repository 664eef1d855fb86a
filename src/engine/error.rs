//! What can go wrong at the engine's boundary, as types: the caller decides from the variant (a
//! connection error reconnects, a model error is a notice), and each message names the model.

use std::path::PathBuf;
use std::time::Duration;

use crate::loadgen::tensors::TensorError;
use crate::measure::MeterError;
use crate::triton::TritonError;
use crate::triton::shm::ShmError;

/// An error from something the engine calls with no type of its own to give (a directory lookup,
/// a recording's writer).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tenant that could not be prepared on the server.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("loading '{model}': {error}")]
    Load { model: String, error: TritonError },
    #[error("metadata of '{model}': {error}")]
    Metadata { model: String, error: TritonError },
    #[error("configuration of '{model}': {error}")]
    Config { model: String, error: TritonError },
    /// Neither the server's metadata nor the session names the model's inputs, so there is
    /// nothing to send.
    #[error(
        "model '{model}': the server's metadata lists no inputs; declare them on the tenant, \
         e.g. inputs = [{{ name = \"input-0\", datatype = \"FP32\", shape = [4] }}]"
    )]
    NoInputs { model: String },
    /// The model's tensors do not allow the tenant's request (batch above max, unknown datatype…);
    /// the tensor error names the model itself.
    #[error("{error}")]
    Request { model: String, error: TensorError },
    /// The tenant's SLA or window cannot be measured.
    #[error("{model}: {error}")]
    Meter { model: String, error: MeterError },
    /// The tenant's tensors could not be put in shared memory (`[target] transport = "shm"`).
    #[error("{model}: {error}")]
    SharedMemory { model: String, error: ShmError },
}

impl SetupError {
    /// The server's error, where the server was called.
    pub fn triton(&self) -> Option<&TritonError> {
        match self {
            Self::Load { error, .. }
            | Self::Metadata { error, .. }
            | Self::Config { error, .. } => Some(error),
            Self::SharedMemory {
                error: ShmError::Server(error),
                ..
            } => Some(error),
            Self::NoInputs { .. }
            | Self::Request { .. }
            | Self::Meter { .. }
            | Self::SharedMemory { .. } => None,
        }
    }
}

/// A statistics poll that brought nothing back.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Failed(#[from] TritonError),
    #[error("statistics took longer than {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

/// Saving a session or writing a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// This run cannot save or record at all (tests, a read-only setup).
    #[error("{what} is not available in this mode")]
    Unavailable { what: &'static str },
    /// The data directory (for sessions and recordings) could not be found.
    #[error("no data directory: {cause}")]
    NoDataDir { cause: BoxError },
    /// Writing at `path` failed (a full disk, a missing directory, no permission).
    #[error("{}: {cause}", path.display())]
    Write { path: PathBuf, cause: BoxError },
    /// The recording failed; its error names the file.
    #[error(transparent)]
    Recording(BoxError),
}

/// A connection attempt (or liveness check) that did not give a usable server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server answered, but says it is not live.
    #[error("server is not live")]
    NotLive,
    #[error(transparent)]
    Failed(#[from] TritonError),
}
