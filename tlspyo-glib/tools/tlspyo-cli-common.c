/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "tlspyo-cli.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 2096
/* Longer than any sensible wait, short enough to fit in an int of ms. */
#define MAX_TIMEOUT_S (24.0 * 3600.0)
#define MAX_PASSWORD_FILE_SIZE (64 * 1024)

/* One line on stderr, so that logs and scripts see one message per error. */
void
tlspyo_cli_printerr (const char *format,
                     ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_strdelimit (message, "\r\n", ' ');
  g_printerr ("tlspyo: %s\n", message);
}

int
tlspyo_cli_report (const GError *error)
{
  tlspyo_cli_printerr ("%s", error->message);
  return error->domain == G_OPTION_ERROR ? TLSPYO_CLI_EXIT_USAGE : TLSPYO_CLI_EXIT_FAILURE;
}

gboolean
tlspyo_cli_usage_error (GError     **error,
                        const char  *format,
                        ...)
{
  va_list args;

  va_start (args, format);
  g_propagate_error (error, g_error_new_valist (G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                                format, args));
  va_end (args);
  return FALSE;
}

GOptionContext *
tlspyo_cli_context_new (const char         *parameter_string,
                        const char         *summary,
                        const char         *description,
                        const GOptionEntry *entries)
{
  GOptionContext *context = g_option_context_new (parameter_string);

  g_option_context_set_summary (context, summary);
  if (description != NULL)
    g_option_context_set_description (context, description);
  g_option_context_add_main_entries (context, entries, NULL);
  return context;
}

int
tlspyo_cli_parse (GOptionContext  *context,
                  int              argc,
                  char           **argv,
                  GStrv           *positional)
{
  g_auto(GStrv) args = g_new0 (char *, argc + 1);
  g_autoptr(GError) error = NULL;
  g_autoptr(GStrvBuilder) rest = g_strv_builder_new ();
  gboolean after_dashes = FALSE;
  gboolean ok;

  for (int i = 0; i < argc; i++)
    args[i] = g_strdup (argv[i]);

  /* --help prints "Usage: <prgname> ...": make that the subcommand. */
  g_set_prgname (argv[0]);
  ok = g_option_context_parse_strv (context, &args, &error);
  g_set_prgname ("tlspyo");
  if (!ok)
    {
      tlspyo_cli_printerr ("%s: run `%s --help` to see the options", error->message, argv[0]);
      return TLSPYO_CLI_EXIT_USAGE;
    }

  for (int i = 1; args[i] != NULL; i++)
    {
      if (!after_dashes && strcmp (args[i], "--") == 0)
        {
          after_dashes = TRUE;
          continue;
        }
      g_strv_builder_add (rest, args[i]);
    }
  *positional = g_strv_builder_end (rest);
  return -1;
}

