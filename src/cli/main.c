/* bindy: the operator binary, with subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run", cli_run, "run bindy (local mode: --local DIR)"},
    {"validate", cli_validate, "check manifests against bindy's resource schemas"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: bindy COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`bindy COMMAND --help` describes a command.\n"
                 "Environment: BINDY_LOG_LEVEL=debug|info|warn|error\n");
}

int main(int argc, char **argv)
{
    bd_log_init_from_env();

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bindy %s\n", BINDY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bindy: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
