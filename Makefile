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
MODELS_DIR ?= $(CURDIR)/target/test-models
WICK       := $(CURDIR)/target/release/wick
DEMO_CLIP  ?= $(SHARED)/speech/dev/ps_librivox_ss01_0870.wav

# Debian/Ubuntu packages the build, the model fetcher, the voice (espeak-ng) and sound (ALSA) need.
APT_PACKAGES := build-essential pkg-config python3 python3-pip python3-venv ca-certificates libespeak-ng-dev espeak-ng-data libasound2-dev

# Synthetic multi-speaker and "high" Piper voices with onnxruntime's audio for them, made by
# Piper's own training code (tools/piper_reference): no such voice can be fetched from the
# registries CI reaches, and the parity tests need one.
PIPER_REF  ?= $(CURDIR)/target/piper-reference

export WICK_TEST_MODELS     := $(MODELS_DIR)
export WICK_SHARED          := $(SHARED)
export WICK_PIPER_REFERENCE := $(PIPER_REF)

.PHONY: all build deps models demo test clean-models piper-reference

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

build: deps
	$(CARGO) build --release

models: build
	$(WICK) --models-dir $(MODELS_DIR) models pull --set test

demo: models
	@echo "== asking wick, with $(DEMO_CLIP) as the microphone"
	@echo "   (the question as spoken: $$(awk -F'\t' -v f=$(notdir $(DEMO_CLIP)) '$$1==f {print $$3}' $(SHARED)/speech/dev/manifest.tsv))"
	$(WICK) --models-dir $(MODELS_DIR) ask $(DEMO_CLIP) -o reply.wav
	@echo "== the spoken answer is in reply.wav (play it with: aplay reply.wav)"

# Rebuilt when the generator or its pins change; about 5.5 GB of Python packages the first time.
piper-reference: $(PIPER_REF)/manifest.json

$(PIPER_REF)/manifest.json: tools/piper_reference/build.sh tools/piper_reference/synthetic_voices.py tools/piper_reference/requirements.txt | models
	tools/piper_reference/build.sh $(PIPER_REF) $(MODELS_DIR)/test/tts/en_US-joe-medium.onnx.json $(SHARED)/reference/tts/reference.json

# Tests run in release: they drive real models, and one profile keeps the 2-core build short.
test: models piper-reference
	$(CARGO) test --release

clean-models:
	rm -rf $(MODELS_DIR)
