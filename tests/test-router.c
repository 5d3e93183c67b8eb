/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-test-utils.h"
#include "tlspyo-router-private.h"

/* Peers are identified by a static name passed as peer_data, so deliveries
 * can be checked as readable "peer:group:object" strings. */

typedef struct
{
  const char *peer;
  char       *group;
  GBytes     *object;
  TlspyoRouterDelivery kind;
  guint64     number;
} Delivery;

typedef struct
{
  char    *group;
  char    *reason;
  guint64  n;
} Drop;

typedef struct
{
  TlspyoRouter *router;
  GPtrArray    *deliveries;  /* Delivery* */
  GPtrArray    *drops;       /* Drop* */
} Recorder;

static void
delivery_free (gpointer data)
{
  Delivery *d = data;

  g_free (d->group);
  g_bytes_unref (d->object);
  g_free (d);
}

static void
drop_free (gpointer data)
{
  Drop *d = data;

  g_free (d->group);
  g_free (d->reason);
  g_free (d);
}

static void
record_delivery (gpointer              peer_data,
                 const char           *group,
                 GBytes               *object,
                 TlspyoRouterDelivery  kind,
                 guint64               number,
                 gpointer              user_data)
{
  Recorder *rec = user_data;
  Delivery *d = g_new0 (Delivery, 1);

  d->kind = kind;
  d->number = number;
  d->peer = peer_data;
  d->group = g_strdup (group);
  d->object = g_bytes_ref (object);
  g_ptr_array_add (rec->deliveries, d);
}

static void
record_drop (const char *group,
             const char *reason,
             guint64     n_objects,
             gpointer    user_data)
{
  Recorder *rec = user_data;
  Drop *d = g_new0 (Drop, 1);

  d->group = g_strdup (group);
  d->reason = g_strdup (reason);
  d->n = n_objects;
  g_ptr_array_add (rec->drops, d);
}

/* Every test's fixture: a router whose deliveries and drops are recorded. */
static void
recorder_setup (Recorder      *rec,
                gconstpointer  data)
{
  rec->deliveries = g_ptr_array_new_with_free_func (delivery_free);
  rec->drops = g_ptr_array_new_with_free_func (drop_free);
  rec->router = tlspyo_router_new (record_delivery, record_drop, rec);
}

static void
recorder_teardown (Recorder      *rec,
                   gconstpointer  data)
{
  /* The router first: freeing it must not call back. */
  g_clear_pointer (&rec->router, tlspyo_router_free);
  g_ptr_array_unref (rec->deliveries);
  g_ptr_array_unref (rec->drops);
}

#define ROUTER_TEST(path, func) \
  g_test_add ((path), Recorder, NULL, recorder_setup, (func), recorder_teardown)

static GBytes *
object_new (const char *text)
{
  return g_bytes_new (text, strlen (text));
}

static char *
delivery_to_string (Delivery *d)
{
  gsize size;
  const char *data = g_bytes_get_data (d->object, &size);

  return g_strdup_printf ("%s:%s:%.*s", d->peer, d->group, (int) size, data);
}

/* Asserts that exactly the expected deliveries happened since the last check,
 * in order, then forgets them. */
static void
assert_deliveries (Recorder *rec,
                   ...)
{
  g_autoptr(GString) expected = g_string_new (NULL);
  g_autoptr(GString) actual = g_string_new (NULL);
  const char *item;
  va_list args;

  va_start (args, rec);
  while ((item = va_arg (args, const char *)) != NULL)
    g_string_append_printf (expected, "%s\n", item);
  va_end (args);

  for (guint i = 0; i < rec->deliveries->len; i++)
    {
      g_autofree char *s = delivery_to_string (g_ptr_array_index (rec->deliveries, i));

      g_string_append_printf (actual, "%s\n", s);
    }

  g_assert_cmpstr (actual->str, ==, expected->str);
  g_ptr_array_set_size (rec->deliveries, 0);
}

#define assert_no_deliveries(rec) assert_deliveries ((rec), NULL)

static void
assert_drops (Recorder *rec,
              ...)
{
  g_autoptr(GString) expected = g_string_new (NULL);
  g_autoptr(GString) actual = g_string_new (NULL);
  const char *item;
  va_list args;

  va_start (args, rec);
  while ((item = va_arg (args, const char *)) != NULL)
    g_string_append_printf (expected, "%s\n", item);
  va_end (args);

  for (guint i = 0; i < rec->drops->len; i++)
    {
      Drop *d = g_ptr_array_index (rec->drops, i);

      g_string_append_printf (actual, "%s/%" G_GUINT64_FORMAT ": %s\n", d->group, d->n, d->reason);
    }

  g_assert_cmpstr (actual->str, ==, expected->str);
  g_ptr_array_set_size (rec->drops, 0);
}

#define assert_no_drops(rec) assert_drops ((rec), NULL)

static TlspyoRouterPeer *
join_ok (Recorder   *rec,
         const char *peer,
         ...)
{
  g_autoptr(GPtrArray) groups = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  TlspyoRouterPeer *handle;
  const char *group;
  va_list args;

  va_start (args, peer);
  while ((group = va_arg (args, const char *)) != NULL)
    g_ptr_array_add (groups, (gpointer) group);
  va_end (args);
  g_ptr_array_add (groups, NULL);

  handle = tlspyo_router_join (rec->router, (gpointer) peer,
                               (const char * const *) groups->pdata, &error);
  g_assert_no_error (error);
  g_assert_nonnull (handle);

  return handle;
}

/* 1. Groups */

static void
test_groups_open (Recorder      *rec,
                  gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");

  g_assert_true (tlspyo_router_is_accepted (rec->router, "anything"));
  g_assert_true (tlspyo_router_is_accepted (rec->router, "else"));

  join_ok (rec, "a", "x", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "x"), ==, 1);

  /* Created on first use by broadcast and produce too. */
  tlspyo_router_broadcast (rec->router, "y", o);
  g_assert_true (tlspyo_router_has_latest (rec->router, "y"));
  tlspyo_router_produce (rec->router, "z", o, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "z"), ==, 1);
  assert_no_deliveries (rec);
  assert_no_drops (rec);
}

static void
test_groups_declared_only (Recorder      *rec,
                           gconstpointer  data)
{
  tlspyo_router_accept_group (rec->router, "a", -1, -1);
  g_assert_true (tlspyo_router_is_accepted (rec->router, "a"));
  g_assert_false (tlspyo_router_is_accepted (rec->router, "b"));

  tlspyo_router_accept_group (rec->router, "b", 3, 5);
  g_assert_true (tlspyo_router_is_accepted (rec->router, "a"));
  g_assert_true (tlspyo_router_is_accepted (rec->router, "b"));
  g_assert_false (tlspyo_router_is_accepted (rec->router, "c"));
}

static void
test_groups_update_limits (Recorder      *rec,
                           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  const char *groups[] = { "g", NULL };
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");

  tlspyo_router_accept_group (rec->router, "g", 1, -1);
  join_ok (rec, "a", "g", NULL);
  g_assert_null (tlspyo_router_join (rec->router, "b", groups, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
  g_clear_error (&error);

  tlspyo_router_accept_group (rec->router, "g", 2, -1);
  join_ok (rec, "b", "g", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "g"), ==, 2);

  /* Lowering max_consumables trims the queue now, oldest first. */
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);
  tlspyo_router_accept_group (rec->router, "g", 2, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "g"), ==, 2);
  assert_drops (rec, "g/2: queue of group 'g' is full (max_consumables 1): dropped the 2 oldest objects", NULL);
  assert_no_deliveries (rec);
}

/* 2. Join */

