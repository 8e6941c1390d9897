// PDQ perceptual hash, computed in the browser exactly as Takedown's server does.
//
// This is a port of Meta's C++ PDQ reference (ThreatExchange, pdq/cpp: hashing/pdqhashing.cpp,
// downscaling/downscaling.cpp, hashing/torben.cpp) as compiled into the `pdqhash` Python
// binding the server uses, plus the server's choice of pixels (src/takedown/media/decode.py).
// It is written for bit-identical results, not for elegance:
//
// * The C++ code works in 32-bit floats. JavaScript numbers are doubles, so every float
//   operation is rounded back to float32 with Math.fround, and the buffers are Float32Arrays
//   (a store into one rounds too). For +, -, *, / a double result rounded once to float32 is
//   exactly the float32 result, so this reproduces the C++ arithmetic bit for bit, as long
//   as the operations happen in the same order. The order is therefore kept everywhere
//   (running sums, the DCT's inner products).
// * Integer divisions of the C++ code are written with Math.floor / `>> 1` (plain `/` would
//   give a fraction in JavaScript).
// * Luma: the `pdqhash` binding computes luma in numpy float64,
//   (R * 0.299 + G * 0.587) + B * 0.114, and rounds it to float32 once. JavaScript's
//   double arithmetic in the same order gives the same double, so one Math.fround matches.
//
// No DOM, no worker API: pure functions over typed arrays, usable from a page, a Web Worker
// or Node (the tests feed it the server's own pixels and require identical hashes).

/** Side of the square larger images are sampled to (Meta's `DOWNSAMPLE_DIMS`). */
export const PDQ_SIDE = 512;

/** Images with a side below this get the all-zero hash and quality 0, as in the reference. */
export const MIN_HASHABLE_DIM = 5;

const JAROSZ_PASSES = 2; // X,Y,X,Y passes of 1-D box filters approximate a 2-D tent filter
const LUMA_R = 0.299;
const LUMA_G = 0.587;
const LUMA_B = 0.114;

/**
 * The names of the eight dihedral variants, in the server's order
 * (takedown.media.pdq.DIHEDRAL_NAMES; rotations counter-clockwise).
 */
export const DIHEDRAL_NAMES = Object.freeze([
  "original",
  "rotate90",
  "rotate180",
  "rotate270",
  "flip_top_bottom",
  "flip_left_right",
  "transpose",
  "transverse",
]);

const fr = Math.fround;

// ---------------------------------------------------------------------------------------
// Which pixels are hashed (the server's decode.py, mirroring the C++ tool's CImg resize).

/**
 * Source indices along one axis of `original` pixels for the 512 samples:
 * output index i takes source index floor(i * original / 512) (CImg's nearest neighbour,
 * aligned on the top-left corner, not on pixel centres).
 * @param {number} original
 * @returns {Int32Array}
 */
export function sampleIndices(original) {
  const indices = new Int32Array(PDQ_SIDE);
  for (let i = 0; i < PDQ_SIDE; i++) {
    // i * original < 2^53 and the division by 512 is exact in binary: no rounding issue.
    indices[i] = Math.floor((i * original) / PDQ_SIDE);
  }
  return indices;
}

/** True when the reference hashes an image of this size as 512 x 512 samples. */
export function needsSampling(width, height) {
  return width > PDQ_SIDE || height > PDQ_SIDE;
}

/**
 * The pixels the reference hashes: the image itself when both sides are <= 512, otherwise
 * exactly 512 x 512 samples (aspect ratio not kept). Returns RGBA, 4 bytes per pixel.
 * @param {Uint8Array|Uint8ClampedArray} rgba  width * height * 4 bytes, row-major
 * @param {number} width
 * @param {number} height
 * @returns {{rgba: Uint8Array|Uint8ClampedArray, width: number, height: number}}
 */
export function referencePixels(rgba, width, height) {
  checkDimensions(rgba, width, height);
  if (!needsSampling(width, height)) {
    return { rgba, width, height };
  }
  const rows = sampleIndices(height);
  const cols = sampleIndices(width);
  const out = new Uint8Array(PDQ_SIDE * PDQ_SIDE * 4);
  let o = 0;
  for (let i = 0; i < PDQ_SIDE; i++) {
    const rowStart = rows[i] * width;
    for (let j = 0; j < PDQ_SIDE; j++) {
      const s = (rowStart + cols[j]) * 4;
      out[o++] = rgba[s];
      out[o++] = rgba[s + 1];
      out[o++] = rgba[s + 2];
      out[o++] = rgba[s + 3];
    }
  }
  return { rgba: out, width: PDQ_SIDE, height: PDQ_SIDE };
}

