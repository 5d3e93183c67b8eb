/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-relay-private.h"

/* Named users (issue 6): the table of users with their password hashes
 * and rights per group, and the API that fills it (add_user, grant,
 * hash_password), copied over to the worker's table as it changes. */

static RelayUser *
relay_user_new (const char *name)
{
  RelayUser *user = g_new0 (RelayUser, 1);

  g_atomic_ref_count_init (&user->ref_count);
  user->name = g_strdup (name);
  user->groups = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return user;
}

RelayUser *
tlspyo_relay_user_ref (RelayUser *user)
{
  g_atomic_ref_count_inc (&user->ref_count);
  return user;
}

void
tlspyo_relay_user_unref (RelayUser *user)
{
  if (!g_atomic_ref_count_dec (&user->ref_count))
    return;
  tlspyo_auth_wipe (user->key, sizeof user->key);
  g_hash_table_unref (user->groups);
  g_free (user->name);
  g_free (user);
}

/* Makes @dest say what @src says (name aside). */
static void
relay_user_assign (RelayUser *dest,
                   RelayUser *src)
{
  GHashTableIter iter;
  gpointer group, rights;

  memcpy (dest->salt, src->salt, sizeof dest->salt);
  dest->salt_len = src->salt_len;
  dest->iterations = src->iterations;
  memcpy (dest->key, src->key, sizeof dest->key);
  dest->every_group = src->every_group;
  g_hash_table_remove_all (dest->groups);
  g_hash_table_iter_init (&iter, src->groups);
  while (g_hash_table_iter_next (&iter, &group, &rights))
    g_hash_table_insert (dest->groups, g_strdup (group), rights);
}

RelayUser *
tlspyo_relay_user_copy (RelayUser *user)
{
  RelayUser *copy = relay_user_new (user->name);

  relay_user_assign (copy, user);
  return copy;
}

TlspyoRights
tlspyo_relay_user_rights (RelayUser  *user,
                          const char *group)
{
  return user->every_group |
         (TlspyoRights) GPOINTER_TO_UINT (g_hash_table_lookup (user->groups, group));
}

GHashTable *
tlspyo_relay_user_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                (GDestroyNotify) tlspyo_relay_user_unref);
}

/* Users (issue 6). The relay's table is copied into the worker's at
 * start(); later changes are copied over as they happen. */

typedef struct {
  RelayCore *core;
  RelayUser *user;
} UserCall;

static gboolean
core_update_user_cb (gpointer data)
{
  UserCall *call = data;
  RelayUser *existing = g_hash_table_lookup (call->core->users, call->user->name);

  /* In place: connected endpoints of this user get the new rights at once
   * (and a new password applies to the next handshake). */
  if (existing != NULL)
    relay_user_assign (existing, call->user);
  else
    {
      RelayUser *copy = tlspyo_relay_user_copy (call->user);
      g_hash_table_insert (call->core->users, copy->name, copy);
    }
  return G_SOURCE_REMOVE;
}

/* Called with the mutex held; releases it. */
static void
relay_push_user_unlock (TlspyoRelay *self,
                        RelayUser   *user)
{
  UserCall call = { NULL, NULL };

  if (self->core != NULL)
    {
      call.core = tlspyo_relay_core_ref (self->core);
      call.user = tlspyo_relay_user_copy (user);
    }
  g_mutex_unlock (&self->mutex);
  if (call.core == NULL)
    return;
  tlspyo_worker_invoke_sync (self->worker, core_update_user_cb, &call);
  tlspyo_relay_user_unref (call.user);
  tlspyo_relay_core_unref (call.core);
}

/**
 * tlspyo_relay_hash_password:
 * @password: a user's password
 * @iterations: PBKDF2 rounds, from 10000 to 10000000, or 0 for the default
 *   (200000)
 * @error: return location for a #GError
 *
 * Makes the hash [method@Tlspyo.Relay.add_user] takes, as `tlspyo
 * credentials hash-password` does: `pbkdf2-sha256$ROUNDS$SALT$KEY`, with a
 * random salt. The relay stores only this, never the password; the key in
 * it is what the endpoint proves it can derive from the password, so keep
 * hashes as secret as passwords (they let one pose as the relay to that
 * user's endpoints, not log in as the user).
 *
 * Returns: (transfer full): the hash, or %NULL with @error set
 *
 * Since: 0.1
 */
