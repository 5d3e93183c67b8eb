/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tlspyo-wait-private.h"

static gboolean
timeout_noop (gpointer data)
{
  return G_SOURCE_REMOVE;
}

gboolean
tlspyo_wait_until (GMutex         *mutex,
                   GCond          *cond,
                   GMainContext   *context,
                   int             timeout_ms,
                   TlspyoWaitFunc  func,
                   gpointer        data)
{
  gint64 deadline = timeout_ms < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!func (data))
    {
      gint64 now = g_get_monotonic_time ();

      if (deadline >= 0 && now >= deadline)
        return FALSE;

      if (context != NULL && g_main_context_acquire (context))
        {
          GSource *timer = NULL;

          g_mutex_unlock (mutex);
          if (deadline >= 0)
            {
              timer = g_timeout_source_new ((guint) ((deadline - now + 999) / 1000));
              g_source_set_callback (timer, timeout_noop, NULL, NULL);
              g_source_set_static_name (timer, "[tlspyo] wait timeout");
              g_source_attach (timer, context);
            }
          /* State changes wake the context, and a wakeup is never lost: it
           * stays pending until the next poll. */
          g_main_context_iteration (context, TRUE);
          if (timer != NULL)
            {
              g_source_destroy (timer);
              g_source_unref (timer);
            }
          g_main_context_release (context);
          g_mutex_lock (mutex);
        }
      else if (deadline < 0)
        g_cond_wait (cond, mutex);
      else
        g_cond_wait_until (cond, mutex, deadline);
    }

  return TRUE;
}

void
tlspyo_wait_wake (GCond        *cond,
                  GMainContext *context)
{
  g_cond_broadcast (cond);
  if (context != NULL)
    g_main_context_wakeup (context);
}
