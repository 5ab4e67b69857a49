/* main.c -- the gmflow command-line front end: dispatch to subcommands (src/cli/cli_*.c).
 * Exit status everywhere: 0 success, 1 runtime failure, 2 usage error. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "gmflow/common.h"
#include "gmflow/par.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"flow", gmf_cli_flow, "integrate an exact Gaussian-mixture gradient flow (Theorems 1-4)"},
    {"train", gmf_cli_train,
     "train a GM-layer or fully connected classifier (MNIST, Fashion-MNIST)"},
    {"project", gmf_cli_project,
     "project GM training snapshots onto the final mixture's top-2 principal plane"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *fp) {
    fprintf(fp,
            "gmflow %s -- exact Gaussian-mixture gradient flows and GM-layer training\n\n"
            "usage: gmflow <command> [options]\n"
            "       gmflow help <command>      (same as gmflow <command> --help)\n"
            "       gmflow --version           (also gmflow <command> --version)\n\n"
            "commands:\n",
            GMF_VERSION_STRING);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp,
            "\nExit status: 0 success; 1 runtime failure (bad input file, solver failure,\n"
            "divergence, write error); 2 usage error (unknown command or option, bad value).\n");
}

static int find(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return (int)i;
    return -1;
}

static int unknown(const char *name) {
    fprintf(stderr, "gmflow: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}

static int dispatch(int argc, char **argv);

/* MPI (gmflow/par.h) is initialized here, once, for every subcommand, and finalized after it:
 * the same binary runs serially (one rank) without mpirun. */
int main(int argc, char **argv) {
    if (gmf_par_init(&argc, &argv)) {
        fprintf(stderr, "gmflow: %s\n", gmf_errmsg());
        return 1;
    }
    const int status = dispatch(argc, argv);
    gmf_par_finalize();
    return status;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *a = argv[1];
    if (!strcmp(a, "--help") || !strcmp(a, "-h") || (!strcmp(a, "help") && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a, "--version")) return gmf_cli_version("gmflow");
    if (!strcmp(a, "help")) { /* gmflow help <command>: that command's --help */
        if (argc > 3) {
            fprintf(stderr, "gmflow: help takes one command name\n");
            return 2;
        }
        const int i = find(argv[2]);
        if (i < 0) return unknown(argv[2]);
        char *args[] = {(char *)commands[i].name, "--help", NULL};
        return commands[i].run(2, args);
    }
    const int i = find(a);
    if (i < 0) return unknown(a);
    if (argc >= 3 && !strcmp(argv[2], "--version")) return gmf_cli_version(commands[i].name);
    return commands[i].run(argc - 1, argv + 1);
}
