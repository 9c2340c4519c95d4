/* The collapse lab (src/train/lab.h): reading a run's outcome, the figure (SVG, and the PNG
 * rendered from it), and byol lab end to end on two variants. */
#include <limits.h>

#include "data/image.h"
#include "eval/monitor.h"
#include "eval/plot.h"
#include "eval/svg_png.h"
#include "harness.h"
#include "train/lab.h"

static void write_text(const char *name, const char *text) { write_bytes(tmp_path(name), text, strlen(text)); }

static void test_outcome_read(void) {
    /* two healthy logged steps, then LAB_TAIL collapsed ones: the end is the last LAB_TAIL's mean */
    char a[4096] = "{\"step\": 0, \"epoch\": 0, \"knn_top1\": 0.2, \"untrained\": true}\n"
                   "{\"step\": 1, \"epoch\": 0.1, \"loss\": 3.5, \"lr\": 0.1, \"tau\": 0.99, \"proj_std\": 0.8, \"eff_rank\": 9.5}\n"
                   "{\"step\": 2, \"epoch\": 0.1, \"loss\": 3.5, \"lr\": 0.1, \"tau\": 0.99, \"proj_std\": 0.8, \"eff_rank\": 9.5}\n"
                   "{\"step\": 2, \"epoch\": 0.1, \"knn_top1\": 0.41, \"knn_target_top1\": 0.43}\n"
                   "not json\n";
    for (int s = 3; s < 3 + LAB_TAIL; s++)
        snprintf(a + strlen(a), sizeof a - strlen(a),
                 "{\"step\": %d, \"epoch\": 0.2, \"loss\": 0.02, \"lr\": 0.1, \"tau\": 0.99, \"proj_std\": 0.05, "
                 "\"eff_rank\": 1.2}\n", s);
    snprintf(a + strlen(a), sizeof a - strlen(a), "{\"step\": 12, \"epoch\": 0.2, \"knn_top1\": 0.3, \"final\": true}\n");
    write_text("a.jsonl", a);
    LabOutcome o;
    Err e;
    CHECK(lab_outcome_read(tmp_path("a.jsonl"), &o, &e) == 0, "%s", e.msg);
    CHECK(o.ran && o.steps == 2 + LAB_TAIL && fabs(o.loss - 0.02) < 1e-12 && fabs(o.std_sqrt_d - 0.05) < 1e-12 &&
              fabs(o.eff_rank - 1.2) < 1e-12,
          "the last logged steps: %ld %g %g %g", o.steps, o.loss, o.std_sqrt_d, o.eff_rank);
    CHECK(o.knn == 0.3 && o.knn_target == 0.43, "the last kNN figures, not the untrained one: %g %g", o.knn, o.knn_target);
    CHECK(o.collapsed, "std x sqrt(D) 0.05 < %g: collapsed", COLLAPSE_STD_MIN);
    write_text("b.jsonl", "{\"step\": 5, \"loss\": 1, \"proj_std\": 0.5, \"eff_rank\": 1.4}\n");
    CHECK(lab_outcome_read(tmp_path("b.jsonl"), &o, &e) == 0 && o.collapsed && o.knn < 0, "rank 1.4: collapsed");
    write_text("c.jsonl", "{\"step\": 5, \"loss\": 1, \"proj_std\": 0.5, \"eff_rank\": 3}\n");
    CHECK(lab_outcome_read(tmp_path("c.jsonl"), &o, &e) == 0 && !o.collapsed, "healthy");
    /* DINO's rule: the KL between teacher and student, whatever the projections' spread */
    write_text("d.jsonl", "{\"step\": 5, \"loss\": 8, \"proj_std\": 0.02, \"eff_rank\": 1.2, \"teacher_entropy\": 7.5, "
                          "\"entropy_uniform\": 8.3178, \"kl\": 0.5}\n");
    CHECK(lab_outcome_read(tmp_path("d.jsonl"), &o, &e) == 0 && !o.collapsed && o.entropy == 7.5 && o.kl == 0.5,
          "DINO with KL 0.5: learning");
    write_text("e.jsonl", "{\"step\": 5, \"loss\": 8.3, \"proj_std\": 0.5, \"eff_rank\": 9, \"teacher_entropy\": 8.317, "
                          "\"entropy_uniform\": 8.3178, \"kl\": 0.001}\n");
    CHECK(lab_outcome_read(tmp_path("e.jsonl"), &o, &e) == 0 && o.collapsed, "DINO with KL %g < %g: collapsed", 0.001,
          DINO_KL_MIN);
    CHECK(strcmp(o.why, "KL") == 0, "to uniform: %s", o.why);
    write_text("f.jsonl", "{\"step\": 5, \"loss\": 0.2, \"proj_std\": 0.4, \"eff_rank\": 2, \"teacher_entropy\": 0.18, "
                          "\"entropy_uniform\": 8.3178, \"kl\": 0.055}\n");
    CHECK(lab_outcome_read(tmp_path("f.jsonl"), &o, &e) == 0 && o.collapsed && strcmp(o.why, "one prototype") == 0,
          "DINO with its teacher's entropy 0.18 of 8.32: one prototype (%s)", o.why);
    /* a noisy end is averaged: cosine 0.89 then 0.97 (SimSiam without stop-gradient at batch 64) */
    write_text("n.jsonl", "{\"step\": 5, \"loss\": -0.89, \"proj_std\": 0.3, \"eff_rank\": 3, \"mean_cos\": 0.89}\n"
                          "{\"step\": 6, \"loss\": -0.97, \"proj_std\": 0.3, \"eff_rank\": 3, \"mean_cos\": 0.97}\n");
    CHECK(lab_outcome_read(tmp_path("n.jsonl"), &o, &e) == 0 && fabs(o.mean_cos - 0.93) < 1e-12 && o.collapsed,
          "the mean cosine 0.93 at std 0.3: collapsed (%g, %s)", o.mean_cos, o.why);
    /* to uniform while the student follows: DINO without sharpening after 500 steps; DINO itself */
    write_text("u.jsonl", "{\"step\": 5, \"loss\": 8.24, \"proj_std\": 0.37, \"eff_rank\": 2, \"teacher_entropy\": 8.22, "
                          "\"entropy_uniform\": 8.3178, \"kl\": 0.021}\n");
    CHECK(lab_outcome_read(tmp_path("u.jsonl"), &o, &e) == 0 && o.collapsed && strcmp(o.why, "uniform") == 0,
          "entropy 0.988 of ln K, KL 0.021: uniform (%s)", o.why);
    write_text("v.jsonl", "{\"step\": 5, \"loss\": 7.9, \"proj_std\": 0.48, \"eff_rank\": 4, \"teacher_entropy\": 7.84, "
                          "\"entropy_uniform\": 8.3178, \"kl\": 0.1}\n");
    CHECK(lab_outcome_read(tmp_path("v.jsonl"), &o, &e) == 0 && !o.collapsed, "DINO's own figures: learning (%s)", o.why);
    /* the trivial solution by agreement: spread above both thresholds, predictions at the targets */
    write_text("g.jsonl", "{\"step\": 5, \"loss\": -0.968, \"proj_std\": 0.258, \"eff_rank\": 2.28, \"mean_cos\": 0.968}\n");
    CHECK(lab_outcome_read(tmp_path("g.jsonl"), &o, &e) == 0 && o.collapsed && strcmp(o.why, "agreement") == 0 &&
              o.mean_cos == 0.968, "cosine 0.968 at std 0.258: collapsed (%s)", o.why);
    write_text("h.jsonl", "{\"step\": 5, \"loss\": 0.61, \"proj_std\": 0.654, \"eff_rank\": 2.14, \"mean_cos\": 0.847}\n");
    CHECK(lab_outcome_read(tmp_path("h.jsonl"), &o, &e) == 0 && !o.collapsed && o.why[0] == 0, "BYOL's figures: healthy");
    CHECK(lab_outcome_read(tmp_path("missing.jsonl"), &o, &e) < 0 && strstr(e.msg, "missing.jsonl"), "%s", e.msg);
}

