/* bindy run: the operator's main job. Local mode (--local DIR) runs it on one machine. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runtime.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bindy run --local DIR [--state-dir DIR] [--address ADDR]\n\n"
            "Run bindy. With --local, the source is a directory of manifests (watched for\n"
            "changes) and every replica of every Bind9Instance runs as a local named fed\n"
            "from bindy's hidden primary on loopback.\n\n"
            "  --local DIR       manifests to serve (files or subdirectories of *.yaml/*.json)\n"
            "  --state-dir DIR   journal (DIR/journal), named directories and keys\n"
            "                    (default: $BINDY_STATE_DIR, else ./state)\n"
            "  --address ADDR    loopback address for bindy and every named (127.0.0.1)\n\n"
            "In-cluster mode (no --local) needs the Kubernetes client, which is not built yet.\n"
            "SIGINT or SIGTERM stops every named and exits.\n");
}

int cli_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"local", required_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 's'},
        {"address", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    loc_rt_opts_t o = {.state_dir = getenv("BINDY_STATE_DIR"), .address = "127.0.0.1"};
    if (o.state_dir == NULL || o.state_dir[0] == '\0')
        o.state_dir = "state";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:s:a:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o.manifests = optarg;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'a':
            o.address = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bindy run: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (o.manifests == NULL) {
        fprintf(stderr, "bindy run: in-cluster mode is not available in this build yet; use --local DIR\n");
        return 2;
    }
    bd_err_t err;
    if (loc_rt_run(&o, &err) != BD_OK) {
        fprintf(stderr, "bindy run: %s\n", err.msg);
        return 1;
    }
    return 0;
}
