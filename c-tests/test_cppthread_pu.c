/* The pool user of the cppthread-pe test (c-examples/cppthread-pe.cc, a C++ pool element with a
   TDThread per session): three sessions to the pool at once, over TCP through our registrar.
   Each session is served by its own PE thread (distinct session numbers, per-session request
   counts), and the count the PE keeps behind its TDMutex adds up over all of them.
   Usage: test_cppthread_pu REGISTRAR POOLHANDLE */
#include "testlib.h"
#include <rsplib.h>

#define SESSIONS 3

/* Sends `text` on `s` and reads the answer into `answer`; the answer's length or < 0. */
static ssize_t ask(struct SessionDescriptor* s, const char* text, char* answer, size_t size)
{
   struct TagItem tags[2];
   ssize_t        n;
   if (rspSessionWrite(s, text, strlen(text), NULL) != (ssize_t)strlen(text)) {
      return -100;
   }
   tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 5000000;
   tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
   do {
      n = rspSessionRead(s, answer, size - 1, tags);
   } while (n == RspRead_ControlRead);
   answer[n > 0 ? n : 0] = 0;
   return n;
}

int main(int argc, char** argv)
{
   struct SessionDescriptor* sessions[SESSIONS];
   unsigned int              numbers[SESSIONS];
   char                      answer[1200], text[64], expected[64];
   const char*               pool;
   int                       i, round;

   if (argc != 3) {
      fputs("usage: test_cppthread_pu REGISTRAR POOLHANDLE\n", stderr);
      return 2;
   }
   pool = argv[2];
   CHECK_EQ(rspInitialize(NULL), RSPERR_OKAY);
   CHECK_EQ(rspAddStaticRegistrar(argv[1]), RSPERR_OKAY);

   /* All three sessions are open at the same time: the PE needs a thread for each. */
   for (i = 0; i < SESSIONS; i++) {
      sessions[i] = rspCreateSession((const unsigned char*)pool, strlen(pool), NULL, NULL);
      CHECK(sessions[i] != NULL);
      numbers[i] = 0;
   }
   for (round = 1; round <= 2; round++) {
      for (i = 0; i < SESSIONS; i++) {
         unsigned int id = 0, number = 0;
         unsigned long long k = 0;
         int used = 0;
         if (sessions[i] == NULL) continue;
         snprintf(text, sizeof(text), "hello %d/%d", i, round);
         CHECK(ask(sessions[i], text, answer, sizeof(answer)) > 0);
         printf("session %d: %s\n", i, answer);
         CHECK(sscanf(answer, "[PE 0x%x session %u #%llu] %n", &id, &number, &k, &used) == 3);
         CHECK(used > 0 && strcmp(answer + used, text) == 0);
         CHECK_EQ(k, round);           /* the session's own thread counts its requests */
         if (round == 1) {
            numbers[i] = number;
         }
         else {
            CHECK_EQ(number, numbers[i]); /* the same thread served both rounds */
         }
      }
   }
   /* One thread per session: three different session numbers. */
   CHECK(numbers[0] != numbers[1] && numbers[0] != numbers[2] && numbers[1] != numbers[2]);
   /* The shared count, kept under the PE's TDMutex, saw every request of every session. */
   if (sessions[0] != NULL) {
      CHECK(ask(sessions[0], "total?", answer, sizeof(answer)) > 0);
      snprintf(expected, sizeof(expected), "total %d", 2 * SESSIONS);
      printf("total: %s\n", answer);
      CHECK(strcmp(answer, expected) == 0);
   }
   for (i = 0; i < SESSIONS; i++) {
      if (sessions[i] != NULL) {
         rspDeleteSession(sessions[i], NULL);
      }
   }
   rspCleanUp();
   return TEST_SUMMARY();
}
