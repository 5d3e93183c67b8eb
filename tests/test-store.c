/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-relay-private.h"
#include "tlspyo-store-private.h"

/* The durable relay's store (issue 5, item 4), driven directly: what is
 * committed comes back after a reopen, and only that. Each test works in
 * a temporary folder; the state directory is a child of it that the store
 * creates. */

typedef struct {
  char *tmp;    /* removed by teardown */
  char *state;  /* tmp/state, not created */
} Fixture;

static void
fixture_setup (Fixture       *fixture,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  fixture->tmp = g_dir_make_tmp ("tlspyo-store-XXXXXX", &error);
  g_assert_no_error (error);
  fixture->state = g_build_filename (fixture->tmp, "state", NULL);
}

static void
fixture_teardown (Fixture       *fixture,
                  gconstpointer  data)
{
  /* Undo what the permission test did, so that the folder can go. */
  g_chmod (fixture->state, 0700);
  tlspyo_test_remove_dir (fixture->tmp);
  g_free (fixture->state);
  g_free (fixture->tmp);
}

static const guint8 session_a[TLSPYO_SESSION_ID_SIZE] = { 0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
static const guint8 session_b[TLSPYO_SESSION_ID_SIZE] = { 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff };

static GBytes *
body_new (const char *text)
{
  return g_bytes_new (text, strlen (text));
}

/* What a load reads back, as lines that compare as strings:
 * "object ID GROUP HOLDER POSITION BODY", "latest GROUP SEQ BODY",
 * "session ID NEXT_SEQ" (HOLDER and ID: the first byte of the session in
 * hex, or "-"). */
static char *
session_name (const guint8 *session)
{
  return session ? g_strdup_printf ("%02x", session[0]) : g_strdup ("-");
}

static char *
body_text (GBytes *body)
{
  gsize size;
  const char *data = g_bytes_get_data (body, &size);

  return g_strndup (data ? data : "", size);
}

static void
load_object (guint64       id,
             const char   *group,
             GBytes       *body,
             const guint8 *holder,
             gint64        position,
             gpointer      user_data)
{
  g_autofree char *holder_name = session_name (holder);
  g_autofree char *text = body_text (body);

  g_ptr_array_add (user_data, g_strdup_printf ("object %" G_GUINT64_FORMAT " %s %s %" G_GINT64_FORMAT " %s",
                                               id, group, holder_name, position, text));
}

static void
load_latest (const char *group,
             guint64     seq,
             GBytes     *body,
             gpointer    user_data)
{
  g_autofree char *text = body_text (body);

  g_ptr_array_add (user_data, g_strdup_printf ("latest %s %" G_GUINT64_FORMAT " %s",
                                               group, seq, text));
}

static void
load_session (const guint8 *session,
              guint64       next_seq,
              gpointer      user_data)
{
  g_autofree char *name = session_name (session);

  g_ptr_array_add (user_data, g_strdup_printf ("session %s %" G_GUINT64_FORMAT, name, next_seq));
}

static const TlspyoStoreLoadFuncs load_all = { load_object, load_latest, load_session };

static int
compare_lines (gconstpointer a,
               gconstpointer b,
               gpointer      user_data)
{
  return strcmp (*(char * const *) a, *(char * const *) b);
}

/* Loads @store and checks it holds exactly @expected (NULL-terminated), in
 * that order; sessions come in no particular order, so they are sorted. */
static void
assert_contents (TlspyoStore        *store,
                 const char * const *expected)
{
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *found = NULL;
  g_autofree char *wanted = NULL;
  guint first_session;

  g_assert_true (tlspyo_store_load (store, &load_all, lines, &error));
  g_assert_no_error (error);
  for (first_session = 0; first_session < lines->len; first_session++)
    if (g_str_has_prefix (g_ptr_array_index (lines, first_session), "session "))
      break;
  g_qsort_with_data (lines->pdata + first_session, lines->len - first_session, sizeof (gpointer),
                     compare_lines, NULL);
  g_ptr_array_add (lines, NULL);
  found = g_strjoinv ("\n", (char **) lines->pdata);
  wanted = g_strjoinv ("\n", (char **) expected);
  g_assert_cmpstr (found, ==, wanted);
}

static TlspyoStore *
open_or_fail (const char *directory)
{
  g_autoptr(GError) error = NULL;
  TlspyoStore *store = tlspyo_store_open (directory, &error);

  g_assert_no_error (error);
  g_assert_nonnull (store);
  return store;
}

static void
commit_or_fail (TlspyoStore *store)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_store_commit (store, &error));
  g_assert_no_error (error);
  g_assert_false (tlspyo_store_has_pending (store));
}

