/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "tlspyo-cli.h"

#define KEY_FILE_NAME "key.pem"
#define CERTIFICATE_FILE_NAME "certificate.pem"
#define DEFAULT_COMMON_NAME "default"
#define DEFAULT_DAYS 3650
/* A PEM certificate is a few KiB; anything much larger is not one. */
#define MAX_CERTIFICATE_SIZE (64 * 1024)
#define SERVE_IO_TIMEOUT_S 10
#define FETCH_DEFAULT_TIMEOUT_S 10.0

static gboolean
ask_yes_no (const char  *question,
            gboolean    *yes,
            GError     **error)
{
  g_autofree char *answer = tlspyo_cli_prompt (question, error);

  if (answer == NULL)
    return FALSE;
  *yes = g_ascii_strcasecmp (answer, "y") == 0 || g_ascii_strcasecmp (answer, "yes") == 0;
  return TRUE;
}

/* Asks until the answer is valid; an empty answer takes the default. */
static char *
ask_value (const char  *question,
           const char  *default_value,
           gboolean   (*valid) (const char *value),
           GError     **error)
{
  g_autofree char *prompt = g_strdup_printf ("%s [%s]: ", question, default_value);

  for (;;)
    {
      g_autofree char *answer = tlspyo_cli_prompt (prompt, error);

      if (answer == NULL)
        return NULL;
      if (*answer == '\0')
        return g_strdup (default_value);
      if (valid == NULL || valid (answer))
        return g_steal_pointer (&answer);
      g_print ("“%s” does not work here; try again.\n", answer);
    }
}

static gboolean
parse_key_type (const char    *value,
                TlspyoKeyType *key_type)
{
  if (g_ascii_strcasecmp (value, "ecdsa") == 0)
    *key_type = TLSPYO_KEY_TYPE_ECDSA;
  else if (g_ascii_strcasecmp (value, "rsa") == 0)
    *key_type = TLSPYO_KEY_TYPE_RSA;
  else
    return FALSE;
  return TRUE;
}

static gboolean
valid_key_type (const char *value)
{
  TlspyoKeyType key_type;

  return parse_key_type (value, &key_type);
}

static gboolean
parse_days (const char *value,
            int        *days)
{
  guint64 n;

  if (!g_ascii_string_to_unsigned (value, 10, 1, 365 * 1000, &n, NULL))
    return FALSE;
  *days = (int) n;
  return TRUE;
}

static gboolean
valid_days (const char *value)
{
  int days;

  return parse_days (value, &days);
}

static gboolean
valid_anything (const char *value)
{
  return TRUE;
}

static char *
certificate_path (const char *directory)
{
  return g_build_filename (directory, CERTIFICATE_FILE_NAME, NULL);
}

static char *
key_path (const char *directory)
{
  return g_build_filename (directory, KEY_FILE_NAME, NULL);
}

static gboolean
any_credentials_exist (const char *directory)
{
  g_autofree char *key = key_path (directory);
  g_autofree char *cert = certificate_path (directory);

  return g_file_test (key, G_FILE_TEST_EXISTS) || g_file_test (cert, G_FILE_TEST_EXISTS);
}

