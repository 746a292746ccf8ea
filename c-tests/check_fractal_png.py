#!/usr/bin/env python3
"""Checks fractal-pu's PNG against zlib and against the PU's legend.

    check_fractal_png.py FILE.png PU.log [PEs]

The file: PNG signature, chunk CRCs (zlib.crc32), IHDR (8-bit RGB, no interlace); IDAT a zlib
stream of stored deflate blocks (LEN/NLEN, the last one final) whose Adler-32 is zlib's, and
that zlib itself inflates to height scanlines of filter type 0. The picture: every row of the
legend ("PE 0x...  red  rows 0-46, 50 (48 rows)") is tinted by its colour (the channel with
the largest sum over the row), and PEs (default 3) distinct PEs have rows.
"""
import re
import struct
import sys
import zlib

DOMINANT = {"red": 0, "green": 1, "blue": 2}


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def main():
    png, log = sys.argv[1], sys.argv[2]
    want_pes = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = open(png, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("PNG signature")
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            fail(f"CRC-32 of chunk {kind!r}")
        chunks.append((kind, body))
        pos += 12 + length
    if [k for k, _ in chunks] != [b"IHDR", b"IDAT", b"IEND"]:
        fail(f"chunks {[k for k, _ in chunks]}")
    width, height, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, ctype, comp, filt, inter) != (8, 2, 0, 0, 0):
        fail("IHDR: not 8-bit RGB without interlace")
    stream = chunks[1][1]
    if stream[:2] != b"\x78\x01":
        fail("zlib header")
    # Walk the stored blocks ourselves, then let zlib inflate the whole stream.
    pos, raw, blocks = 2, b"", 0
    while True:
        head = stream[pos]
        length, nlength = struct.unpack("<HH", stream[pos + 1 : pos + 5])
        if head & 6 != 0 or length ^ nlength != 0xFFFF:
            fail(f"stored block {blocks}: header {head}, LEN {length}, NLEN {nlength}")
        raw += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
        blocks += 1
        if head & 1:
            break
    (adler,) = struct.unpack(">I", stream[pos : pos + 4])
    if adler != zlib.adler32(raw) or pos + 4 != len(stream):
        fail("Adler-32 or trailing bytes")
    if zlib.decompress(stream) != raw:
        fail("zlib inflates something else")
    line = 1 + 3 * width
    if len(raw) != line * height or any(raw[y * line] != 0 for y in range(height)):
        fail("scanlines: size or filter type")
    print(f"PASS {png}: {width}x{height}, {blocks} stored block(s), CRC-32 and Adler-32 agree with zlib")

    def tint(y):
        row = raw[y * line + 1 : (y + 1) * line]
        sums = [sum(row[c::3]) for c in range(3)]
        return sums.index(max(sums))

    legend = re.findall(r"PE (0x[0-9a-f]+)\s+(\w+)\s+rows ([0-9, -]+) \((\d+) rows?\)", open(log).read())
    covered, pes = set(), 0
    for pe, colour, ranges, count in legend:
        rows = set()
        for r in ranges.split(","):
            a, _, b = r.strip().partition("-")
            rows.update(range(int(a), int(b or a) + 1))
        if len(rows) != int(count):
            fail(f"legend of PE {pe}: {count} rows, ranges say {len(rows)} (ranges elided?)")
        wrong = [y for y in sorted(rows) if tint(y) != DOMINANT[colour]]
        if wrong:
            fail(f"PE {pe} ({colour}): rows {wrong[:5]} are not {colour}")
        covered |= rows
        pes += 1 if rows else 0
        print(f"PASS PE {pe}: its {len(rows)} rows are {colour}")
    if covered != set(range(height)):
        fail(f"the legend covers {len(covered)} of {height} rows")
    if pes != want_pes:
        fail(f"{pes} PEs computed rows, not {want_pes}")
    print(f"PASS {pes} PE regions")


main()