int
tlspyo_cli_parse_options_only (GOptionContext  *context,
                               int              argc,
                               char           **argv)
{
  g_auto(GStrv) positional = NULL;
  int status = tlspyo_cli_parse (context, argc, argv, &positional);

  if (status >= 0)
    return status;
  if (positional[0] != NULL)
    {
      tlspyo_cli_printerr ("unexpected argument “%s”: run `%s --help` to see the options",
                           positional[0], argv[0]);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  return -1;
}

gboolean
tlspyo_cli_check_port (int        port,
                       gboolean   allow_zero,
                       GError   **error)
{
  if (port < (allow_zero ? 0 : 1) || port > G_MAXUINT16)
    return tlspyo_cli_usage_error (error, "--port %d is not a TCP port: give one from %d to 65535%s",
                                   port, allow_zero ? 0 : 1,
                                   allow_zero ? " (0 lets the system pick a free one)" : "");
  return TRUE;
}

gboolean
tlspyo_cli_parse_security (const char      *value,
                           TlspyoSecurity  *security,
                           GError         **error)
{
  if (g_strcmp0 (value, "tls") == 0)
    *security = TLSPYO_SECURITY_TLS;
  else if (g_strcmp0 (value, "none") == 0)
    *security = TLSPYO_SECURITY_NONE;
  else
    return tlspyo_cli_usage_error (error, "--security %s is not known: give tls (the default) "
                                   "or none (plain TCP, only on a network you trust)", value);
  return TRUE;
}

gboolean
tlspyo_cli_timeout_ms (double       seconds,
                       const char  *option,
                       int         *timeout_ms,
                       GError     **error)
{
  if (!(seconds > 0.0 && seconds <= MAX_TIMEOUT_S))
    return tlspyo_cli_usage_error (error, "%s %g is out of range: give a number of seconds "
                                   "above 0 and at most %.0f", option, seconds, MAX_TIMEOUT_S);
  *timeout_ms = MAX (1, (int) (seconds * 1000.0));
  return TRUE;
}

TlspyoCliPassword *
tlspyo_cli_read_password (const char  *password_file,
                          GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  const char *env;
  gsize length;

  if (password_file != NULL)
    {
      GStatBuf st;

      /* A FIFO or /dev/zero would never end or never fit: read files only. */
      if (g_stat (password_file, &st) == 0 && !S_ISREG (st.st_mode))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "--password-file %s is not a regular file: put the password in a file",
                       password_file);
          return NULL;
        }
      if (!g_file_get_contents (password_file, &contents, &length, &local_error))
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "could not read the password file: %s: check --password-file",
                       local_error->message);
          return NULL;
        }
      if (length > MAX_PASSWORD_FILE_SIZE || memchr (contents, '\0', length) != NULL)
        {
          memset (contents, 0, length);
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "--password-file %s does not hold a password (it is binary or larger "
                       "than 64 KiB): give a text file with the password on one line",
                       password_file);
          return NULL;
        }
      /* Editors end files with a newline; it is not part of the password. */
      if (length > 0 && contents[length - 1] == '\n')
        contents[--length] = '\0';
      if (length > 0 && contents[length - 1] == '\r')
        contents[--length] = '\0';
      if (length == 0)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "the password file %s is empty: write the password into it",
                       password_file);
          return NULL;
        }
      return g_steal_pointer (&contents);
    }

  env = g_getenv ("TLSPYO_PASSWORD");
  if (env != NULL && *env != '\0')
    return g_strdup (env);

  tlspyo_cli_usage_error (error, "no password given: put it in a file and pass "
                          "--password-file FILE, or set the TLSPYO_PASSWORD environment "
                          "variable (there is no --password option: the process list would "
                          "show it)");
  return NULL;
}

void
tlspyo_cli_password_free (TlspyoCliPassword *password)
{
  if (password == NULL)
    return;
  /* A volatile pointer keeps the compiler from dropping the wipe. */
  for (volatile char *p = password; *p != '\0'; p++)
    *p = '\0';
  g_free (password);
}

void
tlspyo_cli_endpoint_options_add (GOptionContext           *context,
                                 TlspyoCliEndpointOptions *options)
{
  const GOptionEntry entries[] = {
    { "host", 'H', 0, G_OPTION_ARG_STRING, &options->host,
      "The relay's host name or address (default: " DEFAULT_HOST ")", "HOST" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &options->port,
      "The relay's port (default: 2096)", "PORT" },
    { "security", 0, 0, G_OPTION_ARG_STRING, &options->security,
      "tls (the default) or none: must match the relay's", "MODE" },
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &options->directory,
      "The folder holding the relay's certificate.pem (default: the one `tlspyo credentials "
      "show` prints)", "DIR" },
    { "server-identity", 0, 0, G_OPTION_ARG_STRING, &options->server_identity,
      "The common name the relay's certificate carries (default: default)", "NAME" },
    { "password-file", 0, 0, G_OPTION_ARG_FILENAME, &options->password_file,
      "Read the password from FILE (else from $TLSPYO_PASSWORD)", "FILE" },
    { "user", 'u', 0, G_OPTION_ARG_STRING, &options->user,
      "Connect as USER, one of the relay's named users (the password is USER's)", "USER" },
    { "certificate", 0, 0, G_OPTION_ARG_FILENAME, &options->certificate,
      "Show the certificate in FILE (PEM) to a relay that requires client certificates; "
      "FILE holds its private key too, unless --private-key is given", "FILE" },
    { "private-key", 0, 0, G_OPTION_ARG_FILENAME, &options->private_key,
      "The private key of --certificate (PEM)", "FILE" },
    { "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &options->timeout,
      "Give up after SECONDS", "SECONDS" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &options->verbose,
      "Log what the connection does, and debug messages", NULL },
    { NULL }
  };

  options->port = DEFAULT_PORT;
  g_option_context_add_main_entries (context, entries, NULL);
}

void
tlspyo_cli_endpoint_options_clear (TlspyoCliEndpointOptions *options)
{
  g_clear_pointer (&options->host, g_free);
  g_clear_pointer (&options->security, g_free);
  g_clear_pointer (&options->directory, g_free);
  g_clear_pointer (&options->server_identity, g_free);
  g_clear_pointer (&options->password_file, g_free);
  g_clear_pointer (&options->user, g_free);
  g_clear_pointer (&options->certificate, g_free);
  g_clear_pointer (&options->private_key, g_free);
}

