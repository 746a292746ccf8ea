/* The helper functions classic programs use beyond rsplib.h (loglevel.h, timeutilities.h,
   breakdetector.h, netutilities.h, randomizer.h, threadsafety.h, componentstatusprotocol.h,
   rsplib-internals.h, poolpolicysettings.h), with good and bad arguments: NULL pointers, bad
   descriptors, garbage strings. Built against the installed headers and library, run under
   valgrind. SCTP-only paths run where the kernel has SCTP and are skipped (with a note)
   otherwise. */
#define _GNU_SOURCE
#include "testlib.h"
#include <rsplib.h>
#include <rsplib-internals.h>
#include <loglevel.h>
#include <netutilities.h>
#include <breakdetector.h>
#include <timeutilities.h>
#include <randomizer.h>
#include <threadsafety.h>
#include <componentstatusprotocol.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <pthread.h>

static union sockaddr_union loopback4(uint16_t port)
{
   union sockaddr_union a;
   memset(&a, 0, sizeof(a));
   a.in.sin_family = AF_INET;
   a.in.sin_port = htons(port);
   a.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
   return a;
}

/* Everything written to a FILE* by f(fd), as a string (static buffer). */
static const char* captured(FILE* fd)
{
   static char text[512];
   size_t n;
   fflush(fd);
   rewind(fd);
   n = fread(text, 1, sizeof(text) - 1, fd);
   text[n] = 0;
   rewind(fd);
   if (ftruncate(fileno(fd), 0) != 0) {
      text[0] = '?';
   }
   return text;
}

/* A file's contents as a string (static buffer, up to 4 KiB), or NULL if it cannot be read. */
static const char* file_text(const char* path)
{
   static char text[4096];
   size_t n;
   FILE* f = fopen(path, "r");
   if (f == NULL) return NULL;
   n = fread(text, 1, sizeof(text) - 1, f);
   text[n] = 0;
   fclose(f);
   return text;
}

static uint16_t bound_port(int fd)
{
   union sockaddr_union a;
   socklen_t len = sizeof(a);
   if (getsockname(fd, &a.sa, &len) != 0) return 0;
   return getPort(&a.sa);
}

static void test_logging(void)
{
   char path[64];
   const char* text;
   snprintf(path, sizeof(path), "/tmp/rsplib-test-helpers-%d.log", (int)getpid());
   char option[96];

   CHECK(!initLogging(NULL));
   CHECK(!initLogging(""));
   CHECK(!initLogging("-registrar=1.2.3.4"));
   CHECK(!initLogging("-loglevel=x"));
   CHECK(!initLogging("-loglevel=11"));
   CHECK(!initLogging("-logcolor=maybe"));
   CHECK(!initLogging("-logfile="));
   CHECK(!initLogging("-logfile=/nonexistent-dir/x.log"));
   CHECK(initLogging("-logcolor=off"));
   CHECK(initLogging("-logcolor=on"));
   CHECK(initLogging("-logquiet"));
   CHECK(initLogging("-loglevel=3"));

   snprintf(option, sizeof(option), "-logfile=%s", path);
   CHECK(initLogging(option));
   beginLogging();
   finishLogging();
   snprintf(option, sizeof(option), "-logappend=%s", path);
   CHECK(initLogging(option));
   beginLogging();
   finishLogging();
   text = file_text(path);
   CHECK(text != NULL);
   if (text != NULL) {
      CHECK(strstr(text, "Logging started") != NULL);
      CHECK(strstr(text, "Logging finished") != NULL);
      CHECK(strstr(text, "####") != NULL); /* separator: the appended file was not empty */
   }
   unlink(path);
   CHECK(initLogging("-loglevel=1"));
}

