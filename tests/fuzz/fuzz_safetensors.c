/* safetensors reader (src/io/safetensors.c) and the state loader behind it (src/io/state.c):
 * any bytes either parse into a file whose every entry is readable, or are refused with a
 * message; a parsed file is then loaded into a small BYOL model, as `byol eval --ckpt` would. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/state.h"

static Byol model;

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
    Safetensors st;
    Err e;
    if (st_parse(&st, buf, size, "fuzz.safetensors", &e) != 0) {
        if (!e.msg[0]) abort(); /* a refusal always says why */
        return 0;
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
    state_load_from(&model, &st, &e);
    st_close(&st);
    return 0;
}
