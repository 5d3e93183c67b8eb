/* SPDX-License-Identifier: MIT */
/* The relay's JSON config reader (`tlspyo relay --config`). What it
 * accepts must be accepted by the library too: every value is applied to a
 * relay exactly as `tlspyo relay` applies it, and a value the reader let
 * through but the library refuses is a critical, which aborts. Errors must
 * be TLSPYO_ERROR_INVALID_ARGUMENT with a message. Input: the file. */
#include "fuzz-common.h"
#include "tlspyo-config.h"

int
LLVMFuzzerInitialize (int    *argc,
                      char ***argv)
{
  tlspyo_fuzz_init ();
  tlspyo_fuzz_set_warnings_fatal (TRUE);
  return 0;
}

static void
apply (TlspyoConfig *config)
{
  g_autoptr(TlspyoRelay) relay = tlspyo_relay_new (0, "fuzz");

  if (config->fields & TLSPYO_CONFIG_ADDRESS)
    g_object_set (relay, "address", config->address, NULL);
  if (config->fields & TLSPYO_CONFIG_PORT)
    g_object_set (relay, "port", config->port, NULL);
  if (config->fields & TLSPYO_CONFIG_SECURITY)
    g_object_set (relay, "security", config->security, NULL);
  if (config->fields & TLSPYO_CONFIG_CREDENTIALS_DIR)
    g_object_set (relay, "credentials-dir", config->credentials_dir, NULL);
  if (config->fields & TLSPYO_CONFIG_MAX_OBJECT_SIZE)
    g_object_set (relay, "max-object-size", config->max_object_size, NULL);
  if (config->fields & TLSPYO_CONFIG_HANDSHAKE_TIMEOUT)
    g_object_set (relay, "handshake-timeout", config->handshake_timeout, NULL);
  if (config->fields & TLSPYO_CONFIG_CLIENT_CERTIFICATES_DIR)
    g_object_set (relay, "client-certificates-dir", config->client_certificates_dir, NULL);
  for (guint i = 0; i < config->groups->len; i++)
    {
      TlspyoConfigGroup *group = g_ptr_array_index (config->groups, i);

      tlspyo_relay_accept_group (relay, group->name, group->max_count, group->max_consumables);
    }
  if (config->limits.fields & TLSPYO_CONFIG_MAX_CONNECTIONS)
    g_object_set (relay, "max-connections", config->limits.max_connections, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_CONNECTIONS_PER_ADDRESS)
    g_object_set (relay, "max-connections-per-address",
                  config->limits.max_connections_per_address, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_AUTH_FAILURES)
    g_object_set (relay, "max-auth-failures", config->limits.max_auth_failures, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_AUTH_BLOCK_TIME)
    g_object_set (relay, "auth-block-time", config->limits.auth_block_time, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_AUTH_FAILURE_DELAY)
    g_object_set (relay, "auth-failure-delay", config->limits.auth_failure_delay, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_GROUPS_PER_ENDPOINT)
    g_object_set (relay, "max-groups-per-endpoint", config->limits.max_groups_per_endpoint, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_QUEUED_BYTES)
    g_object_set (relay, "max-queued-bytes", config->limits.max_queued_bytes, NULL);
  if (config->limits.fields & TLSPYO_CONFIG_MAX_IN_FLIGHT_BYTES)
    g_object_set (relay, "max-in-flight-bytes", config->limits.max_in_flight_bytes, NULL);
  for (guint i = 0; i < config->users->len; i++)
    {
      TlspyoConfigUser *user = g_ptr_array_index (config->users, i);
      g_autoptr(GError) error = NULL;

      /* The reader checked the hash: the library must take it. */
      if (!tlspyo_relay_add_user (relay, user->name, user->password_hash, &error))
        g_error ("the reader accepted a user the relay refuses: %s", error->message);
      for (guint j = 0; j < user->grants->len; j++)
        {
          TlspyoConfigGrant *grant = g_ptr_array_index (user->grants, j);

          tlspyo_relay_grant (relay, user->name, grant->group, grant->rights);
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoConfig) config = NULL;

  config = tlspyo_config_parse ((const char *) data, size, &error);
  if (config == NULL)
    {
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      return 0;
    }
  g_assert_no_error (error);
  apply (config);
  return 0;
}
