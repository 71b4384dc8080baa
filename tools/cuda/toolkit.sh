#!/usr/bin/env bash
# Assembles the CUDA toolkit wick's CUDA builds use into DEST, from Debian trixie's non-free
# packages (the only CUDA these machines can reach: NVIDIA's download site is not).
#
# Why CUDA 12.4 from trixie:
# - Candle ships its kernels as PTX, which the device's driver compiles at load time, and a
#   driver takes PTX only from its own CUDA version or older. JetPack 6.1/6.2 (L4T r36.4) have
#   CUDA 12.6, so 12.4's PTX (ISA 8.4) loads there; JetPack 6.0's CUDA 12.2 driver refuses it.
#   The oldest JetPack wick supports is therefore 6.1.
# - bookworm's 11.8 would also make loadable PTX, but its libraries are the .so.11 generation
#   and JetPack 6 ships .so.12 (cuBLAS, cuRAND): the runtime could not find them.
# - CUDA 13 (PyPI's nvidia-cuda-nvcc) makes PTX no JetPack 6 driver loads.
#
# The packages are only unpacked, never installed: NVIDIA's binaries in them run on bookworm's
# glibc, so no trixie build root is needed, and the host's package database stays as it was.
# Only what a build needs is kept (about 200 MB of the 1 GB per architecture):
#   bin/      nvcc, cicc, ptxas, fatbinary, nvlink, cudafe++, ... and our own nvcc.profile
#   include/  the CUDA headers, libcu++ (cuda_fp16.h needs <nv/target>), CUB and Thrust
#             (Candle's MoE kernels)
#   nvvm/libdevice
#   lib64/                          libcudart_static.a, x86-64
#   targets/aarch64-linux/lib/      libcudart_static.a, arm64 (for `make cross`)
#
# With --runtime it makes instead the shared libraries a GPU machine runs wick and llama.cpp
# with (cudart, cuBLAS, cuBLASLt, cuRAND; about 700 MB), for tools/gpu-check; the driver
# itself (libcuda.so.1) must come with the machine.
#
# Usage: tools/cuda/toolkit.sh [--runtime] DEST
set -euo pipefail

RUNTIME=false
if [ "${1:-}" = --runtime ]; then RUNTIME=true; shift; fi
DEST=${1:?usage: tools/cuda/toolkit.sh [--runtime] DEST}

# Pinned by version and by sha256; apt also checks each file against trixie's signed index.
PACKAGES=(
  "nvidia-cuda-toolkit amd64 12.4.131~12.4.1-2 cd5fe85aee38d108b315f408a688641478f2402622a10c677478eb7a6c4e5319"
  "nvidia-cuda-dev amd64 12.4.127~12.4.1-2 d846838f914a0176948d48a8bcade5d6dbcccb5c9374343f6475f5503f173ee0"
  "nvidia-cuda-dev arm64 12.4.127~12.4.1-2 cacf17cf78e8bc35bc17c8a97beddc7d26f4beea8d6b60bb0754c244ea33d78c"
  "libcu++-dev all 2.3.2-2 30e911c1909265591b5ea793df0e49e56bed631238b68b3e75c97590c4985686"
  "libcub-dev all 2.3.2-2 4a7e7c24ef2994140e47dba59507db60e281f968f17c18cf1cadc9c27c17c26b"
  "libthrust-dev all 2.3.2-2 61fe44b65834efad9b079452ebec7396d4b37712d251421f4218b3bc652a3147"
)
RUNTIME_PACKAGES=(
  "libcudart12 amd64 12.4.127~12.4.1-2 361b3721cf84bf068e111ff013c819de61cb475268b0d38db99839471f1b4130"
  "libcublas12 amd64 12.4.5.8~12.4.1-2 2ddc22809d16b157021a4d57db6b2221cf7c46f42654c95df86ce73beb15c1f7"
  "libcublaslt12 amd64 12.4.5.8~12.4.1-2 2f67754a6dd7095de1a5c4503f20539981f31f0cd627565973c547e997fc7732"
  "libcurand10 amd64 11.1.1+~10.3.5.147~12.4.1-2 a7052072ec670b17293fb71b3a8df9640866f60846aa758d11b138555c752c8f"
)
if $RUNTIME; then PACKAGES=("${RUNTIME_PACKAGES[@]}"); fi
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$DEST/.complete" ]; then
  exit 0
fi
for tool in apt-get dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || { echo "toolkit.sh: $tool not found; this script needs Debian's apt and dpkg" >&2; exit 1; }
done
[ -f "$KEYRING" ] || { echo "toolkit.sh: $KEYRING missing: install debian-archive-keyring" >&2; exit 1; }

