// Hash an image on the reporter's own device: MD5 of the file's bytes and the PDQ hash of its
// pixels, the same values Takedown's server computes (src/takedown/media/hashing.py). Only
// the hashes need to leave the device; the image never does.
//
// This one ES module has two roles:
//
// * In a page: `hashInWorker(file, {onProgress})` starts this same file as a module Web
//   Worker, hands it the File, and resolves to the hashes (or rejects with a HashError
//   carrying a `code` and a message written for the reporter).
// * In a Web Worker: it answers {type: "hash", file} messages (see the protocol below).
//
// The functions doing the work (`hashBlob` and its helpers) are exported too, so that they
// can be tested outside a browser where no DOM API is needed (PNG decoding, sniffing).
//
// How the pixels are chosen, and why they match the server's:
// * PNG is decoded here in JavaScript (DecompressionStream for zlib): a canvas keeps
//   premultiplied alpha and would change the colour of every partly transparent pixel,
//   while the server drops alpha and hashes the stored colour. The conversions copy
//   Pillow's (16-bit samples keep their high byte, 1/2/4-bit grey is scaled, palette
//   indexes beyond the palette are black, gamma and ICC chunks are ignored).
// * JPEG, WebP, GIF and BMP are decoded by the browser (createImageBitmap with
//   colorSpaceConversion "none", premultiplyAlpha "none") and read through an
//   OffscreenCanvas. Chromium's JPEG and WebP decoders are the same libraries Pillow uses
//   (libjpeg-turbo, libwebp) and return identical pixels. The server decodes large JPEGs at
//   a reduced DCT scale (a speed-up worth <= 2 bits); the browser decodes in full and
//   samples the reference's pixels, so there the two may differ by those bits.
// * EXIF orientation is ignored, as on the server: browsers apply it in createImageBitmap
//   even with imageOrientation "none", so the orientation tag is set to 1 ("as stored") in a
//   private copy of the bytes before decoding (the MD5 is of the original bytes).
// * A GIF's transparent pixels come out of a canvas as transparent black; the server sees
//   the palette colour of the transparent index, so that colour is put back.
// * Other partly transparent pixels (WebP, BMP) cannot be read exactly through a canvas,
//   which stores premultiplied alpha. They are read again with WebCodecs' ImageDecoder
//   (its BGRA frames keep the stored colour); where that API is missing (Safari) the
//   result is flagged `approximate: true`.
// * Larger than 512 px on either side: exactly 512 x 512 samples, source index
//   floor(i * size / 512) per axis, read row by row so that a 50 MP photo never needs a
//   second full-size copy in memory.
//
// Worker protocol
//   in:  {type: "hash", id, file: Blob, limits?: {maxBytes, maxPixels, maxSide},
//         decoder?: "auto" | "browser" | "canvas" (the last two for tests), chunkSize?}
//   out: {type: "progress", id, stage: "reading" | "decoding" | "hashing", loaded, total}
//        {type: "result", id, result: {md5, pdq, quality, width, height, format, mimeType,
//                                      bytes, dihedral, decoder, approximate}}
//        decoder: "javascript" (PNG), "browser" (canvas) or "webcodecs" (transparency)
//        {type: "error", id, code, message, detail}
// Error codes are the server's where they mean the same thing (media_empty,
// media_too_large, media_unsupported_type, media_too_many_pixels, media_corrupt), plus
// browser_unsupported (this browser lacks a needed API) and media_decode_mismatch (the
// browser decoded a different size than the file declares; the hash would not be the
// server's).

import { Md5 } from "./md5.js";
import {
  DIHEDRAL_NAMES,
  PDQ_SIDE,
  needsSampling,
  pdqDihedralFromRGBA,
  sampleIndices,
} from "./pdq.js";

const MIB = 1024 * 1024;

/** The server's default limits (takedown.media.limits.ImageLimits). */
export const DEFAULT_LIMITS = Object.freeze({
  maxBytes: 50 * MIB,
  maxPixels: 50_000_000,
  maxSide: 65_535,
});

const DEFAULT_CHUNK = 4 * MIB;
const ACCEPTED_TEXT = "JPEG, PNG, GIF, WebP and BMP";

/**
 * An error meant for the reporter: `code` is stable, `message` is plain language (the
 * server's wording where the server refuses the same file), `detail` is for logs.
 */
export class HashError extends Error {
  constructor(code, message, detail = "") {
    super(message);
    this.name = "HashError";
    this.code = code;
    this.detail = detail;
  }
}

const corrupt = (name, detail) =>
  new HashError(
    "media_corrupt",
    `The ${name} file could not be decoded; it is truncated or corrupt.`,
    detail,
  );

// ---------------------------------------------------------------------------------------
// What kind of file is it? Magic bytes only, with the server's allow-list and wording.