static void test_time(void)
{
   struct timeval tv;
   unsigned long long a, b, now;
   FILE* fd = tmpfile();
   const char* s;
   gettimeofday(&tv, NULL);
   now = (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
   a = getMicroTime();
   b = getMicroTime();
   CHECK(b >= a);
   CHECK(a + 2000000ULL > now && a < now + 2000000ULL);
   printTimeStamp(NULL);
   printTimeStamp(fd);
   s = captured(fd);
   /* "DD-Mon-YYYY HH:MM:SS.ffff: " */
   CHECK_EQ(strlen(s), 27);
   CHECK(s[2] == '-' && s[6] == '-' && s[11] == ' ' && s[20] == '.' && s[25] == ':');
   fclose(fd);
}

static void test_break_detector(void)
{
   /* Without an installed detector sendBreak only sets the flag (no signal). */
   sendBreak(1);
   CHECK(breakDetected());
   installBreakDetector();
   CHECK(!breakDetected());
   raise(SIGINT); /* as Ctrl-C; the process must survive */
   CHECK(breakDetected());
   CHECK(breakDetected());
   installBreakDetector();
   CHECK(!breakDetected());
   sendBreak(2); /* any nonzero byte is "quiet" */
   CHECK(breakDetected());
   uninstallBreakDetector();
   uninstallBreakDetector();
   {
      struct sigaction sa;
      sigaction(SIGINT, NULL, &sa);
      CHECK(sa.sa_handler == SIG_DFL);
   }
}

static void test_addresses(void)
{
   union sockaddr_union a;
   struct sockaddr_un un;
   FILE* fd = tmpfile();
   CHECK(string2address("127.0.0.1:1234", &a));
   CHECK_EQ(a.sa.sa_family, AF_INET);
   CHECK_EQ(getPort(&a.sa), 1234);
   CHECK_EQ(ntohl(a.in.sin_addr.s_addr), INADDR_LOOPBACK);
   CHECK(string2address("10.1.2.3", &a));
   CHECK_EQ(getPort(&a.sa), 0);
   CHECK(string2address("10.1.2.3!77", &a));
   CHECK_EQ(getPort(&a.sa), 77);
   CHECK(string2address("[::1]!99", &a));
   CHECK_EQ(a.sa.sa_family, AF_INET6);
   CHECK_EQ(getPort(&a.sa), 99);
   CHECK(string2address("::1", &a));
   CHECK(!string2address(NULL, &a));
   CHECK(!string2address("127.0.0.1:1", NULL));
   CHECK(!string2address("", &a));
   CHECK(!string2address("[::1", &a));
   CHECK(!string2address("1.2.3.4:70000", &a));
   CHECK(!string2address("1.2.3.4:port", &a));
   CHECK(!string2address("\xff\xfe garbage \x01:1", &a));

   CHECK(string2address("127.0.0.1:1234", &a));
   fputaddress(&a.sa, true, fd);
   CHECK(strcmp(captured(fd), "127.0.0.1:1234") == 0);
   fputaddress(&a.sa, 0, fd);
   CHECK(strcmp(captured(fd), "127.0.0.1") == 0);
   CHECK(string2address("[::1]:99", &a));
   fputaddress(&a.sa, 7, fd); /* any nonzero byte means true */
   CHECK(strcmp(captured(fd), "[::1]:99") == 0);
   fputaddress(NULL, true, fd);
   CHECK(strcmp(captured(fd), "(null)") == 0);
   fputaddress(&a.sa, true, NULL);
   memset(&un, 0, sizeof(un));
   un.sun_family = AF_UNIX;
   fputaddress((struct sockaddr*)&un, true, fd);
   CHECK(strstr(captured(fd), "unsupported address family") != NULL);
   fclose(fd);

   CHECK(setPort(&a.sa, 4321));
   CHECK_EQ(getPort(&a.sa), 4321);
   a = loopback4(5);
   CHECK(setPort(&a.sa, 6));
   CHECK_EQ(ntohs(a.in.sin_port), 6);
   CHECK(!setPort(NULL, 1));
   CHECK_EQ(getPort(NULL), 0);
   CHECK(!setPort((struct sockaddr*)&un, 1));
   CHECK_EQ(getPort((struct sockaddr*)&un), 0);

   CHECK_EQ(hton64(0x0102030405060708ULL), htonl(1) == 1 ? 0x0102030405060708ULL : 0x0807060504030201ULL);
   CHECK_EQ(ntoh64(hton64(0x1122334455667788ULL)), 0x1122334455667788ULL);
}

static void test_blocking(void)
{
   int p[2];
   CHECK(pipe(p) == 0);
   CHECK(setNonBlocking(p[0]));
   CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
   CHECK(setNonBlocking(p[0]));
   CHECK(setBlocking(p[0]));
   CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) == 0);
   close(p[0]);
   close(p[1]);
   errno = 0;
   CHECK(!setBlocking(-1));
   CHECK_EQ(errno, EBADF);
   CHECK(!setNonBlocking(9999));
}

