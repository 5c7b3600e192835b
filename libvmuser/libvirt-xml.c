/* libvirt-xml.c: reading a libvirt domain XML (see libvirt-xml.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvirt-xml.h"

int libvirt_xml_parse(const char *text, xmlDocPtr *ret, struct verr *e) {
        size_t n = strnlen(text, LIBVIRT_XML_MAX_SIZE + 1);
        xmlDocPtr doc;

        /* Bounded before libxml2 builds a tree of it (doc/PROTOCOL.txt, "Reply limits"). */
        if (n > LIBVIRT_XML_MAX_SIZE)
                return verr_set(e, -EMSGSIZE, "libvirt returned a domain XML larger than %u bytes: not parsed",
                                LIBVIRT_XML_MAX_SIZE);
        doc = xmlReadMemory(text, (int) n, "domain.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return verr_set(e, -EBADMSG, "libvirt returned domain XML that does not parse");
        *ret = doc;
        return 0;
}

void libvirt_xml_doc_freep(xmlDocPtr *d) {
        if (*d)
                xmlFreeDoc(*d);
}

void libvirt_xml_object_freep(xmlXPathObjectPtr *o) {
        if (*o)
                xmlXPathFreeObject(*o);
}

static void xpath_context_freep(xmlXPathContextPtr *c) {
        if (*c)
                xmlXPathFreeContext(*c);
}

xmlXPathObjectPtr libvirt_xml_eval(xmlDocPtr doc, xmlNodePtr node, const char *expr) {
        _cleanup_(xpath_context_freep) xmlXPathContextPtr ctx = xmlXPathNewContext(doc);

        if (!ctx)
                return NULL;
        if (node)
                ctx->node = node;
        return xmlXPathEvalExpression((const xmlChar *) expr, ctx);
}

int libvirt_xml_string(xmlDocPtr doc, xmlNodePtr node, const char *expr, char *buf, size_t size) {
        _cleanup_free_ char *full = NULL;
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;
        size_t n;

        buf[0] = '\0';
        if (asprintf(&full, "string(%s)", expr) < 0)
                return -ENOMEM;
        o = libvirt_xml_eval(doc, node, full);
        if (!o || o->type != XPATH_STRING || !o->stringval)
                return 0;
        n = strlen((const char *) o->stringval);
        if (n >= size)
                return -ENAMETOOLONG;
        memcpy(buf, o->stringval, n + 1);
        return (int) n;
}

int libvirt_xml_count(xmlDocPtr doc, const char *expr) {
        _cleanup_free_ char *full = NULL;
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;

        if (asprintf(&full, "count(%s)", expr) < 0)
                return -ENOMEM;
        o = libvirt_xml_eval(doc, NULL, full);
        if (!o || o->type != XPATH_NUMBER)
                return -EBADMSG;
        return (int) o->floatval;
}

bool libvirt_xml_has_shared_memory(xmlDocPtr doc) {
        return libvirt_xml_count(doc, "/domain/memoryBacking/access[@mode='shared']") > 0 ||
               libvirt_xml_count(doc, "/domain/cpu/numa/cell[@memAccess='shared']") > 0;
}

bool libvirt_xml_machine_is_q35(xmlDocPtr doc, char *machine, size_t size) {
        if (libvirt_xml_string(doc, NULL, "/domain/os/type/@machine", machine, size) < 0)
                machine[0] = '\0';
        return strstr(machine, "q35") != NULL;
}

