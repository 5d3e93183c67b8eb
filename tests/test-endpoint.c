/* SPDX-License-Identifier: MIT */
/* TlspyoEndpoint's API, and the relay's as endpoints see it, over TLS and
 * plain TCP: objects of every GVariant type, the receive calls and their
 * timeouts, pop_async, object-received and the contexts things happen on,
 * blocking calls from other threads, flush, wait_connected, stop and
 * dispose, and the errors of start(). */
#include <string.h>
#include <glib/gstdio.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-worker-private.h"

#define REFUSAL_WARNINGS "The relay refused this endpoint*"
#define STOP_WARNINGS "Endpoint stopped with * objects*"

static void
broadcast_ints (TlspyoEndpoint *ep,
                const char     *group,
                int             from,
                int             to)
{
  for (int i = from; i < to; i++)
    tlspyo_test_broadcast (ep, g_variant_new_int32 (i), group);
  tlspyo_test_flush (ep);
}

static void
assert_ints (GPtrArray *objects,
             int        from,
             int        to)
{
  g_assert_nonnull (objects);
  g_assert_cmpuint (objects->len, ==, (guint) (to - from));
  for (guint i = 0; i < objects->len; i++)
    {
      g_assert_true (g_variant_is_of_type (objects->pdata[i], G_VARIANT_TYPE_INT32));
      g_assert_cmpint (g_variant_get_int32 (objects->pdata[i]), ==, from + (int) i);
    }
}

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

static gint64
elapsed_ms (gint64 start_us)
{
  return (g_get_monotonic_time () - start_us) / 1000;
}

/* Objects */

static GVariant *
parse (const char *text)
{
  g_autoptr(GError) error = NULL;
  GVariant *v = g_variant_parse (NULL, text, NULL, NULL, &error);

  g_assert_no_error (error);
  return v;
}

static void
test_objects_round_trip (TlspyoTestFixture *f,
                         gconstpointer      data)
{
  static const char *texts[] = {
    "true", "byte 0xff", "int16 -32768", "uint16 65535", "int32 -2147483648",
    "uint32 4294967295", "int64 -9223372036854775808", "uint64 18446744073709551615",
    "handle 3", "3.25", "-0.0", "''", "'héllo ✓'", "objectpath '/org/example/Obj'",
    "signature 'a{sv}'", "<'variant in a variant'>", "<<int64 5>>", "()", "((), ())",
    "(1, 'two', [3.0, 4.5], (true, byte 0x01))",
    "@ay []", "@as []", "@a{sv} {}", "@a(ii) []", "@aay [@ay [], [1, 2]]", "[@as [], ['x']]",
    "b'bytes with a nul'", "[1, 2, 3]", "[(1, 2), (3, 4)]", "{1: 'one', 2: 'two'}",
    "@mi nothing", "@mi 5", "@ms 'x'", "@mms just nothing", "@mms nothing", "@m() ()",
    "[@mi nothing, just 3]",
    ("{'name': <'tlspyo'>, 'nested': <{'deep': <[<1>, <'two'>, <@mb nothing>]>}>, "
     "'empty': <@a{sv} {}>, 'maybe': <@mi nothing>, 'tuple': <(1, 'a')>}"),
  };
  g_autoptr(GPtrArray) sent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GPtrArray) got = NULL;
  TlspyoEndpoint *sender, *receiver;
  gsize big_size = 8 * 1024 * 1024;
  g_autofree guint8 *big = g_malloc (big_size);

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  for (gsize i = 0; i < big_size; i++)
    big[i] = (guint8) (i * 7 + i / 4096);
  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
    g_ptr_array_add (sent, parse (texts[i]));
  g_ptr_array_add (sent, g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                        big, big_size, 1)));
  /* A big array of strings: not fixed-size, with framing offsets. */
  {
    GVariantBuilder b;
    g_variant_builder_init (&b, G_VARIANT_TYPE_STRING_ARRAY);
    for (guint i = 0; i < 20000; i++)
      {
        g_autofree char *s = g_strdup_printf ("string number %u", i);
        g_variant_builder_add (&b, "s", s);
      }
    g_ptr_array_add (sent, g_variant_ref_sink (g_variant_builder_end (&b)));
  }

  for (guint i = 0; i < sent->len; i++)
    tlspyo_test_broadcast (sender, sent->pdata[i], "g");
  tlspyo_test_flush (sender);

  got = tlspyo_test_pop_n (receiver, sent->len);
  for (guint i = 0; i < sent->len; i++)
    {
      /* Also marks it trusted, so that g_variant_equal() compares bytes
       * instead of printing both sides (seconds for 8 MiB). */
      g_assert_true (g_variant_is_normal_form (got->pdata[i]));
      if (!g_variant_equal (sent->pdata[i], got->pdata[i]))
        {
          g_autofree char *a = g_variant_print (sent->pdata[i], TRUE);
          g_autofree char *b = g_variant_print (got->pdata[i], TRUE);
          g_error ("Object %u changed on the way: sent %.200s, received %.200s", i, a, b);
        }
      g_assert_cmpstr (g_variant_get_type_string (sent->pdata[i]), ==,
                       g_variant_get_type_string (got->pdata[i]));
      g_assert_false (g_variant_is_floating (got->pdata[i]));
    }
}

