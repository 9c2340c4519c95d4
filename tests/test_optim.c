/* LARS, the target EMA and the schedules. */
#include "harness.h"
#include "optim/optim.h"
#include "train/size_schedule.h"

static TensorSpec spec(const char *name, int ndim, int64_t d0, int64_t d1, size_t offset) {
    TensorSpec t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.numel = (size_t)d0 * (ndim > 1 ? d1 : 1);
    t.offset = offset;
    t.role = ROLE_PARAM;
    return t;
}

/* Worked by hand (tests/test_optim.c comments give the arithmetic): a 2-d weight is decayed and
 * rescaled to eta*|p|/|u|; a bias is neither. */
static void test_lars_worked_example(void) {
    /* weight [1, 2]: p = (3, 4), g = (1, 0), v = (0.5, 0); wd 0.1, eta 0.01, m 0.9, lr 0.5:
     * u = g + wd*p = (1.3, 0.4); |p| = 5, |u| = sqrt(1.85); u *= 0.01*5/sqrt(1.85);
     * v = 0.9*v + u; p -= 0.5*v.
     * bias [2]: p = (1, -2), g = (0.5, 0.25), v = (0.1, 0.2): v = 0.9*v + g; p -= 0.5*v. */
    TensorSpec specs[3] = {spec("w", 2, 1, 2, 0), spec("b", 1, 2, 0, 2), spec("running_mean", 1, 2, 0, 4)};
    specs[2].role = ROLE_BUFFER;
    const LarsConfig c = {.lr = 0.5f, .weight_decay = 0.1f, .momentum = 0.9f, .eta = 0.01f, .mult_from = 0, .lr_mult = 1.0f};
    for (int impl = 0; impl < 2; impl++) {
        float p[4] = {3, 4, 1, -2}, g[4] = {1, 0, 0.5f, 0.25f}, v[4] = {0.5f, 0, 0.1f, 0.2f};
        (impl ? lars_update_ref : lars_update_cpu)(p, g, v, specs, 3, &c);
        const double vw[2] = {0.4977889504360975, 0.014704292441876154}, pw[2] = {2.751105524781951, 3.992647853779062};
        const double vb[2] = {0.59, 0.43}, pb[2] = {0.705, -2.215};
        for (int i = 0; i < 2; i++) {
            CHECK(fabs(v[i] - vw[i]) < 1e-6 && fabs(p[i] - pw[i]) < 1e-6, "%s weight[%d]: v %.9g p %.9g",
                  impl ? "ref" : "cpu", i, v[i], p[i]);
            CHECK(fabs(v[2 + i] - vb[i]) < 1e-6 && fabs(p[2 + i] - pb[i]) < 1e-6, "%s bias[%d]: v %.9g p %.9g",
                  impl ? "ref" : "cpu", i, v[2 + i], p[2 + i]);
        }
    }
}

/* A zero weight (or zero update) takes the plain momentum step: no trust ratio when a norm is 0. */
static void test_lars_zero_norms(void) {
    TensorSpec s = spec("w", 2, 2, 2, 0);
    const LarsConfig c = {.lr = 1.0f, .weight_decay = 0.1f, .momentum = 0.0f, .eta = 0.01f, .mult_from = 0, .lr_mult = 1.0f};
    float p[4] = {0, 0, 0, 0}, g[4] = {1, 2, 3, 4}, v[4] = {0};
    lars_update_cpu(p, g, v, &s, 1, &c);
    CHECK(p[0] == -1 && p[3] == -4, "zero weight: unscaled step (%g %g)", p[0], p[3]);
    float q[4] = {1, 1, 1, 1}, z[4] = {-0.1f, -0.1f, -0.1f, -0.1f}, w[4] = {0};
    lars_update_cpu(q, z, w, &s, 1, &c); /* g + wd*p = 0 exactly */
    CHECK(q[0] == 1 && w[0] == 0, "zero update leaves the weight (%g)", q[0]);
}

