/* fractal-protocol.h: the messages of the fractal pool (fractal-pe.c, fractal-pu.c).
 *
 * A session computes one picture of the Mandelbrot set. All fields are in network byte order;
 * a real number travels as the 64 bits of its IEEE 754 double, most significant byte first.
 *
 *   PU -> PE  parameters (FRACTAL_PARAMETERS_SIZE bytes):
 *      0 u32 magic "FPAR"      4 u32 width     8 u32 height     12 u32 maximum iterations
 *     16 f64 c1 real          24 f64 c1 imaginary               (the picture's top left corner)
 *     32 f64 c2 real          40 f64 c2 imaginary               (its bottom right corner)
 *   PE -> PU  one message per row (FRACTAL_ROW_HEADER_SIZE + 2 * width bytes):
 *      0 u32 magic "FROW"      4 u32 row       8 u32 PE identifier   12 u32 width
 *     16 u16 iterations[width] (maximum iterations = the point is in the set)
 *   PE -> PU  cookie after every row (FRACTAL_COOKIE_SIZE bytes): the parameters with magic
 *     "FCOO" and at 48 a u32: the next row to compute. A PE that receives it as a cookie echo
 *     (the PU failed over, or the session was handed to it) goes on from that row.
 */
#ifndef FRACTAL_PROTOCOL_H
#define FRACTAL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FRACTAL_MAGIC_PARAMETERS 0x46504152U /* "FPAR" */
#define FRACTAL_MAGIC_ROW        0x46524f57U /* "FROW" */
#define FRACTAL_MAGIC_COOKIE     0x46434f4fU /* "FCOO" */

#define FRACTAL_PARAMETERS_SIZE  48
#define FRACTAL_COOKIE_SIZE      52
#define FRACTAL_ROW_HEADER_SIZE  16
#define FRACTAL_MAX_WIDTH        4096
#define FRACTAL_MAX_HEIGHT       4096
#define FRACTAL_MAX_ROW_SIZE     (FRACTAL_ROW_HEADER_SIZE + 2 * FRACTAL_MAX_WIDTH)

struct FractalParameters {
   uint32_t Width;
   uint32_t Height;
   uint32_t MaxIterations;   /* 1 .. 65535 */
   double   C1Real, C1Imag;  /* top left */
   double   C2Real, C2Imag;  /* bottom right */
};

static inline void fractalPut16(unsigned char* p, uint16_t v)
{
   p[0] = (unsigned char)(v >> 8);
   p[1] = (unsigned char)v;
}

static inline void fractalPut32(unsigned char* p, uint32_t v)
{
   p[0] = (unsigned char)(v >> 24);
   p[1] = (unsigned char)(v >> 16);
   p[2] = (unsigned char)(v >> 8);
   p[3] = (unsigned char)v;
}

static inline uint16_t fractalGet16(const unsigned char* p)
{
   return (uint16_t)(((unsigned int)p[0] << 8) | p[1]);
}

static inline uint32_t fractalGet32(const unsigned char* p)
{
   return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void fractalPutDouble(unsigned char* p, double d)
{
   uint64_t bits;
   memcpy(&bits, &d, sizeof(bits));
   fractalPut32(p, (uint32_t)(bits >> 32));
   fractalPut32(p + 4, (uint32_t)bits);
}

static inline double fractalGetDouble(const unsigned char* p)
{
   uint64_t bits = ((uint64_t)fractalGet32(p) << 32) | fractalGet32(p + 4);
   double   d;
   memcpy(&d, &bits, sizeof(d));
   return d;
}

/* Parameters with the given magic (FRACTAL_MAGIC_PARAMETERS, or FRACTAL_MAGIC_COOKIE for the
   first 48 bytes of a cookie) into FRACTAL_PARAMETERS_SIZE bytes. */
static inline void fractalEncodeParameters(unsigned char* p, uint32_t magic,
                                           const struct FractalParameters* fp)
{
   fractalPut32(p, magic);
   fractalPut32(p + 4, fp->Width);
   fractalPut32(p + 8, fp->Height);
   fractalPut32(p + 12, fp->MaxIterations);
   fractalPutDouble(p + 16, fp->C1Real);
   fractalPutDouble(p + 24, fp->C1Imag);
   fractalPutDouble(p + 32, fp->C2Real);
   fractalPutDouble(p + 40, fp->C2Imag);
}

/* 1 if the size and magic fit and the values are in range. */
static inline int fractalDecodeParameters(const unsigned char* p, size_t size, uint32_t magic,
                                          struct FractalParameters* fp)
{
   if ((size < FRACTAL_PARAMETERS_SIZE) || (fractalGet32(p) != magic)) {
      return 0;
   }
   fp->Width         = fractalGet32(p + 4);
   fp->Height        = fractalGet32(p + 8);
   fp->MaxIterations = fractalGet32(p + 12);
   fp->C1Real        = fractalGetDouble(p + 16);
   fp->C1Imag        = fractalGetDouble(p + 24);
   fp->C2Real        = fractalGetDouble(p + 32);
   fp->C2Imag        = fractalGetDouble(p + 40);
   return (fp->Width >= 1) && (fp->Width <= FRACTAL_MAX_WIDTH) &&
          (fp->Height >= 1) && (fp->Height <= FRACTAL_MAX_HEIGHT) &&
          (fp->MaxIterations >= 1) && (fp->MaxIterations <= 65535);
}

static inline void fractalEncodeCookie(unsigned char* p, const struct FractalParameters* fp,
                                       uint32_t nextRow)
{
   fractalEncodeParameters(p, FRACTAL_MAGIC_COOKIE, fp);
   fractalPut32(p + FRACTAL_PARAMETERS_SIZE, nextRow);
}

static inline int fractalDecodeCookie(const unsigned char* p, size_t size,
                                      struct FractalParameters* fp, uint32_t* nextRow)
{
   if ((size < FRACTAL_COOKIE_SIZE) || !fractalDecodeParameters(p, size, FRACTAL_MAGIC_COOKIE, fp)) {
      return 0;
   }
   *nextRow = fractalGet32(p + FRACTAL_PARAMETERS_SIZE);
   return *nextRow <= fp->Height;
}

#endif /* FRACTAL_PROTOCOL_H */
