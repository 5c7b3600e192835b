/* user-index.c: the in-memory index of attached users (see user-index.h).
 *
 * Entries are built from the record store's lines (user-index-varlink.c answers the calls): by
 * parsing them (user_index_entry_parse), or after an attach without parsing the records
 * (user-index-line.c).
 * Chains are singly linked through the entries themselves (no allocation per table), tables
 * double when they fill up. */
#include "user-index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "paths.h"
#include "record-store.h"
#include "user-index-internal.h"

uint64_t user_index_hash_string(const char *s) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        return h;
}

static uint64_t hash_id(uint32_t id) {
        uint64_t h = id * 0x9E3779B97F4A7C15ull;
        return h ^ (h >> 29);
}

void user_index_entry_free(struct user_entry *e) {
        if (!e)
                return;
        free(e->name);
        free(e->user_text);
        free(e->group_text);
        erase_and_free(e->privileged_text);
        free(e->state_text);
        for (size_t i = 0; i < e->n_member_of; i++)
                free(e->member_of[i]);
        free(e->member_of);
        free(e);
}

void user_index_entry_freep(struct user_entry **e) {
        user_index_entry_free(*e);
}

int user_index_new(const char *service, struct user_index **ret) {
        struct user_index *idx = calloc(1, sizeof(*idx));
        if (!idx)
                return -ENOMEM;
        idx->service = strdup(service);
        idx->n_buckets = idx->n_link_buckets = 64;
        idx->by_name = calloc(idx->n_buckets, sizeof(*idx->by_name));
        idx->by_uid = calloc(idx->n_buckets, sizeof(*idx->by_uid));
        idx->by_gid = calloc(idx->n_buckets, sizeof(*idx->by_gid));
        idx->by_group = calloc(idx->n_link_buckets, sizeof(*idx->by_group));
        if (!idx->service || !idx->by_name || !idx->by_uid || !idx->by_gid || !idx->by_group) {
                user_index_free(idx);
                return -ENOMEM;
        }
        *ret = idx;
        return 0;
}

static void links_remove_user(struct user_index *idx, struct user_entry *e) {
        for (size_t i = 0; i < e->n_member_of; i++) {
                struct member_link **p = &idx->by_group[user_index_hash_string(e->member_of[i]) & (idx->n_link_buckets - 1)];
                while (*p) {
                        if ((*p)->user == e && (*p)->group == e->member_of[i]) {
                                struct member_link *dead = *p;
                                *p = dead->next;
                                free(dead);
                                idx->n_links--;
                                break;
                        }
                        p = &(*p)->next;
                }
        }
}

struct user_index *user_index_free(struct user_index *idx) {
        if (!idx)
                return NULL;
        /* The links go bucket by bucket: unlinking user by user walks a popular group's whole
         * chain for each member (quadratic in the number of users at exit). */
        for (size_t i = 0; idx->by_group && i < idx->n_link_buckets; i++)
                while (idx->by_group[i]) {
                        struct member_link *dead = idx->by_group[i];
                        idx->by_group[i] = dead->next;
                        free(dead);
                }
        while (idx->all) {
                struct user_entry *e = idx->all;
                idx->all = e->next_all;
                user_index_entry_free(e);
        }
        free(idx->by_name);
        free(idx->by_uid);
        free(idx->by_gid);
        free(idx->by_group);
        free(idx->service);
        free(idx->detaching);
        free(idx);
        return NULL;
}

void user_index_freep(struct user_index **idx) {
        user_index_free(*idx);
}

int user_index_set_detaching(struct user_index *idx, const char *name) {
        char *copy = NULL;
        if (name && !(copy = strdup(name)))
                return -ENOMEM;
        free(idx->detaching);
        idx->detaching = copy;
        return 0;
}

size_t user_index_count(const struct user_index *idx) {
        return idx->n_users;
}

const char *user_index_service(const struct user_index *idx) {
        return idx->service;
}

struct user_entry *user_index_find_by_name(const struct user_index *idx, const char *name) {
        for (struct user_entry *e = idx->by_name[user_index_hash_string(name) & (idx->n_buckets - 1)]; e; e = e->next_name)
                if (streq(e->name, name))
                        return e;
        return NULL;
}

struct user_entry *user_index_find_by_uid(const struct user_index *idx, uint32_t uid) {
        for (struct user_entry *e = idx->by_uid[hash_id(uid) & (idx->n_buckets - 1)]; e; e = e->next_uid)
                if (e->uid == uid)
                        return e;
        return NULL;
}

struct user_entry *user_index_find_by_gid(const struct user_index *idx, uint32_t gid) {
        for (struct user_entry *e = idx->by_gid[hash_id(gid) & (idx->n_buckets - 1)]; e; e = e->next_gid)
                if (e->gid == gid)
                        return e;
        return NULL;
}

