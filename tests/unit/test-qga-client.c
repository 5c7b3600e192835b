/* test-qga-client.c: qga_client's cork (qga-client.h), which `vmuser attach` uses so that a
 * chunk of pipelined requests reaches the guest in one read: corked requests are not written
 * until QGA_CLIENT_CORK_REQUESTS are queued or a receive needs them, then they leave in one
 * write; a failed write of the queue fails every request in it, each with the reason, and a
 * write that times out part way fails only the requests that did not go out whole.
 *
 * The agent end is this test's main thread on a real UNIX socket in a scratch directory; the
 * client runs in a second thread, and the two take turns through semaphores, so "nothing was
 * written yet" is a poll(2) of the agent's end that finds nothing to read. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "json-util.h"
#include "macro.h"
#include "qga-client.h"
#include "scratch-dir.h"

#define TIMEOUT_MS 3000
#define N_CORK QGA_CLIENT_CORK_REQUESTS

enum client_step { FILL_PART, FILL_REST, RECEIVE_FLUSHES, WRITE_FAILS, WRITE_TIMES_OUT };

/* WRITE_TIMES_OUT: requests of about 1 KiB, sent until a queue's write times out part way
 * (the agent reads nothing meanwhile) and the next send is refused: the channel needs a sync. */
#define BIG_REQUESTS 250
#define BIG_TIMEOUT_MS 300

static struct {
        char path[128];
        enum client_step step;
        sem_t turn_agent, turn_client;
        /* What the client saw, checked by the main thread. */
        int errors[BIG_REQUESTS];
        char messages[BIG_REQUESTS][sizeof(((struct verr *) 0)->text)];
        int64_t ids[BIG_REQUESTS];
        size_t n_sent, n_ok;
} t;

/* The client's end of the connection to path: the socket whose peer is path. */
static int client_fd(const char *path) {
        for (int fd = 3; fd < 1024; fd++) {
                struct sockaddr_un sa = {};
                socklen_t len = sizeof(sa);
                if (getpeername(fd, (struct sockaddr *) &sa, &len) == 0 && sa.sun_family == AF_UNIX &&
                    streq(sa.sun_path, path))
                        return fd;
        }
        return -1;
}

/* Sends requests of about 1 KiB until one is refused or BIG_REQUESTS are out. The client's
 * send buffer is made small (8 KiB), so the kernel takes a queue of 16 in parts and the first
 * queue's write stops part way. */
static void send_big(struct qga_client *c) {
        int fd = client_fd(t.path), size = 4096;
        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);

        _cleanup_json_ json_object *args = json_object_new_object();
        char pad[1001];
        struct verr e = {};

        memset(pad, 'x', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = '\0';
        json_object_object_add(args, "pad", json_object_new_string(pad));
        while (t.n_sent < BIG_REQUESTS &&
               qga_client_send(c, "guest-ping", args, BIG_TIMEOUT_MS, &t.ids[t.n_sent], &e) == 0)
                t.n_sent++;
}

static void *client_thread(void *arg) {
        _cleanup_qga_client_ struct qga_client *c = NULL;
        int64_t ids[N_CORK] = {};
        struct verr e = {};

        if (qga_client_connect(t.path, TIMEOUT_MS, &c, &e) < 0 || qga_client_sync(c, TIMEOUT_MS, &e) < 0) {
                fprintf(stderr, "client: %s\n", e.text);
                sem_post(&t.turn_agent);
                return NULL;
        }
        qga_client_cork(c, true);
        size_t n = t.step == RECEIVE_FLUSHES ? 2 : 3;
        if (t.step == WRITE_TIMES_OUT) {
                send_big(c);
                n = t.n_sent;
        } else
                for (size_t i = 0; i < n; i++)
                        if (qga_client_send(c, "guest-ping", NULL, TIMEOUT_MS, &ids[i], &e) < 0)
                                fprintf(stderr, "client: %s\n", e.text);
        sem_post(&t.turn_agent);
        sem_wait(&t.turn_client);
        if (t.step == FILL_REST) {
                for (size_t i = n; i < N_CORK; i++)
                        if (qga_client_send(c, "guest-ping", NULL, TIMEOUT_MS, &ids[i], &e) < 0)
                                fprintf(stderr, "client: %s\n", e.text);
                n = N_CORK;
                /* The 16th send wrote the queue: the agent looks before anything is received. */
                sem_post(&t.turn_agent);
                sem_wait(&t.turn_client);
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_json_ json_object *v = NULL;
                struct verr ei = {};
                t.errors[i] = qga_client_receive(c, t.step == WRITE_TIMES_OUT ? t.ids[i] : ids[i], &v, NULL, &ei);
                snprintf(t.messages[i], sizeof(t.messages[i]), "%s", ei.text);
                if (t.errors[i] == 0)
                        t.n_ok++;
        }
        sem_post(&t.turn_agent);
        return NULL;
}

