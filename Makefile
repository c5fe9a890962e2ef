# rulebench — two commands: `make test` and `make bench` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
IMAGE ?= bullseye-5.10
RULEBENCH := target/release/rulebench
DEB_PACKAGES := qemu-system-x86 cpio dpkg apt debian-archive-keyring ca-certificates python3-venv clang llvm libbpf-dev libelf-dev

.PHONY: deps test test-matrix bench image build gate clean-cache

## Install what is missing on a Debian/Ubuntu host. As root, or as a user
## (apt-get then runs under sudo, and make keeps the user's PATH: cargo is
## found). check-jsonschema goes into a venv under target/ (no system pip:
## PEP 668); if that fails, tests/ci_workflow.rs says SKIPPED and checks the
## workflow's structure itself.
DEPS_VENV := target/venv
APT_AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT_AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(APT_AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest
	@command -v check-jsonschema >/dev/null || [ -x $(DEPS_VENV)/bin/check-jsonschema ] || \
	  { python3 -m venv $(DEPS_VENV) && $(DEPS_VENV)/bin/pip install -q check-jsonschema; } || \
	  { rm -rf $(DEPS_VENV); echo "deps: check-jsonschema not installed (venv or PyPI unavailable); the workflow schema test will be SKIPPED"; }
	@command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 still missing"; exit 1; }

build:
	$(CARGO) build --release --locked

## Build (or reuse) the pinned guest image; prints its sha256.
image: deps build
	$(RULEBENCH) image build --image $(IMAGE)

## The test suite: unit tests and real guests (small N), under KVM or TCG.
test: deps
	$(CARGO) nextest run --workspace --locked

MATRIX_IMAGES ?= bullseye-5.10 bookworm-6.1-bullseye-userland trixie-6.12-bullseye-userland
## The whole suite once per kernel (same bullseye userland, only the kernel differs).
test-matrix: deps
	@set -e; for img in $(MATRIX_IMAGES); do \
	  echo "=== $$img"; RULEBENCH_IMAGE=$$img $(CARGO) nextest run --workspace --locked; \
	done

BENCH_OUT ?= bench-results/$(shell date +%Y%m%d-%H%M%S)
BENCH_SIZES ?= 0,100,1000,10000,30000,100000
## Minutes a job may take by projection from its smaller sizes; longer ones are skipped and reported.
BENCH_JOB_BUDGET ?= 30
## More `rulebench bench` flags; --profile adds a kernel profile of each
## job's full load and adds (where the control-plane time goes).
BENCH_FLAGS ?= --profile
## The comparison: build the image, run the measurements, write the report.
## Quick run under TCG: `make bench BENCH_SIZES=0,100,1000`.
bench: deps build
	$(RULEBENCH) bench --image $(IMAGE) --sizes $(BENCH_SIZES) --job-budget $(BENCH_JOB_BUDGET) $(BENCH_FLAGS) --out $(BENCH_OUT)

## The A/B regression gate: GATE_BASE's rulebench and this checkout's measured
## alternately in one run (scripts/gate, src/ab/); exit 1 on a regression,
## target/gate/summary.md lists every series. The default plan took 24 min under
## TCG on 2 cores (load 8, before the steps were interleaved); base build ~6 min.
GATE_BASE ?= HEAD~1
GATE_FLAGS ?= --techs iptables-legacy,nftables --families services --sizes 100,1000 --repeats 9 --rounds 2
gate: deps
	scripts/gate $(GATE_BASE) $(GATE_FLAGS)

clean-cache:
	rm -rf target/rulebench
