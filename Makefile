# inferq build targets. `make test` is what CI runs (see .ci/run and README.md).
GO ?= go
PROTOC ?= protoc

.PHONY: all build test deps lint gen fuzz bench dev tidy clean

# The repository is a Go workspace (go.work): the broker's module at the root,
# and loadtest/, deploy/ and docs/ as modules of their own, so that their
# dependencies (asynq, gonum/plot, Prometheus, Kubernetes, compose-go,
# libopenapi) stay out of the broker's go.mod. `./...` at the root matches only
# the root module's packages, so every target names each module.
MODULES := . ./loadtest ./deploy ./docs
PKGS := $(addsuffix /...,$(MODULES))

all: build

# The second build checks that the broker builds from its own go.mod alone, as
# deploy/Dockerfile and `go install` build it.
build:
	$(GO) build $(PKGS)
	GOWORK=off $(GO) build ./...

# deps installs what the tests need on a Debian machine, or says what is missing.
deps:
	@./scripts/deps.sh

PYTHON ?= $(or $(INFERQ_PYTHON),/usr/bin/python3)

test: deps
	$(GO) test -count=1 -timeout 12m $(PKGS)
	cd worker/deepspeed_nats/python && $(PYTHON) -m unittest discover -s tests -t . -q

# lint also checks the model runner and the Python client (with its tests and
# examples/python) with black, flake8 and mypy, configured in
# worker/deepspeed_nats/python and clients/python (pyproject.toml, .flake8);
# lint-deps.sh installs them on Debian or says what is missing.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@INFERQ_PYTHON=$(PYTHON) ./scripts/lint-deps.sh
	cd worker/deepspeed_nats/python && $(PYTHON) -m black --check -q . && $(PYTHON) -m flake8 . && $(PYTHON) -m mypy
	cd clients/python && $(PYTHON) -m black --check -q --config pyproject.toml . ../../examples/python && \
		$(PYTHON) -m flake8 . ../../examples/python && $(PYTHON) -m mypy

# gen regenerates schemas/inferqpb from schemas/*.proto with the protoc-gen-go pinned in go.mod.
gen:
	@command -v $(PROTOC) >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(PROTOC) --plugin=protoc-gen-go=bin/protoc-gen-go -I schemas \
		--go_out=schemas/inferqpb --go_opt=paths=source_relative schemas/*.proto
	$(PROTOC) -I schemas --python_out=worker/deepspeed_nats/python/inferq_runner \
		--pyi_out=worker/deepspeed_nats/python/inferq_runner schemas/inferq.proto

# fuzz runs every fuzz target of every package for FUZZTIME each.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

dev:
	$(GO) run ./cmd/inferq dev

# tidy tidies each module against its own go.mod (GOWORK=off), so that the root
# go.mod keeps only what the broker and its tests import.
tidy:
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy) || exit 1; done

clean:
	rm -rf bin .inferq
