//! The one compute device all three engines run on. It is chosen once per process (`--device`,
//! else `runtime.device`, else CUDA when this build has it and a GPU is present, else the CPU)
//! and the same handle goes to Whisper, the language model and the voice: on a Jetson every
//! CUDA device opened is another context in the 16 GB the models share.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// Which device to run on, as `--device` and `runtime.device` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when this build has CUDA and it opens, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device N (`cuda` is `cuda:0`); an error when it cannot be opened.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || format!("{s:?} is not a device; use \"cpu\", \"cuda\", \"cuda:N\" (N = 0, 1, ...) or \"auto\"");
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceChoice::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error("device {choice} asked for, but this wick was built without CUDA: rebuild it with `make cuda-check` (or `cargo build --release --features cuda` where the CUDA toolkit is installed), or use --device cpu")]
    NotBuilt { choice: DeviceChoice },
    #[error("{choice} cannot be used: {what} is not installed ({library} not found): {hint}, or use --device cpu")]
    MissingLibrary { choice: DeviceChoice, what: &'static str, library: &'static str, hint: &'static str },
    #[error("CUDA device {ordinal} cannot be opened: {message}; check the NVIDIA driver (`nvidia-smi`, or `tegrastats` on a Jetson), that this user may use /dev/nvidia*, and the device number, or use --device cpu")]
    Cuda { ordinal: usize, message: String },
    #[error("CUDA device {ordinal} ({name}) has compute capability {major}.{minor}, but this wick's kernels were built for {built}: rebuild it with CUDA_COMPUTE_CAP={major}{minor}, or use --device cpu")]
    WrongArchitecture { ordinal: usize, name: String, major: i32, minor: i32, built: String },
}

/// What `wick doctor` and the benchmarks say about an open GPU.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuInfo {
    pub name: String,
    /// (major, minor): the Orin is (8, 7).
    pub compute_capability: (i32, i32),
    pub free_mib: f64,
    pub total_mib: f64,
}

impl GpuInfo {
    /// Memory in use on the whole device (all processes): on a Jetson the GPU shares the
    /// system's memory, so this is what the models take from it.
    pub fn used_mib(&self) -> f64 {
        self.total_mib - self.free_mib
    }
}

/// The GPU behind `device` (None for the CPU, or when the driver cannot say).
pub fn gpu_info(device: &Device) -> Option<GpuInfo> {
    cuda::info(device)
}

/// Opens the chosen device. `Auto` never fails: without a usable GPU it is the CPU.
pub fn open(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(ordinal) => open_cuda(ordinal).unwrap_or(Err(DeviceError::NotBuilt { choice })),
        DeviceChoice::Auto => match open_cuda(0) {
            Some(Ok(device)) => Ok(device),
            Some(Err(e)) => {
                tracing::warn!("{e}: running on the CPU");
                Ok(Device::Cpu)
            }
            None => Ok(Device::Cpu),
        },
    }
}

