/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <string.h>

#include "tlspyo-endpoint-private.h"

/* The local queue of received objects: how they arrive from the worker,
 * go through object-received on the owner's context, wait in the queue and
 * are taken by the application (pop() and the like), and what the relay
 * must hear of the produced ones: taken (TAKEN), suspended while the
 * connection is lost, forgotten when the relay did not keep them. */

typedef enum {
  TAKE_OLDEST,
  TAKE_NEWEST,
  TAKE_ALL,
} TakeMode;

static GPtrArray *take_locked (TlspyoEndpoint *self, TakeMode mode, guint max_items);

/* The application has the object of @tag (popped, or consumed by a
 * handler): the relay can forget it. Only for objects of the current
 * session state; those of a forgotten one were handed out again. */
static void
note_taken_locked (TlspyoEndpoint *self,
                   ReceivedTag    *tag)
{
  guint n;

  if (tag == NULL || tag->group == NULL || tag->epoch != self->epoch)
    return;
  /* Sent at the worker's next iteration: it cannot reach 2^32 before. */
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->taken, tag->group));
  g_hash_table_insert (self->taken, g_strdup (tag->group), GUINT_TO_POINTER (n + 1));
  tlspyo_endpoint_kick_locked (self);
}

void
tlspyo_endpoint_dispatch_free (gpointer data)
{
  Dispatch *d = data;

  g_clear_pointer (&d->object, g_variant_unref);
  g_free (d->group);
  /* Never dispatched (the owner's context went away): nobody took it. */
  if (d->tag != NULL)
    {
      g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);

      if (self != NULL)
        {
          g_mutex_lock (&self->mutex);
          g_queue_remove (&self->dispatching, d->tag);
          g_mutex_unlock (&self->mutex);
        }
      received_tag_free (d->tag);
    }
  g_weak_ref_clear (&d->endpoint);
  g_free (d);
}

void
tlspyo_endpoint_post_to_owner (GMainContext *context,
                               GSourceFunc   func,
                               Dispatch     *d)
{
  GSource *source = g_idle_source_new ();

  g_source_set_callback (source, func, d, tlspyo_endpoint_dispatch_free);
  g_source_set_static_name (source, "[tlspyo] endpoint dispatch");
  g_source_attach (source, context);
  g_source_unref (source);
}

/* Hands objects to waiting pop_async() calls first, then to the queue.
 * Tasks to complete are collected, to be returned after unlocking. The
 * caller wakes the waiters, once for all the objects it queues. */
static void
queue_object_locked (TlspyoEndpoint *self,
                     GVariant       *object,
                     ReceivedTag    *tag,
                     GPtrArray      *completed)
{
  gboolean suspended = tag != NULL && tag->suspended;
  PopRequest *request = suspended ? NULL : g_queue_pop_head (&self->pop_requests);

  if (request != NULL)
    {
      GPtrArray *objects = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);

      g_ptr_array_add (objects, object);
      g_task_set_task_data (request->task, objects, (GDestroyNotify) g_ptr_array_unref);
      g_ptr_array_add (completed, request);
      note_taken_locked (self, tag);
      received_tag_free (tag);
    }
  else
    {
      g_queue_push_tail (&self->received, object);
      g_queue_push_tail (&self->received_tags, tag);
      if (suspended)
        self->n_suspended++;
    }
}

void
tlspyo_endpoint_complete_pop_requests (GPtrArray *completed)
{
  for (guint i = 0; i < completed->len; i++)
    {
      PopRequest *request = g_ptr_array_index (completed, i);
      GPtrArray *objects = g_task_get_task_data (request->task);

      if (request->cancel_id != 0)
        g_cancellable_disconnect (request->cancellable, request->cancel_id);
      g_task_return_pointer (request->task, g_ptr_array_ref (objects),
                             (GDestroyNotify) g_ptr_array_unref);
      g_clear_object (&request->task);
      g_clear_object (&request->cancellable);
      g_free (request);
    }
}