static void
test_round_trip (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = NULL;
  g_autoptr(GBytes) one = body_new ("one");
  g_autoptr(GBytes) two = body_new ("two");
  g_autoptr(GBytes) three = body_new ("three");
  g_autoptr(GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr(GBytes) weights = body_new ("weights");
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);
  GStatBuf st;
  guint64 value = 0;
  const char * const expected[] = {
    "object 1 episodes - 1 one",
    "object 3 episodes - 3 ",
    "object 2 gradients - 2 two",
    "object 9223372036854775807 gradients - 9223372036854775807 three",
    "latest params 18446744073709551615 weights",
    "session aa 7",
    "session bb 0",
    NULL
  };

  store = open_or_fail (fixture->state);
  /* The folder did not exist: created private, and so is the database,
   * which holds the users' objects. */
  g_assert_cmpint (g_stat (fixture->state, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  g_assert_cmpint (g_stat (db_path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);

  g_assert_false (tlspyo_store_has_pending (store));
  commit_or_fail (store);  /* nothing to commit */
  tlspyo_store_put_object (store, 1, "episodes", one);
  g_assert_true (tlspyo_store_has_pending (store));
  tlspyo_store_put_object (store, 2, "gradients", two);
  tlspyo_store_put_object (store, 3, "episodes", empty);
  tlspyo_store_put_object (store, G_MAXINT64, "gradients", three);
  tlspyo_store_set_latest (store, "params", G_MAXUINT64, weights);
  tlspyo_store_set_session (store, session_b, 0);
  tlspyo_store_set_session (store, session_a, 7);
  tlspyo_store_set_value (store, "next-object-id", G_MAXUINT64);
  tlspyo_store_set_value (store, "instance", 42);
  /* A value reads back before the commit too. */
  g_assert_true (tlspyo_store_get_value (store, "instance", &value));
  g_assert_cmpuint (value, ==, 42);
  commit_or_fail (store);
  assert_contents (store, expected);
  g_clear_pointer (&store, tlspyo_store_free);

  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
  g_assert_true (tlspyo_store_get_value (store, "next-object-id", &value));
  g_assert_cmpuint (value, ==, G_MAXUINT64);
  g_assert_true (tlspyo_store_get_value (store, "instance", &value));
  g_assert_cmpuint (value, ==, 42);
  value = 5;
  g_assert_false (tlspyo_store_get_value (store, "unknown", &value));
  g_assert_cmpuint (value, ==, 5);
  g_assert_false (tlspyo_store_has_pending (store));
}

/* Queue order is position, then id; an object in flight keeps its place
 * and names its holder, and one put back at the head comes first. */
static void
test_order (Fixture       *fixture,
            gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = open_or_fail (fixture->state);
  const char * const names[] = { "o10", "o11", "o12", "o13", "o14" };
  const char * const expected[] = {
    "object 14 a - -5 o14",
    "object 12 a - 9 o12",
    "object 13 a - 9 o13",
    "object 10 a - 10 o10",
    "object 11 a aa 11 o11",
    "object 15 b bb 15 o15",
    NULL
  };
  g_autoptr(GBytes) o15 = body_new ("o15");

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr(GBytes) body = body_new (names[i]);
      tlspyo_store_put_object (store, 10 + i, "a", body);
    }
  tlspyo_store_put_object (store, 15, "b", o15);
  commit_or_fail (store);

  tlspyo_store_set_holder (store, 11, session_a, 11);
  tlspyo_store_set_holder (store, 15, session_b, 15);
  /* 12 and 13 went to a consumer and came back to the head, in order;
   * 14 later, to the head again. */
  tlspyo_store_set_holder (store, 12, session_b, 12);
  tlspyo_store_set_holder (store, 13, session_b, 13);
  tlspyo_store_set_holder (store, 13, NULL, 9);
  tlspyo_store_set_holder (store, 12, NULL, 9);
  tlspyo_store_set_holder (store, 14, NULL, -5);
  commit_or_fail (store);
  g_clear_pointer (&store, tlspyo_store_free);

  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
}

static void
test_remove (Fixture       *fixture,
             gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = open_or_fail (fixture->state);
  g_autoptr(GBytes) body = body_new ("x");
  g_autoptr(GBytes) old = body_new ("old");
  g_autoptr(GBytes) newer = body_new ("new");
  const char * const expected[] = {
    "object 2 q - 2 x",
    "latest g 2 new",
    "session bb 3",
    NULL
  };

  for (guint64 id = 1; id <= 3; id++)
    tlspyo_store_put_object (store, id, "q", body);
  tlspyo_store_set_latest (store, "g", 1, old);
  tlspyo_store_set_session (store, session_a, 1);
  tlspyo_store_set_session (store, session_b, 1);
  commit_or_fail (store);

  tlspyo_store_remove_object (store, 1);
  tlspyo_store_set_holder (store, 3, session_a, 3);
  tlspyo_store_remove_object (store, 3);  /* taken while in flight */
  tlspyo_store_remove_object (store, 99);  /* not stored: nothing happens */
  tlspyo_store_set_latest (store, "g", 2, newer);
  tlspyo_store_remove_session (store, session_a);
  tlspyo_store_set_session (store, session_b, 3);
  commit_or_fail (store);
  g_clear_pointer (&store, tlspyo_store_free);

  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
  /* An id can be used again once its object is gone. */
  tlspyo_store_put_object (store, 1, "q", body);
  commit_or_fail (store);
}

/* The relay is killed (SIGKILL) in the middle of a batch: after a reopen,
 * exactly what was committed is there. The uncommitted batch holds a body
 * larger than SQLite's page cache, so part of it reached the WAL file
 * before the kill. */
static void
test_killed (Fixture       *fixture,
             gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = NULL;
  const char * const expected[] = {
    "object 1 q - 1 committed-1",
    "object 2 q - 2 committed-2",
    "latest g 1 first",
    "session aa 5",
    NULL
  };
  guint64 value = 0;
  int status = 0;
  pid_t pid;

  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      /* The child: no assertion here, its exit status says what failed. */
      TlspyoStore *child = tlspyo_store_open (fixture->state, NULL);
      g_autoptr(GBytes) c1 = body_new ("committed-1");
      g_autoptr(GBytes) c2 = body_new ("committed-2");
      g_autoptr(GBytes) first = body_new ("first");
      g_autoptr(GBytes) second = body_new ("second");
      g_autoptr(GBytes) lost = body_new ("lost");
      gsize big_size = 8 * 1024 * 1024;
      g_autoptr(GBytes) big = g_bytes_new_take (g_malloc0 (big_size), big_size);

      if (child == NULL)
        _exit (2);
      tlspyo_store_put_object (child, 1, "q", c1);
      tlspyo_store_put_object (child, 2, "q", c2);
      tlspyo_store_set_latest (child, "g", 1, first);
      tlspyo_store_set_session (child, session_a, 5);
      tlspyo_store_set_value (child, "next-object-id", 3);
      if (!tlspyo_store_commit (child, NULL))
        _exit (3);
      tlspyo_store_put_object (child, 3, "q", lost);
      tlspyo_store_put_object (child, 4, "q", big);
      tlspyo_store_remove_object (child, 1);
      tlspyo_store_set_holder (child, 2, session_a, 2);
      tlspyo_store_set_latest (child, "g", 2, second);
      tlspyo_store_set_session (child, session_a, 9);
      tlspyo_store_set_session (child, session_b, 1);
      tlspyo_store_set_value (child, "next-object-id", 5);
      if (!tlspyo_store_has_pending (child))
        _exit (4);
      raise (SIGKILL);
      _exit (5);
    }

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  if (!WIFSIGNALED (status))
    g_error ("the child exited with status %d instead of being killed", WEXITSTATUS (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
  /* The uncommitted body did reach the disk, uncommitted. */
  {
    g_autofree char *wal = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME "-wal", NULL);
    GStatBuf st;

    g_assert_cmpint (g_stat (wal, &st), ==, 0);
    g_assert_cmpint (st.st_size, >, 4 * 1024 * 1024);
  }

  /* The kill released the child's lock. */
  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
  g_assert_true (tlspyo_store_get_value (store, "next-object-id", &value));
  g_assert_cmpuint (value, ==, 3);
}

static void
collect_object_body (guint64       id,
                     const char   *group,
                     GBytes       *body,
                     const guint8 *holder,
                     gint64        position,
                     gpointer      user_data)
{
  g_assert_cmpuint (id, ==, 1);
  g_assert_nonnull (holder);
  g_assert_cmpmem (holder, TLSPYO_SESSION_ID_SIZE, session_a, TLSPYO_SESSION_ID_SIZE);
  g_ptr_array_add (user_data, g_bytes_ref (body));
}

static void
collect_latest_body (const char *group,
                     guint64     seq,
                     GBytes     *body,
                     gpointer    user_data)
{
  g_assert_cmpstr (group, ==, "large");
  g_ptr_array_add (user_data, g_bytes_ref (body));
}

/* A 64 MiB body (the relay's default max-output-bytes) is stored and read
 * back intact. */
static void
test_large (Fixture       *fixture,
            gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = open_or_fail (fixture->state);
  gsize size = 64 * 1024 * 1024;
  guint8 *bytes = g_malloc (size);
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  guint32 x = 2463534242u;

  for (gsize i = 0; i < size; i += 4)
    {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      memcpy (bytes + i, &x, 4);
    }
  body = g_bytes_new_take (bytes, size);
  tlspyo_store_put_object (store, 1, "large", body);
  tlspyo_store_set_latest (store, "large", 1, body);
  commit_or_fail (store);
  /* In flight and back: the body stays intact. */
  tlspyo_store_set_holder (store, 1, session_a, 1);
  commit_or_fail (store);
  g_clear_pointer (&store, tlspyo_store_free);

  store = open_or_fail (fixture->state);
  {
    const TlspyoStoreLoadFuncs funcs = { collect_object_body, collect_latest_body, NULL };

    g_assert_true (tlspyo_store_load (store, &funcs, bodies, &error));
    g_assert_no_error (error);
  }
  g_assert_cmpuint (bodies->len, ==, 2);
  for (guint i = 0; i < bodies->len; i++)
    g_assert_true (g_bytes_equal (g_ptr_array_index (bodies, i), body));
}

/* Opening fails: checks the error's code and that its message names
 * @path and contains @hint. */
static void
assert_open_fails (const char  *directory,
                   gint         code,
                   const char  *path,
                   const char  *hint)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoStore) store = tlspyo_store_open (directory, &error);

  g_assert_null (store);
  g_assert_error (error, TLSPYO_ERROR, code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_nonnull (strstr (error->message, hint));
}

static void
test_open_not_folder (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *below = g_build_filename (fixture->state, "sub", NULL);

  g_file_set_contents (fixture->state, "a file", -1, &error);
  g_assert_no_error (error);
  assert_open_fails (fixture->state, TLSPYO_ERROR_INVALID_ARGUMENT, fixture->state,
                     "is not a folder");
  assert_open_fails (below, TLSPYO_ERROR_INVALID_ARGUMENT, below, "not a folder");
}

/* The database path is taken by a folder: nobody, root included, can open
 * it as a file. */
static void
test_open_database_folder (Fixture       *fixture,
                           gconstpointer  data)
{
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);

  g_assert_cmpint (g_mkdir_with_parents (db_path, 0700), ==, 0);
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, db_path, "move it away");
}

