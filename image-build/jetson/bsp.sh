#!/usr/bin/env bash
# Applies NVIDIA's L4T BSP to wick's Jetson root, with NVIDIA's own scripts: the result is a
# Linux_for_Tegra tree whose rootfs/ is wick's root plus L4T's kernel, modules, firmware,
# bootloader and driver libraries, ready for image-build/jetson/flash.
#
# Usage: bsp.sh [--cuda-debs DIR] BSP ROOT_DIR DATA.img OUT_DIR
#   BSP       NVIDIA's Jetson_Linux_R36.x.x_aarch64.tbz2, or a directory it was unpacked into
#   ROOT_DIR  the Jetson's layered root (layer.sh on board/jetson-orin-nx-devkit)
#   DATA.img  /data's file system (data-fs.sh), flashed into the NVMe's `data` partition
#   OUT_DIR   gets Linux_for_Tegra/ (replaced) and bsp-report.txt
#   --cuda-debs DIR  NVIDIA's CUDA 12.6 packages for JetPack 6 that wick opens at run time and
#             the BSP does not carry (libcublas-12-6, libcurand-12-6 and what they depend on,
#             from NVIDIA's Jetson apt repository or JetPack's local CUDA repository), installed
#             after the BSP; without them wick runs on the CPU, and `wick doctor` says so
#
# The root's base is Debian trixie (rootfs.sh), or NVIDIA's Ubuntu sample root (sample-base.sh,
# which leaves etc/wick/base): on that one, NVIDIA's packages and their dependencies fit as
# they are, and the lists below are not used.
#
# In order: check the inputs (an R36 BSP with the scripts and layouts used here, an arm64 root
# made by layer.sh, root, qemu-user); unpack the BSP; move out the packages l4t-packages.txt
# skips and stop on any it does not name; check that every dependency of the rest is met in the
# root or by l4t-deps.txt (making the empty packages it lists); copy the root into rootfs/; run
# apply_binaries.sh (which runs nv_tegra/nv-apply-debs.sh: `dpkg -i` in a chroot); mask
# NVIDIA's boot verification, which wick's health gate replaces; put DATA.img and the NVMe
# layout with a `data` partition where the flash scripts read them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "bsp.sh: $*" >&2; exit 1; }
cuda_debs=""
if [ "${1:-}" = --cuda-debs ]; then cuda_debs=${2:?--cuda-debs needs a directory}; shift 2; fi
[ $# -eq 4 ] || { echo "usage: bsp.sh [--cuda-debs DIR] BSP ROOT_DIR DATA.img OUT_DIR" >&2; exit 2; }
bsp=$1 root=$2 data=$3 out=$4
if [ -n "$cuda_debs" ]; then
  ls "$cuda_debs"/libcublas-12-*.deb >/dev/null 2>&1 && ls "$cuda_debs"/libcurand-12-*.deb >/dev/null 2>&1 ||
    die "$cuda_debs has no libcublas-12-*.deb and libcurand-12-*.deb (NVIDIA's CUDA packages for JetPack 6; README: Jetson)"
fi

# ---- Inputs, before anything is written.
[ -e "$bsp" ] || die "the BSP $bsp does not exist: download Jetson Linux R36 (Jetson_Linux_R36.x.x_aarch64.tbz2) from NVIDIA (README: Jetson)"
[ -f "$root/etc/wick/image" ] || die "$root is not a root made by image-build/layer.sh (no etc/wick/image)"
grep -qx 'compatible=wick-jetson-orin-nx-devkit' "$root/etc/wick/image" || die "$root is not the Jetson's root: $(grep compatible= "$root/etc/wick/image")"
# The binary must be aarch64: ELF e_machine 0xb7 at offset 18.
[ "$(od -An -tx1 -j18 -N1 "$root/usr/bin/wick" 2>/dev/null | tr -d ' ')" = b7 ] ||
  die "$root/usr/bin/wick is not an aarch64 program (make cross builds it)"
[ -f "$data" ] || die "/data's image $data is missing (image-build/data-fs.sh makes it)"
[ "$(id -u)" = 0 ] || die "run as root: NVIDIA's apply_binaries.sh installs packages into the root with chroot"
if [ "$(uname -m)" != aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    die "the root's programs run through qemu-user: apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64"
  # apply_binaries.sh itself checks for the Debian package, not just the program.
  dpkg -s qemu-user-static >/dev/null 2>&1 || die "apply_binaries.sh needs the qemu-user-static package: apt-get install qemu-user-static"
fi
for list in l4t-packages.txt l4t-deps.txt; do [ -f "$here/$list" ] || die "$here/$list is missing"; done

mkdir -p "$out"
out=$(cd "$out" && pwd)
l4t=$out/Linux_for_Tegra
rm -rf "$l4t" "$out/bsp-report.txt"
if [ -d "$bsp" ]; then
  src=$bsp; [ -d "$bsp/Linux_for_Tegra" ] && src=$bsp/Linux_for_Tegra
  [ -f "$src/apply_binaries.sh" ] || die "$bsp holds no Linux_for_Tegra tree (no apply_binaries.sh)"
  echo "bsp.sh: copying $src"
  cp -a "$src" "$l4t"
else
  echo "bsp.sh: unpacking $bsp"
  tar -xpf "$bsp" -C "$out" || die "$bsp could not be unpacked: is it NVIDIA's Jetson_Linux_R36.x.x_aarch64.tbz2 (bzip2 installed)?"
  [ -d "$l4t" ] || die "$bsp does not unpack to Linux_for_Tegra/: not an L4T BSP"
fi

# ---- The BSP's release: JetPack 6 is L4T R36; the layouts and scripts below are R36's.
[ -f "$l4t/nv_tegra/bsp_version" ] || die "$bsp has no nv_tegra/bsp_version: not an L4T BSP"
bsp_branch=$(sed -n 's/^BSP_BRANCH=\([0-9]*\).*/\1/p' "$l4t/nv_tegra/bsp_version")
bsp_release=$(. "$l4t/nv_tegra/bsp_version" && echo "${BSP_VERSION:-$bsp_branch}")
[ "$bsp_branch" = 36 ] || die "$bsp is L4T R$bsp_release; wick's Jetson image needs L4T R36 (JetPack 6.x): download Jetson Linux R36"
for f in apply_binaries.sh nv_tegra/nv-apply-debs.sh nv_tegra/l4t_deb_packages tools/kernel_flash/l4t_initrd_flash.sh \
    tools/kernel_flash/flash_l4t_t234_nvme_rootfs_ab.xml bootloader/generic/cfg/flash_t234_qspi.xml jetson-orin-nano-devkit.conf; do
  [ -e "$l4t/$f" ] || die "$bsp (R$bsp_release) has no $f, which the image and the flash need: is the download complete?"
done
echo "bsp.sh: L4T R$bsp_release"

# On NVIDIA's Ubuntu sample root (sample-base.sh; make image-jetson SAMPLE_ROOTFS=...), every
# package applies as NVIDIA intends, and the sample root must be of the BSP's release.
base=""
[ -f "$root/etc/wick/base" ] && base=$(cat "$root/etc/wick/base")
if [ -n "$base" ]; then
  sample_release=$(printf '%s' "$base" | sed -n 's/.*_R\([0-9][0-9.]*[0-9]\)_.*/\1/p')
  [ -z "$sample_release" ] || [ "$sample_release" = "$bsp_release" ] ||
    die "the root's base is NVIDIA's sample root of R$sample_release, the BSP is R$bsp_release: use the sample root of the BSP's release"
  echo "bsp.sh: base $base: all of the BSP's packages, as NVIDIA applies them"
fi

# ---- Which packages: l4t-packages.txt decides each one (on Debian).
declare -A decision
while read -r verb name _; do
  case "$verb" in keep|skip) decision[$name]=$verb ;; ""|"#"*) ;; *) die "$here/l4t-packages.txt: '$verb $name' is not keep or skip" ;; esac
