/* SPDX-License-Identifier: MIT */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* A loopback TCP proxy of the tests' own, between endpoints and a relay,
 * both sides on 127.0.0.1 (it listens on a port the system picks). It only
 * forwards bytes, so it works for TLS too, and it can hurt the connections
 * it carries the ways a network does: cut them, stall them (bytes stop
 * moving, nothing is closed, as with a half-open connection or a frozen
 * process) and truncate them (part of a chunk arrives, then the cut).
 *
 * The proxy lives on the thread-default main context of the thread that
 * creates it: every function below must be called on that thread, and
 * the context must be iterated for bytes to move. The one exception is
 * tlspyo_test_proxy_get_n_accepted(), which any thread may call. */

typedef struct _TlspyoTestProxyPrivate TlspyoTestProxyPrivate;

typedef struct {
  guint                   port;        /* where endpoints connect */
  guint                   n_accepted;  /* connections accepted so far (atomic) */
  /*< private >*/
  TlspyoTestProxyPrivate *priv;
} TlspyoTestProxy;

/* Which way bytes go. */
typedef enum {
  TLSPYO_TEST_PROXY_TO_RELAY = 0,
  TLSPYO_TEST_PROXY_TO_ENDPOINT = 1,
} TlspyoTestProxyDirection;

/* What a proxy does besides forwarding, fixed when it is made: a zeroed
 * struct (or NULL) is a plain proxy. */
typedef struct {
  /* > 0: the receive buffer (SO_RCVBUF) of the proxy's sockets, on both
   * sides, set before they connect (the TCP window is agreed on then), so
   * that the kernel cannot take in much ahead of a throttle. */
  int                      socket_buffer;
  /* throttle_bytes > 0: in @throttled, forward at most @throttle_bytes at
   * a time and wait @throttle_ms after each write, as over a slow link.
   * The waits are stalls: do not stall or freeze that direction too. */
  TlspyoTestProxyDirection throttled;
  gsize                    throttle_bytes;
  guint                    throttle_ms;
} TlspyoTestProxyOptions;

TlspyoTestProxy *tlspyo_test_proxy_new            (guint                     relay_port);
TlspyoTestProxy *tlspyo_test_proxy_new_full       (guint                     relay_port,
                                                   const TlspyoTestProxyOptions *options);
/* Closes every connection and waits (bounded) for the pending operations. */
void             tlspyo_test_proxy_free           (TlspyoTestProxy          *proxy);
guint            tlspyo_test_proxy_get_n_accepted (TlspyoTestProxy          *proxy);

/* On every connection made so far (later ones flow): */
void             tlspyo_test_proxy_freeze_all       (TlspyoTestProxy          *proxy);
void             tlspyo_test_proxy_freeze_direction (TlspyoTestProxy          *proxy,
                                                     TlspyoTestProxyDirection  direction);
/* Lets bytes flow again one way, what was held first. */
void             tlspyo_test_proxy_thaw_direction   (TlspyoTestProxy          *proxy,
                                                     TlspyoTestProxyDirection  direction);
/* Closes them, dropping what they hold: endpoints reconnect through fresh ones. */
void             tlspyo_test_proxy_cut_all          (TlspyoTestProxy          *proxy);

/* On one connection still open, 0 <= @index < tlspyo_test_proxy_get_n_open(),
 * oldest first (for fault injection at random): */
guint            tlspyo_test_proxy_get_n_open       (TlspyoTestProxy          *proxy);
void             tlspyo_test_proxy_cut              (TlspyoTestProxy          *proxy,
                                                     guint                     index);
/* Stops @direction for @ms milliseconds, then lets it flow again. */
void             tlspyo_test_proxy_stall            (TlspyoTestProxy          *proxy,
                                                     guint                     index,
                                                     TlspyoTestProxyDirection  direction,
                                                     guint                     ms);
/* The next chunk read in @direction is forwarded only in part (@fraction
 * of it, at least one byte and at least one byte short), then the
 * connection is cut. */
void             tlspyo_test_proxy_truncate         (TlspyoTestProxy          *proxy,
                                                     guint                     index,
                                                     TlspyoTestProxyDirection  direction,
                                                     double                    fraction);
/* Resumes every stalled direction and forgets pending truncations: the
 * faults are over, let everything through. */
void             tlspyo_test_proxy_heal             (TlspyoTestProxy          *proxy);

G_END_DECLS
