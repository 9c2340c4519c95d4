/* byol neighbors: retrieval (src/eval/retrieval.c) against its naive reference and an
 * independent brute force, the grid's pixels (src/eval/neighbors_grid.c), and the command on a
 * tiny run: the picture, the JSON line, reproducibility, and one-line refusals that leave no
 * file behind. */
#include <sys/stat.h>
#include <unistd.h>

#include "data/image.h"
#include "eval/neighbors_grid.h"
#include "eval/retrieval.h"
#include "harness.h"
#include "cli_run.h"

/* ---- retrieval ---- */

/* Independent of retrieval.c: cosine in double from the raw rows, then a selection by the
 * stated order (higher similarity, then lower index). */
static void brute_topk(const float *bank, int nb, const float *q, int d, int k, int skip, int *idx, double *sim) {
    double *s = malloc((size_t)nb * sizeof *s);
    char *taken = calloc((size_t)nb, 1);
    double qn = 0;
    for (int j = 0; j < d; j++) qn += (double)q[j] * q[j];
    for (int b = 0; b < nb; b++) {
        double dot = 0, bn = 0;
        for (int j = 0; j < d; j++)
            dot += (double)q[j] * bank[(size_t)b * d + j],
                bn += (double)bank[(size_t)b * d + j] * bank[(size_t)b * d + j];
        s[b] = qn > 0 && bn > 0 ? dot / sqrt(qn * bn) : 0;
    }
    if (skip >= 0) taken[skip] = 1;
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int b = 0; b < nb; b++)
            if (!taken[b] && (best < 0 || s[b] > s[best])) best = b;
        taken[best] = 1;
        idx[t] = best, sim[t] = s[best];
    }
    free(s), free(taken);
}

/* Over three query blocks and two bank tiles: the fast path equals the naive one bit for bit,
 * and both equal an independent brute force (indices; similarities to float rounding). */
static void test_retrieval_matches_naive(void) {
    const int nb = 5000, nq = 150, d = 48;
    const int ks[] = {1, 10, 40};
    TestRng r = {12345};
    float *bank = malloc((size_t)nb * d * sizeof(float)), *q = malloc((size_t)nq * d * sizeof(float));
    fill_normal(&r, bank, (size_t)nb * d, 1.0f);
    fill_normal(&r, q, (size_t)nq * d, 1.0f);
    for (size_t t = 0; t < ARRAY_LEN(ks); t++) {
        const int k = ks[t];
        int *i1 = malloc((size_t)nq * k * sizeof(int)), *i2 = malloc((size_t)nq * k * sizeof(int)),
            *ib = malloc((size_t)k * sizeof(int));
        float *s1 = malloc((size_t)nq * k * sizeof(float)), *s2 = malloc((size_t)nq * k * sizeof(float));
        double *sb = malloc((size_t)k * sizeof(double));
        Err e;
        CHECK(retrieval_topk(bank, nb, q, nq, d, k, NULL, i1, s1, &e) == 0, "%s", e.msg);
        CHECK(retrieval_topk_naive(bank, nb, q, nq, d, k, NULL, i2, s2, &e) == 0, "%s", e.msg);
        CHECK(memcmp(i1, i2, (size_t)nq * k * sizeof(int)) == 0, "k %d: indices differ from the naive path", k);
        CHECK(memcmp(s1, s2, (size_t)nq * k * sizeof(float)) == 0, "k %d: similarities differ from the naive path", k);
        int bad = 0;
        for (int i = 0; i < nq; i++) {
            brute_topk(bank, nb, q + (size_t)i * d, d, k, -1, ib, sb);
            for (int j = 0; j < k; j++) {
                bad += ib[j] != i1[(size_t)i * k + j] || fabs(sb[j] - s1[(size_t)i * k + j]) > 1e-6;
                if (j) bad += s1[(size_t)i * k + j] > s1[(size_t)i * k + j - 1]; /* best first */
            }
        }
        CHECK(bad == 0, "k %d: %d disagreements with the brute force", k, bad);
        free(i1), free(i2), free(ib), free(s1), free(s2), free(sb);
    }
    free(bank), free(q);
}

/* Equal similarities come in bank order, also with more equal rows than the fast path keeps as
 * candidates (61 equal rows, k 10: 36 candidates, so the query is rescanned), and a zero query
 * (similarity 0 to all) gets rows 0..k-1. */
