#include "byol.h"

#include <math.h>
#include <string.h>

#include "../core/common.h"
#include "../dist/dist.h"
#include "../nn/conv_plan.h"

static const char *const METHOD_NAMES[] = {"byol", "simsiam", "dino"};
const char *method_name(Method m) { return METHOD_NAMES[m]; }
int method_parse(const char *s, Method *out) {
    for (int i = 0; i < (int)ARRAY_LEN(METHOD_NAMES); i++)
        if (strcmp(s, METHOD_NAMES[i]) == 0) return *out = (Method)i, 0;
    return -1;
}
double method_loss_mean_cos(Method m, double loss) {
    switch (m) {
    case METHOD_BYOL: return 1 - loss / 4;
    case METHOD_SIMSIAM: return -loss;
    default: return NAN;
    }
}

void model_config_resolve(ModelConfig *c) {
    if (!c->proj_layers) c->proj_layers = c->method == METHOD_BYOL ? 2 : 3;
    if (c->method == METHOD_DINO) c->no_predictor = 1; /* DINO's head is the whole of it */
    if (c->head_bn < 0) c->head_bn = c->method != METHOD_DINO; /* DINO's use_bn_in_head is off */
    if (!c->pred_hidden) c->pred_hidden = c->method == METHOD_SIMSIAM ? MAX(c->proj_dim / 4, 1) : c->proj_hidden;
}

int model_config_check(const ModelConfig *c, Err *e) {
    if (c->proj_layers == 1) return err_set(e, "--proj-layers 1: the projector has 2 or 3 layers (0: the method's)");
    if (c->no_stop_grad && (c->method != METHOD_SIMSIAM || c->no_predictor))
        return err_set(e, "--no-stop-grad: an ablation of SimSiam (--method simsiam, with its predictor)");
    if (c->local_predictor && (c->method == METHOD_DINO || c->no_predictor))
        return err_set(e, "--local-predictor 1: the local views' own predictor is BYOL's or SimSiam's (with a "
                          "predictor, not --method dino or --no-predictor)");
    return 0;
}

void model_config_default(ModelConfig *c) {
    c->method = METHOD_BYOL;
    c->proj_layers = 2;
    c->enc.arch = ARCH_RESNET18;
    c->enc.width = 64;
    c->enc.stem = STEM_CIFAR;
    c->enc.in_channels = 3;
    c->proj_hidden = 4096;
    c->proj_dim = 256;
    c->pred_hidden = 4096;
    c->no_predictor = 0;
    c->no_stop_grad = 0;
    c->local_predictor = 0;
    c->head_bn = -1; /* the method's */
    c->dino_out = 4096;
}

void byol_init(Byol *m, const ModelConfig *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    model_config_resolve(&m->cfg);
    cfg = &m->cfg;
    const int simsiam = cfg->method == METHOD_SIMSIAM, dino = cfg->method == METHOD_DINO;
    store_init(&m->online);
    resnet_build(&m->encoder, &cfg->enc, &m->online, "online.encoder.");
    /* SimSiam's projector ends in a batch norm too; DINO's head is DINOHead's mlp then
     * last_layer (the names of DINO's code) */
    mlp_build(&m->projector, cfg->proj_layers, m->encoder.out_dim, cfg->proj_hidden, cfg->proj_dim, cfg->head_bn,
              simsiam && cfg->head_bn, dino, &m->online, dino ? "online.projector.mlp." : "online.projector.");
    if (dino) {
        int64_t shape[2] = {cfg->dino_out, cfg->proj_dim};
        m->dino_last = (Linear){0, 0, cfg->proj_dim, cfg->dino_out};
        m->dino_last.weight = store_add(&m->online, "online.projector.", "last_layer.weight_v", ROLE_PARAM,
                                        LAYOUT_PLAIN, 2, shape);
    }
    int n_target_specs = simsiam ? 0 : m->online.n_specs;
    m->pred_from = m->online.n_params;
    if (!cfg->no_predictor)
        mlp_build(&m->predictor, 2, cfg->proj_dim, cfg->pred_hidden, cfg->proj_dim, cfg->head_bn, 0, 0, &m->online,
                  "predictor.");
    if (cfg->local_predictor && !cfg->no_predictor && !dino)
        mlp_build(&m->local_predictor, 2, cfg->proj_dim, cfg->pred_hidden, cfg->proj_dim, cfg->head_bn, 0, 0,
                  &m->online, "local_predictor.");
    if (dino) { /* after the mirrored tensors: the teacher has no center of its own */
        int64_t shape[1] = {cfg->dino_out};
        m->dino_center = store_add(&m->online, "dino.", "center", ROLE_BUFFER, LAYOUT_PLAIN, 1, shape);
    }
    store_init_mirror(&m->target, &m->online, n_target_specs, "online.", "target.");
    store_alloc(&m->online, 1);
    store_alloc(&m->target, 0);
}

