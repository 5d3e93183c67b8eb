/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-credentials.h"
#include "tlspyo-error.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <glib/gstdio.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

/*
 * The relay owns a private key and a self-signed certificate; endpoints pin
 * that certificate with a GTlsFileDatabase holding nothing else, so trust is
 * exactly "is this the relay's certificate" and no public CA is involved.
 * Generation uses GnuTLS directly (GIO cannot create certificates); loading
 * goes through GIO so the result works with GTlsConnection.
 */

#define KEY_FILE_NAME "key.pem"
#define CERTIFICATE_FILE_NAME "certificate.pem"

#define DEFAULT_COMMON_NAME "default"
#define DEFAULT_DAYS 3650
#define SERIAL_SIZE 16
#define RSA_BITS 3072
#define SECONDS_PER_DAY ((gint64) 24 * 60 * 60)

/* Clocks of the relay and of its endpoints are never perfectly in sync; a
 * certificate that becomes valid only "now" would be refused by a peer whose
 * clock is a little behind. */
#define NOT_BEFORE_MARGIN_SECONDS ((gint64) 60 * 60)

/* RFC 5280 §4.1.2.5: 9999-12-31T23:59:59Z is the last encodable date. */
#define LAST_ENCODABLE_TIME G_GINT64_CONSTANT (253402300799)

G_DEFINE_AUTO_CLEANUP_FREE_FUNC (gnutls_x509_crt_t, gnutls_x509_crt_deinit, NULL)
G_DEFINE_AUTO_CLEANUP_FREE_FUNC (gnutls_x509_privkey_t, gnutls_x509_privkey_deinit, NULL)

/* Every datum here may hold private key material, so wipe before freeing. */
static void
tlspyo_datum_clear (gnutls_datum_t *datum)
{
  if (datum->data != NULL)
    {
      gnutls_memset (datum->data, 0, datum->size);
      gnutls_free (datum->data);
    }
  datum->data = NULL;
  datum->size = 0;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (gnutls_datum_t, tlspyo_datum_clear)

static gboolean
set_gnutls_error (GError     **error,
                  int          ret,
                  const char  *what)
{
  g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
               "Could not %s: %s", what, gnutls_strerror (ret));
  return FALSE;
}

/**
 * tlspyo_credentials_get_default_dir:
 *
 * Gets the folder where the relay's `key.pem` and `certificate.pem` live
 * when no folder is given: `tlspyo/credentials` under the user data
 * directory (see g_get_user_data_dir()), as in tlspyo.
 *
 * The folder is not created.
 *
 * Returns: (transfer full) (type filename): the default credentials folder
 *
 * Since: 0.1
 */
char *
tlspyo_credentials_get_default_dir (void)
{
  return g_build_filename (g_get_user_data_dir (), "tlspyo", "credentials", NULL);
}

/**
 * tlspyo_credentials_generate:
 * @directory: (nullable) (type filename): the folder to write `key.pem` and
 *   `certificate.pem` into, or %NULL for
 *   [func@Tlspyo.credentials_get_default_dir]
 * @common_name: (nullable): the host name endpoints will expect from the
 *   relay, or %NULL for `"default"`
 * @error: return location for a #GError, or %NULL
 *
 * Generates an ECDSA P-256 key and a self-signed certificate valid for ten
 * years, and writes them into @directory. Existing files are not replaced.
 *
 * This is [func@Tlspyo.credentials_generate_full] with
 * %TLSPYO_KEY_TYPE_ECDSA, 0 days and %TLSPYO_CREDENTIALS_NONE.
 *
 * Returns: %TRUE on success, %FALSE with @error set otherwise
 *
 * Since: 0.1
 */
gboolean
tlspyo_credentials_generate (const char  *directory,
                             const char  *common_name,
                             GError     **error)
{
  return tlspyo_credentials_generate_full (directory, common_name,
                                           TLSPYO_KEY_TYPE_ECDSA, 0,
                                           TLSPYO_CREDENTIALS_NONE, error);
}

