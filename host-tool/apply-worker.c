/* apply-worker.c: step 3 of `vmuser apply` (see apply.c): one worker process per VM.
 *
 * The worker opens the VM and one agent connection, asks vmuser-list, checks every entry
 * (list_check_entry(): the guest is not trusted), reconciles (apply-reconcile.c), writes its
 * result as one JSON object to a pipe and exits. The parent starts at most --jobs workers, reads
 * their pipes (bounded by APPLY_REPORT_MAX), kills one past its deadline (proportional to its
 * users) and turns a worker that died or said nothing readable into a failed VM. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent-conn.h"
#include "apply.h"
#include "json-util.h"
#include "macro.h"
#include "output.h"
#include "time-util.h"

/* ---- the worker ---- */

static int worker_list(struct worker *w, json_object **ret_list, struct verr *e) {
        struct qga_error qe = {};
        int r;

        r = agent_open(&w->vm, 0, w->o->timeout_ms, &w->agent, e);
        if (r == -ENOLINK) {
                /* A libvirt domain without the vmuser channel: nobody attached yet. */
                *ret_list = json_object_new_array();
                return *ret_list ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        r = agent_list_users(w->agent, w->o->timeout_ms, ret_list, &qe, e);
        if (r == -EREMOTEIO)
                return verr_set(e, r, "the agent refused vmuser-list: %s", qe.desc);
        if (r < 0)
                return r;
        if (!json_object_is_type(*ret_list, json_type_array))
                return verr_set(e, -EBADMSG, "the reply to vmuser-list is not an array");
        return 0;
}

static json_object *worker_run(const struct apply_options *o, const struct target *t) {
        struct worker w = { .o = o };
        static const char *const lists[] = { "added", "replaced", "removed", "unchanged", "pending", "failed" };
        _cleanup_json_ json_object *list = NULL;
        _cleanup_free_ struct listed_user *listed = NULL;
        struct common_options c = { .vm = t->vm, .connect_uri = o->connect_uri, .timeout_ms = o->timeout_ms };
        struct verr e = {};
        size_t n = 0;
        int r;

        w.result = json_object_new_object();
        if (!w.result)
                return NULL;
        json_object_object_add(w.result, "vm", json_object_new_string(t->vm));
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                json_object_object_add(w.result, lists[i], json_object_new_array());

        r = vm_open(&c, &w.vm, &e);
        if (r < 0)
                goto vm_failed;
        json_object_object_add(w.result, "vm", json_object_new_string(w.vm.label));
        r = worker_list(&w, &list, &e);
        if (r < 0)
                goto vm_failed;
        n = json_object_array_length(list);
        listed = calloc(n ? n : 1, sizeof(*listed));
        if (!listed) {
                r = -ENOMEM;
                goto vm_failed;
        }
        for (size_t i = 0; i < n; i++) {
                r = list_check_entry(json_object_array_get_idx(list, i), i, &listed[i], &e);
                if (r < 0)
                        goto vm_failed;
        }

        for (size_t i = 0; i < t->n_users; i++)
                apply_reconcile_user(&w, &t->users[i], apply_find_listed(listed, n, t->users[i].name));
        if (!o->no_prune)
                for (size_t i = 0; i < n; i++)
                        if (!apply_is_declared(t, listed[i].name))
                                apply_prune_user(&w, &listed[i]);
        goto finish;

vm_failed:
        json_object_object_add(w.result, "error", json_object_new_string(verr_text(&e, r)));
finish:
        json_object_object_add(w.result, "changed", json_object_new_boolean(w.changes));
        qga_client_free(w.agent);
        if (w.vm.backend)
                vm_close(&w.vm);
        return w.result;
}

static _Noreturn void worker_main(const struct apply_options *o, const struct target *t, int fd) {
        json_object *result = worker_run(o, t);
        const char *s = result ? json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN) : "";
        size_t len = strlen(s), off = 0;

        while (off < len) {
                ssize_t k = write(fd, s + off, len - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        _exit(1);
                off += (size_t) k;
        }
        json_object_put(result);
        _exit(0);
}

/* ---- the parent: workers at most --jobs at a time ---- */

static int start_worker(const struct apply_options *o, struct target *t) {
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        t->pid = fork();
        if (t->pid < 0) {
                close(p[0]);
                close(p[1]);
                return -errno;
        }
        if (t->pid == 0) {
                close(p[0]);
                worker_main(o, t, p[1]);
        }
        close(p[1]);
        t->fd = p[0];
        /* Per request at most the timeout; a user takes up to three requests (probe, detach,
         * attach) plus the export; the list and the connection two more. */
        t->deadline_ms = now_ms() + (int64_t) o->timeout_ms * (4 + 4 * (int64_t) t->n_users) + 30000;
        return 0;
}

static void vm_failed_result(struct target *t, const char *fmt, ...) _printf_(2, 3);
static void vm_failed_result(struct target *t, const char *fmt, ...) {
        char text[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        json_object_put(t->result);
        t->result = json_object_new_object();
        if (!t->result)
                return;
        json_object_object_add(t->result, "vm", json_object_new_string(t->vm));
        static const char *const lists[] = { "added", "replaced", "removed", "unchanged", "pending", "failed" };
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                json_object_object_add(t->result, lists[i], json_object_new_array());
        json_object_object_add(t->result, "error", json_object_new_string(text));
        json_object_object_add(t->result, "changed", json_object_new_boolean(false));
}

static void finish_worker(struct target *t, bool killed) {
        int status = 0;

        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
        if (killed)
                kill(t->pid, SIGKILL);
        while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR)
                ;
        t->done = true;
        if (killed)
                vm_failed_result(t, "no answer within the deadline of the whole VM; stopped");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                vm_failed_result(t, "the worker for this VM %s %d", WIFSIGNALED(status) ? "was killed by signal" : "exited",
                                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        else if (json_parse_strict(t->buf ? t->buf : "", t->len, &t->result) < 0 ||
                 !json_object_is_type(t->result, json_type_object))
                vm_failed_result(t, "the worker for this VM reported nothing readable");
        free(t->buf);
        t->buf = NULL;
}

/* Reads what the worker of t wrote; *ret_eof when its pipe is done. Past APPLY_REPORT_MAX the
 * worker is treated as over its deadline. */
static bool read_worker(struct target *t, bool *ret_eof) {
        char *b;
        ssize_t got;

        if (t->len + 65536 + 1 > APPLY_REPORT_MAX)
                return true;
        b = realloc(t->buf, t->len + 65536 + 1);
        got = b ? read(t->fd, b + t->len, 65536) : -1;
        if (b)
                t->buf = b;
        if (got > 0)
                t->len += (size_t) got;
        else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                *ret_eof = true;
        if (t->buf)
                t->buf[t->len] = '\0';
        return false;
}

/* Waits for output of the running workers (targets[0..next)) and finishes those done or over
 * their deadline: the count of finished ones, or -errno (logged). */
static int poll_workers(const struct apply_options *o, struct target *targets, size_t next, size_t n,
                        size_t *finished) {
        _cleanup_free_ struct pollfd *p = calloc(next, sizeof(*p));
        _cleanup_free_ size_t *idx = calloc(next, sizeof(*idx));
        bool progress = isatty(STDERR_FILENO) && !o->json;
        int64_t now = now_ms(), wait_ms = INT32_MAX;
        size_t np = 0;
        int done = 0;

        if (!p || !idx) {
                log_error("out of memory");
                return -ENOMEM;
        }
        for (size_t i = 0; i < next; i++)
                if (targets[i].fd >= 0 && !targets[i].done) {
                        p[np] = (struct pollfd) { .fd = targets[i].fd, .events = POLLIN };
                        idx[np++] = i;
                        if (targets[i].deadline_ms - now < wait_ms)
                                wait_ms = targets[i].deadline_ms - now;
                }
        if (poll(p, np, wait_ms < 0 ? 0 : (int) wait_ms) < 0 && errno != EINTR) {
                int r = -errno;
                log_error("poll: %m");
                return r;
        }
        now = now_ms();
        for (size_t k = 0; k < np; k++) {
                struct target *t = &targets[idx[k]];
                bool over = now >= t->deadline_ms, eof = false;
                if (p[k].revents && read_worker(t, &eof))
                        over = true;
                if (!eof && !over)
                        continue;
                finish_worker(t, !eof);
                done++;
                (*finished)++;
                if (progress && t->result) {
                        char line[1024], safe_vm[300];
                        apply_summary(t->result, o->check, line, sizeof(line));
                        fprintf(stderr, "[%zu/%zu] %s: %s\n", *finished, n,
                                text_sanitize(json_object_get_string(json_object_object_get(t->result, "vm")), safe_vm,
                                              sizeof(safe_vm)),
                                line);
                }
        }
        return done;
}

int apply_run_workers(const struct apply_options *o, struct target *targets, size_t n) {
        size_t next = 0, running = 0, finished = 0;
        int r;

        while (finished < n) {
                while (running < o->jobs && next < n) {
                        r = start_worker(o, &targets[next]);
                        if (r < 0) {
                                vm_failed_result(&targets[next], "cannot start a worker: %s", strerror(-r));
                                targets[next].done = true;
                                finished++;
                        } else
                                running++;
                        next++;
                }
                if (running == 0)
                        continue;
                r = poll_workers(o, targets, next, n, &finished);
                if (r < 0)
                        return r;
                running -= (size_t) r;
        }
        return 0;
}

void apply_targets_free(struct target *targets, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (targets[i].fd >= 0 && !targets[i].done)
                        finish_worker(&targets[i], true);
                free(targets[i].vm);
                free(targets[i].users);
                free(targets[i].buf);
                json_object_put(targets[i].result);
        }
        free(targets);
}
