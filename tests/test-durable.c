/* SPDX-License-Identifier: MIT */
/* The durable relay (issue 5, item 4): with a state-directory, what a relay
 * acknowledged or handed out survives it. A relay stopped and started again
 * on the same folder is the in-process restart (the state is then what was
 * committed last, as after a crash: stop() commits, then closes the
 * connections without recording what that changes); kill -9 of a relay
 * process is covered by the faults suite (/faults/relay-restart). */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-auth-private.h"
#include "tlspyo-connection-private.h"
#include "tlspyo-frame-private.h"
#include "tlspyo-store-private.h"

/* Makes a state directory for the fixture's relay and starts it. */
static char *
durable_start (TlspyoTestFixture *fixture)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("tlspyo-durable-XXXXXX", &error);

  g_assert_no_error (error);
  g_object_set (fixture->relay, "state-directory", dir, NULL);
  tlspyo_test_fixture_start (fixture);
  return dir;
}

/* Stops the relay, waits until @ep noticed (bounded), and starts the relay
 * again on the same port and state directory. */
static void
durable_restart (TlspyoTestFixture *fixture,
                 TlspyoEndpoint    *ep)
{
  tlspyo_relay_stop (fixture->relay);
  if (ep != NULL)
    g_assert_true (tlspyo_test_wait_connected_state (ep, FALSE));
  tlspyo_test_fixture_restart (fixture);
}

static void
produce_strings (TlspyoEndpoint *ep,
                 const char     *group,
                 const char     *prefix,
                 guint           first,
                 guint           n)
{
  for (guint i = first; i < first + n; i++)
    {
      g_autofree char *text = g_strdup_printf ("%s%02u", prefix, i);

      tlspyo_test_produce_string (ep, text, group);
    }
}

/* Pops @n objects (bounded) and checks they are PREFIX first .. first+n-1. */
static void
expect_strings (TlspyoEndpoint *ep,
                const char     *prefix,
                guint           first,
                guint           n)
{
  g_autoptr(GPtrArray) objects = tlspyo_test_pop_n (ep, n);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *expected = g_strdup_printf ("%s%02u", prefix, first + i);

      g_assert_cmpstr (g_variant_get_string (objects->pdata[i], NULL), ==, expected);
    }
}

/* Ends a test: endpoints first (with the relay up, so that they leave
 * nothing unacknowledged), then the relay, which frees the folder. */
static void
durable_finish (TlspyoTestFixture *fixture,
                char              *dir)
{
  for (guint i = 0; i < fixture->endpoints->len; i++)
    tlspyo_endpoint_stop (g_ptr_array_index (fixture->endpoints, i));
  tlspyo_relay_stop (fixture->relay);
  if (dir != NULL)
    tlspyo_test_remove_dir (dir);
}

/* Queued objects come back in order after a restart, each consumed once. */
static void
test_queue (TlspyoTestFixture *fixture,
            gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  g_autofree char *db = g_build_filename (dir, TLSPYO_STORE_DATABASE_NAME, NULL);
  TlspyoEndpoint *producer = tlspyo_test_endpoint_start (fixture, "producers");
  TlspyoEndpoint *consumer;

  produce_strings (producer, "work", "o", 0, 20);
  tlspyo_test_flush (producer);  /* acknowledged: committed */
  g_assert_true (g_file_test (db, G_FILE_TEST_IS_REGULAR));

  durable_restart (fixture, producer);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_notify_ready (consumer, "work", 25);
  expect_strings (consumer, "o", 0, 20);
  tlspyo_test_expect_nothing (consumer, 200);

  /* Taken: gone for good, after one more restart too. */
  tlspyo_test_flush (consumer);
  durable_restart (fixture, consumer);
  g_assert_true (tlspyo_test_wait_connected_state (consumer, TRUE));
  produce_strings (producer, "work", "n", 0, 1);
  expect_strings (consumer, "n", 0, 1);
  tlspyo_test_expect_nothing (consumer, 200);

  durable_finish (fixture, dir);
}

/* The latest broadcast comes back with its number: an endpoint that saw it
 * does not get it again, a new one does, and later ones number on. */
