/* as_crds.c - register a directory of CRD manifests (the project's schema/crds). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiserver.h"
#include "as_internal.h"
#include "sort.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
            *len = fread(buf, 1, (size_t)n, f);
            buf[*len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

int bd_apiserver_load_crds(bd_apiserver_t *s, const char *dir, bd_err_t *err)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = BD_OK;
    if (d == NULL)
        return bd_err_set(err, BD_ENOTFOUND, "%s: cannot open", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".yaml") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL) {
                rc = bd_err_set(err, BD_ENOMEM, "out of memory");
                goto out;
            }
            names = nn;
        }
        if ((names[n] = strdup(e->d_name)) == NULL) {
            rc = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto out;
        }
        n++;
    }
    bd_qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n && rc == BD_OK; i++) {
        char path[4096], msg[256];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *yaml = slurp(path, &len);
        if (yaml == NULL) {
            rc = bd_err_set(err, BD_EIO, "%s: cannot read", path);
            break;
        }
        json_t *j = as__yaml_to_json(yaml, len, msg, sizeof(msg));
        free(yaml);
        char *json = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (json == NULL) {
            rc = bd_err_set(err, BD_EPARSE, "%s: %s", path, msg);
            break;
        }
        rc = bd_apiserver_create(s, json, err);
        free(json);
    }
out:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
