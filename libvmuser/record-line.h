/* record-line.h: building the set line of one user for the record store (record-store.h):
 *   {"userName":NAME,"user":{...},"group":{...},"privileged":{...},"state":{...}}
 * ("privileged" and "state" optional). */
#pragma once

/* Builds a set line from the record texts (privileged and state may be NULL) into *ret (malloc'ed). */
int record_store_make_line(const char *name, const char *user, const char *group, const char *privileged,
                           const char *state, char **ret);

/* The same line from texts json_to_compact() made (json-util.h), joined without parsing them
 * again: byte for byte what record_store_make_line() makes of them. -EINVAL for a bad name. */
int record_store_join_line(const char *name, const char *user, const char *group, const char *privileged,
                           const char *state, char **ret);
