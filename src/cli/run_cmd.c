/* bindy run: the operator's main job. Local mode (--local DIR) runs it on one machine. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "operator.h"
#include "runtime.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bindy run [--local DIR] [--state-dir DIR] [--address ADDR] [--port N]\n"
            "                 [--context NAME]\n\n"
            "Run bindy.\n"
            "Without --local: an operator replica. It watches the API server (in-cluster\n"
            "service account, or KUBECONFIG / ~/.kube/config), journals every change,\n"
            "projects it, and, when elected leader, serves every zone as the hidden primary.\n"
            "With --local: the source is a directory of manifests (watched for changes) and\n"
            "every replica of every Bind9Instance runs as a local named fed from bindy's\n"
            "hidden primary on loopback.\n\n"
            "  --local DIR       manifests to serve (files or subdirectories of *.yaml/*.json)\n"
            "  --state-dir DIR   journal (DIR/journal) and keys, and named directories in local\n"
            "                    mode (default: $BINDY_STATE_DIR, else ./state)\n"
            "  --address ADDR    listen address of the hidden primary (local mode: also of\n"
            "                    every named; default 127.0.0.1 local, 0.0.0.0 in a cluster)\n"
            "  --port N          hidden primary's DNS port in a cluster (default 5353; 0: any)\n"
            "  --context NAME    kubeconfig context (default: the current context)\n\n"
            "Environment: KUBECONFIG, BINDY_WATCH_NAMESPACES (comma-separated; default all),\n"
            "BINDY_KUBE_QPS, BINDY_KUBE_BURST, BINDY_LOG_LEVEL, BINDY_HEALTH_ADDR (health and\n"
            "metrics, default 0.0.0.0:8080), and leader election:\n"
            "ENABLE_LEADER_ELECTION, LEASE_NAME, LEASE_NAMESPACE, LEASE_DURATION_SECONDS,\n"
            "LEASE_RENEW_DEADLINE_SECONDS, LEASE_RETRY_PERIOD_SECONDS, POD_NAME.\n"
            "SIGINT or SIGTERM stops cleanly (a leader releases its lease first).\n");
}

int cli_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"local", required_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 's'},
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"context", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    loc_rt_opts_t o = {.state_dir = getenv("BINDY_STATE_DIR")};
    const char *context = NULL;
    long port = -1; /* -1: the default */
    if (o.state_dir == NULL || o.state_dir[0] == '\0')
        o.state_dir = "state";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:s:a:p:c:h", opts, NULL)) != -1) {
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
        case 'p': {
            char *end;
            port = strtol(optarg, &end, 10);
            if (*end != '\0' || end == optarg || port < 0 || port > 65535) {
                fprintf(stderr, "bindy run: --port: \"%s\" is not a port number (0-65535)\n", optarg);
                return 2;
            }
            break;
        }
        case 'c':
            context = optarg;
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
    bd_err_t err;
    if (o.manifests == NULL) {
        op_opts_t oo = {.state_dir = o.state_dir, .context = context, .address = o.address,
                        .dns_port = (int)port};
        if (op_run(&oo, &err) != BD_OK) {
            fprintf(stderr, "bindy run: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    if (context != NULL || port >= 0) {
        fprintf(stderr, "bindy run: --context and --port apply to cluster mode, not --local\n");
        return 2;
    }
    if (o.address == NULL)
        o.address = "127.0.0.1";
    if (loc_rt_run(&o, &err) != BD_OK) {
        fprintf(stderr, "bindy run: %s\n", err.msg);
        return 1;
    }
    return 0;
}