static gboolean
generate_key (TlspyoKeyType           key_type,
              gnutls_x509_privkey_t  *out_key,
              GError                **error)
{
  g_auto(gnutls_x509_privkey_t) key = NULL;
  int ret;

  ret = gnutls_x509_privkey_init (&key);
  if (ret < 0)
    return set_gnutls_error (error, ret, "initialize the private key");

  if (key_type == TLSPYO_KEY_TYPE_RSA)
    ret = gnutls_x509_privkey_generate2 (key, GNUTLS_PK_RSA, RSA_BITS, 0, NULL, 0);
  else
    ret = gnutls_x509_privkey_generate2 (key, GNUTLS_PK_ECDSA,
                                         GNUTLS_CURVE_TO_BITS (GNUTLS_ECC_CURVE_SECP256R1),
                                         0, NULL, 0);
  if (ret < 0)
    return set_gnutls_error (error, ret,
                             key_type == TLSPYO_KEY_TYPE_RSA
                             ? "generate an RSA private key"
                             : "generate an ECDSA P-256 private key");

  ret = gnutls_x509_privkey_verify_params (key);
  if (ret < 0)
    return set_gnutls_error (error, ret, "verify the generated private key");

  *out_key = g_steal_pointer (&key);
  return TRUE;
}

static gboolean
build_certificate (gnutls_x509_privkey_t   key,
                   TlspyoKeyType           key_type,
                   const char             *common_name,
                   gint64                  not_before,
                   gint64                  not_after,
                   gnutls_datum_t         *out_pem,
                   GError                **error)
{
  g_auto(gnutls_x509_crt_t) crt = NULL;
  g_autoptr(GInetAddress) ip_address = NULL;
  guint8 serial[SERIAL_SIZE];
  guint8 key_id[64];
  size_t key_id_size = sizeof key_id;
  unsigned int key_usage;
  int ret;

  ret = gnutls_x509_crt_init (&crt);
  if (ret < 0)
    return set_gnutls_error (error, ret, "initialize the certificate");

  ret = gnutls_x509_crt_set_version (crt, 3);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate version");

  ret = gnutls_rnd (GNUTLS_RND_NONCE, serial, sizeof serial);
  if (ret < 0)
    return set_gnutls_error (error, ret, "generate a random serial number");
  /* DER integers are signed: a clear top bit keeps the serial positive, as
   * RFC 5280 requires. Setting the next bit keeps it non-zero and exactly
   * SERIAL_SIZE octets long, so DER has no leading zero octet to strip. */
  serial[0] = (serial[0] & 0x7f) | 0x40;
  ret = gnutls_x509_crt_set_serial (crt, serial, sizeof serial);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate serial number");

  ret = gnutls_x509_crt_set_dn_by_oid (crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                       common_name, strlen (common_name));
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate common name");

  /* Hostname checks look at the subject alternative names only; the
   * common name is there for humans. */
  ret = gnutls_x509_crt_set_subject_alt_name (crt, GNUTLS_SAN_DNSNAME,
                                              common_name, strlen (common_name),
                                              GNUTLS_FSAN_SET);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate DNS name");

  /* An endpoint connecting to an IP literal checks IP address SANs, never
   * DNS ones, so a relay named by its address needs both. */
  ip_address = g_inet_address_new_from_string (common_name);
  if (ip_address != NULL)
    {
      ret = gnutls_x509_crt_set_subject_alt_name (crt, GNUTLS_SAN_IPADDRESS,
                                                  g_inet_address_to_bytes (ip_address),
                                                  g_inet_address_get_native_size (ip_address),
                                                  GNUTLS_FSAN_APPEND);
      if (ret < 0)
        return set_gnutls_error (error, ret, "set the certificate IP address");
    }

  ret = gnutls_x509_crt_set_activation_time (crt, (time_t) not_before);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate activation time");

  ret = gnutls_x509_crt_set_expiration_time (crt, (time_t) not_after);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate expiration time");

  /* The certificate is its own trust anchor in the endpoints' database,
   * and GnuTLS only accepts a CA certificate as an anchor. */
  ret = gnutls_x509_crt_set_basic_constraints (crt, 1, -1);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate basic constraints");

  key_usage = GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_CERT_SIGN;
  /* Only RSA can encrypt a key exchange (TLS 1.2 RSA key transport). */
  if (key_type == TLSPYO_KEY_TYPE_RSA)
    key_usage |= GNUTLS_KEY_KEY_ENCIPHERMENT;
  ret = gnutls_x509_crt_set_key_usage (crt, key_usage);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate key usage");

  ret = gnutls_x509_crt_set_key_purpose_oid (crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
  if (ret >= 0)
    ret = gnutls_x509_crt_set_key_purpose_oid (crt, GNUTLS_KP_TLS_WWW_CLIENT, 0);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate extended key usage");

  ret = gnutls_x509_crt_set_key (crt, key);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate public key");

  ret = gnutls_x509_crt_get_key_id (crt, GNUTLS_KEYID_USE_SHA1, key_id, &key_id_size);
  if (ret < 0)
    return set_gnutls_error (error, ret, "compute the certificate key identifier");
  ret = gnutls_x509_crt_set_subject_key_id (crt, key_id, key_id_size);
  if (ret < 0)
    return set_gnutls_error (error, ret, "set the certificate subject key identifier");

  /* Signing with itself as issuer also copies the subject into the issuer. */
  ret = gnutls_x509_crt_sign2 (crt, crt, key, GNUTLS_DIG_SHA256, 0);
  if (ret < 0)
    return set_gnutls_error (error, ret, "sign the certificate");

  ret = gnutls_x509_crt_export2 (crt, GNUTLS_X509_FMT_PEM, out_pem);
  if (ret < 0)
    return set_gnutls_error (error, ret, "export the certificate as PEM");

  return TRUE;
}

static gboolean
path_exists (const char *path)
{
  /* A dangling symlink counts: writing would replace it all the same. */
  return g_file_test (path, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK);
}

/**
 * tlspyo_credentials_generate_full:
 * @directory: (nullable) (type filename): the folder to write `key.pem` and
 *   `certificate.pem` into, created if needed, or %NULL for
 *   [func@Tlspyo.credentials_get_default_dir]
 * @common_name: (nullable): the host name endpoints will expect from the
 *   relay, or %NULL for `"default"`. It becomes the certificate's subject
 *   common name and DNS subject alternative name (and IP address one when it
 *   is an IP address).
 * @key_type: the kind of private key to generate
 * @days: how many days the certificate stays valid, or 0 for 3650 (ten years)
 * @flags: flags, such as %TLSPYO_CREDENTIALS_OVERWRITE
 * @error: return location for a #GError, or %NULL
 *
 * Generates the relay's TLS credentials: a private key written to `key.pem`
 * (PKCS#8, mode 0600) and a self-signed X.509 certificate written to
 * `certificate.pem` (mode 0644). The relay loads both with
 * [func@Tlspyo.credentials_load_certificate]; endpoints need a copy of
 * `certificate.pem` only, and trust exactly that certificate.
 *
 * If either file exists already and @flags lacks
 * %TLSPYO_CREDENTIALS_OVERWRITE, nothing is generated and
 * %TLSPYO_ERROR_CREDENTIALS is returned. Files are replaced atomically, and
 * `key.pem` is only written once the certificate was generated.
 *
 * Returns: %TRUE on success, %FALSE with @error set otherwise
 *
 * Since: 0.1
 */
gboolean
tlspyo_credentials_generate_full (const char              *directory,
                                  const char              *common_name,
                                  TlspyoKeyType            key_type,
                                  guint                    days,
                                  TlspyoCredentialsFlags   flags,
                                  GError                 **error)
{
  g_autofree char *default_dir = NULL;
  g_autofree char *key_path = NULL;
  g_autofree char *cert_path = NULL;
  g_auto(gnutls_x509_privkey_t) key = NULL;
  g_auto(gnutls_datum_t) key_pem = { NULL, 0 };
  g_auto(gnutls_datum_t) cert_pem = { NULL, 0 };
  g_autoptr(GError) local_error = NULL;
  gint64 now, not_before, not_after;
  int ret;

  g_return_val_if_fail (key_type == TLSPYO_KEY_TYPE_ECDSA ||
                        key_type == TLSPYO_KEY_TYPE_RSA, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (directory == NULL)
    directory = default_dir = tlspyo_credentials_get_default_dir ();
  if (common_name == NULL)
    common_name = DEFAULT_COMMON_NAME;
  if (days == 0)
    days = DEFAULT_DAYS;

  if (*common_name == '\0')
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "The certificate's common name must not be empty");
      return FALSE;
    }

  now = g_get_real_time () / G_USEC_PER_SEC;
  not_before = now - NOT_BEFORE_MARGIN_SECONDS;
  not_after = now + (gint64) days * SECONDS_PER_DAY;
  /* Check before anything is generated, and catch a 32-bit time_t. */
  if (not_after > LAST_ENCODABLE_TIME || (gint64) (time_t) not_after != not_after)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                   "A certificate valid for %u days would expire after the "
                   "latest date this system can encode", days);
      return FALSE;
    }

  if (g_mkdir_with_parents (directory, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "Could not create the credentials folder “%s”: %s",
                   directory, g_strerror (saved_errno));
      return FALSE;
    }

  key_path = g_build_filename (directory, KEY_FILE_NAME, NULL);
  cert_path = g_build_filename (directory, CERTIFICATE_FILE_NAME, NULL);

  if (!(flags & TLSPYO_CREDENTIALS_OVERWRITE))
    {
      const char *existing = NULL;

      if (path_exists (key_path))
        existing = key_path;
      else if (path_exists (cert_path))
        existing = cert_path;

      if (existing != NULL)
        {
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                       "“%s” exists already; pass TLSPYO_CREDENTIALS_OVERWRITE "
                       "(--force on the command line) to replace it. Endpoints "
                       "will then need the new certificate.pem",
                       existing);
          return FALSE;
        }
    }

  if (!generate_key (key_type, &key, error))
    return FALSE;

  if (!build_certificate (key, key_type, common_name, not_before, not_after,
                          &cert_pem, error))
    return FALSE;

  ret = gnutls_x509_privkey_export2_pkcs8 (key, GNUTLS_X509_FMT_PEM, NULL,
                                           GNUTLS_PKCS_PLAIN, &key_pem);
  if (ret < 0)
    return set_gnutls_error (error, ret, "export the private key as PKCS#8 PEM");

  /* The temporary file is created with the final mode, so the key is never
   * readable by others, not even for a moment. */
  if (!g_file_set_contents_full (key_path, (const char *) key_pem.data,
                                 key_pem.size, G_FILE_SET_CONTENTS_CONSISTENT,
                                 0600, &local_error))
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "Could not write the private key: %s", local_error->message);
      return FALSE;
    }

  if (!g_file_set_contents_full (cert_path, (const char *) cert_pem.data,
                                 cert_pem.size, G_FILE_SET_CONTENTS_CONSISTENT,
                                 0644, &local_error))
    {
      /* A new key next to an old certificate would fail only later, at
       * every handshake; a missing key is reported clearly on load. */
      g_unlink (key_path);
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "Could not write the certificate (“%s” was removed again): %s",
                   key_path, local_error->message);
      return FALSE;
    }

  return TRUE;
}

