/* SPDX-License-Identifier: MIT */
/* Unit tests of the password challenge-response (tlspyo-auth.c): the key
 * derivation against published vectors and an independent PBKDF2, proofs
 * bound to role, nonces and key, constant-time comparison, the key cache. */
#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-error.h"

/* PBKDF2-HMAC-SHA256 (RFC 8018), written from the RFC with GHmac, so that
 * the library's GnuTLS-based derivation is checked against code that shares
 * nothing with it. One block is enough: the key is as long as a digest. */
static void
reference_pbkdf2 (const char   *password,
                  const guint8 *salt,
                  gsize         salt_len,
                  guint         iterations,
                  guint8        out[32])
{
  static const guint8 block_index[4] = { 0, 0, 0, 1 };
  guint8 u[32];
  gsize len = sizeof u;
  GHmac *hmac;

  hmac = g_hmac_new (G_CHECKSUM_SHA256, (const guchar *) password, strlen (password));
  g_hmac_update (hmac, salt, salt_len);
  g_hmac_update (hmac, block_index, sizeof block_index);
  g_hmac_get_digest (hmac, u, &len);
  g_hmac_unref (hmac);
  g_assert_cmpuint (len, ==, 32);
  memcpy (out, u, 32);

  for (guint i = 1; i < iterations; i++)
    {
      hmac = g_hmac_new (G_CHECKSUM_SHA256, (const guchar *) password, strlen (password));
      g_hmac_update (hmac, u, sizeof u);
      len = sizeof u;
      g_hmac_get_digest (hmac, u, &len);
      g_hmac_unref (hmac);
      for (guint j = 0; j < 32; j++)
        out[j] ^= u[j];
    }
}

static void
assert_bytes_equal (const guint8 *a,
                    const guint8 *b,
                    gsize         len)
{
  g_assert_cmpmem (a, len, b, len);
}

static void
hex_decode (const char *hex,
            guint8     *out,
            gsize       len)
{
  g_assert_cmpuint (strlen (hex), ==, 2 * len);
  for (gsize i = 0; i < len; i++)
    out[i] = (guint8) ((g_ascii_xdigit_value (hex[2 * i]) << 4) |
                       g_ascii_xdigit_value (hex[2 * i + 1]));
}

/* RFC 7914 section 11 gives PBKDF2-HMAC-SHA256 vectors (64-byte keys: our
 * 32-byte key is their first block). */
