/*
 * bindy validate PATH...: one line per problem,
 *   FILE:LINE: KIND NAMESPACE/NAME: FIELD.PATH: message
 * exit 0 when everything is valid, 1 when anything is invalid, 2 when input cannot be read.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "manifest.h"
#include "resource.h"

typedef struct {
    int json;
    int quiet;
    int invalid, unreadable;
    size_t files_objects, warnings;
    json_t *out; /* -o json */
} vstate_t;

static void emit(vstate_t *st, const char *file, int line, const char *kind, const char *ns,
                 const char *name, const char *path, val_sev_t sev, const char *msg)
{
    if (sev == VAL_WARNING && st->quiet)
        return;
    if (st->json) {
        json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "file", file, "line", line, "severity",
                              sev == VAL_ERROR ? "error" : "warning", "message", msg);
        if (o == NULL)
            return;
        if (kind) {
            json_object_set_new(o, "kind", json_string(kind));
            json_object_set_new(o, "namespace", json_string(ns));
            json_object_set_new(o, "name", json_string(name));
        }
        if (path)
            json_object_set_new(o, "field", json_string(path));
        json_array_append_new(st->out, o);
        return;
    }
    const char *warn = sev == VAL_WARNING ? "warning: " : "";
    if (kind == NULL && line <= 0)
        printf("%s: %s%s\n", file, warn, msg);
    else if (kind == NULL)
        printf("%s:%d: %s%s\n", file, line, warn, msg);
    else if (path == NULL || path[0] == '\0')
        printf("%s:%d: %s %s/%s: %s%s\n", file, line, kind, ns, name, warn, msg);
    else
        printf("%s:%d: %s %s/%s: %s: %s%s\n", file, line, kind, ns, name, path, warn, msg);
}

static void on_object(void *arg, const mf_object_t *o)
{
    vstate_t *st = arg;
    st->files_objects++;
    const char *kind = o->kind[0] ? o->kind : "(no kind)";
    const char *name = o->name[0] ? o->name : "(no name)";
    for (size_t i = 0; i < o->rep->n; i++) {
        const val_issue_t *is = &o->rep->items[i];
        if (is->sev == VAL_WARNING)
            st->warnings++;
        emit(st, o->file, doc_line(o->doc, is->path), kind, o->ns, name, is->path, is->sev, is->msg);
    }
    if (!o->valid) {
        st->invalid = 1;
        return;
    }
    if (o->cls != VAL_CLASS_OURS)
        return;
    /* The typed model must accept whatever validation accepted. */
    res_t *res = NULL;
    bd_err_t err;
    if (res_from_json(o->obj, &res, &err) != BD_OK) {
        st->invalid = 1;
        emit(st, o->file, doc_start_line(o->doc), kind, o->ns, name, NULL, VAL_ERROR, err.msg);
    }
    res_free(res);
}

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    vstate_t *st = arg;
    if (unreadable)
        st->unreadable = 1;
    else
        st->invalid = 1;
    emit(st, file, line, NULL, NULL, NULL, NULL, VAL_ERROR, msg);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bindy validate [-o text|json] [-q] PATH...\n\n"
            "Check manifests (files, or directories of *.yaml, *.yml and *.json) against\n"
            "bindy's resource schemas, as the API server would, plus the DNS rules the\n"
            "schemas cannot express. One line per problem:\n"
            "  FILE:LINE: KIND NAMESPACE/NAME: FIELD.PATH: message\n"
            "Unknown fields are warnings (the API server drops them).\n\n"
            "  -o json   print the problems as a JSON array\n"
            "  -q        do not print warnings\n\n"
            "Exit status: 0 all valid, 1 something invalid, 2 something unreadable.\n");
}

int cli_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    vstate_t st = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (strcmp(optarg, "json") == 0)
                st.json = 1;
            else if (strcmp(optarg, "text") != 0) {
                fprintf(stderr, "bindy validate: -o takes text or json\n");
                return 2;
            }
            break;
        case 'q':
            st.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }

    val_catalog_t *cat = NULL;
    bd_err_t err;
    if (val_catalog_new(&cat, &err) != BD_OK) {
        fprintf(stderr, "bindy validate: %s\n", err.msg);
        return 2;
    }
    if (st.json && (st.out = json_array()) == NULL) {
        val_catalog_free(cat);
        return 2;
    }
    mf_visitor_t vis = {on_object, on_problem};
    int rc = mf_scan(cat, (const char *const *)argv + optind, (size_t)(argc - optind), &vis, &st);
    val_catalog_free(cat);
    if (rc != BD_OK) {
        fprintf(stderr, "bindy validate: %s\n", bd_strerror(rc));
        json_decref(st.out);
        return 2;
    }
    if (st.json) {
        json_dumpf(st.out, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(st.out);
    } else if (!st.quiet) {
        fprintf(stderr, "%zu object%s checked: %s\n", st.files_objects, st.files_objects == 1 ? "" : "s",
                st.unreadable ? "some input could not be read"
                : st.invalid  ? "some are invalid"
                              : "all valid");
    }
    return st.unreadable ? 2 : st.invalid ? 1 : 0;
}
