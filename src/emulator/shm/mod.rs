//! Triton's system shared memory: regions a client registers by POSIX shared-memory key, inputs read
//! from them and outputs written into them, with the checks and the wording of Triton's
//! `SharedMemoryManager` so that tritonclient's and perf_analyzer's `--shared-memory system` work.
//!
//! A region keeps the descriptor `shm_open` gave at registration, so a client may unlink the name
//! right after registering (nothing is left in `/dev/shm` if either side dies) and the region lives
//! on until it is unregistered. Tensors are read and written with positioned I/O on that
//! descriptor, bounds-checked against the registered window, rather than through a mapping: the
//! crate forbids `unsafe`, and one copy per tensor is what the emulator's own checks need anyway.
//! A request holds a [`Window`] (a reference, not a copy) until the model needs the bytes, as
//! Triton's request holds a pointer into the mapping that the backend reads when the batch
//! executes; a region unregistered while requests still hold it stays listed and usable until the
//! last of them is done, as Triton's `SharedMemoryManager` defers it (`awaiting_unregister_`).
//! CUDA shared memory is refused as a Triton built without GPU support refuses it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::Value;

use crate::emulator::service::InferReply;
use crate::emulator::status::{Code, ServeError};
use crate::proto::{InferParameter, infer_parameter::ParameterChoice};

/// Key prefix Triton keeps for its own regions (`kTritonSharedMemoryRegionPrefix`).
const RESERVED_PREFIX: &str = "triton_python_backend_shm_region_";

/// One registered region: a window of `byte_size` bytes at `offset` in the object behind `key`.
#[derive(Debug)]
struct Region {
    name: String,
    key: String,
    offset: u64,
    byte_size: u64,
    file: File,
    /// Unregistered while requests held it: removed when the last of them lets go.
    awaiting_unregister: AtomicBool,
}

type Map = BTreeMap<String, Arc<Region>>;

fn lock(map: &Mutex<Map>) -> MutexGuard<'_, Map> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A region as Status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// The registered system shared memory regions, by name.
#[derive(Debug, Default)]
pub(crate) struct Regions {
    map: Arc<Mutex<Map>>,
}

/// Where one tensor lives in shared memory, as a request's parameters say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TensorShm {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// A checked window of a registered region: what one tensor reads or writes. It holds the region,
/// so an unregister while a request is in flight takes effect when the request is done, as in Triton.
#[derive(Debug)]
pub(crate) struct Window {
    /// `None` only while the window is dropped (see its `Drop`).
    region: Option<Arc<Region>>,
    map: Arc<Mutex<Map>>,
    offset: u64,
    byte_size: u64,
}

impl Clone for Window {
    fn clone(&self) -> Window {
        Window {
            region: self.region.clone(),
            map: Arc::clone(&self.map),
            offset: self.offset,
            byte_size: self.byte_size,
        }
    }
}

impl Drop for Window {
    /// Lets go of the region under the map's lock, where Unregister counts its users, so that the
    /// last user of a region awaiting unregistration removes it and none is missed.
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        let Some(region) = self.region.take() else {
            return;
        };
        // The map's reference and this one: nobody else uses the region.
        if region.awaiting_unregister.load(Ordering::Relaxed)
            && Arc::strong_count(&region) == 2
            && map
                .get(&region.name)
                .is_some_and(|r| Arc::ptr_eq(r, &region))
        {
            map.remove(&region.name);
        }
        drop(region);
    }
}

fn internal(message: String) -> ServeError {
    ServeError {
        code: Code::Internal,
        message,
    }
}

