# Two commands do all set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PORT ?= 8080
MR_DATA_DIR ?= $(CURDIR)/data
CARGO ?= cargo

.PHONY: run build test test-rust test-compat lint fmt clean

## Build and start the registry on the embedded store at http://localhost:$(PORT)
run:
	$(CARGO) build --release -p registry-local
	@echo "Model registry: http://localhost:$(PORT)  (data in $(MR_DATA_DIR); Ctrl-C stops)"
	PORT=$(PORT) MR_DATA_DIR=$(MR_DATA_DIR) ./target/release/registry-local

build:
	$(CARGO) build --workspace --all-targets

## Every test: Rust unit, contract and HTTP API tests, then the upstream Python client
test: build test-rust test-compat

test-rust:
	@if command -v cargo-nextest >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

test-compat:
	bash tests/compat/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .cache
