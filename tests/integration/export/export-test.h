/* export-test.h: what the home-export tests share: a real QEMU to talk to, scratch VM
 * directories, and process checks.
 *
 * The QEMU runs without a guest OS (-S keeps it paused before the firmware), with TCG, no
 * network, no display, and its QMP socket at VM_DIR/qmp.sock, as the VM launcher would set it
 * up. That is enough for the QMP handshake, hot-plug with a real virtiofsd, and the error paths;
 * unplug needs the guest's cooperation, which is exactly what these tests show is missing. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#define TEST_QEMU "qemu-system-x86_64"

struct test_qemu {
        pid_t pid;
        char vm_dir[256];
        char qmp[300];
};

/* Exits with 77 (skip) when QEMU or root privileges are missing. */
void test_require_qemu(void);

/* VM directories of these tests are /run/vmuser/vm/export-test-NAME. */
#define TEST_VM_PREFIX "export-test-"

/* Makes a fresh root-owned 0700 directory /run/vmuser/vm/export-test-NAME (removing an old
 * one); the path goes to buf. */
void test_make_vm_dir(const char *name, char *buf, size_t size);

/* Starts QEMU with the common options plus extra (NULL-terminated), QMP at vm_dir/qmp.sock,
 * output in vm_dir/qemu.log, and waits until the QMP socket exists. */
void test_qemu_start(struct test_qemu *q, const char *vm_dir, const char *const extra[]);
void test_qemu_stop(struct test_qemu *q);
/* SIGKILL, as if QEMU crashed. */
void test_qemu_kill(struct test_qemu *q);

/* The options of a q35 VM with shared memory and n_ports spare pcie-root-ports rp1..rpN. */
#define TEST_Q35_SHARED "-machine", "q35,memory-backend=mem", "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-m", "256M"
#define TEST_PC_SHARED "-machine", "pc,memory-backend=mem", "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-m", "256M"
#define TEST_ROOT_PORT(n) "-device", "pcie-root-port,id=rp" #n ",bus=pcie.0,chassis=" #n ",slot=" #n

/* Kills every QEMU started by test_qemu_start() and not stopped, and every virtiofsd serving a
 * VM directory of these tests: the teardown after a failed test. (QEMU also dies with the test
 * process: PR_SET_PDEATHSIG.) */
void test_cleanup(void);

/* Number of processes whose command line has exactly the argument arg. */
int test_count_processes_with_arg(const char *arg);
/* Sends sig to every process whose command line has exactly the argument arg and waits until
 * they have exited (sig must be fatal); returns how many were signalled. */
int test_kill_processes_with_arg(const char *arg, int sig);
/* How many processes have an argument starting with prefix. */
int test_count_processes_with_arg_prefix(const char *prefix);

/* Milliseconds on the monotonic clock. */
long long test_now_ms(void);
