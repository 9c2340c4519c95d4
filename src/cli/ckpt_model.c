/* What the commands that read a byol train run share: see ckpt_model.h. */
#include "ckpt_model.h"

#include <string.h>

#include "../io/checkpoint.h"

static int model_flags_agree(const ModelConfig *ckpt, const ModelConfig *asked, int argc, char **argv,
                             const char *path, Err *e) {
    struct {
        const char *flag;
        long a, b;
        const char *sa, *sb;
    } cmp[] = {
        {"arch", ckpt->enc.arch, asked->enc.arch, arch_name(ckpt->enc.arch), arch_name(asked->enc.arch)},
        {"width", ckpt->enc.width, asked->enc.width, NULL, NULL},
        {"stem", ckpt->enc.stem, asked->enc.stem, stem_name(ckpt->enc.stem), stem_name(asked->enc.stem)},
        {"in-channels", ckpt->enc.in_channels, asked->enc.in_channels, NULL, NULL},
        {"proj-hidden", ckpt->proj_hidden, asked->proj_hidden, NULL, NULL},
        {"proj-dim", ckpt->proj_dim, asked->proj_dim, NULL, NULL},
        {"pred-hidden", ckpt->pred_hidden, asked->pred_hidden, NULL, NULL},
        {"method", ckpt->method, asked->method, method_name(ckpt->method), method_name(asked->method)},
        {"proj-layers", ckpt->proj_layers, asked->proj_layers, NULL, NULL},
        {"dino-out", ckpt->dino_out, asked->dino_out, NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(cmp); i++) {
        if (flag_given(argc, argv, cmp[i].flag) && cmp[i].a != cmp[i].b) {
            if (cmp[i].sa)
                return err_set(e, "--%s %s, but %s holds a %s model (leave the model flags out: the checkpoint says)",
                               cmp[i].flag, cmp[i].sb, path, cmp[i].sa);
            return err_set(e, "--%s %ld, but %s was trained with %ld (leave the model flags out: the checkpoint says)",
                           cmp[i].flag, cmp[i].b, path, cmp[i].a);
        }
    }
    return 0;
}

int load_checkpoint(Loaded *L, const char *ckpt, const ModelConfig *asked, int argc, char **argv, Err *e) {
    char path[4400];
    Safetensors st;
    if (ckpt_resolve(ckpt, path, sizeof path, e) || st_open(&st, path, e)) return -1;
    const char *kind = st_meta(&st, "byol.kind");
    if (kind && strcmp(kind, "classifier") == 0) {
        st_close(&st);
        return err_set(e, "%s is a classifier checkpoint of byol finetune: give it to byol predict; this command "
                          "reads a byol train checkpoint or run folder", path);
    }
    L->nf = train_flags(L->flags, &L->o);
    CkptMeta meta; /* every byol.* value checked before it is used */
    if (ckpt_meta_read(&st, path, &meta, e) || flags_parse_text(meta.config, path, L->flags, L->nf, e) ||
        model_flags_agree(&L->o.mc, asked, argc, argv, path, e)) {
        st_close(&st);
        return -1;
    }
    byol_init(&L->model, &L->o.mc);
    int rc = state_load_from(&L->model, &st, e);
    memcpy(L->mean, meta.mean, sizeof L->mean); /* 0 and 1 when the checkpoint has none */
    memcpy(L->std, meta.std, sizeof L->std);
    L->step = meta.step;
    st_close(&st);
    if (rc) {
        byol_free(&L->model);
        return -1;
    }
    L->loaded = 1;
    return 0;
}

void ckpt_model_flags(Flag *f, ModelConfig *c, int ckpt_optional) {
    TrainOptions td;
    train_options_default(&td);
    *c = td.mc;
    model_flags(f, c);
    static char help[MODEL_FLAG_COUNT][256];
    const char *what[MODEL_FLAG_COUNT] = {"encoder: resnet18, resnet34 or resnet50", "base width; stages use w, 2w, 4w, 8w",
                                          "cifar (3x3, no max-pool) or imagenet (7x7/2 + max-pool)", "image channels",
                                          "projector hidden size", "projection size", "predictor hidden size",
                                          "byol, simsiam or dino", "projector layers",
                                          "dino's prototypes"};
    char dflt[MODEL_FLAG_COUNT][32];
    snprintf(dflt[0], sizeof dflt[0], "%s", arch_name(c->enc.arch));
    snprintf(dflt[1], sizeof dflt[1], "%d", c->enc.width);
    snprintf(dflt[2], sizeof dflt[2], "%s", stem_name(c->enc.stem));
    snprintf(dflt[3], sizeof dflt[3], "%d", c->enc.in_channels);
    snprintf(dflt[4], sizeof dflt[4], "%d", c->proj_hidden);
    snprintf(dflt[5], sizeof dflt[5], "%d", c->proj_dim);
    snprintf(dflt[6], sizeof dflt[6], "%d", c->pred_hidden);
    snprintf(dflt[7], sizeof dflt[7], "%s", method_name(c->method));
    snprintf(dflt[8], sizeof dflt[8], "%d", c->proj_layers);
    snprintf(dflt[9], sizeof dflt[9], "%d", c->dino_out);
    for (int i = 0; i < MODEL_FLAG_COUNT; i++) {
        if (ckpt_optional)
            snprintf(help[i], sizeof help[i], "%s (the checkpoint's, else byol train's %s)", what[i], dflt[i]);
        else
            snprintf(help[i], sizeof help[i], "%s (the checkpoint's; if given, must agree)", what[i]);
        f[i].help = help[i];
    }
}


int open_data(Dataset *ds, const DataOptions *dopt, int from_ckpt, const char *ckpt, Err *e) {
    if (data_open(ds, dopt, stderr, e) == 0) return 0;
    if (!from_ckpt) return -1;
    char path[4400];
    Err ignored;
    if (ckpt_resolve(ckpt, path, sizeof path, &ignored)) snprintf(path, sizeof path, "%s", ckpt);
    Err orig = *e;
    const char *data = dopt->data ? dopt->data : "";
    const size_t n = strlen(data), hint = strlen(" (check --data)"), len = strlen(orig.msg);
    if (len >= hint && strcmp(orig.msg + len - hint, " (check --data)") == 0) orig.msg[len - hint] = 0;
    /* "PATH: why" becomes "PATH (the --data of CKPT): why; pass --data" */
    if (n && strncmp(orig.msg, data, n) == 0 && orig.msg[n] == ':')
        return err_set(e, "%s (the --data of %s)%s; pass --data to read it from elsewhere", data, path, orig.msg + n);
    return err_set(e, "%s (the --data of %s): %s; pass --data to read it from elsewhere", data, path, orig.msg);
}

int check_eval_resize(int resize, int image_size, Err *e) {
    if (resize > 0 && resize < image_size)
        return err_set(e, "--eval-resize %d is smaller than the centre crop (the image size, %d): give at least %d (256 for 224)",
                       resize, image_size, image_size);
    return 0;
}

void image_name(const Dataset *ds, Split split, int i, char *out, size_t cap) {
    const char *p = ds->split[split].paths ? ds->split[split].paths[i] : NULL;
    if (!p) {
        snprintf(out, cap, "%s/%d", SPLIT_NAMES[split], i);
        return;
    }
    const size_t r = strlen(ds->root);
    if (strncmp(p, ds->root, r) == 0 && p[r] == '/') p += r + 1;
    snprintf(out, cap, "%s", p);
}


int run_feature_config(const Loaded *L, const Dataset *ds, int resize, const struct Backend *be, FeatureConfig *fc,
                       Err *e) {
    if (L->o.mc.enc.in_channels != ds->channels)
        return err_set(e, "%s has %d-channel images, the checkpoint's encoder takes %d", ds->root, ds->channels,
                       L->o.mc.enc.in_channels);
    *fc = (FeatureConfig){.image_size = L->o.data.image_size, .mean = {L->mean[0], L->mean[1], L->mean[2]},
                          .std = {L->std[0], L->std[1], L->std[2]}, .batch = 256, .resize = resize, .be = be};
    if (!fc->image_size) fc->image_size = dataset_default_image_size(ds);
    return check_eval_resize(fc->resize, fc->image_size, e);
}
