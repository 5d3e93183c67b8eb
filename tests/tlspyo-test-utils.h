/* SPDX-License-Identifier: MIT */
#pragma once

#include <tlspyo-glib/tlspyo-glib.h>

#include "tlspyo-frame-private.h"

G_BEGIN_DECLS

/* Every wait in the tests is bounded by this, so a broken build fails
 * instead of hanging: 10 s, or $TLSPYO_TEST_TIMEOUT_MS when set (raised for
 * runs under valgrind, which are 20 to 50 times slower). */
#define TLSPYO_TEST_TIMEOUT_MS (tlspyo_test_timeout_ms ())
int  tlspyo_test_timeout_ms (void);
#define TLSPYO_TEST_PASSWORD "VerySecurePassword"

void tlspyo_test_init (int *argc, char ***argv);

/* A relay on 127.0.0.1, on a port the system picks, with credentials made
 * for the test in a temporary folder (removed by teardown). */
typedef struct {
  TlspyoSecurity  security;
  char           *credentials_dir;
  TlspyoRelay    *relay;
  guint           port;
  GPtrArray      *endpoints;
} TlspyoTestFixture;

void            tlspyo_test_fixture_setup    (TlspyoTestFixture *fixture,
                                              TlspyoSecurity     security);
void            tlspyo_test_fixture_start    (TlspyoTestFixture *fixture);
void            tlspyo_test_fixture_teardown (TlspyoTestFixture *fixture);
TlspyoEndpoint *tlspyo_test_endpoint_new     (TlspyoTestFixture *fixture,
                                              const char        *groups);
TlspyoEndpoint *tlspyo_test_endpoint_start   (TlspyoTestFixture *fixture,
                                              const char        *groups);

char           *tlspyo_test_make_credentials (void);
void            tlspyo_test_remove_dir       (const char *path);

/* Waits for one object from @ep (bounded) and checks it is the string @expected. */
void            tlspyo_test_expect_string    (TlspyoEndpoint *ep,
                                              const char     *expected);
/* Checks that nothing arrives at @ep within @ms. */
void            tlspyo_test_expect_nothing   (TlspyoEndpoint *ep,
                                              int             ms);
/* Iterates the default context until *flag or the bound passes. */
gboolean        tlspyo_test_wait_flag        (gboolean *flag);

/* Suites run each network test over both securities: register with
 * TLSPYO_TEST_ADD ("/suite/name", test_func) and test_func gets a fixture
 * set up (relay created, not started) for TLS, then for plain TCP. */
void            tlspyo_test_fixture_setup_param    (TlspyoTestFixture *fixture,
                                                    gconstpointer      security);
void            tlspyo_test_fixture_teardown_param (TlspyoTestFixture *fixture,
                                                    gconstpointer      security);

#define TLSPYO_TEST_ADD(path, func)                                                \
  G_STMT_START {                                                                   \
    g_test_add (path "/tls", TlspyoTestFixture,                                    \
                GINT_TO_POINTER (TLSPYO_SECURITY_TLS),                             \
                tlspyo_test_fixture_setup_param, func,                             \
                tlspyo_test_fixture_teardown_param);                               \
    g_test_add (path "/tcp", TlspyoTestFixture,                                    \
                GINT_TO_POINTER (TLSPYO_SECURITY_NONE),                            \
                tlspyo_test_fixture_setup_param, func,                             \
                tlspyo_test_fixture_teardown_param);                               \
  } G_STMT_END

/* Starts the fixture's relay again on the port it had, after
 * tlspyo_relay_stop(): retries (bounded) while the port is briefly busy. */
void            tlspyo_test_fixture_restart        (TlspyoTestFixture *fixture);

/* A port on 127.0.0.1 nobody listens on (bound, read, released). */
guint           tlspyo_test_get_dead_port          (void);

/* Iterates the default context until @func (data) is TRUE or the bound
 * passes; returns the last value of @func. */
typedef gboolean (*TlspyoTestCondFunc) (gpointer data);
gboolean        tlspyo_test_wait_until             (TlspyoTestCondFunc func,
                                                    gpointer           data);
/* Waits (bounded, iterating the default context) until @ep's connected
 * property is @connected. */
gboolean        tlspyo_test_wait_connected_state   (TlspyoEndpoint    *ep,
                                                    gboolean           connected);

/* Pops until @n objects came (bounded) and returns them, oldest first;
 * fails the test if fewer arrive. */
GPtrArray      *tlspyo_test_pop_n                  (TlspyoEndpoint    *ep,
                                                    guint              n);

/* Log capture. The library logs with structured logging, which
 * g_test_expect_message() does not see in GLib 2.74, and g_test_init() makes
 * every warning fatal. After tlspyo_test_log_capture_init() (call it once,
 * after tlspyo_test_init()), warnings that match a tolerated pattern are
 * counted and printed but not fatal; every other message goes to GLib's
 * default writer as before. */
