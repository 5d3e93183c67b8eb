/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"
#include "tlspyo-frame-private.h"

gboolean
tlspyo_auth_derive_key (const char    *password,
                        const guint8  *salt,
                        gsize          salt_len,
                        guint          iterations,
                        guint8         key[TLSPYO_AUTH_KEY_SIZE],
                        GError       **error)
{
  gnutls_datum_t pw = { (unsigned char *) password, strlen (password) };
  gnutls_datum_t s = { (unsigned char *) salt, salt_len };
  int rc;

  rc = gnutls_pbkdf2 (GNUTLS_MAC_SHA256, &pw, &s, iterations, key, TLSPYO_AUTH_KEY_SIZE);
  if (rc < 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED,
                   "Could not derive a key from the password: %s", gnutls_strerror (rc));
      return FALSE;
    }
  return TRUE;
}

void
tlspyo_auth_random (guint8 *buffer,
                    gsize   len)
{
  /* GNUTLS_RND_RANDOM: nonces must be unpredictable, not merely unique. */
  if (gnutls_rnd (GNUTLS_RND_RANDOM, buffer, len) < 0)
    g_error ("The system random number generator failed");
}

void
tlspyo_auth_proof (const guint8    key[TLSPYO_AUTH_KEY_SIZE],
                   TlspyoAuthRole  role,
                   const guint8    endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE],
                   const guint8    relay_nonce[TLSPYO_AUTH_NONCE_SIZE],
                   guint8          proof[TLSPYO_AUTH_PROOF_SIZE])
{
  /* The role label keeps a relay's proof from being reflected back as an
   * endpoint's (and the reverse). */
  static const char endpoint_label[] = "tlspyo-glib/1 endpoint proof";
  static const char relay_label[] = "tlspyo-glib/1 relay proof";
  const char *label = role == TLSPYO_AUTH_ROLE_ENDPOINT ? endpoint_label : relay_label;
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, key, TLSPYO_AUTH_KEY_SIZE);
  gsize len = TLSPYO_AUTH_PROOF_SIZE;

  g_hmac_update (hmac, (const guchar *) label, strlen (label) + 1);
  g_hmac_update (hmac, endpoint_nonce, TLSPYO_AUTH_NONCE_SIZE);
  g_hmac_update (hmac, relay_nonce, TLSPYO_AUTH_NONCE_SIZE);
  g_hmac_get_digest (hmac, proof, &len);
  g_assert (len == TLSPYO_AUTH_PROOF_SIZE);
}

gboolean
tlspyo_auth_equal (const guint8 *a,
                   const guint8 *b,
                   gsize         len)
{
  /* Constant time: the position of the first difference must not leak. */
  volatile guint8 diff = 0;

  for (gsize i = 0; i < len; i++)
    diff |= a[i] ^ b[i];
  return diff == 0;
}

void
tlspyo_auth_wipe (gpointer data,
                  gsize    len)
{
  if (len > 0)
    gnutls_memset (data, 0, len);
}

/* A hostile relay can send a new salt each time: keep the cache small. */
#define CACHE_MAX 4

typedef struct {
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  gsize  salt_len;
  guint  iterations;
  guint8 key[TLSPYO_AUTH_KEY_SIZE];
} CachedKey;

struct _TlspyoAuthSecret {
  GMutex  mutex;
  char   *password;  /* kept to derive keys for new salts; wiped on free */
  GArray *cache;     /* of CachedKey */
};

TlspyoAuthSecret *
tlspyo_auth_secret_new (const char *password)
{
  TlspyoAuthSecret *secret = g_new0 (TlspyoAuthSecret, 1);

  g_mutex_init (&secret->mutex);
  secret->password = g_strdup (password ? password : "");
  /* Sized so that it never grows: a realloc() would leave a copy of the
   * keys behind in freed memory. */
  secret->cache = g_array_sized_new (FALSE, TRUE, sizeof (CachedKey), CACHE_MAX + 1);
  return secret;
}