static void
test_derive_known_answer (void)
{
  static const struct {
    const char *password;
    const char *salt;
    guint       iterations;
    const char *key_hex;
  } vectors[] = {
    { "passwd", "salt", 1,
      "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc" },
    { "Password", "NaCl", 80000,
      "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (vectors); i++)
    {
      g_autoptr(GError) error = NULL;
      guint8 expected[TLSPYO_AUTH_KEY_SIZE];
      guint8 key[TLSPYO_AUTH_KEY_SIZE];
      guint8 reference[32];

      hex_decode (vectors[i].key_hex, expected, sizeof expected);
      g_assert_true (tlspyo_auth_derive_key (vectors[i].password,
                                             (const guint8 *) vectors[i].salt,
                                             strlen (vectors[i].salt),
                                             vectors[i].iterations, key, &error));
      g_assert_no_error (error);
      assert_bytes_equal (key, expected, sizeof key);

      /* The reference implementation must agree with the RFC too, or the
       * comparisons below would prove nothing. */
      reference_pbkdf2 (vectors[i].password, (const guint8 *) vectors[i].salt,
                        strlen (vectors[i].salt), vectors[i].iterations, reference);
      assert_bytes_equal (reference, expected, sizeof reference);
    }
}

static void
test_derive_matches_reference (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20240601);
  static const guint iterations[] = { 1, 2, 3, 1000, TLSPYO_AUTH_MIN_ITERATIONS };
  static const char *passwords[] = {
    TLSPYO_TEST_PASSWORD, "", "p", "pässwörd ✓ with UTF-8",
    /* Longer than a SHA-256 block: HMAC hashes such keys first. */
    ("a password that is much longer than the sixty-four bytes of one SHA-256 block, "
     "so that HMAC has to hash it down first"),
  };

  for (guint p = 0; p < G_N_ELEMENTS (passwords); p++)
    for (guint i = 0; i < G_N_ELEMENTS (iterations); i++)
      {
        g_autoptr(GError) error = NULL;
        guint8 salt[TLSPYO_AUTH_SALT_SIZE];
        guint8 key[TLSPYO_AUTH_KEY_SIZE];
        guint8 reference[32];
        gsize salt_len = 1 + g_rand_int_range (rand, 0, sizeof salt);

        for (gsize j = 0; j < salt_len; j++)
          salt[j] = (guint8) g_rand_int (rand);
        g_assert_true (tlspyo_auth_derive_key (passwords[p], salt, salt_len, iterations[i],
                                               key, &error));
        g_assert_no_error (error);
        reference_pbkdf2 (passwords[p], salt, salt_len, iterations[i], reference);
        assert_bytes_equal (key, reference, sizeof key);
      }
}

static void
test_derive_depends_on_inputs (void)
{
  static const guint8 salt_a[TLSPYO_AUTH_SALT_SIZE] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
  };
  static const guint8 salt_b[TLSPYO_AUTH_SALT_SIZE] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17
  };
  guint8 k1[TLSPYO_AUTH_KEY_SIZE], k2[TLSPYO_AUTH_KEY_SIZE];
  guint8 k3[TLSPYO_AUTH_KEY_SIZE], k4[TLSPYO_AUTH_KEY_SIZE];

  g_assert_true (tlspyo_auth_derive_key ("secret", salt_a, sizeof salt_a, 1000, k1, NULL));
  g_assert_true (tlspyo_auth_derive_key ("secret", salt_b, sizeof salt_b, 1000, k2, NULL));
  g_assert_true (tlspyo_auth_derive_key ("secret", salt_a, sizeof salt_a, 1001, k3, NULL));
  g_assert_true (tlspyo_auth_derive_key ("secreT", salt_a, sizeof salt_a, 1000, k4, NULL));

  g_assert_true (memcmp (k1, k2, sizeof k1) != 0);
  g_assert_true (memcmp (k1, k3, sizeof k1) != 0);
  g_assert_true (memcmp (k1, k4, sizeof k1) != 0);
}

static void
reference_proof (const guint8 key[TLSPYO_AUTH_KEY_SIZE],
                 const char   *label,
                 const guint8 *endpoint_nonce,
                 const guint8 *relay_nonce,
                 guint8        out[TLSPYO_AUTH_PROOF_SIZE])
{
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, key, TLSPYO_AUTH_KEY_SIZE);
  gsize len = TLSPYO_AUTH_PROOF_SIZE;

  /* The label travels with its NUL, as the protocol says. */
  g_hmac_update (hmac, (const guchar *) label, strlen (label) + 1);
  g_hmac_update (hmac, endpoint_nonce, TLSPYO_AUTH_NONCE_SIZE);
  g_hmac_update (hmac, relay_nonce, TLSPYO_AUTH_NONCE_SIZE);
  g_hmac_get_digest (hmac, out, &len);
  g_assert_cmpuint (len, ==, TLSPYO_AUTH_PROOF_SIZE);
}

/* The proof is part of the wire protocol: another implementation must be
 * able to compute it from the description alone. */
static void
test_proof_known_answer (void)
{
  guint8 key[TLSPYO_AUTH_KEY_SIZE], en[TLSPYO_AUTH_NONCE_SIZE], rn[TLSPYO_AUTH_NONCE_SIZE];
  guint8 proof[TLSPYO_AUTH_PROOF_SIZE], expected[TLSPYO_AUTH_PROOF_SIZE];

  for (guint i = 0; i < sizeof key; i++)
    key[i] = (guint8) i;
  for (guint i = 0; i < sizeof en; i++)
    {
      en[i] = (guint8) (0x40 + i);
      rn[i] = (guint8) (0x80 + i);
    }

  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, en, rn, proof);
  reference_proof (key, "tlspyo-glib/1 endpoint proof", en, rn, expected);
  assert_bytes_equal (proof, expected, sizeof proof);

  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_RELAY, en, rn, proof);
  reference_proof (key, "tlspyo-glib/1 relay proof", en, rn, expected);
  assert_bytes_equal (proof, expected, sizeof proof);
}