void byol_place(Byol *m, const Backend *be) {
    store_move(&m->online, be);
    store_move(&m->target, be);
}

void byol_free(Byol *m) {
    store_free(&m->online);
    store_free(&m->target);
}

static void work_plan(ByolWork *w, const Byol *m, Arena *a, const Backend *be) {
    const int B = w->B;
    size_t view = (size_t)B * w->C * w->H * w->W;
    resnet_plan(&w->enc, &m->encoder, B, w->H, w->W, 1, a, be);
    size_t scratch = w->enc.max_scratch;
    scratch = MAX(scratch, mlp_plan(&w->proj, &m->projector, B, a, be));
    if (!m->cfg.no_predictor) scratch = MAX(scratch, mlp_plan(&w->pred, &m->predictor, B, a, be));
    mlp_plan(&w->target_proj[0], &m->projector, B, a, be); /* SimSiam: the detached z */
    mlp_plan(&w->target_proj[1], &m->projector, B, a, be);
    if (m->cfg.no_stop_grad) {
        mlp_plan(&w->target_pred[0], &m->predictor, B, a, be);
        mlp_plan(&w->target_pred[1], &m->predictor, B, a, be);
        w->dz_extra = arena_floats(a, (size_t)B * m->cfg.proj_dim);
    }
    w->x[0] = arena_floats(a, view);
    w->x[1] = arena_floats(a, view);
    size_t max_act = w->enc.max_act;
    if (w->n_local) {
        resnet_plan(&w->enc_local, &m->encoder, B, w->local_size, w->local_size, 1, a, be);
        scratch = MAX(scratch, w->enc_local.max_scratch);
        max_act = MAX(max_act, w->enc_local.max_act);
        if (m->local_predictor.n_layers)
            scratch = MAX(scratch, mlp_plan(&w->pred_local, &m->local_predictor, B, a, be));
        w->x_local = arena_floats(a, (size_t)B * w->C * w->local_size * w->local_size);
        if (m->cfg.method == METHOD_DINO) w->dino_ds2 = arena_floats(a, (size_t)B * m->cfg.dino_out);
    }
    if (m->cfg.method == METHOD_DINO) {
        const size_t K = m->cfg.dino_out, D = m->cfg.proj_dim;
        for (int i = 0; i < 2; i++) {
            w->dino_w[i] = arena_floats(a, K * D);
            w->dino_wnorm[i] = arena_floats(a, K);
        }
        w->dino_xn = arena_floats(a, (size_t)B * D);
        w->dino_xnorm = arena_floats(a, B);
        w->dino_t = arena_floats(a, 2 * (size_t)B * K);
        w->dino_q = arena_floats(a, 2 * (size_t)B * K);
        w->dino_s = arena_floats(a, (size_t)B * K);
        w->dino_ds = arena_floats(a, (size_t)B * K);
        w->dino_dw = arena_floats(a, K * D);
        w->dino_dxn = arena_floats(a, (size_t)B * D);
    }
    if (m->cfg.method != METHOD_DINO) /* --var-cov's centered projections and covariance */
        scratch = MAX(scratch, var_cov_scratch_floats(B, m->cfg.proj_dim) * sizeof(float));
    int widest = MAX(MAX(m->cfg.proj_hidden, m->cfg.pred_hidden), MAX(m->cfg.proj_dim, m->encoder.out_dim));
    w->dp = arena_floats(a, (size_t)B * m->cfg.proj_dim);
    w->dz = arena_floats(a, (size_t)B * m->cfg.proj_dim);
    w->dr = arena_floats(a, (size_t)B * widest);
    w->dfeat = arena_floats(a, (size_t)B * m->encoder.out_dim);
    for (int i = 0; i < 3; i++) w->g[i] = arena_floats(a, max_act);
    w->scratch = arena_take(a, scratch);
}