static void test_retrieval_ties(void) {
    const int nb = 300, d = 16, k = 10, nq = 3;
    TestRng r = {777};
    float *bank = malloc((size_t)nb * d * sizeof(float)), q[3 * 16];
    fill_normal(&r, bank, (size_t)nb * d, 1.0f);
    int dup[60];
    for (int i = 0; i < 60; i++) {
        dup[i] = 7 + 4 * i;
        memcpy(bank + (size_t)dup[i] * d, bank + 3 * d, d * sizeof(float));
    }
    memcpy(q, bank + 3 * d, d * sizeof(float));       /* equal to row 3 and its 60 copies */
    memset(q + d, 0, d * sizeof(float));              /* zero */
    for (int j = 0; j < d; j++) q[2 * d + j] = -q[j]; /* opposite: the copies come last */
    int i1[3 * 10], i2[3 * 10];
    float s1[3 * 10], s2[3 * 10];
    Err e;
    CHECK(retrieval_topk(bank, nb, q, nq, d, k, NULL, i1, s1, &e) == 0, "%s", e.msg);
    CHECK(retrieval_topk_naive(bank, nb, q, nq, d, k, NULL, i2, s2, &e) == 0, "%s", e.msg);
    CHECK(memcmp(i1, i2, sizeof i1) == 0 && memcmp(s1, s2, sizeof s1) == 0, "fast and naive differ on ties");
    CHECK(i1[0] == 3, "the original first: %d", i1[0]);
    for (int j = 1; j < k; j++)
        CHECK(i1[j] == dup[j - 1] && s1[j] == s1[0], "tie %d: row %d (want %d)", j, i1[j], dup[j - 1]);
    for (int j = 0; j < k; j++)
        CHECK(i1[k + j] == j && s1[k + j] == 0, "zero query: neighbour %d is row %d", j, i1[k + j]);
    for (int j = 0; j < k; j++) CHECK(i1[2 * k + j] != 3, "the opposite query found the row it opposes");
    free(bank);
}

/* Queries drawn from the bank, excluded from their own results: never returned, and otherwise
 * the top 1 (similarity 1). */
static void test_retrieval_self_exclusion(void) {
    const int nb = 600, d = 24, k = 5, nq = 70;
    TestRng r = {99};
    float *bank = malloc((size_t)nb * d * sizeof(float)), *q = malloc((size_t)nq * d * sizeof(float));
    fill_normal(&r, bank, (size_t)nb * d, 1.0f);
    int ex[70], i1[70 * 5], i2[70 * 5], ib[5];
    float s1[70 * 5], s2[70 * 5];
    double sb[5];
    for (int i = 0; i < nq; i++) {
        ex[i] = (i * 37) % nb;
        memcpy(q + (size_t)i * d, bank + (size_t)ex[i] * d, d * sizeof(float));
    }
    Err e;
    CHECK(retrieval_topk(bank, nb, q, nq, d, k, NULL, i1, s1, &e) == 0, "%s", e.msg);
    for (int i = 0; i < nq; i++) CHECK(i1[i * k] == ex[i] && fabsf(s1[i * k] - 1) < 1e-6f, "query %d: itself first", i);
    CHECK(retrieval_topk(bank, nb, q, nq, d, k, ex, i1, s1, &e) == 0, "%s", e.msg);
    CHECK(retrieval_topk_naive(bank, nb, q, nq, d, k, ex, i2, s2, &e) == 0, "%s", e.msg);
    CHECK(memcmp(i1, i2, sizeof i1) == 0 && memcmp(s1, s2, sizeof s1) == 0, "fast and naive differ with exclusion");
    for (int i = 0; i < nq; i++) {
        brute_topk(bank, nb, q + (size_t)i * d, d, k, ex[i], ib, sb);
        for (int j = 0; j < k; j++) {
            CHECK(i1[i * k + j] != ex[i], "query %d returned itself", i);
            CHECK(i1[i * k + j] == ib[j], "query %d neighbour %d: %d, brute force %d", i, j, i1[i * k + j], ib[j]);
        }
    }
    /* every row but itself: k = nb - 1 */
    int *all = malloc((size_t)(nb - 1) * sizeof(int));
    float *sall = malloc((size_t)(nb - 1) * sizeof(float));
    CHECK(retrieval_topk(bank, nb, q, 1, d, nb - 1, ex, all, sall, &e) == 0, "k = bank - 1: %s", e.msg);
    int seen_self = 0;
    for (int j = 0; j < nb - 1; j++) seen_self += all[j] == ex[0];
    CHECK(seen_self == 0, "itself among all");
    CHECK(retrieval_topk(bank, nb, q, 1, d, nb, ex, all, sall, &e) != 0 && strstr(e.msg, "599"),
          "k = bank with self excluded: %s", e.msg);
    free(all), free(sall), free(bank), free(q);
}