function checkDimensions(pixels, width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`Invalid image size ${width} x ${height}.`);
  }
  if (pixels.length !== width * height * 4) {
    throw new RangeError(
      `Expected ${width * height * 4} RGBA bytes for ${width} x ${height}, got ${pixels.length}.`,
    );
  }
}

// ---------------------------------------------------------------------------------------
// Luma. The alpha channel is ignored (dropped, not composited), like the server.

/**
 * @param {Uint8Array|Uint8ClampedArray} rgba
 * @param {number} width
 * @param {number} height
 * @returns {Float32Array} width * height luma values, row-major
 */
export function lumaFromRGBA(rgba, width, height) {
  checkDimensions(rgba, width, height);
  const n = width * height;
  const luma = new Float32Array(n);
  for (let p = 0, s = 0; p < n; p++, s += 4) {
    // Same double-precision expression and order as the binding's numpy code; the
    // Float32Array store rounds to float32 once, like its .astype('float32').
    luma[p] = rgba[s] * LUMA_R + rgba[s + 1] * LUMA_G + rgba[s + 2] * LUMA_B;
  }
  return luma;
}

// ---------------------------------------------------------------------------------------
// Downsampling: Jarosz box-filter passes, then decimation to 64 x 64.

/** Per-pass box window: ceil(old / (2 * new)), i.e. half a 64th of the side. */
export function jaroszWindowSize(oldDimension, newDimension) {
  return Math.floor((oldDimension + 2 * newDimension - 1) / (2 * newDimension));
}

// One 1-D box filter over `length` floats of `src` (from `offset`, every `stride`) into
// `dst`. The window is centred; near the edges it shrinks, and the running float sum is
// divided by the number of samples actually in it. The four phases, sum updates and
// divisions are in the reference's order, each rounded to float32.
function box1D(src, dst, offset, length, stride, fullWindow) {
  const halfWindow = (fullWindow + 2) >> 1; // 7 -> 4, 8 -> 5
  const phase1 = halfWindow - 1;
  const phase2 = fullWindow - halfWindow + 1;
  const phase3 = length - fullWindow;
  const phase4 = halfWindow - 1;
  let li = offset; // left edge of the window (subtractions)
  let ri = offset; // right edge (additions)
  let oi = offset; // output
  let sum = 0;
  let count = 0;
  // 1: accumulate the first half window, no output yet
  for (let i = 0; i < phase1; i++) {
    sum = fr(sum + src[ri]);
    count++;
    ri += stride;
  }
  // 2: outputs while the window is still growing
  for (let i = 0; i < phase2; i++) {
    sum = fr(sum + src[ri]);
    count++;
    dst[oi] = sum / count; // the Float32Array store rounds the quotient to float32
    ri += stride;
    oi += stride;
  }
  // 3: full window: add on the right, subtract on the left
  for (let i = 0; i < phase3; i++) {
    sum = fr(sum + src[ri]);
    sum = fr(sum - src[li]);
    dst[oi] = sum / count;
    li += stride;
    ri += stride;
    oi += stride;
  }
  // 4: the window shrinks at the far edge
  for (let i = 0; i < phase4; i++) {
    sum = fr(sum - src[li]);
    count--;
    dst[oi] = sum / count;
    li += stride;
    oi += stride;
  }
}

// Blur `buffer1` in place (through `buffer2`): per pass, rows then columns.
function jaroszFilter(buffer1, buffer2, rows, cols, windowAlongRows, windowAlongCols) {
  for (let pass = 0; pass < JAROSZ_PASSES; pass++) {
    for (let i = 0; i < rows; i++) {
      box1D(buffer1, buffer2, i * cols, cols, 1, windowAlongRows);
    }
    for (let j = 0; j < cols; j++) {
      box1D(buffer2, buffer1, j, rows, cols, windowAlongCols);
    }
  }
}

