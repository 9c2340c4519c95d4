/* The direct convolution kernels of the vector ISA this CPU runs best: conv_direct.c is built
 * once per ISA (the Makefile names them with DIRECT_HAVE_<isa>), and the first call here picks
 * the widest one the CPU supports (cpuid, and the OS saving its registers: GCC's
 * __builtin_cpu_supports checks both). BYOL_DIRECT_ISA=avx512|avx2|sse|portable asks for one
 * (tests run each against the naive reference; a CPU that lacks it stops with one line). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "nn.h"

#define DIRECT_DECLARE(v)                                                                       \
    int direct_conv_lanes_##v(void);                                                           \
    int direct_conv_applies_##v(const ConvShape *s, int pass);                                 \
    int direct_conv_preferred_##v(const ConvShape *s, int pass);                               \
    size_t direct_conv_scratch_floats_##v(const ConvShape *s, int pass);                       \
    void direct_conv_forward_##v(float *out, const float *in, const float *weight, const ConvShape *s, float *scratch); \
    void direct_conv_backward_data_##v(float *din, const float *dout, const float *weight, const ConvShape *s, \
                                       float *scratch);                                        \
    void direct_conv_backward_weight_##v(float *dweight, const float *dout, const float *in, const ConvShape *s, \
                                         float *scratch);

typedef struct {
    const char *name;
    int (*supported)(void);
    int (*lanes)(void);
    int (*applies)(const ConvShape *, int);
    int (*preferred)(const ConvShape *, int);
    size_t (*scratch_floats)(const ConvShape *, int);
    void (*forward)(float *, const float *, const float *, const ConvShape *, float *);
    void (*backward_data)(float *, const float *, const float *, const ConvShape *, float *);
    void (*backward_weight)(float *, const float *, const float *, const ConvShape *, float *);
} DirectIsa;

#define DIRECT_ENTRY(v, check)                                                                  \
    {#v, check, direct_conv_lanes_##v, direct_conv_applies_##v, direct_conv_preferred_##v,      \
     direct_conv_scratch_floats_##v, direct_conv_forward_##v, direct_conv_backward_data_##v,    \
     direct_conv_backward_weight_##v},

#if defined(__x86_64__) || defined(__i386__)
__attribute__((unused)) static int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
__attribute__((unused)) static int has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
__attribute__((unused)) static int always(void) { return 1; }

#ifdef DIRECT_HAVE_avx512
DIRECT_DECLARE(avx512)
#endif
#ifdef DIRECT_HAVE_avx2
DIRECT_DECLARE(avx2)
#endif
#ifdef DIRECT_HAVE_sse
DIRECT_DECLARE(sse)
#endif
#ifdef DIRECT_HAVE_portable
DIRECT_DECLARE(portable)
#endif

/* widest first */
static const DirectIsa ISAS[] = {
#ifdef DIRECT_HAVE_avx512
    DIRECT_ENTRY(avx512, has_avx512)
#endif
#ifdef DIRECT_HAVE_avx2
    DIRECT_ENTRY(avx2, has_avx2)
#endif
#ifdef DIRECT_HAVE_sse
    DIRECT_ENTRY(sse, always) /* SSE2 is part of x86-64 */
#endif
#ifdef DIRECT_HAVE_portable
    DIRECT_ENTRY(portable, always)
#endif
};

static const DirectIsa *chosen;

static const DirectIsa *find(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(ISAS); i++)
        if (strcmp(ISAS[i].name, name) == 0) return &ISAS[i];
    return NULL;
}

int direct_conv_use_isa(const char *name) {
    const DirectIsa *d = find(name);
    if (!d || !d->supported()) return -1;
    chosen = d;
    return 0;
}

/* Chosen once, before any kernel runs: byol's work buffers are sized by the first calls
 * (single-threaded), and a choice changes what direct_conv_applies answers. */
static const DirectIsa *isa(void) {
    if (chosen) return chosen;
    const char *want = getenv("BYOL_DIRECT_ISA");
    if (want && *want) {
        const DirectIsa *d = find(want);
        if (!d) die("BYOL_DIRECT_ISA=%s: not built in (%s)", want, direct_conv_isas());
        if (!d->supported()) die("BYOL_DIRECT_ISA=%s: this CPU lacks it (%s)", want, direct_conv_isas());
        return chosen = d;
    }
    for (size_t i = 0; i < ARRAY_LEN(ISAS); i++)
        if (ISAS[i].supported()) return chosen = &ISAS[i];
    die("no direct convolution kernels for this CPU"); /* the last entry runs anywhere */
}

const char *direct_conv_isa(void) { return isa()->name; }

const char *direct_conv_isas(void) {
    static char list[64];
    if (!list[0])
        for (size_t i = 0; i < ARRAY_LEN(ISAS); i++) {
            const size_t len = strlen(list);
            snprintf(list + len, sizeof list - len, "%s%s%s", i ? " " : "", ISAS[i].name,
                     ISAS[i].supported() ? "" : "(not this CPU)");
        }
    return list;
}

int direct_conv_lanes(void) { return isa()->lanes(); }
int direct_conv_applies(const ConvShape *s, int pass) { return isa()->applies(s, pass); }
int direct_conv_preferred(const ConvShape *s, int pass) { return isa()->preferred(s, pass); }
size_t direct_conv_scratch_floats(const ConvShape *s, int pass) { return isa()->scratch_floats(s, pass); }
void direct_conv_forward(float *out, const float *in, const float *weight, const ConvShape *s, float *scratch) {
    isa()->forward(out, in, weight, s, scratch);
}
void direct_conv_backward_data(float *din, const float *dout, const float *weight, const ConvShape *s,
                               float *scratch) {
    isa()->backward_data(din, dout, weight, s, scratch);
}
void direct_conv_backward_weight(float *dweight, const float *dout, const float *in, const ConvShape *s,
                                 float *scratch) {
    isa()->backward_weight(dweight, dout, in, s, scratch);
}
