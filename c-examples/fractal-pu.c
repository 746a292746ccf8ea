/* fractal-pu: the pool user of the fractal pool (fractal-pe.c; messages in fractal-protocol.h).
 *
 * Opens a session to the pool, sends the picture's parameters and reads rows until the picture
 * is complete. Every row says which PE computed it. When the serving PE dies the library fails
 * over and echoes the last cookie, and the new PE goes on from the row the cookie names (a row
 * can come twice: the later copy wins); when the PE hands the session to another PE the library
 * follows by itself. The picture is written as a PNG in which every pixel is tinted by the PE
 * that computed it (first PE red, second green, third blue, ...) and shaded by its iteration
 * count; a legend says which rows each PE computed.
 *
 * The PNG is written here with stored (uncompressed) deflate blocks, CRC-32 and Adler-32: the
 * example needs no libpng or zlib.
 *
 * Build: cc -pthread fractal-pu.c $(pkg-config --cflags --libs rsplib) -o fractal-pu
 * Usage: fractal-pu [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-output=FILE.png]
 *                   [-width=N] [-height=N] [-maxiterations=N] [-region=RE1,IM1,RE2,IM2]
 *                   [-progress=ROWS] [-timeout=MILLISECONDS]
 */
#include <rsplib.h>
#include <rsplib-handoff.h>

#include "fractal-protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ PNG writer */
static uint32_t gCrcTable[256];

static void crcInit(void)
{
   uint32_t n, k, c;
   for (n = 0; n < 256; n++) {
      c = n;
      for (k = 0; k < 8; k++) {
         c = (c & 1) ? (0xedb88320U ^ (c >> 1)) : (c >> 1);
      }
      gCrcTable[n] = c;
   }
}

/* CRC-32 (ISO 3309, as in PNG and zlib): crc32(crc32(0, a), b) = crc32(0, ab). */
static uint32_t crc32Update(uint32_t crc, const unsigned char* data, size_t length)
{
   uint32_t c = crc ^ 0xffffffffU;
   size_t   i;
   if (gCrcTable[1] == 0) {
      crcInit();
   }
   for (i = 0; i < length; i++) {
      c = gCrcTable[(c ^ data[i]) & 0xff] ^ (c >> 8);
   }
   return c ^ 0xffffffffU;
}

/* Adler-32 (RFC 1950), from 1. */
static uint32_t adler32Update(uint32_t adler, const unsigned char* data, size_t length)
{
   uint32_t a = adler & 0xffff, b = adler >> 16;
   while (length > 0) {
      size_t n = (length < 5552) ? length : 5552;   /* no overflow before the modulo */
      length -= n;
      while (n-- > 0) {
         a += *data++;
         b += a;
      }
      a %= 65521;
      b %= 65521;
   }
   return (b << 16) | a;
}

static int writeChunk(FILE* f, const char* type, const unsigned char* data, size_t length)
{
   unsigned char header[8], trailer[4];
   fractalPut32(header, (uint32_t)length);
   memcpy(header + 4, type, 4);
   fractalPut32(trailer, crc32Update(crc32Update(0, header + 4, 4), data, length));
   return (fwrite(header, 1, 8, f) == 8) && (fwrite(data, 1, length, f) == length) &&
          (fwrite(trailer, 1, 4, f) == 4);
}