/* A data-parallel run's convolution kernels are rank 0's choice (it measures while the others
 * wait), so that every rank runs the same kernels: the same rounding as one process planning
 * alone, and one measurement on shared cores instead of P competing ones. */
static void share_conv_plan(void) {
    if (!dist_enabled()) return;
    char *text = dist_rank() == 0 ? conv_plan_to_text() : NULL;
    uint64_t len = text ? strlen(text) + 1 : 0;
    dist_broadcast(&len, sizeof len, 0, "the convolution plan");
    if (!text) text = xcalloc(len, 1, "the convolution plan");
    dist_broadcast(text, len, 0, "the convolution plan");
    Err e;
    if (dist_rank() != 0 && conv_plan_load_text(text, &e) < 0) die("rank 0's convolution plan: %s", e.msg);
    xfree(text);
}

void byol_work_init(ByolWork *w, const Byol *m, int B, int C, int H, int W, const Backend *be) {
    byol_work_init_crops(w, m, B, C, H, W, 0, 0, be);
}

void byol_work_init_crops(ByolWork *w, const Byol *m, int B, int C, int H, int W, int n_local, int local_size,
                          const Backend *be) {
    memset(w, 0, sizeof *w);
    if (n_local < 0 || n_local > MAX_LOCAL_CROPS || (n_local && (local_size < 1 || local_size > H || local_size > W)))
        die("internal: byol_work_init_crops(%d local views of %d px, views %dx%d)", n_local, local_size, H, W);
    w->n_local = n_local;
    w->local_size = n_local ? local_size : 0;
    w->B = w->n = w->global = B;
    w->C = C;
    w->H = H;
    w->W = W;
    Arena a = {NULL, 0, 0};
    if (dist_rank() == 0) work_plan(w, m, &a, be); /* measure (and choose the kernels) */
    share_conv_plan();
    if (dist_rank() != 0) work_plan(w, m, &a, be);
    w->bytes = a.used;
    w->be = be;
    w->mem = be->alloc(a.used, "activations (lower --batch or --image-size)");
    Arena real = {(char *)w->mem, 0, a.used};
    work_plan(w, m, &real, be);
    w->saved_buffers = be->alloc((m->online.n_buffers + m->target.n_buffers) * sizeof(float),
                                 "batch-norm statistics snapshot");
    if (!be->host_memory)
        w->staging = be->alloc((size_t)B * C * H * W * sizeof(float), "the input views");
    w->bad_tensor = -1;
    w->local_weight = 1.0f;
}

void byol_work_set_loss(ByolWork *w, float local_weight, float var_weight, float cov_weight) {
    if (!(local_weight > 0) || !(var_weight >= 0) || !(cov_weight >= 0))
        die("internal: byol_work_set_loss(%g, %g, %g)", local_weight, var_weight, cov_weight);
    w->local_weight = local_weight;
    w->var_weight = var_weight;
    w->cov_weight = cov_weight;
}

/* Gradients are all-reduced in buckets of 2^20 floats (4 MiB): large enough that each message
 * moves at the link's rate, small enough that the first ones start while most of the encoder's
 * backward is still to run. */
enum { GRAD_BUCKET_FLOATS = 1 << 20 };

void byol_work_distribute(ByolWork *w, Byol *m, int sync_bn, int global) {
    if (!dist_enabled()) return;
    w->global = global;
    w->sync = sync_bn ? dist_bn_reducer() : NULL;
    w->center_sync = dist_bn_reducer(); /* DINO's center: every rank's teacher outputs */
    w->gsync = gradsync_create(m->online.grads, m->online.n_params, GRAD_BUCKET_FLOATS);
}

void byol_work_free(ByolWork *w) {
    gradsync_destroy(w->gsync);
    if (w->be) {
        w->be->release(w->mem);
        w->be->release(w->saved_buffers);
        if (w->staging) w->be->release(w->staging);
    }
    memset(w, 0, sizeof *w);
}

