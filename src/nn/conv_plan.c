/* The convolution planner (see conv_plan.h): a table of shapes and the kernel chosen for each
 * pass, filled by measurement, the cache file, a checkpoint's plan or the fixed rule. */
#include "conv_plan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/threads.h"

enum { SOURCE_NONE, SOURCE_FIXED, SOURCE_MEASURED, SOURCE_CACHE, SOURCE_GIVEN };

typedef struct {
    ConvShape s;           /* B, H, W, Cin, Cout, K, stride, pad (Ho, Wo follow) */
    signed char algo[3];   /* per pass: ConvAlgo, or -1 when not planned */
    unsigned char source[3];
    unsigned char used;    /* the passes conv_plan was asked for (1 << pass): this process runs them */
    double seconds[3][CONV_ALGO_COUNT]; /* measured time of one run; 0: not timed */
} PlanEntry;

static struct {
    PlanMode mode;
    PlanEntry *e;
    int n, cap;
    double seconds;      /* spent measuring */
    char cache[4096];    /* "" none */
    int cache_failed;    /* a write failed: said once, then no more writes */
    FILE *warn;
    ConvPlanTimer timer;
    void *timer_ctx;
} P = {.mode = PLAN_FIXED};

static const char ALGO_CHAR[CONV_ALGO_COUNT] = {'i', 'w', 'd'};

void conv_plan_set_mode(PlanMode m) { P.mode = m; }
PlanMode conv_plan_mode(void) { return P.mode; }

int conv_plan_mode_parse(const char *s, PlanMode *m) {
    if (s && strcmp(s, "measure") == 0) return *m = PLAN_MEASURE, 0;
    if (s && strcmp(s, "fixed") == 0) return *m = PLAN_FIXED, 0;
    return -1;
}

void conv_plan_set_timer(ConvPlanTimer fn, void *ctx) {
    P.timer = fn;
    P.timer_ctx = ctx;
}

void conv_plan_reset(void) {
    free(P.e);
    P.e = NULL;
    P.n = P.cap = 0;
    P.seconds = 0;
}

/* ---- the table ---- */

static int same_layer(const ConvShape *a, const ConvShape *b) {
    return a->H == b->H && a->W == b->W && a->Cin == b->Cin && a->Cout == b->Cout && a->K == b->K &&
           a->stride == b->stride && a->pad == b->pad;
}

static PlanEntry *find_exact(const ConvShape *s) {
    for (int i = 0; i < P.n; i++)
        if (P.e[i].s.B == s->B && same_layer(&P.e[i].s, s)) return &P.e[i];
    return NULL;
}

static PlanEntry *find_or_add(const ConvShape *s) {
    PlanEntry *e = find_exact(s);
    if (e) return e;
    if (P.n == P.cap) {
        P.cap = P.cap ? 2 * P.cap : 32;
        P.e = realloc(P.e, (size_t)P.cap * sizeof *P.e);
        if (!P.e) die("out of memory for the convolution plan");
    }
    e = &P.e[P.n++];
    memset(e, 0, sizeof *e);
    e->s = conv_shape(s->B, s->H, s->W, s->Cin, s->Cout, s->K, s->stride, s->pad);
    e->algo[0] = e->algo[1] = e->algo[2] = -1;
    return e;
}

ConvAlgo conv_plan_algo(const ConvShape *s, int pass) {
    const PlanEntry *best = NULL;
    for (int i = 0; i < P.n; i++) {
        const PlanEntry *e = &P.e[i];
        /* only shapes this process planned for this pass: their scratch is in the caller's
         * buffers. An entry the cache brought in for another batch was never sized for, and its
         * kernel may need more scratch than the planned batch's (a --balance run's smaller
         * shards picked one and overran the step's arena). */
        if (e->algo[pass] < 0 || !(e->used >> pass & 1) || e->s.B < s->B || !same_layer(&e->s, s)) continue;
        if (!best || e->s.B < best->s.B) best = e;
    }
    if (!best)
        die("convolution %dx%d stride %d, %d->%d channels on %dx%d, batch %d: the %s pass was never planned "
            "(conv2d_plan must see every shape before its kernels run)",
            s->K, s->K, s->stride, s->Cin, s->Cout, s->H, s->W, s->B, conv_pass_name(pass));
    return (ConvAlgo)best->algo[pass];
}

/* ---- measurement ---- */

