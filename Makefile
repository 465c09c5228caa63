# The README's commands. Every target runs on a fresh machine: Go fetches
# modules, scripts/gen.sh builds the pinned code generators.
GO ?= go

.PHONY: run test lint unit check-generate gen fuzz mutation benchmarks

# The main job: a gateway with an embedded dev broker and sample config.
run:
	$(GO) run ./cmd/confgate dev

# The whole test suite (what CI runs): starts Apache Kafka on loopback
# (fetched from Maven Central; needs java and mvn), runs every test against
# it with -race, then the broker fault tests.
test: lint
	./scripts/test.sh

# Fast tests only, against the in-process dev broker: no Java needed.
unit:
	$(GO) test -count=1 -short ./...

lint: check-generate
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench/peers && $(GO) vet ./...
	$(GO) test -count=1 ./internal/docscheck

check-generate:
	./scripts/gen.sh --check

gen:
	./scripts/gen.sh

# Every fuzz target of the module (found automatically), FUZZTIME seconds
# each; a failing input is left in the package's testdata/fuzz/.
FUZZTIME ?= 300
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Mutation testing (gremlins, pinned in tools/go.mod): each package of
# MUTATION_PKGS against its own tests on the in-process broker; scores and
# every surviving mutant in docs/testing.md. Takes about an hour for all.
MUTATION_PKGS ?=
mutation:
	./scripts/mutation.sh $(MUTATION_PKGS)

# confgate against etcd, NATS JetStream KV and a Redis pub/sub layer
# (bench/peers, a module of its own), written to docs/benchmarks.md: starts
# Apache Kafka (java and mvn, as make test) and needs redis-server. Takes
# about 40 minutes on 2 cores (see bench/peers/README.md).
benchmarks:
	cd bench/peers && $(GO) run . --out ../../docs/benchmarks.md

# The container image as an OCI layout tarball in dist/, no Docker daemon or registry needed (docs/image.md); VERSION=, GOARCH= override.
.PHONY: image
image:
	GOOS= GOARCH= $(GO) run ./internal/ociimage/cmd/build -o dist/confgate-image.tar $(if $(GOARCH),-arch $(GOARCH)) $(if $(VERSION),-version $(VERSION))