/// CUDA device `ordinal`, or `None` in a build without CUDA.
fn open_cuda(ordinal: usize) -> Option<Result<Device, DeviceError>> {
    cuda::open(ordinal)
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    use candle_core::Device;

    use super::{DeviceChoice, DeviceError, GpuInfo};

    /// The libraries Candle opens when it makes a CUDA device, each by the names cudarc's
    /// loader tries (the versioned one is what JetPack and the driver packages install).
    const LIBRARIES: &[(&str, &str, &[&str], &str)] = &[
        (
            "the NVIDIA driver",
            "libcuda.so.1",
            &["libcuda.so.1", "libcuda.so"],
            "install the NVIDIA driver (on a Jetson: flash JetPack 6.1 or newer)",
        ),
        (
            "cuBLAS",
            "libcublas.so.12",
            &["libcublas.so.12", "libcublas.so"],
            "install CUDA 12's cuBLAS (libcublas12; on a Jetson: the nvidia-l4t-cuda and cuda-libraries packages)",
        ),
        (
            "cuBLASLt",
            "libcublasLt.so.12",
            &["libcublasLt.so.12", "libcublasLt.so"],
            "install CUDA 12's cuBLAS (libcublaslt12; on a Jetson: the cuda-libraries packages)",
        ),
        (
            "cuRAND",
            "libcurand.so.10",
            &["libcurand.so.10", "libcurand.so"],
            "install CUDA 12's cuRAND (libcurand10; on a Jetson: the cuda-libraries packages)",
        ),
    ];

    /// The compute capability the kernels were built for (CUDA_COMPUTE_CAP at build time).
    const BUILT_FOR: Option<&str> = option_env!("CUDA_COMPUTE_CAP");

    pub fn open(ordinal: usize) -> Option<Result<Device, DeviceError>> {
        Some(open_checked(ordinal))
    }

    fn open_checked(ordinal: usize) -> Result<Device, DeviceError> {
        let choice = DeviceChoice::Cuda(ordinal);
        for &(what, library, names, hint) in LIBRARIES {
            // SAFETY: loading runs the library's initialisers; these are NVIDIA's own
            // libraries, which Candle would load in the same way a moment later.
            if !names.iter().any(|n| unsafe { libloading::Library::new(*n) }.is_ok()) {
                return Err(DeviceError::MissingLibrary { choice, what, library, hint });
            }
        }
        // cudarc panics where a library lacks a symbol it wants (a driver older than the
        // toolkit): that is an error for this device, not a crash of the appliance.
        let opened = catch_unwind(AssertUnwindSafe(|| Device::new_cuda(ordinal))).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the CUDA library panicked");
            Err(candle_core::Error::Msg(message.to_string()))
        });
        let device = opened.map_err(|e| DeviceError::Cuda { ordinal, message: e.to_string() })?;
        if let (Some(info), Some(built)) = (info(&device), BUILT_FOR) {
            let (major, minor) = info.compute_capability;
            if !runs_kernels_for(built, major, minor) {
                let built = format!("sm_{built}");
                return Err(DeviceError::WrongArchitecture { ordinal, name: info.name, major, minor, built });
            }
        }
        Ok(device)
    }

    /// Whether a GPU of compute capability major.minor runs kernels built for `built` ("87").
    /// Most of Candle's kernels are PTX, which runs on that capability and any newer one, but
    /// its quantized matmuls are machine code for one architecture family: same major
    /// version, same or newer minor (sm_87 code runs on 8.7 and 8.9, not on 8.6 or 9.0).
    pub(super) fn runs_kernels_for(built: &str, major: i32, minor: i32) -> bool {
        match built.trim().parse::<i32>() {
            Ok(cap) => major == cap / 10 && minor >= cap % 10,
            Err(_) => true,
        }
    }

    pub fn info(device: &Device) -> Option<GpuInfo> {
        let Device::Cuda(cuda) = device else { return None };
        let context: std::sync::Arc<CudaContext> = cuda.cuda_stream().context().clone();
        let name = context.name().ok()?;
        let compute_capability = context.compute_capability().ok()?;
        let (free, total) = context.mem_get_info().ok()?;
        let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
        Some(GpuInfo { name, compute_capability, free_mib: mib(free), total_mib: mib(total) })
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use candle_core::Device;

    use super::{DeviceError, GpuInfo};

    pub fn open(_ordinal: usize) -> Option<Result<Device, DeviceError>> {
        None
    }

    pub fn info(_device: &Device) -> Option<GpuInfo> {
        None
    }
}

/// How a report names a device: "cpu" or "cuda:N".
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_as_documented() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        assert_eq!(" auto ".parse(), Ok(DeviceChoice::Auto));
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", ""] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("\"cpu\", \"cuda\", \"cuda:N\""), "{bad:?}: {e}");
        }
        for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(3)] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }

    #[test]
    fn the_cpu_and_auto_always_open() {
        assert!(matches!(open(DeviceChoice::Cpu), Ok(Device::Cpu)));
        assert!(open(DeviceChoice::Auto).is_ok());
        assert_eq!(describe(&Device::Cpu), "cpu");
    }

    /// A CUDA build where the driver is missing (every CI machine) names the library and
    /// `auto` falls back to the CPU; where the driver is present (tools/gpu-check), device 0
    /// opens and says what it is.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_opens_or_names_the_missing_library() {
        // SAFETY: the NVIDIA driver's own library, as Candle would load it.
        let driver = unsafe { libloading::Library::new("libcuda.so.1") }.is_ok();
        let opened = open(DeviceChoice::Cuda(0));
        if driver {
            let device = opened.expect("the driver is installed, so cuda:0 opens");
            let info = gpu_info(&device).expect("an open GPU describes itself");
            assert!(!info.name.is_empty() && info.total_mib > 0.0, "{info:?}");
        } else {
            let e = opened.unwrap_err().to_string();
            assert!(e.contains("libcuda.so.1 not found") && e.contains("--device cpu"), "{e}");
            assert!(matches!(open(DeviceChoice::Auto), Ok(Device::Cpu)));
        }
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn kernels_run_on_their_architecture_family() {
        assert!(cuda::runs_kernels_for("87", 8, 7));
        assert!(cuda::runs_kernels_for("87", 8, 9));
        assert!(!cuda::runs_kernels_for("87", 8, 6));
        assert!(!cuda::runs_kernels_for("87", 9, 0), "the quantized matmuls are sm_8x machine code");
        assert!(!cuda::runs_kernels_for("90", 8, 7));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let e = open(DeviceChoice::Cuda(1)).unwrap_err().to_string();
        assert!(e.contains("cuda:1") && e.contains("--features cuda") && e.contains("--device cpu"), "{e}");
    }
}
