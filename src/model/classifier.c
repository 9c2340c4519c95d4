#include "classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/state.h"
#include "../nn/nn.h"

void classifier_init(Classifier *c, const EncoderConfig *enc, int n_classes, char *const *class_names, int trained) {
    memset(c, 0, sizeof *c);
    if (n_classes < 1) die("internal: classifier_init(%d classes)", n_classes);
    store_init(&c->store);
    resnet_build(&c->net, enc, &c->store, "");
    const int d = c->net.out_dim;
    const int64_t wshape[2] = {n_classes, d}, bshape[1] = {n_classes};
    c->fc_weight = store_add(&c->store, "", "fc.weight", ROLE_PARAM, LAYOUT_PLAIN, 2, wshape);
    c->fc_bias = store_add(&c->store, "", "fc.bias", ROLE_PARAM, LAYOUT_PLAIN, 1, bshape);
    store_alloc(&c->store, trained);
    c->n_classes = n_classes;
    c->class_names = xcalloc((size_t)n_classes, sizeof *c->class_names, "class names");
    for (int k = 0; k < n_classes; k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        const char *name = class_names && class_names[k] ? class_names[k] : num;
        c->class_names[k] = xmalloc(strlen(name) + 1, "class names");
        strcpy(c->class_names[k], name);
    }
    for (int k = 0; k < 3; k++) c->mean[k] = 0, c->std[k] = 1;
}

void classifier_free(Classifier *c) {
    store_free(&c->store);
    if (c->class_names)
        for (int k = 0; k < c->n_classes; k++) xfree(c->class_names[k]);
    xfree(c->class_names);
    memset(c, 0, sizeof *c);
}

void classifier_logits(const Classifier *c, float *logits, const float *features, int B) {
    linear_forward_cpu(logits, features, c->store.params + c->fc_weight, c->store.params + c->fc_bias, B,
                       c->net.out_dim, c->n_classes);
}

int classifier_save(const Classifier *c, const char *path, int64_t steps, const StMeta *extra, int n_extra, Err *e) {
    const EncoderConfig *enc = &c->net.cfg;
    char width[16], inch[16], size[16], mean[96], std[96];
    snprintf(width, sizeof width, "%d", enc->width);
    snprintf(inch, sizeof inch, "%d", enc->in_channels);
    snprintf(size, sizeof size, "%d", c->image_size);
    snprintf(mean, sizeof mean, "%.9g %.9g %.9g", c->mean[0], c->mean[1], c->mean[2]);
    snprintf(std, sizeof std, "%.9g %.9g %.9g", c->std[0], c->std[1], c->std[2]);
    size_t len = 1;
    for (int k = 0; k < c->n_classes; k++) {
        if (strchr(c->class_names[k], '\n'))
            return err_set(e, "%s: class name '%.60s' holds a newline: the file lists them one a line", path,
                           c->class_names[k]);
        len += strlen(c->class_names[k]) + 1;
    }
    char *classes = xmalloc(len, "class names"), *p = classes;
    for (int k = 0; k < c->n_classes; k++) p += sprintf(p, "%s%s", k ? "\n" : "", c->class_names[k]);
    StMeta meta[16 + 8] = {{"byol.kind", "classifier"}, {"arch", (char *)arch_name(enc->arch)},
                           {"width", width}, {"stem", (char *)stem_name(enc->stem)},
                           {"in_channels", inch}, {"image_size", size}, {"mean", mean}, {"std", std},
                           {"byol.classes", classes}};
    int n = 9;
    for (int i = 0; i < n_extra && n < (int)ARRAY_LEN(meta); i++) meta[n++] = extra[i];
    const int rc = state_store_save(&c->store, path, steps, meta, n, e);
    xfree(classes);
    return rc;
}

/* "a b c": 1 to 3 finite numbers (fewer: the last repeats), each > 0 when positive. */
static int parse_triple(const char *s, float v[3], int positive) {
    int n = 0;
    const char *p = s;
    while (n < 3) {
        char *end;
        const double x = strtod(p, &end);
        if (end == p) break;
        if (!isfinite(x) || (positive && !(x > 0))) return -1;
        v[n++] = (float)x;
        p = end;
    }
    while (*p == ' ') p++;
    if (n == 0 || *p) return -1;
    for (int k = n; k < 3; k++) v[k] = v[n - 1];
    return 0;
}

int classifier_load(Classifier *c, const char *path, Err *e) {
    memset(c, 0, sizeof *c);
    Safetensors st;
    if (st_open(&st, path, e)) return -1;
    const char *kind = st_meta(&st, "byol.kind");
    int rc = -1;
    if (!kind || strcmp(kind, "classifier") != 0) {
        if (st_meta(&st, "byol.config"))
            err_set(e, "%s is a byol train checkpoint (an encoder without a classifier): fine-tune it first with "
                       "byol finetune --ckpt", path);
        else
            err_set(e, "%s is not a classifier of byol finetune (no byol.kind classifier metadata): byol predict "
                       "needs byol finetune's classifier.safetensors", path);
        goto out;
    }
    EncoderConfig enc;
    const char *prefix;
    if (state_encoder_config(&st, &enc, &prefix, e)) goto out;
    const StEntry *fc = st_find(&st, "fc.weight");
    if (!fc || fc->ndim != 2 || fc->shape[0] < 1 || fc->shape[0] > 1000000) {
        err_set(e, "%s: no fc.weight of [classes, features]: a classifier file needs its head", path);
        goto out;
    }
    const int n_classes = (int)fc->shape[0];
    const char *classes = st_meta(&st, "byol.classes"), *size = st_meta(&st, "image_size");
    const char *mean = st_meta(&st, "mean"), *std = st_meta(&st, "std");
    char *names_text = NULL;
    char **names = NULL;
    if (classes) { /* one a line, exactly n_classes */
        names_text = xmalloc(strlen(classes) + 1, "class names");
        strcpy(names_text, classes);
        names = xcalloc((size_t)n_classes, sizeof *names, "class names");
        int k = 0;
        for (char *line = names_text, *next; line && k <= n_classes; line = next, k++) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (k < n_classes) names[k] = line;
        }
        if (k != n_classes) {
            xfree(names_text), xfree(names);
            err_set(e, "%s: byol.classes names %d classes, fc.weight has %d rows", path, k, n_classes);
            goto out;
        }
    }
    classifier_init(c, &enc, n_classes, names, 0);
    xfree(names_text), xfree(names);
    char *end = NULL;
    const long side = size ? strtol(size, &end, 10) : 0;
    if (!size || *end || side < 1 || side > 16384) {
        err_set(e, "%s: image_size '%s' is not a side in pixels (1 to 16384)", path, size ? size : "(absent)");
        goto fail;
    }
    c->image_size = (int)side;
    if (!mean || !std || parse_triple(mean, c->mean, 0) || parse_triple(std, c->std, 1)) {
        err_set(e, "%s: mean '%s' / std '%s' are not 1 to 3 numbers each (std > 0)", path, mean ? mean : "(absent)",
                std ? std : "(absent)");
        goto fail;
    }
    if (state_store_load(&c->store, &st, e)) goto fail;
    rc = 0;
    goto out;
fail:
    classifier_free(c);
out:
    st_close(&st);
    return rc;
}