static void
test_latest_broadcast (TlspyoTestFixture *fixture,
                       gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  TlspyoEndpoint *broadcaster = tlspyo_test_endpoint_start (fixture, "senders");
  TlspyoEndpoint *seen = tlspyo_test_endpoint_start (fixture, "news");
  TlspyoEndpoint *late;

  for (guint i = 1; i <= 2; i++)
    {
      g_autofree char *text = g_strdup_printf ("b%u", i);

      g_assert_true (tlspyo_endpoint_broadcast (broadcaster, g_variant_new_string (text), "news",
                                                NULL));
    }
  tlspyo_test_flush (broadcaster);
  tlspyo_test_expect_string (seen, "b1");
  tlspyo_test_expect_string (seen, "b2");

  durable_restart (fixture, seen);
  late = tlspyo_test_endpoint_start (fixture, "news");
  tlspyo_test_expect_string (late, "b2");
  g_assert_true (tlspyo_test_wait_connected_state (seen, TRUE));
  g_assert_true (tlspyo_test_wait_connected_state (broadcaster, TRUE));

  /* Had it got b2 again, b2 would come before b3. */
  g_assert_true (tlspyo_endpoint_broadcast (broadcaster, g_variant_new_string ("b3"), "news",
                                            NULL));
  tlspyo_test_expect_string (seen, "b3");
  tlspyo_test_expect_string (late, "b3");
  tlspyo_test_expect_nothing (seen, 100);

  durable_finish (fixture, dir);
}

/* Objects in flight to a consumer's session come back parked: the
 * consumer resumes after the restart and gets those it had not taken, in
 * order; another consumer with credit never gets them. */
static void
test_parked (TlspyoTestFixture *fixture,
             gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  TlspyoEndpoint *producer = tlspyo_test_endpoint_start (fixture, "producers");
  TlspyoEndpoint *a = tlspyo_test_endpoint_start (fixture, "work");
  TlspyoEndpoint *b = tlspyo_test_endpoint_start (fixture, "work");

  produce_strings (producer, "work", "p", 0, 10);
  tlspyo_test_flush (producer);
  tlspyo_test_notify_ready (a, "work", 10);
  /* All ten at a, in flight; the application takes three. */
  tlspyo_test_wait_n_queued (a, 10);
  expect_strings (a, "p", 0, 3);
  tlspyo_test_flush (a);  /* the TAKEN is acknowledged: committed */

  durable_restart (fixture, a);
  tlspyo_test_notify_ready (b, "work", 10);
  g_assert_true (tlspyo_test_wait_connected_state (b, TRUE));
  expect_strings (a, "p", 3, 7);
  tlspyo_test_expect_nothing (a, 100);
  tlspyo_test_expect_nothing (b, 300);

  /* b had credit all along: a new object goes to it. */
  produce_strings (producer, "work", "q", 0, 1);
  expect_strings (b, "q", 0, 1);

  durable_finish (fixture, dir);
}

/* The relay's duplicate detection state comes back: by hand over TCP, a
 * session that sent three objects resumes after the restart at number 3,
 * so an endpoint resends none of them (it resends from the number RESUMED
 * gives: without the state it would be 0, and all three would be queued
 * twice). */

static void
test_dedup_state (TlspyoTestFixture *fixture,
                  gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  guint8 id[TLSPYO_SESSION_ID_SIZE];
  TlspyoEndpoint *consumer;
  guint64 next;
  TlspyoTestRaw *raw;

  tlspyo_auth_random (id, sizeof id);
  raw = tlspyo_test_raw_join (fixture->port, "producers", id);
  next = tlspyo_test_raw_expect_resumed (raw, NULL);
  g_assert_cmpuint (next, ==, 0);
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *text = g_strdup_printf ("d%02u", i);

      tlspyo_test_raw_produce (raw, "work", text);
    }
  tlspyo_test_raw_expect_ack (raw, 3);
  tlspyo_test_raw_free (raw);

  durable_restart (fixture, NULL);
  raw = tlspyo_test_raw_join (fixture->port, "producers", id);
  next = tlspyo_test_raw_expect_resumed (raw, NULL);
  g_assert_cmpuint (next, ==, 3);
  tlspyo_test_raw_free (raw);

  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_notify_ready (consumer, "work", 10);
  expect_strings (consumer, "d", 0, 3);
  tlspyo_test_expect_nothing (consumer, 200);

  durable_finish (fixture, dir);
}