static gboolean
object_received_cb (gpointer data)
{
  Dispatch *d = data;
  g_autoptr(TlspyoEndpoint) self = g_weak_ref_get (&d->endpoint);
  g_autoptr(GPtrArray) completed = NULL;
  ReceivedTag *tag = d->tag;
  gboolean handled;

  if (self == NULL)
    return G_SOURCE_REMOVE;

  g_mutex_lock (&self->mutex);
  if (tag != NULL && tag->epoch != self->epoch)
    {
      /* Forgotten on its way here (stop(), or the relay did not keep it
       * for this endpoint): the relay hands it out again, and its credit
       * was given back. */
      g_queue_remove (&self->dispatching, tag);
      self->pending_dispatch--;
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
      g_mutex_unlock (&self->mutex);
      return G_SOURCE_REMOVE;
    }
  if (tag != NULL && tag->suspended)
    {
      /* Its connection was lost on its way here: held, and still pending
       * so that what follows waits behind it, until RESUMED says whether
       * the relay kept it for this endpoint. */
      Dispatch *held = g_new0 (Dispatch, 1);

      g_queue_remove (&self->dispatching, tag);
      g_weak_ref_init (&held->endpoint, self);
      held->object = g_steal_pointer (&d->object);
      held->group = g_steal_pointer (&d->group);
      held->tag = g_steal_pointer (&d->tag);
      g_queue_push_tail (&self->held_dispatch, held);
      g_mutex_unlock (&self->mutex);
      return G_SOURCE_REMOVE;
    }
  g_mutex_unlock (&self->mutex);

  /* The tag stays in dispatching while the handlers run, so that a
   * connection lost meanwhile suspends it. */
  handled = tlspyo_endpoint_emit_object_received (self, d->object, d->group);

  completed = g_ptr_array_new ();
  g_mutex_lock (&self->mutex);
  if (tag != NULL)
    g_queue_remove (&self->dispatching, tag);
  self->pending_dispatch--;
  if (tag != NULL && tag->epoch != self->epoch)
    {
      /* Forgotten while the handlers ran: its credit was given back then.
       * Taken meanwhile, it may be handed out again (docs/protocol.md). */
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
    }
  else if (!handled)
    {
      queue_object_locked (self, g_steal_pointer (&d->object), g_steal_pointer (&d->tag),
                           completed);
      wake_locked (self);
    }
  else
    {
      note_taken_locked (self, d->tag);
      g_clear_pointer (&d->tag, received_tag_free);
      wake_locked (self);
    }
  g_mutex_unlock (&self->mutex);
  tlspyo_endpoint_complete_pop_requests (completed);
  return G_SOURCE_REMOVE;
}

/* Broadcast @seq of @group from relay @instance: FALSE if this endpoint
 * has it, or a newer one, already (a latest broadcast sent again on
 * joining, or one older than what it has). */
static gboolean
broadcast_is_new_locked (TlspyoEndpoint *self,
                         const char     *group,
                         guint64         instance,
                         guint64         seq)
{
  SeenBroadcast *seen = g_hash_table_lookup (self->seen, group);

  if (seen != NULL && seen->instance == instance && seq <= seen->seq)
    return FALSE;
  if (seen == NULL)
    {
      seen = g_new (SeenBroadcast, 1);
      g_hash_table_insert (self->seen, g_strdup (group), seen);
    }
  seen->instance = instance;
  seen->seq = seq;
  return TRUE;
}

static void
use_credit_locked (TlspyoEndpoint *self,
                   const char     *group)
{
  gint64 *credit = g_hash_table_lookup (self->credit, group);

  if (credit != NULL && *credit > 0 && --*credit == 0)
    g_hash_table_remove (self->credit, group);
}

/* Objects go straight to the queue unless someone listens to
 * object-received: then they travel through the owner's context, where
 * the signal must be emitted, and everything after them too so that order
 * is kept. */
