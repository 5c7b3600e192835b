/* host-user.c: host account -> minimized user record (see host-user.h): the NSS and shadow
 * side, the policy checks and the rendering. The SSH keys are host-user-keys.c's.
 *
 * A batch (host_user_db_*) answers from one nss-view.h snapshot what it holds and asks NSS
 * about the rest, through the same checks and messages as a single look-up.
 *
 * Every string that goes into the record is checked here the way the agent will check it
 * (valid UTF-8, no control characters, bounded), so a bad GECOS field or a stray line in
 * authorized_keys costs a warning and that one field, not the whole attach. Secrets (the shadow
 * entry, the hash) are wiped before their memory is released. */
#include "host-user.h"
#include "host-user-internal.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <shadow.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "nss-util.h"
#include "nss-view.h"
#include "paths.h"
#include "records.h"


void host_user_warnf(host_user_warn_fn warn, void *userdata, const char *fmt, ...) {
        char text[1024];
        va_list ap;

        if (!warn)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        warn(userdata, text);
}

bool host_user_utf8_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned n, c = *p;
                uint32_t cp;
                if (c < 0x80) {
                        p++;
                        continue;
                }
                if (c >= 0xC2 && c <= 0xDF)
                        n = 1, cp = c & 0x1F;
                else if (c >= 0xE0 && c <= 0xEF)
                        n = 2, cp = c & 0x0F;
                else if (c >= 0xF0 && c <= 0xF4)
                        n = 3, cp = c & 0x07;
                else
                        return false;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xC0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3F);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                    (cp >= 0xD800 && cp <= 0xDFFF))
                        return false;
                p += n + 1;
        }
        return true;
}

/* ---- NSS look-ups (nss-util.c has the ERANGE retry) ---- */

int host_getpwnam(const char *name, struct passwd **ret) {
        return nss_getpwnam(name, ret);
}

/* ---- policy ---- */

int host_uid_min(const char *login_defs, uid_t *ret) {
        _cleanup_fclose_ FILE *f = fopen(login_defs ? login_defs : "/etc/login.defs", "re");
        char line[512];
        uint32_t v = HOST_USER_UID_MIN_DEFAULT;

        if (f)
                while (fgets(line, sizeof(line), f)) {
                        char *p = line, *end;
                        while (*p == ' ' || *p == '\t')
                                p++;
                        if (strncmp(p, "UID_MIN", 7) != 0 || (p[7] != ' ' && p[7] != '\t'))
                                continue;
                        p += 7;
                        while (*p == ' ' || *p == '\t')
                                p++;
                        end = p + strcspn(p, " \t\r\n#");
                        *end = '\0';
                        uint32_t parsed;
                        if (id_parse(p, &parsed) == 0)
                                v = parsed;
                }
        *ret = (uid_t) v;
        return 0;
}


/* What the agent accepts as a text field: UTF-8, no control characters, no ':'. */
static bool text_is_safe(const char *s, size_t max) {
        return records_text_is_safe(s, max) && host_user_utf8_is_valid(s);
}

struct host_user *host_user_free(struct host_user *u) {
        if (!u)
                return NULL;
        free(u->real_name);
        free(u->home);
        free(u->shell);
        free(u);
        return NULL;
}

void host_user_freep(struct host_user **u) {
        host_user_free(*u);
}

/* The passwd entry of name, from the view when it has it, else from NSS (*owned is then the
 * block to free). */
static int lookup_passwd(const struct nss_view *view, const char *name, const struct passwd **ret,
                         struct passwd **owned) {
        const struct passwd *pw = view ? nss_view_getpwnam(view, name) : NULL;
        int r;

        if (!pw) {
                r = host_getpwnam(name, owned);
                if (r < 0)
                        return r;
                pw = *owned;
        }
        *ret = pw;
        return 0;
}

/* The name of group gid, likewise. */
static int lookup_group_name(const struct nss_view *view, gid_t gid, const char **ret, struct group **owned) {
        int r;

        if (view && nss_view_by_id(view, true, gid, ret) > 0)
                return 0;
        r = nss_getgrgid(gid, owned);
        if (r < 0)
                return r;
        *ret = (*owned)->gr_name;
        return 0;
}