int
tlspyo_cli_credentials_generate (int    argc,
                                 char **argv)
{
  g_autofree char *directory = NULL;
  g_autofree char *common_name = NULL;
  g_autofree char *key_type_name = NULL;
  g_autofree char *default_dir = NULL;
  g_autofree char *fingerprint = NULL;
  g_autofree char *key_file = NULL;
  g_autofree char *cert_file = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  TlspyoKeyType key_type = TLSPYO_KEY_TYPE_ECDSA;
  gboolean force = FALSE;
  gboolean interactive = FALSE;
  int days = -1;
  int status;
  const GOptionEntry entries[] = {
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &directory,
      "Write key.pem and certificate.pem into DIR (default: the folder `tlspyo credentials "
      "show` prints)", "DIR" },
    { "common-name", 'n', 0, G_OPTION_ARG_STRING, &common_name,
      "The name in the certificate, which endpoints check with --server-identity "
      "(default: default)", "NAME" },
    { "key-type", 0, 0, G_OPTION_ARG_STRING, &key_type_name,
      "ecdsa (P-256, the default) or rsa (3072 bits)", "TYPE" },
    { "days", 0, 0, G_OPTION_ARG_INT, &days,
      "How many days the certificate stays valid (default: 3650)", "N" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
      "Replace existing credentials (endpoints will then need the new certificate.pem)", NULL },
    { "interactive", 'i', 0, G_OPTION_ARG_NONE, &interactive,
      "Ask for each setting, offering the options' values as defaults", NULL },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Make the relay's TLS credentials: a private key "
                                    "(key.pem, mode 0600) and a self-signed certificate "
                                    "(certificate.pem). Prints where they went and the "
                                    "certificate's SHA-256 fingerprint, which endpoints check "
                                    "with `tlspyo credentials fetch --fingerprint`.",
                                    NULL, entries);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    return status;

  if (key_type_name != NULL && !parse_key_type (key_type_name, &key_type))
    {
      tlspyo_cli_printerr ("--key-type %s is not known: give ecdsa or rsa", key_type_name);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (days != -1 && days < 1)
    {
      tlspyo_cli_printerr ("--days %d is too few: give at least 1", days);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (common_name != NULL && *common_name == '\0')
    {
      tlspyo_cli_printerr ("--common-name is empty: give a name, or leave the option out "
                           "for “default”");
      return TLSPYO_CLI_EXIT_USAGE;
    }

  default_dir = tlspyo_credentials_get_default_dir ();
  if (directory == NULL)
    directory = g_strdup (default_dir);

  if (interactive)
    {
      g_autofree char *days_text = g_strdup_printf ("%d", days > 0 ? days : DEFAULT_DAYS);
      g_autofree char *answer = NULL;

      answer = ask_value ("Folder for key.pem and certificate.pem", directory, valid_anything, &error);
      if (answer == NULL)
        return tlspyo_cli_report (error);
      g_free (directory);
      directory = g_steal_pointer (&answer);

      answer = ask_value ("Common name (endpoints check it with --server-identity)",
                          common_name ? common_name : DEFAULT_COMMON_NAME, valid_anything, &error);
      if (answer == NULL)
        return tlspyo_cli_report (error);
      g_free (common_name);
      common_name = g_steal_pointer (&answer);

      answer = ask_value ("Key type, ecdsa or rsa",
                          key_type == TLSPYO_KEY_TYPE_RSA ? "rsa" : "ecdsa", valid_key_type, &error);
      if (answer == NULL)
        return tlspyo_cli_report (error);
      parse_key_type (answer, &key_type);
      g_clear_pointer (&answer, g_free);

      answer = ask_value ("Days the certificate stays valid", days_text, valid_days, &error);
      if (answer == NULL)
        return tlspyo_cli_report (error);
      parse_days (answer, &days);

      if (!force && any_credentials_exist (directory))
        {
          g_autofree char *question = g_strdup_printf ("%s already holds credentials. Replace "
                                                       "them? Endpoints will then need the new "
                                                       "certificate.pem [y/N]: ", directory);
          if (!ask_yes_no (question, &force, &error))
            return tlspyo_cli_report (error);
          if (!force)
            {
              tlspyo_cli_printerr ("kept the credentials in %s: nothing was written", directory);
              return TLSPYO_CLI_EXIT_FAILURE;
            }
        }
    }

  key_file = key_path (directory);
  cert_file = certificate_path (directory);
  if (!force && any_credentials_exist (directory))
    {
      tlspyo_cli_printerr ("%s exists already: pass --force to replace it and its key (endpoints "
                           "will then need the new certificate.pem), or use another --directory",
                           g_file_test (key_file, G_FILE_TEST_EXISTS) ? key_file : cert_file);
      return TLSPYO_CLI_EXIT_FAILURE;
    }

  if (!tlspyo_credentials_generate_full (directory, common_name, key_type,
                                         days > 0 ? (guint) days : 0,
                                         force ? TLSPYO_CREDENTIALS_OVERWRITE : TLSPYO_CREDENTIALS_NONE,
                                         &error))
    return tlspyo_cli_report (error);

  certificate = tlspyo_credentials_load_certificate (directory, FALSE, &error);
  if (certificate == NULL)
    return tlspyo_cli_report (error);
  fingerprint = tlspyo_credentials_get_fingerprint (certificate);

  g_print ("Private key: %s (keep it on the relay's machine only)\n", key_file);
  g_print ("Certificate: %s (every endpoint needs a copy)\n", cert_file);
  g_print ("SHA-256 fingerprint: %s\n", fingerprint);
  if (common_name != NULL && strcmp (common_name, DEFAULT_COMMON_NAME) != 0)
    g_print ("Endpoints must pass --server-identity %s\n", common_name);
  return TLSPYO_CLI_EXIT_OK;
}

int
tlspyo_cli_credentials_show (int    argc,
                             char **argv)
{
  g_autofree char *directory = NULL;
  g_autofree char *cert_file = NULL;
  g_autofree char *key_file = NULL;
  g_autofree char *fingerprint = NULL;
  g_autofree char *subject = NULL;
  g_autoptr(GDateTime) not_after = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  gboolean has_key;
  int status;
  const GOptionEntry entries[] = {
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &directory,
      "Show DIR instead of the default folder", "DIR" },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Print the credentials folder (by default "
                                    "$XDG_DATA_HOME/tlspyo/credentials) and the SHA-256 "
                                    "fingerprint of the certificate.pem in it. Exits with 1 "
                                    "when there is no certificate.",
                                    NULL, entries);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    return status;

  if (directory == NULL)
    directory = tlspyo_credentials_get_default_dir ();
  cert_file = certificate_path (directory);
  key_file = key_path (directory);
  has_key = g_file_test (key_file, G_FILE_TEST_EXISTS);

  g_print ("Folder: %s\n", directory);
  if (!g_file_test (cert_file, G_FILE_TEST_EXISTS))
    {
      tlspyo_cli_printerr ("there is no certificate.pem in %s: on the relay's machine run "
                           "`tlspyo credentials generate`; on an endpoint's, copy the relay's "
                           "certificate.pem there or run `tlspyo credentials fetch`", directory);
      return TLSPYO_CLI_EXIT_FAILURE;
    }

  /* Loading with the key also checks that the two belong together. */
  certificate = tlspyo_credentials_load_certificate (directory, has_key, &error);
  if (certificate == NULL)
    return tlspyo_cli_report (error);
  fingerprint = tlspyo_credentials_get_fingerprint (certificate);
  g_object_get (certificate, "subject-name", &subject, "not-valid-after", &not_after, NULL);

  g_print ("Certificate: %s\n", cert_file);
  g_print ("SHA-256 fingerprint: %s\n", fingerprint);
  if (subject != NULL)
    g_print ("Subject: %s\n", subject);
  if (not_after != NULL)
    {
      g_autofree char *date = g_date_time_format_iso8601 (not_after);
      g_print ("Valid until: %s\n", date);
    }
  if (has_key)
    g_print ("Private key: %s (this is a relay's folder)\n", key_file);
  else
    g_print ("Private key: none (an endpoint's folder: it needs only the certificate)\n");
  return TLSPYO_CLI_EXIT_OK;
}

/* credentials serve */

typedef struct {
  GBytes            *pem;
  GSocketConnection *connection;
  char              *peer;
} ServeClient;

static void
serve_client_free (ServeClient *client)
{
  g_bytes_unref (client->pem);
  g_object_unref (client->connection);
  g_free (client->peer);
  g_free (client);
}

static char *
describe_peer (GSocketConnection *connection)
{
  g_autoptr(GSocketAddress) address = g_socket_connection_get_remote_address (connection, NULL);

  if (G_IS_INET_SOCKET_ADDRESS (address))
    {
      g_autofree char *ip = g_inet_address_to_string (
        g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
      return g_strdup_printf ("%s port %u", ip,
                              g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (address)));
    }
  return g_strdup ("an unknown peer");
}

static void
serve_write_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      data)
{
  ServeClient *client = data;
  g_autoptr(GError) error = NULL;

  if (g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    g_message ("Sent certificate.pem to %s", client->peer);
  else
    g_message ("Could not send certificate.pem to %s: %s", client->peer, error->message);
  g_io_stream_close (G_IO_STREAM (client->connection), NULL, NULL);
  serve_client_free (client);
}

static gboolean
serve_incoming_cb (GSocketService    *service,
                   GSocketConnection *connection,
                   GObject           *source_object,
                   gpointer           data)
{
  GBytes *pem = data;
  ServeClient *client = g_new0 (ServeClient, 1);
  gsize length;
  const char *bytes = g_bytes_get_data (pem, &length);

  client->pem = g_bytes_ref (pem);
  client->connection = g_object_ref (connection);
  client->peer = describe_peer (connection);
  /* A client that never reads must not hold its connection for ever. */
  g_socket_set_timeout (g_socket_connection_get_socket (connection), SERVE_IO_TIMEOUT_S);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (G_IO_STREAM (connection)),
                                   bytes, length, G_PRIORITY_DEFAULT, NULL,
                                   serve_write_cb, client);
  return TRUE;
}

