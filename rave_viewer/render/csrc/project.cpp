// Fused per-Gaussian projection + SH colour (forward and hand-written backward), parallel over Gaussians.
//
// Same math as the torch path (projection.py, sh.py) and gsplat 1.5.3's ProjectionEWA3DGSFused.cu /
// SphericalHarmonicsCUDA.cu: quaternion+scale covariance, world-to-camera, EWA pinhole Jacobian with the view
// direction clamped to 1.3x the field of view, eps2d low-pass, conic, opacity-aware per-axis radii, culling
// (near/far, faint, off-screen), colour = clamp_min(SH(normalize(mean - campos)) + 0.5, 0).
// One OpenMP region per call instead of ~100 small torch ops (and their autograd graph); doubles inside.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "project.h"

namespace {

constexpr double kAlphaThresholdD = 1.0 / 255.0;
constexpr double kMaxExtend = 3.33;
constexpr double kMaxRadius = 1073741824.0; // 2^30

struct Camera {
    double W[3][3], t[3], fx, fy, cx, cy, lxp, lxn, lyp, lyn, campos[3];
};

std::vector<Camera> read_cameras(const torch::Tensor &viewmats, const torch::Tensor &Ks, const torch::Tensor &campos,
                                 int width, int height) {
    auto vm = viewmats.accessor<float, 3>();
    auto K = Ks.accessor<float, 3>();
    auto cp = campos.accessor<float, 2>();
    std::vector<Camera> cams(viewmats.size(0));
    for (size_t c = 0; c < cams.size(); ++c) {
        Camera &k = cams[c];
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j) k.W[i][j] = vm[c][i][j];
            k.t[i] = vm[c][i][3];
            k.campos[i] = cp[c][i];
        }
        k.fx = K[c][0][0];
        k.fy = K[c][1][1];
        k.cx = K[c][0][2];
        k.cy = K[c][1][2];
        const double tan_fovx = 0.5 * width / k.fx, tan_fovy = 0.5 * height / k.fy;
        k.lxp = (width - k.cx) / k.fx + 0.3 * tan_fovx;
        k.lxn = k.cx / k.fx + 0.3 * tan_fovx;
        k.lyp = (height - k.cy) / k.fy + 0.3 * tan_fovy;
        k.lyn = k.cy / k.fy + 0.3 * tan_fovy;
    }
    return cams;
}

// Rotation R (row-major) of the normalised quaternion (w, x, y, z); also returns the normalised quaternion.
void rotation(const float *q, double R[3][3], double qn[4], double &inv_norm) {
    const double w0 = q[0], x0 = q[1], y0 = q[2], z0 = q[3];
    inv_norm = 1.0 / std::max(std::sqrt(w0 * w0 + x0 * x0 + y0 * y0 + z0 * z0), 1e-12);
    const double w = w0 * inv_norm, x = x0 * inv_norm, y = y0 * inv_norm, z = z0 * inv_norm;
    qn[0] = w, qn[1] = x, qn[2] = y, qn[3] = z;
    R[0][0] = 1 - 2 * (y * y + z * z), R[0][1] = 2 * (x * y - w * z), R[0][2] = 2 * (x * z + w * y);
    R[1][0] = 2 * (x * y + w * z), R[1][1] = 1 - 2 * (x * x + z * z), R[1][2] = 2 * (y * z - w * x);
    R[2][0] = 2 * (x * z - w * y), R[2][1] = 2 * (y * z + w * x), R[2][2] = 1 - 2 * (x * x + y * y);
}

// Everything the forward computes for one (camera, Gaussian), kept for the backward's chain rule.
struct Proj {
    bool valid;
    double M[3][3];          // R * diag(scale)
    double mc[3], rz, u, v;  // camera-space mean, 1/z, clamped x/z and y/z
    bool u_in, v_in;         // whether u, v were inside the clamp range
    double T1[3], T2[3];     // rows of J * W
    double A1[3], A2[3];     // rows of J * W * M
    double a, b, c, det;     // 2D covariance (with eps2d) and its determinant
    double m2[2];            // 2D mean
    double rx, ry;           // radii
};

