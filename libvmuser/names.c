/* names.c: user/group name and ID rules (see names.h). Pure functions, no I/O. */
#include "names.h"

#include <errno.h>
#include <string.h>

#include "macro.h"

bool name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > VMUSER_NAME_MAX)
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

bool name_is_reserved(const char *name) {
        static const char *const reserved[] = {
                "root", "nobody", "nogroup", "daemon", "bin", "sys", "sync", "adm", "wheel",
                "sudo", "shadow", "systemd-journal", "systemd-network", "systemd-resolve",
                "systemd-timesync", "messagebus", "sshd", "_apt", "users", "staff", "disk",
                "kmem", "tty", "utmp", "input", "video", "audio",
        };
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (streq(name, reserved[i]))
                        return true;
        return false;
}

bool id_is_special(uint32_t id) {
        return id == 0 || id == 65534 || id == 65535 || id == UINT32_MAX;
}

int id_parse(const char *s, uint32_t *ret) {
        uint64_t v = 0;

        if (!s || !*s || strlen(s) > 10)
                return -EINVAL;
        if (s[0] == '0' && s[1] != '\0')
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}
