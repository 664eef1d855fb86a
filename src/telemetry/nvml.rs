//! NVML on the local machine: the most direct view of a GPU, and the one that survives MIG and DCGM
//! conflicts that make Triton drop its GPU metrics.
//!
//! `libnvidia-ml.so.1` is loaded at run time, so a build without the driver still runs; the source then
//! fails once, at [`NvmlSource::open`], and the other sources carry on.

use std::sync::Arc;
use std::time::Instant;

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::vocab::snapshot::{ProcessMemory, Source};

use super::sample::{Figure, GpuSample, GpuSource, SourceSample};
use super::{DeviceSelector, TelemetryError};

/// The label NVML failures carry in the view's `unavailable` list.
pub const NVML_LABEL: &str = "NVML unavailable";

/// NVML's process names are at most this long (`NVML_SYSTEM_PROCESS_NAME_BUFFER_SIZE`).
const PROCESS_NAME_LEN: usize = 256;

pub struct NvmlSource {
    nvml: Arc<Nvml>,
    device: DeviceSelector,
}

impl NvmlSource {
    /// Loads NVML and checks that the device exists, so that a wrong index or UUID is reported at
    /// once with the devices that do exist, rather than as a failure on every poll.
    pub fn open(device: DeviceSelector) -> Result<NvmlSource, TelemetryError> {
        let nvml = Nvml::init().map_err(|e| TelemetryError::Nvml(e.to_string()))?;
        lookup(&nvml, &device).map_err(|e| match e {
            NvmlError::NotFound | NvmlError::InvalidArg => {
                TelemetryError::NoDevice(format!("{device}; present: {}", list_devices(&nvml)))
            }
            other => TelemetryError::Nvml(other.to_string()),
        })?;
        Ok(NvmlSource {
            nvml: Arc::new(nvml),
            device,
        })
    }
}

impl GpuSource for NvmlSource {
    fn label(&self) -> String {
        NVML_LABEL.to_owned()
    }

    async fn poll(&mut self) -> Result<SourceSample, TelemetryError> {
        let nvml = Arc::clone(&self.nvml);
        let device = self.device.clone();
        tokio::task::spawn_blocking(move || read(&nvml, &device))
            .await
            .map_err(|e| TelemetryError::Nvml(format!("sampling thread failed: {e}")))?
    }
}

fn lookup<'n>(nvml: &'n Nvml, device: &DeviceSelector) -> Result<Device<'n>, NvmlError> {
    match device {
        DeviceSelector::Index(i) => nvml.device_by_index(*i),
        DeviceSelector::Uuid(u) => nvml.device_by_uuid(u.as_str()),
    }
}

fn list_devices(nvml: &Nvml) -> String {
    let count = nvml.device_count().unwrap_or(0);
    let names: Vec<String> = (0..count)
        .map(|i| {
            let uuid = nvml
                .device_by_index(i)
                .and_then(|d| d.uuid())
                .unwrap_or_else(|_| "?".to_owned());
            format!("{i}={uuid}")
        })
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// One reading of every figure NVML offers. A figure the device does not support (power on some
/// boards, processes inside containers) is left out rather than failing the whole sample.
fn read(nvml: &Nvml, selector: &DeviceSelector) -> Result<SourceSample, TelemetryError> {
    let device = lookup(nvml, selector).map_err(|e| TelemetryError::Nvml(e.to_string()))?;
    let at = Instant::now();
    let fig = |value: f64| Some(Figure::new(value, Source::Nvml, at));
    let mut gpu = GpuSample {
        name: device.name().ok(),
        uuid: device.uuid().ok(),
        ..GpuSample::default()
    };
    if let Ok(u) = device.utilization_rates() {
        gpu.utilization = fig(f64::from(u.gpu) / 100.0);
    }
    if let Ok(m) = device.memory_info() {
        gpu.memory_used_bytes = fig(m.used as f64);
        gpu.memory_total_bytes = fig(m.total as f64);
    }
    if let Ok(mw) = device.power_usage() {
        gpu.power_w = fig(f64::from(mw) / 1000.0);
    }
    if let Ok(mw) = device.enforced_power_limit() {
        gpu.power_limit_w = fig(f64::from(mw) / 1000.0);
    }
    if let Ok(mhz) = device.clock_info(Clock::SM) {
        gpu.sm_clock_mhz = fig(f64::from(mhz));
    }
    if let Ok(c) = device.temperature(TemperatureSensor::Gpu) {
        gpu.temperature_c = fig(f64::from(c));
    }
    if let Ok(mj) = device.total_energy_consumption() {
        gpu.energy_j = fig(mj as f64 / 1000.0);
    }
    if let Ok(processes) = device.running_compute_processes() {
        gpu.processes = processes
            .into_iter()
            .filter_map(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(ProcessMemory {
                    pid: p.pid,
                    name: nvml.sys_process_name(p.pid, PROCESS_NAME_LEN).ok(),
                    used_bytes: bytes,
                }),
                UsedGpuMemory::Unavailable => None,
            })
            .collect();
    }
    Ok(SourceSample {
        at,
        gpus: vec![gpu],
    })
}
