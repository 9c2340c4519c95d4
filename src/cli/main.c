/* byol: self-supervised representation learning with BYOL. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "../backend/gpu.h"
#include "../core/threads.h"
#include "../data/loader.h"
#include "../dist/dist.h"
#include "../nn/nn.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} COMMANDS[] = {
    {"train", cmd_train, "pretrain an encoder with BYOL (Fashion-MNIST and a CPU-sized model by default)"},
    {"lab", cmd_lab, "why BYOL does not collapse: the papers' ablations, trained and plotted side by side"},
    {"eval", cmd_eval, "kNN and linear-probe accuracy of a checkpoint's encoder (or untrained, or raw pixels)"},
    {"finetune", cmd_finetune, "supervised fine-tuning of a run's encoder with a linear head, on all or a share of the labels"},
    {"predict", cmd_predict, "a fine-tuned classifier's class and probability for each image, as CSV"},
    {"neighbors", cmd_neighbors, "a retrieval grid: test images and their nearest train images, as PNG"},
    {"map", cmd_map, "a 2-D map (PCA or t-SNE) of the test split's embeddings, as PNG and SVG"},
    {"export", cmd_export, "the encoder alone with torchvision's names, for PyTorch"},
    {"embed", cmd_embed, "features of a dataset's images as .npy"},
    {"data", cmd_data, "describe a dataset: splits, classes, size, channel mean/std, skipped files"},
    {"augment", cmd_augment, "write a PNG grid of images and their two augmented views"},
    {"bench", cmd_bench, "time BYOL steps on synthetic views, with a breakdown by phase"},
    {"step", cmd_step, "run BYOL steps from a saved state on given views (PyTorch bridge)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: byol COMMAND [flags]   (byol COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(f, "\nbuild: %s\n", threads_backend_summary());
}

static int run(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("byol.c 0.1 (%s, %s)\n", threads_backend_summary(), dist_summary());
        /* what the defaults make of taskset, Slurm's binding or a container's CPU quota */
        const int quota = threads_cgroup_cores("");
        char q[32] = "none";
        if (quota > 0) snprintf(q, sizeof q, "%d", quota);
        printf("cores: %d available (affinity mask %d, cgroup quota %s); defaults --threads %d, --workers %d\n",
               threads_available(), threads_affinity_count(), q, dist_default_threads(), loader_default_workers());
        printf("direct convolution: %s kernels, %d-float vectors (built: %s; BYOL_DIRECT_ISA chooses)\n",
               direct_conv_isa(), direct_conv_lanes(), direct_conv_isas());
        char gpus[1024];
        gpu_describe(gpus, sizeof gpus);
        printf("gpu: %s\n", gpus);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) {
            /* train, step and bench are data-parallel under mpirun; the rest are one process */
            if (dist_size() > 1 && strcmp(argv[1], "train") && strcmp(argv[1], "step") && strcmp(argv[1], "bench")) {
                if (dist_rank() == 0)
                    fprintf(stderr, "byol %s runs in one process: start it without mpirun (only train, step and "
                                    "bench run on several ranks)\n", argv[1]);
                return 2;
            }
            return COMMANDS[i].run(argc - 2, argv + 2);
        }
    fprintf(stderr, "byol: unknown command '%s' (byol --help lists them)\n", argv[1]);
    return 2;
}

int main(int argc, char **argv) {
    threads_select_blas_core(argv);
    dist_init(&argc, &argv); /* MPI when started by mpirun; ranks > 0 print nothing on stdout */
    int rc = run(argc, argv);
    dist_finalize();
    return rc;
}
