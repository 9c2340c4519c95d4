/* Config files (src/cli/args.c, flags_parse_text), with byol train's whole flag table, as
 * `--config FILE` and a checkpoint's saved configuration are read; then the effective
 * configuration is dumped and read back, which must succeed and give the same text. */
#include <stdlib.h>
#include <string.h>

#include "cli/train_opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    TrainOptions o;
    Flag flags[TRAIN_FLAG_MAX];
    int n = train_flags(flags, &o);
    Err e;
    if (flags_parse_text(text, "fuzz.cfg", flags, n, &e) == 0) {
        char *dump = flags_dump(flags, n);
        TrainOptions o2;
        Flag flags2[TRAIN_FLAG_MAX];
        int n2 = train_flags(flags2, &o2);
        if (flags_parse_text(dump, "dump", flags2, n2, &e) != 0) {
            fprintf(stderr, "the dumped configuration does not read back: %s\n", e.msg);
            abort();
        }
        char *dump2 = flags_dump(flags2, n2);
        if (strcmp(dump, dump2) != 0) {
            fprintf(stderr, "dump, read, dump differs:\n%s\n---\n%s\n", dump, dump2);
            abort();
        }
        free(dump);
        free(dump2);
    } else if (!e.msg[0]) {
        abort();
    }
    flags_release_texts();
    free(text);
    return 0;
}
