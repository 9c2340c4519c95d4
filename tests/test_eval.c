/* Evaluation: the weighted kNN classifier and the linear probe (L-BFGS). */
#include "backend/gemm.h"
#include "core/threads.h"
#include "data/data_options.h"
#include "data/image.h"
#include "eval/features.h"
#include "eval/knn.h"
#include "eval/probe.h"
#include "eval/subset.h"
#include "harness.h"
#include "image_encode.h"

/* ---- kNN ---- */

typedef struct {
    double s;
    int i;
} SimIdx;

static int by_sim_desc(const void *a, const void *b) {
    const SimIdx *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i - y->i;
}

static void normalize_double(const float *x, int n, int d, double *out) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)x[i * d + j] * x[i * d + j];
        double inv = ss > 0 ? 1 / sqrt(ss) : 0;
        for (int j = 0; j < d; j++) out[i * d + j] = x[i * d + j] * inv;
    }
}

/* Brute force in double: every similarity, a full sort (ties: lower index), exp(s/T) votes. */
static void knn_brute(const float *bank, const int32_t *bl, int nb, const float *q, int nq, int d,
                      int C, int k, double T, int32_t *pred, const int32_t *ql, int32_t *rank) {
    double *B = malloc(sizeof(double) * nb * d), *Q = malloc(sizeof(double) * nq * d);
    SimIdx *s = malloc(sizeof(SimIdx) * nb);
    double *score = malloc(sizeof(double) * C);
    normalize_double(bank, nb, d, B);
    normalize_double(q, nq, d, Q);
    if (k > nb) k = nb;
    for (int i = 0; i < nq; i++) {
        for (int j = 0; j < nb; j++) {
            double dot = 0;
            for (int t = 0; t < d; t++) dot += Q[i * d + t] * B[j * d + t];
            s[j].s = dot, s[j].i = j;
        }
        qsort(s, nb, sizeof *s, by_sim_desc);
        for (int c = 0; c < C; c++) score[c] = 0;
        for (int j = 0; j < k; j++) score[bl[s[j].i]] += exp(s[j].s / T);
        int best = 0;
        for (int c = 1; c < C; c++)
            if (score[c] > score[best]) best = c;
        pred[i] = best;
        /* the label's rank: classes with more votes, or as many at a lower index */
        rank[i] = 0;
        for (int c = 0; c < C; c++) rank[i] += score[c] > score[ql[i]] || (score[c] == score[ql[i]] && c < ql[i]);
    }
    free(B), free(Q), free(s), free(score);
}

static void random_labels(TestRng *r, int32_t *y, int n, int C) {
    for (int i = 0; i < n; i++) y[i] = (int32_t)(rng_uniform(r) * C) % C;
}

/* One comparison: predictions identical to the brute force, accuracy the same fraction. */
static void knn_case(int nb, int nq, int d, int C, int k, float T, uint64_t seed, int zero_rows) {
    TestRng r = {seed};
    float *bank = malloc(sizeof(float) * nb * d), *q = malloc(sizeof(float) * nq * d);
    int32_t *bl = malloc(sizeof(int32_t) * nb), *ql = malloc(sizeof(int32_t) * nq);
    int32_t *p1 = malloc(sizeof(int32_t) * nq), *p2 = malloc(sizeof(int32_t) * nq), *rk = malloc(sizeof(int32_t) * nq);
    fill_normal(&r, bank, (size_t)nb * d, 1);
    fill_normal(&r, q, (size_t)nq * d, 1);
    random_labels(&r, bl, nb, C);
    random_labels(&r, ql, nq, C);
    if (zero_rows) { /* a zero query ties with every bank item: the lowest indices win */
        memset(q + 3 * d, 0, sizeof(float) * d);
        memset(bank + 7 * d, 0, sizeof(float) * d);
    }
    Err e = {{0}};
    CHECK(knn_predict(bank, bl, nb, q, nq, d, C, k, T, p1, &e) == 0, "%s", e.msg);
    knn_brute(bank, bl, nb, q, nq, d, C, k, T, p2, ql, rk);
    int same = 0, correct = 0, top3 = 0;
    for (int i = 0; i < nq; i++) same += p1[i] == p2[i], correct += p2[i] == ql[i], top3 += rk[i] < 3;
    CHECK(same == nq, "nb %d nq %d k %d: %d of %d predictions match the brute force", nb, nq, k, same, nq);
    double acc = knn_top1(bank, bl, nb, q, ql, nq, d, C, k, T, &e);
    CHECK(acc == (double)correct / nq, "k %d: accuracy %g vs brute force %g", k, acc, (double)correct / nq);
    double acc3 = -1, acc1 = knn_accuracy(bank, bl, nb, q, ql, nq, d, C, k, T, 3, &acc3, &e);
    CHECK(acc1 == acc && acc3 == (double)top3 / nq && acc3 >= acc1, "k %d: top-3 %g vs brute force %g", k, acc3,
          (double)top3 / nq);
    free(bank), free(q), free(bl), free(ql), free(p1), free(p2), free(rk);
}

static void test_knn_matches_brute_force(void) {
    knn_case(300, 50, 16, 5, 20, 0.1f, 11, 1);
    knn_case(300, 50, 16, 5, 1, 0.1f, 12, 1);
    knn_case(300, 50, 16, 5, 500, 0.1f, 13, 1); /* k > n_bank: every item votes */
    knn_case(300, 50, 16, 5, 200, 0.5f, 14, 0);
    /* several query blocks and bank tiles */
    knn_case(2 * KNN_BANK_TILE + 123, 2 * KNN_QUERY_BLOCK + 17, 8, 7, 50, 0.1f, 15, 1);
}

/* Gaussian clusters around random unit-scale centers; labels = cluster. */
static void clusters(TestRng *r, float *x, int32_t *y, int n, int d, int C, const float *centers, float noise) {
    for (int i = 0; i < n; i++) {
        y[i] = i % C;
        for (int j = 0; j < d; j++) x[i * d + j] = centers[y[i] * d + j] + noise * rng_normal(r);
    }
}