static void test_sockets(void)
{
   union sockaddr_union a, b, from, bad;
   union sockaddr_union* arr = NULL;
   socklen_t fromlen;
   char buf[64];
   int flags;
   uint32_t ppid = 77;
   sctp_assoc_t assoc = 77;
   uint16_t stream = 77;
   size_t n, i;
   int l, c, s, u1, u2, r;
   uint16_t port;

   /* TCP: bind, listen, establish, send, receive. */
   l = socket(AF_INET, SOCK_STREAM, 0);
   a = loopback4(0);
   CHECK(bindplus(l, &a, 1));
   CHECK(listen(l, 5) == 0);
   port = bound_port(l);
   CHECK(port != 0);
   n = getladdrsplus(l, 0, &arr);
   CHECK_EQ(n, 1);
   if (n == 1) {
      CHECK_EQ(getPort(&arr[0].sa), port);
      CHECK_EQ(arr[0].sa.sa_family, AF_INET);
   }
   free(arr);
   a = loopback4(port);
   c = establish(AF_INET, SOCK_STREAM, IPPROTO_TCP, &a, 1, 2000000);
   CHECK(c >= 0);
   CHECK((fcntl(c, F_GETFL) & O_NONBLOCK) != 0);
   s = accept(l, NULL, NULL);
   CHECK(s >= 0);
   CHECK_EQ(sendtoplus(c, "hello", 5, 0, NULL, 0, 11, 0, 0, 0, 1000000), 5);
   flags = 0;
   r = recvfromplus(s, buf, sizeof(buf), &flags, NULL, NULL, &ppid, &assoc, &stream, 2000000);
   CHECK_EQ(r, 5);
   CHECK(memcmp(buf, "hello", 5) == 0);
   CHECK_EQ(ppid, 0); /* no PPID on TCP */
   CHECK_EQ(stream, 0);
   errno = 0;
   r = recvfromplus(s, buf, sizeof(buf), NULL, NULL, NULL, NULL, NULL, NULL, 100000);
   CHECK_EQ(r, -1);
   CHECK_EQ(errno, EAGAIN);
   close(c);
   r = recvfromplus(s, buf, sizeof(buf), NULL, NULL, NULL, NULL, NULL, NULL, 1000000);
   CHECK_EQ(r, 0); /* EOF */
   close(s);
   close(l);

   /* A wildcard bind (no addresses) is expanded to the host's IPv4 addresses. */
   l = socket(AF_INET, SOCK_STREAM, 0);
   CHECK(bindplus(l, NULL, 0));
   port = bound_port(l);
   arr = NULL;
   n = getladdrsplus(l, 0, &arr);
   CHECK(n >= 1);
   for (i = 0; i < n; i++) {
      CHECK_EQ(arr[i].sa.sa_family, AF_INET);
      CHECK_EQ(getPort(&arr[i].sa), port);
   }
   free(arr);
   close(l);

   /* Refused connection, timeouts and bad arguments. */
   l = socket(AF_INET, SOCK_STREAM, 0);
   a = loopback4(0);
   CHECK(bindplus(l, &a, 1));
   a = loopback4(bound_port(l));
   close(l);
   errno = 0;
   CHECK_EQ(establish(AF_INET, SOCK_STREAM, IPPROTO_TCP, &a, 1, 2000000), -1);
   CHECK_EQ(errno, ECONNREFUSED);
   errno = 0;
   CHECK_EQ(establish(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 1, 1000), -1);
   CHECK_EQ(errno, EINVAL);
   CHECK_EQ(establish(AF_INET, SOCK_STREAM, IPPROTO_TCP, &a, 0, 1000), -1);
   memset(&bad, 0xee, sizeof(bad));
   bad.sa.sa_family = AF_UNIX;
   CHECK_EQ(establish(AF_INET, SOCK_STREAM, IPPROTO_TCP, &bad, 1, 1000), -1);
   CHECK_EQ(establish(-7, SOCK_STREAM, 0, &a, 1, 1000), -1);

   errno = 0;
   CHECK(!bindplus(-1, &a, 1));
   CHECK_EQ(errno, EBADF);
   l = socket(AF_INET, SOCK_STREAM, 0);
   errno = 0;
   CHECK(!bindplus(l, NULL, 3));
   CHECK_EQ(errno, EINVAL);
   CHECK(!bindplus(l, &bad, 1));
   close(l);

   errno = 0;
   CHECK_EQ(recvfromplus(-1, buf, sizeof(buf), NULL, NULL, NULL, NULL, NULL, NULL, 0), -1);
   CHECK_EQ(errno, EBADF);
   CHECK_EQ(recvfromplus(0, NULL, 10, NULL, NULL, NULL, NULL, NULL, NULL, 0), -1);
   CHECK_EQ(sendtoplus(-1, "x", 1, 0, NULL, 0, 0, 0, 0, 0, 0), -1);
   errno = 0;
   CHECK_EQ(sendtoplus(1, NULL, 5, 0, NULL, 0, 0, 0, 0, 0, 0), -1);
   CHECK_EQ(errno, EINVAL);
   CHECK_EQ(sendtoplus(1, "x", 1, 0, NULL, 2, 0, 0, 0, 0, 0), -1);
   arr = (union sockaddr_union*)1;
   CHECK_EQ(getladdrsplus(-1, 0, &arr), 0);
   CHECK(arr == NULL);
   CHECK_EQ(getladdrsplus(0, 0, NULL), 0);

   /* UDP: sendtoplus to an address, recvfromplus with the sender's address. */
   u1 = socket(AF_INET, SOCK_DGRAM, 0);
   u2 = socket(AF_INET, SOCK_DGRAM, 0);
   a = loopback4(0);
   b = loopback4(0);
   CHECK(bindplus(u1, &a, 1));
   CHECK(bindplus(u2, &b, 1));
   b = loopback4(bound_port(u2));
   CHECK_EQ(sendtoplus(u1, "datagram", 8, 0, &b, 1, 0, 0, 0, 0, 0), 8);
   fromlen = sizeof(from);
   flags = 0;
   r = recvfromplus(u2, buf, sizeof(buf), &flags, &from.sa, &fromlen, NULL, NULL, NULL, 2000000);
   CHECK_EQ(r, 8);
   CHECK_EQ(fromlen, sizeof(struct sockaddr_in));
   CHECK_EQ(getPort(&from.sa), bound_port(u1));
   CHECK_EQ(flags & MSG_TRUNC, 0);
   close(u1);
   close(u2);

   /* gatherLocalAddresses: loopback at least; malloc'ed (free). */
   arr = NULL;
   n = gatherLocalAddresses(&arr);
   CHECK(n >= 1 && arr != NULL);
   {
      int loop = 0;
      for (i = 0; i < n; i++) {
         if (arr[i].sa.sa_family == AF_INET && ntohl(arr[i].in.sin_addr.s_addr) == INADDR_LOOPBACK) loop = 1;
      }
      CHECK(loop);
   }
   free(arr);
   CHECK_EQ(gatherLocalAddresses(NULL), 0);
}

static void test_sctp(void)
{
   struct TagItem tags[4];
   int sd = socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP);
   int sctp_errno = errno;
   int tcp = socket(AF_INET, SOCK_STREAM, 0);
   tags[0].Tag = TAG_TuneSCTP_MinRTO;      tags[0].Data = 100;
   tags[1].Tag = TAG_TuneSCTP_Heartbeat;   tags[1].Data = 1000;
   tags[2].Tag = TAG_TuneSCTP_AssocMaxRXT; tags[2].Data = 5;
   tags[3].Tag = TAG_DONE;                 tags[3].Data = 0;
   errno = 0;
   CHECK(!tuneSCTP(tcp, 0, tags));
   CHECK_EQ(errno, ENOPROTOOPT);
   errno = 0;
   CHECK(!tuneSCTP(-1, 0, tags));
   CHECK_EQ(errno, EBADF);
   close(tcp);
   if (sd < 0) {
      printf("note: no kernel SCTP here (%s); SCTP paths of bindplus/getladdrsplus/tuneSCTP skipped\n",
             strerror(sctp_errno));
      return;
   }
   {
      union sockaddr_union two[2];
      union sockaddr_union* arr = NULL;
      size_t n;
      two[0] = loopback4(0);
      two[1] = loopback4(0);
      two[1].in.sin_addr.s_addr = htonl(0x7f000002);
      CHECK(bindplus(sd, two, 2));
      n = getladdrsplus(sd, 0, &arr);
      CHECK_EQ(n, 2);
      free(arr);
      CHECK(tuneSCTP(sd, 0, tags));
      CHECK(tuneSCTP(sd, 0, NULL));
      close(sd);
   }
}

/* loglevel.h: setLogColor writes ANSI colours into the log only with -logcolor=on; the logging
   mutex is recursive and keeps other threads out while held. */
static volatile int other_thread_logged = 0;
static void* log_from_other_thread(void* arg)
{
   (void)arg;
   loggingMutexLock();
   other_thread_logged = 1;
   loggingMutexUnlock();
   return NULL;
}

