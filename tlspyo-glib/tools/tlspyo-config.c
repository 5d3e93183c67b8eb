/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include <gio/gio.h>

#include "tlspyo-config.h"
#include "tlspyo-json-doc.h"

/* Must match the library's rule for group names (tlspyo-frame.c), which
 * tlspyo_relay_accept_group() asserts. */
#define GROUP_NAME_MAX_BYTES 255

/* The library's ranges for the matching TlspyoRelay properties. */
#define MIN_OBJECT_SIZE 2
#define MIN_HANDSHAKE_TIMEOUT 1
#define MAX_HANDSHAKE_TIMEOUT 3600

typedef struct {
  TlspyoJsonDoc *doc;
  GString       *path;  /* dotted name of the key being read */
} Reader;

typedef struct _Key Key;

typedef gboolean (*ReadFunc) (Reader     *reader,
                              JsonNode   *node,
                              const Key  *key,
                              gpointer    field,
                              GError    **error);

/* One known key of an object: adding a config key is one line in a table
 * below, plus a field in TlspyoConfig. */
struct _Key {
  const char *name;
  ReadFunc    read;
  gsize       offset;  /* of the field in the struct the object fills */
  guint       flag;    /* set in the struct's TlspyoConfigFields, or 0 */
  gint64      min;     /* for integers */
  gint64      max;
  const char *note;    /* for integers: what special values mean, or NULL */
};

typedef struct {
  const char *what;   /* "the relay config", "a group" */
  const Key  *keys;
  gsize       n_keys;
  gssize      fields_offset;  /* of a TlspyoConfigFields in the struct, or -1 */
} Table;

static gboolean read_object (Reader      *reader,
                             JsonNode    *node,
                             const Table *table,
                             gpointer     target,
                             GError     **error);

static void
path_push (Reader     *reader,
           const char *name)
{
  gboolean plain = *name != '\0';

  for (const char *p = name; *p != '\0' && plain; p++)
    plain = g_ascii_isalnum (*p) || *p == '_' || *p == '-';
  if (reader->path->len > 0 && plain)
    g_string_append_c (reader->path, '.');
  if (plain)
    {
      g_string_append (reader->path, name);
    }
  else
    {
      g_autofree char *escaped = g_strescape (name, NULL);
      g_string_append_printf (reader->path, "[\"%s\"]", escaped);
    }
}

static gboolean
fail_at (Reader     *reader,
         JsonNode   *node,
         gboolean    at_key,
         GError    **error,
         const char *format,
         ...) G_GNUC_PRINTF (5, 6);

/* "line L, column C: key “a.b”: message" */
static gboolean
fail_at (Reader     *reader,
         JsonNode   *node,
         gboolean    at_key,
         GError    **error,
         const char *format,
         ...)
{
  TlspyoJsonPosition position;
  g_autofree char *message = NULL;
  g_autofree char *where = NULL;
  gboolean found;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  if (at_key)
    found = tlspyo_json_doc_get_key_position (reader->doc, node, &position);
  else
    found = tlspyo_json_doc_get_position (reader->doc, node, &position);
  if (found)
    where = g_strdup_printf ("line %u, column %u: ", position.line, position.column);

  if (reader->path->len > 0)
    g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                 "%skey “%s”: %s", where ? where : "", reader->path->str, message);
  else
    g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                 "%s%s", where ? where : "", message);
  return FALSE;
}

static gboolean
fail_type (Reader     *reader,
           JsonNode   *node,
           const char *expected,
           GError    **error)
{
  g_autofree char *found = tlspyo_json_doc_describe_node (node);

  return fail_at (reader, node, FALSE, error, "expected %s, found %s", expected, found);
}

/* Reads one member of an object; the reader's path names it. */
typedef gboolean (*MemberFunc) (Reader      *reader,
                                const char  *name,
                                JsonNode    *member,
                                gpointer     data,
                                GError     **error);

/* Calls @func on each member of the object @node, in file order; a node
 * that is not an object is an error that says it expected @expected. */
