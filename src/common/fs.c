#include "fs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int bd_mkdirs(const char *path, mode_t mode, bd_err_t *err)
{
    char *tmp = strdup(path);
    int rc = BD_OK;
    struct stat st;

    if (tmp == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    for (char *s = tmp + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
            rc = bd_err_set(err, BD_EIO, "mkdir %s: %s", tmp, strerror(errno));
            goto cleanup;
        }
        if (end)
            break;
        *s = '/';
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = bd_err_set(err, BD_EIO, "%s is not a directory", path);
cleanup:
    free(tmp);
    return rc;
}