static double conv_flops(const ConvShape *s) {
    return 2.0 * s->B * s->Ho * s->Wo * s->Cout * s->K * s->K * s->Cin;
}

/* Buffers for timing one shape's kernels on data of the real size (values in [-1, 1)). */
typedef struct {
    float *x, *y, *w, *dw, *scratch;
    size_t bytes[5];
} Bench;

static void fill(float *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
}

/* The timing buffers are mapped and unmapped directly: from malloc, their pages stayed in the
 * heap after planning (glibc raises its mmap threshold after a large free) and added 30-60 MB to
 * the peak memory of the run that measured (CPU-default model, batch 256). Pages come zeroed. */
static float *bench_buffer(size_t floats, size_t *bytes) {
    *bytes = (floats ? floats : 1) * sizeof(float);
#ifdef __SANITIZE_ADDRESS__ /* AddressSanitizer guards heap blocks, not mappings: keep its checks */
    return xcalloc(*bytes, 1, "timing convolution kernels (lower --batch, or --plan fixed)");
#else
    void *p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("out of memory timing convolution kernels (%.0f MB): lower --batch, or --plan fixed", *bytes / 1e6);
    return p;
#endif
}

static void bench_alloc(Bench *b, const ConvShape *s, size_t scratch) {
    const size_t nx = (size_t)s->B * s->H * s->W * s->Cin, ny = (size_t)s->B * s->Ho * s->Wo * s->Cout;
    const size_t nw = (size_t)s->K * s->K * s->Cin * s->Cout;
    b->x = bench_buffer(nx, &b->bytes[0]);
    b->y = bench_buffer(ny, &b->bytes[1]);
    b->w = bench_buffer(nw, &b->bytes[2]);
    b->dw = bench_buffer(nw, &b->bytes[3]);
    b->scratch = bench_buffer(scratch + 1, &b->bytes[4]);
    fill(b->x, nx, 1), fill(b->y, ny, 2), fill(b->w, nw, 3);
}

static void bench_free(Bench *b) {
    float *p[5] = {b->x, b->y, b->w, b->dw, b->scratch};
    for (int i = 0; i < 5; i++) {
#ifdef __SANITIZE_ADDRESS__
        xfree(p[i]);
#else
        munmap(p[i], b->bytes[i]);
#endif
    }
}

static double run_once(const Bench *b, ConvAlgo a, int pass, const ConvShape *s) {
    if (P.timer) return P.timer(a, pass, s, P.timer_ctx);
    double t0 = now_seconds();
    switch (pass) {
    case CONV_PASS_FORWARD: conv_algo_run(a, pass, b->y, b->x, b->w, s, b->scratch); break;
    case CONV_PASS_DATA: conv_algo_run(a, pass, b->x, b->y, b->w, s, b->scratch); break;
    default: conv_algo_run(a, pass, b->dw, b->y, b->x, s, b->scratch); break;
    }
    return now_seconds() - t0;
}

/* The time of one run: the fastest of a few after a warm-up run, repeated up to about 40 ms a
 * kernel (1 to 4 runs) so that small layers are timed above the clock's noise and large ones
 * do not make planning long. A kernel whose warm-up already took 3x the best so far is out. */
static double time_kernel(const Bench *b, ConvAlgo a, int pass, const ConvShape *s, double best) {
    double warm = run_once(b, a, pass, s);
    if (best > 0 && warm > 3 * best) return warm;
    int reps = warm > 0 ? (int)(0.04 / warm) : 4;
    reps = reps < 1 ? 1 : reps > 4 ? 4 : reps;
    double t = 1e30;
    for (int r = 0; r < reps; r++) {
        double dt = run_once(b, a, pass, s);
        if (dt < t) t = dt;
    }
    return t;
}

/* Fault injection for tests: BYOL_FAULT_PLAN_PREFER=im2col|winograd|direct makes every other
 * kernel measure 100x slower, so that a measured plan is known to differ from the fixed rule's
 * (tests that a resumed run keeps its checkpoint's kernels). */
static double fault_factor(ConvAlgo a) {
    static int prefer = -2; /* -2: not read yet; -1: off */
    if (prefer == -2) {
        const char *v = getenv("BYOL_FAULT_PLAN_PREFER");
        prefer = -1;
        for (int k = 0; v && *v && k < CONV_ALGO_COUNT; k++)
            if (strcmp(v, conv_algo_name(k)) == 0) prefer = k;
    }
    return prefer >= 0 && (int)a != prefer ? 100.0 : 1.0;
}