done < "$here/l4t-packages.txt"
skipped=$l4t/wick-skipped-debs
mkdir -p "$skipped"
kept=() unknown=()
for deb in "$l4t"/nv_tegra/l4t_deb_packages/*.deb "$l4t"/kernel/*.deb "$l4t"/bootloader/*.deb "$l4t"/tools/*.deb; do
  [ -f "$deb" ] || continue
  name=$(dpkg-deb -f "$deb" Package 2>/dev/null) || die "$deb is not a Debian package (a damaged download?)"
  if [ -n "$base" ]; then kept+=("$deb"); continue; fi
  case "${decision[$name]:-}" in
    keep) kept+=("$deb") ;;
    skip) mv "$deb" "$skipped/" ;;
    *) unknown+=("$name (${deb#"$l4t"/})") ;;
  esac
done
if [ ${#unknown[@]} -gt 0 ]; then
  printf 'bsp.sh: %s\n' "this BSP has packages image-build/jetson/l4t-packages.txt does not name; decide keep or skip for each:" "${unknown[@]/#/  }" >&2
  exit 1
fi
[ ${#kept[@]} -gt 0 ] || die "no package of l4t-packages.txt's keep list is in $bsp"

# ---- Dependencies (on Debian): what the kept packages need, against the root and l4t-deps.txt.
root_has() { # NAME: installed in the root, or provided by a package that is (names compared literally)
  awk -v n="$1" 'BEGIN { RS = ""; FS = "\n" }
    { pkg = ""; ok = 0; prov = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Package: /) pkg = substr($i, 10)
        if ($i ~ /^Status: .* installed$/) ok = 1
        if ($i ~ /^Provides: /) prov = substr($i, 11) }
      if (!ok) next
      if (pkg == n) found = 1
      k = split(prov, p, ",")
      for (j = 1; j <= k; j++) { sub(/\(.*/, "", p[j]); gsub(/[ \t]/, "", p[j]); if (p[j] == n) found = 1 } }
    END { exit !found }' "$root/var/lib/dpkg/status"
}
declare -A provided
for deb in "${kept[@]}"; do
  provided[$(dpkg-deb -f "$deb" Package)]=1
  for p in $(dpkg-deb -f "$deb" Provides | tr ',' '\n' | sed 's/(.*//'); do provided[$p]=1; done