static void test_retrieval_errors(void) {
    float bank[4 * 2] = {1, 0, 0, 1, 1, 1, -1, 0}, q[2] = {1, 0};
    int idx[8];
    float sim[8];
    Err e;
    CHECK(retrieval_topk(bank, 4, q, 1, 2, 5, NULL, idx, sim, &e) != 0 && strstr(e.msg, "k = 5"), "k > bank: %s",
          e.msg);
    CHECK(retrieval_topk(bank, 4, q, 1, 2, 0, NULL, idx, sim, &e) != 0, "k = 0");
    bank[5] = NAN;
    CHECK(retrieval_topk(bank, 4, q, 1, 2, 2, NULL, idx, sim, &e) != 0 && strstr(e.msg, "row 2"), "NaN: %s", e.msg);
    int32_t bl[4] = {0, 1, 0, -1}, ql[1] = {0};
    int nb_idx[3] = {0, 1, 2};
    CHECK(fabs(retrieval_precision(nb_idx, 1, 3, bl, ql) - 2.0 / 3) < 1e-12, "precision 2/3");
    nb_idx[2] = 3;
    CHECK(retrieval_precision(nb_idx, 1, 3, bl, ql) < 0, "a missing label: no precision");
}

static void test_pick(void) {
    int a[50], b[50], c[50];
    retrieval_pick(1000, 50, 0, a);
    retrieval_pick(1000, 50, 0, b);
    retrieval_pick(1000, 50, 1, c);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same queries");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed, other queries");
    for (int i = 0; i < 50; i++)
        CHECK(a[i] >= 0 && a[i] < 1000 && (i == 0 || a[i] > a[i - 1]), "sorted, distinct, in range");
    int all[7];
    retrieval_pick(7, 7, 3, all);
    for (int i = 0; i < 7; i++) CHECK(all[i] == i, "all of them");
}

/* ---- the grid ---- */

static int px_is(const uint8_t *px, int w, int x, int y, const uint8_t rgb[3]) {
    return memcmp(px + ((size_t)y * w + x) * 3, rgb, 3) == 0;
}

/* A small grid written and decoded: its size, the frames' colours, the query's pixels enlarged
 * by replication (and gray drawn gray), box-filtered when shrunk, no frame without labels. */
