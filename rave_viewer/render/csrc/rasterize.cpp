// Tile-based CPU rasterizer for projected 3D Gaussians (forward + backward), parallel over tiles with OpenMP.
//
// Same alpha-compositing rules as gsplat 1.5.3 (RasterizeToPixels3DGSFwd/Bwd.cu): pixel centres at +0.5,
// sigma = 0.5 * d^T conic d, skip sigma < 0, alpha = min(0.999, opacity * exp(-sigma)), skip alpha < 1/255,
// a pixel stops (exclusively) at the first Gaussian that would bring T to <= 1e-4.
// The backward walks each tile back to front, rebuilding T by division, and writes one gradient row per
// (Gaussian, tile) intersection; rows are then summed per Gaussian (deterministic, no atomics).
#include <torch/extension.h>

#include "project.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr float kAlphaThreshold = 1.f / 255.f;
constexpr float kAlphaMax = 0.999f;
constexpr float kTransmittanceMin = 1e-4f;
constexpr int kTile = 16;
constexpr int kTilePixels = kTile * kTile;
constexpr int64_t kParallelMin = 16384; // per-Gaussian loops below this size run on one thread

// Everything the pixel loops need about one projected Gaussian, packed for cache locality.
struct Splat {
    float mx, my;       // 2D mean (pixels)
    float ca, cb, cc;   // conic (inverse 2D covariance): [ca cb; cb cc]
    float op;           // opacity
    float r, g, b;      // colour
    float sigma_max;    // sigma above which alpha < kAlphaThreshold for sure (fast reject, with margin)
    float inv_a;        // 1 / ca                      } per-row extent of the ellipse sigma <= sigma_max:
    float two_a_smax;   // 2 * ca * sigma_max          } dx = (cb*dy -+ sqrt(2 ca smax - det dy^2)) / ca
    float det;          // ca * cc - cb^2              }
    int x0, x1, y0, y1; // inclusive pixel bounding box, clipped to the image (x0 > x1 when empty)
};

struct Binning {
    int64_t n_isects = 0;
    torch::Tensor tile_offsets; // [C*TH*TW + 1] int64: range of each tile in the isect arrays
    torch::Tensor isect_gid;    // [M] int32: flattened camera*N + gaussian id, sorted by (tile, depth)
    torch::Tensor isect_row;    // [M] int32: row of the Gaussian-major gradient table for this intersection
    torch::Tensor row_offsets;  // [C*N + 1] int64: rows of each (camera, Gaussian) in the gradient table
};

inline float clampf(float v, float lo, float hi) { return std::min(hi, std::max(lo, v)); }

int num_threads() { return std::max(1, at::get_num_threads()); }

// Pack per-(camera, Gaussian) data; Gaussians with a zero radius get an empty box.
std::vector<Splat> make_splats(const float *means2d, const float *conics, const float *colors,
                               const float *opacities, const int32_t *radii, int64_t CN, int width, int height) {
    std::vector<Splat> s(CN);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (CN > kParallelMin)
    for (int64_t i = 0; i < CN; ++i) {
        Splat &q = s[i];
        q.mx = means2d[2 * i];
        q.my = means2d[2 * i + 1];
        q.ca = conics[3 * i];
        q.cb = conics[3 * i + 1];
        q.cc = conics[3 * i + 2];
        q.op = opacities[i];
        q.r = colors[3 * i];
        q.g = colors[3 * i + 1];
        q.b = colors[3 * i + 2];
        // alpha >= threshold  <=>  sigma <= log(op / threshold); keep a margin so the exact test decides.
        q.sigma_max = q.op > 0.f ? std::log(q.op / kAlphaThreshold) + 1e-3f : -1.f;
        q.inv_a = 1.f / q.ca;
        q.two_a_smax = 2.f * q.ca * q.sigma_max;
        q.det = q.ca * q.cc - q.cb * q.cb;
        const int rx = radii[2 * i], ry = radii[2 * i + 1];
        if (rx <= 0 || ry <= 0 || !(q.op > 0.f) || !(q.ca > 0.f) || !(q.det > 0.f)) {
            q.x0 = q.y0 = 0;
            q.x1 = q.y1 = -1;
            continue;
        }
        // pixel centres px + 0.5 with |mean - centre| <= radius
        const float fx0 = std::ceil(q.mx - rx - 0.5f), fx1 = std::floor(q.mx + rx - 0.5f);
        const float fy0 = std::ceil(q.my - ry - 0.5f), fy1 = std::floor(q.my + ry - 0.5f);
        q.x0 = (int)clampf(fx0, 0.f, (float)width);
        q.x1 = (int)clampf(fx1, -1.f, (float)(width - 1));
        q.y0 = (int)clampf(fy0, 0.f, (float)height);
        q.y1 = (int)clampf(fy1, -1.f, (float)(height - 1));
    }
    return s;
}

