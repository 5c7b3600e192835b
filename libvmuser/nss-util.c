/* nss-util.c: the one NSS look-up loop.
 *
 * The reentrant getpwnam_r() family needs a buffer of a size nobody can know in advance (a group
 * with many members, a long GECOS): each call here starts at 1 KiB and grows while the module
 * says ERANGE, up to a bound. "Not found" comes back as -ENOENT whatever the module's way of
 * saying it. */
#include "nss-util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

int nss_retry(nss_call_fn call, const void *key, size_t entry_size, void **ret, size_t *ret_size) {
        size_t head = (entry_size + 15u) & ~(size_t) 15u, bufsize = 1024;

        for (;;) {
                char *block = malloc(head + bufsize);
                void *found = NULL;
                int r;

                if (!block)
                        return -ENOMEM;
                r = call(key, block, block + head, bufsize, &found);
                if (r == 0 && found) {
                        *ret = block;
                        if (ret_size)
                                *ret_size = head + bufsize;
                        return 0;
                }
                explicit_bzero(block, head + bufsize);
                free(block);
                /* "Not found" is 0 with no result, or ENOENT/ESRCH from some modules. */
                if (r == 0 || r == ENOENT || r == ESRCH)
                        return -ENOENT;
                if (r != ERANGE)
                        return r > 0 ? -r : -EIO;
                if (bufsize >= NSS_BUFFER_MAX)
                        return -ERANGE;
                bufsize *= 4;
        }
}

static int call_getpwnam(const void *key, void *entry, char *buf, size_t size, void **ret) {
        struct passwd *p = NULL;
        int r = getpwnam_r(key, entry, buf, size, &p);
        *ret = p;
        return r;
}

static int call_getpwuid(const void *key, void *entry, char *buf, size_t size, void **ret) {
        struct passwd *p = NULL;
        int r = getpwuid_r(*(const uid_t *) key, entry, buf, size, &p);
        *ret = p;
        return r;
}

static int call_getgrnam(const void *key, void *entry, char *buf, size_t size, void **ret) {
        struct group *g = NULL;
        int r = getgrnam_r(key, entry, buf, size, &g);
        *ret = g;
        return r;
}

static int call_getgrgid(const void *key, void *entry, char *buf, size_t size, void **ret) {
        struct group *g = NULL;
        int r = getgrgid_r(*(const gid_t *) key, entry, buf, size, &g);
        *ret = g;
        return r;
}

static int call_getspnam(const void *key, void *entry, char *buf, size_t size, void **ret) {
        struct spwd *s = NULL;
        int r = getspnam_r(key, entry, buf, size, &s);
        *ret = s;
        return r;
}

int nss_getpwnam(const char *name, struct passwd **ret) {
        return nss_retry(call_getpwnam, name, sizeof(struct passwd), (void **) ret, NULL);
}

int nss_getpwuid(uid_t uid, struct passwd **ret) {
        return nss_retry(call_getpwuid, &uid, sizeof(struct passwd), (void **) ret, NULL);
}

int nss_getgrnam(const char *name, struct group **ret) {
        return nss_retry(call_getgrnam, name, sizeof(struct group), (void **) ret, NULL);
}

int nss_getgrgid(gid_t gid, struct group **ret) {
        return nss_retry(call_getgrgid, &gid, sizeof(struct group), (void **) ret, NULL);
}

int nss_getspnam(const char *name, struct spwd **ret, size_t *ret_size) {
        return nss_retry(call_getspnam, name, sizeof(struct spwd), (void **) ret, ret_size);
}