/**
 * tlspyo_credentials_get_fingerprint:
 * @certificate: a certificate
 *
 * Computes the SHA-256 fingerprint of @certificate's DER encoding, in the
 * form `openssl x509 -noout -fingerprint -sha256` prints it: 32 uppercase
 * hexadecimal pairs separated by colons. Compare it on both machines to
 * check that an endpoint has the relay's certificate.
 *
 * Returns: (transfer full): the fingerprint
 *
 * Since: 0.1
 */
char *
tlspyo_credentials_get_fingerprint (GTlsCertificate *certificate)
{
  g_autoptr(GByteArray) der = NULL;
  g_autoptr(GChecksum) checksum = NULL;
  guint8 digest[32];
  gsize digest_len = sizeof digest;
  GString *fingerprint;

  g_return_val_if_fail (G_IS_TLS_CERTIFICATE (certificate), NULL);

  g_object_get (certificate, "certificate", &der, NULL);
  g_return_val_if_fail (der != NULL, NULL);

  checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (checksum, der->data, der->len);
  g_checksum_get_digest (checksum, digest, &digest_len);

  fingerprint = g_string_sized_new (digest_len * 3);
  for (gsize i = 0; i < digest_len; i++)
    g_string_append_printf (fingerprint, i == 0 ? "%02X" : ":%02X", digest[i]);

  return g_string_free (fingerprint, FALSE);
}