/* Reads what is there (waiting up to 1 s for the first byte): the number of bytes. */
static size_t read_some(int fd, char *buf, size_t size) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 1000), 1);
        ssize_t k = read(fd, buf, size - 1);
        assert_true(k > 0);
        buf[k] = '\0';
        return (size_t) k;
}

static bool readable_now(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, 50) == 1;
}

/* Answers every request in buf ({"execute": ..., "id": N}, one per line): how many. */
static size_t answer(int fd, const char *buf) {
        size_t n = 0;
        for (const char *line = buf; *line; n++) {
                const char *nl = strchr(line, '\n');
                assert_non_null(nl);
                _cleanup_json_ json_object *req = json_tokener_parse(strndupa(line, (size_t) (nl - line)));
                json_object *id;
                assert_true(json_object_object_get_ex(req, "id", &id));
                char reply[128];
                int len = snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": %" PRId64 "}\n",
                                   json_object_get_int64(id));
                assert_int_equal(write(fd, reply, (size_t) len), len);
                line = nl + 1;
        }
        return n;
}

/* Reads everything there is and answers each whole request (the last, cut one is not): how
 * many. */
static size_t answer_whole(int fd) {
        size_t size = 1 << 20, have = 0, n = 0;
        _cleanup_free_ char *buf = malloc(size);
        assert_non_null(buf);
        while (readable_now(fd)) {
                ssize_t k = read(fd, buf + have, size - 1 - have);
                assert_true(k > 0);
                have += (size_t) k;
        }
        buf[have] = '\0';
        char *cut = strrchr(buf, '\n');
        if (cut)
                cut[1] = '\0';
        else
                buf[0] = '\0';
        n = answer(fd, buf);
        return n;
}

/* Accepts the client and answers its guest-sync-delimited: the connected fd. */
static int agent_accept(int listen_fd) {
        char buf[4096];
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fd >= 0);
        read_some(fd, buf, sizeof(buf));
        assert_int_equal((unsigned char) buf[0], 0xFF);
        _cleanup_json_ json_object *req = json_tokener_parse(buf + 1);
        json_object *args, *id;
        assert_true(json_object_object_get_ex(req, "arguments", &args) && json_object_object_get_ex(args, "id", &id));
        char reply[128];
        int len = snprintf(reply, sizeof(reply), "\xff{\"return\": %" PRId64 "}\n", json_object_get_int64(id));
        assert_int_equal(write(fd, reply, (size_t) len), len);
        return fd;
}

