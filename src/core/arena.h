/* Bump allocator for activations. A plan is run twice: once on an empty arena (base == NULL),
 * which only measures, then on an arena of exactly that size, which hands out pointers. After
 * that the training step allocates nothing. */
#ifndef BYOL_ARENA_H
#define BYOL_ARENA_H

#include <stddef.h>

typedef struct {
    char *base; /* NULL while measuring */
    size_t used, cap;
} Arena;

static inline void *arena_take(Arena *a, size_t bytes) {
    size_t at = a->used;
    a->used += (bytes + 63) / 64 * 64;
    if (!a->base) return NULL;
    return a->base + at;
}

static inline float *arena_floats(Arena *a, size_t n) { return (float *)arena_take(a, n * sizeof(float)); }

#endif
