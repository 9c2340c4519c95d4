/* TensorBoard event files: a run's scalars (loss, lr, tau, images/s, kNN, the collapse figures)
 * as `events.out.tfevents.<time>.<host>` beside metrics.jsonl, so that `tensorboard --logdir
 * runs/` draws them. Each event is a protobuf (src/io/proto/tensorboard.proto, encoded by
 * protobuf-c) in TensorBoard's record framing: the length (uint64, little-endian), its masked
 * CRC-32C, the data, the data's masked CRC-32C. The first event carries the file version
 * "brain.Event:2". */
#ifndef BYOL_TENSORBOARD_H
#define BYOL_TENSORBOARD_H

#include <stdint.h>
#include <stdio.h>

#include "../core/common.h"

typedef struct {
    FILE *f;
    char path[4400];
} TbWriter;

/* Creates dir/events.out.tfevents.<unix time>.<host> and writes the version event; a file of
 * that name already there (a second run within one second) gets a ".N" suffix. 0, or -1 with
 * e set (the file named). */
int tb_open(TbWriter *w, const char *dir, Err *e);
/* One event at `step` holding n scalars (tags[i] = values[i]); NaN values are left out. Flushed,
 * so that TensorBoard sees the run as it goes. 0, or -1 with e set. */
int tb_scalars(TbWriter *w, int64_t step, double wall_time, const char *const *tags, const double *values, int n,
               Err *e);
void tb_close(TbWriter *w); /* a writer never opened (f NULL) too */

/* CRC-32C (Castagnoli) of n bytes, and TensorBoard's mask of it (exposed for tests). */
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(const void *data, size_t n);

#endif
