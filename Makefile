# Facecast: `make run` starts the server on its embedded defaults, `make test` runs the whole test suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python (the real OpenAI-compatible server the LLM tests talk to) builds from source;
# a portable build, cached by pip's wheel cache between runs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: run test lint typecheck bench clean cpp

$(BIN)/facecast: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	# the end-of-turn model (smart-turn v3.2, out of the pipecat-ai wheel) into the model cache; without
	# network the server falls back to silence endpointing, so a failure here does not stop the install
	-$(BIN)/python -m facecast.smartturn
	@touch $@

# The optional extras are tested too. torch comes first and pinned: 2.13.0 is the CPU build on these
# machines (a bare or newer torch would pull GBs of CUDA packages).
TEST_EXTRAS := test,llamacpp,embeddings,images,neurosync,train,piper,plots,audio,kokoro,vosk,sherpa,webrtc,bench,scale,deploy

$(VENV)/.test-deps: $(BIN)/facecast
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[$(TEST_EXTRAS)]'
	@touch $@

run: $(BIN)/facecast
	$(BIN)/facecast run

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(BIN)/facecast
	$(BIN)/facecast bench

# The C++ reference client (clients/cpp; needs cmake and a C++17 compiler): build it, run its unit tests.
# `make test` builds it too (tests/clients), in .cache/cpp-client/.
cpp:
	cmake -S clients/cpp -B build/cpp -DCMAKE_BUILD_TYPE=Release
	cmake --build build/cpp --parallel
	ctest --test-dir build/cpp --output-on-failure

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
