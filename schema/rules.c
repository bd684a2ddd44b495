/*
 * rules.c - validation the OpenAPI keywords cannot express, tied to CRD schema paths.
 * The schema walk in validate.c calls these; tests/unit/test_schema.c checks that every
 * CEL rule in the CRDs has its twin here and that every path here exists in the CRDs.
 */
#include "rules.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- C-only checks (stricter than the CRD pattern that guards them at admission) -- */

/* ACL element: [!] any|none|localhost|localnets|key NAME|ADDRESS[/PREFIX]. */
static void check_acl(const json_t *v, const char *path, val_report_t *rep)
{
    const char *s = json_string_value(v);
    if (s == NULL)
        return;
    const char *p = s;
    if (*p == '!')
        p++;
    while (*p == ' ')
        p++;
    static const char *const words[] = {"any", "none", "localhost", "localnets"};
    for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
        if (strcmp(p, words[i]) == 0)
            return;
    if (strncmp(p, "key ", 4) == 0 && p[4] != '\0')
        return;
    char addr[INET6_ADDRSTRLEN + 8];
    snprintf(addr, sizeof(addr), "%s", p);
    char *slash = strchr(addr, '/');
    long max = strchr(addr, ':') ? 128 : 32;
    if (slash != NULL) {
        *slash = '\0';
        char *end = NULL;
        long prefix = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || prefix < 0 || prefix > max) {
            val_report_add(rep, VAL_ERROR, path, "\"%s\": prefix length must be 0..%ld", s, max);
            return;
        }
    }
    if (!(max == 128 ? val__is_ipv6(addr) : val__is_ipv4(addr)))
        val_report_add(rep, VAL_ERROR, path,
                       "\"%s\" is not an address, a prefix, any, none, localhost, localnets or key NAME", s);
}

static void check_ip(const json_t *v, const char *path, val_report_t *rep)
{
    const char *s = json_string_value(v);
    if (s != NULL && !val__is_ipv4(s) && !val__is_ipv6(s))
        val_report_add(rep, VAL_ERROR, path, "\"%s\" is not an IPv4 or IPv6 address", s);
}

static void check_dns_name(const json_t *v, const char *path, val_report_t *rep)
{
    const char *s = json_string_value(v);
    if (s != NULL && !val__dns_name_ok(s))
        val_report_add(rep, VAL_ERROR, path,
                       "\"%.64s\" is not a DNS name: dot-separated labels of 1 to 63 letters, digits, "
                       "'-' or '_', at most 255 octets",
                       s);
}

/* ---- CEL twins -------------------------------------------------------------------- */

static void cel_pdb_exclusive(const json_t *v, const char *path, val_report_t *rep)
{
    if (json_object_get(v, "minAvailable") && json_object_get(v, "maxUnavailable"))
        val_report_add(rep, VAL_ERROR, path, "minAvailable and maxUnavailable are mutually exclusive");
}

static void cel_storage_exclusive(const json_t *v, const char *path, val_report_t *rep)
{
    if (json_object_get(v, "emptyDir") && json_object_get(v, "persistentVolumeClaim"))
        val_report_add(rep, VAL_ERROR, path, "emptyDir and persistentVolumeClaim are mutually exclusive");
}

/* One existing claim mounted by every replica of a Deployment: only a ReadWriteMany claim
 * can be (without claimName bindy runs a StatefulSet, one claim per replica). */
static void cel_shared_claim(const json_t *v, const char *path, val_report_t *rep)
{
    const json_t *claim = json_object_get(json_object_get(v, "storage"), "persistentVolumeClaim");
    const json_t *replicas = json_object_get(v, "replicas");
    if (json_object_get(claim, "claimName") == NULL || !json_is_integer(replicas) ||
        json_integer_value(replicas) <= 1)
        return;
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(claim, "accessModes"), i, m) {
        if (json_is_string(m) && strcmp(json_string_value(m), "ReadWriteMany") == 0)
            return;
    }
    val_report_add(rep, VAL_ERROR, path,
                   "replicas above 1 cannot share one existing claim (storage.persistentVolumeClaim.claimName) "
                   "unless its accessModes include ReadWriteMany; without claimName each replica gets its own "
                   "claim");
}