/* Without a state directory the relay writes no file: not in the working
 * folder, not in the user's folders (isolated by the test harness). Its
 * state dies with it, as it always did. */
static gboolean
dir_is_empty_or_missing (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);

  return dir == NULL || g_dir_read_name (dir) == NULL;
}

static void
test_no_state_directory (TlspyoTestFixture *fixture,
                         gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *work = g_dir_make_tmp ("tlspyo-durable-cwd-XXXXXX", &error);
  g_autofree char *state_directory = NULL;
  const char *user_dirs[] = { g_get_user_state_dir (), g_get_user_data_dir (),
                              g_get_user_cache_dir (), g_get_user_config_dir () };
  TlspyoEndpoint *producer, *consumer;

  g_assert_no_error (error);
  g_assert_cmpint (g_chdir (work), ==, 0);
  tlspyo_test_fixture_start (fixture);
  g_object_get (fixture->relay, "state-directory", &state_directory, NULL);
  g_assert_null (state_directory);
  producer = tlspyo_test_endpoint_start (fixture, "producers");
  produce_strings (producer, "work", "m", 0, 3);
  tlspyo_test_flush (producer);

  durable_restart (fixture, producer);
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_notify_ready (consumer, "work", 10);
  tlspyo_test_expect_nothing (consumer, 200);

  durable_finish (fixture, NULL);
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_assert_true (dir_is_empty_or_missing (work));
  for (guint i = 0; i < G_N_ELEMENTS (user_dirs); i++)
    g_assert_true (dir_is_empty_or_missing (user_dirs[i]));
  tlspyo_test_remove_dir (work);
}

/* A commit that fails (here: the file size limit at 0, so that the
 * database cannot grow, as on a full disk) makes the relay stop serving,
 * saying why: nothing of the failed batch is acknowledged. Started again
 * once the cause is gone, it goes on from the state committed last, and
 * the producer's unacknowledged object comes through, once. */

#define COMMIT_FAILURE_WARNING "*could not save its state*"

typedef struct {
  char *reason;
} Refusal;

static void
refused_cb (TlspyoRelay *relay,
            const char  *address,
            TlspyoError  code,
            const char  *reason,
            gpointer     user_data)
{
  Refusal *refusal = user_data;

  if (refusal->reason == NULL && code == TLSPYO_ERROR_FAILED)
    refusal->reason = g_strdup (reason);
}

static gboolean
refusal_seen (gpointer data)
{
  return ((Refusal *) data)->reason != NULL;
}

static void
test_commit_failure (TlspyoTestFixture *fixture,
                     gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  TlspyoEndpoint *producer = tlspyo_test_endpoint_start (fixture, "producers");
  TlspyoEndpoint *consumer;
  g_autoptr(GError) error = NULL;
  struct rlimit saved, limit;
  Refusal refusal = { NULL };
  gulong handler;

  produce_strings (producer, "work", "f", 0, 1);
  tlspyo_test_flush (producer);

  tlspyo_test_log_tolerate (COMMIT_FAILURE_WARNING);
  handler = g_signal_connect (fixture->relay, "endpoint-refused", G_CALLBACK (refused_cb),
                              &refusal);
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  limit = saved;
  limit.rlim_cur = 0;
  signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &limit), ==, 0);

  produce_strings (producer, "work", "f", 1, 1);
  g_assert_true (tlspyo_test_wait_until (refusal_seen, &refusal));
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  g_test_message ("refusal: %s", refusal.reason);
  g_assert_nonnull (strstr (refusal.reason, dir));
  g_assert_nonnull (strstr (refusal.reason, "stopped serving"));
  /* Never acknowledged. */
  g_assert_false (tlspyo_endpoint_flush (producer, 300, &error));
  g_clear_error (&error);
  g_assert_cmpuint (tlspyo_test_log_count (COMMIT_FAILURE_WARNING), ==, 1);
  g_signal_handler_disconnect (fixture->relay, handler);

  durable_restart (fixture, NULL);
  tlspyo_test_flush (producer);  /* resent to the relay that works */
  consumer = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_notify_ready (consumer, "work", 10);
  expect_strings (consumer, "f", 0, 2);
  tlspyo_test_expect_nothing (consumer, 200);

  durable_finish (fixture, dir);
  tlspyo_test_log_reset ();
  g_free (refusal.reason);
}