void project_one(const Camera &k, const float *mean, const double M[3][3], double opacity, int width, int height,
                 double near_plane, double far_plane, double eps2d, Proj &p) {
    p.valid = false;
    for (int i = 0; i < 3; ++i) p.mc[i] = k.W[i][0] * mean[0] + k.W[i][1] * mean[1] + k.W[i][2] * mean[2] + k.t[i];
    const double z = p.mc[2];
    if (!(z >= near_plane && z <= far_plane)) return;
    p.rz = 1.0 / z;
    const double xr = p.mc[0] * p.rz, yr = p.mc[1] * p.rz;
    p.u_in = xr >= -k.lxn && xr <= k.lxp;
    p.v_in = yr >= -k.lyn && yr <= k.lyp;
    p.u = std::min(k.lxp, std::max(-k.lxn, xr));
    p.v = std::min(k.lyp, std::max(-k.lyn, yr));
    for (int j = 0; j < 3; ++j) {
        p.T1[j] = k.fx * p.rz * (k.W[0][j] - p.u * k.W[2][j]);
        p.T2[j] = k.fy * p.rz * (k.W[1][j] - p.v * k.W[2][j]);
    }
    for (int j = 0; j < 3; ++j) {
        p.A1[j] = p.T1[0] * M[0][j] + p.T1[1] * M[1][j] + p.T1[2] * M[2][j];
        p.A2[j] = p.T2[0] * M[0][j] + p.T2[1] * M[1][j] + p.T2[2] * M[2][j];
    }
    p.a = p.A1[0] * p.A1[0] + p.A1[1] * p.A1[1] + p.A1[2] * p.A1[2] + eps2d;
    p.b = p.A1[0] * p.A2[0] + p.A1[1] * p.A2[1] + p.A1[2] * p.A2[2];
    p.c = p.A2[0] * p.A2[0] + p.A2[1] * p.A2[1] + p.A2[2] * p.A2[2] + eps2d;
    p.det = p.a * p.c - p.b * p.b;
    if (!(p.det > 0.0)) return;
    p.m2[0] = k.fx * p.mc[0] * p.rz + k.cx;
    p.m2[1] = k.fy * p.mc[1] * p.rz + k.cy;
    // gsplat 1.5.3: radii from the opacity-aware extent, per axis; cull faint and off-screen Gaussians
    const float op = (float)opacity;
    if (!(op >= (float)kAlphaThresholdD)) return;
    const double extend = std::min(kMaxExtend, std::sqrt(2.0 * std::log(opacity / kAlphaThresholdD)));
    p.rx = std::ceil(extend * std::sqrt(p.a));
    p.ry = std::ceil(extend * std::sqrt(p.c));
    if (p.rx <= 0 && p.ry <= 0) return;
    if (p.m2[0] + p.rx <= 0 || p.m2[0] - p.rx >= width || p.m2[1] + p.ry <= 0 || p.m2[1] - p.ry >= height) return;
    p.valid = true;
}

constexpr double SH1 = 0.48860251190292;

