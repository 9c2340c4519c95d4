#include "tensorboard.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensorboard.pb-c.h"

/* CRC-32C, reflected polynomial 0x82F63B78, a byte at a time: TensorBoard frames a few hundred
 * bytes per logged step, so a table is plenty (zlib's crc32 is the other polynomial). */
uint32_t tb_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) { /* idempotent: racing threads write the same values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(const void *data, size_t n) {
    const uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *dst, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

/* One record: length, its masked CRC, the event, its masked CRC. */
static int write_event(TbWriter *w, const Tensorflow__Event *ev, Err *e) {
    const size_t n = tensorflow__event__get_packed_size(ev);
    uint8_t *buf = xmalloc(n + 16, "a TensorBoard event");
    put_le(buf, n, 8);
    put_le(buf + 8, tb_masked_crc(buf, 8), 4);
    tensorflow__event__pack(ev, buf + 12);
    put_le(buf + 12 + n, tb_masked_crc(buf + 12, n), 4);
    const int ok = fwrite(buf, 1, n + 16, w->f) == n + 16 && fflush(w->f) == 0;
    xfree(buf);
    if (!ok) return err_set(e, "%s: cannot write: %s (is the disk full?)", w->path, strerror(errno));
    return 0;
}

int tb_open(TbWriter *w, const char *dir, Err *e) {
    memset(w, 0, sizeof *w);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const long t = (long)time(NULL);
    for (int k = 0; k < 100 && !w->f; k++) {
        if (k) snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s.%d", dir, t, host, k);
        else snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s", dir, t, host);
        w->f = fopen(w->path, "wbx"); /* x: never another run's file */
        if (!w->f && errno != EEXIST) break;
    }
    if (!w->f) return err_set(e, "%s: cannot create: %s", w->path, strerror(errno));
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = (double)t;
    ev.what_case = TENSORFLOW__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    if (write_event(w, &ev, e)) {
        tb_close(w);
        return -1;
    }
    return 0;
}

int tb_scalars(TbWriter *w, int64_t step, double wall_time, const char *const *tags, const double *values, int n,
               Err *e) {
    Tensorflow__Summary__Value *v = xmalloc((size_t)(n ? n : 1) * sizeof *v, "TensorBoard values");
    Tensorflow__Summary__Value **pv = xmalloc((size_t)(n ? n : 1) * sizeof *pv, "TensorBoard values");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(values[i])) continue;
        v[k] = (Tensorflow__Summary__Value)TENSORFLOW__SUMMARY__VALUE__INIT;
        v[k].tag = (char *)tags[i];
        v[k].value_case = TENSORFLOW__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
        v[k].simple_value = (float)values[i];
        pv[k] = &v[k];
        k++;
    }
    Tensorflow__Summary summary = TENSORFLOW__SUMMARY__INIT;
    summary.n_value = (size_t)k;
    summary.value = pv;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = wall_time;
    ev.step = step;
    ev.what_case = TENSORFLOW__EVENT__WHAT_SUMMARY;
    ev.summary = &summary;
    const int rc = k ? write_event(w, &ev, e) : 0;
    xfree(v), xfree(pv);
    return rc;
}

void tb_close(TbWriter *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
}
