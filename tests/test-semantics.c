/* SPDX-License-Identifier: MIT */
/* tlspyo's group semantics end to end, through a real relay, over TLS and
 * plain TCP: broadcast and the latest broadcast, produce/notify_ready with
 * credit and fairness, several destination groups, accepted groups, and
 * what happens to sends while the connection is not up. */
#include "tlspyo-test-utils.h"

#define REFUSAL_WARNINGS "The relay refused this endpoint*"

static GVariant *
str (const char *s)
{
  return g_variant_new_string (s);
}

/* Checks that the @n next objects of @ep are the strings of @expected, in order. */
static void
expect_strings (TlspyoEndpoint     *ep,
                const char * const *expected)
{
  guint n = g_strv_length ((char **) expected);
  g_autoptr(GPtrArray) got = tlspyo_test_pop_n (ep, n);

  for (guint i = 0; i < n; i++)
    {
      g_assert_true (g_variant_is_of_type (got->pdata[i], G_VARIANT_TYPE_STRING));
      g_assert_cmpstr (g_variant_get_string (got->pdata[i], NULL), ==, expected[i]);
    }
}

#define EXPECT(ep, ...) expect_strings ((ep), (const char *[]) { __VA_ARGS__, NULL })

/* A broadcast to @group from @sender, flushed, arrives at @ep first: what @ep
 * received before it was sent must have been received already. Used to
 * check that nothing else arrived without waiting for a fixed time. */
static void
expect_only_sentinel (TlspyoEndpoint *ep,
                      TlspyoEndpoint *sender,
                      const char     *group)
{
  tlspyo_test_broadcast_string (sender, "sentinel", group);
  tlspyo_test_flush (sender);
  tlspyo_test_expect_string (ep, "sentinel");
}

/* 1. Broadcast */

static void
test_broadcast_members (TlspyoTestFixture *f,
                        gconstpointer      data)
{
  TlspyoEndpoint *a1, *a2, *b, *sender;

  tlspyo_test_fixture_start (f);
  a1 = tlspyo_test_endpoint_start (f, "a");
  a2 = tlspyo_test_endpoint_start (f, "a,c");
  b = tlspyo_test_endpoint_start (f, "b");
  sender = tlspyo_test_endpoint_start (f, "a");

  tlspyo_test_broadcast_string (sender, "to a", "a");
  tlspyo_test_flush (sender);
  tlspyo_test_expect_string (a1, "to a");
  tlspyo_test_expect_string (a2, "to a");
  /* The sender is a member: it gets its own broadcast. */
  tlspyo_test_expect_string (sender, "to a");

  /* The endpoint of another group got nothing: the next thing it gets is a
   * broadcast to its own group sent after. */
  tlspyo_test_broadcast_string (sender, "to b", "b");
  tlspyo_test_flush (sender);
  tlspyo_test_expect_string (b, "to b");
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (b), ==, 0);

  /* Nor did members of "a" get "to b". */
  expect_only_sentinel (a1, sender, "a");
  tlspyo_test_expect_string (a2, "sentinel");
  tlspyo_test_expect_string (sender, "sentinel");
}

static void
test_broadcast_latest (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  TlspyoEndpoint *sender, *late, *late_other, *member;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  member = tlspyo_test_endpoint_start (f, "g");

  tlspyo_test_broadcast_string (sender, "first", "g");
  tlspyo_test_broadcast_string (sender, "second", "g");
  tlspyo_test_broadcast_string (sender, "other", "h");
  tlspyo_test_flush (sender);
  EXPECT (member, "first", "second");

  /* A member that joins later gets the latest broadcast of each of its
   * groups, and only the latest. */
  late = tlspyo_test_endpoint_start (f, "g");
  tlspyo_test_expect_string (late, "second");
  expect_only_sentinel (late, sender, "g");

  late_other = tlspyo_test_endpoint_start (f, "h,g");
  {
    g_autoptr(GPtrArray) got = tlspyo_test_pop_n (late_other, 2);
    const char *x = g_variant_get_string (got->pdata[0], NULL);
    const char *y = g_variant_get_string (got->pdata[1], NULL);

    /* One per group, in no promised order. */
    g_assert_true ((g_str_equal (x, "other") && g_str_equal (y, "sentinel")) ||
                   (g_str_equal (x, "sentinel") && g_str_equal (y, "other")));
  }
  expect_only_sentinel (late_other, sender, "g");
}