static gboolean
read_members (Reader      *reader,
              JsonNode    *node,
              const char  *expected,
              MemberFunc   func,
              gpointer     data,
              GError     **error)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *member;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail_type (reader, node, expected, error);

  json_object_iter_init_ordered (&iter, json_node_get_object (node));
  while (json_object_iter_next_ordered (&iter, &name, &member))
    {
      gsize len = reader->path->len;

      path_push (reader, name);
      if (!func (reader, name, member, data, error))
        return FALSE;
      g_string_truncate (reader->path, len);
    }
  return TRUE;
}

static gboolean
get_string (Reader      *reader,
            JsonNode    *node,
            const char **out,
            GError     **error)
{
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    return fail_type (reader, node, "a string", error);
  *out = json_node_get_string (node);
  return TRUE;
}

static gboolean
get_integer (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gint64     *out,
             GError    **error)
{
  g_autofree char *expected = g_strdup_printf ("an integer from %" G_GINT64_FORMAT
                                               " to %" G_GINT64_FORMAT "%s%s%s",
                                               key->min, key->max,
                                               key->note ? " (" : "",
                                               key->note ? key->note : "",
                                               key->note ? ")" : "");
  gint64 value;

  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return fail_type (reader, node, expected, error);
  value = json_node_get_int (node);
  if (value < key->min || value > key->max)
    return fail_at (reader, node, FALSE, error, "expected %s, found %" G_GINT64_FORMAT,
                    expected, value);
  *out = value;
  return TRUE;
}

static gboolean
read_uint (Reader     *reader,
           JsonNode   *node,
           const Key  *key,
           gpointer    field,
           GError    **error)
{
  gint64 value;

  g_assert (key->min >= 0 && key->max <= G_MAXUINT);
  if (!get_integer (reader, node, key, &value, error))
    return FALSE;
  *(guint *) field = (guint) value;
  return TRUE;
}

static gboolean
read_int (Reader     *reader,
          JsonNode   *node,
          const Key  *key,
          gpointer    field,
          GError    **error)
{
  gint64 value;

  g_assert (key->min >= G_MININT && key->max <= G_MAXINT);
  if (!get_integer (reader, node, key, &value, error))
    return FALSE;
  *(int *) field = (int) value;
  return TRUE;
}

static gboolean
read_uint64 (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gpointer    field,
             GError    **error)
{
  gint64 value;

  g_assert (key->min >= 0);
  if (!get_integer (reader, node, key, &value, error))
    return FALSE;
  *(guint64 *) field = (guint64) value;
  return TRUE;
}

/* Seconds, whole or not: JSON's 5 and 0.5 are both numbers to the user.
 * Anything else is a type error naming @expected. */
static gboolean
get_seconds (Reader      *reader,
             JsonNode    *node,
             const char  *expected,
             double      *value,
             GError     **error)
{
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    *value = (double) json_node_get_int (node);
  else if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_DOUBLE)
    *value = json_node_get_double (node);
  else
    return fail_type (reader, node, expected, error);
  return TRUE;
}

/* The relay's session-timeout: 0 (give objects back at once) to a day. */
static gboolean
read_session_timeout (Reader     *reader,
                      JsonNode   *node,
                      const Key  *key,
                      gpointer    field,
                      GError    **error)
{
  static const char expected[] = "a number of seconds from 0 (give a lost consumer's objects "
                                 "back at once) to 86400";
  char found[G_ASCII_DTOSTR_BUF_SIZE];
  double value;

  if (!get_seconds (reader, node, expected, &value, error))
    return FALSE;
  if (!(value >= 0.0 && value <= 86400.0))
    return fail_at (reader, node, FALSE, error, "expected %s, found %s", expected,
                    g_ascii_formatd (found, sizeof found, "%g", value));
  *(double *) field = value;
  return TRUE;
}