static void
test_join_refused_undeclared (Recorder      *rec,
                              gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) o = object_new ("o");
  const char *groups[] = { "a", "b", NULL };

  tlspyo_router_accept_group (rec->router, "a", -1, -1);
  tlspyo_router_broadcast (rec->router, "a", o);

  g_assert_null (tlspyo_router_join (rec->router, "p", groups, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
  g_assert_cmpstr (error->message, ==, "group 'b' is not accepted by this relay");

  /* "a" was checked first but the refusal left no trace. */
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "a"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "b"), ==, 0);
  g_assert_false (tlspyo_router_is_accepted (rec->router, "b"));
  assert_no_deliveries (rec);
}

static void
test_join_refused_full (Recorder      *rec,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) o = object_new ("o");
  const char *groups[] = { "other", "g", NULL };

  tlspyo_router_accept_group (rec->router, "g", 2, -1);
  tlspyo_router_accept_group (rec->router, "g1", 1, -1);
  tlspyo_router_accept_group (rec->router, "other", -1, -1);
  tlspyo_router_broadcast (rec->router, "other", o);
  join_ok (rec, "a", "g", NULL);
  join_ok (rec, "b", "g", NULL);

  g_assert_null (tlspyo_router_join (rec->router, "c", groups, &error));
  g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
  g_assert_cmpstr (error->message, ==,
                   "group 'g' is full: it already has 2 endpoints (max_count 2)");
  g_clear_error (&error);

  /* Nothing changed: not in "other", no latest delivered. */
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "other"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "g"), ==, 2);
  assert_no_deliveries (rec);

  join_ok (rec, "a", "g1", NULL);
  {
    const char *g1[] = { "g1", NULL };

    g_assert_null (tlspyo_router_join (rec->router, "b", g1, &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
    g_assert_cmpstr (error->message, ==,
                     "group 'g1' is full: it already has 1 endpoint (max_count 1)");
    g_clear_error (&error);
  }

  /* max_count 0 refuses everyone. */
  tlspyo_router_accept_group (rec->router, "closed", 0, -1);
  {
    const char *closed[] = { "closed", NULL };

    g_assert_null (tlspyo_router_join (rec->router, "d", closed, &error));
    g_assert_error (error, TLSPYO_ERROR, TLSPYO_ERROR_GROUP_REFUSED);
  }
}

static void
test_join_full_counts_current_members (Recorder      *rec,
                                       gconstpointer  data)
{
  TlspyoRouterPeer *a;

  tlspyo_router_accept_group (rec->router, "g", 1, -1);
  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_leave (rec->router, a);
  join_ok (rec, "b", "g", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "g"), ==, 1);
}

static void
test_join_duplicates (Recorder      *rec,
                      gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");

  tlspyo_router_accept_group (rec->router, "g", 1, -1);
  tlspyo_router_broadcast (rec->router, "g", o1);

  /* Would be refused as full if the second "g" counted. */
  join_ok (rec, "a", "g", "g", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "g"), ==, 1);
  assert_deliveries (rec, "a:g:o1", NULL);

  tlspyo_router_broadcast (rec->router, "g", o2);
  assert_deliveries (rec, "a:g:o2", NULL);
}

static void
test_join_latest (Recorder      *rec,
                  gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  TlspyoRouterPeer *p;

  tlspyo_router_broadcast (rec->router, "g1", o1);
  tlspyo_router_broadcast (rec->router, "g2", o2);
  assert_no_deliveries (rec);

  /* In the order of its groups list; "empty" has no latest. */
  p = join_ok (rec, "late", "g2", "empty", "g1", NULL);
  assert_deliveries (rec, "late:g2:o2", "late:g1:o1", NULL);
  g_assert_cmpstr (tlspyo_router_peer_get_data (p), ==, "late");

  /* The very objects that were broadcast. */
  join_ok (rec, "later", "g1", NULL);
  g_assert_true (((Delivery *) g_ptr_array_index (rec->deliveries, 0))->object == o1);
  assert_deliveries (rec, "later:g1:o1", NULL);
}

static void
test_join_no_groups (Recorder      *rec,
                     gconstpointer  data)
{
  TlspyoRouterPeer *p;

  p = join_ok (rec, "a", NULL);
  g_assert_cmpstr (tlspyo_router_peer_get_data (p), ==, "a");
  tlspyo_router_notify (rec->router, p, "g", 1);
  tlspyo_router_leave (rec->router, p);
  assert_no_deliveries (rec);
}

/* 3. Leave */

static void
test_leave_keeps_queue (Recorder      *rec,
                        gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", "h", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_notify (rec->router, a, "g", 1);
  assert_deliveries (rec, "a:g:o1", NULL);
  /* Its application took it: it does not come back when a leaves. */
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));

  /* Credit that a will never use. */
  tlspyo_router_notify (rec->router, a, "h", 5);
  tlspyo_router_leave (rec->router, a);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "g"), ==, 1);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "h"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);

  /* Its credit went with it: this is queued, not delivered to a. */
  tlspyo_router_produce (rec->router, "h", o3, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "h"), ==, 1);
  assert_no_deliveries (rec);

  tlspyo_router_notify (rec->router, b, "g", 1);
  assert_deliveries (rec, "b:g:o2", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  /* b's own broadcast membership ends too. */
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_broadcast (rec->router, "g", o1);
  assert_no_deliveries (rec);
}

static void
test_leave_ready_ring (Recorder      *rec,
                       gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  TlspyoRouterPeer *a, *b, *c;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  c = join_ok (rec, "c", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 2);
  tlspyo_router_notify (rec->router, b, "g", 2);
  tlspyo_router_notify (rec->router, c, "g", 2);

  /* b leaves from the middle of the ring. */
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_produce (rec->router, "g", o, 5);
  assert_deliveries (rec, "a:g:o", "c:g:o", "a:g:o", "c:g:o", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);

  /* Leaving with an empty ring and again from the head. */
  tlspyo_router_notify (rec->router, c, "g", 3);
  assert_deliveries (rec, "c:g:o", NULL);
  tlspyo_router_notify (rec->router, a, "g", 1);
  g_assert_true (tlspyo_router_taken (rec->router, c, "g", 3));
  tlspyo_router_leave (rec->router, c);
  tlspyo_router_produce (rec->router, "g", o, 2);
  assert_deliveries (rec, "a:g:o", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
}

/* Issue 5: produced objects a peer had not taken when it left go back to
 * the head of the queue, in order, to the next consumer with credit. */
static void
test_leave_requeues_untaken (Recorder      *rec,
                             gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  g_autoptr(GBytes) o4 = object_new ("o4");
  g_autoptr(GBytes) b1 = object_new ("b1");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  tlspyo_router_produce (rec->router, "g", o4, 1);
  tlspyo_router_notify (rec->router, a, "g", 3);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", "a:g:o3", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);
  /* Broadcasts are not in flight. */
  tlspyo_router_broadcast (rec->router, "g", b1);
  assert_deliveries (rec, "a:g:b1", "b:g:b1", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);

  /* a's application took the oldest one only. */
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 2);
  /* Taking more than it was given is refused, and takes nothing. */
  g_assert_false (tlspyo_router_taken (rec->router, a, "g", 3));
  g_assert_false (tlspyo_router_taken (rec->router, a, "nope", 1));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 2);

  tlspyo_router_leave (rec->router, a);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);
  g_assert_cmpuint (tlspyo_router_get_queued_bytes (rec->router, "g"), ==, 6);
  assert_no_deliveries (rec);

  /* o2 and o3 come before o4, which was queued all along. */
  tlspyo_router_notify (rec->router, b, "g", 2);
  assert_deliveries (rec, "b:g:o2", "b:g:o3", NULL);
  tlspyo_router_notify (rec->router, b, "g", -1);
  assert_deliveries (rec, "b:g:o4", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);
}

/* Given back while another consumer waits with credit: it gets them at
 * once; copies of one object stay one run. */
