#include "probe.h"
#include "knn.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "../backend/gemm.h"

void probe_config_default(ProbeConfig *c) {
    c->l2 = 1e-4;
    c->max_iter = 3000;
    c->tol = 1e-5;
}

/* ---- the objective ---- */

/* Chunks of PROBE_CHUNK rows are processed in waves of `wave` chunks: each wave's partials (one
 * [C, d] gradient per chunk, the logits of its rows, its rows standardized) are computed in
 * parallel, then added to the running sums in chunk order. Only one wave's buffers exist at a
 * time, so the memory no longer grows with n (ImageNet-1k with ResNet-50 features held 2503
 * partials of 8 MB, about 20 GB, plus 5 GB of logits), and since the double sums see the
 * partials in the same order whatever the wave, the result is the one of a single wave, bit
 * for bit, and does not depend on the thread count. */
typedef struct {
    const float *x;               /* [n, d] as given */
    const double *mean, *inv_std; /* rows standardized on the fly, (x - mean) * inv_std; NULL: as given */
    const int32_t *y;
    int n, d, C, n_chunks, wave;
    double l2;
    float *w;          /* [C, d] float copy of W for the GEMMs */
    float *logits;     /* [wave, PROBE_CHUNK, C] logits, then P - Y */
    float *xs;         /* [wave, PROBE_CHUNK, d] standardized rows (when mean is set) */
    float *gw_part;    /* [wave, C, d] per-chunk (P - Y)^T X */
    double *gb_part;   /* [wave, C] */
    double *loss_part; /* [wave] */
    int evals;
} Objective;

/* Bytes of one wave slot: a chunk's gradient partial, logits and standardized rows. */
static size_t wave_slot_bytes(int d, int C) {
    return ((size_t)C * d + (size_t)PROBE_CHUNK * C + (size_t)PROBE_CHUNK * d) * sizeof(float) +
           ((size_t)C + 1) * sizeof(double);
}

static size_t wave_bytes = PROBE_WAVE_BYTES;

void probe_set_wave_bytes(size_t bytes) { wave_bytes = bytes ? bytes : PROBE_WAVE_BYTES; }

/* Chunks per wave: as many as wave_bytes holds (at least one), at most all of them. A function
 * of the shape alone, so the memory does not depend on the machine either. */
static int probe_wave(int64_t n, int d, int C) {
    const int64_t n_chunks = (n + PROBE_CHUNK - 1) / PROBE_CHUNK;
    int64_t wave = (int64_t)(wave_bytes / wave_slot_bytes(d, C));
    if (wave < 1) wave = 1;
    return (int)(wave < n_chunks ? wave : n_chunks);
}

size_t probe_work_bytes(int64_t n, int d, int n_classes) {
    const size_t C = (size_t)n_classes, np = C * d + C;
    size_t b = (size_t)probe_wave(n, d, n_classes) * wave_slot_bytes(d, n_classes);
    b += C * d * sizeof(float);                              /* float W */
    b += (2 * (size_t)PROBE_MEMORY + 7) * np * sizeof(double); /* L-BFGS pairs, gradients, line search */
    b += np * sizeof(double);                                /* theta */
    b += 2 * (size_t)d * sizeof(double);                     /* feature means and scales */
    return b;
}

static void objective_init(Objective *ob, const float *x, const double *mean, const double *inv_std,
                           const int32_t *y, int n, int d, int C, double l2) {
    memset(ob, 0, sizeof *ob);
    ob->x = x, ob->mean = mean, ob->inv_std = inv_std, ob->y = y, ob->n = n, ob->d = d, ob->C = C, ob->l2 = l2;
    ob->n_chunks = (n + PROBE_CHUNK - 1) / PROBE_CHUNK;
    ob->wave = probe_wave(n, d, C);
    const size_t W = (size_t)ob->wave;
    ob->w = xmalloc((size_t)C * d * sizeof(float), "probe weights");
    ob->logits = xmalloc(W * PROBE_CHUNK * C * sizeof(float), "probe logits");
    ob->xs = mean ? xmalloc(W * PROBE_CHUNK * d * sizeof(float), "probe standardized rows") : NULL;
    ob->gw_part = xmalloc(W * C * d * sizeof(float), "probe partial gradients");
    ob->gb_part = xmalloc(W * C * sizeof(double), "probe partial gradients");
    ob->loss_part = xmalloc(W * sizeof(double), "probe partial losses");
}

