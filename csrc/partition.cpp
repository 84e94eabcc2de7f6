// Karmarkar-Karp largest-differencing partitioning and first-fit-decreasing packing (engine.native mirrors it in Python).
//
// Karmarkar-Karp, as verl's seqlen_balancing runs it: every item (or, with equal_size, every run of
// k consecutive items in ascending (length, index) order) starts as a "state" of k sets. The two
// states with the largest spread (max set sum - min set sum) are popped and merged by pairing the
// i-th largest set of the first with the i-th smallest set of the second; repeat until one state is
// left. Its sets are the partitions.
//
// Tie-breaking (shared bit for bit with the Python fallback):
//   * sets inside a state are ordered by sum desc, then item count desc, then smallest index asc;
//   * the heap pops the largest spread first, then the largest top-set sum, then the oldest state
//     (initial states are numbered in ascending (length, index) order, each merge gets the next number).
#include "partition.h"

#include <algorithm>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>

namespace vthink {
namespace {

void check_lengths(const int64_t* lengths, int64_t n, const char* fn) {
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (lengths[i] < 0)
      throw std::invalid_argument(std::string(fn) + ": lengths[" + std::to_string(i) + "] = " +
                                  std::to_string(lengths[i]) + " is negative");
    if (__builtin_add_overflow(total, lengths[i], &total))
      throw std::invalid_argument(std::string(fn) + ": the sum of lengths overflows int64");
  }
}

// Only non-empty sets are stored: a state holds at most min(k, items) of them, so memory stays O(n)
// however large k is. Missing sets are the empty ones at the end of the descending order.
struct KSet {
  int64_t sum, size, minidx, head, tail;  // head/tail: a linked list of item indices through `next`
};

bool set_before(const KSet& a, const KSet& b) {
  if (a.sum != b.sum) return a.sum > b.sum;
  if (a.size != b.size) return a.size > b.size;
  return a.minidx < b.minidx;
}

struct HeapEntry {
  int64_t spread, top, seq;
  int64_t slot;  // index into the state pool
};

// std::priority_queue pops the greatest element; "a < b" means b pops first.
struct PopsLater {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    if (a.spread != b.spread) return a.spread < b.spread;
    if (a.top != b.top) return a.top < b.top;
    return a.seq > b.seq;
  }
};

HeapEntry entry_of(const std::vector<KSet>& sets, int64_t k, int64_t seq, int64_t slot) {
  const int64_t top = sets.front().sum;
  const int64_t bottom = static_cast<int64_t>(sets.size()) == k ? sets.back().sum : 0;
  return {top - bottom, top, seq, slot};
}

// Item indices sorted by (key(i), i) ascending, where key(i) = lengths[i] (or -lengths[i] with `descending`).
// When key and index fit together in 64 bits (the usual case) one packed integer sort replaces a
// pair sort, which halves the time for 1e6 items.
std::vector<int64_t> sorted_order(const int64_t* lengths, int64_t n, bool descending) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  int64_t max_len = 0;
  for (int64_t i = 0; i < n; ++i) max_len = std::max(max_len, lengths[i]);
  const int idx_bits = n > 1 ? 64 - __builtin_clzll(static_cast<unsigned long long>(n - 1)) : 0;
  const int len_bits = max_len > 0 ? 64 - __builtin_clzll(static_cast<unsigned long long>(max_len)) : 0;
  if (idx_bits + len_bits <= 63) {
    std::vector<uint64_t> packed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t key = static_cast<uint64_t>(descending ? max_len - lengths[i] : lengths[i]);
      packed[static_cast<size_t>(i)] = (key << idx_bits) | static_cast<uint64_t>(i);
    }
    std::sort(packed.begin(), packed.end());
    const uint64_t mask = idx_bits ? (~uint64_t{0} >> (64 - idx_bits)) : 0;
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = static_cast<int64_t>(packed[static_cast<size_t>(i)] & mask);
    return order;
  }
  std::vector<std::pair<int64_t, int64_t>> pairs(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pairs[static_cast<size_t>(i)] = {descending ? -lengths[i] : lengths[i], i};
  std::sort(pairs.begin(), pairs.end());
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = pairs[static_cast<size_t>(i)].second;
  return order;
}

}  // namespace

