/* byol bench: time whole BYOL steps on synthetic views and say where the time goes.
 *
 * Every timed step runs through the profiling wrapper (src/backend/profile.c), which adds two
 * clock reads per kernel call (a few hundred per step, well under 0.1% of a step). The SGEMM
 * rate is measured in the same process, so the convolution phases can be read against what
 * the GEMM library reaches on these cores right now. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "../backend/gemm.h"
#include "../backend/profile.h"
#include "../core/common.h"
#include "../core/rng.h"
#include "../core/threads.h"
#include "../dist/balance.h"
#include "../dist/dist.h"
#include "../model/byol.h"
#include "../nn/conv_plan.h"
#include "args.h"
#include "commands.h"

static const char *USAGE =
    "usage: byol bench [model flags] [--batch B] [--image-size S] [--steps N] [--threads T]\n"
    "       mpirun -np P byol bench ...   (data-parallel: --batch is the global batch)\n"
    "Times full BYOL steps (two views: online+predictor forward/backward, target forwards,\n"
    "LARS, EMA) on synthetic inputs after one warm-up step. Prints the median ms/step,\n"
    "images/s, GFLOP/s, peak memory and a breakdown by phase; the last line is JSON.\n"
    "--plan (alone: --plan report) measures every convolution's kernels afresh and prints each\n"
    "layer's choice with the GFLOP/s of every kernel that applies.";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* GFLOP/s of one large SGEMM shaped like a convolution's (many rows, a few hundred columns),
 * best of three, with the threads the step uses. */
static double sgemm_rate(void) {
    const int M = 4096, N = 256, K = 2304;
    float *a = xcalloc((size_t)M * K, sizeof(float), "sgemm bench");
    float *b = xcalloc((size_t)N * K, sizeof(float), "sgemm bench");
    float *c = xcalloc((size_t)M * N, sizeof(float), "sgemm bench");
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = now_seconds();
        sgemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = now_seconds() - t0;
        if (r > 0 && dt < best) best = dt; /* the first run warms caches and thread pools */
    }
    xfree(a), xfree(b), xfree(c);
    return 2.0 * M * N * K / best / 1e9;
}

/* One step on this rank's shard of the plan's cut; views hold [2][reach] images from `first`. */
static float shard_step(Byol *m, ByolWork *w, const ShardPlan *plan, int rank, const float *views,
                        int first, int reach, const StepConfig *sc, const Backend *be) {
    const size_t image = (size_t)w->C * w->H * w->W, at = (size_t)(plan->cut[rank] - first);
    byol_work_set_shard(w, plan->cut[rank + 1] - plan->cut[rank]);
    profile_head_rows(w->n);
    return byol_step_views(m, w, views + at * image, views + (reach + at) * image, sc, be);
}

