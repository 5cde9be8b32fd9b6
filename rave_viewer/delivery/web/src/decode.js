// The .rave stream in the browser (format versions 1-4): header, chunk index and chunk payloads (the zstd profile).
//
// Mirrors rave_viewer/codec/container.py (layout) and quantize.py (dequantize), which are the reference:
// header "<4sHHQIIBB8BH6f6dI" (112 bytes, CRC32 of the first 108), (v2+) the codebook section, the index of
// (length, crc32, count) u32 per chunk + CRC32, then chunks. A chunk (after zstd) holds the Morton-code deltas as
// big-endian byte planes and one column per quantized attribute (1 byte per value up to 8 bits, else a high and a
// low byte plane). v3 (flags bits 8-11: faint_bits F): a Gaussian's opacity code gives the bits its position,
// rotation and SH grids lose (quantize.faint_drop_table / kind_drop); the chunk is sorted by that class, then by
// Morton code, and each class's deltas restart from zero. v4 (flags bit 1): the SH rest is D = 3 x coefficients
// 16-bit transform codes and the codebook section's blob the basis (both skipped, as the SH rest of every
// version: the player renders SH degree 0).
import { decompress } from "fzstd";

export const HEADER_SIZE = 112;
export const VERSIONS = [1, 2, 3, 4]; // the .rave format versions this player reads
const CODECS = { 1: "lzma", 2: "zstd", 3: "brotli" };
const INV_SQRT2 = 1 / Math.sqrt(2);
export const SH_C0 = 0.28209479177387814;
const FLAG_SH_VQ = 1, FLAG_SH_KLT = 2, FAINT_MASK = 0x0f00, FAINT_SHIFT = 8, MAX_FAINT_BITS = 8;
const KNOWN_FLAGS = { 1: 0, 2: FLAG_SH_VQ, 3: FLAG_SH_VQ | FAINT_MASK, 4: FLAG_SH_VQ | FLAG_SH_KLT | FAINT_MASK };
const UNITS = { 1: "an anchor (Scaffold-GS) stream" }; // unit_type.py: the high byte of the version field
const MAX_CODEBOOK = 1 << 16;
// quantize.FAINT_MIN_BITS / FAINT_CAP: the bits a faint Gaussian's grid of each kind keeps at least / loses at most
const FAINT_MIN_BITS = { pos: 1, rot: 2, scale: 1, sh: 2 };
const FAINT_CAP = { pos: MAX_FAINT_BITS, rot: MAX_FAINT_BITS, scale: 0, sh: MAX_FAINT_BITS };

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
  // bytes the header, codebook section and chunk index take, from the first 24 bytes; null if unknown
  if (bytes.length < 24) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const field = dv.getUint16(4, true), index = 12 * dv.getUint32(20, true) + 4;
  if (field === 1) return HEADER_SIZE + index;
  if (!VERSIONS.includes(field)) return null; // parseHeader says why
  if (bytes.length < HEADER_SIZE + 12) return HEADER_SIZE + 12;
  return HEADER_SIZE + 12 + dv.getUint32(HEADER_SIZE + 4, true) + 4 + index;
}