static void
test_proof_binding (void)
{
  guint8 key[TLSPYO_AUTH_KEY_SIZE], key2[TLSPYO_AUTH_KEY_SIZE];
  guint8 en[TLSPYO_AUTH_NONCE_SIZE], rn[TLSPYO_AUTH_NONCE_SIZE];
  guint8 en2[TLSPYO_AUTH_NONCE_SIZE], rn2[TLSPYO_AUTH_NONCE_SIZE];
  guint8 base[TLSPYO_AUTH_PROOF_SIZE], again[TLSPYO_AUTH_PROOF_SIZE], other[TLSPYO_AUTH_PROOF_SIZE];

  tlspyo_auth_random (key, sizeof key);
  tlspyo_auth_random (en, sizeof en);
  tlspyo_auth_random (rn, sizeof rn);
  memcpy (key2, key, sizeof key);
  key2[TLSPYO_AUTH_KEY_SIZE - 1] ^= 0x01;
  memcpy (en2, en, sizeof en);
  en2[0] ^= 0x80;
  memcpy (rn2, rn, sizeof rn);
  rn2[TLSPYO_AUTH_NONCE_SIZE / 2] ^= 0x10;

  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, en, rn, base);

  /* Deterministic: the relay recomputes what the endpoint computed. */
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, en, rn, again);
  g_assert_true (tlspyo_auth_equal (base, again, sizeof base));

  /* A relay's proof cannot be reflected as an endpoint's. */
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_RELAY, en, rn, other);
  g_assert_false (tlspyo_auth_equal (base, other, sizeof base));

  /* Fresh nonces on either side give a different proof: no replay. */
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, en2, rn, other);
  g_assert_false (tlspyo_auth_equal (base, other, sizeof base));
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, en, rn2, other);
  g_assert_false (tlspyo_auth_equal (base, other, sizeof base));

  /* The nonces are not interchangeable. */
  tlspyo_auth_proof (key, TLSPYO_AUTH_ROLE_ENDPOINT, rn, en, other);
  g_assert_false (tlspyo_auth_equal (base, other, sizeof base));

  /* One bit of key changes it. */
  tlspyo_auth_proof (key2, TLSPYO_AUTH_ROLE_ENDPOINT, en, rn, other);
  g_assert_false (tlspyo_auth_equal (base, other, sizeof base));
}

static void
test_equal (void)
{
  guint8 a[64], b[64];

  tlspyo_auth_random (a, sizeof a);
  memcpy (b, a, sizeof a);

  g_assert_true (tlspyo_auth_equal (a, b, sizeof a));
  g_assert_true (tlspyo_auth_equal (a, b, 0));
  g_assert_true (tlspyo_auth_equal (a, b, 1));

  /* A difference of any single bit, at any position, is seen. */
  for (guint i = 0; i < sizeof a; i++)
    for (guint bit = 0; bit < 8; bit++)
      {
        b[i] ^= (guint8) (1u << bit);
        g_assert_false (tlspyo_auth_equal (a, b, sizeof a));
        /* ...and only within the compared length. */
        if (i > 0)
          g_assert_true (tlspyo_auth_equal (a, b, i));
        b[i] ^= (guint8) (1u << bit);
      }

  /* Differences that would cancel out in a sum do not. */
  b[0] = a[0] + 1;
  b[1] = a[1] - 1;
  g_assert_false (tlspyo_auth_equal (a, b, sizeof a));
}

static void
test_wipe (void)
{
  guint8 buffer[48];
  static const guint8 zero[48] = { 0 };

  memset (buffer, 0xa5, sizeof buffer);
  tlspyo_auth_wipe (buffer + 8, 32);
  g_assert_cmpmem (buffer + 8, 32, zero, 32);
  /* Only what was asked. */
  g_assert_cmpint (buffer[7], ==, 0xa5);
  g_assert_cmpint (buffer[40], ==, 0xa5);
  tlspyo_auth_wipe (NULL, 0);
}

static void
test_random (void)
{
  guint8 a[TLSPYO_AUTH_NONCE_SIZE], b[TLSPYO_AUTH_NONCE_SIZE];
  static const guint8 zero[TLSPYO_AUTH_NONCE_SIZE] = { 0 };

  tlspyo_auth_random (a, sizeof a);
  tlspyo_auth_random (b, sizeof b);
  g_assert_true (memcmp (a, b, sizeof a) != 0);
  g_assert_true (memcmp (a, zero, sizeof a) != 0);
}

