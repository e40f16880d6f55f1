/* fsutil.h (runtime-internal) — the two file-system helpers the kernel cache
 * and jsdpa-gen's atomic outputs share. */
#ifndef JSDPA_RUNTIME_FSUTIL_H_
#define JSDPA_RUNTIME_FSUTIL_H_

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p (mode 0755 for what it creates); returns 0 or an errno (ENOTDIR
 * when the path exists but is not a directory). */
int jsdpa_make_dirs(const char* path);

/* write(2) until done, retrying on EINTR; false (errno set) on failure. */
bool jsdpa_write_all(int fd, const void* data, size_t size);

#endif
