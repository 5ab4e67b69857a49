/* cli.h -- subcommands of the gmflow CLI (each in src/cli_<name>.c) and shared option parsing.
 * Each subcommand takes (argc, argv) with argv[0] = its name, prints --help to stdout, errors to
 * stderr prefixed "gmflow <cmd>: ", and returns the process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef GMFLOW_CLI_H
#define GMFLOW_CLI_H

#include "gmflow/version.h"
#define GMF_VERSION_STRING GMFLOW_VERSION_STRING

int gmf_cli_flow(int argc, char **argv);
int gmf_cli_train(int argc, char **argv);
int gmf_cli_project(int argc, char **argv);

/* Shared by the subcommands (src/cli/cli_common.c).  cmd is the message prefix ("gmflow train").
 * fail prints "cmd: message" and returns 1; usage_error adds a pointer to --help (same line)
 * and returns 2.
 * parse_double accepts a finite number; parse_count an unsigned integer in [min, max]; both print
 * what is wrong with the option's value and return 1, else store it and return 0. */
int gmf_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gmf_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* --version of a subcommand: prints "gmflow <version>" (cmd names the subcommand) and returns 0. */
int gmf_cli_version(const char *cmd);
/* mkdir -p: creates dir and its parents; 1 (with a message) if that fails or dir is a file. */
int gmf_cli_make_dirs(const char *cmd, const char *dir);
int gmf_cli_parse_double(const char *cmd, const char *opt, const char *arg, double *out);
int gmf_cli_parse_count(const char *cmd, const char *opt, const char *arg, unsigned long long min,
                        unsigned long long max, unsigned long long *out);

/* In a subcommand's file, after #define CMD "gmflow <name>": */
#define fail(...)                            gmf_cli_fail(CMD, __VA_ARGS__)
#define usage_error(...)                     gmf_cli_usage_error(CMD, __VA_ARGS__)
#define parse_double(opt, arg, out)          gmf_cli_parse_double(CMD, opt, arg, out)
#define parse_count(opt, arg, min, max, out) gmf_cli_parse_count(CMD, opt, arg, min, max, out)
#define make_dirs(dir)                       gmf_cli_make_dirs(CMD, dir)

#endif