// Pick 64 x 64 samples at the centres of 64 equal bands (computed in double, truncated).
function decimateTo64(buffer, rows, cols) {
  const out = new Float32Array(64 * 64);
  for (let i = 0; i < 64; i++) {
    const ini = Math.floor(((i + 0.5) * rows) / 64);
    for (let j = 0; j < 64; j++) {
      const inj = Math.floor(((j + 0.5) * cols) / 64);
      out[i * 64 + j] = buffer[ini * cols + inj];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Quality: the count of significant gradients in the 64 x 64 image, scaled to 0..100.

function qualityOf(b64) {
  let gradientSum = 0;
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) {
      const diff = fr(b64[i * 64 + j] - b64[(i + 1) * 64 + j]);
      // (float) (u - v) * 100 / 255, truncated to int like C's conversion
      gradientSum += Math.abs(Math.trunc(fr(fr(diff * 100) / 255)));
    }
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) {
      const diff = fr(b64[i * 64 + j] - b64[i * 64 + j + 1]);
      gradientSum += Math.abs(Math.trunc(fr(fr(diff * 100) / 255)));
    }
  }
  return Math.min(100, Math.floor(gradientSum / 90));
}

// ---------------------------------------------------------------------------------------
// The 16 x 16 low-frequency corner of the 64 x 64 DCT-II: B = D A D^T, D being 16 x 64.

// D[i][j] = float32(float32(sqrt(2/64)) * cos(pi / 2 / 64 * (i + 1) * (2j + 1))): the scale
// factor is a float constant in the reference, the cosine and the product are double, and
// the matrix is stored as float.
const DCT_MATRIX = (() => {
  const matrix = new Float32Array(16 * 64);
  const scale = fr(Math.sqrt(2.0 / 64));
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      matrix[i * 64 + j] = scale * Math.cos((Math.PI / 2.0 / 64) * (i + 1) * (2 * j + 1));
    }
  }
  return matrix;
})();

function dct64To16(a) {
  const d = DCT_MATRIX;
  const t = new Float32Array(16 * 64); // T = D A
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) {
        sum = fr(sum + fr(d[i * 64 + k] * a[k * 64 + j]));
      }
      t[i * 64 + j] = sum;
    }
  }
  const b = new Float32Array(16 * 16); // B = T D^T
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) {
        sum = fr(sum + fr(t[i * 64 + k] * d[j * 64 + k]));
      }
      b[i * 16 + j] = sum;
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------
// Threshold at the median and write the bits.

// Torben Mogensen's median (as in the reference's torben.cpp): bisect on value between
// min and max, counting values below, above and equal to the guess. Float32 throughout.
function torbenMedian(m) {
  const n = m.length;
  const half = (n + 1) >> 1; // C integer division
  let min = m[0];
  let max = m[0];
  for (let i = 1; i < n; i++) {
    if (m[i] < min) min = m[i];
    if (m[i] > max) max = m[i];
  }
  let guess = 0;
  let less = 0;
  let greater = 0;
  let equal = 0;
  let maxBelow = min;
  let minAbove = max;
  for (;;) {
    guess = fr(fr(min + max) / 2);
    less = 0;
    greater = 0;
    equal = 0;
    maxBelow = min;
    minAbove = max;
    for (let i = 0; i < n; i++) {
      const v = m[i];
      if (v < guess) {
        less++;
        if (v > maxBelow) maxBelow = v;
      } else if (v > guess) {
        greater++;
        if (v < minAbove) minAbove = v;
      } else {
        equal++;
      }
    }
    if (less <= half && greater <= half) break;
    if (less > greater) max = maxBelow;
    else min = minAbove;
  }
  if (less >= half) return maxBelow;
  if (less + equal >= half) return guess;
  return minAbove;
}

const HEX = "0123456789abcdef";

// Bit k = 16 i + j is set when coefficient [i][j] exceeds the median. The hex string is the
// 256-bit number with bit 255 first (Meta's format; the first element of pdqhash's vector
// is the most significant bit, see takedown/media/pdq.py).
function hexFromCoefficients(b) {
  const median = torbenMedian(b);
  const bytes = new Uint8Array(32);
  for (let k = 0; k < 256; k++) {
    if (b[k] > median) bytes[31 - (k >> 3)] |= 1 << (k & 7);
  }
  let hex = "";
  for (let i = 0; i < 32; i++) hex += HEX[bytes[i] >> 4] + HEX[bytes[i] & 15];
  return hex;
}