static void
test_leave_requeue_serves_ready (Recorder      *rec,
                                 gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o, 3);
  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o", "a:g:o", "a:g:o", NULL);
  tlspyo_router_notify (rec->router, b, "g", 2);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_get_credit (rec->router, "g"), ==, 2);

  tlspyo_router_leave (rec->router, a);
  assert_deliveries (rec, "b:g:o", "b:g:o", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  g_assert_cmpuint (tlspyo_router_get_queued_bytes (rec->router, "g"), ==, 1);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_credit (rec->router, "g"), ==, 0);
}

/* 4. Broadcast */

static void
test_broadcast_members (Recorder      *rec,
                        gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");

  join_ok (rec, "sender", "g", NULL);
  join_ok (rec, "b", "g", "other", NULL);
  join_ok (rec, "c", "other", NULL);

  /* The router does not know the sender: a member gets its own broadcast. */
  tlspyo_router_broadcast (rec->router, "g", o);
  g_assert_cmpuint (rec->deliveries->len, ==, 2);
  for (guint i = 0; i < rec->deliveries->len; i++)
    g_assert_true (((Delivery *) g_ptr_array_index (rec->deliveries, i))->object == o);
  assert_deliveries (rec, "sender:g:o", "b:g:o", NULL);
  assert_no_drops (rec);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);
}

static void
test_broadcast_replaces_latest (Recorder      *rec,
                                gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");

  /* Kept although nobody is there to receive it. */
  g_assert_false (tlspyo_router_has_latest (rec->router, "g"));
  tlspyo_router_broadcast (rec->router, "g", o1);
  g_assert_true (tlspyo_router_has_latest (rec->router, "g"));
  tlspyo_router_broadcast (rec->router, "g", o2);
  /* Re-broadcasting the current latest must not free it. */
  tlspyo_router_broadcast (rec->router, "g", o2);
  assert_no_deliveries (rec);

  join_ok (rec, "late", "g", NULL);
  assert_deliveries (rec, "late:g:o2", NULL);
}

static void
test_broadcast_undeclared (Recorder      *rec,
                           gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");

  tlspyo_router_accept_group (rec->router, "a", -1, -1);
  join_ok (rec, "p", "a", NULL);

  tlspyo_router_broadcast (rec->router, "x", o);
  assert_drops (rec, "x/1: group 'x' is not accepted by this relay", NULL);
  assert_no_deliveries (rec);
  g_assert_false (tlspyo_router_has_latest (rec->router, "x"));
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "x"), ==, 1);
  /* Counting it does not make it accepted. */
  g_assert_false (tlspyo_router_is_accepted (rec->router, "x"));

  tlspyo_router_broadcast (rec->router, "x", o);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "x"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "a"), ==, 0);
}

static void
test_broadcast_many_members (Recorder      *rec,
                             gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) peers = g_ptr_array_new ();
  const guint n = 1000;

  for (guint i = 0; i < n; i++)
    {
      char *name = g_strdup_printf ("p%u", i);

      g_ptr_array_add (names, name);
      g_ptr_array_add (peers, join_ok (rec, name, "big", NULL));
    }
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "big"), ==, n);

  tlspyo_router_broadcast (rec->router, "big", o);
  g_assert_cmpuint (rec->deliveries->len, ==, n);
  for (guint i = 0; i < n; i++)
    {
      Delivery *d = g_ptr_array_index (rec->deliveries, i);

      /* Once each, in join order, and all the same GBytes. */
      g_assert_true (d->peer == g_ptr_array_index (names, i));
      g_assert_true (d->object == o);
      g_assert_cmpstr (d->group, ==, "big");
    }
  g_ptr_array_set_size (rec->deliveries, 0);

  /* Half of them leave; the other half still get everything. */
  for (guint i = 0; i < n; i += 2)
    tlspyo_router_leave (rec->router, g_ptr_array_index (peers, i));
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "big"), ==, n / 2);
  tlspyo_router_broadcast (rec->router, "big", o);
  g_assert_cmpuint (rec->deliveries->len, ==, n / 2);
  for (guint i = 0; i < n / 2; i++)
    {
      Delivery *d = g_ptr_array_index (rec->deliveries, i);

      g_assert_true (d->peer == g_ptr_array_index (names, 2 * i + 1));
    }
}

/* 5. Produce */

static void
test_produce_fifo (Recorder      *rec,
                   gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g", NULL);
  /* Queued for a group with no member at all, too. */
  tlspyo_router_produce (rec->router, "nobody", o1, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "nobody"), ==, 1);

  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);
  assert_no_deliveries (rec);

  tlspyo_router_notify (rec->router, a, "g", 1);
  assert_deliveries (rec, "a:g:o1", NULL);
  tlspyo_router_notify (rec->router, a, "g", 2);
  assert_deliveries (rec, "a:g:o2", "a:g:o3", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);
}

static void
test_produce_credit_first (Recorder      *rec,
                           gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 2);
  assert_no_deliveries (rec);

  tlspyo_router_produce (rec->router, "g", o1, 1);
  assert_deliveries (rec, "a:g:o1", NULL);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_deliveries (rec, "a:g:o2", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  /* Credit used up. */
  tlspyo_router_produce (rec->router, "g", o3, 1);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
}

static void
test_produce_copies (Recorder      *rec,
                     gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  g_autoptr(GBytes) p = object_new ("p");
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o, 3);
  tlspyo_router_produce (rec->router, "g", p, 1);
  tlspyo_router_produce (rec->router, "g", o, 2);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 6);

  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o", "a:g:o", "a:g:o", "a:g:p", "a:g:o", "a:g:o", NULL);

  /* Some copies go to waiting credit, the rest are queued. */
  tlspyo_router_notify (rec->router, a, "g", 2);
  tlspyo_router_produce (rec->router, "g", o, 5);
  g_assert_cmpuint (rec->deliveries->len, ==, 2);
  for (guint i = 0; i < rec->deliveries->len; i++)
    g_assert_true (((Delivery *) g_ptr_array_index (rec->deliveries, i))->object == o);
  assert_deliveries (rec, "a:g:o", "a:g:o", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);

  /* 0 copies is nothing. */
  tlspyo_router_produce (rec->router, "g", o, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);

  /* Many copies cost no memory per copy and count exactly. */
  tlspyo_router_produce (rec->router, "g", p, G_MAXINT);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3 + (guint) G_MAXINT);
  tlspyo_router_notify (rec->router, a, "g", 4);
  assert_deliveries (rec, "a:g:o", "a:g:o", "a:g:o", "a:g:p", NULL);
}

static void
test_produce_undeclared (Recorder      *rec,
                         gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");

  tlspyo_router_accept_group (rec->router, "a", -1, -1);
  join_ok (rec, "p", "a", NULL);

  /* One report per refused produce; the counter has every copy. */
  tlspyo_router_produce (rec->router, "x", o, 3);
  assert_drops (rec, "x/3: group 'x' is not accepted by this relay", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "x"), ==, 3);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "x"), ==, 0);
  tlspyo_router_produce (rec->router, "x", o, 1);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "x"), ==, 4);
  assert_drops (rec, "x/1: group 'x' is not accepted by this relay", NULL);
  assert_no_deliveries (rec);
}

static void
test_produce_max_consumables (Recorder      *rec,
                              gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  g_autoptr(GBytes) o4 = object_new ("o4");
  TlspyoRouterPeer *a;

  tlspyo_router_accept_group (rec->router, "g", -1, 2);
  a = join_ok (rec, "a", "g", NULL);

  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_no_drops (rec);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  assert_drops (rec, "g/1: queue of group 'g' is full (max_consumables 2): dropped the oldest object", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "g"), ==, 1);

  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o2", "a:g:o3", NULL);

  /* Copies beyond the limit: one report, every copy counted. */
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o4, 5);
  assert_drops (rec, "g/4: queue of group 'g' is full (max_consumables 2): dropped the 4 oldest objects", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "g"), ==, 5);
  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o4", "a:g:o4", NULL);

  /* Waiting credit takes copies before the limit applies. */
  tlspyo_router_notify (rec->router, a, "g", 3);
  tlspyo_router_produce (rec->router, "g", o1, 4);
  assert_deliveries (rec, "a:g:o1", "a:g:o1", "a:g:o1", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  assert_no_drops (rec);
}

