/* Augmentations: every transform against torchvision for fixed parameters (fixtures from
 * tests/reference/make_augment_fixtures.py), and the random draws against their definitions. */
#include "harness.h"
#include "data/augment.h"

static Safetensors FX;

static double meta_num(const char *key) {
    const char *v = st_meta(&FX, key);
    if (!v) {
        printf("FATAL fixture lacks %s\n", key);
        exit(2);
    }
    return atof(v);
}

/* Runs `op` on the fixture's input (CHW) and compares with its output. */
typedef void (*ColourOp)(float *img, int C, int H, int W, float f);
static void check_op(const char *name, ColourOp op, float factor, double tol) {
    char key[96];
    int64_t s[3];
    snprintf(key, sizeof key, "%s.in", name);
    float *x = fx_get(&FX, key, s, NULL);
    snprintf(key, sizeof key, "%s.out", name);
    float *y = fx_get(&FX, key, NULL, NULL);
    op(x, (int)s[0], (int)s[1], (int)s[2], factor);
    size_t n = (size_t)(s[0] * s[1] * s[2]);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)x[i] - y[i]));
    CHECK(worst <= tol, "%s: max abs difference from torchvision %.3g > %.1g", name, worst, tol);
    xfree(x), xfree(y);
}

static void test_crop_resize_matches_torchvision(void) {
    const char *cases[] = {"crop_down_bilinear", "crop_up_bilinear", "crop_mixed_bicubic",
                           "crop_down_bicubic", "crop_gray_bilinear", "crop_whole_identity"};
    AugScratch s = {0};
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        char key[96];
        int64_t hw[3];
#define M(f) (snprintf(key, sizeof key, "%s." f, cases[k]), (int)meta_num(key))
        int top = M("top"), left = M("left"), h = M("h"), w = M("w"), S = M("size");
#undef M
        Interp interp = strstr(cases[k], "bicubic") ? INTERP_BICUBIC : INTERP_BILINEAR;
        snprintf(key, sizeof key, "%s.in", cases[k]);
        float *inf = fx_get(&FX, key, hw, NULL);
        snprintf(key, sizeof key, "%s.out", cases[k]);
        float *want = fx_get(&FX, key, NULL, NULL);
        const int H = (int)hw[0], W = (int)hw[1], C = (int)hw[2];
        uint8_t *px = malloc((size_t)H * W * C);
        for (int i = 0; i < H * W * C; i++) px[i] = (uint8_t)inf[i];
        float *out = xmalloc((size_t)C * S * S * 4, "t");
        aug_resized_crop(out, px, H, W, C, top, left, h, w, S, interp, &s);
        double worst = 0;
        for (int i = 0; i < C * S * S; i++) worst = fmax(worst, fabs((double)out[i] - want[i]));
        CHECK(worst <= 2e-6, "%s: max abs difference from torchvision %.3g", cases[k], worst);
        free(px), xfree(inf), xfree(want), xfree(out);
    }
    aug_scratch_free(&s);
}

static void test_colour_transforms_match_torchvision(void) {
    const float factors[] = {0.6f, 1.37f};
    char name[64];
    for (int i = 0; i < 2; i++) {
        const char *f = i ? "1.37" : "0.6";
        snprintf(name, sizeof name, "brightness_%s", f);
        check_op(name, aug_brightness, factors[i], 1e-6);
        snprintf(name, sizeof name, "contrast_%s", f);
        check_op(name, aug_contrast, factors[i], 2e-6);
        snprintf(name, sizeof name, "saturation_%s", f);
        check_op(name, aug_saturation, factors[i], 1e-6);
        snprintf(name, sizeof name, "gray_brightness_%s", f);
        check_op(name, aug_brightness, factors[i], 1e-6);
        snprintf(name, sizeof name, "gray_contrast_%s", f);
        check_op(name, aug_contrast, factors[i], 2e-6);
    }
    const char *hues[] = {"hue_-0.1", "hue_0.043", "hue_0.5", "hue_-0.5"};
    const float hv[] = {-0.1f, 0.043f, 0.5f, -0.5f};
    for (int i = 0; i < 4; i++) check_op(hues[i], aug_hue, hv[i], 2e-6);
}

