/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "tlspyo-tls-private.h"
#include "tlspyo-error.h"

gboolean
tlspyo_tls_check_backend (GError **error)
{
  if (!g_tls_backend_supports_tls (g_tls_backend_get_default ()))
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                           "TLS support is not available: install the glib-networking "
                           "package, or use TLSPYO_SECURITY_NONE on a trusted network");
      return FALSE;
    }
  return TRUE;
}

GIOStream *
tlspyo_tls_server_new (GIOStream        *base,
                       GTlsCertificate  *certificate,
                       GError          **error)
{
  GTlsBackend *backend = g_tls_backend_get_default ();

  /* "database" is set explicitly so the system CA bundle is never loaded,
   * and close-notify is not required: the protocol has its own goodbye. */
  return g_initable_new (g_tls_backend_get_server_connection_type (backend),
                         NULL, error,
                         "base-io-stream", base,
                         "certificate", certificate,
                         "database", NULL,
                         "require-close-notify", FALSE,
                         NULL);
}

static gboolean
accept_pinned_cb (GTlsConnection       *conn,
                  GTlsCertificate      *peer,
                  GTlsCertificateFlags  errors,
                  gpointer              user_data)
{
  GTlsCertificate *pinned = user_data;

  /* Without a database GIO always reports UNKNOWN_CA; every other problem
   * (wrong identity, expired) still refuses the relay. */
  if ((errors & ~G_TLS_CERTIFICATE_UNKNOWN_CA) != 0)
    return FALSE;
  return g_tls_certificate_is_same (peer, pinned);
}

GIOStream *
tlspyo_tls_client_new (GIOStream        *base,
                       GTlsCertificate  *pinned,
                       const char       *server_identity,
                       guint16           port,
                       GError          **error)
{
  GTlsBackend *backend = g_tls_backend_get_default ();
  g_autoptr(GSocketConnectable) identity = g_network_address_new (server_identity, port);
  GIOStream *tls;

  tls = g_initable_new (g_tls_backend_get_client_connection_type (backend),
                        NULL, error,
                        "base-io-stream", base,
                        "server-identity", identity,
                        "database", NULL,
                        "require-close-notify", FALSE,
                        NULL);
  if (tls == NULL)
    return NULL;

  g_signal_connect_data (tls, "accept-certificate", G_CALLBACK (accept_pinned_cb),
                         g_object_ref (pinned), (GClosureNotify) (void (*) (void)) g_object_unref,
                         G_CONNECT_DEFAULT);
  return tls;
}

void
tlspyo_tls_set_nodelay (GSocketConnection *connection)
{
  GSocket *socket = g_socket_connection_get_socket (connection);

  /* Small frames must leave now: Nagle plus delayed ACKs costs ~40 ms a hop. */
  if (g_socket_get_family (socket) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
}

char *
tlspyo_tls_describe_error (const GError *error,
                           gboolean      is_client)
{
  if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE))
    return g_strdup_printf ("The relay's TLS certificate is not the pinned one or does not "
                            "match the server identity (%s): copy the relay's "
                            "certificate.pem into this endpoint's credentials folder",
                            error->message);
  if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_NOT_TLS) ||
      g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_MISC) ||
      g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_EOF))
    return g_strdup_printf ("TLS handshake failed (%s): is the %s using TLS too?",
                            error->message, is_client ? "relay" : "endpoint");
  return g_strdup_printf ("TLS handshake failed: %s", error->message);
}