static void objective_free(Objective *ob) {
    xfree(ob->w);
    xfree(ob->logits);
    xfree(ob->xs);
    xfree(ob->gw_part);
    xfree(ob->gb_part);
    xfree(ob->loss_part);
}

/* Rows r0..r0+rows of x, standardized into buf when mean is set (the same floats a standardized
 * copy of x would hold), else x itself. */
static const float *chunk_rows(const float *x, const double *mean, const double *inv_std, int d, int r0,
                               int rows, float *buf) {
    const float *xc = x + (size_t)r0 * d;
    if (!mean) return xc;
    for (int i = 0; i < rows; i++) {
        const float *xi = xc + (size_t)i * d;
        float *oi = buf + (size_t)i * d;
        for (int j = 0; j < d; j++) oi[j] = (float)((xi[j] - mean[j]) * inv_std[j]);
    }
    return buf;
}

/* Chunk ch's loss and partial gradients into wave slot k (its GEMMs run on the calling thread
 * inside the parallel region). */
static void chunk_partials(Objective *ob, int ch, int k, const double *b) {
    const int n = ob->n, d = ob->d, C = ob->C;
    const int r0 = ch * PROBE_CHUNK, rows = MIN(PROBE_CHUNK, n - r0);
    const float *xc = chunk_rows(ob->x, ob->mean, ob->inv_std, d, r0, rows,
                                 ob->xs ? ob->xs + (size_t)k * PROBE_CHUNK * d : NULL);
    float *L = ob->logits + (size_t)k * PROBE_CHUNK * C;
    double *gb = ob->gb_part + (size_t)k * C;
    sgemm(0, 1, rows, C, d, 1.0f, xc, d, ob->w, d, 0.0f, L, C);
    for (int c = 0; c < C; c++) gb[c] = 0;
    double loss = 0;
    for (int i = 0; i < rows; i++) {
        float *z = L + (size_t)i * C;
        const int yi = ob->y[r0 + i];
        const double zy = (double)z[yi] + b[yi];
        double m = -INFINITY;
        for (int c = 0; c < C; c++) m = fmax(m, (double)z[c] + b[c]);
        double se = 0;
        for (int c = 0; c < C; c++) {
            double ez = exp((double)z[c] + b[c] - m);
            se += ez;
            z[c] = (float)ez;
        }
        loss += m + log(se) - zy;
        for (int c = 0; c < C; c++) {
            double p = (double)z[c] / se - (c == yi);
            gb[c] += p;
            z[c] = (float)p;
        }
    }
    ob->loss_part[k] = loss;
    sgemm(1, 0, C, d, rows, 1.0f, L, C, xc, d, 0.0f, ob->gw_part + (size_t)k * C * d, d);
}

/* Loss and gradient at theta = [W | b]. grad holds the running sums over the chunks (in chunk
 * order) until the end, where the mean and the penalty are applied. */
static double objective_eval(Objective *ob, const double *theta, double *grad) {
    const int n = ob->n, d = ob->d, C = ob->C;
    const size_t nw = (size_t)C * d;
    const double *b = theta + nw;
    ob->evals++;
    for (size_t j = 0; j < nw; j++) ob->w[j] = (float)theta[j];
    for (size_t j = 0; j < nw + C; j++) grad[j] = 0;
    double loss = 0;
    const float *gw_part = ob->gw_part;
    for (int c0 = 0; c0 < ob->n_chunks; c0 += ob->wave) {
        const int nc = MIN(ob->wave, ob->n_chunks - c0);
#pragma omp parallel for schedule(dynamic, 1) if (nc > 1)
        for (int k = 0; k < nc; k++) chunk_partials(ob, c0 + k, k, b);
        for (int k = 0; k < nc; k++) loss += ob->loss_part[k];
#pragma omp parallel for schedule(static) if (nw * nc > 65536)
        for (long j = 0; j < (long)nw; j++) {
            double s = grad[j];
            for (int k = 0; k < nc; k++) s += gw_part[(size_t)k * nw + j];
            grad[j] = s;
        }
        for (int c = 0; c < C; c++) {
            double s = grad[nw + c];
            for (int k = 0; k < nc; k++) s += ob->gb_part[(size_t)k * C + c];
            grad[nw + c] = s;
        }
    }
    double ww = 0;
    for (size_t j = 0; j < nw; j++) ww += theta[j] * theta[j];
    const double inv_n = 1.0 / n, l2 = ob->l2;
#pragma omp parallel for schedule(static) if (nw > 65536)
    for (long j = 0; j < (long)nw; j++) grad[j] = grad[j] * inv_n + l2 * theta[j];
    for (int c = 0; c < C; c++) grad[nw + c] *= inv_n;
    return loss * inv_n + 0.5 * l2 * ww;
}