static void grayscale_op(float *img, int C, int H, int W, float f) { (void)f, aug_grayscale(img, C, H, W); }
static void hflip_op(float *img, int C, int H, int W, float f) { (void)f, aug_hflip(img, C, H, W); }
static void solarize_op(float *img, int C, int H, int W, float f) { aug_solarize(img, C, H, W, f); }
static int blur_k;
static void blur_op(float *img, int C, int H, int W, float sigma) {
    float *tmp = xmalloc(aug_blur_tmp_floats(C, H, W, blur_k) * 4, "t");
    aug_blur(img, tmp, C, H, W, blur_k, sigma);
    xfree(tmp);
}
static void normalize_op(float *img, int C, int H, int W, float f) {
    (void)f;
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.247f, 0.243f, 0.261f};
    aug_normalize(img, C, H, W, mean, std);
}

static void test_other_transforms_match_torchvision(void) {
    check_op("grayscale", grayscale_op, 0, 1e-6);
    check_op("hflip", hflip_op, 0, 0);
    check_op("solarize", solarize_op, 0.5f, 0);
    check_op("normalize", normalize_op, 0, 1e-6);
    const int ks[] = {3, 5, 7, 23};
    const float sig[] = {0.7f, 1.9f, 0.1f, 1.3f};
    const char *names[] = {"blur_3_0.7", "blur_5_1.9", "blur_7_0.1", "blur_23_1.3"};
    for (int i = 0; i < 4; i++) {
        blur_k = ks[i];
        check_op(names[i], blur_op, sig[i], 2e-6);
    }
}

/* torchvision's RandomResizedCrop rule: boxes inside the image, area fraction and aspect ratio
 * within range (up to rounding to whole pixels), and the centre-crop fallback when 10 tries fail. */
static void test_crop_draws_follow_the_rule(void) {
    AugConfig c;
    aug_config_default(&c, 32, 3);
    const int H = 80, W = 100, N = 20000;
    double mean_area = 0;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        Rng r = rng_keyed(1, 0, (uint64_t)i, 0);
        int y, x, h, w;
        aug_draw_crop(&y, &x, &h, &w, H, W, &c, &r);
        double area = (double)h * w / (H * W), ratio = (double)w / h;
        /* rounding each side by up to 0.5 pixel moves area and ratio a little */
        if (y < 0 || x < 0 || y + h > H || x + w > W || area < 0.08 * 0.9 || area > 1.0 ||
            ratio < 0.75 * 0.9 || ratio > 4.0 / 3 * 1.1)
            bad++;
        mean_area += area / N;
    }
    CHECK(bad == 0, "%d of %d crops outside the rule", bad, N);
    /* E[scale] = 0.54 for U[0.08, 1], lowered a little by the tries that do not fit. */
    CHECK(mean_area > 0.45 && mean_area < 0.56, "mean area fraction %.3f", mean_area);
    /* A 1000x10 strip: no random box fits its ratio range, so the fallback: full height, width
     * round(10 * 4/3) = 13, centred. */
    Rng r = rng_keyed(1, 2, 3, 4);
    int y, x, h, w;
    aug_draw_crop(&y, &x, &h, &w, 10, 1000, &c, &r);
    CHECK(h == 10 && w == 13 && y == 0 && x == (1000 - 13) / 2, "fallback crop %d,%d %dx%d", y, x, h, w);
    aug_draw_crop(&y, &x, &h, &w, 1000, 10, &c, &r);
    CHECK(w == 10 && h == 13 && x == 0 && y == (1000 - 13) / 2, "tall fallback crop %d,%d %dx%d", y, x, h, w);
}

