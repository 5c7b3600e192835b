/* macro.h: the small set of helpers every vmuser source uses.
 *
 * Cleanup attributes (free, close, json_object_put, fclose), TAKE_PTR/TAKE_FD to hand ownership
 * out of a scope, a secret-erasing free for password hashes, and a few tiny utilities. Everything
 * here accepts NULL / -1 so destructors can run unconditionally. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved_errno = errno;
                close(*fd);
                errno = saved_errno;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Frees a NUL-terminated string after overwriting it: for password hashes and key material. */
static inline void erase_and_free(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}
static inline void erase_and_freep(char **s) {
        erase_and_free(*s);
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)

#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) _taken_ = (p); \
                (p) = NULL;                  \
                _taken_;                     \
        })

#define TAKE_FD(fd)                \
        ({                         \
                int _taken_ = (fd); \
                (fd) = -1;         \
                _taken_;           \
        })

/* Negative errno of the last failed libc call, never 0 (guards against a libc that forgot errno). */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

#define streq(a, b) (strcmp((a), (b)) == 0)

static inline const char *strempty(const char *s) {
        return s ? s : "";
}
