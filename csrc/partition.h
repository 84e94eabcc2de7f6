// Balanced partitioning of item lengths: Karmarkar-Karp largest differencing and first-fit-decreasing packing.
#pragma once

#include <cstdint>
#include <vector>

namespace vthink {

using Partitions = std::vector<std::vector<int64_t>>;

// Karmarkar-Karp (largest differencing) k-way partition of item indices; see partition.cpp for tie-breaking.
// Returns exactly k partitions (trailing ones empty when there are fewer items than k), in decreasing
// order of load, indices ascending inside each. Throws std::invalid_argument on bad input.
Partitions balanced_partition(const int64_t* lengths, int64_t n, int64_t k, bool equal_size);

// First-fit decreasing: items by decreasing length (ties: input order) go to the first bin with room.
Partitions pack_by_budget(const int64_t* lengths, int64_t n, int64_t max_tokens);

}  // namespace vthink
