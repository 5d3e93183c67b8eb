/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* Letting endpoints in: per-address connection limits and failed
 * authentications, the HELLO/AUTH handshake, and the rights per group a
 * joined endpoint is checked against. Runs on the worker thread only. */

AddressState *
tlspyo_relay_core_address (RelayCore  *core,
                           const char *key)
{
  AddressState *state = g_hash_table_lookup (core->addresses, key);
  gint64 now = g_get_monotonic_time ();

  if (state == NULL)
    {
      state = g_new0 (AddressState, 1);
      g_hash_table_insert (core->addresses, g_strdup (key), state);
    }
  if (state->failures > 0 &&
      now - state->last_failure > (gint64) core->limits.auth_block_time * G_USEC_PER_SEC)
    {
      state->failures = 0;
      state->blocked_until = 0;
    }
  return state;
}

/* Drops what no longer matters. Also sweeps the table when it grows, so
 * that failures from many addresses cannot fill memory. */
void
tlspyo_relay_core_address_forget (RelayCore  *core,
                                  const char *key)
{
  AddressState *state = tlspyo_relay_core_address (core, key);

  if (state->n_connections == 0 && state->failures == 0)
    g_hash_table_remove (core->addresses, key);

  if (g_hash_table_size (core->addresses) > 4 * MAX (core->limits.max_connections, 1024))
    {
      GHashTableIter iter;
      gpointer k;

      g_hash_table_iter_init (&iter, core->addresses);
      while (g_hash_table_iter_next (&iter, &k, (gpointer *) &state))
        {
          gint64 age = g_get_monotonic_time () - state->last_failure;

          if (state->n_connections == 0 &&
              (state->failures == 0 ||
               age > (gint64) core->limits.auth_block_time * G_USEC_PER_SEC))
            g_hash_table_iter_remove (&iter);
        }
    }
}

/* A log line for a limit hit, at most REFUSAL_LOG_BURST a second: a flood
 * of connections must not become a flood of log lines. */
void
tlspyo_relay_core_log_limit (RelayCore  *core,
                             const char *format,
                             ...)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *message = NULL;
  va_list args;

  if (now - core->log_window >= G_USEC_PER_SEC)
    {
      if (core->log_suppressed > 0)
        g_message ("%u more limit refusals were not logged", core->log_suppressed);
      core->log_window = now;
      core->log_count = 0;
      core->log_suppressed = 0;
    }
  if (core->log_count >= REFUSAL_LOG_BURST)
    {
      core->log_suppressed++;
      return;
    }
  core->log_count++;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_message ("%s", message);
}

/* Why a new connection from @key cannot be served now, or NULL. */
char *
tlspyo_relay_core_check_connection_limits (RelayCore  *core,
                                           const char *address,
                                           const char *key)
{
  AddressState *state = tlspyo_relay_core_address (core, key);
  gint64 now = g_get_monotonic_time ();

  if (state->blocked_until > now)
    return g_strdup_printf ("too many failed authentications from %s: connections from it "
                            "are refused for another %" G_GINT64_FORMAT " s",
                            key, (state->blocked_until - now) / G_USEC_PER_SEC + 1);
  if (core->limits.max_connections > 0 && core->n_counted >= core->limits.max_connections)
    return g_strdup_printf ("the relay has reached its limit of %u connections "
                            "(max-connections): try again later",
                            core->limits.max_connections);
  if (core->limits.max_connections_per_address > 0 &&
      state->n_connections >= core->limits.max_connections_per_address)
    return g_strdup_printf ("%s already has %u connections to the relay, its limit "
                            "(max-connections-per-address): close some, or have the "
                            "operator raise the limit",
                            key, state->n_connections);
  return NULL;
}

/* A failed authentication from @peer's address: counted, and answered
 * after a delay that doubles with each failure, so that guessing a
 * password is slow even over many connections; at max-auth-failures the
 * address is refused for auth-block-time. Returns the delay in ms. */
static guint
core_auth_failed (RelayCore *core,
                  RelayPeer *peer)
{
  AddressState *state = tlspyo_relay_core_address (core, peer->address_key);
  guint delay;

  state->failures++;
  state->last_failure = g_get_monotonic_time ();
  if (core->limits.max_auth_failures > 0 && state->failures >= core->limits.max_auth_failures &&
      state->blocked_until == 0)
    {
      state->blocked_until = state->last_failure +
                             (gint64) core->limits.auth_block_time * G_USEC_PER_SEC;
      g_message ("%u failed authentications from %s: refusing its connections for %u s",
                 state->failures, peer->address_key, core->limits.auth_block_time);
    }
  else
    tlspyo_relay_core_log_limit (core, "Failed authentication from %s (%u from this address)",
                                 peer->address, state->failures);

  if (core->limits.auth_failure_delay == 0)
    return 0;
  delay = core->limits.auth_failure_delay << MIN (state->failures - 1, 16u);
  /* Below the handshake timeout, so that the refusal gets there. */
  return MIN (delay, MIN ((guint) MAX_AUTH_FAILURE_DELAY, core->handshake_timeout * 500));
}