int
tlspyo_cli_credentials_serve (int    argc,
                              char **argv)
{
  g_autofree char *directory = NULL;
  g_autofree char *address = NULL;
  g_autofree char *port_file = NULL;
  g_autofree char *fingerprint = NULL;
  g_autofree char *pem = NULL;
  g_autofree char *cert_file = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GSocketService) service = NULL;
  g_autoptr(GBytes) pem_bytes = NULL;
  TlspyoCliSignals signals = { { 0 }, 0 };
  int port = -1;
  guint bound_port = 0;
  int status;
  const GOptionEntry entries[] = {
    { "port", 'p', 0, G_OPTION_ARG_INT, &port,
      "Listen on PORT (0: a free port, see --port-file)", "PORT" },
    { "address", 'a', 0, G_OPTION_ARG_STRING, &address,
      "Listen on this IP address only (default: every interface)", "ADDRESS" },
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &directory,
      "Serve the certificate.pem in DIR (default: the folder `tlspyo credentials show` prints)",
      "DIR" },
    { "port-file", 0, 0, G_OPTION_ARG_FILENAME, &port_file,
      "Write the port listened on into FILE once listening", "FILE" },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Hand out the relay's certificate.pem (never its "
                                    "key) to each client that connects over TCP, until SIGINT "
                                    "or SIGTERM. The connection is not secured: endpoints must "
                                    "check the fingerprint printed here with `tlspyo credentials "
                                    "fetch --fingerprint`.",
                                    NULL, entries);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    return status;
  if (port == -1)
    {
      tlspyo_cli_printerr ("no port given: pass --port PORT (0 for a free one, with --port-file)");
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (!tlspyo_cli_check_port (port, TRUE, &error))
    return tlspyo_cli_report (error);

  if (directory == NULL)
    directory = tlspyo_credentials_get_default_dir ();
  cert_file = certificate_path (directory);
  certificate = tlspyo_credentials_load_certificate (directory, FALSE, &error);
  if (certificate == NULL)
    return tlspyo_cli_report (error);
  fingerprint = tlspyo_credentials_get_fingerprint (certificate);
  /* Serve GIO's re-encoding, not the file: exactly the certificate that
   * was fingerprinted, and nothing else that may sit in the file. */
  g_object_get (certificate, "certificate-pem", &pem, NULL);
  pem_bytes = g_bytes_new (pem, strlen (pem));

  service = g_socket_service_new ();
  if (address != NULL)
    {
      g_autoptr(GInetAddress) inet = g_inet_address_new_from_string (address);
      g_autoptr(GSocketAddress) socket_address = NULL;
      g_autoptr(GSocketAddress) effective = NULL;

      if (inet == NULL)
        {
          tlspyo_cli_printerr ("--address %s is not an IP address: give one such as 127.0.0.1 "
                               "or ::1, or leave the option out to listen on every interface",
                               address);
          return TLSPYO_CLI_EXIT_USAGE;
        }
      socket_address = g_inet_socket_address_new (inet, (guint16) port);
      if (!g_socket_listener_add_address (G_SOCKET_LISTENER (service), socket_address,
                                          G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                          &effective, &error))
        {
          tlspyo_cli_printerr ("could not listen on %s port %d: %s: pick another --port or "
                               "--address", address, port, error->message);
          return TLSPYO_CLI_EXIT_FAILURE;
        }
      bound_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
    }
  else if (port == 0)
    {
      bound_port = g_socket_listener_add_any_inet_port (G_SOCKET_LISTENER (service), NULL, &error);
      if (bound_port == 0)
        {
          tlspyo_cli_printerr ("could not listen on a free port: %s", error->message);
          return TLSPYO_CLI_EXIT_FAILURE;
        }
    }
  else
    {
      if (!g_socket_listener_add_inet_port (G_SOCKET_LISTENER (service), (guint16) port, NULL,
                                            &error))
        {
          tlspyo_cli_printerr ("could not listen on port %d: %s: pick another --port", port,
                               error->message);
          return TLSPYO_CLI_EXIT_FAILURE;
        }
      bound_port = (guint) port;
    }

  g_signal_connect (service, "incoming", G_CALLBACK (serve_incoming_cb), pem_bytes);
  g_socket_service_start (service);

  if (port_file != NULL && !tlspyo_cli_write_port_file (port_file, bound_port, &error))
    return tlspyo_cli_report (error);

  g_print ("Serving %s on %s port %u\n", cert_file, address ? address : "every interface",
           bound_port);
  g_print ("SHA-256 fingerprint: %s\n", fingerprint);
  g_print ("On each endpoint, run: tlspyo credentials fetch --host THIS-HOST --port %u "
           "--fingerprint %s\n", bound_port, fingerprint);
  fflush (stdout);

  tlspyo_cli_signals_watch (&signals);
  while (signals.received == 0)
    g_main_context_iteration (NULL, TRUE);
  tlspyo_cli_signals_unwatch (&signals);

  g_socket_service_stop (service);
  g_socket_listener_close (G_SOCKET_LISTENER (service));
  if (port_file != NULL)
    g_unlink (port_file);
  g_message ("Stopped serving on %s", signals.received == SIGINT ? "SIGINT" : "SIGTERM");
  return TLSPYO_CLI_EXIT_OK;
}