/* 2. Produce and notify_ready */

static void
test_produce_fifo (TlspyoTestFixture *f,
                   gconstpointer      data)
{
  TlspyoEndpoint *producer, *consumer;

  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  consumer = tlspyo_test_endpoint_start (f, "q");

  for (guint i = 0; i < 5; i++)
    {
      g_autofree char *text = g_strdup_printf ("item %u", i);
      tlspyo_test_produce_string (producer, text, "q");
    }
  tlspyo_test_flush (producer);
  /* Nothing without credit. */
  expect_only_sentinel (consumer, producer, "q");

  /* Credit of 2: the two oldest, in order. */
  tlspyo_test_notify_ready (consumer, "q", 2);
  EXPECT (consumer, "item 0", "item 1");
  expect_only_sentinel (consumer, producer, "q");

  /* Credit adds up: 1 + 1 take the next two. */
  tlspyo_test_notify_ready (consumer, "q", 1);
  tlspyo_test_notify_ready (consumer, "q", 1);
  EXPECT (consumer, "item 2", "item 3");

  /* Credit left over waits for the next produce, and runs out. */
  tlspyo_test_notify_ready (consumer, "q", 3);
  EXPECT (consumer, "item 4");
  tlspyo_test_produce_string (producer, "item 5", "q");
  EXPECT (consumer, "item 5");
  tlspyo_test_produce_string (producer, "item 6", "q");
  tlspyo_test_produce_string (producer, "item 7", "q");
  EXPECT (consumer, "item 6");
  expect_only_sentinel (consumer, producer, "q");
  tlspyo_test_notify_ready (consumer, "q", 1);
  EXPECT (consumer, "item 7");
}

static void
test_produce_fair (TlspyoTestFixture *f,
                   gconstpointer      data)
{
  TlspyoEndpoint *producer, *c1, *c2;
  g_autoptr(GPtrArray) got1 = NULL;
  g_autoptr(GPtrArray) got2 = NULL;

  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  c1 = tlspyo_test_endpoint_start (f, "q");
  c2 = tlspyo_test_endpoint_start (f, "q");

  /* c1 registers first, with credit for everything. */
  tlspyo_test_notify_ready (c1, "q", 3);
  tlspyo_test_flush (c1);
  tlspyo_test_notify_ready (c2, "q", 3);
  tlspyo_test_flush (c2);

  for (guint i = 0; i < 6; i++)
    {
      g_autofree char *text = g_strdup_printf ("item %u", i);
      tlspyo_test_produce_string (producer, text, "q");
    }
  tlspyo_test_flush (producer);

  /* Served in turn, not all to the first registered. */
  got1 = tlspyo_test_pop_n (c1, 3);
  got2 = tlspyo_test_pop_n (c2, 3);
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *even = g_strdup_printf ("item %u", 2 * i);
      g_autofree char *odd = g_strdup_printf ("item %u", 2 * i + 1);

      g_assert_cmpstr (g_variant_get_string (got1->pdata[i], NULL), ==, even);
      g_assert_cmpstr (g_variant_get_string (got2->pdata[i], NULL), ==, odd);
    }
}

static void
test_produce_notify_all (TlspyoTestFixture *f,
                         gconstpointer      data)
{
  TlspyoEndpoint *producer, *consumer, *other;

  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  consumer = tlspyo_test_endpoint_start (f, "q");
  other = tlspyo_test_endpoint_start (f, "q");

  tlspyo_test_produce_string (producer, "x", "q");
  tlspyo_test_produce_string (producer, "y", "q");
  tlspyo_test_produce_string (producer, "z", "q");
  tlspyo_test_flush (producer);

  /* count < 0: everything queued now... */
  tlspyo_test_notify_ready (consumer, "q", -1);
  EXPECT (consumer, "x", "y", "z");

  /* ...and no lasting credit: the next one waits for someone to ask. */
  tlspyo_test_produce_string (producer, "later", "q");
  tlspyo_test_flush (producer);
  expect_only_sentinel (consumer, producer, "q");
  tlspyo_test_notify_ready (other, "q", 1);
  tlspyo_test_expect_string (other, "sentinel");
  tlspyo_test_expect_string (other, "later");

  /* On an empty queue it takes nothing and leaves no credit either. */
  tlspyo_test_notify_ready (consumer, "q", -1);
  tlspyo_test_flush (consumer);
  tlspyo_test_produce_string (producer, "after", "q");
  tlspyo_test_flush (producer);
  expect_only_sentinel (consumer, producer, "q");
  tlspyo_test_notify_ready (consumer, "q", -1);
  tlspyo_test_expect_string (consumer, "after");
}