impl Regions {
    fn lock(&self) -> MutexGuard<'_, Map> {
        lock(&self.map)
    }

    /// SystemSharedMemoryRegister: opens `key`, checks the window lies inside the object, and keeps
    /// the descriptor.
    pub(crate) fn register(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), ServeError> {
        let stripped = key.trim_start_matches('/');
        if stripped.is_empty() {
            return Err(ServeError::invalid(format!(
                "cannot register shared memory region '{name}' - invalid shm key '{key}'"
            )));
        }
        if stripped.starts_with(RESERVED_PREFIX) {
            return Err(ServeError::invalid(format!(
                "cannot register shared memory region '{name}' with key '{key}' as the key \
                 contains the reserved prefix '{RESERVED_PREFIX}'"
            )));
        }
        let mut map = self.lock();
        if map.contains_key(name) {
            return Err(ServeError {
                code: Code::AlreadyExists,
                message: format!("shared memory region '{name}' already in manager"),
            });
        }
        let file = open_key(key)
            .map_err(|_| internal(format!("Unable to open shared memory region: '{key}'")))?;
        let size = file
            .metadata()
            .map_err(|_| internal(format!("Invalid shared memory region: '{key}'")))?
            .len();
        if offset.checked_add(byte_size).is_none_or(|end| end > size) {
            return Err(ServeError::invalid(format!(
                "failed to register shared memory region '{name}': invalid args"
            )));
        }
        if byte_size == 0 {
            // Triton maps the window, and mmap refuses an empty one.
            return Err(ServeError::invalid(format!(
                "failed to register shared memory region '{name}': unable to process address \
                 spaceInvalid argument"
            )));
        }
        map.insert(
            name.to_string(),
            Arc::new(Region {
                name: name.to_string(),
                key: key.to_string(),
                offset,
                byte_size,
                file,
                awaiting_unregister: AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    /// SystemSharedMemoryStatus: every region for an empty name, else the one named.
    pub(crate) fn status(&self, name: &str) -> Result<Vec<RegionStatus>, ServeError> {
        let map = self.lock();
        let status = |(name, r): (&String, &Arc<Region>)| RegionStatus {
            name: name.clone(),
            key: r.key.clone(),
            offset: r.offset,
            byte_size: r.byte_size,
        };
        if name.is_empty() {
            return Ok(map.iter().map(status).collect());
        }
        map.get_key_value(name)
            .map(|found| vec![status(found)])
            .ok_or_else(|| ServeError {
                code: Code::NotFound,
                message: format!("Unable to find system shared memory region: '{name}'"),
            })
    }

    /// SystemSharedMemoryUnregister: an unknown name is not an error (Triton's behaviour); an
    /// empty name unregisters every region. A region that requests still hold is only marked, and
    /// goes when the last of them is done.
    pub(crate) fn unregister(&self, name: &str) {
        let mut map = self.lock();
        map.retain(|n, region| {
            if !name.is_empty() && n != name {
                return true;
            }
            let in_use = Arc::strong_count(region) > 1;
            if in_use {
                region.awaiting_unregister.store(true, Ordering::Relaxed);
            }
            in_use
        });
    }

    /// The part of a region a tensor names, checked as Triton's `GetMemoryInfo` checks it.
    pub(crate) fn window(&self, shm: &TensorShm) -> Result<Window, ServeError> {
        let map = self.lock();
        let name = &shm.region;
        let region = map.get(name).ok_or_else(|| ServeError {
            code: Code::NotFound,
            message: format!("Unable to find shared memory region: '{name}'"),
        })?;
        if shm.offset >= region.byte_size {
            return Err(ServeError::invalid(format!(
                "Invalid offset for shared memory region: '{name}'"
            )));
        }
        if shm
            .offset
            .checked_add(shm.byte_size)
            .is_none_or(|end| end > region.byte_size)
        {
            return Err(ServeError::invalid(format!(
                "Invalid offset + byte size for shared memory region: '{name}'"
            )));
        }
        Ok(Window {
            region: Some(Arc::clone(region)),
            map: Arc::clone(&self.map),
            offset: shm.offset,
            byte_size: shm.byte_size,
        })
    }
}

impl Window {
    fn region(&self) -> Result<&Region, ServeError> {
        self.region
            .as_deref()
            .ok_or_else(|| internal("shared memory window already released".into()))
    }

    /// Bytes the window spans (an input's byte size, before it is read).
    pub(crate) fn len(&self) -> u64 {
        self.byte_size
    }

    /// The window's bytes, as an input's contents.
    pub(crate) fn read(&self) -> Result<Bytes, ServeError> {
        let region = self.region()?;
        let len = usize::try_from(self.byte_size)
            .map_err(|_| internal("shared memory window too large".into()))?;
        let mut buf = vec![0u8; len];
        region
            .file
            .read_exact_at(&mut buf, region.offset + self.offset)
            .map_err(|e| internal(format!("cannot read shared memory: {e}")))?;
        Ok(buf.into())
    }

    /// Writes an output at the window's start; the window must be large enough (Triton's check).
    fn write(&self, output: &str, data: &[u8]) -> Result<(), ServeError> {
        if data.len() as u64 > self.byte_size {
            return Err(internal(format!(
                "shared memory size specified with the request for output '{output}' ({} bytes) \
                 should be at least {} bytes to hold the results",
                self.byte_size,
                data.len()
            )));
        }
        let region = self.region()?;
        region
            .file
            .write_all_at(data, region.offset + self.offset)
            .map_err(|e| internal(format!("cannot write shared memory: {e}")))
    }
}

/// The outputs a request asked to have written into shared memory, checked before inference so a
/// bad region fails the request before it costs the GPU anything.
#[derive(Debug, Default)]
pub(crate) struct OutputTargets(Vec<(String, Window)>);

impl OutputTargets {
    pub(crate) fn push(&mut self, output: String, window: Window) {
        self.0.push((output, window));
    }

    pub(crate) fn contains(&self, output: &str) -> bool {
        self.0.iter().any(|(name, _)| name == output)
    }

    /// Writes each targeted output into its window and empties its data in the reply, so the
    /// front end sends only the output's name, datatype and shape.
    pub(crate) fn deliver(&self, reply: &mut InferReply) -> Result<(), ServeError> {
        for output in &mut reply.outputs {
            if let Some((_, window)) = self.0.iter().find(|(name, _)| *name == output.name) {
                window.write(&output.name, &output.data)?;
                output.data = Vec::new();
            }
        }
        Ok(())
    }
}

/// A tensor's shared-memory parameters from a gRPC request (Triton's `ParseSharedMemoryParams`).
pub(crate) fn grpc_params(
    tensor: &str,
    params: &HashMap<String, InferParameter>,
) -> Result<Option<TensorShm>, ServeError> {
    let choice = |key: &str| params.get(key).and_then(|p| p.parameter_choice.as_ref());
    let region = match params.get("shared_memory_region") {
        None => None,
        Some(p) => match &p.parameter_choice {
            Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
            _ => {
                return Err(ServeError::invalid(format!(
                    "invalid value type for 'shared_memory_region' parameter for tensor \
                     '{tensor}', expected string_param."
                )));
            }
        },
    };
    let number = |key: &str| -> Result<u64, ServeError> {
        if !params.contains_key(key) {
            return Ok(0);
        }
        if region.is_none() {
            return Err(ServeError::invalid(format!(
                "'{key}' can not be specified without 'shared_memory_region' parameter for \
                 tensor '{tensor}'"
            )));
        }
        match choice(key) {
            Some(ParameterChoice::Int64Param(v)) => Ok((*v).max(0) as u64),
            _ => Err(ServeError::invalid(format!(
                "invalid value type for '{key}' parameter for tensor '{tensor}', expected \
                 int64_param."
            ))),
        }
    };
    let offset = number("shared_memory_offset")?;
    let byte_size = number("shared_memory_byte_size")?;
    Ok(region.map(|region| TensorShm {
        region,
        offset,
        byte_size,
    }))
}

/// A tensor's shared-memory parameters from an HTTP request's JSON `parameters`.
pub(crate) fn json_params(params: Option<&Value>) -> Result<Option<TensorShm>, ServeError> {
    let Some(params) = params else {
        return Ok(None);
    };
    let Some(region) = params.get("shared_memory_region") else {
        return Ok(None);
    };
    let region = region
        .as_str()
        .ok_or_else(|| ServeError::invalid("Unable to parse 'shared_memory_region'"))?;
    let number = |key: &str| match params.get(key) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ServeError::invalid(format!("Unable to parse '{key}'"))),
    };
    Ok(Some(TensorShm {
        region: region.to_string(),
        offset: number("shared_memory_offset")?,
        byte_size: number("shared_memory_byte_size")?,
    }))
}

/// Triton without GPU support refuses CUDA shared memory with this (its Status lists nothing and its
/// Unregister succeeds).
pub(crate) fn cuda_unsupported(name: &str) -> ServeError {
    ServeError::invalid(format!(
        "failed to register CUDA shared memory region: '{name}', GPUs not supported"
    ))
}

/// CUDA Status for a named region: none is ever registered.
pub(crate) fn cuda_not_found(name: &str) -> ServeError {
    ServeError {
        code: Code::NotFound,
        message: format!("Unable to find cuda shared memory region: '{name}'"),
    }
}

#[cfg(target_os = "linux")]
fn open_key(key: &str) -> std::io::Result<File> {
    use rustix::fs::Mode;
    use rustix::shm::OFlags;
    let fd = rustix::shm::open(key, OFlags::RDWR, Mode::empty())?;
    Ok(File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn open_key(_key: &str) -> std::io::Result<File> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
