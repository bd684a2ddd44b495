/* fs.h - small file-system helpers shared by every module that owns a directory. */
#ifndef BD_FS_H
#define BD_FS_H

#include <sys/types.h>

#include "err.h"

/* mkdir -p: create path and its missing parents with mode. BD_OK when path ends up a
 * directory; BD_EIO naming the component that failed; BD_ENOMEM. */
int bd_mkdirs(const char *path, mode_t mode, bd_err_t *err);

#endif
