/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <math.h>
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

/* Drops (max_consumables, refused groups, coalesced broadcasts) are logged,
 * never silent, but at most one line per group per DROP_LOG_PERIOD_MS: a
 * bounded queue that overflows on every produce is the intended steady state
 * of a relay whose producers outpace its consumers, and one line per object
 * would flood the journal. Every dropped object is in some line's count. */
#define DROP_LOG_PERIOD_MS 1000

typedef struct {
  guint64  pending;    /* objects dropped since the group's last line */
  guint    n_reports;  /* emissions they came in */
  char    *reason;     /* the latest one's */
} DropEntry;

typedef struct {
  TlspyoRelay *relay;     /* unowned: outlives this */
  gulong       handler;
  GHashTable  *groups;    /* name -> DropEntry, for groups logged this period */
  guint        flush_id;
} DropLog;

static void
drop_entry_free (gpointer data)
{
  DropEntry *entry = data;

  g_free (entry->reason);
  g_free (entry);
}

static void
log_drop (const char *group,
          guint64     count,
          guint       n_reports,
          const char *reason)
{
  g_autofree char *message = NULL;
  char count_text[24];
  char reports_text[16];

  g_snprintf (count_text, sizeof count_text, "%" G_GUINT64_FORMAT, count);
  g_snprintf (reports_text, sizeof reports_text, "%u", n_reports);
  if (n_reports == 1)
    message = g_strdup_printf ("Dropped %s object%s for group “%s”: %s",
                               count_text, count == 1 ? "" : "s", group, reason);
  else
    message = g_strdup_printf ("Dropped %s object%s for group “%s” in %s reports; "
                               "the latest: %s", count_text, count == 1 ? "" : "s", group,
                               reports_text, reason);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "object-dropped",
                    "TLSPYO_GROUP", group,
                    "TLSPYO_DROPPED", count_text,
                    "TLSPYO_REPORTS", reports_text,
                    "TLSPYO_REASON", reason,
                    "MESSAGE", "%s", message);
}

/* Logs what each group dropped since its last line, and forgets the groups
 * that dropped nothing meanwhile: their next drop is logged at once. */
static gboolean
drop_log_flush_cb (gpointer data)
{
  DropLog *log = data;
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, log->groups);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      DropEntry *entry = value;

      if (entry->pending == 0)
        {
          g_hash_table_iter_remove (&iter);
          continue;
        }
      log_drop (key, entry->pending, entry->n_reports, entry->reason);
      entry->pending = 0;
      entry->n_reports = 0;
    }
  if (g_hash_table_size (log->groups) > 0)
    return G_SOURCE_CONTINUE;
  log->flush_id = 0;
  return G_SOURCE_REMOVE;
}

static void
object_dropped_cb (TlspyoRelay *relay,
                   const char  *group,
                   const char  *reason,
                   guint64      count,
                   gpointer     data)
{
  DropLog *log = data;
  DropEntry *entry = g_hash_table_lookup (log->groups, group);

  if (entry == NULL)
    {
      log_drop (group, count, 1, reason);
      g_hash_table_insert (log->groups, g_strdup (group), g_new0 (DropEntry, 1));
      if (log->flush_id == 0)
        log->flush_id = g_timeout_add (DROP_LOG_PERIOD_MS, drop_log_flush_cb, log);
      return;
    }
  entry->pending += count;
  entry->n_reports++;
  g_free (entry->reason);
  entry->reason = g_strdup (reason);
}

static DropLog *
drop_log_new (TlspyoRelay *relay)
{
  DropLog *log = g_new0 (DropLog, 1);

  log->relay = relay;
  log->groups = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, drop_entry_free);
  log->handler = g_signal_connect (relay, "object-dropped", G_CALLBACK (object_dropped_cb), log);
  return log;
}

/* Logs the drops still pending, so that none goes unreported at exit. */
static void
drop_log_free (DropLog *log)
{
  g_clear_signal_handler (&log->handler, log->relay);
  g_clear_handle_id (&log->flush_id, g_source_remove);
  drop_log_flush_cb (log);
  g_hash_table_unref (log->groups);
  g_free (log);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (DropLog, drop_log_free)

static char *
format_bytes (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS);
}

static guint64
lookup_uint64 (GVariant   *dict,
               const char *key)
{
  guint64 value = 0;

  g_variant_lookup (dict, key, "t", &value);
  return value;
}

/* Per group summaries in one stats line: enough to spot a growing queue,
 * short enough for a line; tlspyo_relay_get_stats() has everything. */
#define STATS_MAX_GROUPS 16

static gint
compare_group_names (gconstpointer a,
                     gconstpointer b)
{
  GVariant *const *va = a;
  GVariant *const *vb = b;
  const char *name_a, *name_b;

  g_variant_get_child (*va, 0, "&s", &name_a);
  g_variant_get_child (*vb, 0, "&s", &name_b);
  return strcmp (name_a, name_b);
}

