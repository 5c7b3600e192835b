/* test-libvirt-xml.c: what the libvirt backend reads from a domain XML (libvmuser/libvirt-xml.c):
 * the size bound before parsing, shared memory, free hot-plug root ports, the vmuser channel,
 * a filesystem of ours and its bus, and the DAC label (the IDs the socket of vmuser's own
 * virtiofsd is handed to). The XML is shaped like libvirt 9.0's live XML of the libvirt-e2e
 * domain. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "libvirt-xml.h"

static const char live_xml[] =
        "<domain type='qemu' id='3'>"
        "<name>t</name>"
        "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
        "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        "<devices>"
        "<controller type='pci' index='0' model='pcie-root'><alias name='pcie.0'/></controller>"
        "<controller type='pci' index='1' model='pcie-root-port'><alias name='pci.1'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></controller>"
        "<controller type='pci' index='2' model='pcie-root-port'><alias name='pci.2'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/></controller>"
        "<controller type='pci' index='3' model='pcie-root-port'><target hotplug='off'/><alias name='pci.3'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x2'/></controller>"
        "<controller type='pci' index='4' model='pcie-root-port'><alias name='pci.4'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x3'/></controller>"
        "<disk type='file' device='disk'><target dev='vda' bus='virtio'/>"
        "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></disk>"
        "<filesystem type='mount'><driver type='virtiofs' queue='1024'/>"
        "<source socket='/run/vmuser/libvirt/U/homes/alice/virtiofsd.sock'/><target dir='vmuser-alice'/>"
        "<alias name='ua-vmuser-fs-alice'/>"
        "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></filesystem>"
        "<channel type='unix'><source mode='bind' path='/run/vmuser/libvirt/U/agent.sock'/>"
        "<target type='virtio' name='org.vmuser.agent.0' state='connected'/><alias name='ua-vmuser-agent'/></channel>"
        "</devices>"
        "<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+108</label>"
        "<imagelabel>+64055:+108</imagelabel></seclabel>"
        "</domain>";

static xmlDocPtr parse(const char *text) {
        struct verr e = {};
        xmlDocPtr doc = NULL;

        assert_int_equal(libvirt_xml_parse(text, &doc, &e), 0);
        assert_non_null(doc);
        return doc;
}

static void test_domain_facts(void **state) {
        _cleanup_xml_doc_ xmlDocPtr doc = parse(live_xml);
        char machine[64], alias[64], bus[32];

        assert_true(libvirt_xml_has_shared_memory(doc));
        assert_true(libvirt_xml_machine_is_q35(doc, machine, sizeof(machine)));
        assert_string_equal(machine, "pc-q35-7.2");
        /* pci.1 holds the disk, pci.2 the filesystem, pci.3 has hotplug off: pci.4 is left. */
        assert_int_equal(libvirt_xml_free_root_ports(doc, alias, sizeof(alias)), 1);
        assert_string_equal(alias, "pci.4");
        assert_true(libvirt_xml_has_filesystem(doc, "ua-vmuser-fs-alice", "vmuser-alice"));
        assert_true(libvirt_xml_has_filesystem(doc, "ua-vmuser-fs-other", "vmuser-alice"));
        assert_false(libvirt_xml_has_filesystem(doc, "ua-vmuser-fs-bob", "vmuser-bob"));
        libvirt_xml_filesystem_bus(doc, "ua-vmuser-fs-alice", bus, sizeof(bus));
        assert_string_equal(bus, "pci.2");
        libvirt_xml_filesystem_bus(doc, "ua-vmuser-fs-bob", bus, sizeof(bus));
        assert_string_equal(bus, "");
}