static void test_knn_clusters(void) {
    enum { NB = 1000, NQ = 300, D = 32, C = 10 };
    TestRng r = {21};
    static float centers[C * D], bank[NB * D], q[NQ * D];
    static int32_t bl[NB], ql[NQ], pa[NQ], pb[NQ];
    fill_normal(&r, centers, C * D, 1);
    clusters(&r, bank, bl, NB, D, C, centers, 0.1f);
    clusters(&r, q, ql, NQ, D, C, centers, 0.1f);
    Err e;
    double acc = knn_top1(bank, bl, NB, q, ql, NQ, D, C, KNN_DEFAULT_K, KNN_DEFAULT_T, &e);
    CHECK(acc == 1.0, "separated clusters: accuracy %g", acc);
    /* shuffled bank labels: chance (1/10) */
    for (int i = NB - 1; i > 0; i--) {
        int j = (int)(rng_uniform(&r) * (i + 1));
        int32_t t = bl[i];
        bl[i] = bl[j], bl[j] = t;
    }
    acc = knn_top1(bank, bl, NB, q, ql, NQ, D, C, KNN_DEFAULT_K, KNN_DEFAULT_T, &e);
    CHECK(acc >= 0 && acc < 0.25, "shuffled labels: accuracy %g, expected near 0.1", acc);
    /* thread count: random (not clustered) data, several query blocks, exact equality */
    fill_normal(&r, bank, NB * D, 1);
    fill_normal(&r, q, NQ * D, 1);
    threads_set(1);
    CHECK(knn_predict(bank, bl, NB, q, NQ, D, C, 20, 0.1f, pa, &e) == 0, "%s", e.msg);
    int same_all = 1;
    for (int t = 2; t <= 4; t++) {
        threads_set(t);
        CHECK(knn_predict(bank, bl, NB, q, NQ, D, C, 20, 0.1f, pb, &e) == 0, "%s", e.msg);
        same_all &= memcmp(pa, pb, sizeof pa) == 0;
    }
    threads_set(0);
    CHECK(same_all, "predictions differ between 1 and 2-4 threads");
}

/* One query block and exact ties (every bank row twice, with two labels; k = 1): the same
 * predictions at any thread count, and against a double brute force the first copy wins
 * wherever the GEMM rounded both copies alike (asserted for most queries: where the copies sit in
 * GEMM tiles of different shapes their float similarities may differ). */
static void test_knn_one_block_ties(void) {
    enum { NB = 2000, NQ = 100, D = 64, C = 4 };
    TestRng r = {5};
    static float bank[NB * D], q[NQ * D];
    static int32_t bl[NB], pred[NQ];
    for (int i = 0; i < NB; i += 2) {
        fill_normal(&r, bank + (size_t)i * D, D, 1);
        memcpy(bank + (size_t)(i + 1) * D, bank + (size_t)i * D, D * sizeof(float));
        bl[i] = (i / 2) % C, bl[i + 1] = (bl[i] + 1) % C;
    }
    fill_normal(&r, q, NQ * D, 1);
    int want[NQ];
    for (int j = 0; j < NQ; j++) { /* the nearest pair by cosine in double: its first copy's label */
        double best = -2;
        for (int i = 0; i < NB; i += 2) {
            double dot = 0, nb = 0, nq = 0;
            for (int t = 0; t < D; t++) {
                dot += (double)q[j * D + t] * bank[(size_t)i * D + t];
                nb += (double)bank[(size_t)i * D + t] * bank[(size_t)i * D + t];
                nq += (double)q[j * D + t] * q[j * D + t];
            }
            const double c = dot / sqrt(nb * nq);
            if (c > best) best = c, want[j] = bl[i];
        }
    }
    Err e;
    static int32_t first[NQ];
    for (int t = 1; t <= 4; t++) {
        threads_set(t);
        CHECK(knn_predict(bank, bl, NB, q, NQ, D, C, 1, 0.1f, pred, &e) == 0, "%s", e.msg);
        if (t == 1) memcpy(first, pred, sizeof first);
        CHECK(memcmp(first, pred, sizeof first) == 0, "%d threads predict otherwise than 1", t);
    }
    threads_set(0);
    int right = 0;
    for (int j = 0; j < NQ; j++) right += first[j] == want[j];
    CHECK(right >= NQ * 9 / 10, "%d of %d queries took the first copy of their nearest row", right, NQ);
}

static void test_knn_bad_input(void) {
    float bank[4 * 2] = {1, 0, 0, 1, 1, 1, -1, 0}, q[2 * 2] = {1, 0.1f, 0, 1};
    int32_t bl[4] = {0, 1, 1, 0}, ql[2] = {0, 1}, pred[2];
    Err e;
    CHECK(knn_top1(bank, bl, 4, q, ql, 2, 2, 2, 3, 0.1f, &e) == 1.0, "tiny case works");
    e.msg[0] = 0;
    CHECK(knn_top1(bank, bl, 4, q, ql, 2, 2, 1, 3, 0.1f, &e) < 0 && strstr(e.msg, "classes"), "1 class: '%s'", e.msg);
    bl[2] = -1;
    CHECK(knn_top1(bank, bl, 4, q, ql, 2, 2, 2, 3, 0.1f, &e) < 0 && strstr(e.msg, "bank label -1"), "'%s'", e.msg);
    bl[2] = 1, ql[1] = -3;
    CHECK(knn_top1(bank, bl, 4, q, ql, 2, 2, 2, 3, 0.1f, &e) < 0 && strstr(e.msg, "query label -3"), "'%s'", e.msg);
    ql[1] = 2;
    CHECK(knn_top1(bank, bl, 4, q, ql, 2, 2, 2, 3, 0.1f, &e) < 0 && strstr(e.msg, "query label 2"), "'%s'", e.msg);
    ql[1] = 1;
    CHECK(knn_predict(bank, bl, 4, q, 2, 2, 2, 0, 0.1f, pred, &e) < 0 && strstr(e.msg, "k = 0"), "'%s'", e.msg);
    CHECK(knn_predict(bank, bl, 4, q, 2, 2, 2, 3, 0.0f, pred, &e) < 0 && strstr(e.msg, "temperature"), "'%s'", e.msg);
    CHECK(knn_predict(bank, bl, 0, q, 2, 2, 2, 3, 0.1f, pred, &e) < 0 && strstr(e.msg, "empty bank"), "'%s'", e.msg);
    q[3] = NAN;
    CHECK(knn_predict(bank, bl, 4, q, 2, 2, 2, 3, 0.1f, pred, &e) < 0 && strstr(e.msg, "query feature row 1"), "'%s'", e.msg);
}