static void test_lars_cpu_matches_reference(void) {
    TestRng r = {23};
    TensorSpec specs[4] = {spec("a", 2, 64, 9, 0), spec("b", 1, 64, 0, 576), spec("c", 2, 300, 7, 640),
                           spec("d", 1, 3, 0, 2740)};
    const size_t n = 2743;
    float p[2743], g[2743], v[2743], p2[2743], v2[2743];
    fill_normal(&r, p, n, 1), fill_normal(&r, g, n, 0.1f), fill_normal(&r, v, n, 0.01f);
    memcpy(p2, p, sizeof p), memcpy(v2, v, sizeof v);
    const LarsConfig c = {.lr = 0.3f, .weight_decay = 1e-4f, .momentum = 0.9f, .eta = 0.02f, .mult_from = 0, .lr_mult = 1.0f};
    lars_update_cpu(p, g, v, specs, 4, &c);
    lars_update_ref(p2, g, v2, specs, 4, &c);
    CHECK_CLOSE(p, p2, n, 1e-6, "params");
    CHECK_CLOSE(v, v2, n, 1e-6, "momentum");
}

/* The predictor's multiplier: tensors from mult_from on move lr_mult times as far (one step from
 * zero momentum: the update is lr * u), the others exactly as without it; cpu = reference. */
static void test_lars_lr_multiplier(void) {
    TestRng r = {29};
    TensorSpec specs[3] = {spec("a", 2, 64, 9, 0), spec("b", 2, 16, 8, 576), spec("c", 1, 16, 0, 704)};
    const size_t n = 720;
    float p0[720], g[720], p1[720], v1[720], p2[720], v2[720], p3[720], v3[720];
    fill_normal(&r, p0, n, 1), fill_normal(&r, g, n, 0.1f);
    memcpy(p1, p0, sizeof p0), memcpy(p2, p0, sizeof p0), memcpy(p3, p0, sizeof p0);
    memset(v1, 0, sizeof v1), memset(v2, 0, sizeof v2), memset(v3, 0, sizeof v3);
    const LarsConfig plain = {.lr = 0.3f, .weight_decay = 1e-4f, .momentum = 0.9f, .eta = 0.02f, .mult_from = 0, .lr_mult = 1.0f};
    const LarsConfig boosted = {.lr = 0.3f, .weight_decay = 1e-4f, .momentum = 0.9f, .eta = 0.02f, .mult_from = 576, .lr_mult = 10.0f};
    lars_update_cpu(p1, g, v1, specs, 3, &plain);
    lars_update_cpu(p2, g, v2, specs, 3, &boosted);
    lars_update_ref(p3, g, v3, specs, 3, &boosted);
    double worst_before = 0, worst_after = 0, largest = 0;
    for (size_t i = 0; i < n; i++) {
        const double d1 = (double)p1[i] - p0[i], d2 = (double)p2[i] - p0[i];
        if (i < 576) worst_before = fmax(worst_before, fabs(d2 - d1));
        else worst_after = fmax(worst_after, fabs(d2 - 10 * d1)), largest = fmax(largest, fabs(d2));
    }
    CHECK(worst_before == 0, "tensors before mult_from: unchanged by the multiplier (%.3g)", worst_before);
    /* within the float rounding of parameters of size ~1, for updates of ~1e-2 */
    CHECK(worst_after < 5e-6 && largest > 1e-3, "tensors from mult_from on: 10x the update (off by %.3g, largest %.3g)",
          worst_after, largest);
    CHECK_CLOSE(p2, p3, n, 1e-6, "params (cpu vs reference, with the multiplier)");
}

static void test_ema(void) {
    float t[5] = {1, 2, 3, 4, 5}, o[5] = {0, 0, 10, 4, -5}, t2[5];
    memcpy(t2, t, sizeof t);
    ema_update_cpu(t, o, 5, 0.9f);
    ema_update_ref(t2, o, 5, 0.9f);
    const float want[5] = {0.9f, 1.8f, 3.7f, 4.0f, 4.0f};
    for (int i = 0; i < 5; i++) CHECK(fabsf(t[i] - want[i]) < 1e-6f && fabsf(t2[i] - want[i]) < 1e-6f, "[%d] %g", i, t[i]);
    float a[3] = {1, 2, 3}, b[3] = {7, 8, 9};
    ema_update_cpu(a, b, 3, 1.0f);
    CHECK(a[0] == 1 && a[2] == 3, "tau 1 keeps the target");
    ema_update_cpu(a, b, 3, 0.0f);
    CHECK(a[0] == 7 && a[2] == 9, "tau 0 copies the online network");
}

