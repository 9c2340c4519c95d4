/* BYOL: the online network (encoder + projector) with its predictor, the target network
 * (encoder + projector, an EMA of the online one), and the training step that ties them.
 *
 * Tensors live in two ParamStores:
 *   online: online.encoder.*, online.projector.*, predictor.*  (params, grads, momentum, buffers)
 *   target: target.encoder.*, target.projector.*              (params, buffers)
 * The online store lists the encoder and projector first, so the target's params are exactly
 * the first target.n_params floats of the online params: the EMA is one pass. */
#ifndef BYOL_BYOL_H
#define BYOL_BYOL_H

#include "../backend/backend.h"
#include "../core/common.h"
#include "mlp.h"
#include "resnet.h"
#include "store.h"

/* The self-supervised method: BYOL (an EMA target, a predictor), SimSiam (the online network
 * itself is the target, behind a stop-gradient: no second network, no EMA), or DINO (an EMA
 * teacher whose softmax over K prototypes is centered and sharpened; no predictor). */
typedef enum { METHOD_BYOL, METHOD_SIMSIAM, METHOD_DINO } Method;
const char *method_name(Method m);
int method_parse(const char *s, Method *out);
/* The mean cosine between predictions and their targets that a step's loss stands for: BYOL's
 * loss is the sum of two terms 2 - 2 cos (multi-crop: twice their mean), SimSiam's -mean cos.
 * NAN for DINO, whose loss is a cross-entropy. What the collapse monitor reads (collapse_agreement). */
double method_loss_mean_cos(Method m, double loss);

typedef struct {
    EncoderConfig enc;
    Method method;
    /* proj_layers: Linear layers of the projector, 0 for the method's (BYOL 2; SimSiam 3, each
     * followed by batch norm; DINO's head 3 with GELU and no batch norm, proj_dim its
     * bottleneck). pred_hidden 0: the method's (BYOL proj_hidden; SimSiam's bottleneck
     * proj_dim / 4). model_config_resolve fills both in. */
    int proj_layers;
    int proj_hidden, proj_dim, pred_hidden;
    int dino_out; /* DINO: K, the outputs of the weight-normalized last layer */
    /* Ablations (the collapse lab): no_predictor 1 makes the projection itself the prediction
     * (BYOL without its predictor); head_bn 0 drops the batch norm of both heads (-1: the
     * method's, 1 but for DINO, whose head has none unless asked: its use_bn_in_head). */
    int no_predictor, head_bn;
    int no_stop_grad; /* SimSiam without its stop-gradient (an ablation): z takes gradients too */
    /* Multi-crop in BYOL and SimSiam: the local views predict with a predictor of their own
     * (local_predictor.*, the predictor's shape and learning rate), the global views with the
     * predictor; 0: one predictor for all views */
    int local_predictor;
} ModelConfig;

void model_config_default(ModelConfig *c);
/* Fills in what the method decides (proj_layers, pred_hidden left 0). */
void model_config_resolve(ModelConfig *c);
/* What the flags' ranges cannot say (--proj-layers 1); 0, or -1 with e set. */
int model_config_check(const ModelConfig *c, Err *e);

typedef struct {
    ModelConfig cfg;
    ResNet encoder;
    Mlp projector, predictor, local_predictor; /* local_predictor: cfg.local_predictor only */
    /* DINO: the last layer, weight-normalized (weight_v [K, proj_dim], the gain fixed at 1, no
     * bias), part of both networks; and the center, a buffer of the online store [K]. */
    Linear dino_last;
    size_t dino_center;
    ParamStore online, target; /* SimSiam: target empty (the online network is its own target) */
    size_t pred_from;          /* where the predictor's parameters begin in the online store (the
                                * local predictor's follow them) */
} Byol;

void byol_init(Byol *m, const ModelConfig *cfg); /* builds and allocates (all zeros) */
void byol_free(Byol *m);
/* Puts both networks' buffers into backend be's memory (nothing for host-memory backends):
 * after initialization or loading, before the first step on a device. */
void byol_place(Byol *m, const Backend *be);
/* Fresh weights as torchvision/PyTorch initialize them (src/model/init.c); target = online. */
void byol_init_weights(Byol *m, uint64_t seed);
/* target = online: the target's tensors (parameters and buffers) are the online store's first,
 * in the same order (host memory, before byol_place). */
void byol_target_from_online(Byol *m);

