# byol.c build. `make` builds ./byol and the test programs; `make test` runs the suite.
# Optional features are detected by compiling a small probe and can be switched off:
#   NO_BLAS=1   built-in GEMM instead of OpenBLAS       NO_OMP=1   single-threaded kernels
#   SANITIZE=1  AddressSanitizer + UBSan (objects in build-san/)
#   SANITIZE=thread  ThreadSanitizer (build-tsan/); `make test-tsan` runs the threaded tests with it
#   NATIVE=0    no -march=native (portable binary: for copying to other machines; a native binary
#               refuses, in one line, a CPU without the instruction sets it was built for)
#   NO_MPI=1    no MPI (data-parallel training) even where Open MPI is installed
#   NO_CUDA=1   no CUDA even where nvcc is found under CUDA_HOME (default /usr/local/cuda)
# Fuzzing (clang's libFuzzer, tests/fuzz): `make fuzz` builds build-fuzz/fuzz_*, `make fuzz-run`
# runs each for FUZZ_SECONDS (default 600); `make fuzz-smoke` is CI's 30 seconds per target.

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

BUILD := build
ifeq ($(SANITIZE),1)
BUILD := build-san
endif
ifeq ($(SANITIZE),thread)
BUILD := build-tsan
endif
ifeq ($(FUZZ),1)
BUILD := build-fuzz
endif

NATIVE ?= 1
OPT := -O3
ifeq ($(NATIVE),1)
OPT += -march=native
endif
CFLAGS := -std=c11 -D_DEFAULT_SOURCE $(OPT) -g -Wall -Wextra -Wno-unknown-pragmas $(EXTRA_CFLAGS)
ifeq ($(findstring clang,$(CC)),)
CFLAGS += -Wvla-larger-than=1048576
endif
LDLIBS := -lm
ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SANITIZE),thread)
CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
ifeq ($(FUZZ),1)
CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# ---- feature probes: compile tools/probes/X.c, keep the feature if it links ----
probe = $(shell $(CC) tools/probes/$(1).c -o /dev/null $(2) >/dev/null 2>&1 && echo yes)

HAVE_CJSON := $(call probe,cjson,-lcjson)
ifneq ($(HAVE_CJSON),yes)
$(error cJSON not found: install it with 'apt-get install libcjson-dev')
endif
LDLIBS += -lcjson

# Image and dataset decoding: zlib (gzipped IDX), libjpeg-turbo, libpng, libtiff (4.5 or later:
# per-file error handlers) and stb_image's header (BMP; built in src/data/stb_bmp.c). Required.
ifneq ($(call probe,zlib,-lz),yes)
$(error zlib not found: install it with 'apt-get install zlib1g-dev')
endif
ifneq ($(call probe,jpeg,-ljpeg),yes)
$(error libjpeg not found: install libjpeg-turbo with 'apt-get install libjpeg62-turbo-dev')
endif
ifneq ($(call probe,png,-lpng),yes)
$(error libpng not found: install it with 'apt-get install libpng-dev')
endif
ifneq ($(call probe,tiff,-ltiff),yes)
$(error libtiff 4.5 or later not found: install it with 'apt-get install libtiff-dev')
endif
ifneq ($(call probe,stb,-lm),yes)
$(error stb_image.h not found: install it with 'apt-get install libstb-dev')
endif
LDLIBS += -ltiff -lpng -ljpeg -lz -lpthread

# TensorBoard event files: protobuf-c's runtime, and its compiler turning
# src/io/proto/tensorboard.proto into $(BUILD)/gen/. Required.
ifneq ($(call probe,protobuf_c,-lprotobuf-c),yes)
$(error protobuf-c not found: install it with 'apt-get install libprotobuf-c-dev protobuf-c-compiler')
endif
PROTOC_C := $(shell command -v protoc-c)
ifeq ($(PROTOC_C),)
$(error protoc-c not found: install it with 'apt-get install protobuf-c-compiler')
endif
LDLIBS += -lprotobuf-c

# ONNX export (byol export --format onnx): Debian's onnx.proto (ONNX 1.12), turned by protoc-c
# into $(BUILD)/gen/ like TensorBoard's; only the .proto is used, not libonnx. Required.
ONNX_PROTO := /usr/include/onnx/onnx.proto
ifeq ($(wildcard $(ONNX_PROTO)),)
$(error $(ONNX_PROTO) not found: install it with 'apt-get install libonnx-dev')
endif

