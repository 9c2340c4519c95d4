#include "profile.h"

#include "../core/common.h"


const char *const PHASE_NAMES[PHASE_COUNT] = {"conv forward", "conv backward data",
                                              "conv backward weights", "batch norm",
                                              "heads", "optimizer+EMA", "other"};

static const Backend *g_inner;
static Profile *g_prof;
static int g_head_rows;

/* A device backend's kernels run asynchronously: it is synchronized around each timed call,
 * which costs the overlap of launches with the work before them, so a profiled step on a GPU is
 * slower than an unprofiled one (byol bench reports both). */
#define TIMED(phase, work, call)                         \
    do {                                                 \
        if (!g_inner->host_memory) g_inner->sync();      \
        double t0_ = now_seconds();                      \
        call;                                            \
        if (!g_inner->host_memory) g_inner->sync();      \
        g_prof->seconds[phase] += now_seconds() - t0_;   \
        g_prof->flops[phase] += (work);                  \
    } while (0)

static double conv_flops(const ConvShape *s) {
    return 2.0 * s->B * s->Ho * s->Wo * s->Cout * s->K * s->K * s->Cin;
}

static Phase bn_phase(int M) { return M == g_head_rows ? PHASE_HEADS : PHASE_BATCHNORM; }

static size_t p_conv_plan(const ConvShape *s, unsigned passes) { return g_inner->conv2d_plan(s, passes); }
static void p_conv_fwd(float *out, const float *in, const float *w, const ConvShape *s, float *sc) {
    TIMED(PHASE_CONV_FORWARD, conv_flops(s), g_inner->conv2d_forward(out, in, w, s, sc));
}
static void p_conv_bw(float *dw, const float *dout, const float *in, const ConvShape *s, float *sc) {
    TIMED(PHASE_CONV_BACKWARD_WEIGHT, conv_flops(s), g_inner->conv2d_backward_weight(dw, dout, in, s, sc));
}
static void p_conv_bd(float *din, const float *dout, const float *w, const ConvShape *s, float *sc) {
    TIMED(PHASE_CONV_BACKWARD_DATA, conv_flops(s), g_inner->conv2d_backward_data(din, dout, w, s, sc));
}
static size_t p_bn_work(int M, int C) { return g_inner->batchnorm_work_doubles(M, C); }
static void p_bn_fwd(float *out, float *sm, float *si, float *rm, float *rv, const float *in,
                     const float *g, const float *b, const float *res, int relu, int M, int C,
                     float mom, float eps, const Reducer *sync, double *w) {
    TIMED(bn_phase(M), 0,
          g_inner->batchnorm_forward_train(out, sm, si, rm, rv, in, g, b, res, relu, M, C, mom, eps, sync, w));
}
static void p_bn_eval(float *out, const float *in, const float *g, const float *b, const float *rm,
                      const float *rv, const float *res, int relu, int M, int C, float eps, double *w) {
    TIMED(bn_phase(M), 0, g_inner->batchnorm_forward_eval(out, in, g, b, rm, rv, res, relu, M, C, eps, w));
}
static void p_bn_bwd(float *din, float *dg, float *db, const float *dout, const float *relu_out,
                     const float *in, const float *sm, const float *si, const float *g, int M, int C,
                     const Reducer *sync, double *w) {
    TIMED(bn_phase(M), 0,
          g_inner->batchnorm_backward(din, dg, db, dout, relu_out, in, sm, si, g, M, C, sync, w));
}
static void p_bn_bwd_eval(float *din, float *dg, float *db, const float *dout, const float *in,
                          const float *g, const float *rm, const float *rv, int M, int C,
                          float eps, double *w) {
    TIMED(bn_phase(M), 0, g_inner->batchnorm_backward_eval(din, dg, db, dout, in, g, rm, rv, M, C, eps, w));
}
/* ReLU and residual adds run on feature maps except the heads' ReLU on [batch, hidden] rows;
 * they are all memory passes like batch norm, so they share its phase. */
