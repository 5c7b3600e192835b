/* attach-options.c: the options of `vmuser attach` that main.c cannot check alone, and what
 * they expand to per user: %u templates (--home-dir, --home-tag, --home-source) and the home
 * spec sent with the record ({"tag", "fstype"[, "options": "ro"]}, checked here as the agent
 * will check it, so a typo is a usage error before anything is touched). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attach.h"
#include "home-export.h"
#include "home-spec.h"
#include "json-util.h"
#include "macro.h"
#include "names.h"

bool template_has_user(const char *tmpl) {
        for (const char *p = tmpl; *p; p++)
                if (p[0] == '%' && p[1] != '\0') {
                        if (p[1] == 'u')
                                return true;
                        p++;
                }
        return false;
}

int template_expand(const char *tmpl, const char *name, char **ret) {
        size_t n = 0, name_len = strlen(name);
        char *out;

        for (const char *p = tmpl; *p; p++) {
                if (p[0] == '%' && p[1] == 'u') {
                        n += name_len;
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        n++;
                        p++;
                } else
                        n++;
        }
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        n = 0;
        for (const char *p = tmpl; *p; p++) {
                if (p[0] == '%' && p[1] == 'u') {
                        memcpy(out + n, name, name_len);
                        n += name_len;
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        out[n++] = '%';
                        p++;
                } else
                        out[n++] = *p;
        }
        out[n] = '\0';
        *ret = out;
        return 0;
}

bool attach_exports(const struct attach_options *o) {
        return !o->no_home && !o->home_tag;
}

int attach_build_home_spec(const struct attach_options *o, const char *name, json_object **ret, struct verr *e) {
        _cleanup_json_ json_object *spec = NULL;
        _cleanup_free_ char *tag = NULL;
        struct home_spec parsed;
        const char *fstype = "virtiofs";
        int r;

        *ret = NULL;
        if (o->no_home)
                return 0;
        if (o->home_tag) {
                r = template_expand(o->home_tag, name, &tag);
                if (r < 0)
                        return r;
                if (o->home_fstype)
                        fstype = o->home_fstype;
        } else {
                tag = malloc(HOME_SPEC_TAG_MAX + 1);
                if (!tag)
                        return -ENOMEM;
                r = home_export_tag(name, tag, HOME_SPEC_TAG_MAX + 1);
                if (r < 0)
                        return verr_set(e, r, "cannot make the virtio-fs tag for '%s'", name);
        }
        spec = json_object_new_object();
        if (!spec || json_object_object_add(spec, "tag", json_object_new_string(tag)) < 0 ||
            json_object_object_add(spec, "fstype", json_object_new_string(fstype)) < 0 ||
            (o->read_only && json_object_object_add(spec, "options", json_object_new_string("ro")) < 0))
                return -ENOMEM;
        /* The agent checks it again; checking here turns a typo into a usage error. */
        r = home_spec_from_json(spec, &parsed, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(spec);
        return 0;
}

int attach_check_options(const struct attach_options *o, struct verr *e) {
        int r;

        if (o->has_uid && o->n_users > 1)
                return verr_set(e, -EINVAL, "--uid sets the guest UID of one user; attach one user per invocation");
        if (o->home_dir && o->n_users > 1 && !template_has_user(o->home_dir))
                return verr_set(e, -EINVAL, "--home-dir '%s' would give %zu users the same home; use %%u for the user name",
                                o->home_dir, o->n_users);
        if (o->home_tag && !o->no_home && o->n_users > 1 && !template_has_user(o->home_tag) &&
            (!o->home_fstype || streq(o->home_fstype, "virtiofs")))
                return verr_set(e, -EINVAL, "--home-tag '%s' would give %zu users the same virtiofs tag; use %%u for the "
                                            "user name", o->home_tag, o->n_users);
        if (o->no_home && (o->home_tag || o->home_source || o->read_only))
                return verr_set(e, -EINVAL, "--no-home exports and sends no home; it cannot be combined with %s",
                                o->home_tag ? "--home-tag" : o->home_source ? "--home-source" : "--read-only");
        if (o->home_tag && o->home_source)
                return verr_set(e, -EINVAL, "--home-source names what to export, --home-tag sends a tag without "
                                            "exporting: use one of them");
        if (o->home_source && o->n_users > 1 && !template_has_user(o->home_source))
                return verr_set(e, -EINVAL, "--home-source '%s' would export one directory for %zu users; use %%u for "
                                            "the user name", o->home_source, o->n_users);
        for (char **g = o->groups; g && *g; g++)
                if (!name_is_valid(*g))
                        return verr_set(e, -EINVAL, "--group '%s' is not a valid group name", *g);

        for (size_t i = 0; i < o->n_users; i++) {
                const char *name = o->users[i];
                if (!name_is_valid(name))
                        continue; /* reported for that user when it is resolved */
                if (o->home_dir) {
                        _cleanup_free_ char *home = NULL;
                        r = template_expand(o->home_dir, name, &home);
                        if (r < 0)
                                return r;
                        if (!home_path_is_valid(home))
                                return verr_set(e, -EINVAL, "--home-dir: '%s' is not a normalized absolute path under "
                                                            "/home, /run/vmhost, /var/home, /srv or /mnt", home);
                }
                if (o->home_source) {
                        _cleanup_free_ char *source = NULL;
                        r = template_expand(o->home_source, name, &source);
                        if (r < 0)
                                return r;
                        if (!path_is_normalized_absolute(source))
                                return verr_set(e, -EINVAL, "--home-source: '%s' is not a normalized absolute path",
                                                source);
                }
                _cleanup_json_ json_object *spec = NULL;
                r = attach_build_home_spec(o, name, &spec, e);
                if (r < 0)
                        return r;
        }
        return 0;
}