/* The key, salt and rounds of the password this endpoint must know: the
 * shared one, or its user's. A name no user has gets a salt derived from
 * it (the same each time) and a key nobody knows: to the endpoint, an
 * unknown user looks like a wrong password. */
static gboolean
peer_choose_key (RelayPeer *peer,
                 guint8     salt[TLSPYO_AUTH_SALT_SIZE],
                 gsize     *salt_len,
                 guint     *iterations)
{
  RelayCore *core = peer->core;
  RelayUser *user;

  if (peer->user_name == NULL)
    {
      if (!core->has_password)
        return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_AUTHENTICATION,
                                         "This relay has no shared password, only named users: set the "
                                         "endpoint's user property and that user's password");
      memcpy (peer->key, core->key, sizeof peer->key);
      memcpy (salt, core->salt, sizeof core->salt);
      *salt_len = sizeof core->salt;
      *iterations = core->iterations;
      return TRUE;
    }

  user = g_hash_table_lookup (core->users, peer->user_name);
  if (user != NULL)
    {
      peer->user = tlspyo_relay_user_ref (user);
      memcpy (peer->key, user->key, sizeof peer->key);
      memcpy (salt, user->salt, user->salt_len);
      *salt_len = user->salt_len;
      *iterations = user->iterations;
      return TRUE;
    }

  {
    g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, core->unknown_user_secret,
                                        sizeof core->unknown_user_secret);
    guint8 digest[32];
    gsize digest_len = sizeof digest;

    g_hmac_update (hmac, (const guchar *) peer->user_name, strlen (peer->user_name));
    g_hmac_get_digest (hmac, digest, &digest_len);
    memcpy (salt, digest, TLSPYO_AUTH_SALT_SIZE);
    tlspyo_auth_random (peer->key, sizeof peer->key);
    *salt_len = TLSPYO_AUTH_SALT_SIZE;
    *iterations = TLSPYO_AUTH_DEFAULT_HASH_ITERATIONS;
  }
  return TRUE;
}

gboolean
tlspyo_relay_handle_hello (RelayPeer         *peer,
                           const TlspyoFrame *frame)
{
  guint32 version;
  g_autoptr(GVariant) nonce = NULL;
  gsize len;
  const guint8 *data;
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  gsize salt_len = 0;
  guint iterations = 0;

  /* Over a limit at accept time: the refusal waits for HELLO, so that the
   * endpoint reads it (closing on unread data would reset the connection). */
  if (peer->over_limit != NULL)
    return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_LIMIT, peer->over_limit);

  if (frame->type == TLSPYO_FRAME_HELLO_USER)
    {
      g_variant_get (frame->meta, "(u@ays)", &version, &nonce, &peer->user_name);
      if (!tlspyo_auth_user_name_check (peer->user_name, NULL))
        return tlspyo_relay_peer_protocol_error (peer,
                                                 "Endpoint %s gave an invalid user name", peer->address);
    }
  else
    g_variant_get (frame->meta, "(u@ay)", &version, &nonce);
  /* Mutual TLS: the certificate says who the endpoint must authenticate as. */
  if (peer->certificate_user != NULL && g_strcmp0 (peer->user_name, peer->certificate_user) != 0)
    {
      g_autofree char *reason =
        g_strdup_printf ("this endpoint's client certificate belongs to user '%s': set "
                         "the endpoint's user to '%s', with that user's password",
                         peer->certificate_user, peer->certificate_user);

      tlspyo_relay_core_log_limit (peer->core, "Refused %s: %s", peer->address, reason);
      return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_PERMISSION_DENIED, reason);
    }
  if (version != TLSPYO_PROTOCOL_VERSION)
    return tlspyo_relay_peer_protocol_error (peer,
                                             "Endpoint %s speaks protocol version %u, this relay speaks %u",
                                             peer->address, version, TLSPYO_PROTOCOL_VERSION);
  data = g_variant_get_fixed_array (nonce, &len, 1);
  if (len != TLSPYO_AUTH_NONCE_SIZE)
    return tlspyo_relay_peer_protocol_error (peer,
                                             "Endpoint %s sent a nonce of %" G_GSIZE_FORMAT " bytes",
                                             peer->address, len);
  memcpy (peer->endpoint_nonce, data, len);
  tlspyo_auth_random (peer->relay_nonce, sizeof peer->relay_nonce);
  if (!peer_choose_key (peer, salt, &salt_len, &iterations))
    return FALSE;

  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_AUTH) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_CHALLENGE,
                          g_variant_new ("(@ay@ayu)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, peer->relay_nonce,
                                                                    TLSPYO_AUTH_NONCE_SIZE, 1),
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, salt,
                                                                    salt_len, 1),
                                         iterations),
                          NULL, NULL);
  peer->state = PEER_AWAIT_AUTH;
  return TRUE;
}