static void test_lr_schedule(void) {
    /* 10 warm-up steps of 100, base 2: linear to 2 at step 9, then cosine to 0 at step 100. */
    CHECK(fabs(lr_at_step(0, 100, 10, 2.0) - 0.2) < 1e-12, "first warm-up step %g", lr_at_step(0, 100, 10, 2.0));
    CHECK(fabs(lr_at_step(4, 100, 10, 2.0) - 1.0) < 1e-12, "linear warm-up");
    CHECK(fabs(lr_at_step(9, 100, 10, 2.0) - 2.0) < 1e-12, "warm-up ends at the base rate");
    CHECK(fabs(lr_at_step(10, 100, 10, 2.0) - 2.0) < 1e-12, "cosine starts at the base rate");
    CHECK(fabs(lr_at_step(55, 100, 10, 2.0) - 1.0) < 1e-12, "half-way through the cosine: half the rate");
    CHECK(lr_at_step(100, 100, 10, 2.0) == 0.0 || fabs(lr_at_step(100, 100, 10, 2.0)) < 1e-15, "0 at the end");
    double prev = 3;
    int monotone = 1;
    for (long k = 10; k <= 100; k++) {
        double x = lr_at_step(k, 100, 10, 2.0);
        monotone &= x <= prev && x >= 0;
        prev = x;
    }
    CHECK(monotone, "cosine part decreases to 0");
    CHECK(fabs(lr_at_step(0, 50, 0, 1.0) - 1.0) < 1e-12, "no warm-up: starts at the base rate");
}

static void test_tau_schedule(void) {
    CHECK(fabs(tau_at_step(0, 1000, 0.99) - 0.99) < 1e-12, "starts at tau_base");
    CHECK(fabs(tau_at_step(500, 1000, 0.99) - 0.995) < 1e-12, "half-way: %g", tau_at_step(500, 1000, 0.99));
    CHECK(fabs(tau_at_step(1000, 1000, 0.99) - 1.0) < 1e-12, "reaches 1");
    /* The paper's formula at an arbitrary point. */
    double k = 123, K = 1000, want = 1 - (1 - 0.996) * (cos(M_PI * k / K) + 1) / 2;
    CHECK(fabs(tau_at_step(123, 1000, 0.996) - want) < 1e-15, "formula");
    double prev = 0;
    int monotone = 1;
    for (long i = 0; i <= 1000; i++) {
        double t = tau_at_step(i, 1000, 0.99);
        monotone &= t >= prev;
        prev = t;
    }
    CHECK(monotone, "increases");
}

/* --size-schedule auto: half, three quarters and all of the image size for 0.5, 0.3 and 0.2 of
 * the run, as written out for 32 px; sizes below 8 px are raised, a repeated size is one phase. */
static void test_size_schedule_auto(void) {
    Err e;
    SizeSchedule a, w;
    CHECK(size_schedule_parse(&a, "auto", 32, &e) == 0 && size_schedule_parse(&w, "16:0.5,24:0.3,32:0.2", 32, &e) == 0,
          "parse: %s", e.msg);
    int same = a.n == w.n;
    for (int i = 0; same && i < a.n; i++) same = a.size[i] == w.size[i] && fabs(a.end[i] - w.end[i]) < 1e-12;
    CHECK(same, "auto at 32 px: %d phases, %d px to %g, %d px to %g", a.n, a.size[0], a.end[0], a.size[1], a.end[1]);
    CHECK(size_schedule_parse(&a, "auto", 28, &e) == 0 && a.n == 3 && a.size[0] == 14 && a.size[1] == 21 &&
              a.size[2] == 28 && size_schedule_phase(&a, 0.79) == 1 && size_schedule_phase(&a, 0.8) == 2,
          "auto at 28 px: %d phases, %d/%d/%d px", a.n, a.size[0], a.size[1], a.size[2]);
    CHECK(size_schedule_parse(&a, "auto", 10, &e) == 0 && a.n == 2 && a.size[0] == 8 && fabs(a.end[0] - 0.8) < 1e-12 &&
              a.size[1] == 10 && a.end[1] == 1.0,
          "auto at 10 px (5 and 7 raised to 8): %d phases, %d px to %g, %d px", a.n, a.size[0], a.end[0], a.size[1]);
    CHECK(size_schedule_parse(&a, "auto", 8, &e) == 0 && a.n == 1 && a.size[0] == 8 && a.end[0] == 1.0,
          "auto at 8 px: %d phases", a.n);
}

int main(void) {
    RUN(test_lars_worked_example);
    RUN(test_lars_zero_norms);
    RUN(test_lars_cpu_matches_reference);
    RUN(test_lars_lr_multiplier);
    RUN(test_ema);
    RUN(test_lr_schedule);
    RUN(test_tau_schedule);
    RUN(test_size_schedule_auto);
    return test_finish();
}
