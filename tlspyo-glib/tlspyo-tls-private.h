/* SPDX-License-Identifier: MIT */
#pragma once

/* GIO TLS set up the way that is both safe and fast on glib-networking 2.74:
 * connections are constructed with their database already set (otherwise the
 * system CA bundle is parsed on every handshake), and an endpoint trusts
 * exactly one pinned certificate, never the system CAs. */

#include <gio/gio.h>

G_BEGIN_DECLS

gboolean   tlspyo_tls_check_backend (GError          **error);
GIOStream *tlspyo_tls_server_new    (GIOStream        *base,
                                     GTlsCertificate  *certificate,
                                     GError          **error);
GIOStream *tlspyo_tls_client_new    (GIOStream        *base,
                                     GTlsCertificate  *pinned,
                                     const char       *server_identity,
                                     guint16           port,
                                     GError          **error);
void       tlspyo_tls_set_nodelay   (GSocketConnection *connection);

/* Mutual TLS (issue 6): the relay requires a client certificate from a
 * pinned set, each file NAME.pem of a folder mapping to the user NAME. */
GPtrArray *tlspyo_tls_load_client_certificates (const char   *dir,
                                                GPtrArray   **names,
                                                GError      **error);
void       tlspyo_tls_server_require_client    (GIOStream    *tls,
                                                GPtrArray    *pinned);
gint       tlspyo_tls_find_certificate         (GPtrArray       *pinned,
                                                GTlsCertificate *certificate);
char      *tlspyo_tls_describe_error (const GError    *error,
                                      gboolean         is_client);

G_END_DECLS
