/* home-export-test.h: what the two home-export test programs (test-home-export.c and
 * test-home-export-errors.c) share, on top of export-test.h: the users alice, bob and carol
 * (homes under /run/home, made by home_export_test_setup()), export and unexport parameters for them, what
 * QEMU has, the check that nothing of an export is left, a fresh VM, the q35 port lists and the
 * teardown after each test. The functions fail the running cmocka test on errors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "export-test.h"
#include "home-export.h"
#include "verr.h"

struct user {
        const char *name;
        uid_t host_uid;
        gid_t host_gid;
        uid_t guest_uid;
        gid_t guest_gid;
        char home[128];
};

extern struct user alice, bob, carol;

/* What both programs' main() does first: require QEMU, enter a private /run, remove what an
 * earlier, killed run may have left, and make the three homes. SIGPIPE is not ignored: a QEMU
 * that dies must not kill the caller. */
void home_export_test_setup(void);
struct home_export_params params_for(const struct test_qemu *q, const struct user *u);
int unexport(const struct test_qemu *q, const struct user *u, unsigned flags, int unplug_ms, struct verr *e);
/* What QEMU has: 1 if the device (kind "device") or chardev (kind "chardev") with id exists. */
int qemu_has(const struct test_qemu *q, const char *kind, const char *id);
void qemu_command(const struct test_qemu *q, const char *command);
/* The QOM parent_bus of the device id; to be freed. */
char *parent_bus(const struct test_qemu *q, const char *id);
/* The --socket-path=... argument of u's virtiofsd. */
void socket_arg(const struct test_qemu *q, const struct user *u, char *buf, size_t size);
/* Nothing of u's export may be left on the host or in QEMU (in QEMU only when check_qemu). */
void assert_nothing_left(const struct test_qemu *q, const struct user *u, bool check_qemu);
void start_vm(struct test_qemu *q, const char *name, const char *const extra[]);

/* Declared out of order: exports take the ports in natural order of their ids all the same. */
extern const char *const q35_two_ports[];
extern const char *const q35_one_port[];

/* Removes what a test left (test_cleanup()). */
int teardown(void **state);
