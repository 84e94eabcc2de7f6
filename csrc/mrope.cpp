// Qwen2.5-VL M-RoPE position ids in one pass over the tokens, by the original published rule.
//
// Per row, attended tokens are grouped into maximal runs of one token type. Every text run and every
// vision segment starts at (max of all earlier positions in the row) + 1, or 0 first. Text tokens count
// up by one on all three axes. The n-th image (video) run across the whole batch takes the n-th row of
// image_grid_thw (video_grid_thw) and enumerates (t, h, w) with h, w divided by the spatial merge size;
// its positions are start + (temporal(t), h, w), where a video's temporal id is
// long(float32(float32(t * second_per_grid_t) * tokens_per_second)) and an image's is 0. So the text after
// a long video starts past the video's last *temporal* position, not at start + max(h, w) / merge (the
// transformers 5.x rule, which the released models were not trained with).
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

// A video's temporal id of grid index t, in float32 as the original (a float tensor times Python scalars).
inline int64_t video_temporal(int64_t t, float seconds, float tokens_per_second) {
  const float scaled = static_cast<float>(t) * seconds;
  return static_cast<int64_t>(static_cast<float>(scaled * tokens_per_second));
}

}  // namespace

void mrope_position_ids(const MropeInputs& in, int64_t* positions, int64_t* deltas) {
  const int64_t B = in.batch, L = in.length, s = in.spatial_merge_size;
  if (s < 1) fail("spatial_merge_size must be >= 1, got " + std::to_string(s));
  int64_t* P[3] = {positions, positions + B * L, positions + 2 * B * L};
  std::fill(positions, positions + 3 * B * L, int64_t{1});
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
    int64_t next = 0;  // max of all earlier positions + 1: where the next run starts
    int64_t attended = 0;
    int64_t j = next_attended(0);
    while (j < L) {
      const int64_t type = types[j];
      if (type == 0) {
        p0[j] = p1[j] = p2[j] = next;
        ++next;
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
      float seconds = 0.0f;  // images: every temporal id is 0
      if (type == 2) {
        seconds = in.video_seconds[g];
        // Keep every temporal id far inside int64 so the float->int conversion is defined.
        const double span = static_cast<double>(seconds) * in.tokens_per_second * static_cast<double>(lt);
        if (!std::isfinite(seconds) || seconds < 0 || !(span < 1e15))
          fail("second_per_grid_ts " + std::to_string(seconds) + " of " + where + " is negative, not finite or too large");
      }
      const int64_t start = next, run_start = j;
      int64_t count = 0;
      int64_t max_t = 0;
      for (int64_t t = 0; t < lt && count >= 0; ++t) {
        const int64_t tt = type == 2 ? video_temporal(t, seconds, in.tokens_per_second) : 0;
        max_t = std::max(max_t, tt);
        const int64_t tp = start + tt;
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
      if (__builtin_add_overflow(start, std::max({max_t, lh - 1, lw - 1}) + 1, &next)) fail(where + " is too large");
    }
    if (attended == 0) fail("row " + std::to_string(b) + " has no attended tokens");
    deltas[b] = next - L;
  }
  if (next_grid[1] != in.n_images)
    fail("image_grid_thw has " + std::to_string(in.n_images) + " rows but the batch has " +
         std::to_string(next_grid[1]) + " image segments");
  if (next_grid[2] != in.n_videos)
    fail("video_grid_thw has " + std::to_string(in.n_videos) + " rows but the batch has " +
         std::to_string(next_grid[2]) + " video segments");
}

}  // namespace vthink
