/* cli.h -- subcommands of the gmflow CLI (each in src/cli_<name>.c) and shared option parsing.
 * Each subcommand takes (argc, argv) with argv[0] = its name, prints --help to stdout, errors to
 * stderr prefixed "gmflow <cmd>: ", and returns the process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef GMFLOW_CLI_H
#define GMFLOW_CLI_H

#define GMF_VERSION_STRING "0.1.0"

int gmf_cli_flow(int argc, char **argv);
int gmf_cli_train(int argc, char **argv);
int gmf_cli_project(int argc, char **argv);

#endif