/* Another kernel replaces the fixed rule's only when it measures this much faster: timed
 * alone, kernels that differ by a few percent swap places from run to run (and in a step their
 * inputs come from memory, not from the cache the repeated timing warmed), so near-ties keep the
 * rule's choice, and a plan changes only where measuring finds a real difference. */
#define PLAN_MARGIN 1.05

/* Times every kernel that applies to the passes of `want` and keeps the fastest, the fixed
 * rule's choice (timed first) unless another is PLAN_MARGIN times faster. */
static void measure(PlanEntry *e, unsigned want) {
    const ConvShape *s = &e->s;
    size_t scratch = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int a = 0; a < CONV_ALGO_COUNT; a++)
            if ((want >> pass & 1) && conv_algo_applies(a, s, pass))
                scratch = MAX(scratch, conv_algo_scratch_floats(a, s, pass));
    Bench b = {0};
    if (!P.timer) bench_alloc(&b, s, scratch);
    const double t0 = now_seconds();
    for (int pass = 0; pass < 3; pass++) {
        if (!(want >> pass & 1)) continue;
        const ConvAlgo first = conv_algo_fixed(s, pass);
        ConvAlgo order[CONV_ALGO_COUNT] = {first};
        for (int a = 0, k = 1; a < CONV_ALGO_COUNT; a++)
            if (a != (int)first) order[k++] = a;
        double best = 0;
        int chosen = -1;
        for (int k = 0; k < CONV_ALGO_COUNT; k++) {
            const ConvAlgo a = order[k];
            if (!conv_algo_applies(a, s, pass)) continue;
            double t = time_kernel(&b, a, pass, s, best) * fault_factor(a);
            e->seconds[pass][a] = t;
            if (chosen < 0 || t * (chosen == (int)first ? PLAN_MARGIN : 1.0) < best) best = t, chosen = a;
        }
        e->algo[pass] = (signed char)chosen;
        e->source[pass] = SOURCE_MEASURED;
    }
    P.seconds += now_seconds() - t0;
    if (!P.timer) bench_free(&b);
}

/* ---- the cache file ---- */

/* The vector ISA this file (and so the build's Winograd, im2col and batch-norm code) was
 * compiled for: a NATIVE=0 binary and a native one time Winograd differently on one CPU. */
static const char *build_isa(void) {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__AVX__)
    return "avx";
#elif defined(__x86_64__)
    return "sse2";
#else
    return "portable";
#endif
}