/* Counts pixels within 12 of rgb in each channel. */
static long count_color(const uint8_t *px, long n, int r, int g, int b) {
    long k = 0;
    for (long i = 0; i < n; i++)
        k += abs(px[3 * i] - r) < 12 && abs(px[3 * i + 1] - g) < 12 && abs(px[3 * i + 2] - b) < 12;
    return k;
}

static void test_figure_svg_and_png(void) {
    char a[4096] = "", b[4096] = "";
    for (int s = 0; s <= 100; s += 5) { /* one run holds up, one collapses */
        char line[512];
        snprintf(line, sizeof line, "{\"step\": %d, \"loss\": %g, \"proj_std\": %g, \"eff_rank\": %g}\n", s, 3.0 - s / 50.0,
                 0.8, 8.0);
        strcat(a, line);
        snprintf(line, sizeof line, "{\"step\": %d, \"loss\": %g, \"proj_std\": %g, \"eff_rank\": %g}\n", s,
                 3.0 - s / 35.0, 0.8 - s / 130.0, 8.0 - s / 14.0);
        strcat(b, line);
        if (s % 25 == 0) {
            snprintf(line, sizeof line, "{\"step\": %d, \"knn_top1\": %g, \"knn_target_top1\": %g}\n", s, 0.3 + s / 500.0,
                     0.32 + s / 500.0);
            strcat(a, line);
            strcat(b, line);
        }
    }
    write_text("r1.jsonl", a);
    write_text("r2.jsonl", b);
    const char *paths[2] = {tmp_path("r1.jsonl"), tmp_path("r2.jsonl")}, *labels[2] = {"BYOL", "no predictor"};
    char svg[1200], png[1200];
    snprintf(svg, sizeof svg, "%s", tmp_path("lab.svg"));
    snprintf(png, sizeof png, "%s", tmp_path("lab.png"));
    Err e;
    CHECK(plot_lab_svg(paths, labels, 2, "The collapse lab", svg, &e) == 0, "%s", e.msg);
    char *s = slurp_text("lab.svg");
    int variants = 0, std_lines = 0, target_dashed = 0;
    for (const char *p = s; (p = strstr(p, "class=\"variant\"")); p++) variants++;
    for (const char *p = s; (p = strstr(p, "<polyline class=\"proj_std\"")); p++) std_lines++;
    for (const char *p = s; (p = strstr(p, "class=\"knn_target_top1\"")); p++)
        target_dashed += strstr(p, "stroke-dasharray") && strstr(p, "stroke-dasharray") < strchr(p, '>');
    CHECK(variants == 2 && std_lines == 2 && target_dashed == 2, "legend %d, std curves %d, dashed target kNN %d",
          variants, std_lines, target_dashed);
    CHECK(strstr(s, ">no predictor</text>") && strstr(s, "class=\"threshold\""), "labels and the collapse thresholds");
    free(s);
    CHECK(svg_render_png(svg, png, &e) == 0, "%s", e.msg);
    Image im = {0};
    if (image_decode_file(&im, png, 3, 0, &e) == 0) {
        const long n = (long)im.w * im.h;
        CHECK(im.w == 960 && im.c == 3, "960 px wide, RGB: %dx%dx%d", im.w, im.h, im.c);
        CHECK(count_color(im.px, n, 0xfa, 0xfa, 0xfa) > n / 4, "mostly the background");
        CHECK(count_color(im.px, n, 0x1f, 0x77, 0xb4) > 300 && count_color(im.px, n, 0xd6, 0x27, 0x28) > 300,
              "both variants' colours drawn: %ld %ld", count_color(im.px, n, 0x1f, 0x77, 0xb4),
              count_color(im.px, n, 0xd6, 0x27, 0x28));
        long dark = 0; /* the title's text, centred in the top 40 rows */
        for (int y = 10; y < 40; y++)
            for (int x = 300; x < 660; x++) dark += im.px[3 * ((size_t)y * im.w + x)] < 100;
        CHECK(dark > 100, "the title is drawn: %ld dark pixels", dark);
        image_free(&im);
    } else {
        CHECK(0, "the PNG reads back: %s", e.msg);
    }
    write_text("bad.svg", "<html></html>");
    CHECK(svg_render_png(tmp_path("bad.svg"), tmp_path("bad.png"), &e) < 0 && strstr(e.msg, "bad.svg"), "%s", e.msg);
}

