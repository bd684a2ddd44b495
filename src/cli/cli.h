/*
 * cli.h - the `bindy` command's subcommands. Each takes argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit status.
 */
#ifndef BD_CLI_H
#define BD_CLI_H

int cli_validate(int argc, char **argv);
int cli_run(int argc, char **argv);

#endif