done
declare -A dep_as dep_none
while read -r verb name target _; do
  case "$verb" in
    as) dep_as[$name]=$target ;;
    none) dep_none[$name]=1 ;;
    installed) dep_as[$name]=$name ;;
    ""|"#"*) ;;
    *) die "$here/l4t-deps.txt: '$verb' is not installed, as or none" ;;
  esac
done < "$here/l4t-deps.txt"
shims=() unmet=() report=()
declare -A shim_version
for deb in "${kept[@]}"; do
  [ -z "$base" ] || break  # NVIDIA's own base meets its packages' dependencies
  pkg=$(dpkg-deb -f "$deb" Package)
  deps="$(dpkg-deb -f "$deb" Pre-Depends), $(dpkg-deb -f "$deb" Depends)"
  deps=$(printf %s "$deps" | tr "\n" " ")  # a long field continues on indented lines
  IFS=',' read -ra groups <<< "$deps"
  for group in "${groups[@]}"; do
    group=$(echo "$group" | xargs)
    [ -n "$group" ] || continue
    met=""
    IFS='|' read -ra alternatives <<< "$group"
    for alt in "${alternatives[@]}"; do
      name=$(echo "$alt" | sed 's/(.*//; s/:any//' | xargs)
      version=$(echo "$alt" | sed -n 's/.*([<>=]*[[:space:]]*\([^)]*\)).*/\1/p' | xargs)
      if [ -n "${provided[$name]:-}" ]; then met="L4T"; break; fi
      if [ -n "${dep_as[$name]:-}" ] && [ "${dep_as[$name]}" = "$name" ]; then
        root_has "$name" && { met="installed"; break; }
        unmet+=("$pkg needs $name: l4t-deps.txt says it is installed, and the root has no $name (add it to board.toml [image] packages)")
        met="reported"; break
      fi
      if root_has "$name"; then met="installed"; break; fi
      if [ -n "${dep_as[$name]:-}" ]; then
        root_has "${dep_as[$name]}" || { unmet+=("$pkg needs $name, which l4t-deps.txt maps to ${dep_as[$name]}, and the root has no ${dep_as[$name]} (add it to board.toml [image] packages)"); met="reported"; break; }
        shims+=("$name"); shim_version[$name]=${version:-0}; met="as ${dep_as[$name]}"; break
      fi
      if [ -n "${dep_none[$name]:-}" ]; then shims+=("$name"); shim_version[$name]=${version:-0}; met="none (empty package)"; break; fi
    done
    if [ -z "$met" ]; then
      unmet+=("$pkg needs $group: not in the root, not among the kept L4T packages, not in image-build/jetson/l4t-deps.txt")
    elif [ "$met" != reported ]; then
      report+=("$pkg: $group -> $met")
    fi
  done