static void test_log_color_and_mutex(void)
{
   char path[64], option[96];
   const char* text;
   pthread_t t;
   CHECK_EQ(LOGLEVEL_NOTE, 3);
   CHECK_EQ(LOGLEVEL_ACTION, 4);
   CHECK_EQ(LOGLEVEL_MUTEX, 10);
   CHECK(initLogging("-loglevel=10"));
   snprintf(path, sizeof(path), "/tmp/rsplib-test-color-%d.log", (int)getpid());
   snprintf(option, sizeof(option), "-logfile=%s", path);
   CHECK(initLogging(option));
   CHECK(initLogging("-logcolor=on"));
   setLogColor(9);
   setLogColor(0);
   CHECK(initLogging("-logcolor=off"));
   setLogColor(4);
   finishLogging();
   text = file_text(path);
   CHECK(text != NULL);
   if (text != NULL) {
      CHECK(strstr(text, "\x1b[91m\x1b[30m") != NULL);
      CHECK(strstr(text, "\x1b[34m") == NULL);
   }
   unlink(path);
   CHECK(initLogging("-logcolor=on"));
   CHECK(initLogging("-loglevel=1"));

   loggingMutexLock();
   loggingMutexLock(); /* recursive */
   CHECK(pthread_create(&t, NULL, log_from_other_thread, NULL) == 0);
   usleep(100000);
   CHECK_EQ(other_thread_logged, 0);
   loggingMutexUnlock();
   usleep(50000);
   CHECK_EQ(other_thread_logged, 0); /* still held once */
   loggingMutexUnlock();
   pthread_join(t, NULL);
   CHECK_EQ(other_thread_logged, 1);
   loggingMutexUnlock(); /* not held: ignored */
}

/* loglevel.h's C view of the log: gLogLevel, stdlog, logerror, the LOG_* blocks and gLogMutex,
   sharing destination, level and lock with the library's own lines. */
static int evaluations = 0;
static int count_evaluation(void)
{
   return ++evaluations;
}

/* Block lines written in three flushed pieces each, with pauses between them: only the lock
   keeps the library's lines out. */
static volatile int block_lines_done = 0;
static void* block_lines(void* arg)
{
   int i;
   (void)arg;
   for (i = 0; i < 200; i++) {
      LOG_ERROR
      fputs("piece-one ", stdlog);
      fflush(stdlog);
      usleep(100);
      fputs("piece-two ", stdlog);
      fflush(stdlog);
      usleep(100);
      fprintf(stdlog, "piece-three %d\n", i);
      LOG_END
   }
   block_lines_done = 1;
   return NULL;
}

/* Whether `line` starts with the library's time stamp "YYYY-MM-DD hh:mm:ss.uuuuuu ". */
static int stamped(const char* line)
{
   return strlen(line) > 27 && line[4] == '-' && line[7] == '-' && line[10] == ' ' &&
          line[13] == ':' && line[16] == ':' && line[19] == '.' && line[26] == ' ';
}

/* Runs `LOG_ERROR fputs(text) LOG_END_FATAL` at `level` in a child; its wait status. */
static int fatal_child(unsigned int level, const char* text)
{
   int status = -1;
   pid_t child;
   fflush(NULL);
   child = fork();
   if (child == 0) {
      alarm(20); /* a hang fails instead of blocking the test */
      gLogLevel = level;
      LOG_ERROR
      fputs(text, stdlog);
      LOG_END_FATAL
      _exit(0); /* not reached */
   }
   if (child < 0 || waitpid(child, &status, 0) != child) return -1;
   return status;
}