// Order-preserving map of a float to uint32 (for radix sorting depths).
inline uint32_t sortable_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Stable LSD radix sort of ids by 32-bit keys (11-bit digits, 3 passes).
void radix_sort(std::vector<uint32_t> &keys, std::vector<int32_t> &ids) {
    const size_t n = keys.size();
    std::vector<uint32_t> k2(n);
    std::vector<int32_t> i2(n);
    for (int shift = 0; shift < 32; shift += 11) {
        std::vector<size_t> count(2049, 0);
        for (size_t i = 0; i < n; ++i) count[((keys[i] >> shift) & 2047u) + 1]++;
        for (int d = 0; d < 2048; ++d) count[d + 1] += count[d];
        for (size_t i = 0; i < n; ++i) {
            const size_t pos = count[(keys[i] >> shift) & 2047u]++;
            k2[pos] = keys[i];
            i2[pos] = ids[i];
        }
        keys.swap(k2);
        ids.swap(i2);
    }
}

// Tiles touched by each Gaussian (gsplat's rule: floor/ceil of (mean +- radius) / tile). Gaussians are radix-sorted
// by depth (ties: lower id first), then scattered into per-tile lists, which are thereby already front to back.
Binning bin_gaussians(const float *means2d, const float *depths, const int32_t *radii, int64_t C, int64_t N,
                      int width, int height) {
    const int TW = (width + kTile - 1) / kTile, TH = (height + kTile - 1) / kTile;
    const int64_t TT = (int64_t)TW * TH, CN = C * N, n_tiles = C * TT;
    const int nt = num_threads();

    std::vector<int32_t> rect(4 * CN);
    auto row_offsets = torch::empty({CN + 1}, torch::kInt64);
    int64_t *roff = row_offsets.data_ptr<int64_t>();
    roff[0] = 0;
#pragma omp parallel for schedule(static) num_threads(nt) if (CN > kParallelMin)
    for (int64_t i = 0; i < CN; ++i) {
        const int rx = radii[2 * i], ry = radii[2 * i + 1];
        int32_t *r = &rect[4 * i];
        if (rx <= 0 || ry <= 0) {
            r[0] = r[1] = r[2] = r[3] = 0;
            roff[i + 1] = 0;
            continue;
        }
        const float tx = means2d[2 * i] / kTile, ty = means2d[2 * i + 1] / kTile;
        const float trx = (float)rx / kTile, try_ = (float)ry / kTile;
        r[0] = (int32_t)clampf(std::floor(tx - trx), 0.f, (float)TW);
        r[1] = (int32_t)clampf(std::ceil(tx + trx), 0.f, (float)TW);
        r[2] = (int32_t)clampf(std::floor(ty - try_), 0.f, (float)TH);
        r[3] = (int32_t)clampf(std::ceil(ty + try_), 0.f, (float)TH);
        r[1] = std::max(r[1], r[0]);
        r[3] = std::max(r[3], r[2]);
        roff[i + 1] = (int64_t)(r[1] - r[0]) * (r[3] - r[2]);
    }
    for (int64_t i = 0; i < CN; ++i) roff[i + 1] += roff[i];
    const int64_t M = roff[CN];
    TORCH_CHECK(M < (int64_t)std::numeric_limits<int32_t>::max(), "too many Gaussian-tile intersections: ", M);

    auto tile_offsets = torch::zeros({n_tiles + 1}, torch::kInt64);
    int64_t *toff = tile_offsets.data_ptr<int64_t>();
    auto isect_row = torch::empty({M}, torch::kInt32);
    auto isect_gid = torch::empty({M}, torch::kInt32);
    int32_t *irow = isect_row.data_ptr<int32_t>(), *igid = isect_gid.data_ptr<int32_t>();

    // tile sizes (cameras own disjoint tile ranges)
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (C > 1)
    for (int64_t c = 0; c < C; ++c) {
        int64_t *cnt = toff + c * TT + 1;
        for (int64_t i = c * N; i < (c + 1) * N; ++i) {
            const int32_t *r = &rect[4 * i];
            for (int y = r[2]; y < r[3]; ++y)
                for (int x = r[0]; x < r[1]; ++x) cnt[(int64_t)y * TW + x]++;
        }
    }
    for (int64_t t = 0; t < n_tiles; ++t) toff[t + 1] += toff[t];

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (C > 1)
    for (int64_t c = 0; c < C; ++c) {
        std::vector<uint32_t> keys;
        std::vector<int32_t> ids;
        for (int64_t i = c * N; i < (c + 1) * N; ++i)
            if (roff[i + 1] > roff[i]) {
                keys.push_back(sortable_bits(depths[i]));
                ids.push_back((int32_t)i);
            }
        radix_sort(keys, ids);
        std::vector<int64_t> cursor(toff + c * TT, toff + (c + 1) * TT);
        for (const int32_t i : ids) {
            const int32_t *r = &rect[4 * (int64_t)i];
            int64_t j = roff[i];
            for (int y = r[2]; y < r[3]; ++y)
                for (int x = r[0]; x < r[1]; ++x) {
                    const int64_t pos = cursor[(int64_t)y * TW + x]++;
                    irow[pos] = (int32_t)j++;
                    igid[pos] = i;
                }
        }
    }

    Binning b;
    b.n_isects = M;
    b.tile_offsets = tile_offsets;
    b.isect_gid = isect_gid;
    b.isect_row = isect_row;
    b.row_offsets = row_offsets;
    return b;
}