double probe_loss_grad_cpu(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad) {
    Objective ob;
    objective_init(&ob, x, NULL, NULL, y, n, d, n_classes, l2);
    double f = objective_eval(&ob, theta, grad);
    objective_free(&ob);
    return f;
}

double probe_loss_grad_ref(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad) {
    const int C = n_classes;
    const size_t nw = (size_t)C * d;
    const double *b = theta + nw;
    double *z = xmalloc((size_t)C * sizeof(double), "probe reference logits");
    double loss = 0, ww = 0;
    for (size_t j = 0; j < nw + C; j++) grad[j] = 0;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        double m = -INFINITY, se = 0;
        for (int c = 0; c < C; c++) {
            double s = b[c];
            for (int k = 0; k < d; k++) s += theta[(size_t)c * d + k] * xi[k];
            z[c] = s;
            m = fmax(m, s);
        }
        for (int c = 0; c < C; c++) se += exp(z[c] - m);
        const double lse = m + log(se);
        loss += lse - z[y[i]];
        for (int c = 0; c < C; c++) {
            double p = exp(z[c] - lse) - (c == y[i]);
            for (int k = 0; k < d; k++) grad[(size_t)c * d + k] += p * xi[k];
            grad[nw + c] += p;
        }
    }
    for (size_t j = 0; j < nw; j++) {
        ww += theta[j] * theta[j];
        grad[j] = grad[j] / n + l2 * theta[j];
    }
    for (int c = 0; c < C; c++) grad[nw + c] /= n;
    xfree(z);
    return loss / n + 0.5 * l2 * ww;
}

/* ---- L-BFGS ---- */

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to [lo, hi]; the
 * interval's middle when the cubic has no minimizer. */
static double cubic_min(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi) {
    double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
    double d2s = d1 * d1 - g1 * g2;
    if (d2s >= 0) {
        double d2 = sqrt(d2s), t;
        if (x1 <= x2)
            t = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2));
        else
            t = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
        if (isfinite(t)) return fmin(fmax(t, lo), hi);
    }
    return (lo + hi) / 2;
}

typedef struct {
    double t, f, gtd;
    double *g;
} LsPoint;

enum { LS_MAX_EVALS = 25 };
static const double LS_C1 = 1e-4, LS_C2 = 0.9, LS_DELTA = 0.1, LS_EPS_F = 1e-6;

/* Hager-Zhang's approximate Wolfe conditions: with the loss at most eps|f(0)| above f(0), a step
 * whose directional derivative satisfies (2 delta - 1) phi'(0) >= phi'(t) >= c2 phi'(0) is
 * accepted. Near the optimum the loss's changes fall below its float rounding (the logits are
 * float GEMMs) while the gradient stays accurate; this test relies on the gradient. */
static int approx_wolfe(double f0, double gtd0, double ft, double gtdt) {
    return ft <= f0 + LS_EPS_F * fabs(f0) && gtdt <= (2 * LS_DELTA - 1) * gtd0 && gtdt >= LS_C2 * gtd0;
}

/* Strong-Wolfe line search from x along p (f, g at x; gtd = g.p < 0), first trial step t.
 * Writes the accepted point to x_out, its gradient to g_out, and returns its loss; *t_out = 0
 * when no point with a lower loss was found. Three gradient buffers in work[0..3). */
