/* fail-unlink.c: an LD_PRELOAD shim for test-agent-enospc that makes unlinkat() of one name fail
 * with EIO, so an agent's undo (which only removes files) can be made to fail on purpose.
 * VMUSER_TEST_FAIL_UNLINK names the file (its last path component); unset, nothing changes. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int unlinkat(int dir_fd, const char *path, int flags);

int unlinkat(int dir_fd, const char *path, int flags) {
        static int (*real)(int, const char *, int);
        const char *victim = getenv("VMUSER_TEST_FAIL_UNLINK");
        const char *base = strrchr(path, '/');

        base = base ? base + 1 : path;
        if (victim && *victim && strcmp(base, victim) == 0) {
                errno = EIO;
                return -1;
        }
        if (!real)
                real = (int (*)(int, const char *, int)) dlsym(RTLD_NEXT, "unlinkat");
        return real(dir_fd, path, flags);
}