static void unchain(struct user_entry **head, struct user_entry *e, size_t next_offset) {
        for (struct user_entry **p = head; *p; p = (struct user_entry **) ((char *) *p + next_offset))
                if (*p == e) {
                        *p = *(struct user_entry **) ((char *) e + next_offset);
                        return;
                }
}

static void remove_entry(struct user_index *idx, struct user_entry *e) {
        size_t mask = idx->n_buckets - 1;
        unchain(&idx->by_name[user_index_hash_string(e->name) & mask], e, offsetof(struct user_entry, next_name));
        unchain(&idx->by_uid[hash_id(e->uid) & mask], e, offsetof(struct user_entry, next_uid));
        unchain(&idx->by_gid[hash_id(e->gid) & mask], e, offsetof(struct user_entry, next_gid));
        links_remove_user(idx, e);
        if (e->prev_all)
                e->prev_all->next_all = e->next_all;
        else
                idx->all = e->next_all;
        if (e->next_all)
                e->next_all->prev_all = e->prev_all;
        idx->n_users--;
        user_index_entry_free(e);
}

static void chain_entry(struct user_index *idx, struct user_entry *e) {
        size_t mask = idx->n_buckets - 1, h;
        h = user_index_hash_string(e->name) & mask;
        e->next_name = idx->by_name[h];
        idx->by_name[h] = e;
        h = hash_id(e->uid) & mask;
        e->next_uid = idx->by_uid[h];
        idx->by_uid[h] = e;
        h = hash_id(e->gid) & mask;
        e->next_gid = idx->by_gid[h];
        idx->by_gid[h] = e;
}

static int grow_entries(struct user_index *idx) {
        size_t n = idx->n_buckets * 2;
        struct user_entry **a = calloc(n, sizeof(*a)), **b = calloc(n, sizeof(*b)), **c = calloc(n, sizeof(*c));
        if (!a || !b || !c) {
                free(a);
                free(b);
                free(c);
                return -ENOMEM;
        }
        free(idx->by_name);
        free(idx->by_uid);
        free(idx->by_gid);
        idx->by_name = a;
        idx->by_uid = b;
        idx->by_gid = c;
        idx->n_buckets = n;
        for (struct user_entry *e = idx->all; e; e = e->next_all)
                chain_entry(idx, e);
        return 0;
}

static int grow_links(struct user_index *idx) {
        size_t n = idx->n_link_buckets * 2;
        struct member_link **t = calloc(n, sizeof(*t));
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < idx->n_link_buckets; i++)
                while (idx->by_group[i]) {
                        struct member_link *l = idx->by_group[i];
                        idx->by_group[i] = l->next;
                        size_t h = user_index_hash_string(l->group) & (n - 1);
                        l->next = t[h];
                        t[h] = l;
                }
        free(idx->by_group);
        idx->by_group = t;
        idx->n_link_buckets = n;
        return 0;
}