static void
test_produce_max_consumables_zero (Recorder      *rec,
                                   gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  TlspyoRouterPeer *a;

  tlspyo_router_accept_group (rec->router, "g", -1, 0);
  a = join_ok (rec, "a", "g", NULL);

  tlspyo_router_produce (rec->router, "g", o1, 1);
  assert_drops (rec, "g/1: queue of group 'g' is full (max_consumables 0): dropped the oldest object", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "g"), ==, 1);

  tlspyo_router_notify (rec->router, a, "g", 1);
  assert_no_deliveries (rec);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_deliveries (rec, "a:g:o2", NULL);
  assert_no_drops (rec);
}

/* 6. Notify */

static void
test_notify_take_all (Recorder      *rec,
                      gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);

  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  /* No lasting credit: the next object waits for someone to ask. */
  tlspyo_router_produce (rec->router, "g", o3, 1);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  tlspyo_router_notify (rec->router, b, "g", 1);
  assert_deliveries (rec, "b:g:o3", NULL);

  /* On an empty queue it is a no-op, and it leaves existing credit alone. */
  tlspyo_router_notify (rec->router, a, "g", 1);
  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_no_deliveries (rec);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  assert_deliveries (rec, "a:g:o1", NULL);
}

static void
test_notify_ignored (Recorder      *rec,
                     gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_produce (rec->router, "h", o, 2);
  tlspyo_router_produce (rec->router, "g", o, 1);

  /* Not a member of "h": neither credit nor take-all applies. */
  tlspyo_router_notify (rec->router, a, "h", 5);
  tlspyo_router_notify (rec->router, a, "h", -1);
  tlspyo_router_notify (rec->router, a, "unknown", 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "h"), ==, 2);

  /* Zero asks for nothing. */
  tlspyo_router_notify (rec->router, a, "g", 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  assert_no_deliveries (rec);
}

static void
test_notify_credit_accumulates (Recorder      *rec,
                                gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 1);
  tlspyo_router_notify (rec->router, a, "g", 2);
  tlspyo_router_produce (rec->router, "g", o, 4);
  assert_deliveries (rec, "a:g:o", "a:g:o", "a:g:o", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);

  /* Large counts add up: credit is wider than a count. */
  tlspyo_router_notify (rec->router, a, "g", G_MAXINT);
  tlspyo_router_notify (rec->router, a, "g", G_MAXINT);
  assert_deliveries (rec, "a:g:o", NULL);
  tlspyo_router_produce (rec->router, "g", o, 1);
  assert_deliveries (rec, "a:g:o", NULL);
}

/* 7. Dispatch fairness */

static void
test_dispatch_fairness (Recorder      *rec,
                        gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  g_autoptr(GBytes) o4 = object_new ("o4");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 3);
  tlspyo_router_notify (rec->router, b, "g", 4);

  /* Alternating, not 3 + 1. */
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  tlspyo_router_produce (rec->router, "g", o4, 1);
  assert_deliveries (rec, "a:g:o1", "b:g:o2", "a:g:o3", "b:g:o4", NULL);

  /* a has 1 left, b 2: a drops out of the ring after its last. */
  tlspyo_router_produce (rec->router, "g", o1, 4);
  assert_deliveries (rec, "a:g:o1", "b:g:o1", "b:g:o1", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);

  /* Back in at the tail. */
  tlspyo_router_notify (rec->router, b, "g", 2);
  tlspyo_router_notify (rec->router, a, "g", 2);
  assert_deliveries (rec, "b:g:o1", NULL);
  tlspyo_router_produce (rec->router, "g", o2, 3);
  assert_deliveries (rec, "b:g:o2", "a:g:o2", "a:g:o2", NULL);
}

static void
test_dispatch_queue_to_ring (Recorder      *rec,
                             gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);

  /* Credit larger than the queue: the rest waits for objects. */
  tlspyo_router_notify (rec->router, a, "g", 2);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", NULL);
  tlspyo_router_notify (rec->router, b, "g", 5);
  assert_deliveries (rec, "b:g:o3", NULL);
  tlspyo_router_notify (rec->router, a, "g", 1);
  tlspyo_router_produce (rec->router, "g", o1, 3);
  assert_deliveries (rec, "b:g:o1", "a:g:o1", "b:g:o1", NULL);
}

/* 8. Route */

static void
test_route_mixed (Recorder      *rec,
                  gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  g_autoptr(GVariantBuilder) builder = g_variant_builder_new (G_VARIANT_TYPE ("a{si}"));
  TlspyoRouterPeer *c;

  join_ok (rec, "a", "news", NULL);
  c = join_ok (rec, "c", "work", NULL);
  g_variant_builder_add (builder, "{si}", "news", -1);
  g_variant_builder_add (builder, "{si}", "work", 2);
  g_variant_builder_add (builder, "{si}", "zero", 0);

  /* The floating builder result is consumed. */
  tlspyo_router_route (rec->router, g_variant_builder_end (builder), o);
  assert_deliveries (rec, "a:news:o", NULL);
  g_assert_true (tlspyo_router_has_latest (rec->router, "news"));
  g_assert_false (tlspyo_router_has_latest (rec->router, "work"));
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "work"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "zero"), ==, 0);
  g_assert_false (tlspyo_router_has_latest (rec->router, "zero"));

  tlspyo_router_notify (rec->router, c, "work", -1);
  assert_deliveries (rec, "c:work:o", "c:work:o", NULL);
}

static void
test_route_one_copy_per_group (Recorder      *rec,
                               gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  g_autoptr(GVariant) broadcast = NULL;
  g_autoptr(GVariant) produce = NULL;
  TlspyoRouterPeer *a;

  a = join_ok (rec, "a", "g1", "g2", NULL);
  join_ok (rec, "b", "g2", NULL);

  /* A non-floating variant stays the caller's. */
  broadcast = g_variant_ref_sink (g_variant_new_parsed ("{'g1': -1, 'g2': -1}"));
  tlspyo_router_route (rec->router, broadcast, o);
  g_assert_cmpuint (rec->deliveries->len, ==, 3);
  for (guint i = 0; i < rec->deliveries->len; i++)
    g_assert_true (((Delivery *) g_ptr_array_index (rec->deliveries, i))->object == o);
  assert_deliveries (rec, "a:g1:o", "a:g2:o", "b:g2:o", NULL);

  tlspyo_router_notify (rec->router, a, "g1", 5);
  tlspyo_router_notify (rec->router, a, "g2", 5);
  produce = g_variant_ref_sink (g_variant_new_parsed ("{'g1': 1, 'g2': 1}"));
  tlspyo_router_route (rec->router, produce, o);
  assert_deliveries (rec, "a:g1:o", "a:g2:o", NULL);
}

static void
test_route_undeclared (Recorder      *rec,
                       gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");

  tlspyo_router_accept_group (rec->router, "ok", -1, -1);
  join_ok (rec, "a", "ok", NULL);
  tlspyo_router_route (rec->router,
                       g_variant_new_parsed ("{'no': -1, 'ok': -1, 'nope': 2}"), o);
  assert_deliveries (rec, "a:ok:o", NULL);
  assert_drops (rec,
                "no/1: group 'no' is not accepted by this relay",
                "nope/2: group 'nope' is not accepted by this relay",
                NULL);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "no"), ==, 1);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "nope"), ==, 2);
}

/* 9. Introspection */

static void
test_introspection_unknown (Recorder      *rec,
                            gconstpointer  data)
{
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "unknown"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "unknown"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_n_dropped (rec->router, "unknown"), ==, 0);
  g_assert_false (tlspyo_router_has_latest (rec->router, "unknown"));

  /* An open-mode group that has emptied out is as good as unknown. */
  tlspyo_router_leave (rec->router, join_ok (rec, "a", "gone", NULL));
  g_assert_cmpuint (tlspyo_router_get_n_members (rec->router, "gone"), ==, 0);
  g_assert_true (tlspyo_router_is_accepted (rec->router, "gone"));
}