/* ---- linear probe ---- */

static double rel_err_d(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_probe_gradient(void) {
    /* finite differences of the double reference on a tiny problem */
    enum { N = 7, D = 3, C = 4, P = C * D + C };
    TestRng r = {31};
    float x[N * D];
    int32_t y[N] = {0, 1, 2, 3, 1, 1, 0};
    double th[P], g[P], fd[P], tmp[P];
    fill_normal(&r, x, N * D, 1);
    for (int i = 0; i < P; i++) th[i] = 0.7 * rng_normal(&r);
    const double l2 = 0.1, h = 1e-6;
    probe_loss_grad_ref(x, y, N, D, C, l2, th, g);
    for (int i = 0; i < P; i++) {
        double t = th[i];
        th[i] = t + h;
        double fp = probe_loss_grad_ref(x, y, N, D, C, l2, th, tmp);
        th[i] = t - h;
        double fm = probe_loss_grad_ref(x, y, N, D, C, l2, th, tmp);
        th[i] = t;
        fd[i] = (fp - fm) / (2 * h);
    }
    double err = rel_err_d(g, fd, P);
    CHECK(err < 1e-4, "gradient vs finite differences: relative error %.3e", err);

    /* the sgemm path against the reference, several chunks */
    enum { N2 = 2 * PROBE_CHUNK + 77, D2 = 20, C2 = 5, P2 = C2 * D2 + C2 };
    static float x2[N2 * D2];
    static int32_t y2[N2];
    double th2[P2], g1[P2], g2[P2];
    fill_normal(&r, x2, N2 * D2, 1);
    random_labels(&r, y2, N2, C2);
    for (int i = 0; i < P2; i++) th2[i] = 0.3 * rng_normal(&r);
    double f1 = probe_loss_grad_cpu(x2, y2, N2, D2, C2, 1e-3, th2, g1);
    double f2 = probe_loss_grad_ref(x2, y2, N2, D2, C2, 1e-3, th2, g2);
    CHECK(fabs(f1 - f2) <= 1e-6 * fabs(f2), "loss %.12g vs reference %.12g", f1, f2);
    err = rel_err_d(g1, g2, P2);
    CHECK(err < 1e-5, "gradient vs reference: relative error %.3e", err);
}

static void test_probe_separable(void) {
    enum { NTR = 400, NTE = 200, D = 16, C = 4 };
    TestRng r = {41};
    static float centers[C * D], xtr[NTR * D], xte[NTE * D];
    static int32_t ytr[NTR], yte[NTE];
    fill_normal(&r, centers, C * D, 3);
    clusters(&r, xtr, ytr, NTR, D, C, centers, 0.5f);
    clusters(&r, xte, yte, NTE, D, C, centers, 0.5f);
    for (int i = 0; i < NTR * D; i++) xtr[i] = xtr[i] * 10 + 100; /* standardization undoes it */
    for (int i = 0; i < NTE * D; i++) xte[i] = xte[i] * 10 + 100;
    ProbeReport rep;
    Err e;
    double acc = probe_top1(xtr, ytr, NTR, xte, yte, NTE, D, C, NULL, &rep, &e);
    CHECK(acc == 1.0, "test accuracy %g (%s)", acc, acc < 0 ? e.msg : "");
    CHECK(rep.train_top1 == 1.0, "train accuracy %g", rep.train_top1);
    CHECK(rep.test_top5 == 1.0, "top-5 of 4 classes: %g", rep.test_top5);
    CHECK(rep.converged && rep.grad_norm <= 1e-5 /* the default tolerance */, "converged %d after %d iterations, max|g| %.3e", rep.converged,
          rep.iterations, rep.grad_norm);
}

/* The rank of a label among the classes: larger scores first, ties to the lower class (the
 * argmax's rule); and the probe's top-5 on labels it cannot learn lies between top-1 and 1. */
static void test_class_rank_and_probe_top5(void) {
    const double s[5] = {0.5, 2.0, 0.5, 1.0, 2.0};
    CHECK(class_rank(s, 5, 1) == 0 && class_rank(s, 5, 4) == 1 && class_rank(s, 5, 3) == 2 &&
              class_rank(s, 5, 0) == 3 && class_rank(s, 5, 2) == 4,
          "ranks 0..4");
    enum { N = 300, D = 8, C = 12 };
    TestRng r = {43};
    static float x[N * D];
    static int32_t y[N];
    fill_normal(&r, x, N * D, 1);
    random_labels(&r, y, N, C);
    ProbeConfig pc;
    probe_config_default(&pc);
    pc.max_iter = 50;
    ProbeReport rep;
    Err e;
    const double acc = probe_top1(x, y, N / 2, x + (N / 2) * D, y + N / 2, N / 2, D, C, &pc, &rep, &e);
    CHECK(acc >= 0 && rep.test_top5 >= acc && rep.test_top5 < 1 && rep.test_top5 > 5.0 / C / 2,
          "noise: top-1 %g <= top-5 %g < 1", acc, rep.test_top5);
}

/* --label-fraction's subset: round(f x count) of each class, ascending, a function of the seed;
 * a fraction outside (0, 1] or one that leaves a class empty is refused, naming it. */
static void test_label_subset(void) {
    enum { N = 1000, C = 4 };
    static int32_t y[N], a[N], b[N], c[N];
    for (int i = 0; i < N; i++) y[i] = i % 10 < 7 ? 0 : 1 + i % 3; /* class 0: 700, the others 100 */
    char *names[C] = {"plane", "car", "bird", "cat"};
    Err e;
    const int na = label_subset(y, N, C, 0.1, 7, names, a, &e), nb = label_subset(y, N, C, 0.1, 7, names, b, &e),
              nc = label_subset(y, N, C, 0.1, 8, names, c, &e);
    int per[C] = {0}, ascending = 1;
    for (int i = 0; i < na; i++) per[y[a[i]]]++, ascending &= i == 0 || a[i] > a[i - 1];
    CHECK(na == 100 && per[0] == 70 && per[1] == 10 && per[2] == 10 && per[3] == 10 && ascending,
          "10%% of each class, ascending: %d (%d %d %d %d)", na, per[0], per[1], per[2], per[3]);
    CHECK(nb == na && memcmp(a, b, sizeof(int32_t) * na) == 0, "the same seed, the same subset");
    CHECK(nc == na && memcmp(a, c, sizeof(int32_t) * na) != 0, "another seed, another subset");
    CHECK(label_subset(y, N, C, 1.0, 7, names, a, &e) == N, "all of them at 1");
    CHECK(label_subset(y, N, C, 0.004, 7, names, a, &e) < 0 && strstr(e.msg, "'car'") && strstr(e.msg, "0.005"),
          "0.4%% leaves a 100-image class empty: %s", e.msg);
    CHECK(label_subset(y, N, C, 0, 7, names, a, &e) < 0 && strstr(e.msg, "(0, 1]"), "0: %s", e.msg);
    CHECK(label_subset(y, N, C, 1.5, 7, NULL, a, &e) < 0, "1.5 refused");
}

static double meta_num(const Safetensors *st, const char *key) {
    const char *v = st_meta(st, key);
    if (!v) {
        printf("FATAL fixture %s: no metadata %s\n", st->path, key);
        exit(2);
    }
    return strtod(v, NULL);
}

static int32_t *labels_of(const Safetensors *st, const char *name, int *n) {
    int64_t shape[4];
    float *f = fx_get(st, name, shape, NULL);
    int32_t *y = malloc(sizeof(int32_t) * shape[0]);
    for (int64_t i = 0; i < shape[0]; i++) y[i] = (int32_t)f[i];
    *n = (int)shape[0];
    xfree(f);
    return y;
}

/* torch.optim.LBFGS (strong Wolfe, float64, to a gradient of ~1e-10) on the same data: the same
 * optimum (the problem is strictly convex in W; b up to a constant, which the loss ignores). */
static void test_probe_matches_pytorch(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/eval_probe.safetensors", fixture_dir());
    Safetensors st;
    Err e;
    if (st_open(&st, path, &e) != 0) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    const char *cases[] = {"a", "b"};
    for (int c = 0; c < 2; c++) {
        char k[64];
        int64_t shape[4];
        int ntr, nte;
        snprintf(k, sizeof k, "%s.train_x", cases[c]);
        float *xtr = fx_get(&st, k, shape, NULL);
        const int d = (int)shape[1];
        snprintf(k, sizeof k, "%s.test_x", cases[c]);
        float *xte = fx_get(&st, k, NULL, NULL);
        snprintf(k, sizeof k, "%s.train_y", cases[c]);
        int32_t *ytr = labels_of(&st, k, &ntr);
        snprintf(k, sizeof k, "%s.test_y", cases[c]);
        int32_t *yte = labels_of(&st, k, &nte);
        ProbeConfig cfg;
        probe_config_default(&cfg);
        snprintf(k, sizeof k, "%s.l2", cases[c]);
        cfg.l2 = meta_num(&st, k);
        cfg.tol = 1e-6; /* tighter than the default, to compare with PyTorch closely */
        snprintf(k, sizeof k, "%s.classes", cases[c]);
        const int C = (int)meta_num(&st, k);
        ProbeReport rep;
        double acc = probe_top1(xtr, ytr, ntr, xte, yte, nte, d, C, &cfg, &rep, &e);
        snprintf(k, sizeof k, "%s.loss", cases[c]);
        const double loss = meta_num(&st, k);
        snprintf(k, sizeof k, "%s.test_top1", cases[c]);
        const double te = meta_num(&st, k);
        snprintf(k, sizeof k, "%s.train_top1", cases[c]);
        const double tr = meta_num(&st, k);
        CHECK(rep.converged, "case %s: not converged, max|g| %.3e after %d iterations", cases[c], rep.grad_norm, rep.iterations);
        CHECK(fabs(rep.final_loss - loss) <= 1e-5 * loss, "case %s: loss %.10g vs PyTorch %.10g", cases[c], rep.final_loss, loss);
        CHECK(fabs(acc - te) < 1e-12 && fabs(rep.train_top1 - tr) < 1e-12, "case %s: top-1 test %g train %g vs PyTorch %g %g",
              cases[c], acc, rep.train_top1, te, tr);
        xfree(xtr), xfree(xte), free(ytr), free(yte);
    }
    st_close(&st);
}

static void test_probe_threads(void) {
    enum { NTR = 1500, NTE = 300, D = 24, C = 6 };
    TestRng r = {51};
    static float centers[C * D], xtr[NTR * D], xte[NTE * D];
    static int32_t ytr[NTR], yte[NTE];
    fill_normal(&r, centers, C * D, 0.6f);
    clusters(&r, xtr, ytr, NTR, D, C, centers, 1.0f);
    clusters(&r, xte, yte, NTE, D, C, centers, 1.0f);
    ProbeReport r1, r2;
    Err e;
    threads_set(1);
    double a1 = probe_top1(xtr, ytr, NTR, xte, yte, NTE, D, C, NULL, &r1, &e);
    threads_set(3);
    double a2 = probe_top1(xtr, ytr, NTR, xte, yte, NTE, D, C, NULL, &r2, &e);
    threads_set(0);
    CHECK(a1 > 0.5 && r1.converged, "accuracy %g, converged %d (max|g| %.3e)", a1, r1.converged, r1.grad_norm);
    CHECK(a1 == a2 && r1.final_loss == r2.final_loss && r1.iterations == r2.iterations,
          "1 thread: acc %g loss %.17g it %d; 3 threads: acc %g loss %.17g it %d", a1, r1.final_loss, r1.iterations, a2,
          r2.final_loss, r2.iterations);
}

static void test_probe_bad_input(void) {
    float x[4 * 2] = {0, 1, 1, 0, 2, 2, -1, 0};
    int32_t y[4] = {0, 1, 1, 0};
    Err e;
    ProbeConfig cfg;
    probe_config_default(&cfg);
    CHECK(cfg.l2 == 1e-4 && cfg.max_iter == 3000 && cfg.tol == 1e-5, "defaults");
    CHECK(probe_top1(x, y, 4, x, y, 4, 2, 1, NULL, NULL, &e) < 0 && strstr(e.msg, "1 classes"), "'%s'", e.msg);
    y[2] = -1;
    CHECK(probe_top1(x, y, 4, x, y, 4, 2, 2, NULL, NULL, &e) < 0 && strstr(e.msg, "training label -1 at row 2"), "'%s'", e.msg);
    int32_t yt[4] = {0, 1, 5, 0};
    y[2] = 1;
    CHECK(probe_top1(x, y, 4, x, yt, 4, 2, 2, NULL, NULL, &e) < 0 && strstr(e.msg, "test label 5"), "'%s'", e.msg);
    CHECK(probe_top1(x, y, 0, x, y, 4, 2, 2, NULL, NULL, &e) < 0 && strstr(e.msg, "empty"), "'%s'", e.msg);
    cfg.l2 = -1;
    CHECK(probe_top1(x, y, 4, x, y, 4, 2, 2, &cfg, NULL, &e) < 0 && strstr(e.msg, "l2"), "'%s'", e.msg);
    x[5] = INFINITY;
    CHECK(probe_top1(x, y, 4, x, y, 4, 2, 2, NULL, NULL, &e) < 0 && strstr(e.msg, "not finite"), "'%s'", e.msg);
    x[5] = 2;
    ProbeReport rep;
    double acc = probe_top1(x, y, 4, x, y, 4, 2, 2, NULL, &rep, &e);
    CHECK(acc >= 0 && acc <= 1, "tiny probe works (%g)", acc);
}


/* The L-BFGS memory full (PROBE_MEMORY pairs), then a pair with s'y < 0: rejected, and every
 * live pair, rho and the ring's position unchanged. (It used to be written into the next slot,
 * the oldest live pair, before the test, which kept the old rho beside the new vectors.) Then a
 * good pair: kept, in that slot. */
static void test_probe_history_rejects_bad_pair(void) {
    enum { NP = 6, M = PROBE_MEMORY };
    static double S[M * NP], Y[M * NP], S0[M * NP], Y0[M * NP];
    ProbeHistory h = {S, Y, {0}, NP, 0, -1};
    double x[NP] = {0}, xn[NP], g[NP] = {0}, gn[NP];
    TestRng r = {61};
    for (int k = 0; k < M + 3; k++) { /* wraps around: newest is not the last slot */
        for (int i = 0; i < NP; i++) xn[i] = rng_uniform(&r) + 0.1, gn[i] = xn[i] * (1 + k);
        CHECK(probe_history_push(&h, x, xn, g, gn) == 1, "good pair %d rejected", k);
    }
    CHECK(h.hist == M && h.newest == (M + 2) % M, "hist %d newest %d", h.hist, h.newest);
    memcpy(S0, S, sizeof S), memcpy(Y0, Y, sizeof Y);
    double rho0[M];
    memcpy(rho0, h.rho, sizeof rho0);
    for (int i = 0; i < NP; i++) xn[i] = 1, gn[i] = -1; /* s'y < 0 */
    CHECK(probe_history_push(&h, x, xn, g, gn) == 0, "a pair with s'y < 0 was kept");
    CHECK(memcmp(S, S0, sizeof S) == 0 && memcmp(Y, Y0, sizeof Y) == 0, "a rejected pair changed the stored pairs");
    CHECK(memcmp(h.rho, rho0, sizeof rho0) == 0 && h.hist == M && h.newest == (M + 2) % M, "a rejected pair moved the ring");
    /* s'y > 0 but below 1e-10 |s||y| (nearly orthogonal): rejected as well */
    for (int i = 0; i < NP; i++) xn[i] = i == 0, gn[i] = i == 1 ? 1 : i == 0 ? 1e-12 : 0;
    CHECK(probe_history_push(&h, x, xn, g, gn) == 0 && memcmp(S, S0, sizeof S) == 0, "a nearly orthogonal pair was kept");
    for (int i = 0; i < NP; i++) xn[i] = 2, gn[i] = 3;
    CHECK(probe_history_push(&h, x, xn, g, gn) == 1, "good pair after a rejection");
    const int slot = (M + 3) % M;
    CHECK(h.newest == slot && S[slot * NP] == 2 && Y[slot * NP] == 3 && fabs(h.rho[slot] - 1.0 / (NP * 6)) < 1e-15,
          "newest %d, s %g y %g rho %g", h.newest, S[slot * NP], Y[slot * NP], h.rho[slot]);
}

/* The objective as it was before the waves: one partial per chunk for the whole set, added in
 * chunk order (a copy of the previous algorithm, to compare with). */
static double loss_grad_all_partials(const float *x, const int32_t *y, int n, int d, int C, double l2,
                                     const double *theta, double *grad) {
    const size_t nw = (size_t)C * d;
    const int n_chunks = (n + PROBE_CHUNK - 1) / PROBE_CHUNK;
    const double *b = theta + nw;
    float *w = malloc(sizeof(float) * nw), *logits = malloc(sizeof(float) * n * C);
    float *gw_part = malloc(sizeof(float) * n_chunks * nw);
    double *gb_part = malloc(sizeof(double) * n_chunks * C), *loss_part = malloc(sizeof(double) * n_chunks);
    for (size_t j = 0; j < nw; j++) w[j] = (float)theta[j];
    for (int ch = 0; ch < n_chunks; ch++) {
        const int r0 = ch * PROBE_CHUNK, rows = MIN(PROBE_CHUNK, n - r0);
        const float *xc = x + (size_t)r0 * d;
        float *L = logits + (size_t)r0 * C;
        double *gb = gb_part + (size_t)ch * C, loss = 0;
        sgemm(0, 1, rows, C, d, 1.0f, xc, d, w, d, 0.0f, L, C);
        for (int c = 0; c < C; c++) gb[c] = 0;
        for (int i = 0; i < rows; i++) {
            float *z = L + (size_t)i * C;
            const int yi = y[r0 + i];
            const double zy = (double)z[yi] + b[yi];
            double m = -INFINITY, se = 0;
            for (int c = 0; c < C; c++) m = fmax(m, (double)z[c] + b[c]);
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
        loss_part[ch] = loss;
        sgemm(1, 0, C, d, rows, 1.0f, L, C, xc, d, 0.0f, gw_part + (size_t)ch * nw, d);
    }
    double loss = 0, ww = 0;
    for (int ch = 0; ch < n_chunks; ch++) loss += loss_part[ch];
    for (size_t j = 0; j < nw; j++) ww += theta[j] * theta[j];
    for (size_t j = 0; j < nw; j++) {
        double s = 0;
        for (int ch = 0; ch < n_chunks; ch++) s += gw_part[(size_t)ch * nw + j];
        grad[j] = s * (1.0 / n) + l2 * theta[j];
    }
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int ch = 0; ch < n_chunks; ch++) s += gb_part[(size_t)ch * C + c];
        grad[nw + c] = s * (1.0 / n);
    }
    free(w), free(logits), free(gw_part), free(gb_part), free(loss_part);
    return loss * (1.0 / n) + 0.5 * l2 * ww;
}