/* The client certificate of --certificate and --private-key, with its key,
 * or NULL with @error set. */
static GTlsCertificate *
load_client_certificate (TlspyoCliEndpointOptions  *options,
                         GError                   **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autofree char *key_pem = NULL;

  if (options->private_key != NULL)
    certificate = g_tls_certificate_new_from_files (options->certificate, options->private_key,
                                                    &local_error);
  else
    certificate = g_tls_certificate_new_from_file (options->certificate, &local_error);
  if (certificate == NULL)
    {
      if (options->private_key != NULL)
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                     "could not load the client certificate %s with the private key %s: %s: "
                     "give the PEM files of one certificate and its own key",
                     options->certificate, options->private_key, local_error->message);
      else
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                     "could not load the client certificate %s: %s: give a PEM file "
                     "holding the certificate and its private key, or the key's file with "
                     "--private-key", options->certificate, local_error->message);
      return NULL;
    }

  /* Without its key a certificate cannot be shown; GLib accepts a file with
   * a certificate alone. */
  g_object_get (certificate, "private-key-pem", &key_pem, NULL);
  if (key_pem == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "the client certificate %s holds no private key: give the key's file "
                   "with --private-key (key.pem in a folder made by `tlspyo credentials "
                   "generate`)", options->certificate);
      return NULL;
    }
  /* Erase the key's copy before freeing it, like the password's. */
  for (volatile char *p = key_pem; *p != '\0'; p++)
    *p = '\0';
  return g_steal_pointer (&certificate);
}

TlspyoEndpoint *
tlspyo_cli_endpoint_new (TlspyoCliEndpointOptions  *options,
                         const char * const        *groups,
                         GError                   **error)
{
  g_autoptr(TlspyoCliPassword) password = NULL;
  g_autoptr(GTlsCertificate) client_certificate = NULL;
  TlspyoSecurity security = TLSPYO_SECURITY_TLS;

  if (!tlspyo_cli_check_port (options->port, FALSE, error))
    return NULL;
  if (options->security != NULL && !tlspyo_cli_parse_security (options->security, &security, error))
    return NULL;
  if (options->host != NULL && *options->host == '\0')
    {
      tlspyo_cli_usage_error (error, "--host is empty: give the relay's host name or address");
      return NULL;
    }
  if (options->user != NULL && *options->user == '\0')
    {
      tlspyo_cli_usage_error (error, "--user is empty: give the name of one of the relay's "
                              "users, or leave --user out for the shared password");
      return NULL;
    }
  if (options->private_key != NULL && options->certificate == NULL)
    {
      tlspyo_cli_usage_error (error, "--private-key %s without --certificate: give the "
                              "certificate's file too", options->private_key);
      return NULL;
    }
  if (options->certificate != NULL && security != TLSPYO_SECURITY_TLS)
    {
      tlspyo_cli_usage_error (error, "--certificate needs TLS: a client certificate is shown "
                              "in the TLS handshake; leave out --security none");
      return NULL;
    }
  if (options->certificate != NULL)
    {
      client_certificate = load_client_certificate (options, error);
      if (client_certificate == NULL)
        return NULL;
    }
  password = tlspyo_cli_read_password (options->password_file, error);
  if (password == NULL)
    return NULL;

  tlspyo_cli_set_verbose (options->verbose, TRUE);
  return g_object_new (TLSPYO_TYPE_ENDPOINT,
                       "user", options->user,
                       "client-certificate", client_certificate,
                       "host", options->host ? options->host : DEFAULT_HOST,
                       "port", (guint) options->port,
                       "password", password,
                       "groups", groups,
                       "security", security,
                       "credentials-dir", options->directory,
                       "server-identity", options->server_identity ? options->server_identity : "default",
                       /* A command that gives up after a few seconds should retry often. */
                       "reconnect-initial-delay", 0.05,
                       "reconnect-max-delay", 1.0,
                       NULL);
}