static void
append_group_stats (GString  *message,
                    GVariant *groups)
{
  g_autoptr(GPtrArray) sorted = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  gsize n_groups = g_variant_n_children (groups);

  for (gsize i = 0; i < n_groups; i++)
    g_ptr_array_add (sorted, g_variant_get_child_value (groups, i));
  g_ptr_array_sort (sorted, compare_group_names);

  for (guint i = 0; i < sorted->len && i < STATS_MAX_GROUPS; i++)
    {
      g_autoptr(GVariant) dict = NULL;
      g_autofree char *queued_size = NULL;
      const char *name;
      guint32 members = 0;

      g_variant_get (g_ptr_array_index (sorted, i), "{&s@a{sv}}", &name, &dict);
      g_variant_lookup (dict, "members", "u", &members);
      queued_size = format_bytes (lookup_uint64 (dict, "queued-bytes"));
      g_string_append_printf (message, "; group “%s”: %u member%s, %" G_GUINT64_FORMAT
                              " queued (%s), %" G_GUINT64_FORMAT " in flight, %"
                              G_GUINT64_FORMAT " credit, %" G_GUINT64_FORMAT " dropped",
                              name, members, members == 1 ? "" : "s",
                              lookup_uint64 (dict, "queued"), queued_size,
                              lookup_uint64 (dict, "in-flight"), lookup_uint64 (dict, "credit"),
                              lookup_uint64 (dict, "dropped"));
    }
  if (sorted->len > STATS_MAX_GROUPS)
    g_string_append_printf (message, "; and %u more groups", sorted->len - STATS_MAX_GROUPS);
}

/* `--stats-interval`: the totals as journal fields, and a line to read. */
static gboolean
log_stats_cb (gpointer data)
{
  TlspyoRelay *relay = data;
  g_autoptr(GVariant) stats = g_variant_ref_sink (tlspyo_relay_get_stats (relay));
  g_autoptr(GVariant) groups = g_variant_lookup_value (stats, "groups",
                                                       G_VARIANT_TYPE ("a{sa{sv}}"));
  g_autoptr(GString) message = g_string_new (NULL);
  g_autofree char *queued_size = NULL;
  g_autofree char *in_size = NULL;
  g_autofree char *out_size = NULL;
  guint32 n_connections = 0;
  struct {
    const char *key;
    const char *field;
    char        text[24];
  } totals[] = {
    { "queued", "TLSPYO_QUEUED", "" },
    { "produced-bytes", "TLSPYO_QUEUED_BYTES", "" },
    { "in-flight", "TLSPYO_IN_FLIGHT", "" },
    { "dropped", "TLSPYO_DROPPED", "" },
    { "bytes-in", "TLSPYO_BYTES_IN", "" },
    { "bytes-out", "TLSPYO_BYTES_OUT", "" },
    { "queued-bytes", "TLSPYO_OUTPUT_BYTES", "" },
    { "duplicates", "TLSPYO_DUPLICATES", "" },
  };
  guint64 values[G_N_ELEMENTS (totals)];
  char connections_text[16];
  char groups_text[24];

  for (gsize i = 0; i < G_N_ELEMENTS (totals); i++)
    {
      values[i] = lookup_uint64 (stats, totals[i].key);
      g_snprintf (totals[i].text, sizeof totals[i].text, "%" G_GUINT64_FORMAT, values[i]);
    }
  g_variant_lookup (stats, "n-connections", "u", &n_connections);
  g_snprintf (connections_text, sizeof connections_text, "%u", n_connections);
  g_snprintf (groups_text, sizeof groups_text, "%" G_GSIZE_FORMAT,
              groups ? g_variant_n_children (groups) : 0);

  queued_size = format_bytes (values[1]);
  in_size = format_bytes (values[4]);
  out_size = format_bytes (values[5]);
  g_string_append_printf (message, "stats: %u connection%s, %" G_GUINT64_FORMAT " queued (%s), %"
                          G_GUINT64_FORMAT " in flight, %" G_GUINT64_FORMAT " dropped, %s in, "
                          "%s out", n_connections, n_connections == 1 ? "" : "s",
                          values[0], queued_size, values[2], values[3], in_size, out_size);
  if (values[6] > 0)
    {
      g_autofree char *waiting = format_bytes (values[6]);
      g_string_append_printf (message, ", %s waiting to be sent", waiting);
    }
  if (values[7] > 0)
    g_string_append_printf (message, ", %" G_GUINT64_FORMAT " duplicate%s skipped",
                            values[7], values[7] == 1 ? "" : "s");
  if (groups != NULL)
    append_group_stats (message, groups);

  G_STATIC_ASSERT (G_N_ELEMENTS (totals) == 8);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "TLSPYO_EVENT", "stats",
                    "TLSPYO_CONNECTIONS", connections_text,
                    "TLSPYO_GROUP_COUNT", groups_text,
                    totals[0].field, totals[0].text,
                    totals[1].field, totals[1].text,
                    totals[2].field, totals[2].text,
                    totals[3].field, totals[3].text,
                    totals[4].field, totals[4].text,
                    totals[5].field, totals[5].text,
                    totals[6].field, totals[6].text,
                    totals[7].field, totals[7].text,
                    "MESSAGE", "%s", message->str);
  return G_SOURCE_CONTINUE;
}