/* credentials fetch */

/* "ab:CD:..." or "abcd..." -> "ABCD...", or NULL if not 32 bytes of hex. */
static char *
normalize_fingerprint (const char *text)
{
  GString *out = g_string_new (NULL);

  for (const char *p = text; *p != '\0'; p++)
    {
      if (*p == ':' || g_ascii_isspace (*p))
        continue;
      if (!g_ascii_isxdigit (*p))
        {
          g_string_free (out, TRUE);
          return NULL;
        }
      g_string_append_c (out, g_ascii_toupper (*p));
    }
  if (out->len != 64)
    {
      g_string_free (out, TRUE);
      return NULL;
    }
  return g_string_free (out, FALSE);
}

static GBytes *
fetch_bytes (const char  *host,
             int          port,
             int          timeout_s,
             GError     **error)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnectable) connectable = g_network_address_new (host, (guint16) port);
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GByteArray) data = g_byte_array_new ();
  g_autoptr(GError) local_error = NULL;
  GInputStream *input;
  guint8 buffer[4096];

  g_socket_client_set_timeout (client, (guint) timeout_s);
  connection = g_socket_client_connect (client, connectable, NULL, &local_error);
  if (connection == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_NETWORK,
                   "could not connect to %s port %d: %s: check --host and --port, and that "
                   "`tlspyo credentials serve` runs there", host, port, local_error->message);
      return NULL;
    }

  input = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  for (;;)
    {
      gssize n = g_input_stream_read (input, buffer, sizeof buffer, NULL, &local_error);

      if (n < 0)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_NETWORK,
                       "reading from %s port %d failed: %s: try again", host, port,
                       local_error->message);
          return NULL;
        }
      if (n == 0)
        break;
      if (data->len + (gsize) n > MAX_CERTIFICATE_SIZE)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                       "%s port %d sent more than %d KiB, which is no certificate: check "
                       "--host and --port", host, port, MAX_CERTIFICATE_SIZE / 1024);
          return NULL;
        }
      g_byte_array_append (data, buffer, (guint) n);
    }
  g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
  return g_byte_array_free_to_bytes (g_steal_pointer (&data));
}

