#include "args.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dist/dist.h"
#include "../nn/conv_plan.h"

void model_flags(Flag *f, ModelConfig *c) {
    f[0] = (Flag){"arch", FLAG_ARCH, &c->enc.arch, "encoder: resnet18, resnet34 or resnet50 (resnet18)", 0, -1};
    f[1] = (Flag){"width", FLAG_INT, &c->enc.width, "base width; stages use w, 2w, 4w, 8w (64)", 1, 4096};
    f[2] = (Flag){"stem", FLAG_STEM, &c->enc.stem, "cifar (3x3, no max-pool) or imagenet (7x7/2 + max-pool) (cifar)", 0, -1};
    f[3] = (Flag){"in-channels", FLAG_INT, &c->enc.in_channels, "image channels (3)", 1, 64};
    f[4] = (Flag){"proj-hidden", FLAG_INT, &c->proj_hidden, "projector hidden size (4096)", 1, 1 << 20};
    f[5] = (Flag){"proj-dim", FLAG_INT, &c->proj_dim, "projection size (256)", 1, 1 << 20};
    f[6] = (Flag){"pred-hidden", FLAG_INT, &c->pred_hidden, "predictor hidden size, 0 for the method's (4096)", 0, 1 << 20};
    f[7] = (Flag){"method", FLAG_METHOD, &c->method,
                  "byol; simsiam (no EMA target: the online network behind a stop-gradient); or dino (an EMA "
                  "teacher, centering and sharpening, no predictor) (byol)", 0, -1};
    f[8] = (Flag){"proj-layers", FLAG_INT, &c->proj_layers,
                  "projector Linear layers, 2 or 3; 0 for the method's (byol 2, simsiam 3, dino 3)", 0, 3};
    f[9] = (Flag){"dino-out", FLAG_INT, &c->dino_out, "dino: K, the prototypes of the head's last layer (4096)", 1, 1 << 20};
}

void compute_flags(Flag *f, ComputeOptions *o) {
    f[0] = (Flag){"plan", FLAG_STRING, &o->mode,
                  "convolution kernels: measure (time each that applies, once per layer shape; cached) or fixed "
                  "(a rule, no timing) (measure)", 0, -1};
    f[1] = (Flag){"plan-cache", FLAG_STRING, &o->cache,
                  "file of measured plans, keyed by CPU, threads and build, or none (~/.cache/byol/conv-plans.txt)",
                  0, -1};
    f[2] = (Flag){"device", FLAG_STRING, &o->device, "cpu, or cuda / cuda:N for a CUDA GPU (cpu)", 0, -1};
    f[3] = (Flag){"precision", FLAG_STRING, &o->precision,
                  "fp32, or bf16: convolutions and GEMMs on bf16 copies, the rest fp32 (GPU only; bf16 on a GPU, "
                  "else fp32)", 0, -1};
}

const Backend *compute_backend(const ComputeOptions *o, Err *e) {
    const char *device = o->device ? o->device : "cpu";
    if (dist_enabled() && strcmp(device, "cpu") != 0) {
        err_set(e, "--device %s under mpirun: training on several GPUs (one rank per GPU, NCCL) is not "
                   "built yet; run one process, or --device cpu", device);
        return NULL;
    }
    const char *precision = o->precision;
    if (precision && strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0) {
        err_set(e, "--precision %.64s: not a precision (fp32 or bf16)", precision);
        return NULL;
    }
    const Backend *be = backend_for_device(device, e);
    if (!be) return NULL;
    const int bf16 = precision ? strcmp(precision, "bf16") == 0 : be->set_bf16 != NULL;
    if (bf16 && !be->set_bf16) {
        err_set(e, "--precision bf16 runs on a GPU only (--device cuda); the CPU computes in fp32");
        return NULL;
    }
    if (be->set_bf16) be->set_bf16(bf16);
    return be;
}

int plan_apply(const ComputeOptions *o, int *report, Err *e) {
    PlanMode m = PLAN_MEASURE;
    const int fresh = report && o->mode && strcmp(o->mode, "report") == 0;
    if (report) *report = fresh;
    if (o->mode && !fresh && conv_plan_mode_parse(o->mode, &m))
        return err_set(e, "--plan: '%.64s' is neither measure nor fixed%s", o->mode, report ? " nor report" : "");
    conv_plan_set_mode(fresh ? PLAN_FIXED : m); /* the cache is read in measure mode only */
    conv_plan_use_cache(o->cache, stderr);
    conv_plan_set_mode(m);
    return 0;
}