static void
receive_locked (TlspyoEndpoint *self,
                GVariant       *object,
                const char     *group,
                gboolean        produced,
                gboolean        used_credit,
                gboolean        listening,
                GPtrArray      *completed)
{
  guint64 *count;
  ReceivedTag *tag = NULL;

  if (produced)
    {
      tag = g_new0 (ReceivedTag, 1);
      tag->group = g_strdup (group);
      tag->used_credit = used_credit;
      tag->epoch = self->epoch;
      /* What the relay counts as handed to this session: SESSION tells it
       * after a lost connection, so that it knows which never arrived. */
      count = g_hash_table_lookup (self->received_counts, group);
      if (count == NULL)
        {
          count = g_new0 (guint64, 1);
          g_hash_table_insert (self->received_counts, g_strdup (group), count);
        }
      (*count)++;
    }
  if (self->pending_dispatch > 0 || listening)
    {
      Dispatch *d = g_new0 (Dispatch, 1);

      self->pending_dispatch++;
      g_weak_ref_init (&d->endpoint, self);
      d->object = object;
      d->group = g_strdup (group);
      d->tag = tag;
      if (tag != NULL)
        g_queue_push_tail (&self->dispatching, tag);
      tlspyo_endpoint_post_to_owner (self->owner_context, object_received_cb, d);
    }
  else
    queue_object_locked (self, object, tag, completed);
}

/* Called on the worker with the objects of one read from the connection,
 * in order: the mutex is taken, the signal's handlers looked up and the
 * waiters woken once for all of them rather than once each. Consumes the
 * elements; @batch is left empty. */
void
tlspyo_endpoint_receive_batch (TlspyoEndpoint *self,
                               GArray         *batch)
{
  g_autoptr(GPtrArray) completed = NULL;
  const char *last_group = NULL;
  gboolean listening = FALSE;

  if (batch->len == 0)
    return;

  /* Before taking the mutex, as the signal system has its own lock. A
   * handler connected meanwhile sees the objects of the next read. */
  for (guint i = 0; i < batch->len; i++)
    {
      TlspyoReceived *r = &g_array_index (batch, TlspyoReceived, i);

      if (last_group == NULL || strcmp (last_group, r->group) != 0)
        {
          last_group = r->group;
          listening = tlspyo_endpoint_has_object_received_handler (self, r->group);
        }
      r->listening = listening;
    }

  completed = g_ptr_array_new ();
  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < batch->len; i++)
    {
      TlspyoReceived *r = &g_array_index (batch, TlspyoReceived, i);
      GVariant *object = g_steal_pointer (&r->object);

      if (!r->produced && !broadcast_is_new_locked (self, r->group, r->instance, r->seq))
        g_variant_unref (object);
      else
        {
          if (r->used_credit)
            use_credit_locked (self, r->group);
          receive_locked (self, object, r->group, r->produced, r->used_credit, r->listening,
                          completed);
        }
      g_clear_pointer (&r->meta, g_variant_unref);
    }
  wake_locked (self);
  g_mutex_unlock (&self->mutex);
  g_array_set_size (batch, 0);
  tlspyo_endpoint_complete_pop_requests (completed);
}

static void
give_back_credit_locked (TlspyoEndpoint *self,
                         ReceivedTag    *tag)
{
  gint64 *credit;

  if (!tag->used_credit)
    return;
  credit = g_hash_table_lookup (self->credit, tag->group);
  if (credit == NULL)
    {
      credit = g_new0 (gint64, 1);
      g_hash_table_insert (self->credit, g_strdup (tag->group), credit);
    }
  if (*credit < G_MAXINT64)
    (*credit)++;
}

/* The connection was lost (not stopped): the produced objects of it the
 * application has not taken are suspended, neither handed out nor
 * forgotten, until RESUMED says whether the relay kept them for this
 * endpoint. The broadcasts are not concerned. */
void
tlspyo_endpoint_suspend_untaken_locked (TlspyoEndpoint *self)
{
  for (GList *t = self->received_tags.head; t != NULL; t = t->next)
    {
      ReceivedTag *tag = t->data;

      if (tag == NULL || tag->group == NULL || tag->suspended)
        continue;
      tag->suspended = TRUE;
      self->n_suspended++;
    }
  /* On their way to object-received: held when they get there. */
  for (GList *l = self->dispatching.head; l != NULL; l = l->next)
    ((ReceivedTag *) l->data)->suspended = TRUE;
}

/* The relay kept them: the suspended objects are the application's again,
 * in their order, ahead of what comes next. */
