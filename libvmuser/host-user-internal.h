/* host-user-internal.h: what host-user.c and host-user-keys.c share, not part of the API.
 *
 * host-user.c builds the record and calls host_user_read_authorized_keys() and
 * host_user_keys_add() for the keys; both files warn through host_user_warnf(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "host-user.h"
#include "macro.h"
#include "verr.h"

/* Formats a warning and hands it to warn (NULL: dropped). */
void host_user_warnf(host_user_warn_fn warn, void *userdata, const char *fmt, ...) _printf_(3, 4);

/* Whether s is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): the
 * agent's JSON parser refuses anything else. */
bool host_user_utf8_is_valid(const char *s);

/* Adds key unless it is in k already: 1 added, 0 known, -ENOMEM. */
int host_user_keys_add(struct host_user_keys *k, const char *key);
void host_user_keys_donep(struct host_user_keys *k);

/* The user's ~/.ssh/authorized_keys, read as the user beneath the home; anything unusable costs
 * a warning (0), not the attach. */
int host_user_read_authorized_keys(const struct host_user *u, struct host_user_keys *k, host_user_warn_fn warn,
                                   void *userdata, struct verr *e);