// The DCT of a rotated or mirrored image is a transpose and/or sign pattern of the
// original's, so the eight variants come from one DCT (the reference's dct16OriginalTo*).
// Each entry: [transpose?, sign(i, j)] with (i, j) indexing the original coefficients.
const DIHEDRAL_RULES = [
  [false, () => 1], // original
  [true, (i, j) => (j & 1 ? 1 : -1)], // rotate90
  [false, (i, j) => ((i + j) & 1 ? -1 : 1)], // rotate180
  [true, (i) => (i & 1 ? 1 : -1)], // rotate270
  [false, (i) => (i & 1 ? 1 : -1)], // flip top-bottom (FlipX)
  [false, (i, j) => (j & 1 ? 1 : -1)], // flip left-right (FlipY)
  [true, () => 1], // transpose (FlipPlus1)
  [true, (i, j) => ((i + j) & 1 ? -1 : 1)], // transverse (FlipMinus1)
];

function dihedralCoefficients(b, rule) {
  const [transpose, sign] = rule;
  const out = new Float32Array(256);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      const target = transpose ? j * 16 + i : i * 16 + j;
      out[target] = sign(i, j) * b[i * 16 + j];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Public API.

const ZERO_HASH = "0".repeat(64);

/**
 * PDQ of luma values (no sampling): 16 x 16 DCT coefficients and quality.
 * @param {Float32Array} luma  width * height values, row-major; overwritten (blurred)
 * @returns {{coefficients: Float32Array, quality: number} | null} null when too small
 */
export function pdqCoefficientsFromLuma(luma, width, height) {
  if (height < MIN_HASHABLE_DIM || width < MIN_HASHABLE_DIM) return null;
  const scratch = new Float32Array(width * height);
  jaroszFilter(
    luma,
    scratch,
    height,
    width,
    jaroszWindowSize(width, 64), // along rows: the window spans columns
    jaroszWindowSize(height, 64),
  );
  const b64 = decimateTo64(luma, height, width);
  return { coefficients: dct64To16(b64), quality: qualityOf(b64) };
}

/**
 * The PDQ hash of an image given as RGBA bytes (e.g. ImageData.data), with the server's
 * sampling: > 512 px on either side is hashed as 512 x 512 samples. Alpha is ignored.
 * @param {Uint8Array|Uint8ClampedArray} rgba  width * height * 4 bytes, row-major
 * @param {number} width
 * @param {number} height
 * @returns {{hash: string, quality: number}} 64 lowercase hex digits, quality 0..100
 */
export function pdqFromRGBA(rgba, width, height) {
  const { hash, quality } = pdqDihedralFromRGBA(rgba, width, height, { variants: false });
  return { hash, quality };
}

/**
 * Like pdqFromRGBA, plus the hashes of the seven rotations/mirrors, keyed by the
 * names in DIHEDRAL_NAMES (the server's `pdq.dihedral` object).
 * @returns {{hash: string, quality: number, dihedral: Object<string, string>}}
 */
export function pdqDihedralFromRGBA(rgba, width, height, { variants = true } = {}) {
  const picked = referencePixels(rgba, width, height);
  const luma = lumaFromRGBA(picked.rgba, picked.width, picked.height);
  const result = pdqCoefficientsFromLuma(luma, picked.width, picked.height);
  const dihedral = {};
  if (result === null) {
    for (const name of DIHEDRAL_NAMES) dihedral[name] = ZERO_HASH;
    return { hash: ZERO_HASH, quality: 0, dihedral: variants ? dihedral : undefined };
  }
  const hash = hexFromCoefficients(result.coefficients);
  if (!variants) return { hash, quality: result.quality, dihedral: undefined };
  DIHEDRAL_NAMES.forEach((name, index) => {
    const coefficients = dihedralCoefficients(result.coefficients, DIHEDRAL_RULES[index]);
    dihedral[name] = index === 0 ? hash : hexFromCoefficients(coefficients);
  });
  return { hash, quality: result.quality, dihedral };
}

/** Number of differing bits between two 64-hex-digit PDQ hashes. */
export function hammingDistance(a, b) {
  if (a.length !== 64 || b.length !== 64) throw new RangeError("PDQ hashes have 64 hex digits.");
  let distance = 0;
  for (let i = 0; i < 64; i++) {
    let x = parseInt(a[i], 16) ^ parseInt(b[i], 16);
    while (x) {
      distance += x & 1;
      x >>= 1;
    }
  }
  return distance;
}