static void test_view_draws_have_the_papers_probabilities(void) {
    AugConfig c;
    aug_config_default(&c, 224, 3);
    CHECK(c.blur_kernel == 23, "blur kernel at 224 px: %d (10%% of the side, odd)", c.blur_kernel);
    const int N = 20000;
    int flip[2] = {0}, jit[2] = {0}, gray[2] = {0}, blur[2] = {0}, sol[2] = {0}, order_first[4] = {0};
    double bmin = 9, bmax = -9, hmin = 9, hmax = -9, smin = 9, smax = -9, cmin = 9, cmax = -9, tmin = 9, tmax = -9;
    for (int i = 0; i < N; i++)
        for (int v = 0; v < 2; v++) {
            Rng r = rng_keyed(5, 1, (uint64_t)i, (uint64_t)v);
            ViewParams p;
            aug_draw(&p, &c, v, 300, 400, &r);
            flip[v] += p.flip, jit[v] += p.jitter, gray[v] += p.gray, blur[v] += p.blur, sol[v] += p.solarize;
            order_first[p.order[0]]++;
            bmin = fmin(bmin, p.brightness), bmax = fmax(bmax, p.brightness);
            hmin = fmin(hmin, p.hue), hmax = fmax(hmax, p.hue);
            cmin = fmin(cmin, p.contrast), cmax = fmax(cmax, p.contrast);
            tmin = fmin(tmin, p.saturation), tmax = fmax(tmax, p.saturation);
            smin = fmin(smin, p.sigma), smax = fmax(smax, p.sigma);
        }
    /* Within 5 standard deviations of the expected counts. */
#define NEAR(count, p) (fabs((count) - N * (p)) <= 5 * sqrt(N * (p) * (1 - (p))) + 1e-9)
    for (int v = 0; v < 2; v++) {
        CHECK(NEAR(flip[v], 0.5), "view %d flips %d", v + 1, flip[v]);
        CHECK(NEAR(jit[v], 0.8), "view %d jitters %d", v + 1, jit[v]);
        CHECK(NEAR(gray[v], 0.2), "view %d grays %d", v + 1, gray[v]);
    }
    CHECK(blur[0] == N && NEAR(blur[1], 0.1), "blurs %d %d", blur[0], blur[1]);
    CHECK(sol[0] == 0 && NEAR(sol[1], 0.2), "solarizes %d %d", sol[0], sol[1]);
    for (int k = 0; k < 4; k++) /* over both views: 2N draws */
        CHECK(fabs(order_first[k] - 2 * N * 0.25) <= 5 * sqrt(2 * N * 0.25 * 0.75), "jitter op %d first %d times", k, order_first[k]);
#undef NEAR
    CHECK(bmin >= 0.6 && bmin < 0.61 && bmax <= 1.4 && bmax > 1.39, "brightness in [%g, %g]", bmin, bmax);
    CHECK(hmin >= -0.1 && hmin < -0.099 && hmax <= 0.1 && hmax > 0.099, "hue in [%g, %g]", hmin, hmax);
    CHECK(smin >= 0.1 && smax <= 2.0, "sigma in [%g, %g]", smin, smax);
    CHECK(cmin >= 0.6 && cmin < 0.61 && cmax <= 1.4 && cmax > 1.39, "contrast in [%g, %g]", cmin, cmax);
    CHECK(tmin >= 0.8 && tmin < 0.81 && tmax <= 1.2 && tmax > 1.19, "saturation in [%g, %g]", tmin, tmax);
    /* Defaults at CIFAR size: no blur; one channel: no grayscale. */
    aug_config_default(&c, 32, 1);
    CHECK(c.view[0].blur_p == 0 && c.view[1].blur_p == 0 && c.view[0].gray_p == 0, "blur off at 32 px, no gray for 1 channel");
    CHECK(c.view[1].solarize_p == 0.2f && c.view[0].solarize_p == 0, "solarize only in view 2");
}

/* aug_apply is the composition of the single transforms in BYOL's order, then normalization;
 * and the same key gives the same view. */
