#include "finetune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "../data/loader.h"
#include "../eval/classify.h"
#include "../eval/features.h"
#include "../eval/probe.h"
#include "../eval/subset.h"
#include "../optim/optim.h"

void finetune_config_default(FinetuneConfig *c) {
    *c = (FinetuneConfig){.label_fraction = 1, .epochs = 0, .batch = 256, .lr = 0.05, .momentum = 0.9,
                          .weight_decay = 0, .crop_min = 0.08, .seed = 0, .workers = 0, .log_every = 50,
                          .eval_max = 0, .log = NULL, .head_from_probe = 0};
}

/* The activations and buffers of one training step, from one arena sized once. */
typedef struct {
    ResNetActs acts;
    float *x;       /* NHWC input */
    float *logits, *dlogits, *onehot, *dfeat;
    float *g[3];
    void *scratch;
} FinetuneWork;

static void work_plan(FinetuneWork *w, const Classifier *c, int B, int S, Arena *a, const Backend *be) {
    resnet_plan(&w->acts, &c->net, B, S, S, 1, a, be);
    const int C = c->net.cfg.in_channels, K = c->n_classes, d = c->net.out_dim;
    w->x = arena_floats(a, (size_t)B * C * S * S);
    w->logits = arena_floats(a, (size_t)B * K);
    w->dlogits = arena_floats(a, (size_t)B * K);
    w->onehot = arena_floats(a, (size_t)B * K);
    w->dfeat = arena_floats(a, (size_t)B * d);
    for (int i = 0; i < 3; i++) w->g[i] = arena_floats(a, w->acts.max_act);
    w->scratch = arena_take(a, w->acts.max_scratch);
}

/* One step on a batch (NCHW views, labels): forward in training mode, cross-entropy, backward,
 * SGD. Returns the batch's mean cross-entropy. */
static float train_step(const Backend *be, Classifier *c, FinetuneWork *w, const float *views, const int32_t *labels,
                        int B, int S, const LarsConfig *opt) {
    ParamStore *s = &c->store;
    const int C = c->net.cfg.in_channels, K = c->n_classes, d = c->net.out_dim;
    be->nchw_to_nhwc(w->x, views, B, C, S, S);
    resnet_forward(be, &c->net, s->params, s->buffers, &w->acts, w->x, 1, w->scratch);
    const float *fw = s->params + c->fc_weight, *fb = s->params + c->fc_bias;
    be->linear_forward(w->logits, w->acts.features, fw, fb, B, d, K);
    memset(w->onehot, 0, (size_t)B * K * sizeof(float));
    for (int i = 0; i < B; i++) w->onehot[(size_t)i * K + labels[i]] = 1;
    /* Cross-entropy against one-hot targets is DINO's student loss at temperature 1 (the same
     * kernel, tested against PyTorch): mean over rows of -log softmax(logits)[label]. */
    double unused_entropy;
    const float loss = be->dino_student_loss(w->dlogits, w->logits, w->onehot, B, K, 1.0f, 1.0f, &unused_entropy);
    be->fill_zero(s->grads, s->n_params);
    be->linear_backward(w->dfeat, s->grads + c->fc_weight, s->grads + c->fc_bias, w->dlogits, w->acts.features, fw, B,
                        d, K);
    resnet_backward(be, &c->net, s->params, s->grads, &w->acts, w->x, w->dfeat, w->g, w->scratch);
    be->lars_update(s->params, s->grads, s->momentum, s->specs, s->n_specs, opt);
    return loss;
}

/* The head as the probe of the labelled images' frozen features (un-augmented, batch norm in
 * evaluation mode), then its test accuracy. */
static int head_from_probe(Classifier *c, const Dataset *ds, const int32_t *subset, int ns, const FinetuneConfig *cfg,
                           FinetuneReport *rep, Err *e) {
    Dataset view;
    dataset_split_view(&view, ds, SPLIT_TRAIN, subset, ns);
    FeatureConfig fc = {.image_size = c->image_size, .mean = {c->mean[0], c->mean[1], c->mean[2]},
                        .std = {c->std[0], c->std[1], c->std[2]}, .batch = 256};
    float *feat;
    int32_t *labels;
    int d;
    const int n = extract_features(&c->net, c->store.params, c->store.buffers, &view, SPLIT_TRAIN, &fc, &feat, &labels,
                                   &d, e);
    dataset_split_view_free(&view, SPLIT_TRAIN);
    if (n < 0) return -1;
    ProbeReport pr;
    const int rc = probe_fit(feat, labels, n, d, c->n_classes, NULL, &pr, c->store.params + c->fc_weight,
                             c->store.params + c->fc_bias, e);
    xfree(feat), free(labels);
    if (rc) return -1;
    float *probs;
    int32_t *test_labels;
    const int nt = classifier_predict(c, ds, SPLIT_TEST, cfg->eval_max, &probs, &test_labels, e);
    if (nt < 0) return -1;
    classify_accuracy(probs, test_labels, nt, c->n_classes, &rep->probe_top1, &rep->probe_top5);
    xfree(probs), free(test_labels);
    if (cfg->log)
        fprintf(cfg->log, "head       the linear probe of %d frozen features (train %.2f%%, %d L-BFGS iterations): "
                          "test top-1 %.2f%%, top-5 %.2f%%\n", n, 100 * pr.train_top1, pr.iterations,
                100 * rep->probe_top1, 100 * rep->probe_top5);
    return 0;
}