/* An 8-bit RGB PNG: rgb holds height rows of 3 * width bytes. 1 on success. */
static int writePNG(const char* fileName, uint32_t width, uint32_t height, const unsigned char* rgb)
{
   static const unsigned char signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
   const size_t   line   = 1 + 3 * (size_t)width;   /* filter type 0 (None), then the pixels */
   const size_t   raw    = line * height;
   const size_t   blocks = (raw + 65534) / 65535;
   unsigned char  ihdr[13];
   unsigned char* scanlines = (unsigned char*)malloc(raw);
   unsigned char* zlib      = (unsigned char*)malloc(2 + 5 * blocks + raw + 4);
   unsigned char* z;
   size_t         y, done;
   FILE*          f;
   int            ok;

   if ((scanlines == NULL) || (zlib == NULL)) {
      free(scanlines);
      free(zlib);
      return 0;
   }
   for (y = 0; y < height; y++) {
      scanlines[y * line] = 0;
      memcpy(scanlines + y * line + 1, rgb + y * 3 * (size_t)width, 3 * (size_t)width);
   }
   /* zlib stream (RFC 1950): deflate, 32 KiB window, no dictionary; stored blocks (RFC 1951
      3.2.4): a header byte (BFINAL, BTYPE = 00), LEN and its complement (little endian). */
   z = zlib;
   *z++ = 0x78;
   *z++ = 0x01;   /* (0x78 * 256 + 0x01) % 31 == 0 */
   for (done = 0; done < raw;) {
      const size_t n = (raw - done < 65535) ? raw - done : 65535;
      *z++ = (done + n == raw) ? 1 : 0;
      *z++ = (unsigned char)(n & 0xff);
      *z++ = (unsigned char)(n >> 8);
      *z++ = (unsigned char)(~n & 0xff);
      *z++ = (unsigned char)((~n >> 8) & 0xff);
      memcpy(z, scanlines + done, n);
      z    += n;
      done += n;
   }
   fractalPut32(z, adler32Update(1, scanlines, raw));
   z += 4;

   fractalPut32(ihdr, width);
   fractalPut32(ihdr + 4, height);
   ihdr[8]  = 8;   /* bit depth */
   ihdr[9]  = 2;   /* colour type: RGB */
   ihdr[10] = 0;   /* deflate */
   ihdr[11] = 0;   /* adaptive filtering */
   ihdr[12] = 0;   /* no interlace */
   ok = ((f = fopen(fileName, "wb")) != NULL);
   if (ok) {
      ok = (fwrite(signature, 1, 8, f) == 8) && writeChunk(f, "IHDR", ihdr, sizeof(ihdr)) &&
           writeChunk(f, "IDAT", zlib, (size_t)(z - zlib)) && writeChunk(f, "IEND", NULL, 0);
      ok = (fclose(f) == 0) && ok;
   }
   free(scanlines);
   free(zlib);
   return ok;
}

/* ------------------------------------------------------------------------------ the picture */
struct Colour {
   const char*   Name;
   unsigned char R, G, B;
};
static const struct Colour gPalette[] = {
   { "red",     235,  60,  60 }, { "green",  60, 205,  80 }, { "blue",  70, 115, 245 },
   { "orange",  245, 160,  40 }, { "purple", 170,  80, 220 }, { "cyan",  50, 210, 210 },
   { "yellow",  230, 220,  60 }, { "grey",   170, 170, 170 }
};
#define PALETTE_SIZE (sizeof(gPalette) / sizeof(gPalette[0]))
#define MAX_PES      64

struct Picture {
   struct FractalParameters P;
   uint16_t*                Iterations;   /* Width x Height */
   uint32_t*                RowPE;        /* who computed each row */
   unsigned char*           Have;
   uint32_t                 Received;     /* distinct rows */
   uint32_t                 PEs[MAX_PES]; /* in the order they first sent a row */
   size_t                   PECount;
};

static size_t peIndex(struct Picture* pic, uint32_t pe)
{
   size_t i;
   for (i = 0; i < pic->PECount; i++) {
      if (pic->PEs[i] == pe) {
         return i;
      }
   }
   if (pic->PECount < MAX_PES) {
      pic->PEs[pic->PECount++] = pe;
   }
   return pic->PECount - 1;
}

/* The PE's colour, dark inside the set, brighter (towards white) near its border. */
static void shade(const struct Colour* c, uint32_t iterations, uint32_t max, unsigned char* rgb)
{
   const unsigned char base[3] = { c->R, c->G, c->B };
   double              s, f, white;
   int                 k;
   if (iterations >= max) {
      f = 0.12;
      white = 0.0;
   }
   else {
      s     = (double)iterations / ((double)iterations + (double)max / 24.0 + 1.0);
      f     = 0.30 + 0.70 * s;
      white = (s > 0.6) ? (s - 0.6) / 0.4 * 0.5 : 0.0;
   }
   for (k = 0; k < 3; k++) {
      rgb[k] = (unsigned char)(base[k] * f * (1.0 - white) + 255.0 * white + 0.5);
   }
}