/* Waves of one, two and all chunks give the previous algorithm's loss and gradient (equal up to
 * the last bit here; within 1e-12 relative is what the test demands, in case a BLAS rounds a
 * packed copy differently), on 1 and 3 threads; a whole fit is the same bit for bit. */
static void test_probe_waves_match_all_partials(void) {
    enum { N = 5 * PROBE_CHUNK + 77, D = 12, C = 7, P = C * D + C };
    static float x[N * D];
    static int32_t y[N];
    double th[P], g0[P], g1[P];
    TestRng r = {71};
    fill_normal(&r, x, N * D, 1);
    random_labels(&r, y, N, C);
    for (int i = 0; i < P; i++) th[i] = 0.2 * rng_normal(&r);
    const double f0 = loss_grad_all_partials(x, y, N, D, C, 1e-3, th, g0);
    const size_t slot = ((size_t)C * D + (size_t)PROBE_CHUNK * (C + D)) * sizeof(float) + (C + 1) * sizeof(double);
    const size_t budgets[] = {1, 2 * slot, 0};
    for (int t = 1; t <= 3; t += 2)
        for (size_t bi = 0; bi < ARRAY_LEN(budgets); bi++) {
            threads_set(t);
            probe_set_wave_bytes(budgets[bi]);
            const double f1 = probe_loss_grad_cpu(x, y, N, D, C, 1e-3, th, g1);
            CHECK(fabs(f1 - f0) <= 1e-12 * fabs(f0) && rel_err_d(g1, g0, P) <= 1e-12,
                  "%d threads, wave budget %zu: loss %.17g vs %.17g, gradient relative error %.3e", t, budgets[bi], f1, f0,
                  rel_err_d(g1, g0, P));
        }
    /* a fit: single-chunk waves vs the default (one wave here) */
    enum { NTE = 200 };
    static float xte[NTE * D];
    static int32_t yte[NTE];
    fill_normal(&r, xte, NTE * D, 1);
    random_labels(&r, yte, NTE, C);
    for (int i = 0; i < N * D; i++) x[i] += 0.5f * (float)(y[i / D] == i % D); /* learnable */
    ProbeConfig cfg;
    probe_config_default(&cfg);
    cfg.max_iter = 40;
    ProbeReport ra, rb;
    Err e;
    threads_set(2);
    probe_set_wave_bytes(0);
    double a = probe_top1(x, y, N, xte, yte, NTE, D, C, &cfg, &ra, &e);
    probe_set_wave_bytes(1);
    double b = probe_top1(x, y, N, xte, yte, NTE, D, C, &cfg, &rb, &e);
    probe_set_wave_bytes(0);
    threads_set(0);
    CHECK(a >= 0 && a == b && ra.final_loss == rb.final_loss && ra.iterations == rb.iterations && ra.train_top1 == rb.train_top1,
          "one wave: top-1 %g loss %.17g (%d it); single-chunk waves: %g %.17g (%d it)", a, ra.final_loss, ra.iterations, b,
          rb.final_loss, rb.iterations);
}