TlspyoAuthSecret *
tlspyo_auth_secret_copy (TlspyoAuthSecret *secret)
{
  TlspyoAuthSecret *copy;

  g_mutex_lock (&secret->mutex);
  copy = tlspyo_auth_secret_new (secret->password);
  g_array_append_vals (copy->cache, secret->cache->data, secret->cache->len);
  g_mutex_unlock (&secret->mutex);
  return copy;
}

void
tlspyo_auth_secret_free (TlspyoAuthSecret *secret)
{
  if (secret == NULL)
    return;
  tlspyo_auth_wipe (secret->password, strlen (secret->password));
  g_free (secret->password);
  tlspyo_auth_wipe (secret->cache->data, secret->cache->len * sizeof (CachedKey));
  g_array_unref (secret->cache);
  g_mutex_clear (&secret->mutex);
  g_free (secret);
}

gboolean
tlspyo_auth_secret_get_key (TlspyoAuthSecret *secret,
                            const guint8     *salt,
                            gsize             salt_len,
                            guint             iterations,
                            guint8            key[TLSPYO_AUTH_KEY_SIZE],
                            GError          **error)
{
  CachedKey entry = { 0 };
  g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new (&secret->mutex);

  if (salt_len > sizeof entry.salt)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL,
                   "The key salt of %" G_GSIZE_FORMAT " bytes is too long", salt_len);
      return FALSE;
    }

  for (guint i = 0; i < secret->cache->len; i++)
    {
      CachedKey *c = &g_array_index (secret->cache, CachedKey, i);
      if (c->salt_len == salt_len && c->iterations == iterations &&
          memcmp (c->salt, salt, salt_len) == 0)
        {
          memcpy (key, c->key, TLSPYO_AUTH_KEY_SIZE);
          return TRUE;
        }
    }

  if (!tlspyo_auth_derive_key (secret->password, salt, salt_len, iterations, key, error))
    return FALSE;

  if (secret->cache->len >= CACHE_MAX)
    {
      tlspyo_auth_wipe (secret->cache->data, sizeof (CachedKey));
      g_array_remove_index (secret->cache, 0);
      /* Moving the others down left a copy of the last one past the end. */
      tlspyo_auth_wipe (&g_array_index (secret->cache, CachedKey, secret->cache->len),
                        sizeof (CachedKey));
    }
  memcpy (entry.salt, salt, salt_len);
  entry.salt_len = salt_len;
  entry.iterations = iterations;
  memcpy (entry.key, key, TLSPYO_AUTH_KEY_SIZE);
  g_array_append_val (secret->cache, entry);
  tlspyo_auth_wipe (&entry, sizeof entry);
  return TRUE;
}

/* Password hashes for named users */

char *
tlspyo_auth_hash_password (const char  *password,
                           guint        iterations,
                           GError     **error)
{
  guint8 salt[TLSPYO_AUTH_SALT_SIZE];
  guint8 key[TLSPYO_AUTH_KEY_SIZE];
  g_autofree char *salt_b64 = NULL;
  g_autofree char *key_b64 = NULL;
  char *hash;

  g_return_val_if_fail (password != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (iterations < TLSPYO_AUTH_MIN_ITERATIONS || iterations > TLSPYO_AUTH_MAX_ITERATIONS)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "%u rounds is outside the %u to %u endpoints accept: choose a round "
                   "count in that range", iterations, TLSPYO_AUTH_MIN_ITERATIONS,
                   TLSPYO_AUTH_MAX_ITERATIONS);
      return NULL;
    }
  if (*password == '\0')
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The password is empty: give each user a long random password");
      return NULL;
    }

  tlspyo_auth_random (salt, sizeof salt);
  if (!tlspyo_auth_derive_key (password, salt, sizeof salt, iterations, key, error))
    return NULL;
  salt_b64 = g_base64_encode (salt, sizeof salt);
  key_b64 = g_base64_encode (key, sizeof key);
  tlspyo_auth_wipe (key, sizeof key);
  hash = g_strdup_printf (TLSPYO_AUTH_HASH_SCHEME "$%u$%s$%s", iterations, salt_b64, key_b64);
  tlspyo_auth_wipe (key_b64, strlen (key_b64));
  return hash;
}