static void test_log_blocks(void)
{
   char path[64], path2[64], option[96], line[512];
   const char* text;
   FILE* f;
   FILE* kept;
   pthread_t t;
   int status, block_count = 0, library_count = 0, library_lines = 0, bad = 0;

   CHECK_EQ(sizeof(gLogMutex), 72);
   CHECK(initLogging("-logcolor=off"));
   CHECK(initLogging("-loglevel=4"));
   CHECK_EQ(gLogLevel, 4);
   CHECK(initLogging("-logquiet"));
   CHECK_EQ(gLogLevel, 0);
   CHECK(stdlog == stderr); /* the default destination */
   LOG_ERROR fprintf(stdlog, "quiet %d\n", count_evaluation()); LOG_END
   CHECK_EQ(evaluations, 0);

   CHECK(initLogging("-loglevel=3"));
   CHECK_EQ(gLogLevel, LOGLEVEL_NOTE);
   snprintf(path, sizeof(path), "/tmp/rsplib-test-blocks-%d.log", (int)getpid());
   snprintf(option, sizeof(option), "-logfile=%s", path);
   CHECK(initLogging(option));
   CHECK(stdlog != NULL && stdlog != stderr);
   LOG_ERROR fprintf(stdlog, "block error %d\n", 1); LOG_END
   LOG_WARNING fputs("block warning\n", stdlog); LOG_END
   LOG_NOTE fputs("block note\n", stdlog); LOG_END
   LOG_ACTION fprintf(stdlog, "block action %d\n", count_evaluation()); LOG_END
   LOG_VERBOSE fprintf(stdlog, "block verbose %d\n", count_evaluation()); LOG_END
   LOG_VERBOSE3 fprintf(stdlog, "block verbose3 %d\n", count_evaluation()); LOG_END
   CHECK_EQ(evaluations, 0); /* skipped blocks evaluate nothing */
   errno = ENOENT;
   logerror("block logerror");
   gLogLevel = LOGLEVEL_VERBOSE3; /* set directly: the blocks follow */
   LOG_VERBOSE3 fputs("block verbose3 direct\n", stdlog); LOG_END
   LOG_VERBOSE4 fputs("block verbose4 direct\n", stdlog); LOG_END
   LOG_BEGIN("Custom: ", 1, 2) fputs("block begin\n", stdlog); LOG_END
   gLogLevel = LOGLEVEL_NOTE;
   /* The status line of a fatal block, then the abort (also when the level skips the block). */
   status = fatal_child(LOGLEVEL_NOTE, "block fatal\n");
   CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
   status = fatal_child(0, "block quiet fatal\n");
   CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);

   /* A second thread's blocks while the library logs (beginLogging's note, level 3). */
   CHECK(pthread_create(&t, NULL, block_lines, NULL) == 0);
   while (!block_lines_done && library_lines < 100000) {
      beginLogging();
      library_lines++;
   }
   pthread_join(t, NULL);

   f = fopen(path, "r");
   CHECK(f != NULL);
   while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
      if (strstr(line, "piece") != NULL) {
         block_count++;
         if (!stamped(line) || strncmp(line + 27, "Error: piece-one piece-two piece-three ", 39) != 0) {
            bad++;
         }
      }
      else if (strstr(line, "Logging started") != NULL) {
         library_count++;
         if (!stamped(line)) bad++;
      }
      else if (strstr(line, "block error 1\n") != NULL) {
         CHECK(stamped(line) && strcmp(line + 27, "Error: block error 1\n") == 0);
      }
      else if (strstr(line, "block warning") != NULL) {
         CHECK(stamped(line) && strcmp(line + 27, "Warning: block warning\n") == 0);
      }
      else if (strstr(line, "block note") != NULL) {
         CHECK(stamped(line) && strcmp(line + 27, "block note\n") == 0);
      }
      else if (strstr(line, "block logerror") != NULL) {
         CHECK(strcmp(line, "block logerror: No such file or directory\n") == 0);
      }
      else if (strstr(line, "block verbose3 direct") != NULL) {
         CHECK(stamped(line));
      }
      else if (strstr(line, "block begin") != NULL) {
         CHECK(stamped(line) && strcmp(line + 27, "Custom: block begin\n") == 0);
      }
      else if (strstr(line, "block fatal") != NULL) {
         CHECK(stamped(line));
      }
      else if (strstr(line, "block") != NULL || strstr(line, "\x1b") != NULL) {
         bad++; /* a skipped block's line, or colour with -logcolor=off */
         fprintf(stderr, "unexpected log line: %s", line);
      }
   }
   if (f != NULL) fclose(f);
   CHECK_EQ(block_count, 200);
   CHECK_EQ(library_count, library_lines);
   CHECK(library_lines > 1);
   CHECK_EQ(bad, 0);
   text = file_text(path); /* the first 4 KiB: the single lines above */
   CHECK(text != NULL);
   if (text != NULL) {
      CHECK(strstr(text, "Error: block error 1\n") != NULL);
      CHECK(strstr(text, "Warning: block warning\n") != NULL);
      CHECK(strstr(text, "block logerror: No such file or directory\n") != NULL);
      CHECK(strstr(text, "block verbose3 direct\n") != NULL);
      CHECK(strstr(text, "Custom: block begin\n") != NULL);
      CHECK(strstr(text, "Error: block fatal\n") != NULL);
      CHECK(strstr(text, "block quiet fatal") == NULL);
   }

   /* finishLogging goes back to stderr; a later log file reuses the stream a program kept. */
   kept = stdlog;
   finishLogging();
   CHECK(stdlog == stderr);
   snprintf(path2, sizeof(path2), "/tmp/rsplib-test-blocks2-%d.log", (int)getpid());
   snprintf(option, sizeof(option), "-logappend=%s", path2);
   CHECK(initLogging(option));
   CHECK(stdlog == kept);
   CHECK(initLogging("-logcolor=on")); /* colours into a file only when asked */
   LOG_ERROR fputs("second file\n", stdlog); LOG_END
   CHECK(initLogging("-logcolor=off"));
   LOG_WARNING fputs("plain again\n", stdlog); LOG_END
   finishLogging();
   text = file_text(path2);
   CHECK(text != NULL);
   if (text != NULL) {
      CHECK(strstr(text, "\x1b[91m") == text);
      CHECK(strstr(text, " \x1b[31mError: second file\n\x1b[0m") != NULL);
      CHECK(strstr(text, "Warning: plain again\n") != NULL);
      CHECK(strstr(text, "block") == NULL);
   }

   /* gLogMutex is the lock of loggingMutexLock. */
   other_thread_logged = 0;
   threadSafetyLock(&gLogMutex);
   CHECK(pthread_create(&t, NULL, log_from_other_thread, NULL) == 0);
   usleep(100000);
   CHECK_EQ(other_thread_logged, 0);
   threadSafetyUnlock(&gLogMutex);
   pthread_join(t, NULL);
   CHECK_EQ(other_thread_logged, 1);

   unlink(path);
   unlink(path2);
   CHECK(initLogging("-logcolor=on"));
   CHECK(initLogging("-loglevel=1"));
}

