/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <string.h>

#include "tlspyo-tls-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"

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

/* Mutual TLS */

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

GPtrArray *
tlspyo_tls_load_client_certificates (const char  *dir,
                                     GPtrArray  **names,
                                     GError     **error)
{
  g_autoptr(GPtrArray) certificates = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GPtrArray) users = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GDir) folder = NULL;
  const char *name;

  folder = g_dir_open (dir, 0, &local_error);
  if (folder == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "Could not read the client certificates folder: %s: check the relay's "
                   "client-certificates-dir", local_error->message);
      return NULL;
    }
  while ((name = g_dir_read_name (folder)) != NULL)
    if (g_str_has_suffix (name, ".pem") && strlen (name) > 4)
      g_ptr_array_add (files, g_strdup (name));
  /* In name order, so that errors are reproducible. */
  g_ptr_array_sort (files, compare_names);

  for (guint i = 0; i < files->len; i++)
    {
      const char *file = g_ptr_array_index (files, i);
      g_autofree char *path = g_build_filename (dir, file, NULL);
      g_autofree char *user = g_strndup (file, strlen (file) - 4);
      GTlsCertificate *certificate;

      if (!tlspyo_group_name_check (user, NULL))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                       "%s: the file's name must be a user name (1 to 255 bytes of UTF-8, "
                       "without control characters) followed by .pem", path);
          return NULL;
        }
      certificate = g_tls_certificate_new_from_file (path, &local_error);
      if (certificate == NULL)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                       "Could not load the client certificate %s: %s: put one endpoint's "
                       "certificate.pem there, as USER.pem", path, local_error->message);
          return NULL;
        }
      g_ptr_array_add (certificates, certificate);
      g_ptr_array_add (users, g_steal_pointer (&user));
    }
  if (certificates->len == 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "The client certificates folder %s has no USER.pem file: copy each "
                   "endpoint's certificate.pem there, named after its user", dir);
      return NULL;
    }
  *names = g_steal_pointer (&users);
  return g_steal_pointer (&certificates);
}

gint
tlspyo_tls_find_certificate (GPtrArray       *pinned,
                             GTlsCertificate *certificate)
{
  if (certificate == NULL)
    return -1;
  for (guint i = 0; i < pinned->len; i++)
    if (g_tls_certificate_is_same (certificate, g_ptr_array_index (pinned, i)))
      return (gint) i;
  return -1;
}

static gboolean
accept_client_cb (GTlsConnection       *conn,
                  GTlsCertificate      *peer,
                  GTlsCertificateFlags  errors,
                  gpointer              user_data)
{
  /* Without a database GIO always reports UNKNOWN_CA; any other problem
   * (an expired certificate) still refuses the endpoint. */
  if ((errors & ~G_TLS_CERTIFICATE_UNKNOWN_CA) != 0)
    return FALSE;
  return tlspyo_tls_find_certificate (user_data, peer) >= 0;
}

void
tlspyo_tls_server_require_client (GIOStream *tls,
                                  GPtrArray *pinned)
{
  g_object_set (tls, "authentication-mode", G_TLS_AUTHENTICATION_REQUIRED, NULL);
  g_signal_connect_data (tls, "accept-certificate", G_CALLBACK (accept_client_cb),
                         g_ptr_array_ref (pinned),
                         (GClosureNotify) (void (*) (void)) g_ptr_array_unref,
                         G_CONNECT_DEFAULT);
}
