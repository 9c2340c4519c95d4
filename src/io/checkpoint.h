/* Training checkpoints: DIR/ckpt-<step>.safetensors, the whole state of byol step's format plus
 * metadata (the effective configuration, the step, the normalization), written atomically; the
 * last `keep` kept. */
#ifndef BYOL_CHECKPOINT_H
#define BYOL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

/* The run metadata of a byol train checkpoint, parsed strictly. */
typedef struct {
    const char *config;    /* byol.config (required): points into the Safetensors' header, valid while it is open */
    int64_t step;          /* byol.step (required): 0 .. 1e15 */
    long skipped;          /* byol.skipped: 0 .. step (absent: 0) */
    int has_norm;          /* byol.mean and byol.std both present (one without the other is an error) */
    float mean[3], std[3]; /* 1 to 3 finite numbers each, as written ("%.9g %.9g %.9g"); fewer than 3:
                            * the last repeats; std > 0. Without has_norm: mean 0, std 1 */
    double elapsed_s;      /* byol.elapsed: seconds of training spent so far, finite, >= 0 (absent: 0) */
    const char *plan;      /* byol.plan: the convolution kernels the run chose (conv_plan_to_text's form;
                            * absent: NULL), valid while the checkpoint is open */
} CkptMeta;
/* Reads and validates the byol.* metadata of an open checkpoint; `path` names it in messages,
 * e.g. "ckpt-20.safetensors: byol.step '-5' is not a step (0 to 1e15)". byol.format, when
 * present, must be CKPT_FORMAT. Returns 0, or -1 with e set. */
int ckpt_meta_read(const Safetensors *st, const char *path, CkptMeta *m, Err *e);
#define CKPT_FORMAT "1"

/* Writes DIR/ckpt-<step, 9 digits>.safetensors (atomically); its path goes to path_out. */
int ckpt_save(const Byol *m, const char *dir, int64_t step, const StMeta *meta, int n_meta,
              char *path_out, size_t cap, Err *e);
/* A checkpoint file as given, or the newest checkpoint in a folder. */
int ckpt_resolve(const char *dir_or_file, char *path, size_t cap, Err *e);
/* The steps of dir's checkpoints in increasing order (malloc'ed; NULL when the folder cannot be
 * read), their count in *n. */
long long *ckpt_list_steps(const char *dir, int *n);
/* Number of checkpoints in dir (0 when none or no folder). */
int ckpt_count(const char *dir);
/* Deletes all but the newest `keep` checkpoints of dir. */
void ckpt_prune(const char *dir, int keep);
/* Deletes the temporary files (NAME.tmp.<pid>) that writers killed mid-write left in dir, those
 * of processes no longer running; returns how many. */
int ckpt_remove_stale_temporaries(const char *dir);

#endif
