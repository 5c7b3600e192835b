/* record-store.c: attached users' records in one append-only journal file (see record-store.h).
 *
 * Open: read the whole file (bounded), apply each complete line in order (set or remove), cut a
 * torn last line, rewrite the file when it holds dead lines. Put/remove: check the line, append
 * it with one write(2), then change the in-memory table; a failed write changes nothing in
 * memory. Entries are chained by name, UID and GID in tables that double when full.
 * Memory: an entry holds where its line is in the file (offset, length, hash), not the line: the
 * agent's user index keeps the records already, and the line is read back (pread) only when
 * asked for (a replace, a detach, a re-index). */
#include "record-store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic-file.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"

struct store_entry {
        uint32_t uid, gid;
        uint64_t off;  /* of the line in the file */
        uint32_t len;  /* without the newline */
        uint64_t hash; /* of the line */
        struct store_entry *next_name, *next_uid, *next_gid;
        char name[];
};

/* The buffer record_store_read() hands lines out of (the store is logically const there). It
 * holds the line at off (len bytes) of the current file when valid: the last line read or put,
 * so the re-index after a put reads no file (offsets are unique until a rewrite). */
struct read_buf {
        char *data;
        size_t cap;
        uint64_t off;
        uint32_t len;
        bool valid;
};

struct record_store {
        int dir_fd;    /* not owned */
        int fd;        /* the journal, O_RDWR|O_APPEND */
        uint64_t size; /* of the file: where the next line goes */
        size_t n_buckets;
        struct store_entry **by_name, **by_uid, **by_gid;
        size_t n_live, n_lines;
        struct read_buf *rb;
};

static uint64_t hash_name(const char *s) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        return h;
}

static uint64_t hash_id(uint32_t id) {
        return (uint64_t) id * 11400714819323198485ull;
}

static void entry_free(struct store_entry *e) {
        free(e);
}

/* Reads e's line into buf (len + 1 bytes). */
static int pread_line(const struct record_store *s, const struct store_entry *e, char *buf) {
        size_t got = 0;
        while (got < e->len) {
                ssize_t n = pread(s->fd, buf + got, e->len - got, (off_t) (e->off + got));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return -EIO; /* the file is shorter than the index says */
                got += (size_t) n;
        }
        buf[e->len] = '\0';
        return 0;
}

static struct store_entry **name_slot(const struct record_store *s, const char *name) {
        struct store_entry **p = &s->by_name[hash_name(name) & (s->n_buckets - 1)];
        while (*p && !streq((*p)->name, name))
                p = &(*p)->next_name;
        return p;
}

static struct store_entry *find_id(const struct record_store *s, bool group, uint32_t id) {
        struct store_entry *e = (group ? s->by_gid : s->by_uid)[hash_id(id) & (s->n_buckets - 1)];
        for (; e; e = group ? e->next_gid : e->next_uid)
                if ((group ? e->gid : e->uid) == id)
                        return e;
        return NULL;
}

static void unchain_id(struct record_store *s, struct store_entry *e, bool group) {
        struct store_entry **p = &(group ? s->by_gid : s->by_uid)[hash_id(group ? e->gid : e->uid) & (s->n_buckets - 1)];
        while (*p && *p != e)
                p = group ? &(*p)->next_gid : &(*p)->next_uid;
        if (*p)
                *p = group ? e->next_gid : e->next_uid;
}

static void chain(struct record_store *s, struct store_entry *e) {
        size_t m = s->n_buckets - 1;
        e->next_name = s->by_name[hash_name(e->name) & m];
        s->by_name[hash_name(e->name) & m] = e;
        e->next_uid = s->by_uid[hash_id(e->uid) & m];
        s->by_uid[hash_id(e->uid) & m] = e;
        e->next_gid = s->by_gid[hash_id(e->gid) & m];
        s->by_gid[hash_id(e->gid) & m] = e;
}

static int alloc_tables(size_t n, struct store_entry ***a, struct store_entry ***b, struct store_entry ***c) {
        *a = calloc(n, sizeof(**a));
        *b = calloc(n, sizeof(**b));
        *c = calloc(n, sizeof(**c));
        if (*a && *b && *c)
                return 0;
        free(*a);
        free(*b);
        free(*c);
        return -ENOMEM;
}