void
tlspyo_endpoint_resume_suspended_locked (TlspyoEndpoint *self,
                                         GPtrArray      *completed)
{
  Dispatch *d;

  for (GList *t = self->received_tags.head; t != NULL && self->n_suspended > 0; t = t->next)
    {
      ReceivedTag *tag = t->data;

      if (tag != NULL && tag->suspended)
        {
          tag->suspended = FALSE;
          self->n_suspended--;
        }
    }
  for (GList *l = self->dispatching.head; l != NULL; l = l->next)
    ((ReceivedTag *) l->data)->suspended = FALSE;
  while ((d = g_queue_pop_head (&self->held_dispatch)) != NULL)
    {
      d->tag->suspended = FALSE;
      g_queue_push_tail (&self->dispatching, d->tag);
      tlspyo_endpoint_post_to_owner (self->owner_context, object_received_cb, d);
    }
  /* pop_async() calls that waited while only suspended objects were there. */
  while (available_locked (self) > 0 && !g_queue_is_empty (&self->pop_requests))
    {
      PopRequest *request = g_queue_pop_head (&self->pop_requests);

      g_task_set_task_data (request->task, take_locked (self, TAKE_OLDEST, request->max_items),
                            (GDestroyNotify) g_ptr_array_unref);
      g_ptr_array_add (completed, request);
    }
}

/* Forgets the produced objects not taken, suspended or not: after stop()
 * the relay put them back at the head of their queues, and a relay that
 * did not keep them (its session-timeout passed, or it restarted) did too
 * or lost them. The credit they used is given back, to be announced on the
 * next connection, and what was counted for the relay starts again from
 * nothing. The broadcasts stay. */
void
tlspyo_endpoint_forget_produced_locked (TlspyoEndpoint *self)
{
  GList *l, *t, *next_l, *next_t;
  Dispatch *d;

  for (l = self->received.head, t = self->received_tags.head; l != NULL; l = next_l, t = next_t)
    {
      ReceivedTag *tag = t->data;

      next_l = l->next;
      next_t = t->next;
      if (tag == NULL || tag->group == NULL)
        continue;
      give_back_credit_locked (self, tag);
      g_variant_unref (l->data);
      received_tag_free (tag);
      g_queue_delete_link (&self->received, l);
      g_queue_delete_link (&self->received_tags, t);
    }
  self->n_suspended = 0;
  /* On their way to object-received: dropped when they get there. */
  for (l = self->dispatching.head; l != NULL; l = l->next)
    give_back_credit_locked (self, l->data);
  while ((d = g_queue_pop_head (&self->held_dispatch)) != NULL)
    {
      give_back_credit_locked (self, d->tag);
      g_clear_pointer (&d->tag, received_tag_free);
      self->pending_dispatch--;
      tlspyo_endpoint_dispatch_free (d);
    }
  g_hash_table_remove_all (self->taken);
  g_hash_table_remove_all (self->received_counts);
  self->epoch++;
}

static gboolean
has_objects_or_stopped (gpointer data)
{
  TlspyoEndpoint *self = data;

  return available_locked (self) > 0 || !self->running;
}

/* Suspended objects are skipped: they are not the application's yet. */
static GPtrArray *
take_locked (TlspyoEndpoint *self,
             TakeMode        mode,
             guint           max_items)
{
  GPtrArray *objects = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  guint n = available_locked (self);
  GList *l, *t, *next_l, *next_t;

  if (mode == TAKE_ALL)
    max_items = n;
  for (l = self->received.head, t = self->received_tags.head;
       l != NULL && objects->len < max_items; l = next_l, t = next_t)
    {
      ReceivedTag *tag = t->data;

      next_l = l->next;
      next_t = t->next;
      if (tag != NULL && tag->suspended)
        continue;
      note_taken_locked (self, tag);
      received_tag_free (tag);
      /* What get_last() skips counts as taken: the application chose to. */
      if (mode == TAKE_NEWEST && n > max_items)
        {
          g_variant_unref (l->data);
          n--;
        }
      else
        g_ptr_array_add (objects, l->data);
      g_queue_delete_link (&self->received, l);
      g_queue_delete_link (&self->received_tags, t);
    }
  return objects;
}