static int render(struct Picture* pic, const char* fileName)
{
   const uint32_t w = pic->P.Width, h = pic->P.Height;
   unsigned char* rgb = (unsigned char*)malloc(3 * (size_t)w * h);
   uint32_t       x, y;
   int            ok;
   if (rgb == NULL) {
      return 0;
   }
   for (y = 0; y < h; y++) {
      const struct Colour* c = &gPalette[peIndex(pic, pic->RowPE[y]) % PALETTE_SIZE];
      for (x = 0; x < w; x++) {
         shade(c, pic->Iterations[(size_t)y * w + x], pic->P.MaxIterations, rgb + 3 * ((size_t)y * w + x));
      }
   }
   ok = writePNG(fileName, w, h, rgb);
   free(rgb);
   return ok;
}

/* "PE 0x... colour rows a-b, c-d (n rows)" for every PE; returns how many PEs have rows. */
static size_t legend(struct Picture* pic)
{
   size_t i, distinct = 0;
   for (i = 0; i < pic->PECount; i++) {
      char     ranges[160] = "";
      size_t   used = 0, shown = 0;
      uint32_t y, count = 0, start = 0;
      int      in = 0;
      for (y = 0; y <= pic->P.Height; y++) {
         const int mine = (y < pic->P.Height) && (pic->RowPE[y] == pic->PEs[i]);
         if (mine) {
            count++;
            if (!in) {
               start = y;
               in    = 1;
            }
         }
         else if (in) {
            in = 0;
            if (shown++ < 6) {
               int n = (start == y - 1)
                          ? snprintf(ranges + used, sizeof(ranges) - used, "%s%u", used ? ", " : "", start)
                          : snprintf(ranges + used, sizeof(ranges) - used, "%s%u-%u", used ? ", " : "", start, y - 1);
               used += (n > 0) ? (size_t)n : 0;
               if (used >= sizeof(ranges)) {
                  used = sizeof(ranges) - 1;
               }
            }
         }
      }
      if (count > 0) {
         distinct++;
      }
      printf("[PU]   PE 0x%08x  %-6s  rows %s%s (%u row%s)\n", pic->PEs[i], gPalette[i % PALETTE_SIZE].Name,
             (count > 0) ? ranges : "none: all computed again by others", (shown > 6) ? ", ..." : "",
             count, (count == 1) ? "" : "s");
   }
   return distinct;
}

/* ------------------------------------------------------------------------------ the session */
static int sendParameters(struct SessionDescriptor* session, const struct FractalParameters* fp)
{
   unsigned char message[FRACTAL_PARAMETERS_SIZE];
   int           tries;
   fractalEncodeParameters(message, FRACTAL_MAGIC_PARAMETERS, fp);
   for (tries = 0; tries < 20; tries++) {
      if (rspSessionWrite(session, message, sizeof(message), NULL) == (ssize_t)sizeof(message)) {
         return 1;
      }
      printf("[PU] could not send the parameters (no PE reachable?), trying again\n");
   }
   return 0;
}

static int parseRegion(const char* s, struct FractalParameters* fp)
{
   return sscanf(s, "%lf,%lf,%lf,%lf", &fp->C1Real, &fp->C1Imag, &fp->C2Real, &fp->C2Imag) == 4;
}

