/* transport.c: the agent's three transports, all driven by sd-event.
 *
 * stdio:  requests on fd 0, replies on fd 1; EOF on stdin ends the agent (tests, debugging).
 * listen: a UNIX stream socket serving one client at a time; while a client is connected the
 *         listening source is off, so a second client waits in the backlog instead of
 *         interleaving with the first.
 * device: a virtio-serial port. It has no connection: with no host attached read() returns 0
 *         (or EIO) and epoll reports HUP at once, forever. So on EOF/HUP the agent drops any
 *         partial request, turns the I/O source off and waits for SIGIO, which virtio_console
 *         sends when the host opens the port (O_ASYNC), with a 1 s timer as a fallback: idle
 *         costs one wake-up a second, never a busy loop.
 * Replies: while one read's requests are being answered (pipelined requests: many per read),
 * replies collect in a buffer that goes out in one write(2) every REPLY_BATCH replies and when
 * the read's last request is answered; a reply sent at any other time is written at once. So
 * no reply waits for a request that has not arrived yet. */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "audit.h"
#include "macro.h"

#define DEVICE_RETRY_USEC (1000u * 1000u)
#define REPLY_TIMEOUT_MS 5000
/* Replies per write(2) at most, and the buffer that holds them (a larger reply goes alone). */
#define REPLY_BATCH 16
#define REPLY_BUFFER_MAX (64u * 1024u)

struct transport {
        enum transport_kind kind;
        struct agent *agent;
        sd_event *event;
        char *path;
        int in_fd;
        int out_fd;
        int listen_fd;
        sd_event_source *io;
        sd_event_source *listen_source;
        sd_event_source *retry_timer;
        sd_event_source *sigio;
        bool feeding;  /* answering the requests of one read */
        char *out;     /* replies not written yet (REPLY_BUFFER_MAX), only while feeding */
        size_t out_len;
        unsigned out_n;
};

static void transport_close_client(struct transport *t) {
        t->io = sd_event_source_disable_unref(t->io);
        if (t->kind == TRANSPORT_LISTEN) {
                closep(&t->in_fd);
                t->out_fd = t->in_fd = -1;
                if (t->listen_source)
                        sd_event_source_set_enabled(t->listen_source, SD_EVENT_ON);
        }
        agent_reset_stream(t->agent);
}

static void write_reply(struct transport *t, const char *data, size_t len) {
        /* The attaches these replies report are in the journal first (audit.h). */
        agent_audit_flush();
        int r = proto_write_all(t->out_fd, data, len, REPLY_TIMEOUT_MS);
        if (r < 0)
                fprintf(stderr, SD_WARNING "Failed to send %zu byte(s) of replies: %s\n", len, strerror(-r));
        /* A lost reply is the client's problem to detect (it re-syncs); keep serving. */
}

static void flush_replies(struct transport *t) {
        if (t->out_len > 0)
                write_reply(t, t->out, t->out_len);
        t->out_len = 0;
        t->out_n = 0;
}

static int send_reply(struct agent *a, const char *data, size_t len, void *userdata) {
        struct transport *t = userdata;

        if (!t->feeding || !t->out || len > REPLY_BUFFER_MAX) {
                flush_replies(t);
                write_reply(t, data, len);
                return 0;
        }
        if (t->out_len + len > REPLY_BUFFER_MAX)
                flush_replies(t);
        memcpy(t->out + t->out_len, data, len);
        t->out_len += len;
        if (++t->out_n >= REPLY_BATCH)
                flush_replies(t);
        return 0;
}

/* Device went quiet (no host): stop watching the fd until SIGIO or the retry timer. */
static void device_wait_for_host(struct transport *t) {
        uint64_t now;
        agent_reset_stream(t->agent);
        sd_event_source_set_enabled(t->io, SD_EVENT_OFF);
        sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(t->retry_timer, now + DEVICE_RETRY_USEC);
        sd_event_source_set_enabled(t->retry_timer, SD_EVENT_ONESHOT);
}