void byol_broadcast_state(Byol *m) {
    if (!dist_enabled()) return;
    const ParamStore *st[2] = {&m->online, &m->target};
    for (int i = 0; i < 2; i++) {
        dist_broadcast(st[i]->params, st[i]->n_params * sizeof(float), 0, "the initial state");
        if (st[i]->momentum) {
            dist_broadcast(st[i]->momentum, st[i]->n_params * sizeof(float), 0, "the initial state");
            dist_broadcast(st[i]->second, st[i]->n_params * sizeof(float), 0, "the initial state");
        }
        if (st[i]->n_buffers)
            dist_broadcast(st[i]->buffers, st[i]->n_buffers * sizeof(float), 0, "the initial state");
    }
}

void byol_work_set_shard(ByolWork *w, int n) {
    if (n < 1 || n > w->B) die("byol_work_set_shard: %d images, but the work holds 1..%d", n, w->B);
    w->n = n;
    w->enc.B = w->proj.B = w->pred.B = w->target_proj[0].B = w->target_proj[1].B = n;
    w->target_pred[0].B = w->target_pred[1].B = n;
    w->enc_local.B = w->pred_local.B = n;
}

static void grads_ready(void *ctx, size_t from) { gradsync_ready(ctx, from); }

float byol_step(Byol *m, ByolWork *w, const float *views, const StepConfig *sc, const Backend *be) {
    return byol_step_views(m, w, views, views + (size_t)w->n * w->C * w->H * w->W, sc, be);
}

/* The gradient's scale in a data-parallel step: each rank's dloss makes its gradient the mean
 * loss's over the global batch times the ranks (whose number the all-reduce divides by): 1 for
 * equal shards. */
static double shard_scale(const ByolWork *w) { return w->gsync ? (double)w->n * dist_size() / w->global : 1.0; }

/* A student view: the online network's input and its activations (a global view's, or a local
 * view's at its own size), and the targets it predicts (the other global view's; a local view
 * predicts both). */
typedef struct {
    ResNetActs *enc;
    const float *x;
    int targets[2], n_targets;
} StudentView;

/* The student views of a step in order: global 1, global 2, then the local views, whose input
 * is put into w->x_local (uploaded first on a device) just before its forward. Returns their
 * number; last = the index of the view whose backward makes the gradients final. */
static int student_views(ByolWork *w, StudentView *sv) {
    sv[0] = (StudentView){&w->enc, w->x[0], {1, 0}, 1};
    sv[1] = (StudentView){&w->enc, w->x[1], {0, 0}, 1};
    for (int l = 0; l < w->n_local; l++) sv[2 + l] = (StudentView){&w->enc_local, w->x_local, {0, 1}, 2};
    return 2 + w->n_local;
}

/* Local view l into w->x_local (NHWC), through the staging buffer on a device. */
static void put_local(ByolWork *w, const float *const *locals, int l, const Backend *be) {
    const int B = w->n, S = w->local_size;
    const float *x = locals[l];
    if (!be->host_memory) be->upload(w->staging, x, (size_t)B * w->C * S * S * sizeof(float)), x = w->staging;
    be->nchw_to_nhwc(w->x_local, x, B, w->C, S, S);
}

/* BYOL's and SimSiam's forwards and backwards of every view; returns the loss (BYOL: the sum of
 * the two-view loss's terms, in multi-crop 2 x their mean; SimSiam: -mean cos). */