int main(int argc, char** argv)
{
   const char*               poolHandle = "FractalPool";
   const char*               output     = "fractal.png";
   unsigned long             progress   = 0;
   unsigned long             timeout    = 30000;   /* ms without a row: give up */
   struct Picture            pic;
   struct SessionDescriptor* session;
   unsigned char*            buffer;
   unsigned long             idle = 0, failovers = 0, duplicates = 0, mismatches = 0, rows = 0;
   uint32_t                  lastPE = 0;
   int                       failedOver = 0, ok = 0;
   unsigned int              rc;
   int                       i;

   setvbuf(stdout, NULL, _IOLBF, 0);
   memset(&pic, 0, sizeof(pic));
   pic.P.Width         = 480;
   pic.P.Height        = 360;
   pic.P.MaxIterations = 512;
   pic.P.C1Real = -2.25; pic.P.C1Imag =  1.125;
   pic.P.C2Real =  0.75; pic.P.C2Imag = -1.125;
   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fputs("fractal-pu: rspInitialize() failed\n", stderr);
      return 1;
   }
   for (i = 1; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         if ((rc = rspAddStaticRegistrar(argv[i] + 11)) != RSPERR_OKAY) {
            fprintf(stderr, "fractal-pu: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(rc));
            rspCleanUp();
            return 1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0)    { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-output=", 8) == 0)         { output = argv[i] + 8; }
      else if (strncmp(argv[i], "-width=", 7) == 0)          { pic.P.Width = (uint32_t)strtoul(argv[i] + 7, NULL, 0); }
      else if (strncmp(argv[i], "-height=", 8) == 0)         { pic.P.Height = (uint32_t)strtoul(argv[i] + 8, NULL, 0); }
      else if (strncmp(argv[i], "-maxiterations=", 15) == 0) { pic.P.MaxIterations = (uint32_t)strtoul(argv[i] + 15, NULL, 0); }
      else if (strncmp(argv[i], "-progress=", 10) == 0)      { progress = strtoul(argv[i] + 10, NULL, 0); }
      else if (strncmp(argv[i], "-timeout=", 9) == 0)        { timeout = strtoul(argv[i] + 9, NULL, 0); }
      else if ((strncmp(argv[i], "-region=", 8) == 0) && parseRegion(argv[i] + 8, &pic.P)) { }
      else {
         fprintf(stderr, "Usage: %s [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-output=FILE.png]\n"
                         "          [-width=N] [-height=N] [-maxiterations=N] [-region=RE1,IM1,RE2,IM2]\n"
                         "          [-progress=ROWS] [-timeout=MILLISECONDS]\n", argv[0]);
         rspCleanUp();
         return 1;
      }
   }
   {  /* the checks the PE makes */
      unsigned char check[FRACTAL_PARAMETERS_SIZE];
      fractalEncodeParameters(check, FRACTAL_MAGIC_PARAMETERS, &pic.P);
      if (!fractalDecodeParameters(check, sizeof(check), FRACTAL_MAGIC_PARAMETERS, &pic.P)) {
         fprintf(stderr, "fractal-pu: width and height must be 1..%u, iterations 1..65535\n", FRACTAL_MAX_WIDTH);
         rspCleanUp();
         return 1;
      }
   }
   if (progress == 0) {
      progress = (pic.P.Height >= 20) ? pic.P.Height / 20 : 1;
   }
   pic.Iterations = (uint16_t*)calloc((size_t)pic.P.Width * pic.P.Height, sizeof(uint16_t));
   pic.RowPE      = (uint32_t*)calloc(pic.P.Height, sizeof(uint32_t));
   pic.Have       = (unsigned char*)calloc(pic.P.Height, 1);
   buffer         = (unsigned char*)malloc(FRACTAL_MAX_ROW_SIZE + 16);
   session = (pic.Iterations && pic.RowPE && pic.Have && buffer)
                ? rspCreateSession((const unsigned char*)poolHandle, strlen(poolHandle), NULL, NULL) : NULL;
   if (session == NULL) {
      fprintf(stderr, "fractal-pu: cannot create a session to pool \"%s\"\n", poolHandle);
   }
   else if (!sendParameters(session, &pic.P)) {
      fprintf(stderr, "fractal-pu: no PE took the parameters\n");
   }
   else {
      printf("[PU] asked pool \"%s\" for a %ux%u picture (%u iterations)\n", poolHandle,
             pic.P.Width, pic.P.Height, pic.P.MaxIterations);
      while (pic.Received < pic.P.Height) {
         struct TagItem tags[3];
         ssize_t        n;
         uint32_t       row, pe, x;
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 500000;
         tags[1].Tag = TAG_RspIO_PE_ID;   tags[1].Data = 0;
         tags[2].Tag = TAG_DONE;          tags[2].Data = 0;
         n = rspSessionRead(session, buffer, FRACTAL_MAX_ROW_SIZE + 16, tags);
         if (n == RspRead_ControlRead || n == RspRead_WrongPPID) {
            continue;
         }
         if (n == RspRead_Timeout) {
            if ((idle += 500) >= timeout) {
               fprintf(stderr, "fractal-pu: no row for %lu ms, giving up\n", timeout);
               break;
            }
            continue;
         }
         if (n <= 0) {
            failedOver = 1;
            if (++failovers > 20) {
               fprintf(stderr, "fractal-pu: no PE serves the session any more, giving up\n");
               break;
            }
            printf("[PU] PE 0x%08x is gone: failed over, %s\n", lastPE,
                   rspSessionHasCookie(session) ? "the new PE goes on from our last cookie"
                                                : "no cookie yet: sending the parameters again");
            if (!rspSessionHasCookie(session) && !sendParameters(session, &pic.P)) {
               break;
            }
            continue;
         }
         if (((size_t)n < FRACTAL_ROW_HEADER_SIZE) || (fractalGet32(buffer) != FRACTAL_MAGIC_ROW) ||
             ((row = fractalGet32(buffer + 4)) >= pic.P.Height) || (fractalGet32(buffer + 12) != pic.P.Width) ||
             ((size_t)n != FRACTAL_ROW_HEADER_SIZE + 2 * (size_t)pic.P.Width)) {
            printf("[PU] ignoring a message of %d bytes that is no row of this picture\n", (int)n);
            continue;
         }
         pe   = fractalGet32(buffer + 8);
         idle = 0;
         failovers = 0;
         rows++;
         if (pe != lastPE) {
            const char* how = (lastPE == 0) ? "" : failedOver ? " after a failover" : " (the session was handed off)";
#ifdef RSPHANDOFF_RESUMED
            if ((lastPE != 0) && !failedOver && (rspSessionHandoffState(session) != RSPHANDOFF_RESUMED)) {
               how = " (new PE, no handoff state?)";
            }
#endif
            printf("[PU] row %u: served by PE 0x%08x%s\n", row, pe, how);
            lastPE = pe;
         }
         failedOver = 0;
         if ((tags[1].Data != 0) && ((uint32_t)tags[1].Data != pe)) {
            if (mismatches++ == 0) {
               printf("[PU] note: row %u says PE 0x%08x, the library says PE 0x%08x\n", row, pe, (uint32_t)tags[1].Data);
            }
         }
         if (pic.Have[row]) {
            duplicates++;
            printf("[PU] row %u again, now from PE 0x%08x (was PE 0x%08x): the later copy wins\n", row, pe, pic.RowPE[row]);
         }
         else {
            pic.Have[row] = 1;
            pic.Received++;
         }
         pic.RowPE[row] = pe;
         peIndex(&pic, pe);
         for (x = 0; x < pic.P.Width; x++) {
            pic.Iterations[(size_t)row * pic.P.Width + x] = fractalGet16(buffer + FRACTAL_ROW_HEADER_SIZE + 2 * x);
         }
         if ((pic.Received % progress == 0) || (pic.Received == pic.P.Height)) {
            printf("[PU] %u/%u rows, row %u from PE 0x%08x\n", pic.Received, pic.P.Height, row, pe);
         }
      }
   }
   rspDeleteSession(session, NULL);
   if (pic.Received == pic.P.Height) {
      if (render(&pic, output)) {
         size_t distinct;
         printf("[PU] wrote %s (%ux%u): each row tinted by the PE that computed it\n", output, pic.P.Width, pic.P.Height);
         printf("[PU] legend:\n");
         distinct = legend(&pic);
         printf("[PU] %lu PE(s) computed the picture; %lu row message(s), %lu row(s) computed twice, "
                "%lu PE id mismatch(es) with TAG_RspIO_PE_ID\n",
                (unsigned long)distinct, rows, duplicates, mismatches);
         ok = 1;
      }
      else {
         fprintf(stderr, "fractal-pu: cannot write %s\n", output);
      }
   }
   else if (session != NULL) {
      fprintf(stderr, "fractal-pu: the picture is incomplete (%u of %u rows)\n", pic.Received, pic.P.Height);
   }
   free(pic.Iterations);
   free(pic.RowPE);
   free(pic.Have);
   free(buffer);
   rspCleanUp();
   return ok ? 0 : 1;
}