/* The child's checks, in a function so that what it allocates is freed
 * before it exits (valgrind checks children for leaks too). */
static int
unwritable_child (const char *state,
                  gboolean    root)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoStore) store = NULL;

  if (root && (setgroups (0, NULL) != 0 || setgid (65534) != 0 || setuid (65534) != 0))
    return 77;
  store = tlspyo_store_open (state, &error);
  if (store != NULL)
    return 2;
  g_printerr ("%s\n", error->message);
  if (!g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT) ||
      strstr (error->message, state) == NULL ||
      strstr (error->message, "the right to write") == NULL)
    return 3;
  return 0;
}

/* A folder the relay's user may not write in. Root may write anywhere, so
 * as root the check runs in a child that drops to user nobody. */
static void
test_open_unwritable (Fixture       *fixture,
                      gconstpointer  data)
{
  gboolean root = geteuid () == 0;
  int status = 0;
  pid_t pid;

  g_assert_cmpint (g_mkdir (fixture->state, 0555), ==, 0);
  g_assert_cmpint (g_chmod (fixture->state, 0555), ==, 0);  /* whatever the umask */
  if (root)
    g_assert_cmpint (g_chmod (fixture->tmp, 0755), ==, 0);

  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    _exit (unwritable_child (fixture->state, root));
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  if (WEXITSTATUS (status) == 77)
    {
      g_test_skip ("running as root, and could not drop privileges to check permissions");
      return;
    }
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

static void
make_database (const char *directory,
               const char *sql)
{
  g_autofree char *db_path = g_build_filename (directory, TLSPYO_STORE_DATABASE_NAME, NULL);
  sqlite3 *db = NULL;

  g_assert_cmpint (g_mkdir_with_parents (directory, 0700), ==, 0);
  g_assert_cmpint (sqlite3_open (db_path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
}

static void
test_open_newer (Fixture       *fixture,
                 gconstpointer  data)
{
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);

  /* Written by this version, then "upgraded". */
  tlspyo_store_free (open_or_fail (fixture->state));
  make_database (fixture->state, "PRAGMA user_version = 99");
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, db_path, "newer tlspyo-glib");
  /* Refused without being touched: still version 99, for the newer one. */
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, db_path, "schema version 99");
}