/* The write gate, alone: while it is closed no byte leaves a connection
 * that uses it, whatever was queued; opening it sends everything waiting,
 * in order; a connection closed while waiting stops waiting (no reference
 * cycle left: ASan would see the leak). */

static gboolean
gate_frame_cb (TlspyoConnection  *conn,
               const TlspyoFrame *frame,
               gpointer           user_data)
{
  return TRUE;
}

static const TlspyoConnectionCallbacks gate_callbacks = { gate_frame_cb, NULL, NULL };

static TlspyoConnection *
gate_connection_new (GSocket **other)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) mine = NULL;
  g_autoptr(GSocketConnection) stream = NULL;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  mine = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  *other = g_socket_new_from_fd (fds[1], &error);
  g_assert_no_error (error);
  g_socket_set_blocking (*other, FALSE);
  stream = g_socket_connection_factory_create_connection (mine);
  return tlspyo_connection_new (G_IO_STREAM (stream), "gate test", &gate_callbacks, NULL);
}

/* Iterates the default context for @ms, then reads what @socket has. */
static gssize
gate_read (GSocket *socket,
           int      ms)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;
  gssize total = 0;
  char buffer[4096];

  while (g_get_monotonic_time () < end)
    {
      gssize n;

      g_main_context_iteration (NULL, FALSE);
      n = g_socket_receive (socket, buffer, sizeof buffer, NULL, NULL);
      if (n > 0)
        total += n;
      g_usleep (1000);
    }
  return total;
}

static void
test_write_gate (void)
{
  TlspyoWriteGate *gate = tlspyo_write_gate_new ();
  g_autoptr(GSocket) other = NULL;
  g_autoptr(GSocket) other2 = NULL;
  TlspyoConnection *conn = gate_connection_new (&other);
  TlspyoConnection *conn2 = gate_connection_new (&other2);

  tlspyo_connection_set_write_gate (conn, gate);
  tlspyo_connection_set_write_gate (conn2, gate);
  g_assert_false (tlspyo_write_gate_is_closed (gate));

  /* Open: frames go. */
  tlspyo_connection_send (conn, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 1), NULL, NULL);
  g_assert_cmpint (gate_read (other, 100), >, 0);

  /* Closed: nothing leaves, from either connection. */
  tlspyo_write_gate_close (gate);
  tlspyo_connection_send (conn, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 2), NULL, NULL);
  tlspyo_connection_send (conn2, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 1), NULL, NULL);
  g_assert_cmpint (gate_read (other, 200), ==, 0);
  g_assert_cmpint (gate_read (other2, 1), ==, 0);
  g_assert_cmpuint (tlspyo_connection_get_queued_bytes (conn), >, 0);

  /* Opened: both go. */
  tlspyo_write_gate_open (gate);
  g_assert_cmpint (gate_read (other, 100), >, 0);
  g_assert_cmpint (gate_read (other2, 1), >, 0);

  /* Closed while a connection waits, then closed itself. */
  tlspyo_write_gate_close (gate);
  tlspyo_connection_send (conn2, TLSPYO_FRAME_ACK, g_variant_new ("(t)", (guint64) 2), NULL, NULL);
  gate_read (other2, 50);
  tlspyo_connection_close (conn2, NULL);
  tlspyo_connection_unref (conn2);
  tlspyo_write_gate_open (gate);
  g_assert_cmpint (gate_read (other2, 50), ==, 0);

  tlspyo_connection_close (conn, NULL);
  tlspyo_connection_unref (conn);
  gate_read (other, 50);  /* lets the streams close */
  tlspyo_write_gate_unref (gate);
}

/* The relay hands out (and a durable one stores) every copy of a produced
 * object on its own: it refuses a frame of more copies than MAX_COPIES
 * (65536), saying why. */