static int grow(struct record_store *s) {
        struct store_entry **old = s->by_name, **n, **u, **g;
        size_t old_n = s->n_buckets;

        if (alloc_tables(old_n * 2, &n, &u, &g) < 0)
                return -ENOMEM;
        free(s->by_uid);
        free(s->by_gid);
        s->by_name = n;
        s->by_uid = u;
        s->by_gid = g;
        s->n_buckets = old_n * 2;
        for (size_t i = 0; i < old_n; i++)
                for (struct store_entry *e = old[i], *next; e; e = next) {
                        next = e->next_name;
                        chain(s, e);
                }
        free(old);
        return 0;
}

/* Removes name from memory (no write). */
static void drop(struct record_store *s, const char *name) {
        struct store_entry **p = name_slot(s, name), *e = *p;
        if (!e)
                return;
        *p = e->next_name;
        unchain_id(s, e, false);
        unchain_id(s, e, true);
        entry_free(e);
        s->n_live--;
}

/* Checks a set line for name: its object, and the IDs it carries. */
static int parse_set_line(const char *name, const char *line, uint32_t *ret_uid, uint32_t *ret_gid) {
        _cleanup_json_ json_object *obj = NULL;
        json_object *user, *group, *priv;
        const char *n;
        int r;

        r = json_parse_strict(line, strlen(line), &obj);
        if (r < 0)
                return -EBADMSG;
        if (json_get_string(obj, "userName", &n) < 0 || !streq(n, name) || json_get_object(obj, "user", &user) < 0 ||
            json_get_object(obj, "group", &group) < 0 || json_get_string(user, "userName", &n) < 0 || !streq(n, name) ||
            json_get_uint32(user, "uid", ret_uid) < 0 || json_get_string(group, "groupName", &n) < 0 ||
            !streq(n, name) || json_get_uint32(group, "gid", ret_gid) < 0)
                r = -EBADMSG;
        else if (json_object_object_get_ex(obj, "privileged", &priv) && !json_object_is_type(priv, json_type_object))
                r = -EBADMSG;
        else if (json_object_object_get_ex(obj, "state", &priv) && !json_object_is_type(priv, json_type_object))
                r = -EBADMSG;
        return r;
}

/* Sets name to line (checked: its IDs uid and gid), which is in the file at off, in memory (no
 * write). */
static int set_entry(struct record_store *s, const char *name, const char *line, uint64_t off, uint32_t uid,
                     uint32_t gid) {
        struct store_entry *e;
        size_t name_len = strlen(name);

        if (s->n_live + 1 > s->n_buckets && grow(s) < 0)
                return -ENOMEM;
        e = calloc(1, sizeof(*e) + name_len + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e->name, name, name_len + 1);
        e->off = off;
        e->len = (uint32_t) strlen(line);
        e->hash = hash_name(line);
        e->uid = uid;
        e->gid = gid;
        drop(s, name);
        chain(s, e);
        s->n_live++;
        return 0;
}

/* Applies one line read back from the file. Lines that do not parse are skipped (not counted
 * live: the next rewrite drops them). */
static void replay_line(struct record_store *s, char *line, uint64_t off) {
        _cleanup_json_ json_object *obj = NULL;
        const char *name;

        s->n_lines++;
        if (json_parse_strict(line, strlen(line), &obj) < 0)
                return;
        if (json_get_string(obj, "remove", &name) >= 0) {
                if (name_is_valid(name))
                        drop(s, name);
                return;
        }
        if (json_get_string(obj, "userName", &name) < 0 || !name_is_valid(name))
                return;
        uint32_t uid, gid;
        if (parse_set_line(name, line, &uid, &gid) >= 0)
                (void) set_entry(s, name, line, off, uid, gid);
}

/* Appends line (its offset into *ret_off). */
static int append(struct record_store *s, const char *line, uint64_t *ret_off) {
        size_t len = strlen(line);
        _cleanup_(erase_and_freep) char *buf = malloc(len + 2);
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        memcpy(buf, line, len);
        buf[len] = '\n';
        buf[len + 1] = '\0';
        n = write(s->fd, buf, len + 1);
        if (n == (ssize_t) (len + 1)) {
                *ret_off = s->size;
                s->size += len + 1;
                s->n_lines++;
                return 0;
        }
        /* A short write leaves a torn line: cut it so the next line starts clean. */
        int r = n < 0 ? negative_errno() : -ENOSPC;
        if (n > 0)
                (void) ftruncate(s->fd, (off_t) s->size);
        return r;
}

/* Rewrites the file with the live entries only (read back from the old file), and points the
 * entries at their new places once the new file is in. */