static void
test_open_foreign (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);

  make_database (fixture->state, "CREATE TABLE photos (name TEXT)");
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, db_path,
                     "not a tlspyo-glib state database");
}

static void
test_open_garbage (Fixture       *fixture,
                   gconstpointer  data)
{
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);
  g_autoptr(GError) error = NULL;
  char garbage[8192];

  for (gsize i = 0; i < sizeof garbage; i++)
    garbage[i] = (char) (i * 7 + 3);
  g_assert_cmpint (g_mkdir (fixture->state, 0700), ==, 0);
  g_file_set_contents (db_path, garbage, sizeof garbage, &error);
  g_assert_no_error (error);
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, db_path, "move it away");
}

/* One relay per folder: a second open fails and names the holder, until
 * the first is closed. */
static void
test_lock (Fixture       *fixture,
           gconstpointer  data)
{
  g_autoptr(TlspyoStore) first = open_or_fail (fixture->state);
  g_autofree char *pid = g_strdup_printf ("(process %ld)", (long) getpid ());
  g_autoptr(TlspyoStore) second = NULL;

  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, fixture->state,
                     "in use by another relay");
  assert_open_fails (fixture->state, TLSPYO_ERROR_FAILED, pid, "own state directory");
  g_clear_pointer (&first, tlspyo_store_free);
  second = open_or_fail (fixture->state);
}

