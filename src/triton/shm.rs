//! Triton's system shared memory from the client's side: a tenant's input written once into a
//! region the server reads every request from, and its outputs written by the server into a second
//! region, so a request carries only names and offsets instead of a megabyte tensor.
//!
//! Nothing is left in `/dev/shm` whichever side is killed: each object gets a unique name (process,
//! tenant, random), and the name is unlinked as soon as the server has registered it (the server
//! keeps its own descriptor, so the region lives on until it is unregistered). Output regions are
//! never read back: a response is checked for the outputs it names, which is all the load
//! generator needs, and sharing one output region between a tenant's concurrent requests is then
//! harmless (perf_analyzer does the same).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::proto::{
    InferParameter, ModelInferRequest, SystemSharedMemoryRegisterRequest,
    SystemSharedMemoryStatusRequest, SystemSharedMemoryStatusResponse,
    SystemSharedMemoryUnregisterRequest, infer_parameter::ParameterChoice,
};
use crate::triton::{TritonClient, TritonError};

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("cannot create shared memory object '{key}': {source}")]
    Create {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shared memory: {0}")]
    Server(#[from] TritonError),
    #[error(
        "shared memory: the server's answer to a plain request has {outputs} outputs but {raw} raw contents"
    )]
    Outputs { outputs: usize, raw: usize },
}

/// A freshly created shared-memory object, unlinked when dropped (registered or not).
struct Object {
    key: String,
    file: File,
}

impl Object {
    fn create(tag: &str, len: u64) -> Result<Object, ShmError> {
        let key = format!(
            "/perseus-{}-{tag}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let file = open_new(&key, len).map_err(|source| ShmError::Create {
            key: key.clone(),
            source,
        })?;
        Ok(Object { key, file })
    }

    /// The region name the server knows it by: the key without its slash.
    fn name(&self) -> &str {
        self.key.trim_start_matches('/')
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        unlink(&self.key);
    }
}

/// The regions one tenant registered, to unregister when the tenant goes or is set up again.
#[derive(Debug)]
pub struct TenantRegions {
    client: TritonClient,
    names: Vec<String>,
}

impl TenantRegions {
    /// Unregisters the tenant's regions; a server that is gone has forgotten them anyway.
    pub async fn release(self) {
        for name in &self.names {
            let _ = self.client.unregister_system_shm(name).await;
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn region_params(name: &str, offset: u64, byte_size: u64) -> [(String, InferParameter); 3] {
    let p = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    [
        (
            "shared_memory_region".into(),
            p(ParameterChoice::StringParam(name.into())),
        ),
        (
            "shared_memory_offset".into(),
            p(ParameterChoice::Int64Param(offset as i64)),
        ),
        (
            "shared_memory_byte_size".into(),
            p(ParameterChoice::Int64Param(byte_size as i64)),
        ),
    ]
}

/// Moves a tenant's request into shared memory on `client`'s server: sends it once as it is (which
/// checks it and gives the outputs' sizes), writes its inputs into one region and registers it and
/// a region for the outputs, and returns the request that refers to them.
pub async fn attach(
    client: &TritonClient,
    tag: &str,
    request: &ModelInferRequest,
) -> Result<(ModelInferRequest, TenantRegions), ShmError> {
    let probe = client.infer(request.clone()).await?;
    if probe.outputs.len() != probe.raw_output_contents.len() {
        return Err(ShmError::Outputs {
            outputs: probe.outputs.len(),
            raw: probe.raw_output_contents.len(),
        });
    }
    let mut regions = TenantRegions {
        client: client.clone(),
        names: Vec::new(),
    };
    let mut shared = request.clone();
    shared.raw_input_contents = Vec::new();

    let input_len: u64 = request
        .raw_input_contents
        .iter()
        .map(|b| b.len() as u64)
        .sum();
    let input = Object::create(&format!("{tag}-in"), input_len)?;
    let mut offset = 0u64;
    for (tensor, bytes) in shared.inputs.iter_mut().zip(&request.raw_input_contents) {
        input
            .file
            .write_all_at(bytes, offset)
            .map_err(|source| ShmError::Create {
                key: input.key.clone(),
                source,
            })?;
        tensor.contents = None;
        tensor
            .parameters
            .extend(region_params(input.name(), offset, bytes.len() as u64));
        offset += bytes.len() as u64;
    }
    let sizes: Vec<(String, u64)> = probe
        .outputs
        .iter()
        .zip(&probe.raw_output_contents)
        .map(|(o, raw)| (o.name.clone(), raw.len() as u64))
        .collect();
    let output_len: u64 = sizes.iter().map(|(_, n)| n).sum();
    let output = Object::create(&format!("{tag}-out"), output_len.max(1))?;

    for object in [&input, &output] {
        let len = object.file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Err(e) = client
            .register_system_shm(object.name(), &object.key, 0, len)
            .await
        {
            regions.release().await;
            return Err(e.into());
        }
        regions.names.push(object.name().to_string());
    }
    let mut offset = 0u64;
    for out in &mut shared.outputs {
        if let Some((_, len)) = sizes.iter().find(|(name, _)| *name == out.name) {
            out.parameters
                .extend(region_params(output.name(), offset, *len));
            offset += len;
        }
    }
    // `input` and `output` drop here: their names are unlinked, the server's regions stay.
    Ok((shared, regions))
}

impl TritonClient {
    /// SystemSharedMemoryRegister: the server opens `key` and keeps `byte_size` bytes at `offset`.
    pub async fn register_system_shm(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), TritonError> {
        let request = SystemSharedMemoryRegisterRequest {
            name: name.into(),
            key: key.into(),
            offset,
            byte_size,
        };
        self.call(request, None, |mut c, r| async move {
            c.system_shared_memory_register(r).await
        })
        .await?;
        Ok(())
    }

    /// SystemSharedMemoryUnregister; an empty name unregisters every region.
    pub async fn unregister_system_shm(&self, name: &str) -> Result<(), TritonError> {
        let request = SystemSharedMemoryUnregisterRequest { name: name.into() };
        self.call(request, None, |mut c, r| async move {
            c.system_shared_memory_unregister(r).await
        })
        .await?;
        Ok(())
    }

    /// SystemSharedMemoryStatus of one region, or of all with an empty name.
    pub async fn system_shm_status(
        &self,
        name: &str,
    ) -> Result<SystemSharedMemoryStatusResponse, TritonError> {
        let request = SystemSharedMemoryStatusRequest { name: name.into() };
        self.call(request, None, |mut c, r| async move {
            c.system_shared_memory_status(r).await
        })
        .await
    }
}

#[cfg(target_os = "linux")]
fn open_new(key: &str, len: u64) -> std::io::Result<File> {
    use rustix::fs::Mode;
    use rustix::shm::OFlags;
    let fd = rustix::shm::open(
        key,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    let file = File::from(fd);
    if let Err(e) = file.set_len(len) {
        unlink(key);
        return Err(e);
    }
    Ok(file)
}

#[cfg(target_os = "linux")]
fn unlink(key: &str) {
    let _ = rustix::shm::unlink(key);
}

#[cfg(not(target_os = "linux"))]
fn open_new(_key: &str, _len: u64) -> std::io::Result<File> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(not(target_os = "linux"))]
fn unlink(_key: &str) {}