done
if [ ${#unmet[@]} -gt 0 ]; then
  printf 'bsp.sh: %s\n' "dependencies of NVIDIA's packages that Debian trixie does not meet here:" "${unmet[@]/#/  }" \
    "add a line for each to image-build/jetson/l4t-deps.txt (or the package to board.toml [image] packages), or skip the package that needs it in l4t-packages.txt" >&2
  exit 1
fi

# ---- The root goes into rootfs/, with the empty packages dpkg will need.
rm -rf "$l4t/rootfs"
mkdir -p "$l4t/rootfs"
cp -a "$root/." "$l4t/rootfs/"
# nv-apply-debs.sh makes /dev/random and /dev/urandom with mknod, which fails where they exist.
rm -f "$l4t/rootfs/dev/random" "$l4t/rootfs/dev/urandom"
# wick must start on this root: its libraries (C library, ALSA, eSpeak NG) resolve here.
wick_version=$(chroot "$l4t/rootfs" /usr/bin/wick --version 2>&1) ||
  die "wick does not start in the root: $wick_version"
echo "bsp.sh: $wick_version starts in the root"
declare -A made=()
if [ ${#shims[@]} -gt 0 ]; then
  shimdir=$out/l4t-shims
  rm -rf "$shimdir"; mkdir -p "$shimdir"
  for name in "${shims[@]}"; do
    [ -z "${made[$name]:-}" ] || continue
    made[$name]=1
    d=$shimdir/$name
    mkdir -p "$d/DEBIAN"
    {
      echo "Package: $name"
      echo "Version: ${shim_version[$name]}"
      echo "Architecture: all"
      echo "Maintainer: wick image build <wick@localhost>"
      [ "${dep_as[$name]:-}" = "" ] || echo "Depends: ${dep_as[$name]}"
      echo "Description: wick's stand-in for Ubuntu's $name (image-build/jetson/l4t-deps.txt)"
    } > "$d/DEBIAN/control"
    dpkg-deb --root-owner-group -b "$d" "$shimdir/$name.deb" >/dev/null
  done
  mkdir -p "$l4t/rootfs/tmp/wick-shims"
  cp "$shimdir"/*.deb "$l4t/rootfs/tmp/wick-shims/"
  chroot "$l4t/rootfs" sh -c 'dpkg -i /tmp/wick-shims/*.deb' >/dev/null || die "installing the empty packages of l4t-deps.txt failed"
  rm -rf "$l4t/rootfs/tmp/wick-shims"
fi

# ---- NVIDIA's scripts.
echo "bsp.sh: apply_binaries.sh (installs ${#kept[@]} L4T packages into rootfs/)"
(cd "$l4t" && ./apply_binaries.sh) || die "NVIDIA's apply_binaries.sh failed (its output is above)"
# wick's root is read-only at run time (an update replaces it whole; /data holds what changes):
# the kernel mounts it so, as GRUB's `ro` does on the twin. flash.sh adds its own arguments to
# this APPEND line later; L4TLauncher puts the board's in place of ${cbootargs}.
extlinux=$l4t/rootfs/boot/extlinux/extlinux.conf
[ -f "$extlinux" ] || die "apply_binaries.sh left no rootfs/boot/extlinux/extlinux.conf (L4TLauncher's boot menu): is the BSP complete?"
grep -Eq '^[[:space:]]*APPEND ' "$extlinux" || die "$extlinux has no APPEND line for the kernel's command line"
sed -i -E '/^[[:space:]]*APPEND /{/ ro( |$)/!s/$/ ro/}' "$extlinux"
if [ -n "$cuda_debs" ]; then
  echo "bsp.sh: installing the CUDA packages of $cuda_debs"
  mkdir -p "$l4t/rootfs/tmp/wick-cuda"
  cp "$cuda_debs"/*.deb "$l4t/rootfs/tmp/wick-cuda/"
  chroot "$l4t/rootfs" sh -c 'dpkg -i /tmp/wick-cuda/*.deb' || die "installing $cuda_debs's packages failed (dpkg's message is above)"
  rm -rf "$l4t/rootfs/tmp/wick-cuda"
else
  echo "bsp.sh: no --cuda-debs: the image has no cuBLAS or cuRAND, and wick will run on the CPU (README: Jetson)" >&2
fi
# wick's health gate (wick-health.service) decides when a slot is good and calls
# `nvbootctrl verify` through RAUC; NVIDIA's own verify-at-boot would accept a slot before.
for unit in nv-l4t-bootloader-config.service nv_update_verifier.service; do
  systemctl --root="$l4t/rootfs" mask "$unit" >/dev/null 2>&1
done
# NVIDIA's first-boot wizard (oem-config, on the sample root) waits for a user at a screen; the
# appliance has none. Its units are masked wherever the packages put them.
oem_units=$(find "$l4t/rootfs/usr/lib/systemd/system" "$l4t/rootfs/lib/systemd/system" "$l4t/rootfs/etc/systemd/system" \
  -maxdepth 1 -name '*oem-config*' \( -name '*.service' -o -name '*.target' \) -printf '%f\n' 2>/dev/null | sort -u)
for unit in $oem_units; do
  rm -f "$l4t/rootfs/etc/systemd/system/$unit"
  systemctl --root="$l4t/rootfs" mask "$unit" >/dev/null 2>&1
done

# ---- /data and the NVMe layout: NVIDIA's A/B layout plus a `data` partition holding DATA.img.
cp "$data" "$l4t/bootloader/wick-data.img"
"$here/nvme-layout.py" "$l4t/tools/kernel_flash/flash_l4t_t234_nvme_rootfs_ab.xml" \
  "$l4t/tools/kernel_flash/wick_t234_nvme_rootfs_ab.xml" wick-data.img "$(stat -c %s "$data")"

{
  echo "L4T R$bsp_release applied to wick $(sed -n 's/^version=//p' "$root/etc/wick/image")"
  echo "base: ${base:-Debian trixie (image-build/rootfs.sh)}"
  echo "masked first-boot wizard: ${oem_units:-none}" | xargs
  echo "kept: $(for d in "${kept[@]}"; do dpkg-deb -f "$d" Package; done | xargs)"
  echo "skipped: $(ls "$skipped" | sed 's/_.*//' | xargs)"
  echo "empty packages: ${!made[*]}"
  echo "CUDA packages: $( [ -n "$cuda_debs" ] && ls "$cuda_debs"/*.deb | xargs -n1 basename | sed 's/_.*//' | xargs || echo none: wick runs on the CPU)"
  printf '%s\n' "${report[@]}"
} > "$out/bsp-report.txt"
echo "bsp.sh: $l4t is ready for image-build/jetson/flash (what was decided: $out/bsp-report.txt)"