void check_inputs(const torch::Tensor &means2d, const torch::Tensor &conics, const torch::Tensor &colors,
                  const torch::Tensor &opacities, const torch::Tensor &radii, const torch::Tensor &backgrounds) {
    for (const auto *t : {&means2d, &conics, &colors, &opacities, &backgrounds}) {
        TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32 && t->is_contiguous(),
                    "rasterizer inputs must be contiguous float32 CPU tensors");
    }
    TORCH_CHECK(radii.scalar_type() == torch::kInt32 && radii.is_contiguous(), "radii must be contiguous int32");
    const int64_t C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2, "means2d must be [C, N, 2]");
    TORCH_CHECK(conics.sizes() == torch::IntArrayRef({C, N, 3}), "conics must be [C, N, 3]");
    TORCH_CHECK(colors.sizes() == torch::IntArrayRef({C, N, 3}), "colors must be [C, N, 3]");
    TORCH_CHECK(opacities.sizes() == torch::IntArrayRef({C, N}), "opacities must be [C, N]");
    TORCH_CHECK(radii.sizes() == torch::IntArrayRef({C, N, 2}), "radii must be [C, N, 2]");
    TORCH_CHECK(backgrounds.sizes() == torch::IntArrayRef({C, 3}), "backgrounds must be [C, 3]");
}

// Shared by forward and backward so both make bit-identical decisions.
inline bool eval_alpha(const Splat &s, float px, float py, float &dx, float &dy, float &vis, float &alpha) {
    dx = s.mx - px;
    dy = s.my - py;
    const float sigma = 0.5f * (s.ca * dx * dx + s.cc * dy * dy) + s.cb * dx * dy;
    if (sigma < 0.f || sigma > s.sigma_max) return false;
    vis = std::exp(-sigma);
    alpha = std::min(kAlphaMax, s.op * vis);
    return alpha >= kAlphaThreshold;
}

// Pixels [xa, xb] of the row with centre py (clipped to [x0, x1]) whose centres can have sigma <= sigma_max
// (the ellipse's chord through the row, widened by a small margin). Shared by forward and backward.
inline bool row_span(const Splat &s, float py, int x0, int x1, int &xa, int &xb) {
    const float dy = s.my - py;
    const float disc = s.two_a_smax - s.det * dy * dy;
    if (!(disc >= 0.f)) return false;
    const float sq = std::sqrt(disc), mid = s.mx - 0.5f + s.cb * dy * s.inv_a, half = sq * s.inv_a + 1e-2f;
    const float lo = std::ceil(mid - half), hi = std::floor(mid + half);
    xa = lo > (float)x0 ? (int)lo : x0;
    xb = hi < (float)x1 ? (int)hi : x1;
    return xa <= xb;
}

} // namespace