static double line_search(Objective *ob, const double *x, const double *p, size_t np, double f,
                          const double *g, double gtd, double t, double *x_out, double *g_out,
                          double *t_out, double **work) {
    const double p_max = max_abs(p, np);
    int evals = 0;
#define LS_EVAL(pt)                                                  \
    do {                                                             \
        for (size_t i_ = 0; i_ < np; i_++) x_out[i_] = x[i_] + (pt).t * p[i_]; \
        (pt).f = objective_eval(ob, x_out, (pt).g);                  \
        (pt).gtd = dot((pt).g, p, np);                               \
        evals++;                                                     \
    } while (0)
    memcpy(work[0], g, np * sizeof(double));
    LsPoint prev = {0, f, gtd, work[0]}, cur = {t, 0, 0, work[1]};
    LsPoint br[2];
    int nbr = 0, done = 0;
    LS_EVAL(cur);
    for (;;) {
        if (approx_wolfe(f, gtd, cur.f, cur.gtd)) {
            br[0] = cur, nbr = 1, done = 1;
            break;
        }
        if (cur.f > f + LS_C1 * cur.t * gtd || (evals > 1 && cur.f >= prev.f)) {
            br[0] = prev, br[1] = cur, nbr = 2;
            break;
        }
        if (fabs(cur.gtd) <= -LS_C2 * gtd) {
            br[0] = cur, nbr = 1, done = 1;
            break;
        }
        if (cur.gtd >= 0) {
            br[0] = prev, br[1] = cur, nbr = 2;
            break;
        }
        if (evals >= LS_MAX_EVALS) { /* still descending: take the last point */
            br[0] = cur, nbr = 1, done = 1;
            break;
        }
        /* extrapolate */
        double t_new = cubic_min(prev.t, prev.f, prev.gtd, cur.t, cur.f, cur.gtd, cur.t + 0.01 * (cur.t - prev.t), cur.t * 10);
        double *freed = prev.g;
        prev = cur;
        cur.t = t_new, cur.g = freed;
        LS_EVAL(cur);
    }
    /* zoom: br[lo] has the lower loss and satisfies sufficient decrease */
    int lo = 0, hi = 1, insufficient = 0;
    if (nbr == 2 && br[1].f < br[0].f) lo = 1, hi = 0;
    while (!done && evals < LS_MAX_EVALS) {
        double a = fmin(br[0].t, br[1].t), bnd = fmax(br[0].t, br[1].t);
        if ((bnd - a) * p_max < 1e-12 * fmax(1.0, max_abs(x, np))) break;
        double tz = cubic_min(br[0].t, br[0].f, br[0].gtd, br[1].t, br[1].f, br[1].gtd, a, bnd);
        double eps = 0.1 * (bnd - a);
        if (fmin(bnd - tz, tz - a) < eps) { /* too close to an end: move inwards */
            if (insufficient || tz >= bnd || tz <= a) {
                tz = fabs(tz - bnd) < fabs(tz - a) ? bnd - eps : a + eps;
                insufficient = 0;
            } else {
                insufficient = 1;
            }
        } else {
            insufficient = 0;
        }
        double *freed = work[0];
        for (int i = 0; i < 3; i++)
            if (work[i] != br[0].g && work[i] != br[1].g) freed = work[i];
        LsPoint z = {tz, 0, 0, freed};
        LS_EVAL(z);
        if (approx_wolfe(f, gtd, z.f, z.gtd)) {
            br[0] = z, nbr = 1, done = 1;
            break;
        }
        if (z.f > f + LS_C1 * z.t * gtd || z.f >= br[lo].f) {
            br[hi] = z;
        } else {
            if (fabs(z.gtd) <= -LS_C2 * gtd)
                done = 1;
            else if (z.gtd * (br[hi].t - br[lo].t) >= 0)
                br[hi] = br[lo];
            br[lo] = z;
        }
        if (br[1].f < br[0].f)
            lo = 1, hi = 0;
        else if (br[0].f < br[1].f)
            lo = 0, hi = 1;
    }
#undef LS_EVAL
    const LsPoint *best = &br[nbr == 1 ? 0 : lo];
    if (!done && !(best->f < f)) {
        *t_out = 0;
        memcpy(x_out, x, np * sizeof(double));
        memcpy(g_out, g, np * sizeof(double));
        return f;
    }
    *t_out = best->t;
    for (size_t i = 0; i < np; i++) x_out[i] = x[i] + best->t * p[i];
    memcpy(g_out, best->g, np * sizeof(double));
    return best->f;
}

