# Thin front for CMake + Ninja + CTest. Every target that needs packages
# installs what is missing first (scripts/install-deps.sh, as root).
#   make          build (gcc, warnings as errors) into build/
#   make check    every test: unit + system, then again under ASan+UBSan (clang)
#   make demo     run the demo CDN in the foreground (Ctrl-C stops it)
#   make bench    run the benchmarks in bench/
#   make fuzz     build the libFuzzer targets and run each briefly
#   make options  regenerate docs/config-options.md from the schema

CMAKE_GEN := -G Ninja
FUZZ_SECONDS ?= 20
JOBS ?= $(shell nproc)

.PHONY: all build deps check check-plain check-asan demo bench fuzz options clean

all: build

deps:
	@scripts/install-deps.sh --check 2>/dev/null || scripts/install-deps.sh

build/build.ninja:
	@$(MAKE) --no-print-directory deps
	cmake -S . -B build $(CMAKE_GEN) -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: build/build.ninja
	cmake --build build

check: deps
	@scripts/check.sh

demo: deps build
	@demo/run.sh

bench:
	@scripts/install-deps.sh --bench --check 2>/dev/null || scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory build
	@bench/run.sh

fuzz: deps
	cmake -S . -B build-fuzz $(CMAKE_GEN) -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-fuzz
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

options: build
	build/ferryd --options > docs/config-options.md

clean:
	rm -rf build build-asan build-tsan build-fuzz