static void device_resume(struct transport *t) {
        sd_event_source_set_enabled(t->retry_timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(t->io, SD_EVENT_ON);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct transport *t = userdata;
        char buf[16384];
        ssize_t n;

        n = read(fd, buf, sizeof(buf));
        if (n > 0) {
                t->feeding = true;
                int r = agent_feed(t->agent, buf, (size_t) n);
                t->feeding = false;
                flush_replies(t);
                /* Also the attaches whose replies were not written (a reply that could not be
                 * made): none waits past its read. */
                agent_audit_flush();
                if (r < 0)
                        fprintf(stderr, SD_ERR "Failed to process a request: %s\n", strerror(-r));
                return 0;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;

        /* EOF, HUP or an error: the peer is gone. */
        switch (t->kind) {
        case TRANSPORT_STDIO:
                return sd_event_exit(t->event, 0);
        case TRANSPORT_LISTEN:
                transport_close_client(t);
                return 0;
        case TRANSPORT_DEVICE:
                device_wait_for_host(t);
                return 0;
        }
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct transport *t = userdata;
        int c, r;

        c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
                return 0;
        t->in_fd = t->out_fd = c;
        r = sd_event_add_io(t->event, &t->io, c, EPOLLIN, on_io, t);
        if (r < 0) {
                fprintf(stderr, SD_ERR "Failed to watch the client connection: %s\n", strerror(-r));
                closep(&t->in_fd);
                t->out_fd = t->in_fd = -1;
                return 0;
        }
        sd_event_source_set_enabled(t->listen_source, SD_EVENT_OFF);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        device_resume(userdata);
        return 0;
}

static int on_sigio(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        device_resume(userdata);
        return 0;
}

static int setup_listen(struct transport *t) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int r;

        if (strlen(t->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, t->path);
        /* Replace a stale socket from an earlier run, never anything else. */
        if (lstat(t->path, &st) == 0 && S_ISSOCK(st.st_mode))
                (void) unlink(t->path);

        t->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (t->listen_fd < 0)
                return negative_errno();
        if (bind(t->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        (void) chmod(t->path, 0600);
        if (listen(t->listen_fd, 4) < 0)
                return negative_errno();
        r = sd_event_add_io(t->event, &t->listen_source, t->listen_fd, EPOLLIN, on_accept, t);
        return r;
}

static int setup_device(struct transport *t) {
        sigset_t mask;
        int r, flags;

        t->in_fd = open(t->path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (t->in_fd < 0)
                return negative_errno();
        t->out_fd = t->in_fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGIO);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();
        r = sd_event_add_signal(t->event, &t->sigio, SIGIO, on_sigio, t);
        if (r < 0)
                return r;
        /* Ask for SIGIO when the host opens the port. A device without fasync support just
         * leaves us on the timer. */
        if (fcntl(t->in_fd, F_SETOWN, getpid()) == 0) {
                flags = fcntl(t->in_fd, F_GETFL);
                if (flags >= 0)
                        (void) fcntl(t->in_fd, F_SETFL, flags | O_ASYNC);
        }

        r = sd_event_add_time(t->event, &t->retry_timer, CLOCK_MONOTONIC, 0, 100 * 1000, on_retry, t);
        if (r < 0)
                return r;
        sd_event_source_set_enabled(t->retry_timer, SD_EVENT_OFF);
        return sd_event_add_io(t->event, &t->io, t->in_fd, EPOLLIN, on_io, t);
}

int transport_new(sd_event *event, struct agent *agent, enum transport_kind kind, const char *path,
                  struct transport **ret) {
        _cleanup_(transport_freep) struct transport *t = NULL;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        *t = (struct transport) { .kind = kind, .agent = agent, .event = sd_event_ref(event),
                                  .in_fd = -1, .out_fd = -1, .listen_fd = -1 };
        if (path) {
                t->path = strdup(path);
                if (!t->path)
                        return -ENOMEM;
        }
        t->out = malloc(REPLY_BUFFER_MAX); /* without it, every reply is written at once */
        agent->send = send_reply;
        agent->send_userdata = t;

        switch (kind) {
        case TRANSPORT_STDIO:
                t->in_fd = STDIN_FILENO;
                t->out_fd = STDOUT_FILENO;
                r = sd_event_add_io(event, &t->io, t->in_fd, EPOLLIN, on_io, t);
                break;
        case TRANSPORT_LISTEN:
                r = setup_listen(t);
                break;
        case TRANSPORT_DEVICE:
                r = setup_device(t);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

struct transport *transport_free(struct transport *t) {
        if (!t)
                return NULL;
        sd_event_source_disable_unref(t->io);
        sd_event_source_disable_unref(t->listen_source);
        sd_event_source_disable_unref(t->retry_timer);
        sd_event_source_disable_unref(t->sigio);
        if (t->kind != TRANSPORT_STDIO)
                closep(&t->in_fd);
        closep(&t->listen_fd);
        if (t->kind == TRANSPORT_LISTEN && t->path)
                (void) unlink(t->path);
        sd_event_unref(t->event);
        free(t->out);
        free(t->path);
        free(t);
        return NULL;
}

void transport_freep(struct transport **t) {
        transport_free(*t);
}