static void
test_produce_notify_other_group (TlspyoTestFixture *f,
                                 gconstpointer      data)
{
  TlspyoEndpoint *producer, *outsider, *member;

  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  outsider = tlspyo_test_endpoint_start (f, "a");

  tlspyo_test_produce_string (producer, "for q", "q");
  tlspyo_test_flush (producer);
  /* Not a member of q: ignored, and it stays connected. */
  tlspyo_test_notify_ready (outsider, "q", 5);
  tlspyo_test_notify_ready (outsider, "q", -1);
  tlspyo_test_flush (outsider);
  tlspyo_test_produce_string (producer, "for q again", "q");
  tlspyo_test_flush (producer);
  expect_only_sentinel (outsider, producer, "a");
  g_assert_true (tlspyo_endpoint_get_connected (outsider));

  /* The objects are still queued for a real member. */
  member = tlspyo_test_endpoint_start (f, "q");
  tlspyo_test_notify_ready (member, "q", 2);
  EXPECT (member, "for q", "for q again");
}

static void
test_produce_waits_for_consumer (TlspyoTestFixture *f,
                                 gconstpointer      data)
{
  TlspyoEndpoint *producer, *consumer;

  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  tlspyo_test_produce_string (producer, "one", "q");
  tlspyo_test_produce_string (producer, "two", "q");
  tlspyo_test_flush (producer);

  /* The consumer connects and asks only now. */
  consumer = tlspyo_test_endpoint_start (f, "q");
  tlspyo_test_expect_nothing (consumer, 100);
  tlspyo_test_notify_ready (consumer, "q", 1);
  EXPECT (consumer, "one");
  tlspyo_test_notify_ready (consumer, "q", 1);
  EXPECT (consumer, "two");
}

/* 3. Several destination groups */

typedef struct {
  GPtrArray *groups;
} GroupLog;

static gboolean
record_group_cb (TlspyoEndpoint *ep,
                 GVariant       *object,
                 const char     *group,
                 gpointer        user_data)
{
  GroupLog *log = user_data;

  g_ptr_array_add (log->groups, g_strdup (group));
  return FALSE;
}

static void
test_send_object_groups (TlspyoTestFixture *f,
                         gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *ab, *consumer;
  GroupLog log = { g_ptr_array_new_with_free_func (g_free) };
  const char *as[] = { "a", "b", NULL };
  GVariantBuilder dict;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  ab = tlspyo_test_endpoint_start (f, "a,b");
  consumer = tlspyo_test_endpoint_start (f, "q");
  g_signal_connect (ab, "object-received", G_CALLBACK (record_group_cb), &log);

  /* s: broadcast to one group */
  g_assert_true (tlspyo_endpoint_send_object (sender, str ("one group"), str ("a"), &error));
  g_assert_no_error (error);
  EXPECT (ab, "one group");

  /* as: one copy per group the endpoint is in */
  g_assert_true (tlspyo_endpoint_send_object (sender, str ("as"), g_variant_new_strv (as, -1),
                                              &error));
  g_assert_no_error (error);
  EXPECT (ab, "as", "as");

  /* a{si}: negative broadcasts, positive produces that many copies */
  g_variant_builder_init (&dict, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&dict, "{si}", "a", -1);
  g_variant_builder_add (&dict, "{si}", "b", -5);
  g_variant_builder_add (&dict, "{si}", "q", 3);
  g_assert_true (tlspyo_endpoint_send_object (sender, str ("dict"),
                                              g_variant_builder_end (&dict), &error));
  g_assert_no_error (error);
  tlspyo_test_flush (sender);
  EXPECT (ab, "dict", "dict");
  tlspyo_test_notify_ready (consumer, "q", -1);
  EXPECT (consumer, "dict", "dict", "dict");
  expect_only_sentinel (consumer, sender, "q");

  /* The copies came through each group: a, then a and b, then a and b. */
  g_assert_cmpuint (log.groups->len, ==, 5);
  g_assert_cmpstr (log.groups->pdata[0], ==, "a");
  for (guint i = 1; i < 5; i += 2)
    {
      g_assert_true ((g_str_equal (log.groups->pdata[i], "a") &&
                      g_str_equal (log.groups->pdata[i + 1], "b")) ||
                     (g_str_equal (log.groups->pdata[i], "b") &&
                      g_str_equal (log.groups->pdata[i + 1], "a")));
    }
  g_signal_handlers_disconnect_by_data (ab, &log);
  g_ptr_array_unref (log.groups);
}