/* netutilities.h: the address helpers the first round lacked. */
static void test_more_addresses(void)
{
   union sockaddr_union a4 = loopback4(3863), a6, b, arr3[3];
   union sockaddr_union* copy;
   union sockaddr_union* back;
   struct sockaddr* packed;
   char buf[64];
   memset(&a6, 0, sizeof(a6));
   CHECK(string2address("[fe80::1]:9", &a6));

   CHECK(address2string(&a4.sa, buf, sizeof(buf), true) && strcmp(buf, "127.0.0.1:3863") == 0);
   CHECK(address2string(&a4.sa, buf, sizeof(buf), false) && strcmp(buf, "127.0.0.1") == 0);
   CHECK(address2string(&a6.sa, buf, sizeof(buf), true) && strcmp(buf, "[fe80::1]:9") == 0);
   CHECK(address2string(&a6.sa, buf, sizeof(buf), false) && strcmp(buf, "fe80::1") == 0);
   memset(&b, 0, sizeof(b));
   CHECK(address2string(&b.sa, buf, sizeof(buf), true) && strcmp(buf, "(unspecified)") == 0);
   b.sa.sa_family = AF_UNIX;
   CHECK(!address2string(&b.sa, buf, sizeof(buf), true) && strstr(buf, "unsupported") != NULL);
   CHECK(!address2string(&a4.sa, buf, 5, true) && strcmp(buf, "127.") == 0); /* truncated */
   CHECK(!address2string(NULL, buf, sizeof(buf), true));
   CHECK(!address2string(&a4.sa, NULL, sizeof(buf), true));
   CHECK(!address2string(&a4.sa, buf, 0, true));

   CHECK_EQ(getFamily(&a4.sa), AF_INET);
   CHECK_EQ(getFamily(&a6.sa), AF_INET6);
   CHECK_EQ(getFamily(NULL), AF_UNSPEC);
   CHECK_EQ(getSocklen(&a4.sa), sizeof(struct sockaddr_in));
   CHECK_EQ(getSocklen(&a6.sa), sizeof(struct sockaddr_in6));
   CHECK_EQ(getSocklen(&b.sa), sizeof(struct sockaddr));
   CHECK_EQ(getSocklen(NULL), 0);

   CHECK_EQ(getScope(&a4.sa), 2);
   CHECK_EQ(getScope(&a6.sa), 4);
   CHECK(string2address("192.168.1.1", &b));
   CHECK_EQ(getScope(&b.sa), 6);
   CHECK(string2address("[2001:db8::1]", &b));
   CHECK_EQ(getScope(&b.sa), 10);
   CHECK_EQ(getScope(NULL), 0);

   /* addresscmp: wider scope first, then address, then (if asked) port. */
   CHECK(string2address("10.0.0.1:1", &arr3[0]));
   CHECK(string2address("10.0.0.1:2", &arr3[1]));
   CHECK(addresscmp(&arr3[0].sa, &arr3[1].sa, true) < 0);
   CHECK_EQ(addresscmp(&arr3[0].sa, &arr3[1].sa, false), 0);
   CHECK(addresscmp(&a4.sa, &arr3[0].sa, false) > 0); /* loopback is narrower than private */
   CHECK(addresscmp(NULL, &a4.sa, false) > 0);
   CHECK_EQ(addresscmp(NULL, NULL, false), 0);

   CHECK_EQ(getPadding(5, 4), 3);
   CHECK_EQ(getPadding(12, 4), 0);
   CHECK_EQ(getPadding(7, 0), 0);
   {
      const unsigned char wire[4] = { 0x12, 0x34, 0x56, 0 };
      uint32_t v;
      memcpy(&v, wire, 4);
      CHECK_EQ(ntoh24(v), 0x123456);
      CHECK_EQ(hton24(ntoh24(v)), v);
   }

   /* Arrays: duplicate, pack into sockaddr blocks, unpack again. */
   arr3[0] = a4;
   arr3[1] = a6;
   arr3[2] = loopback4(7);
   copy = duplicateAddressArray(arr3, 3);
   CHECK(copy != NULL && memcmp(copy, arr3, sizeof(arr3)) == 0);
   deleteAddressArray(copy);
   deleteAddressArray(NULL);
   CHECK(duplicateAddressArray(NULL, 3) == NULL);
   CHECK(duplicateAddressArray(arr3, 0) == NULL);
   packed = pack_sockaddr_union(arr3, 3);
   CHECK(packed != NULL);
   if (packed != NULL) {
      const struct sockaddr* second = (const struct sockaddr*)((const char*)packed + sizeof(struct sockaddr_in));
      const struct sockaddr* best;
      CHECK_EQ(second->sa_family, AF_INET6);
      best = getBestScopedAddress(packed, 3);
      CHECK(best == second); /* link-local (4) beats loopback (2) */
      CHECK(getBestScopedAddress(packed, 1) == packed);
      CHECK(getBestScopedAddress(packed, 0) == NULL);
      back = unpack_sockaddr(packed, 3);
      CHECK(back != NULL);
      if (back != NULL) {
         CHECK(addresscmp(&back[0].sa, &a4.sa, true) == 0);
         CHECK(addresscmp(&back[1].sa, &a6.sa, true) == 0);
         CHECK_EQ(getPort(&back[2].sa), 7);
         free(back);
      }
      free(packed);
   }
   CHECK(getBestScopedAddress(NULL, 3) == NULL);
   CHECK(pack_sockaddr_union(NULL, 2) == NULL);
   CHECK(unpack_sockaddr(NULL, 2) == NULL);
   memset(&b, 0, sizeof(b));
   b.sa.sa_family = AF_UNIX;
   CHECK(pack_sockaddr_union(&b, 1) == NULL);
}

/* netutilities.h: connectplus, peer/local address lists, shutdown and abort, reuse, groups. */
static void test_more_sockets(void)
{
   int lsd = socket(AF_INET, SOCK_STREAM, 0), csd = socket(AF_INET, SOCK_STREAM, 0), asd = -1;
   union sockaddr_union addr = loopback4(0);
   union sockaddr_union* arr = NULL;
   socklen_t len = sizeof(int);
   int on = 0;
   char c;
   size_t n;
   CHECK(lsd >= 0 && csd >= 0);
   CHECK(setReusable(lsd, 1));
   CHECK(getsockopt(lsd, SOL_SOCKET, SO_REUSEADDR, &on, &len) == 0 && on == 1);
   CHECK(setReusable(lsd, 0));
   CHECK(getsockopt(lsd, SOL_SOCKET, SO_REUSEADDR, &on, &len) == 0 && on == 0);
   CHECK(!setReusable(-1, 1));
   CHECK(bindplus(lsd, &addr, 1));
   CHECK(listen(lsd, 4) == 0);
   addr = loopback4(bound_port(lsd));

   errno = 0;
   CHECK_EQ(connectplus(csd, NULL, 1), -1);
   CHECK_EQ(errno, EINVAL);
   CHECK_EQ(connectplus(csd, &addr, 0), -1);
   CHECK_EQ(connectplus(csd, &addr, 1), 0);
   asd = accept(lsd, NULL, NULL);
   CHECK(asd >= 0);

   n = getpaddrsplus(csd, 0, &arr);
   CHECK_EQ(n, 1);
   if (n == 1) {
      CHECK(addresscmp(&arr[0].sa, &addr.sa, true) == 0);
   }
   free(arr);
   arr = NULL;
   n = getAddressesFromSocket(csd, &arr);
   CHECK_EQ(n, 1);
   if (n == 1) {
      CHECK(addresscmp(&arr[0].sa, &addr.sa, false) == 0 && getPort(&arr[0].sa) != 0);
   }
   free(arr);
   arr = (union sockaddr_union*)1;
   errno = 0;
   CHECK_EQ(getpaddrsplus(lsd, 0, &arr), 0); /* a listening socket has no peer */
   CHECK(arr == NULL);
   CHECK_EQ(errno, ENOTCONN);
   CHECK_EQ(getpaddrsplus(csd, 0, NULL), 0);
   CHECK_EQ(getAddressesFromSocket(-1, &arr), 0);

   /* TCP: sendshutdown is shutdown(SHUT_WR): the peer reads EOF; there is no TCP abort. */
   CHECK_EQ(sendshutdown(csd, 0), 0);
   CHECK(asd >= 0 && read(asd, &c, 1) == 0);
   errno = 0;
   CHECK_EQ(sendabort(csd, 0), -1);
   CHECK_EQ(errno, EOPNOTSUPP);
   errno = 0;
   CHECK_EQ(sendabort(-1, 0), -1);
   CHECK_EQ(errno, EBADF);
   CHECK_EQ(sendshutdown(-1, 0), -1);
   close(asd);
   close(csd);
   close(lsd);

   {
      int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
      CHECK(checkIPv6() == (s6 >= 0));
      if (s6 >= 0) close(s6);
   }

   /* Multicast: NULL is EINVAL; joining 239.0.0.1 works where the host has a multicast route. */
   {
      int u = socket(AF_INET, SOCK_DGRAM, 0);
      union sockaddr_union g;
      errno = 0;
      CHECK(!joinOrLeaveMulticastGroup(u, NULL, true));
      CHECK_EQ(errno, EINVAL);
      CHECK(string2address("239.0.0.1:3863", &g));
      if (joinOrLeaveMulticastGroup(u, &g, true)) {
         CHECK(joinOrLeaveMulticastGroup(u, &g, true)); /* already a member: fine */
         CHECK(joinOrLeaveMulticastGroup(u, &g, false));
         CHECK(!joinOrLeaveMulticastGroup(u, &g, false)); /* no longer a member */
      }
      else {
         printf("note: cannot join 239.0.0.1 here (%s); multicast membership not checked\n", strerror(errno));
      }
      close(u);
   }
}

