/* qmp-client.h: a small, strict client for the QEMU Machine Protocol (QMP).
 *
 * The host tool talks to the QEMU of a running VM to hot-plug a user's home (chardev-add,
 * device_add, device_del, chardev-remove). QEMU runs the guest, and parts of what it reports
 * (device state, events) are driven by the guest, so everything read is bounded and time-limited
 * like the agent channel: frames go through the shared frame reader (proto.h) with the QMP
 * limits below (bytes, values, objects and arrays, token length, depth; checked before json-c
 * builds anything), every call has a deadline on the monotonic clock, and the queue of events
 * kept aside is capped in number and in memory.
 *
 * Flow: qmp_client_connect() opens the UNIX socket (non-blocking, with a timeout), reads the
 * greeting {"QMP": {"version", "capabilities"}} and negotiates with "qmp_capabilities" (no
 * optional capability is enabled) -> qmp_client_execute() sends {"execute", "arguments", "id"}
 * with a fresh id and reads frames until the reply carrying that id: events that arrive meanwhile
 * are queued, replies to earlier (timed-out) requests are dropped -> "return" is handed out, or
 * "error" as class + desc. qmp_client_wait_event() first looks through the queue, then reads
 * until a matching event arrives or the deadline passes.
 *
 * Errors (negative errno, with a sentence in the verr):
 *   -ENOENT, -ECONNREFUSED, -EACCES, ...  connecting failed (no socket, QEMU not running)
 *   -ETIMEDOUT   no greeting, reply or event in time. A monitor serves one client at a time,
 *                so a missing greeting usually means another client holds it. A request that
 *                timed out may still run; its late reply is recognised by its id and dropped.
 *   -EBADMSG     QEMU sent something that is not a QMP frame (the connection is then dead)
 *   -EMSGSIZE    a frame over the limits (QMP_MAX_FRAME_SIZE and the counts of
 *                doc/PROTOCOL.txt), checked before it is parsed; the connection is then dead
 *   -ECONNRESET  QEMU closed the connection (every later call fails with -ENOTCONN)
 *   -EREMOTEIO   QEMU answered with an error; class and desc are in the struct qmp_error */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "proto.h"
#include "verr.h"

/* Events kept aside while waiting for something else; the oldest is dropped beyond this many, or
 * beyond QMP_MAX_QUEUED_COST of estimated memory (proto_frame_cost()). */
#define QMP_MAX_QUEUED_EVENTS 256
#define QMP_MAX_QUEUED_COST (4u * 1024u * 1024u)

/* What a QMP frame may hold (doc/PROTOCOL.txt, "Reply limits"): the greeting and the replies
 * vmuser asks for (qom-list of /machine/peripheral, query-chardev: QMP_MAX_LIST_ENTRIES entries
 * of at most 256 bytes, 8 values and one object each) */
#define QMP_MAX_LIST_ENTRIES 4096u
#define QMP_MAX_FRAME_SIZE (64u * 1024u + QMP_MAX_LIST_ENTRIES * 256u)
/* An event larger than this (bytes, values, objects and arrays) is dropped unqueued and counted
 * as dropped: the events vmuser waits for (DEVICE_DELETED) are a few hundred bytes. */
#define QMP_MAX_EVENT_SIZE (16u * 1024u)
#define QMP_MAX_EVENT_VALUES 512u
#define QMP_MAX_EVENT_CONTAINERS 64u

/* An error reply from QEMU, as sent (cut to the size of the buffers). */
struct qmp_error {
        char error_class[64];
        char desc[1024];
};

struct qmp_client;

/* The limits every QMP frame is held to (also for QMP replies that libvirt hands over). */
const struct proto_limits *qmp_client_limits(void);

/* Connects to the QMP socket at path and negotiates capabilities, all within timeout_ms.
 * Paths longer than sun_path are reached through /proc/self/fd. */
int qmp_client_connect(const char *path, int timeout_ms, struct qmp_client **ret, struct verr *e);

/* Whether a QEMU listens on the QMP socket at path, without talking to it and without waiting:
 * 1 something accepts (or its backlog is full: it is busy, not gone), 0 nobody (no socket file,
 * or a stale one: the QEMU that made it has exited), -errno when it cannot tell. */
int qmp_socket_probe(const char *path);
struct qmp_client *qmp_client_free(struct qmp_client *c);
void qmp_client_freep(struct qmp_client **c);
#define _cleanup_qmp_client_ __attribute__((cleanup(qmp_client_freep)))

/* Runs command with args (may be NULL; borrowed) and waits up to timeout_ms for its reply. On
 * success *ret_value (if not NULL) holds a reference to the "return" value. On -EREMOTEIO,
 * *ret_error (if not NULL) holds QEMU's error and the verr says "QEMU refused COMMAND: desc". */
int qmp_client_execute(struct qmp_client *c, const char *command, json_object *args, int timeout_ms,
                       json_object **ret_value, struct qmp_error *ret_error, struct verr *e);

/* Decides whether a queued or arriving event is the one waited for. event is the whole frame
 * ({"event", "data", "timestamp"}); data is its "data" object or NULL. */
typedef bool (*qmp_event_match)(json_object *event, json_object *data, void *userdata);

/* Waits up to timeout_ms for an event called name for which match (may be NULL: any) returns
 * true. Queued events are looked at first, oldest first. The matching event is taken out of the
 * queue and handed to *ret_event (if not NULL; a new reference). Events that do not match stay
 * queued, so waiting for one thing never loses another. */
int qmp_client_wait_event(struct qmp_client *c, const char *name, qmp_event_match match, void *userdata,
                          int timeout_ms, json_object **ret_event, struct verr *e);

/* A ready-made match: the event's data has the string member key equal to value. Pass a
 * struct qmp_match_string as userdata. */
struct qmp_match_string {
        const char *key;
        const char *value;
};
bool qmp_match_data_string(json_object *event, json_object *data, void *userdata);

/* Number of events queued, and the number dropped because the queue was full. */
size_t qmp_client_queued_events(const struct qmp_client *c);
unsigned qmp_client_dropped_events(const struct qmp_client *c);

/* The QEMU version from the greeting, e.g. "7.2.22" (empty string when it did not say). */
const char *qmp_client_qemu_version(const struct qmp_client *c);

/* Credentials of the QEMU process (SO_PEERCRED at connect time): sockets QEMU has to open,
 * such as a virtiofsd socket, must be reachable by this UID. */
uid_t qmp_client_peer_uid(const struct qmp_client *c);
gid_t qmp_client_peer_gid(const struct qmp_client *c);

/* True once the connection is unusable (closed by QEMU, write error, malformed data). */
bool qmp_client_is_dead(const struct qmp_client *c);
