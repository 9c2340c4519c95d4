/* Training checkpoints: DIR/ckpt-<step>.safetensors, the whole state of byol step's format plus
 * metadata (the effective configuration, the step, the normalization), written atomically; the
 * last `keep` kept. */
#ifndef BYOL_CHECKPOINT_H
#define BYOL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

/* Writes DIR/ckpt-<step, 9 digits>.safetensors (atomically); its path goes to path_out. */
int ckpt_save(const Byol *m, const char *dir, int64_t step, const StMeta *meta, int n_meta,
              char *path_out, size_t cap, Err *e);
/* A checkpoint file as given, or the newest checkpoint in a folder. */
int ckpt_resolve(const char *dir_or_file, char *path, size_t cap, Err *e);
/* Number of checkpoints in dir (0 when none or no folder). */
int ckpt_count(const char *dir);
/* Deletes all but the newest `keep` checkpoints of dir. */
void ckpt_prune(const char *dir, int keep);
/* Deletes the temporary files (NAME.tmp.<pid>) that writers killed mid-write left in dir, those
 * of processes no longer running; returns how many. */
int ckpt_remove_stale_temporaries(const char *dir);

#endif
