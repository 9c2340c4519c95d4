/* The command line parser (src/cli/args.c, src/cli/train_opts.c) with byol train's flag table:
 * the input's lines (or NUL-separated pieces) are the arguments. --config FILE among them is
 * read as the CLI would. Usage text (--help) goes to /dev/null. */
#include <stdlib.h>
#include <string.h>

#include "cli/train_opts.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet++ && !freopen("/dev/null", "w", stdout)) abort();
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    char *p = text, *end = text + size;
    while (p < end && argc < MAX_ARGS) { /* split on '\n' and '\0' */
        argv[argc++] = p;
        while (p < end && *p != '\n' && *p != 0) p++;
        *p++ = 0;
    }
    argv[argc] = NULL;
    TrainOptions o;
    Flag flags[TRAIN_FLAG_MAX];
    int n = train_flags(flags, &o);
    Err e;
    int rc = train_parse(argc, argv, flags, n, &o, &e);
    if (rc < 0 && !e.msg[0]) abort();
    if (rc == 0) {
        if (!o.out || !o.out[0]) abort();
        free(flags_dump(flags, n));
    }
    flags_release_texts();
    free(text);
    return 0;
}
