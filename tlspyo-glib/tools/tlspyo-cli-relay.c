/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#include "tlspyo-cli.h"
#include "tlspyo-config.h"

#define MAX_CONFIG_SIZE (1024 * 1024)

static const char *
error_code_name (TlspyoError code)
{
  /* Kept for the life of the process, so the nick can be returned. */
  static GEnumClass *klass = NULL;
  GEnumValue *value;

  if (klass == NULL)
    klass = g_type_class_ref (TLSPYO_TYPE_ERROR);
  value = g_enum_get_value (klass, code);
  return value ? value->value_nick : "unknown";
}

/* Connections, departures and refusals, with structured fields a journal
 * can filter on. Objects, group contents and passwords are never logged. */
static void
endpoint_connected_cb (TlspyoRelay        *relay,
                       const char         *address,
                       const char * const *groups,
                       gpointer            data)
{
  g_autofree char *group_list = g_strjoinv (",", (char **) groups);

  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "endpoint-connected",
                    "TLSPYO_PEER", address,
                    "TLSPYO_GROUPS", group_list,
                    "MESSAGE", "Endpoint %s connected, in groups %s", address, group_list);
}

static void
endpoint_disconnected_cb (TlspyoRelay *relay,
                          const char  *address,
                          gpointer     data)
{
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "endpoint-disconnected",
                    "TLSPYO_PEER", address,
                    "MESSAGE", "Endpoint %s disconnected", address);
}

static void
endpoint_refused_cb (TlspyoRelay *relay,
                     const char  *address,
                     TlspyoError  code,
                     const char  *reason,
                     gpointer     data)
{
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "endpoint-refused",
                    "TLSPYO_PEER", address,
                    "TLSPYO_ERROR_CODE", error_code_name (code),
                    "MESSAGE", "Refused %s (%s): %s", address, error_code_name (code), reason);
}

static TlspyoConfig *
load_config (const char  *path,
             GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  TlspyoConfig *config;
  gsize length;

  if (!g_file_get_contents (path, &contents, &length, &local_error))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "could not read the config: %s: check --config", local_error->message);
      return NULL;
    }
  if (length > MAX_CONFIG_SIZE)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "%s is larger than 1 MiB, which no relay config is: check --config", path);
      return NULL;
    }
  config = tlspyo_config_parse (contents, length, &local_error);
  if (config == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "%s: %s", path, local_error->message);
      return NULL;
    }
  return config;
}

/* The config's "limits" and "users" (docs/security.md). */
static gboolean
apply_limits_and_users (TlspyoRelay   *relay,
                        TlspyoConfig  *config,
                        GError       **error)
{
  static const struct {
    guint       flag;
    const char *property;
    gsize       offset;
  } limits[] = {
    { TLSPYO_CONFIG_MAX_CONNECTIONS, "max-connections",
      G_STRUCT_OFFSET (TlspyoConfigLimits, max_connections) },
    { TLSPYO_CONFIG_MAX_CONNECTIONS_PER_ADDRESS, "max-connections-per-address",
      G_STRUCT_OFFSET (TlspyoConfigLimits, max_connections_per_address) },
    { TLSPYO_CONFIG_MAX_AUTH_FAILURES, "max-auth-failures",
      G_STRUCT_OFFSET (TlspyoConfigLimits, max_auth_failures) },
    { TLSPYO_CONFIG_AUTH_BLOCK_TIME, "auth-block-time",
      G_STRUCT_OFFSET (TlspyoConfigLimits, auth_block_time) },
    { TLSPYO_CONFIG_AUTH_FAILURE_DELAY, "auth-failure-delay",
      G_STRUCT_OFFSET (TlspyoConfigLimits, auth_failure_delay) },
    { TLSPYO_CONFIG_MAX_GROUPS_PER_ENDPOINT, "max-groups-per-endpoint",
      G_STRUCT_OFFSET (TlspyoConfigLimits, max_groups_per_endpoint) },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (limits); i++)
    if (config->limits.fields & limits[i].flag)
      g_object_set (relay, limits[i].property,
                    G_STRUCT_MEMBER (guint, &config->limits, limits[i].offset), NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_QUEUED_BYTES)
    g_object_set (relay, "max-queued-bytes", config->limits.max_queued_bytes, NULL);

  for (guint i = 0; i < config->users->len; i++)
    {
      TlspyoConfigUser *user = g_ptr_array_index (config->users, i);

      if (!tlspyo_relay_add_user (relay, user->name, user->password_hash, error))
        return FALSE;
      for (guint j = 0; j < user->grants->len; j++)
        {
          TlspyoConfigGrant *grant = g_ptr_array_index (user->grants, j);
          tlspyo_relay_grant (relay, user->name, grant->group, grant->rights);
        }
    }
  return TRUE;
}

