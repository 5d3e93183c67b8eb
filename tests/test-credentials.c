/* SPDX-License-Identifier: MIT */
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"

#define SECONDS_PER_DAY ((gint64) 24 * 60 * 60)
/* Generation and the assertions are not at the same instant. */
#define TIME_TOLERANCE_SECONDS 300

/* ---- helpers ---------------------------------------------------------- */

static char *
make_tmp_dir (void)
{
  g_autoptr(GError) error = NULL;
  char *dir;

  dir = g_dir_make_tmp ("tlspyo-credentials-XXXXXX", &error);
  g_assert_no_error (error);
  g_assert_nonnull (dir);
  return dir;
}

/* The temporary folders hold files and at most one level of folders. */
static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  dir = g_dir_open (path, 0, NULL);
  if (dir != NULL)
    {
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);

          if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
              !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
            remove_tree (child);
          else
            g_assert_cmpint (g_unlink (child), ==, 0);
        }
    }
  g_assert_cmpint (g_rmdir (path), ==, 0);
}

static gboolean
require_tls (void)
{
  if (!g_tls_backend_supports_tls (g_tls_backend_get_default ()))
    {
      g_test_skip ("No GIO TLS backend (glib-networking) is installed");
      return FALSE;
    }
  return TRUE;
}

static char *
read_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

static void
assert_mode (const char *path,
             guint       mode)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, mode);
}

static gboolean
ptr_array_has_bytes_string (GPtrArray  *array,
                            const char *string)
{
  for (guint i = 0; array != NULL && i < array->len; i++)
    {
      gsize size;
      const char *data = g_bytes_get_data (array->pdata[i], &size);

      if (size == strlen (string) && memcmp (data, string, size) == 0)
        return TRUE;
    }
  return FALSE;
}

static void
assert_time_about (GDateTime *time,
                   gint64     expected_unix)
{
  gint64 actual;

  g_assert_nonnull (time);
  actual = g_date_time_to_unix (time);
  g_assert_cmpint (actual, >=, expected_unix - TIME_TOLERANCE_SECONDS);
  g_assert_cmpint (actual, <=, expected_unix + TIME_TOLERANCE_SECONDS);
}

/* Checks everything the relay and its endpoints rely on in a freshly
 * generated pair in @dir. */
