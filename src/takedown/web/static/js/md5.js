// MD5 (RFC 1321) over bytes, incremental so that a large file can be hashed chunk by chunk
// with progress, without holding more than one chunk at a time.
//
// MD5 is broken as a cryptographic hash; here it is only an exact-copy signal, because
// hash lists exchanged in trust & safety work (NCMEC, StopNCII and others) carry MD5s of
// files. The Web Crypto API offers no MD5, hence this small implementation.
//
//   const md5 = new Md5();
//   md5.update(chunk1); md5.update(chunk2);   // ArrayBuffer, typed array or DataView
//   md5.hex();                                // "d41d8cd98f00b204e9800998ecf8427e"
//
// Or in one call: md5Hex(bytes).

// Per-round constants: floor(abs(sin(i + 1)) * 2^32), as signed 32-bit integers.
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0;

// Left-rotation amounts, four per round.
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("md5: expected an ArrayBuffer, a typed array or a DataView.");
}

export class Md5 {
  constructor() {
    this._state = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
    this._block = new Uint8Array(64); // bytes waiting for a full 64-byte block
    this._blockWords = new Int32Array(16);
    this._pending = 0;
    this._length = 0; // total bytes so far (a double: exact up to 2^53)
    this._finished = false;
  }

  /** Add bytes; returns this for chaining. */
  update(data) {
    if (this._finished) throw new Error("md5: update() after hex().");
    const bytes = toBytes(data);
    this._length += bytes.length;
    let offset = 0;
    if (this._pending > 0) {
      const take = Math.min(64 - this._pending, bytes.length);
      this._block.set(bytes.subarray(0, take), this._pending);
      this._pending += take;
      offset = take;
      if (this._pending < 64) return this;
      this._compress(this._block, 0);
      this._pending = 0;
    }
    for (; offset + 64 <= bytes.length; offset += 64) this._compress(bytes, offset);
    if (offset < bytes.length) {
      this._block.set(bytes.subarray(offset), 0);
      this._pending = bytes.length - offset;
    }
    return this;
  }

  /** Finish and return the digest as 32 lowercase hex digits. */
  hex() {
    if (!this._finished) this._finish();
    let out = "";
    for (let i = 0; i < 4; i++) {
      const word = this._state[i];
      for (let b = 0; b < 4; b++) out += ((word >>> (8 * b)) & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }

  _finish() {
    // Padding: 0x80, zeros up to 56 mod 64, then the length in bits as 64-bit little endian.
    const bitLength = this._length * 8;
    const padLength = this._pending < 56 ? 56 - this._pending : 120 - this._pending;
    const tail = new Uint8Array(padLength + 8);
    tail[0] = 0x80;
    const low = bitLength % 2 ** 32;
    const high = Math.floor(bitLength / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      tail[padLength + i] = (low >>> (8 * i)) & 0xff;
      tail[padLength + 4 + i] = (high >>> (8 * i)) & 0xff;
    }
    const length = this._length;
    this.update(tail);
    this._length = length;
    this._finished = true;
  }

  // One 64-byte block: four rounds of sixteen operations on the 32-bit state words.
  _compress(bytes, offset) {
    const x = this._blockWords;
    for (let i = 0; i < 16; i++) {
      const p = offset + 4 * i;
      x[i] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    }
    const s = this._state;
    let a = s[0];
    let b = s[1];
    let c = s[2];
    let d = s[3];
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const shift = SHIFTS[((i >> 4) << 2) | (i & 3)];
      const sum = (a + f + K[i] + x[g]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << shift) | (sum >>> (32 - shift)))) | 0;
    }
    s[0] = (s[0] + a) | 0;
    s[1] = (s[1] + b) | 0;
    s[2] = (s[2] + c) | 0;
    s[3] = (s[3] + d) | 0;
  }
}

/** MD5 of bytes in one call, as 32 lowercase hex digits. */
export function md5Hex(data) {
  return new Md5().update(data).hex();
}