/* 10. Free */

static void
count_free (gpointer data)
{
  (*(guint *) data)++;
}

/* Each delivery says why it was made: an endpoint counts down its credit
 * on CREDIT deliveries only, to ask for the rest again after reconnecting. */
static void
test_delivery_kinds (Recorder      *rec,
                     gconstpointer  data)
{
  const char *groups[] = { "g", NULL };
  g_autoptr(GBytes) b = object_new ("b");
  g_autoptr(GBytes) p1 = object_new ("p1");
  g_autoptr(GBytes) p2 = object_new ("p2");
  g_autoptr(GBytes) p3 = object_new ("p3");
  TlspyoRouterPeer *a;
  TlspyoRouterPeer *late;
  static const TlspyoRouterDelivery expected[] = {
    TLSPYO_ROUTER_BROADCAST, TLSPYO_ROUTER_CREDIT, TLSPYO_ROUTER_ALL,
    TLSPYO_ROUTER_ALL, TLSPYO_ROUTER_BROADCAST,
  };

  a = tlspyo_router_join (rec->router, (gpointer) "a", groups, NULL);
  tlspyo_router_broadcast (rec->router, "g", b);
  tlspyo_router_notify (rec->router, a, "g", 1);
  tlspyo_router_produce (rec->router, "g", p1, 1);
  tlspyo_router_produce (rec->router, "g", p2, 1);
  tlspyo_router_produce (rec->router, "g", p3, 1);
  tlspyo_router_notify (rec->router, a, "g", -1);
  late = tlspyo_router_join (rec->router, (gpointer) "late", groups, NULL);

  g_assert_cmpuint (rec->deliveries->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpint (((Delivery *) g_ptr_array_index (rec->deliveries, i))->kind, ==, expected[i]);
  assert_deliveries (rec, "a:g:b", "a:g:p1", "a:g:p2", "a:g:p3", "late:g:b", NULL);
  tlspyo_router_leave (rec->router, a);
  tlspyo_router_leave (rec->router, late);
}

/* Issue 5: sessions. A peer whose connection is lost parks its untaken
 * objects with its session; the next connection of the session resumes
 * them: those the endpoint received stay in flight to it, those lost in
 * transit go back to the head of the queue. */

static GVariant *
received_counts (const char *group,
                 guint64     n)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{st}"));
  if (group != NULL)
    g_variant_builder_add (&b, "{st}", group, n);
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

static void
test_session_park_resume (Recorder      *rec,
                          gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  g_autoptr(GBytes) o4 = object_new ("o4");
  g_autoptr(GVariant) none = received_counts (NULL, 0);
  g_autoptr(GVariant) got3 = received_counts ("g", 3);
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *a2, *b;

  a = join_ok (rec, "a", "g", NULL);
  /* A new session: nothing kept. */
  g_assert_false (tlspyo_router_resume (rec->router, a, session, none));
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 4);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  tlspyo_router_produce (rec->router, "g", o4, 1);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", "a:g:o3", "a:g:o4", NULL);
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));

  /* Lost: b has credit, yet gets none of them; they are still in flight. */
  tlspyo_router_park (rec->router, a);
  tlspyo_router_notify (rec->router, b, "g", 5);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_session_get_n_parked (session), ==, 3);
  g_assert_true (tlspyo_router_session_is_resumable (session));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  /* Back: it had received three of the four (o4 was lost in transit),
   * which goes to b; o2 and o3 stay in flight to the new connection. */
  a2 = join_ok (rec, "a2", "g", NULL);
  g_assert_true (tlspyo_router_resume (rec->router, a2, session, got3));
  assert_deliveries (rec, "b:g:o4", NULL);
  g_assert_cmpuint (tlspyo_router_session_get_n_parked (session), ==, 0);
  g_assert_false (tlspyo_router_session_is_resumable (session));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);
  /* Its TAKEN for them applies to the new connection, oldest first. */
  g_assert_true (tlspyo_router_taken (rec->router, a2, "g", 1));
  g_assert_false (tlspyo_router_taken (rec->router, a2, "g", 2));
  /* A goodbye gives back o3 at once, to b. */
  tlspyo_router_leave (rec->router, a2);
  assert_deliveries (rec, "b:g:o3", NULL);
  g_assert_false (tlspyo_router_session_is_resumable (session));
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_session_free (rec->router, session);
}

/* A session that does not come back: expiring it gives its parked objects
 * back, in order, ahead of what was queued meanwhile; it is not resumable
 * any more. */
static void
test_session_expire (Recorder      *rec,
                     gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  g_autoptr(GVariant) got2 = received_counts ("g", 2);
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  g_assert_false (tlspyo_router_resume (rec->router, a, session, NULL));
  tlspyo_router_notify (rec->router, a, "g", 2);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", NULL);
  tlspyo_router_park (rec->router, a);
  tlspyo_router_produce (rec->router, "g", o3, 1);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);

  tlspyo_router_session_expire (rec->router, session);
  g_assert_false (tlspyo_router_session_is_resumable (session));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, b, "g", -1);
  assert_deliveries (rec, "b:g:o1", "b:g:o2", "b:g:o3", NULL);

  /* Coming back later: not kept, whatever it says it received. */
  a = join_ok (rec, "a", "g", NULL);
  g_assert_false (tlspyo_router_resume (rec->router, a, session, got2));
  assert_no_deliveries (rec);
  tlspyo_router_leave (rec->router, a);
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_session_free (rec->router, session);
}

/* Freeing a session (the relay forgets it) gives its parked objects back. */
static void
test_session_free_requeues (Recorder      *rec,
                            gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *b;

  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_resume (rec->router, a, session, NULL);
  tlspyo_router_notify (rec->router, a, "g", 1);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_park (rec->router, a);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, b, "g", 1);
  assert_deliveries (rec, "a:g:o1", NULL);
  tlspyo_router_session_free (rec->router, session);
  assert_deliveries (rec, "b:g:o1", NULL);
  tlspyo_router_leave (rec->router, b);
}

/* Ids: unique and increasing, kept by an object through the queue, in
 * flight, parked and back; copies get ids of their own. */
static void
test_ids (Recorder      *rec,
          gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *b;
  guint64 first;

  tlspyo_router_set_next_id (rec->router, 1000);
  tlspyo_router_set_next_id (rec->router, 10);  /* never backwards */
  g_assert_cmpuint (tlspyo_router_get_next_id (rec->router), ==, 1000);
  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_resume (rec->router, a, session, NULL);
  tlspyo_router_produce (rec->router, "g", o1, 3);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  g_assert_cmpuint (tlspyo_router_get_next_id (rec->router), ==, 1004);
  tlspyo_router_notify (rec->router, a, "g", 2);
  g_assert_cmpuint (rec->deliveries->len, ==, 2);
  first = ((Delivery *) g_ptr_array_index (rec->deliveries, 0))->number;
  g_assert_cmpuint (first, ==, 1000);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 1))->number, ==, 1001);
  g_ptr_array_set_size (rec->deliveries, 0);

  /* Parked, then expired: back at the head, with the same ids. */
  tlspyo_router_park (rec->router, a);
  tlspyo_router_session_expire (rec->router, session);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, b, "g", -1);
  g_assert_cmpuint (rec->deliveries->len, ==, 4);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, i))->number, ==, 1000 + i);
  assert_deliveries (rec, "b:g:o1", "b:g:o1", "b:g:o1", "b:g:o2", NULL);

  /* Restored objects keep theirs, and later ids come after them. */
  tlspyo_router_restore_queued (rec->router, "h", o1, 5000, 5000);
  g_assert_cmpuint (tlspyo_router_get_next_id (rec->router), ==, 5001);
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_session_free (rec->router, session);
}