const u16be = (b, o) => (b[o] << 8) | b[o + 1];
const u16le = (b, o) => b[o] | (b[o + 1] << 8);
const u32be = (b, o) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const u32le = (b, o) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const i32le = (b, o) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
const ascii = (b, o, n) => String.fromCharCode(...b.subarray(o, o + n));
const startsWith = (b, bytes, offset = 0) =>
  b.length >= offset + bytes.length && bytes.every((v, i) => b[offset + i] === v);

const BMP_HEADER_SIZES = [12, 40, 52, 56, 64, 108, 124];

const FORMATS = [
  { name: "JPEG", mime: "image/jpeg", matches: (h) => startsWith(h, [0xff, 0xd8, 0xff]) },
  {
    name: "PNG",
    mime: "image/png",
    matches: (h) => startsWith(h, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  },
  {
    name: "GIF",
    mime: "image/gif",
    matches: (h) => h.length >= 6 && ["GIF87a", "GIF89a"].includes(ascii(h, 0, 6)),
  },
  {
    name: "WEBP",
    mime: "image/webp",
    matches: (h) => h.length >= 12 && ascii(h, 0, 4) === "RIFF" && ascii(h, 8, 4) === "WEBP",
  },
  {
    name: "BMP",
    mime: "image/bmp",
    // "BM" alone is two letters of text: also require a known DIB header size.
    matches: (h) =>
      h.length >= 18 && ascii(h, 0, 2) === "BM" && BMP_HEADER_SIZES.includes(u32le(h, 14)),
  },
];

// Things people pick by mistake, so that the refusal can say what it saw (as the server).
const NOT_IMAGES = [
  [0, "%PDF-", "a PDF document"],
  [0, "PK\x03\x04", "a ZIP archive (or an Office document)"],
  [0, "PK\x05\x06", "an empty ZIP archive"],
  [0, "\x1f\x8b", "a gzip archive"],
  [0, "Rar!", "a RAR archive"],
  [0, "7z\xbc\xaf\x27\x1c", "a 7-Zip archive"],
  [0, "II*\x00", "a TIFF image (not accepted)"],
  [0, "MM\x00*", "a TIFF image (not accepted)"],
  [0, "\x00\x00\x01\x00", "an ICO icon (not accepted)"],
  [0, "\x00\x00\x00\x0cjP  ", "a JPEG 2000 image (not accepted)"],
  [0, "8BPS", "a Photoshop document"],
  [4, "ftyp", "a HEIF/AVIF image or an MP4/MOV video (not accepted)"],
  [0, "RIFF", "a RIFF container (AVI/WAV), not a WebP image"],
  [0, "\x1a\x45\xdf\xa3", "a Matroska/WebM video"],
  [0, "\x7fELF", "an executable"],
  [0, "MZ", "an executable"],
];

function describeNonImage(head) {
  for (const [offset, magic, description] of NOT_IMAGES) {
    if (startsWith(head, [...magic].map((c) => c.charCodeAt(0)), offset)) return description;
  }
  let text = null;
  for (const cut of [0, 3]) {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(head.subarray(0, head.length - cut));
      break;
    } catch {
      // the 32-byte window may split a multi-byte character: retry without its tail
    }
  }
  if (text !== null && /^[\p{L}\p{M}\p{N}\p{P}\p{S} \t\r\n\f]*$/u.test(text)) {
    return "text (for example SVG, HTML, JSON or a plain-text file)";
  }
  return "data in an unrecognised format";
}

/**
 * The accepted format of a file from its first bytes, or a HashError
 * (media_unsupported_type) saying what it looks like instead.
 * @param {Uint8Array} head  at least the first 32 bytes when the file has them
 * @returns {{name: string, mime: string}}
 */
export function sniffFormat(head) {
  const window = head.subarray(0, 32);
  const format = FORMATS.find((f) => f.matches(window));
  if (format) return { name: format.name, mime: format.mime };
  const seen = describeNonImage(window);
  throw new HashError(
    "media_unsupported_type",
    `This file looks like ${seen}; only ${ACCEPTED_TEXT} images can be hashed.`,
  );
}

// ---------------------------------------------------------------------------------------
// Declared size, from the header, so that limits are enforced before any decoding.

