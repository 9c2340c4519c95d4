/* The CUDA backend's own kernels (src/backend/gpu_kernels.h), run on the host by the grid
 * emulator (src/backend/grid.h, backend_gpu_emu), against the reference kernels: every index,
 * bound and reduction order of the GPU code, tested where there is no GPU. Each kernel also runs
 * with the emulator's blocks and threads in reverse order and must give the same bits: a kernel
 * whose threads read what another thread of the same phase writes (a race on the GPU) fails
 * that check, as the planted race below shows. Shapes are chosen off the kernels' sizes: odd
 * channel counts, rows that leave a partial chunk, tensors that cross LARS_CHUNK. */
#include "backend/backend.h"
#include "backend/gpu_kernels.h"
#include "harness.h"

static const Backend *EMU = &backend_gpu_emu, *REF = &backend_ref;

static float *randn(size_t n, uint64_t seed, float scale) {
    float *x = xmalloc(sizeof(float) * (n ? n : 1), "test");
    TestRng r = {seed};
    fill_normal(&r, x, n, scale);
    return x;
}

static float *copy_of(const float *x, size_t n) {
    float *y = xmalloc(sizeof(float) * (n ? n : 1), "test");
    memcpy(y, x, sizeof(float) * n);
    return y;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---- the emulator itself ---- */

/* A race: each thread reads its neighbour's slot in the phase where the neighbour writes it. */
KERNEL(k_planted_race, float *out) {
    SHARED(float, s, GPU_THREADS);
    PHASE_BEGIN
    s[tid] = (float)tid;
    out[tid] = tid + 1 < GPU_THREADS ? s[tid + 1] : 0.0f;
    PHASE_END
}

/* The same exchange with the barrier where it belongs. */
KERNEL(k_barrier_exchange, float *out) {
    SHARED(float, s, GPU_THREADS);
    PHASE_BEGIN s[tid] = (float)tid;
    PHASE_END
    PHASE_BEGIN out[tid] = tid + 1 < GPU_THREADS ? s[tid + 1] : 0.0f;
    PHASE_END
}

static void test_emulator_exposes_races(void) {
    float a[GPU_THREADS], b[GPU_THREADS];
    for (int order = 0; order < 2; order++) {
        grid_emu_reverse = order;
        LAUNCH(k_planted_race, 1, 1, GPU_THREADS, order ? b : a);
    }
    CHECK(!same_bits(a, b, sizeof a), "the two orders disagree on a racy kernel");
    for (int order = 0; order < 2; order++) {
        grid_emu_reverse = order;
        LAUNCH(k_barrier_exchange, 1, 1, GPU_THREADS, order ? b : a);
    }
    grid_emu_reverse = 0;
    CHECK(same_bits(a, b, sizeof a), "a barrier makes the orders agree");
    CHECK(a[0] == 1.0f && a[GPU_THREADS - 2] == GPU_THREADS - 1 && a[GPU_THREADS - 1] == 0.0f,
          "the exchange reads the neighbour: %g %g", a[0], a[GPU_THREADS - 2]);
}

/* Grids cover every block in either order, and 2-D grids pass BLOCK_Y. */
KERNEL(k_mark, int *seen, int gx) {
    THREADS_BEGIN
    if (tid == 0) seen[BLOCK_Y * gx + BLOCK_X] += 1 + (GRID_X == gx);
    THREADS_END
}

static void test_emulator_covers_the_grid(void) {
    int seen[3 * 5] = {0};
    for (int order = 0; order < 2; order++) {
        grid_emu_reverse = order;
        LAUNCH(k_mark, 5, 3, 32, seen, 5);
    }
    grid_emu_reverse = 0;
    int ok = 1;
    for (int i = 0; i < 15; i++) ok &= seen[i] == 4;
    CHECK(ok, "each of the 15 blocks ran once per order with its grid size");
}

/* ---- memory ---- */

static void test_memory_operations(void) {
    const size_t n = 1000;
    float *d = EMU->alloc(n * sizeof(float), "test"), *e = EMU->alloc(n * sizeof(float), "test");
    float *h = randn(n, 1, 1.0f), back[1000];
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= d[i] == 0.0f;
    CHECK(zero, "alloc is zeroed");
    EMU->upload(d, h, n * sizeof(float));
    EMU->copy(e, d, n * sizeof(float));
    EMU->sync();
    EMU->download(back, e, n * sizeof(float));
    CHECK(same_bits(back, h, sizeof back), "upload, copy, download round trip");
    EMU->release(d);
    EMU->release(e);
    free(h);
}

/* ---- elementwise and layout ---- */

static void test_elementwise_match_reference(void) {
    const size_t n = 70001; /* not a multiple of the block */
    float *x = randn(n, 2, 1.0f), *y = randn(n, 3, 1.0f), *g = randn(n, 4, 1.0f);
    x[5] = NAN;
    float *a = xmalloc(n * sizeof(float), "t"), *b = xmalloc(n * sizeof(float), "t");
    EMU->relu_forward(a, x, n);
    REF->relu_forward(b, x, n);
    CHECK(same_bits(a, b, n * sizeof(float)), "relu forward (NaN passes)");
    EMU->relu_backward(a, g, y, n);
    REF->relu_backward(b, g, y, n);
    CHECK(same_bits(a, b, n * sizeof(float)), "relu backward");
    EMU->add_forward(a, x, y, n);
    REF->add_forward(b, x, y, n);
    CHECK(same_bits(a, b, n * sizeof(float)), "add");
    memcpy(a, y, n * sizeof(float));
    EMU->add_forward(a, a, x, n); /* out aliasing an input */
    CHECK(same_bits(a, b, n * sizeof(float)), "add in place");
    EMU->fill_zero(a, n);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += a[i] != 0.0f;
    CHECK(nz == 0, "fill_zero left %zu values", nz);
    EMU->ema_update(a, x, 0, 0.5f); /* n = 0 launches nothing */
    memcpy(a, y, n * sizeof(float));
    memcpy(b, y, n * sizeof(float));
    EMU->ema_update(a, x, n, 0.99f);
    backend_cpu.ema_update(b, x, n, 0.99f);
    CHECK(same_bits(a, b, n * sizeof(float)), "EMA: the CPU's float arithmetic, bit for bit");
    free(x), free(y), free(g), free(a), free(b);
}

static void test_layout_and_guard(void) {
    const int B = 3, C = 5, H = 7, W = 9;
    const size_t n = (size_t)B * C * H * W;
    float *x = randn(n, 5, 1.0f), *a = xmalloc(n * sizeof(float), "t"), *b = xmalloc(n * sizeof(float), "t");
    EMU->nchw_to_nhwc(a, x, B, C, H, W);
    REF->nchw_to_nhwc(b, x, B, C, H, W);
    CHECK(same_bits(a, b, n * sizeof(float)), "NCHW to NHWC");
    /* the guard counts NaN and infinities anywhere, past GUARD_BLOCKS * GPU_THREADS too */
    const size_t m = (size_t)GUARD_BLOCKS * GPU_THREADS * 2 + 77;
    float *y = randn(m, 6, 1.0f);
    CHECK(EMU->count_nonfinite(y, m) == 0, "finite values");
    y[0] = NAN, y[12345] = INFINITY, y[m - 1] = -INFINITY, y[(size_t)GUARD_BLOCKS * GPU_THREADS + 3] = NAN;
    CHECK(EMU->count_nonfinite(y, m) == 4, "four found: %zu", EMU->count_nonfinite(y, m));
    CHECK(EMU->count_nonfinite(y, m - 1) == 3, "the bound excludes the last");
    free(x), free(a), free(b), free(y);
}

/* ---- pooling ---- */

static void test_pooling_matches_reference(void) {
    PoolShape s = pool_shape(2, 9, 11, 6, 3, 2, 1); /* ResNet's stem pool, odd sizes */
    const size_t ni = (size_t)s.B * s.H * s.W * s.C, no = (size_t)s.B * s.Ho * s.Wo * s.C;
    float *x = randn(ni, 7, 1.0f);
    for (size_t i = 0; i < ni; i++) x[i] = roundf(x[i] * 2) / 2; /* ties */
    x[13] = NAN;
    float *oa = xmalloc(no * 4, "t"), *ob = xmalloc(no * 4, "t");
    int32_t *ia = xmalloc(no * 4, "t"), *ib = xmalloc(no * 4, "t");
    EMU->maxpool2d_forward(oa, ia, x, &s);
    REF->maxpool2d_forward(ob, ib, x, &s);
    CHECK(same_bits(oa, ob, no * 4) && same_bits(ia, ib, no * 4), "max pool forward and argmax (ties, NaN)");
    float *dy = randn(no, 8, 1.0f), *da = xmalloc(ni * 4, "t"), *db = xmalloc(ni * 4, "t"), *dc = xmalloc(ni * 4, "t");
    EMU->maxpool2d_backward(da, dy, ib, &s);
    REF->maxpool2d_backward(db, dy, ib, &s);
    CHECK(same_bits(da, db, ni * 4), "max pool backward: the gather adds in the scatter's order");
    grid_emu_reverse = 1;
    EMU->maxpool2d_backward(dc, dy, ib, &s);
    grid_emu_reverse = 0;
    CHECK(same_bits(da, dc, ni * 4), "max pool backward in reverse order");
    const int B = 3, HW = 49, C = 37;
    float *f = randn((size_t)B * HW * C, 9, 1.0f), *pa = xmalloc(B * C * 4, "t"), *pb = xmalloc(B * C * 4, "t");
    EMU->avgpool_forward(pa, f, B, HW, C);
    REF->avgpool_forward(pb, f, B, HW, C);
    CHECK(same_bits(pa, pb, (size_t)B * C * 4), "average pool forward");
    float *ga = xmalloc((size_t)B * HW * C * 4, "t"), *gb = xmalloc((size_t)B * HW * C * 4, "t");
    EMU->avgpool_backward(ga, pa, B, HW, C);
    REF->avgpool_backward(gb, pa, B, HW, C);
    CHECK(same_bits(ga, gb, (size_t)B * HW * C * 4), "average pool backward");
    free(x), free(oa), free(ob), free(ia), free(ib), free(dy), free(da), free(db), free(dc);
    free(f), free(pa), free(pb), free(ga), free(gb);
}

/* ---- batch norm ---- */

typedef struct {
    float *out, *mean, *invstd, *rm, *rv, *din, *din_eval, *dgamma, *dbeta;
} BnResult;

/* Training forward (with a residual and ReLU) then backward through the ReLU, and the eval
 * pair, on backend `be`. */
static BnResult bn_run(const Backend *be, int M, int C, int fused) {
    BnResult r;
    const size_t n = (size_t)M * C;
    float *x = randn(n, 10, 2.0f), *gamma = randn(C, 11, 1.0f), *beta = randn(C, 12, 1.0f);
    float *res = randn(n, 13, 1.0f), *dy = randn(n, 14, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* a mean away from the running mean */
    r.out = xmalloc(n * 4, "t"), r.din = xmalloc(n * 4, "t"), r.din_eval = xmalloc(n * 4, "t");
    r.mean = xmalloc(C * 4, "t"), r.invstd = xmalloc(C * 4, "t");
    r.rm = randn(C, 15, 0.1f), r.rv = randn(C, 16, 0.1f);
    for (int c = 0; c < C; c++) r.rv[c] = 1.0f + fabsf(r.rv[c]);
    r.dgamma = randn(C, 17, 1.0f), r.dbeta = randn(C, 18, 1.0f); /* accumulated into */
    double *work = xcalloc(be->batchnorm_work_doubles(M, C), sizeof(double), "t");
    be->batchnorm_forward_train(r.out, r.mean, r.invstd, r.rm, r.rv, x, gamma, beta,
                                fused ? res : NULL, fused, M, C, 0.1f, 1e-5f, NULL, work);
    be->batchnorm_backward(r.din, r.dgamma, r.dbeta, dy, fused ? r.out : NULL, x, r.mean, r.invstd,
                           gamma, M, C, NULL, work);
    float *eo = xmalloc(n * 4, "t");
    be->batchnorm_forward_eval(eo, x, gamma, beta, r.rm, r.rv, fused ? res : NULL, fused, M, C, 1e-5f, work);
    be->batchnorm_backward_eval(r.din_eval, r.dgamma, r.dbeta, dy, x, gamma, r.rm, r.rv, M, C, 1e-5f, work);
    for (size_t i = 0; i < n; i++) r.out[i] += 0.25f * eo[i]; /* both forwards in one check */
    free(eo), free(work), free(x), free(gamma), free(beta), free(res), free(dy);
    return r;
}

static void bn_free(BnResult *r) {
    free(r->out), free(r->mean), free(r->invstd), free(r->rm), free(r->rv), free(r->din), free(r->din_eval);
    free(r->dgamma), free(r->dbeta);
}

static void test_batchnorm_matches_reference(void) {
    /* M: one partial chunk, several chunks with a remainder; C below and above a block */
    const int shapes[][2] = {{37, 5}, {1000, 70}, {2 * 128 * 3 + 17, 300}};
    for (int k = 0; k < 3; k++)
        for (int fused = 0; fused < 2; fused++) {
            const int M = shapes[k][0], C = shapes[k][1];
            BnResult a = bn_run(EMU, M, C, fused), b = bn_run(REF, M, C, fused);
            grid_emu_reverse = 1;
            BnResult c = bn_run(EMU, M, C, fused);
            grid_emu_reverse = 0;
            const size_t n = (size_t)M * C;
            CHECK_CLOSE(a.out, b.out, n, 2e-6, "forward output");
            CHECK_CLOSE(a.mean, b.mean, C, 1e-6, "saved mean");
            CHECK_CLOSE(a.invstd, b.invstd, C, 1e-6, "saved 1/std");
            CHECK_CLOSE(a.rm, b.rm, C, 1e-6, "running mean");
            CHECK_CLOSE(a.rv, b.rv, C, 1e-6, "running variance");
            CHECK_CLOSE(a.din, b.din, n, 1e-5, "input gradient");
            CHECK_CLOSE(a.din_eval, b.din_eval, n, 1e-6, "eval-mode input gradient");
            CHECK_CLOSE(a.dgamma, b.dgamma, C, 1e-5, "gamma gradient");
            CHECK_CLOSE(a.dbeta, b.dbeta, C, 1e-5, "beta gradient");
            CHECK(same_bits(a.out, c.out, n * 4) && same_bits(a.din, c.din, n * 4) &&
                      same_bits(a.dgamma, c.dgamma, C * 4) && same_bits(a.rv, c.rv, C * 4),
                  "M=%d C=%d fused=%d: the same bits in reverse order", M, C, fused);
            bn_free(&a), bn_free(&b), bn_free(&c);
        }
}

/* ---- GEMM-backed layers, the loss, LARS ---- */

static void test_linear_and_1x1_conv(void) {
    const int B = 13, In = 40, Out = 29;
    float *x = randn((size_t)B * In, 20, 1.0f), *w = randn((size_t)Out * In, 21, 0.2f), *bias = randn(Out, 22, 1.0f);
    float *ya = xmalloc(B * Out * 4, "t"), *yb = xmalloc(B * Out * 4, "t");
    EMU->linear_forward(ya, x, w, bias, B, In, Out);
    REF->linear_forward(yb, x, w, bias, B, In, Out);
    CHECK_CLOSE(ya, yb, (size_t)B * Out, 1e-6, "linear forward");
    float *dy = randn((size_t)B * Out, 23, 1.0f);
    float *dwa = randn((size_t)Out * In, 24, 1.0f), *dwb = copy_of(dwa, (size_t)Out * In);
    float *dba = randn(Out, 25, 1.0f), *dbb = copy_of(dba, Out);
    float *dxa = xmalloc(B * In * 4, "t"), *dxb = xmalloc(B * In * 4, "t");
    EMU->linear_backward(dxa, dwa, dba, dy, x, w, B, In, Out);
    REF->linear_backward(dxb, dwb, dbb, dy, x, w, B, In, Out);
    CHECK_CLOSE(dxa, dxb, (size_t)B * In, 1e-6, "linear input gradient");
    CHECK_CLOSE(dwa, dwb, (size_t)Out * In, 1e-6, "linear weight gradient (accumulated)");
    CHECK_CLOSE(dba, dbb, Out, 1e-6, "linear bias gradient (accumulated)");
    /* a 1x1 stride-1 convolution goes to the GEMM, others to the convolution */
    for (int k = 0; k < 2; k++) {
        ConvShape s = k ? conv_shape(2, 5, 6, 12, 10, 3, 1, 1) : conv_shape(2, 5, 6, 12, 10, 1, 1, 0);
        const size_t ni = (size_t)s.B * s.H * s.W * s.Cin, no = (size_t)s.B * s.Ho * s.Wo * s.Cout;
        const size_t nw = (size_t)s.Cout * s.K * s.K * s.Cin;
        float *ci = randn(ni, 26, 1.0f), *cw = randn(nw, 27, 0.3f), *cdy = randn(no, 28, 1.0f);
        float *sa = xcalloc(EMU->conv2d_plan(&s, CONV_PASSES_ALL) + 1, 4, "t");
        REF->conv2d_plan(&s, CONV_PASSES_ALL);
        float *oa = xmalloc(no * 4, "t"), *ob = xmalloc(no * 4, "t");
        EMU->conv2d_forward(oa, ci, cw, &s, sa);
        REF->conv2d_forward(ob, ci, cw, &s, NULL);
        CHECK_CLOSE(oa, ob, no, 1e-6, k ? "3x3 forward" : "1x1 forward");
        float *ga = randn(nw, 29, 1.0f), *gb = copy_of(ga, nw), *ia = xmalloc(ni * 4, "t"), *ib = xmalloc(ni * 4, "t");
        EMU->conv2d_backward_weight(ga, cdy, ci, &s, sa);
        REF->conv2d_backward_weight(gb, cdy, ci, &s, NULL);
        CHECK_CLOSE(ga, gb, nw, 1e-6, k ? "3x3 weight gradient" : "1x1 weight gradient");
        EMU->conv2d_backward_data(ia, cdy, cw, &s, sa);
        REF->conv2d_backward_data(ib, cdy, cw, &s, NULL);
        CHECK_CLOSE(ia, ib, ni, 1e-6, k ? "3x3 input gradient" : "1x1 input gradient");
        free(ci), free(cw), free(cdy), free(sa), free(oa), free(ob), free(ga), free(gb), free(ia), free(ib);
    }
    free(x), free(w), free(bias), free(ya), free(yb), free(dy), free(dwa), free(dwb), free(dba), free(dbb);
    free(dxa), free(dxb);
}

static void test_loss_matches_reference(void) {
    const int B = 19, D = 300; /* D above one block's threads */
    float *p = randn((size_t)B * D, 30, 1.0f), *z = randn((size_t)B * D, 31, 1.0f);
    for (int i = 0; i < D; i++) p[i] = 0.0f; /* a zero row: the eps clamp */
    float la = EMU->cosine_loss_forward(p, z, B, D), lb = REF->cosine_loss_forward(p, z, B, D);
    CHECK(fabsf(la - lb) <= 1e-6f * fabsf(lb), "loss %.9g against %.9g", la, lb);
    float *ga = xmalloc((size_t)B * D * 4, "t"), *gb = xmalloc((size_t)B * D * 4, "t"), *gc = xmalloc((size_t)B * D * 4, "t");
    EMU->cosine_loss_backward(ga, p, z, B, D, 0.7f);
    REF->cosine_loss_backward(gb, p, z, B, D, 0.7f);
    CHECK_CLOSE(ga, gb, (size_t)B * D, 1e-6, "loss gradient");
    grid_emu_reverse = 1;
    float lc = EMU->cosine_loss_forward(p, z, B, D);
    EMU->cosine_loss_backward(gc, p, z, B, D, 0.7f);
    grid_emu_reverse = 0;
    CHECK(la == lc && same_bits(ga, gc, (size_t)B * D * 4), "the same bits in reverse order");
    free(p), free(z), free(ga), free(gb), free(gc);
}

static void test_lars_matches_reference(void) {
    /* a conv weight crossing two chunk boundaries, a bias, a BN weight, an empty-norm tensor, a
     * head weight past mult_from */
    TensorSpec specs[6];
    memset(specs, 0, sizeof specs);
    const size_t sizes[6] = {2 * LARS_CHUNK + 1234, 64, 64, 300, 0, 500};
    const int ndims[6] = {4, 1, 1, 2, 2, 2};
    size_t off = 0;
    for (int t = 0; t < 6; t++) {
        specs[t].numel = sizes[t];
        specs[t].ndim = ndims[t];
        specs[t].offset = off;
        specs[t].role = ROLE_PARAM;
        off += sizes[t];
    }
    const size_t n = off;
    LarsConfig cfg = {.lr = 0.3f, .weight_decay = 1.5e-6f, .momentum = 0.9f, .eta = 0.001f,
                      .mult_from = specs[5].offset, .lr_mult = 10.0f};
    float *p0 = randn(n, 40, 0.1f), *g = randn(n, 41, 0.01f), *v0 = randn(n, 42, 0.01f);
    for (size_t i = 0; i < sizes[3]; i++) p0[specs[3].offset + i] = 0.0f; /* |p| = 0: no trust ratio */
    float *pa = copy_of(p0, n), *va = copy_of(v0, n), *pb = copy_of(p0, n), *vb = copy_of(v0, n);
    float *pc = copy_of(p0, n), *vc = copy_of(v0, n);
    EMU->lars_update(pa, g, va, specs, 6, &cfg);
    REF->lars_update(pb, g, vb, specs, 6, &cfg);
    grid_emu_reverse = 1;
    EMU->lars_update(pc, g, vc, specs, 6, &cfg);
    grid_emu_reverse = 0;
    float *da = xmalloc(n * 4, "t"), *db = xmalloc(n * 4, "t");
    for (size_t i = 0; i < n; i++) da[i] = pa[i] - p0[i], db[i] = pb[i] - p0[i];
    CHECK_CLOSE(da, db, n, 1e-5, "the update");
    CHECK_CLOSE(va, vb, n, 1e-5, "momentum");
    for (int t = 0; t < 6; t++)
        if (sizes[t]) {
            const size_t o = specs[t].offset;
            CHECK(rel_err(da + o, db + o, sizes[t]) < 1e-5, "tensor %d's update", t);
        }
    CHECK(same_bits(pa, pc, n * 4) && same_bits(va, vc, n * 4), "the same bits in reverse order");
    free(p0), free(g), free(v0), free(pa), free(va), free(pb), free(vb), free(pc), free(vc), free(da), free(db);
}

/* ---- bf16 ---- */

/* Reference rounding: the nearest bf16 by search over the two neighbours, ties to even. */
static float bf16_nearest(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float fl, fh;
    memcpy(&fl, &lo, 4);
    memcpy(&fh, &hi, 4);
    double dl = fabs((double)x - fl), dh = fabs((double)fh - x);
    if (dl < dh) return fl;
    if (dh < dl) return fh;
    return ((lo >> 16) & 1) ? fh : fl; /* a tie: the even one */
}

static void test_bf16_rounding(void) {
    TestRng r = {50};
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        float x = (float)(rng_normal(&r) * pow(10.0, (int)(rng_uniform(&r) * 20) - 10));
        if (i % 7 == 0) { /* exact ties: the 16 low bits 0x8000 */
            uint32_t u;
            memcpy(&u, &x, 4);
            u = (u & 0xffff0000u) | 0x8000u;
            memcpy(&x, &u, 4);
        }
        float got = bf16_to_f32(f32_to_bf16(x)), want = bf16_nearest(x);
        bad += memcmp(&got, &want, 4) != 0;
    }
    CHECK(bad == 0, "%d of 100000 values rounded off the nearest (ties to even)", bad);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))), "NaN stays NaN");
    CHECK(bf16_to_f32(f32_to_bf16(INFINITY)) == INFINITY && bf16_to_f32(f32_to_bf16(-INFINITY)) == -INFINITY, "infinities");
    CHECK(bf16_to_f32(f32_to_bf16(3.4e38f)) == INFINITY, "past bf16's largest: infinity");
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f, "1 + 2^-8 ties to 1 (even)");
    CHECK(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256, "1 + 3*2^-8 ties up to 1 + 2^-6");
}

