/* user-index-internal.h: the index's tables, shared by user-index.c (building it) and
 * user-index-varlink.c (answering io.systemd.UserDatabase from it). Not for other callers. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "user-index.h"

struct user_entry {
        char *name; /* user and group name: vmuser installs one group per user, named after it */
        uint32_t uid, gid;
        char *user_text;       /* compact record, "service" set, without "privileged" */
        char *group_text;      /* compact group record, "service" set */
        char *privileged_text; /* the "privileged" object, or NULL */
        char *state_text;      /* the attach state (io.vmuser.GetAttachState), or NULL */
        char **member_of;
        size_t n_member_of;
        struct user_entry *next_name, *next_uid, *next_gid;
        struct user_entry *prev_all, *next_all;
};

struct member_link {
        const char *group; /* points into user->member_of */
        struct user_entry *user;
        struct member_link *next;
};

struct user_index {
        char *service;
        size_t n_buckets; /* power of two, for the entry tables */
        struct user_entry **by_name, **by_uid, **by_gid;
        size_t n_link_buckets;
        struct member_link **by_group;
        struct user_entry *all;
        size_t n_users, n_links;
        char *detaching; /* the user a detach is under way for, or NULL */
};

/* Each user carries at most this many memberships (records.c caps memberOf well below). */
#define USER_INDEX_MAX_MEMBER_OF 256u

void user_index_entry_free(struct user_entry *e);
void user_index_entry_freep(struct user_entry **e);
/* An entry from name's record-store line, parsed (a line without "state": state_fd's
 * users/NAME.json). -EBADMSG for a line that is not name's records. */
int user_index_entry_parse(struct user_index *idx, const char *line, int state_fd, const char *name,
                           struct user_entry **ret);
/* The same entry without parsing the records (user-index-line.c), uid and gid as the attach
 * wrote them; -EPROTO for a line it does not take apart (then parse it). */
int user_index_entry_from_line(const struct user_index *idx, const char *line, const char *name, uint32_t uid,
                               uint32_t gid, struct user_entry **ret);

uint64_t user_index_hash_string(const char *s);
struct user_entry *user_index_find_by_name(const struct user_index *idx, const char *name);
struct user_entry *user_index_find_by_uid(const struct user_index *idx, uint32_t uid);
struct user_entry *user_index_find_by_gid(const struct user_index *idx, uint32_t gid);