/* byol lab on two variants: the report, the figure, each variant's run. */
static void test_lab_end_to_end(void) {
    char data[600], cmd[8192];
    extract_cifar_subset(data, sizeof data);
    snprintf(cmd, sizeof cmd, "%s lab --data %s --only byol,no-predictor,dino --budget 15 --quick --batch 16 --width 4 --out %s/lab --threads 2 "
                              "> %s/out 2> %s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", data, TEST_TMP, TEST_TMP, TEST_TMP);
    const int st = sh_status(cmd);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    char *r = slurp_text("lab/report.md");
    CHECK(strstr(r, "| BYOL |") && strstr(r, "| no predictor | `--no-predictor` |") && strstr(r, "| DINO |") &&
              !strstr(r, "| SimSiam |"),
          "a row per variant run: %s", r);
    CHECK(strstr(r, "variants reproduce the papers' outcome") && (strstr(r, "AMD") || strstr(r, "Intel") || strstr(r, "CPU")),
          "the verdict and the machine: %s", r);
    free(r);
    struct stat sb;
    CHECK(stat(tmp_path("lab/lab.svg"), &sb) == 0 && stat(tmp_path("lab/lab.png"), &sb) == 0 && sb.st_size > 5000,
          "lab.svg and lab.png");
    char *m = slurp_text("lab/no-predictor/metrics.jsonl");
    CHECK(strstr(m, "\"knn_target_top1\""), "the periodic kNN of both encoders: %s", m);
    char *cfg = slurp_text("lab/no-predictor/config.txt");
    CHECK(strstr(cfg, "no-predictor = 1") && strstr(cfg, "width = 4") && strstr(cfg, "data = /"),
          "the variant's recipe is saved, its data absolute: %s", cfg);
    free(cfg);
    char bin[PATH_MAX];
    if (!realpath(getenv("BYOL") ? getenv("BYOL") : "./byol", bin)) snprintf(bin, sizeof bin, "./byol");
    snprintf(cmd, sizeof cmd, "cd / && %s eval --ckpt %s/lab/no-predictor --eval-bank 50 --eval-queries 50 "
                              "--probe-iters 10 > /dev/null 2> %s/err", bin, TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "byol eval rebuilds the variant's model from its checkpoint, from any folder");
    snprintf(cmd, sizeof cmd, "cd / && %s eval --ckpt %s/lab/dino --eval-bank 50 --eval-queries 50 --probe-iters 10 "
                              "> %s/dino_eval 2> %s/err", bin, TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "byol eval of a DINO checkpoint (its head, its center)");
    char *de = slurp_text("dino_eval");
    CHECK(strstr(de, "\"knn_top1\""), "its figures: %s", de);
    free(de);
    char *dm = slurp_text("lab/dino/metrics.jsonl");
    CHECK(strstr(dm, "\"teacher_entropy\"") && strstr(dm, "\"kl\""), "DINO's monitors in its metrics: %.300s", dm);
    free(dm);
    /* --report-only: the report again from the runs, with no training (no new step in metrics) */
    if (remove(tmp_path("lab/report.md")) != 0 || remove(tmp_path("lab/lab.png")) != 0) CHECK(0, "removing the report");
    snprintf(cmd, sizeof cmd, "%s lab --report-only --only byol,no-predictor,dino,simsiam --out %s/lab > %s/out 2> %s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "--report-only");
    char *r2 = slurp_text("lab/report.md");
    CHECK(strstr(r2, "| BYOL |") && strstr(r2, "| DINO |") && !strstr(r2, "| SimSiam |") &&
              stat(tmp_path("lab/lab.png"), &sb) == 0,
          "the same rows (SimSiam never ran) and the figure: %s", r2);
    free(r2);
    char *m2 = slurp_text("lab/no-predictor/metrics.jsonl");
    CHECK(strlen(m2) == strlen(m), "no training: its metrics unchanged");
    free(m2);
    snprintf(cmd, sizeof cmd, "%s lab --report-only --out %s/nothing_here > /dev/null 2> %s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 1, "--report-only on a missing folder is refused");
    snprintf(cmd, sizeof cmd, "%s lab --only nothing --out %s/lab2 > /dev/null 2> %s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 2, "an unknown variant is refused");
    free(m);
}

/* The variants: each of the table, --quick's six among them with both outcomes. */
static void test_variants(void) {
    int n, quick = 0, quick_collapse = 0;
    const LabVariant *v = lab_variants(&n);
    CHECK(n == 11, "11 variants, got %d", n);
    for (int i = 0; i < n; i++) quick += v[i].quick, quick_collapse += v[i].quick && v[i].collapses;
    CHECK(quick == 6 && quick_collapse == 2, "--quick: 6 variants, 2 of which collapse in the papers (%d, %d)", quick,
          quick_collapse);
}

int main(void) {
    test_tmpdir("test_lab");
    RUN(test_variants);
    RUN(test_outcome_read);
    RUN(test_figure_svg_and_png);
    RUN(test_lab_end_to_end);
    return test_finish();
}
