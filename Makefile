# Two commands do all set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PORT ?= 8080
MR_DATA_DIR ?= $(CURDIR)/data
CARGO ?= cargo
# Where cargo puts the binaries (CARGO_TARGET_DIR honoured).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# The deployable functions, one binary each (README "Deployment"; a test
# checks this list against the contract).
FUNCTIONS := registered-models model-versions artifacts serving experiments storage-events uploads events web
IMAGE_REPO ?= registry.example.com/model-registry
IMAGE_TAG ?= 0.1.0
CONTAINER ?= docker

.PHONY: run build test servers servers-stop lint fmt clean lambda-zip images coldstart bench screenshots

## Build and start the registry on the embedded store at http://localhost:$(PORT)
run:
	$(CARGO) build --release -p registry-local
	@echo "Model registry: http://localhost:$(PORT)  (data in $(MR_DATA_DIR); Ctrl-C stops)"
	PORT=$(PORT) MR_DATA_DIR=$(MR_DATA_DIR) $(TARGET_DIR)/release/registry-local

build:
	$(CARGO) build --workspace --all-targets

## Every test, with the servers it needs (dynalite, s3s-fs, Python venvs): see tests/run.sh
test: build
	bash tests/run.sh

## Install (cached) and start / stop the test servers by hand; env in .cache/servers/env
servers:
	bash tests/servers/servers.sh start
servers-stop:
	bash tests/servers/servers.sh stop

## Each function for AWS Lambda (provided.al2023, x86_64): target/lambda/<function>/bootstrap.zip
lambda-zip:
	bash infra/lambda/build-zips.sh $(FUNCTIONS)

## Each function's container image for Knative (needs docker or podman: CONTAINER=podman)
images:
	for f in $(FUNCTIONS); do \
	  $(CONTAINER) build -f infra/knative/Containerfile --build-arg FUNCTION=$$f \
	    -t $(IMAGE_REPO)/$$f:$(IMAGE_TAG) . || exit 1; \
	done

## Cold start (exec to first 200, median of 20), stripped size and idle RSS of each function
coldstart:
	$(CARGO) build --profile deploy $(addprefix -p ,$(FUNCTIONS) registry-local)
	python3 bench/coldstart.py --profile deploy $(FUNCTIONS) registry-local

## Benchmarks side by side with MLflow (bench/README.md): writes bench/report.md (BENCH_QUICK=1: a quick pass)
bench:
	bash bench/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .cache

## The README's images docs/images/compare.png and version.png (1280 wide), taken by the browser test (tests/it/browser.rs; installs Chromium once: tests/browser/setup.sh)
screenshots: build
	bash tests/browser/setup.sh
	set -a; . .cache/browser/env; set +a; \
	  MR_SCREENSHOTS_DIR=$(CURDIR)/docs/images $(CARGO) test --workspace --test it browser:: -- --nocapture
