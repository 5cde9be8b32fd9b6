// The .rave format-1 stream in the browser: header, chunk index and chunk payloads (the zstd profile).
//
// Mirrors rave_viewer/codec/container.py (layout) and quantize.py (dequantize), which are the reference:
// header "<4sHHQIIBB8BH6f6dI" (112 bytes, CRC32 of the first 108), index of (length, crc32, count) u32 per
// chunk + CRC32, then chunks. A chunk (after zstd) holds the Morton-code deltas as big-endian byte planes and
// one column per quantized attribute (1 byte per value up to 8 bits, else a high and a low byte plane).
import { decompress } from "fzstd";

export const HEADER_SIZE = 112;
const CODECS = { 1: "lzma", 2: "zstd", 3: "brotli" };
const INV_SQRT2 = 1 / Math.sqrt(2);
export const SH_C0 = 0.28209479177387814;

let CRC_TABLE = null;
export function crc32(bytes) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function headerExtent(bytes) {
  // bytes the header + chunk index take (format 1), from the first 24 bytes; null if unknown
  if (bytes.length < 24) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint16(4, true), index = 12 * dv.getUint32(20, true) + 4;
  if (version === 1) return HEADER_SIZE + index;
  if (version !== 2) return null;
  if (bytes.length < HEADER_SIZE + 12) return HEADER_SIZE + 12;
  return HEADER_SIZE + 12 + dv.getUint32(HEADER_SIZE + 4, true) + 4 + index;
}

