// Qwen2.5-VL multimodal RoPE (M-RoPE) position ids by the original published rule (the one the released
// models were trained with, and vLLM implements).
#pragma once

#include <cstdint>

namespace vthink {

struct MropeInputs {
  int64_t batch = 0, length = 0;
  const int64_t* token_types = nullptr;  // [B, L]: 0 text, 1 image, 2 video
  const bool* mask = nullptr;            // [B, L] or nullptr (all tokens attended)
  const int64_t* image_grid = nullptr;   // [n_images, 3] (t, h, w) in patches, before spatial merge
  int64_t n_images = 0;
  const int64_t* video_grid = nullptr;   // [n_videos, 3]
  int64_t n_videos = 0;
  const float* video_seconds = nullptr;  // [n_videos]: second_per_grid_t, as float32
  float tokens_per_second = 1.0f;
  int64_t spatial_merge_size = 2;
};

// Writes position ids [3, B, L] (1 where masked, as the original) and deltas [B] (max position + 1 - L,
// so a decode step at cache position L + k sits at max + 1 + k). Throws std::invalid_argument when
// segments and grids do not match.
void mrope_position_ids(const MropeInputs& in, int64_t* positions, int64_t* deltas);

}  // namespace vthink