static void run(void **state, enum client_step step) {
        struct scratch *s = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char buf[65536];
        pthread_t thread;

        memset(&t, 0, sizeof(t));
        t.step = step;
        snprintf(t.path, sizeof(t.path), "%s/agent.sock", s->path);
        strcpy(sa.sun_path, t.path);
        _cleanup_close_ int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(listen_fd >= 0);
        assert_int_equal(bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(listen_fd, 1), 0);
        sem_init(&t.turn_agent, 0, 0);
        sem_init(&t.turn_client, 0, 0);
        assert_int_equal(pthread_create(&thread, NULL, client_thread, NULL), 0);

        _cleanup_close_ int fd = agent_accept(listen_fd);
        size_t answered = 0;
        sem_wait(&t.turn_agent);
        switch (step) {
        case FILL_PART:
        case FILL_REST:
                /* 3 requests queued: none on the wire. */
                assert_false(readable_now(fd));
                if (step == FILL_PART) {
                        sem_post(&t.turn_client); /* its receive writes the 3 */
                        read_some(fd, buf, sizeof(buf));
                        assert_int_equal(answer(fd, buf), 3);
                        break;
                }
                sem_post(&t.turn_client);
                sem_wait(&t.turn_agent);
                /* The 16th send wrote all 16, before any receive. */
                assert_true(readable_now(fd));
                read_some(fd, buf, sizeof(buf));
                assert_int_equal(answer(fd, buf), N_CORK);
                sem_post(&t.turn_client);
                break;
        case RECEIVE_FLUSHES:
                assert_false(readable_now(fd));
                sem_post(&t.turn_client);
                /* The first receive wrote both queued requests at once. */
                read_some(fd, buf, sizeof(buf));
                assert_int_equal(answer(fd, buf), 2);
                break;
        case WRITE_TIMES_OUT:
                /* Nothing was read while the client wrote: a queue's write timed out part way.
                 * Now every whole request that came is answered; the cut one is not. */
                assert_true(t.n_sent < BIG_REQUESTS);
                answered = answer_whole(fd);
                sem_post(&t.turn_client);
                break;
        case WRITE_FAILS:
                /* The agent goes away with 3 requests queued: each one fails, naming the write. */
                assert_false(readable_now(fd));
                closep(&fd);
                sem_post(&t.turn_client);
                break;
        }
        sem_wait(&t.turn_agent);
        assert_int_equal(pthread_join(thread, NULL), 0);

        size_t want = step == FILL_PART ? 3 : step == FILL_REST ? N_CORK : step == RECEIVE_FLUSHES ? 2 : answered;
        if (step == WRITE_TIMES_OUT) {
                /* The requests that reached the agent whole got their replies, the rest say they
                 * were not taken: a prefix of what was sent, some of each. */
                if (answered == 0 || answered >= t.n_sent)
                        fail_msg("%zu of %zu requests reached the agent whole", answered, t.n_sent);
                for (size_t i = 0; i < t.n_sent; i++) {
                        if (i < answered ? t.errors[i] == 0
                                         : t.errors[i] == -ETIMEDOUT && strstr(t.messages[i], "did not take"))
                                continue;
                        fail_msg("request %zu of %zu (%zu reached the agent): %s", i, t.n_sent, answered,
                                 t.errors[i] == 0 ? "answered" : t.messages[i]);
                }
        }
        if (t.n_ok != want)
                fail_msg("%zu of the requests got their reply, wanted %zu (first error: %s)", t.n_ok, want,
                         t.messages[0]);
        if (step == WRITE_FAILS)
                for (size_t i = 0; i < 3; i++) {
                        assert_int_equal(t.errors[i], -EPIPE);
                        if (!strstr(t.messages[i], "sending 'guest-ping' failed"))
                                fail_msg("request %zu: %s", i, t.messages[i]);
                }
}

static void test_corked_requests_wait_for_a_receive(void **state) {
        run(state, FILL_PART);
}

static void test_a_full_cork_leaves_in_one_write(void **state) {
        run(state, FILL_REST);
}

static void test_receive_writes_the_queue(void **state) {
        run(state, RECEIVE_FLUSHES);
}

static void test_failed_write_fails_each_queued_request(void **state) {
        run(state, WRITE_FAILS);
}

/* A queue written in part before its timeout: the requests that went out whole are in flight
 * and answered; only the one cut off and those after it fail, saying they were not taken. */
static void test_write_timeout_keeps_whole_requests(void **state) {
        run(state, WRITE_TIMES_OUT);
}

int main(void) {
        /* As the host tool: a write to a closed socket is an error, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_corked_requests_wait_for_a_receive, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_a_full_cork_leaves_in_one_write, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_receive_writes_the_queue, scratch_setup, scratch_teardown),
                cmocka_unit_test_setup_teardown(test_failed_write_fails_each_queued_request, scratch_setup,
                                                scratch_teardown),
                cmocka_unit_test_setup_teardown(test_write_timeout_keeps_whole_requests, scratch_setup,
                                                scratch_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