static GPtrArray *
receive (TlspyoEndpoint  *self,
         TakeMode         mode,
         guint            max_items,
         int              timeout_ms,
         GError         **error)
{
  g_autoptr(GMutexLocker) locker = NULL;

  if (mode != TAKE_ALL && max_items == 0)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                           "max_items is 0: ask for at least one object");
      return NULL;
    }

  locker = g_mutex_locker_new (&self->mutex);
  if (timeout_ms != 0 && !self->running && available_locked (self) == 0)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint is not running, so nothing can arrive: call "
                           "tlspyo_endpoint_start() first");
      return NULL;
    }
  tlspyo_wait_until (&self->mutex, &self->cond, wait_context_locked (self), timeout_ms,
                     has_objects_or_stopped, self);
  /* Stopped by another thread while this one waited: nothing more can come,
   * and a wait without limit must not last forever. */
  if (timeout_ms != 0 && !self->running && available_locked (self) == 0)
    {
      g_set_error_literal (error, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                           "The endpoint stopped while waiting for objects");
      return NULL;
    }
  return take_locked (self, mode, max_items);
}

/**
 * tlspyo_endpoint_pop:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Takes the oldest objects from the local queue. Waits until at least one
 * is there or the timeout passes, then returns all there is, up to
 * @max_items. Called on the thread that started the endpoint, it iterates
 * that thread's main context while it waits.
 *
 * With a timeout other than 0, it fails with %TLSPYO_ERROR_CLOSED when the
 * endpoint is not running, or stops while it waits, and the queue is empty:
 * nothing could arrive.
 *
 * Produced objects (from [method@Tlspyo.Endpoint.notify_ready]) stay the
 * relay's until the application takes them: returned by this function,
 * [method@Tlspyo.Endpoint.get_last] (which takes the older ones it skips
 * too), [method@Tlspyo.Endpoint.receive_all] or
 * [method@Tlspyo.Endpoint.pop_async], or consumed by an
 * [signal@Tlspyo.Endpoint::object-received] handler that returns %TRUE.
 * If the connection is lost before, those still in its local queue are
 * suspended (not returned) until the endpoint is back: the relay keeps
 * them for it for its [property@Tlspyo.Relay:session-timeout], and they
 * are returned then, in order; later, or after [method@Tlspyo.Endpoint.stop],
 * the relay puts them back at the head of their group's queue for another
 * consumer: a consumer that dies does not take objects with it, and an
 * object is handed to one application only, except one taken by a process
 * that dies before the relay heard of it (docs/protocol.md, TAKEN).
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_pop (TlspyoEndpoint  *self,
                     guint            max_items,
                     int              timeout_ms,
                     GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_OLDEST, max_items, timeout_ms, error);
}

/**
 * tlspyo_endpoint_get_last:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Like [method@Tlspyo.Endpoint.pop], but returns the newest @max_items
 * objects and discards everything older, as tlspyo's `get_last`.
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_get_last (TlspyoEndpoint  *self,
                          guint            max_items,
                          int              timeout_ms,
                          GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_NEWEST, max_items, timeout_ms, error);
}

/**
 * tlspyo_endpoint_receive_all:
 * @self: an endpoint
 * @timeout_ms: how long to wait for an object: 0 not at all, -1 without limit
 * @error: return location for a #GError
 *
 * Takes every object in the local queue, waiting for at least one as
 * [method@Tlspyo.Endpoint.pop] does.
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest
 *   first; empty if none arrived in time
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_receive_all (TlspyoEndpoint  *self,
                             int              timeout_ms,
                             GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (self, TAKE_ALL, 0, timeout_ms, error);
}

static void
pop_cancelled_cb (GCancellable *cancellable,
                  gpointer      user_data)
{
  GTask *task = user_data;
  TlspyoEndpoint *self = g_task_get_source_object (task);
  PopRequest *found = NULL;

  g_mutex_lock (&self->mutex);
  for (GList *l = self->pop_requests.head; l != NULL; l = l->next)
    {
      PopRequest *request = l->data;
      if (request->task == task)
        {
          found = request;
          g_queue_delete_link (&self->pop_requests, l);
          break;
        }
    }
  g_mutex_unlock (&self->mutex);

  if (found == NULL)
    return;
  /* Disconnecting from inside the handler would deadlock; the request
   * owns no handler id any more. */
  g_task_return_error_if_cancelled (found->task);
  g_clear_object (&found->task);
  g_clear_object (&found->cancellable);
  g_free (found);
}