static void p_relu(float *out, const float *in, size_t n) {
    TIMED(PHASE_BATCHNORM, 0, g_inner->relu_forward(out, in, n));
}
static void p_relu_bwd(float *din, const float *dout, const float *out, size_t n) {
    TIMED(PHASE_BATCHNORM, 0, g_inner->relu_backward(din, dout, out, n));
}
static void p_add(float *out, const float *a, const float *b, size_t n) {
    TIMED(PHASE_BATCHNORM, 0, g_inner->add_forward(out, a, b, n));
}
static void p_maxpool(float *out, int32_t *am, const float *in, const PoolShape *s) {
    TIMED(PHASE_OTHER, 0, g_inner->maxpool2d_forward(out, am, in, s));
}
static void p_maxpool_bwd(float *din, const float *dout, const int32_t *am, const PoolShape *s) {
    TIMED(PHASE_OTHER, 0, g_inner->maxpool2d_backward(din, dout, am, s));
}
static void p_avgpool(float *out, const float *in, int B, int HW, int C) {
    TIMED(PHASE_OTHER, 0, g_inner->avgpool_forward(out, in, B, HW, C));
}
static void p_avgpool_bwd(float *din, const float *dout, int B, int HW, int C) {
    TIMED(PHASE_OTHER, 0, g_inner->avgpool_backward(din, dout, B, HW, C));
}
static void p_linear(float *out, const float *in, const float *w, const float *b, int B, int In, int Out) {
    TIMED(PHASE_HEADS, 2.0 * B * In * Out, g_inner->linear_forward(out, in, w, b, B, In, Out));
}
static void p_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                         const float *w, int B, int In, int Out) {
    TIMED(PHASE_HEADS, (din ? 4.0 : 2.0) * B * In * Out,
          g_inner->linear_backward(din, dw, db, dout, in, w, B, In, Out));
}
static float p_loss(const float *p, const float *z, int B, int D) {
    float r;
    TIMED(PHASE_HEADS, 0, r = g_inner->cosine_loss_forward(p, z, B, D));
    return r;
}
static void p_loss_bwd(float *dp, const float *p, const float *z, int B, int D, float dl) {
    TIMED(PHASE_HEADS, 0, g_inner->cosine_loss_backward(dp, p, z, B, D, dl));
}
static double p_var_cov(float *dz, const float *z, int B, int D, float wv, float wc, float scale, float *scratch) {
    double r;
    TIMED(PHASE_HEADS, 4.0 * B * D * D, r = g_inner->var_cov_loss(dz, z, B, D, wv, wc, scale, scratch));
    return r;
}
static void p_gelu(float *out, const float *in, size_t n) { TIMED(PHASE_HEADS, 0, g_inner->gelu_forward(out, in, n)); }
static void p_gelu_bwd(float *din, const float *dout, const float *in, size_t n) {
    TIMED(PHASE_HEADS, 0, g_inner->gelu_backward(din, dout, in, n));
}
static void p_l2n(float *out, float *norms, const float *in, int rows, int cols, float eps) {
    TIMED(PHASE_HEADS, 0, g_inner->l2norm_rows_forward(out, norms, in, rows, cols, eps));
}
static void p_l2n_bwd(float *din, const float *dout, const float *out, const float *norms, int rows, int cols,
                      float eps) {
    TIMED(PHASE_HEADS, 0, g_inner->l2norm_rows_backward(din, dout, out, norms, rows, cols, eps));
}
static void p_teacher(float *q, const float *t, const float *c, int rows, int K, float temp) {
    TIMED(PHASE_HEADS, 0, g_inner->dino_teacher_softmax(q, t, c, rows, K, temp));
}
static float p_student(float *ds, const float *s, const float *q, int rows, int K, float temp, float dl, double *h) {
    float r;
    TIMED(PHASE_HEADS, 0, r = g_inner->dino_student_loss(ds, s, q, rows, K, temp, dl, h));
    return r;
}
static void p_center(float *c, const float *t, int rows, int K, float m, const Reducer *sync) {
    TIMED(PHASE_HEADS, 0, g_inner->dino_center_update(c, t, rows, K, m, sync));
}
static void p_layout(float *out, const float *in, int B, int C, int H, int W) {
    TIMED(PHASE_OTHER, 0, g_inner->nchw_to_nhwc(out, in, B, C, H, W));
}
static void p_zero(float *x, size_t n) { TIMED(PHASE_OTHER, 0, g_inner->fill_zero(x, n)); }
static size_t p_nonfinite(const float *x, size_t n) {
    size_t r;
    TIMED(PHASE_OPTIMIZER, 0, r = g_inner->count_nonfinite(x, n));
    return r;
}
static void p_lars(float *p, const float *g, float *m, const TensorSpec *sp, int n, const LarsConfig *c) {
    TIMED(PHASE_OPTIMIZER, 0, g_inner->lars_update(p, g, m, sp, n, c));
}
static void p_adamw(float *p, const float *g, float *m, float *v, const TensorSpec *sp, int n, const LarsConfig *c) {
    TIMED(PHASE_OPTIMIZER, 0, g_inner->adamw_update(p, g, m, v, sp, n, c));
}
static void p_ema(float *t, const float *o, size_t n, float tau) {
    TIMED(PHASE_OPTIMIZER, 0, g_inner->ema_update(t, o, n, tau));
}

