//! Build script. It matters only to a `cuda` build made with `WICK_CUDART_STATIC` set to a CUDA
//! toolkit (tools/cuda/cargo sets it): then CUDA's runtime is linked statically.
//!
//! Candle's kernel crate asks for `-lcudart`, which would make libcudart.so.12 a load-time
//! dependency: the binary would not start without CUDA installed, and on the Jetson it would
//! bind to whatever runtime the image happens to carry. Here the toolkit's libcudart_static.a
//! for the target architecture goes first on the linker's search path as `libcudart.a`, which
//! `-lcudart` then finds. The static runtime opens the driver (libcuda.so.1) itself, at the
//! first CUDA call, so a binary built this way starts on any machine.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=WICK_CUDART_STATIC");
    // src/device.rs reads it with option_env! to refuse GPUs the kernels cannot run on.
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(toolkit) = env::var_os("WICK_CUDART_STATIC") else { return };
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let toolkit = PathBuf::from(toolkit);
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let runtime = match arch.as_str() {
        "x86_64" => toolkit.join("lib64/libcudart_static.a"),
        "aarch64" => toolkit.join("targets/aarch64-linux/lib/libcudart_static.a"),
        other => panic!("WICK_CUDART_STATIC: no static CUDA runtime known for {other}; unset it to link libcudart.so"),
    };
    if !runtime.is_file() {
        panic!(
            "WICK_CUDART_STATIC: {} is missing: run tools/cuda/toolkit.sh (or `make cuda-toolkit`), or unset WICK_CUDART_STATIC",
            runtime.display()
        );
    }
    println!("cargo:rerun-if-changed={}", runtime.display());
    let dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("cudart-static");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/cudart-static");
    link(&runtime, &dir.join("libcudart.a"));
    println!("cargo:rustc-link-search=native={}", dir.display());
}

fn link(original: &Path, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(original, link)
        .unwrap_or_else(|e| panic!("link {} to {}: {e}", link.display(), original.display()));
}
