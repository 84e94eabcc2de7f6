// Qwen2.5-VL M-RoPE position ids in one pass over the tokens (semantics of transformers 5.19 get_rope_index).
//
// Per row, attended tokens are grouped into maximal runs of one token type. A text run continues the
// 1-D position counter. The n-th image (video) run across the whole batch takes the n-th row of
// image_grid_thw (video_grid_thw): its tokens enumerate (t, h, w) with h, w divided by the spatial
// merge size; positions are (start + trunc(t * interval), start + h, start + w), and the counter then
// advances by max(grid_h, grid_w) / merge. Deltas are max position + 1 - number of attended tokens.
#include "mrope.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace vthink {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("mrope_position_ids: " + msg); }

const char* grid_name(int64_t type) { return type == 1 ? "image_grid_thw" : "video_grid_thw"; }

// Temporal offset of temporal index t: the arithmetic transformers performs for this video's dtype.
inline int64_t temporal(int64_t t, double interval, uint8_t mode) {
  switch (mode) {
    case kIntervalF32: return static_cast<int64_t>(static_cast<float>(t) * static_cast<float>(interval));
    case kIntervalF64: return static_cast<int64_t>(static_cast<double>(t) * interval);
    default: return t * static_cast<int64_t>(interval);
  }
}

}  // namespace

void mrope_position_ids(const MropeInputs& in, int64_t* positions, int64_t* deltas) {
  const int64_t B = in.batch, L = in.length, s = in.spatial_merge_size;
  if (s < 1) fail("spatial_merge_size must be >= 1, got " + std::to_string(s));
  int64_t* P[3] = {positions, positions + B * L, positions + 2 * B * L};
  std::fill(positions, positions + 3 * B * L, int64_t{0});
  int64_t next_grid[3] = {0, 0, 0};  // indexed by token type (1 image, 2 video)

  for (int64_t b = 0; b < B; ++b) {
    const int64_t* types = in.token_types + b * L;
    const bool* mask = in.mask ? in.mask + b * L : nullptr;
    int64_t* p0 = P[0] + b * L;
    int64_t* p1 = P[1] + b * L;
    int64_t* p2 = P[2] + b * L;
    auto next_attended = [&](int64_t j) {
      if (mask)
        while (j < L && !mask[j]) ++j;
      return j;
    };
    int64_t cur = 0, max_pos = std::numeric_limits<int64_t>::min(), attended = 0;
    int64_t j = next_attended(0);
    while (j < L) {
      const int64_t type = types[j];
      if (type == 0) {
        p0[j] = p1[j] = p2[j] = cur;
        max_pos = std::max(max_pos, cur);
        ++cur;
        ++attended;
        j = next_attended(j + 1);
        continue;
      }
      if (type != 1 && type != 2)
        fail("mm_token_type_ids[" + std::to_string(b) + ", " + std::to_string(j) + "] = " + std::to_string(type) +
             " (expected 0 text, 1 image or 2 video)");
      const int64_t n_grids = type == 1 ? in.n_images : in.n_videos;
      const int64_t g = next_grid[type]++;
      if (g >= n_grids)
        fail("row " + std::to_string(b) + " has more " + (type == 1 ? "image" : "video") + " segments than " +
             grid_name(type) + " has rows (" + std::to_string(n_grids) + ")");
      const int64_t* thw = (type == 1 ? in.image_grid : in.video_grid) + 3 * g;
      const std::string where = std::string(grid_name(type)) + "[" + std::to_string(g) + "] (row " +
                                std::to_string(b) + ", token " + std::to_string(j) + ")";
      if (thw[0] < 0 || thw[1] < 0 || thw[2] < 0) fail(where + " has a negative entry");
      const int64_t lt = thw[0], lh = thw[1] / s, lw = thw[2] / s;
      int64_t expected = 0;
      if (__builtin_mul_overflow(lt, lh, &expected) || __builtin_mul_overflow(expected, lw, &expected))
        fail(where + " is too large");
      double interval = 1.0;
      uint8_t mode = kIntervalInt;
      if (type == 2) {
        interval = in.video_interval[g];
        mode = in.video_mode[g];
        // Keep every temporal offset far inside int64 so the float->int conversion is defined.
        if (!std::isfinite(interval) || std::fabs(interval) * static_cast<double>(lt) > 1e15)
          fail("temporal interval " + std::to_string(interval) + " of " + where + " is not finite or too large");
      }
      const int64_t start = cur, run_start = j;
      int64_t count = 0;
      int64_t max_t = std::numeric_limits<int64_t>::min();
      for (int64_t t = 0; t < lt && count >= 0; ++t) {
        const int64_t tp = start + temporal(t, interval, mode);
        max_t = std::max(max_t, tp);
        for (int64_t h = 0; h < lh && count >= 0; ++h) {
          for (int64_t w = 0; w < lw; ++w) {
            if (j >= L || types[j] != type) {
              count = -1;  // the run ended before the grid was filled
              break;
            }
            p0[j] = tp;
            p1[j] = start + h;
            p2[j] = start + w;
            ++count;
            j = next_attended(j + 1);
          }
        }
      }
      if (count < 0 || (j < L && types[j] == type)) {
        // Count the whole run only on this error path, for the message.
        int64_t run = 0;
        for (int64_t i = run_start; i < L && types[i] == type; i = next_attended(i + 1)) ++run;
        fail(where + " = (" + std::to_string(thw[0]) + ", " + std::to_string(thw[1]) + ", " +
             std::to_string(thw[2]) + ") needs " + std::to_string(expected) + " tokens at spatial_merge_size " +
             std::to_string(s) + " but the segment has " + std::to_string(run));
      }
      attended += expected;
      if (expected > 0) max_pos = std::max({max_pos, max_t, start + lh - 1, start + lw - 1});
      if (__builtin_add_overflow(cur, std::max(thw[1], thw[2]) / s, &cur)) fail(where + " is too large");
    }
    if (attended == 0) fail("row " + std::to_string(b) + " has no attended tokens");
    deltas[b] = max_pos + 1 - attended;
  }
  if (next_grid[1] != in.n_images)
    fail("image_grid_thw has " + std::to_string(in.n_images) + " rows but the batch has " +
         std::to_string(next_grid[1]) + " image segments");
  if (next_grid[2] != in.n_videos)
    fail("video_grid_thw has " + std::to_string(in.n_videos) + " rows but the batch has " +
         std::to_string(next_grid[2]) + " video segments");
}

}  // namespace vthink
