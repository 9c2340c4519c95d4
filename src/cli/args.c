#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void model_flags(Flag *f, ModelConfig *c) {
    f[0] = (Flag){"arch", FLAG_ARCH, &c->enc.arch, "encoder: resnet18, resnet34 or resnet50 (resnet18)", 0, -1};
    f[1] = (Flag){"width", FLAG_INT, &c->enc.width, "base width; stages use w, 2w, 4w, 8w (64)", 1, 4096};
    f[2] = (Flag){"stem", FLAG_STEM, &c->enc.stem, "cifar (3x3, no max-pool) or imagenet (7x7/2 + max-pool) (cifar)", 0, -1};
    f[3] = (Flag){"in-channels", FLAG_INT, &c->enc.in_channels, "image channels (3)", 1, 64};
    f[4] = (Flag){"proj-hidden", FLAG_INT, &c->proj_hidden, "projector hidden size (4096)", 1, 1 << 20};
    f[5] = (Flag){"proj-dim", FLAG_INT, &c->proj_dim, "projection size (256)", 1, 1 << 20};
    f[6] = (Flag){"pred-hidden", FLAG_INT, &c->pred_hidden, "predictor hidden size (4096)", 1, 1 << 20};
}

static const char *type_hint(FlagType t) {
    switch (t) {
    case FLAG_INT: return " N";
    case FLAG_FLOAT: return " X";
    case FLAG_STRING: return " VALUE";
    case FLAG_ARCH: return " NAME";
    case FLAG_STEM: return " NAME";
    }
    return "";
}

void flags_usage(FILE *f, const char *usage, const Flag *flags, int n) {
    fprintf(f, "%s\n", usage);
    for (int i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", flags[i].name, type_hint(flags[i].type));
        fprintf(f, "  %-22s %s\n", left, flags[i].help);
    }
}

static int set_value(const Flag *fl, const char *v, Err *e) {
    char *end;
    errno = 0;
    switch (fl->type) {
    case FLAG_INT: {
        long x = strtol(v, &end, 10);
        if (*v == 0 || *end || errno)
            return err_set(e, "--%s: '%s' is not an integer", fl->name, v);
        if (fl->min <= fl->max && (x < fl->min || x > fl->max))
            return err_set(e, "--%s: %ld is out of range [%g, %g]", fl->name, x, fl->min, fl->max);
        *(int *)fl->dst = (int)x;
        return 0;
    }
    case FLAG_FLOAT: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !isfinite(x))
            return err_set(e, "--%s: '%s' is not a finite number", fl->name, v);
        if (fl->min <= fl->max && (x < fl->min || x > fl->max))
            return err_set(e, "--%s: %g is out of range [%g, %g]", fl->name, x, fl->min, fl->max);
        *(float *)fl->dst = (float)x;
        return 0;
    }
    case FLAG_STRING:
        *(const char **)fl->dst = v;
        return 0;
    case FLAG_ARCH:
        if (arch_parse(v, (Arch *)fl->dst))
            return err_set(e, "--arch: unknown architecture '%s' (resnet18, resnet34, resnet50)", v);
        return 0;
    case FLAG_STEM:
        if (stem_parse(v, (Stem *)fl->dst))
            return err_set(e, "--stem: unknown stem '%s' (cifar, imagenet)", v);
        return 0;
    }
    return -1;
}

int flags_parse(int argc, char **argv, const Flag *flags, int n, const char *usage, Err *e) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            flags_usage(stdout, usage, flags, n);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0)
            return err_set(e, "unexpected argument '%s' (flags start with --; see --help)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const Flag *fl = NULL;
        for (int k = 0; k < n; k++)
            if (strlen(flags[k].name) == len && strncmp(flags[k].name, name, len) == 0) fl = &flags[k];
        if (!fl) return err_set(e, "unknown flag '%.*s' (see --help)", (int)len + 2, a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return err_set(e, "--%s needs a value", fl->name);
        if (set_value(fl, v, e)) return -1;
    }
    return 0;
}
