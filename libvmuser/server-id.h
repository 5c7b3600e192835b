/* server-id.h: the host IDs unprivileged file servers (virtiofsd) run as.
 *
 * Like Xen's "depriv" QEMU users, every export gets a host UID of its own, with the GID of the
 * same number, so that no two file servers, and no real user, share an ID (a file server could
 * otherwise signal or trace another one, or own files a user owns). They come from a range
 * reserved for vmuser: SERVER_ID_BASE .. SERVER_ID_BASE + SERVER_ID_COUNT - 1, i.e.
 * 1879048192 .. 1879113727 (0x70000000 + 64 Ki), which systemd's UID allocation notes
 * (systemd.io/UIDS-GIDS) leave unused: above the container ranges (up to 0x6FFFFFFF), below
 * the "foreign" range of newer systemd (0x7FFE0000) and below 2^31.
 *
 * Claim: for each candidate ID in order, skip it when NSS knows it as a user or a group, or
 * when /etc/subuid or /etc/subgid hands it to somebody (a range of the same numbers would
 * otherwise be somebody's containers), then create SERVER_ID_DIR/ID with O_EXCL, which is the
 * claim itself (it names its export and the process that claimed it). Release removes that
 * file. A claim left behind (a crash, a virtiofsd that died and was never detached) is stale
 * once its claimer is gone and no process runs as the ID; the next claim takes it over. */
#pragma once

#include <sys/types.h>

#include "verr.h"

#define SERVER_ID_BASE 1879048192u /* 0x70000000 */
#define SERVER_ID_COUNT 65536u
#define SERVER_ID_DIR "/run/vmuser/server-ids"

/* Claims a free ID for the export named by owner (written into the claim: a path). */
int server_id_claim(const char *owner, uid_t *ret, struct verr *e);

/* server_id_claim() in the claim directory open as dir_fd (tests use a scratch one). */
int server_id_claim_at(int dir_fd, const char *owner, uid_t *ret, struct verr *e);

/* Releases a claimed ID; 0 also when it was not claimed. With owner (the claim's owner, as
 * given to server_id_claim()), a claim that names another owner is left alone: it was taken over
 * as stale since. -EINVAL outside the range. */
int server_id_release(uid_t id, const char *owner);

/* server_id_release() in the claim directory open as dir_fd. */
int server_id_release_at(int dir_fd, uid_t id, const char *owner);

/* Whether id is in vmuser's range and free of real users, groups and subordinate ranges (the
 * checks of server_id_claim(), without claiming). */
int server_id_is_usable(uid_t id);