/* ImageNet-1k with ResNet-50 features (1,281,167 x 2048, 1000 classes): the probe's memory is
 * well under 1 GiB (it held about 36 GB: 20.5 GB of partial gradients, 5.1 GB of logits and a
 * 10.5 GB standardized copy), and a small problem costs only a little more than its L-BFGS
 * memory. */
static void test_probe_memory_bounded(void) {
    const int64_t n = 1281167;
    const int d = 2048, C = 1000;
    const size_t np = (size_t)C * d + C, lbfgs = (2 * PROBE_MEMORY + 7) * np * sizeof(double);
    const size_t b = probe_work_bytes(n, d, C);
    const double old = (double)((n + PROBE_CHUNK - 1) / PROBE_CHUNK) * C * d * 4 + (double)n * C * 4 + (double)n * d * 4;
    printf("     probe memory, ImageNet-1k x ResNet-50: %.2f GB (previously %.1f GB plus the L-BFGS memory)\n", b / 1e9,
           old / 1e9);
    CHECK(b < ((size_t)1 << 30) && b >= lbfgs, "%zu bytes", b);
    CHECK(probe_work_bytes(2 * n, d, C) == b, "twice the images, %zu bytes vs %zu: the memory grows with n",
          probe_work_bytes(2 * n, d, C), b);
    const size_t small = probe_work_bytes(50000, 512, 10), np_s = 10 * 512 + 10;
    CHECK(small < (2 * PROBE_MEMORY + 8) * np_s * sizeof(double) + PROBE_WAVE_BYTES, "CIFAR-10 x ResNet-18: %zu bytes", small);
}