int probe_history_push(ProbeHistory *h, const double *x, const double *xn, const double *g, const double *gn) {
    const size_t np = h->np;
    /* s'y, s's, y'y from the differences, before anything is written: when the memory is full
     * the next slot holds the oldest live pair, which a rejected pair must not overwrite. */
    double sy = 0, ss = 0, yy = 0;
    for (size_t i = 0; i < np; i++) {
        const double si = xn[i] - x[i], yi = gn[i] - g[i];
        sy += si * yi, ss += si * si, yy += yi * yi;
    }
    if (!(sy > 0 && sy > 1e-10 * sqrt(ss * yy))) return 0;
    const int slot = (h->newest + 1) % PROBE_MEMORY;
    double *sv = h->S + (size_t)slot * np, *yv = h->Y + (size_t)slot * np;
    for (size_t i = 0; i < np; i++) sv[i] = xn[i] - x[i], yv[i] = gn[i] - g[i];
    h->rho[slot] = 1.0 / sy;
    h->newest = slot;
    if (h->hist < PROBE_MEMORY) h->hist++;
    return 1;
}

/* Minimizes the objective from theta (in place). */
static void lbfgs(Objective *ob, double *theta, const ProbeConfig *cfg, ProbeReport *rep) {
    const size_t np = (size_t)ob->C * ob->d + ob->C;
    const int M = PROBE_MEMORY;
    double *buf = xmalloc((2 * (size_t)M + 7) * np * sizeof(double), "probe L-BFGS memory");
    ProbeHistory h = {buf, buf + (size_t)M * np, {0}, np, 0, -1};
    double *S = h.S, *Y = h.Y, *rho = h.rho;
    double *g = Y + (size_t)M * np, *p = g + np, *xn = p + np, *gn = xn + np;
    double *work[3] = {gn + np, gn + 2 * np, gn + 3 * np};
    double alpha[PROBE_MEMORY];
    int it = 0;

    double f = objective_eval(ob, theta, g);
    for (;;) {
        if (max_abs(g, np) <= cfg->tol || it >= cfg->max_iter) break;
        /* two-loop recursion: p = -H g */
        for (size_t i = 0; i < np; i++) p[i] = -g[i];
        for (int j = 0; j < h.hist; j++) {
            int s = (h.newest - j + M) % M;
            alpha[s] = rho[s] * dot(S + (size_t)s * np, p, np);
            const double *ys = Y + (size_t)s * np;
            for (size_t i = 0; i < np; i++) p[i] -= alpha[s] * ys[i];
        }
        if (h.hist > 0) {
            const double *yn = Y + (size_t)h.newest * np;
            double gamma = 1.0 / (rho[h.newest] * dot(yn, yn, np));
            for (size_t i = 0; i < np; i++) p[i] *= gamma;
        }
        for (int j = h.hist - 1; j >= 0; j--) {
            int s = (h.newest - j + M) % M;
            double beta = rho[s] * dot(Y + (size_t)s * np, p, np);
            const double *ss = S + (size_t)s * np;
            for (size_t i = 0; i < np; i++) p[i] += (alpha[s] - beta) * ss[i];
        }
        double gtd = dot(g, p, np);
        if (!(gtd < 0)) { /* not a descent direction: forget the memory */
            h.hist = 0;
            for (size_t i = 0; i < np; i++) p[i] = -g[i];
            gtd = dot(g, p, np);
        }
        double t0 = 1.0;
        if (h.hist == 0) { /* steepest descent: a first step of length at most 1 (as PyTorch) */
            double l1 = 0;
            for (size_t i = 0; i < np; i++) l1 += fabs(g[i]);
            t0 = fmin(1.0, 1.0 / l1);
        }
        double t;
        double fn = line_search(ob, theta, p, np, f, g, gtd, t0, xn, gn, &t, work);
        if (t == 0) {
            if (h.hist == 0) break; /* no decrease even along -g: the loss's rounding floor */
            h.hist = 0;             /* retry from steepest descent */
            continue;
        }
        probe_history_push(&h, theta, xn, g, gn);
        memcpy(theta, xn, np * sizeof(double));
        memcpy(g, gn, np * sizeof(double));
        f = fn;
        it++;
    }
    rep->iterations = it;
    rep->final_loss = f;
    rep->grad_norm = max_abs(g, np);
    rep->converged = rep->grad_norm <= cfg->tol;
    xfree(buf);
}

/* ---- data preparation and prediction ---- */