// Returns image [C,H,W,3], alpha [C,H,W,1], final transmittance [C,H,W], last contributor [C,H,W] (int32,
// index into the isect arrays, -1 if none) and the binning (tile_offsets, isect_gid, isect_row, row_offsets).
std::vector<torch::Tensor> rasterize_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                             torch::Tensor opacities, torch::Tensor depths, torch::Tensor radii,
                                             torch::Tensor backgrounds, int64_t width, int64_t height) {
    check_inputs(means2d, conics, colors, opacities, radii, backgrounds);
    TORCH_CHECK(depths.scalar_type() == torch::kFloat32 && depths.is_contiguous(), "depths must be float32");
    const int64_t C = means2d.size(0), N = means2d.size(1);
    const int W = (int)width, H = (int)height;
    const int TW = (W + kTile - 1) / kTile, TH = (H + kTile - 1) / kTile;
    const int64_t TT = (int64_t)TW * TH;

    const int32_t *rad = radii.data_ptr<int32_t>();
    Binning bin = bin_gaussians(means2d.data_ptr<float>(), depths.data_ptr<float>(), rad, C, N, W, H);
    std::vector<Splat> splats = make_splats(means2d.data_ptr<float>(), conics.data_ptr<float>(),
                                            colors.data_ptr<float>(), opacities.data_ptr<float>(), rad, C * N, W, H);

    auto image = torch::empty({C, H, W, 3}, torch::kFloat32);
    auto alpha_out = torch::empty({C, H, W, 1}, torch::kFloat32);
    auto T_final = torch::empty({C, H, W}, torch::kFloat32);
    auto last = torch::empty({C, H, W}, torch::kInt32);
    float *img = image.data_ptr<float>(), *alp = alpha_out.data_ptr<float>(), *Tf = T_final.data_ptr<float>();
    int32_t *lst = last.data_ptr<int32_t>();
    const float *bg = backgrounds.data_ptr<float>();
    const int64_t *toff = bin.tile_offsets.data_ptr<int64_t>();
    const int32_t *igid = bin.isect_gid.data_ptr<int32_t>();

#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
    for (int64_t t = 0; t < C * TT; ++t) {
        const int64_t c = t / TT;
        const int tx = (int)((t % TT) % TW), ty = (int)((t % TT) / TW);
        const int X0 = tx * kTile, Y0 = ty * kTile;
        const int X1 = std::min(W, X0 + kTile) - 1, Y1 = std::min(H, Y0 + kTile) - 1;
        float T[kTilePixels], cr[kTilePixels], cg[kTilePixels], cbl[kTilePixels];
        int32_t lastk[kTilePixels];
        bool done[kTilePixels];
        for (int p = 0; p < kTilePixels; ++p) {
            T[p] = 1.f;
            cr[p] = cg[p] = cbl[p] = 0.f;
            lastk[p] = -1;
            done[p] = false;
        }
        int active = (X1 - X0 + 1) * (Y1 - Y0 + 1);
        const int64_t kend = toff[t + 1];
        for (int64_t k = toff[t]; k < kend && active > 0; ++k) {
            if (k + 8 < kend) __builtin_prefetch(&splats[igid[k + 8]]);
            const Splat &s = splats[igid[k]];
            const int x0 = std::max(s.x0, X0), x1 = std::min(s.x1, X1);
            const int y0 = std::max(s.y0, Y0), y1 = std::min(s.y1, Y1);
            for (int y = y0; y <= y1; ++y) {
                const float py = (float)y + 0.5f;
                int xa, xb;
                if (!row_span(s, py, x0, x1, xa, xb)) continue;
                for (int x = xa; x <= xb; ++x) {
                    const int p = (y - Y0) * kTile + (x - X0);
                    if (done[p]) continue;
                    float dx, dy, vis, alpha;
                    if (!eval_alpha(s, (float)x + 0.5f, py, dx, dy, vis, alpha)) continue;
                    const float nT = T[p] * (1.f - alpha);
                    if (nT <= kTransmittanceMin) {
                        done[p] = true;
                        --active;
                        continue;
                    }
                    const float w = alpha * T[p];
                    cr[p] += s.r * w;
                    cg[p] += s.g * w;
                    cbl[p] += s.b * w;
                    T[p] = nT;
                    lastk[p] = (int32_t)k;
                }
            }
        }
        const float *bgc = bg + 3 * c;
        for (int y = Y0; y <= Y1; ++y)
            for (int x = X0; x <= X1; ++x) {
                const int p = (y - Y0) * kTile + (x - X0);
                const int64_t pix = (c * H + y) * (int64_t)W + x;
                img[3 * pix] = cr[p] + T[p] * bgc[0];
                img[3 * pix + 1] = cg[p] + T[p] * bgc[1];
                img[3 * pix + 2] = cbl[p] + T[p] * bgc[2];
                alp[pix] = 1.f - T[p];
                Tf[pix] = T[p];
                lst[pix] = lastk[p];
            }
    }
    return {image, alpha_out, T_final, last, bin.tile_offsets, bin.isect_gid, bin.isect_row, bin.row_offsets};
}

