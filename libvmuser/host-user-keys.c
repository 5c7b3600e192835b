/* host-user-keys.c: the SSH keys of a host user record (see host-user.h).
 *
 * Two sources, one parser: a key file the admin names (host_user_keys_add_file(): opened from "/"
 * without following a symlink, sshd's StrictModes on every step, every line must be a public
 * key) and the user's ~/.ssh/authorized_keys (host_user_read_authorized_keys(): opened beneath
 * the home as the user, bad lines skipped with a warning). Both end in keys_add_text(), which
 * splits the text into key lines checked by ssh-key.c, deduplicated by host_user_keys_add(). */
#include "host-user.h"
#include "host-user-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "records.h"
#include "ssh-key.h"

void host_user_keys_done(struct host_user_keys *k) {
        for (size_t i = 0; i < k->n; i++)
                free(k->keys[i]);
        free(k->keys);
        *k = (struct host_user_keys) {};
}

void host_user_keys_donep(struct host_user_keys *k) {
        host_user_keys_done(k);
}

int host_user_keys_add(struct host_user_keys *k, const char *key) {
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
                else if (bad || !host_user_utf8_is_valid(line))
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
                                host_user_warnf(warn, userdata, "%s, line %zu: a private key; skipped with its body", origin,
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
                        host_user_warnf(warn, userdata, "%s, line %zu: not an OpenSSH public key: %s; skipped", origin, line_no,
                              reason);
                        continue;
                }
                r = host_user_keys_add(k, line);
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
                host_user_warnf(warn, userdata, "SSH key file '%s' adds no key", path);
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

int host_user_read_authorized_keys(const struct host_user *u, struct host_user_keys *k, host_user_warn_fn warn,
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
                host_user_warnf(warn, userdata, "'%s' leads outside the home of '%s' (symlink); its keys are not copied", origin,
                      u->name);
                return 0;
        }
        if (r == -EACCES) {
                host_user_warnf(warn, userdata, "'%s' is not readable by '%s'; its keys are not copied", origin, u->name);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "cannot open '%s': %s", origin, strerror(-r));

        if (fstat(fd, &st) < 0)
                return verr_set(e, negative_errno(), "cannot stat '%s': %m", origin);
        /* sshd's StrictModes rules: a file someone else could have written is not the user's. */
        if (!S_ISREG(st.st_mode)) {
                host_user_warnf(warn, userdata, "'%s' is not a regular file; its keys are not copied", origin);
                return 0;
        }
        if (st.st_uid != u->uid && st.st_uid != 0) {
                host_user_warnf(warn, userdata, "'%s' is owned by uid %u, neither '%s' nor root; its keys are not copied", origin,
                      (unsigned) st.st_uid, u->name);
                return 0;
        }
        if (st.st_mode & 022) {
                host_user_warnf(warn, userdata, "'%s' is writable by group or others (mode %03o); its keys are not copied",
                      origin, (unsigned) (st.st_mode & 0777));
                return 0;
        }
        r = read_bounded(fd, HOST_USER_KEY_FILE_MAX, &text, &len);
        if (r == -EFBIG) {
                host_user_warnf(warn, userdata, "'%s' is larger than %u bytes; its keys are not copied", origin,
                      HOST_USER_KEY_FILE_MAX);
                return 0;
        }
        if (r < 0)
                return verr_set(e, r, "cannot read '%s': %s", origin, strerror(-r));
        return keys_add_text(k, text, len, origin, false, warn, userdata, e);
}