static gboolean
write_certificate (const char  *directory,
                   const char  *path,
                   const char  *pem,
                   gboolean     force,
                   GError     **error)
{
  g_autoptr(GError) local_error = NULL;

  if (g_mkdir_with_parents (directory, 0700) != 0)
    {
      int saved_errno = errno;
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "could not create %s: %s: check --directory", directory, g_strerror (saved_errno));
      return FALSE;
    }

  if (force)
    {
      if (!g_file_set_contents_full (path, pem, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                     &local_error))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                       "could not write %s: %s", path, local_error->message);
          return FALSE;
        }
      return TRUE;
    }
  else
    {
      /* Created exclusively: a file that appeared since the check is kept. */
      g_autoptr(GFile) file = g_file_new_for_path (path);
      g_autoptr(GFileOutputStream) out = g_file_create (file, G_FILE_CREATE_NONE, NULL, &local_error);

      if (out == NULL ||
          !g_output_stream_write_all (G_OUTPUT_STREAM (out), pem, strlen (pem), NULL, NULL,
                                      &local_error) ||
          !g_output_stream_close (G_OUTPUT_STREAM (out), NULL, &local_error))
        {
          if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_EXISTS))
            g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                         "%s exists already: pass --force to replace it", path);
          else
            g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                         "could not write %s: %s", path, local_error->message);
          if (out != NULL)
            g_file_delete (file, NULL, NULL);
          return FALSE;
        }
      return TRUE;
    }
}