export function parseHeader(bytes) {
  // {n, chunkSize, shDegree, codec, bits, bounds, ranges, chunks:[{offset,length,crc,count}]}; throws on error
  if (bytes.length < HEADER_SIZE) throw new Error(`truncated header (${bytes.length} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== "RAVE") throw new Error("not a .rave stream (bad magic)");
  const version = dv.getUint16(4, true);
  if (version !== 1 && version !== 2) throw new Error(`.rave format version ${version} is not supported by this player (1, 2)`);
  if (crc32(bytes.subarray(0, HEADER_SIZE - 4)) !== dv.getUint32(HEADER_SIZE - 4, true))
    throw new Error("corrupt header (CRC mismatch)");
  const n = Number(dv.getBigUint64(8, true));
  const chunkSize = dv.getUint32(16, true), nChunks = dv.getUint32(20, true);
  const shDegree = bytes[24], codec = CODECS[bytes[25]] || `id ${bytes[25]}`;
  const b = Array.from(bytes.subarray(26, 34));
  const bits = { pos: b[0], rot: b[1], scale: b[2], opacity: b[3], sh0: b[4], shN: [b[5], b[6], b[7]] };
  const bounds = [0, 1, 2, 3, 4, 5].map((i) => dv.getFloat32(36 + 4 * i, true));
  const r = [0, 1, 2, 3, 4, 5].map((i) => dv.getFloat64(60 + 8 * i, true));
  const ranges = { scaleMin: r[0], scaleMax: r[1], sh0: r[2], shN: [r[3], r[4], r[5]] };
  let indexStart = HEADER_SIZE, codebook = 0;
  if (version === 2) {
    // v2: codebook section (K entries, blob length, CRC of header + both; blob, CRC of the blob), then the index
    if (bytes.length < HEADER_SIZE + 12) throw new Error("truncated v2 header");
    const k = dv.getUint32(HEADER_SIZE, true), blob = dv.getUint32(HEADER_SIZE + 4, true);
    if (crc32(bytes.subarray(0, HEADER_SIZE + 8)) !== dv.getUint32(HEADER_SIZE + 8, true))
      throw new Error("corrupt codebook header (CRC mismatch)");
    codebook = k; // the SH rest is then one index per Gaussian (the player renders SH degree 0: skipped)
    indexStart = HEADER_SIZE + 12 + blob + 4;
  }
  const indexEnd = indexStart + 12 * nChunks + 4;
  if (bytes.length < indexEnd) throw new Error(`truncated chunk index (${bytes.length} of ${indexEnd} bytes)`);
  if (crc32(bytes.subarray(indexStart, indexEnd - 4)) !== dv.getUint32(indexEnd - 4, true))
    throw new Error("corrupt chunk index (CRC mismatch)");
  const chunks = [];
  let off = indexEnd;
  for (let i = 0; i < nChunks; i++) {
    const p = indexStart + 12 * i;
    const length = dv.getUint32(p, true), crc = dv.getUint32(p + 4, true), count = dv.getUint32(p + 8, true);
    chunks.push({ offset: off, length, crc, count, end: off + length });
    off += length;
  }
  return { version, n, chunkSize, shDegree, codec, bits, bounds, ranges, chunks, indexEnd, size: off, codebook };
}

function columnBits(h) {
  const cols = [2, h.bits.rot, h.bits.rot, h.bits.rot, h.bits.scale, h.bits.scale, h.bits.scale, h.bits.opacity,
    h.bits.sh0, h.bits.sh0, h.bits.sh0];
  if (h.codebook > 0 && h.shDegree > 0) {
    cols.push(h.codebook <= 256 ? 8 : 16); // v2 vector-quantized SH rest: one codebook index
    return cols;
  }
  for (let band = 1; band <= h.shDegree; band++)
    for (let j = 0; j < 3 * (2 * band + 1); j++) cols.push(h.bits.shN[band - 1]);
  return cols;
}

export function rawBytesPerGaussian(h) {
  return Math.ceil((3 * h.bits.pos) / 8) + columnBits(h).reduce((a, b) => a + (b <= 8 ? 1 : 2), 0);
}

function scaleReference(bounds) {
  // ln(2^e), 2^e the smallest power of two >= the largest side of the bounds (quantize.scale_reference)
  let ext = 0;
  for (let a = 0; a < 3; a++) ext = Math.max(ext, bounds[3 + a] - bounds[a]);
  if (!(ext > 0) || !isFinite(ext)) return 0;
  let e = Math.ceil(Math.log2(ext));
  while (Math.pow(2, e) < ext) e++;
  while (Math.pow(2, e - 1) >= ext) e--;
  return e * Math.LN2;
}

export function decodeChunk(h, compressed, count) {
  // -> {means: Float32Array[3n], quats (w,x,y,z) [4n], scales (linear) [3n], opacity (alpha) [n], rgb [3n]}
  const per = rawBytesPerGaussian(h);
  if (h.codec !== "zstd") throw new Error(`this player decodes zstd streams only (the stream uses ${h.codec})`);
  const raw = decompress(compressed, new Uint8Array(per * count));
  if (raw.length !== per * count) throw new Error(`chunk decompressed to ${raw.length} bytes, expected ${per * count}`);
  const n = count, mb = Math.ceil((3 * h.bits.pos) / 8), pb = h.bits.pos;
  // Morton codes: cumulative sum of big-endian deltas; exact in float64 up to 53 bits, else BigInt
  const xyz = new Uint32Array(3 * n);
  if (3 * pb <= 53) {
    let code = 0;
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let p = 0; p < mb; p++) d = d * 256 + raw[p * n + i];
      code += d;
      const hi = Math.floor(code / 4294967296), lo = code >>> 0;
      let x = 0, y = 0, z = 0;
      for (let k = 0; k < pb; k++) {
        const bx = 3 * k, by = bx + 1, bz = bx + 2;
        x |= (bx < 32 ? (lo >>> bx) & 1 : (hi >>> (bx - 32)) & 1) << k;
        y |= (by < 32 ? (lo >>> by) & 1 : (hi >>> (by - 32)) & 1) << k;
        z |= (bz < 32 ? (lo >>> bz) & 1 : (hi >>> (bz - 32)) & 1) << k;
      }
      xyz[3 * i] = x; xyz[3 * i + 1] = y; xyz[3 * i + 2] = z;
    }
  } else {
    let code = 0n;
    for (let i = 0; i < n; i++) {
      let d = 0n;
      for (let p = 0; p < mb; p++) d = (d << 8n) | BigInt(raw[p * n + i]);
      code += d;
      let x = 0, y = 0, z = 0;
      for (let k = 0; k < pb; k++) {
        x |= Number((code >> BigInt(3 * k)) & 1n) << k;
        y |= Number((code >> BigInt(3 * k + 1)) & 1n) << k;
        z |= Number((code >> BigInt(3 * k + 2)) & 1n) << k;
      }
      xyz[3 * i] = x; xyz[3 * i + 1] = y; xyz[3 * i + 2] = z;
    }
  }
  // attribute columns
  const bits = columnBits(h);
  const col = (j) => colStart[j];
  const colStart = [];
  let pos = mb * n;
  for (const b of bits) { colStart.push(pos); pos += b <= 8 ? n : 2 * n; }
  const get = (j, i) => (bits[j] <= 8 ? raw[col(j) + i] : (raw[col(j) + i] << 8) | raw[col(j) + n + i]);
  const means = new Float32Array(3 * n), quats = new Float32Array(4 * n), scales = new Float32Array(3 * n);
  const opacity = new Float32Array(n), rgb = new Float32Array(3 * n);
  const m = Math.pow(2, pb) - 1;
  const lo = h.bounds.slice(0, 3), ext = [0, 1, 2].map((a) => (h.bounds[3 + a] - h.bounds[a] > 0 ? h.bounds[3 + a] - h.bounds[a] : 1));
  const mr = Math.pow(2, h.bits.rot) - 1, ms = Math.pow(2, h.bits.scale) - 1, mo = Math.pow(2, h.bits.opacity);
  const ref = scaleReference(h.bounds), sLo = ref + h.ranges.scaleMin, sHi = ref + h.ranges.scaleMax;
  const L0 = Math.pow(2, h.bits.sh0 - 1) - 1, r0 = h.ranges.sh0;
  const q = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < 3; a++) means[3 * i + a] = lo[a] + xyz[3 * i + a] * (ext[a] / m);
    const idx = get(0, i);
    const rest = [1, 2, 3].map((j) => (get(j, i) * (2 / mr) - 1) * INV_SQRT2);
    const big = Math.sqrt(Math.max(0, 1 - (rest[0] * rest[0] + rest[1] * rest[1] + rest[2] * rest[2])));
    for (let c = 0, r = 0; c < 4; c++) q[c] = c === idx ? big : rest[r++];
    const norm = Math.hypot(q[0], q[1], q[2], q[3]) || 1;
    for (let c = 0; c < 4; c++) quats[4 * i + c] = q[c] / norm;
    for (let a = 0; a < 3; a++) scales[3 * i + a] = Math.exp(sLo + get(4 + a, i) * ((sHi - sLo) / ms));
    opacity[i] = (get(7, i) + 0.5) / mo;
    for (let c = 0; c < 3; c++) {
      const dc = (get(8 + c, i) - L0) * (r0 / L0);
      rgb[3 * i + c] = Math.min(1, Math.max(0, 0.5 + SH_C0 * dc));
    }
  }
  return { count: n, means, quats, scales, opacity, rgb };
}