static void
check_secret_key (TlspyoAuthSecret *secret,
                  const char       *password,
                  const guint8     *salt,
                  gsize             salt_len,
                  guint             iterations)
{
  g_autoptr(GError) error = NULL;
  guint8 key[TLSPYO_AUTH_KEY_SIZE], reference[32];

  memset (key, 0xaa, sizeof key);
  g_assert_true (tlspyo_auth_secret_get_key (secret, salt, salt_len, iterations, key, &error));
  g_assert_no_error (error);
  reference_pbkdf2 (password, salt, salt_len, iterations, reference);
  assert_bytes_equal (key, reference, sizeof key);
}

/* The cache must never hand out the key of another salt or iteration count,
 * whatever the order of requests and however many salts a hostile relay
 * makes us see. */
static void
test_secret_cache (void)
{
  g_autoptr(TlspyoAuthSecret) secret = tlspyo_auth_secret_new (TLSPYO_TEST_PASSWORD);
  g_autoptr(TlspyoAuthSecret) copy = NULL;
  guint8 salts[7][TLSPYO_AUTH_SALT_SIZE];

  for (guint i = 0; i < G_N_ELEMENTS (salts); i++)
    for (guint j = 0; j < TLSPYO_AUTH_SALT_SIZE; j++)
      salts[i][j] = (guint8) (i * 31 + j);

  /* First time, then from the cache. */
  check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[0], TLSPYO_AUTH_SALT_SIZE, 1000);
  check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[0], TLSPYO_AUTH_SALT_SIZE, 1000);

  /* Same salt, other iterations; a prefix of a cached salt. */
  check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[0], TLSPYO_AUTH_SALT_SIZE, 1001);
  check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[0], TLSPYO_AUTH_SALT_SIZE - 1, 1000);

  /* More salts than the cache holds, then the first ones again (evicted
   * and derived anew) interleaved with recent ones (still cached). */
  for (guint i = 0; i < G_N_ELEMENTS (salts); i++)
    check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[i], TLSPYO_AUTH_SALT_SIZE, 100 + i);
  for (guint round = 0; round < 2; round++)
    for (guint i = 0; i < G_N_ELEMENTS (salts); i++)
      {
        guint k = (i * 3) % G_N_ELEMENTS (salts);
        check_secret_key (secret, TLSPYO_TEST_PASSWORD, salts[k], TLSPYO_AUTH_SALT_SIZE, 100 + k);
      }

  /* A copy gives the same keys, cached or not. */
  copy = tlspyo_auth_secret_copy (secret);
  check_secret_key (copy, TLSPYO_TEST_PASSWORD, salts[6], TLSPYO_AUTH_SALT_SIZE, 106);
  check_secret_key (copy, TLSPYO_TEST_PASSWORD, salts[1], TLSPYO_AUTH_SALT_SIZE, 2000);
}

static void
test_secret_errors (void)
{
  g_autoptr(TlspyoAuthSecret) secret = tlspyo_auth_secret_new (TLSPYO_TEST_PASSWORD);
  g_autoptr(TlspyoAuthSecret) empty = tlspyo_auth_secret_new (NULL);
  g_autoptr(GError) error = NULL;
  guint8 long_salt[TLSPYO_AUTH_SALT_SIZE + 1] = { 0 };
  guint8 key[TLSPYO_AUTH_KEY_SIZE];

  /* A relay cannot make us copy a salt longer than the cache entry. */
  g_assert_false (tlspyo_auth_secret_get_key (secret, long_salt, sizeof long_salt, 1000,
                                              key, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_PROTOCOL);
  g_clear_error (&error);

  /* No password is the empty one, not a crash. */
  check_secret_key (empty, "", long_salt, TLSPYO_AUTH_SALT_SIZE, 10);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  g_test_add_func ("/auth/derive/known-answer", test_derive_known_answer);
  g_test_add_func ("/auth/derive/matches-reference", test_derive_matches_reference);
  g_test_add_func ("/auth/derive/depends-on-inputs", test_derive_depends_on_inputs);
  g_test_add_func ("/auth/proof/known-answer", test_proof_known_answer);
  g_test_add_func ("/auth/proof/binding", test_proof_binding);
  g_test_add_func ("/auth/equal", test_equal);
  g_test_add_func ("/auth/random", test_random);
  g_test_add_func ("/auth/wipe", test_wipe);
  g_test_add_func ("/auth/secret/cache", test_secret_cache);
  g_test_add_func ("/auth/secret/errors", test_secret_errors);
  return g_test_run ();
}