/**
 * tlspyo_endpoint_pop_async:
 * @self: an endpoint
 * @max_items: the most objects to return, at least 1
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when objects are there
 * @user_data: (closure): data for @callback
 *
 * Takes the oldest objects from the local queue without blocking: @callback
 * runs, on the thread-default main context of the caller, as soon as at
 * least one object is there. Finish with [method@Tlspyo.Endpoint.pop_finish].
 *
 * It fails with %G_IO_ERROR_CANCELLED when @cancellable fires before an
 * object came, and with %TLSPYO_ERROR_CLOSED when the endpoint is not
 * running or stops before one came.
 *
 * Since: 0.1
 */
void
tlspyo_endpoint_pop_async (TlspyoEndpoint      *self,
                           guint                max_items,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  PopRequest *request = NULL;
  GPtrArray *objects = NULL;

  g_return_if_fail (TLSPYO_IS_ENDPOINT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, tlspyo_endpoint_pop_async);
  /* Objects taken from the queue must reach the caller even when the
   * cancellable fires after they were: cancellation is reported only while
   * the request is still waiting (pop_cancelled_cb). */
  g_task_set_check_cancellable (task, FALSE);
  if (max_items == 0)
    {
      g_task_return_new_error (task, TLSPYO_ERROR, TLSPYO_ERROR_INVALID_ARGUMENT,
                               "max_items is 0: ask for at least one object");
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;

  g_mutex_lock (&self->mutex);
  if (available_locked (self) > 0)
    objects = take_locked (self, TAKE_OLDEST, max_items);
  else if (!self->running)
    {
      /* Nothing can arrive: as pop() with a timeout, rather than a request
       * that never completes. */
      g_mutex_unlock (&self->mutex);
      g_task_return_new_error (task, TLSPYO_ERROR, TLSPYO_ERROR_CLOSED,
                               "The endpoint is not running, so nothing can arrive: call "
                               "tlspyo_endpoint_start() first");
      return;
    }
  else
    {
      request = g_new0 (PopRequest, 1);
      request->task = g_object_ref (task);
      request->max_items = max_items;
      g_queue_push_tail (&self->pop_requests, request);
    }
  g_mutex_unlock (&self->mutex);

  if (objects != NULL)
    {
      g_task_return_pointer (task, objects, (GDestroyNotify) g_ptr_array_unref);
      return;
    }

  if (cancellable != NULL)
    {
      gulong id = g_cancellable_connect (cancellable, G_CALLBACK (pop_cancelled_cb), task, NULL);

      g_mutex_lock (&self->mutex);
      if (g_queue_find (&self->pop_requests, request) != NULL)
        {
          request->cancellable = g_object_ref (cancellable);
          request->cancel_id = id;
          id = 0;
        }
      g_mutex_unlock (&self->mutex);
      /* Already completed or cancelled meanwhile. */
      if (id != 0)
        g_cancellable_disconnect (cancellable, id);
    }
}

/**
 * tlspyo_endpoint_pop_finish:
 * @self: an endpoint
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Tlspyo.Endpoint.pop_async].
 *
 * Returns: (transfer container) (element-type GVariant): the objects, oldest first
 *
 * Since: 0.1
 */
GPtrArray *
tlspyo_endpoint_pop_finish (TlspyoEndpoint  *self,
                            GAsyncResult    *result,
                            GError         **error)
{
  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == tlspyo_endpoint_pop_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * tlspyo_endpoint_get_n_queued:
 * @self: an endpoint
 *
 * Counts the received objects not yet taken.
 *
 * Returns: how many received objects wait in the local queue
 *
 * Since: 0.1
 */
guint
tlspyo_endpoint_get_n_queued (TlspyoEndpoint *self)
{
  g_autoptr(GMutexLocker) locker = NULL;

  g_return_val_if_fail (TLSPYO_IS_ENDPOINT (self), 0);
  locker = g_mutex_locker_new (&self->mutex);
  return available_locked (self);
}