/* A mismatched pair loads fine in GIO and only fails at each handshake,
 * with a message that does not name the files; catch it here instead. */
static gboolean
check_key_matches (GTlsCertificate  *certificate,
                   const char       *directory,
                   GError          **error)
{
  g_autoptr(GByteArray) cert_der = NULL;
  GByteArray *key_der = NULL;
  g_auto(gnutls_x509_crt_t) crt = NULL;
  g_auto(gnutls_x509_privkey_t) key = NULL;
  gnutls_datum_t datum;
  guint8 cert_id[64], key_id[64];
  size_t cert_id_size = sizeof cert_id, key_id_size = sizeof key_id;
  int ret;

  g_object_get (certificate,
                "certificate", &cert_der,
                "private-key", &key_der,
                NULL);
  /* Without the key's bytes (a PKCS #11 key, say) there is nothing to compare. */
  if (cert_der == NULL || key_der == NULL)
    {
      if (key_der != NULL)
        g_byte_array_unref (key_der);
      return TRUE;
    }

  ret = gnutls_x509_crt_init (&crt);
  if (ret >= 0)
    {
      datum.data = cert_der->data;
      datum.size = cert_der->len;
      ret = gnutls_x509_crt_import (crt, &datum, GNUTLS_X509_FMT_DER);
    }
  if (ret >= 0)
    ret = gnutls_x509_crt_get_key_id (crt, GNUTLS_KEYID_USE_SHA256,
                                      cert_id, &cert_id_size);
  if (ret >= 0)
    ret = gnutls_x509_privkey_init (&key);
  if (ret >= 0)
    {
      datum.data = key_der->data;
      datum.size = key_der->len;
      ret = gnutls_x509_privkey_import2 (key, &datum, GNUTLS_X509_FMT_DER, NULL, 0);
    }
  if (ret >= 0)
    ret = gnutls_x509_privkey_get_key_id (key, GNUTLS_KEYID_USE_SHA256,
                                          key_id, &key_id_size);

  gnutls_memset (key_der->data, 0, key_der->len);
  g_byte_array_unref (key_der);

  if (ret < 0)
    return set_gnutls_error (error, ret,
                             "check that " KEY_FILE_NAME " matches "
                             CERTIFICATE_FILE_NAME);

  if (cert_id_size != key_id_size || memcmp (cert_id, key_id, key_id_size) != 0)
    {
      g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                   "The private key in “%s” does not belong to the certificate "
                   "next to it: restore the matching key, or replace both with "
                   "`tlspyo credentials generate --force` (endpoints will then "
                   "need the new certificate.pem)", directory);
      return FALSE;
    }

  return TRUE;
}