/* Convolutions and GEMMs in bf16 against fp32: random operands give outputs whose rounding is
 * well conditioned, so the error is that of bf16 itself (2^-9 = 2e-3 per operand and per
 * rounded result): above 2e-4 (it rounded) and below 1e-2. */
static void test_bf16_layers(void) {
    const size_t cap = 1 << 16;
    EMU->set_bf16(1);
    for (int k = 0; k < 3; k++) {
        ConvShape s = k == 0 ? conv_shape(4, 8, 8, 16, 24, 3, 1, 1) : k == 1 ? conv_shape(4, 8, 8, 16, 24, 1, 1, 0)
                                                                          : conv_shape(4, 9, 9, 16, 24, 3, 2, 1);
        const size_t ni = (size_t)s.B * s.H * s.W * s.Cin, no = (size_t)s.B * s.Ho * s.Wo * s.Cout;
        const size_t nw = (size_t)s.Cout * s.K * s.K * s.Cin;
        float *x = randn(ni, 60, 1.0f), *w = randn(nw, 61, 0.1f), *dy = randn(no, 62, 1.0f);
        float *sc = xcalloc(EMU->conv2d_plan(&s, CONV_PASSES_ALL) + cap, 4, "t");
        float *oa = xmalloc(no * 4, "t"), *ob = xmalloc(no * 4, "t");
        EMU->conv2d_forward(oa, x, w, &s, sc);
        REF->conv2d_forward(ob, x, w, &s, NULL);
        double e1 = rel_err(oa, ob, no);
        float *ga = xcalloc(nw, 4, "t"), *gb = xcalloc(nw, 4, "t"), *ia = xmalloc(ni * 4, "t"), *ib = xmalloc(ni * 4, "t");
        EMU->conv2d_backward_weight(ga, dy, x, &s, sc);
        REF->conv2d_backward_weight(gb, dy, x, &s, NULL);
        EMU->conv2d_backward_data(ia, dy, w, &s, sc);
        REF->conv2d_backward_data(ib, dy, w, &s, NULL);
        double e2 = rel_err(ga, gb, nw), e3 = rel_err(ia, ib, ni);
        printf("     bf16 conv %dx%d/%d: forward %.2e, weight gradient %.2e, input gradient %.2e\n", s.K, s.K,
               s.stride, e1, e2, e3);
        CHECK(e1 > 2e-4 && e1 < 1e-2 && e2 > 2e-4 && e2 < 1e-2 && e3 > 2e-4 && e3 < 1e-2,
              "conv %d: %.2e %.2e %.2e", k, e1, e2, e3);
        free(x), free(w), free(dy), free(sc), free(oa), free(ob), free(ga), free(gb), free(ia), free(ib);
    }
    const int B = 64, In = 96, Out = 80;
    float *x = randn((size_t)B * In, 63, 1.0f), *w = randn((size_t)Out * In, 64, 0.1f), *bias = randn(Out, 65, 0.1f);
    float *ya = xmalloc(B * Out * 4, "t"), *yb = xmalloc(B * Out * 4, "t");
    EMU->linear_forward(ya, x, w, bias, B, In, Out);
    REF->linear_forward(yb, x, w, bias, B, In, Out);
    double e = rel_err(ya, yb, (size_t)B * Out);
    printf("     bf16 linear forward %.2e\n", e);
    CHECK(e > 2e-4 && e < 1e-2, "linear: %.2e", e);
    EMU->set_bf16(0);
    EMU->linear_forward(ya, x, w, bias, B, In, Out);
    CHECK(rel_err(ya, yb, (size_t)B * Out) < 1e-6, "set_bf16(0) is fp32 again");
    free(x), free(w), free(bias), free(ya), free(yb);
}

int main(void) {
    RUN(test_emulator_exposes_races);
    RUN(test_emulator_covers_the_grid);
    RUN(test_memory_operations);
    RUN(test_elementwise_match_reference);
    RUN(test_layout_and_guard);
    RUN(test_pooling_matches_reference);
    RUN(test_batchnorm_matches_reference);
    RUN(test_linear_and_1x1_conv);
    RUN(test_loss_matches_reference);
    RUN(test_lars_matches_reference);
    RUN(test_bf16_rounding);
    RUN(test_bf16_layers);
    return test_finish();
}
