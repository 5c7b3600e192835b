/* records.h: validating a vmuser-attach request and turning it into drop-in records.
 *
 * Flow: records_parse_attach() checks the request arguments field by field against the subset
 * of systemd's USER_RECORD.md / GROUP_RECORD.md that vmuser accepts (doc/PROTOCOL.txt, 4.),
 * and produces a struct attach_request; once the agent has settled the UID/GID,
 * records_build_files() renders the canonical file contents: the public user record, the
 * privileged part split off into its own object, the group record and the memberships. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "home-spec.h"
#include "names.h"
#include "verr.h"

#define RECORDS_MAX_MEMBER_OF 32
#define RECORDS_MAX_HASHES 8
#define RECORDS_MAX_SSH_KEYS 64
#define RECORDS_MAX_SSH_KEY_LEN 16384
#define RECORDS_MAX_HASH_LEN 1024
#define RECORDS_MAX_TEXT_LEN 256

/* The field rules both sides apply, so that the host builds only records the agent accepts
 * (host-user.c) and the agent refuses the same things (below). Text: no control characters and no
 * ':' (which would corrupt the colon-separated passwd lines NSS consumers print), at most max
 * bytes; UTF-8 is the caller's to check (json-c's parser does it for the agent). A password hash:
 * 1..RECORDS_MAX_HASH_LEN printable ASCII characters, no space, no ':'. An SSH key line:
 * 1..RECORDS_MAX_SSH_KEY_LEN bytes, no control characters. */
bool records_text_is_safe(const char *s, size_t max);
bool records_hash_is_safe(const char *s);
bool records_ssh_key_is_safe(const char *s);

struct id_range {
        uint32_t min;
        uint32_t max;
};

struct attach_request {
        char user_name[VMUSER_NAME_MAX + 1];
        bool has_uid;
        uint32_t uid;
        bool has_gid;
        uint32_t gid;
        char home_directory[HOME_PATH_MAX + 1];
        char *real_name;   /* optional */
        char *shell;       /* optional */
        char *service;     /* optional */
        char *group_description; /* optional */
        char **member_of;  /* sorted, unique */
        size_t n_member_of;
        char **hashed_passwords; /* secrets: erased on free */
        size_t n_hashed_passwords;
        char **ssh_keys;
        size_t n_ssh_keys;
        bool has_home;
        struct home_spec home;
        bool replace;
};

struct attach_request *attach_request_free(struct attach_request *req);
void attach_request_freep(struct attach_request **req);

/* Validates the "arguments" object of vmuser-attach. IDs, when given, must lie in range. */
int records_parse_attach(json_object *args, const struct id_range *range, struct attach_request **ret,
                         struct verr *e);

/* The rendered records, with uid/gid filled in. Strings are malloc'ed; privileged is NULL when
 * there is no secret to store. */
struct attach_files {
        char *user;          /* NAME.user */
        char *privileged;    /* NAME.user-privileged or NULL */
        char *group;         /* NAME.group */
        json_object *member_of; /* array of group names */
};

void attach_files_done(struct attach_files *f);
int records_build_files(const struct attach_request *req, uint32_t uid, uint32_t gid, struct attach_files *ret);