work=$(mktemp -d "${DEST%/}.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs" "$work/x"

# A private apt configuration: trixie's lists and the downloads stay in $work.
echo "deb [signed-by=$KEYRING] $MIRROR trixie main non-free" >"$work/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
  -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root
)
echo "toolkit.sh: fetching CUDA 12.4$($RUNTIME && echo "'s runtime libraries") from Debian trixie non-free ($MIRROR)"
apt-get -q "${apt_opts[@]}" update >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
specs=()
for p in "${PACKAGES[@]}"; do
  read -r name arch version _ <<<"$p"
  if [ "$arch" = all ]; then specs+=("$name=$version"); else specs+=("$name:$arch=$version"); fi
done
(cd "$work/debs" && apt-get -q "${apt_opts[@]}" download "${specs[@]}") >>"$work/apt.log" 2>&1 \
  || { cat "$work/apt.log" >&2; echo "toolkit.sh: a pinned package is no longer in trixie; update PACKAGES" >&2; exit 1; }
for p in "${PACKAGES[@]}"; do
  read -r name arch version sum <<<"$p"
  deb="$work/debs/${name}_${version//:/%3a}_${arch}.deb"
  [ -f "$deb" ] || { echo "toolkit.sh: $deb was not downloaded" >&2; exit 1; }
  echo "$sum  $deb" | sha256sum -c --quiet - || { echo "toolkit.sh: $deb does not match its pinned sha256" >&2; exit 1; }
done

x="$work/x"
out="$work/out"
unpack() { dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "${@:3}"; }
mkdir -p "$x/amd64" "$x/arm64"
if $RUNTIME; then
  mkdir -p "$out/lib64"
  for deb in "$work"/debs/*.deb; do unpack "$deb" "$x/amd64"; done
  cp -a "$x"/amd64/usr/lib/x86_64-linux-gnu/lib*.so.* "$out/lib64/"
  # The unversioned names that a link (llama.cpp's) asks for.
  for lib in cudart cublas cublasLt curand; do
    so=$(cd "$out/lib64" && ls "lib$lib.so."* | sort | head -n1)
    ln -s "$so" "$out/lib64/lib$lib.so"
  done
  printf '%s\n' "${PACKAGES[@]}" >"$out/.complete"
  rm -rf "$DEST"
  mv "$out" "$DEST"
  echo "toolkit.sh: CUDA 12.4 runtime libraries ready in $DEST"
  exit 0
fi
unpack "$work"/debs/nvidia-cuda-toolkit_*_amd64.deb "$x/amd64"
for deb in "$work"/debs/lib{cu++,cub,thrust}-dev_*_all.deb; do unpack "$deb" "$x/amd64"; done
unpack "$work"/debs/nvidia-cuda-dev_*_amd64.deb "$x/amd64" --wildcards './usr/include/*' \
  ./usr/lib/x86_64-linux-gnu/libcudart_static.a
unpack "$work"/debs/nvidia-cuda-dev_*_arm64.deb "$x/arm64" ./usr/lib/aarch64-linux-gnu/libcudart_static.a

tk="$x/amd64/usr/lib/nvidia-cuda-toolkit"
mkdir -p "$out/bin" "$out/nvvm" "$out/lib64" "$out/targets/aarch64-linux/lib"
# Debian's /usr/bin/nvcc is a wrapper script around the real one in its private directory.
cp -a "$tk/bin/nvcc" "$tk/bin/cicc" "$tk/bin/crt" "$out/bin/"
for tool in ptxas fatbinary nvlink cudafe++ bin2c cuobjdump nvdisasm nvprune; do
  cp -a "$x/amd64/usr/bin/$tool" "$out/bin/"
done
cp -a "$tk/libdevice" "$out/nvvm/"
cp -a "$x/amd64/usr/include" "$out/include"
cp -a "$x/amd64/usr/lib/x86_64-linux-gnu/libcudart_static.a" "$out/lib64/"
cp -a "$x/arm64/usr/lib/aarch64-linux-gnu/libcudart_static.a" "$out/targets/aarch64-linux/lib/"
# nvcc reads nvcc.profile beside itself; Debian's points into /usr, this one into DEST.
cat >"$out/bin/nvcc.profile" <<'EOF'
TOP                = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH              += $(_HERE_):
INCLUDES          += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES          =+ $(_SPACE_) "-L$(TOP)/lib64"
EOF
"$out/bin/nvcc" --version | grep -q 'release 12.4' || { echo "toolkit.sh: the unpacked nvcc does not run" >&2; exit 1; }
printf '%s\n' "${PACKAGES[@]}" >"$out/.complete"

rm -rf "$DEST"
mv "$out" "$DEST"
echo "toolkit.sh: CUDA 12.4 ready in $DEST"