/* Broadcast numbers: per group, from 1, the same for every recipient;
 * the latest keeps its number on joining; a restored latest sets where
 * numbering goes on. */
static void
test_broadcast_seq (Recorder      *rec,
                    gconstpointer  data)
{
  g_autoptr(GBytes) b1 = object_new ("b1");
  g_autoptr(GBytes) b2 = object_new ("b2");
  Delivery *d;

  g_assert_cmpuint (tlspyo_router_get_instance (rec->router), !=, 0);
  join_ok (rec, "a", "g", NULL);
  join_ok (rec, "b", "g", NULL);
  tlspyo_router_broadcast (rec->router, "g", b1);
  tlspyo_router_broadcast (rec->router, "h", b1);
  tlspyo_router_broadcast (rec->router, "g", b2);
  g_assert_cmpuint (rec->deliveries->len, ==, 4);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 0))->number, ==, 1);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 1))->number, ==, 1);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 2))->number, ==, 2);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 3))->number, ==, 2);
  g_assert_cmpuint (tlspyo_router_get_latest_seq (rec->router, "g"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_latest_seq (rec->router, "h"), ==, 1);
  g_ptr_array_set_size (rec->deliveries, 0);

  join_ok (rec, "late", "g", NULL);
  d = g_ptr_array_index (rec->deliveries, 0);
  g_assert_cmpuint (d->number, ==, 2);
  assert_deliveries (rec, "late:g:b2", NULL);

  tlspyo_router_set_instance (rec->router, 42);
  g_assert_cmpuint (tlspyo_router_get_instance (rec->router), ==, 42);
  tlspyo_router_restore_latest (rec->router, "k", b1, 70);
  g_assert_cmpuint (tlspyo_router_get_latest_seq (rec->router, "k"), ==, 70);
  join_ok (rec, "c", "k", NULL);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 0))->number, ==, 70);
  assert_deliveries (rec, "c:k:b1", NULL);
  tlspyo_router_broadcast (rec->router, "k", b2);
  g_assert_cmpuint (((Delivery *) g_ptr_array_index (rec->deliveries, 0))->number, ==, 71);
  assert_deliveries (rec, "c:k:b2", NULL);
}

/* A store restores a parked session: resumable, and resumed as usual. */
static void
test_session_restore_parked (Recorder      *rec,
                             gconstpointer  data)
{
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GVariant) got1 = received_counts ("g", 1);
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *b;

  tlspyo_router_restore_parked (rec->router, session, "g", o1, 7);
  tlspyo_router_restore_parked (rec->router, session, "g", o2, 8);
  g_assert_true (tlspyo_router_session_is_resumable (session));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 2);
  g_assert_cmpuint (tlspyo_router_get_next_id (rec->router), ==, 9);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, b, "g", 5);
  a = join_ok (rec, "a", "g", NULL);
  /* It received o1 only: o2 goes back. */
  g_assert_true (tlspyo_router_resume (rec->router, a, session, got1));
  assert_deliveries (rec, "b:g:o2", NULL);
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 1);
  tlspyo_router_leave (rec->router, a);
  tlspyo_router_leave (rec->router, b);
  tlspyo_router_session_free (rec->router, session);
}

static void
test_free_with_state (Recorder      *rec,
                      gconstpointer  data)
{
  guint n_freed = 0;
  GBytes *o1 = g_bytes_new_with_free_func ("o1", 2, count_free, &n_freed);
  GBytes *o2 = g_bytes_new_with_free_func ("o2", 2, count_free, &n_freed);
  TlspyoRouterPeer *a;

  tlspyo_router_accept_group (rec->router, "g", -1, 10);
  tlspyo_router_accept_group (rec->router, "h", -1, -1);
  a = join_ok (rec, "a", "g", "h", NULL);
  join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, a, "h", 3);
  tlspyo_router_broadcast (rec->router, "g", o1);
  tlspyo_router_produce (rec->router, "g", o2, 4);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  tlspyo_router_broadcast (rec->router, "x", o1);

  /* Now only the router holds them: as latest and in the queue. */
  g_ptr_array_set_size (rec->deliveries, 0);
  g_bytes_unref (o1);
  g_bytes_unref (o2);
  g_assert_cmpuint (n_freed, ==, 0);

  /* Peers still joined, queues and latest objects all go with the router. */
  g_clear_pointer (&rec->router, tlspyo_router_free);
  g_assert_cmpuint (n_freed, ==, 2);
  assert_no_deliveries (rec);
}

/* The journal (durable relay): every change of durable state, in order. */

static void
journal_queued (guint64 id, const char *group, GBytes *object, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("queued %" G_GUINT64_FORMAT " %s %.*s", id,
                                               group, (int) g_bytes_get_size (object),
                                               (const char *) g_bytes_get_data (object, NULL)));
}

static void
journal_held (guint64 id, gpointer session_data, guint64 index, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("held %" G_GUINT64_FORMAT " %s #%" G_GUINT64_FORMAT,
                                               id, (const char *) session_data, index));
}

static void
journal_removed (guint64 id, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("removed %" G_GUINT64_FORMAT, id));
}

static void
journal_requeued (guint64 id, gint64 position, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("requeued %" G_GUINT64_FORMAT " at %" G_GINT64_FORMAT,
                                               id, position));
}

static void
journal_latest (const char *group, guint64 seq, GBytes *object, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("latest %s %" G_GUINT64_FORMAT " %.*s", group, seq,
                                               (int) g_bytes_get_size (object),
                                               (const char *) g_bytes_get_data (object, NULL)));
}

static void
journal_next_id (guint64 next_id, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup_printf ("next %" G_GUINT64_FORMAT, next_id));
}

static const TlspyoRouterJournal test_journal = {
  journal_queued, journal_held, journal_removed, journal_requeued, journal_latest,
  journal_next_id,
};

/* Checks the journal entries since the last call, and forgets them. */
static void
assert_journal (GPtrArray *journal,
                ...)
{
  g_autoptr(GString) expected = g_string_new (NULL);
  g_autoptr(GString) got = g_string_new (NULL);
  const char *entry;
  va_list args;

  va_start (args, journal);
  while ((entry = va_arg (args, const char *)) != NULL)
    g_string_append_printf (expected, "%s; ", entry);
  va_end (args);
  for (guint i = 0; i < journal->len; i++)
    g_string_append_printf (got, "%s; ", (const char *) journal->pdata[i]);
  g_assert_cmpstr (got->str, ==, expected->str);
  g_ptr_array_set_size (journal, 0);
}