/* ---- evaluation preprocessing ---- */

/* PIL's bicubic (a = -0.5) resize of one axis in double, weights as Pillow's precompute_coeffs:
 * src [n_in] with stride, dst [n_out]. */
static void resize_axis_ref(const double *src, int n_in, size_t stride_in, double *dst, int n_out, size_t stride_out) {
    const double scale = (double)n_in / n_out, fs = scale < 1 ? 1 : scale, support = 2 * fs;
    for (int i = 0; i < n_out; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        double acc = 0, ww = 0;
        for (int j = lo; j < hi; j++) {
            double x = fabs((j - center + 0.5) / fs), w = 0;
            if (x < 1) w = (1.5 * x - 2.5) * x * x + 1;
            else if (x < 2) w = ((-0.5 * x + 2.5) * x - 4) * x + 2;
            acc += w * src[j * stride_in], ww += w;
        }
        dst[i * stride_out] = acc / ww;
    }
}

/* Resize(resize) + CenterCrop(crop) in double: the whole image resized (rows, then columns),
 * then cropped; the offsets from Python's round. */
static void eval_resize_ref(const Image *img, int resize, int crop, double *out) {
    const int w = img->w, h = img->h, C = img->c;
    int nw, nh;
    if (w <= h) nw = resize, nh = (int)((double)resize * h / w);
    else nh = resize, nw = (int)((double)resize * w / h);
    double *a = malloc(sizeof(double) * w * h), *b = malloc(sizeof(double) * nw * h), *r = malloc(sizeof(double) * nw * nh);
    const int top = (int)nearbyint((nh - crop) / 2.0), left = (int)nearbyint((nw - crop) / 2.0);
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < w * h; i++) a[i] = img->px[(size_t)i * C + c];
        for (int y = 0; y < h; y++) resize_axis_ref(a + (size_t)y * w, w, 1, b + (size_t)y * nw, nw, 1);
        for (int x = 0; x < nw; x++) resize_axis_ref(b + x, h, nw, r + x, nh, nw);
        for (int y = 0; y < crop; y++)
            for (int x = 0; x < crop; x++) out[((size_t)c * crop + y) * crop + x] = r[(size_t)(top + y) * nw + left + x] / 255;
    }
    free(a), free(b), free(r);
}

