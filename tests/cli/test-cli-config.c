/* SPDX-License-Identifier: MIT */
/* The relay's JSON config reader: what it accepts, and that every refusal
 * names the key and says where it is. */
#include <string.h>

#include "tlspyo-config.h"

static void
assert_contains (const char *haystack,
                 const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("expected “%s” in “%s”", needle, haystack);
}

static TlspyoConfig *
parse (const char  *text,
       GError     **error)
{
  return tlspyo_config_parse (text, strlen (text), error);
}

static void
test_full (void)
{
  const char *text =
    "{\n"
    "  \"address\": \"127.0.0.1\",\n"
    "  \"port\": 0,\n"
    "  \"security\": \"none\",\n"
    "  \"credentials_dir\": \"creds\",\n"
    "  \"max_object_size\": 9223372036854775807,\n"
    "  \"handshake_timeout\": 3600,\n"
    "  \"groups\": {\n"
    "    \"zeta\": {\"max_count\": 2, \"max_consumables\": 0},\n"
    "    \"alpha\": {},\n"
    "    \"é ☃\": {\"max_consumables\": -1, \"max_count\": -1}\n"
    "  }\n"
    "}\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = parse (text, &error);
  TlspyoConfigGroup *group;

  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_ADDRESS | TLSPYO_CONFIG_PORT |
                    TLSPYO_CONFIG_SECURITY | TLSPYO_CONFIG_CREDENTIALS_DIR |
                    TLSPYO_CONFIG_MAX_OBJECT_SIZE | TLSPYO_CONFIG_HANDSHAKE_TIMEOUT |
                    TLSPYO_CONFIG_GROUPS);
  g_assert_cmpstr (config->address, ==, "127.0.0.1");
  g_assert_cmpuint (config->port, ==, 0);
  g_assert_cmpint (config->security, ==, TLSPYO_SECURITY_NONE);
  g_assert_cmpstr (config->credentials_dir, ==, "creds");
  g_assert_cmpuint (config->max_object_size, ==, G_MAXINT64);
  g_assert_cmpuint (config->handshake_timeout, ==, 3600);

  /* In file order: a relay applies them in the order the operator wrote. */
  g_assert_cmpuint (config->groups->len, ==, 3);
  group = config->groups->pdata[0];
  g_assert_cmpstr (group->name, ==, "zeta");
  g_assert_cmpint (group->max_count, ==, 2);
  g_assert_cmpint (group->max_consumables, ==, 0);
  group = config->groups->pdata[1];
  g_assert_cmpstr (group->name, ==, "alpha");
  g_assert_cmpint (group->max_count, ==, -1);
  g_assert_cmpint (group->max_consumables, ==, -1);
  group = config->groups->pdata[2];
  g_assert_cmpstr (group->name, ==, "é ☃");
}

static void
test_empty_object (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = parse (" {} ", &error);

  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, 0);
  g_assert_null (config->address);
  g_assert_null (config->credentials_dir);
  g_assert_cmpuint (config->groups->len, ==, 0);
}

static void
test_partial (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = parse ("{\"port\": 3000, \"security\": \"tls\"}", &error);

  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_PORT | TLSPYO_CONFIG_SECURITY);
  g_assert_cmpuint (config->port, ==, 3000);
  g_assert_cmpint (config->security, ==, TLSPYO_SECURITY_TLS);
}

/* Seconds as the user writes them: whole, fractional, or 0 for off. */
static void
test_stats_interval (void)
{
  static const struct {
    const char *text;
    double      seconds;
  } cases[] = {
    { "{\"stats_interval\": 60}", 60.0 },
    { "{\"stats_interval\": 0.25}", 0.25 },
    { "{\"stats_interval\": 0.1}", 0.1 },
    { "{\"stats_interval\": 86400}", 86400.0 },
    { "{\"stats_interval\": 0}", 0.0 },
    { "{\"stats_interval\": 0.0}", 0.0 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(TlspyoConfig) config = parse (cases[i].text, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_STATS_INTERVAL);
      g_assert_cmpfloat (config->stats_interval, ==, cases[i].seconds);
    }
}

/* The documented example must stay valid. */
static void
test_example_file (void)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "..", "data",
                                                 "relay.example.json", NULL);
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = NULL;
  gsize length;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);
  config = tlspyo_config_parse (contents, length, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_ADDRESS | TLSPYO_CONFIG_PORT |
                    TLSPYO_CONFIG_SECURITY | TLSPYO_CONFIG_CREDENTIALS_DIR |
                    TLSPYO_CONFIG_MAX_OBJECT_SIZE | TLSPYO_CONFIG_HANDSHAKE_TIMEOUT |
                    TLSPYO_CONFIG_GROUPS | TLSPYO_CONFIG_LIMITS | TLSPYO_CONFIG_USERS |
                    TLSPYO_CONFIG_STATS_INTERVAL | TLSPYO_CONFIG_STATE_DIRECTORY |
                    TLSPYO_CONFIG_SESSION_TIMEOUT);
  g_assert_cmpstr (config->state_directory, ==, "/var/lib/tlspyo");
  g_assert_cmpfloat (config->session_timeout, ==, 30.0);
  g_assert_cmpuint (config->groups->len, >, 0);
  g_assert_cmpfloat (config->stats_interval, ==, 60.0);
  /* Every limit, with the library's defaults. */
  g_assert_cmpuint (config->limits.fields, ==, 0xff);
  g_assert_cmpuint (config->limits.max_connections, ==, 1024);
  g_assert_cmpuint (config->limits.max_queued_bytes, ==, 1073741824);
  g_assert_cmpuint (config->limits.max_in_flight_bytes, ==, 268435456);
  g_assert_cmpuint (config->users->len, >, 0);
}