static void
test_journal_changes (Recorder      *rec,
                      gconstpointer  data)
{
  g_autoptr(GPtrArray) journal = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) b1 = object_new ("b1");
  g_autoptr(GVariant) got2 = received_counts ("g", 2);
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *b, *c;
  static const char session_data[] = "S";

  tlspyo_router_session_set_data (session, (gpointer) session_data);
  g_assert_true (tlspyo_router_session_get_data (session) == (gpointer) session_data);
  tlspyo_router_set_journal (rec->router, &test_journal, journal);

  /* Queued in order, each copy with its id; the next id once per produce. */
  tlspyo_router_produce (rec->router, "g", o1, 2);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_journal (journal, "next 3", "queued 1 g o1", "queued 2 g o1", "next 4", "queued 3 g o2",
                  NULL);

  /* Handed to a session's consumer: held, numbered by the session's count. */
  a = join_ok (rec, "a", "g", NULL);
  /* A new session: nothing kept. */
  g_assert_false (tlspyo_router_resume (rec->router, a, session, NULL));
  tlspyo_router_notify (rec->router, a, "g", 3);
  assert_journal (journal, "held 1 S #1", "held 2 S #2", "held 3 S #3", NULL);

  /* Taken: removed, oldest first. */
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));
  assert_journal (journal, "removed 1", NULL);

  /* Parked: nothing changes for the store (still held by the session). */
  tlspyo_router_park (rec->router, a);
  assert_journal (journal, NULL);

  /* Resumed having received 2 of the 3 handed: the third goes back to the
   * head of the queue, before everything queued; the second stays held. */
  c = join_ok (rec, "c", "g", NULL);
  g_assert_true (tlspyo_router_resume (rec->router, c, session, got2));
  assert_journal (journal, "requeued 3 at 0", NULL);

  /* A consumer without a session: its hand-outs are not held (for the
   * store, still queued), its leaving requeues them. */
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, b, "g", 1);
  assert_journal (journal, NULL);
  assert_deliveries (rec, "a:g:o1", "a:g:o1", "a:g:o2", "b:g:o2", NULL);
  tlspyo_router_leave (rec->router, b);
  assert_journal (journal, "requeued 3 at -1", NULL);

  /* Produced to a ready consumer: queued then held at once. */
  tlspyo_router_notify (rec->router, c, "g", 2);
  assert_journal (journal, "held 3 S #3", NULL);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  assert_journal (journal, "next 5", "queued 4 g o2", "held 4 S #4", NULL);

  /* A goodbye: everything in flight goes back, at the head, in order. */
  tlspyo_router_leave (rec->router, c);
  assert_journal (journal, "requeued 4 at -2", "requeued 3 at -3", "requeued 2 at -4", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 3);

  /* Dropped from a full queue: removed, oldest first. */
  tlspyo_router_accept_group (rec->router, "g", -1, 1);
  assert_journal (journal, "removed 2", "removed 3", NULL);

  /* Broadcasts: the latest, with its number. */
  tlspyo_router_broadcast (rec->router, "g", b1);
  tlspyo_router_broadcast (rec->router, "g", b1);
  assert_journal (journal, "latest g 1 b1", "latest g 2 b1", NULL);

  /* A refused group (only "g" is declared) changes nothing durable. */
  tlspyo_router_broadcast (rec->router, "nope", b1);
  tlspyo_router_produce (rec->router, "nope", o1, 1);
  assert_journal (journal, NULL);

  /* Without a journal, nothing is reported. */
  tlspyo_router_set_journal (rec->router, NULL, NULL);
  tlspyo_router_produce (rec->router, "g", o1, 1);
  g_assert_cmpuint (journal->len, ==, 0);
  g_ptr_array_set_size (rec->deliveries, 0);
  tlspyo_router_session_free (rec->router, session);
}

/* Restored objects keep their places: a requeued one sorts before
 * the restored queue's head, whatever its position was. */
static void
test_journal_restored_positions (Recorder      *rec,
                                 gconstpointer  data)
{
  g_autoptr(GPtrArray) journal = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GBytes) o3 = object_new ("o3");
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a;

  tlspyo_router_session_set_data (session, (gpointer) "S");
  tlspyo_router_restore_queued (rec->router, "g", o1, 10, -7);
  tlspyo_router_restore_queued (rec->router, "g", o2, 11, 11);
  tlspyo_router_restore_parked (rec->router, session, "g", o3, 9);
  tlspyo_router_set_journal (rec->router, &test_journal, journal);
  tlspyo_router_session_expire (rec->router, session);
  assert_journal (journal, "requeued 9 at -8", NULL);
  a = join_ok (rec, "a", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", -1);
  assert_deliveries (rec, "a:g:o3", "a:g:o1", "a:g:o2", NULL);
  tlspyo_router_leave (rec->router, a);
  tlspyo_router_session_free (rec->router, session);
}

/* A restored session knows its counts only in the groups where it has
 * objects parked: resuming, it takes the endpoint's counts in the others,
 * so that what it hands there is numbered on from them (and a later
 * restore tells what the endpoint never received). */
static void
test_journal_resume_counts (Recorder      *rec,
                            gconstpointer  data)
{
  g_autoptr(GPtrArray) journal = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GBytes) o1 = object_new ("o1");
  g_autoptr(GBytes) o2 = object_new ("o2");
  g_autoptr(GVariant) received = g_variant_ref_sink (g_variant_new_parsed ("{'g': @t 4, 'h': 5}"));
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a;

  tlspyo_router_session_set_data (session, (gpointer) "S");
  tlspyo_router_restore_parked (rec->router, session, "g", o1, 3);
  tlspyo_router_session_set_handed (session, "g", 4);
  tlspyo_router_set_journal (rec->router, &test_journal, journal);
  a = join_ok (rec, "a", "g", "h", NULL);
  g_assert_true (tlspyo_router_resume (rec->router, a, session, received));
  assert_journal (journal, NULL);
  tlspyo_router_produce (rec->router, "h", o2, 1);
  tlspyo_router_produce (rec->router, "g", o2, 1);
  tlspyo_router_notify (rec->router, a, "h", 1);
  tlspyo_router_notify (rec->router, a, "g", 1);
  assert_journal (journal, "next 5", "queued 4 h o2", "next 6", "queued 5 g o2",
                  "held 4 S #6", "held 5 S #5", NULL);
  g_ptr_array_set_size (rec->deliveries, 0);
  tlspyo_router_leave (rec->router, a);
  tlspyo_router_session_free (rec->router, session);
}

/* 11. In-flight cap */

/* What an object of @size bytes counts against the in-flight cap. */
#define FLIGHT_COST(size) ((size) + 64)

/* A consumer whose application takes nothing holds at most the cap; its
 * credit waits, the others are served meanwhile, and taking makes room. */
static void
test_in_flight_cap (Recorder      *rec,
                    gconstpointer  data)
{
  const char *names[] = { "o1", "o2", "o3", "o4", "o5", "o6" };
  GBytes *objects[G_N_ELEMENTS (names)];
  TlspyoRouterPeer *a, *b;

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    objects[i] = object_new (names[i]);
  tlspyo_router_set_max_in_flight_bytes (rec->router, 3 * FLIGHT_COST (2));
  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_notify (rec->router, a, "g", 100);
  for (guint i = 0; i < 5; i++)
    tlspyo_router_produce (rec->router, "g", objects[i], 1);
  assert_deliveries (rec, "a:g:o1", "a:g:o2", "a:g:o3", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 2);
  /* Its credit is kept, and counted. */
  g_assert_cmpuint (tlspyo_router_get_credit (rec->router, "g"), ==, 97);

  /* Another consumer is served from the queue meanwhile. */
  tlspyo_router_notify (rec->router, b, "g", 1);
  assert_deliveries (rec, "b:g:o4", NULL);

  /* a's application takes one: room for one more. */
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));
  assert_deliveries (rec, "a:g:o5", NULL);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  /* At the cap again: a new object waits in the queue, not in flight. */
  tlspyo_router_produce (rec->router, "g", objects[5], 1);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 2));
  assert_deliveries (rec, "a:g:o6", NULL);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 3);  /* o5, o6; b's o4 */
  g_assert_cmpuint (tlspyo_router_get_credit (rec->router, "g"), ==, 95);

  /* Taking everything with nothing queued delivers nothing. */
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 2));
  assert_no_deliveries (rec);
  for (guint i = 0; i < G_N_ELEMENTS (objects); i++)
    g_bytes_unref (objects[i]);
}

/* An object larger than the cap still goes, one at a time; "everything
 * queued" (notify -1) gets what fits, the rest stays queued; 0 means no
 * cap. */