void            tlspyo_test_log_capture_init       (void);
void            tlspyo_test_log_tolerate           (const char        *pattern);
/* Forgets the tolerated patterns and the counts. */
void            tlspyo_test_log_reset              (void);
/* How many warnings matching @pattern were logged since the last reset. */
guint           tlspyo_test_log_count              (const char        *pattern);

/* Threads of this process, and whether one named @name still runs. */
GHashTable     *tlspyo_test_list_threads           (void);
gboolean        tlspyo_test_thread_named_exists    (const char        *name);

/* Endpoint calls that must succeed: each asserts it returned TRUE with no
 * error. */
void            tlspyo_test_broadcast              (TlspyoEndpoint    *ep,
                                                    GVariant          *object,
                                                    const char        *group);
void            tlspyo_test_broadcast_string       (TlspyoEndpoint    *ep,
                                                    const char        *text,
                                                    const char        *group);
void            tlspyo_test_produce_string         (TlspyoEndpoint    *ep,
                                                    const char        *text,
                                                    const char        *group);
void            tlspyo_test_notify_ready           (TlspyoEndpoint    *ep,
                                                    const char        *group,
                                                    int                count);
/* Returns once the relay handled everything @ep sent (bounded). */
void            tlspyo_test_flush                  (TlspyoEndpoint    *ep);
/* notify_ready(), then flush(): the relay has the credit on return. */
void            tlspyo_test_give_credit            (TlspyoEndpoint    *ep,
                                                    const char        *group,
                                                    int                count);

/* Waits (bounded) until @ep holds @n objects in its local queue. */
void            tlspyo_test_wait_n_queued          (TlspyoEndpoint    *ep,
                                                    guint              n);
/* Waits (bounded) until @relay counts @n connections. */
void            tlspyo_test_wait_n_connections     (TlspyoRelay       *relay,
                                                    guint              n);

/* Records the refusals an endpoint ("action-refused") or a relay
 * ("endpoint-refused") signals: how many, and what the last one said
 * (group: action refusals only; address: endpoint refusals only). Zero it
 * before use, free it with tlspyo_test_refusals_clear(). */
typedef struct {
  guint        count;
  TlspyoError  code;
  char        *group;
  char        *address;
  char        *reason;
} TlspyoTestRefusals;

void            tlspyo_test_refusals_watch_endpoint (TlspyoTestRefusals *refusals,
                                                     TlspyoEndpoint     *ep);
void            tlspyo_test_refusals_watch_relay    (TlspyoTestRefusals *refusals,
                                                     TlspyoRelay        *relay);
/* TRUE once @refusals (a TlspyoTestRefusals) recorded one: a
 * TlspyoTestCondFunc. */
gboolean        tlspyo_test_refusals_seen           (gpointer            refusals);
void            tlspyo_test_refusals_clear          (TlspyoTestRefusals *refusals);

/* A client that speaks the protocol by hand over plain TCP, to make the
 * relay see what an endpoint would not send. Every read is bounded by the
 * socket's timeout (TLSPYO_TEST_TIMEOUT_MS). */
typedef struct _TlspyoTestRaw TlspyoTestRaw;

/* Connects, authenticates into @group and sends SESSION for @session_id
 * (nothing handled yet); RESUMED is left to tlspyo_test_raw_expect_resumed(). */
TlspyoTestRaw  *tlspyo_test_raw_join               (guint              port,
                                                    const char        *group,
                                                    const guint8      *session_id);
void            tlspyo_test_raw_free               (TlspyoTestRaw     *raw);
void            tlspyo_test_raw_send               (TlspyoTestRaw     *raw,
                                                    TlspyoFrameType    type,
                                                    GVariant          *meta,
                                                    GBytes            *body);
/* Sends the string @text as an OBJECT for one consumer of @group. */
void            tlspyo_test_raw_produce            (TlspyoTestRaw     *raw,
                                                    const char        *group,
                                                    const char        *text);
/* The next frame of @type, skipping others; free it with
 * tlspyo_test_raw_frame_free(). */
TlspyoFrame    *tlspyo_test_raw_expect             (TlspyoTestRaw     *raw,
                                                    TlspyoFrameType    type);
void            tlspyo_test_raw_frame_free         (TlspyoFrame       *frame);
/* Waits for RESUMED; returns the number the next sequenced frame must
 * have, and the relay's max-object-size in @max_size. */
guint64         tlspyo_test_raw_expect_resumed     (TlspyoTestRaw     *raw,
                                                    guint64           *max_size);
/* Waits for the ACK that counts @n frames. */
void            tlspyo_test_raw_expect_ack         (TlspyoTestRaw     *raw,
                                                    guint64            n);
/* The relay's end of the connection closes: frames still on their way
 * are skipped. */
void            tlspyo_test_raw_expect_closed      (TlspyoTestRaw     *raw);

G_END_DECLS
