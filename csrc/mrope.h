// Qwen2.5-VL multimodal RoPE (M-RoPE) position ids, the native twin of transformers' get_rope_index.
#pragma once

#include <cstdint>

namespace vthink {

// How a video's temporal position is quantised, matching the dtype arithmetic transformers ends up doing.
enum IntervalMode : uint8_t {
  kIntervalInt = 0,  // t * interval in int64
  kIntervalF32 = 1,  // trunc(float(t) * float(interval))
  kIntervalF64 = 2,  // trunc(double(t) * interval)
};

struct MropeInputs {
  int64_t batch = 0, length = 0;
  const int64_t* token_types = nullptr;  // [B, L]: 0 text, 1 image, 2 video
  const bool* mask = nullptr;            // [B, L] or nullptr (all tokens attended)
  const int64_t* image_grid = nullptr;   // [n_images, 3] (t, h, w) in patches, before spatial merge
  int64_t n_images = 0;
  const int64_t* video_grid = nullptr;   // [n_videos, 3]
  int64_t n_videos = 0;
  const double* video_interval = nullptr;   // [n_videos]: tokens_per_second * second_per_grid_t, exact value
  const uint8_t* video_mode = nullptr;      // [n_videos]: IntervalMode
  int64_t spatial_merge_size = 2;
};

// Writes position ids [3, B, L] (zero where masked) and deltas [B] (max position + 1 - attended tokens).
// Throws std::invalid_argument when segments and grids do not match.
void mrope_position_ids(const MropeInputs& in, int64_t* positions, int64_t* deltas);

}  // namespace vthink
