/* nss-view.c: the guest's users and groups enumerated once (see nss-view.h).
 *
 * Two tables (users, groups), each entry chained by name and by ID. The modification times of
 * /etc/passwd and /etc/group at enumeration are kept for nss_view_stale(). */
#include "nss-view.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "macro.h"

#define VIEW_BUCKETS 4096u /* power of two */
#define VIEW_ENTRIES_MAX 1000000u

struct view_entry {
        char *name;
        uint32_t id;
        struct view_entry *next_name, *next_id;
};

struct view_table {
        struct view_entry *by_name[VIEW_BUCKETS], *by_id[VIEW_BUCKETS];
        size_t n;
};

struct nss_view {
        struct view_table users, groups;
        struct timespec passwd_mtime, group_mtime;
};

static uint32_t hash_name(const char *s) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 16777619u;
        return h & (VIEW_BUCKETS - 1);
}

static uint32_t hash_id(uint32_t id) {
        return (id * 2654435761u) >> 20 & (VIEW_BUCKETS - 1);
}

static int table_add(struct view_table *t, const char *name, uint32_t id) {
        struct view_entry *e;
        if (t->n >= VIEW_ENTRIES_MAX)
                return -E2BIG;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->name = strdup(name))) {
                free(e);
                return -ENOMEM;
        }
        e->id = id;
        e->next_name = t->by_name[hash_name(name)];
        t->by_name[hash_name(name)] = e;
        e->next_id = t->by_id[hash_id(id)];
        t->by_id[hash_id(id)] = e;
        t->n++;
        return 0;
}

static void table_done(struct view_table *t) {
        for (size_t i = 0; i < VIEW_BUCKETS; i++)
                for (struct view_entry *e = t->by_name[i], *next; e; e = next) {
                        next = e->next_name;
                        free(e->name);
                        free(e);
                }
}

/* Whether the nsswitch.conf line for db names only files and systemd (their enumeration is
 * complete). */
static int only_enumerating_sources(const char *nsswitch, const char *db) {
        _cleanup_fclose_ FILE *f = fopen(nsswitch ? nsswitch : "/etc/nsswitch.conf", "re");
        char line[1024];
        size_t len = strlen(db);
        bool seen = false;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *p = line + strspn(line, " \t");
                if (strncmp(p, db, len) != 0 || p[len] != ':')
                        continue;
                seen = true;
                p += len + 1;
                for (char *save = NULL, *w = strtok_r(p, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
                        if (*w == '#')
                                break;
                        if (*w == '[') /* [NOTFOUND=return] and friends: fine either way */
                                continue;
                        if (!streq(w, "files") && !streq(w, "systemd"))
                                return 0;
                }
        }
        return seen;
}

static int mtime_of(const char *path, struct timespec *ret) {
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        *ret = st.st_mtim;
        return 0;
}

int nss_view_new(const char *nsswitch, struct nss_view **ret) {
        struct nss_view *v;
        int r;

        if ((r = only_enumerating_sources(nsswitch, "passwd")) <= 0 ||
            (r = only_enumerating_sources(nsswitch, "group")) <= 0)
                return r < 0 ? r : -EOPNOTSUPP;
        v = calloc(1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        if (mtime_of("/etc/passwd", &v->passwd_mtime) < 0 || mtime_of("/etc/group", &v->group_mtime) < 0) {
                nss_view_free(v);
                return -EOPNOTSUPP;
        }

        size_t bufsize = 16384;
        _cleanup_free_ char *buf = malloc(bufsize);
        if (!buf) {
                nss_view_free(v);
                return -ENOMEM;
        }
        r = 0;
        setpwent();
        for (;;) {
                struct passwd pw, *res = NULL;
                int k = getpwent_r(&pw, buf, bufsize, &res);
                if (k == ENOENT || (k == 0 && !res))
                        break;
                if (k != 0) {
                        r = -k; /* ERANGE included: an entry over 16 KiB is not worth a retry loop */
                        break;
                }
                if ((r = table_add(&v->users, res->pw_name, res->pw_uid)) < 0)
                        break;
        }
        endpwent();
        if (r >= 0) {
                setgrent();
                for (;;) {
                        struct group gr, *res = NULL;
                        int k = getgrent_r(&gr, buf, bufsize, &res);
                        if (k == ENOENT || (k == 0 && !res))
                                break;
                        if (k != 0) {
                                r = -k;
                                break;
                        }
                        if ((r = table_add(&v->groups, res->gr_name, res->gr_gid)) < 0)
                                break;
                }
                endgrent();
        }
        if (r < 0) {
                nss_view_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

struct nss_view *nss_view_free(struct nss_view *v) {
        if (!v)
                return NULL;
        table_done(&v->users);
        table_done(&v->groups);
        free(v);
        return NULL;
}

bool nss_view_stale(const struct nss_view *v) {
        struct timespec p = {}, g = {};
        if (mtime_of("/etc/passwd", &p) < 0 || mtime_of("/etc/group", &g) < 0)
                return true;
        return p.tv_sec != v->passwd_mtime.tv_sec || p.tv_nsec != v->passwd_mtime.tv_nsec ||
               g.tv_sec != v->group_mtime.tv_sec || g.tv_nsec != v->group_mtime.tv_nsec;
}

int nss_view_by_name(const struct nss_view *v, bool group, const char *name, uint32_t *ret_id) {
        const struct view_table *t = group ? &v->groups : &v->users;
        for (struct view_entry *e = t->by_name[hash_name(name)]; e; e = e->next_name)
                if (streq(e->name, name)) {
                        if (ret_id)
                                *ret_id = e->id;
                        return 1;
                }
        return 0;
}

int nss_view_by_id(const struct nss_view *v, bool group, uint32_t id, const char **ret_name) {
        const struct view_table *t = group ? &v->groups : &v->users;
        for (struct view_entry *e = t->by_id[hash_id(id)]; e; e = e->next_id)
                if (e->id == id) {
                        if (ret_name)
                                *ret_name = e->name;
                        return 1;
                }
        return 0;
}

size_t nss_view_count(const struct nss_view *v, bool group) {
        return (group ? &v->groups : &v->users)->n;
}