static void
test_objects_floating (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *receiver;
  GVariant *floating, *owned, *dest;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  /* A floating reference is sunk: the caller's extra reference is then a
   * normal one, and nothing leaks (ASan checks). */
  floating = g_variant_new_string ("floating");
  g_variant_ref (floating);
  g_assert_true (g_variant_is_floating (floating));
  tlspyo_test_broadcast (sender, floating, "g");
  g_assert_false (g_variant_is_floating (floating));
  g_variant_unref (floating);

  /* A normal reference stays the caller's. */
  owned = g_variant_ref_sink (g_variant_new_string ("owned"));
  tlspyo_test_broadcast (sender, owned, "g");
  g_assert_cmpstr (g_variant_get_string (owned, NULL), ==, "owned");
  g_variant_unref (owned);

  /* send_object sinks both the object and the destination. */
  floating = g_variant_new_string ("send_object");
  dest = g_variant_new_string ("g");
  g_variant_ref (dest);
  g_assert_true (tlspyo_endpoint_send_object (sender, floating, dest, &error));
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (dest));
  g_variant_unref (dest);

  /* Even when the call fails. */
  floating = g_variant_new_string ("refused");
  dest = g_variant_new_int32 (0);
  g_variant_ref (dest);
  g_assert_false (tlspyo_endpoint_send_object (sender, floating, dest, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (g_variant_is_floating (dest));
  g_variant_unref (dest);
  g_assert_false (tlspyo_endpoint_broadcast (sender, g_variant_new_string ("refused"), "",
                                             &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  tlspyo_test_flush (sender);
  tlspyo_test_expect_string (receiver, "floating");
  tlspyo_test_expect_string (receiver, "owned");
  tlspyo_test_expect_string (receiver, "send_object");
}

/* Receiving */

static void
test_receive_calls (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *receiver;
  GPtrArray *got;
  gint64 start;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  broadcast_ints (sender, "g", 0, 6);
  tlspyo_test_wait_n_queued (receiver, 6);

  /* pop: the oldest, up to max_items */
  got = tlspyo_endpoint_pop (receiver, 2, 0, &error);
  g_assert_no_error (error);
  assert_ints (got, 0, 2);
  g_ptr_array_unref (got);

  /* get_last: the newest max_items, older ones discarded */
  got = tlspyo_endpoint_get_last (receiver, 2, 0, &error);
  g_assert_no_error (error);
  assert_ints (got, 4, 6);
  g_ptr_array_unref (got);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (receiver), ==, 0);

  /* receive_all: everything */
  broadcast_ints (sender, "g", 6, 9);
  tlspyo_test_wait_n_queued (receiver, 3);
  got = tlspyo_endpoint_receive_all (receiver, 0, &error);
  g_assert_no_error (error);
  assert_ints (got, 6, 9);
  g_ptr_array_unref (got);

  /* Fewer than max_items: all there is, at once. */
  broadcast_ints (sender, "g", 9, 12);
  tlspyo_test_wait_n_queued (receiver, 3);
  got = tlspyo_endpoint_get_last (receiver, 5, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  assert_ints (got, 9, 12);
  g_ptr_array_unref (got);
  broadcast_ints (sender, "g", 12, 14);
  tlspyo_test_wait_n_queued (receiver, 2);
  got = tlspyo_endpoint_pop (receiver, 5, -1, &error);
  g_assert_no_error (error);
  assert_ints (got, 12, 14);
  g_ptr_array_unref (got);

  /* Timeout 0 returns at once, empty. */
  start = g_get_monotonic_time ();
  got = tlspyo_endpoint_receive_all (receiver, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);
  got = tlspyo_endpoint_pop (receiver, 1, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);
  got = tlspyo_endpoint_get_last (receiver, 1, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);
  g_assert_cmpint (elapsed_ms (start), <, TLSPYO_TEST_TIMEOUT_MS / 2);

  /* Timeout N returns empty after N ms, not before. */
  start = g_get_monotonic_time ();
  got = tlspyo_endpoint_pop (receiver, 1, 200, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);
  g_assert_cmpint (elapsed_ms (start), >=, 199);
  g_assert_cmpint (elapsed_ms (start), <, TLSPYO_TEST_TIMEOUT_MS);
  start = g_get_monotonic_time ();
  got = tlspyo_endpoint_receive_all (receiver, 100, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);
  g_assert_cmpint (elapsed_ms (start), >=, 99);

  /* A wait ends as soon as one object comes: not at the timeout, not once
   * max_items came. */
  start = g_get_monotonic_time ();
  tlspyo_test_broadcast (sender, g_variant_new_int32 (14), "g");
  got = tlspyo_endpoint_pop (receiver, 3, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  assert_ints (got, 14, 15);
  g_ptr_array_unref (got);
  g_assert_cmpint (elapsed_ms (start), <, TLSPYO_TEST_TIMEOUT_MS / 2);

  /* max_items 0 is an error. */
  g_assert_null (tlspyo_endpoint_pop (receiver, 0, 0, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (tlspyo_endpoint_get_last (receiver, 0, 100, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

static void
test_receive_not_running (TlspyoTestFixture *f,
                          gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep, *sender;
  GPtrArray *got;
  gint64 start = g_get_monotonic_time ();

  /* Never started: waiting could only end by timeout, so it fails at once. */
  ep = tlspyo_test_endpoint_new (f, "g");
  g_assert_null (tlspyo_endpoint_pop (ep, 1, -1, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_null (tlspyo_endpoint_get_last (ep, 1, 1000, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_null (tlspyo_endpoint_receive_all (ep, -1, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (tlspyo_endpoint_wait_connected (ep, -1, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (tlspyo_endpoint_flush (ep, -1, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpint (elapsed_ms (start), <, TLSPYO_TEST_TIMEOUT_MS);
  /* Timeout 0 just looks. */
  got = tlspyo_endpoint_pop (ep, 1, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (got->len, ==, 0);
  g_ptr_array_unref (got);

  /* Stopped with objects queued: they stay and can be taken. */
  tlspyo_test_fixture_start (f);
  g_object_set (ep, "port", f->port, NULL);
  sender = tlspyo_test_endpoint_start (f, "s");
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  broadcast_ints (sender, "g", 0, 2);
  tlspyo_test_wait_n_queued (ep, 2);
  tlspyo_endpoint_stop (ep);
  got = tlspyo_endpoint_pop (ep, 5, -1, &error);
  g_assert_no_error (error);
  assert_ints (got, 0, 2);
  g_ptr_array_unref (got);
  g_assert_null (tlspyo_endpoint_pop (ep, 1, -1, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
}

/* pop_async */

typedef struct {
  gboolean      done;
  GPtrArray    *objects;
  GError       *error;
  GThread      *thread;
  GMainContext *expected_context;
  gboolean      on_expected_context;
} PopResult;

static void
pop_result_clear (PopResult *r)
{
  g_clear_pointer (&r->objects, g_ptr_array_unref);
  g_clear_error (&r->error);
}

static void
pop_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  PopResult *r = user_data;
  g_autoptr(GMainContext) current = g_main_context_ref_thread_default ();

  r->objects = tlspyo_endpoint_pop_finish (TLSPYO_ENDPOINT (source), result, &r->error);
  r->thread = g_thread_self ();
  r->on_expected_context = g_main_context_is_owner (r->expected_context) &&
                           current == r->expected_context;
  r->done = TRUE;
}

static gboolean
pop_done (gpointer data)
{
  return ((PopResult *) data)->done;
}

typedef struct {
  TlspyoEndpoint *ep;
  PopResult       result;
  gint            issued;
} PopThread;

/* Calls pop_async from a thread of its own, with its own context, and runs
 * that context until the callback. */
static gpointer
pop_async_thread (gpointer data)
{
  PopThread *t = data;
  GMainContext *context = g_main_context_new ();
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;

  g_main_context_push_thread_default (context);
  t->result.expected_context = context;
  tlspyo_endpoint_pop_async (t->ep, 5, NULL, pop_done_cb, &t->result);
  g_atomic_int_set (&t->issued, 1);
  while (!t->result.done && g_get_monotonic_time () < deadline)
    {
      GSource *tick = g_timeout_source_new (10);
      g_source_set_callback (tick, tick_cb, NULL, NULL);
      g_source_attach (tick, context);
      g_main_context_iteration (context, TRUE);
      g_source_destroy (tick);
      g_source_unref (tick);
    }
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

static void
wait_atomic (gint *flag)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;

  while (!g_atomic_int_get (flag) && g_get_monotonic_time () < deadline)
    g_usleep (1000);
  g_assert_true (g_atomic_int_get (flag));
}

static void
test_pop_async_arrival (TlspyoTestFixture *f,
                        gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  PopResult r = { 0 };
  PopThread t = { 0 };
  GThread *thread;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  /* On the caller's (default) context, once an object arrives. */
  r.expected_context = g_main_context_default ();
  tlspyo_endpoint_pop_async (receiver, 5, NULL, pop_done_cb, &r);
  g_assert_false (r.done);
  tlspyo_test_broadcast (sender, g_variant_new_int32 (1), "g");
  g_assert_true (tlspyo_test_wait_until (pop_done, &r));
  g_assert_no_error (r.error);
  assert_ints (r.objects, 1, 2);
  g_assert_true (r.thread == g_thread_self ());
  g_assert_true (r.on_expected_context);
  pop_result_clear (&r);

  /* From another thread, on that thread's context, while this one does not
   * iterate anything. */
  t.ep = receiver;
  thread = g_thread_new ("pop-async", pop_async_thread, &t);
  wait_atomic (&t.issued);
  tlspyo_test_broadcast (sender, g_variant_new_int32 (2), "g");
  g_thread_join (thread);
  g_assert_true (t.result.done);
  g_assert_no_error (t.result.error);
  assert_ints (t.result.objects, 2, 3);
  g_assert_true (t.result.thread == thread);
  g_assert_true (t.result.on_expected_context);
  pop_result_clear (&t.result);
}

static void
test_pop_async_queued (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  PopResult r = { 0 };

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");
  broadcast_ints (sender, "g", 0, 3);
  tlspyo_test_wait_n_queued (receiver, 3);

  /* Objects already there: completes without anything new arriving. */
  r.expected_context = g_main_context_default ();
  tlspyo_endpoint_pop_async (receiver, 2, NULL, pop_done_cb, &r);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r));
  g_assert_no_error (r.error);
  assert_ints (r.objects, 0, 2);
  g_assert_true (r.on_expected_context);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (receiver), ==, 1);
  pop_result_clear (&r);

  /* max_items 0 is an error. */
  r = (PopResult) { .expected_context = g_main_context_default () };
  tlspyo_endpoint_pop_async (receiver, 0, NULL, pop_done_cb, &r);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r));
  g_assert_error (r.error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_assert_null (r.objects);
  pop_result_clear (&r);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (receiver), ==, 1);
}

static void
test_pop_async_cancel (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GCancellable) cancelled = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *receiver, *other;
  PopResult r = { 0 }, r2 = { 0 }, r3 = { 0 };
  GPtrArray *got;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  /* Cancelled while waiting. */
  r.expected_context = g_main_context_default ();
  tlspyo_endpoint_pop_async (receiver, 1, cancellable, pop_done_cb, &r);
  g_cancellable_cancel (cancellable);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r));
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (r.objects);
  g_assert_true (r.on_expected_context);
  pop_result_clear (&r);

  /* Cancelled before the call. */
  g_cancellable_cancel (cancelled);
  r2.expected_context = g_main_context_default ();
  tlspyo_endpoint_pop_async (receiver, 1, cancelled, pop_done_cb, &r2);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r2));
  g_assert_error (r2.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  pop_result_clear (&r2);

  /* The cancelled requests took nothing: the next object is queued. */
  broadcast_ints (sender, "g", 7, 8);
  got = tlspyo_endpoint_pop (receiver, 1, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  assert_ints (got, 7, 8);
  g_ptr_array_unref (got);

  /* Stopping the endpoint ends a waiting request with CLOSED, and a request
   * on an endpoint that is not running fails at once. */
  other = tlspyo_test_endpoint_start (f, "h");
  r3.expected_context = g_main_context_default ();
  tlspyo_endpoint_pop_async (other, 1, NULL, pop_done_cb, &r3);
  tlspyo_endpoint_stop (other);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r3));
  g_assert_error (r3.error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  pop_result_clear (&r3);
  r3 = (PopResult) { .expected_context = g_main_context_default () };
  tlspyo_endpoint_pop_async (other, 1, NULL, pop_done_cb, &r3);
  g_assert_true (tlspyo_test_wait_until (pop_done, &r3));
  g_assert_error (r3.error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  pop_result_clear (&r3);
}

/* object-received */

typedef struct {
  GMutex        mutex;
  GPtrArray    *objects;   /* GVariant */
  GPtrArray    *groups;    /* char * */
  GThread      *thread;
  GMainContext *context;
  gboolean      wrong_context;
  gboolean      take_even;
} SignalLog;

static void
signal_log_init (SignalLog *log)
{
  memset (log, 0, sizeof *log);
  g_mutex_init (&log->mutex);
  log->objects = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  log->groups = g_ptr_array_new_with_free_func (g_free);
}

static void
signal_log_clear (SignalLog *log)
{
  g_ptr_array_unref (log->objects);
  g_ptr_array_unref (log->groups);
  g_mutex_clear (&log->mutex);
}

static guint
signal_log_len (SignalLog *log)
{
  guint n;

  g_mutex_lock (&log->mutex);
  n = log->objects->len;
  g_mutex_unlock (&log->mutex);
  return n;
}

static gboolean
object_received_cb (TlspyoEndpoint *ep,
                    GVariant       *object,
                    const char     *group,
                    gpointer        user_data)
{
  SignalLog *log = user_data;
  gboolean take;

  g_mutex_lock (&log->mutex);
  g_ptr_array_add (log->objects, g_variant_ref (object));
  g_ptr_array_add (log->groups, g_strdup (group));
  if (log->thread != NULL && log->thread != g_thread_self ())
    log->wrong_context = TRUE;
  if (log->context != NULL && !g_main_context_is_owner (log->context))
    log->wrong_context = TRUE;
  take = log->take_even && g_variant_get_int32 (object) % 2 == 0;
  g_mutex_unlock (&log->mutex);
  return take;
}

typedef struct {
  TlspyoEndpoint *ep;
  SignalLog      *log;
  guint           expected;
  gint            ready;
  GError         *error;
} StartThread;

/* Starts the endpoint from a thread of its own, with its own context, and
 * runs that context until the expected signals came. */
static gpointer
start_thread (gpointer data)
{
  StartThread *t = data;
  GMainContext *context = g_main_context_new ();
  gint64 deadline = g_get_monotonic_time () + (gint64) TLSPYO_TEST_TIMEOUT_MS * 1000;

  g_main_context_push_thread_default (context);
  g_mutex_lock (&t->log->mutex);
  t->log->thread = g_thread_self ();
  t->log->context = context;
  g_mutex_unlock (&t->log->mutex);

  if (tlspyo_endpoint_start (t->ep, &t->error) &&
      tlspyo_endpoint_wait_connected (t->ep, TLSPYO_TEST_TIMEOUT_MS, &t->error))
    {
      g_atomic_int_set (&t->ready, 1);
      while (signal_log_len (t->log) < t->expected && g_get_monotonic_time () < deadline)
        {
          GSource *tick = g_timeout_source_new (10);
          g_source_set_callback (tick, tick_cb, NULL, NULL);
          g_source_attach (tick, context);
          g_main_context_iteration (context, TRUE);
          g_source_destroy (tick);
          g_source_unref (tick);
        }
    }
  g_atomic_int_set (&t->ready, 1);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

static void
test_signal_context (TlspyoTestFixture *f,
                     gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  SignalLog log;
  StartThread t = { 0 };
  GThread *thread;
  g_autoptr(GPtrArray) queued = NULL;

  signal_log_init (&log);
  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_new (f, "g");
  g_signal_connect (receiver, "object-received", G_CALLBACK (object_received_cb), &log);

  t.ep = receiver;
  t.log = &log;
  t.expected = 3;
  thread = g_thread_new ("starter", start_thread, &t);
  wait_atomic (&t.ready);
  broadcast_ints (sender, "g", 0, 3);
  g_thread_join (thread);
  g_assert_no_error (t.error);

  /* Emitted on the thread that called start(), owning its context. */
  g_assert_cmpuint (log.objects->len, ==, 3);
  g_assert_false (log.wrong_context);
  /* The handler returned FALSE: they were queued too, in order. */
  queued = tlspyo_test_pop_n (receiver, 3);
  assert_ints (queued, 0, 3);

  g_signal_handlers_disconnect_by_data (receiver, &log);
  signal_log_clear (&log);
}

/* A sender in "s" and a receiver in "g1,g2" whose g1 objects go to
 * @log's handler, expected on this thread and its default context. */
static void
detail_setup (TlspyoTestFixture  *f,
              SignalLog          *log,
              TlspyoEndpoint    **sender,
              TlspyoEndpoint    **receiver)
{
  signal_log_init (log);
  log->thread = g_thread_self ();
  log->context = g_main_context_default ();
  tlspyo_test_fixture_start (f);
  *sender = tlspyo_test_endpoint_start (f, "s");
  *receiver = tlspyo_test_endpoint_start (f, "g1,g2");
  g_signal_connect (*receiver, "object-received::g1", G_CALLBACK (object_received_cb), log);
}

static void
test_signal_detail (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  SignalLog log;
  g_autoptr(GPtrArray) got = NULL;

  detail_setup (f, &log, &sender, &receiver);

  tlspyo_test_broadcast (sender, g_variant_new_int32 (0), "g1");
  tlspyo_test_broadcast (sender, g_variant_new_int32 (1), "g2");
  tlspyo_test_broadcast (sender, g_variant_new_int32 (2), "g1");
  tlspyo_test_broadcast (sender, g_variant_new_int32 (3), "g2");
  tlspyo_test_flush (sender);

  got = tlspyo_test_pop_n (receiver, 4);
  assert_ints (got, 0, 4);
  /* Only g1's objects went through the handler. */
  g_assert_cmpuint (log.objects->len, ==, 2);
  g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[0]), ==, 0);
  g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[1]), ==, 2);
  g_assert_cmpstr (log.groups->pdata[0], ==, "g1");
  g_assert_cmpstr (log.groups->pdata[1], ==, "g1");
  g_assert_false (log.wrong_context);

  g_signal_handlers_disconnect_by_data (receiver, &log);
  signal_log_clear (&log);
}

/* Objects of several groups arriving together (one read carries many):
 * whether object-received has a handler is decided for each object's own
 * group, whichever group came first. */
static void
test_signal_detail_burst (TlspyoTestFixture *f,
                          gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  SignalLog log;
  g_autoptr(GPtrArray) got = NULL;

  detail_setup (f, &log, &sender, &receiver);

  /* g2 first: nobody listens to it, but to the g1 objects that follow. */
  for (int i = 0; i < 200; i++)
    tlspyo_test_broadcast (sender, g_variant_new_int32 (i), i % 2 == 0 ? "g2" : "g1");
  tlspyo_test_flush (sender);

  got = tlspyo_test_pop_n (receiver, 200);
  assert_ints (got, 0, 200);
  g_assert_cmpuint (log.objects->len, ==, 100);
  for (guint i = 0; i < log.objects->len; i++)
    {
      g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[i]), ==, 2 * i + 1);
      g_assert_cmpstr (log.groups->pdata[i], ==, "g1");
    }
  g_assert_false (log.wrong_context);

  g_signal_handlers_disconnect_by_data (receiver, &log);
  signal_log_clear (&log);
}

static gboolean
signal_log_has (gpointer data)
{
  SignalLog *log = data;

  return signal_log_len (log) >= 100;
}

static void
test_signal_take_and_order (TlspyoTestFixture *f,
                            gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  SignalLog log;
  g_autoptr(GPtrArray) got = NULL;
  g_autoptr(GPtrArray) rest = NULL;
  g_autoptr(GError) error = NULL;

  signal_log_init (&log);
  log.thread = g_thread_self ();
  log.context = g_main_context_default ();
  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  /* A handler connected while objects flow: the queue keeps their order. */
  for (int i = 0; i < 200; i++)
    {
      tlspyo_test_broadcast (sender, g_variant_new_int32 (i), "g");
      if (i == 100)
        g_signal_connect (receiver, "object-received", G_CALLBACK (object_received_cb), &log);
    }
  tlspyo_test_flush (sender);
  got = tlspyo_test_pop_n (receiver, 200);
  assert_ints (got, 0, 200);
  g_clear_pointer (&got, g_ptr_array_unref);
  for (guint i = 1; i < log.objects->len; i++)
    g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[i]), ==,
                     g_variant_get_int32 (log.objects->pdata[i - 1]) + 1);
  g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[log.objects->len - 1]), ==, 199);
  g_ptr_array_set_size (log.objects, 0);

  /* A handler that returns TRUE takes the object: it is not queued. */
  log.take_even = TRUE;
  broadcast_ints (sender, "g", 0, 100);
  got = tlspyo_test_pop_n (receiver, 50);
  for (guint i = 0; i < got->len; i++)
    g_assert_cmpint (g_variant_get_int32 (got->pdata[i]), ==, 2 * i + 1);
  g_assert_true (tlspyo_test_wait_until (signal_log_has, &log));
  for (guint i = 0; i < log.objects->len; i++)
    g_assert_cmpint (g_variant_get_int32 (log.objects->pdata[i]), ==, i);
  rest = tlspyo_endpoint_receive_all (receiver, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rest->len, ==, 0);

  g_signal_handlers_disconnect_by_data (receiver, &log);
  signal_log_clear (&log);
}

/* Threads */

typedef struct {
  TlspyoEndpoint *ep;
  gboolean        connected;
  GPtrArray      *objects;
  GError         *error;
} BlockingThread;

static gpointer
blocking_pop_thread (gpointer data)
{
  BlockingThread *t = data;

  t->connected = tlspyo_endpoint_wait_connected (t->ep, TLSPYO_TEST_TIMEOUT_MS, &t->error);
  if (t->connected)
    t->objects = tlspyo_endpoint_pop (t->ep, 1, TLSPYO_TEST_TIMEOUT_MS, &t->error);
  return NULL;
}

static gpointer
blocking_flush_thread (gpointer data)
{
  BlockingThread *t = data;

  t->connected = tlspyo_endpoint_flush (t->ep, TLSPYO_TEST_TIMEOUT_MS, &t->error);
  return NULL;
}

static void
test_threads_blocking (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *receiver;
  BlockingThread t = { 0 }, t2 = { 0 }, t3 = { 0 };
  GThread *thread;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_new (f, "g");
  g_assert_true (tlspyo_endpoint_start (receiver, &error));

  /* Another thread waits for the connection, then for an object, while this
   * one, which started the endpoint, iterates nothing. */
  t.ep = receiver;
  thread = g_thread_new ("blocking-pop", blocking_pop_thread, &t);
  g_assert_true (tlspyo_endpoint_wait_connected (receiver, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_usleep (100 * 1000);
  tlspyo_test_broadcast (sender, g_variant_new_int32 (42), "g");
  g_thread_join (thread);
  g_assert_no_error (t.error);
  g_assert_true (t.connected);
  assert_ints (t.objects, 42, 43);
  g_ptr_array_unref (t.objects);

  /* flush from another thread. */
  tlspyo_test_broadcast (receiver, g_variant_new_int32 (1), "s");
  t2.ep = receiver;
  thread = g_thread_new ("blocking-flush", blocking_flush_thread, &t2);
  g_thread_join (thread);
  g_assert_no_error (t2.error);
  g_assert_true (t2.connected);

  /* A wait is ended by stop() from another thread: nothing more can come. */
  t3.ep = receiver;
  thread = g_thread_new ("blocking-pop-stop", blocking_pop_thread, &t3);
  g_usleep (100 * 1000);
  tlspyo_endpoint_stop (receiver);
  g_thread_join (thread);
  g_assert_true (t3.connected);
  g_assert_null (t3.objects);
  g_assert_error (t3.error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
  g_clear_error (&t3.error);
}

#define N_SENDERS 4
#define N_PER_SENDER 250

typedef struct {
  TlspyoEndpoint *ep;
  guint           id;
  gint           *go;
} SenderThread;

static gpointer
sender_thread (gpointer data)
{
  SenderThread *t = data;

  while (!g_atomic_int_get (t->go))
    g_thread_yield ();
  for (guint i = 0; i < N_PER_SENDER; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!tlspyo_endpoint_broadcast (t->ep, g_variant_new ("(uu)", t->id, i), "g", &error))
        g_error ("broadcast failed: %s", error->message);
    }
  return NULL;
}

static void
test_threads_concurrent (TlspyoTestFixture *f,
                         gconstpointer      data)
{
  TlspyoEndpoint *sender, *receiver;
  SenderThread senders[N_SENDERS];
  GThread *threads[N_SENDERS];
  guint next[N_SENDERS] = { 0 };
  g_autoptr(GPtrArray) got = NULL;
  gint go = 0;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  for (guint i = 0; i < N_SENDERS; i++)
    {
      senders[i] = (SenderThread) { sender, i, &go };
      threads[i] = g_thread_new ("sender", sender_thread, &senders[i]);
    }
  g_atomic_int_set (&go, 1);
  for (guint i = 0; i < N_SENDERS; i++)
    g_thread_join (threads[i]);
  tlspyo_test_flush (sender);

  /* Everything arrived, each thread's objects in the order it sent them. */
  got = tlspyo_test_pop_n (receiver, N_SENDERS * N_PER_SENDER);
  for (guint i = 0; i < got->len; i++)
    {
      guint id, seq;

      g_variant_get (got->pdata[i], "(uu)", &id, &seq);
      g_assert_cmpuint (id, <, N_SENDERS);
      g_assert_cmpuint (seq, ==, next[id]);
      next[id]++;
    }
  for (guint i = 0; i < N_SENDERS; i++)
    g_assert_cmpuint (next[i], ==, N_PER_SENDER);
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (receiver), ==, 0);
}

/* flush and wait_connected */

static TlspyoEndpoint *
endpoint_on_dead_port (TlspyoTestFixture *f,
                       const char        *groups)
{
  TlspyoEndpoint *ep = tlspyo_test_endpoint_new (f, groups);

  g_object_set (ep, "port", tlspyo_test_get_dead_port (), NULL);
  return ep;
}

static void
test_flush (TlspyoTestFixture *f,
            gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *receiver, *lonely;
  GPtrArray *got;

  tlspyo_test_log_tolerate (STOP_WARNINGS);
  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  receiver = tlspyo_test_endpoint_start (f, "g");

  /* Nothing sent: flushed at once. */
  g_assert_true (tlspyo_endpoint_flush (sender, 0, &error));
  g_assert_no_error (error);

  /* Once flushed, the relay has routed everything: it is on its way. */
  for (int i = 0; i < 50; i++)
    tlspyo_test_broadcast (sender, g_variant_new_int32 (i), "g");
  g_assert_true (tlspyo_endpoint_flush (sender, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  got = tlspyo_endpoint_receive_all (receiver, TLSPYO_TEST_TIMEOUT_MS, &error);
  g_assert_no_error (error);
  g_ptr_array_unref (got);

  /* No relay there: times out. */
  lonely = endpoint_on_dead_port (f, "g");
  g_assert_true (tlspyo_endpoint_start (lonely, &error));
  tlspyo_test_broadcast (lonely, g_variant_new_int32 (1), "g");
  g_assert_false (tlspyo_endpoint_flush (lonely, 200, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  tlspyo_endpoint_stop (lonely);
  g_assert_cmpuint (tlspyo_test_log_count ("Endpoint stopped with 1 objects*"), ==, 1);
}

static void
test_wait_connected_timeout (TlspyoTestFixture *f,
                             gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;
  gint64 start;

  ep = endpoint_on_dead_port (f, "g");
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  start = g_get_monotonic_time ();
  g_assert_false (tlspyo_endpoint_wait_connected (ep, 300, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT);
  g_assert_cmpint (elapsed_ms (start), >=, 299);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  g_clear_error (&error);

  /* wait_connected(0) only looks. */
  g_assert_false (tlspyo_endpoint_wait_connected (ep, 0, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT);
}

static void
count_cb (gpointer counter)
{
  (*(guint *) counter)++;
}

static void
count_disconnected_cb (GObject    *object,
                       GParamSpec *pspec,
                       gpointer    counter)
{
  if (!tlspyo_endpoint_get_connected (TLSPYO_ENDPOINT (object)))
    (*(guint *) counter)++;
}

static gboolean
idle_done (gpointer data)
{
  return g_get_monotonic_time () >= *(gint64 *) data;
}

static void
test_idle_stays_connected (TlspyoTestFixture *f,
                           gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;
  guint n_left = 0, n_down = 0;
  gint64 until;

  g_signal_connect_swapped (f->relay, "endpoint-disconnected", G_CALLBACK (count_cb), &n_left);
  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_new (f, "g");
  g_object_set (ep, "handshake-timeout", 1, NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  g_signal_connect (ep, "notify::connected", G_CALLBACK (count_disconnected_cb), &n_down);

  /* Silent for longer than the handshake timeout: still the same connection. */
  until = g_get_monotonic_time () + 2500 * 1000;
  g_assert_true (tlspyo_test_wait_until (idle_done, &until));
  g_assert_cmpuint (n_left, ==, 0);
  g_assert_cmpuint (n_down, ==, 0);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 1);
  g_assert_true (tlspyo_endpoint_get_connected (ep));
  tlspyo_test_broadcast (ep, g_variant_new_string ("still here"), "g");
  tlspyo_test_expect_string (ep, "still here");

  g_signal_handlers_disconnect_by_data (f->relay, &n_left);
}

static void
test_handshake_timeout (TlspyoTestFixture *f,
                        gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) mute = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  TlspyoEndpoint *ep;

  /* A "relay" that accepts connections (the kernel does, from the backlog)
   * and never says anything. */
  mute = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_assert_true (g_socket_bind (mute, any, TRUE, &error));
  g_assert_true (g_socket_listen (mute, &error));
  bound = g_socket_get_local_address (mute, &error);
  g_assert_no_error (error);

  ep = tlspyo_test_endpoint_new (f, "g");
  g_object_set (ep,
                "port", g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)),
                "handshake-timeout", 1,
                NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  /* The attempt gives up after handshake-timeout, and says why. */
  g_assert_false (tlspyo_endpoint_wait_connected (ep, 2500, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_TIMED_OUT);
  if (strstr (error->message, "timed out") == NULL)
    g_error ("“%s” does not say the relay did not answer in time", error->message);
  tlspyo_endpoint_stop (ep);
}

static void
test_wrong_password (TlspyoTestFixture *f,
                     gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoTestRefusals log = { 0 };
  TlspyoEndpoint *ep;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_test_refusals_watch_relay (&log, f->relay);
  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_new (f, "g");
  g_object_set (ep, "password", "NotThePassword", NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_AUTHENTICATION);
  g_assert_null (strstr (error->message, "NotThePassword"));
  g_assert_null (strstr (error->message, TLSPYO_TEST_PASSWORD));
  g_assert_false (tlspyo_endpoint_get_connected (ep));

  /* The relay saw it too. */
  g_assert_true (tlspyo_test_wait_until (tlspyo_test_refusals_seen, &log));
  g_assert_cmpint (log.code, ==, TLSPYO_ERROR_AUTHENTICATION);
  g_assert_true (g_str_has_prefix (log.address, "127.0.0.1:"));
  g_assert_null (strstr (log.reason, "NotThePassword"));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);

  g_signal_handlers_disconnect_by_data (f->relay, &log);
  tlspyo_test_refusals_clear (&log);
}

/* stop and dispose */

static void
test_stop_delivers (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *producer, *consumer;
  g_autoptr(GPtrArray) got = NULL;

  tlspyo_test_fixture_start (f);
  consumer = tlspyo_test_endpoint_start (f, "q");
  g_assert_true (tlspyo_endpoint_notify_ready (consumer, "q", 1000, &error));
  tlspyo_test_flush (consumer);
  producer = tlspyo_test_endpoint_start (f, "p");

  for (int i = 0; i < 1000; i++)
    g_assert_true (tlspyo_endpoint_produce (producer, g_variant_new_int32 (i), "q", &error));
  /* No warning may be logged: every object is acknowledged before it closes. */
  tlspyo_endpoint_stop (producer);
  g_assert_false (tlspyo_endpoint_get_connected (producer));

  got = tlspyo_test_pop_n (consumer, 1000);
  assert_ints (got, 0, 1000);
}

static void
test_stop_never_connected (TlspyoTestFixture *f,
                           gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep, *never_started;
  gint64 start;

  tlspyo_test_log_tolerate (STOP_WARNINGS);
  ep = endpoint_on_dead_port (f, "g");
  /* Longer than the test's bound: stop() must not wait for it. */
  g_object_set (ep, "stop-timeout", 3600.0, NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  for (int i = 0; i < 3; i++)
    tlspyo_test_broadcast (ep, g_variant_new_int32 (i), "g");

  start = g_get_monotonic_time ();
  tlspyo_endpoint_stop (ep);
  g_assert_cmpint (elapsed_ms (start), <, TLSPYO_TEST_TIMEOUT_MS);
  g_assert_cmpuint (tlspyo_test_log_count ("Endpoint stopped with 3 objects*"), ==, 1);

  /* Idempotent: no second warning. */
  tlspyo_endpoint_stop (ep);
  g_assert_cmpuint (tlspyo_test_log_count (STOP_WARNINGS), ==, 1);

  /* Never started: nothing to do. */
  never_started = tlspyo_test_endpoint_new (f, "g");
  tlspyo_endpoint_stop (never_started);
  tlspyo_endpoint_stop (never_started);
  g_assert_cmpuint (tlspyo_test_log_count (STOP_WARNINGS), ==, 1);
}

static void
test_stop_restart (TlspyoTestFixture *f,
                   gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *ep;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  ep = tlspyo_test_endpoint_start (f, "g");
  tlspyo_endpoint_stop (ep);
  tlspyo_endpoint_stop (ep);
  g_assert_false (tlspyo_endpoint_get_connected (ep));

  /* It can be started again. */
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  tlspyo_test_broadcast (sender, g_variant_new_string ("again"), "g");
  tlspyo_test_expect_string (ep, "again");
  /* Starting a running endpoint does nothing. */
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_get_connected (ep));
}

static gboolean
no_worker_thread (gpointer data)
{
  return !tlspyo_test_thread_named_exists ("tlspyo-worker");
}

static void
test_dispose_without_stop (TlspyoTestFixture *f,
                           gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GHashTable) before = NULL;
  g_autoptr(GHashTable) after = NULL;
  g_auto(GStrv) groups = g_strsplit ("g", ",", -1);
  TlspyoEndpoint *ep, *other, *sender;
  GHashTableIter iter;
  gpointer tid, comm;

  /* Nothing of ours runs between tests, once a worker that the previous
   * test released from its own thread (detached, not joined) has ended. */
  g_assert_true (tlspyo_test_wait_until (no_worker_thread, NULL));
  before = tlspyo_test_list_threads ();

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  ep = g_object_new (TLSPYO_TYPE_ENDPOINT,
                     "host", "127.0.0.1", "port", f->port,
                     "password", TLSPYO_TEST_PASSWORD, "groups", groups,
                     "security", f->security, "credentials-dir", f->credentials_dir,
                     NULL);
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_no_error (error);
  tlspyo_test_broadcast (sender, g_variant_new_string ("before"), "g");
  tlspyo_test_expect_string (ep, "before");
  /* Something still waiting to go out when it disappears. */
  tlspyo_test_broadcast (ep, g_variant_new_string ("unflushed"), "s");

  /* Disposed connected, without stop(). */
  g_assert_finalize_object (ep);
  tlspyo_test_wait_n_connections (f->relay, 1);

  /* The relay keeps working. */
  other = tlspyo_test_endpoint_start (f, "g");
  tlspyo_test_expect_string (other, "before");
  tlspyo_test_broadcast (sender, g_variant_new_string ("after"), "g");
  tlspyo_test_expect_string (other, "after");

  /* Once nothing uses it, the worker thread is joined. */
  tlspyo_endpoint_stop (other);
  tlspyo_endpoint_stop (sender);
  tlspyo_relay_stop (f->relay);
  g_assert_true (tlspyo_test_wait_until (no_worker_thread, NULL));

  /* And no other thread is left, but GLib's own: its thread pool keeps
   * idle threads for a while (glib-networking's TLS handshakes run there),
   * and GIO's "gmain" worker lives as long as the process once made. */
  after = tlspyo_test_list_threads ();
  g_hash_table_iter_init (&iter, after);
  while (g_hash_table_iter_next (&iter, &tid, &comm))
    if (!g_hash_table_contains (before, tid) && !g_str_has_prefix (comm, "pool") &&
        !g_str_equal (comm, "gmain"))
      g_error ("Thread %s (%s) was left behind", (char *) tid, (char *) comm);
}

typedef struct {
  TlspyoEndpoint *ep;
  gint            go;
  gint            done;
} UnrefOnWorker;

static gboolean
unref_on_worker_cb (gpointer data)
{
  UnrefOnWorker *u = data;

  wait_atomic (&u->go);
  g_object_unref (u->ep);
  g_atomic_int_set (&u->done, 1);
  return G_SOURCE_REMOVE;
}

static gboolean
unreffed_and_no_worker (gpointer data)
{
  UnrefOnWorker *u = data;

  return g_atomic_int_get (&u->done) && !tlspyo_test_thread_named_exists ("tlspyo-worker");
}

static void
test_dispose_on_worker (TlspyoTestFixture *f,
                        gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) groups = g_strsplit ("g", ",", -1);
  UnrefOnWorker u = { 0 };
  TlspyoWorker *worker;

  /* The last reference to the last user of the worker thread may go away on
   * that thread (a GTask finalized there, holding the endpoint): the thread
   * cannot join itself, and must still end and free everything (ASan). */
  g_assert_false (tlspyo_test_thread_named_exists ("tlspyo-worker"));
  u.ep = g_object_new (TLSPYO_TYPE_ENDPOINT,
                       "host", "127.0.0.1", "port", tlspyo_test_get_dead_port (),
                       "password", TLSPYO_TEST_PASSWORD, "groups", groups,
                       "security", f->security, "credentials-dir", f->credentials_dir,
                       "reconnect-initial-delay", 0.05,
                       NULL);
  g_assert_true (tlspyo_endpoint_start (u.ep, &error));
  g_assert_no_error (error);

  worker = tlspyo_worker_get ();
  tlspyo_worker_invoke (worker, unref_on_worker_cb, &u, NULL);
  /* Not the last user: returns without joining. */
  tlspyo_worker_release (worker);
  g_atomic_int_set (&u.go, 1);
  g_assert_true (tlspyo_test_wait_until (unreffed_and_no_worker, &u));
}

/* The relay as endpoints see it */

typedef struct {
  guint  n_connected;
  guint  n_disconnected;
  char  *address;
  char **groups;
  char  *left;
} RelayLog;

static void
relay_connected_cb (TlspyoRelay        *relay,
                    const char         *address,
                    const char * const *groups,
                    gpointer            user_data)
{
  RelayLog *log = user_data;

  log->n_connected++;
  g_free (log->address);
  log->address = g_strdup (address);
  g_strfreev (log->groups);
  log->groups = g_strdupv ((char **) groups);
}

static void
relay_disconnected_cb (TlspyoRelay *relay,
                       const char  *address,
                       gpointer     user_data)
{
  RelayLog *log = user_data;

  log->n_disconnected++;
  g_free (log->left);
  log->left = g_strdup (address);
}

static gboolean
relay_log_connected (gpointer data)
{
  return ((RelayLog *) data)->n_connected > 0;
}

static gboolean
relay_log_disconnected (gpointer data)
{
  return ((RelayLog *) data)->n_disconnected > 0;
}

static void
test_relay_signals (TlspyoTestFixture *f,
                    gconstpointer      data)
{
  RelayLog log = { 0 };
  TlspyoEndpoint *ep;
  const char *expected[] = { "alpha", "beta", NULL };

  g_signal_connect (f->relay, "endpoint-connected", G_CALLBACK (relay_connected_cb), &log);
  g_signal_connect (f->relay, "endpoint-disconnected", G_CALLBACK (relay_disconnected_cb), &log);
  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_start (f, "alpha,beta");

  g_assert_true (tlspyo_test_wait_until (relay_log_connected, &log));
  g_assert_cmpuint (log.n_connected, ==, 1);
  g_assert_true (g_str_has_prefix (log.address, "127.0.0.1:"));
  g_assert_cmpuint (g_ascii_strtoull (log.address + strlen ("127.0.0.1:"), NULL, 10), >, 0);
  g_assert_cmpuint (g_ascii_strtoull (log.address + strlen ("127.0.0.1:"), NULL, 10), !=, f->port);
  g_assert_true (g_strv_equal ((const char * const *) log.groups, expected));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 1);
  g_assert_cmpuint (log.n_disconnected, ==, 0);

  tlspyo_endpoint_stop (ep);
  g_assert_true (tlspyo_test_wait_until (relay_log_disconnected, &log));
  g_assert_cmpuint (log.n_disconnected, ==, 1);
  g_assert_cmpstr (log.left, ==, log.address);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);

  g_signal_handlers_disconnect_by_data (f->relay, &log);
  g_free (log.address);
  g_free (log.left);
  g_strfreev (log.groups);
}

static gboolean
bind_port (guint    port,
           GError **error)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, port);

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
  if (socket == NULL)
    return FALSE;
  /* As a server would: reuse, so that connections in TIME_WAIT do not count. */
  if (!g_socket_bind (socket, address, TRUE, error) || !g_socket_listen (socket, error))
    return FALSE;
  g_socket_close (socket, NULL);
  return TRUE;
}

static void
test_relay_stop (TlspyoTestFixture *f,
                 gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *ep;

  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_start (f, "g");

  /* The port is taken while the relay runs... */
  g_assert_false (bind_port (f->port, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);

  /* ...and free once it stopped; its endpoints see it. */
  tlspyo_relay_stop (f->relay);
  g_assert_true (bind_port (f->port, &error));
  g_assert_no_error (error);
  g_assert_true (tlspyo_test_wait_connected_state (ep, FALSE));
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 0);

  /* Stopping again does nothing. */
  tlspyo_relay_stop (f->relay);
}

/* start() errors */

static void
expect_start_error (TlspyoEndpoint *ep,
                    TlspyoError     code,
                    const char     *fragment)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (tlspyo_endpoint_start (ep, &error));
  g_assert_error (error, TLSPYO_ERROR, (int) code);
  if (fragment != NULL && strstr (error->message, fragment) == NULL)
    g_error ("The error “%s” does not mention “%s”", error->message, fragment);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  g_clear_error (&error);
  /* Not running. */
  g_assert_false (tlspyo_endpoint_wait_connected (ep, 100, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED);
}

static void
test_start_errors (TlspyoTestFixture *f,
                   gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  const char *empty[] = { NULL };
  const char *empty_name[] = { "ok", "", NULL };
  const char *control[] = { "a\001b", NULL };
  const char *good[] = { "g", NULL };
  g_autofree char *no_credentials = g_dir_make_tmp ("tlspyo-test-XXXXXX", NULL);
  g_autofree char *cert_path = g_build_filename (no_credentials, "certificate.pem", NULL);
  TlspyoEndpoint *ep;

  ep = tlspyo_test_endpoint_new (f, "g");
  g_object_set (ep, "groups", NULL, NULL);
  expect_start_error (ep, TLSPYO_ERROR_INVALID_ARGUMENT, "group");
  g_object_set (ep, "groups", empty, NULL);
  expect_start_error (ep, TLSPYO_ERROR_INVALID_ARGUMENT, "group");
  g_object_set (ep, "groups", empty_name, NULL);
  expect_start_error (ep, TLSPYO_ERROR_INVALID_ARGUMENT, "empty");
  g_object_set (ep, "groups", control, NULL);
  expect_start_error (ep, TLSPYO_ERROR_INVALID_ARGUMENT, "control");

  g_object_set (ep, "groups", good, "password", NULL, NULL);
  expect_start_error (ep, TLSPYO_ERROR_INVALID_ARGUMENT, "password");

  g_object_set (ep, "password", TLSPYO_TEST_PASSWORD, "credentials-dir", no_credentials, NULL);
  if (f->security == TLSPYO_SECURITY_TLS)
    {
      /* The message names the file and the command that makes it. */
      expect_start_error (ep, TLSPYO_ERROR_CREDENTIALS, cert_path);
      g_clear_error (&error);
      g_assert_false (tlspyo_endpoint_start (ep, &error));
      g_assert_nonnull (strstr (error->message, "tlspyo credentials generate"));
    }
  else
    {
      /* Plain TCP needs no certificate. */
      g_assert_true (tlspyo_endpoint_start (ep, &error));
      g_assert_no_error (error);
      tlspyo_endpoint_stop (ep);
    }
  g_rmdir (no_credentials);
}

static void
expect_relay_start_error (TlspyoRelay *relay,
                          TlspyoError  code,
                          const char  *fragment)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (tlspyo_relay_start (relay, &error));
  g_assert_error (error, TLSPYO_ERROR, (int) code);
  if (fragment != NULL && strstr (error->message, fragment) == NULL)
    g_error ("The error “%s” does not mention “%s”", error->message, fragment);
  g_assert_cmpuint (tlspyo_relay_get_n_connections (relay), ==, 0);
  /* Stopping a relay that failed to start is harmless. */
  tlspyo_relay_stop (relay);
}

static TlspyoRelay *
relay_like (TlspyoTestFixture *f,
            const char        *address,
            guint              port)
{
  return g_object_new (TLSPYO_TYPE_RELAY,
                       "port", port, "address", address,
                       "password", TLSPYO_TEST_PASSWORD, "security", f->security,
                       "credentials-dir", f->credentials_dir,
                       NULL);
}

static void
test_relay_start_errors (TlspyoTestFixture *f,
                         gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *port_text = NULL;
  TlspyoRelay *relay;
  TlspyoEndpoint *ep;

  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_start (f, "g");

  /* Port in use: the message names it. */
  port_text = g_strdup_printf ("%u", f->port);
  relay = relay_like (f, "127.0.0.1", f->port);
  expect_relay_start_error (relay, TLSPYO_ERROR_NETWORK, port_text);
  g_assert_finalize_object (relay);

  /* Not an IP address. */
  relay = relay_like (f, "not an address", 0);
  expect_relay_start_error (relay, TLSPYO_ERROR_INVALID_ARGUMENT, "not an address");
  g_assert_finalize_object (relay);

  /* No password. */
  relay = relay_like (f, "127.0.0.1", 0);
  g_object_set (relay, "password", NULL, NULL);
  expect_relay_start_error (relay, TLSPYO_ERROR_INVALID_ARGUMENT, "password");
  g_assert_finalize_object (relay);

  if (f->security == TLSPYO_SECURITY_TLS)
    {
      /* Missing key.pem: the message names it. */
      g_autofree char *dir = tlspyo_test_make_credentials ();
      g_autofree char *key = g_build_filename (dir, "key.pem", NULL);

      g_assert_cmpint (g_unlink (key), ==, 0);
      relay = relay_like (f, "127.0.0.1", 0);
      g_object_set (relay, "credentials-dir", dir, NULL);
      expect_relay_start_error (relay, TLSPYO_ERROR_CREDENTIALS, key);
      g_assert_finalize_object (relay);
      tlspyo_test_remove_dir (dir);
    }
  else
    {
      /* Plain TCP needs no credentials. */
      relay = relay_like (f, "127.0.0.1", 0);
      g_object_set (relay, "credentials-dir", "/nonexistent/tlspyo", NULL);
      g_assert_true (tlspyo_relay_start (relay, &error));
      g_assert_no_error (error);
      tlspyo_relay_stop (relay);
      g_assert_finalize_object (relay);
    }

  /* The first relay was not disturbed. */
  tlspyo_test_broadcast (ep, g_variant_new_string ("still here"), "g");
  tlspyo_test_expect_string (ep, "still here");
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  TLSPYO_TEST_ADD ("/endpoint/objects/round-trip", test_objects_round_trip);
  TLSPYO_TEST_ADD ("/endpoint/objects/floating", test_objects_floating);
  TLSPYO_TEST_ADD ("/endpoint/receive/calls", test_receive_calls);
  TLSPYO_TEST_ADD ("/endpoint/receive/not-running", test_receive_not_running);
  TLSPYO_TEST_ADD ("/endpoint/pop-async/arrival", test_pop_async_arrival);
  TLSPYO_TEST_ADD ("/endpoint/pop-async/queued", test_pop_async_queued);
  TLSPYO_TEST_ADD ("/endpoint/pop-async/cancel", test_pop_async_cancel);
  TLSPYO_TEST_ADD ("/endpoint/signal/context", test_signal_context);
  TLSPYO_TEST_ADD ("/endpoint/signal/detail", test_signal_detail);
  TLSPYO_TEST_ADD ("/endpoint/signal/detail-burst", test_signal_detail_burst);
  TLSPYO_TEST_ADD ("/endpoint/signal/take-and-order", test_signal_take_and_order);
  TLSPYO_TEST_ADD ("/endpoint/threads/blocking", test_threads_blocking);
  TLSPYO_TEST_ADD ("/endpoint/threads/concurrent-broadcast", test_threads_concurrent);
  TLSPYO_TEST_ADD ("/endpoint/flush", test_flush);
  TLSPYO_TEST_ADD ("/endpoint/wait-connected/timeout", test_wait_connected_timeout);
  TLSPYO_TEST_ADD ("/endpoint/wait-connected/wrong-password", test_wrong_password);
  TLSPYO_TEST_ADD ("/endpoint/wait-connected/handshake-timeout", test_handshake_timeout);
  TLSPYO_TEST_ADD ("/endpoint/idle-stays-connected", test_idle_stays_connected);
  TLSPYO_TEST_ADD ("/endpoint/stop/delivers", test_stop_delivers);
  TLSPYO_TEST_ADD ("/endpoint/stop/never-connected", test_stop_never_connected);
  TLSPYO_TEST_ADD ("/endpoint/stop/restart", test_stop_restart);
  TLSPYO_TEST_ADD ("/endpoint/dispose/without-stop", test_dispose_without_stop);
  TLSPYO_TEST_ADD ("/endpoint/dispose/on-worker-thread", test_dispose_on_worker);
  TLSPYO_TEST_ADD ("/endpoint/relay/signals", test_relay_signals);
  TLSPYO_TEST_ADD ("/endpoint/relay/stop", test_relay_stop);
  TLSPYO_TEST_ADD ("/endpoint/start-errors", test_start_errors);
  TLSPYO_TEST_ADD ("/endpoint/relay/start-errors", test_relay_start_errors);

  return g_test_run ();
}