static void
check_generated (const char *dir,
                 const char *common_name,
                 guint       days)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) relay_cert = NULL;
  g_autoptr(GTlsCertificate) endpoint_cert = NULL;
  g_autoptr(GPtrArray) dns_names = NULL;
  g_autoptr(GDateTime) not_before = NULL;
  g_autoptr(GDateTime) not_after = NULL;
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *cert_path = g_build_filename (dir, "certificate.pem", NULL);
  g_autofree char *key_pem = NULL;
  g_autofree char *subject = NULL;
  g_autofree char *expected_subject = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_assert_true (g_file_test (key_path, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_test (cert_path, G_FILE_TEST_IS_REGULAR));
  assert_mode (key_path, 0600);
  /* main() sets the umask to 022. */
  assert_mode (cert_path, 0644);

  key_pem = read_file (key_path);
  g_assert_true (g_str_has_prefix (key_pem, "-----BEGIN PRIVATE KEY-----"));

  if (!require_tls ())
    return;

  relay_cert = tlspyo_credentials_load_certificate (dir, TRUE, &error);
  g_assert_no_error (error);
  g_assert_true (G_IS_TLS_CERTIFICATE (relay_cert));

  endpoint_cert = tlspyo_credentials_load_certificate (dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (G_IS_TLS_CERTIFICATE (endpoint_cert));
  g_assert_true (g_tls_certificate_is_same (relay_cert, endpoint_cert));

  dns_names = g_tls_certificate_get_dns_names (endpoint_cert);
  g_assert_nonnull (dns_names);
  g_assert_true (ptr_array_has_bytes_string (dns_names, common_name));

  subject = g_tls_certificate_get_subject_name (endpoint_cert);
  expected_subject = g_strconcat ("CN=", common_name, NULL);
  g_assert_cmpstr (subject, ==, expected_subject);

  not_before = g_tls_certificate_get_not_valid_before (endpoint_cert);
  assert_time_about (not_before, now - 60 * 60);
  not_after = g_tls_certificate_get_not_valid_after (endpoint_cert);
  assert_time_about (not_after, now + days * SECONDS_PER_DAY);
}

/* ---- tests ------------------------------------------------------------ */

static void
test_default_dir (void)
{
  g_autofree char *dir = tlspyo_credentials_get_default_dir ();
  g_autofree char *expected = g_build_filename (g_get_user_data_dir (),
                                                "tlspyo", "credentials", NULL);

  g_assert_cmpstr (dir, ==, expected);
  g_assert_true (g_path_is_absolute (dir));
}

static void
test_generate_ecdsa (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();

  g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_no_error (error);
  check_generated (dir, "default", 3650);

  remove_tree (dir);
}

static void
test_generate_creates_folder (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *nested = g_build_filename (dir, "a", "b", NULL);

  g_assert_true (tlspyo_credentials_generate (nested, NULL, &error));
  g_assert_no_error (error);
  assert_mode (nested, 0700);
  check_generated (nested, "default", 3650);

  remove_tree (dir);
}

static void
test_generate_custom (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();

  g_assert_true (tlspyo_credentials_generate_full (dir, "relay.example.org",
                                                   TLSPYO_KEY_TYPE_ECDSA, 30,
                                                   TLSPYO_CREDENTIALS_NONE,
                                                   &error));
  g_assert_no_error (error);
  check_generated (dir, "relay.example.org", 30);

  remove_tree (dir);
}

static void
test_generate_ip_address (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  g_autoptr(GPtrArray) addresses = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *address = NULL;

  g_assert_true (tlspyo_credentials_generate (dir, "127.0.0.1", &error));
  g_assert_no_error (error);
  check_generated (dir, "127.0.0.1", 3650);

  if (require_tls ())
    {
      cert = tlspyo_credentials_load_certificate (dir, FALSE, &error);
      g_assert_no_error (error);
      addresses = g_tls_certificate_get_ip_addresses (cert);
      g_assert_nonnull (addresses);
      g_assert_cmpuint (addresses->len, ==, 1);
      address = g_inet_address_to_string (addresses->pdata[0]);
      g_assert_cmpstr (address, ==, "127.0.0.1");
    }

  remove_tree (dir);
}

static void
test_generate_rsa (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();

  g_assert_true (tlspyo_credentials_generate_full (dir, NULL, TLSPYO_KEY_TYPE_RSA,
                                                   0, TLSPYO_CREDENTIALS_NONE,
                                                   &error));
  g_assert_no_error (error);
  check_generated (dir, "default", 3650);

  remove_tree (dir);
}

static void
test_generate_invalid (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);

  g_assert_false (tlspyo_credentials_generate (dir, "", &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* About 11.7 million years. */
  g_assert_false (tlspyo_credentials_generate_full (dir, NULL,
                                                    TLSPYO_KEY_TYPE_ECDSA,
                                                    G_MAXUINT,
                                                    TLSPYO_CREDENTIALS_NONE,
                                                    &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);

  g_assert_false (g_file_test (key_path, G_FILE_TEST_EXISTS));

  remove_tree (dir);
}

static void
test_generate_not_a_folder (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *file = g_build_filename (dir, "file", NULL);

  g_assert_true (g_file_set_contents (file, "", -1, &error));
  g_assert_no_error (error);

  g_assert_false (tlspyo_credentials_generate (file, NULL, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (error->message, file));

  remove_tree (dir);
}

/* When the certificate cannot be written, the new key must not stay behind
 * next to whatever certificate.pem is there. */
static void
test_generate_no_half_pair (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *cert_path = g_build_filename (dir, "certificate.pem", NULL);

  /* A folder in the way makes the final rename of certificate.pem fail. */
  g_assert_cmpint (g_mkdir (cert_path, 0700), ==, 0);

  g_assert_false (tlspyo_credentials_generate_full (dir, NULL, TLSPYO_KEY_TYPE_ECDSA,
                                                    0, TLSPYO_CREDENTIALS_OVERWRITE,
                                                    &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  g_assert_false (g_file_test (key_path, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (cert_path, G_FILE_TEST_IS_DIR));

  remove_tree (dir);
}

static void
test_generate_refuse_overwrite (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *cert_path = g_build_filename (dir, "certificate.pem", NULL);
  g_autofree char *key_before = NULL;
  g_autofree char *cert_before = NULL;
  g_autofree char *key_after = NULL;
  g_autofree char *cert_after = NULL;

  g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_no_error (error);
  key_before = read_file (key_path);
  cert_before = read_file (cert_path);

  g_assert_false (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (error->message, key_path));
  g_assert_nonnull (strstr (error->message, "TLSPYO_CREDENTIALS_OVERWRITE"));
  g_assert_nonnull (strstr (error->message, "--force"));
  g_clear_error (&error);

  key_after = read_file (key_path);
  cert_after = read_file (cert_path);
  g_assert_cmpstr (key_after, ==, key_before);
  g_assert_cmpstr (cert_after, ==, cert_before);

  /* Either file alone is enough to refuse. */
  g_assert_cmpint (g_unlink (key_path), ==, 0);
  g_assert_false (tlspyo_credentials_generate_full (dir, NULL, TLSPYO_KEY_TYPE_RSA,
                                                    0, TLSPYO_CREDENTIALS_NONE,
                                                    &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  g_assert_nonnull (strstr (error->message, cert_path));
  g_assert_false (g_file_test (key_path, G_FILE_TEST_EXISTS));
  g_free (cert_after);
  cert_after = read_file (cert_path);
  g_assert_cmpstr (cert_after, ==, cert_before);

  remove_tree (dir);
}

static void
test_generate_overwrite (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) old_cert = NULL;
  g_autoptr(GTlsCertificate) new_cert = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *old_fingerprint = NULL;
  g_autofree char *new_fingerprint = NULL;

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_no_error (error);
  old_cert = tlspyo_credentials_load_certificate (dir, TRUE, &error);
  g_assert_no_error (error);
  old_fingerprint = tlspyo_credentials_get_fingerprint (old_cert);

  g_assert_true (tlspyo_credentials_generate_full (dir, "replaced",
                                                   TLSPYO_KEY_TYPE_ECDSA, 0,
                                                   TLSPYO_CREDENTIALS_OVERWRITE,
                                                   &error));
  g_assert_no_error (error);
  check_generated (dir, "replaced", 3650);

  /* Loading with the key also proves the new key matches the new certificate. */
  new_cert = tlspyo_credentials_load_certificate (dir, TRUE, &error);
  g_assert_no_error (error);
  new_fingerprint = tlspyo_credentials_get_fingerprint (new_cert);
  g_assert_cmpstr (new_fingerprint, !=, old_fingerprint);

  remove_tree (dir);
}

static void
test_generate_null_directory (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  g_autofree char *dir = tlspyo_credentials_get_default_dir ();

  g_assert_false (g_file_test (dir, G_FILE_TEST_EXISTS));
  g_assert_true (tlspyo_credentials_generate (NULL, NULL, &error));
  g_assert_no_error (error);
  check_generated (dir, "default", 3650);

  if (require_tls ())
    {
      cert = tlspyo_credentials_load_certificate (NULL, TRUE, &error);
      g_assert_no_error (error);
      g_assert_nonnull (cert);
    }
  /* The isolated data folder is removed by GTest. */
}

static void
test_fingerprint (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  g_autoptr(GTlsCertificate) cert_again = NULL;
  g_autoptr(GByteArray) der = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *fingerprint = NULL;
  g_autofree char *fingerprint_again = NULL;
  g_autofree char *expected = NULL;
  g_autofree char *compact = NULL;
  g_auto(GStrv) pairs = NULL;

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_no_error (error);
  cert = tlspyo_credentials_load_certificate (dir, TRUE, &error);
  g_assert_no_error (error);

  fingerprint = tlspyo_credentials_get_fingerprint (cert);
  g_assert_nonnull (fingerprint);
  g_assert_cmpuint (strlen (fingerprint), ==, 95);
  pairs = g_strsplit (fingerprint, ":", -1);
  g_assert_cmpuint (g_strv_length (pairs), ==, 32);
  for (guint i = 0; pairs[i] != NULL; i++)
    {
      g_assert_cmpuint (strlen (pairs[i]), ==, 2);
      for (guint j = 0; j < 2; j++)
        {
          g_assert_true (g_ascii_isxdigit (pairs[i][j]));
          g_assert_false (g_ascii_islower (pairs[i][j]));
        }
    }

  /* Stable for the same file, with or without the key. */
  cert_again = tlspyo_credentials_load_certificate (dir, FALSE, &error);
  g_assert_no_error (error);
  fingerprint_again = tlspyo_credentials_get_fingerprint (cert_again);
  g_assert_cmpstr (fingerprint_again, ==, fingerprint);

  g_object_get (cert, "certificate", &der, NULL);
  g_assert_nonnull (der);
  expected = g_compute_checksum_for_data (G_CHECKSUM_SHA256, der->data, der->len);
  compact = g_strjoinv ("", pairs);
  {
    g_autofree char *lower = g_ascii_strdown (compact, -1);
    g_assert_cmpstr (lower, ==, expected);
  }

  remove_tree (dir);
}

static void
test_fingerprint_null (void)
{
  if (g_test_subprocess ())
    {
      char *fingerprint = tlspyo_credentials_get_fingerprint (NULL);

      g_assert_null (fingerprint);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_stderr ("*CRITICAL*tlspyo_credentials_get_fingerprint*");
}

/* Loading from @dir fails with a CREDENTIALS error whose message names
 * every string of the NULL-terminated list that follows. */
static void
assert_load_fails (const char *dir,
                   gboolean    with_key,
                   ...) G_GNUC_NULL_TERMINATED;

static void
assert_load_fails (const char *dir,
                   gboolean    with_key,
                   ...)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  const char *needle;
  va_list args;

  cert = tlspyo_credentials_load_certificate (dir, with_key, &error);
  g_assert_null (cert);
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  va_start (args, with_key);
  while ((needle = va_arg (args, const char *)) != NULL)
    g_assert_nonnull (strstr (error->message, needle));
  va_end (args);
}

static void
test_load_missing_folder (void)
{
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *missing = g_build_filename (dir, "nowhere", NULL);

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  assert_load_fails (missing, TRUE, missing, "tlspyo credentials generate", NULL);

  assert_load_fails (missing, FALSE,
                     missing, "certificate.pem", "tlspyo credentials fetch",
                     "tlspyo credentials generate", NULL);

  remove_tree (dir);
}

static void
test_load_missing_file (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *cert_path = g_build_filename (dir, "certificate.pem", NULL);

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
  g_assert_no_error (error);

  /* An endpoint needs only the certificate. */
  g_assert_cmpint (g_unlink (key_path), ==, 0);
  cert = tlspyo_credentials_load_certificate (dir, FALSE, &error);
  g_assert_no_error (error);
  g_clear_object (&cert);

  assert_load_fails (dir, TRUE, key_path, "tlspyo credentials generate", NULL);

  g_assert_cmpint (g_unlink (cert_path), ==, 0);
  assert_load_fails (dir, FALSE, cert_path, "tlspyo credentials generate", NULL);

  remove_tree (dir);
}

static void
test_load_garbage (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *key_path = g_build_filename (dir, "key.pem", NULL);
  g_autofree char *cert_path = g_build_filename (dir, "certificate.pem", NULL);

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (g_file_set_contents (cert_path, "this is not a certificate\n", -1, &error));
  g_assert_no_error (error);

  assert_load_fails (dir, FALSE, cert_path, NULL);

  /* A good certificate with a garbage key: the key is the file to blame. */
  g_assert_true (tlspyo_credentials_generate_full (dir, NULL, TLSPYO_KEY_TYPE_ECDSA,
                                                   0, TLSPYO_CREDENTIALS_OVERWRITE,
                                                   &error));
  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (key_path, "garbage\n", -1, &error));
  g_assert_no_error (error);

  assert_load_fails (dir, TRUE, key_path, NULL);

  remove_tree (dir);
}

static void
test_load_mismatch (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir_a = make_tmp_dir ();
  g_autofree char *dir_b = make_tmp_dir ();
  g_autofree char *key_a = g_build_filename (dir_a, "key.pem", NULL);
  g_autofree char *key_b = g_build_filename (dir_b, "key.pem", NULL);
  g_autofree char *contents = NULL;

  if (!require_tls ())
    {
      remove_tree (dir_a);
      remove_tree (dir_b);
      return;
    }

  g_assert_true (tlspyo_credentials_generate (dir_a, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (tlspyo_credentials_generate (dir_b, NULL, &error));
  g_assert_no_error (error);

  contents = read_file (key_b);
  g_assert_true (g_file_set_contents (key_a, contents, -1, &error));
  g_assert_no_error (error);

  assert_load_fails (dir_a, TRUE, dir_a, "does not belong", NULL);

  remove_tree (dir_a);
  remove_tree (dir_b);
}

static void
test_load_no_tls_backend (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GTlsCertificate) cert = NULL;
      g_autofree char *dir = make_tmp_dir ();

      /* Nothing in this process has asked for the TLS backend yet. */
      g_setenv ("GIO_USE_TLS", "dummy", TRUE);
      g_assert_false (g_tls_backend_supports_tls (g_tls_backend_get_default ()));

      g_assert_true (tlspyo_credentials_generate (dir, NULL, &error));
      g_assert_no_error (error);

      cert = tlspyo_credentials_load_certificate (dir, TRUE, &error);
      g_assert_null (cert);
      g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
      g_assert_nonnull (strstr (error->message, "glib-networking"));

      remove_tree (dir);
      return;
    }

  g_test_trap_subprocess (NULL, TLSPYO_TEST_TIMEOUT_MS * 1000,
                          G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_load_relative (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) cert = NULL;
  g_autoptr(GTlsCertificate) cert_abs = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *sub = g_build_filename (dir, "creds", NULL);
  g_autofree char *old_cwd = g_get_current_dir ();

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (tlspyo_credentials_generate (sub, NULL, &error));
  g_assert_no_error (error);

  g_assert_cmpint (g_chdir (dir), ==, 0);
  cert = tlspyo_credentials_load_certificate ("creds", TRUE, &error);
  g_assert_no_error (error);
  cert_abs = tlspyo_credentials_load_certificate (sub, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (g_tls_certificate_is_same (cert, cert_abs));
  g_clear_object (&cert);

  /* Errors name the absolute path, which means something anywhere. */
  cert = tlspyo_credentials_load_certificate ("elsewhere", FALSE, &error);
  g_assert_null (cert);
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CREDENTIALS);
  {
    g_autofree char *canonical = g_canonicalize_filename ("elsewhere", NULL);
    g_assert_nonnull (strstr (error->message, canonical));
  }

  g_assert_cmpint (g_chdir (old_cwd), ==, 0);
  remove_tree (dir);
}

/* ---- real TLS handshake on loopback ----------------------------------- */

typedef struct {
  GTlsCertificate *server_cert;
  GTlsConnection  *server_conn;
  guint            n_incoming;
  gboolean         server_done;
  GError          *server_error;

  GSocketConnection *client_socket;
  gboolean           connected;
  GError            *connect_error;

  GTlsConnection  *client_conn;
  gboolean         client_done;
  GError          *client_error;
} Handshake;

static gboolean
timeout_cb (gpointer user_data)
{
  gboolean *timed_out = user_data;

  *timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

static void
wait_for (gboolean   *flag,
          const char *what)
{
  gboolean timed_out = FALSE;
  guint id;

  id = g_timeout_add (TLSPYO_TEST_TIMEOUT_MS, timeout_cb, &timed_out);
  while (!*flag && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (timed_out)
    g_error ("Timed out after %d ms waiting for %s", TLSPYO_TEST_TIMEOUT_MS, what);
  g_source_remove (id);
}

static void
server_handshake_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  Handshake *hs = user_data;

  g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result,
                                     &hs->server_error);
  hs->server_done = TRUE;
}

static gboolean
incoming_cb (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source_object,
             gpointer           user_data)
{
  Handshake *hs = user_data;
  GTlsBackend *backend = g_tls_backend_get_default ();
  g_autoptr(GError) error = NULL;

  hs->n_incoming++;
  g_assert_null (hs->server_conn);

  hs->server_conn = g_initable_new (g_tls_backend_get_server_connection_type (backend),
                                    NULL, &error,
                                    "base-io-stream", connection,
                                    "certificate", hs->server_cert,
                                    NULL);
  g_assert_no_error (error);
  g_tls_connection_handshake_async (hs->server_conn, G_PRIORITY_DEFAULT, NULL,
                                    server_handshake_cb, hs);
  return TRUE;
}

static void
connect_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Handshake *hs = user_data;

  hs->client_socket = g_socket_client_connect_finish (G_SOCKET_CLIENT (source),
                                                      result, &hs->connect_error);
  hs->connected = TRUE;
}

static void
client_handshake_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  Handshake *hs = user_data;

  g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result,
                                     &hs->client_error);
  hs->client_done = TRUE;
}

/* Serves @server_cert on 127.0.0.1 and connects a client that trusts only
 * @trusted_cert_path and expects @identity. Returns whether the client's
 * handshake succeeded; the errors are left in @hs for the caller. */
static gboolean
run_handshake (Handshake       *hs,
               GTlsCertificate *server_cert,
               const char      *trusted_cert_path,
               const char      *identity)
{
  GTlsBackend *backend = g_tls_backend_get_default ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketService) service = NULL;
  g_autoptr(GInetAddress) loopback = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  g_autoptr(GSocketAddress) effective = NULL;
  g_autoptr(GSocketClient) client = NULL;
  g_autoptr(GTlsDatabase) database = NULL;
  g_autoptr(GSocketConnectable) server_identity = NULL;
  guint16 port;

  memset (hs, 0, sizeof *hs);
  hs->server_cert = server_cert;

  service = g_socket_service_new ();
  loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  address = g_inet_socket_address_new (loopback, 0);
  g_socket_listener_add_address (G_SOCKET_LISTENER (service), address,
                                 G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                 NULL, &effective, &error);
  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  g_assert_cmpuint (port, !=, 0);
  g_signal_connect (service, "incoming", G_CALLBACK (incoming_cb), hs);
  g_socket_service_start (service);

  client = g_socket_client_new ();
  g_socket_client_set_enable_proxy (client, FALSE);
  g_socket_client_connect_async (client, G_SOCKET_CONNECTABLE (effective), NULL,
                                 connect_cb, hs);
  wait_for (&hs->connected, "the TCP connection");
  g_assert_no_error (hs->connect_error);

  database = g_tls_file_database_new (trusted_cert_path, &error);
  g_assert_no_error (error);
  server_identity = g_network_address_new (identity, port);

  hs->client_conn = g_initable_new (g_tls_backend_get_client_connection_type (backend),
                                    NULL, &error,
                                    "base-io-stream", hs->client_socket,
                                    "server-identity", server_identity,
                                    "database", database,
                                    NULL);
  g_assert_no_error (error);
  g_tls_connection_handshake_async (hs->client_conn, G_PRIORITY_DEFAULT, NULL,
                                    client_handshake_cb, hs);
  wait_for (&hs->client_done, "the client handshake");

  /* On failure the server may still wait for the client; closing the
   * client ends its handshake too. */
  if (hs->client_error != NULL)
    g_io_stream_close (G_IO_STREAM (hs->client_conn), NULL, NULL);
  wait_for (&hs->server_done, "the server handshake");
  g_assert_cmpuint (hs->n_incoming, ==, 1);

  if (hs->client_error == NULL)
    {
      GTlsCertificate *peer = g_tls_connection_get_peer_certificate (hs->client_conn);

      g_assert_nonnull (peer);
      g_assert_true (g_tls_certificate_is_same (peer, server_cert));
      g_assert_no_error (hs->server_error);
      g_io_stream_close (G_IO_STREAM (hs->client_conn), NULL, NULL);
    }

  g_io_stream_close (G_IO_STREAM (hs->server_conn), NULL, NULL);
  g_socket_service_stop (service);
  g_socket_listener_close (G_SOCKET_LISTENER (service));

  return hs->client_error == NULL;
}

static void
handshake_clear (Handshake *hs)
{
  g_clear_object (&hs->server_conn);
  g_clear_object (&hs->client_conn);
  g_clear_object (&hs->client_socket);
  g_clear_error (&hs->server_error);
  g_clear_error (&hs->client_error);
  g_clear_error (&hs->connect_error);
}

static void
test_tls_pinning (gconstpointer data)
{
  TlspyoKeyType key_type = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) relay_cert = NULL;
  g_autofree char *dir = make_tmp_dir ();
  g_autofree char *relay_dir = g_build_filename (dir, "relay", NULL);
  g_autofree char *other_dir = g_build_filename (dir, "other", NULL);
  g_autofree char *relay_pem = NULL;
  g_autofree char *other_pem = NULL;
  Handshake hs;

  if (!require_tls ())
    {
      remove_tree (dir);
      return;
    }

  g_assert_true (tlspyo_credentials_generate_full (relay_dir, NULL, key_type, 0,
                                                   TLSPYO_CREDENTIALS_NONE, &error));
  g_assert_no_error (error);
  /* Same common name: only the pinned certificate tells them apart. */
  g_assert_true (tlspyo_credentials_generate (other_dir, NULL, &error));
  g_assert_no_error (error);

  relay_cert = tlspyo_credentials_load_certificate (relay_dir, TRUE, &error);
  g_assert_no_error (error);

  relay_pem = g_canonicalize_filename ("certificate.pem", relay_dir);
  other_pem = g_canonicalize_filename ("certificate.pem", other_dir);

  g_test_message ("Pinned certificate, expected name: must succeed");
  g_assert_true (run_handshake (&hs, relay_cert, relay_pem, "default"));
  handshake_clear (&hs);

  g_test_message ("A different certificate pinned: must fail");
  g_assert_false (run_handshake (&hs, relay_cert, other_pem, "default"));
  g_assert_error (hs.client_error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
  g_assert_nonnull (hs.server_error);
  handshake_clear (&hs);

  g_test_message ("Pinned certificate, other name: must fail");
  g_assert_false (run_handshake (&hs, relay_cert, relay_pem, "other"));
  g_assert_error (hs.client_error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
  g_assert_nonnull (hs.server_error);
  handshake_clear (&hs);

  remove_tree (dir);
}

int
main (int    argc,
      char **argv)
{
  tlspyo_test_init (&argc, &argv);

  /* Makes the expected file modes exact. */
  umask (022);

  g_test_add_func ("/credentials/default-dir", test_default_dir);
  g_test_add_func ("/credentials/generate/ecdsa", test_generate_ecdsa);
  g_test_add_func ("/credentials/generate/creates-folder", test_generate_creates_folder);
  g_test_add_func ("/credentials/generate/custom", test_generate_custom);
  g_test_add_func ("/credentials/generate/ip-address", test_generate_ip_address);
  g_test_add_func ("/credentials/generate/rsa", test_generate_rsa);
  g_test_add_func ("/credentials/generate/invalid", test_generate_invalid);
  g_test_add_func ("/credentials/generate/not-a-folder", test_generate_not_a_folder);
  g_test_add_func ("/credentials/generate/no-half-pair", test_generate_no_half_pair);
  g_test_add_func ("/credentials/generate/refuse-overwrite", test_generate_refuse_overwrite);
  g_test_add_func ("/credentials/generate/overwrite", test_generate_overwrite);
  g_test_add_func ("/credentials/generate/null-directory", test_generate_null_directory);
  g_test_add_func ("/credentials/fingerprint/format", test_fingerprint);
  g_test_add_func ("/credentials/fingerprint/null", test_fingerprint_null);
  g_test_add_func ("/credentials/load/missing-folder", test_load_missing_folder);
  g_test_add_func ("/credentials/load/missing-file", test_load_missing_file);
  g_test_add_func ("/credentials/load/garbage", test_load_garbage);
  g_test_add_func ("/credentials/load/mismatch", test_load_mismatch);
  g_test_add_func ("/credentials/load/no-tls-backend", test_load_no_tls_backend);
  g_test_add_func ("/credentials/load/relative", test_load_relative);
  g_test_add_data_func ("/credentials/tls/pinning/ecdsa",
                        GINT_TO_POINTER (TLSPYO_KEY_TYPE_ECDSA), test_tls_pinning);
  g_test_add_data_func ("/credentials/tls/pinning/rsa",
                        GINT_TO_POINTER (TLSPYO_KEY_TYPE_RSA), test_tls_pinning);

  return g_test_run ();
}