/**
 * tlspyo_credentials_load_certificate:
 * @directory: (nullable) (type filename): the folder holding
 *   `certificate.pem` (and `key.pem`), or %NULL for
 *   [func@Tlspyo.credentials_get_default_dir]. A relative path is taken
 *   relative to the current directory.
 * @with_key: %TRUE to load `key.pem` as well, as the relay does; %FALSE to
 *   load the certificate alone, as an endpoint pinning the relay's
 *   certificate does
 * @error: return location for a #GError, or %NULL
 *
 * Loads credentials written by [func@Tlspyo.credentials_generate_full] (or
 * a copy of the relay's `certificate.pem`).
 *
 * Fails with %TLSPYO_ERROR_CREDENTIALS when GIO has no TLS backend (the
 * glib-networking package is not installed), when a file is missing or
 * cannot be parsed, or when `key.pem` does not belong to `certificate.pem`;
 * the message says which file and what to do.
 *
 * Returns: (transfer full): the certificate, with its private key if
 *   @with_key is %TRUE, or %NULL with @error set
 *
 * Since: 0.1
 */
GTlsCertificate *
tlspyo_credentials_load_certificate (const char  *directory,
                                     gboolean     with_key,
                                     GError     **error)
{
  g_autofree char *default_dir = NULL;
  g_autofree char *abs_dir = NULL;
  g_autofree char *key_path = NULL;
  g_autofree char *cert_path = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) local_error = NULL;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_tls_backend_supports_tls (g_tls_backend_get_default ()))
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                           "TLS support is not available: install the "
                           "glib-networking package (or use TLSPYO_SECURITY_NONE)");
      return NULL;
    }

  if (directory == NULL)
    directory = default_dir = tlspyo_credentials_get_default_dir ();
  /* GTlsFileDatabase and error messages need a path that does not depend
   * on the current directory. */
  abs_dir = g_canonicalize_filename (directory, NULL);
  key_path = g_build_filename (abs_dir, KEY_FILE_NAME, NULL);
  cert_path = g_build_filename (abs_dir, CERTIFICATE_FILE_NAME, NULL);

  if (with_key)
    certificate = g_tls_certificate_new_from_files (cert_path, key_path, &local_error);
  else
    certificate = g_tls_certificate_new_from_file (cert_path, &local_error);

  if (certificate == NULL)
    {
      const char *missing = NULL;
      const char *bad_file = cert_path;

      /* Checked only on failure: the common case costs no extra stat. */
      if (!g_file_test (cert_path, G_FILE_TEST_EXISTS))
        missing = cert_path;
      else if (with_key && !g_file_test (key_path, G_FILE_TEST_EXISTS))
        missing = key_path;

      if (missing != NULL && with_key)
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                     "“%s” does not exist: run `tlspyo credentials generate` "
                     "(or tlspyo_credentials_generate()) to create key.pem and "
                     "certificate.pem in “%s”", missing, abs_dir);
      else if (missing != NULL)
        g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                     "“%s” does not exist: copy the relay's certificate.pem "
                     "there (tlspyo credentials fetch), or on the relay's "
                     "machine run `tlspyo credentials generate`", missing);
      else
        {
          /* GIO's message does not say which of the two files it choked on. */
          if (with_key)
            {
              g_autoptr(GTlsCertificate) cert_only = NULL;

              cert_only = g_tls_certificate_new_from_file (cert_path, NULL);
              if (cert_only != NULL)
                bad_file = key_path;
            }
          g_set_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS,
                       "Could not load “%s”: %s", bad_file, local_error->message);
        }
      return NULL;
    }

  if (with_key && !check_key_matches (certificate, abs_dir, error))
    return NULL;

  return g_steal_pointer (&certificate);
}
