// The only file that knows about Python: buffers in, bytes/arrays out, the GIL
// released around coding, C++ errors mapped to gwn_fast.BitstreamError / ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>

#include "rans/cdf_table.h"
#include "rans/errors.h"
#include "rans/indexes.h"
#include "rans/rans_core.h"

namespace py = pybind11;
using Int32Array = py::array_t<int32_t, py::array::c_style>;
using DoubleArray = py::array_t<double, py::array::c_style>;

namespace {

template <class F>
Int32Array build_indexes_as(const py::array& scales, const py::array& table, int threads) {
  using Array = py::array_t<F, py::array::c_style>;
  const auto s = py::reinterpret_borrow<Array>(scales);
  const auto t = py::reinterpret_borrow<Array>(table);
  Int32Array out(std::vector<py::ssize_t>(scales.shape(), scales.shape() + scales.ndim()));
  const F* src = s.data();
  const F* tab = t.data();
  int32_t* dst = out.mutable_data();
  const auto n = static_cast<size_t>(s.size());
  const auto size = static_cast<size_t>(t.size());
  {
    py::gil_scoped_release release;
    gwn::build_indexes(src, n, tab, size, dst, threads);
  }
  return out;
}

Int32Array to_array(const std::vector<int32_t>& v, py::ssize_t rows, py::ssize_t cols) {
  Int32Array out(cols < 0 ? std::vector<py::ssize_t>{rows} : std::vector<py::ssize_t>{rows, cols});
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

std::pair<const uint8_t*, size_t> bytes_view(const py::bytes& data) {
  char* ptr = nullptr;
  py::ssize_t size = 0;
  PyBytes_AsStringAndSize(data.ptr(), &ptr, &size);
  return {reinterpret_cast<const uint8_t*>(ptr), static_cast<size_t>(size)};
}

// Keeps the stream's bytes alive as long as the decoder that points into them.
struct PyStreamDecoder {
  py::bytes data;
  std::shared_ptr<const gwn::TableSet> tables;
  std::unique_ptr<gwn::StreamDecoder> decoder;

  PyStreamDecoder(std::shared_ptr<const gwn::TableSet> t, py::bytes d)
      : data(std::move(d)), tables(std::move(t)) {
    auto view = bytes_view(data);
    decoder = std::make_unique<gwn::StreamDecoder>(*tables, view.first, view.second);
  }
};

}  // namespace

PYBIND11_MODULE(_rans, m) {
  m.doc() = "gwn_fast's C++ rANS coder (private: use gwn_fast.coder)";
  py::register_exception<gwn::BitstreamError>(m, "BitstreamError", PyExc_ValueError);
  m.attr("FORMAT_VERSION") = gwn::kFormatVersion;
  m.attr("MAX_PRECISION") = gwn::kMaxPrecision;
  m.attr("MAX_MEAN_STEPS") = gwn::kMaxMeanSteps;
  m.attr("DEFAULT_CHUNK_LOG2") = gwn::kDefaultChunkLog2;
  m.attr("MIN_CHUNK_LOG2") = gwn::kMinChunkLog2;
  m.attr("MAX_CHUNK_LOG2") = gwn::kMaxChunkLog2;
  m.attr("MULTI_LANE_MIN_SYMBOLS") = gwn::kMultiLaneMinSymbols;

  m.def(
      "stream_layout",
      [](const py::bytes& data) {
        auto view = bytes_view(data);
        const gwn::StreamLayout layout = gwn::parse_stream(view.first, view.second);
        py::list chunks;
        const uint64_t size = uint64_t{1} << layout.chunk_log2;
        for (size_t c = 0; c < layout.chunk_begin.size(); ++c) {
          const uint64_t symbols = std::min<uint64_t>(size, layout.num_symbols - c * size);
          chunks.append(py::make_tuple(layout.chunk_begin[c], layout.chunk_end[c], symbols));
        }
        return chunks;
      },
      py::arg("data"), "[(begin, end, symbols)] per chunk (byte offsets); raises BitstreamError");

  py::class_<gwn::TableSet, std::shared_ptr<gwn::TableSet>>(m, "TableSet")
      .def(py::init([](const Int32Array& cdfs, const Int32Array& lengths,
                       const Int32Array& offsets, int precision) {
             if (cdfs.ndim() != 2) throw gwn::ArgumentError("cdfs must be 2-D [T, L]");
             const auto rows = cdfs.shape(0);
             if (lengths.ndim() != 1 || lengths.shape(0) != rows) {
               throw gwn::ArgumentError("cdf_lengths must have shape [" + std::to_string(rows) + "]");
             }
             if (offsets.ndim() != 1 || offsets.shape(0) != rows) {
               throw gwn::ArgumentError("offsets must have shape [" + std::to_string(rows) + "]");
             }
             return std::make_shared<gwn::TableSet>(cdfs.data(), static_cast<int>(rows),
                                                    static_cast<int>(cdfs.shape(1)),
                                                    lengths.data(), offsets.data(), precision);
           }),
           py::arg("cdfs").noconvert(), py::arg("cdf_lengths").noconvert(),
           py::arg("offsets").noconvert(), py::arg("precision"))
      .def_static(
          "from_flat",
          [](const Int32Array& data, const Int32Array& lengths, const Int32Array& offsets,
             int precision) {
            if (data.ndim() != 1) throw gwn::ArgumentError("cdf_data must be 1-D");
            if (lengths.ndim() != 1) throw gwn::ArgumentError("cdf_lengths must be 1-D");
            if (offsets.ndim() != 1 || offsets.shape(0) != lengths.shape(0)) {
              throw gwn::ArgumentError("offsets must have shape [" +
                                       std::to_string(lengths.shape(0)) + "]");
            }
            return std::make_shared<gwn::TableSet>(
                data.data(), static_cast<size_t>(data.shape(0)),
                static_cast<int>(lengths.shape(0)), lengths.data(), offsets.data(), precision);
          },
          py::arg("cdf_data").noconvert(), py::arg("cdf_lengths").noconvert(),
          py::arg("offsets").noconvert(), py::arg("precision"),
          "Tables from the compact layout: row t is the cdf_lengths[t] entries after row t-1")
      .def_property_readonly(
          "cdf_data",
          [](py::object self) {
            const auto& t = self.cast<const gwn::TableSet&>();
            const auto& v = t.cdf_data();
            // A read-only int32 view of the C++ rows (all < 2^31), kept alive by `self`.
            py::array_t<int32_t> out({static_cast<py::ssize_t>(v.size())}, {sizeof(int32_t)},
                                     reinterpret_cast<const int32_t*>(v.data()), self);
            py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
            return out;
          })
      .def_property_readonly("nbytes", &gwn::TableSet::nbytes)
      .def_property_readonly("precision", &gwn::TableSet::precision)
      .def_property_readonly("num_tables", &gwn::TableSet::num_tables)
      .def_property_readonly("fingerprint", &gwn::TableSet::fingerprint);

  m.def(
      "build_gaussian_tables",
      [](const DoubleArray& scales, int precision, double tail_mass, int mean_steps) {
        if (scales.ndim() != 1) throw gwn::ArgumentError("scale_table must be 1-D");
        gwn::FlatTables flat;
        {
          py::gil_scoped_release release;
          gwn::build_gaussian_tables_flat(scales.data(), static_cast<int>(scales.shape(0)),
                                          precision, tail_mass, mean_steps, flat);
        }
        const auto t = static_cast<py::ssize_t>(flat.lengths.size());
        return py::make_tuple(to_array(flat.data, static_cast<py::ssize_t>(flat.data.size()), -1),
                              to_array(flat.lengths, t, -1), to_array(flat.offsets, t, -1));
      },
      py::arg("scale_table").noconvert(), py::arg("precision"), py::arg("tail_mass"),
      py::arg("mean_steps") = 1,
      "(cdf_data, cdf_lengths, offsets) in the compact layout");

  m.def(
      "build_pmf_tables",
      [](const DoubleArray& pmfs, const Int32Array& pmf_lengths, int precision) {
        if (pmfs.ndim() != 2) throw gwn::ArgumentError("pmfs must be 2-D [T, K]");
        if (pmf_lengths.ndim() != 1 || pmf_lengths.shape(0) != pmfs.shape(0)) {
          throw gwn::ArgumentError("pmf_lengths must have one entry per pmfs row");
        }
        std::vector<int32_t> data, lengths;
        gwn::build_pmf_tables_flat(pmfs.data(), static_cast<int>(pmfs.shape(0)),
                                   static_cast<int>(pmfs.shape(1)), pmf_lengths.data(), precision,
                                   data, lengths);
        return py::make_tuple(to_array(data, static_cast<py::ssize_t>(data.size()), -1),
                              to_array(lengths, pmfs.shape(0), -1));
      },
      py::arg("pmfs").noconvert(), py::arg("pmf_lengths").noconvert(), py::arg("precision"),
      "(cdf_data, cdf_lengths) in the compact layout");

  m.def("normal_upper_tail", &gwn::normal_upper_tail, py::arg("x"));

  m.def(
      "encode",
      [](const gwn::TableSet& tables, const Int32Array& symbols, const Int32Array& indexes,
         int threads, int chunk_log2) {
        if (symbols.size() != indexes.size()) {
          throw gwn::ArgumentError("symbols and indexes must have the same size");
        }
        std::vector<uint8_t> out;
        {
          py::gil_scoped_release release;
          out = gwn::encode(tables, symbols.data(), indexes.data(),
                            static_cast<size_t>(symbols.size()), threads, chunk_log2);
        }
        return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
      },
      py::arg("tables"), py::arg("symbols").noconvert(), py::arg("indexes").noconvert(),
      py::arg("threads"), py::arg("chunk_log2"));

  m.def(
      "build_indexes",
      [](const py::array& scales, const py::array& table, int threads) {
        // No conversion here: the facade casts the table to the scales' dtype and makes
        // both C-contiguous, so a mismatch is a caller bug, reported as such.
        const bool is_f32 = py::isinstance<py::array_t<float, py::array::c_style>>(scales);
        const bool is_f64 = py::isinstance<py::array_t<double, py::array::c_style>>(scales);
        if (!is_f32 && !is_f64) {
          throw gwn::ArgumentError("scales must be a C-contiguous float32 or float64 array");
        }
        if (!table.dtype().is(scales.dtype()) || !(table.flags() & py::array::c_style)) {
          throw gwn::ArgumentError("table must be a C-contiguous array of the scales' dtype");
        }
        if (table.ndim() != 1) throw gwn::ArgumentError("table must be 1-D");
        return is_f32 ? build_indexes_as<float>(scales, table, threads)
                      : build_indexes_as<double>(scales, table, threads);
      },
      py::arg("scales"), py::arg("table"), py::arg("threads"),
      "int32 table index per scale (shape of scales); see gwn_fast.coder.build_indexes");

  m.def(
      "decode",
      [](const gwn::TableSet& tables, const py::bytes& data, const Int32Array& indexes,
         int threads) {
        Int32Array out(indexes.size());
        auto view = bytes_view(data);
        int32_t* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          gwn::decode(tables, view.first, view.second, indexes.data(), dst,
                      static_cast<size_t>(indexes.size()), threads);
        }
        return out;
      },
      py::arg("tables"), py::arg("data"), py::arg("indexes").noconvert(), py::arg("threads"));

  py::class_<PyStreamDecoder>(m, "StreamDecoder")
      .def(py::init<std::shared_ptr<const gwn::TableSet>, py::bytes>(), py::arg("tables"),
           py::arg("data"))
      .def(
          "decode",
          [](PyStreamDecoder& self, const Int32Array& indexes) {
            Int32Array out(indexes.size());
            int32_t* dst = out.mutable_data();
            {
              py::gil_scoped_release release;
              self.decoder->decode(indexes.data(), dst, static_cast<size_t>(indexes.size()));
            }
            return out;
          },
          py::arg("indexes").noconvert())
      .def("finish", [](PyStreamDecoder& self) { self.decoder->finish(); })
      .def_property_readonly("num_symbols",
                             [](const PyStreamDecoder& self) { return self.decoder->num_symbols(); })
      .def_property_readonly("position",
                             [](const PyStreamDecoder& self) { return self.decoder->position(); });
}