static const char *type_hint(FlagType t) {
    switch (t) {
    case FLAG_INT: return " N";
    case FLAG_SWITCH: return "";
    case FLAG_FLOAT: return " X";
    case FLAG_STRING: return " VALUE";
    case FLAG_ARCH: return " NAME";
    case FLAG_STEM: return " NAME";
    case FLAG_METHOD: return " NAME";
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
    case FLAG_SWITCH:
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return err_set(e, "--%s: '%s' is not 0 or 1 (the bare flag means 1)", fl->name, v);
        *(int *)fl->dst = v[0] == '1';
        return 0;
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
        /* The range is checked on the float that is stored, against the bounds as floats: a
         * bound like 1e-4 is not a float, and its nearest float lies below it, so a check on
         * the double accepted "1e-4", stored 9.99999975e-05 and refused that value when a saved
         * configuration was read back (found by fuzzing the config round trip). */
        const int fits = fabs(x) <= FLT_MAX;
        const float f = fits ? (float)x : 0.0f;
        if (fl->min <= fl->max && (!fits || f < (float)fl->min || f > (float)fl->max))
            return err_set(e, "--%s: %g is out of range [%g, %g]", fl->name, x, fl->min, fl->max);
        if (!fits) return err_set(e, "--%s: %g is too large for a float", fl->name, x);
        *(float *)fl->dst = f;
        return 0;
    }
    case FLAG_STRING: /* an empty path or name is always a slip (found by fuzzing: --out "") */
        if (*v == 0) return err_set(e, "--%s needs a non-empty value", fl->name);
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
    case FLAG_METHOD:
        if (method_parse(v, (Method *)fl->dst))
            return err_set(e, "--%s: unknown method '%s' (byol, simsiam)", fl->name, v);
        return 0;
    }
    return -1;
}

/* Edit distance between a[0..na) and b (insertions, deletions, substitutions, and swaps of two
 * neighbours: the usual typos); NAME_MAX_LEN caps the table. */
enum { NAME_MAX_LEN = 48 };
static int typo_distance(const char *a, size_t na, const char *b) {
    size_t nb = strlen(b);
    if (na >= NAME_MAX_LEN || nb >= NAME_MAX_LEN) return 1 << 20;
    int d[NAME_MAX_LEN + 1][NAME_MAX_LEN + 1];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[na][nb];
}

/* The flag a mistyped name most likely meant: within 2 edits (1 for names of 4 letters or fewer),
 * or the one flag that starts with it. NULL when nothing is that close. */
static const Flag *closest_flag(const char *name, size_t len, const Flag *flags, int n) {
    const Flag *best = NULL, *prefix = NULL;
    int best_d = len <= 4 ? 2 : 3, n_prefix = 0;
    for (int k = 0; k < n; k++) {
        int d = typo_distance(name, len, flags[k].name);
        if (d < best_d) best_d = d, best = &flags[k];
        if (len >= 3 && strncmp(flags[k].name, name, len) == 0) prefix = &flags[k], n_prefix++;
    }
    return best ? best : n_prefix == 1 ? prefix : NULL;
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
        if (!fl) {
            const Flag *near = closest_flag(name, len, flags, n);
            if (near) return err_set(e, "unknown flag '%.*s' (did you mean --%s? see --help)", (int)len + 2, a, near->name);
            return err_set(e, "unknown flag '%.*s' (see --help)", (int)len + 2, a);
        }
        const char *v = eq ? eq + 1 : fl->type == FLAG_SWITCH ? "1" : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return err_set(e, "--%s needs a value", fl->name);
        if (set_value(fl, v, e)) return -1;
    }
    return 0;
}

int cmd_fail(const char *cmd, const Err *e, int status) {
    fprintf(stderr, "byol %s: %s\n", cmd, e->msg);
    return status;
}

int flag_given(int argc, char **argv, const char *name) {
    size_t len = strlen(name);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, len) == 0 &&
            (argv[i][2 + len] == 0 || argv[i][2 + len] == '='))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- config files */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r')) *--end = 0;
    return s;
}

/* String settings point into the parsed text, so each text stays alive until the program ends. */
static char **kept_texts;
static int n_kept_texts;
void flags_release_texts(void) {
    for (int i = 0; i < n_kept_texts; i++) free(kept_texts[i]);
    free(kept_texts);
    kept_texts = NULL;
    n_kept_texts = 0;
}

