/* user-index-line.c: an index entry made from a record-store line without parsing its records:
 * the attach path (natively, parsing the line was a third of the agent's CPU per attach).
 *
 * A line is {"userName":NAME,"user":{...},"group":{...}[,"privileged":{"privileged":{...}}]
 * ,"state":{...}}, made by record-line.c either way: joined from json-c's compact texts or
 * serialized by json-c, so each part is already in the form user_index_entry_parse() would
 * re-serialize it to. Flow: split the line into its parts by a scan that only follows strings
 * and brackets -> the user and group texts get "service" appended before their closing brace
 * (records.c names it in both already: then they are taken as they are) -> the privileged
 * text is the inner object -> only the state, a few dozen bytes, is parsed (its memberOf
 * list). The UID and GID are the caller's (what the attach wrote). Anything else in the line,
 * or what the parse would change (another service named, a "privileged" key in the user or
 * the group, a "detaching" key in the state: top-level keys, found by the same scan), is
 * -EPROTO: the caller parses the line instead. So both ways give the same entry, byte for byte
 * (test-user-index checks it). The scan checks brackets, not the rest of JSON: the line is one
 * the agent wrote (record-line.c, compact json-c output) and read back from its root-only
 * store, and lines of any other shape are parsed. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "user-index-internal.h"

struct span {
        const char *p;
        size_t len;
};

/* The end of the object at p (the byte after its closing brace), following strings and
 * brackets, each closed by its own kind; NULL when p holds no complete object or nests deeper
 * than 64 levels (the parse then decides). */
static const char *object_end(const char *p) {
        uint64_t braces = 0; /* bit d: level d+1 was opened by '{' */
        int depth = 0;

        if (*p != '{')
                return NULL;
        for (; *p; p++) {
                if (*p == '"') {
                        for (p++; *p != '"'; p++)
                                if (!*p || (*p == '\\' && !*++p))
                                        return NULL;
                } else if (*p == '{' || *p == '[') {
                        if (depth == 64)
                                return NULL;
                        braces = *p == '{' ? braces | UINT64_C(1) << depth : braces & ~(UINT64_C(1) << depth);
                        depth++;
                } else if (*p == '}' || *p == ']') {
                        if (depth == 0 || (*p == '}') != !!(braces & UINT64_C(1) << (depth - 1)))
                                return NULL;
                        if (--depth == 0)
                                return p + 1;
                }
        }
        return NULL;
}

/* "KEY" followed by an object at *p: that object in *ret, *p after it. */
static bool take_object(const char **p, const char *key, struct span *ret) {
        size_t n = strlen(key);
        if (strncmp(*p, key, n) != 0)
                return false;
        const char *end = object_end(*p + n);
        if (!end)
                return false;
        *ret = (struct span) { *p + n, (size_t) (end - (*p + n)) };
        *p = end;
        return true;
}

/* Where the value of key (written "\"key\":") starts at the top level of the object s, or
 * NULL when the object has no such key. */
static const char *top_level_value(struct span s, const char *key) {
        const char *end = s.p + s.len;
        size_t n = strlen(key);
        int depth = 0;
        char prev = 0; /* the last byte outside strings ('"' for a string) */

        for (const char *p = s.p; p < end; p++) {
                if (*p == '"') {
                        if (depth == 1 && (prev == '{' || prev == ',') && (size_t) (end - p) >= n &&
                            memcmp(p, key, n) == 0)
                                return p + n;
                        for (p++; p < end && *p != '"'; p++)
                                if (*p == '\\')
                                        p++;
                } else if (*p == '{' || *p == '[')
                        depth++;
                else if (*p == '}' || *p == ']')
                        depth--;
                prev = *p;
        }
        return NULL;
}

/* The record text with "service" set, as the parse sets it: a record that names the service
 * already is taken as it is (json-c replaces a value where it stands), one without gets
 * ,"service":"SERVICE" before its closing brace (json-c appends a new key). NULL with
 * *ret_error set: -EPROTO for a record naming another service, -ENOMEM. */
