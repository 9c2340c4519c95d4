#include "lab.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../eval/monitor.h"
#include "../eval/plot.h"
#include "../eval/svg_png.h"
#include "../io/run_dir.h"

/* ---- the variants: each a flag set of byol train ---- */

static void v_byol(TrainOptions *o) { (void)o; }
static void v_no_predictor(TrainOptions *o) { o->mc.no_predictor = 1; }
static void v_tau0(TrainOptions *o) {
    o->tau_base = 0;
    o->tau_schedule = "constant";
}
static void v_tau1(TrainOptions *o) { o->tau_base = 1; }
static void v_tau0_fast_predictor(TrainOptions *o) {
    v_tau0(o);
    o->pred_lr_mult = 10;
}
static void v_simsiam(TrainOptions *o) { o->mc.method = METHOD_SIMSIAM; }
static void v_no_head_bn(TrainOptions *o) { o->mc.head_bn = 0; }
static void v_simsiam_no_stop_grad(TrainOptions *o) {
    o->mc.method = METHOD_SIMSIAM;
    o->mc.no_stop_grad = 1;
}
/* DINO at the lab's budget: its head with batch norm (DINO's --use_bn_in_head), LARS and a
 * faster teacher; with DINO's own defaults (no batch norm in the head, SGD at 0.03, teacher EMA
 * 0.996) a few minutes of a width-8 ResNet end with the teacher uniform (docs/lab.md) */
static void v_dino(TrainOptions *o) {
    o->mc.method = METHOD_DINO;
    o->mc.head_bn = 1;
    o->optimizer = "lars";
    o->tau_base = 0.99f;
}
static void v_dino_no_center(TrainOptions *o) {
    v_dino(o);
    o->dino_center = 0;
}
static void v_dino_no_sharpen(TrainOptions *o) {
    v_dino(o);
    o->dino_teacher_temp = o->dino_warmup_teacher_temp = o->dino_student_temp;
}

static const LabVariant VARIANTS[] = {
    {"byol", "BYOL", "", "72.5 (300 epochs)", 0, v_byol, 1},
    {"no-predictor", "no predictor", "--no-predictor", "0.2", 1, v_no_predictor, 1},
    /* not in --quick: target = online collapses slowly (effective rank 2.4 after 116 steps, 1.34
     * after 1050: docs/lab.md) */
    {"tau0", "tau = 0 (target = online)", "--tau-base 0 --tau-schedule constant", "0.3", 1, v_tau0, 0},
    {"tau1", "tau = 1 (fixed random target)", "--tau-base 1", "18.8: stable, learns little", 0, v_tau1, 1},
    {"tau0-fast-predictor", "tau = 0, predictor lr x10", "--tau-base 0 --tau-schedule constant --pred-lr-mult 10",
     "66.6: a fast predictor alone prevents collapse", 0, v_tau0_fast_predictor, 0},
    {"simsiam", "SimSiam", "--method simsiam", "67.7 (100 epochs)", 0, v_simsiam, 1},
    /* batch norm in the encoder alone is enough (Richemond et al. 2020, "BYOL works even without
     * batch statistics", 72.1); it is BYOL with none anywhere that collapses (0.1), an encoder
     * without batch norm this lab does not build */
    {"no-head-bn", "no BN in the heads", "--head-bn 0",
     "72.1 with BN in the encoder only; no BN anywhere 0.1; SimSiam without head BN 34.6", 0, v_no_head_bn, 0},
    {"simsiam-no-stop-grad", "SimSiam without stop-gradient", "--method simsiam --no-stop-grad", "0.1", 1,
     v_simsiam_no_stop_grad, 1},
    {"dino", "DINO", "--method dino --head-bn 1 --optimizer lars --tau-base 0.99", "RN50 75.3", 0, v_dino, 1},
    {"dino-no-center", "DINO without centering", "(dino's) --dino-center 0",
     "collapses to one dimension (entropy -> 0)", 1, v_dino_no_center, 0},
    {"dino-no-sharpen", "DINO without sharpening", "(dino's) --dino-teacher-temp 0.1 --dino-warmup-teacher-temp 0.1",
     "collapses to uniform (entropy -> ln K)", 1, v_dino_no_sharpen, 0},
};