static int lookup(const struct nss_view *view, const char *name, const char *login_defs, uid_t uid_min,
                  struct host_user **ret, struct verr *e) {
        _cleanup_free_ struct passwd *owned_pw = NULL;
        _cleanup_free_ struct group *owned_gr = NULL;
        _cleanup_(host_user_freep) struct host_user *u = NULL;
        const struct passwd *pw;
        const char *group_name;
        int r;

        if (!name_is_valid(name))
                return verr_set(e, -EPERM, "'%s' is not a portable user name ([a-z_][a-z0-9_-]*, at most %d characters)",
                                name, VMUSER_NAME_MAX);

        r = lookup_passwd(view, name, &pw, &owned_pw);
        if (r == -ENOENT)
                return verr_set(e, r, "there is no user '%s' on this host", name);
        if (r < 0)
                return verr_set(e, r, "looking up user '%s' failed: %s", name, strerror(-r));

        if (pw->pw_uid == 0)
                return verr_set(e, -EPERM, "'%s' is root (uid 0); root is never shared with a VM", name);
        if (pw->pw_uid < uid_min)
                return verr_set(e, -EPERM, "'%s' is a system user (uid %u is below UID_MIN %u of %s)", name,
                                (unsigned) pw->pw_uid, (unsigned) uid_min, login_defs ? login_defs : "/etc/login.defs");
        if (name_is_reserved(name))
                return verr_set(e, -EPERM, "'%s' is a reserved system account name", name);

        r = lookup_group_name(view, pw->pw_gid, &group_name, &owned_gr);
        if (r == -ENOENT)
                return verr_set(e, -EPERM, "the primary group %u of '%s' does not exist; a private group named '%s' is required",
                                (unsigned) pw->pw_gid, name, name);
        if (r < 0)
                return verr_set(e, r, "looking up group %u failed: %s", (unsigned) pw->pw_gid, strerror(-r));
        if (!streq(group_name, name))
                return verr_set(e, -EPERM,
                                "the primary group of '%s' is '%s' (gid %u), not a private group named '%s'",
                                name, group_name, (unsigned) pw->pw_gid, name);

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        strcpy(u->name, name);
        u->uid = pw->pw_uid;
        u->gid = pw->pw_gid;
        if (pw->pw_gecos && pw->pw_gecos[0] && pw->pw_gecos[0] != ',') {
                u->real_name = strndup(pw->pw_gecos, strcspn(pw->pw_gecos, ","));
                if (!u->real_name)
                        return -ENOMEM;
        }
        u->home = strdup(pw->pw_dir ? pw->pw_dir : "");
        if (!u->home)
                return -ENOMEM;
        if (pw->pw_shell && pw->pw_shell[0]) {
                u->shell = strdup(pw->pw_shell);
                if (!u->shell)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(u);
        return 0;
}

int host_user_lookup(const char *name, const char *login_defs, struct host_user **ret, struct verr *e) {
        uid_t uid_min;

        (void) host_uid_min(login_defs, &uid_min);
        return lookup(NULL, name, login_defs, uid_min, ret, e);
}

/* ---- a batch's look-ups ---- */

int host_user_db_init(struct host_user_db *db, char *const *names, size_t n_names, bool with_shadow,
                      const char *nsswitch, const char *login_defs) {
        *db = (struct host_user_db) { .login_defs = login_defs };
        (void) host_uid_min(login_defs, &db->uid_min);
        if (n_names <= HOST_USER_VIEW_MIN)
                return 0;
        /* No view (nsswitch.conf names other sources, or enumerating failed): NSS one by one. */
        (void) nss_view_new_full(nsswitch, NSS_VIEW_PASSWD_ENTRIES | (with_shadow ? NSS_VIEW_SHADOW : 0), names,
                                 n_names, &db->view);
        return 0;
}

void host_user_db_done(struct host_user_db *db) {
        db->view = nss_view_free(db->view);
}

int host_user_db_lookup(const struct host_user_db *db, const char *name, struct host_user **ret, struct verr *e) {
        return lookup(db->view, name, db->login_defs, db->uid_min, ret, e);
}

/* ---- the password hash ---- */

const char *host_hash_weakness(const char *hash) {
        static const char *const strong[] = { "$y$", "$gy$", "$7$", "$6$", "$2b$", "$2y$", "$2a$" };

        for (size_t i = 0; i < ELEMENTSOF(strong); i++)
                if (strncmp(hash, strong[i], strlen(strong[i])) == 0)
                        return NULL;
        if (strncmp(hash, "$5$", 3) == 0)
                return "sha256-crypt";
        if (strncmp(hash, "$1$", 3) == 0)
                return "md5-crypt";
        if (strncmp(hash, "$sha1$", 6) == 0)
                return "sha1-crypt";
        if (strncmp(hash, "$md5", 4) == 0)
                return "SunMD5";
        if (hash[0] == '_')
                return "BSDi extended DES";
        if (hash[0] != '$' && strlen(hash) == 13)
                return "DES";
        return "an unknown method";
}

static int read_password_hash(const struct host_user *u, const struct nss_view *view, host_user_warn_fn warn,
                              void *userdata, char **ret, struct verr *e) {
        const struct spwd *viewed = view ? nss_view_getspnam(view, u->name) : NULL;
        struct spwd *sp = NULL;
        size_t size = 0;
        const char *hash, *weak;
        int r;

        *ret = NULL;
        r = viewed ? 0 : nss_getspnam(u->name, &sp, &size);
        if (r == -ENOENT || r == -EACCES || r == -EPERM) {
                if (access("/etc/shadow", R_OK) < 0)
                        host_user_warnf(warn, userdata, "the shadow database is not readable (run as root); no password hash "
                                              "is copied for '%s'", u->name);
                else
                        host_user_warnf(warn, userdata, "'%s' has no shadow entry; no password hash is copied", u->name);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "looking up the shadow entry of '%s' failed: %s", u->name, strerror(-r));

        if (viewed)
                hash = viewed->sp_pwdp ? viewed->sp_pwdp : "";
        else
                hash = sp->sp_pwdp ? sp->sp_pwdp : "";
        if (hash[0] == '\0')
                host_user_warnf(warn, userdata, "'%s' has an empty password on the host; the guest account gets no password",
                      u->name);
        else if (hash[0] == '!' || hash[0] == '*')
                host_user_warnf(warn, userdata, "the password of '%s' is locked on the host; none is copied", u->name);
        else if (!records_hash_is_safe(hash))
                host_user_warnf(warn, userdata, "the password hash of '%s' contains unexpected characters; it is not copied",
                      u->name);
        else {
                weak = host_hash_weakness(hash);
                if (weak)
                        host_user_warnf(warn, userdata, "the password hash of '%s' uses %s, weaker than yescrypt or sha512-crypt; "
                                              "set a new password on the host (ENCRYPT_METHOD YESCRYPT)", u->name, weak);
                *ret = strdup(hash);
                if (!*ret)
                        r = -ENOMEM;
        }
        if (sp) {
                explicit_bzero(sp, size);
                free(sp);
        }
        return r;
}

/* ---- the record ---- */

static int add_string(json_object *obj, const char *key, const char *value) {
        json_object *s = json_object_new_string(value);
        if (!s || json_object_object_add(obj, key, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int add_string_array(json_object *obj, const char *key, char *const *values, size_t n) {
        json_object *a = json_object_new_array();
        if (!a || json_object_object_add(obj, key, a) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (json_object_array_add(a, json_object_new_string(values[i])) < 0)
                        return -ENOMEM;
        return 0;
}

static int build_privileged(const struct host_user *u, const struct host_user_options *o, json_object *record,
                            struct verr *e) {
        _cleanup_(host_user_keys_donep) struct host_user_keys keys = {};
        _cleanup_erase_free_ char *hash = NULL;
        json_object *priv;
        int r;

        if (!o->no_password) {
                r = read_password_hash(u, o->db ? o->db->view : NULL, o->warn, o->warn_userdata, &hash, e);
                if (r < 0)
                        return r;
        }
        if (!o->no_authorized_keys) {
                r = host_user_read_authorized_keys(u, &keys, o->warn, o->warn_userdata, e);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; o->extra_keys && i < o->extra_keys->n; i++) {
                r = host_user_keys_add(&keys, o->extra_keys->keys[i]);
                if (r < 0)
                        return r;
        }
        if (keys.n > RECORDS_MAX_SSH_KEYS)
                return verr_set(e, -E2BIG, "'%s' would get %zu SSH keys; the agent accepts at most %d", u->name, keys.n,
                                RECORDS_MAX_SSH_KEYS);
        if (!hash && keys.n == 0)
                return 0;

        priv = json_object_new_object();
        if (!priv || json_object_object_add(record, "privileged", priv) < 0) {
                json_object_put(priv);
                return -ENOMEM;
        }
        if (hash && add_string_array(priv, "hashedPassword", &hash, 1) < 0)
                return -ENOMEM;
        if (keys.n > 0 && add_string_array(priv, "sshAuthorizedKeys", keys.keys, keys.n) < 0)
                return -ENOMEM;
        return 0;
}

int host_user_build_record(const struct host_user *u, const struct host_user_options *o, json_object **ret,
                           struct verr *e) {
        _cleanup_json_ json_object *record = json_object_new_object();
        char home[HOME_PATH_MAX + 1];
        const char *shell = NULL;
        size_t n_groups = 0;
        int r;

        if (!record)
                return -ENOMEM;
        if (add_string(record, "userName", u->name) < 0)
                return -ENOMEM;

        if (u->real_name) {
                if (text_is_safe(u->real_name, RECORDS_MAX_TEXT_LEN)) {
                        if (add_string(record, "realName", u->real_name) < 0)
                                return -ENOMEM;
                } else
                        host_user_warnf(o->warn, o->warn_userdata, "the GECOS name of '%s' is not valid UTF-8, contains control "
                                                         "characters or is too long; no realName is sent", u->name);
        }

        if (o->has_uid) {
                if (json_object_object_add(record, "uid", json_object_new_int64(o->uid)) < 0 ||
                    json_object_object_add(record, "gid", json_object_new_int64(o->uid)) < 0)
                        return -ENOMEM;
        }

        if (o->home_directory)
                snprintf(home, sizeof(home), "%s", o->home_directory);
        else
                snprintf(home, sizeof(home), VMUSER_DEFAULT_HOME_ROOT "/%s", u->name);
        if (!home_path_is_valid(home))
                return verr_set(e, -EINVAL, "home directory '%s' is not a normalized absolute path under /home, "
                                            "/run/vmhost, /var/home, /srv or /mnt", home);
        if (add_string(record, "homeDirectory", home) < 0)
                return -ENOMEM;

        switch (o->shell) {
        case HOST_USER_SHELL_FROM_HOST:
                shell = u->shell;
                if (!shell)
                        host_user_warnf(o->warn, o->warn_userdata, "'%s' has no login shell on the host; the guest's default is used",
                              u->name);
                break;
        case HOST_USER_SHELL_PATH:
                shell = o->shell_path;
                break;
        case HOST_USER_SHELL_GUEST_DEFAULT:
        default:
                break;
        }
        if (shell) {
                if (!path_is_normalized_absolute(shell) || !text_is_safe(shell, HOME_PATH_MAX))
                        return verr_set(e, -EINVAL, "shell '%s' of '%s' is not a normalized absolute path", shell, u->name);
                if (add_string(record, "shell", shell) < 0)
                        return -ENOMEM;
        }

        if (add_string(record, "disposition", "regular") < 0 || add_string(record, "service", HOST_USER_SERVICE) < 0)
                return -ENOMEM;

        while (o->groups && o->groups[n_groups])
                n_groups++;
        if (n_groups > RECORDS_MAX_MEMBER_OF)
                return verr_set(e, -E2BIG, "%zu groups given; the agent accepts at most %d", n_groups,
                                RECORDS_MAX_MEMBER_OF);
        for (size_t i = 0; i < n_groups; i++)
                if (!name_is_valid(o->groups[i]))
                        return verr_set(e, -EINVAL, "group name '%s' is not valid", o->groups[i]);
        if (n_groups > 0 && add_string_array(record, "memberOf", o->groups, n_groups) < 0)
                return -ENOMEM;

        r = build_privileged(u, o, record, e);
        if (r < 0) {
                host_user_record_erase(record);
                return r;
        }

        *ret = TAKE_PTR(record);
        return 0;
}

void host_user_record_erase(json_object *record) {
        json_object *priv, *hashes;

        if (!record || json_get_object(record, "privileged", &priv) < 0 ||
            json_get_array(priv, "hashedPassword", &hashes) < 0)
                return;
        for (size_t i = 0; i < json_object_array_length(hashes); i++) {
                json_object *h = json_object_array_get_idx(hashes, i);
                if (json_object_is_type(h, json_type_string))
                        explicit_bzero((char *) json_object_get_string(h), (size_t) json_object_get_string_len(h));
        }
}