gboolean
tlspyo_relay_peer_has_right (RelayPeer    *peer,
                             const char   *group,
                             TlspyoRights  right)
{
  return peer->user == NULL || (tlspyo_relay_user_rights (peer->user, group) & right) == right;
}

static gboolean
auth_delay_cb (gpointer user_data)
{
  RelayPeer *peer = user_data;

  g_clear_pointer (&peer->delay_timer, g_source_unref);
  tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_AUTHENTICATION,
                            "Authentication failed: the endpoint does not know the relay's password");
  return G_SOURCE_REMOVE;
}

static gboolean
peer_auth_failed (RelayPeer *peer)
{
  guint delay = core_auth_failed (peer->core, peer);

  if (delay == 0)
    {
      auth_delay_cb (peer);
      return FALSE;
    }

  /* Nothing but a goodbye is read meanwhile. */
  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META_HANDSHAKE, 0,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  peer->delay_timer = g_timeout_source_new (delay);
  g_source_set_callback (peer->delay_timer, auth_delay_cb, peer, NULL);
  g_source_set_static_name (peer->delay_timer, "[tlspyo] authentication failure delay");
  g_source_attach (peer->delay_timer, g_main_context_get_thread_default ());
  return TRUE;
}

gboolean
tlspyo_relay_handle_auth (RelayPeer         *peer,
                          const TlspyoFrame *frame)
{
  RelayCore *core = peer->core;
  g_autoptr(GVariant) proof_v = NULL;
  g_autofree const char **groups = NULL;
  g_autoptr(GError) error = NULL;
  guint8 expected[TLSPYO_AUTH_PROOF_SIZE];
  guint8 relay_proof[TLSPYO_AUTH_PROOF_SIZE];
  const guint8 *proof;
  gsize len, n_groups;

  g_variant_get (frame->meta, "(@ay^a&s)", &proof_v, &groups);
  proof = g_variant_get_fixed_array (proof_v, &len, 1);
  tlspyo_auth_proof (peer->key, TLSPYO_AUTH_ROLE_ENDPOINT, peer->endpoint_nonce,
                     peer->relay_nonce, expected);
  if (len != TLSPYO_AUTH_PROOF_SIZE || !tlspyo_auth_equal (proof, expected, sizeof expected))
    return peer_auth_failed (peer);

  n_groups = g_strv_length ((char **) groups);
  if (n_groups == 0)
    return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_INVALID_ARGUMENT,
                                     "The endpoint has no group: give it at least one");
  if (core->limits.max_groups_per_endpoint > 0 && n_groups > core->limits.max_groups_per_endpoint)
    {
      g_autofree char *reason =
        g_strdup_printf ("the endpoint asks for %" G_GSIZE_FORMAT " groups, more than the "
                         "relay's limit of %u (max-groups-per-endpoint)",
                         n_groups, core->limits.max_groups_per_endpoint);

      tlspyo_relay_core_log_limit (core, "Refused %s: %s", peer->address, reason);
      return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_LIMIT, reason);
    }
  for (gsize i = 0; i < n_groups; i++)
    if (!tlspyo_group_name_check (groups[i], &error))
      return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_GROUP_REFUSED, error->message);
  for (gsize i = 0; i < n_groups; i++)
    if (!tlspyo_relay_peer_has_right (peer, groups[i], TLSPYO_RIGHTS_JOIN))
      {
        g_autofree char *reason = g_strdup_printf ("user '%s' may not join group '%s'",
                                                   peer->user->name, groups[i]);

        tlspyo_relay_core_log_limit (core, "Refused %s: %s", peer->address, reason);
        return tlspyo_relay_peer_refuse (peer, TLSPYO_ERROR_PERMISSION_DENIED, reason);
      }

  peer->router_peer = tlspyo_router_join (core->router, peer, groups, &error);
  if (peer->router_peer == NULL)
    return tlspyo_relay_peer_refuse (peer, error->code, error->message);

  tlspyo_auth_proof (peer->key, TLSPYO_AUTH_ROLE_RELAY, peer->endpoint_nonce,
                     peer->relay_nonce, relay_proof);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_WELCOME,
                          g_variant_new ("(@ay)",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, relay_proof,
                                                                    sizeof relay_proof, 1)),
                          NULL, NULL);
  peer->state = PEER_JOINED;
  g_atomic_int_inc (&core->n_joined);
  if (peer->handshake_timer != NULL)
    {
      g_source_destroy (peer->handshake_timer);
      g_clear_pointer (&peer->handshake_timer, g_source_unref);
    }
  tlspyo_connection_set_limits (peer->conn, TLSPYO_FRAME_MAX_META, core->max_object_size,
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_OBJECT) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_NOTIFY) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_SESSION) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_TAKEN) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PING) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_PONG) |
                                TLSPYO_FRAME_BIT (TLSPYO_FRAME_BYE));
  /* The latest broadcasts wait for SESSION (tlspyo_relay_peer_release_early()). */
  peer->early_held = peer->early->len > 0;

  g_debug ("Endpoint %s joined", peer->address);
  tlspyo_relay_core_emit (core, SIGNAL_ENDPOINT_CONNECTED, peer->address, groups, 0, NULL);
  return TRUE;
}