static void test_grid_pixels(void) {
    const int S = 5, rows = 2, k = 3;
    for (int C = 1; C <= 3; C += 2) {
        TestRng r = {5 + C};
        uint8_t qpx[2 * 5 * 5 * 3], npx[6 * 5 * 5 * 3];
        for (size_t i = 0; i < sizeof qpx; i++) qpx[i] = (uint8_t)(rng_uniform(&r) * 256);
        for (size_t i = 0; i < sizeof npx; i++) npx[i] = (uint8_t)(rng_uniform(&r) * 256);
        const int32_t ql[2] = {1, 0}, nl[6] = {1, 2, 1, 0, 0, 3};
        const float sim[6] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f};
        const char *names[4] = {"zero", "one", "two", "a-very-long-class-name"};
        for (int captions = 0; captions < 2; captions++) {
            NeighborsGrid g = {.rows = rows,
                               .k = k,
                               .side = S,
                               .channels = C,
                               .cell = 20,
                               .query = qpx,
                               .neighbor = npx,
                               .query_label = ql,
                               .neighbor_label = nl,
                               .n_classes = 4};
            if (captions) g.sim = sim, g.class_names = names;
            NeighborsLayout L;
            Err e;
            CHECK(neighbors_layout(&g, &L, &e) == 0, "%s", e.msg);
            const char *path = tmp_path("grid.png");
            CHECK(neighbors_grid_write(&g, path, &e) == 0, "%s", e.msg);
            Image img = {0};
            CHECK(image_decode_file(&img, path, 3, 0, &e) == 0, "%s", e.msg);
            CHECK(img.w == L.w && img.h == L.h, "size %dx%d, layout %dx%d", img.w, img.h, L.w, L.h);
            if (img.w != L.w || img.h != L.h) return;
            for (int row = 0; row < rows; row++)
                for (int col = 0; col <= k; col++) {
                    int x, y;
                    neighbors_cell_origin(&L, row, col, &x, &y);
                    const uint8_t *want = col == 0                           ? NEIGHBORS_QUERY_RGB
                                          : nl[row * k + col - 1] == ql[row] ? NEIGHBORS_MATCH_RGB
                                                                             : NEIGHBORS_MISMATCH_RGB;
                    /* the frame's four sides, outermost and innermost pixels */
                    const int pts[8][2] = {
                        {x - 1, y + 10}, {x - L.border, y}, {x + 20, y + 5}, {x + 19 + L.border, y + 19},
                        {x + 3, y - 1},  {x, y - L.border}, {x + 7, y + 20}, {x + 19, y + 19 + L.border}};
                    for (int p = 0; p < 8; p++)
                        CHECK(px_is(img.px, img.w, pts[p][0], pts[p][1], want), "C %d row %d col %d frame point %d", C,
                              row, col, p);
                    /* the picture: source pixel (v*S/cell, u*S/cell), gray replicated */
                    const uint8_t *src =
                        col == 0 ? qpx + (size_t)row * S * S * C : npx + ((size_t)row * k + col - 1) * S * S * C;
                    int bad = 0;
                    for (int v = 0; v < 20; v++)
                        for (int u = 0; u < 20; u++)
                            for (int ch = 0; ch < 3; ch++)
                                bad += img.px[((size_t)(y + v) * img.w + x + u) * 3 + ch] !=
                                       src[((size_t)(v * S / 20) * S + u * S / 20) * C + (C == 3 ? ch : 0)];
                    CHECK(bad == 0, "C %d row %d col %d: %d picture values differ from the source", C, row, col, bad);
                }
            image_free(&img);
        }
    }
    /* unlabelled: no frame; shrunk 16 -> 8: each pixel the rounded mean of a 2x2 block */
    TestRng r = {42};
    uint8_t q16[16 * 16 * 3], n16[16 * 16 * 3];
    for (size_t i = 0; i < sizeof q16; i++) q16[i] = (uint8_t)(rng_uniform(&r) * 256), n16[i] = q16[i] ^ 0x33;
    NeighborsGrid g = {.rows = 1, .k = 1, .side = 16, .channels = 3, .cell = 8, .query = q16, .neighbor = n16};
    uint8_t *px;
    int w, h;
    Err e;
    NeighborsLayout L;
    CHECK(neighbors_layout(&g, &L, &e) == 0 && neighbors_grid_render(&g, &px, &w, &h, &e) == 0, "%s", e.msg);
    int x, y;
    neighbors_cell_origin(&L, 0, 1, &x, &y);
    CHECK(px_is(px, w, x - 1, y + 3, NEIGHBORS_BACKGROUND_RGB), "unlabelled: no frame");
    neighbors_cell_origin(&L, 0, 0, &x, &y);
    int bad = 0;
    for (int v = 0; v < 8; v++)
        for (int u = 0; u < 8; u++)
            for (int ch = 0; ch < 3; ch++) {
                unsigned s = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) s += q16[((size_t)(2 * v + dy) * 16 + 2 * u + dx) * 3 + ch];
                bad += px[((size_t)(y + v) * w + x + u) * 3 + ch] != (s + 2) / 4;
            }
    CHECK(bad == 0, "box filter: %d values differ", bad);
    xfree(px);
}

/* Many rows wrap into blocks side by side within NEIGHBORS_MAX_HEIGHT; too wide is refused. */
static void test_grid_layout_limits(void) {
    NeighborsGrid g = {.rows = 1000, .k = 8, .side = 32, .channels = 3, .cell = 64};
    NeighborsLayout L;
    Err e;
    CHECK(neighbors_layout(&g, &L, &e) == 0, "%s", e.msg);
    CHECK(L.h <= NEIGHBORS_MAX_HEIGHT && L.blocks > 1 && L.blocks * L.rows_per_block >= 1000,
          "%d blocks of %d rows, %dx%d", L.blocks, L.rows_per_block, L.w, L.h);
    int x, y;
    neighbors_cell_origin(&L, 999, 8, &x, &y);
    CHECK(x + 64 <= L.w && y + 64 <= L.h, "the last cell inside the grid");
    g.rows = 100000;
    CHECK(neighbors_layout(&g, &L, &e) != 0 && strstr(e.msg, "100000 rows") && strstr(e.msg, "fewer queries"),
          "too large: %s", e.msg);
    g.rows = 2, g.cell = 4;
    CHECK(neighbors_layout(&g, &L, &e) != 0, "cell 4 refused");
}

/* ---- the command ---- */




