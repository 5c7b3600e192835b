/* nss-view.h: one snapshot of users and groups through NSS, for a batch of attaches (the agent's
 * conflict checks in the guest; the host tool's look-ups of the users it attaches).
 *
 * The conflict checks of an attach ask NSS about a name, a UID and a GID (and each memberOf
 * group): a handful of lookups per user, each re-reading /etc/passwd or /etc/group and asking
 * every userdb service. A view enumerates passwd and group once (getpwent/getgrent) and answers
 * the same questions from memory. Enumeration only sees everything for sources that enumerate:
 * nss_view_new() refuses (-EOPNOTSUPP) unless nsswitch.conf's passwd and group lines name only
 * "files" and "systemd" (the lookups go to NSS one by one then). nss_view_stale() says when
 * /etc/passwd or /etc/group changed since the view was taken.
 *
 * The host tool also wants whole entries: nss_view_new_full() with NSS_VIEW_PASSWD_ENTRIES keeps
 * each passwd entry, and with NSS_VIEW_SHADOW the shadow entries (getspent) of the names given,
 * when nsswitch.conf's shadow line also names only "files" and "systemd" (else there are none and
 * the caller asks getspnam). A name the view does not hold is for the caller to ask NSS about:
 * the view is a cache that may miss, never a verdict that a user does not exist. */
#pragma once

#include <pwd.h>
#include <shadow.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nss_view;

/* nsswitch is the nsswitch.conf to check (NULL: /etc/nsswitch.conf). */
int nss_view_new(const char *nsswitch, struct nss_view **ret);

enum {
        NSS_VIEW_PASSWD_ENTRIES = 1 << 0, /* keep each user's passwd entry: nss_view_getpwnam() */
        NSS_VIEW_SHADOW = 1 << 1,         /* keep the shadow entries of shadow_names: nss_view_getspnam() */
};
int nss_view_new_full(const char *nsswitch, unsigned flags, char *const *shadow_names, size_t n_shadow_names,
                      struct nss_view **ret);
struct nss_view *nss_view_free(struct nss_view *v);
/* 1 when /etc/passwd or /etc/group changed (or cannot be checked) since the view was taken. */
bool nss_view_stale(const struct nss_view *v);

/* Like getpwnam/getgrnam/getpwuid/getgrgid: 1 = exists (the other half in ret_id or ret_name,
 * if given), 0 = not found. The returned name lives as long as the view. */
int nss_view_by_name(const struct nss_view *v, bool group, const char *name, uint32_t *ret_id);
int nss_view_by_id(const struct nss_view *v, bool group, uint32_t id, const char **ret_name);
size_t nss_view_count(const struct nss_view *v, bool group);

/* The entry as enumerated (the first of its name), NULL when the view does not hold it (not
 * asked for, or not found: ask NSS then). It lives as long as the view; the shadow entries are
 * wiped when the view is freed. */
const struct passwd *nss_view_getpwnam(const struct nss_view *v, const char *name);
const struct spwd *nss_view_getspnam(const struct nss_view *v, const char *name);