int libvirt_xml_free_root_ports(xmlDocPtr doc, char *ret_alias, size_t alias_size) {
        _cleanup_xpath_object_ xmlXPathObjectPtr ports = NULL, addrs = NULL;
        bool used[256] = {};
        int n = 0;

        if (ret_alias)
                ret_alias[0] = '\0';
        addrs = libvirt_xml_eval(doc, NULL, "/domain/devices/*/address[@type='pci']");
        for (int i = 0; addrs && addrs->nodesetval && i < addrs->nodesetval->nodeNr; i++) {
                char bus[16];
                if (libvirt_xml_string(doc, addrs->nodesetval->nodeTab[i], "@bus", bus, sizeof(bus)) > 0) {
                        unsigned long v = strtoul(bus, NULL, 0);
                        if (v < ELEMENTSOF(used))
                                used[v] = true;
                }
        }
        ports = libvirt_xml_eval(doc, NULL, "/domain/devices/controller[@type='pci'][@model='pcie-root-port']");
        for (int i = 0; ports && ports->nodesetval && i < ports->nodesetval->nodeNr; i++) {
                xmlNodePtr c = ports->nodesetval->nodeTab[i];
                char index[16], hotplug[8];
                unsigned long v;

                if (libvirt_xml_string(doc, c, "@index", index, sizeof(index)) <= 0)
                        continue;
                v = strtoul(index, NULL, 10);
                if (v >= ELEMENTSOF(used) || used[v])
                        continue;
                if (libvirt_xml_string(doc, c, "target/@hotplug", hotplug, sizeof(hotplug)) > 0 &&
                    streq(hotplug, "off"))
                        continue;
                if (n == 0 && ret_alias && libvirt_xml_string(doc, c, "alias/@name", ret_alias, alias_size) <= 0)
                        snprintf(ret_alias, alias_size, "index %lu", v);
                n++;
        }
        return n;
}

int libvirt_xml_channel(xmlDocPtr doc, const char *port, char *type, size_t type_size, char *mode,
                        size_t mode_size, char *path, size_t path_size) {
        _cleanup_xpath_object_ xmlXPathObjectPtr o = NULL;
        char expr[256];
        xmlNodePtr c;
        int k;

        if ((size_t) snprintf(expr, sizeof(expr), "/domain/devices/channel[target/@type='virtio'][target/@name='%s']",
                              port) >= sizeof(expr))
                return -ENAMETOOLONG;
        o = libvirt_xml_eval(doc, NULL, expr);
        if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0)
                return 0;
        c = o->nodesetval->nodeTab[0];
        if (libvirt_xml_string(doc, c, "@type", type, type_size) < 0)
                type[0] = '\0';
        if (libvirt_xml_string(doc, c, "source/@mode", mode, mode_size) < 0)
                mode[0] = '\0';
        k = libvirt_xml_string(doc, c, "source/@path", path, path_size);
        return k < 0 ? k : 1;
}

bool libvirt_xml_has_filesystem(xmlDocPtr doc, const char *alias, const char *tag) {
        char expr[512];

        snprintf(expr, sizeof(expr), "/domain/devices/filesystem[alias/@name='%s' or target/@dir='%s']", alias, tag);
        return libvirt_xml_count(doc, expr) > 0;
}

void libvirt_xml_filesystem_bus(xmlDocPtr doc, const char *alias, char *buf, size_t size) {
        char expr[256], bus[16];

        buf[0] = '\0';
        snprintf(expr, sizeof(expr), "/domain/devices/filesystem[alias/@name='%s']/address/@bus", alias);
        if (libvirt_xml_string(doc, NULL, expr, bus, sizeof(bus)) <= 0)
                return;
        snprintf(expr, sizeof(expr), "/domain/devices/controller[@type='pci'][@index='%lu']/alias/@name",
                 strtoul(bus, NULL, 0));
        if (libvirt_xml_string(doc, NULL, expr, buf, size) <= 0)
                snprintf(buf, size, "bus %s", bus);
}

int libvirt_xml_dac_ids(xmlDocPtr doc, uid_t *ret_uid, gid_t *ret_gid) {
        char label[64];
        unsigned long u, g;
        char *end;

        if (libvirt_xml_string(doc, NULL, "/domain/seclabel[@model='dac']/label", label, sizeof(label)) <= 0)
                return -ENOENT;
        /* "+UID:+GID" (libvirt's numeric form); names ("libvirt-qemu:kvm") are not taken. */
        if (label[0] != '+')
                return -EBADMSG;
        errno = 0;
        u = strtoul(label + 1, &end, 10);
        if (errno || end == label + 1 || end[0] != ':' || end[1] != '+')
                return -EBADMSG;
        const char *gs = end + 2;
        g = strtoul(gs, &end, 10);
        if (errno || end == gs || *end || u >= (uid_t) -1 || g >= (gid_t) -1)
                return -EBADMSG;
        *ret_uid = (uid_t) u;
        *ret_gid = (gid_t) g;
        return 0;
}
