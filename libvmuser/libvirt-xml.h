/* libvirt-xml.h: reading a libvirt domain XML (libxml2 XPath) for the libvirt backend.
 *
 * vm-backend-libvirt.c asks libvirt for the live (or stored) domain XML and hands the text to
 * libvirt_xml_parse(), which bounds it before libxml2 builds a tree (no network, no entity
 * expansion); everything the backend wants to know about the domain is then one question here:
 * shared memory, the machine type, free hot-plug root ports, the vmuser channel, a filesystem of
 * ours and the controller it sits behind, the DAC label (the IDs its QEMU runs as). Nothing here
 * talks to libvirt. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "macro.h"
#include "verr.h"

/* The live XML of a domain with a few hundred devices is some 100 KiB. */
#define LIBVIRT_XML_MAX_SIZE (2u * 1024u * 1024u)

/* Parses text (NUL-terminated, as libvirt returns it). -EMSGSIZE beyond LIBVIRT_XML_MAX_SIZE,
 * -EBADMSG when it does not parse. */
int libvirt_xml_parse(const char *text, xmlDocPtr *ret, struct verr *e);

void libvirt_xml_doc_freep(xmlDocPtr *d);
#define _cleanup_xml_doc_ _cleanup_(libvirt_xml_doc_freep)
void libvirt_xml_object_freep(xmlXPathObjectPtr *o);
#define _cleanup_xpath_object_ _cleanup_(libvirt_xml_object_freep)

/* Evaluates expr relative to node (NULL: the document); NULL on failure. */
xmlXPathObjectPtr libvirt_xml_eval(xmlDocPtr doc, xmlNodePtr node, const char *expr);
/* string(expr) into buf; its length (0: absent or empty), -ENAMETOOLONG when it does not fit. */
int libvirt_xml_string(xmlDocPtr doc, xmlNodePtr node, const char *expr, char *buf, size_t size);
/* count(expr); -EBADMSG when it cannot be evaluated. */
int libvirt_xml_count(xmlDocPtr doc, const char *expr);

/* memoryBacking access mode='shared', or a NUMA cell with memAccess='shared'. */
bool libvirt_xml_has_shared_memory(xmlDocPtr doc);
/* The machine type into machine; whether it is a q35 one. */
bool libvirt_xml_machine_is_q35(xmlDocPtr doc, char *machine, size_t size);
/* The number of pcie-root-ports that can take a hot-plugged device (hotplug not off, nothing
 * addressed behind them); ret_alias (optional) gets the first free one's alias. */
int libvirt_xml_free_root_ports(xmlDocPtr doc, char *ret_alias, size_t alias_size);

/* The first <channel> with a virtio target named port: 1 and its type, source mode and source
 * path (each "" when absent); 0 when there is none; -ENAMETOOLONG when the path does not fit. */
int libvirt_xml_channel(xmlDocPtr doc, const char *port, char *type, size_t type_size, char *mode,
                        size_t mode_size, char *path, size_t path_size);

/* Whether a <filesystem> with this alias or this target (tag) is there. */
bool libvirt_xml_has_filesystem(xmlDocPtr doc, const char *alias, const char *tag);
/* The alias of the controller the filesystem with this alias sits behind, e.g. "pci.5", or
 * "bus N"; "" when unknown. */
void libvirt_xml_filesystem_bus(xmlDocPtr doc, const char *alias, char *buf, size_t size);

/* The IDs the domain's QEMU runs as, from the live XML's DAC label (<seclabel model='dac'>
 * <label>+UID:+GID</label>). -ENOENT when there is none (no DAC driver, not running), -EBADMSG
 * when it is not "+UID:+GID". */
int libvirt_xml_dac_ids(xmlDocPtr doc, uid_t *ret_uid, gid_t *ret_gid);
