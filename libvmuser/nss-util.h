/* nss-util.h: NSS look-ups with the ERANGE retry (see nss-util.c). */
#pragma once

#include <grp.h>
#include <pwd.h>
#include <shadow.h>
#include <stddef.h>
#include <sys/types.h>

/* A growing buffer stops here: an entry this large is an attack or a broken module. */
#define NSS_BUFFER_MAX (4u * 1024u * 1024u)

/* One reentrant NSS call (getpwnam_r and friends) behind a common signature: key, the entry
 * struct, the string buffer and its size; *ret gets the result pointer; returns the call's
 * positive error number. */
typedef int (*nss_call_fn)(const void *key, void *entry, char *buf, size_t size, void **ret);

/* Runs call with a buffer that grows (x4 from 1 KiB up to NSS_BUFFER_MAX) while it says ERANGE.
 * The entry and its strings share one malloc'ed block (entry first, free() it); *ret_size (may be
 * NULL) is the block size, so callers can wipe secrets. -ENOENT when not found (0 with no result,
 * or ENOENT/ESRCH from some modules), -ERANGE past the maximum, -ENOMEM, or the call's -errno. */
int nss_retry(nss_call_fn call, const void *key, size_t entry_size, void **ret, size_t *ret_size);

/* The look-ups themselves: *ret is one block to free(). */
int nss_getpwnam(const char *name, struct passwd **ret);
int nss_getpwuid(uid_t uid, struct passwd **ret);
int nss_getgrnam(const char *name, struct group **ret);
int nss_getgrgid(gid_t gid, struct group **ret);
/* The shadow entry: wipe the block (*ret_size bytes) before free(), it holds the hash. */
int nss_getspnam(const char *name, struct spwd **ret, size_t *ret_size);