// Gradients w.r.t. means2d [C,N,2], conics [C,N,3], colors [C,N,3], opacities [C,N].
std::vector<torch::Tensor> rasterize_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor colors,
                                              torch::Tensor opacities, torch::Tensor radii, torch::Tensor backgrounds,
                                              int64_t width, int64_t height, torch::Tensor T_final,
                                              torch::Tensor last, torch::Tensor tile_offsets, torch::Tensor isect_gid,
                                              torch::Tensor isect_row, torch::Tensor row_offsets,
                                              torch::Tensor v_image, torch::Tensor v_alpha) {
    check_inputs(means2d, conics, colors, opacities, radii, backgrounds);
    TORCH_CHECK(v_image.is_contiguous() && v_alpha.is_contiguous() && v_image.scalar_type() == torch::kFloat32 &&
                    v_alpha.scalar_type() == torch::kFloat32,
                "output gradients must be contiguous float32");
    const int64_t C = means2d.size(0), N = means2d.size(1), CN = C * N;
    const int W = (int)width, H = (int)height;
    const int TW = (W + kTile - 1) / kTile, TH = (H + kTile - 1) / kTile;
    const int64_t TT = (int64_t)TW * TH;
    const int64_t M = isect_gid.size(0);
    const int nt = num_threads();

    std::vector<Splat> splats =
        make_splats(means2d.data_ptr<float>(), conics.data_ptr<float>(), colors.data_ptr<float>(),
                    opacities.data_ptr<float>(), radii.data_ptr<int32_t>(), CN, W, H);
    constexpr int G = 9; // v_mean(2), v_conic(3), v_color(3), v_opacity(1)
    std::vector<float> rows((size_t)M * G, 0.f);

    const float *Tf = T_final.data_ptr<float>(), *vimg = v_image.data_ptr<float>(), *valp = v_alpha.data_ptr<float>();
    const float *bg = backgrounds.data_ptr<float>();
    const int32_t *lst = last.data_ptr<int32_t>(), *igid = isect_gid.data_ptr<int32_t>();
    const int32_t *irow = isect_row.data_ptr<int32_t>();
    const int64_t *toff = tile_offsets.data_ptr<int64_t>(), *roff = row_offsets.data_ptr<int64_t>();

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t t = 0; t < C * TT; ++t) {
        const int64_t c = t / TT;
        const int tx = (int)((t % TT) % TW), ty = (int)((t % TT) / TW);
        const int X0 = tx * kTile, Y0 = ty * kTile;
        const int X1 = std::min(W, X0 + kTile) - 1, Y1 = std::min(H, Y0 + kTile) - 1;
        const float *bgc = bg + 3 * c;
        float T[kTilePixels], TF[kTilePixels], br[kTilePixels], bgr[kTilePixels], bb[kTilePixels];
        float vr[kTilePixels], vg[kTilePixels], vb[kTilePixels], va[kTilePixels], vbg[kTilePixels];
        int32_t lastk[kTilePixels];
        int64_t kmax = -1;
        for (int p = 0; p < kTilePixels; ++p) lastk[p] = -1;
        for (int y = Y0; y <= Y1; ++y)
            for (int x = X0; x <= X1; ++x) {
                const int p = (y - Y0) * kTile + (x - X0);
                const int64_t pix = (c * H + y) * (int64_t)W + x;
                T[p] = TF[p] = Tf[pix];
                br[p] = bgr[p] = bb[p] = 0.f;
                vr[p] = vimg[3 * pix];
                vg[p] = vimg[3 * pix + 1];
                vb[p] = vimg[3 * pix + 2];
                va[p] = valp[pix];
                vbg[p] = bgc[0] * vr[p] + bgc[1] * vg[p] + bgc[2] * vb[p];
                lastk[p] = lst[pix];
                kmax = std::max<int64_t>(kmax, lastk[p]);
            }
        const int64_t kbeg = toff[t];
        for (int64_t k = kmax; k >= kbeg; --k) {
            if (k - 8 >= kbeg) __builtin_prefetch(&splats[igid[k - 8]]);
            const Splat &s = splats[igid[k]];
            const int x0 = std::max(s.x0, X0), x1 = std::min(s.x1, X1);
            const int y0 = std::max(s.y0, Y0), y1 = std::min(s.y1, Y1);
            float g_mx = 0.f, g_my = 0.f, g_ca = 0.f, g_cb = 0.f, g_cc = 0.f;
            float g_r = 0.f, g_g = 0.f, g_b = 0.f, g_op = 0.f;
            for (int y = y0; y <= y1; ++y) {
                const float py = (float)y + 0.5f;
                int xa, xb;
                if (!row_span(s, py, x0, x1, xa, xb)) continue;
                for (int x = xa; x <= xb; ++x) {
                    const int p = (y - Y0) * kTile + (x - X0);
                    if (lastk[p] < k) continue;
                    float dx, dy, vis, alpha;
                    if (!eval_alpha(s, (float)x + 0.5f, py, dx, dy, vis, alpha)) continue;
                    const float ra = 1.f / (1.f - alpha);
                    T[p] *= ra;
                    const float fac = alpha * T[p];
                    g_r += fac * vr[p];
                    g_g += fac * vg[p];
                    g_b += fac * vb[p];
                    float v_alpha = (s.r * T[p] - br[p] * ra) * vr[p] + (s.g * T[p] - bgr[p] * ra) * vg[p] +
                                    (s.b * T[p] - bb[p] * ra) * vb[p];
                    v_alpha += TF[p] * ra * (va[p] - vbg[p]);
                    if (s.op * vis <= kAlphaMax) {
                        const float v_sigma = -s.op * vis * v_alpha;
                        g_ca += 0.5f * v_sigma * dx * dx;
                        g_cb += v_sigma * dx * dy;
                        g_cc += 0.5f * v_sigma * dy * dy;
                        g_mx += v_sigma * (s.ca * dx + s.cb * dy);
                        g_my += v_sigma * (s.cb * dx + s.cc * dy);
                        g_op += vis * v_alpha;
                    }
                    br[p] += s.r * fac;
                    bgr[p] += s.g * fac;
                    bb[p] += s.b * fac;
                }
            }
            float *row = &rows[(size_t)irow[k] * G];
            row[0] = g_mx;
            row[1] = g_my;
            row[2] = g_ca;
            row[3] = g_cb;
            row[4] = g_cc;
            row[5] = g_r;
            row[6] = g_g;
            row[7] = g_b;
            row[8] = g_op;
        }
    }

    auto v_means2d = torch::zeros({C, N, 2}, torch::kFloat32);
    auto v_conics = torch::zeros({C, N, 3}, torch::kFloat32);
    auto v_colors = torch::zeros({C, N, 3}, torch::kFloat32);
    auto v_opacities = torch::zeros({C, N}, torch::kFloat32);
    float *gm = v_means2d.data_ptr<float>(), *gc = v_conics.data_ptr<float>();
    float *gcol = v_colors.data_ptr<float>(), *gop = v_opacities.data_ptr<float>();