static void test_random(void)
{
   int i, differ8 = 0, differ16 = 0, differ32 = 0, differ64 = 0;
   double sum = 0.0;
   uint8_t a8 = random8();
   uint16_t a16 = random16();
   uint32_t a32 = random32();
   uint64_t a64 = random64();
   for (i = 0; i < 100; i++) {
      differ8 |= (random8() != a8);
      differ16 |= (random16() != a16);
      differ32 |= (random32() != a32);
      differ64 |= (random64() != a64);
   }
   CHECK(differ8 && differ16 && differ32 && differ64);
   for (i = 0; i < 20000; i++) {
      double v = randomExpDouble(2.0);
      if (v < 0.0) { sum = -1e9; break; }
      sum += v;
   }
   CHECK(sum / 20000.0 > 1.8 && sum / 20000.0 < 2.2);
   CHECK(randomExpDouble(0.0) == 0.0);
}

static void test_threadsafety(void)
{
   struct ThreadSafety ts;
   memset(&ts, 0xaa, sizeof(ts));
   threadSafetyNew(&ts, "test-mutex");
   CHECK(strcmp(ts.Name, "test-mutex") == 0);
   threadSafetyLock(&ts);
   threadSafetyLock(&ts); /* recursive */
   threadSafetyUnlock(&ts);
   threadSafetyUnlock(&ts);
   threadSafetyDelete(&ts);
   threadSafetyInit(&ts, "a mutex name that is far longer than thirty-one characters");
   CHECK_EQ(strlen(ts.Name), 31);
   threadSafetyLock(&ts);
   threadSafetyUnlock(&ts);
   threadSafetyDestroy(&ts);
   threadSafetyNew(&ts, NULL);
   CHECK_EQ(ts.Name[0], 0);
   threadSafetyDelete(&ts);
   threadSafetyNew(NULL, "x");
   threadSafetyLock(NULL);
   threadSafetyUnlock(NULL);
   threadSafetyDelete(NULL);
}

/* A report function for cspReporterNew: two entries. */
static size_t report_two(void* userData, struct ComponentAssociationEntry** caeArray,
                         char* statusText, char* componentAddress)
{
   struct ComponentAssociationEntry* e = componentAssociationEntryArrayNew(2);
   (void)userData;
   if (e == NULL) return 0;
   e[0].ReceiverID = CID_COMPOUND(CID_GROUP_POOLELEMENT, 0x1234);
   e[0].Duration = 5;
   e[0].Flags = 0;
   e[0].ProtocolID = IPPROTO_SCTP;
   e[0].PPID = 11;
   e[1] = e[0];
   *caeArray = e;
   strcpy(statusText, "two associations");
   strcpy(componentAddress, "10.0.0.1");
   return 2;
}

static int receive_report(int sd, unsigned char* buf, size_t size)
{
   return recvfromplus(sd, buf, size, NULL, NULL, NULL, NULL, NULL, NULL, 5000000);
}

static uint64_t be64(const unsigned char* p)
{
   uint64_t v;
   memcpy(&v, p, 8);
   return ntoh64(v);
}