static void *p_alloc(size_t bytes, const char *what) { return g_inner->alloc(bytes, what); }
static void p_release(void *p) { g_inner->release(p); }
static void p_copy(void *d, const void *s, size_t n) { TIMED(PHASE_OTHER, 0, g_inner->copy(d, s, n)); }
static void p_upload(void *d, const void *s, size_t n) { TIMED(PHASE_OTHER, 0, g_inner->upload(d, s, n)); }
static void p_download(void *d, const void *s, size_t n) { TIMED(PHASE_OTHER, 0, g_inner->download(d, s, n)); }
static void p_sync(void) { g_inner->sync(); }
/* Not const: host_memory is the wrapped backend's. */
static Backend PROFILED = {
    .name = "profiled",
    .alloc = p_alloc,
    .release = p_release,
    .copy = p_copy,
    .upload = p_upload,
    .download = p_download,
    .sync = p_sync,
    .conv2d_plan = p_conv_plan,
    .conv2d_forward = p_conv_fwd,
    .conv2d_backward_weight = p_conv_bw,
    .conv2d_backward_data = p_conv_bd,
    .batchnorm_work_doubles = p_bn_work,
    .batchnorm_forward_train = p_bn_fwd,
    .batchnorm_forward_eval = p_bn_eval,
    .batchnorm_backward = p_bn_bwd,
    .batchnorm_backward_eval = p_bn_bwd_eval,
    .relu_forward = p_relu,
    .relu_backward = p_relu_bwd,
    .add_forward = p_add,
    .maxpool2d_forward = p_maxpool,
    .maxpool2d_backward = p_maxpool_bwd,
    .avgpool_forward = p_avgpool,
    .avgpool_backward = p_avgpool_bwd,
    .linear_forward = p_linear,
    .linear_backward = p_linear_bwd,
    .cosine_loss_forward = p_loss,
    .cosine_loss_backward = p_loss_bwd,
    .gelu_forward = p_gelu,
    .gelu_backward = p_gelu_bwd,
    .l2norm_rows_forward = p_l2n,
    .l2norm_rows_backward = p_l2n_bwd,
    .dino_teacher_softmax = p_teacher,
    .dino_student_loss = p_student,
    .dino_center_update = p_center,
    .nchw_to_nhwc = p_layout,
    .fill_zero = p_zero,
    .count_nonfinite = p_nonfinite,
    .lars_update = p_lars,
    .adamw_update = p_adamw,
    .ema_update = p_ema,
};

void profile_head_rows(int head_rows) { g_head_rows = head_rows; }

const Backend *profile_begin(const Backend *inner, Profile *totals, int head_rows) {
    *totals = (Profile){{0}, {0}};
    g_inner = inner;
    g_prof = totals;
    g_head_rows = head_rows;
    PROFILED.host_memory = inner->host_memory;
    PROFILED.var_cov_loss = inner->var_cov_loss ? p_var_cov : NULL;
    return &PROFILED;
}