#pragma omp parallel for schedule(static) num_threads(nt) if (CN > kParallelMin)
    for (int64_t i = 0; i < CN; ++i) {
        float acc[G] = {0.f};
        for (int64_t r = roff[i]; r < roff[i + 1]; ++r)
            for (int j = 0; j < G; ++j) acc[j] += rows[(size_t)r * G + j];
        gm[2 * i] = acc[0];
        gm[2 * i + 1] = acc[1];
        gc[3 * i] = acc[2];
        gc[3 * i + 1] = acc[3];
        gc[3 * i + 2] = acc[4];
        gcol[3 * i] = acc[5];
        gcol[3 * i + 1] = acc[6];
        gcol[3 * i + 2] = acc[7];
        gop[i] = acc[8];
    }
    return {v_means2d, v_conics, v_colors, v_opacities};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &rasterize_forward, "Rasterize projected Gaussians (forward)");
    m.def("backward", &rasterize_backward, "Rasterize projected Gaussians (backward)");
    m.def("project_forward", &project_forward, "Project Gaussians and evaluate SH colours (forward)");
    m.def("project_backward", &project_backward, "Project Gaussians and evaluate SH colours (backward)");
#ifdef RAVE_SOURCE_HASH  // hash of csrc/ given by the build (setup.py or the JIT loader): lets cpu.py spot stale builds
#define RAVE_STR_(x) #x
#define RAVE_STR(x) RAVE_STR_(x)
    m.attr("source_hash") = RAVE_STR(RAVE_SOURCE_HASH);
#endif
}