Partitions balanced_partition(const int64_t* lengths, int64_t n, int64_t k, bool equal_size) {
  if (k < 1) throw std::invalid_argument("balanced_partition: k must be >= 1, got " + std::to_string(k));
  if (n < 0) throw std::invalid_argument("balanced_partition: negative item count");
  check_lengths(lengths, n, "balanced_partition");
  if (equal_size && n % k != 0)
    throw std::invalid_argument("balanced_partition: equal_size needs len(lengths) divisible by k, got " +
                                std::to_string(n) + " items for k = " + std::to_string(k));
  Partitions out;
  if (n == 0) {
    out.resize(static_cast<size_t>(k));
    return out;
  }

  const std::vector<int64_t> order = sorted_order(lengths, n, /*descending=*/false);

  std::vector<int64_t> next(static_cast<size_t>(n), -1);
  std::vector<std::vector<KSet>> pool;
  std::vector<HeapEntry> initial;
  const int64_t group = equal_size ? k : 1;
  pool.reserve(static_cast<size_t>(n / group));
  initial.reserve(static_cast<size_t>(n / group));
  for (int64_t off = 0; off < n; off += group) {
    std::vector<KSet> sets;
    sets.reserve(static_cast<size_t>(group));
    for (int64_t j = 0; j < group; ++j) {
      const int64_t idx = order[static_cast<size_t>(off + j)];
      sets.push_back({lengths[idx], 1, idx, idx, idx});
    }
    std::sort(sets.begin(), sets.end(), set_before);
    const int64_t slot = static_cast<int64_t>(pool.size());
    initial.push_back(entry_of(sets, k, slot, slot));
    pool.push_back(std::move(sets));
  }
  int64_t seq = static_cast<int64_t>(pool.size());
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, PopsLater> heap(PopsLater{}, std::move(initial));

  std::vector<KSet> merged;
  while (heap.size() > 1) {
    const HeapEntry e0 = heap.top();
    heap.pop();
    const HeapEntry e1 = heap.top();
    heap.pop();
    std::vector<KSet>& A = pool[static_cast<size_t>(e0.slot)];
    std::vector<KSet>& B = pool[static_cast<size_t>(e1.slot)];
    const int64_t p = static_cast<int64_t>(A.size()), q = static_cast<int64_t>(B.size());
    merged.clear();
    // Set i of A pairs with set k-1-i of B; only positions where either side is non-empty matter:
    // i < p (A non-empty) or k-1-i < q (B non-empty).
    auto pair_at = [&](int64_t i) {
      const int64_t j = k - 1 - i;
      const bool has_a = i < p, has_b = j < q;
      if (has_a && has_b) {
        KSet s = A[static_cast<size_t>(i)];
        const KSet& b = B[static_cast<size_t>(j)];
        s.sum += b.sum;
        s.size += b.size;
        s.minidx = std::min(s.minidx, b.minidx);
        next[static_cast<size_t>(s.tail)] = b.head;
        s.tail = b.tail;
        merged.push_back(s);
      } else if (has_a) {
        merged.push_back(A[static_cast<size_t>(i)]);
      } else {
        merged.push_back(B[static_cast<size_t>(j)]);
      }
    };
    for (int64_t i = 0; i < p; ++i) pair_at(i);
    for (int64_t i = std::max(p, k - q); i < k; ++i) pair_at(i);
    std::sort(merged.begin(), merged.end(), set_before);
    A.swap(merged);
    std::vector<KSet>().swap(B);  // free the absorbed state
    heap.push(entry_of(A, k, seq++, e0.slot));
  }

  // Label every item with its part, then fill parts in index order: ascending without a sort.
  const std::vector<KSet>& final_sets = pool[static_cast<size_t>(heap.top().slot)];
  std::vector<int64_t> owner(static_cast<size_t>(n));
  out.resize(static_cast<size_t>(k));
  for (size_t s = 0; s < final_sets.size(); ++s) {
    out[s].reserve(static_cast<size_t>(final_sets[s].size));
    for (int64_t i = final_sets[s].head; i != -1; i = next[static_cast<size_t>(i)]) owner[static_cast<size_t>(i)] = static_cast<int64_t>(s);
  }
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(owner[static_cast<size_t>(i)])].push_back(i);
  return out;
}

Partitions pack_by_budget(const int64_t* lengths, int64_t n, int64_t max_tokens) {
  if (max_tokens < 1)
    throw std::invalid_argument("pack_by_budget: max_tokens must be >= 1, got " + std::to_string(max_tokens));
  for (int64_t i = 0; i < n; ++i) {
    if (lengths[i] < 0)
      throw std::invalid_argument("pack_by_budget: lengths[" + std::to_string(i) + "] = " +
                                  std::to_string(lengths[i]) + " is negative");
    if (lengths[i] > max_tokens)
      throw std::invalid_argument("pack_by_budget: lengths[" + std::to_string(i) + "] = " +
                                  std::to_string(lengths[i]) + " exceeds max_tokens = " + std::to_string(max_tokens));
  }
  Partitions bins;
  if (n == 0) return bins;
  const std::vector<int64_t> order = sorted_order(lengths, n, /*descending=*/true);  // ties: input order

  // Max segment tree over the candidate bins' free room; unopened bins have full room, so "leftmost
  // bin with room" is exactly first fit, opening a new bin when none fits. First fit never leaves two
  // bins at most half full (the later one's items would have fit the earlier), so it opens fewer than
  // 2 * total / max_tokens + 1 bins: the tree needs no more leaves than that (or n).
  unsigned __int128 total = 0;  // n * max_tokens may exceed int64
  for (int64_t i = 0; i < n; ++i) total += static_cast<unsigned __int128>(lengths[i]);
  const unsigned __int128 bound = total / static_cast<unsigned __int128>(max_tokens) * 2 + 2;
  const int64_t cap = bound < static_cast<unsigned __int128>(n) ? static_cast<int64_t>(bound) : n;
  int64_t size = 1;
  while (size < cap) size <<= 1;
  std::vector<int64_t> room(static_cast<size_t>(2 * size), -1);
  for (int64_t i = 0; i < cap; ++i) room[static_cast<size_t>(size + i)] = max_tokens;
  for (int64_t v = size - 1; v >= 1; --v) room[v] = std::max(room[2 * v], room[2 * v + 1]);
  for (const int64_t i : order) {
    const int64_t len = lengths[i];
    int64_t v = 1;
    while (v < size) v = room[2 * v] >= len ? 2 * v : 2 * v + 1;
    const int64_t b = v - size;
    if (b == static_cast<int64_t>(bins.size())) bins.emplace_back();
    bins[static_cast<size_t>(b)].push_back(i);
    room[v] -= len;
    for (v >>= 1; v >= 1; v >>= 1) room[v] = std::max(room[2 * v], room[2 * v + 1]);
  }
  return bins;
}

}  // namespace vthink