#define HASH "pbkdf2-sha256$10000$c2FsdHNhbHRzYWx0c2FsdA==$" \
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static void
test_limits_and_users (void)
{
  const char *text =
    "{\n"
    "  \"limits\": {\"max_connections\": 0, \"max_connections_per_address\": 8,\n"
    "             \"max_auth_failures\": 3, \"auth_block_time\": 60,\n"
    "             \"auth_failure_delay\": 0, \"max_groups_per_endpoint\": 4,\n"
    "             \"max_queued_bytes\": 9223372036854775807,\n"
    "             \"max_in_flight_bytes\": 1000},\n"
    "  \"users\": {\n"
    "    \"trainer\": {\"password_hash\": \"" HASH "\",\n"
    "                \"rights\": {\"samples\": [\"join\", \"consume\"], \"*\": [\"broadcast\"]}},\n"
    "    \"observer\": {\"password_hash\": \"" HASH "\"},\n"
    "    \"admin\": {\"rights\": {\"*\": [\"all\"], \"quiet\": []},\n"
    "              \"password_hash\": \"" HASH "\"}\n"
    "  }\n"
    "}\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = parse (text, &error);
  TlspyoConfigUser *user;
  TlspyoConfigGrant *grant;

  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_LIMITS | TLSPYO_CONFIG_USERS);
  g_assert_cmpuint (config->limits.fields, ==, 0xff);
  g_assert_cmpuint (config->limits.max_connections, ==, 0);
  g_assert_cmpuint (config->limits.max_connections_per_address, ==, 8);
  g_assert_cmpuint (config->limits.max_auth_failures, ==, 3);
  g_assert_cmpuint (config->limits.auth_block_time, ==, 60);
  g_assert_cmpuint (config->limits.auth_failure_delay, ==, 0);
  g_assert_cmpuint (config->limits.max_groups_per_endpoint, ==, 4);
  g_assert_cmpuint (config->limits.max_queued_bytes, ==, G_MAXINT64);
  g_assert_cmpuint (config->limits.max_in_flight_bytes, ==, 1000);

  g_assert_cmpuint (config->users->len, ==, 3);
  user = config->users->pdata[0];
  g_assert_cmpstr (user->name, ==, "trainer");
  g_assert_cmpstr (user->password_hash, ==, HASH);
  g_assert_cmpuint (user->grants->len, ==, 2);
  grant = user->grants->pdata[0];
  g_assert_cmpstr (grant->group, ==, "samples");
  g_assert_cmpuint (grant->rights, ==, TLSPYO_RIGHTS_JOIN | TLSPYO_RIGHTS_CONSUME);
  grant = user->grants->pdata[1];
  g_assert_null (grant->group);
  g_assert_cmpuint (grant->rights, ==, TLSPYO_RIGHTS_BROADCAST);
  user = config->users->pdata[1];
  g_assert_cmpuint (user->grants->len, ==, 0);
  user = config->users->pdata[2];
  g_assert_cmpstr (user->name, ==, "admin");
  grant = user->grants->pdata[0];
  g_assert_cmpuint (grant->rights, ==, TLSPYO_RIGHTS_ALL);
  grant = user->grants->pdata[1];
  g_assert_cmpstr (grant->group, ==, "quiet");
  g_assert_cmpuint (grant->rights, ==, TLSPYO_RIGHTS_NONE);

  /* Mutual TLS: a folder, as credentials_dir. */
  g_clear_pointer (&config, tlspyo_config_free);
  config = parse ("{\"client_certificates_dir\": \"clients\"}", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (config->fields, ==, TLSPYO_CONFIG_CLIENT_CERTIFICATES_DIR);
  g_assert_cmpstr (config->client_certificates_dir, ==, "clients");
  g_clear_pointer (&config, tlspyo_config_free);
  config = parse ("{\"client_certificates_dir\": \"\"}", &error);
  g_assert_null (config);
  assert_contains (error->message, "client_certificates_dir");
  g_clear_error (&error);

  /* Partial limits: only what is given. */
  g_clear_pointer (&config, tlspyo_config_free);
  config = parse ("{\"limits\": {\"max_auth_failures\": 0}}", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (config->limits.fields, ==, TLSPYO_CONFIG_MAX_AUTH_FAILURES);
}

typedef struct {
  const char *text;
  const char *message[3];
} Refusal;

static void
test_refusals (void)
{
  const Refusal cases[] = {
    /* unknown keys */
    { "{\n  \"prot\": 3000\n}", { "line 2, column 3", "key “prot”", "did you mean “port”" } },
    { "{\"passwd\": \"x\"}", { "key “passwd”", "the keys are address, port, security" } },
    { "{\"groups\": {\"g\": {\"max_cont\": 1}}}",
      { "line 1, column 19", "key “groups.g.max_cont”", "did you mean “max_count”" } },
    /* wrong types */
    { "{\"port\": \"3000\"}", { "line 1, column 10", "key “port”", "found a string" } },
    { "{\"port\": 3000.0}", { "key “port”", "an integer from 0 to 65535", "found the number 3000.0" } },
    { "{\"port\": true}", { "key “port”", "found true" } },
    { "{\"address\": 127}", { "key “address”", "expected a string" } },
    { "{\"security\": null}", { "key “security”", "found null" } },
    { "{\"credentials_dir\": []}", { "key “credentials_dir”", "found an array" } },
    { "{\"max_object_size\": \"1M\"}", { "key “max_object_size”", "bytes" } },
    { "{\"handshake_timeout\": 1.5}", { "key “handshake_timeout”", "found the number 1.5" } },
    { "{\"groups\": [\"a\"]}", { "key “groups”", "found an array" } },
    { "{\"groups\": {\"g\": 4}}", { "key “groups.g”", "found the integer 4" } },
    { "{\"groups\": {\"workers\": {\"max_count\": \"4\"}}}",
      { "line 1, column 38", "key “groups.workers.max_count”", "found a string" } },
    { "{\"groups\": {\"a.b\": {\"max_consumables\": {}}}}",
      { "key “groups[\"a.b\"].max_consumables”", "found an object" } },
    { "[]", { "line 1, column 1", "an object with the keys of the relay config", "found an array" } },
    /* values out of range */
    { "{\"port\": 65536}", { "key “port”", "found 65536" } },
    { "{\"port\": -1}", { "key “port”", "from 0 to 65535" } },
    { "{\"max_object_size\": 1}", { "key “max_object_size”", "from 2 to" } },
    { "{\"handshake_timeout\": 0}", { "key “handshake_timeout”", "from 1 to 3600" } },
    { "{\"handshake_timeout\": 3601}", { "key “handshake_timeout”" } },
    { "{\"groups\": {\"g\": {\"max_count\": -2}}}", { "key “groups.g.max_count”", "-1 for no limit" } },
    { "{\"groups\": {\"g\": {\"max_count\": 2147483648}}}", { "key “groups.g.max_count”" } },
    { "{\"security\": \"TLS\"}", { "key “security”", "\"tls\" or \"none\"", "“TLS”" } },
    { "{\"address\": \"localhost\"}", { "key “address”", "not an IP address" } },
    { "{\"credentials_dir\": \"\"}", { "key “credentials_dir”", "empty" } },
    { "{\"groups\": {\"\": {}}}", { "1 to 255 bytes" } },
    { "{\"groups\": {\"a\\nb\": {}}}", { "control characters", "U+000A" } },
    /* limits */
    { "{\"limits\": []}", { "key “limits”", "an object with the keys of the limits" } },
    { "{\"limits\": {\"max_conections\": 1}}", { "did you mean “max_connections”" } },
    { "{\"limits\": {\"max_connections\": -1}}", { "key “limits.max_connections”", "0 for no limit" } },
    { "{\"limits\": {\"auth_block_time\": 0}}", { "key “limits.auth_block_time”", "from 1 to 604800" } },
    { "{\"limits\": {\"auth_failure_delay\": 5001}}", { "key “limits.auth_failure_delay”", "milliseconds" } },
    { "{\"limits\": {\"max_queued_bytes\": \"1G\"}}", { "key “limits.max_queued_bytes”", "found a string" } },
    { "{\"limits\": {\"max_in_flight_bytes\": -1}}",
      { "key “limits.max_in_flight_bytes”", "bytes per endpoint and group, 0 for no limit" } },
    /* stats_interval */
    { "{\"stats_interval\": \"60\"}", { "key “stats_interval”", "a number of seconds", "found a string" } },
    { "{\"stats_interval\": 0.05}", { "key “stats_interval”", "0 (off), or from 0.1 to 86400", "found 0.05" } },
    { "{\"stats_interval\": -1}", { "key “stats_interval”", "found -1" } },
    { "{\"stats_interval\": 86401}", { "key “stats_interval”", "found 86401" } },
    /* users */
    { "{\"users\": [\"a\"]}", { "key “users”", "password_hash" } },
    { "{\"users\": {\"a\": {}}}", { "key “users.a”", "needs a \"password_hash\"", "hash-password" } },
    { "{\"users\": {\"a\": {\"password_hash\": \"my clear password\"}}}",
      { "line 1, column 12", "key “users.a”", "Not a password hash" } },
    { "{\"users\": {\"a\": {\"password_hash\": 3}}}", { "key “users.a.password_hash”", "found the integer 3" } },
    { "{\"users\": {\"a\": {\"password_hsh\": \"x\"}}}",
      { "key “users.a.password_hsh”", "did you mean “password_hash”" } },
    { "{\"users\": {\"\": {\"password_hash\": \"" HASH "\"}}}", { "Invalid user name" } },
    { "{\"users\": {\"a\": {\"password_hash\": \"" HASH "\", \"rights\": {\"g\": \"join\"}}}}",
      { "key “users.a.rights.g”", "a list of rights" } },
    { "{\"users\": {\"a\": {\"password_hash\": \"" HASH "\", \"rights\": {\"g\": [\"write\"]}}}}",
      { "key “users.a.rights.g”", "unknown right “write”", "\"consume\"" } },
    { "{\"users\": {\"a\": {\"password_hash\": \"" HASH "\", \"rights\": {\"a\\tb\": []}}}}",
      { "control characters" } },
    /* not JSON, or JSON json-glib alone would take */
    { "{\"port\": 3000,}", { "line 1, column 15" } },
    { "{\"port\": 1, \"port\": 2}", { "line 1, column 13", "“port” appears twice" } },
    { "{\n  // the port\n  \"port\": 1\n}", { "line 2, column 3", "no comments" } },
    { "{\"port\": 18446744073709551616}", { "out of range" } },
    { "{} {}", { "exactly one value" } },
    { "", { "no JSON value" } },
  };
  g_autoptr(GString) long_name = g_string_new ("{\"groups\": {\"");

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(TlspyoConfig) config = parse (cases[i].text, &error);

      if (config != NULL)
        g_error ("accepted %s", cases[i].text);
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
      for (gsize j = 0; j < G_N_ELEMENTS (cases[i].message) && cases[i].message[j]; j++)
        assert_contains (error->message, cases[i].message[j]);
    }

  for (int i = 0; i < 256; i++)
    g_string_append_c (long_name, 'x');
  g_string_append (long_name, "\": {}}}");
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(TlspyoConfig) config = parse (long_name->str, &error);

    g_assert_null (config);
    assert_contains (error->message, "this one has 256");
  }
}