static gboolean
read_interval (Reader     *reader,
               JsonNode   *node,
               const Key  *key,
               gpointer    field,
               GError    **error)
{
  static const char expected[] = "a number of seconds: 0 (off), or from "
                                 G_STRINGIFY (TLSPYO_CONFIG_MIN_STATS_INTERVAL) " to "
                                 G_STRINGIFY (TLSPYO_CONFIG_MAX_STATS_INTERVAL);
  char found[G_ASCII_DTOSTR_BUF_SIZE];
  double value;

  if (!get_seconds (reader, node, expected, &value, error))
    return FALSE;
  if (value != 0.0 &&
      !(value >= TLSPYO_CONFIG_MIN_STATS_INTERVAL && value <= TLSPYO_CONFIG_MAX_STATS_INTERVAL))
    return fail_at (reader, node, FALSE, error, "expected %s, found %s", expected,
                    g_ascii_formatd (found, sizeof found, "%g", value));
  *(double *) field = value;
  return TRUE;
}

static gboolean
read_path (Reader     *reader,
           JsonNode   *node,
           const Key  *key,
           gpointer    field,
           GError    **error)
{
  const char *value = NULL;

  if (!get_string (reader, node, &value, error))
    return FALSE;
  if (*value == '\0')
    return fail_at (reader, node, FALSE, error, "the path is empty: give a folder, "
                    "or leave the key out for the default");
  g_free (*(char **) field);
  *(char **) field = g_strdup (value);
  return TRUE;
}

static gboolean
read_address (Reader     *reader,
              JsonNode   *node,
              const Key  *key,
              gpointer    field,
              GError    **error)
{
  g_autoptr(GInetAddress) address = NULL;
  const char *value = NULL;

  if (!get_string (reader, node, &value, error))
    return FALSE;
  address = g_inet_address_new_from_string (value);
  if (address == NULL)
    return fail_at (reader, node, FALSE, error, "“%s” is not an IP address: give one such "
                    "as \"127.0.0.1\" or \"::\", or leave the key out to listen on every "
                    "interface", value);
  g_free (*(char **) field);
  *(char **) field = g_strdup (value);
  return TRUE;
}

static gboolean
read_security (Reader     *reader,
               JsonNode   *node,
               const Key  *key,
               gpointer    field,
               GError    **error)
{
  const char *value = NULL;

  if (!get_string (reader, node, &value, error))
    return FALSE;
  if (strcmp (value, "tls") == 0)
    *(TlspyoSecurity *) field = TLSPYO_SECURITY_TLS;
  else if (strcmp (value, "none") == 0)
    *(TlspyoSecurity *) field = TLSPYO_SECURITY_NONE;
  else
    return fail_at (reader, node, FALSE, error, "expected \"tls\" or \"none\", found “%s”", value);
  return TRUE;
}

static gboolean
check_group_name (Reader      *reader,
                  JsonNode    *node,
                  const char  *name,
                  GError     **error)
{
  gsize len = strlen (name);

  if (len == 0 || len > GROUP_NAME_MAX_BYTES)
    return fail_at (reader, node, TRUE, error, "a group name must have 1 to %d bytes, "
                    "this one has %" G_GSIZE_FORMAT, GROUP_NAME_MAX_BYTES, len);
  for (const char *p = name; *p != '\0'; p = g_utf8_next_char (p))
    if (g_unichar_iscntrl (g_utf8_get_char (p)))
      return fail_at (reader, node, TRUE, error, "a group name must not contain control "
                      "characters (found U+%04X): rename the group", g_utf8_get_char (p));
  return TRUE;
}

static void
config_group_free (gpointer data)
{
  TlspyoConfigGroup *group = data;

  g_free (group->name);
  g_free (group);
}

static const Key group_keys[] = {
  { "max_count", read_int, G_STRUCT_OFFSET (TlspyoConfigGroup, max_count), 0,
    -1, G_MAXINT, "-1 for no limit" },
  { "max_consumables", read_int, G_STRUCT_OFFSET (TlspyoConfigGroup, max_consumables), 0,
    -1, G_MAXINT, "-1 for no limit" },
};

static const Table group_table = {
  "a group", group_keys, G_N_ELEMENTS (group_keys), -1,
};