static int insert_entry(struct user_index *idx, struct user_entry *e) {
        int r;

        if (idx->n_users >= idx->n_buckets && (r = grow_entries(idx)) < 0)
                return r;
        while (idx->n_links + e->n_member_of > idx->n_link_buckets)
                if ((r = grow_links(idx)) < 0)
                        return r;
        /* Links first: the only step that allocates, so a failure leaves the index unchanged. */
        struct member_link **links = calloc(e->n_member_of ? e->n_member_of : 1, sizeof(*links));
        if (!links)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_member_of; i++) {
                links[i] = malloc(sizeof(**links));
                if (!links[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(links[j]);
                        free(links);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < e->n_member_of; i++) {
                size_t h = user_index_hash_string(e->member_of[i]) & (idx->n_link_buckets - 1);
                *links[i] = (struct member_link) { .group = e->member_of[i], .user = e, .next = idx->by_group[h] };
                idx->by_group[h] = links[i];
        }
        free(links);
        idx->n_links += e->n_member_of;
        chain_entry(idx, e);
        e->next_all = idx->all;
        if (idx->all)
                idx->all->prev_all = e;
        idx->all = e;
        idx->n_users++;
        return 0;
}

/* Takes a record object over, sets "service", returns its compact text. */
static int record_text(struct user_index *idx, json_object *obj, char **ret_text) {
        if (!json_object_is_type(obj, json_type_object))
                return -EBADMSG;
        json_object_object_del(obj, "privileged");
        if (json_object_object_add(obj, "service", json_object_new_string(idx->service)) < 0)
                return -ENOMEM;
        const char *text = json_to_compact(obj);
        if (!text)
                return -ENOMEM;
        *ret_text = strdup(text);
        return *ret_text ? 0 : -ENOMEM;
}

int user_index_entry_parse(struct user_index *idx, const char *line, int state_fd, const char *name,
                           struct user_entry **ret) {
        _cleanup_(user_index_entry_freep) struct user_entry *e = NULL;
        _cleanup_json_ json_object *obj = NULL, *state = NULL;
        char file[VMUSER_NAME_MAX + 64];
        json_object *user, *group, *priv, *member_of, *p;
        const char *user_name, *group_name;
        int r;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->name = strdup(name);
        if (!e->name)
                return -ENOMEM;

        r = json_parse_strict(line, strlen(line), &obj);
        if (r < 0)
                return r;
        if (json_get_object(obj, "user", &user) < 0 || json_get_string(user, "userName", &user_name) < 0 ||
            !streq(user_name, name) || json_get_uint32(user, "uid", &e->uid) < 0)
                return -EBADMSG;
        if (json_get_object(obj, "group", &group) < 0 || json_get_string(group, "groupName", &group_name) < 0 ||
            !streq(group_name, name) || json_get_uint32(group, "gid", &e->gid) < 0)
                return -EBADMSG;
        if ((r = record_text(idx, user, &e->user_text)) < 0 || (r = record_text(idx, group, &e->group_text)) < 0)
                return r;

        /* "privileged" holds the NAME.user-privileged document: {"privileged": {...}}. */
        if (json_object_object_get_ex(obj, "privileged", &priv)) {
                if (json_get_object(priv, "privileged", &p) < 0)
                        return -EBADMSG;
                const char *text = json_to_compact(p);
                if (!text || !(e->privileged_text = strdup(text)))
                        return -ENOMEM;
                /* json-c keeps its own copy of the serialization: erase it before it is freed. */
                explicit_bzero((char *) text, strlen(text));
        }

        /* The attach state: the line's "state" (an older agent's line: users/NAME.json). */
        json_object *st = NULL;
        if (!json_object_object_get_ex(obj, "state", &st)) {
                snprintf(file, sizeof(file), VMUSER_USERS_SUBDIR "/%s.json", name);
                r = json_read_file_at(state_fd, file, VMUSER_STATE_FILE_MAX, &state);
                if (r < 0 && r != -ENOENT)
                        return r;
                st = state;
        }
        if (st) {
                if (!json_object_is_type(st, json_type_object))
                        return -EBADMSG;
                json_object_object_del(st, "detaching");
                const char *text = json_to_compact(st);
                if (!text || !(e->state_text = strdup(text)))
                        return -ENOMEM;
        }
        if (st && json_get_array(st, "memberOf", &member_of) >= 0) {
                size_t n = json_object_array_length(member_of);
                if (n > USER_INDEX_MAX_MEMBER_OF)
                        return -E2BIG;
                e->member_of = calloc(n ? n : 1, sizeof(char *));
                if (!e->member_of)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *g = json_object_get_string(json_object_array_get_idx(member_of, i));
                        if (!json_object_is_type(json_object_array_get_idx(member_of, i), json_type_string) ||
                            !name_is_valid(g))
                                return -EBADMSG;
                        if (!(e->member_of[e->n_member_of] = strdup(g)))
                                return -ENOMEM;
                        e->n_member_of++;
                }
        }
        *ret = TAKE_PTR(e);
        return 0;
}

static int refresh(struct user_index *idx, const char *line, int state_fd, const char *name, const uint32_t *ids) {
        struct user_entry *old, *e = NULL;
        int r;

        if (!name_is_valid(name))
                return -EINVAL;
        old = user_index_find_by_name(idx, name);
        if (old)
                remove_entry(idx, old);
        if (!line)
                return 0;
        r = ids ? user_index_entry_from_line(idx, line, name, ids[0], ids[1], &e) : -EPROTO;
        if (r == -EPROTO)
                r = user_index_entry_parse(idx, line, state_fd, name, &e);
        if (r < 0)
                return r;
        /* Another indexed user with the same IDs would be a stale entry: the store wins. */
        while ((old = user_index_find_by_uid(idx, e->uid)) || (old = user_index_find_by_gid(idx, e->gid)))
                remove_entry(idx, old);
        r = insert_entry(idx, e);
        if (r < 0) {
                user_index_entry_free(e);
                return r;
        }
        return 1;
}

int user_index_refresh(struct user_index *idx, const char *line, int state_fd, const char *name) {
        return refresh(idx, line, state_fd, name, NULL);
}

int user_index_refresh_attached(struct user_index *idx, const char *line, int state_fd, const char *name, uint32_t uid,
                                uint32_t gid) {
        return refresh(idx, line, state_fd, name, (const uint32_t[]) { uid, gid });
}

struct load_all {
        struct user_index *idx;
        int state_fd;
        unsigned failed;
        int n;
};

static int load_one(const char *name, const char *line, void *userdata) {
        struct load_all *l = userdata;
        int r = user_index_refresh(l->idx, line, l->state_fd, name);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                l->failed++;
        else
                l->n += r;
        return 0;
}

int user_index_load_all(struct user_index *idx, const struct record_store *store, int state_fd, unsigned *ret_failed) {
        struct load_all l = { .idx = idx, .state_fd = state_fd };
        int r = record_store_foreach(store, load_one, &l);
        if (ret_failed)
                *ret_failed = l.failed;
        return r < 0 ? r : l.n;
}