ifneq ($(NO_OMP),1)
HAVE_OMP := $(call probe,openmp,-fopenmp)
endif
ifeq ($(HAVE_OMP),yes)
CFLAGS += -fopenmp -DBYOL_OMP
LDFLAGS += -fopenmp
FEATURES += openmp
else
FEATURES += no-openmp
endif

# OpenBLAS: the OpenMP build (libopenblas-openmp-dev) when OpenMP is on, so that GEMMs and our
# kernels share one thread pool; two pools (OpenMP + OpenBLAS's pthreads) spin against each
# other and made a full-width ResNet-18 step 3x slower on 2 cores.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
ifneq ($(NO_BLAS),1)
ifeq ($(HAVE_OMP),yes)
BLAS_OMP_DIR := $(wildcard /usr/lib/$(MULTIARCH)/openblas-openmp)
ifneq ($(BLAS_OMP_DIR),)
BLAS_FLAGS := -I/usr/include/$(MULTIARCH)/openblas-openmp -L$(BLAS_OMP_DIR) -Wl,-rpath,$(BLAS_OMP_DIR)
HAVE_BLAS := $(call probe,openblas,$(BLAS_FLAGS) -fopenmp -lopenblas)
BLAS_KIND := openblas(openmp)
endif
endif
ifneq ($(HAVE_BLAS),yes)
BLAS_FLAGS :=
HAVE_BLAS := $(call probe,openblas,-lopenblas)
BLAS_KIND := openblas(pthreads: install libopenblas-openmp-dev for one shared thread pool)
endif
endif
ifeq ($(HAVE_BLAS),yes)
CFLAGS += -DBYOL_BLAS $(filter -I%,$(BLAS_FLAGS))
LDFLAGS += $(filter-out -I%,$(BLAS_FLAGS))
LDLIBS += -lopenblas
FEATURES += $(BLAS_KIND)
else
FEATURES += builtin-gemm
endif

# MPI (Open MPI: libopenmpi-dev) for data-parallel training under mpirun; without it byol runs
# as one process. The compile and link flags come from the mpicc wrapper.
ifneq ($(NO_MPI),1)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
HAVE_MPI := $(call probe,mpi,$(MPI_CFLAGS) $(MPI_LIBS))
endif
endif
ifeq ($(HAVE_MPI),yes)
CFLAGS += -DBYOL_MPI $(MPI_CFLAGS)
LDLIBS += $(MPI_LIBS)
FEATURES += mpi
else
FEATURES += no-mpi
endif

# CUDA (the GPU backend, issue 18): nvcc under CUDA_HOME, kept when it compiles a probe that
# links the static CUDA runtime, cuBLASLt and cuDNN 9. The runtime loads the driver only when
# called and neither library links it, so the binary still starts, and trains on the CPU, on a
# machine without a GPU or a driver (libcuda is never linked: only its stub may exist). cuDNN
# and NCCL may sit elsewhere (a Python environment's nvidia/*/ wheel folders): CUDNN_HOME and
# NCCL_HOME name them, with include/ and lib/ or lib64/; the libraries' folders go into the
# binary's run path. src/backend/cuda/*.cu are built by nvcc for Hopper (sm_90, with PTX for
# later GPUs). Left out of the sanitizer and fuzz builds (their runtimes and the CUDA runtime's
# do not mix) and by NO_CUDA=1.
comma := ,
CUDA_HOME ?= /usr/local/cuda
CUDNN_HOME ?= $(CUDA_HOME)
NVCC := $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_90,code=[sm_90,compute_90]
CUDA_LIBDIRS := $(sort $(wildcard $(CUDA_HOME)/lib64 $(CUDNN_HOME)/lib $(CUDNN_HOME)/lib64))
CUDA_INCLUDES := -I$(CUDA_HOME)/include -I$(CUDNN_HOME)/include
CUDA_LIBS := $(addprefix -L,$(CUDA_LIBDIRS)) -lcudnn -lcublasLt -lcudart_static -ldl -lrt -lstdc++
ifeq ($(NO_CUDA)$(SANITIZE)$(FUZZ),)
HAVE_CUDA := $(shell $(NVCC) -ccbin $(CC) $(CUDA_INCLUDES) tools/probes/cuda.cu -o /dev/null $(CUDA_LIBS) >/dev/null 2>&1 && echo yes)
endif
ifeq ($(HAVE_CUDA),yes)
CFLAGS += -DBYOL_CUDA
LDLIBS += $(CUDA_LIBS) $(addprefix -Wl$(comma)-rpath$(comma),$(CUDA_LIBDIRS))
FEATURES += cuda($(CUDA_HOME))
else
FEATURES += no-cuda
endif
# -fmad=false: our kernels (src/backend/gpu_kernels.h) then round as their emulated build does
# (ISO C leaves contraction off), so `make test` checks the GPU's bits, not just its formulas.
NVCCFLAGS := -O3 -std=c++20 -fmad=false -ccbin $(CC) $(CUDA_ARCH) $(CUDA_INCLUDES) -Xcompiler -Wall,-Wextra

