/* main.c -- the gmflow command-line front end: dispatch to subcommands (src/cli_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

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

static void usage(FILE *fp) {
    fprintf(fp,
            "gmflow %s -- exact Gaussian-mixture gradient flows and GM-layer training\n\n"
            "usage: gmflow <command> [options]   (gmflow <command> --help for details)\n\n"
            "commands:\n",
            GMF_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("gmflow %s\n", GMF_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gmflow: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
