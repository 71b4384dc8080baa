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
    #[error("device {choice} asked for, but this wick was built without CUDA: rebuild it with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use --device cpu")]
    NotBuilt { choice: DeviceChoice },
    #[error("CUDA device {ordinal} cannot be opened: {message}; check the NVIDIA driver (`nvidia-smi`, or `tegrastats` on a Jetson), that this user may use /dev/nvidia*, and the device number, or use --device cpu")]
    Cuda { ordinal: usize, message: String },
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
#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Option<Result<Device, DeviceError>> {
    Some(Device::new_cuda(ordinal).map_err(|e| DeviceError::Cuda { ordinal, message: e.to_string() }))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Option<Result<Device, DeviceError>> {
    None
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

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let e = open(DeviceChoice::Cuda(1)).unwrap_err().to_string();
        assert!(e.contains("cuda:1") && e.contains("--features cuda") && e.contains("--device cpu"), "{e}");
    }
}