static void
test_mutations (void)
{
  const char *seed = "{\"address\": \"::1\", \"port\": 2096, \"security\": \"tls\",\n"
                     " \"credentials_dir\": \"/etc/tlspyo\", \"max_object_size\": 1024,\n"
                     " \"handshake_timeout\": 10, \"groups\": {\"w\": {\"max_count\": 3,\n"
                     " \"max_consumables\": -1}, \"t\": {}}}";
  gsize len = strlen (seed);
  GRand *rand = g_rand_new_with_seed (42);

  for (gsize cut = 0; cut < len; cut++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(TlspyoConfig) config = tlspyo_config_parse (seed, cut, &error);

      g_assert_null (config);
      g_assert_nonnull (error);
    }

  for (int round = 0; round < 5000; round++)
    {
      g_autofree char *copy = g_strndup (seed, len);
      g_autoptr(GError) error = NULL;
      g_autoptr(TlspyoConfig) config = NULL;

      for (int i = g_rand_int_range (rand, 1, 4); i > 0; i--)
        copy[g_rand_int_range (rand, 0, (gint32) len)] = (char) g_rand_int_range (rand, 1, 256);
      config = tlspyo_config_parse (copy, len, &error);
      g_assert_true ((config != NULL) == (error == NULL));
      if (error != NULL)
        g_assert_true (g_str_has_prefix (error->message, "line "));
    }
  g_rand_free (rand);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cli/config/full", test_full);
  g_test_add_func ("/cli/config/empty-object", test_empty_object);
  g_test_add_func ("/cli/config/partial", test_partial);
  g_test_add_func ("/cli/config/example-file", test_example_file);
  g_test_add_func ("/cli/config/stats-interval", test_stats_interval);
  g_test_add_func ("/cli/config/limits-and-users", test_limits_and_users);
  g_test_add_func ("/cli/config/refusals", test_refusals);
  g_test_add_func ("/cli/config/mutations", test_mutations);
  return g_test_run ();
}