// SH basis values and their partial derivatives w.r.t. the (unit) direction components (gsplat's constants).
int sh_bases(int degree, double x, double y, double z, double *B, double (*dB)[3]) {
    const int K = (degree + 1) * (degree + 1);
    for (int k = 0; k < K; ++k) dB[k][0] = dB[k][1] = dB[k][2] = 0.0;
    B[0] = 0.2820947917738781;
    if (degree < 1) return K;
    B[1] = -SH1 * y, dB[1][1] = -SH1;
    B[2] = SH1 * z, dB[2][2] = SH1;
    B[3] = -SH1 * x, dB[3][0] = -SH1;
    if (degree < 2) return K;
    const double z2 = z * z, fc1 = x * x - y * y, fs1 = 2 * x * y;
    const double c4 = 0.5462742152960395, c5 = 1.092548430592079;
    B[4] = c4 * fs1, dB[4][0] = 2 * c4 * y, dB[4][1] = 2 * c4 * x;
    B[5] = -c5 * z * y, dB[5][1] = -c5 * z, dB[5][2] = -c5 * y;
    B[6] = 0.9461746957575601 * z2 - 0.3153915652525201, dB[6][2] = 2 * 0.9461746957575601 * z;
    B[7] = -c5 * z * x, dB[7][0] = -c5 * z, dB[7][2] = -c5 * x;
    B[8] = c4 * fc1, dB[8][0] = 2 * c4 * x, dB[8][1] = -2 * c4 * y;
    if (degree < 3) return K;
    const double c9 = 0.5900435899266435, c10 = 1.445305721320277;
    const double tc = -2.285228997322329 * z2 + 0.4570457994644658, dtc = -2 * 2.285228997322329 * z;
    const double fc2 = x * fc1 - y * fs1, fs2 = x * fs1 + y * fc1;
    B[9] = -c9 * fs2, dB[9][0] = -c9 * 6 * x * y, dB[9][1] = -c9 * 3 * (x * x - y * y);
    B[10] = c10 * z * fs1, dB[10][0] = c10 * 2 * y * z, dB[10][1] = c10 * 2 * x * z, dB[10][2] = c10 * fs1;
    B[11] = tc * y, dB[11][1] = tc, dB[11][2] = dtc * y;
    B[12] = z * (1.865881662950577 * z2 - 1.119528997770346),
    dB[12][2] = 3 * 1.865881662950577 * z2 - 1.119528997770346;
    B[13] = tc * x, dB[13][0] = tc, dB[13][2] = dtc * x;
    B[14] = c10 * z * fc1, dB[14][0] = c10 * 2 * x * z, dB[14][1] = -c10 * 2 * y * z, dB[14][2] = c10 * fc1;
    B[15] = -c9 * fc2, dB[15][0] = -c9 * 3 * (x * x - y * y), dB[15][1] = c9 * 6 * x * y;
    return K;
}

void check_float(const torch::Tensor &t, const char *name) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(), name,
                " must be a contiguous float32 CPU tensor");
}

} // namespace

// Returns means2d [C,N,2], conics [C,N,3], colors [C,N,3], depths [C,N], radii [C,N,2] int32 (zeros when culled).
std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor opacities, torch::Tensor sh0, torch::Tensor shN,
                                           torch::Tensor viewmats, torch::Tensor Ks, torch::Tensor campos,
                                           int64_t width, int64_t height, double near_plane, double far_plane,
                                           double eps2d, int64_t sh_degree) {
    for (auto *t : {&means, &quats, &scales, &opacities, &sh0, &shN, &viewmats, &Ks, &campos}) check_float(*t, "input");
    const int64_t N = means.size(0), C = viewmats.size(0), KN = shN.size(1);
    TORCH_CHECK(sh_degree >= 0 && sh_degree <= 3 && (sh_degree + 1) * (sh_degree + 1) <= KN + 1, "bad sh_degree");
    const auto cams = read_cameras(viewmats, Ks, campos, (int)width, (int)height);
    auto means2d = torch::zeros({C, N, 2}, torch::kFloat32);
    auto conics = torch::zeros({C, N, 3}, torch::kFloat32);
    auto colors = torch::zeros({C, N, 3}, torch::kFloat32);
    auto depths = torch::zeros({C, N}, torch::kFloat32);
    auto radii = torch::zeros({C, N, 2}, torch::kInt32);
    const float *mp = means.data_ptr<float>(), *qp = quats.data_ptr<float>(), *sp = scales.data_ptr<float>();
    const float *op = opacities.data_ptr<float>(), *c0 = sh0.data_ptr<float>(), *cN = shN.data_ptr<float>();
    float *m2 = means2d.data_ptr<float>(), *con = conics.data_ptr<float>(), *col = colors.data_ptr<float>();
    float *dep = depths.data_ptr<float>();
    int32_t *rad = radii.data_ptr<int32_t>();

#pragma omp parallel for schedule(static) num_threads(std::max(1, at::get_num_threads())) if (N > 16384)
    for (int64_t i = 0; i < N; ++i) {
        double R[3][3], qn[4], inv_norm, M[3][3], B[16], dB[16][3];
        rotation(qp + 4 * i, R, qn, inv_norm);
        for (int r = 0; r < 3; ++r)
            for (int j = 0; j < 3; ++j) M[r][j] = R[r][j] * sp[3 * i + j];
        for (int64_t c = 0; c < C; ++c) {
            const Camera &k = cams[c];
            Proj p;
            project_one(k, mp + 3 * i, M, op[i], (int)width, (int)height, near_plane, far_plane, eps2d, p);
            if (!p.valid) continue;
            const int64_t ci = c * N + i;
            m2[2 * ci] = (float)p.m2[0];
            m2[2 * ci + 1] = (float)p.m2[1];
            con[3 * ci] = (float)(p.c / p.det);
            con[3 * ci + 1] = (float)(-p.b / p.det);
            con[3 * ci + 2] = (float)(p.a / p.det);
            dep[ci] = (float)p.mc[2];
            rad[2 * ci] = (int32_t)std::min(p.rx, kMaxRadius);
            rad[2 * ci + 1] = (int32_t)std::min(p.ry, kMaxRadius);
            double d[3] = {mp[3 * i] - k.campos[0], mp[3 * i + 1] - k.campos[1], mp[3 * i + 2] - k.campos[2]};
            const double dn = 1.0 / std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), 1e-12);
            const int K = sh_bases((int)sh_degree, d[0] * dn, d[1] * dn, d[2] * dn, B, dB);
            for (int ch = 0; ch < 3; ++ch) {
                double s = B[0] * c0[3 * i + ch];
                for (int kk = 1; kk < K; ++kk) s += B[kk] * cN[(i * KN + kk - 1) * 3 + ch];
                col[3 * ci + ch] = (float)std::max(s + 0.5, 0.0);
            }
        }
    }
    return {means2d, conics, colors, depths, radii};
}