static double byol_views(Byol *m, ByolWork *w, const float *const *locals, const Backend *be) {
    const int B = w->n, D = m->cfg.proj_dim;
    ParamStore *on = &m->online, *tg = &m->target;
    /* z_v = target(v): no gradient, so nothing is kept beyond the projection itself. SimSiam's
     * target is the online network behind a stop-gradient: the same forward, on the online
     * weights, which gives the bits the gradient's forward below computes; its batch-norm
     * running statistics are put back, so that each view updates them once, as in PyTorch. */
    const int simsiam = m->cfg.method == METHOD_SIMSIAM;
    const ParamStore *zs = simsiam ? on : tg;
    const int no_stop_grad = m->cfg.no_stop_grad;
    for (int v = 0; v < 2; v++) {
        resnet_forward(be, &m->encoder, zs->params, zs->buffers, &w->enc, w->x[v], 1, w->scratch);
        mlp_forward(be, &m->projector, zs->params, zs->buffers, &w->target_proj[v],
                    w->enc.features, 1, w->scratch);
        if (no_stop_grad) /* p_v too: view 1's backward needs p_2 before view 2's forward */
            mlp_forward(be, &m->predictor, on->params, on->buffers, &w->target_pred[v], w->target_proj[v].out, 1,
                        w->scratch);
    }
    if (simsiam) be->copy(on->buffers, w->saved_buffers, on->n_buffers * sizeof(float));

    /* The loss is a sum of terms, and each depends on one online forward only, so each view's
     * backward runs right after its forward and one set of activations serves all views. In a
     * data-parallel step each rank's dloss makes its gradient the mean loss's over the global
     * batch (shard_scale). SimSiam's -mean cos is sum(2 - 2cos) / (2T) - 1 over its T terms;
     * BYOL's loss is 2 / T times the sum (T = 2: the sum). */
    StudentView sv[2 + MAX_LOCAL_CROPS];
    const int n_views = student_views(w, sv);
    const double T = 2 + 2 * w->n_local * (double)w->local_weight; /* the terms, a local one weighing local_weight */
    const double per_term = simsiam ? 1.0 / (2.0 * T) : 2.0 / T;
    double sum = 0, sum_local = 0;
    w->var_cov_loss = 0;
    const int var_cov = w->var_weight > 0 || w->cov_weight > 0;
    for (int v = 0; v < n_views; v++) {
        const float dloss = (float)(per_term * shard_scale(w) * (v >= 2 ? w->local_weight : 1.0));
        if (v >= 2) put_local(w, locals, v - 2, be);
        resnet_forward(be, &m->encoder, on->params, on->buffers, sv[v].enc, sv[v].x, 1, w->scratch);
        mlp_forward(be, &m->projector, on->params, on->buffers, &w->proj, sv[v].enc->features, 1,
                    w->scratch);
        /* without a predictor (an ablation) the projection is the prediction; local views may
         * have a predictor of their own */
        const int pred = !m->cfg.no_predictor;
        const int own = v >= 2 && m->local_predictor.n_layers;
        const Mlp *predictor = own ? &m->local_predictor : &m->predictor;
        MlpActs *pa = own ? &w->pred_local : &w->pred;
        if (pred) mlp_forward(be, predictor, on->params, on->buffers, pa, w->proj.out, 1, w->scratch);
        if (v == n_views - 1 && w->gsync) { /* the gradients become final during this backward */
            const GradHook h = {grads_ready, w->gsync};
            sv[v].enc->hook = w->proj.hook = pa->hook = h;
        }
        const float *p = pred ? pa->out : w->proj.out;
        for (int k = 0; k < sv[v].n_targets; k++) {
            const float *z = w->target_proj[sv[v].targets[k]].out;
            *(v >= 2 ? &sum_local : &sum) += be->cosine_loss_forward(p, z, B, D);
            /* a second target's gradient goes through dz, free until the predictor's backward */
            be->cosine_loss_backward(k ? w->dz : w->dp, p, z, B, D, dloss);
            if (k) be->add_forward(w->dp, w->dp, w->dz, (size_t)B * D);
        }
        if (pred) mlp_backward(be, predictor, on->params, on->grads, pa, w->proj.out, w->dp, w->dr, w->dz, w->scratch);
        if (var_cov && v < 2) { /* VICReg's terms on the global views' projections, added to the loss */
            float *dproj = pred ? w->dz : w->dp;
            w->var_cov_loss += be->var_cov_loss(dproj, w->proj.out, B, D, w->var_weight, w->cov_weight,
                                                (float)shard_scale(w), w->scratch);
        }
        if (no_stop_grad) { /* z_v is also the target of the other view's term, cos(p_{1-v}, z_v) */
            be->cosine_loss_backward(w->dz_extra, w->proj.out, w->target_pred[1 - v].out, B, D, dloss);
            be->add_forward(w->dz, w->dz, w->dz_extra, (size_t)B * D);
        }
        mlp_backward(be, &m->projector, on->params, on->grads, &w->proj, sv[v].enc->features,
                     pred ? w->dz : w->dp, w->dr, w->dfeat, w->scratch);
        resnet_backward(be, &m->encoder, on->params, on->grads, sv[v].enc, sv[v].x, w->dfeat, w->g,
                        w->scratch);
    }
    sum += w->local_weight * sum_local;
    return simsiam ? sum / (2.0 * T) - 1.0 : sum * 2.0 / T;
}