int
tlspyo_cli_credentials_fetch (int    argc,
                              char **argv)
{
  g_autofree char *host = NULL;
  g_autofree char *directory = NULL;
  g_autofree char *expected_text = NULL;
  g_autofree char *expected = NULL;
  g_autofree char *cert_file = NULL;
  g_autofree char *key_file = NULL;
  g_autofree char *fingerprint = NULL;
  g_autofree char *pem = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GTlsCertificate) existing = NULL;
  gboolean force = FALSE;
  double timeout = FETCH_DEFAULT_TIMEOUT_S;
  int timeout_ms;
  int port = -1;
  int status;
  gsize size;
  const char *bytes;
  const GOptionEntry entries[] = {
    { "host", 'H', 0, G_OPTION_ARG_STRING, &host,
      "The host running `tlspyo credentials serve` (default: 127.0.0.1)", "HOST" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &port, "Its port", "PORT" },
    { "fingerprint", 'F', 0, G_OPTION_ARG_STRING, &expected_text,
      "The SHA-256 fingerprint the certificate must have, as `tlspyo credentials show` prints "
      "it on the relay's machine (case and colons do not matter)", "FINGERPRINT" },
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &directory,
      "Write certificate.pem into DIR (default: the folder `tlspyo credentials show` prints)",
      "DIR" },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force,
      "Replace an existing certificate.pem", NULL },
    { "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout,
      "Give up after SECONDS (default: 10)", "SECONDS" },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Get the relay's certificate.pem from `tlspyo "
                                    "credentials serve` and write it only if its SHA-256 "
                                    "fingerprint is the one given. Without --fingerprint it "
                                    "shows the fingerprint and asks on a terminal (trust on "
                                    "first use); elsewhere it refuses.",
                                    NULL, entries);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    return status;
  if (port == -1)
    {
      tlspyo_cli_printerr ("no port given: pass --port PORT, the one `tlspyo credentials serve` "
                           "printed");
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (!tlspyo_cli_check_port (port, FALSE, &error) ||
      !tlspyo_cli_timeout_ms (timeout, "--timeout", &timeout_ms, &error))
    return tlspyo_cli_report (error);
  if (expected_text != NULL)
    {
      expected = normalize_fingerprint (expected_text);
      if (expected == NULL)
        {
          tlspyo_cli_printerr ("--fingerprint %s is not a SHA-256 fingerprint: give the 64 "
                               "hexadecimal digits `tlspyo credentials show` prints on the "
                               "relay's machine", expected_text);
          return TLSPYO_CLI_EXIT_USAGE;
        }
    }
  if (host == NULL)
    host = g_strdup ("127.0.0.1");
  if (directory == NULL)
    directory = tlspyo_credentials_get_default_dir ();
  cert_file = certificate_path (directory);
  key_file = key_path (directory);

  if (g_file_test (key_file, G_FILE_TEST_EXISTS))
    {
      tlspyo_cli_printerr ("%s holds a private key (key.pem), so it is a relay's folder: its "
                           "certificate.pem must stay; fetch into another folder with "
                           "--directory", directory);
      return TLSPYO_CLI_EXIT_FAILURE;
    }

  data = fetch_bytes (host, port, (timeout_ms + 999) / 1000, &error);
  if (data == NULL)
    return tlspyo_cli_report (error);
  bytes = g_bytes_get_data (data, &size);
  certificate = g_tls_certificate_new_from_pem (size > 0 ? bytes : "", (gssize) size, &error);
  if (certificate == NULL)
    {
      tlspyo_cli_printerr ("%s port %d did not send a certificate (%s): check --host and "
                           "--port, and that `tlspyo credentials serve` runs there; nothing "
                           "was written", host, port, error->message);
      return TLSPYO_CLI_EXIT_FAILURE;
    }
  fingerprint = tlspyo_credentials_get_fingerprint (certificate);

  if (expected != NULL)
    {
      g_autofree char *got = normalize_fingerprint (fingerprint);

      if (g_strcmp0 (got, expected) != 0)
        {
          tlspyo_cli_printerr ("the certificate from %s port %d has the fingerprint %s, not the "
                               "one given: someone may be intercepting the connection, or "
                               "--fingerprint is from other credentials; nothing was written",
                               host, port, fingerprint);
          return TLSPYO_CLI_EXIT_FAILURE;
        }
    }
  else if (!isatty (STDIN_FILENO))
    {
      tlspyo_cli_printerr ("the certificate from %s port %d has the fingerprint %s, but without "
                           "a terminal nobody can confirm it: pass --fingerprint with the one "
                           "`tlspyo credentials show` prints on the relay's machine; nothing "
                           "was written", host, port, fingerprint);
      return TLSPYO_CLI_EXIT_FAILURE;
    }
  else
    {
      g_autofree char *question = g_strdup_printf ("Trust it and write %s? [y/N]: ", cert_file);
      gboolean yes = FALSE;

      g_print ("The certificate from %s port %d has the SHA-256 fingerprint\n  %s\n"
               "Compare it with what `tlspyo credentials show` prints on the relay's machine.\n",
               host, port, fingerprint);
      if (!ask_yes_no (question, &yes, &error))
        return tlspyo_cli_report (error);
      if (!yes)
        {
          tlspyo_cli_printerr ("not confirmed, so nothing was written: check the fingerprint "
                               "with the relay's operator");
          return TLSPYO_CLI_EXIT_FAILURE;
        }
    }

  /* Write GIO's encoding of what was checked, never the bytes as received. */
  g_object_get (certificate, "certificate-pem", &pem, NULL);

  if (!force && g_file_test (cert_file, G_FILE_TEST_EXISTS))
    {
      existing = g_tls_certificate_new_from_file (cert_file, NULL);
      if (existing != NULL && g_tls_certificate_is_same (existing, certificate))
        {
          g_print ("%s already holds this certificate (SHA-256 fingerprint %s)\n",
                   cert_file, fingerprint);
          return TLSPYO_CLI_EXIT_OK;
        }
      tlspyo_cli_printerr ("%s exists already and holds another certificate: pass --force to "
                           "replace it; nothing was written", cert_file);
      return TLSPYO_CLI_EXIT_FAILURE;
    }

  if (!write_certificate (directory, cert_file, pem, force, &error))
    return tlspyo_cli_report (error);
  g_print ("Wrote %s (SHA-256 fingerprint %s)\n", cert_file, fingerprint);
  return TLSPYO_CLI_EXIT_OK;
}

