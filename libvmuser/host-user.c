/* host-user.c: host account -> minimized user record (see host-user.h).
 *
 * Every string that goes into the record is checked here the way the agent will check it
 * (valid UTF-8, no control characters, bounded), so a bad GECOS field or a stray line in
 * authorized_keys costs a warning and that one field, not the whole attach. Secrets (the shadow
 * entry, the hash) are wiped before their memory is released. */
#include "host-user.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <shadow.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "nss-util.h"
#include "paths.h"
#include "records.h"
#include "ssh-key.h"

static void warnf(host_user_warn_fn warn, void *userdata, const char *fmt, ...) _printf_(3, 4);
static void warnf(host_user_warn_fn warn, void *userdata, const char *fmt, ...) {
        char text[1024];
        va_list ap;

        if (!warn)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        warn(userdata, text);
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

static bool utf8_is_valid(const char *s) {
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

/* What the agent accepts as a text field: UTF-8, no control characters, no ':'. */
static bool text_is_safe(const char *s, size_t max) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++, n++)
                if (*p < 0x20 || *p == 0x7f || *p == ':')
                        return false;
        return n <= max && utf8_is_valid(s);
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

int host_user_lookup(const char *name, const char *login_defs, struct host_user **ret, struct verr *e) {
        _cleanup_free_ struct passwd *pw = NULL;
        _cleanup_free_ struct group *gr = NULL;
        _cleanup_(host_user_freep) struct host_user *u = NULL;
        uid_t uid_min;
        int r;

        if (!name_is_valid(name))
                return verr_set(e, -EPERM, "'%s' is not a portable user name ([a-z_][a-z0-9_-]*, at most %d characters)",
                                name, VMUSER_NAME_MAX);

        r = host_getpwnam(name, &pw);
        if (r == -ENOENT)
                return verr_set(e, r, "there is no user '%s' on this host", name);
        if (r < 0)
                return verr_set(e, r, "looking up user '%s' failed: %s", name, strerror(-r));

        if (pw->pw_uid == 0)
                return verr_set(e, -EPERM, "'%s' is root (uid 0); root is never shared with a VM", name);
        (void) host_uid_min(login_defs, &uid_min);
        if (pw->pw_uid < uid_min)
                return verr_set(e, -EPERM, "'%s' is a system user (uid %u is below UID_MIN %u of %s)", name,
                                (unsigned) pw->pw_uid, (unsigned) uid_min, login_defs ? login_defs : "/etc/login.defs");
        if (name_is_reserved(name))
                return verr_set(e, -EPERM, "'%s' is a reserved system account name", name);

        r = nss_getgrgid(pw->pw_gid, &gr);
        if (r == -ENOENT)
                return verr_set(e, -EPERM, "the primary group %u of '%s' does not exist; a private group named '%s' is required",
                                (unsigned) pw->pw_gid, name, name);
        if (r < 0)
                return verr_set(e, r, "looking up group %u failed: %s", (unsigned) pw->pw_gid, strerror(-r));
        if (!streq(gr->gr_name, name))
                return verr_set(e, -EPERM,
                                "the primary group of '%s' is '%s' (gid %u), not a private group named '%s'",
                                name, gr->gr_name, (unsigned) pw->pw_gid, name);

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

/* ---- SSH keys ---- */

void host_user_keys_done(struct host_user_keys *k) {
        for (size_t i = 0; i < k->n; i++)
                free(k->keys[i]);
        free(k->keys);
        *k = (struct host_user_keys) {};
}

static void host_user_keys_donep(struct host_user_keys *k) {
        host_user_keys_done(k);
}

static int keys_add(struct host_user_keys *k, const char *key) {
        for (size_t i = 0; i < k->n; i++)
                if (streq(k->keys[i], key))
                        return 0;
        char **v = realloc(k->keys, (k->n + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        k->keys = v;
        k->keys[k->n] = strdup(key);
        if (!k->keys[k->n])
                return -ENOMEM;
        k->n++;
        return 1;
}

/* Splits authorized_keys text into key lines: comments and blank lines go, tabs become spaces.
 * Every other line must parse as an OpenSSH public key (ssh-key.c) and be one the agent accepts
 * (no control characters, UTF-8, bounded). With strict (a file the admin named), a bad line fails
 * the whole file; otherwise (the user's authorized_keys) it is skipped with a warning. A private
 * key is named as such, and its armoured body is skipped as one piece. */
static int keys_add_text(struct host_user_keys *k, char *text, size_t len, const char *origin, bool strict,
                         host_user_warn_fn warn, void *userdata, struct verr *e) {
        size_t line_no = 0, private_from = 0;
        char *p = text, *end = text + len;

        while (p < end) {
                char *nl = memchr(p, '\n', (size_t) (end - p));
                char *line = p, *stop = nl ? nl : end;
                const char *reason = NULL;
                bool bad = false;
                int r;

                p = nl ? nl + 1 : end;
                line_no++;
                while (stop > line && (stop[-1] == '\r' || stop[-1] == ' ' || stop[-1] == '\t'))
                        stop--;
                while (line < stop && (*line == ' ' || *line == '\t'))
                        line++;
                if (private_from > 0) {
                        /* Inside a private key's armour: skip up to its END line. */
                        if (stop - line >= 9 && strncmp(line, "-----END ", 9) == 0)
                                private_from = 0;
                        continue;
                }
                if (line == stop || *line == '#')
                        continue;
                for (char *q = line; q < stop; q++) {
                        if (*q == '\t')
                                *q = ' ';
                        else if ((unsigned char) *q < 0x20 || *q == 0x7f)
                                bad = true;
                }
                char saved = *stop;
                *stop = '\0';
                if ((size_t) (stop - line) > RECORDS_MAX_SSH_KEY_LEN)
                        reason = "longer than the agent accepts";
                else if (bad || !utf8_is_valid(line))
                        reason = "control characters or invalid UTF-8";
                else {
                        r = ssh_key_parse(line, NULL, &reason);
                        if (r == -ENOMEM) {
                                *stop = saved;
                                return r;
                        }
                        if (r == SSH_KEY_PRIVATE) {
                                *stop = saved;
                                if (strict)
                                        return verr_set(e, -EINVAL, "%s, line %zu: this is a private key; name the "
                                                                    "public key (the .pub file) instead", origin, line_no);
                                warnf(warn, userdata, "%s, line %zu: a private key; skipped with its body", origin,
                                      line_no);
                                private_from = line_no;
                                continue;
                        }
                        if (r == SSH_KEY_VALID)
                                reason = NULL;
                }
                if (reason) {
                        *stop = saved;
                        if (strict)
                                return verr_set(e, -EINVAL, "%s, line %zu: not an OpenSSH public key: %s", origin,
                                                line_no, reason);
                        warnf(warn, userdata, "%s, line %zu: not an OpenSSH public key: %s; skipped", origin, line_no,
                              reason);
                        continue;
                }
                r = keys_add(k, line);
                *stop = saved;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads all of fd, refusing more than max bytes. */
static int read_bounded(int fd, size_t max, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = malloc(max + 1);
        size_t n = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, max + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max)
                        return -EFBIG;
        }
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

static bool owner_allowed(uid_t uid, const uid_t *owners, size_t n_owners) {
        if (uid == 0)
                return true;
        for (size_t i = 0; i < n_owners; i++)
                if (owners[i] == uid)
                        return true;
        return false;
}

/* sshd's StrictModes rules for one step of the path: owned by root or an allowed owner, not
 * writable by group or others (no exception for sticky directories, as in sshd). */
static int check_strict_modes(int fd, const char *what, const char *shown, const char *path, const uid_t *owners,
                              size_t n_owners, struct verr *e) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return verr_set(e, negative_errno(), "cannot stat %s '%s' of SSH key file '%s': %m", what, shown, path);
        if (!owner_allowed(st.st_uid, owners, n_owners))
                return verr_set(e, -EPERM, "SSH key file '%s': %s '%s' is owned by uid %u, not by root or the user",
                                path, what, shown, (unsigned) st.st_uid);
        if (st.st_mode & 022)
                return verr_set(e, -EPERM, "SSH key file '%s': %s '%s' is writable by group or others (mode %04o)",
                                path, what, shown, (unsigned) (st.st_mode & 07777));
        return 0;
}

/* Opens an admin-named key file without following a symlink anywhere on its path: from "/",
 * one component at a time, each directory and the file checked as sshd checks authorized_keys
 * (a user who controls any step could otherwise swap in another file's lines). */
static int open_key_file(const char *path, const uid_t *owners, size_t n_owners, int *ret_fd, struct verr *e) {
        _cleanup_free_ char *abs = NULL;
        _cleanup_close_ int dir_fd = -1;
        char *save = NULL, *comp, *next;
        int r;

        if (path[0] == '/')
                abs = strdup(path);
        else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd)
                        return verr_set(e, negative_errno(), "cannot resolve SSH key file '%s': %m", path);
                if (asprintf(&abs, "%s/%s", cwd, path) < 0)
                        abs = NULL;
        }
        if (!abs)
                return -ENOMEM;
        _cleanup_free_ char *walk = strdup(abs);
        if (!walk)
                return -ENOMEM;

        dir_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return verr_set(e, negative_errno(), "cannot open '/': %m");
        r = check_strict_modes(dir_fd, "directory", "/", path, owners, n_owners, e);
        if (r < 0)
                return r;

        comp = strtok_r(walk, "/", &save);
        if (!comp)
                return verr_set(e, -EISDIR, "SSH key file '%s' is a directory", path);
        for (; comp; comp = next) {
                next = strtok_r(NULL, "/", &save);
                size_t shown_len = (size_t) (comp - walk) + strlen(comp);
                char shown[PATH_MAX];
                snprintf(shown, sizeof(shown), "%.*s", (int) shown_len, abs);
                if (streq(comp, ".."))
                        return verr_set(e, -EINVAL, "SSH key file '%s': name it without '..'", path);
                if (streq(comp, "."))
                        continue;

                int flags = next ? O_PATH | O_DIRECTORY : O_RDONLY | O_NOCTTY | O_NONBLOCK;
                int fd = openat(dir_fd, comp, flags | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        r = negative_errno();
                        struct stat st;
                        if ((r == -ELOOP || r == -ENOTDIR) && fstatat(dir_fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISLNK(st.st_mode))
                                return verr_set(e, -ELOOP, "SSH key file '%s': '%s' is a symlink; name the real "
                                                           "path (symlinks are not followed)", path, shown);
                        return verr_set(e, r, "cannot open SSH key file '%s': %s: %s", path, shown, strerror(-r));
                }
                closep(&dir_fd);
                dir_fd = fd;
                r = check_strict_modes(dir_fd, next ? "directory" : "file", shown, path, owners, n_owners, e);
                if (r < 0)
                        return r;
        }
        *ret_fd = TAKE_FD(dir_fd);
        return 0;
}

int host_user_keys_add_file(struct host_user_keys *k, const char *path, const uid_t *owners, size_t n_owners,
                            host_user_warn_fn warn, void *userdata, struct verr *e) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len;
        int r;

        r = open_key_file(path, owners, n_owners, &fd, e);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return verr_set(e, negative_errno(), "cannot stat SSH key file '%s': %m", path);
        if (!S_ISREG(st.st_mode))
                return verr_set(e, -EBADFD, "SSH key file '%s' is not a regular file", path);
        r = read_bounded(fd, HOST_USER_KEY_FILE_MAX, &text, &len);
        if (r == -EFBIG)
                return verr_set(e, r, "SSH key file '%s' is larger than %u bytes", path, HOST_USER_KEY_FILE_MAX);
        if (r < 0)
                return verr_set(e, r, "cannot read SSH key file '%s': %s", path, strerror(-r));
        size_t before = k->n;
        r = keys_add_text(k, text, len, path, true, warn, userdata, e);
        if (r < 0)
                return r;
        if (k->n == before)
                warnf(warn, userdata, "SSH key file '%s' adds no key", path);
        return 0;
}

/* Opens .ssh/authorized_keys beneath the home: symlinks may point around inside the home but
 * never out of it. Kernels without openat2() get the strict variant: no symlinks at all. */
static int open_beneath(int home_fd, int *ret_fd) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int) syscall(SYS_openat2, home_fd, ".ssh/authorized_keys", &how, sizeof(how));

        if (fd < 0 && errno == ENOSYS) {
                _cleanup_close_ int ssh_fd = openat(home_fd, ".ssh", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (ssh_fd < 0)
                        return negative_errno();
                fd = openat(ssh_fd, "authorized_keys", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        }
        if (fd < 0)
                return negative_errno();
        *ret_fd = fd;
        return 0;
}

/* Runs as the user for the file system (when we are root), so a link the user planted can only
 * reach what the user may read anyway. */
struct fs_identity {
        bool switched;
        uid_t uid;
        gid_t gid;
};

static void fs_identity_enter(struct fs_identity *s, uid_t uid, gid_t gid) {
        *s = (struct fs_identity) {};
        if (geteuid() != 0)
                return;
        s->gid = (gid_t) setfsgid(gid);
        s->uid = (uid_t) setfsuid(uid);
        s->switched = true;
}

static void fs_identity_leave(struct fs_identity *s) {
        if (!s->switched)
                return;
        (void) setfsuid(s->uid);
        (void) setfsgid(s->gid);
}

static int read_authorized_keys(const struct host_user *u, struct host_user_keys *k, host_user_warn_fn warn,
                                void *userdata, struct verr *e) {
        _cleanup_close_ int home_fd = -1, fd = -1;
        _cleanup_free_ char *text = NULL, *origin = NULL;
        struct fs_identity id;
        struct stat st;
        size_t len;
        int r;

        if (asprintf(&origin, "%s/.ssh/authorized_keys", u->home) < 0)
                return -ENOMEM;

        fs_identity_enter(&id, u->uid, u->gid);
        home_fd = open(u->home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = home_fd < 0 ? negative_errno() : open_beneath(home_fd, &fd);
        fs_identity_leave(&id);

        if (r == -ENOENT || r == -ENOTDIR)
                return 0; /* no home or no keys: nothing to copy */
        if (r == -EXDEV || r == -ELOOP) {
                warnf(warn, userdata, "'%s' leads outside the home of '%s' (symlink); its keys are not copied", origin,
                      u->name);
                return 0;
        }
        if (r == -EACCES) {
                warnf(warn, userdata, "'%s' is not readable by '%s'; its keys are not copied", origin, u->name);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "cannot open '%s': %s", origin, strerror(-r));

        if (fstat(fd, &st) < 0)
                return verr_set(e, negative_errno(), "cannot stat '%s': %m", origin);
        /* sshd's StrictModes rules: a file someone else could have written is not the user's. */
        if (!S_ISREG(st.st_mode)) {
                warnf(warn, userdata, "'%s' is not a regular file; its keys are not copied", origin);
                return 0;
        }
        if (st.st_uid != u->uid && st.st_uid != 0) {
                warnf(warn, userdata, "'%s' is owned by uid %u, neither '%s' nor root; its keys are not copied", origin,
                      (unsigned) st.st_uid, u->name);
                return 0;
        }
        if (st.st_mode & 022) {
                warnf(warn, userdata, "'%s' is writable by group or others (mode %03o); its keys are not copied",
                      origin, (unsigned) (st.st_mode & 0777));
                return 0;
        }
        r = read_bounded(fd, HOST_USER_KEY_FILE_MAX, &text, &len);
        if (r == -EFBIG) {
                warnf(warn, userdata, "'%s' is larger than %u bytes; its keys are not copied", origin,
                      HOST_USER_KEY_FILE_MAX);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "cannot read '%s': %s", origin, strerror(-r));
        return keys_add_text(k, text, len, origin, false, warn, userdata, e);
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

static bool hash_is_safe(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > RECORDS_MAX_HASH_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f || *p == ':')
                        return false;
        return true;
}

static int read_password_hash(const struct host_user *u, host_user_warn_fn warn, void *userdata, char **ret,
                              struct verr *e) {
        struct spwd *sp = NULL;
        size_t size = 0;
        const char *hash, *weak;
        int r;

        *ret = NULL;
        r = nss_getspnam(u->name, &sp, &size);
        if (r == -ENOENT || r == -EACCES || r == -EPERM) {
                if (access("/etc/shadow", R_OK) < 0)
                        warnf(warn, userdata, "the shadow database is not readable (run as root); no password hash "
                                              "is copied for '%s'", u->name);
                else
                        warnf(warn, userdata, "'%s' has no shadow entry; no password hash is copied", u->name);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "looking up the shadow entry of '%s' failed: %s", u->name, strerror(-r));

        hash = sp->sp_pwdp ? sp->sp_pwdp : "";
        if (hash[0] == '\0')
                warnf(warn, userdata, "'%s' has an empty password on the host; the guest account gets no password",
                      u->name);
        else if (hash[0] == '!' || hash[0] == '*')
                warnf(warn, userdata, "the password of '%s' is locked on the host; none is copied", u->name);
        else if (!hash_is_safe(hash))
                warnf(warn, userdata, "the password hash of '%s' contains unexpected characters; it is not copied",
                      u->name);
        else {
                weak = host_hash_weakness(hash);
                if (weak)
                        warnf(warn, userdata, "the password hash of '%s' uses %s, weaker than yescrypt or sha512-crypt; "
                                              "set a new password on the host (ENCRYPT_METHOD YESCRYPT)", u->name, weak);
                *ret = strdup(hash);
                if (!*ret)
                        r = -ENOMEM;
        }
        explicit_bzero(sp, size);
        free(sp);
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
                r = read_password_hash(u, o->warn, o->warn_userdata, &hash, e);
                if (r < 0)
                        return r;
        }
        if (!o->no_authorized_keys) {
                r = read_authorized_keys(u, &keys, o->warn, o->warn_userdata, e);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; o->extra_keys && i < o->extra_keys->n; i++) {
                r = keys_add(&keys, o->extra_keys->keys[i]);
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
                        warnf(o->warn, o->warn_userdata, "the GECOS name of '%s' is not valid UTF-8, contains control "
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
                        warnf(o->warn, o->warn_userdata, "'%s' has no login shell on the host; the guest's default is used",
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