static gboolean
read_group (Reader      *reader,
            const char  *name,
            JsonNode    *member,
            gpointer     data,
            GError     **error)
{
  GPtrArray *groups = data;
  TlspyoConfigGroup *group;

  if (!check_group_name (reader, member, name, error))
    return FALSE;
  group = g_new0 (TlspyoConfigGroup, 1);
  group->name = g_strdup (name);
  group->max_count = -1;
  group->max_consumables = -1;
  g_ptr_array_add (groups, group);
  return read_object (reader, member, &group_table, group, error);
}

static gboolean
read_groups (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gpointer    field,
             GError    **error)
{
  return read_members (reader, node, "an object mapping each group name to its limits, "
                       "such as {\"workers\": {\"max_count\": 4}}", read_group,
                       *(GPtrArray **) field, error);
}

/* "limits": the TlspyoRelay properties of the same names (see there, and
 * docs/security.md). The ranges are the properties'. */
static const Key limit_keys[] = {
  { "max_connections", read_uint, G_STRUCT_OFFSET (TlspyoConfigLimits, max_connections),
    TLSPYO_CONFIG_MAX_CONNECTIONS, 0, G_MAXUINT, "0 for no limit" },
  { "max_connections_per_address", read_uint,
    G_STRUCT_OFFSET (TlspyoConfigLimits, max_connections_per_address),
    TLSPYO_CONFIG_MAX_CONNECTIONS_PER_ADDRESS, 0, G_MAXUINT, "0 for no limit" },
  { "max_auth_failures", read_uint, G_STRUCT_OFFSET (TlspyoConfigLimits, max_auth_failures),
    TLSPYO_CONFIG_MAX_AUTH_FAILURES, 0, G_MAXUINT, "0 never blocks an address" },
  { "auth_block_time", read_uint, G_STRUCT_OFFSET (TlspyoConfigLimits, auth_block_time),
    TLSPYO_CONFIG_AUTH_BLOCK_TIME, 1, 7 * 86400, "seconds" },
  { "auth_failure_delay", read_uint, G_STRUCT_OFFSET (TlspyoConfigLimits, auth_failure_delay),
    TLSPYO_CONFIG_AUTH_FAILURE_DELAY, 0, 5000, "milliseconds, 0 for none" },
  { "max_groups_per_endpoint", read_uint,
    G_STRUCT_OFFSET (TlspyoConfigLimits, max_groups_per_endpoint),
    TLSPYO_CONFIG_MAX_GROUPS_PER_ENDPOINT, 0, G_MAXUINT, "0 for no limit" },
  { "max_queued_bytes", read_uint64, G_STRUCT_OFFSET (TlspyoConfigLimits, max_queued_bytes),
    TLSPYO_CONFIG_MAX_QUEUED_BYTES, 0, G_MAXINT64, "bytes per group, 0 for no limit" },
  { "max_in_flight_bytes", read_uint64,
    G_STRUCT_OFFSET (TlspyoConfigLimits, max_in_flight_bytes),
    TLSPYO_CONFIG_MAX_IN_FLIGHT_BYTES, 0, G_MAXINT64,
    "bytes per endpoint and group, 0 for no limit" },
};

static const Table limits_table = {
  "the limits", limit_keys, G_N_ELEMENTS (limit_keys),
  G_STRUCT_OFFSET (TlspyoConfigLimits, fields),
};

static gboolean
read_limits (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gpointer    field,
             GError    **error)
{
  return read_object (reader, node, &limits_table, field, error);
}

/* "users": {"NAME": {"password_hash": "...", "rights": {"GROUP": ["join", ...]}}} */

static const struct {
  const char   *name;
  TlspyoRights  rights;
} right_names[] = {
  { "join", TLSPYO_RIGHTS_JOIN },
  { "broadcast", TLSPYO_RIGHTS_BROADCAST },
  { "produce", TLSPYO_RIGHTS_PRODUCE },
  { "consume", TLSPYO_RIGHTS_CONSUME },
  { "all", TLSPYO_RIGHTS_ALL },
};

static void
config_grant_free (gpointer data)
{
  TlspyoConfigGrant *grant = data;

  g_free (grant->group);
  g_free (grant);
}