ifeq ($(SANITIZE),1)
FEATURES += asan+ubsan
endif
ifeq ($(SANITIZE),thread)
FEATURES += tsan
endif

# ---- sources ----
LIB_SRC := $(wildcard src/core/*.c src/backend/*.c src/nn/*.c src/model/*.c src/optim/*.c src/io/*.c src/data/*.c src/eval/*.c src/dist/*.c src/train/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(HAVE_CUDA),yes)
LIB_OBJ += $(patsubst %.cu,$(BUILD)/%.o,$(wildcard src/backend/cuda/*.cu))
endif
GEN := $(BUILD)/gen
LIB_OBJ += $(GEN)/tensorboard.pb-c.o $(GEN)/onnx.pb-c.o
CFLAGS += -I$(GEN)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# Fuzz targets link the parts of the CLI that parse flags and config files.
FUZZ_CLI_OBJ := $(BUILD)/src/cli/args.o $(BUILD)/src/cli/train_opts.o $(BUILD)/src/cli/data_flags.o
# Each fuzz target also builds as an ordinary test that replays its corpus and regressions.
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
TEST_BIN += $(FUZZ_NAMES:%=$(BUILD)/tests/test_fuzz_%)
BYOL := byol
ifneq ($(SANITIZE),)
BYOL := $(BUILD)/byol
endif

BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.PHONY: test-tsan
.PHONY: all test clean summary bench fuzz fuzz-targets fuzz-run fuzz-smoke fuzz-corpus
all: summary $(BYOL) $(TEST_BIN)

summary:
	@echo "byol.c build: $(CC), $(strip $(FEATURES)), objects in $(BUILD)/"

$(BUILD)/%.o: %.c $(wildcard src/*/*.h src/backend/*.inc) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard src/*/*.h src/backend/*.inc) Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# The augmentations' per-pixel selects (hue) and batch norm's ReLU mask vectorize only when the
# compiler may if-convert operations that could trap; no FP traps are enabled, so results are
# the same bits.
$(BUILD)/src/data/augment.o $(BUILD)/src/nn/batchnorm.o: CFLAGS += -fno-trapping-math

# protoc-c's C code and the descriptor set (tests read the files back with python3-protobuf)
$(GEN)/tensorboard.pb-c.c $(GEN)/tensorboard.pb-c.h $(GEN)/tensorboard.desc &: src/io/proto/tensorboard.proto
	@mkdir -p $(GEN)
	$(PROTOC_C) --proto_path=src/io/proto --c_out=$(GEN) --descriptor_set_out=$(GEN)/tensorboard.desc $<
$(GEN)/tensorboard.pb-c.o: $(GEN)/tensorboard.pb-c.c $(GEN)/tensorboard.pb-c.h
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/src/io/tensorboard.o $(BUILD)/tests/test_tensorboard: $(GEN)/tensorboard.pb-c.h $(GEN)/tensorboard.desc
$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(GEN)
	$(PROTOC_C) --proto_path=$(dir $(ONNX_PROTO)) --c_out=$(GEN) $<
$(GEN)/onnx.pb-c.o: $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/src/io/onnx_export.o $(BUILD)/tests/test_onnx: $(GEN)/onnx.pb-c.h
# Direct convolution's kernels are written as a*b+c on vectors; fusing them into FMAs is the
# point (ISO C mode leaves contraction off by default): see the per-ISA rule below.

# The startup CPU check (src/cli/cpu_check.c) must itself run on any x86-64: it is built without
# -march, and told by -DBYOL_ISA_<NAME> which instruction sets the rest of the build may use.
BUILD_ISA := $(shell $(CC) $(filter -m%,$(OPT) $(EXTRA_CFLAGS)) -dM -E -x c /dev/null 2>/dev/null | \
               sed -n 's/^\#define __\(AVX[A-Z0-9_]*\|FMA\|BMI2\{0,1\}\|POPCNT\|SSE4_[12]\|GFNI\|VPCLMULQDQ\)__ 1$$/\1/p')
$(BUILD)/src/cli/cpu_check.o: CFLAGS := $(filter-out -march=% -mtune=%,$(CFLAGS)) $(BUILD_ISA:%=-DBYOL_ISA_%)

# Direct convolution, once per vector ISA (src/nn/conv_direct_dispatch.c picks one at run time,
# so that a NATIVE=0 binary still runs the widest vectors of the CPU it lands on). On x86-64:
# AVX-512, AVX2+FMA and SSE2; elsewhere the one portable build.
ifneq ($(findstring x86_64,$(MULTIARCH)),)
DIRECT_VARIANTS := avx512 avx2 sse
else
DIRECT_VARIANTS := portable
endif
DIRECT_FLAGS_avx512 := -mavx512f -mavx2 -mfma
DIRECT_FLAGS_avx2 := -mno-avx512f -mavx2 -mfma
DIRECT_FLAGS_sse := -mno-avx
DIRECT_OBJ := $(DIRECT_VARIANTS:%=$(BUILD)/src/nn/conv_direct-%.o)
LIB_OBJ := $(filter-out $(BUILD)/src/nn/conv_direct.o,$(LIB_OBJ)) $(DIRECT_OBJ)
$(BUILD)/src/nn/conv_direct-%.o: src/nn/conv_direct.c $(wildcard src/*/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -ffp-contract=fast $(DIRECT_FLAGS_$*) -DDIRECT_VARIANT=$* -c $< -o $@
$(BUILD)/src/nn/conv_direct_dispatch.o: CFLAGS += $(DIRECT_VARIANTS:%=-DDIRECT_HAVE_%)

$(BUILD)/libbyol.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BYOL): $(CLI_OBJ) $(BUILD)/libbyol.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/harness.h tests/cli_run.h tests/jpeg_encode.h tests/image_encode.h $(BUILD)/libbyol.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $< $(BUILD)/libbyol.a -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/test_fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c tests/fuzz/fuzz_files.h $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -DFUZZ_TARGET='"$*"' $< tests/fuzz/replay_main.c $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a -o $@ $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libbyol.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $< $(BUILD)/libbyol.a -o $@ $(LDFLAGS) $(LDLIBS)