/* A failing change fails the commit, which keeps none of its batch; the
 * next batch is committed normally. */
static void
test_commit_failure (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = open_or_fail (fixture->state);
  g_autoptr(GBytes) body = body_new ("b");
  g_autoptr(GError) error = NULL;
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);
  guint64 value = 0;
  const char * const expected[] = {
    "object 1 q - 1 b",
    "object 3 q - 3 b",
    NULL
  };

  tlspyo_store_put_object (store, 1, "q", body);
  commit_or_fail (store);

  tlspyo_store_put_object (store, 2, "q", body);
  tlspyo_store_put_object (store, 1, "q", body);  /* a second object 1 */
  tlspyo_store_set_value (store, "next-object-id", 3);
  g_assert_true (tlspyo_store_has_pending (store));
  g_assert_false (tlspyo_store_commit (store, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, db_path));
  g_assert_nonnull (strstr (error->message, "object 1"));
  g_clear_error (&error);
  g_assert_false (tlspyo_store_has_pending (store));
  g_assert_false (tlspyo_store_get_value (store, "next-object-id", &value));

  /* An object that is not stored cannot be moved. */
  tlspyo_store_set_holder (store, 7, session_a, 7);
  g_assert_false (tlspyo_store_commit (store, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "object 7"));
  g_clear_error (&error);

  tlspyo_store_put_object (store, 3, "q", body);
  commit_or_fail (store);
  g_clear_pointer (&store, tlspyo_store_free);

  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
}