/* Issue 6: an action the relay does not carry out (a right the user lacks,
 * a limit reached). The endpoint is told, with DENIED; the connection goes
 * on. The log line never holds the object. */
void
tlspyo_relay_peer_deny (RelayPeer   *peer,
                        TlspyoError  code,
                        const char  *group,
                        const char  *reason)
{
  tlspyo_relay_core_log_limit (peer->core, "Denied %s: %s", peer->address, reason);
  tlspyo_connection_send (peer->conn, TLSPYO_FRAME_DENIED,
                          g_variant_new ("(uss)", (guint32) code, group, reason), NULL, NULL);
}

/* Whether an object may go to all of @destinations; it goes to all or to
 * none. Otherwise the endpoint is told why. */
gboolean
tlspyo_relay_peer_may_route (RelayPeer *peer,
                             GVariant  *destinations,
                             GBytes    *object)
{
  RelayCore *core = peer->core;
  GVariantIter iter;
  const char *group;
  gint32 count;

  g_variant_iter_init (&iter, destinations);
  while (g_variant_iter_next (&iter, "{&si}", &group, &count))
    {
      TlspyoRights right = count < 0 ? TLSPYO_RIGHTS_BROADCAST : TLSPYO_RIGHTS_PRODUCE;
      guint64 queued;

      if (!tlspyo_relay_peer_has_right (peer, group, right))
        {
          g_autofree char *reason =
            g_strdup_printf ("user '%s' may not %s group '%s': the object was dropped",
                             peer->user->name, count < 0 ? "broadcast to" : "produce into",
                             group);

          tlspyo_relay_peer_deny (peer, TLSPYO_ERROR_PERMISSION_DENIED, group, reason);
          return FALSE;
        }
      if (count > MAX_COPIES)
        {
          g_autofree char *reason =
            g_strdup_printf ("%d copies of one object for group '%s': the relay takes at "
                             "most %d per object; the object was dropped: send it in "
                             "several objects", count, group, MAX_COPIES);

          tlspyo_relay_peer_deny (peer, TLSPYO_ERROR_LIMIT, group, reason);
          return FALSE;
        }
      if (count < 0 || core->limits.max_queued_bytes == 0)
        continue;
      /* One object always fits, so a limit below the object size does not
       * stop a group for good. */
      queued = tlspyo_router_get_queued_bytes (core->router, group);
      if (queued > 0 && queued + g_bytes_get_size (object) > core->limits.max_queued_bytes)
        {
          g_autofree char *reason =
            g_strdup_printf ("group '%s' already holds %" G_GUINT64_FORMAT " bytes of "
                             "produced objects, the relay's limit (max-queued-bytes) is %"
                             G_GUINT64_FORMAT ": the object was dropped; consumers must "
                             "catch up", group, queued, core->limits.max_queued_bytes);

          tlspyo_relay_peer_deny (peer, TLSPYO_ERROR_LIMIT, group, reason);
          return FALSE;
        }
    }
  return TRUE;
}