static void
config_user_free (gpointer data)
{
  TlspyoConfigUser *user = data;

  g_free (user->name);
  g_free (user->password_hash);
  g_clear_pointer (&user->grants, g_ptr_array_unref);
  g_free (user);
}

static gboolean
read_rights_list (Reader        *reader,
                  JsonNode      *node,
                  TlspyoRights  *rights,
                  GError       **error)
{
  static const char expected[] = "a list of rights: \"join\", \"broadcast\", \"produce\", "
                                 "\"consume\" or \"all\"";
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return fail_type (reader, node, expected, error);
  array = json_node_get_array (node);
  *rights = TLSPYO_RIGHTS_NONE;
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *element = json_array_get_element (array, i);
      const char *name;
      gboolean found = FALSE;

      if (!JSON_NODE_HOLDS_VALUE (element) || json_node_get_value_type (element) != G_TYPE_STRING)
        return fail_type (reader, element, expected, error);
      name = json_node_get_string (element);
      for (gsize j = 0; j < G_N_ELEMENTS (right_names) && !found; j++)
        if (strcmp (name, right_names[j].name) == 0)
          {
            *rights |= right_names[j].rights;
            found = TRUE;
          }
      if (!found)
        return fail_at (reader, element, FALSE, error, "unknown right “%s”: expected %s",
                        name, expected);
    }
  return TRUE;
}

static gboolean
read_grant (Reader      *reader,
            const char  *group,
            JsonNode    *member,
            gpointer     data,
            GError     **error)
{
  GPtrArray *grants = data;
  TlspyoConfigGrant *grant;

  if (strcmp (group, "*") != 0 && !check_group_name (reader, member, group, error))
    return FALSE;
  grant = g_new0 (TlspyoConfigGrant, 1);
  grant->group = strcmp (group, "*") == 0 ? NULL : g_strdup (group);
  g_ptr_array_add (grants, grant);
  return read_rights_list (reader, member, &grant->rights, error);
}

static gboolean
read_rights (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gpointer    field,
             GError    **error)
{
  return read_members (reader, node, "an object mapping each group name (or \"*\" for every "
                       "group) to a list of rights, such as {\"workers\": [\"join\"]}",
                       read_grant, *(GPtrArray **) field, error);
}

static gboolean
read_string (Reader     *reader,
             JsonNode   *node,
             const Key  *key,
             gpointer    field,
             GError    **error)
{
  const char *value = NULL;

  if (!get_string (reader, node, &value, error))
    return FALSE;
  g_free (*(char **) field);
  *(char **) field = g_strdup (value);
  return TRUE;
}

static const Key user_keys[] = {
  { "password_hash", read_string, G_STRUCT_OFFSET (TlspyoConfigUser, password_hash), 0, 0, 0,
    NULL },
  { "rights", read_rights, G_STRUCT_OFFSET (TlspyoConfigUser, grants), 0, 0, 0, NULL },
};

static const Table user_table = {
  "a user", user_keys, G_N_ELEMENTS (user_keys), -1,
};

static gboolean
read_user (Reader      *reader,
           const char  *name,
           JsonNode    *member,
           gpointer     data,
           GError     **error)
{
  GPtrArray *users = data;
  g_autoptr(TlspyoRelay) check = NULL;
  g_autoptr(GError) local_error = NULL;
  TlspyoConfigUser *user;

  user = g_new0 (TlspyoConfigUser, 1);
  user->name = g_strdup (name);
  user->grants = g_ptr_array_new_with_free_func (config_grant_free);
  g_ptr_array_add (users, user);
  if (!read_object (reader, member, &user_table, user, error))
    return FALSE;
  if (user->password_hash == NULL)
    return fail_at (reader, member, TRUE, error, "a user needs a \"password_hash\": make "
                    "one with `tlspyo credentials hash-password`");
  /* The library's own check, so that the relay accepts what this does. */
  check = tlspyo_relay_new (0, NULL);
  if (!tlspyo_relay_add_user (check, name, user->password_hash, &local_error))
    return fail_at (reader, member, TRUE, error, "%s", local_error->message);
  return TRUE;
}

