/* attach-state-client.c: io.vmuser.GetAttachState, the client side (see attach-state-client.h).
 *
 * Flow: socket (non-blocking) -> connect_unix_deadline() -> SO_PEERCRED: the listener must be
 * root's (the reply decides what root mounts where) -> send the call, NUL-terminated -> read up
 * to the NUL, at most ATTACH_STATE_REPLY_MAX bytes, polling until the deadline -> proto_scan()
 * bounds values, containers and depth -> json-c parses -> an "error" is NoSuchUser (-ENOENT) or a
 * failure naming it; "parameters" is checked as a state file is (attach_state_from_json), and
 * must be the user asked about. */
#include "attach-state-client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "names.h"
#include "proto.h"
#include "socket-util.h"
#include "time-util.h"

static const struct proto_limits reply_limits = {
        .max_bytes = ATTACH_STATE_REPLY_MAX,
        .max_values = 512,
        .max_containers = 64,
        .max_token = 8192,
        .max_depth = 6,
};

/* Connects to path by deadline and checks the listener is root's. */
static int connect_root(const char *path, int64_t deadline, int *ret_fd, struct verr *e) {
        _cleanup_close_ int fd = -1, dir_fd = -1;
        struct sockaddr_un sa;
        struct ucred cred = {};
        socklen_t len = sizeof(cred);
        int r;

        r = sockaddr_un_from_path(path, &sa, &dir_fd);
        if (r < 0)
                return verr_set(e, r, "bad socket path: %s", strerror(-r));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return verr_set(e, -errno, "cannot make a socket: %m");
        r = connect_unix_deadline(fd, &sa, deadline);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return -ENOENT; /* nobody serves there: nobody is attached by an agent */
        if (r < 0)
                return verr_set(e, r, "cannot connect: %s", strerror(-r));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return verr_set(e, -errno, "cannot learn who serves it: %m");
        if (cred.uid != 0)
                return verr_set(e, -EPERM, "it is served by UID %u, not root: refusing to believe it",
                                (unsigned) cred.uid);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Reads one NUL-terminated message into buf (size bytes at most, NUL included). Its length. */
static int read_message(int fd, char *buf, size_t size, int64_t deadline, size_t *ret_len) {
        size_t have = 0;
        for (;;) {
                char *nul = memchr(buf, '\0', have);
                if (nul) {
                        *ret_len = (size_t) (nul - buf);
                        return 0;
                }
                if (have == size)
                        return -EMSGSIZE;
                ssize_t n = recv(fd, buf + have, size - have, 0);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fd, .events = POLLIN };
                        int k = poll(&p, 1, ms_left(deadline));
                        if (k == 0)
                                return -ETIMEDOUT;
                        if (k < 0 && errno != EINTR)
                                return -errno;
                        continue;
                }
                if (n < 0)
                        return -errno;
                have += (size_t) n;
        }
}

/* The reply's meaning: the state, -ENOENT for NoSuchUser, or an error with its reason. */
static int parse_reply(json_object *reply, const char *user, struct attach_state *ret, struct verr *e) {
        json_object *params;
        const char *error;
        struct attach_state s;

        if (json_get_string(reply, "error", &error) >= 0) {
                if (streq(error, "io.vmuser.NoSuchUser"))
                        return -ENOENT;
                return verr_set(e, -EPROTO, "the agent answered with the error %s", error);
        }
        if (json_get_object(reply, "parameters", &params) < 0)
                return verr_set(e, -EBADMSG, "the reply has no parameters");
        if (attach_state_from_json(params, &s) < 0)
                return verr_set(e, -EBADMSG, "the reply is not a valid attach state");
        if (!streq(s.user_name, user))
                return verr_set(e, -EBADMSG, "the reply is about '%s', not '%s'", s.user_name, user);
        *ret = s;
        return 0;
}

int attach_state_query(const char *socket_path, const char *user, int timeout_msec, struct attach_state *ret,
                       struct verr *e) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL, *call = NULL;
        _cleanup_json_ json_object *reply = NULL;
        int64_t deadline = now_ms() + timeout_msec;
        size_t len = 0;
        int n, r;

        if (!name_is_valid(user))
                return -ENOENT;
        r = connect_root(socket_path, deadline, &fd, e);
        if (r < 0)
                return r;
        /* A valid name needs no quoting. */
        n = asprintf(&call, "{\"method\":\"io.vmuser.GetAttachState\",\"parameters\":{\"userName\":\"%s\"}}", user);
        if (n < 0)
                return -ENOMEM;
        r = proto_write_all(fd, call, (size_t) n + 1, ms_left(deadline)); /* MSG_NOSIGNAL: inside sshd */
        if (r < 0)
                return verr_set(e, r, "cannot send the question: %s", strerror(-r));
        buf = malloc(ATTACH_STATE_REPLY_MAX);
        if (!buf)
                return -ENOMEM;
        r = read_message(fd, buf, ATTACH_STATE_REPLY_MAX, deadline, &len);
        if (r == -ETIMEDOUT)
                return verr_set(e, r, "no answer within %d ms", timeout_msec);
        if (r == -EMSGSIZE)
                return verr_set(e, -EBADMSG, "the answer is larger than %u bytes", ATTACH_STATE_REPLY_MAX);
        if (r < 0)
                return verr_set(e, r, "cannot read the answer: %s", strerror(-r));
        if (proto_scan(buf, len, &reply_limits, NULL) < 0 || json_parse_strict(buf, len, &reply) < 0 ||
            !json_object_is_type(reply, json_type_object))
                return verr_set(e, -EBADMSG, "the answer is not a JSON object within bounds");
        return parse_reply(reply, user, ret, e);
}

int attach_state_lookup(int state_dir_fd, const char *socket_path, const char *user, struct attach_state *ret,
                        struct verr *e) {
        struct stat st;
        int r = attach_state_read(state_dir_fd, user, ret);
        if (r != -ENOENT)
                return r;
        if (stat(socket_path, &st) < 0 || !S_ISSOCK(st.st_mode))
                return -ENOENT; /* no agent serves states: nobody is attached that way */
        return attach_state_query(socket_path, user, ATTACH_STATE_TIMEOUT_MSEC, ret, e);
}
