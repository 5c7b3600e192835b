/* nss-view.h: one snapshot of the guest's users and groups through NSS, for a batch of attaches.
 *
 * The conflict checks of an attach ask NSS about a name, a UID and a GID (and each memberOf
 * group): a handful of lookups per user, each re-reading /etc/passwd or /etc/group and asking
 * every userdb service. A view enumerates passwd and group once (getpwent/getgrent) and answers
 * the same questions from memory. Enumeration only sees everything for sources that enumerate:
 * nss_view_new() refuses (-EOPNOTSUPP) unless nsswitch.conf's passwd and group lines name only
 * "files" and "systemd" (the lookups go to NSS one by one then). nss_view_stale() says when
 * /etc/passwd or /etc/group changed since the view was taken. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nss_view;

/* nsswitch is the nsswitch.conf to check (NULL: /etc/nsswitch.conf). */
int nss_view_new(const char *nsswitch, struct nss_view **ret);
struct nss_view *nss_view_free(struct nss_view *v);
/* 1 when /etc/passwd or /etc/group changed (or cannot be checked) since the view was taken. */
bool nss_view_stale(const struct nss_view *v);

/* Like getpwnam/getgrnam/getpwuid/getgrgid: 1 = exists (the other half in ret_id or ret_name,
 * if given), 0 = not found. The returned name lives as long as the view. */
int nss_view_by_name(const struct nss_view *v, bool group, const char *name, uint32_t *ret_id);
int nss_view_by_id(const struct nss_view *v, bool group, uint32_t id, const char **ret_name);
size_t nss_view_count(const struct nss_view *v, bool group);
