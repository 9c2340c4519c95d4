/* safetensors reader (src/io/safetensors.c), the checkpoint metadata parser (src/io/checkpoint.c)
 * and the state loader behind them (src/io/state.c): any bytes either parse into a file whose
 * every entry is readable, or are refused with a one-line message; a parsed file's byol.*
 * metadata is read as `--resume` and `byol eval --ckpt` read it (anything accepted is in range),
 * and its tensors are loaded into a small BYOL model.
 *
 * A mutated file almost never keeps a valid checksum, so the metadata parser would see only the
 * seeds' values; each input that carries the checksum where st_write puts it is therefore also
 * run with the checksum recomputed, so that mutations reach everything behind the check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/state.h"

static Byol model;

static void check_meta(const CkptMeta *m) {
    if (!m->config || m->step < 0 || m->step > 1000000000000000LL || m->skipped < 0 || m->skipped > m->step)
        abort();
    if (!isfinite(m->elapsed_s) || m->elapsed_s < 0) abort();
    for (int c = 0; c < 3; c++)
        if (!isfinite(m->mean[c]) || !isfinite(m->std[c]) || !(m->std[c] > 0)) abort();
}

/* Parses one buffer (taking it over) and uses whatever was accepted. */
static void run(uint8_t *buf, size_t size) {
    Safetensors st;
    Err e;
    e.msg[0] = 0;
    if (st_parse(&st, buf, size, "fuzz.safetensors", &e) != 0) {
        if (!e.msg[0] || strchr(e.msg, '\n')) abort(); /* a refusal always says why, in one line */
        return;
    }
    for (int i = 0; i < st.n_entries; i++) {
        const StEntry *t = &st.entries[i];
        if (st_find(&st, t->name) == NULL) abort();
        if (strcmp(t->dtype, "F32") == 0) {
            float *dst = malloc(t->end - t->begin + 4);
            st_read_f32(&st, t, dst);
            free(dst);
        }
    }
    for (int i = 0; i < st.n_meta; i++)
        if (st_meta(&st, st.meta[i].key) == NULL) abort();
    CkptMeta m;
    e.msg[0] = 0;
    if (ckpt_meta_read(&st, "fuzz.safetensors", &m, &e) == 0)
        check_meta(&m);
    else if (!e.msg[0] || strchr(e.msg, '\n'))
        abort();
    state_load_from(&model, &st, &e);
    st_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model.online.mem) { /* once: resnet18 width 1, tiny heads, 3 input channels */
        ModelConfig c;
        model_config_default(&c);
        c.enc.width = 1;
        c.proj_hidden = 4;
        c.proj_dim = 2;
        c.pred_hidden = 4;
        byol_init(&model, &c);
    }
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    run(buf, size); /* as it is: the checksum verified */
    const size_t pre = sizeof ST_CHECKSUM_PREFIX - 1;
    if (size >= ST_CHECKSUM_AT + 8 && memcmp(data + 8, ST_CHECKSUM_PREFIX, pre) == 0) {
        buf = malloc(size);
        memcpy(buf, data, size);
        memcpy(buf + ST_CHECKSUM_AT, "00000000", 8);
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", (unsigned)st_crc32(buf, size, 0));
        memcpy(buf + ST_CHECKSUM_AT, crc, 8);
        run(buf, size); /* the checksum made right: what lies behind it */
    }
    return 0;
}