bench: all $(BENCH_BIN)

test: all
	@BUILD=$(BUILD) BYOL=./$(BYOL) bash tests/run.sh

# ThreadSanitizer on the parts that run threads of their own: the loader's workers and the
# folder scan's probe threads (end-to-end training under TSan with the builtin GEMM takes too
# long for CI). OpenMP and OpenBLAS are left out (NO_OMP,
# NO_BLAS): libgomp is not built with TSan, so its barriers would read as races.
TSAN_TESTS := test_loader test_datasets
test-tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread NO_OMP=1 NO_BLAS=1 NO_MPI=1 all
	@BUILD=build-tsan BYOL=./build-tsan/byol TESTS="$(TSAN_TESTS)" TSAN_OPTIONS="halt_on_error=1 exitcode=66" bash tests/run.sh

# ---- fuzzing: the library again, built by clang with coverage and ASan/UBSan, one program per
# parser (tests/fuzz/fuzz_*.c). Single-threaded builtin kernels: the parsers need no BLAS, and a
# fuzz process should not start thread pools.
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_MAKE := $(MAKE) --no-print-directory FUZZ=1 CC=clang NO_BLAS=1 NO_OMP=1 NO_MPI=1
FUZZ_SECONDS ?= 600

fuzz:
	@command -v clang >/dev/null || { echo "make fuzz needs clang and its libFuzzer: apt-get install clang libclang-rt-14-dev"; exit 1; }
	+@$(FUZZ_MAKE) fuzz-targets

fuzz-targets: summary $(FUZZ_BIN)

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_files.h $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -Isrc $< $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a -o $@ $(LDFLAGS) $(LDLIBS)

# The committed seed corpora (tests/fuzz/corpus) come from this generator, built normally.
$(BUILD)/fuzz/make_corpus: tests/fuzz/make_corpus.c tests/jpeg_encode.h tests/image_encode.h $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc $< $(FUZZ_CLI_OBJ) $(BUILD)/libbyol.a -o $@ $(LDFLAGS) $(LDLIBS)

fuzz-corpus: $(BUILD)/fuzz/make_corpus
	rm -rf tests/fuzz/corpus
	$(BUILD)/fuzz/make_corpus tests/fuzz/corpus

fuzz-run: fuzz
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: fuzz
	bash tests/fuzz/run.sh 30

clean:
	rm -rf build build-san build-fuzz build-tsan byol