/* g_base64_decode() skips what is not base64; a hash must be exact. */
static guint8 *
decode_base64_strict (const char *text,
                      gsize       len,
                      gsize      *out_len)
{
  g_autofree char *copy = NULL;
  gsize padding = 0;

  if (len == 0 || len % 4 != 0)
    return NULL;
  for (gsize i = 0; i < len; i++)
    {
      char c = text[i];

      if (c == '=')
        {
          if (i < len - 2)
            return NULL;
          padding++;
        }
      else if (padding > 0 || !(g_ascii_isalnum (c) || c == '+' || c == '/'))
        return NULL;
    }
  copy = g_strndup (text, len);
  return g_base64_decode (copy, out_len);
}

gboolean
tlspyo_auth_parse_hash (const char  *hash,
                        guint8       salt[TLSPYO_AUTH_SALT_SIZE],
                        gsize       *salt_len,
                        guint       *iterations,
                        guint8       key[TLSPYO_AUTH_KEY_SIZE],
                        GError     **error)
{
  static const char hint[] = "a password hash is “" TLSPYO_AUTH_HASH_SCHEME
                             "$ROUNDS$SALT$KEY”, as `tlspyo credentials hash-password` "
                             "prints it";
  g_auto(GStrv) parts = NULL;
  g_autofree guint8 *salt_bytes = NULL;
  g_autofree guint8 *key_bytes = NULL;
  gsize n_salt = 0, n_key = 0;
  guint64 rounds;
  char *end;

  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (hash == NULL)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT, "No password hash: %s",
                   hint);
      return FALSE;
    }
  parts = g_strsplit (hash, "$", 5);
  if (g_strv_length (parts) != 4 || strcmp (parts[0], TLSPYO_AUTH_HASH_SCHEME) != 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "Not a password hash (never put a password itself in a configuration): %s",
                   hint);
      return FALSE;
    }
  rounds = g_ascii_strtoull (parts[1], &end, 10);
  if (parts[1][0] < '0' || parts[1][0] > '9' || *end != '\0' ||
      rounds < TLSPYO_AUTH_MIN_ITERATIONS || rounds > TLSPYO_AUTH_MAX_ITERATIONS)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "The password hash's round count must be a number from %u to %u: %s",
                   TLSPYO_AUTH_MIN_ITERATIONS, TLSPYO_AUTH_MAX_ITERATIONS, hint);
      return FALSE;
    }
  salt_bytes = decode_base64_strict (parts[2], strlen (parts[2]), &n_salt);
  if (salt_bytes == NULL || n_salt == 0 || n_salt > TLSPYO_AUTH_SALT_SIZE)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "The password hash's salt must be 1 to %u bytes in base64: %s",
                   TLSPYO_AUTH_SALT_SIZE, hint);
      return FALSE;
    }
  key_bytes = decode_base64_strict (parts[3], strlen (parts[3]), &n_key);
  if (key_bytes == NULL || n_key != TLSPYO_AUTH_KEY_SIZE)
    {
      if (key_bytes != NULL)
        tlspyo_auth_wipe (key_bytes, n_key);
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "The password hash's key must be %u bytes in base64: %s",
                   TLSPYO_AUTH_KEY_SIZE, hint);
      return FALSE;
    }

  memcpy (salt, salt_bytes, n_salt);
  *salt_len = n_salt;
  *iterations = (guint) rounds;
  memcpy (key, key_bytes, TLSPYO_AUTH_KEY_SIZE);
  tlspyo_auth_wipe (key_bytes, n_key);
  return TRUE;
}

gboolean
tlspyo_auth_user_name_check (const char  *name,
                             GError     **error)
{
  if (tlspyo_group_name_check (name, NULL))
    return TRUE;
  /* Not quoted: it may hold control characters. */
  g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                       "Invalid user name: a user name is 1 to 255 bytes of UTF-8 text, "
                       "without control characters");
  return FALSE;
}