static int check_labels(const int32_t *y, int n, int C, const char *what, Err *e) {
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return err_set(e, "probe: %s label %d at row %d is outside [0, %d)", what, (int)y[i], i, C);
    return 0;
}

/* Per-dimension mean and population std of x [n, d] in double (std 0 -> 1); -1 at a non-finite
 * feature. */
static int feature_stats(const float *x, int n, int d, double *mean, double *inv_std, Err *e) {
    double *var = inv_std;
    for (int j = 0; j < d; j++) mean[j] = 0, var[j] = 0;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        for (int j = 0; j < d; j++) mean[j] += xi[j];
    }
    for (int j = 0; j < d; j++) {
        if (!isfinite(mean[j])) return err_set(e, "probe: training feature %d is not finite (or overflows)", j);
        mean[j] /= n;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            double c = xi[j] - mean[j];
            var[j] += c * c;
        }
    }
    for (int j = 0; j < d; j++) {
        double s = sqrt(var[j] / n);
        if (!isfinite(s)) return err_set(e, "probe: training feature %d overflows", j);
        inv_std[j] = s > 0 ? 1.0 / s : 1.0;
    }
    return 0;
}

/* -1 at the first row whose standardized value is not finite. The fit and the scoring
 * standardize rows on the fly, chunk by chunk, rather than from a copy of x (as large as the
 * features themselves: 10 GB for ImageNet with ResNet-50 features). */
static int check_standardized(const float *x, int n, int d, const double *mean, const double *inv_std,
                              const char *what, Err *e) {
    int bad = -1;
#pragma omp parallel for schedule(static) if ((size_t)n * d > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        int ok = 1;
        for (int j = 0; j < d; j++) ok &= isfinite((float)((xi[j] - mean[j]) * inv_std[j])) != 0;
        if (!ok) {
#pragma omp critical(probe_bad)
            if (bad < 0 || i < bad) bad = i;
        }
    }
    if (bad >= 0) return err_set(e, "probe: %s feature row %d is not finite (or overflows)", what, bad);
    return 0;
}

/* Fraction of rows of x [n, d] (standardized on the fly) whose argmax logit (ties: lower class)
 * is y; and into *top5 (NULL: not wanted) the fraction whose y is among the five largest. */
static double accuracy(const float *x, const double *mean, const double *inv_std, const int32_t *y, int n,
                       int d, int C, const double *theta, double *top5) {
    const size_t nw = (size_t)C * d;
    const double *b = theta + nw;
    float *w = xmalloc(nw * sizeof(float), "probe weights");
    for (size_t j = 0; j < nw; j++) w[j] = (float)theta[j];
    const int n_chunks = (n + PROBE_CHUNK - 1) / PROBE_CHUNK;
    long correct = 0, in_top5 = 0;
#pragma omp parallel if (n_chunks > 1)
    {
        float *L = xmalloc((size_t)PROBE_CHUNK * C * sizeof(float), "probe logits");
        float *xs = xmalloc((size_t)PROBE_CHUNK * d * sizeof(float), "probe standardized rows");
        double *score = xmalloc((size_t)C * sizeof(double), "probe class scores");
#pragma omp for schedule(dynamic, 1) reduction(+ : correct, in_top5)
        for (int ch = 0; ch < n_chunks; ch++) {
            const int r0 = ch * PROBE_CHUNK, rows = MIN(PROBE_CHUNK, n - r0);
            const float *xc = chunk_rows(x, mean, inv_std, d, r0, rows, xs);
            sgemm(0, 1, rows, C, d, 1.0f, xc, d, w, d, 0.0f, L, C);
            for (int i = 0; i < rows; i++) {
                const float *z = L + (size_t)i * C;
                for (int c = 0; c < C; c++) score[c] = (double)z[c] + b[c];
                const int rank = class_rank(score, C, y[r0 + i]);
                correct += rank == 0;
                in_top5 += rank < 5;
            }
        }
        xfree(score);
        xfree(xs);
        xfree(L);
    }
    xfree(w);
    if (top5) *top5 = (double)in_top5 / n;
    return (double)correct / n;
}

/* Checks the input (test_labels too, when given, before the fit's cost), standardizes by the
 * training set and fits (cfg NULL: the defaults): theta [n_classes x d | n_classes]
 * on standardized features, with mean and inv_std (malloc'ed, the caller frees all three).
 * 0, or -1 with e set (nothing to free). */