export function parseHeader(bytes) {
  // {version, n, chunkSize, shDegree, codec, bits, bounds, ranges, flags, faintBits, codebook, shTransform,
  //  chunks:[{offset,length,crc,count,end}], indexEnd, size}; throws a one-line Error for anything it cannot read
  if (bytes.length < HEADER_SIZE) throw new Error(`truncated header (${bytes.length} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== "RAVE") throw new Error("not a .rave stream (bad magic)");
  const field = dv.getUint16(4, true), unit = field >> 8, version = field & 0xff;
  if (unit !== 0)
    throw new Error(`this .rave stream is ${UNITS[unit] || `of unit type ${unit}`}: this player renders Gaussian streams only`);
  if (!VERSIONS.includes(version))
    throw new Error(`.rave format version ${version} is not supported by this player (${VERSIONS.join(", ")})`);
  if (crc32(bytes.subarray(0, HEADER_SIZE - 4)) !== dv.getUint32(HEADER_SIZE - 4, true))
    throw new Error("corrupt header (CRC mismatch)");
  const n = Number(dv.getBigUint64(8, true));
  const chunkSize = dv.getUint32(16, true), nChunks = dv.getUint32(20, true);
  const shDegree = bytes[24], codec = CODECS[bytes[25]] || `id ${bytes[25]}`;
  const b = Array.from(bytes.subarray(26, 34));
  const bits = { pos: b[0], rot: b[1], scale: b[2], opacity: b[3], sh0: b[4], shN: [b[5], b[6], b[7]] };
  const flags = dv.getUint16(34, true);
  if (flags & ~KNOWN_FLAGS[version])
    throw new Error(`unknown flags 0x${flags.toString(16)} in the .rave header (format version ${version})`);
  if ((flags & FLAG_SH_VQ) && (flags & FLAG_SH_KLT))
    throw new Error(`invalid .rave header: the SH rest cannot be both a codebook and transform-coded (flags 0x${flags.toString(16)})`);
  const faintBits = (flags & FAINT_MASK) >> FAINT_SHIFT;
  if (faintBits > MAX_FAINT_BITS) throw new Error(`invalid faint_bits ${faintBits} in the .rave header`);
  if (shDegree > 3) throw new Error(`invalid SH degree ${shDegree} in the .rave header`);
  const lowest = [1, 2, 1, 1, 2, 2, 2, 2]; // quantize.BIT_RANGES: at most 21 position bits, else 16
  if (b.some((x, i) => x < lowest[i] || x > (i ? 16 : 21)))
    throw new Error(`invalid bit depths ${b.join(", ")} in the .rave header`);
  const bounds = [0, 1, 2, 3, 4, 5].map((i) => dv.getFloat32(36 + 4 * i, true));
  const r = [0, 1, 2, 3, 4, 5].map((i) => dv.getFloat64(60 + 8 * i, true));
  const ranges = { scaleMin: r[0], scaleMax: r[1], sh0: r[2], shN: [r[3], r[4], r[5]] };
  let indexStart = HEADER_SIZE, codebook = 0, shTransform = 0;
  if (version >= 2) {
    // codebook section: K (v4 transform: D), blob length, CRC of header + both; blob, CRC of the blob; then the index
    if (bytes.length < HEADER_SIZE + 12) throw new Error(`truncated v${version} header`);
    const k = dv.getUint32(HEADER_SIZE, true), blob = dv.getUint32(HEADER_SIZE + 4, true);
    if (crc32(bytes.subarray(0, HEADER_SIZE + 8)) !== dv.getUint32(HEADER_SIZE + 8, true))
      throw new Error("corrupt codebook header (CRC mismatch)");
    const coeffs = (shDegree + 1) * (shDegree + 1) - 1;
    if (flags & FLAG_SH_KLT) {
      // the SH rest is D = 3 x coefficients transform codes per Gaussian (the player renders SH degree 0: skipped)
      if (k !== 3 * coeffs) throw new Error(`invalid SH transform size ${k} in the .rave header (SH degree ${shDegree})`);
      shTransform = k;
    } else {
      if (Boolean(flags & FLAG_SH_VQ) !== k > 0 || k > MAX_CODEBOOK)
        throw new Error(`invalid SH codebook size ${k} in the .rave header`);
      codebook = k; // the SH rest is then one index per Gaussian (skipped too)
    }
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
  return { version, n, chunkSize, shDegree, codec, bits, bounds, ranges, flags, faintBits, chunks, indexEnd,
    size: off, codebook, shTransform };
}

function columns(h) {
  // per attribute column (container._Layout): [bit depth, the grid kind faint rows coarsen ("" = none)]
  const cols = [[2, ""], [h.bits.rot, "rot"], [h.bits.rot, "rot"], [h.bits.rot, "rot"], [h.bits.scale, "scale"],
    [h.bits.scale, "scale"], [h.bits.scale, "scale"], [h.bits.opacity, ""], [h.bits.sh0, "sh"], [h.bits.sh0, "sh"],
    [h.bits.sh0, "sh"]];
  if (h.shDegree === 0) return cols;
  if (h.codebook > 0) {
    cols.push([h.codebook <= 256 ? 8 : 16, "index"]); // v2+ vector-quantized SH rest: one codebook index
  } else if (h.shTransform > 0) {
    for (let j = 0; j < h.shTransform; j++) cols.push([16, "transform"]); // v4: 16-bit transform codes
  } else {
    for (let band = 1; band <= h.shDegree; band++)
      for (let j = 0; j < 3 * (2 * band + 1); j++) cols.push([h.bits.shN[band - 1], "sh"]);
  }
  return cols;
}

export function rawBytesPerGaussian(h) {
  return Math.ceil((3 * h.bits.pos) / 8) + columns(h).reduce((a, [b]) => a + (b <= 8 ? 1 : 2), 0);
}

export function faintDropTable(opacityBits, faintBits) {
  // quantize.faint_drop_table: per opacity code q, min(F, floor(-log2 alpha)) at alpha = (2q + 1) / 2^(bits + 1)
  const t = new Uint8Array(1 << opacityBits);
  for (let q = 0; q < t.length; q++) {
    const v = 2 * q + 1, ceilLog2 = v === 1 ? 0 : 32 - Math.clz32(v); // v odd: ceil(log2 v) is its bit length
    t[q] = Math.min(Math.max(opacityBits + 1 - ceilLog2, 0), faintBits);
  }
  return t;
}

export function kindDrop(drop, bits, kind) {
  // quantize.kind_drop: the bits a grid of this kind with `bits` bits loses at a Gaussian's drop
  return Math.min(Math.max(drop, 0), Math.max(Math.min(FAINT_CAP[kind], bits - FAINT_MIN_BITS[kind]), 0));
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

function grids(h, cols, drop) {
  // the grid constants of a Gaussian that loses `drop` bits: position/rotation/SH DC maxima, and every column's
  // largest valid code (quantize._grid_max, container._Layout.row_max)
  const e = (bits, kind) => bits - kindDrop(drop, bits, kind);
  const sym = (b) => 2 * (Math.pow(2, b - 1) - 1); // mid-tread codes 0..2L
  const maxCode = cols.map(([b, kind]) => {
    if (kind === "index") return h.codebook - 1;
    if (kind === "transform") return 0xffff; // bounded by the basis' ranges (the skipped blob): not checked
    if (kind === "sh") return sym(e(b, "sh"));
    return Math.pow(2, kind ? e(b, kind) : b) - 1;
  });
  const pe = e(h.bits.pos, "pos");
  return {
    posBits: pe, posMax: Math.pow(2, pe) - 1, posLimit: Math.pow(2, 3 * pe), posLimitBig: 1n << BigInt(3 * pe),
    rotMax: Math.pow(2, e(h.bits.rot, "rot")) - 1, sh0Levels: Math.pow(2, e(h.bits.sh0, "sh") - 1) - 1, maxCode,
  };
}

export function decodeChunk(h, compressed, count) {
  // -> {means: Float32Array[3n], quats (w,x,y,z) [4n], scales (linear) [3n], opacity (alpha) [n], rgb [3n]}
  const per = rawBytesPerGaussian(h);
  if (h.codec !== "zstd") throw new Error(`this player decodes zstd streams only (the stream uses ${h.codec})`);
  const raw = decompress(compressed, new Uint8Array(per * count));
  if (raw.length !== per * count) throw new Error(`chunk decompressed to ${raw.length} bytes, expected ${per * count}`);
  const n = count, mb = Math.ceil((3 * h.bits.pos) / 8), pb = h.bits.pos;
  // attribute columns (the opacity column first: with faint_bits it gives every row's grids)
  const cols = columns(h);
  const colStart = [];
  let pos = mb * n;
  for (const [b] of cols) { colStart.push(pos); pos += b <= 8 ? n : 2 * n; }
  const get = (j, i) => (cols[j][0] <= 8 ? raw[colStart[j] + i] : (raw[colStart[j] + i] << 8) | raw[colStart[j] + n + i]);
  const dropOf = h.faintBits ? faintDropTable(h.bits.opacity, h.faintBits) : null;
  const drop = new Uint8Array(n);
  const grid = [];
  for (let d = 0; d <= (h.faintBits || 0); d++) grid.push(grids(h, cols, d));
  for (let i = 0; i < n; i++) {
    if (dropOf) {
      const o = get(7, i);
      if (o >= dropOf.length) throw new Error("attribute column 7 has codes out of range");
      drop[i] = dropOf[o];
      if (i && drop[i] < drop[i - 1]) throw new Error("faint classes out of order");
    }
    const g = grid[drop[i]];
    for (let j = 0; j < cols.length; j++)
      if (get(j, i) > g.maxCode[j]) throw new Error(`attribute column ${j} has codes out of range${dropOf ? " for their faint class" : ""}`);
  }
  // Morton codes: per faint class (all rows without faint_bits), the cumulative sum of big-endian deltas from
  // zero; exact in float64 up to 53 bits, else BigInt
  const xyz = new Uint32Array(3 * n);
  const bad = () => new Error("position codes out of range");
  if (3 * pb <= 53) {
    let code = 0;
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let p = 0; p < mb; p++) d = d * 256 + raw[p * n + i];
      code = i === 0 || drop[i] !== drop[i - 1] ? d : code + d;
      if (code >= grid[drop[i]].posLimit) throw bad();
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
      code = i === 0 || drop[i] !== drop[i - 1] ? d : code + d;
      if (code >= grid[drop[i]].posLimitBig) throw bad();
      let x = 0, y = 0, z = 0;
      for (let k = 0; k < pb; k++) {
        x |= Number((code >> BigInt(3 * k)) & 1n) << k;
        y |= Number((code >> BigInt(3 * k + 1)) & 1n) << k;
        z |= Number((code >> BigInt(3 * k + 2)) & 1n) << k;
      }
      xyz[3 * i] = x; xyz[3 * i + 1] = y; xyz[3 * i + 2] = z;
    }
  }
  // dequantize: the same float64 operations as quantize.dequantize, rounded once to float32
  const means = new Float32Array(3 * n), quats = new Float32Array(4 * n), scales = new Float32Array(3 * n);
  const opacity = new Float32Array(n), rgb = new Float32Array(3 * n);
  const lo = h.bounds.slice(0, 3), ext = [0, 1, 2].map((a) => (h.bounds[3 + a] - h.bounds[a] > 0 ? h.bounds[3 + a] - h.bounds[a] : 1));
  const ms = Math.pow(2, h.bits.scale) - 1, mo = Math.pow(2, h.bits.opacity);
  const ref = scaleReference(h.bounds), sLo = ref + h.ranges.scaleMin, sHi = ref + h.ranges.scaleMax;
  const r0 = h.ranges.sh0;
  const q = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const g = grid[drop[i]], m = g.posMax, mr = g.rotMax, L0 = g.sh0Levels;
    for (let a = 0; a < 3; a++) means[3 * i + a] = lo[a] + xyz[3 * i + a] * (ext[a] / m);
    const idx = get(0, i);
    const rest = [1, 2, 3].map((j) => (get(j, i) * (2 / mr) - 1) * INV_SQRT2);
    const big = Math.sqrt(Math.max(0, 1 - (rest[0] * rest[0] + rest[1] * rest[1] + rest[2] * rest[2])));
    for (let c = 0, r = 0; c < 4; c++) q[c] = c === idx ? big : rest[r++];
    const norm = Math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]) || 1;
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