static void
test_many_copies (TlspyoTestFixture *fixture,
                  gconstpointer      data)
{
  g_autofree char *dir = durable_start (fixture);
  TlspyoEndpoint *producer = tlspyo_test_endpoint_start (fixture, "producers");
  TlspyoEndpoint *consumer = tlspyo_test_endpoint_start (fixture, "work");
  TlspyoTestRefusals refusal = { 0 };
  g_autoptr(GError) error = NULL;

  tlspyo_test_log_tolerate ("*refused an action*");
  tlspyo_test_refusals_watch_endpoint (&refusal, producer);
  g_assert_true (tlspyo_endpoint_send_object (producer, g_variant_new_string ("many"),
                                              g_variant_new_parsed ("{'work': 65537}"), &error));
  g_assert_no_error (error);
  g_assert_true (tlspyo_test_wait_until (tlspyo_test_refusals_seen, &refusal));
  g_assert_cmpint (refusal.code, ==, TLSPYO_ERROR_LIMIT);
  g_assert_nonnull (strstr (refusal.reason, "65536"));
  g_assert_true (tlspyo_endpoint_send_object (producer, g_variant_new_string ("c00"),
                                              g_variant_new_parsed ("{'work': 3}"), &error));
  g_assert_no_error (error);
  tlspyo_test_flush (producer);
  tlspyo_test_notify_ready (consumer, "work", 10);
  for (guint i = 0; i < 3; i++)
    tlspyo_test_expect_string (consumer, "c00");
  tlspyo_test_expect_nothing (consumer, 200);

  g_signal_handlers_disconnect_by_data (producer, &refusal);
  tlspyo_test_refusals_clear (&refusal);
  durable_finish (fixture, dir);
  tlspyo_test_log_reset ();
}

/* Parked objects whose endpoint never comes back: their session-timeout
 * starts at the restart, then they go back to the queue, in order, for
 * another consumer. */
static void
test_parked_timeout (TlspyoTestFixture *fixture,
                     gconstpointer      data)
{
  g_autofree char *dir = NULL;
  TlspyoEndpoint *producer, *a, *b;
  gint64 restarted;
  const double timeout = 1.0;

  g_object_set (fixture->relay, "session-timeout", timeout, NULL);
  dir = durable_start (fixture);
  producer = tlspyo_test_endpoint_start (fixture, "producers");
  a = tlspyo_test_endpoint_start (fixture, "work");
  produce_strings (producer, "work", "t", 0, 5);
  tlspyo_test_flush (producer);
  tlspyo_test_notify_ready (a, "work", 5);
  tlspyo_test_wait_n_queued (a, 5);

  /* a goes away for good while the relay is down: no goodbye reaches it. */
  tlspyo_relay_stop (fixture->relay);
  g_assert_true (tlspyo_test_wait_connected_state (a, FALSE));
  tlspyo_endpoint_stop (a);
  restarted = g_get_monotonic_time ();
  tlspyo_test_fixture_restart (fixture);
  b = tlspyo_test_endpoint_start (fixture, "work");
  tlspyo_test_notify_ready (b, "work", 10);
  expect_strings (b, "t", 0, 5);
  g_assert_cmpint (g_get_monotonic_time () - restarted, >=, (gint64) (timeout * G_USEC_PER_SEC));
  tlspyo_test_expect_nothing (b, 100);

  durable_finish (fixture, dir);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  g_test_add_func ("/durable/write-gate", test_write_gate);
  TLSPYO_TEST_ADD ("/durable/queue", test_queue);
  TLSPYO_TEST_ADD ("/durable/latest-broadcast", test_latest_broadcast);
  TLSPYO_TEST_ADD ("/durable/parked", test_parked);
  TLSPYO_TEST_ADD ("/durable/parked-timeout", test_parked_timeout);
  g_test_add ("/durable/dedup-state/tcp", TlspyoTestFixture,
              GINT_TO_POINTER (TLSPYO_SECURITY_NONE), tlspyo_test_fixture_setup_param,
              test_dedup_state, tlspyo_test_fixture_teardown_param);
  g_test_add ("/durable/no-state-directory/tcp", TlspyoTestFixture,
              GINT_TO_POINTER (TLSPYO_SECURITY_NONE), tlspyo_test_fixture_setup_param,
              test_no_state_directory, tlspyo_test_fixture_teardown_param);
  TLSPYO_TEST_ADD ("/durable/commit-failure", test_commit_failure);
  g_test_add ("/durable/many-copies/tcp", TlspyoTestFixture,
              GINT_TO_POINTER (TLSPYO_SECURITY_NONE), tlspyo_test_fixture_setup_param,
              test_many_copies, tlspyo_test_fixture_teardown_param);

  return g_test_run ();
}