static char *
describe_listen_address (const char *address,
                         guint       port)
{
  if (address == NULL)
    return g_strdup_printf ("*:%u", port);
  if (strchr (address, ':') != NULL)
    return g_strdup_printf ("[%s]:%u", address, port);
  return g_strdup_printf ("%s:%u", address, port);
}

int
tlspyo_cli_relay (int    argc,
                  char **argv)
{
  g_autofree char *config_file = NULL;
  g_autofree char *address = NULL;
  g_autofree char *security_name = NULL;
  g_autofree char *directory = NULL;
  g_autofree char *password_file = NULL;
  g_autofree char *port_file = NULL;
  g_autofree char *listening = NULL;
  g_autofree char *fingerprint = NULL;
  g_auto(GStrv) positional = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = NULL;
  g_autoptr(TlspyoCliPassword) password = NULL;
  g_autoptr(TlspyoRelay) relay = NULL;
  TlspyoCliSignals signals = { { 0 }, 0 };
  TlspyoSecurity security = TLSPYO_SECURITY_TLS;
  gboolean verbose = FALSE;
  int port = -1;
  int status;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file,
      "Read settings from the JSON file FILE (options given here override it)", "FILE" },
    { "address", 'a', 0, G_OPTION_ARG_STRING, &address,
      "Listen on this IP address only (default: every interface)", "ADDRESS" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &port,
      "Listen on PORT (default: 2096; 0: a free port, see --port-file)", "PORT" },
    { "security", 0, 0, G_OPTION_ARG_STRING, &security_name,
      "tls (the default) or none (plain TCP, only on a network you trust)", "MODE" },
    { "directory", 'd', 0, G_OPTION_ARG_FILENAME, &directory,
      "The folder holding key.pem and certificate.pem (default: the folder `tlspyo "
      "credentials show` prints)", "DIR" },
    { "password-file", 0, 0, G_OPTION_ARG_FILENAME, &password_file,
      "Read the password from FILE (else from $TLSPYO_PASSWORD)", "FILE" },
    { "port-file", 0, 0, G_OPTION_ARG_FILENAME, &port_file,
      "Write the port listened on into FILE once listening, and remove it on exit", "FILE" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
      "Log every connection and refusal, and debug messages", NULL },
    { NULL }
  };

  context = tlspyo_cli_context_new (NULL, "Run a relay in the foreground until SIGINT or "
                                    "SIGTERM, then stop gracefully. Once listening it prints "
                                    "“listening on ADDRESS:PORT”. Logs go to standard error "
                                    "(or the journal).",
                                    "The config file is JSON with the optional keys address, "
                                    "port, security, credentials_dir, max_object_size, "
                                    "handshake_timeout, groups, limits and users; see "
                                    "tlspyo(1). With users in it, the shared password is "
                                    "optional: without one, only users get in.");
  g_option_context_add_main_entries (context, entries, NULL);
  status = tlspyo_cli_parse (context, argc, argv, &positional);
  if (status >= 0)
    return status;
  if (positional[0] != NULL)
    {
      tlspyo_cli_printerr ("unexpected argument “%s”: run `%s --help` to see the options",
                           positional[0], argv[0]);
      return TLSPYO_CLI_EXIT_USAGE;
    }
  if (port != -1 && !tlspyo_cli_check_port (port, TRUE, &error))
    return tlspyo_cli_report (error);
  if (security_name != NULL && !tlspyo_cli_parse_security (security_name, &security, &error))
    return tlspyo_cli_report (error);
  if (address != NULL)
    {
      g_autoptr(GInetAddress) inet = g_inet_address_new_from_string (address);

      if (inet == NULL)
        {
          tlspyo_cli_printerr ("--address %s is not an IP address: give one such as 127.0.0.1 "
                               "or ::, or leave the option out to listen on every interface",
                               address);
          return TLSPYO_CLI_EXIT_USAGE;
        }
    }
  tlspyo_cli_set_verbose (verbose, FALSE);

  if (config_file != NULL)
    {
      config = load_config (config_file, &error);
      if (config == NULL)
        return tlspyo_cli_report (error);

      if (address == NULL && (config->fields & TLSPYO_CONFIG_ADDRESS))
        address = g_strdup (config->address);
      if (port == -1 && (config->fields & TLSPYO_CONFIG_PORT))
        port = (int) config->port;
      if (security_name == NULL && (config->fields & TLSPYO_CONFIG_SECURITY))
        security = config->security;
      if (directory == NULL && (config->fields & TLSPYO_CONFIG_CREDENTIALS_DIR))
        {
          /* Relative to the file, so that the config works from any folder. */
          g_autofree char *base = g_path_get_dirname (config_file);
          directory = g_canonicalize_filename (config->credentials_dir, base);
        }
    }

  /* With users in the config, the shared password is optional: without
   * it only users get in. */
  if (password_file != NULL || g_getenv ("TLSPYO_PASSWORD") != NULL ||
      config == NULL || config->users->len == 0)
    {
      password = tlspyo_cli_read_password (password_file, &error);
      if (password == NULL)
        return tlspyo_cli_report (error);
    }

  relay = g_object_new (TLSPYO_TYPE_RELAY,
                        "password", password,
                        "address", address,
                        "security", security,
                        "credentials-dir", directory,
                        NULL);
  if (port != -1)
    g_object_set (relay, "port", (guint) port, NULL);
  if (config != NULL && (config->fields & TLSPYO_CONFIG_MAX_OBJECT_SIZE))
    g_object_set (relay, "max-object-size", config->max_object_size, NULL);
  if (config != NULL && (config->fields & TLSPYO_CONFIG_HANDSHAKE_TIMEOUT))
    g_object_set (relay, "handshake-timeout", config->handshake_timeout, NULL);
  for (guint i = 0; config != NULL && i < config->groups->len; i++)
    {
      TlspyoConfigGroup *group = g_ptr_array_index (config->groups, i);
      tlspyo_relay_accept_group (relay, group->name, group->max_count, group->max_consumables);
    }
  if (config != NULL && !apply_limits_and_users (relay, config, &error))
    return tlspyo_cli_report (error);

  if (security == TLSPYO_SECURITY_TLS)
    {
      /* Loaded here rather than by the relay: the fingerprint goes in the
       * log, for operators to hand to `tlspyo credentials fetch`. */
      g_autoptr(GTlsCertificate) certificate = NULL;

      certificate = tlspyo_credentials_load_certificate (directory, TRUE, &error);
      if (certificate == NULL)
        return tlspyo_cli_report (error);
      fingerprint = tlspyo_credentials_get_fingerprint (certificate);
      g_object_set (relay, "certificate", certificate, NULL);
    }
  else
    {
      g_message ("Security is none: objects and group names travel in clear; use it only "
                 "on a network you trust");
    }

  g_signal_connect (relay, "endpoint-connected", G_CALLBACK (endpoint_connected_cb), NULL);
  g_signal_connect (relay, "endpoint-disconnected", G_CALLBACK (endpoint_disconnected_cb), NULL);
  g_signal_connect (relay, "endpoint-refused", G_CALLBACK (endpoint_refused_cb), NULL);

  if (!tlspyo_relay_start (relay, &error))
    return tlspyo_cli_report (error);
  /* The password is now held (hashed) by the relay only. */
  g_clear_pointer (&password, tlspyo_cli_password_free);

  listening = describe_listen_address (address, tlspyo_relay_get_port (relay));
  if (port_file != NULL && !tlspyo_cli_write_port_file (port_file, tlspyo_relay_get_port (relay),
                                                        &error))
    {
      tlspyo_relay_stop (relay);
      return tlspyo_cli_report (error);
    }

  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "relay-started",
                    "TLSPYO_LISTEN", listening,
                    "MESSAGE", "Relay started on %s with %s; %u group rule%s%s%s",
                    listening, fingerprint ? "TLS" : "plain TCP",
                    config ? config->groups->len : 0,
                    config && config->groups->len == 1 ? "" : "s",
                    fingerprint ? "; certificate SHA-256 fingerprint " : "",
                    fingerprint ? fingerprint : "");
  if (fingerprint != NULL)
    g_print ("certificate SHA-256 fingerprint: %s\n", fingerprint);
  g_print ("listening on %s\n", listening);
  fflush (stdout);

  tlspyo_cli_signals_watch (&signals);
  while (signals.received == 0)
    g_main_context_iteration (NULL, TRUE);
  tlspyo_cli_signals_unwatch (&signals);

  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "relay-stopping",
                    "MESSAGE", "Stopping on %s: closing %u connection%s",
                    signals.received == SIGINT ? "SIGINT" : "SIGTERM",
                    tlspyo_relay_get_n_connections (relay),
                    tlspyo_relay_get_n_connections (relay) == 1 ? "" : "s");
  tlspyo_relay_stop (relay);
  if (port_file != NULL)
    g_unlink (port_file);
  return TLSPYO_CLI_EXIT_OK;
}