static int fit(const float *train, const int32_t *train_labels, int n_train, const int32_t *test_labels, int n_test,
               int d, int n_classes, const ProbeConfig *cfg, ProbeReport *rep, double **theta, double **mean,
               double **inv_std, Err *e) {
    ProbeConfig def;
    if (!cfg) probe_config_default(&def), cfg = &def;
    memset(rep, 0, sizeof *rep);
    if (n_train < 1 || n_test < 1) return err_set(e, "probe: empty %s set", n_train < 1 ? "training" : "test");
    if (d < 1) return err_set(e, "probe: feature dimension %d must be at least 1", d);
    if (n_classes < 2) return err_set(e, "probe: %d classes, need at least 2", n_classes);
    if (!(cfg->l2 >= 0) || !isfinite(cfg->l2)) return err_set(e, "probe: l2 = %g must be >= 0 and finite", cfg->l2);
    if (cfg->max_iter < 0) return err_set(e, "probe: max_iter = %d must be >= 0", cfg->max_iter);
    if (!(cfg->tol >= 0)) return err_set(e, "probe: tol = %g must be >= 0", cfg->tol);
    if (check_labels(train_labels, n_train, n_classes, "training", e) ||
        (test_labels && check_labels(test_labels, n_test, n_classes, "test", e)))
        return -1;
    *mean = xmalloc((size_t)d * sizeof(double), "probe feature means");
    *inv_std = xmalloc((size_t)d * sizeof(double), "probe feature scales");
    if (feature_stats(train, n_train, d, *mean, *inv_std, e) != 0 ||
        check_standardized(train, n_train, d, *mean, *inv_std, "training", e) != 0) {
        xfree(*mean), xfree(*inv_std);
        return -1;
    }
    const size_t np = (size_t)n_classes * d + n_classes;
    *theta = xcalloc(np, sizeof(double), "probe parameters");
    Objective ob;
    objective_init(&ob, train, *mean, *inv_std, train_labels, n_train, d, n_classes, cfg->l2);
    lbfgs(&ob, *theta, cfg, rep);
    rep->evaluations = ob.evals;
    objective_free(&ob);
    rep->train_top1 = accuracy(train, *mean, *inv_std, train_labels, n_train, d, n_classes, *theta, NULL);
    return 0;
}

double probe_top1(const float *train, const int32_t *train_labels, int n_train, const float *test,
                  const int32_t *test_labels, int n_test, int d, int n_classes,
                  const ProbeConfig *cfg, ProbeReport *rep, Err *e) {
    ProbeReport rep_local;
    if (!rep) rep = &rep_local;
    double *theta, *mean, *inv_std;
    if (fit(train, train_labels, n_train, test_labels, n_test, d, n_classes, cfg, rep, &theta, &mean, &inv_std, e))
        return -1;
    double acc = -1;
    if (check_standardized(test, n_test, d, mean, inv_std, "test", e) == 0)
        acc = accuracy(test, mean, inv_std, test_labels, n_test, d, n_classes, theta, &rep->test_top5);
    xfree(theta), xfree(inv_std), xfree(mean);
    return acc;
}

int probe_fit(const float *train, const int32_t *train_labels, int n_train, int d, int n_classes,
              const ProbeConfig *cfg, ProbeReport *rep, float *weight, float *bias, Err *e) {
    ProbeReport rep_local;
    if (!rep) rep = &rep_local;
    double *theta, *mean, *inv_std;
    if (fit(train, train_labels, n_train, NULL, 1, d, n_classes, cfg, rep, &theta, &mean, &inv_std, e)) return -1;
    /* logits = W ((x - mean) * inv_std) + b = (W inv_std) x + (b - sum_j W_j mean_j inv_std_j) */
    for (int c = 0; c < n_classes; c++) {
        const double *w = theta + (size_t)c * d;
        double shift = 0;
        for (int j = 0; j < d; j++) {
            weight[(size_t)c * d + j] = (float)(w[j] * inv_std[j]);
            shift += w[j] * mean[j] * inv_std[j];
        }
        bias[c] = (float)(theta[(size_t)n_classes * d + c] - shift);
    }
    xfree(theta), xfree(inv_std), xfree(mean);
    return 0;
}
