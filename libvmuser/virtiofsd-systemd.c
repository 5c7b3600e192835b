/* virtiofsd-systemd.c: virtiofsd as a transient systemd service (see virtiofsd.h).
 *
 * Flow: virtiofsd_start() -> virtiofsd_unit_start(): StartTransientUnit over the system bus with
 * ExecStart= and the sandboxing properties below (the caller wrote the unit's name to
 * virtiofsd.unit first) -> virtiofsd_unit_state() answers ActiveState and MainPID for the
 * readiness poll and `vmuser list` -> virtiofsd_unit_stop(): StopUnit, then polls until the
 * unit is inactive or failed (a failed one is reset, so its name can be used again). */
#include "virtiofsd-internal.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "macro.h"
#include "time-util.h"


#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_BUS_TIMEOUT_USEC (25ull * 1000000ull)

static int bus_error(struct verr *e, int r, const sd_bus_error *error, const char *what) {
        if (error && sd_bus_error_is_set(error))
                return verr_set(e, r, "%s: %s", what, error->message ? error->message : error->name);
        return verr_set(e, r, "%s: %s", what, strerror(-r));
}

/* Capabilities virtiofsd may ever need: file access on behalf of the guest, its namespace
 * sandbox (sys_admin, sys_chroot, setpcap to drop the rest) and raising its fd limit. */
uint64_t virtiofsd_capability_bounding_set(void) {
        static const int caps[] = { CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
                                    CAP_FSETID, CAP_SETGID,       CAP_SETUID,          CAP_SETPCAP,
                                    CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SYS_RESOURCE };
        uint64_t mask = 0;
        for (size_t i = 0; i < ELEMENTSOF(caps); i++)
                mask |= UINT64_C(1) << caps[i];
        return mask;
}

int virtiofsd_unit_start(const char *unit, char **argv, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char description[256];
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MANAGER, "StartTransientUnit");
        if (r < 0)
                return bus_error(e, r, NULL, "cannot build StartTransientUnit");
        snprintf(description, sizeof(description), "vmuser virtiofsd (%s)", argv[1]);

        r = sd_bus_message_append(m, "ss", unit, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(
                        m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)",
                        "Description", "s", description,
                        "Type", "s", "exec",
                        "CollectMode", "s", "inactive-or-failed",
                        "StandardInput", "s", "null",
                        "StandardOutput", "s", "journal",
                        "StandardError", "s", "journal",
                        "UMask", "u", (uint32_t) 0077,
                        "NoNewPrivileges", "b", 1,
                        "PrivateNetwork", "b", 1,
                        "PrivateDevices", "b", 1,
                        "ProtectKernelModules", "b", 1,
                        "ProtectKernelLogs", "b", 1,
                        "ProtectClock", "b", 1,
                        "ProtectHostname", "b", 1,
                        "RestrictRealtime", "b", 1,
                        "LockPersonality", "b", 1,
                        "MemoryDenyWriteExecute", "b", 1,
                        "CapabilityBoundingSet", "t", virtiofsd_capability_bounding_set());
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)", "RestrictAddressFamilies", "(bas)", 1, 1, "AF_UNIX",
                                          "SystemCallArchitectures", "as", 1, "native");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (int i = 0; i < 4 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m); /* the a(sv) */
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot build StartTransientUnit");

        r = sd_bus_call(bus, m, SD_BUS_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return bus_error(e, r, &error, "systemd refused to start virtiofsd");
        return 0;
}

/* The unit's ActiveState ("" when systemd does not know it) and main PID. */
int virtiofsd_unit_state(const char *unit, char *state, size_t size, pid_t *ret_pid, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *active = NULL;
        const char *object;
        uint32_t pid = 0;
        int r;

        state[0] = '\0';
        *ret_pid = 0;
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "GetUnit", &error, &reply, "s", unit);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                        return 0;
                return bus_error(e, r, &error, "cannot look up the virtiofsd unit");
        }
        r = sd_bus_message_read(reply, "o", &object);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot read GetUnit's reply");
        r = sd_bus_get_property_string(bus, SD_DEST, object, "org.freedesktop.systemd1.Unit", "ActiveState", &error,
                                       &active);
        if (r < 0)
                return bus_error(e, r, &error, "cannot read the virtiofsd unit's state");
        (void) sd_bus_get_property_trivial(bus, SD_DEST, object, "org.freedesktop.systemd1.Service", "MainPID", NULL,
                                           'u', &pid);
        snprintf(state, size, "%s", active);
        *ret_pid = (pid_t) pid;
        return 0;
}

int virtiofsd_unit_stop(const char *unit, int timeout_ms, struct verr *e) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int64_t deadline = now_ms() + timeout_ms + STOP_KILL_WAIT_MS;
        char state[32];
        pid_t pid;
        int r;

        r = virtiofsd_unit_state(unit, state, sizeof(state), &pid, e);
        if (r < 0)
                return r;
        if (!state[0] || streq(state, "inactive") || streq(state, "failed")) {
                if (streq(state, "failed") && sd_bus_open_system(&bus) >= 0)
                        (void) sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", NULL, NULL, "s",
                                                  unit);
                return 0;
        }
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return bus_error(e, r, NULL, "cannot connect to the system bus");
        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "StopUnit", &error, NULL, "ss", unit, "replace");
        if (r < 0 && !sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                return bus_error(e, r, &error, "systemd refused to stop virtiofsd");
        /* StopUnit only queues a job (TimeoutStopSec= ends in SIGKILL); wait for it to finish. */
        for (;;) {
                r = virtiofsd_unit_state(unit, state, sizeof(state), &pid, e);
                if (r < 0)
                        return r;
                if (!state[0] || streq(state, "inactive") || streq(state, "failed"))
                        return 1;
                if (ms_left(deadline) == 0)
                        return verr_set(e, -ETIMEDOUT, "virtiofsd unit %s did not stop in time", unit);
                sleep_ms(POLL_STEP_MS * 5);
        }
}

bool virtiofsd_unit_name_is_valid(const char *unit) {
        size_t n = strlen(unit);
        if (n < 9 || n >= 256 || strcmp(unit + n - 8, ".service") != 0)
                return false;
        for (const char *p = unit; *p; p++)
                if (!(((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) ||
                      strchr(":-_.", *p)))
                        return false;
        return true;
}