/* DINO's forwards and backwards: the teacher's outputs t_v and softmax q_v of both global views,
 * then per student view its output s, its cross-entropy against q of the other global view (a
 * local view: of both) and the backward; the center moves after (the loss used the old one).
 * Returns the loss, the mean of the cross-entropies. */
static double dino_views(Byol *m, ByolWork *w, const float *const *locals, const StepConfig *sc,
                         const Backend *be) {
    const int B = w->n, K = m->cfg.dino_out, D = m->cfg.proj_dim;
    const float NORMALIZE_EPS = 1e-12f; /* F.normalize's */
    ParamStore *on = &m->online, *tg = &m->target;
    const Linear *last = &m->dino_last;
    float *center = on->buffers + m->dino_center;
    float *t[2] = {w->dino_t, w->dino_t + (size_t)B * K}, *q[2] = {w->dino_q, w->dino_q + (size_t)B * K};
    be->l2norm_rows_forward(w->dino_w[1], w->dino_wnorm[1], tg->params + last->weight, K, D, 0.0f);
    for (int v = 0; v < 2; v++) {
        resnet_forward(be, &m->encoder, tg->params, tg->buffers, &w->enc, w->x[v], 1, w->scratch);
        mlp_forward(be, &m->projector, tg->params, tg->buffers, &w->target_proj[v], w->enc.features, 1, w->scratch);
        be->l2norm_rows_forward(w->dino_xn, w->dino_xnorm, w->target_proj[v].out, B, D, NORMALIZE_EPS);
        be->linear_forward(t[v], w->dino_xn, w->dino_w[1], NULL, B, D, K);
        be->dino_teacher_softmax(q[v], t[v], center, B, K, sc->dino.teacher_temp);
    }
    be->l2norm_rows_forward(w->dino_w[0], w->dino_wnorm[0], on->params + last->weight, K, D, 0.0f);
    be->fill_zero(w->dino_dw, (size_t)K * D);
    StudentView sv[2 + MAX_LOCAL_CROPS];
    const int n_views = student_views(w, sv);
    const double T = 2 + 2 * w->n_local * (double)w->local_weight; /* a local term weighs local_weight */
    double loss = 0, entropy = 0;
    for (int v = 0; v < n_views; v++) {
        const double weight = v >= 2 ? w->local_weight : 1.0;
        const float dloss = (float)(shard_scale(w) * weight / T); /* the weighted mean of the terms */
        if (v >= 2) put_local(w, locals, v - 2, be);
        resnet_forward(be, &m->encoder, on->params, on->buffers, sv[v].enc, sv[v].x, 1, w->scratch);
        mlp_forward(be, &m->projector, on->params, on->buffers, &w->proj, sv[v].enc->features, 1, w->scratch);
        be->l2norm_rows_forward(w->dino_xn, w->dino_xnorm, w->proj.out, B, D, NORMALIZE_EPS);
        be->linear_forward(w->dino_s, w->dino_xn, w->dino_w[0], NULL, B, D, K);
        if (v == n_views - 1 && w->gsync) { /* the gradients become final during this backward */
            const GradHook h = {grads_ready, w->gsync};
            sv[v].enc->hook = w->proj.hook = h;
        }
        for (int k = 0; k < sv[v].n_targets; k++) {
            double ent;
            float *ds = k ? w->dino_ds2 : w->dino_ds;
            loss += weight * be->dino_student_loss(ds, w->dino_s, q[sv[v].targets[k]], B, K, sc->dino.student_temp,
                                                   dloss, &ent);
            if (v < 2) entropy += ent; /* each teacher view's once */
            if (k) be->add_forward(w->dino_ds, w->dino_ds, w->dino_ds2, (size_t)B * K);
        }
        be->linear_backward(w->dino_dxn, w->dino_dw, NULL, w->dino_ds, w->dino_xn, w->dino_w[0], B, D, K);
        if (v == n_views - 1) /* every view's gradient of the normalized weights, through the normalization */
            be->l2norm_rows_backward(on->grads + last->weight, w->dino_dw, w->dino_w[0], w->dino_wnorm[0], K, D,
                                     0.0f);
        be->l2norm_rows_backward(w->dp, w->dino_dxn, w->dino_xn, w->dino_xnorm, B, D, NORMALIZE_EPS);
        mlp_backward(be, &m->projector, on->params, on->grads, &w->proj, sv[v].enc->features, w->dp, w->dr, w->dfeat,
                     w->scratch);
        resnet_backward(be, &m->encoder, on->params, on->grads, sv[v].enc, sv[v].x, w->dfeat, w->g, w->scratch);
    }
    if (sc->dino.center) be->dino_center_update(center, w->dino_t, 2 * B, K, sc->dino.center_momentum, w->center_sync);
    loss /= T;
    w->dino_entropy = entropy * 0.5;
    w->dino_kl = loss - w->dino_entropy;
    return loss;
}

