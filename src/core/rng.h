/* Counter-based random numbers: a stream is a pure function of its key (seed, epoch, image,
 * view, ...), so what an image's augmentation draws never depends on which thread drew it or in
 * which order. SplitMix64 (Steele, Lea, Flood 2014) keyed by mixing the key words. */
#ifndef BYOL_RNG_H
#define BYOL_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s;
} Rng;

static inline uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A stream for the key (a, b, c, d): distinct keys give unrelated streams. */
static inline Rng rng_keyed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t h = rng_mix64(a + 0x9e3779b97f4a7c15ULL);
    h = rng_mix64(h ^ (b + 0x632be59bd9b4e019ULL));
    h = rng_mix64(h ^ (c + 0x8cb92ba72f3d8dd7ULL));
    h = rng_mix64(h ^ (d + 0xd1b54a32d192ed03ULL));
    Rng r = {h};
    return r;
}

static inline uint64_t rng_next(Rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return rng_mix64(r->s);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_u01(Rng *r) { return (rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform in [lo, hi). */
static inline double rng_between(Rng *r, double lo, double hi) { return lo + (hi - lo) * rng_u01(r); }

/* Uniform integer in [0, n), n >= 1 (Lemire's multiply-shift; the bias is below 2^-32 for the
 * sizes used here). */
static inline uint64_t rng_below(Rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

#endif
