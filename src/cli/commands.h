/* One function per `byol` subcommand; each returns the process exit status. */
#ifndef BYOL_COMMANDS_H
#define BYOL_COMMANDS_H

int cmd_step(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_augment(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_lab(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_neighbors(int argc, char **argv);
int cmd_map(int argc, char **argv);

#endif
