/* nss-view.c: users and groups enumerated once (see nss-view.h).
 *
 * Three tables (users, groups, shadow), each entry chained by name and by ID. With
 * NSS_VIEW_PASSWD_ENTRIES a user's entry also keeps its whole passwd entry, and the shadow
 * table (NSS_VIEW_SHADOW, only the names asked for) each shadow entry, packed into one block
 * (struct, then its strings) the way nss-util.c hands them out; the shadow blocks are wiped
 * before they are freed. A chain is walked to its end and the entry added first wins, as the
 * first line of a file wins for getpwnam(). The modification times of /etc/passwd and
 * /etc/group at enumeration are kept for nss_view_stale(). */
#include "nss-view.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <shadow.h>
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
        void *entry;            /* the packed passwd or shadow entry, NULL: not kept */
        size_t entry_size;
        struct view_entry *next_name, *next_id;
};

struct view_table {
        struct view_entry *by_name[VIEW_BUCKETS], *by_id[VIEW_BUCKETS];
        size_t n;
};

struct nss_view {
        struct view_table users, groups, shadow;
        struct timespec passwd_mtime, group_mtime;
        bool has_entries;       /* NSS_VIEW_PASSWD_ENTRIES */
        bool has_shadow;        /* NSS_VIEW_SHADOW, and nsswitch.conf's shadow line enumerates */
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

/* Adds name and id; the entry (may be NULL) is taken over, also on failure. */
static int table_add_entry(struct view_table *t, const char *name, uint32_t id, void *entry, size_t entry_size) {
        struct view_entry *e;
        if (t->n >= VIEW_ENTRIES_MAX) {
                free(entry);
                return -E2BIG;
        }
        e = calloc(1, sizeof(*e));
        if (!e || !(e->name = strdup(name))) {
                free(e);
                free(entry);
                return -ENOMEM;
        }
        e->id = id;
        e->entry = entry;
        e->entry_size = entry_size;
        e->next_name = t->by_name[hash_name(name)];
        t->by_name[hash_name(name)] = e;
        e->next_id = t->by_id[hash_id(id)];
        t->by_id[hash_id(id)] = e;
        t->n++;
        return 0;
}

static int table_add(struct view_table *t, const char *name, uint32_t id) {
        return table_add_entry(t, name, id, NULL, 0);
}

/* The entry added first under name (or id), NULL when there is none. */
static const struct view_entry *table_by_name(const struct view_table *t, const char *name) {
        const struct view_entry *found = NULL;
        for (const struct view_entry *e = t->by_name[hash_name(name)]; e; e = e->next_name)
                if (streq(e->name, name))
                        found = e;
        return found;
}

static const struct view_entry *table_by_id(const struct view_table *t, uint32_t id) {
        const struct view_entry *found = NULL;
        for (const struct view_entry *e = t->by_id[hash_id(id)]; e; e = e->next_id)
                if (e->id == id)
                        found = e;
        return found;
}

static void table_done(struct view_table *t) {
        for (size_t i = 0; i < VIEW_BUCKETS; i++)
                for (struct view_entry *e = t->by_name[i], *next; e; e = next) {
                        next = e->next_name;
                        if (e->entry) {
                                explicit_bzero(e->entry, e->entry_size);
                                free(e->entry);
                        }
                        free(e->name);
                        free(e);
                }
}

/* ---- packing an entry into one block: the struct, then its strings ---- */

struct packer {
        char *block, *next;
};

static size_t str_size(const char *s) {
        return s ? strlen(s) + 1 : 0;
}

static char *pack_str(struct packer *p, const char *s) {
        char *d = p->next;
        size_t n = str_size(s);
        if (!s)
                return NULL;
        memcpy(d, s, n);
        p->next += n;
        return d;
}

static int pack_passwd(const struct passwd *pw, void **ret, size_t *ret_size) {
        size_t size = sizeof(struct passwd) + str_size(pw->pw_name) + str_size(pw->pw_passwd) +
                      str_size(pw->pw_gecos) + str_size(pw->pw_dir) + str_size(pw->pw_shell);
        struct packer p = { .block = malloc(size) };
        struct passwd *d = (struct passwd *) p.block;
        if (!d)
                return -ENOMEM;
        p.next = p.block + sizeof(*d);
        *d = *pw;
        d->pw_name = pack_str(&p, pw->pw_name);
        d->pw_passwd = pack_str(&p, pw->pw_passwd);
        d->pw_gecos = pack_str(&p, pw->pw_gecos);
        d->pw_dir = pack_str(&p, pw->pw_dir);
        d->pw_shell = pack_str(&p, pw->pw_shell);
        *ret = d;
        *ret_size = size;
        return 0;
}

static int pack_spwd(const struct spwd *sp, void **ret, size_t *ret_size) {
        size_t size = sizeof(struct spwd) + str_size(sp->sp_namp) + str_size(sp->sp_pwdp);
        struct packer p = { .block = malloc(size) };
        struct spwd *d = (struct spwd *) p.block;
        if (!d)
                return -ENOMEM;
        p.next = p.block + sizeof(*d);
        *d = *sp;
        d->sp_namp = pack_str(&p, sp->sp_namp);
        d->sp_pwdp = pack_str(&p, sp->sp_pwdp);
        *ret = d;
        *ret_size = size;
        return 0;
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

/* The enumeration loops: getpwent_r and friends through one buffer. An entry over 16 KiB fails
 * the view (ERANGE): not worth a retry loop, the caller asks NSS one by one then. */
#define VIEW_BUFFER_SIZE 16384u

static int enumerate_users(struct nss_view *v, unsigned flags, char *buf) {
        int r = 0;

        setpwent();
        for (;;) {
                struct passwd pw, *res = NULL;
                void *entry = NULL;
                size_t size = 0;
                int k = getpwent_r(&pw, buf, VIEW_BUFFER_SIZE, &res);
                if (k == ENOENT || (k == 0 && !res))
                        break;
                if (k != 0) {
                        r = -k;
                        break;
                }
                if ((flags & NSS_VIEW_PASSWD_ENTRIES) && (r = pack_passwd(res, &entry, &size)) < 0)
                        break;
                if ((r = table_add_entry(&v->users, res->pw_name, res->pw_uid, entry, size)) < 0)
                        break;
        }
        endpwent();
        return r;
}

static int enumerate_groups(struct nss_view *v, char *buf) {
        int r = 0;

        setgrent();
        for (;;) {
                struct group gr, *res = NULL;
                int k = getgrent_r(&gr, buf, VIEW_BUFFER_SIZE, &res);
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
        return r;
}

/* Only the entries of the names asked for are kept: the view holds no hash it was not asked for. */
static int enumerate_shadow(struct nss_view *v, char *const *names, size_t n_names, char *buf) {
        struct view_table *wanted;
        int r = 0;

        wanted = calloc(1, sizeof(*wanted));
        if (!wanted)
                return -ENOMEM;
        for (size_t i = 0; i < n_names && r >= 0; i++)
                r = table_add(wanted, names[i], 0);
        if (r >= 0) {
                setspent();
                for (;;) {
                        struct spwd sp, *res = NULL;
                        void *entry = NULL;
                        size_t size = 0;
                        int k = getspent_r(&sp, buf, VIEW_BUFFER_SIZE, &res);
                        if (k == ENOENT || (k == 0 && !res))
                                break;
                        if (k != 0) {
                                r = -k;
                                break;
                        }
                        if (!res->sp_namp || !table_by_name(wanted, res->sp_namp))
                                continue;
                        if ((r = pack_spwd(res, &entry, &size)) < 0 ||
                            (r = table_add_entry(&v->shadow, res->sp_namp, 0, entry, size)) < 0)
                                break;
                }
                endspent();
                explicit_bzero(buf, VIEW_BUFFER_SIZE);
        }
        table_done(wanted);
        free(wanted);
        return r;
}

int nss_view_new_full(const char *nsswitch, unsigned flags, char *const *shadow_names, size_t n_shadow_names,
                      struct nss_view **ret) {
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

        _cleanup_free_ char *buf = malloc(VIEW_BUFFER_SIZE);
        if (!buf) {
                nss_view_free(v);
                return -ENOMEM;
        }
        r = enumerate_users(v, flags, buf);
        if (r >= 0)
                r = enumerate_groups(v, buf);
        /* The shadow line decides only about shadow: without it, those look-ups go to NSS. */
        if (r >= 0 && (flags & NSS_VIEW_SHADOW) && only_enumerating_sources(nsswitch, "shadow") > 0) {
                r = enumerate_shadow(v, shadow_names, n_shadow_names, buf);
                v->has_shadow = r >= 0;
        }
        v->has_entries = flags & NSS_VIEW_PASSWD_ENTRIES;
        if (r < 0) {
                nss_view_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int nss_view_new(const char *nsswitch, struct nss_view **ret) {
        return nss_view_new_full(nsswitch, 0, NULL, 0, ret);
}

struct nss_view *nss_view_free(struct nss_view *v) {
        if (!v)
                return NULL;
        table_done(&v->users);
        table_done(&v->groups);
        table_done(&v->shadow);
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
        const struct view_entry *e = table_by_name(group ? &v->groups : &v->users, name);
        if (!e)
                return 0;
        if (ret_id)
                *ret_id = e->id;
        return 1;
}

int nss_view_by_id(const struct nss_view *v, bool group, uint32_t id, const char **ret_name) {
        const struct view_entry *e = table_by_id(group ? &v->groups : &v->users, id);
        if (!e)
                return 0;
        if (ret_name)
                *ret_name = e->name;
        return 1;
}

size_t nss_view_count(const struct nss_view *v, bool group) {
        return (group ? &v->groups : &v->users)->n;
}

const struct passwd *nss_view_getpwnam(const struct nss_view *v, const char *name) {
        const struct view_entry *e = v->has_entries ? table_by_name(&v->users, name) : NULL;
        return e ? e->entry : NULL;
}

const struct spwd *nss_view_getspnam(const struct nss_view *v, const char *name) {
        const struct view_entry *e = v->has_shadow ? table_by_name(&v->shadow, name) : NULL;
        return e ? e->entry : NULL;
}