int
tlspyo_cli_credentials_hash_password (int    argc,
                                      char **argv)
{
  g_autofree char *password_file = NULL;
  g_autofree char *hash = NULL;
  g_auto(GStrv) positional = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoCliPassword) password = NULL;
  int rounds = 0;
  int status;
  const GOptionEntry entries[] = {
    { "password-file", 0, 0, G_OPTION_ARG_FILENAME, &password_file,
      "Read the password from FILE (else from $TLSPYO_PASSWORD)", "FILE" },
    { "rounds", 0, 0, G_OPTION_ARG_INT, &rounds,
      "PBKDF2 rounds, from 10000 to 10000000 (default: 200000)", "N" },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Print the hash of a user's password, for the "
                                    "relay config's \"users\" key: "
                                    "pbkdf2-sha256$ROUNDS$SALT$KEY, with a random salt. "
                                    "The relay stores only the hash; the user's endpoints "
                                    "use the password.",
                                    "The password is read from --password-file or "
                                    "$TLSPYO_PASSWORD, never from the command line. Keep the "
                                    "hash secret too: it cannot log in, but it lets one pose "
                                    "as the relay to that user's endpoints.",
                                    entries);
  status = tlspyo_cli_parse (context, argc, argv, &positional);
  if (status >= 0)
    return status;
  if (positional[0] != NULL)
    {
      tlspyo_cli_printerr ("unexpected argument “%s”: give the password with --password-file "
                           "or $TLSPYO_PASSWORD, never on the command line", positional[0]);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (rounds < 0)
    {
      tlspyo_cli_printerr ("--rounds %d is negative: give a number from 10000 to 10000000",
                           rounds);
      return TLSPYO_CLI_EXIT_USAGE;
    }

  password = tlspyo_cli_read_password (password_file, &error);
  if (password == NULL)
    return tlspyo_cli_report (error);
  hash = tlspyo_relay_hash_password (password, (guint) rounds, &error);
  if (hash == NULL)
    {
      /* A round count out of range is the caller's to fix. */
      tlspyo_cli_printerr ("%s: check --rounds", error->message);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  g_print ("%s\n", hash);
  return TLSPYO_CLI_EXIT_OK;
}