/* "0", "0.5", "60": seconds, 0 for off. */
static gboolean
parse_stats_interval (const char  *text,
                      double      *out,
                      GError     **error)
{
  char *end = NULL;
  double value;

  value = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || !isfinite (value) ||
      (value != 0.0 && !(value >= TLSPYO_CONFIG_MIN_STATS_INTERVAL &&
                         value <= TLSPYO_CONFIG_MAX_STATS_INTERVAL)))
    {
      return tlspyo_cli_usage_error (error, "--stats-interval %s is not valid: give a number "
                                     "of seconds from "
                                     G_STRINGIFY (TLSPYO_CONFIG_MIN_STATS_INTERVAL) " to "
                                     G_STRINGIFY (TLSPYO_CONFIG_MAX_STATS_INTERVAL) ", such "
                                     "as 60 or 0.5, or 0 for no stats", text);
    }
  *out = value;
  return TRUE;
}

/* A path from the config file, relative to the file's folder, so that the
 * config works from any folder. g_canonicalize_filename() wants an
 * absolute base: with a relative --config it would return NULL (and the
 * relay fall back to its defaults). */
static char *
config_path (const char *config_file,
             const char *path)
{
  g_autofree char *folder = g_path_get_dirname (config_file);
  g_autofree char *base = g_canonicalize_filename (folder, NULL);

  return g_canonicalize_filename (path, base);
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
  if (config->limits.fields & TLSPYO_CONFIG_MAX_IN_FLIGHT_BYTES)
    g_object_set (relay, "max-in-flight-bytes", config->limits.max_in_flight_bytes, NULL);

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
  g_autofree char *stats_interval_text = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = NULL;
  g_autoptr(TlspyoCliPassword) password = NULL;
  g_autoptr(TlspyoRelay) relay = NULL;
  /* After relay: freed first, while the relay still exists. */
  g_autoptr(DropLog) drops = NULL;
  TlspyoCliSignals signals = { { 0 }, 0 };
  TlspyoSecurity security = TLSPYO_SECURITY_TLS;
  gboolean verbose = FALSE;
  double stats_interval = 0.0;
  guint stats_id = 0;
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
    { "stats-interval", 0, 0, G_OPTION_ARG_STRING, &stats_interval_text,
      "Log the relay's statistics every SECONDS (fractions allowed; default 0: never)",
      "SECONDS" },
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
                                    "handshake_timeout, groups, limits, users, "
                                    "stats_interval and state_directory; see "
                                    "tlspyo(1). With users in it, the shared password is "
                                    "optional: without one, only users get in.",
                                    entries);
  status = tlspyo_cli_parse_options_only (context, argc, argv);
  if (status >= 0)
    return status;
  if (port != -1 && !tlspyo_cli_check_port (port, TRUE, &error))
    return tlspyo_cli_report (error);
  if (security_name != NULL && !tlspyo_cli_parse_security (security_name, &security, &error))
    return tlspyo_cli_report (error);
  if (stats_interval_text != NULL &&
      !parse_stats_interval (stats_interval_text, &stats_interval, &error))
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
        directory = config_path (config_file, config->credentials_dir);
      if (stats_interval_text == NULL && (config->fields & TLSPYO_CONFIG_STATS_INTERVAL))
        stats_interval = config->stats_interval;
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
  if (config != NULL && (config->fields & TLSPYO_CONFIG_CLIENT_CERTIFICATES_DIR))
    {
      g_autofree char *clients = config_path (config_file, config->client_certificates_dir);

      g_object_set (relay, "client-certificates-dir", clients, NULL);
    }
  if (config != NULL && (config->fields & TLSPYO_CONFIG_SESSION_TIMEOUT))
    g_object_set (relay, "session-timeout", config->session_timeout, NULL);
  if (config != NULL && (config->fields & TLSPYO_CONFIG_STATE_DIRECTORY))
    {
      g_autofree char *state = config_path (config_file, config->state_directory);

      g_object_set (relay, "state-directory", state, NULL);
    }

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
  drops = drop_log_new (relay);

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

  if (stats_interval > 0.0)
    stats_id = g_timeout_add ((guint) (stats_interval * 1000.0 + 0.5), log_stats_cb, relay);

  tlspyo_cli_signals_watch (&signals);
  while (signals.received == 0)
    g_main_context_iteration (NULL, TRUE);
  tlspyo_cli_signals_unwatch (&signals);
  /* stop() may run this context: no snapshot of a relay being stopped. */
  g_clear_handle_id (&stats_id, g_source_remove);

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