static int
io_failure_child (const char *state)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(TlspyoStore) child = tlspyo_store_open (state, NULL);
  g_autoptr(GBytes) small = body_new ("small");
  gsize big_size = 1024 * 1024;
  g_autoptr(GBytes) big = g_bytes_new_take (g_malloc0 (big_size), big_size);
  struct rlimit limit = { 256 * 1024, 256 * 1024 };

  if (child == NULL)
    return 2;
  tlspyo_store_put_object (child, 1, "q", small);
  if (!tlspyo_store_commit (child, NULL))
    return 3;
  signal (SIGXFSZ, SIG_IGN);
  if (setrlimit (RLIMIT_FSIZE, &limit) != 0)
    return 4;
  tlspyo_store_put_object (child, 2, "q", big);
  if (tlspyo_store_commit (child, &error))
    return 5;
  g_printerr ("%s\n", error->message);
  if (!g_error_matches (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED) ||
      strstr (error->message, state) == NULL)
    return 6;
  if (tlspyo_store_has_pending (child))
    return 7;
  return 0;
}

/* The disk refuses the writes (here: a file size limit, EFBIG): the commit
 * fails with an error that names the database, and what was committed
 * before is intact. In a child, for the limit. */
static void
test_commit_io_failure (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(TlspyoStore) store = NULL;
  const char * const expected[] = {
    "object 1 q - 1 small",
    NULL
  };
  int status = 0;
  pid_t pid;

  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    _exit (io_failure_child (fixture->state));
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);

  store = open_or_fail (fixture->state);
  assert_contents (store, expected);
}

/* The relay's state-directory property: start() opens the store, so that a
 * folder that cannot work fails start() cleanly; stop() releases it. The
 * relays do not listen: no socket is needed for this. */

static TlspyoRelay *
relay_new (const char *state_directory)
{
  TlspyoRelay *relay = g_object_new (TLSPYO_TYPE_RELAY,
                                     "port", 0,
                                     "address", "127.0.0.1",
                                     "password", TLSPYO_TEST_PASSWORD,
                                     "security", TLSPYO_SECURITY_NONE,
                                     "state-directory", state_directory,
                                     NULL);

  tlspyo_relay_set_listening (relay, FALSE);
  return relay;
}

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  (*(guint *) user_data)++;
}

static void
test_relay_property (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(TlspyoRelay) relay = g_object_new (TLSPYO_TYPE_RELAY, NULL);
  g_autofree char *value = NULL;
  guint n_notify = 0;

  g_object_get (relay, "state-directory", &value, NULL);
  g_assert_null (value);
  g_signal_connect (relay, "notify::state-directory", G_CALLBACK (count_notify), &n_notify);
  g_object_set (relay, "state-directory", fixture->state, NULL);
  g_object_set (relay, "state-directory", fixture->state, NULL);
  g_assert_cmpuint (n_notify, ==, 1);
  g_object_get (relay, "state-directory", &value, NULL);
  g_assert_cmpstr (value, ==, fixture->state);
  g_clear_pointer (&value, g_free);
  /* Only start() touches the folder. */
  g_assert_false (g_file_test (fixture->state, G_FILE_TEST_EXISTS));
  g_object_set (relay, "state-directory", NULL, NULL);
  g_assert_cmpuint (n_notify, ==, 2);
  g_object_get (relay, "state-directory", &value, NULL);
  g_assert_null (value);
}