char *
tlspyo_relay_hash_password (const char  *password,
                            guint        iterations,
                            GError     **error)
{
  g_return_val_if_fail (password != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return tlspyo_auth_hash_password (password,
                                    iterations ? iterations : TLSPYO_AUTH_DEFAULT_HASH_ITERATIONS,
                                    error);
}

/**
 * tlspyo_relay_add_user:
 * @self: a relay
 * @name: the user's name, which its endpoints set as their
 *   [property@Tlspyo.Endpoint:user]
 * @password_hash: the user's password hash, from
 *   [func@Tlspyo.Relay.hash_password] or `tlspyo credentials hash-password`
 * @error: return location for a #GError
 *
 * Adds a named user, or replaces its password. A user has no right until
 * [method@Tlspyo.Relay.grant] gives it some. Endpoints that name no user
 * use the relay's shared [property@Tlspyo.Relay:password] and have every
 * right; a relay with users and no password accepts only users.
 *
 * Returns: %TRUE, or %FALSE with @error set when the name or the hash is
 *   malformed (%TLSPYO_ERROR_INVALID_ARGUMENT)
 *
 * Since: 0.1
 */
gboolean
tlspyo_relay_add_user (TlspyoRelay  *self,
                       const char   *name,
                       const char   *password_hash,
                       GError      **error)
{
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  guint8 key[TLSPYO_AUTH_KEY_SIZE];
  gsize salt_len;
  guint iterations;
  RelayUser *user;

  g_return_val_if_fail (TLSPYO_IS_RELAY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tlspyo_auth_user_name_check (name, error))
    return FALSE;
  if (!tlspyo_auth_parse_hash (password_hash, salt, &salt_len, &iterations, key, error))
    {
      g_prefix_error (error, "User '%s': ", name);
      return FALSE;
    }

  g_mutex_lock (&self->mutex);
  user = g_hash_table_lookup (self->users, name);
  if (user == NULL)
    {
      user = relay_user_new (name);
      g_hash_table_insert (self->users, user->name, user);
    }
  memcpy (user->salt, salt, salt_len);
  user->salt_len = salt_len;
  user->iterations = iterations;
  memcpy (user->key, key, sizeof key);
  tlspyo_auth_wipe (key, sizeof key);
  relay_push_user_unlock (self, user);
  return TRUE;
}

/**
 * tlspyo_relay_grant:
 * @self: a relay
 * @user: a user added with [method@Tlspyo.Relay.add_user]
 * @group: (nullable): a group name, or %NULL for every group
 * @rights: what @user may do in @group
 *
 * Sets the rights of a named user in a group, replacing what was granted
 * for that group before (%TLSPYO_RIGHTS_NONE takes them away). The rights
 * in a group are those granted for it plus those granted for every group.
 * Endpoints of the user that are connected get the new rights at once.
 *
 * An endpoint that asks to join a group without %TLSPYO_RIGHTS_JOIN is
 * refused with %TLSPYO_ERROR_PERMISSION_DENIED; a broadcast, a produce or a
 * notify_ready without the right is dropped, and the endpoint told with
 * [signal@Tlspyo.Endpoint::action-refused].
 *
 * Since: 0.1
 */
void
tlspyo_relay_grant (TlspyoRelay  *self,
                    const char   *user,
                    const char   *group,
                    TlspyoRights  rights)
{
  RelayUser *entry;

  g_return_if_fail (TLSPYO_IS_RELAY (self));
  g_return_if_fail (user != NULL);
  g_return_if_fail (group == NULL || tlspyo_group_name_check (group, NULL));
  g_return_if_fail ((rights & ~TLSPYO_RIGHTS_ALL) == 0);

  g_mutex_lock (&self->mutex);
  entry = g_hash_table_lookup (self->users, user);
  if (entry == NULL)
    {
      g_mutex_unlock (&self->mutex);
      g_critical ("%s: no user '%s': add it with tlspyo_relay_add_user() first", G_STRFUNC, user);
      return;
    }
  if (group == NULL)
    entry->every_group = rights;
  else
    g_hash_table_insert (entry->groups, g_strdup (group), GUINT_TO_POINTER (rights));
  relay_push_user_unlock (self, entry);
}