static int rewrite(struct record_store *s) {
        size_t size = 0, off = 0, k = 0;
        int r, fd;

        for (size_t i = 0; i < s->n_buckets; i++)
                for (struct store_entry *e = s->by_name[i]; e; e = e->next_name)
                        size += e->len + 1;
        _cleanup_(erase_and_freep) char *buf = malloc(size + 1);
        _cleanup_free_ uint64_t *offs = malloc((s->n_live + 1) * sizeof(uint64_t));
        if (!buf || !offs)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_buckets; i++)
                for (struct store_entry *e = s->by_name[i]; e; e = e->next_name) {
                        r = pread_line(s, e, buf + off);
                        if (r < 0)
                                return r;
                        buf[off + e->len] = '\n';
                        offs[k++] = off;
                        off += e->len + 1;
                }
        buf[off] = '\0';
        r = atomic_write_at(s->dir_fd, RECORD_STORE_FILE, buf, off, 0600);
        if (r < 0)
                return r;
        /* Opened before the places change: should it fail, the entries keep the old file's
         * places, which the old fd still reads. */
        fd = openat(s->dir_fd, RECORD_STORE_FILE, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return negative_errno();
        /* The new file is in: the entries' places are its places from here on. */
        k = 0;
        for (size_t i = 0; i < s->n_buckets; i++)
                for (struct store_entry *e = s->by_name[i]; e; e = e->next_name)
                        e->off = offs[k++];
        s->size = off;
        s->n_lines = s->n_live;
        closep(&s->fd);
        s->fd = fd;
        s->rb->valid = false; /* offsets of the old file */
        return 0;
}