static void test_csp(void)
{
   struct ComponentAssociationEntry* e;
   struct CSPReporter reporter;
   struct ComponentAssociationEntry* cae = (struct ComponentAssociationEntry*)1;
   union sockaddr_union monitor;
   unsigned char buf[2048];
   char status[CSPH_STATUS_TEXT_SIZE];
   char address[CSPH_COMPONENT_ADDRESS_SIZE];
   size_t i;
   int sd, r;

   e = componentAssociationEntryArrayNew(3);
   CHECK(e != NULL);
   if (e != NULL) {
      const unsigned char* p = (const unsigned char*)e;
      int all = 1;
      for (i = 0; i < 3 * sizeof(*e); i++) all &= (p[i] == 0xff);
      CHECK(all);
   }
   componentAssociationEntryArrayDelete(e);
   componentAssociationEntryArrayDelete(NULL);
   CHECK_EQ(CID_GROUP(CID_COMPOUND(CID_GROUP_POOLUSER, 9)), CID_GROUP_POOLUSER);
   CHECK_EQ(CID_OBJECT(CID_COMPOUND(CID_GROUP_POOLUSER, 9)), 9);

   CHECK_EQ(rspGetComponentStatus(&cae, status, address), 0);
   CHECK(cae == NULL);
   CHECK(strcmp(status, "0 Session(s)") == 0);
   CHECK(strlen(address) > 0 && strlen(address) < CSPH_COMPONENT_ADDRESS_SIZE);
   CHECK_EQ(rspGetComponentStatus(NULL, NULL, NULL), 0);
   componentStatusGetComponentAddress(address, -1, 0);
   CHECK(strlen(address) > 0);
   componentStatusGetComponentAddress(NULL, -1, 0);

   /* A monitor on loopback receives the library's report. */
   sd = socket(AF_INET, SOCK_DGRAM, 0);
   monitor = loopback4(0);
   CHECK(bindplus(sd, &monitor, 1));
   monitor = loopback4(bound_port(sd));
   cspReporterNewForRspLib(&reporter, CID_COMPOUND(CID_GROUP_POOLELEMENT, 0x42), &monitor, 50000);
   r = receive_report(sd, buf, sizeof(buf));
   CHECK_EQ(r, 296);
   if (r >= 296) {
      CHECK(buf[0] == 0 && buf[1] == CSPHT_STATUS && buf[2] == (CSP_VERSION >> 8) && buf[3] == (CSP_VERSION & 0xff));
      CHECK(buf[4] == 0 && buf[5] == 0 && buf[6] == 296 >> 8 && buf[7] == (296 & 0xff));
      CHECK_EQ(be64(buf + 8), CID_COMPOUND(CID_GROUP_POOLELEMENT, 0x42));
      CHECK_EQ(be64(buf + 16), 50000);
      CHECK(strcmp((const char*)buf + 32, "0 Session(s)") == 0);
   }
   CHECK_EQ(receive_report(sd, buf, sizeof(buf)), 296); /* periodic */
   cspReporterDelete(&reporter);
   cspReporterDelete(&reporter); /* twice: nothing */
   cspReporterDelete(NULL);
   cspReporterNewForRspLib(NULL, 1, &monitor, 1000);
   cspReporterNewForRspLib(&reporter, 1, NULL, 1000); /* no address: nothing starts */
   cspReporterDelete(&reporter);
   while (recvfromplus(sd, buf, sizeof(buf), NULL, NULL, NULL, NULL, NULL, NULL, 0) > 0) {}

   /* With the application's report function. */
   cspReporterNew(&reporter, NULL, 7, &monitor, 50000, report_two, NULL);
   r = receive_report(sd, buf, sizeof(buf));
   CHECK_EQ(r, 296 + 2 * 24);
   if (r == 296 + 48) {
      CHECK(strcmp((const char*)buf + 32, "two associations") == 0);
      CHECK(strcmp((const char*)buf + 160, "10.0.0.1") == 0);
      CHECK(buf[291] == 2);
      CHECK_EQ(be64(buf + 296), CID_COMPOUND(CID_GROUP_POOLELEMENT, 0x1234));
      CHECK(buf[296 + 23] == 11);
   }
   cspReporterDelete(&reporter);
   cspReporterNew(&reporter, NULL, 7, &monitor, 50000, NULL, NULL);
   cspReporterDelete(&reporter);
   close(sd);
}

static void test_policy_settings(void)
{
   struct PoolPolicySettings p, q;
   char text[128];
   FILE* fd = tmpfile();
   memset(&p, 0xab, sizeof(p));
   poolPolicySettingsNew(&p);
   CHECK(p.PolicyType == PPT_UNDEFINED && p.Weight == 0 && p.Load == 0 && p.LoadDegradation == 0);
   p.PolicyType = PPT_WEIGHTED_ROUNDROBIN;
   p.Weight = 5;
   poolPolicySettingsGetDescription(&p, text, sizeof(text));
   CHECK(strcmp(text, "WeightedRoundRobin, weight=5") == 0);
   memset(text, 'x', sizeof(text));
   poolPolicySettingsGetDescription(&p, text, 5);
   CHECK(strcmp(text, "Weig") == 0);
   poolPolicySettingsGetDescription(&p, text, 0);
   poolPolicySettingsGetDescription(NULL, text, sizeof(text));
   CHECK(strcmp(text, "(null)") == 0);
   poolPolicySettingsGetDescription(&p, NULL, 10);
   poolPolicySettingsPrint(&p, fd);
   CHECK(strcmp(captured(fd), "WeightedRoundRobin, weight=5") == 0);
   poolPolicySettingsPrint(&p, NULL);
   fclose(fd);
   q = p;
   CHECK_EQ(poolPolicySettingsComparison(&p, &q), 0);
   q.Load = 1;
   CHECK(poolPolicySettingsComparison(&p, &q) != 0);
   CHECK(poolPolicySettingsComparison(NULL, &q) != 0);
   CHECK_EQ(poolPolicySettingsComparison(NULL, NULL), 0);
   CHECK_EQ(poolPolicySettingsIsValid(&p), 1);
   p.Load = PEPS_MAX_LOAD + 1;
   CHECK_EQ(poolPolicySettingsIsValid(&p), 0);
   CHECK_EQ(poolPolicySettingsIsValid(NULL), 0);
   CHECK_EQ(poolPolicySettingsAdapt(&p, PPT_WEIGHTED_ROUNDROBIN), 1);
   CHECK_EQ(poolPolicySettingsAdapt(&p, PPT_LEASTUSED), 0);
   CHECK_EQ(poolPolicySettingsAdapt(NULL, PPT_LEASTUSED), 0);
   poolPolicySettingsDelete(&p);
   CHECK(p.PolicyType == 0 && p.Weight == 0);
   poolPolicySettingsNew(NULL);
   poolPolicySettingsDelete(NULL);
   poolPolicySettingsPrint(NULL, NULL);
}

int main(void)
{
   test_logging();
   test_time();
   test_break_detector();
   test_addresses();
   test_blocking();
   test_sockets();
   test_sctp();
   test_log_color_and_mutex();
   test_log_blocks();
   test_more_addresses();
   test_more_sockets();
   test_random();
   test_threadsafety();
   test_csp();
   test_policy_settings();
   return TEST_SUMMARY();
}
