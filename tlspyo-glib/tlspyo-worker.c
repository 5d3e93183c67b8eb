/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-worker-private.h"

struct _TlspyoWorker {
  GMainContext *context;
  GMainLoop    *loop;
  GThread      *thread;
  guint         users;
  gboolean      detached;  /* released from its own thread: frees itself */
};

static GMutex worker_lock;
static TlspyoWorker *default_worker;
static gint outstanding;

#define DRAIN_TIMEOUT_US (5 * G_USEC_PER_SEC)

void
tlspyo_worker_hold (void)
{
  g_atomic_int_inc (&outstanding);
}

void
tlspyo_worker_unhold (void)
{
  g_atomic_int_dec_and_test (&outstanding);
}

static gboolean
drain_tick (gpointer data)
{
  return G_SOURCE_REMOVE;
}

static gpointer
worker_thread (gpointer data)
{
  TlspyoWorker *worker = data;

  g_main_context_push_thread_default (worker->context);
  g_main_loop_run (worker->loop);

  /* Let what the last users started on their way out (cancelled reads,
   * stream closes) come back and free what they hold. */
  {
    gint64 deadline = g_get_monotonic_time () + DRAIN_TIMEOUT_US;

    while (g_atomic_int_get (&outstanding) > 0 && g_get_monotonic_time () < deadline)
      {
        GSource *tick = g_timeout_source_new (10);

        g_source_set_callback (tick, drain_tick, NULL, NULL);
        g_source_attach (tick, worker->context);
        g_main_context_iteration (worker->context, TRUE);
        g_source_destroy (tick);
        g_source_unref (tick);
      }
    if (g_atomic_int_get (&outstanding) > 0)
      g_warning ("%d network operations did not finish in time at shutdown",
                 g_atomic_int_get (&outstanding));
  }
  while (g_main_context_iteration (worker->context, FALSE))
    ;
  g_main_context_pop_thread_default (worker->context);

  /* Set on this thread, by tlspyo_worker_release(): nobody joins it. */
  if (worker->detached)
    {
      g_main_loop_unref (worker->loop);
      g_main_context_unref (worker->context);
      g_free (worker);
    }
  return NULL;
}

TlspyoWorker *
tlspyo_worker_get (void)
{
  TlspyoWorker *worker;

  g_mutex_lock (&worker_lock);
  if (default_worker == NULL)
    {
      default_worker = g_new0 (TlspyoWorker, 1);
      default_worker->context = g_main_context_new ();
      default_worker->loop = g_main_loop_new (default_worker->context, FALSE);
      default_worker->thread = g_thread_new ("tlspyo-worker", worker_thread, default_worker);
    }
  worker = default_worker;
  worker->users++;
  g_mutex_unlock (&worker_lock);

  return worker;
}

static gboolean
quit_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

void
tlspyo_worker_release (TlspyoWorker *worker)
{
  gboolean last;

  g_mutex_lock (&worker_lock);
  g_assert (worker == default_worker && worker->users > 0);
  last = --worker->users == 0;
  if (last)
    default_worker = NULL;
  g_mutex_unlock (&worker_lock);

  if (!last)
    return;

  g_main_context_invoke (worker->context, quit_cb, worker->loop);
  if (g_thread_self () == worker->thread)
    {
      /* The last object was disposed on the worker itself (say, a GTask
       * holding an endpoint unreffed there). It cannot join itself: it ends
       * right after this dispatch and frees the worker on its way out. */
      worker->detached = TRUE;
      g_thread_unref (worker->thread);
      return;
    }
  g_thread_join (worker->thread);
  g_main_loop_unref (worker->loop);
  g_main_context_unref (worker->context);
  g_free (worker);
}

GMainContext *
tlspyo_worker_get_context (TlspyoWorker *worker)
{
  return worker->context;
}

gboolean
tlspyo_worker_is_current (TlspyoWorker *worker)
{
  return g_thread_self () == worker->thread;
}

void
tlspyo_worker_invoke (TlspyoWorker  *worker,
                      GSourceFunc    func,
                      gpointer       data,
                      GDestroyNotify notify)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, data, notify);
  g_source_set_static_name (source, "[tlspyo] worker call");
  g_source_attach (source, worker->context);
  g_source_unref (source);
}

typedef struct {
  GSourceFunc func;
  gpointer    data;
  GMutex      mutex;
  GCond       cond;
  gboolean    done;
} SyncCall;

static gboolean
sync_call_cb (gpointer data)
{
  SyncCall *call = data;

  call->func (call->data);
  g_mutex_lock (&call->mutex);
  call->done = TRUE;
  g_cond_signal (&call->cond);
  g_mutex_unlock (&call->mutex);
  return G_SOURCE_REMOVE;
}

void
tlspyo_worker_invoke_sync (TlspyoWorker *worker,
                           GSourceFunc   func,
                           gpointer      data)
{
  SyncCall call = { func, data };

  if (tlspyo_worker_is_current (worker))
    {
      func (data);
      return;
    }

  g_mutex_init (&call.mutex);
  g_cond_init (&call.cond);
  tlspyo_worker_invoke (worker, sync_call_cb, &call, NULL);
  g_mutex_lock (&call.mutex);
  while (!call.done)
    g_cond_wait (&call.cond, &call.mutex);
  g_mutex_unlock (&call.mutex);
  g_mutex_clear (&call.mutex);
  g_cond_clear (&call.cond);
}
