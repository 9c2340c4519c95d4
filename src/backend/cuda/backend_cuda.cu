/* The CUDA backend: our kernels (../gpu_kernels.h) on the GPU, GEMMs (linear layers, 1x1
 * convolutions) through cuBLASLt, the other convolutions through cuDNN in NHWC (byol.c's NHWC
 * activations and OHWI weights are cuDNN's NHWC and KRSC), all on one stream.
 *
 * Precision: fp32 with TF32 off (cuBLASLt's CUBLAS_COMPUTE_32F, cuDNN's FMA math), so that a
 * step matches the CPU's within the step tests' tolerances; or (set_bf16) convolutions and GEMMs
 * on bf16 copies of their operands on the tensor cores, accumulating in fp32, with everything
 * else fp32: the master weights, gradients, optimizer state and batch-norm statistics.
 * Determinism: our kernels reduce in fixed orders; cuDNN's algorithms are chosen once per shape
 * among its deterministic ones; cuBLASLt's GEMMs repeat on the same GPU.
 * Memory: the backend's allocations are CUDA managed memory preferring the GPU. The training
 * step moves data only through the table's copy/upload/download; code outside the step that
 * reads model state on the host (checkpoints, monitors) still works, after a sync, with the
 * pages migrating on demand. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <string.h>

extern "C" {
#include "../../core/common.h"
#include "../backend.h"
#include "../gpu.h"
}

static int g_open = -1; /* the device opened, or -1 */
static cudaStream_t g_stream;
static cublasLtHandle_t g_lt;
static cudnnHandle_t g_dnn;
/* One workspace for both libraries, sized at planning time (cuDNN) or to cuBLASLt's need. */
static void *g_workspace;
static size_t g_workspace_bytes;
static const size_t GEMM_WORKSPACE = (size_t)32 << 20;

static cudaStream_t cuda_stream(void) { return g_stream; }
#include "../gpu_kernels.h"

#define CUDA_OK(call)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            die("CUDA: %s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define LT_OK(call)                                                                            \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                       \
            die("cuBLASLt: %s failed: status %d (%s:%d)", #call, (int)s_, __FILE__, __LINE__); \
    } while (0)
#define DNN_OK(call)                                                                           \
    do {                                                                                       \
        cudnnStatus_t s_ = (call);                                                             \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                        \
            die("cuDNN: %s failed: %s (%s:%d)", #call, cudnnGetErrorString(s_), __FILE__, __LINE__); \
    } while (0)

/* Kernel launches report their errors at the next synchronizing call. */
static void check_launches(void) { CUDA_OK(cudaPeekAtLastError()); }

static void workspace_reserve(size_t bytes) {
    if (bytes <= g_workspace_bytes) return;
    if (g_workspace) CUDA_OK(cudaFree(g_workspace));
    CUDA_OK(cudaMalloc(&g_workspace, bytes));
    g_workspace_bytes = bytes;
}

extern "C" int cuda_backend_open(int index, Err *e) {
    if (g_open == index) return 0;
    if (g_open >= 0) return err_set(e, "--device cuda:%d: this process already uses cuda:%d", index, g_open);
    cudaError_t err = cudaSetDevice(index);
    if (err != cudaSuccess) return err_set(e, "--device cuda:%d: %s", index, cudaGetErrorString(err));
    if ((err = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking)) != cudaSuccess)
        return err_set(e, "--device cuda:%d: creating a stream: %s", index, cudaGetErrorString(err));
    cublasStatus_t bs = cublasLtCreate(&g_lt);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return err_set(e, "--device cuda:%d: cuBLASLt failed to start (status %d)", index, (int)bs);
    cudnnStatus_t ds = cudnnCreate(&g_dnn);
    if (ds != CUDNN_STATUS_SUCCESS)
        return err_set(e, "--device cuda:%d: cuDNN failed to start: %s (is libcudnn 9 on the library path?)",
                       index, cudnnGetErrorString(ds));
    DNN_OK(cudnnSetStream(g_dnn, g_stream));
    workspace_reserve(GEMM_WORKSPACE);
    g_open = index;
    return 0;
}

/* ---- platform calls for gpu_backend.inc ---- */