static void
expect_invalid_destination (TlspyoEndpoint *sender,
                            GVariant       *destination)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) dest = g_variant_ref_sink (destination);

  g_assert_false (tlspyo_endpoint_send_object (sender, str ("must not arrive"), dest, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (error->message);
}

static void
test_send_object_invalid (TlspyoTestFixture *f,
                          gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *member;
  const char *with_empty[] = { "a", "", NULL };
  const char *none[] = { NULL };
  GVariantBuilder dict;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  member = tlspyo_test_endpoint_start (f, "a");

  /* A count of 0, after a valid entry: nothing at all is sent. */
  g_variant_builder_init (&dict, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&dict, "{si}", "a", -1);
  g_variant_builder_add (&dict, "{si}", "a", 0);
  expect_invalid_destination (sender, g_variant_builder_end (&dict));

  g_variant_builder_init (&dict, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&dict, "{si}", "a", -1);
  g_variant_builder_add (&dict, "{si}", "", 2);
  expect_invalid_destination (sender, g_variant_builder_end (&dict));

  expect_invalid_destination (sender, g_variant_new ("a{si}", NULL));
  expect_invalid_destination (sender, g_variant_new_int32 (3));
  expect_invalid_destination (sender, g_variant_new ("a{sv}", NULL));
  expect_invalid_destination (sender, str (""));
  expect_invalid_destination (sender, str ("a\nb"));
  expect_invalid_destination (sender, g_variant_new_strv (with_empty, -1));
  expect_invalid_destination (sender, g_variant_new_strv (none, -1));

  /* Same rules for broadcast, produce and notify_ready. */
  g_assert_false (tlspyo_endpoint_broadcast (sender, str ("x"), "", &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (tlspyo_endpoint_produce (sender, str ("x"), "", &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (tlspyo_endpoint_notify_ready (sender, "a", 0, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Nothing reached the member, and the sender is still fine. */
  expect_only_sentinel (member, sender, "a");
  g_assert_true (tlspyo_endpoint_get_connected (sender));
}

/* 4. Accepted groups */

static void
expect_refused (TlspyoEndpoint *ep,
                const char     *fragment)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (tlspyo_endpoint_wait_connected (ep, TLSPYO_TEST_TIMEOUT_MS, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
  if (strstr (error->message, fragment) == NULL)
    g_error ("The refusal “%s” does not mention “%s”", error->message, fragment);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
}

static void
test_accept_undeclared (TlspyoTestFixture *f,
                        gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoTestRefusals log = { 0 };
  TlspyoEndpoint *ok, *bad, *mixed;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_relay_accept_group (f->relay, "ok", -1, -1);
  tlspyo_test_refusals_watch_relay (&log, f->relay);
  tlspyo_test_fixture_start (f);
  ok = tlspyo_test_endpoint_start (f, "ok");

  bad = tlspyo_test_endpoint_new (f, "nope");
  g_assert_true (tlspyo_endpoint_start (bad, &error));
  expect_refused (bad, "nope");
  g_assert_true (tlspyo_test_wait_until (tlspyo_test_refusals_seen, &log));
  g_assert_cmpint (log.code, ==, TLSPYO_ERROR_GROUP_REFUSED);
  g_assert_nonnull (strstr (log.reason, "nope"));

  /* One refused group refuses the endpoint, even with accepted ones. */
  mixed = tlspyo_test_endpoint_new (f, "ok,nope2");
  g_assert_true (tlspyo_endpoint_start (mixed, &error));
  expect_refused (mixed, "nope2");

  /* The accepted endpoint works; the refused ones never got in. */
  tlspyo_test_broadcast_string (ok, "hello", "ok");
  tlspyo_test_expect_string (ok, "hello");
  g_assert_cmpuint (tlspyo_relay_get_n_connections (f->relay), ==, 1);

  g_signal_handlers_disconnect_by_data (f->relay, &log);
  tlspyo_test_refusals_clear (&log);
}

/* TRUE once more refusals than *data were logged. */
static gboolean
refused_again (gpointer data)
{
  return tlspyo_test_log_count (REFUSAL_WARNINGS) > *(guint *) data;
}

static void
test_accept_max_count (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *first, *second, *sender;
  guint n_refusals = 0;

  tlspyo_test_log_tolerate (REFUSAL_WARNINGS);
  tlspyo_relay_accept_group (f->relay, "solo", 1, -1);
  tlspyo_relay_accept_group (f->relay, "s", -1, -1);
  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  first = tlspyo_test_endpoint_start (f, "solo");

  second = tlspyo_test_endpoint_new (f, "solo");
  g_assert_true (tlspyo_endpoint_start (second, &error));
  expect_refused (second, "full");

  /* It keeps retrying with backoff (the fixture's is short)... */
  g_assert_true (tlspyo_test_wait_until (refused_again, &n_refusals));
  n_refusals = tlspyo_test_log_count (REFUSAL_WARNINGS);
  g_assert_true (tlspyo_test_wait_until (refused_again, &n_refusals));
  g_assert_false (tlspyo_endpoint_get_connected (second));

  /* ...and gets in once the first one leaves. */
  tlspyo_endpoint_stop (first);
  g_assert_true (tlspyo_test_wait_connected_state (second, TRUE));
  g_assert_true (tlspyo_endpoint_wait_connected (second, 0, &error));
  g_assert_no_error (error);
  tlspyo_test_broadcast_string (sender, "you are in", "solo");
  tlspyo_test_expect_string (second, "you are in");
}

static void
test_accept_drop_undeclared (TlspyoTestFixture *f,
                             gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *member, *late;
  GVariantBuilder dict;

  tlspyo_relay_accept_group (f->relay, "ok", -1, -1);
  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "ok");
  member = tlspyo_test_endpoint_start (f, "ok");

  tlspyo_test_broadcast_string (sender, "dropped", "nope");
  tlspyo_test_produce_string (sender, "dropped", "nope");
  g_variant_builder_init (&dict, G_VARIANT_TYPE ("a{si}"));
  g_variant_builder_add (&dict, "{si}", "nope", -1);
  g_variant_builder_add (&dict, "{si}", "nope", 4);
  g_assert_true (tlspyo_endpoint_send_object (sender, str ("dropped"),
                                              g_variant_builder_end (&dict), &error));
  g_assert_no_error (error);
  tlspyo_test_flush (sender);

  /* The relay keeps serving the sender and everyone else. */
  expect_only_sentinel (member, sender, "ok");
  tlspyo_test_expect_string (sender, "sentinel");
  g_assert_true (tlspyo_endpoint_get_connected (sender));

  /* Dropped, not kept: once the group is accepted, a member that joins gets
   * no latest broadcast and no queued object from before. */
  tlspyo_relay_accept_group (f->relay, "nope", -1, -1);
  late = tlspyo_test_endpoint_start (f, "nope");
  tlspyo_test_notify_ready (late, "nope", -1);
  tlspyo_test_flush (late);
  expect_only_sentinel (late, sender, "nope");
}

static void
test_accept_max_consumables (TlspyoTestFixture *f,
                             gconstpointer      data)
{
  TlspyoEndpoint *producer, *consumer;

  tlspyo_relay_accept_group (f->relay, "q", -1, 3);
  tlspyo_relay_accept_group (f->relay, "p", -1, -1);
  tlspyo_test_fixture_start (f);
  producer = tlspyo_test_endpoint_start (f, "p");
  consumer = tlspyo_test_endpoint_start (f, "q");

  for (guint i = 0; i < 6; i++)
    {
      g_autofree char *text = g_strdup_printf ("item %u", i);
      tlspyo_test_produce_string (producer, text, "q");
    }
  tlspyo_test_flush (producer);

  /* The queue holds 3: the oldest were dropped. */
  tlspyo_test_notify_ready (consumer, "q", -1);
  EXPECT (consumer, "item 3", "item 4", "item 5");
  expect_only_sentinel (consumer, producer, "q");

  /* A consumer with credit is served before anything is dropped. */
  tlspyo_test_notify_ready (consumer, "q", 1);
  tlspyo_test_flush (consumer);
  for (guint i = 6; i < 11; i++)
    {
      g_autofree char *text = g_strdup_printf ("item %u", i);
      tlspyo_test_produce_string (producer, text, "q");
    }
  tlspyo_test_flush (producer);
  EXPECT (consumer, "item 6");
  tlspyo_test_notify_ready (consumer, "q", 10);
  EXPECT (consumer, "item 8", "item 9", "item 10");
}

/* 5. Sends while the connection is not up, reconnection */

static void
test_send_before_connected (TlspyoTestFixture *f,
                            gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  TlspyoEndpoint *sender, *member, *consumer;

  tlspyo_test_fixture_start (f);
  member = tlspyo_test_endpoint_start (f, "g");
  consumer = tlspyo_test_endpoint_start (f, "q");

  /* Sent before start(): kept, in order, with the notifications. */
  sender = tlspyo_test_endpoint_new (f, "s");
  tlspyo_test_broadcast_string (sender, "b1", "g");
  tlspyo_test_produce_string (sender, "p1", "q");
  tlspyo_test_broadcast_string (sender, "b2", "g");
  tlspyo_test_produce_string (sender, "p2", "q");
  g_assert_cmpuint (tlspyo_endpoint_get_n_queued (member), ==, 0);
  g_assert_true (tlspyo_endpoint_start (sender, &error));
  g_assert_no_error (error);
  tlspyo_test_flush (sender);
  EXPECT (member, "b1", "b2");
  tlspyo_test_notify_ready (consumer, "q", -1);
  EXPECT (consumer, "p1", "p2");
}

static void
test_reconnect (TlspyoTestFixture *f,
                gconstpointer      data)
{
  TlspyoEndpoint *sender, *member, *consumer;

  tlspyo_test_fixture_start (f);
  sender = tlspyo_test_endpoint_start (f, "s");
  member = tlspyo_test_endpoint_start (f, "g,h");
  consumer = tlspyo_test_endpoint_start (f, "q");

  tlspyo_test_broadcast_string (sender, "before", "g");
  tlspyo_test_flush (sender);
  tlspyo_test_expect_string (member, "before");

  tlspyo_relay_stop (f->relay);
  g_assert_true (tlspyo_test_wait_connected_state (sender, FALSE));
  g_assert_true (tlspyo_test_wait_connected_state (member, FALSE));
  g_assert_true (tlspyo_test_wait_connected_state (consumer, FALSE));

  /* Sent while the connection is down: kept in order. */
  tlspyo_test_broadcast_string (sender, "while down g", "g");
  tlspyo_test_produce_string (sender, "p1", "q");
  tlspyo_test_broadcast_string (sender, "while down h", "h");
  tlspyo_test_produce_string (sender, "p2", "q");

  tlspyo_test_fixture_restart (f);
  g_assert_true (tlspyo_test_wait_connected_state (sender, TRUE));
  g_assert_true (tlspyo_test_wait_connected_state (member, TRUE));
  g_assert_true (tlspyo_test_wait_connected_state (consumer, TRUE));
  tlspyo_test_flush (sender);

  /* The member rejoined both groups: it gets the latest broadcast of each,
   * whether it was back before or after they were sent. */
  {
    g_autoptr(GPtrArray) got = tlspyo_test_pop_n (member, 2);
    g_autoptr(GPtrArray) texts = g_ptr_array_new ();

    for (guint i = 0; i < got->len; i++)
      g_ptr_array_add (texts, (gpointer) g_variant_get_string (got->pdata[i], NULL));
    g_ptr_array_add (texts, NULL);
    g_assert_true (g_strv_contains ((const char * const *) texts->pdata, "while down g"));
    g_assert_true (g_strv_contains ((const char * const *) texts->pdata, "while down h"));
  }
  expect_only_sentinel (member, sender, "g");

  tlspyo_test_notify_ready (consumer, "q", -1);
  EXPECT (consumer, "p1", "p2");

  /* A member that joins the new relay gets the latest broadcasts too. */
  {
    TlspyoEndpoint *late = tlspyo_test_endpoint_start (f, "h");
    tlspyo_test_expect_string (late, "while down h");
  }
}

typedef struct {
  GArray *values;
} NotifyLog;

static void
connected_notify_cb (GObject    *object,
                     GParamSpec *pspec,
                     gpointer    user_data)
{
  NotifyLog *log = user_data;
  gboolean connected;

  g_object_get (object, "connected", &connected, NULL);
  g_array_append_val (log->values, connected);
}

static gboolean
notified_value (NotifyLog *log,
                gboolean   value)
{
  return log->values->len > 0 &&
         g_array_index (log->values, gboolean, log->values->len - 1) == value;
}

static gboolean
notified_true (gpointer data)
{
  return notified_value (data, TRUE);
}

static gboolean
notified_false (gpointer data)
{
  return notified_value (data, FALSE);
}

static void
test_connected_notify (TlspyoTestFixture *f,
                       gconstpointer      data)
{
  g_autoptr(GError) error = NULL;
  NotifyLog log = { g_array_new (FALSE, FALSE, sizeof (gboolean)) };
  TlspyoEndpoint *ep;
  guint n;

  tlspyo_test_fixture_start (f);
  ep = tlspyo_test_endpoint_new (f, "g");
  g_signal_connect (ep, "notify::connected", G_CALLBACK (connected_notify_cb), &log);
  g_assert_false (tlspyo_endpoint_get_connected (ep));
  g_assert_true (tlspyo_endpoint_start (ep, &error));
  g_assert_true (tlspyo_test_wait_until (notified_true, &log));

  /* No change, no notification. */
  n = log.values->len;
  tlspyo_test_broadcast_string (ep, "x", "g");
  tlspyo_test_flush (ep);
  tlspyo_test_expect_string (ep, "x");
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_cmpuint (log.values->len, ==, n);

  tlspyo_relay_stop (f->relay);
  g_assert_true (tlspyo_test_wait_until (notified_false, &log));
  g_assert_false (tlspyo_endpoint_get_connected (ep));

  tlspyo_test_fixture_restart (f);
  g_assert_true (tlspyo_test_wait_until (notified_true, &log));
  g_assert_true (tlspyo_endpoint_get_connected (ep));

  g_signal_handlers_disconnect_by_data (ep, &log);
  g_array_unref (log.values);
}

int
main (int argc, char **argv)
{
  tlspyo_test_init (&argc, &argv);
  tlspyo_test_log_capture_init ();

  TLSPYO_TEST_ADD ("/semantics/broadcast/members", test_broadcast_members);
  TLSPYO_TEST_ADD ("/semantics/broadcast/latest", test_broadcast_latest);
  TLSPYO_TEST_ADD ("/semantics/produce/fifo", test_produce_fifo);
  TLSPYO_TEST_ADD ("/semantics/produce/fair", test_produce_fair);
  TLSPYO_TEST_ADD ("/semantics/produce/notify-all", test_produce_notify_all);
  TLSPYO_TEST_ADD ("/semantics/produce/notify-other-group", test_produce_notify_other_group);
  TLSPYO_TEST_ADD ("/semantics/produce/waits-for-consumer", test_produce_waits_for_consumer);
  TLSPYO_TEST_ADD ("/semantics/send-object/groups", test_send_object_groups);
  TLSPYO_TEST_ADD ("/semantics/send-object/invalid", test_send_object_invalid);
  TLSPYO_TEST_ADD ("/semantics/accept/undeclared", test_accept_undeclared);
  TLSPYO_TEST_ADD ("/semantics/accept/max-count", test_accept_max_count);
  TLSPYO_TEST_ADD ("/semantics/accept/drop-undeclared", test_accept_drop_undeclared);
  TLSPYO_TEST_ADD ("/semantics/accept/max-consumables", test_accept_max_consumables);
  TLSPYO_TEST_ADD ("/semantics/offline/send-before-connected", test_send_before_connected);
  TLSPYO_TEST_ADD ("/semantics/offline/reconnect", test_reconnect);
  TLSPYO_TEST_ADD ("/semantics/offline/connected-notify", test_connected_notify);

  return g_test_run ();
}
