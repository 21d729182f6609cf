# Two commands do all set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PORT ?= 8080
MR_DATA_DIR ?= $(CURDIR)/data
CARGO ?= cargo

.PHONY: run build test servers servers-stop lint fmt clean

## Build and start the registry on the embedded store at http://localhost:$(PORT)
run:
	$(CARGO) build --release -p registry-local
	@echo "Model registry: http://localhost:$(PORT)  (data in $(MR_DATA_DIR); Ctrl-C stops)"
	PORT=$(PORT) MR_DATA_DIR=$(MR_DATA_DIR) ./target/release/registry-local

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .cache