const char *conv_plan_machine_key(void) {
    static char key[1024];
    snprintf(key, sizeof key, "%s; threads %d; byol.c 0.1, built for %s, direct %s; %s", machine_cpu_name(), threads_get(),
             build_isa(), direct_conv_isa(), threads_backend_summary());
    for (char *p = key; *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
    return key;
}

const char *conv_plan_cache_path(void) { return P.cache; }

/* One plan entry in text: "B,H,W,Cin,Cout,K,stride,pad:FDW"; its length, or -1. */
static int parse_entry(const char *t, ConvShape *s, signed char algo[3]) {
    int v[8], used = 0;
    char c[3];
    if (sscanf(t, "%d,%d,%d,%d,%d,%d,%d,%d:%c%c%c%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
               &c[0], &c[1], &c[2], &used) != 11)
        return -1;
    for (int i = 0; i < 8; i++)
        if (v[i] < (i == 7 ? 0 : 1) || v[i] > (1 << 20)) return -1;
    if (v[7] > v[5] || (v[1] + 2 * v[7] - v[5]) < 0 || (v[2] + 2 * v[7] - v[5]) < 0) return -1;
    *s = conv_shape(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    int any = 0;
    for (int p = 0; p < 3; p++) {
        const char *at = c[p] == '-' ? NULL : memchr(ALGO_CHAR, c[p], CONV_ALGO_COUNT);
        if (c[p] != '-' && !at) return -1;
        algo[p] = at ? (signed char)(at - ALGO_CHAR) : -1;
        any |= at != NULL;
    }
    return any ? used : -1;
}

/* Which passes of an entry go into text: those this process runs (a checkpoint's plan), or the
 * measured ones this machine's cache holds. */
enum { FORMAT_USED, FORMAT_CACHE };

static int format_entry(char *buf, size_t cap, const PlanEntry *e, int which) {
    char c[3];
    int any = 0;
    for (int p = 0; p < 3; p++) {
        int keep = e->algo[p] >= 0 && (which == FORMAT_USED ? (e->used >> p & 1)
                                                             : e->source[p] == SOURCE_CACHE || e->source[p] == SOURCE_MEASURED);
        c[p] = keep ? ALGO_CHAR[(int)e->algo[p]] : '-';
        any |= keep;
    }
    if (!any) return 0;
    const ConvShape *s = &e->s;
    return snprintf(buf, cap, "%d,%d,%d,%d,%d,%d,%d,%d:%c%c%c", s->B, s->H, s->W, s->Cin, s->Cout, s->K, s->stride,
                    s->pad, c[0], c[1], c[2]);
}

/* Takes the choices of (s, algo) from `source` where the pass has none yet (or always, for a
 * checkpoint's plan); a kernel that does not apply here is left to plan again. Returns how
 * many choices did not apply. */
static int take_entry(const ConvShape *s, const signed char algo[3], unsigned char source) {
    PlanEntry *e = find_or_add(s);
    int dropped = 0;
    for (int p = 0; p < 3; p++) {
        if (algo[p] < 0 || (e->algo[p] >= 0 && source != SOURCE_GIVEN)) continue;
        if (!conv_algo_applies(algo[p], &e->s, p)) {
            dropped++;
            continue;
        }
        e->algo[p] = algo[p];
        e->source[p] = source;
    }
    return dropped;
}

static void default_cache_path(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        snprintf(buf, cap, "%s/byol/conv-plans.txt", xdg);
    else if (home && *home)
        snprintf(buf, cap, "%s/.cache/byol/conv-plans.txt", home);
    else
        buf[0] = 0;
}

enum { CACHE_MAX_LINES = 4096 };
static const char CACHE_HEADER[] =
    "# byol.c convolution plans: the kernel chosen for each (machine, layer shape), measured by byol; safe to delete\n";

/* The cache's lines (without newline), malloc'ed, in *n; NULL with *n = 0 when there is no
 * file. *bad is the first unreadable line's number (0: none). */
static char **cache_read_lines(const char *path, int *n, int *bad) {
    *n = *bad = 0;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **lines = NULL, buf[2048];
    int cap = 0, lineno = 0;
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        size_t len = strlen(buf);
        if (len && buf[len - 1] == '\n') buf[--len] = 0;
        else if (!feof(f)) { /* a line longer than any the cache writes */
            if (!*bad) *bad = lineno;
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
            continue;
        }
        if (!len || buf[0] == '#') continue;
        char *tab = strchr(buf, '\t');
        ConvShape s;
        signed char a[3];
        int used = tab ? parse_entry(tab + 1, &s, a) : -1;
        if (used < 0 || tab[1 + used] != 0) {
            if (!*bad) *bad = lineno;
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            lines = realloc(lines, (size_t)cap * sizeof *lines);
            if (!lines) die("out of memory reading the plan cache %s", path);
        }
        lines[(*n)++] = strdup(buf);
    }
    fclose(f);
    return lines;
}

static void free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* Whether a cache line holds an entry of this machine's key (klen its length); the entry then
 * in s and a (cache_read_lines kept only lines whose entry parses). */
static int own_entry(const char *line, const char *key, size_t klen, ConvShape *s, signed char a[3]) {
    return strncmp(line, key, klen) == 0 && line[klen] == '\t' && parse_entry(line + klen + 1, s, a) >= 0;
}

void conv_plan_use_cache(const char *path, FILE *warn) {
    P.warn = warn;
    P.cache_failed = 0;
    if (path && strcmp(path, "none") == 0) {
        P.cache[0] = 0;
    } else if (path && strlen(path) >= sizeof P.cache - 32) { /* room for the temporary's suffix */
        P.cache[0] = 0;
        if (warn) fprintf(warn, "byol: plan cache %.64s...: path too long; no cache this run\n", path);
    } else if (path && *path) {
        snprintf(P.cache, sizeof P.cache, "%s", path);
    } else {
        default_cache_path(P.cache, sizeof P.cache);
    }
    if (!P.cache[0] || P.mode != PLAN_MEASURE) return;
    int n, bad;
    char **lines = cache_read_lines(P.cache, &n, &bad);
    if (bad && warn)
        fprintf(warn, "byol: plan cache %s: line %d is not a plan entry; such lines are dropped when the file is "
                      "next written\n", P.cache, bad);
    const char *key = conv_plan_machine_key();
    const size_t klen = strlen(key);
    for (int i = 0; i < n; i++) {
        ConvShape s;
        signed char a[3];
        if (own_entry(lines[i], key, klen, &s, a)) take_entry(&s, a, SOURCE_CACHE);
    }
    free_lines(lines, n);
}

/* Rewrites the cache: the lines of other machines and of shapes this process did not plan as
 * they were (another process may have added some since this one read the file), then this
 * process's measured and cached choices; at most CACHE_MAX_LINES, the oldest dropped. Written
 * to a temporary file and renamed over the cache, so a reader never sees half a file; not
 * through atomic_write, whose fsyncs a cache does not need and whose bytes
 * BYOL_FAULT_KILL_AFTER_BYTES counts for the checkpoints' kill tests. */
static void cache_write(void) {
    if (!P.cache[0] || P.cache_failed) return;
    const char *key = conv_plan_machine_key();
    const size_t klen = strlen(key);
    int n, bad;
    char **old = cache_read_lines(P.cache, &n, &bad);
    char **out = malloc((size_t)(n + P.n + 1) * sizeof *out);
    if (!out) die("out of memory writing the plan cache");
    int m = 0;
    for (int i = 0; i < n; i++) {
        ConvShape s;
        signed char a[3];
        const PlanEntry *e = own_entry(old[i], key, klen, &s, a) ? find_exact(&s) : NULL;
        if (!e || format_entry(NULL, 0, e, FORMAT_CACHE) <= 0) out[m++] = old[i]; /* not replaced below */
    }
    char tmp[4200], entry[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", P.cache, (long)getpid());
    FILE *f = NULL;
    char failed[4096];
    if (make_parent_dirs(P.cache, failed, sizeof failed) == 0) f = fopen(tmp, "w");
    int ok = f != NULL;
    if (f) {
        int total = m;
        for (int i = 0; i < P.n; i++) total += format_entry(entry, sizeof entry, &P.e[i], FORMAT_CACHE) > 0;
        ok &= fputs(CACHE_HEADER, f) >= 0;
        for (int i = total > CACHE_MAX_LINES ? total - CACHE_MAX_LINES : 0; i < m; i++)
            ok &= fprintf(f, "%s\n", out[i]) > 0;
        for (int i = 0; i < P.n; i++)
            if (format_entry(entry, sizeof entry, &P.e[i], FORMAT_CACHE) > 0) ok &= fprintf(f, "%s\t%s\n", key, entry) > 0;
        ok &= fclose(f) == 0;
        ok = ok && rename(tmp, P.cache) == 0;
        if (!ok) unlink(tmp);
    }
    if (!ok) {
        P.cache_failed = 1;
        if (P.warn)
            fprintf(P.warn, "byol: plan cache %s: cannot write: %s (plans are measured again next run; "
                            "--plan-cache FILE or none)\n", P.cache, strerror(errno));
    }
    free(out);
    free_lines(old, n);
}

/* ---- planning ---- */

size_t conv_plan(const ConvShape *s, unsigned passes) {
    PlanEntry *e = find_or_add(s);
    e->used |= (unsigned char)(passes & CONV_PASSES_ALL);
    unsigned want = 0;
    for (int p = 0; p < 3; p++)
        if ((passes >> p & 1) && e->algo[p] < 0) want |= 1u << p;
    if (want && P.mode == PLAN_MEASURE) {
        measure(e, want);
        cache_write();
    } else if (want) {
        for (int p = 0; p < 3; p++)
            if (want >> p & 1) {
                e->algo[p] = (signed char)conv_algo_fixed(&e->s, p);
                e->source[p] = SOURCE_FIXED;
            }
    }
    size_t scratch = 0;
    for (int p = 0; p < 3; p++)
        if (e->algo[p] >= 0) scratch = MAX(scratch, conv_algo_scratch_floats(e->algo[p], &e->s, p));
    return scratch;
}

/* ---- text form, statistics, report ---- */

char *conv_plan_to_text(void) {
    size_t cap = (size_t)P.n * 64 + 1, len = 0;
    char *t = xmalloc(cap, "plan text");
    t[0] = 0;
    for (int i = 0; i < P.n; i++) {
        char entry[160];
        if (format_entry(entry, sizeof entry, &P.e[i], FORMAT_USED) <= 0) continue;
        len += (size_t)snprintf(t + len, cap - len, "%s%s", len ? " " : "", entry);
    }
    return t;
}

static int walk_text(const char *text, int take, Err *e) {
    int dropped = 0, k = 0;
    for (const char *p = text; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        ConvShape s;
        signed char a[3];
        int used = parse_entry(p, &s, a);
        k++;
        if (used < 0 || (p[used] && p[used] != ' '))
            return err_set(e, "plan entry %d ('%.*s') is not B,H,W,Cin,Cout,K,stride,pad:FDW with F, D, W each "
                              "one of i w d -", k, (int)strcspn(p, " "), p);
        if (take) dropped += take_entry(&s, a, SOURCE_GIVEN);
        p += used;
    }
    return dropped;
}

int conv_plan_check_text(const char *text, Err *e) { return walk_text(text, 0, e) < 0 ? -1 : 0; }

int conv_plan_load_text(const char *text, Err *e) {
    if (walk_text(text, 0, e) < 0) return -1; /* all or nothing */
    return walk_text(text, 1, e);
}

void conv_plan_stats(PlanStats *st) {
    memset(st, 0, sizeof *st);
    for (int i = 0; i < P.n; i++) {
        st->shapes += P.e[i].used != 0;
        for (int p = 0; p < 3; p++) {
            if (P.e[i].algo[p] < 0 || !(P.e[i].used >> p & 1)) continue;
            switch (P.e[i].source[p]) {
            case SOURCE_MEASURED: st->measured++; break;
            case SOURCE_CACHE: st->cached++; break;
            case SOURCE_GIVEN: st->given++; break;
            default: st->fixed++; break;
            }
        }
    }
    st->seconds = P.seconds;
}

void conv_plan_summary(char *buf, size_t cap) {
    PlanStats st;
    conv_plan_stats(&st);
    const int total = st.measured + st.cached + st.given + st.fixed;
    int len = snprintf(buf, cap, "convolution plan: %d passes of %d shapes", total, st.shapes);
    if (st.fixed) len += snprintf(buf + len, cap - (size_t)len, ", %d by the fixed rule", st.fixed);
    if (st.given) len += snprintf(buf + len, cap - (size_t)len, ", %d from the checkpoint", st.given);
    if (st.cached) len += snprintf(buf + len, cap - (size_t)len, ", %d from the cache", st.cached);
    if (st.measured) len += snprintf(buf + len, cap - (size_t)len, ", %d measured in %.1f s", st.measured, st.seconds);
    if (P.mode == PLAN_MEASURE && (size_t)len < cap)
        snprintf(buf + len, cap - (size_t)len, " (cache: %s)", P.cache[0] ? P.cache : "none");
}

void conv_plan_report(FILE *f) {
    fprintf(f, "%-34s %-8s %-9s %9s %9s %9s\n", "layer (batch, HxW, Cin->Cout, KxK/s)", "pass", "chosen",
            "im2col", "winograd", "direct");
    for (int i = 0; i < P.n; i++) {
        const PlanEntry *e = &P.e[i];
        if (!e->used) continue;
        char layer[64];
        snprintf(layer, sizeof layer, "%d, %dx%d, %d->%d, %dx%d/%d", e->s.B, e->s.H, e->s.W, e->s.Cin, e->s.Cout,
                 e->s.K, e->s.K, e->s.stride);
        for (int p = 0; p < 3; p++) {
            if (e->algo[p] < 0 || !(e->used >> p & 1)) continue;
            static const char *const how[] = {"", "fixed", "", "cached", "given"};
            fprintf(f, "%-34s %-8s %-9s", p ? "" : layer, conv_pass_name(p), conv_algo_name(e->algo[p]));
            for (int a = 0; a < CONV_ALGO_COUNT; a++) {
                if (e->seconds[p][a] > 0)
                    fprintf(f, " %9.1f", conv_flops(&e->s) / e->seconds[p][a] / 1e9);
                else
                    fprintf(f, " %9s", conv_algo_applies(a, &e->s, p) ? "?" : "-");
            }
            if (how[e->source[p]][0]) fprintf(f, "  (%s)", how[e->source[p]]);
            fputc('\n', f);
        }
    }
    fprintf(f, "GFLOP/s of each kernel on this shape and pass (multiply-adds of direct convolution x 2; a kernel "
               "3x slower than the best in its warm-up run is not timed further); ?: not measured by this process "
               "(fixed rule, cache or checkpoint); -: does not apply\n");
}