static void *plat_alloc(size_t bytes, const char *what) {
    void *p = NULL;
    if (!bytes) bytes = 1;
    cudaError_t err = cudaMallocManaged(&p, bytes, cudaMemAttachGlobal);
    if (err != cudaSuccess)
        die("out of GPU memory: %.1f MB for %s: %s (lower --batch or --image-size)", bytes / 1e6,
            what, cudaGetErrorString(err));
    cudaMemLocation loc;
    loc.type = cudaMemLocationTypeDevice;
    loc.id = g_open;
    (void)cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, loc); /* a hint only */
    (void)cudaGetLastError();
    CUDA_OK(cudaMemsetAsync(p, 0, bytes, g_stream));
    CUDA_OK(cudaStreamSynchronize(g_stream));
    return p;
}

static void plat_release(void *p) {
    if (!p) return;
    CUDA_OK(cudaStreamSynchronize(g_stream));
    CUDA_OK(cudaFree(p));
}

static void plat_copy(void *dst, const void *src, size_t bytes) {
    CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_stream));
}

/* The host buffer may be reused as soon as this returns. */
static void plat_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_stream));
    CUDA_OK(cudaStreamSynchronize(g_stream));
}

static void plat_to_host(void *dst, const void *src, size_t bytes) {
    check_launches();
    CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_stream));
    CUDA_OK(cudaStreamSynchronize(g_stream));
}

static void plat_sync(void) {
    check_launches();
    CUDA_OK(cudaStreamSynchronize(g_stream));
}

static void *g_aux;
static size_t g_aux_bytes;
static void *plat_aux(size_t bytes) {
    if (bytes > g_aux_bytes) {
        if (g_aux) {
            CUDA_OK(cudaStreamSynchronize(g_stream));
            CUDA_OK(cudaFree(g_aux));
        }
        CUDA_OK(cudaMalloc(&g_aux, bytes));
        g_aux_bytes = bytes;
    }
    return g_aux;
}

/* bf16 copies of operands, carved from the backend's scratch (valid within one entry). */
static uint16_t *bf16_operands(const float **src, const size_t *n, int count, uint16_t **out) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (n[i] + 63) & ~(size_t)63;
    uint16_t *at = (uint16_t *)plat_aux(total * sizeof(uint16_t));
    for (int i = 0; i < count; i++) {
        out[i] = at;
        if (src[i]) LAUNCH(k_to_bf16, blocks_for(n[i]), 1, GPU_THREADS, at, src[i], n[i]);
        at += (n[i] + 63) & ~(size_t)63;
    }
    return out[0];
}

/* Row-major C[M,N] = alpha op(A) op(B) + beta C (sgemm's contract). cuBLASLt is column-major:
 * a row-major X is the column-major X^T, so it computes C^T = op(B)^T op(A)^T, with B as its
 * first operand. CUBLAS_COMPUTE_32F: fp32 FMAs, no TF32; with bf16, A and B are bf16 copies
 * (tensor cores) and C stays fp32. */
static void plat_gemm(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    const void *a = A, *b = B;
    if (bf16) {
        const float *src[2] = {A, B};
        const size_t n[2] = {(size_t)(ta ? K : M) * lda, (size_t)(tb ? N : K) * ldb};
        uint16_t *conv[2];
        bf16_operands(src, n, 2, conv);
        a = conv[0], b = conv[1];
    }
    const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_OK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LT_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* stored shapes (rows x cols, column-major) of the operands as cuBLASLt sees them */
    LT_OK(cublasLtMatrixLayoutCreate(&la, in_type, tb ? K : N, tb ? N : K, ldb));
    LT_OK(cublasLtMatrixLayoutCreate(&lb, in_type, ta ? M : K, ta ? K : M, lda));
    LT_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldc));
    cublasLtMatmulPreference_t pref;
    LT_OK(cublasLtMatmulPreferenceCreate(&pref));
    LT_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                               &g_workspace_bytes, sizeof g_workspace_bytes));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    LT_OK(cublasLtMatmulAlgoGetHeuristic(g_lt, op, la, lb, lc, lc, pref, 1, &h, &found));
    if (found < 1) die("cuBLASLt: no algorithm for a %dx%dx%d GEMM%s", M, N, K, bf16 ? " in bf16" : "");
    LT_OK(cublasLtMatmul(g_lt, op, &alpha, b, la, a, lb, &beta, C, lc, C, lc, &h.algo, g_workspace,
                         g_workspace_bytes, g_stream));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
}

/* ---- convolutions through cuDNN: descriptors and algorithms chosen once per shape ---- */