/* Everything one step needs besides the parameters, sized once for [B, C, H, W] views. */
typedef struct {
    int B, C, H, W;
    int n;      /* images in the next step's shard, <= B (byol_work_set_shard; B at first) */
    int global; /* images in the global batch the shards make up (n in one process) */
    const Backend *be; /* whose memory mem, saved_buffers and staging are */
    float *mem;
    ResNetActs enc;
    MlpActs proj, pred, target_proj[2]; /* target_proj[v].out = z_v */
    MlpActs target_pred[2];             /* SimSiam without stop-gradient: p_v, for the z terms */
    float *dz_extra;                    /* and the gradient those terms send into z */
    float *x[2];                        /* the two views, NHWC */
    /* Multi-crop: n_local smaller views of local_size px per image, through the online network
     * only (its own activations, the same heads) */
    int n_local, local_size;
    ResNetActs enc_local;
    MlpActs pred_local; /* the local predictor's (cfg.local_predictor) */
    float *x_local;    /* one local view, NHWC */
    float *dino_ds2;   /* DINO: a local view's gradient against the second global's teacher */
    /* The loss's extras (byol_work_set_loss): a local view's terms weigh local_weight against a
     * global view's 1 (the loss is their weighted mean); VICReg's variance and covariance terms
     * on the online projections of the two global views, with these weights (0: off), each view's
     * over its shard's images; var_cov_loss is the last step's sum of them (not in the loss the
     * step returns, which stays the method's). */
    float local_weight, var_weight, cov_weight;
    double var_cov_loss;
    float *staging;                     /* a device backend's copy of a view as it comes (NCHW) */
    float *dp, *dz, *dr, *dfeat;        /* head gradients */
    /* DINO: the last layer's normalized weights (online, target) and their norms, the online
     * bottleneck normalized and its norms, the teacher's outputs t and softmax q of both views
     * [2, B, K], the student's output, its gradient, and the gradients of the normalized
     * weights (both views) and bottleneck */
    float *dino_w[2], *dino_wnorm[2], *dino_xn, *dino_xnorm, *dino_t, *dino_q, *dino_s, *dino_ds, *dino_dw,
        *dino_dxn;
    double dino_entropy, dino_kl; /* the last step's mean teacher entropy and KL (loss - entropy) */
    float *g[3];                        /* encoder backward buffers */
    void *scratch;                      /* kernel scratch (im2col tiles, BN partial sums) */
    size_t bytes;                       /* size of mem */
    /* Data-parallel runs (src/dist) set these after byol_work_init: batch norm of all three
     * networks over the global batch, and the online gradients all-reduced in buckets while
     * the second view's backward runs. NULL: one process. */
    const Reducer *sync;
    const Reducer *center_sync; /* DINO's center, over all ranks' rows (whatever sync_bn says) */
    struct GradSync *gsync;
    double compute_seconds; /* the last step's time, less what it waited for other ranks */
    /* The step's guard: batch-norm running statistics as they were before the step (restored
     * when the step is refused), and what the last step found. */
    float *saved_buffers;
    int refused;    /* 1: the loss or a gradient was not finite, and nothing was updated */
    int bad_tensor; /* then: index into online specs of the first non-finite gradient, or -1 */
} ByolWork;

void byol_work_init(ByolWork *w, const Byol *m, int B, int C, int H, int W, const Backend *be);
/* The same with room for n_local local views of local_size x local_size per image (multi-crop;
 * local_size <= H and W). */
enum { MAX_LOCAL_CROPS = 16 };
void byol_work_init_crops(ByolWork *w, const Byol *m, int B, int C, int H, int W, int n_local, int local_size,
                          const Backend *be);
/* The loss's extras (ByolWork.local_weight...): local_weight > 0 (1 after init), the variance
 * and covariance weights >= 0 (0 after init; BYOL and SimSiam only). */
void byol_work_set_loss(ByolWork *w, float local_weight, float var_weight, float cov_weight);
/* Under mpirun with more than one rank: the bucketed gradient all-reduce and, with sync_bn,
 * synchronized batch norm for this work's steps, whose shards make up global batches of
 * `global` images (without sync_bn each rank normalizes by its shard's statistics). Nothing
 * with one rank. */
void byol_work_distribute(ByolWork *w, Byol *m, int sync_bn, int global);
/* The next steps take n <= B images (shards of a balanced data-parallel run differ in size;
 * the gradient stays that of the global batch's mean loss). */
void byol_work_set_shard(ByolWork *w, int n);
void byol_work_free(ByolWork *w);
/* Rank 0's parameters, momentum and buffers (online and target) on every rank. */
void byol_broadcast_state(Byol *m);

/* DINO's loss: the teacher's and student's softmax temperatures, and the center's momentum
 * (center 0: no centering, an ablation). */
typedef struct {
    float teacher_temp, student_temp, center_momentum;
    int center;
} DinoConfig;
/* DINO's values after the teacher's warm-up: 0.07, 0.1, 0.9, centering on. */
#define DINO_CONFIG_DEFAULT {0.07f, 0.1f, 0.9f, 1}

typedef struct {
    LarsConfig lars;
    float tau;
    DinoConfig dino;
} StepConfig;

/* One BYOL step on views [2, B, C, H, W] (NCHW, view 1 then view 2): target projections of both
 * views, then per view the online forward and its backward (view 1 first, so batch-norm running
 * statistics update in PyTorch's order), LARS on online + predictor, EMA of the target.
 * Returns loss = mean(2 - 2cos(p1, z2)) + mean(2 - 2cos(p2, z1)); in a data-parallel step the
 * views are this rank's shard, and the loss returned is the global batch's (every rank gets the
 * same value, so they all stop together on a non-finite one).
 * A step whose loss or any gradient is NaN or infinite changes nothing: no update, no EMA, and
 * the batch-norm running statistics are put back; w->refused and w->bad_tensor say so (the
 * gradients are all-reduced first, so every rank refuses the same steps). */
float byol_step(Byol *m, ByolWork *w, const float *views, const StepConfig *sc, const Backend *be);
/* The same with each view's w->n images at its own address ([n, C, H, W] each). */
float byol_step_views(Byol *m, ByolWork *w, const float *view1, const float *view2,
                      const StepConfig *sc, const Backend *be);
/* Multi-crop: also w->n_local local views (locals[l]: [n, C, local_size, local_size]), each
 * through the online network only, each the prediction of both global views' targets. The loss
 * is the mean over the 2 + 2 n_local terms (a local view's weighing w->local_weight), scaled to
 * the two-view loss's size (BYOL: times 2, sum of its two terms; SimSiam: -mean cos; DINO: the
 * mean cross-entropy). With w->var_weight or w->cov_weight, VICReg's terms join the gradient
 * (their value: w->var_cov_loss). */
float byol_step_crops(Byol *m, ByolWork *w, const float *view1, const float *view2, const float *const *locals,
                      const StepConfig *sc, const Backend *be);

#endif
