/* byol step: run N BYOL steps from a saved state on given views, write the new state. The bridge
 * to PyTorch: same state file in, same views, same numbers out. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../dist/dist.h"
#include "../io/npy.h"
#include "../io/state.h"
#include "../train/train.h"
#include "args.h"
#include "commands.h"

static const char *USAGE =
    "usage: byol step --state IN.safetensors --views VIEWS.npy --out OUT.safetensors [flags]\n"
    "Runs one BYOL step per entry of VIEWS ([N, 2, B, C, H, W] float32, view 1 then view 2)\n"
    "with fixed lr and tau, prints 'step i loss X', and writes the updated state.";

/* Fails early (before any compute) when the output folder cannot take the file. */
static int check_writable_dir(const char *path, Err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    const char *dir = dirname(buf);
    if (access(dir, W_OK) != 0)
        return err_set(e, "--out %s: folder '%s' does not exist or is not writable", path, dir);
    return 0;
}

int cmd_step(int argc, char **argv) {
    ModelConfig mc;
    model_config_default(&mc);
    const char *state_in = NULL, *views_path = NULL, *out_path = NULL;
    StepConfig sc = {{.lr = 0.5f, .weight_decay = 1e-5f, .momentum = 0.9f, .eta = 0.001f, .mult_from = 0, .lr_mult = 1.0f}, 0.99f, DINO_CONFIG_DEFAULT};
    int threads = 0;
    float comm_timeout = 300;
    int sync_bn = 1;
    const char *shards_list = NULL, *optimizer = NULL;
    int adam_step = 0;
    float pred_lr = NAN;
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    Flag flags[22 + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT] = {
        {"state", FLAG_STRING, &state_in, "input state (safetensors)", 0, -1},
        {"views", FLAG_STRING, &views_path, "views [N, 2, B, C, H, W] (npy, float32)", 0, -1},
        {"out", FLAG_STRING, &out_path, "output state (safetensors)", 0, -1},
        {"lr", FLAG_FLOAT, &sc.lars.lr, "learning rate (0.5)", 0, 1e6},
        {"weight-decay", FLAG_FLOAT, &sc.lars.weight_decay, "weight decay (1e-5)", 0, 1e3},
        {"momentum", FLAG_FLOAT, &sc.lars.momentum, "SGD momentum (0.9)", 0, 1},
        {"lars-eta", FLAG_FLOAT, &sc.lars.eta, "LARS trust coefficient (0.001)", 0, 1e6},
        {"tau", FLAG_FLOAT, &sc.tau, "target EMA decay (0.99)", 0, 1},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota; ranks sharing cores split them)", 1, 4096},
        {"sync-bn", FLAG_INT, &sync_bn, "under mpirun: batch norm over the global batch, 0 or 1 (1)", 0, 1},
        {"comm-timeout", FLAG_FLOAT, &comm_timeout, "under mpirun: seconds to wait for the other ranks (300)", 1, 1e6},
        {"shards", FLAG_STRING, &shards_list, "under mpirun: images per rank, comma-separated (equal shards)", 0, -1},
        {"optimizer", FLAG_STRING, &optimizer, "lars, sgd or adamw (the method's: byol lars, simsiam and dino sgd)", 0, -1},
        {"pred-lr", FLAG_FLOAT, &pred_lr, "the predictor's learning rate (--lr)", 0, 1e6},
        {"dino-teacher-temp", FLAG_FLOAT, &sc.dino.teacher_temp, "dino: the teacher's temperature (0.07)", 1e-4, 100},
        {"dino-student-temp", FLAG_FLOAT, &sc.dino.student_temp, "dino: the student's temperature (0.1)", 1e-4, 100},
        {"dino-center", FLAG_INT, &sc.dino.center, "dino: center the teacher's outputs, 0 or 1 (1)", 0, 1},
        {"dino-center-momentum", FLAG_FLOAT, &sc.dino.center_momentum, "dino: the center's EMA decay (0.9)", 0, 1},
        {"no-stop-grad", FLAG_SWITCH, &mc.no_stop_grad, "simsiam without its stop-gradient (an ablation)", 0, 1},
        {"adam-step", FLAG_INT, &adam_step, "adamw: the steps the state has taken (0)", 0, 2147483647},
    };
    int nf = 20;
    compute_flags(flags + nf, &po);
    nf += COMPUTE_FLAG_COUNT;
    model_flags(flags + nf, &mc);
    nf += MODEL_FLAG_COUNT;
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, USAGE, &e);
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 2;
    }
    if (model_config_check(&mc, &e)) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 2;
    }
    model_config_resolve(&mc);
    const int sgd = train_optimizer_resolve(&optimizer, mc.method, &e);
    if (sgd < 0) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 2;
    }
    sc.lars.sgd = sgd == 1;
    if (sgd == 2) sc.lars.adamw = 1, sc.lars.beta1 = 0.9f, sc.lars.beta2 = 0.999f, sc.lars.eps = 1e-8f;
    if (!isnan(pred_lr)) sc.lars.tail_absolute = 1, sc.lars.lr_mult = pred_lr; /* mult_from: the model's */
    if (!state_in || !views_path || !out_path) {
        fprintf(stderr, "byol step: --state, --views and --out are required (see --help)\n");
        return 2;
    }
    if (check_writable_dir(out_path, &e)) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 1;
    }
    threads_set(threads ? threads : dist_default_threads());
    dist_set_timeout(comm_timeout);
    const Backend *be = NULL;
    if (plan_apply(&po, NULL, &e) || !(be = compute_backend(&po, &e))) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 2;
    }

    NpyArray views;
    if (npy_read_f32(views_path, &views, &e)) {
        fprintf(stderr, "byol step: %s\n", e.msg);
        return 1;
    }
    if (views.ndim != 6 || views.shape[1] != 2) {
        fprintf(stderr, "byol step: %s: views must have shape [N, 2, B, C, H, W], found a %d-d array%s\n",
                views_path, views.ndim, views.ndim == 6 ? " with shape[1] != 2" : "");
        npy_free(&views);
        return 1;
    }
    for (int d = 0; d < 6; d++)
        if (views.shape[d] < 1 || views.shape[d] > 65536) {
            fprintf(stderr, "byol step: %s: views dimension %d is %lld (expected 1..65536)\n",
                    views_path, d, (long long)views.shape[d]);
            npy_free(&views);
            return 1;
        }
    const int N = (int)views.shape[0], B = (int)views.shape[2], C = (int)views.shape[3],
              H = (int)views.shape[4], W = (int)views.shape[5];
    const char *bad = NULL;
    char why[256];
    if (C != mc.enc.in_channels)
        snprintf(why, sizeof why, "views have %d channels but --in-channels is %d", C, mc.enc.in_channels), bad = why;
    else if (B < 2)
        snprintf(why, sizeof why, "batch of %d: batch norm in training mode needs at least 2 images", B), bad = why;
    else if (H < 1 || W < 1 || H > 4096 || W > 4096 || (long)B * H * W > (1L << 31) / 64)
        snprintf(why, sizeof why, "image size %dx%d with batch %d is out of range", H, W, B), bad = why;
    if (bad) {
        fprintf(stderr, "byol step: %s: %s\n", views_path, bad);
        npy_free(&views);
        return 1;
    }

    /* Data-parallel: rank r of P steps on images [first, first + b) of each view: its equal
     * shard [r*B/P, (r+1)*B/P), or the r-th of --shards. */
    const int P = dist_size(), r = dist_rank();
    int first = r * (B / P), b = B / P;
    if (shards_list) {
        const char *at = shards_list;
        int total = 0, count = 0, ok = 1;
        while (ok && *at) {
            char *end;
            long n = strtol(at, &end, 10);
            ok = end != at && n >= 2 && n <= B && (*end == ',' || *end == 0);
            if (!ok) break;
            if (count == r) first = total, b = (int)n;
            total += (int)n, count++;
            at = *end ? end + 1 : end;
        }
        if (!ok || count != P || total != B) {
            if (r == 0)
                fprintf(stderr, "byol step: --shards %s: want %d comma-separated sizes of at least 2 that add up to "
                                "the batch of %d\n", shards_list, P, B);
            npy_free(&views);
            return 2;
        }
    } else if (B % P != 0 || B / P < 2) {
        if (r == 0)
            fprintf(stderr, "byol step: %s: a batch of %d does not split into %d equal shards of at least 2 images\n",
                    views_path, B, P);
        npy_free(&views);
        return 1;
    }
    Byol model;
    byol_init(&model, &mc);
    rc = state_load(&model, state_in, &e);
    if (dist_allreduce_max(rc ? 1 : 0, "loading the state") > 0) { /* all ranks stop together */
        if (rc) fprintf(stderr, "byol step: %s\n", e.msg);
        byol_free(&model);
        npy_free(&views);
        return 1;
    }
    if (sc.lars.tail_absolute) sc.lars.mult_from = model.pred_from;
    byol_place(&model, be);
    ByolWork work;
    byol_work_init(&work, &model, b, C, H, W, be);
    byol_work_distribute(&work, &model, sync_bn, B);
    const size_t image = (size_t)C * H * W, step_floats = (size_t)2 * B * image;
    int failed_here = 0;
    rc = 0;
    for (int i = 0; i < N && !rc; i++) {
        const float *v = views.data + i * step_floats;
        dist_heartbeat(i);
        sc.lars.step = adam_step + i + 1;
        float loss = byol_step_views(&model, &work, v + (size_t)first * image, v + ((size_t)B + first) * image,
                                     &sc, be);
        printf("step %d loss %.9g\n", i, loss);
        if (fflush(stdout) != 0 || ferror(stdout))
            failed_here = err_set(&e, "cannot write to standard output");
        else if (!isfinite(loss))
            failed_here = err_set(&e, "step %d: loss is %g (diverged: lower --lr, or check the views for "
                                      "NaN/Inf); %s not written", i, loss, out_path);
        else if (work.refused)
            failed_here = err_set(&e, "step %d: the gradient of %s is not finite (diverged: lower --lr); %s not "
                                      "written", i, model.online.specs[work.bad_tensor].name, out_path);
        /* the ranks leave together: rank 0 alone prints, so it alone can fail to */
        rc = dist_allreduce_max(failed_here ? 1 : 0, "a step's outcome") > 0;
    }
    if (rc && !failed_here) err_set(&e, "another rank failed");
    if (!rc) dist_check_identical(model.online.params, model.online.n_params, N);
    if (!rc && r == 0) failed_here = rc = state_save(&model, out_path, NULL, 0, &e) != 0;
    if (failed_here || (rc && r == 0)) fprintf(stderr, "byol step: %s\n", e.msg);
    byol_work_free(&work);
    byol_free(&model);
    npy_free(&views);
    return rc ? 1 : 0;
}
