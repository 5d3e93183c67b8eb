/* SPDX-License-Identifier: MIT */
#pragma once

/* Password authentication without the password on the wire: both sides
 * derive a key from it and prove knowledge of that key by HMACs over fresh
 * nonces from both sides, so an exchange cannot be replayed and neither a
 * fake relay nor a fake endpoint ever sees the password. */

#include <glib.h>

G_BEGIN_DECLS

#define TLSPYO_AUTH_NONCE_SIZE 32
#define TLSPYO_AUTH_KEY_SIZE   32
#define TLSPYO_AUTH_SALT_SIZE  16
#define TLSPYO_AUTH_PROOF_SIZE 32

/* A relay may announce more; an endpoint refuses fewer, so a fake relay
 * cannot make an offline guess at the password cheap. */
#define TLSPYO_AUTH_DEFAULT_ITERATIONS 20000
#define TLSPYO_AUTH_MIN_ITERATIONS     10000
#define TLSPYO_AUTH_MAX_ITERATIONS     10000000

typedef enum {
  TLSPYO_AUTH_ROLE_ENDPOINT,
  TLSPYO_AUTH_ROLE_RELAY,
} TlspyoAuthRole;

gboolean tlspyo_auth_derive_key  (const char      *password,
                                  const guint8    *salt,
                                  gsize            salt_len,
                                  guint            iterations,
                                  guint8           key[TLSPYO_AUTH_KEY_SIZE],
                                  GError         **error);
void     tlspyo_auth_random      (guint8          *buffer,
                                  gsize            len);
void     tlspyo_auth_proof       (const guint8     key[TLSPYO_AUTH_KEY_SIZE],
                                  TlspyoAuthRole   role,
                                  const guint8     endpoint_nonce[TLSPYO_AUTH_NONCE_SIZE],
                                  const guint8     relay_nonce[TLSPYO_AUTH_NONCE_SIZE],
                                  guint8           proof[TLSPYO_AUTH_PROOF_SIZE]);
gboolean tlspyo_auth_equal       (const guint8    *a,
                                  const guint8    *b,
                                  gsize            len);
/* Zeroes secret material; unlike memset(), not optimized away before a
 * free(). */
void     tlspyo_auth_wipe        (gpointer         data,
                                  gsize            len);

/* Keeps a password only as derived keys, cached per salt, so the clear text
 * can be wiped as soon as a property is set. */
typedef struct _TlspyoAuthSecret TlspyoAuthSecret;

TlspyoAuthSecret *tlspyo_auth_secret_new   (const char        *password);
TlspyoAuthSecret *tlspyo_auth_secret_copy  (TlspyoAuthSecret  *secret);
void              tlspyo_auth_secret_free  (TlspyoAuthSecret  *secret);
gboolean          tlspyo_auth_secret_get_key (TlspyoAuthSecret *secret,
                                              const guint8     *salt,
                                              gsize             salt_len,
                                              guint             iterations,
                                              guint8            key[TLSPYO_AUTH_KEY_SIZE],
                                              GError          **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TlspyoAuthSecret, tlspyo_auth_secret_free)

/* Named users' passwords are stored as the derived key itself, with its
 * salt and round count, in one string:
 *   pbkdf2-sha256$ROUNDS$SALT$KEY   (SALT and KEY in standard base64)
 * KEY is the K of the protocol, so the relay authenticates a user without
 * ever holding the password; the salt travels in CHALLENGE. */
#define TLSPYO_AUTH_HASH_SCHEME             "pbkdf2-sha256"
#define TLSPYO_AUTH_DEFAULT_HASH_ITERATIONS 200000

char     *tlspyo_auth_hash_password (const char  *password,
                                     guint        iterations,
                                     GError     **error);
gboolean  tlspyo_auth_parse_hash    (const char  *hash,
                                     guint8       salt[TLSPYO_AUTH_SALT_SIZE],
                                     gsize       *salt_len,
                                     guint       *iterations,
                                     guint8       key[TLSPYO_AUTH_KEY_SIZE],
                                     GError     **error);

/* User names follow the rules of group names: valid UTF-8, 1 to 255
 * bytes, no control characters. */
gboolean  tlspyo_auth_user_name_check (const char  *name,
                                       GError     **error);

G_END_DECLS
