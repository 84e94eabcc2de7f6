// pybind11 entry point of engine._native: CPU hot paths that engine.native wraps (the only PYBIND11_MODULE).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "mrope.h"
#include "partition.h"

namespace py = pybind11;

namespace {

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Lists of Python ints straight from the C++ vectors (faster than the generic STL caster for 1e6 items).
py::list to_pylist(const vthink::Partitions& parts) {
  py::list out(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    py::list inner(parts[i].size());
    for (size_t j = 0; j < parts[i].size(); ++j) {
      PyObject* v = PyLong_FromLongLong(parts[i][j]);
      if (!v) throw py::error_already_set();
      PyList_SET_ITEM(inner.ptr(), static_cast<Py_ssize_t>(j), v);  // steals the reference
    }
    out[i] = std::move(inner);
  }
  return out;
}

const int64_t* data_1d(const I64Array& a, const char* fn) {
  if (a.ndim() != 1) throw std::invalid_argument(std::string(fn) + ": lengths must be 1-D, got " + std::to_string(a.ndim()) + "-D");
  return a.data();
}

py::list balanced_partition(const I64Array& lengths, int64_t k, bool equal_size) {
  const int64_t* data = data_1d(lengths, "balanced_partition");
  vthink::Partitions parts;
  {
    py::gil_scoped_release release;
    parts = vthink::balanced_partition(data, lengths.shape(0), k, equal_size);
  }
  return to_pylist(parts);
}

py::list pack_by_budget(const I64Array& lengths, int64_t max_tokens) {
  const int64_t* data = data_1d(lengths, "pack_by_budget");
  vthink::Partitions parts;
  {
    py::gil_scoped_release release;
    parts = vthink::pack_by_budget(data, lengths.shape(0), max_tokens);
  }
  return to_pylist(parts);
}

void expect_shape(const py::array& a, std::initializer_list<int64_t> shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  size_t d = 0;
  for (int64_t want : shape) {
    if (!ok) break;
    ok = want < 0 || a.shape(d) == want;
    ++d;
  }
  if (!ok) {
    std::string got = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    throw std::invalid_argument(std::string("mrope_position_ids: ") + name + " has shape " + got + ")" +
                                ", which does not fit the other inputs");
  }
}

py::tuple mrope_position_ids(const I64Array& token_types, const std::optional<py::array_t<bool, py::array::c_style | py::array::forcecast>>& mask,
                             const I64Array& image_grid, const I64Array& video_grid,
                             const py::array_t<float, py::array::c_style | py::array::forcecast>& video_seconds,
                             float tokens_per_second, int64_t spatial_merge_size) {
  expect_shape(token_types, {-1, -1}, "mm_token_type_ids");
  const int64_t B = token_types.shape(0), L = token_types.shape(1);
  if (mask) expect_shape(*mask, {B, L}, "attention_mask");
  expect_shape(image_grid, {-1, 3}, "image_grid_thw");
  expect_shape(video_grid, {-1, 3}, "video_grid_thw");
  const int64_t n_videos = video_grid.shape(0);
  expect_shape(video_seconds, {n_videos}, "second_per_grid_ts");

  vthink::MropeInputs in;
  in.batch = B;
  in.length = L;
  in.token_types = token_types.data();
  in.mask = mask ? mask->data() : nullptr;
  in.image_grid = image_grid.data();
  in.n_images = image_grid.shape(0);
  in.video_grid = video_grid.data();
  in.n_videos = n_videos;
  in.video_seconds = video_seconds.data();
  in.tokens_per_second = tokens_per_second;
  in.spatial_merge_size = spatial_merge_size;

  py::array_t<int64_t> positions({int64_t{3}, B, L});
  py::array_t<int64_t> deltas({B, int64_t{1}});
  int64_t* pos = positions.mutable_data();
  int64_t* del = deltas.mutable_data();
  {
    py::gil_scoped_release release;
    vthink::mrope_position_ids(in, pos, del);
  }
  return py::make_tuple(positions, deltas);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "vthink native CPU hot paths (csrc/): balanced partitioning and Qwen2.5-VL M-RoPE position ids";
  m.def("balanced_partition", &balanced_partition, py::arg("lengths"), py::arg("k"), py::arg("equal_size") = false,
        "Karmarkar-Karp k-way partition of item indices (see csrc/partition.cpp for tie-breaking).");
  m.def("pack_by_budget", &pack_by_budget, py::arg("lengths"), py::arg("max_tokens"),
        "First-fit-decreasing packing of item indices into bins of at most max_tokens.");
  m.def("mrope_position_ids", &mrope_position_ids, py::arg("token_types"), py::arg("mask"), py::arg("image_grid"),
        py::arg("video_grid"), py::arg("video_seconds"), py::arg("tokens_per_second"), py::arg("spatial_merge_size"),
        "Qwen2.5-VL M-RoPE position ids [3, B, L] and deltas [B, 1]; engine.native prepares the inputs.");
}
