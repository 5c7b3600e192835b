/* vm.c: VM argument -> socket paths (see vm.h). No file system access: whether the sockets
 * exist is found out when connecting, where the error can say what is missing. A relative
 * directory is made absolute (the home export keeps state below it and insists on that). */
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "vmuser.h"

#define VM_NAME_MAX 128

static bool vm_name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > VM_NAME_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '_' || *p == '-' || *p == '.'))
                        return false;
        return true;
}

void vm_done(struct vm *v) {
        free(v->label);
        free(v->dir);
        free(v->agent_socket);
        free(v->qmp_socket);
        *v = (struct vm) {};
}

int vm_resolve(const char *spec, const char *agent_override, const char *qmp_override, struct vm *ret,
               struct verr *e) {
        struct vm v = {};
        int r = -ENOMEM;

        if (!spec || !*spec)
                return verr_set(e, -EINVAL, "the VM argument is empty");

        if (strchr(spec, '/') || streq(spec, ".") || streq(spec, "..")) {
                size_t n = strlen(spec);
                while (n > 1 && spec[n - 1] == '/')
                        n--;
                if (spec[0] == '/')
                        v.dir = strndup(spec, n);
                else {
                        _cleanup_free_ char *cwd = getcwd(NULL, 0);
                        if (!cwd)
                                return verr_set(e, negative_errno(), "cannot resolve the VM directory '%s': %m", spec);
                        if (asprintf(&v.dir, "%s/%.*s", streq(cwd, "/") ? "" : cwd, (int) n, spec) < 0)
                                v.dir = NULL;
                }
        } else {
                const char *base = getenv("VMUSER_VM_DIR");
                if (!base || !*base)
                        base = VMUSER_VM_DIR_DEFAULT;
                if (!vm_name_is_valid(spec))
                        return verr_set(e, -EINVAL, "'%s' is neither a directory (it has no '/') nor a valid VM name "
                                                    "([A-Za-z0-9._-], at most %d characters, not starting with '.' or '-')",
                                        spec, VM_NAME_MAX);
                if (asprintf(&v.dir, "%s/%s", base, spec) < 0)
                        v.dir = NULL;
        }
        if (!v.dir)
                goto fail;

        v.label = strdup(spec);
        if (!v.label)
                goto fail;
        if (agent_override)
                v.agent_socket = strdup(agent_override);
        else if (asprintf(&v.agent_socket, "%s/agent.sock", streq(v.dir, "/") ? "" : v.dir) < 0)
                v.agent_socket = NULL;
        if (qmp_override)
                v.qmp_socket = strdup(qmp_override);
        else if (asprintf(&v.qmp_socket, "%s/qmp.sock", streq(v.dir, "/") ? "" : v.dir) < 0)
                v.qmp_socket = NULL;
        if (!v.agent_socket || !v.qmp_socket)
                goto fail;

        *ret = v;
        return 0;
fail:
        vm_done(&v);
        return r;
}