gboolean
tlspyo_cli_endpoint_connect (TlspyoEndpoint            *endpoint,
                             TlspyoCliEndpointOptions  *options,
                             int                        timeout_ms,
                             GError                   **error)
{
  g_autoptr(GError) local_error = NULL;
  const char *hint = NULL;

  if (tlspyo_endpoint_start (endpoint, &local_error) &&
      tlspyo_endpoint_wait_connected (endpoint, timeout_ms, &local_error))
    return TRUE;

  /* The library's messages name the relay; add what to do where they do not. */
  if (local_error->domain == TLSPYO_ERROR)
    switch ((TlspyoError) local_error->code)
      {
      case TLSPYO_ERROR_TIMED_OUT:
        /* A relay that requires client certificates refuses in the TLS
         * handshake, which TLS 1.3 shows the client as a lost connection
         * only: the endpoint retries until the timeout. */
        if (options->certificate == NULL)
          hint = "check that the relay runs, that --host, --port and --security match it, "
                 "or wait longer with --timeout; a relay that requires client certificates "
                 "also needs --certificate";
        else
          hint = "check that the relay runs, that --host, --port and --security match it, "
                 "that the relay's client-certificates folder holds the --certificate and "
                 "that --private-key is its key, or wait longer with --timeout";
        break;
      case TLSPYO_ERROR_AUTHENTICATION:
        hint = "check the password in --password-file or TLSPYO_PASSWORD";
        break;
      case TLSPYO_ERROR_PERMISSION_DENIED:
        hint = "give --user NAME, with NAME's password, for a user the relay allows this";
        break;
      case TLSPYO_ERROR_GROUP_REFUSED:
        hint = "use a group the relay accepts (the groups of its config)";
        break;
      default:
        break;
      }
  if (hint != NULL)
    g_set_error (error, local_error->domain, local_error->code, "%s: %s",
                 local_error->message, hint);
  else
    g_propagate_error (error, g_steal_pointer (&local_error));
  return FALSE;
}

/* Client commands report failures in one line of their own; the library's
 * warnings about the same failure would only repeat it. */
static gboolean library_quiet = FALSE;

static GLogWriterOutput
log_writer (GLogLevelFlags   level,
            const GLogField *fields,
            gsize            n_fields,
            gpointer         data)
{
  if (library_quiet && !(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)))
    {
      for (gsize i = 0; i < n_fields; i++)
        if (strcmp (fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].length < 0 &&
            g_strcmp0 (fields[i].value, "Tlspyo") == 0)
          return G_LOG_WRITER_HANDLED;
    }
  return g_log_writer_default (level, fields, n_fields, data);
}

void
tlspyo_cli_log_init (void)
{
  /* Standard output carries data (`receive` prints objects), so every log
   * line, debug ones included, goes to standard error (or the journal). */
  g_log_writer_default_set_use_stderr (TRUE);
  g_log_set_writer_func (log_writer, NULL, NULL);
}

void
tlspyo_cli_set_verbose (gboolean verbose,
                        gboolean quiet_library)
{
  library_quiet = quiet_library && !verbose;
  if (verbose)
    g_log_set_debug_enabled (TRUE);
}

static gboolean
stop_requested (TlspyoCliSignals *signals,
                int               signum)
{
  if (signals->received == 0)
    signals->received = signum;
  g_main_context_wakeup (NULL);
  return G_SOURCE_CONTINUE;
}

static gboolean
sigint_cb (gpointer data)
{
  return stop_requested (data, SIGINT);
}

static gboolean
sigterm_cb (gpointer data)
{
  return stop_requested (data, SIGTERM);
}

void
tlspyo_cli_signals_watch (TlspyoCliSignals *signals)
{
  signals->received = 0;
  signals->sources[0] = g_unix_signal_add (SIGINT, sigint_cb, signals);
  signals->sources[1] = g_unix_signal_add (SIGTERM, sigterm_cb, signals);
}

void
tlspyo_cli_signals_unwatch (TlspyoCliSignals *signals)
{
  for (gsize i = 0; i < G_N_ELEMENTS (signals->sources); i++)
    g_clear_handle_id (&signals->sources[i], g_source_remove);
}

gboolean
tlspyo_cli_write_port_file (const char  *path,
                            guint        port,
                            GError     **error)
{
  g_autofree char *text = g_strdup_printf ("%u\n", port);
  g_autoptr(GError) local_error = NULL;

  /* Written whole or not at all: a reader polling for it never sees half. */
  if (!g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                 &local_error))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "could not write the port file: %s: check --port-file", local_error->message);
      return FALSE;
    }
  return TRUE;
}

char *
tlspyo_cli_prompt (const char  *question,
                   GError     **error)
{
  g_autoptr(GString) line = g_string_new (NULL);
  int c;

  g_print ("%s", question);
  fflush (stdout);
  while ((c = getchar ()) != EOF && c != '\n')
    {
      if (line->len < 4096)
        g_string_append_c (line, (char) c);
    }
  if (c == EOF && line->len == 0)
    {
      g_print ("\n");
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "the input ended before an answer: answer the question, or give "
                           "the values as options");
      return NULL;
    }
  g_strstrip (line->str);
  return g_strdup (line->str);
}
