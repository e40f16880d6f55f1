/* File-system helpers shared by the kernel cache (cache.c) and jsdpa-gen. */
#include "fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int jsdpa_make_dirs(const char* path) {
  char* p = strdup(path);
  if (!p) return ENOMEM;
  int err = 0;
  for (char* s = p + 1;; ++s) {
    if (*s != '/' && *s != '\0') continue;
    char saved = *s;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) err = errno;
    *s = saved;
    if (err || saved == '\0') break;
  }
  if (!err) {
    struct stat st;
    if (stat(path, &st) != 0)
      err = errno;
    else if (!S_ISDIR(st.st_mode))
      err = ENOTDIR;
  }
  free(p);
  return err;
}

bool jsdpa_write_all(int fd, const void* data, size_t size) {
  const char* p = data;
  while (size) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    p += n;
    size -= (size_t)n;
  }
  return true;
}