int finetune_run(Classifier *c, const Dataset *ds, const FinetuneConfig *cfg, FinetuneReport *rep, Err *e) {
    memset(rep, 0, sizeof *rep);
    const DatasetSplit *tr = &ds->split[SPLIT_TRAIN], *te = &ds->split[SPLIT_TEST];
    if (ds->n_classes < 2 || !tr->n || !tr->labels || !te->n || !te->labels)
        return err_set(e, "%s has no labelled train and test splits: fine-tuning trains on the train labels and "
                          "scores the test split", ds->root);
    if (ds->n_classes != c->n_classes)
        return err_set(e, "%s has %d classes, the classifier %d", ds->root, ds->n_classes, c->n_classes);
    if (ds->channels != c->net.cfg.in_channels)
        return err_set(e, "%s has %d-channel images, the encoder takes %d", ds->root, ds->channels,
                       c->net.cfg.in_channels);
    if (cfg->epochs < 1 || cfg->batch < 1 || !(cfg->lr > 0) || !(cfg->crop_min > 0 && cfg->crop_min <= 1))
        die("internal: finetune_run(epochs %d, batch %d, lr %g, crop_min %g)", cfg->epochs, cfg->batch, cfg->lr,
            cfg->crop_min);
    for (int i = 0; i < tr->n; i++)
        if (tr->labels[i] < 0 || tr->labels[i] >= c->n_classes)
            return err_set(e, "%s: train image %d has label %d, outside the %d classes", ds->root, i, tr->labels[i],
                           c->n_classes);
    int32_t *subset = xmalloc((size_t)tr->n * sizeof *subset, "the labelled subset");
    const int ns = label_subset(tr->labels, tr->n, ds->n_classes, cfg->label_fraction, cfg->seed, ds->class_names,
                                subset, e);
    if (ns < 0) return xfree(subset), -1;
    rep->labelled = ns;
    if (cfg->head_from_probe && head_from_probe(c, ds, subset, ns, cfg, rep, e)) return xfree(subset), -1;
    const int S = c->image_size, C = c->net.cfg.in_channels, B = cfg->batch;
    AugConfig ac;
    aug_config_default(&ac, S, C);
    /* spatial augmentation only: the crop and the flip of view 1, no colour, blur or solarization */
    ac.crop_scale_min = (float)cfg->crop_min;
    ac.view[0] = (ViewAug){.flip_p = 0.5f};
    memcpy(ac.mean, c->mean, sizeof ac.mean);
    memcpy(ac.std, c->std, sizeof ac.std);
    LoaderConfig lc = {.ds = ds, .split = SPLIT_TRAIN, .aug = ac, .batch = B, .seed = cfg->seed,
                       .workers = cfg->workers, .slots = 2, .subset = subset, .subset_n = ns, .one_view = 1};
    Loader *loader = loader_create(&lc, e);
    if (!loader) return xfree(subset), -1;
    const Backend *be = &backend_cpu;
    FinetuneWork w;
    Arena a = {NULL, 0, 0};
    work_plan(&w, c, B, S, &a, be); /* measures (and chooses the convolution kernels) */
    void *mem = xmalloc(a.used, "fine-tuning activations (lower --batch)");
    Arena real = {mem, 0, a.used};
    work_plan(&w, c, B, S, &real, be);
    const long per_epoch = loader_batches_per_epoch(loader), total = per_epoch * cfg->epochs;
    /* plain SGD with momentum on every tensor (no trust ratio), as torch.optim.SGD */
    LarsConfig opt = {.lr = (float)cfg->lr, .weight_decay = (float)cfg->weight_decay,
                      .momentum = (float)cfg->momentum, .eta = 0, .mult_from = c->store.n_params, .lr_mult = 1,
                      .sgd = 1};
    memset(c->store.momentum, 0, c->store.n_params * sizeof(float));
    const double t0 = now_seconds();
    double epoch_loss = 0;
    for (long k = 0; k < total; k++) {
        const Batch b = loader_next(loader);
        opt.lr = (float)lr_at_step(k, total, 0, cfg->lr);
        const float loss = train_step(be, c, &w, b.views, b.labels, B, S, &opt);
        if (!isfinite(loss)) {
            loader_destroy(loader), xfree(mem), xfree(subset);
            return err_set(e, "fine-tuning diverged at step %ld of %ld (loss %g): lower --lr (it was %g)", k + 1,
                           total, (double)loss, cfg->lr);
        }
        if (k % per_epoch == 0) epoch_loss = 0;
        epoch_loss += loss;
        if (cfg->log && cfg->log_every > 0 && ((k + 1) % cfg->log_every == 0 || k + 1 == total)) {
            const double el = now_seconds() - t0;
            fprintf(cfg->log, "step %ld/%ld  epoch %ld  loss %.4f  lr %.5f  %.0f img/s\n", k + 1, total,
                    k / per_epoch + 1, (double)loss, (double)opt.lr, (double)(k + 1) * B / (el > 0 ? el : 1e-9));
            fflush(cfg->log);
        }
    }
    rep->steps = total;
    rep->final_loss = epoch_loss / (double)(total - (total - 1) / per_epoch * per_epoch);
    rep->train_seconds = now_seconds() - t0;
    loader_destroy(loader);
    xfree(mem), xfree(subset);
    const double t1 = now_seconds();
    float *probs;
    int32_t *labels;
    const int n = classifier_predict(c, ds, SPLIT_TEST, cfg->eval_max, &probs, &labels, e);
    if (n < 0) return -1;
    rep->test_images = classify_accuracy(probs, labels, n, c->n_classes, &rep->top1, &rep->top5);
    rep->eval_seconds = now_seconds() - t1;
    xfree(probs), free(labels);
    return 0;
}