static int same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

/* The files named name* in TEST_TMP (temporaries included). */
static int count_files(const char *name) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '^%s' > %s/count", TEST_TMP, name, TEST_TMP);
    if (system(cmd) < 0) return -1;
    char *s = slurp_text("count");
    int n = atoi(s);
    free(s);
    return n;
}

static void test_cli_grid(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --queries 3 --k 4 --out %s --threads 1", RUN_DIR, CIFAR,
             tmp_path("n1.png"));
    int st = run_out(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    const char *json = strrchr(out, '{');
    CHECK(json && json_number(json, "queries") == 3 && json_number(json, "k") == 4, "JSON: %s", out);
    const double p = json ? json_number(json, "precision_at_k") : NAN;
    CHECK(p >= 0 && p <= 1 && fabs(p * 12 - round(p * 12)) < 1e-4, "precision@4 over 3 queries: %g", p);
    CHECK(json && strstr(json, tmp_path("n1.png")) && strstr(json, "\"query_split\":\"test\""),
          "JSON names the output: %s", out);
    int lines = 0;
    for (const char *s = out; (s = strstr(s, "\nquery ")) != NULL; s++) lines++;
    CHECK(lines == 3, "%d query lines: %s", lines, out);
    free(out), free(err);
    /* the size the layout gives: 3 rows, 1 + 4 cells of 64 px, both caption lines */
    static const char *names[1] = {"x"};
    const float sims[1] = {0};
    NeighborsGrid g = {.rows = 3, .k = 4, .side = 32, .channels = 3, .cell = 64, .class_names = names, .sim = sims};
    NeighborsLayout L;
    Err e;
    CHECK(neighbors_layout(&g, &L, &e) == 0, "%s", e.msg);
    Image img = {0};
    CHECK(image_decode_file(&img, tmp_path("n1.png"), 3, 0, &e) == 0, "%s", e.msg);
    CHECK(img.w == L.w && img.h == L.h, "%dx%d, want %dx%d", img.w, img.h, L.w, L.h);
    image_free(&img);
    char size[64];
    snprintf(size, sizeof size, ": %dx%d, a row per query", L.w, L.h);
    out = slurp_text("out");
    CHECK(strstr(out, size) != NULL, "the size printed is not the picture's (%s): %s", size, out);
    free(out);
    /* the same seed draws the same file; another seed other queries */
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --queries 3 --k 4 --out %s --threads 2", RUN_DIR, CIFAR,
             tmp_path("n2.png"));
    CHECK(run_out(a) == 0, "second run");
    CHECK(same_file(tmp_path("n1.png"), tmp_path("n2.png")), "same seed, different files (threads 1 vs 2)");
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --queries 3 --k 4 --seed 5 --out %s --threads 1", RUN_DIR,
             CIFAR, tmp_path("n3.png"));
    CHECK(run_out(a) == 0, "seed 5");
    CHECK(!same_file(tmp_path("n1.png"), tmp_path("n3.png")), "seed 5 drew the same grid");
}

/* A folder without a test split: the queries come from the train split, the output says so,
 * and no query finds itself. */
static void test_cli_no_test_split(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "cp -r %s/train %s/trainonly", CIFAR, TEST_TMP);
    CHECK(system(a) == 0, "copied");
    snprintf(a, sizeof a,
             "neighbors --ckpt %s --data %s/trainonly --queries 5 --k 99 --captions 0 --out %s --threads 1", RUN_DIR,
             TEST_TMP, tmp_path("self.png"));
    int st = run_out(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "never retrieve themselves") && strstr(out, "\"query_split\":\"train\""), "said: %s", out);
    int lines = 0;
    for (char *s = out; (s = strstr(s, "query ")) != NULL; s++) {
        if (s != out && s[-1] != '\n') continue;
        lines++;
        char qname[256];
        if (sscanf(s, "query %*d %255s", qname) != 1) break;
        char *eol = strchr(s, '\n'), *colon = strchr(s, ':');
        if (eol) *eol = 0;
        CHECK(colon && !strstr(colon, qname), "a query retrieved itself: %s", s);
        if (eol) *eol = '\n';
    }
    CHECK(lines == 5, "%d query lines", lines);
    free(out), free(err);
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s/trainonly --k 100 --out %s", RUN_DIR, TEST_TMP,
             tmp_path("self.png"));
    unlink(tmp_path("self.png"));
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "--k 100") && strstr(err, "at most 99") &&
              strchr(err, '\n') == err + strlen(err) - 1 && count_files("self") == 0,
          "k = bank with self-exclusion: exit %d: %s", st, err);
    free(err);
}

