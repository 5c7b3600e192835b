/* record-store.h: the records of attached users in one append-only file (--userdb=varlink).
 *
 * /run/vmuser/records.journal holds one line per change: a compact JSON object
 *   {"userName":NAME,"user":{...},"group":{...},"privileged":{...},"state":{...}}
 *                                         (set; "privileged" and "state" optional: "state" is the
 *                                         user's attach state, attach-state.h, without "detaching")
 *   {"remove":NAME}                                                     (remove)
 * A change is one write(2) of one line, so a SIGKILL leaves the line whole or absent; a last
 * line without its newline (the write never returned) is cut off at open. Reading the file from
 * the start gives the current records. At open, and whenever dead lines outnumber live ones, the
 * file is rewritten with only the live records (temporary file + rename: old or new file). The
 * file is 0600 (the privileged sections hold password hashes). Where each live line is, and its
 * UID and GID, are kept in memory, hashed by name, UID and GID, so lookups cost the same
 * whatever the number of users; the lines themselves are read back from the file when asked for
 * (the agent's user index holds the records in memory already). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record-line.h" /* the lines themselves */

#define RECORD_STORE_FILE "records.journal"
/* Largest line (one user's records) and largest file read back. */
#define RECORD_STORE_LINE_MAX (256u * 1024u)
#define RECORD_STORE_FILE_MAX (512u * 1024u * 1024u)

struct record_store;

/* Opens (creating) dir_fd/records.journal and reads it. */
int record_store_open(int dir_fd, struct record_store **ret);
struct record_store *record_store_free(struct record_store *s);
void record_store_freep(struct record_store **s);

/* The stored line of name (without newline) into *ret: valid until the next read of this
 * store. Lines are not kept in memory (the file is read), so this may fail: -ENOENT when name
 * is not stored, else -errno. */
int record_store_read(const struct record_store *s, const char *name, const char **ret);
/* The same, NULL for not stored or unreadable (for callers that need not tell). */
const char *record_store_get(const struct record_store *s, const char *name);
bool record_store_has(const struct record_store *s, const char *name);
/* 1 when name's stored line is line, 0 when not (or not stored), -errno when unreadable. */
int record_store_equals(const struct record_store *s, const char *name, const char *line);
/* The name holding a UID (group: a GID), or NULL. */
const char *record_store_owner_of(const struct record_store *s, bool group, uint32_t id);
size_t record_store_count(const struct record_store *s);
/* Calls cb for every stored user (in no particular order); stops at the first negative return. */
int record_store_foreach(const struct record_store *s, int (*cb)(const char *name, const char *line, void *userdata),
                         void *userdata);

/* Stores line (a set line for name, as made by record_store_make_line) / removes name (absent:
 * nothing written, 0). Each is one appended line; -EBADMSG for a line that does not check out. */
int record_store_put(struct record_store *s, const char *name, const char *line);
int record_store_remove(struct record_store *s, const char *name);
/* record_store_put() of a line record_store_join_line() made from records with IDs uid and gid:
 * not parsed again (valid JSON by construction). */
int record_store_put_joined(struct record_store *s, const char *name, const char *line, uint32_t uid, uint32_t gid);
