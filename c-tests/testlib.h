/* A very small test runner: every CHECK counts as one test; TEST_SUMMARY() prints the plain
   closing line "N passed, N failed" and gives the exit code. */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <stdio.h>

/* debug.h (pulled in by loglevel.h) has an aborting CHECK of its own: ours counts instead. */
#undef CHECK

static int t_passed = 0;
static int t_failed = 0;

#define CHECK(cond)                                                              \
   do {                                                                          \
      if (cond) { t_passed++; }                                                  \
      else {                                                                     \
         t_failed++;                                                             \
         fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      }                                                                          \
   } while (0)

#define CHECK_EQ(actual, expected)                                                    \
   do {                                                                               \
      unsigned long long a_ = (unsigned long long)(actual);                           \
      unsigned long long e_ = (unsigned long long)(expected);                         \
      if (a_ == e_) { t_passed++; }                                                   \
      else {                                                                          \
         t_failed++;                                                                  \
         fprintf(stderr, "%s:%d: %s == 0x%llx, expected %s == 0x%llx\n", __FILE__,    \
                 __LINE__, #actual, a_, #expected, e_);                               \
      }                                                                               \
   } while (0)

#define TEST_SUMMARY() \
   (printf("%d passed, %d failed\n", t_passed, t_failed), (t_failed == 0) ? 0 : 1)

#endif