float byol_step_views(Byol *m, ByolWork *w, const float *view1, const float *view2,
                      const StepConfig *sc, const Backend *be) {
    if (w->n_local) die("internal: byol_step_views on a work planned for %d local views", w->n_local);
    return byol_step_crops(m, w, view1, view2, NULL, sc, be);
}

float byol_step_crops(Byol *m, ByolWork *w, const float *view1, const float *view2, const float *const *locals,
                      const StepConfig *sc, const Backend *be) {
    const double t_start = now_seconds();
    const DistWait waited = dist_wait_seconds(0);
    const int B = w->n;
    const float *views[2] = {view1, view2};
    ParamStore *on = &m->online, *tg = &m->target;
    w->enc.sync = w->proj.sync = w->pred.sync = w->enc_local.sync = w->sync;
    w->target_proj[0].sync = w->target_proj[1].sync = w->sync;
    w->target_pred[0].sync = w->target_pred[1].sync = w->sync;
    const GradHook none = {NULL, NULL};
    w->enc.hook = w->proj.hook = w->pred.hook = w->enc_local.hook = none;
    gradsync_begin(w->gsync);

    const size_t view_bytes = (size_t)B * w->C * w->H * w->W * sizeof(float);
    for (int v = 0; v < 2; v++) { /* views come from the loader in host memory */
        const float *x = views[v];
        if (!be->host_memory) be->upload(w->staging, x, view_bytes), x = w->staging;
        be->nchw_to_nhwc(w->x[v], x, B, w->C, w->H, w->W);
    }
    be->fill_zero(on->grads, on->n_params);
    be->copy(w->saved_buffers, on->buffers, on->n_buffers * sizeof(float));
    be->copy(w->saved_buffers + on->n_buffers, tg->buffers, tg->n_buffers * sizeof(float));
    w->refused = 0;
    w->bad_tensor = -1;

    double loss = m->cfg.method == METHOD_DINO ? dino_views(m, w, locals, sc, be) : byol_views(m, w, locals, be);
    gradsync_finish(w->gsync); /* summed over ranks and divided by their number */
    if (w->gsync) { /* the global batch's mean: each shard's weighted by its images */
        double both[2] = {loss * B, w->var_cov_loss * B};
        dist_allreduce_sum_f64(both, 2, "the loss");
        loss = both[0] / w->global;
        w->var_cov_loss = both[1] / w->global;
    }
    /* The guard: one pass over the gradients (identical on every rank after the all-reduce);
     * a NaN in the loss or anywhere in them would spread into every parameter. */
    if (!isfinite(loss) || !isfinite(w->var_cov_loss) || be->count_nonfinite(on->grads, on->n_params) > 0) {
        for (int i = 0; i < on->n_specs && w->bad_tensor < 0; i++) {
            const TensorSpec *t = &on->specs[i];
            if (t->role == ROLE_PARAM && be->count_nonfinite(on->grads + t->offset, t->numel) > 0)
                w->bad_tensor = i;
        }
        be->copy(on->buffers, w->saved_buffers, on->n_buffers * sizeof(float));
        be->copy(tg->buffers, w->saved_buffers + on->n_buffers, tg->n_buffers * sizeof(float));
        w->refused = 1;
    } else {
        if (sc->lars.adamw)
            be->adamw_update(on->params, on->grads, on->momentum, on->second, on->specs, on->n_specs, &sc->lars);
        else
            be->lars_update(on->params, on->grads, on->momentum, on->specs, on->n_specs, &sc->lars);
        be->ema_update(tg->params, on->params, tg->n_params, sc->tau);
    }
    be->sync(); /* the host may read the state (monitors, checkpoints) once the step returns */
    const DistWait after = dist_wait_seconds(0);
    w->compute_seconds = now_seconds() - t_start - (after.bn - waited.bn) - (after.grads - waited.grads);
    return (float)loss;
}
