/* SPDX-License-Identifier: MIT */
#pragma once

#include <tlspyo-glib/tlspyo-glib.h>

G_BEGIN_DECLS

/* Every wait in the tests is bounded by this, so a broken build fails
 * instead of hanging. */
#define TLSPYO_TEST_TIMEOUT_MS 10000
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

G_END_DECLS