typedef struct {
    ConvShape shape;
    int bf16; /* the operands' type: fp32, or bf16 with fp32 accumulation on tensor cores */
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filter;
    unsigned planned; /* passes */
} ConvPlan;

enum { MAX_CONV_PLANS = 256 };
static ConvPlan g_plans[MAX_CONV_PLANS];
static int g_n_plans;

static ConvPlan *plan_find(const ConvShape *s, int bf16) {
    for (int i = 0; i < g_n_plans; i++)
        if (g_plans[i].bf16 == bf16 && !memcmp(&g_plans[i].shape, s, sizeof *s)) return &g_plans[i];
    return NULL;
}

static ConvPlan *plan_descriptors(const ConvShape *s, int bf16) {
    ConvPlan *p = plan_find(s, bf16);
    if (p) return p;
    if (g_n_plans == MAX_CONV_PLANS) die("cuDNN: more than %d convolution shapes", MAX_CONV_PLANS);
    p = &g_plans[g_n_plans++];
    memset(p, 0, sizeof *p);
    p->shape = *s;
    p->bf16 = bf16;
    const cudnnDataType_t t = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    DNN_OK(cudnnCreateTensorDescriptor(&p->x));
    DNN_OK(cudnnCreateTensorDescriptor(&p->y));
    DNN_OK(cudnnCreateFilterDescriptor(&p->w));
    DNN_OK(cudnnCreateConvolutionDescriptor(&p->conv));
    DNN_OK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, t, s->B, s->Cin, s->H, s->W));
    DNN_OK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, t, s->B, s->Cout, s->Ho, s->Wo));
    DNN_OK(cudnnSetFilter4dDescriptor(p->w, t, CUDNN_TENSOR_NHWC, s->Cout, s->Cin, s->K, s->K));
    DNN_OK(cudnnSetConvolution2dDescriptor(p->conv, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    /* fp32: FMA math, no TF32; bf16: tensor cores, fp32 accumulation */
    DNN_OK(cudnnSetConvolutionMathType(p->conv, bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    return p;
}

/* cuDNN measures its algorithms (fastest first); the first deterministic one that ran wins. */
#define CHOOSE(perf, n, out, what)                                                            \
    do {                                                                                      \
        int k_ = 0;                                                                           \
        while (k_ < (n) && ((perf)[k_].status != CUDNN_STATUS_SUCCESS ||                      \
                            (perf)[k_].determinism != CUDNN_DETERMINISTIC))                   \
            k_++;                                                                             \
        if (k_ == (n)) die("cuDNN: no deterministic %s algorithm for a %dx%dx%dx%d -> %d, %dx%d/%d convolution", \
                           what, s->B, s->H, s->W, s->Cin, s->Cout, s->K, s->K, s->stride);   \
        (out) = (perf)[k_].algo;                                                              \
        workspace_reserve((perf)[k_].memory);                                                 \
    } while (0)

static size_t plat_conv_plan(const ConvShape *s, unsigned passes, int bf16) {
    ConvPlan *p = plan_descriptors(s, bf16);
    int n = 0;
    if ((passes & CONV_PASSES_FORWARD) && !(p->planned & CONV_PASSES_FORWARD)) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        DNN_OK(cudnnFindConvolutionForwardAlgorithm(g_dnn, p->x, p->w, p->conv, p->y,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        CHOOSE(perf, n, p->fwd, "forward");
    }
    if ((passes & CONV_PASSES_DATA) && !(p->planned & CONV_PASSES_DATA)) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        DNN_OK(cudnnFindConvolutionBackwardDataAlgorithm(g_dnn, p->w, p->y, p->conv, p->x,
                                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        CHOOSE(perf, n, p->data, "input-gradient");
    }
    if ((passes & CONV_PASSES_WEIGHT) && !(p->planned & CONV_PASSES_WEIGHT)) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        DNN_OK(cudnnFindConvolutionBackwardFilterAlgorithm(g_dnn, p->x, p->y, p->conv, p->w,
                                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        CHOOSE(perf, n, p->filter, "weight-gradient");
    }
    p->planned |= passes;
    return 0; /* the library's workspace is the backend's own */
}

static ConvPlan *plan_for(const ConvShape *s, unsigned pass, int bf16) {
    ConvPlan *p = plan_find(s, bf16);
    if (!p || !(p->planned & pass)) plat_conv_plan(s, pass, bf16), p = plan_find(s, bf16);
    return p;
}

static const float ONE = 1.0f, ZERO = 0.0f;

static size_t in_floats(const ConvShape *s) { return (size_t)s->B * s->H * s->W * s->Cin; }
static size_t out_floats(const ConvShape *s) { return (size_t)s->B * s->Ho * s->Wo * s->Cout; }
static size_t weight_floats(const ConvShape *s) { return (size_t)s->Cout * s->K * s->K * s->Cin; }

/* With bf16, the operands are converted into the scratch (x, w, y), cuDNN runs on them, and
 * the result comes back to fp32: an activation or input gradient converted, a weight gradient
 * added to the fp32 one. */
static void plat_conv_forward(float *out, const float *in, const float *weight, const ConvShape *s,
                              float *scratch, int bf16) {
    (void)scratch;
    ConvPlan *p = plan_for(s, CONV_PASSES_FORWARD, bf16);
    if (!bf16) {
        DNN_OK(cudnnConvolutionForward(g_dnn, &ONE, p->x, in, p->w, weight, p->conv, p->fwd, g_workspace,
                                       g_workspace_bytes, &ZERO, p->y, out));
        return;
    }
    const float *src[3] = {in, weight, NULL};
    const size_t n[3] = {in_floats(s), weight_floats(s), out_floats(s)};
    uint16_t *h[3];
    bf16_operands(src, n, 3, h);
    DNN_OK(cudnnConvolutionForward(g_dnn, &ONE, p->x, h[0], p->w, h[1], p->conv, p->fwd, g_workspace,
                                   g_workspace_bytes, &ZERO, p->y, h[2]));
    LAUNCH(k_from_bf16, blocks_for(n[2]), 1, GPU_THREADS, out, (const uint16_t *)h[2], n[2]);
}

static void plat_conv_backward_data(float *din, const float *dout, const float *weight,
                                    const ConvShape *s, float *scratch, int bf16) {
    (void)scratch;
    ConvPlan *p = plan_for(s, CONV_PASSES_DATA, bf16);
    if (!bf16) {
        DNN_OK(cudnnConvolutionBackwardData(g_dnn, &ONE, p->w, weight, p->y, dout, p->conv, p->data,
                                            g_workspace, g_workspace_bytes, &ZERO, p->x, din));
        return;
    }
    const float *src[3] = {dout, weight, NULL};
    const size_t n[3] = {out_floats(s), weight_floats(s), in_floats(s)};
    uint16_t *h[3];
    bf16_operands(src, n, 3, h);
    DNN_OK(cudnnConvolutionBackwardData(g_dnn, &ONE, p->w, h[1], p->y, h[0], p->conv, p->data, g_workspace,
                                        g_workspace_bytes, &ZERO, p->x, h[2]));
    LAUNCH(k_from_bf16, blocks_for(n[2]), 1, GPU_THREADS, din, (const uint16_t *)h[2], n[2]);
}

/* Accumulates into dweight (beta = 1 in fp32), as every backend's weight gradient does. */
static void plat_conv_backward_weight(float *dweight, const float *dout, const float *in,
                                      const ConvShape *s, float *scratch, int bf16) {
    (void)scratch;
    ConvPlan *p = plan_for(s, CONV_PASSES_WEIGHT, bf16);
    if (!bf16) {
        DNN_OK(cudnnConvolutionBackwardFilter(g_dnn, &ONE, p->x, in, p->y, dout, p->conv, p->filter,
                                              g_workspace, g_workspace_bytes, &ONE, p->w, dweight));
        return;
    }
    const float *src[3] = {in, dout, NULL};
    const size_t n[3] = {in_floats(s), out_floats(s), weight_floats(s)};
    uint16_t *h[3];
    bf16_operands(src, n, 3, h);
    DNN_OK(cudnnConvolutionBackwardFilter(g_dnn, &ONE, p->x, h[0], p->y, h[1], p->conv, p->filter, g_workspace,
                                          g_workspace_bytes, &ZERO, p->w, h[2]));
    LAUNCH(k_accumulate_bf16, blocks_for(n[2]), 1, GPU_THREADS, dweight, (const uint16_t *)h[2], n[2]);
}

#define GPU_API extern "C"
#define GPU_FN(name) cuda_##name
#include "../gpu_backend.inc"

extern "C" const Backend backend_cuda = {
    .name = "cuda",
    .host_memory = 0,
    GPU_TABLE_ENTRIES,
};