static int read_all(int fd, char **ret, size_t *ret_size) {
        size_t size = 0, cap = 64 * 1024;
        char *buf = malloc(cap + 1);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (size == cap) {
                        char *nb;
                        if (cap >= RECORD_STORE_FILE_MAX || !(nb = realloc(buf, cap * 2 + 1))) {
                                erase_and_free(buf);
                                return cap >= RECORD_STORE_FILE_MAX ? -EFBIG : -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = read(fd, buf + size, cap - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        erase_and_free(buf);
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        buf[size] = '\0';
        *ret = buf;
        *ret_size = size;
        return 0;
}

int record_store_open(int dir_fd, struct record_store **ret) {
        _cleanup_(record_store_freep) struct record_store *s = NULL;
        _cleanup_(erase_and_freep) char *buf = NULL;
        size_t size = 0;
        bool torn = false;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dir_fd = dir_fd;
        s->fd = -1;
        s->rb = calloc(1, sizeof(*s->rb));
        if (!s->rb)
                return -ENOMEM;
        s->n_buckets = 256;
        if (alloc_tables(s->n_buckets, &s->by_name, &s->by_uid, &s->by_gid) < 0)
                return -ENOMEM;
        s->fd = openat(dir_fd, RECORD_STORE_FILE, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->fd < 0)
                return negative_errno();
        r = read_all(s->fd, &buf, &size);
        if (r < 0)
                return r;
        s->size = size;
        for (char *p = buf, *nl; p < buf + size; p = nl + 1) {
                nl = memchr(p, '\n', buf + size - p);
                if (!nl) {
                        torn = true; /* the write of this line never returned */
                        break;
                }
                *nl = '\0';
                if ((size_t) (nl - p) <= RECORD_STORE_LINE_MAX && !memchr(p, '\0', nl - p))
                        replay_line(s, p, (uint64_t) (p - buf));
                else
                        s->n_lines++;
        }
        /* A torn tail goes with the rewrite (the live lines are read back from below it). */
        if (torn || s->n_lines != s->n_live) {
                r = rewrite(s);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

struct record_store *record_store_free(struct record_store *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; s->by_name && i < s->n_buckets; i++)
                for (struct store_entry *e = s->by_name[i], *next; e; e = next) {
                        next = e->next_name;
                        entry_free(e);
                }
        free(s->by_name);
        free(s->by_uid);
        free(s->by_gid);
        closep(&s->fd);
        if (s->rb && s->rb->data) {
                explicit_bzero(s->rb->data, s->rb->cap);
                free(s->rb->data);
        }
        free(s->rb);
        free(s);
        return NULL;
}

void record_store_freep(struct record_store **s) {
        record_store_free(*s);
}

/* Room for len bytes and a NUL in rb (its content is lost). */
static int read_buf_reserve(struct read_buf *rb, uint32_t len) {
        rb->valid = false;
        if (rb->cap < (size_t) len + 1) {
                size_t cap = (size_t) len + 1 < 4096 ? 4096 : (size_t) len + 1;
                char *d = malloc(cap);
                if (!d)
                        return -ENOMEM;
                if (rb->data)
                        explicit_bzero(rb->data, rb->cap);
                free(rb->data);
                rb->data = d;
                rb->cap = cap;
        }
        return 0;
}

int record_store_read(const struct record_store *s, const char *name, const char **ret) {
        struct store_entry *e = *name_slot(s, name);
        struct read_buf *rb = s->rb;
        int r;

        if (!e)
                return -ENOENT;
        if (rb->valid && rb->off == e->off && rb->len == e->len) {
                *ret = rb->data;
                return 0;
        }
        r = read_buf_reserve(rb, e->len);
        if (r < 0)
                return r;
        r = pread_line(s, e, rb->data);
        if (r < 0)
                return r;
        *rb = (struct read_buf) { rb->data, rb->cap, e->off, e->len, true };
        *ret = rb->data;
        return 0;
}

const char *record_store_get(const struct record_store *s, const char *name) {
        const char *line;
        return record_store_read(s, name, &line) < 0 ? NULL : line;
}

bool record_store_has(const struct record_store *s, const char *name) {
        return *name_slot(s, name);
}

int record_store_equals(const struct record_store *s, const char *name, const char *line) {
        struct store_entry *e = *name_slot(s, name);
        const char *have;
        int r;

        if (!e || e->len != strlen(line) || e->hash != hash_name(line))
                return 0;
        r = record_store_read(s, name, &have);
        if (r < 0)
                return r;
        return streq(have, line);
}

const char *record_store_owner_of(const struct record_store *s, bool group, uint32_t id) {
        struct store_entry *e = find_id(s, group, id);
        return e ? e->name : NULL;
}

size_t record_store_count(const struct record_store *s) {
        return s->n_live;
}

int record_store_foreach(const struct record_store *s, int (*cb)(const char *name, const char *line, void *userdata),
                         void *userdata) {
        /* Every line is erased after its call: the privileged sections hold password hashes. */
        char *buf = malloc(RECORD_STORE_LINE_MAX + 1);
        int r = 0;
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_buckets && r >= 0; i++)
                for (struct store_entry *e = s->by_name[i]; e && r >= 0; e = e->next_name) {
                        r = pread_line(s, e, buf);
                        if (r >= 0)
                                r = cb(e->name, buf, userdata);
                        explicit_bzero(buf, e->len);
                }
        free(buf);
        return r < 0 ? r : 0;
}

/* Appends a set line whose IDs are known, and indexes it. */
static int put_line(struct record_store *s, const char *name, const char *line, uint32_t uid, uint32_t gid) {
        uint64_t off;
        int r;

        r = append(s, line, &off);
        if (r < 0)
                return r;
        r = set_entry(s, name, line, off, uid, gid);
        if (r < 0)
                return r;
        size_t len = strlen(line);
        if (read_buf_reserve(s->rb, (uint32_t) len) == 0) {
                memcpy(s->rb->data, line, len + 1);
                *s->rb = (struct read_buf) { s->rb->data, s->rb->cap, off, (uint32_t) len, true };
        }
        if (s->n_lines > 2 * s->n_live + 256)
                (void) rewrite(s);
        return 0;
}

static bool line_fits(const char *name, const char *line) {
        return name_is_valid(name) && strlen(line) <= RECORD_STORE_LINE_MAX && !strchr(line, '\n');
}

int record_store_put(struct record_store *s, const char *name, const char *line) {
        uint32_t uid, gid;
        int r;

        if (!line_fits(name, line))
                return -EBADMSG;
        r = parse_set_line(name, line, &uid, &gid);
        if (r < 0)
                return r;
        return put_line(s, name, line, uid, gid);
}

int record_store_put_joined(struct record_store *s, const char *name, const char *line, uint32_t uid, uint32_t gid) {
        if (!line_fits(name, line))
                return -EBADMSG;
        return put_line(s, name, line, uid, gid);
}

int record_store_remove(struct record_store *s, const char *name) {
        _cleanup_json_ json_object *obj = NULL;
        const char *text;
        int r;

        if (!name_is_valid(name))
                return -EINVAL;
        if (!record_store_has(s, name))
                return 0;
        obj = json_object_new_object();
        if (!obj || json_object_object_add(obj, "remove", json_object_new_string(name)) < 0 || !(text = json_to_compact(obj)))
                return -ENOMEM;
        uint64_t off;
        r = append(s, text, &off);
        if (r < 0)
                return r;
        drop(s, name);
        if (s->n_lines > 2 * s->n_live + 256)
                (void) rewrite(s);
        return 0;
}
