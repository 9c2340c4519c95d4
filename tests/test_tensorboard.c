/* TensorBoard event files: the framing (lengths and data under masked CRC-32C), the events
 * (protobuf-c reads back what it wrote: the version event, then scalars), and byol train's file
 * holding the same loss values as its metrics.jsonl. */
#include <dirent.h>

#include "harness.h"
#include "io/tensorboard.h"
#include "tensorboard.pb-c.h"

static uint32_t get_le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* The events of a file, unpacked, after checking every record's framing; NULL on a bad record. */
static Tensorflow__Event **read_events(const char *path, int *n) {
    size_t size;
    uint8_t *b = slurp(path, &size);
    Tensorflow__Event **ev = NULL;
    *n = 0;
    for (size_t pos = 0; b && pos < size;) {
        if (pos + 12 > size) break;
        uint64_t len = get_le32(b + pos) | (uint64_t)get_le32(b + pos + 4) << 32;
        if (get_le32(b + pos + 8) != tb_masked_crc(b + pos, 8) || pos + 16 + len > size ||
            get_le32(b + pos + 12 + len) != tb_masked_crc(b + pos + 12, len)) {
            CHECK(0, "%s: record at byte %zu: bad length or CRC", path, pos);
            break;
        }
        ev = realloc(ev, (*n + 1) * sizeof *ev);
        ev[*n] = tensorflow__event__unpack(NULL, len, b + pos + 12);
        if (!ev[*n]) {
            CHECK(0, "%s: record at byte %zu does not unpack", path, pos);
            break;
        }
        (*n)++;
        pos += 16 + len;
    }
    free(b);
    return ev;
}

static void free_events(Tensorflow__Event **ev, int n) {
    for (int i = 0; i < n; i++) tensorflow__event__free_unpacked(ev[i], NULL);
    free(ev);
}

static void test_crc32c(void) {
    CHECK(tb_crc32c("123456789", 9) == 0xE3069283u, "CRC-32C check value: %08x", tb_crc32c("123456789", 9));
    CHECK(tb_crc32c("", 0) == 0, "empty");
}

static void test_write_and_read_back(void) {
    TbWriter w;
    Err e;
    CHECK(tb_open(&w, TEST_TMP, &e) == 0, "%s", e.msg);
    const char *tags[] = {"loss", "lr", "dino/kl"};
    CHECK(tb_scalars(&w, 7, 1234.5, tags, (const double[]){0.25, 0.125, NAN}, 3, &e) == 0, "%s", e.msg);
    CHECK(tb_scalars(&w, 9, 1235.5, tags, (const double[]){0.5, 0.0625, 3.0}, 3, &e) == 0, "%s", e.msg);
    tb_close(&w);
    CHECK(strstr(w.path, "/events.out.tfevents.") != NULL, "TensorBoard's file name: %s", w.path);
    TbWriter w2;
    CHECK(tb_open(&w2, TEST_TMP, &e) == 0 && strcmp(w2.path, w.path) != 0, "a second file in the same second: %s",
          w2.path);
    tb_close(&w2);
    int n;
    Tensorflow__Event **ev = read_events(w.path, &n);
    CHECK(n == 3, "three events: %d", n);
    if (n == 3) {
        CHECK(ev[0]->what_case == TENSORFLOW__EVENT__WHAT_FILE_VERSION && strcmp(ev[0]->file_version, "brain.Event:2") == 0,
              "the version event first");
        const Tensorflow__Summary *s = ev[1]->summary;
        CHECK(ev[1]->step == 7 && ev[1]->wall_time == 1234.5 && s && s->n_value == 2 &&
                  strcmp(s->value[0]->tag, "loss") == 0 && s->value[0]->simple_value == 0.25f &&
                  strcmp(s->value[1]->tag, "lr") == 0 && s->value[1]->simple_value == 0.125f,
              "step 7: loss and lr, the NaN left out");
        CHECK(ev[2]->step == 9 && ev[2]->summary->n_value == 3 && ev[2]->summary->value[2]->simple_value == 3.0f,
              "step 9: three scalars");
    }
    free_events(ev, n);
    CHECK(tb_open(&w, "/proc/no-such-dir", &e) != 0 && strstr(e.msg, "/proc/no-such-dir"), "an unwritable folder: %s",
          e.msg);
}

/* byol train writes the file beside metrics.jsonl, with the same losses. */
static void test_train_writes_events(void) {
    char data[600], cmd[4096];
    extract_cifar_subset(data, sizeof data);
    snprintf(cmd, sizeof cmd,
             "%s train --data %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 1 "
             "--log-every 2 --threads 2 --workers 2 --max-steps 6 --knn-before 0 --knn-after 0 --eval-every 0 "
             "--out %s/run > /dev/null 2> %s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", data, TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "trains");
    char dir[4096], path[4400] = "";
    snprintf(dir, sizeof dir, "%s/run", TEST_TMP);
    DIR *d = opendir(dir);
    int files = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if (strncmp(de->d_name, "events.out.tfevents.", 20) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            files++;
        }
    if (d) closedir(d);
    CHECK(files == 1, "one events file in the run folder: %d", files);
    if (files != 1) return;
    int n;
    Tensorflow__Event **ev = read_events(path, &n);
    char *m = slurp_text("run/metrics.jsonl");
    int matched = 0, logged = 0;
    for (const char *p = m; (p = strstr(p, "\"loss\": ")); p++) {
        const double loss = atof(p + 8);
        logged++;
        for (int i = 1; i < n; i++)
            if (ev[i]->summary && ev[i]->summary->n_value && strcmp(ev[i]->summary->value[0]->tag, "loss") == 0 &&
                fabs(ev[i]->summary->value[0]->simple_value - loss) <= 1e-6 * fabs(loss)) {
                matched++;
                break;
            }
    }
    CHECK(logged >= 3 && matched == logged, "each of the %d logged losses in the events (%d)", logged, matched);
    free(m);
    free_events(ev, n);
}

int main(void) {
    test_tmpdir("test_tensorboard");
    RUN(test_crc32c);
    RUN(test_write_and_read_back);
    RUN(test_train_writes_events);
    return test_finish();
}