static void test_pipeline_composes_the_transforms(void) {
    AugConfig c;
    aug_config_default(&c, 96, 3);
    c.mean[0] = 0.5f, c.mean[1] = 0.4f, c.mean[2] = 0.3f;
    c.std[0] = 0.2f, c.std[1] = 0.25f, c.std[2] = 0.3f;
    Image img = {0};
    image_reserve(&img, 130, 110, 3);
    TestRng tr = {3};
    for (int i = 0; i < 130 * 110 * 3; i++) img.px[i] = (uint8_t)(rng_uniform(&tr) * 256);
    ViewParams p = {10, 7, 90, 100, 1, 1, {3, 1, 0, 2}, 1.2f, 0.7f, 1.1f, -0.05f, 0, 1, 1.3f, 1, 0.5f};
    const int S = 96, n = 3 * S * S;
    float *got = xmalloc(n * 4, "t"), *want = xmalloc(n * 4, "t"), *tmp = xmalloc(aug_blur_tmp_floats(3, 96, 96, c.blur_kernel) * 4, "t");
    AugScratch s = {0};
    aug_apply(got, &img, &p, &c, &s);
    aug_resized_crop(want, img.px, 110, 130, 3, 10, 7, 90, 100, S, INTERP_BILINEAR, &s);
    aug_hflip(want, 3, S, S);
    aug_hue(want, 3, S, S, -0.05f);
    aug_contrast(want, 3, S, S, 0.7f);
    aug_brightness(want, 3, S, S, 1.2f);
    aug_saturation(want, 3, S, S, 1.1f);
    aug_blur(want, tmp, 3, S, S, c.blur_kernel, 1.3f);
    aug_solarize(want, 3, S, S, 0.5f);
    aug_normalize(want, 3, S, S, c.mean, c.std);
    CHECK(memcmp(got, want, n * 4) == 0, "pipeline differs from the composed transforms");
    /* Same key, same parameters and pixels; another view key, other parameters. */
    ViewParams a, b, d;
    Rng r1 = rng_keyed(9, 0, 42, 0), r2 = rng_keyed(9, 0, 42, 0), r3 = rng_keyed(9, 0, 42, 1);
    aug_draw(&a, &c, 0, 110, 130, &r1);
    aug_draw(&b, &c, 0, 110, 130, &r2);
    aug_draw(&d, &c, 1, 110, 130, &r3);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "same key, same draw");
    CHECK(memcmp(&a, &d, sizeof a) != 0, "another key, another draw");
    uint8_t *u8 = malloc(n);
    aug_apply_u8(u8, &img, &p, &c, &s);
    /* The 8-bit picture is the un-normalized view, rounded. */
    int off = 0;
    for (int y = 0; y < S && !off; y++)
        for (int x = 0; x < S; x++)
            for (int k = 0; k < 3; k++) {
                float v = want[(k * S + y) * S + x] * c.std[k] + c.mean[k];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                if (abs((int)u8[(y * S + x) * 3 + k] - (int)lrintf(v * 255)) > 1) off = 1;
            }
    CHECK(!off, "aug_apply_u8 is the un-normalized view");
    free(u8);
    xfree(got), xfree(want), xfree(tmp);
    aug_scratch_free(&s);
    image_free(&img);
}

static void test_config_checks(void) {
    AugConfig c;
    Err e;
    aug_config_default(&c, 224, 3);
    CHECK(aug_config_check(&c, &e) == 0, "defaults are valid: %s", e.msg);
    c.view[1].solarize_p = 1.5f;
    CHECK(aug_config_check(&c, &e) != 0 && strstr(e.msg, "probabilities"), "p 1.5 refused");
    aug_config_default(&c, 224, 3);
    c.blur_kernel = 24;
    CHECK(aug_config_check(&c, &e) != 0 && strstr(e.msg, "odd"), "even kernel refused");
    aug_config_default(&c, 224, 3);
    c.std[1] = 0;
    CHECK(aug_config_check(&c, &e) != 0 && strstr(e.msg, "std"), "zero std refused");
}

int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/augment.safetensors", fixture_dir());
    Err e;
    if (st_open(&FX, path, &e)) {
        printf("FATAL %s\n", e.msg);
        return 2;
    }
    RUN(test_crop_resize_matches_torchvision);
    RUN(test_colour_transforms_match_torchvision);
    RUN(test_other_transforms_match_torchvision);
    RUN(test_crop_draws_follow_the_rule);
    RUN(test_view_draws_have_the_papers_probabilities);
    RUN(test_pipeline_composes_the_transforms);
    RUN(test_config_checks);
    st_close(&FX);
    return test_finish();
}