static void
test_relay_bad_directory (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autoptr(TlspyoRelay) relay = relay_new (fixture->state);
  g_autofree char *db_path = g_build_filename (fixture->state, TLSPYO_STORE_DATABASE_NAME, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (fixture->state, "not a folder", -1, &error);
  g_assert_no_error (error);
  g_assert_false (tlspyo_relay_start (relay, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, fixture->state));
  g_clear_error (&error);
  /* Not half-started: stopping does nothing, and with the folder fixed
   * the same relay starts. */
  tlspyo_relay_stop (relay);
  g_assert_cmpint (g_unlink (fixture->state), ==, 0);
  g_assert_true (tlspyo_relay_start (relay, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (db_path, G_FILE_TEST_IS_REGULAR));
  tlspyo_relay_stop (relay);
}

static void
test_relay_exclusive (Fixture       *fixture,
                      gconstpointer  data)
{
  g_autoptr(TlspyoRelay) first = relay_new (fixture->state);
  g_autoptr(TlspyoRelay) second = relay_new (fixture->state);
  g_autoptr(GError) error = NULL;

  g_assert_true (tlspyo_relay_start (first, &error));
  g_assert_no_error (error);
  g_assert_false (tlspyo_relay_start (second, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_FAILED);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "in use by another relay"));
  g_clear_error (&error);

  /* stop() releases the folder at once. */
  tlspyo_relay_stop (first);
  g_assert_true (tlspyo_relay_start (second, &error));
  g_assert_no_error (error);
  tlspyo_relay_stop (second);
  g_assert_true (tlspyo_relay_start (first, &error));
  g_assert_no_error (error);
  g_clear_object (&first);  /* disposing a running relay stops it too */
  g_assert_true (tlspyo_relay_start (second, &error));
  g_assert_no_error (error);
  tlspyo_relay_stop (second);
}

int
main (int    argc,
      char **argv)
{
  tlspyo_test_init (&argc, &argv);

  g_test_add ("/store/round-trip", Fixture, NULL, fixture_setup, test_round_trip, fixture_teardown);
  g_test_add ("/store/order", Fixture, NULL, fixture_setup, test_order, fixture_teardown);
  g_test_add ("/store/remove", Fixture, NULL, fixture_setup, test_remove, fixture_teardown);
  g_test_add ("/store/killed", Fixture, NULL, fixture_setup, test_killed, fixture_teardown);
  g_test_add ("/store/large", Fixture, NULL, fixture_setup, test_large, fixture_teardown);
  g_test_add ("/store/open/not-a-folder", Fixture, NULL, fixture_setup, test_open_not_folder,
              fixture_teardown);
  g_test_add ("/store/open/database-is-a-folder", Fixture, NULL, fixture_setup,
              test_open_database_folder, fixture_teardown);
  g_test_add ("/store/open/unwritable", Fixture, NULL, fixture_setup, test_open_unwritable,
              fixture_teardown);
  g_test_add ("/store/open/newer-version", Fixture, NULL, fixture_setup, test_open_newer,
              fixture_teardown);
  g_test_add ("/store/open/foreign-database", Fixture, NULL, fixture_setup, test_open_foreign,
              fixture_teardown);
  g_test_add ("/store/open/garbage", Fixture, NULL, fixture_setup, test_open_garbage,
              fixture_teardown);
  g_test_add ("/store/lock", Fixture, NULL, fixture_setup, test_lock, fixture_teardown);
  g_test_add ("/store/commit/failed-change", Fixture, NULL, fixture_setup, test_commit_failure,
              fixture_teardown);
  g_test_add ("/store/commit/io-failure", Fixture, NULL, fixture_setup, test_commit_io_failure,
              fixture_teardown);
  /* Last: the relay starts the library's worker thread, and the tests
   * above fork, which is safest in a process with one thread. */
  g_test_add ("/store/relay/property", Fixture, NULL, fixture_setup, test_relay_property,
              fixture_teardown);
  g_test_add ("/store/relay/bad-directory", Fixture, NULL, fixture_setup,
              test_relay_bad_directory, fixture_teardown);
  g_test_add ("/store/relay/exclusive", Fixture, NULL, fixture_setup, test_relay_exclusive,
              fixture_teardown);

  return g_test_run ();
}