const LabVariant *lab_variants(int *n) {
    *n = (int)ARRAY_LEN(VARIANTS);
    return VARIANTS;
}

/* ---- reading a run's outcome ---- */

static double num(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

int lab_outcome_read(const char *metrics_path, LabOutcome *out, Err *e) {
    memset(out, 0, sizeof *out);
    out->knn = out->knn_target = -1;
    out->loss = out->std_sqrt_d = out->eff_rank = out->mean_cos = out->entropy = out->entropy_uniform = out->kl = NAN;
    out->why = "";
    size_t size;
    uint8_t *text = read_file(metrics_path, &size, e);
    if (!text) return -1;
    char *line = xmalloc(size + 1, "a metrics line");
    double tail[LAB_TAIL][LAB_FIGURES]; /* the last logged steps' figures, a ring */
    int n_tail = 0;
    for (size_t pos = 0; pos < size;) {
        size_t end = pos;
        while (end < size && text[end] != '\n') end++;
        memcpy(line, text + pos, end - pos);
        line[end - pos] = 0;
        pos = end + 1;
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        if (cJSON_GetObjectItemCaseSensitive(o, "proj_std")) { /* a logged step */
            out->steps = (long)num(o, "step", -1);
            out->elapsed_s = num(o, "elapsed_s", 0);
            out->entropy_uniform = num(o, "entropy_uniform", NAN);
            static const char *const keys[LAB_FIGURES] = {"loss", "proj_std", "eff_rank", "mean_cos", "teacher_entropy",
                                                          "kl"};
            double *row = tail[n_tail++ % LAB_TAIL];
            for (int k = 0; k < LAB_FIGURES; k++) row[k] = num(o, keys[k], NAN);
        }
        if (!cJSON_GetObjectItemCaseSensitive(o, "untrained")) {
            out->knn = num(o, "knn_top1", out->knn);
            out->knn_target = num(o, "knn_target_top1", out->knn_target);
        }
        cJSON_Delete(o);
    }
    xfree(line);
    free(text);
    /* each logged step's figures are of one batch: the end is the mean of the last LAB_TAIL */
    const int m = MIN(n_tail, LAB_TAIL);
    double *fig[LAB_FIGURES] = {&out->loss, &out->std_sqrt_d, &out->eff_rank, &out->mean_cos, &out->entropy, &out->kl};
    for (int k = 0; k < LAB_FIGURES && m; k++) {
        double sum = 0;
        for (int i = 0; i < m; i++) sum += tail[i][k];
        *fig[k] = sum / m;
    }
    out->ran = !isnan(out->std_sqrt_d);
    if (!out->ran) return 0;
    /* DINO's rule is its own (its projections are the head's bottleneck, not what the loss sees) */
    if (!isnan(out->kl)) {
        const double h = out->entropy / out->entropy_uniform;
        out->why = out->kl < DINO_KL_MIN                                  ? "KL"
                   : h > DINO_UNIFORM_FRAC && out->kl < DINO_KL_FOLLOW ? "uniform"
                   : h < DINO_ENTROPY_FRAC                               ? "one prototype"
                                                                         : "";
    }
    else out->why = collapse_sign_name(collapse_sign(&(CollapseStats){out->std_sqrt_d, out->eff_rank}, out->mean_cos));
    out->collapsed = out->why[0] != 0;
    return 0;
}

/* ---- the lab ---- */

static int selected(const LabOptions *o, const char *slug) {
    if (!o->only) return 1;
    const size_t n = strlen(slug);
    for (const char *p = o->only; *p;) {
        const size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, slug, n) == 0) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

static void pct(char *buf, size_t cap, double x) {
    if (x < 0) snprintf(buf, cap, "-");
    else snprintf(buf, cap, "%.1f", 100 * x);
}

static int write_report(const LabOptions *o, const LabVariant *v, const LabOutcome *r, int n, double per_s,
                        Err *e) {
    char path[4400];
    snprintf(path, sizeof path, "%s/report.md", o->out);
    size_t cap = 16384, len = 0;
    char *b = xmalloc(cap, "the lab's report");
#define ADD(...) len += (size_t)snprintf(b + len, len < cap ? cap - len : 0, __VA_ARGS__)
    ADD("# Why BYOL does not collapse: the collapse lab\n\n");
    ADD("Data: %s. Each variant trained %.0f s on %s (%d threads) from the same seed (%d), byol train's "
        "CPU recipe otherwise; kNN (k 200, T 0.1) on %s. A run collapsed when, at its end (the collapse "
        "monitor's rule), std x sqrt(D) of its projections < %g (std: all alike), or their effective rank "
        "< %g (rank: one direction), or its predictions match their targets, mean cosine > %g, while std x "
        "sqrt(D) < %g (agreement: the trivial solution's zero loss); a DINO run when the KL between its "
        "teacher and student < %g (KL), or its teacher's entropy > %g of ln K with the KL < %g (uniform), "
        "or its teacher's entropy < %g of ln K (one prototype).\n\n",
        o->data ? o->data : "Fashion-MNIST (Debian's dataset-fashion-mnist)", per_s, machine_cpu_name(),
        threads_get(), o->seed, o->quick ? "1000 train images as the bank and 500 test queries"
                                        : "2000 train images as the bank and 1000 test queries",
        COLLAPSE_STD_MIN, COLLAPSE_RANK_MIN, COLLAPSE_AGREE_COS, COLLAPSE_AGREE_STD, DINO_KL_MIN, DINO_UNIFORM_FRAC, DINO_KL_FOLLOW,
        DINO_ENTROPY_FRAC);
    ADD("| variant | flags | published (ImageNet linear top-1 unless noted) | papers | steps | kNN online | "
        "kNN target | std x sqrt(D) | eff. rank | cosine | teacher entropy / ln K, KL | ours |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int agree = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        if (!r[i].ran) continue;
        char k1[16], k2[16], dino[64] = "-", cosine[16] = "-", ours[48] = "did not";
        pct(k1, sizeof k1, r[i].knn);
        pct(k2, sizeof k2, r[i].knn_target);
        if (!isnan(r[i].kl))
            snprintf(dino, sizeof dino, "%.2f / %.2f, %.2g", r[i].entropy, r[i].entropy_uniform, r[i].kl);
        if (!isnan(r[i].mean_cos)) snprintf(cosine, sizeof cosine, "%.3f", r[i].mean_cos);
        if (r[i].collapsed) snprintf(ours, sizeof ours, "**collapsed** (%s)", r[i].why);
        ADD("| %s | `%s` | %s | %s | %ld | %s | %s | %.3f | %.2f | %s | %s | %s |\n", v[i].name,
            v[i].flags[0] ? v[i].flags : "-", v[i].published, v[i].collapses ? "collapses" : "does not", r[i].steps, k1,
            k2, r[i].std_sqrt_d, r[i].eff_rank, cosine, dino, ours);
        ran++;
        agree += r[i].collapsed == v[i].collapses;
    }
    ADD("\n%d of %d variants reproduce the papers' outcome (collapse or not).\n\n", agree, ran);
    ADD("The figure: lab.png (lab.svg). Each variant's run is in its folder (metrics.jsonl, a checkpoint): "
        "`byol eval --ckpt %s/<variant>` evaluates one in full, and any variant runs alone as "
        "`byol train` with its flags.\n", o->out);
#undef ADD
    if (len >= cap) len = cap - 1;
    int rc = atomic_write_file(path, b, len, e);
    xfree(b);
    return rc;
}

int lab_run(const LabOptions *o) {
    int n_all;
    const LabVariant *all = lab_variants(&n_all);
    LabVariant v[ARRAY_LEN(VARIANTS)];
    int n = 0;
    for (int i = 0; i < n_all; i++) /* --quick without --only: its six */
        if (selected(o, all[i].slug) && (o->only || !o->quick || all[i].quick)) v[n++] = all[i];
    Err e;
    if (!n) {
        fprintf(stderr, "byol lab: --only %s: no such variant\n", o->only);
        return 2;
    }
    char dir[4096], failed[4096];
    snprintf(dir, sizeof dir, "%s", o->out);
    if (o->report_only) {
        if (access(o->out, F_OK) != 0) {
            fprintf(stderr, "byol lab: --report-only: --out %s: no such folder (a lab's folder, with its variants' "
                            "runs)\n", o->out);
            return 1;
        }
    } else if (make_parent_dirs(dir, failed, sizeof failed)) {
        fprintf(stderr, "byol lab: --out %s: cannot create %s\n", o->out, failed);
        return 1;
    }
    if (!o->report_only && run_dir_create(dir, sizeof dir, 0, &e)) {
        fprintf(stderr, "byol lab: %s\n", e.msg);
        return 1;
    }
    double per_s = o->budget_s / n;
    if (!o->report_only)
        printf("byol lab: %d variants x %.0f s of training on %s, out %s\n", n, per_s,
               o->data ? o->data : "Fashion-MNIST", o->out);
    fflush(stdout);
    LabOutcome r[ARRAY_LEN(VARIANTS)];
    memset(r, 0, sizeof r);
    const char *paths[ARRAY_LEN(VARIANTS)], *labels[ARRAY_LEN(VARIANTS)];
    char path_buf[ARRAY_LEN(VARIANTS)][4400];
    int rc = 0, np = 0;
    double trained_s = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (o->report_only) { /* the runs as they are; a variant never run is left out */
            snprintf(path_buf[i], sizeof path_buf[i], "%s/%s/metrics.jsonl", o->out, v[i].slug);
            if (access(path_buf[i], R_OK) == 0 && lab_outcome_read(path_buf[i], &r[i], &e) == 0 && r[i].ran) {
                paths[np] = path_buf[i];
                labels[np++] = v[i].name;
                trained_s += r[i].elapsed_s;
            }
            continue;
        }
        TrainOptions t;
        train_options_default(&t);
        t.data.data = o->data;
        train_data_absolute(&t);
        snprintf(t.out_buf, sizeof t.out_buf, "%s/%s", o->out, v[i].slug);
        t.out = t.out_buf;
        t.time_budget = (float)per_s;
        t.knn_every_s = (float)fmax(per_s / 6, 3); /* six points; at least 3 s of training between them */
        t.eval_every = 0;
        t.eval_bank = o->quick ? 1000 : 2000;
        t.eval_queries = o->quick ? 500 : 1000;
        t.knn_before = 0;
        t.log_every = 2;
        t.keep = 1;
        t.ckpt_minutes = 0;
        t.quiet = 1;
        t.seed = o->seed;
        if (o->batch) t.batch = o->batch;
        if (o->width) t.mc.enc.width = o->width;
        t.threads = o->threads;
        v[i].apply(&t);
        printf("\n== %s (%s)\n", v[i].name, v[i].flags[0] ? v[i].flags : "the base recipe");
        fflush(stdout);
        CkptMeta meta;
        memset(&meta, 0, sizeof meta);
        const TrainSetup setup = {o->be, "", NULL, &meta, o->config_text, &t};
        TrainResult res;
        rc = train_run(&t, &setup, &res);
        snprintf(path_buf[i], sizeof path_buf[i], "%s/metrics.jsonl", t.out);
        if (rc == 0 && lab_outcome_read(path_buf[i], &r[i], &e) == 0 && r[i].ran) {
            paths[np] = path_buf[i];
            labels[np++] = v[i].name;
            printf("%s: %ld steps, loss %.4f, std x sqrt(D) %.3f, effective rank %.2f, kNN %.1f%% (target %.1f%%): "
                   "%s%s (the papers: %s)\n", v[i].name, r[i].steps, r[i].loss, r[i].std_sqrt_d, r[i].eff_rank,
                   100 * r[i].knn, 100 * r[i].knn_target, r[i].collapsed ? "collapsed, by " : "did not collapse",
                   r[i].why, v[i].collapses ? "collapses" : "does not");
        }
    }
    if (o->report_only) {
        if (!np) {
            fprintf(stderr, "byol lab: --report-only: %s holds no variant's run (metrics.jsonl)\n", o->out);
            return 1;
        }
        per_s = trained_s / np;
    }
    if (np) {
        char svg[4400], png[4400];
        snprintf(svg, sizeof svg, "%s/lab.svg", o->out);
        snprintf(png, sizeof png, "%s/lab.png", o->out);
        if (plot_lab_svg(paths, labels, np, "The collapse lab: BYOL and its ablations", svg, &e) ||
            svg_render_png(svg, png, &e) || write_report(o, v, r, n, per_s, &e)) {
            fprintf(stderr, "byol lab: %s\n", e.msg);
            return rc ? rc : 1;
        }
        printf("\nreport %s/report.md, figure %s (and .svg)\n", o->out, png);
    }
    return rc;
}