int cmd_bench(int argc, char **argv) {
    ModelConfig mc;
    model_config_default(&mc);
    int batch = 64, size = 32, steps = 10, threads = 0;
    float comm_timeout = 300;
    int sync_bn = 1, balance = 0;
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    Flag flags[8 + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT] = {
        {"batch", FLAG_INT, &batch, "images per step (64)", 2, 1 << 16},
        {"image-size", FLAG_INT, &size, "view height and width (32)", 1, 4096},
        {"steps", FLAG_INT, &steps, "timed steps after one warm-up (10)", 1, 100000},
        {"threads", FLAG_INT, &threads, "compute threads (the cores this process may use: affinity mask, cgroup quota; ranks sharing cores split them)", 1, 4096},
        {"sync-bn", FLAG_INT, &sync_bn, "under mpirun: batch norm over the global batch, 0 or 1 (1)", 0, 1},
        {"comm-timeout", FLAG_FLOAT, &comm_timeout, "under mpirun: seconds to wait for the other ranks (300)", 1, 1e6},
        {"balance", FLAG_INT, &balance, "under mpirun: shards sized by each rank's measured speed, 0 or 1 (0)", 0, 1},
    };
    int nf = 7;
    compute_flags(flags + nf, &po);
    nf += COMPUTE_FLAG_COUNT;
    model_flags(flags + nf, &mc);
    nf += MODEL_FLAG_COUNT;
    /* a bare --plan (last, or before another flag) asks for the report */
    char **args = xmalloc(sizeof(char *) * (argc + 1), "arguments");
    for (int i = 0; i < argc; i++) {
        const int bare = strcmp(argv[i], "--plan") == 0 && (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0);
        args[i] = bare ? "--plan=report" : argv[i];
    }
    Err e;
    int rc = flags_parse(argc, args, flags, nf, USAGE, &e);
    xfree(args);
    if (rc == 1) return 0;
    if (rc || model_config_check(&mc, &e)) return cmd_fail("bench", &e, 2);
    if ((double)batch * size * size * mc.enc.in_channels > (double)(1L << 31) / 64)
        return err_set(&e, "--batch %d with --image-size %d is too large for one step", batch, size),
               cmd_fail("bench", &e, 2);
    /* Data-parallel: --batch is the global batch, each rank steps on its shard. */
    const int P = dist_size();
    if (batch % P != 0 || batch / P < 2)
        return err_set(&e, "--batch %d does not split into %d equal shards of at least 2 images", batch, P),
               cmd_fail("bench", &e, 2);
    threads_set(threads ? threads : dist_default_threads());
    dist_set_timeout(comm_timeout);
    int report = 0;
    if (plan_apply(&po, &report, &e)) return cmd_fail("bench", &e, 2);
    const Backend *dev = compute_backend(&po, &e);
    if (!dev) return cmd_fail("bench", &e, 2);
    ShardPlan plan;
    shard_plan_init(&plan, batch, P, balance);
    int first, reach;
    shard_plan_reach(&plan, dist_rank(), &first, &reach);
    const int local = shard_plan_max(&plan);

    Byol model;
    byol_init(&model, &mc);
    byol_init_weights(&model, 0);
    const int C = mc.enc.in_channels;
    byol_place(&model, dev);
    ByolWork work;
    byol_work_init(&work, &model, local, C, size, size, dev);
    byol_work_distribute(&work, &model, sync_bn, batch);
    const size_t image = (size_t)C * size * size, n_views = 2 * (size_t)reach * image;
    float *views = xmalloc(n_views * sizeof(float), "synthetic views");
    Rng key = rng_keyed(1, 2, 3, 4);
    for (size_t i = 0; i < n_views; i++) views[i] = (float)(rng_u01(&key) * 2.0 - 1.0);
    StepConfig sc = {{.lr = 0.1f, .weight_decay = 1e-5f, .momentum = 0.9f, .eta = 0.02f, .mult_from = 0, .lr_mult = 1.0f}, 0.99f, DINO_CONFIG_DEFAULT};

    Profile prof;
    const int rank = dist_rank();
    const Backend *be = profile_begin(dev, &prof, local);
    shard_step(&model, &work, &plan, rank, views, first, reach, &sc, be); /* warm-up: page faults, thread pools */
    shard_plan_update(&plan, rank, work.compute_seconds);
    /* A device's steps are timed unprofiled (profiling synchronizes around every kernel); its
     * phase table comes from as many profiled steps after them. */
    be = dev->host_memory ? profile_begin(dev, &prof, local) : dev;
    double *dt = xmalloc(sizeof(double) * steps, "step times");
    float loss = 0;
    dist_wait_seconds(1);
    for (int i = 0; i < steps; i++) {
        dist_heartbeat(i);
        double t0 = now_seconds();
        loss = shard_step(&model, &work, &plan, rank, views, first, reach, &sc, be);
        dt[i] = now_seconds() - t0;
        shard_plan_update(&plan, rank, work.compute_seconds);
    }
    if (!dev->host_memory) {
        be = profile_begin(dev, &prof, local);
        for (int i = 0; i < steps; i++) shard_step(&model, &work, &plan, rank, views, first, reach, &sc, be);
    }
    /* time blocked on other ranks, per step: synchronized batch norm and the gradient
     * all-reduce, here and on the rank that waited most */
    const DistWait waited = dist_wait_seconds(1);
    const double bn_ms = waited.bn / steps * 1e3, grad_ms = waited.grads / steps * 1e3;
    const double wait_ms = bn_ms + grad_ms;
    double most[3] = {wait_ms, bn_ms, grad_ms};
    dist_allreduce_max_f64(most, 3, "the bench report");
    qsort(dt, steps, sizeof(double), cmp_double);
    const double median = steps % 2 ? dt[steps / 2] : 0.5 * (dt[steps / 2 - 1] + dt[steps / 2]);
    double total_s = 0, flops = 0;
    for (int p = 0; p < PHASE_COUNT; p++) total_s += prof.seconds[p], flops += prof.flops[p];
    flops /= steps;
    const double gemm = sgemm_rate();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mb = ru.ru_maxrss / 1024.0;

    printf("byol bench: %s width %d, %s stem, %dx%dx%d, batch %d, heads %d/%d/%d, %d threads (%s), device %s\n",
           arch_name(mc.enc.arch), mc.enc.width, stem_name(mc.enc.stem), C, size, size, batch,
           mc.proj_hidden, mc.proj_dim, mc.pred_hidden, threads_get(), threads_backend_summary(),
           po.device ? po.device : "cpu");
    if (P > 1 && plan.margin > 0) {
        printf("balanced shards (up to %d images either way), at the end:", plan.margin);
        shard_plan_print_sizes(&plan, stdout);
    }
    if (P > 1)
        printf("%d ranks x %d images; waiting on communication %.1f ms/step (%.1f%% of the step: "
               "batch norm %.1f, gradients %.1f; most on any rank %.1f: %.1f + %.1f; "
               "phases below: rank 0, waits included in batch norm and optimizer)\n",
               P, batch / P, wait_ms, 100 * wait_ms / (median * 1e3), bn_ms, grad_ms, most[0], most[1], most[2]);
    printf("median %.1f ms/step (min %.1f, max %.1f over %d steps), %.1f images/s, %.1f GFLOP/step, "
           "%.1f GFLOP/s, peak RSS %.0f MB, loss %.4f\n",
           median * 1e3, dt[0] * 1e3, dt[steps - 1] * 1e3, steps, batch / median, flops * P / 1e9,
           flops * P / median / 1e9, rss_mb, loss);
    printf("SGEMM 4096x256x2304 in this process: %.1f GFLOP/s\n", gemm);
    char plan_line[512];
    conv_plan_summary(plan_line, sizeof plan_line);
    printf("%s\n", plan_line);
    printf("%-22s %9s %6s %9s %8s\n", "phase", "ms/step", "share", "GFLOP/s", "of SGEMM");
    for (int p = 0; p < PHASE_COUNT; p++) {
        double ms = prof.seconds[p] / steps * 1e3, share = prof.seconds[p] / total_s;
        if (prof.flops[p] > 0) {
            double rate = prof.flops[p] / prof.seconds[p] / 1e9;
            printf("%-22s %9.1f %5.1f%% %9.1f %7.0f%%\n", PHASE_NAMES[p], ms, 100 * share, rate,
                   100 * rate / gemm);
        } else {
            printf("%-22s %9.1f %5.1f%% %9s %8s\n", PHASE_NAMES[p], ms, 100 * share, "-", "-");
        }
    }
    if (report && rank == 0) conv_plan_report(stdout);
    printf("{\"arch\": \"%s\", \"width\": %d, \"stem\": \"%s\", \"batch\": %d, \"image_size\": %d, "
           "\"channels\": %d, \"threads\": %d, \"ranks\": %d, \"comm_wait_ms\": %.3f, "
           "\"bn_wait_ms\": %.3f, \"grad_wait_ms\": %.3f, \"max_comm_wait_ms\": %.3f, "
           "\"ms_per_step\": %.3f, \"images_per_s\": %.3f, "
           "\"gflop_per_step\": %.4f, \"gflops\": %.3f, \"sgemm_gflops\": %.3f, \"peak_rss_mb\": %.1f, "
           "\"phases\": {",
           arch_name(mc.enc.arch), mc.enc.width, stem_name(mc.enc.stem), batch, size, C,
           threads_get(), P, wait_ms, bn_ms, grad_ms, most[0], median * 1e3, batch / median, flops * P / 1e9,
           flops * P / median / 1e9, gemm, rss_mb);
    for (int p = 0; p < PHASE_COUNT; p++)
        printf("%s\"%s\": {\"ms\": %.3f, \"gflops\": %.3f}", p ? ", " : "", PHASE_NAMES[p],
               prof.seconds[p] / steps * 1e3,
               prof.flops[p] > 0 ? prof.flops[p] / prof.seconds[p] / 1e9 : 0.0);
    printf("}}\n");
    xfree(dt);
    xfree(views);
    shard_plan_free(&plan);
    byol_work_free(&work);
    byol_free(&model);
    if (!isfinite(loss))
        return err_set(&e, "the loss is %g on synthetic views (a kernel is broken)", loss),
               cmd_fail("bench", &e, 1);
    return 0;
}