static void random_image(Image *img, int w, int h, int c, uint64_t seed) {
    TestRng r = {seed};
    image_reserve(img, w, h, c);
    /* smooth content plus noise, so that both the filter and the rounding matter */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                double v = 128 + 90 * sin(0.05 * x * (k + 1)) * cos(0.07 * y) + 30 * (rng_uniform(&r) - 0.5);
                img->px[((size_t)y * w + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* torchvision's Resize(R, bicubic) + CenterCrop(S): the resized size (int(R * long / short)),
 * the crop's offsets (halves to even), and the values against a double reference within the 8-bit
 * rounding of Pillow's two passes; an identity resize is an exact crop. */
static void test_eval_resize_center_crop(void) {
    int nw, nh;
    image_eval_resize_size(500, 375, 256, &nw, &nh);
    CHECK(nw == 341 && nh == 256, "500x375 -> %dx%d, want 341x256", nw, nh);
    image_eval_resize_size(375, 500, 256, &nw, &nh);
    CHECK(nw == 256 && nh == 341, "375x500 -> %dx%d, want 256x341", nw, nh);
    image_eval_resize_size(100, 80, 256, &nw, &nh);
    CHECK(nw == 320 && nh == 256, "100x80 -> %dx%d, want 320x256", nw, nh);

    Image img = {0};
    Err e;
    /* short side already 256: no resampling, the crop alone; (301 - 224) / 2 = 38.5 -> 38,
     * (303 - 224) / 2 = 39.5 -> 40 (Python's round), (256 - 224) / 2 = 16 */
    const int widths[2] = {301, 303}, lefts[2] = {38, 40};
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    for (int t = 0; t < 2; t++) {
        random_image(&img, widths[t], 256, 3, 80 + t);
        CHECK(image_resize_center_crop(out, &img, 256, 224, &e) == 0, "%s", e.msg);
        int same = 1;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 224; y++)
                for (int x = 0; x < 224; x++)
                    same &= out[((size_t)c * 224 + y) * 224 + x] ==
                            (float)img.px[((size_t)(16 + y) * widths[t] + lefts[t] + x) * 3 + c] / 255.0f;
        CHECK(same, "width %d: not the crop at (16, %d)", widths[t], lefts[t]);
    }
    /* down (500x375 -> 341x256, 224), up (100x80 -> 320x256, 224), gray, small odd sizes */
    const struct { int w, h, c, R, S; } cases[] = {{500, 375, 3, 256, 224}, {375, 500, 3, 256, 224}, {100, 80, 3, 256, 224},
                                                  {97, 131, 1, 36, 32}, {1200, 45, 3, 40, 40}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const int S = cases[i].S, C = cases[i].c;
        random_image(&img, cases[i].w, cases[i].h, C, 90 + i);
        float *o = malloc(sizeof(float) * C * S * S);
        double *ref = malloc(sizeof(double) * C * S * S);
        CHECK(image_resize_center_crop(o, &img, cases[i].R, S, &e) == 0, "%s", e.msg);
        eval_resize_ref(&img, cases[i].R, S, ref);
        double worst = 0, sum = 0;
        for (int j = 0; j < C * S * S; j++) {
            double r = ref[j] < 0 ? 0 : ref[j] > 1 ? 1 : ref[j], dlt = fabs(o[j] - r);
            worst = fmax(worst, dlt), sum += dlt;
        }
        /* each pass rounds to 8 bits (half a level), the vertical pass spreads the first's */
        CHECK(worst <= 1.5 / 255 && sum / (C * S * S) < 0.4 / 255, "%dx%dx%d -> %d, %d: max |diff| %.2f levels, mean %.3f",
              cases[i].w, cases[i].h, C, cases[i].R, S, worst * 255, sum / (C * S * S) * 255);
        free(o), free(ref);
    }
    /* a constant image stays constant */
    image_reserve(&img, 333, 250, 3);
    memset(img.px, 200, 333 * 250 * 3);
    CHECK(image_resize_center_crop(out, &img, 256, 224, &e) == 0, "%s", e.msg);
    int flat = 1;
    for (int j = 0; j < 3 * 224 * 224; j++) flat &= out[j] == 200.0f / 255.0f;
    CHECK(flat, "a constant image changed");
    e.msg[0] = 0;
    CHECK(image_resize_center_crop(out, &img, 200, 224, &e) < 0 && strstr(e.msg, "crop 224"), "crop > resize: '%s'", e.msg);
    free(out);
    image_free(&img);
}

/* --flip-avg: an image and its mirror get the same features, each the mean of the two plain
 * ones (an untrained encoder, whose convolutions are not mirror-symmetric). */
static void test_features_flip_average(void) {
    char dir[700], cmd[1600];
    snprintf(dir, sizeof dir, "%s/mirror", TEST_TMP);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/train/a %s/test/a", dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    enum { S = 12 };
    uint8_t px[2][S * S * 3];
    TestRng r = {0xf11b};
    for (int i = 0; i < S * S * 3; i++) px[0][i] = (uint8_t)(255 * rng_uniform(&r));
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) px[1][(y * S + x) * 3 + c] = px[0][(y * S + S - 1 - x) * 3 + c];
    const char *paths[3] = {"train/a/0.bmp", "train/a/1.bmp", "test/a/0.bmp"};
    for (int i = 0; i < 3; i++) {
        size_t n;
        uint8_t *bmp = bmp_encode(px[i == 1], S, S, 24, 0, &n);
        char path[900];
        snprintf(path, sizeof path, "%s/%s", dir, paths[i]);
        write_bytes(path, bmp, n);
        free(bmp);
    }
    DataOptions o;
    data_options_default(&o);
    o.data = dir;
    Dataset ds;
    Err e;
    if (data_open(&ds, &o, NULL, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    ModelConfig mc;
    model_config_default(&mc);
    mc.enc.width = 4, mc.proj_hidden = 16, mc.proj_dim = 8, mc.pred_hidden = 16;
    Byol m;
    byol_init(&m, &mc);
    byol_init_weights(&m, 5);
    FeatureConfig fc = {.image_size = S, .mean = {0.5f, 0.5f, 0.5f}, .std = {0.25f, 0.25f, 0.25f}, .batch = 2,
                        .be = &backend_cpu};
    float *plain = NULL, *avg = NULL;
    int32_t *lab = NULL, *lab2 = NULL;
    int d = 0;
    const int n0 = extract_features(&m.encoder, m.online.params, m.online.buffers, &ds, SPLIT_TRAIN, &fc, &plain, &lab, &d, &e);
    fc.flip_avg = 1;
    const int n1 = extract_features(&m.encoder, m.online.params, m.online.buffers, &ds, SPLIT_TRAIN, &fc, &avg, &lab2, &d, &e);
    CHECK(n0 == 2 && n1 == 2, "%d, %d images: %s", n0, n1, e.msg);
    if (n0 == 2 && n1 == 2) {
        CHECK(rel_err(plain, plain + d, (size_t)d) > 1e-3, "the plain features of an image and its mirror differ");
        CHECK(rel_err(avg, avg + d, (size_t)d) < 1e-5, "averaged: an image and its mirror alike (%.2e)",
              rel_err(avg, avg + d, (size_t)d));
        float *mean = xmalloc((size_t)d * sizeof(float), "t");
        for (int j = 0; j < d; j++) mean[j] = 0.5f * (plain[j] + plain[d + j]);
        CHECK_CLOSE(avg, mean, (size_t)d, 1e-6, "averaged features: the mean of the image's and its mirror's");
        xfree(mean);
    }
    char name[128];
    feature_preprocess_name(&fc, name, sizeof name);
    CHECK(strstr(name, "averaged with its mirror") != NULL, "%s", name);
    xfree(plain), xfree(avg), free(lab), free(lab2);
    byol_free(&m);
    dataset_close(&ds);
}

static void test_knn_effective_k(void) {
    CHECK(knn_effective_k(200, 18) == 18 && knn_effective_k(200, 10000) == 200 && knn_effective_k(18, 18) == 18,
          "k capped at the bank size");
}

int main(void) {
    RUN(test_knn_matches_brute_force);
    RUN(test_knn_clusters);
    RUN(test_knn_one_block_ties);
    RUN(test_knn_bad_input);
    RUN(test_knn_effective_k);
    RUN(test_features_flip_average);
    RUN(test_class_rank_and_probe_top5);
    RUN(test_label_subset);
    RUN(test_eval_resize_center_crop);
    RUN(test_probe_gradient);
    RUN(test_probe_separable);
    RUN(test_probe_matches_pytorch);
    RUN(test_probe_threads);
    RUN(test_probe_bad_input);
    RUN(test_probe_history_rejects_bad_pair);
    RUN(test_probe_waves_match_all_partials);
    RUN(test_probe_memory_bounded);
    return test_finish();
}