static gboolean
read_users (Reader     *reader,
            JsonNode   *node,
            const Key  *key,
            gpointer    field,
            GError    **error)
{
  return read_members (reader, node, "an object mapping each user name to its password_hash "
                       "and rights, such as {\"worker\": {\"password_hash\": \"...\", "
                       "\"rights\": {\"samples\": [\"produce\"]}}}", read_user,
                       *(GPtrArray **) field, error);
}

static const Key relay_keys[] = {
  { "address", read_address, G_STRUCT_OFFSET (TlspyoConfig, address),
    TLSPYO_CONFIG_ADDRESS, 0, 0, NULL },
  { "port", read_uint, G_STRUCT_OFFSET (TlspyoConfig, port),
    TLSPYO_CONFIG_PORT, 0, G_MAXUINT16, "0 lets the system pick one" },
  { "security", read_security, G_STRUCT_OFFSET (TlspyoConfig, security),
    TLSPYO_CONFIG_SECURITY, 0, 0, NULL },
  { "credentials_dir", read_path, G_STRUCT_OFFSET (TlspyoConfig, credentials_dir),
    TLSPYO_CONFIG_CREDENTIALS_DIR, 0, 0, NULL },
  { "max_object_size", read_uint64, G_STRUCT_OFFSET (TlspyoConfig, max_object_size),
    TLSPYO_CONFIG_MAX_OBJECT_SIZE, MIN_OBJECT_SIZE, G_MAXINT64, "bytes" },
  { "handshake_timeout", read_uint, G_STRUCT_OFFSET (TlspyoConfig, handshake_timeout),
    TLSPYO_CONFIG_HANDSHAKE_TIMEOUT, MIN_HANDSHAKE_TIMEOUT, MAX_HANDSHAKE_TIMEOUT, "seconds" },
  { "groups", read_groups, G_STRUCT_OFFSET (TlspyoConfig, groups),
    TLSPYO_CONFIG_GROUPS, 0, 0, NULL },
  { "limits", read_limits, G_STRUCT_OFFSET (TlspyoConfig, limits),
    TLSPYO_CONFIG_LIMITS, 0, 0, NULL },
  { "users", read_users, G_STRUCT_OFFSET (TlspyoConfig, users),
    TLSPYO_CONFIG_USERS, 0, 0, NULL },
  { "stats_interval", read_interval, G_STRUCT_OFFSET (TlspyoConfig, stats_interval),
    TLSPYO_CONFIG_STATS_INTERVAL, 0, 0, NULL },
  { "client_certificates_dir", read_path, G_STRUCT_OFFSET (TlspyoConfig, client_certificates_dir),
    TLSPYO_CONFIG_CLIENT_CERTIFICATES_DIR, 0, 0, NULL },
  { "state_directory", read_path, G_STRUCT_OFFSET (TlspyoConfig, state_directory),
    TLSPYO_CONFIG_STATE_DIRECTORY, 0, 0, NULL },
  { "session_timeout", read_session_timeout, G_STRUCT_OFFSET (TlspyoConfig, session_timeout),
    TLSPYO_CONFIG_SESSION_TIMEOUT, 0, 0, NULL },
};

static const Table relay_table = {
  "the relay config", relay_keys, G_N_ELEMENTS (relay_keys),
  G_STRUCT_OFFSET (TlspyoConfig, fields),
};

/* Levenshtein distance, for "did you mean" on short key names. */
static gsize
edit_distance (const char *a,
               const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  g_autofree gsize *row = NULL;

  if (la > 64 || lb > 64)
    return G_MAXSIZE;
  row = g_new (gsize, lb + 1);
  for (gsize j = 0; j <= lb; j++)
    row[j] = j;
  for (gsize i = 1; i <= la; i++)
    {
      gsize diagonal = row[0];

      row[0] = i;
      for (gsize j = 1; j <= lb; j++)
        {
          gsize above = row[j];
          gsize cost = a[i - 1] == b[j - 1] ? 0 : 1;

          row[j] = MIN (MIN (row[j] + 1, row[j - 1] + 1), diagonal + cost);
          diagonal = above;
        }
    }
  return row[lb];
}

