// Fused per-Gaussian projection + SH colour for the CPU backend (see project.cpp).
#pragma once

#include <torch/extension.h>

#include <vector>

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor opacities, torch::Tensor sh0, torch::Tensor shN,
                                           torch::Tensor viewmats, torch::Tensor Ks, torch::Tensor campos,
                                           int64_t width, int64_t height, double near_plane, double far_plane,
                                           double eps2d, int64_t sh_degree);

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor opacities, torch::Tensor sh0, torch::Tensor shN,
                                            torch::Tensor viewmats, torch::Tensor Ks, torch::Tensor campos,
                                            int64_t width, int64_t height, double near_plane, double far_plane,
                                            double eps2d, int64_t sh_degree, torch::Tensor radii,
                                            torch::Tensor v_means2d, torch::Tensor v_conics, torch::Tensor v_colors);