int flags_parse_text(const char *text, const char *label, const Flag *flags, int n, Err *e) {
    char *copy = strdup(text);
    char **grown = realloc(kept_texts, sizeof *kept_texts * (size_t)(n_kept_texts + 1));
    if (!copy || !grown) die("out of memory reading %s", label);
    static int registered;
    if (!registered++) atexit(flags_release_texts);
    kept_texts = grown;
    kept_texts[n_kept_texts++] = copy;
    int rc = 0, lineno = 0;
    for (char *line = copy, *next; line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *l = trim(line);
        if (!*l) continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            rc = err_set(e, "%s:%d: expected 'key = value', found '%.60s'", label, lineno, l);
            break;
        }
        *eq = 0;
        char *key = trim(l), *value = trim(eq + 1);
        const Flag *fl = NULL;
        for (int k = 0; k < n; k++)
            if (strcmp(flags[k].name, key) == 0) fl = &flags[k];
        const Flag *near = fl ? NULL : closest_flag(key, strlen(key), flags, n);
        if (near) rc = err_set(e, "%s:%d: unknown setting '%s' (did you mean %s?)", label, lineno, key, near->name);
        else if (!fl) rc = err_set(e, "%s:%d: unknown setting '%s' (settings are the flags, without --)", label, lineno, key);
        else if (set_value(fl, value, e)) {
            char inner[1024];
            snprintf(inner, sizeof inner, "%s", e->msg);
            rc = err_set(e, "%s:%d: %s", label, lineno, inner);
        }
    }
    return rc;
}

int flags_parse_file(const char *path, const Flag *flags, int n, Err *e) {
    size_t size;
    uint8_t *buf = read_file(path, &size, e);
    if (!buf) return -1;
    char *text = malloc(size + 1);
    if (!text) die("out of memory reading %s", path);
    memcpy(text, buf, size);
    text[size] = 0;
    free(buf);
    int rc = strlen(text) != size ? err_set(e, "%s: not a text file", path)
                                  : flags_parse_text(text, path, flags, n, e);
    free(text);
    return rc;
}

const char *flag_value_string(const Flag *fl, char *buf, size_t cap) {
    if (!buf || !cap) return NULL;
    switch (fl->type) {
    case FLAG_INT:
    case FLAG_SWITCH: snprintf(buf, cap, "%d", *(const int *)fl->dst); break;
    case FLAG_FLOAT: { /* the shortest text that reads back as the same float */
        const float x = *(const float *)fl->dst;
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, cap, "%.*g", digits, x);
            if (strtof(buf, NULL) == x) break;
        }
        break;
    }
    case FLAG_STRING: {
        const char *v = *(const char *const *)fl->dst;
        if (!v) return NULL;
        snprintf(buf, cap, "%s", v);
        break;
    }
    case FLAG_ARCH: snprintf(buf, cap, "%s", arch_name(*(const Arch *)fl->dst)); break;
    case FLAG_STEM: snprintf(buf, cap, "%s", stem_name(*(const Stem *)fl->dst)); break;
    case FLAG_METHOD: snprintf(buf, cap, "%s", method_name(*(const Method *)fl->dst)); break;
    }
    return buf;
}

void flag_copy_value(const Flag *to, const Flag *from) {
    switch (to->type) {
    case FLAG_INT:
    case FLAG_SWITCH: *(int *)to->dst = *(const int *)from->dst; break;
    case FLAG_FLOAT: *(float *)to->dst = *(const float *)from->dst; break;
    case FLAG_STRING: *(const char **)to->dst = *(const char *const *)from->dst; break;
    case FLAG_ARCH: *(Arch *)to->dst = *(const Arch *)from->dst; break;
    case FLAG_STEM: *(Stem *)to->dst = *(const Stem *)from->dst; break;
    case FLAG_METHOD: *(Method *)to->dst = *(const Method *)from->dst; break;
    }
}

char *flags_dump(const Flag *flags, int n) { return flags_dump_if(flags, n, NULL); }

char *flags_dump_if(const Flag *flags, int n, int (*keep)(const Flag *)) {
    size_t cap = 256 + (size_t)n * 160, len = 0;
    char *out = malloc(cap);
    if (!out) die("out of memory");
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        char v[1200];
        if (keep && !keep(&flags[i])) continue;
        if (flags[i].dst == NULL || !flag_value_string(&flags[i], v, sizeof v)) continue;
        if (flags[i].type == FLAG_FLOAT && isnan(*(const float *)flags[i].dst)) continue; /* unset */
        int w = snprintf(out + len, cap - len, "%s = %s\n", flags[i].name, v);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    return out;
}