static void expect_failure(const char *extra, const char *needle) {
    char a[4096];
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --out %s --threads 1 %s", RUN_DIR, CIFAR, tmp_path("bad.png"),
             extra);
    const int st = run_out(a);
    char *err = slurp_text("err");
    CHECK(st != 0, "exit 0 for: %s", extra);
    CHECK(strchr(err, '\n') == err + strlen(err) - 1 && strlen(err) > 0, "not one line on stderr for %s: %s", extra,
          err);
    CHECK(strstr(err, needle) != NULL, "stderr lacks '%s' for %s: %s", needle, extra, err);
    CHECK(count_files("bad") == 0, "a file left behind by: %s", extra);
    free(err);
}

static void test_cli_refusals(void) {
    tiny_run();
    expect_failure("--k 0", "--k");
    expect_failure("--k 101", "at most 100");
    expect_failure("--queries 0", "--queries");
    expect_failure("--queries 101", "at most 100");
    expect_failure("--cell 4", "--cell");
    expect_failure("--queries 100000000", "--queries");
    char a[4096];
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --queries 3 --out /no/such/folder/x.png", RUN_DIR, CIFAR);
    int st = run_out(a);
    char *err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "/no/such/folder/x.png") && strchr(err, '\n') == err + strlen(err) - 1,
          "unwritable: %d %s", st, err);
    free(err);
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --out %s", RUN_DIR, CIFAR, TEST_TMP);
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "is a folder") && strchr(err, '\n') == err + strlen(err) - 1, "a folder: %d %s", st,
          err);
    free(err);
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --out %s", RUN_DIR, CIFAR, tmp_path("bad.jpg"));
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "name it .png") && strchr(err, '\n') == err + strlen(err) - 1 &&
              count_files("bad") == 0,
          "jpg: %d %s", st, err);
    free(err);
    /* a classifier checkpoint */
    const int64_t shape[1] = {1};
    const float v = 1;
    StTensorOut t = {"w", 1, shape, &v, 0};
    StMeta meta = {"byol.kind", "classifier"};
    Err e;
    CHECK(st_write(tmp_path("clf.safetensors"), &t, 1, &meta, 1, &e) == 0, "%s", e.msg);
    snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --out %s", tmp_path("clf.safetensors"), CIFAR,
             tmp_path("bad.png"));
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "classifier checkpoint") && strchr(err, '\n') == err + strlen(err) - 1 &&
              count_files("bad") == 0,
          "classifier: exit %d: %s", st, err);
    free(err);
    /* one-channel images under a three-channel encoder */
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) == 0) {
        snprintf(a, sizeof a, "neighbors --ckpt %s --data /usr/share/datasets/fashion-mnist --out %s", RUN_DIR,
                 tmp_path("bad.png"));
        st = run_out(a);
        err = slurp_text("err");
        CHECK(st != 0 && strstr(err, "1-channel") && strchr(err, '\n') == err + strlen(err) - 1 &&
                  count_files("bad") == 0,
              "channels: exit %d: %s", st, err);
        free(err);
    } else {
        printf("  (skipped the channel check: no /usr/share/datasets/fashion-mnist)\n");
    }
    /* a folder that refuses writing (not as root, who may write anyway) */
    if (geteuid() != 0) {
        snprintf(a, sizeof a, "mkdir -p %s/ro && chmod 555 %s/ro", TEST_TMP, TEST_TMP);
        CHECK(system(a) == 0, "made a read-only folder");
        snprintf(a, sizeof a, "neighbors --ckpt %s --data %s --out %s/ro/x.png", RUN_DIR, CIFAR, TEST_TMP);
        st = run_out(a);
        err = slurp_text("err");
        CHECK(st != 0 && strstr(err, "not writable") && strchr(err, '\n') == err + strlen(err) - 1, "read-only: %d %s",
              st, err);
        free(err);
    }
}

int main(void) {
    test_tmpdir("test_neighbors");
    RUN(test_retrieval_matches_naive);
    RUN(test_retrieval_ties);
    RUN(test_retrieval_self_exclusion);
    RUN(test_retrieval_errors);
    RUN(test_pick);
    RUN(test_grid_pixels);
    RUN(test_grid_layout_limits);
    RUN(test_cli_grid);
    RUN(test_cli_no_test_split);
    RUN(test_cli_refusals);
    return test_finish();
}
