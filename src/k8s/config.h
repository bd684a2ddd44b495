/*
 * config.h - where the API server is and how to authenticate to it.
 *
 * Two origins, as client-go has them:
 *  - in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the service
 *    account's token, ca.crt and namespace files (in /var/run/secrets/kubernetes.io/
 *    serviceaccount, or the directory in BINDY_SERVICEACCOUNT_DIR, which tests use);
 *  - kubeconfig: the file(s) in KUBECONFIG (':'-separated, merged as kubectl merges: the
 *    first file to set a name wins), else ~/.kube/config; the current-context or a chosen
 *    one; server, certificate-authority(-data), token / tokenFile, client-certificate(-data)
 *    and client-key(-data), insecure-skip-tls-verify, the context's namespace.
 * Relative file paths in a kubeconfig are relative to that file, as kubectl reads them.
 * Exec and auth-provider plugins are refused with a clear error (not supported).
 *
 * Certificates and keys are read into memory at load time (PEM text). A token file is
 * kept as a path: the client re-reads it when it changes (service-account tokens rotate).
 * The token, key and their contents are never put in an error message or a log line.
 */
#ifndef BD_K8S_CONFIG_H
#define BD_K8S_CONFIG_H

#include <stdbool.h>

#include "err.h"

typedef struct k8s_config {
    char *server;          /* "https://host:port" (or http:// in tests); no trailing '/' */
    char *ca_pem;          /* CA bundle PEM text, or NULL: the system's CAs */
    char *token;           /* bearer token, or NULL */
    char *token_file;      /* bearer token file re-read on change, or NULL (wins over token) */
    char *cert_pem;        /* client certificate PEM, or NULL */
    char *key_pem;         /* client key PEM, or NULL */
    bool insecure;         /* insecure-skip-tls-verify: only when the kubeconfig says so */
    char *tls_server_name; /* tls-server-name, or NULL */
    char *ns;              /* the default namespace ("default" when none is set) */
    char *origin;          /* for messages: "in-cluster" or "kubeconfig FILE context NAME" */
} k8s_config_t;

/* In-cluster configuration. BD_ENOTFOUND when KUBERNETES_SERVICE_HOST is unset (not in
 * a cluster); BD_EIO/BD_EPARSE naming the file that cannot be read. *out: free with
 * k8s_config_free. */
int k8s_config_in_cluster(k8s_config_t **out, bd_err_t *err);

/* A kubeconfig. path NULL: $KUBECONFIG, else ~/.kube/config. context NULL: the file's
 * current-context. Errors name the file and the field (e.g. "contexts[1].context.cluster:
 * no cluster named \"x\""): BD_ENOTFOUND (no file, no such context/cluster/user),
 * BD_EPARSE (malformed YAML or wrong types), BD_EINVAL (unsupported: exec, auth-provider),
 * BD_EIO. *out: free with k8s_config_free. */
int k8s_config_kubeconfig(const char *path, const char *context, k8s_config_t **out,
                          bd_err_t *err);

/* What `bindy run` uses: a kubeconfig when KUBECONFIG is set or context is given,
 * else in-cluster when KUBERNETES_SERVICE_HOST is set, else ~/.kube/config. */
int k8s_config_load(const char *context, k8s_config_t **out, bd_err_t *err);

void k8s_config_free(k8s_config_t *c);

#endif