static gboolean
fail_unknown_key (Reader      *reader,
                  JsonNode    *member,
                  const char  *name,
                  const Table *table,
                  GError     **error)
{
  g_autoptr(GString) known = g_string_new (NULL);
  const char *closest = NULL;
  gsize best = 3;

  for (gsize i = 0; i < table->n_keys; i++)
    {
      gsize distance = edit_distance (name, table->keys[i].name);

      g_string_append_printf (known, "%s%s", i > 0 ? ", " : "", table->keys[i].name);
      if (distance < best)
        {
          best = distance;
          closest = table->keys[i].name;
        }
    }
  if (closest != NULL)
    return fail_at (reader, member, TRUE, error, "unknown key in %s (did you mean “%s”?): "
                    "the keys are %s", table->what, closest, known->str);
  return fail_at (reader, member, TRUE, error, "unknown key in %s: the keys are %s",
                  table->what, known->str);
}

typedef struct {
  const Table *table;
  gpointer     target;
} ObjectTarget;

static gboolean
read_key (Reader      *reader,
          const char  *name,
          JsonNode    *member,
          gpointer     data,
          GError     **error)
{
  const ObjectTarget *object = data;
  const Table *table = object->table;
  const Key *key = NULL;

  for (gsize i = 0; i < table->n_keys && key == NULL; i++)
    if (strcmp (table->keys[i].name, name) == 0)
      key = &table->keys[i];

  if (key == NULL)
    return fail_unknown_key (reader, member, name, table, error);
  if (!key->read (reader, member, key, G_STRUCT_MEMBER_P (object->target, key->offset), error))
    return FALSE;
  if (table->fields_offset >= 0)
    G_STRUCT_MEMBER (guint, object->target, table->fields_offset) |= key->flag;
  return TRUE;
}

static gboolean
read_object (Reader      *reader,
             JsonNode    *node,
             const Table *table,
             gpointer     target,
             GError     **error)
{
  g_autofree char *expected = g_strdup_printf ("an object with the keys of %s", table->what);
  ObjectTarget object = { table, target };

  return read_members (reader, node, expected, read_key, &object, error);
}

/**
 * tlspyo_config_parse:
 * @data: the file's contents
 * @length: their length in bytes
 * @error: return location for a #GError
 *
 * Reads a relay configuration. Every key is optional: `fields` tells which
 * keys the file gave, and the fields of the others are zero (their
 * settings keep the library's defaults). Errors are %TLSPYO_ERROR_INVALID_ARGUMENT, with a
 * message that starts with the line and column and names the key.
 *
 * Returns: (transfer full): the configuration, or %NULL with @error set
 */
TlspyoConfig *
tlspyo_config_parse (const char  *data,
                     gsize        length,
                     GError     **error)
{
  g_autoptr(TlspyoConfig) config = NULL;
  g_autoptr(TlspyoJsonDoc) doc = NULL;
  g_autoptr(GString) path = NULL;
  Reader reader;

  g_return_val_if_fail (data != NULL || length == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  doc = tlspyo_json_doc_parse (data, length, 1, error);
  if (doc == NULL)
    return NULL;

  config = g_new0 (TlspyoConfig, 1);
  config->groups = g_ptr_array_new_with_free_func (config_group_free);
  config->users = g_ptr_array_new_with_free_func (config_user_free);

  path = g_string_new (NULL);
  reader.doc = doc;
  reader.path = path;
  if (!read_object (&reader, tlspyo_json_doc_get_root (doc), &relay_table, config, error))
    return NULL;

  return g_steal_pointer (&config);
}

void
tlspyo_config_free (TlspyoConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->address);
  g_free (config->credentials_dir);
  g_free (config->client_certificates_dir);
  g_free (config->state_directory);
  g_clear_pointer (&config->groups, g_ptr_array_unref);
  g_clear_pointer (&config->users, g_ptr_array_unref);
  g_free (config);
}