function jpegSize(b) {
  let o = 2;
  while (o + 4 <= b.length) {
    if (b[o] !== 0xff) return null;
    const marker = b[o + 1];
    if (marker === 0xff) {
      o += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      o += 2; // no length
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null; // scan before any frame header
    const length = u16be(b, o + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame && o + 9 <= b.length) {
      const height = u16be(b, o + 5);
      const width = u16be(b, o + 7);
      return height > 0 && width > 0 ? { width, height } : null;
    }
    o += 2 + length;
  }
  return null;
}

function webpSize(b) {
  const kind = ascii(b, 12, 4);
  if (kind === "VP8X" && b.length >= 30) {
    const width = (b[24] | (b[25] << 8) | (b[26] << 16)) + 1;
    return { width, height: (b[27] | (b[28] << 8) | (b[29] << 16)) + 1 };
  }
  if (kind === "VP8L" && b.length >= 25) {
    const bits = u32le(b, 21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (kind === "VP8 " && b.length >= 30) {
    return { width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  }
  return null;
}

/**
 * Width and height as the file's header declares them (stored orientation), or null.
 * @param {Uint8Array} b
 * @param {string} format  a name from sniffFormat
 */
export function declaredSize(b, format) {
  switch (format) {
    case "PNG":
      return b.length >= 24 ? { width: u32be(b, 16), height: u32be(b, 20) } : null;
    case "GIF":
      return b.length >= 10 ? { width: u16le(b, 6), height: u16le(b, 8) } : null;
    case "BMP":
      if (b.length < 26) return null;
      if (u32le(b, 14) === 12) return { width: u16le(b, 18), height: u16le(b, 20) };
      return { width: Math.abs(i32le(b, 18)), height: Math.abs(i32le(b, 22)) };
    case "WEBP":
      return webpSize(b);
    case "JPEG":
      return jpegSize(b);
    default:
      return null;
  }
}

/** Refuse impossible or oversized dimensions (the server's check_dimensions). */
export function checkDimensions(width, height, limits = DEFAULT_LIMITS) {
  if (width < 1 || height < 1) {
    throw new HashError(
      "media_corrupt",
      `The image declares an empty size of ${width} x ${height} pixels.`,
    );
  }
  if (Math.max(width, height) > limits.maxSide || width * height > limits.maxPixels) {
    const n = (v) => v.toLocaleString("en");
    throw new HashError(
      "media_too_many_pixels",
      `The image declares ${n(width)} x ${n(height)} pixels; the limits are ` +
        `${n(limits.maxPixels)} pixels and ${n(limits.maxSide)} px per side.`,
    );
  }
}

// A JPEG whose data stops before the end-of-image marker is refused, like the server
// (Pillow reports it truncated), instead of being hashed with a grey bottom as browsers
// show it. Entropy-coded data never contains FF D9, so its presence after the first scan
// marker means the file is complete.
function jpegIsComplete(b) {
  let sos = -1;
  for (let o = 2; o + 1 < b.length; o++) {
    if (b[o] === 0xff && b[o + 1] === 0xda) {
      sos = o;
      break;
    }
  }
  if (sos < 0) return false;
  for (let o = b.length - 2; o > sos; o--) {
    if (b[o] === 0xff && b[o + 1] === 0xd9) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// EXIF orientation: neutralised in a private copy so that browsers decode stored pixels.

// In the TIFF structure at `tiff`, set IFD0's Orientation (0x0112) to 1. Returns true if
// something was changed.
function patchTiffOrientation(b, tiff, end) {
  if (tiff + 8 > end) return false;
  const order = ascii(b, tiff, 2);
  if (order !== "II" && order !== "MM") return false;
  const le = order === "II";
  const r16 = (o) => (le ? u16le(b, o) : u16be(b, o));
  const r32 = (o) => (le ? u32le(b, o) : u32be(b, o));
  const ifd = tiff + r32(tiff + 4);
  if (ifd + 2 > end) return false;
  const count = r16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > end) return false;
    if (r16(entry) !== 0x0112) continue;
    const type = r16(entry + 2);
    const value = entry + 8;
    const current = type === 4 ? r32(value) : r16(value);
    if (current === 1) return false;
    b.fill(0, value, value + 4);
    if (type === 4) b[le ? value : value + 3] = 1;
    else b[le ? value : value + 1] = 1;
    return true;
  }
  return false;
}

const EXIF_PREFIX = [0x45, 0x78, 0x69, 0x66, 0x00, 0x00]; // "Exif\0\0"

function patchJpegOrientation(b) {
  let changed = false;
  let o = 2;
  while (o + 4 <= b.length && b[o] === 0xff) {
    const marker = b[o + 1];
    if (marker === 0xff) {
      o += 1;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) break; // orientation lives before the scan
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      o += 2;
      continue;
    }
    const length = u16be(b, o + 2);
    const end = Math.min(b.length, o + 2 + length);
    if (marker === 0xe1 && startsWith(b, EXIF_PREFIX, o + 4)) {
      changed = patchTiffOrientation(b, o + 10, end) || changed;
    }
    o += 2 + length;
  }
  return changed;
}

function patchWebpOrientation(b) {
  let changed = false;
  for (let o = 12; o + 8 <= b.length; ) {
    const size = u32le(b, o + 4);
    const data = o + 8;
    const end = Math.min(b.length, data + size);
    if (ascii(b, o, 4) === "EXIF") {
      const tiff = startsWith(b, EXIF_PREFIX, data) ? data + 6 : data;
      changed = patchTiffOrientation(b, tiff, end) || changed;
    }
    o = data + size + (size & 1);
  }
  return changed;
}

/**
 * A copy of `bytes` whose EXIF orientation says "as stored", or `bytes` itself when there
 * is nothing to change. JPEG (APP1) and WebP (EXIF chunk); PNG is decoded here and GIF and
 * BMP carry no orientation.
 */
export function withoutOrientation(bytes, format) {
  if (format !== "JPEG" && format !== "WEBP") return bytes;
  const copy = bytes.slice();
  const changed = format === "JPEG" ? patchJpegOrientation(copy) : patchWebpOrientation(copy);
  return changed ? copy : bytes;
}

// ---------------------------------------------------------------------------------------
// PNG, decoded here so that colours under transparency survive (see the top of the file).

const PNG_CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const PNG_DEPTHS = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
// Adam7: [x0, y0, dx, dy] of each of the seven passes.
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

const allIndices = (n) => Int32Array.from({ length: n }, (_, i) => i);

let crcTable = null;
function crc32(b, start, end) {
  if (crcTable === null) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = -1;
  for (let i = start; i < end; i++) c = crcTable[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function parsePng(b) {
  const fail = (detail) => corrupt("PNG", detail);
  let o = 8;
  let header = null;
  let palette = null;
  const idat = [];
  let idatLength = 0;
  let complete = false; // IEND reached: the file is not cut short
  while (o + 8 <= b.length) {
    const length = u32be(b, o);
    const type = ascii(b, o + 4, 4);
    const data = o + 8;
    if (data + length > b.length) {
      if (type === "IDAT") {
        idat.push(b.subarray(data)); // the inflate step decides whether enough is there
        idatLength += b.length - data;
      }
      break;
    }
    if (type === "IHDR" || type === "PLTE") {
      // Pillow checks these CRCs (a bad one makes the file unidentifiable); not IDAT's.
      const stored = data + length + 4 <= b.length ? u32be(b, data + length) : -1;
      if (crc32(b, o + 4, data + length) !== stored) {
        throw fail(`bad ${type} checksum`);
      }
    }
    if (type === "IHDR") {
      if (length < 13) throw fail("short header");
      header = {
        width: u32be(b, data),
        height: u32be(b, data + 4),
        depth: b[data + 8],
        colorType: b[data + 9],
        interlace: b[data + 12],
      };
      if (b[data + 10] !== 0 || b[data + 11] !== 0 || header.interlace > 1) {
        throw fail("unknown compression, filter or interlace method");
      }
      const depths = PNG_DEPTHS[header.colorType];
      if (!depths || !depths.includes(header.depth)) {
        throw fail("unsupported bit depth and colour type");
      }
    } else if (type === "PLTE") {
      palette = b.subarray(data, data + length - (length % 3));
    } else if (type === "IDAT") {
      idat.push(b.subarray(data, data + length));
      idatLength += length;
    } else if (type === "IEND") {
      complete = true;
      break;
    }
    o = data + length + 4;
  }
  if (header === null) throw fail("no header");
  if (idatLength === 0) throw fail("no image data");
  if (header.colorType === 3 && palette === null) throw fail("palette image without a palette");
  const zlib = new Uint8Array(idatLength);
  let p = 0;
  for (const part of idat) {
    zlib.set(part, p);
    p += part.length;
  }
  return { ...header, palette, zlib, complete };
}

function pngPasses(width, height, interlace) {
  if (!interlace) return [{ x0: 0, y0: 0, dx: 1, dy: 1, width, height }];
  return ADAM7.map(([x0, y0, dx, dy]) => ({
    x0,
    y0,
    dx,
    dy,
    width: Math.max(0, Math.ceil((width - x0) / dx)),
    height: Math.max(0, Math.ceil((height - y0) / dy)),
  })).filter((pass) => pass.width > 0 && pass.height > 0);
}

// Inflate exactly `expected` bytes of the zlib stream and stop (a bomb cannot make us
// allocate more). Returns null if the stream could not deliver them.
async function inflateExactly(zlib, expected) {
  if (typeof DecompressionStream === "undefined") {
    throw new HashError("browser_unsupported", "This browser cannot decompress PNG data.");
  }
  const out = new Uint8Array(expected);
  let filled = 0;
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  writer
    .write(zlib)
    .then(() => writer.close())
    .catch(() => {}); // reported through the reader
  try {
    while (filled < expected) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, expected - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch {
    // corrupt or truncated stream, or data after its end: decided below by the count
  }
  reader.cancel().catch(() => {});
  return filled === expected ? out : null;
}

function unfilter(raw, offset, rows, rowBytes, bpp) {
  // Each row: one filter byte, then rowBytes bytes; reconstructed in place.
  let prev = -1;
  for (let r = 0; r < rows; r++) {
    const start = offset + r * (rowBytes + 1);
    const filter = raw[start];
    const row = start + 1;
    switch (filter) {
      case 0:
        break;
      case 1: // Sub
        for (let i = bpp; i < rowBytes; i++) {
          raw[row + i] = (raw[row + i] + raw[row + i - bpp]) & 255;
        }
        break;
      case 2: // Up
        if (prev < 0) break; // the row above the first is zeros: nothing to add
        for (let i = 0; i < rowBytes; i++) raw[row + i] = (raw[row + i] + raw[prev + i]) & 255;
        break;
      case 3: // Average
        for (let i = 0; i < rowBytes; i++) {
          const left = i >= bpp ? raw[row + i - bpp] : 0;
          const up = prev >= 0 ? raw[prev + i] : 0;
          raw[row + i] = (raw[row + i] + ((left + up) >> 1)) & 255;
        }
        break;
      case 4: // Paeth
        for (let i = 0; i < rowBytes; i++) {
          const a = i >= bpp ? raw[row + i - bpp] : 0;
          const b = prev >= 0 ? raw[prev + i] : 0;
          const c = i >= bpp && prev >= 0 ? raw[prev + i - bpp] : 0;
          const pa = Math.abs(b - c);
          const pb = Math.abs(a - c);
          const pc = Math.abs(a + b - 2 * c);
          const pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          raw[row + i] = (raw[row + i] + pred) & 255;
        }
        break;
      default:
        throw corrupt("PNG", `unknown filter type ${filter}`);
    }
    prev = row;
  }
}

/**
 * Decode a PNG into the pixels the server hashes: RGBA of the image itself when both sides
 * are <= 512, else of the 512 x 512 reference samples. Alpha is kept in the 4th byte but
 * never mixed into the colour.
 * @param {Uint8Array} bytes
 * @returns {Promise<{width: number, height: number, rgba: Uint8Array,
 *   sampledWidth: number, sampledHeight: number, transparent: boolean}>}
 */
export async function decodePng(bytes, limits = DEFAULT_LIMITS) {
  const png = parsePng(bytes);
  const { width, height, depth, colorType } = png;
  checkDimensions(width, height, limits);
  const channels = PNG_CHANNELS[colorType];
  const bitsPerPixel = channels * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3); // filter distance in bytes
  const passes = pngPasses(width, height, png.interlace);
  let total = 0;
  for (const pass of passes) {
    pass.rowBytes = Math.ceil((pass.width * bitsPerPixel) / 8);
    pass.offset = total;
    total += pass.height * (pass.rowBytes + 1);
  }
  const raw = await inflateExactly(png.zlib, total);
  if (raw === null) {
    const error = corrupt("PNG", "image data incomplete");
    // A complete file whose stream DecompressionStream would not finish (e.g. bytes after
    // the end of the zlib stream, which Pillow and libpng tolerate) may be retried with the
    // browser's decoder; a file cut short is refused, as on the server.
    error.retryWithBrowser = png.complete;
    throw error;
  }
  for (const pass of passes) unfilter(raw, pass.offset, pass.height, pass.rowBytes, bpp);

  // Where is pixel (x, y)? Non-interlaced: row y of the only pass. Interlaced: the pass
  // whose grid contains it (Adam7's passes tile the image exactly).
  const locate = (x, y) => {
    for (const pass of passes) {
      const onGrid = (x - pass.x0) % pass.dx === 0 && (y - pass.y0) % pass.dy === 0;
      if (onGrid && x >= pass.x0 && y >= pass.y0) {
        const px = (x - pass.x0) / pass.dx;
        const py = (y - pass.y0) / pass.dy;
        return [pass.offset + py * (pass.rowBytes + 1) + 1, px];
      }
    }
    throw new Error("unreachable: Adam7 covers every pixel");
  };
  const sample = (row, index, k) => {
    // Sample k of pixel `index` in a row: 16-bit keeps its high byte (as Pillow does).
    if (depth === 16) return raw[row + (index * channels + k) * 2];
    if (depth === 8) return raw[row + index * channels + k];
    const bit = index * depth; // 1, 2 or 4 bits, one channel, most significant first
    return (raw[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  };
  const greyScale = depth < 8 ? 255 / ((1 << depth) - 1) : 1; // 1->255, 2->85, 4->17
  const paletteEntries = png.palette ? png.palette.length / 3 : 0;

  const sampled = needsSampling(width, height);
  const rows = sampled ? sampleIndices(height) : allIndices(height);
  const cols = sampled ? sampleIndices(width) : allIndices(width);
  const out = new Uint8Array(rows.length * cols.length * 4);
  let transparent = false;
  let o = 0;
  for (let i = 0; i < rows.length; i++) {
    const rowStart = png.interlace ? 0 : 1 + rows[i] * (passes[0].rowBytes + 1);
    for (let j = 0; j < cols.length; j++) {
      let row = rowStart;
      let index = cols[j];
      if (png.interlace) [row, index] = locate(cols[j], rows[i]);
      let r;
      let g;
      let b;
      let a = 255;
      if (colorType === 0 || colorType === 4) {
        r = g = b = depth < 8 ? sample(row, index, 0) * greyScale : sample(row, index, 0);
        if (colorType === 4) a = sample(row, index, 1);
      } else if (colorType === 3) {
        const entry = sample(row, index, 0);
        if (entry < paletteEntries) {
          r = png.palette[3 * entry];
          g = png.palette[3 * entry + 1];
          b = png.palette[3 * entry + 2];
        } else {
          r = g = b = 0; // Pillow's colour for an index beyond the palette
        }
      } else {
        r = sample(row, index, 0);
        g = sample(row, index, 1);
        b = sample(row, index, 2);
        if (colorType === 6) a = sample(row, index, 3);
      }
      if (a !== 255) transparent = true;
      out[o++] = r;
      out[o++] = g;
      out[o++] = b;
      out[o++] = a;
    }
  }
  return {
    width,
    height,
    rgba: out,
    sampledWidth: cols.length,
    sampledHeight: rows.length,
    transparent,
  };
}

// ---------------------------------------------------------------------------------------
// Everything else: the browser's decoder, read through an OffscreenCanvas.

// The colour the server sees under a GIF's transparent pixels: the first frame's palette
// entry for its transparent index (Pillow fills the frame and its surroundings with that
// index), or entry 0 when there is none. null when the file cannot be followed that far.
export function gifTransparentColour(b) {
  if (b.length < 13) return null;
  let o = 13;
  let palette = null;
  if (b[10] & 0x80) {
    const size = 3 << ((b[10] & 7) + 1);
    palette = b.subarray(o, o + size);
    o += size;
  }
  let transparentIndex = null;
  while (o < b.length) {
    const introducer = b[o];
    if (introducer === 0x21) {
      const label = b[o + 1];
      o += 2;
      const control = label === 0xf9 && b[o] >= 4 && o + 5 <= b.length;
      if (control && b[o + 1] & 1) transparentIndex = b[o + 4]; // "transparent colour" flag
      while (o < b.length && b[o] !== 0) o += b[o] + 1; // sub-blocks
      o += 1;
    } else if (introducer === 0x2c) {
      if (o + 10 > b.length) return null;
      const flags = b[o + 9];
      if (flags & 0x80) palette = b.subarray(o + 10, o + 10 + (3 << ((flags & 7) + 1)));
      const index = transparentIndex ?? 0;
      if (palette === null) return [index, index, index]; // no palette: grey levels
      if (3 * index + 2 >= palette.length) return [0, 0, 0];
      return [palette[3 * index], palette[3 * index + 1], palette[3 * index + 2]];
    } else {
      return null;
    }
  }
  return null;
}

// Read the pixels again through WebCodecs' ImageDecoder, whose BGRA/RGBA frames keep the
// stored colour under transparency (a canvas premultiplies it away). Used only when the
// canvas read found partly transparent pixels that cannot be restored otherwise. Returns
// RGBA of the sampled size, or null if this browser cannot do it or the frame is not a
// plain RGB layout (JPEG may come back as YUV, which would need a colour conversion).
async function readWithImageDecoder(bytes, format, width, height, rows, cols, canvasRgba) {
  if (typeof ImageDecoder !== "function") return null;
  let imageDecoder = null;
  let frame = null;
  try {
    imageDecoder = new ImageDecoder({
      data: withoutOrientation(bytes, format.name),
      type: format.mime,
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      preferAnimation: false,
    });
    frame = (await imageDecoder.decode({ frameIndex: 0 })).image;
    const layout = frame.format;
    if (!["RGBA", "RGBX", "BGRA", "BGRX"].includes(layout)) return null;
    if (frame.codedWidth !== width || frame.codedHeight !== height) return null;
    const buffer = new Uint8Array(frame.allocationSize());
    const [plane] = await frame.copyTo(buffer); // native layout: no conversion, no premultiply
    const [ri, bi] = layout.startsWith("BGR") ? [2, 0] : [0, 2];
    const out = new Uint8ClampedArray(rows.length * cols.length * 4);
    let o = 0;
    for (let i = 0; i < rows.length; i++) {
      const line = plane.offset + rows[i] * plane.stride;
      for (let j = 0; j < cols.length; j++, o += 4) {
        const s = line + cols[j] * 4;
        out[o] = buffer[s + ri];
        out[o + 1] = buffer[s + 1];
        out[o + 2] = buffer[s + bi];
        out[o + 3] = layout.endsWith("A") ? buffer[s + 3] : 255;
      }
    }
    // Sanity check: where the canvas saw opaque pixels, both reads must agree exactly.
    for (let p = 0; p < out.length; p += 4) {
      if (canvasRgba[p + 3] !== 255) continue;
      for (let k = 0; k < 4; k++) if (out[p + k] !== canvasRgba[p + k]) return null;
    }
    return out;
  } catch {
    return null;
  } finally {
    if (frame) frame.close();
    if (imageDecoder) imageDecoder.close();
  }
}

function requireBrowserDecoding() {
  if (typeof createImageBitmap !== "function" || typeof OffscreenCanvas !== "function") {
    throw new HashError(
      "browser_unsupported",
      "This browser cannot read images in the background (it lacks createImageBitmap or " +
        "OffscreenCanvas). Please update it, or use another browser.",
    );
  }
}

async function decodeWithBrowser(bytes, format, limits, useWebCodecs = true) {
  requireBrowserDecoding();
  let bitmap;
  try {
    // imageOrientation is left at its default: browsers apply EXIF orientation even with
    // "none", so the tag itself has been neutralised (older browsers reject "from-image").
    const blob = new Blob([withoutOrientation(bytes, format.name)], { type: format.mime });
    bitmap = await createImageBitmap(blob, {
      premultiplyAlpha: "none",
      colorSpaceConversion: "none", // stored values: no ICC or gamma conversion, as Pillow
    });
  } catch (error) {
    throw corrupt(format.name, error && error.message);
  }
  try {
    const { width, height } = bitmap;
    checkDimensions(width, height, limits);
    const sampled = needsSampling(width, height);
    const outWidth = sampled ? PDQ_SIDE : width;
    const outHeight = sampled ? PDQ_SIDE : height;
    const rgba = new Uint8ClampedArray(outWidth * outHeight * 4);
    if (!sampled) {
      const canvas = new OffscreenCanvas(width, height);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.drawImage(bitmap, 0, 0);
      rgba.set(context.getImageData(0, 0, width, height).data);
    } else {
      // Row by row: draw source row floor(i * H / 512) unscaled (a straight copy), keep
      // the 512 sampled columns. Very wide images are drawn in segments, because canvases
      // have a maximum width.
      const segment = Math.min(width, 8192);
      const canvas = new OffscreenCanvas(segment, 1);
      const context = canvas.getContext("2d", { willReadFrequently: true });
      const rows = sampleIndices(height);
      const cols = sampleIndices(width);
      for (let i = 0; i < PDQ_SIDE; i++) {
        let j = 0;
        for (let x0 = 0; x0 < width && j < PDQ_SIDE; x0 += segment) {
          const w = Math.min(segment, width - x0);
          if (cols[j] >= x0 + w) continue; // no sampled column in this segment
          context.clearRect(0, 0, segment, 1);
          context.drawImage(bitmap, x0, rows[i], w, 1, 0, 0, w, 1);
          const line = context.getImageData(0, 0, w, 1).data;
          for (; j < PDQ_SIDE && cols[j] < x0 + w; j++) {
            const s = (cols[j] - x0) * 4;
            const d = (i * PDQ_SIDE + j) * 4;
            rgba[d] = line[s];
            rgba[d + 1] = line[s + 1];
            rgba[d + 2] = line[s + 2];
            rgba[d + 3] = line[s + 3];
          }
        }
      }
    }
    let transparent = false;
    const fill = format.name === "GIF" ? gifTransparentColour(bytes) : null;
    for (let p = 3; p < rgba.length; p += 4) {
      if (rgba[p] === 255) continue;
      transparent = true;
      if (fill && rgba[p] === 0) {
        rgba[p - 3] = fill[0];
        rgba[p - 2] = fill[1];
        rgba[p - 1] = fill[2];
      }
    }
    const result = {
      width,
      height,
      rgba,
      sampledWidth: outWidth,
      sampledHeight: outHeight,
      transparent,
    };
    // GIF transparency is all-or-nothing and has been restored exactly. Any other partly
    // transparent pixel went through premultiplied alpha: read it again with WebCodecs,
    // or flag the hash as approximate.
    if (transparent && !(format.name === "GIF" && fill) && useWebCodecs) {
      const rows = sampled ? sampleIndices(height) : allIndices(height);
      const cols = sampled ? sampleIndices(width) : allIndices(width);
      const exact = await readWithImageDecoder(bytes, format, width, height, rows, cols, rgba);
      if (exact) return { ...result, rgba: exact, decoder: "webcodecs", approximate: false };
    }
    return { ...result, approximate: transparent && !(format.name === "GIF" && fill) };
  } finally {
    bitmap.close();
  }
}

// ---------------------------------------------------------------------------------------
// The whole job.

async function readAll(blob, chunkSize, md5, onProgress) {
  const total = blob.size;
  const bytes = new Uint8Array(total);
  for (let loaded = 0; loaded < total; ) {
    const end = Math.min(total, loaded + chunkSize);
    const chunk = new Uint8Array(await blob.slice(loaded, end).arrayBuffer());
    md5.update(chunk);
    bytes.set(chunk, loaded);
    loaded = end;
    onProgress({ stage: "reading", loaded, total });
  }
  return bytes;
}

/**
 * MD5 and PDQ of an image file, as the server would compute them.
 * @param {Blob} blob  e.g. the File from an <input type=file>
 * @param {{limits?: object, decoder?: "auto"|"browser"|"canvas", chunkSize?: number,
 *          onProgress?: function}} options  For tests, `decoder: "browser"` skips the
 *          JavaScript PNG decoder and "canvas" also WebCodecs (what Safari gets);
 *          onProgress receives {stage, loaded, total}.
 */
export async function hashBlob(blob, options = {}) {
  const limits = { ...DEFAULT_LIMITS, ...(options.limits || {}) };
  const onProgress = options.onProgress || (() => {});
  const chunkSize = options.chunkSize || DEFAULT_CHUNK;
  if (blob.size === 0) throw new HashError("media_empty", "The file is empty (0 bytes).");
  if (blob.size > limits.maxBytes) {
    throw new HashError(
      "media_too_large",
      `The file exceeds the size limit of ${limits.maxBytes.toLocaleString("en")} bytes.`,
    );
  }
  // Refuse non-images before reading the whole file.
  const format = sniffFormat(new Uint8Array(await blob.slice(0, 32).arrayBuffer()));
  const md5 = new Md5();
  const bytes = await readAll(blob, chunkSize, md5, onProgress);

  onProgress({ stage: "decoding", loaded: 0, total: 1 });
  const declared = declaredSize(bytes, format.name);
  if (declared) checkDimensions(declared.width, declared.height, limits);
  if (format.name === "JPEG" && !jpegIsComplete(bytes)) {
    throw corrupt("JPEG", "no end-of-image marker");
  }

  let decoded = null;
  let decoder = "browser";
  const decoderChoice = options.decoder || "auto";
  if (format.name === "PNG" && decoderChoice === "auto") {
    try {
      decoded = await decodePng(bytes, limits);
      decoder = "javascript";
    } catch (error) {
      // Limits, malformed headers and truncated files are final. Without
      // DecompressionStream, or when the zlib stream of a complete file would not finish,
      // the browser's own decoder gets a go (exact for opaque images, flagged otherwise).
      const retry =
        error instanceof HashError &&
        (error.code === "browser_unsupported" || error.retryWithBrowser);
      if (!retry) throw error;
    }
  }
  if (decoded === null) {
    decoded = await decodeWithBrowser(bytes, format, limits, decoderChoice !== "canvas");
    decoder = decoded.decoder || "browser";
  }
  if (declared && (declared.width !== decoded.width || declared.height !== decoded.height)) {
    throw new HashError(
      "media_decode_mismatch",
      `This browser decoded the image as ${decoded.width} x ${decoded.height} pixels but ` +
        `the file declares ${declared.width} x ${declared.height}; its hash would not ` +
        "match the server's.",
    );
  }

  onProgress({ stage: "hashing", loaded: 0, total: 1 });
  const pdq = pdqDihedralFromRGBA(decoded.rgba, decoded.sampledWidth, decoded.sampledHeight);
  onProgress({ stage: "hashing", loaded: 1, total: 1 });
  return {
    md5: md5.hex(),
    pdq: pdq.hash,
    quality: pdq.quality,
    dihedral: pdq.dihedral,
    width: decoded.width,
    height: decoded.height,
    format: format.name,
    mimeType: format.mime,
    bytes: blob.size,
    decoder,
    approximate: Boolean(decoded.approximate),
  };
}

// ---------------------------------------------------------------------------------------
// Page side: run hashBlob in a worker started from this very file.

/**
 * Hash `file` in a module Web Worker (the page stays responsive). Resolves to the result
 * object described at the top; rejects with a HashError.
 * @param {Blob} file
 * @param {{onProgress?: function, limits?: object, decoder?: string,
 *          workerUrl?: string|URL}} options
 */
export function hashInWorker(file, options = {}) {
  const { onProgress, workerUrl, ...rest } = options;
  return new Promise((resolve, reject) => {
    let worker;
    try {
      worker = new Worker(workerUrl || import.meta.url, { type: "module" });
    } catch (error) {
      const message = "This browser cannot start the hashing worker.";
      reject(new HashError("browser_unsupported", message, String(error && error.message)));
      return;
    }
    const finish = (settle, value) => {
      worker.terminate();
      settle(value);
    };
    worker.onmessage = ({ data }) => {
      if (data.type === "progress") {
        if (onProgress) onProgress({ stage: data.stage, loaded: data.loaded, total: data.total });
      } else if (data.type === "result") {
        finish(resolve, data.result);
      } else if (data.type === "error") {
        finish(reject, new HashError(data.code, data.message, data.detail));
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const message = "The hashing worker failed to start in this browser.";
      finish(reject, new HashError("browser_unsupported", message, event.message || ""));
    };
    worker.postMessage({ type: "hash", id: 1, file, ...rest });
  });
}

// ---------------------------------------------------------------------------------------
// Worker side.

const inWorker =
  typeof WorkerGlobalScope !== "undefined" &&
  typeof self !== "undefined" &&
  self instanceof WorkerGlobalScope;

if (inWorker) {
  self.onmessage = async ({ data }) => {
    if (!data || data.type !== "hash") return;
    const { id, file } = data;
    try {
      if (!(file instanceof Blob)) throw new HashError("media_empty", "No file was given.");
      const result = await hashBlob(file, {
        limits: data.limits,
        decoder: data.decoder,
        chunkSize: data.chunkSize,
        onProgress: (progress) => self.postMessage({ type: "progress", id, ...progress }),
      });
      self.postMessage({ type: "result", id, result });
    } catch (error) {
      const known = error instanceof HashError;
      self.postMessage({
        type: "error",
        id,
        code: known ? error.code : "media_corrupt",
        message: known ? error.message : "The image could not be read.",
        detail: known ? error.detail : String(error && error.message),
      });
    }
  };
}

export { DIHEDRAL_NAMES };