static char *with_service(struct span s, const char *service, int *ret_error) {
        size_t n = strlen(service);
        const char *v = top_level_value(s, "\"service\":");
        char *t;

        *ret_error = -ENOMEM;
        if (v) {
                if (*v != '"' || strncmp(v + 1, service, n) != 0 || v[1 + n] != '"' ||
                    (v[2 + n] != ',' && v[2 + n] != '}')) {
                        *ret_error = -EPROTO;
                        return NULL;
                }
                return strndup(s.p, s.len);
        }
        t = malloc(s.len - 1 + strlen(",\"service\":\"\"}") + n + 1);
        if (!t)
                return NULL;
        memcpy(t, s.p, s.len - 1);
        strcpy(t + s.len - 1, ",\"service\":\"");
        strcat(t, service);
        strcat(t, "\"}");
        return t;
}

/* A service name that json-c writes as it is (no escaping). */
static bool service_is_plain(const char *s) {
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '.' || *s == '-' || *s == '_'))
                        return false;
        return true;
}

static int member_of_from_state(struct span state, struct user_entry *e) {
        _cleanup_json_ json_object *st = NULL;
        json_object *member_of;
        int r;

        r = json_parse_strict(state.p, state.len, &st);
        if (r < 0)
                return r;
        if (json_get_array(st, "memberOf", &member_of) < 0)
                return 0;
        size_t n = json_object_array_length(member_of);
        if (n > USER_INDEX_MAX_MEMBER_OF)
                return -E2BIG;
        e->member_of = calloc(n ? n : 1, sizeof(char *));
        if (!e->member_of)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *g = json_object_array_get_idx(member_of, i);
                if (!json_object_is_type(g, json_type_string) || !name_is_valid(json_object_get_string(g)))
                        return -EBADMSG;
                if (!(e->member_of[e->n_member_of] = strdup(json_object_get_string(g))))
                        return -ENOMEM;
                e->n_member_of++;
        }
        return 0;
}

int user_index_entry_from_line(const struct user_index *idx, const char *line, const char *name, uint32_t uid,
                               uint32_t gid, struct user_entry **ret) {
        _cleanup_(user_index_entry_freep) struct user_entry *e = NULL;
        struct span user, group, privileged = {}, state = {};
        const char *p = line;
        size_t n = strlen(name);
        int r;

        if (!name_is_valid(name) || !service_is_plain(idx->service))
                return -EPROTO;
        if (strncmp(p, "{\"userName\":\"", 13) != 0 || strncmp(p + 13, name, n) != 0)
                return -EPROTO;
        p += 13 + n;
        if (!take_object(&p, "\",\"user\":", &user) || !take_object(&p, ",\"group\":", &group))
                return -EPROTO;
        if (take_object(&p, ",\"privileged\":", &privileged)) {
                /* {"privileged":{...}}: the inner object. */
                const char *inner = privileged.p + strlen("{\"privileged\":");
                if (strncmp(privileged.p, "{\"privileged\":", strlen("{\"privileged\":")) != 0 ||
                    object_end(inner) != privileged.p + privileged.len - 1)
                        return -EPROTO;
                privileged = (struct span) { inner, privileged.len - 1 - (size_t) (inner - privileged.p) };
        }
        /* A line without state is an older agent's: its state is in a file of its own. */
        if (!take_object(&p, ",\"state\":", &state) || (!streq(p, "}") && !streq(p, "}\n")))
                return -EPROTO;
        /* What the parse would remove. */
        if (user.len <= 2 || group.len <= 2 || top_level_value(user, "\"privileged\":") ||
            top_level_value(group, "\"privileged\":") || top_level_value(state, "\"detaching\":"))
                return -EPROTO;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->uid = uid;
        e->gid = gid;
        if (!(e->name = strdup(name)))
                return -ENOMEM;
        if (!(e->user_text = with_service(user, idx->service, &r)) ||
            !(e->group_text = with_service(group, idx->service, &r)))
                return r;
        if ((privileged.p && !(e->privileged_text = strndup(privileged.p, privileged.len))) ||
            !(e->state_text = strndup(state.p, state.len)))
                return -ENOMEM;
        r = member_of_from_state(state, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}