static void test_channel(void **state) {
        _cleanup_xml_doc_ xmlDocPtr doc = parse(live_xml);
        char type[32], mode[32], path[128], small[8];

        assert_int_equal(libvirt_xml_channel(doc, "org.vmuser.agent.0", type, sizeof(type), mode, sizeof(mode), path,
                                             sizeof(path)),
                         1);
        assert_string_equal(type, "unix");
        assert_string_equal(mode, "bind");
        assert_string_equal(path, "/run/vmuser/libvirt/U/agent.sock");
        assert_int_equal(libvirt_xml_channel(doc, "org.qemu.guest_agent.0", type, sizeof(type), mode, sizeof(mode),
                                             path, sizeof(path)),
                         0);
        assert_int_equal(libvirt_xml_channel(doc, "org.vmuser.agent.0", type, sizeof(type), mode, sizeof(mode), small,
                                             sizeof(small)),
                         -ENAMETOOLONG);
}

static void test_dac_ids(void **state) {
        static const struct {
                const char *label;
                int ret;
                uid_t uid;
                gid_t gid;
        } cases[] = {
                { "+64055:+108", 0, 64055, 108 },
                { "+0:+0", 0, 0, 0 },
                { "libvirt-qemu:kvm", -EBADMSG, 0, 0 },
                { "+64055", -EBADMSG, 0, 0 },
                { "+64055:108", -EBADMSG, 0, 0 },
                { "+64055:+108x", -EBADMSG, 0, 0 },
                { "+:+1", -EBADMSG, 0, 0 },
                { "+4294967295:+1", -EBADMSG, 0, 0 },
                { "+99999999999999999999:+1", -EBADMSG, 0, 0 },
        };
        {
                _cleanup_xml_doc_ xmlDocPtr doc = parse(live_xml);
                uid_t u = 1;
                gid_t g = 1;
                assert_int_equal(libvirt_xml_dac_ids(doc, &u, &g), 0);
                assert_int_equal(u, 64055);
                assert_int_equal(g, 108);
        }
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char xml[256];
                uid_t u = 1;
                gid_t g = 1;

                snprintf(xml, sizeof(xml),
                         "<domain><seclabel type='dynamic' model='selinux'><label>x</label></seclabel>"
                         "<seclabel type='dynamic' model='dac'><label>%s</label></seclabel></domain>",
                         cases[i].label);
                _cleanup_xml_doc_ xmlDocPtr doc = parse(xml);
                assert_int_equal(libvirt_xml_dac_ids(doc, &u, &g), cases[i].ret);
                if (cases[i].ret == 0) {
                        assert_int_equal(u, cases[i].uid);
                        assert_int_equal(g, cases[i].gid);
                }
        }
        {
                _cleanup_xml_doc_ xmlDocPtr doc = parse("<domain><devices/></domain>");
                uid_t u;
                gid_t g;
                assert_int_equal(libvirt_xml_dac_ids(doc, &u, &g), -ENOENT);
        }
}

static void test_bounds(void **state) {
        struct verr e = {};
        xmlDocPtr doc = NULL;
        size_t n = LIBVIRT_XML_MAX_SIZE + 16;
        char *big = malloc(n + 1);

        assert_non_null(big);
        memset(big, ' ', n);
        memcpy(big, "<domain>", 8);
        memcpy(big + n - 9, "</domain>", 9);
        big[n] = '\0';
        assert_int_equal(libvirt_xml_parse(big, &doc, &e), -EMSGSIZE);
        assert_null(doc);
        free(big);
        assert_int_equal(libvirt_xml_parse("<domain><unclosed></domain>", &doc, &e), -EBADMSG);
        assert_null(doc);
        /* No network, no external entities: an XXE attempt does not pull a file in. */
        {
                _cleanup_xml_doc_ xmlDocPtr d = parse("<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/hostname'>]>"
                                                      "<domain><name>&x;</name></domain>");
                char name[256];
                assert_true(libvirt_xml_string(d, NULL, "/domain/name", name, sizeof(name)) >= 0);
                assert_string_equal(name, "");
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_domain_facts),
                cmocka_unit_test(test_channel),
                cmocka_unit_test(test_dac_ids),
                cmocka_unit_test(test_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