static void cel_caa_iodef(const json_t *v, const char *path, val_report_t *rep)
{
    const char *tag = json_string_value(json_object_get(v, "tag"));
    const char *value = json_string_value(json_object_get(v, "value"));
    if (tag == NULL || value == NULL || strcmp(tag, "iodef") != 0)
        return;
    if (strncmp(value, "mailto:", 7) != 0 && strncmp(value, "http://", 7) != 0 &&
        strncmp(value, "https://", 8) != 0) {
        char vpath[DOC_PATH_MAX];
        snprintf(vpath, sizeof(vpath), "%s%svalue", path, path[0] ? "." : "");
        val_report_add(rep, VAL_ERROR, vpath, "\"%.64s\": an iodef value must be a mailto:, http:// or "
                       "https:// URL", value);
    }
}

static void cel_selector_values(const json_t *v, const char *path, val_report_t *rep)
{
    const char *op = json_string_value(json_object_get(v, "operator"));
    size_t n = json_array_size(json_object_get(v, "values"));
    if (op == NULL)
        return;
    bool set_op = strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0;
    if (set_op != (n > 0)) {
        char vpath[DOC_PATH_MAX];
        snprintf(vpath, sizeof(vpath), "%s.values", path);
        val_report_add(rep, VAL_ERROR, vpath, set_op ? "must not be empty for %s" : "must be empty for %s", op);
    }
}

#define SELECTOR_VALUES_CEL                                                                                \
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || " \
    "size(self.values) == 0)"

const val__rule_t val__rules[] = {
    /* ACLs and addresses */
    {"Bind9Instance", "spec.config.allowQuery[]", NULL, check_acl},
    {"Bind9Instance", "spec.config.allowTransfer[]", NULL, check_acl},
    {"Bind9Instance", "spec.config.listenOn[]", NULL, check_acl},
    {"Bind9Instance", "spec.config.listenOnV6[]", NULL, check_acl},
    {"Bind9Instance", "spec.config.forwarders[]", NULL, check_ip},
    {"Bind9Cluster", "spec.global.allowQuery[]", NULL, check_acl},
    {"Bind9Cluster", "spec.global.allowTransfer[]", NULL, check_acl},
    {"Bind9Cluster", "spec.global.listenOn[]", NULL, check_acl},
    {"Bind9Cluster", "spec.global.listenOnV6[]", NULL, check_acl},
    {"Bind9Cluster", "spec.global.forwarders[]", NULL, check_ip},
    {"Bind9Cluster", "spec.primary.allowTransfer[]", NULL, check_acl},
    {"Bind9Cluster", "spec.secondary.allowTransfer[]", NULL, check_acl},
    /* DNS names: the patterns bound label lengths; the 255-octet total needs counting */
    {"DNSZone", "spec.zoneName", NULL, check_dns_name},
    {"DNSZone", "spec.soaRecord.primaryNs", NULL, check_dns_name},
    {"DNSZone", "spec.nameServers[].hostname", NULL, check_dns_name},
    {"*", "spec.name", NULL, check_dns_name},
    {"CNAMERecord", "spec.target", NULL, check_dns_name},
    {"MXRecord", "spec.mailServer", NULL, check_dns_name},
    {"NSRecord", "spec.nameserver", NULL, check_dns_name},
    {"SRVRecord", "spec.target", NULL, check_dns_name},
    /* CEL twins: the rule text must equal the CRD's, byte for byte */
    {"Bind9Instance", "spec.podDisruptionBudget",
     "!(has(self.minAvailable) && has(self.maxUnavailable))", cel_pdb_exclusive},
    {"Bind9Instance", "spec.storage", "!(has(self.emptyDir) && has(self.persistentVolumeClaim))",
     cel_storage_exclusive},
    {"Bind9Instance", "spec",
     "!has(self.storage) || !has(self.storage.persistentVolumeClaim) || "
     "!has(self.storage.persistentVolumeClaim.claimName) || !has(self.replicas) || self.replicas <= 1 || "
     "(has(self.storage.persistentVolumeClaim.accessModes) && 'ReadWriteMany' in "
     "self.storage.persistentVolumeClaim.accessModes)",
     cel_shared_claim},
    {"CAARecord", "spec",
     "self.tag != 'iodef' || self.value.startsWith('mailto:') || self.value.startsWith('http://') || "
     "self.value.startsWith('https://')",
     cel_caa_iodef},
    {"DNSZone", "spec.recordsFrom[].selector.matchExpressions[]", SELECTOR_VALUES_CEL, cel_selector_values},
    {"DNSZone", "spec.bind9InstancesFrom[].selector.matchExpressions[]", SELECTOR_VALUES_CEL, cel_selector_values},
};

const size_t val__nrules = sizeof(val__rules) / sizeof(val__rules[0]);