static void
test_in_flight_cap_large (Recorder      *rec,
                          gconstpointer  data)
{
  g_autofree char *text = g_strnfill (1000, 'x');
  g_autoptr(GBytes) big = g_bytes_new (text, 1000);
  TlspyoRouterPeer *a, *b;

  tlspyo_router_set_max_in_flight_bytes (rec->router, 100);
  a = join_ok (rec, "a", "g", NULL);
  b = join_ok (rec, "b", "g", NULL);
  tlspyo_router_produce (rec->router, "g", big, 3);
  tlspyo_router_notify (rec->router, a, "g", 10);
  g_assert_cmpuint (rec->deliveries->len, ==, 1);
  g_ptr_array_set_size (rec->deliveries, 0);
  g_assert_true (tlspyo_router_taken (rec->router, a, "g", 1));
  g_assert_cmpuint (rec->deliveries->len, ==, 1);
  g_ptr_array_set_size (rec->deliveries, 0);

  /* Everything queued now (two objects), within the cap: one. */
  tlspyo_router_produce (rec->router, "g", big, 1);
  tlspyo_router_notify (rec->router, b, "g", -1);
  g_assert_cmpuint (rec->deliveries->len, ==, 1);
  g_ptr_array_set_size (rec->deliveries, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  tlspyo_router_notify (rec->router, b, "g", -1);
  assert_no_deliveries (rec);
  g_assert_true (tlspyo_router_taken (rec->router, b, "g", 1));
  assert_no_deliveries (rec);  /* no credit: a notify of -1 is not remembered */
  tlspyo_router_notify (rec->router, b, "g", -1);
  g_assert_cmpuint (rec->deliveries->len, ==, 1);
  g_ptr_array_set_size (rec->deliveries, 0);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 0);

  tlspyo_router_produce (rec->router, "g", big, 2);
  assert_no_deliveries (rec);
  tlspyo_router_set_max_in_flight_bytes (rec->router, 0);
  g_assert_cmpuint (rec->deliveries->len, ==, 2);
  g_assert_cmpuint (tlspyo_router_get_n_in_flight (rec->router, "g"), ==, 4);
}

/* Lowering the cap takes a consumer out of the ready ring at once; raising
 * it serves a waiting one at once. Parked objects resumed by a session
 * count against the cap of the new connection. */
static void
test_in_flight_cap_changes (Recorder      *rec,
                            gconstpointer  data)
{
  g_autoptr(GBytes) o = object_new ("o");
  g_autoptr(GVariant) got2 = received_counts ("g", 2);
  g_autoptr(GVariant) none = received_counts (NULL, 0);
  TlspyoRouterSession *session = tlspyo_router_session_new (rec->router);
  TlspyoRouterPeer *a, *a2;

  a = join_ok (rec, "a", "g", NULL);
  g_assert_false (tlspyo_router_resume (rec->router, a, session, none));
  tlspyo_router_notify (rec->router, a, "g", 10);
  tlspyo_router_produce (rec->router, "g", o, 2);
  assert_deliveries (rec, "a:g:o", "a:g:o", NULL);

  tlspyo_router_set_max_in_flight_bytes (rec->router, 2 * FLIGHT_COST (1));
  tlspyo_router_produce (rec->router, "g", o, 1);
  assert_no_deliveries (rec);
  tlspyo_router_set_max_in_flight_bytes (rec->router, 3 * FLIGHT_COST (1));
  assert_deliveries (rec, "a:g:o", NULL);
  tlspyo_router_set_max_in_flight_bytes (rec->router, 2 * FLIGHT_COST (1));

  /* Lost with three in flight, the endpoint had received two: the third
   * goes back to the queue, the two come back in flight, at the cap. */
  tlspyo_router_park (rec->router, a);
  a2 = join_ok (rec, "a2", "g", NULL);
  g_assert_true (tlspyo_router_resume (rec->router, a2, session, got2));
  tlspyo_router_notify (rec->router, a2, "g", 10);
  assert_no_deliveries (rec);
  g_assert_cmpuint (tlspyo_router_get_queue_length (rec->router, "g"), ==, 1);
  g_assert_true (tlspyo_router_taken (rec->router, a2, "g", 1));
  assert_deliveries (rec, "a2:g:o", NULL);
  tlspyo_router_leave (rec->router, a2);
  tlspyo_router_session_free (rec->router, session);
}

int
main (int    argc,
      char **argv)
{
  tlspyo_test_init (&argc, &argv);

  ROUTER_TEST ("/router/groups/open", test_groups_open);
  ROUTER_TEST ("/router/groups/declared-only", test_groups_declared_only);
  ROUTER_TEST ("/router/groups/update-limits", test_groups_update_limits);
  ROUTER_TEST ("/router/join/refused-undeclared", test_join_refused_undeclared);
  ROUTER_TEST ("/router/join/refused-full", test_join_refused_full);
  ROUTER_TEST ("/router/join/full-counts-current-members", test_join_full_counts_current_members);
  ROUTER_TEST ("/router/join/duplicates", test_join_duplicates);
  ROUTER_TEST ("/router/join/latest", test_join_latest);
  ROUTER_TEST ("/router/join/no-groups", test_join_no_groups);
  ROUTER_TEST ("/router/leave/keeps-queue", test_leave_keeps_queue);
  ROUTER_TEST ("/router/leave/ready-ring", test_leave_ready_ring);
  ROUTER_TEST ("/router/leave/requeues-untaken", test_leave_requeues_untaken);
  ROUTER_TEST ("/router/leave/requeue-serves-ready", test_leave_requeue_serves_ready);
  ROUTER_TEST ("/router/broadcast/members", test_broadcast_members);
  ROUTER_TEST ("/router/broadcast/replaces-latest", test_broadcast_replaces_latest);
  ROUTER_TEST ("/router/broadcast/undeclared", test_broadcast_undeclared);
  ROUTER_TEST ("/router/broadcast/many-members", test_broadcast_many_members);
  ROUTER_TEST ("/router/produce/fifo", test_produce_fifo);
  ROUTER_TEST ("/router/produce/credit-first", test_produce_credit_first);
  ROUTER_TEST ("/router/produce/copies", test_produce_copies);
  ROUTER_TEST ("/router/produce/undeclared", test_produce_undeclared);
  ROUTER_TEST ("/router/produce/max-consumables", test_produce_max_consumables);
  ROUTER_TEST ("/router/produce/max-consumables-zero", test_produce_max_consumables_zero);
  ROUTER_TEST ("/router/notify/take-all", test_notify_take_all);
  ROUTER_TEST ("/router/notify/ignored", test_notify_ignored);
  ROUTER_TEST ("/router/notify/credit-accumulates", test_notify_credit_accumulates);
  ROUTER_TEST ("/router/dispatch/fairness", test_dispatch_fairness);
  ROUTER_TEST ("/router/dispatch/queue-to-ring", test_dispatch_queue_to_ring);
  ROUTER_TEST ("/router/in-flight/cap", test_in_flight_cap);
  ROUTER_TEST ("/router/in-flight/cap-large", test_in_flight_cap_large);
  ROUTER_TEST ("/router/in-flight/cap-changes", test_in_flight_cap_changes);
  ROUTER_TEST ("/router/route/mixed", test_route_mixed);
  ROUTER_TEST ("/router/route/one-copy-per-group", test_route_one_copy_per_group);
  ROUTER_TEST ("/router/route/undeclared", test_route_undeclared);
  ROUTER_TEST ("/router/introspection/unknown", test_introspection_unknown);
  ROUTER_TEST ("/router/free/with-state", test_free_with_state);
  ROUTER_TEST ("/router/delivery/kinds", test_delivery_kinds);
  ROUTER_TEST ("/router/session/park-resume", test_session_park_resume);
  ROUTER_TEST ("/router/session/expire", test_session_expire);
  ROUTER_TEST ("/router/session/free-requeues", test_session_free_requeues);
  ROUTER_TEST ("/router/session/restore-parked", test_session_restore_parked);
  ROUTER_TEST ("/router/ids", test_ids);
  ROUTER_TEST ("/router/broadcast/seq", test_broadcast_seq);
  ROUTER_TEST ("/router/journal/changes", test_journal_changes);
  ROUTER_TEST ("/router/journal/restored-positions", test_journal_restored_positions);
  ROUTER_TEST ("/router/journal/resume-counts", test_journal_resume_counts);

  return g_test_run ();
}
