/* .npy reader (src/io/npy.c): any bytes either parse into a float32 array whose every value is
 * readable, or are refused with a message. */
#include <stdlib.h>

#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    NpyArray a;
    Err e;
    if (npy_parse_f32(data, size, "fuzz.npy", &a, &e) != 0) {
        if (!e.msg[0]) abort();
        return 0;
    }
    size_t numel = 1;
    for (int i = 0; i < a.ndim; i++) numel *= (size_t)a.shape[i];
    if (numel != a.numel) abort();
    volatile float sum = 0;
    for (size_t i = 0; i < a.numel; i++) sum += a.data[i];
    (void)sum;
    npy_free(&a);
    return 0;
}