// Gradients w.r.t. means [N,3], quats [N,4], scales [N,3] (activated), sh0 [N,1,3], shN [N,K,3].
std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor opacities, torch::Tensor sh0, torch::Tensor shN,
                                            torch::Tensor viewmats, torch::Tensor Ks, torch::Tensor campos,
                                            int64_t width, int64_t height, double near_plane, double far_plane,
                                            double eps2d, int64_t sh_degree, torch::Tensor radii,
                                            torch::Tensor v_means2d, torch::Tensor v_conics, torch::Tensor v_colors) {
    for (auto *t : {&means, &quats, &scales, &opacities, &sh0, &shN, &viewmats, &Ks, &campos, &v_means2d, &v_conics,
                    &v_colors})
        check_float(*t, "input");
    const int64_t N = means.size(0), C = viewmats.size(0), KN = shN.size(1);
    const auto cams = read_cameras(viewmats, Ks, campos, (int)width, (int)height);
    auto g_means = torch::zeros({N, 3}, torch::kFloat32);
    auto g_quats = torch::zeros({N, 4}, torch::kFloat32);
    auto g_scales = torch::zeros({N, 3}, torch::kFloat32);
    auto g_sh0 = torch::zeros({N, 1, 3}, torch::kFloat32);
    auto g_shN = torch::zeros({N, KN, 3}, torch::kFloat32);
    const float *mp = means.data_ptr<float>(), *qp = quats.data_ptr<float>(), *sp = scales.data_ptr<float>();
    const float *op = opacities.data_ptr<float>(), *c0 = sh0.data_ptr<float>(), *cN = shN.data_ptr<float>();
    const float *vm2 = v_means2d.data_ptr<float>(), *vcon = v_conics.data_ptr<float>();
    const float *vcol = v_colors.data_ptr<float>();
    const int32_t *rad = radii.data_ptr<int32_t>();
    float *gm = g_means.data_ptr<float>(), *gq = g_quats.data_ptr<float>(), *gs = g_scales.data_ptr<float>();
    float *g0 = g_sh0.data_ptr<float>(), *gN = g_shN.data_ptr<float>();

#pragma omp parallel for schedule(static) num_threads(std::max(1, at::get_num_threads())) if (N > 16384)
    for (int64_t i = 0; i < N; ++i) {
        double R[3][3], qn[4], inv_norm, M[3][3], B[16], dB[16][3];
        rotation(qp + 4 * i, R, qn, inv_norm);
        const double s3[3] = {sp[3 * i], sp[3 * i + 1], sp[3 * i + 2]};
        for (int r = 0; r < 3; ++r)
            for (int j = 0; j < 3; ++j) M[r][j] = R[r][j] * s3[j];
        double v_M[3][3] = {{0}}, v_mean[3] = {0, 0, 0}, v_c0[3] = {0, 0, 0}, v_cN[15 * 3] = {0};
        int n_cN = 0; // entries of v_cN in use
        for (int64_t c = 0; c < C; ++c) {
            const int64_t ci = c * N + i;
            if (rad[2 * ci] <= 0 || rad[2 * ci + 1] <= 0) continue;
            const Camera &k = cams[c];
            Proj p;
            project_one(k, mp + 3 * i, M, op[i], (int)width, (int)height, near_plane, far_plane, eps2d, p);
            if (!p.valid) continue;
            // ---- SH colour
            double d[3] = {mp[3 * i] - k.campos[0], mp[3 * i + 1] - k.campos[1], mp[3 * i + 2] - k.campos[2]};
            const double dn = 1.0 / std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), 1e-12);
            const double u3[3] = {d[0] * dn, d[1] * dn, d[2] * dn};
            const int K = sh_bases((int)sh_degree, u3[0], u3[1], u3[2], B, dB);
            n_cN = (K - 1) * 3;
            double v_u[3] = {0, 0, 0};
            for (int ch = 0; ch < 3; ++ch) {
                double s = B[0] * c0[3 * i + ch];
                for (int kk = 1; kk < K; ++kk) s += B[kk] * cN[(i * KN + kk - 1) * 3 + ch];
                if (!(s + 0.5 > 0.0)) continue; // clamp_min(., 0) passes no gradient below 0
                const double g = vcol[3 * ci + ch];
                v_c0[ch] += B[0] * g;
                for (int kk = 1; kk < K; ++kk) {
                    v_cN[(kk - 1) * 3 + ch] += B[kk] * g;
                    const double gc = cN[(i * KN + kk - 1) * 3 + ch] * g;
                    v_u[0] += dB[kk][0] * gc, v_u[1] += dB[kk][1] * gc, v_u[2] += dB[kk][2] * gc;
                }
            }
            // through u = d / |d|: v_d = (v_u - (v_u . u) u) / |d|
            const double vu_u = v_u[0] * u3[0] + v_u[1] * u3[1] + v_u[2] * u3[2];
            for (int j = 0; j < 3; ++j) v_mean[j] += (v_u[j] - vu_u * u3[j]) * dn;

            // ---- conic = [c, -b, a] / det
            const double id = 1.0 / p.det, id2 = id * id;
            const double g0c = vcon[3 * ci], g1c = vcon[3 * ci + 1], g2c = vcon[3 * ci + 2];
            // d(con0)/d(a,b,c) = (-c^2, 2bc, -b^2)/det^2 ; d(con1) = (bc, -(ac+b^2), ab)/det^2 ;
            // d(con2) = (-b^2, 2ab, -a^2)/det^2
            const double a = p.a, b = p.b, cc = p.c;
            const double v_a = id2 * (-cc * cc * g0c + b * cc * g1c - b * b * g2c);
            const double v_b = id2 * (2 * b * cc * g0c - (a * cc + b * b) * g1c + 2 * a * b * g2c);
            const double v_c = id2 * (-b * b * g0c + a * b * g1c - a * a * g2c);
            // a = |A1|^2 + eps, b = A1.A2, c = |A2|^2 + eps
            double v_A1[3], v_A2[3];
            for (int j = 0; j < 3; ++j) {
                v_A1[j] = 2 * v_a * p.A1[j] + v_b * p.A2[j];
                v_A2[j] = 2 * v_c * p.A2[j] + v_b * p.A1[j];
            }
            // A = T M
            double v_T1[3] = {0, 0, 0}, v_T2[3] = {0, 0, 0};
            for (int r = 0; r < 3; ++r)
                for (int j = 0; j < 3; ++j) {
                    v_T1[r] += v_A1[j] * M[r][j];
                    v_T2[r] += v_A2[j] * M[r][j];
                    v_M[r][j] += v_A1[j] * p.T1[r] + v_A2[j] * p.T2[r];
                }
            // T1 = fx rz (W0 - u W2), T2 = fy rz (W1 - v W2)
            double v_rz = 0, v_uu = 0, v_vv = 0;
            for (int j = 0; j < 3; ++j) {
                v_rz += k.fx * v_T1[j] * (k.W[0][j] - p.u * k.W[2][j]) + k.fy * v_T2[j] * (k.W[1][j] - p.v * k.W[2][j]);
                v_uu -= k.fx * p.rz * v_T1[j] * k.W[2][j];
                v_vv -= k.fy * p.rz * v_T2[j] * k.W[2][j];
            }
            double v_mc[3] = {0, 0, 0};
            if (p.u_in) v_mc[0] += v_uu * p.rz, v_rz += v_uu * p.mc[0];
            if (p.v_in) v_mc[1] += v_vv * p.rz, v_rz += v_vv * p.mc[1];
            // means2d = (fx x rz + cx, fy y rz + cy)
            const double gmx = vm2[2 * ci], gmy = vm2[2 * ci + 1];
            v_mc[0] += k.fx * p.rz * gmx;
            v_mc[1] += k.fy * p.rz * gmy;
            v_rz += k.fx * p.mc[0] * gmx + k.fy * p.mc[1] * gmy;
            v_mc[2] += -v_rz * p.rz * p.rz;
            // mc = W mean + t
            for (int j = 0; j < 3; ++j) v_mean[j] += k.W[0][j] * v_mc[0] + k.W[1][j] * v_mc[1] + k.W[2][j] * v_mc[2];
        }
        // M = R diag(s)
        double G[3][3], v_s[3] = {0, 0, 0};
        for (int r = 0; r < 3; ++r)
            for (int j = 0; j < 3; ++j) {
                G[r][j] = v_M[r][j] * s3[j];
                v_s[j] += v_M[r][j] * R[r][j];
            }
        // R(normalised q): dR/dq contracted with G, then through the normalisation
        const double w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        const double vq[4] = {
            2 * (x * (G[2][1] - G[1][2]) + y * (G[0][2] - G[2][0]) + z * (G[1][0] - G[0][1])),
            2 * (-2 * x * (G[1][1] + G[2][2]) + y * (G[0][1] + G[1][0]) + z * (G[0][2] + G[2][0]) +
                 w * (G[2][1] - G[1][2])),
            2 * (-2 * y * (G[0][0] + G[2][2]) + x * (G[0][1] + G[1][0]) + z * (G[1][2] + G[2][1]) +
                 w * (G[0][2] - G[2][0])),
            2 * (-2 * z * (G[0][0] + G[1][1]) + x * (G[0][2] + G[2][0]) + y * (G[1][2] + G[2][1]) +
                 w * (G[1][0] - G[0][1])),
        };
        const double dq = vq[0] * w + vq[1] * x + vq[2] * y + vq[3] * z;
        for (int j = 0; j < 4; ++j) gq[4 * i + j] = (float)((vq[j] - dq * qn[j]) * inv_norm);
        for (int j = 0; j < 3; ++j) {
            gs[3 * i + j] = (float)v_s[j];
            gm[3 * i + j] = (float)v_mean[j];
            g0[3 * i + j] = (float)v_c0[j];
        }
        for (int j = 0; j < n_cN; ++j) gN[i * KN * 3 + j] = (float)v_cN[j];
    }
    return {g_means, g_quats, g_scales, g_sh0, g_shN};
}
