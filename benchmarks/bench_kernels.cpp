// Dot-product throughput of every kernel table on this CPU, in GB/s of weight bytes (the
// number that bounds decode speed). Three working sets per type:
//   row/4096          one row, re-read every iteration: L1-resident, shows compute speed;
//   matrix/2048x2048  a matrix-vector product that fits in L2/L3;
//   matrix/16384x4096 larger than the L3 of common CPUs: memory-bound, like real decode.
// Run: build-kernels/bin/bench_kernels [--benchmark_filter=q4_K]
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/fp16.h"
#include "kernels/cpu_kernels.h"
#include "kernels/packed_weights.h"
#include "kernels/quant.h"

namespace infergrid {
namespace {

// xorshift64: fills hundreds of MB of random weights fast enough to not dominate start-up.
struct FastRng {
  uint64_t state = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24); }
};

// Random weight bytes with valid, small block scales (NaN/inf scales would not change speed,
// but keep the results meaningful).
void fill_weights(TensorType type, uint8_t* data, size_t bytes, FastRng& rng) {
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t v = rng.next();
    std::memcpy(data + i, &v, 8);
  }
  const auto traits = *tensor_type_traits(type);
  auto set_half = [&](uint8_t* p) {
    const uint16_t h = fp32_to_fp16(0.01f + 0.01f * rng.uniform());
    std::memcpy(p, &h, 2);
  };
  for (size_t off = 0; off + traits.block_bytes <= bytes; off += traits.block_bytes) {
    uint8_t* b = data + off;
    switch (type) {
      case TensorType::kF32: {
        const float f = rng.uniform() - 0.5f;
        std::memcpy(b, &f, 4);
        break;
      }
      case TensorType::kF16:
      case TensorType::kQ4_0:
      case TensorType::kQ8_0:
        set_half(b);
        break;
      case TensorType::kBF16: {
        const uint16_t h = fp32_to_bf16(rng.uniform() - 0.5f);
        std::memcpy(b, &h, 2);
        break;
      }
      case TensorType::kQ4_K:
        set_half(b);
        set_half(b + 2);
        break;
      case TensorType::kQ6_K:
        set_half(b + offsetof(BlockQ6_K, d));
        break;
      default:
        break;
    }
  }
}

// Google Benchmark calls a benchmark function several times while sizing its iteration count;
// building a multi-hundred-MB matrix once per (type, shape) keeps start-up short, and every
// table reads the same bytes.
const AlignedBuffer<uint8_t>& cached_weights(TensorType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<TensorType, int64_t, int64_t>, AlignedBuffer<uint8_t>> cache;
  AlignedBuffer<uint8_t>& w = cache[{type, rows, cols}];
  if (w.size() == 0) {
    FastRng rng;
    w.resize(tensor_row_bytes(type, cols) * static_cast<size_t>(rows));
    fill_weights(type, w.data(), w.size(), rng);
  }
  return w;
}

void bench_dot(benchmark::State& state, const CpuKernels* k, TensorType type, int64_t rows,
               int64_t cols) {
  const size_t row_bytes = tensor_row_bytes(type, cols);
  const AlignedBuffer<uint8_t>& w = cached_weights(type, rows, cols);
  FastRng rng;

  std::vector<float> xf(static_cast<size_t>(cols));
  for (float& v : xf) v = rng.uniform() - 0.5f;
  const TensorType dot_type = tensor_type_traits(type)->dot_type;
  AlignedBuffer<uint8_t> x(tensor_row_bytes(dot_type, cols));
  if (QuantizeActFn quantize = k->quantize_for(dot_type)) {
    quantize(xf.data(), x.data(), cols);
  } else {
    std::memcpy(x.data(), xf.data(), x.size());
  }

  const VecDotFn dot = k->dot_for(type);
  for (auto _ : state) {
    float sum = 0;
    for (int64_t r = 0; r < rows; ++r) sum += dot(cols, w.data() + row_bytes * r, x.data());
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(row_bytes) * rows);
}

// n_x random activation rows of `cols`, quantized by k to the dot type of `type`.
AlignedBuffer<uint8_t> quantized_activations(const CpuKernels* k, TensorType type, int64_t cols,
                                             int64_t n_x) {
  FastRng rng;
  std::vector<float> xf(static_cast<size_t>(cols * n_x));
  for (float& v : xf) v = rng.uniform() - 0.5f;
  const TensorType dot_type = tensor_type_traits(type)->dot_type;
  const size_t x_row_bytes = tensor_row_bytes(dot_type, cols);
  AlignedBuffer<uint8_t> x(x_row_bytes * static_cast<size_t>(n_x));
  for (int64_t c = 0; c < n_x; ++c) {
    k->quantize_for(dot_type)(xf.data() + c * cols, x.data() + c * x_row_bytes, cols);
  }
  return x;
}

// Weight GB/s (each weight byte read once per call) and GFLOP/s (2 * rows * cols * n_x per call).
void set_matrix_counters(benchmark::State& state, TensorType type, int64_t rows, int64_t cols,
                         int64_t n_x) {
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(tensor_row_bytes(type, cols)) *
                          rows);
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(rows * cols * n_x),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// The tiled dot over a whole matrix and n_x activation rows, as matmul calls it.
void bench_mat_dot(benchmark::State& state, const CpuKernels* k, TensorType type, int64_t rows,
                   int64_t cols, int64_t n_x) {
  const size_t row_bytes = tensor_row_bytes(type, cols);
  const AlignedBuffer<uint8_t>& w = cached_weights(type, rows, cols);
  const AlignedBuffer<uint8_t> x = quantized_activations(k, type, cols, n_x);
  const size_t x_row_bytes = x.size() / static_cast<size_t>(n_x);
  std::vector<float> y(static_cast<size_t>(rows * n_x));
  const MatDotFn mat_dot = k->mat_dot_for(type);
  for (auto _ : state) {
    mat_dot(cols, w.data(), row_bytes, rows, x.data(), x_row_bytes, n_x, y.data(), rows);
    benchmark::ClobberMemory();
  }
  set_matrix_counters(state, type, rows, cols, n_x);
}

// The packed integer GEMM over the same matrix (packed once, outside the timing), as matmul
// calls it for a packed view; bytes are those of the plain rows it replaces.
void bench_packed(benchmark::State& state, const CpuKernels* k, TensorType type, int64_t rows,
                  int64_t cols, int64_t n_x) {
  const PackedKernel& packed = *k->packed_for(type);
  const AlignedBuffer<uint8_t>& w = cached_weights(type, rows, cols);
  MatrixView view{type, w.data(), cols, rows, tensor_row_bytes(type, cols)};
  const AlignedBuffer<uint8_t> storage = pack_weights_for(*k, view);
  const AlignedBuffer<uint8_t> x = quantized_activations(k, type, cols, n_x);
  const size_t x_row_bytes = x.size() / static_cast<size_t>(n_x);
  const int64_t per_row = packed.sums_per_row(cols);
  std::vector<int32_t> sums(static_cast<size_t>(per_row * n_x));
  for (int64_t c = 0; c < n_x; ++c) {
    packed.act_sums(x.data() + c * x_row_bytes, cols, sums.data() + c * per_row);
  }
  std::vector<float> y(static_cast<size_t>(rows * n_x));
  const int64_t n_groups = view.packed_rows / kPackedRowGroup;
  for (auto _ : state) {
    packed.mat_dot(cols, view.packed, n_groups, x.data(), x_row_bytes, sums.data(), n_x, y.data(),
                   rows);
    benchmark::ClobberMemory();
  }
  set_matrix_counters(state, type, rows, cols, n_x);
}

void bench_quantize(benchmark::State& state, const CpuKernels* k, TensorType dot_type) {
  constexpr int64_t kCols = 4096;
  FastRng rng;
  std::vector<float> xf(kCols);
  for (float& v : xf) v = rng.uniform() - 0.5f;
  AlignedBuffer<uint8_t> x(tensor_row_bytes(dot_type, kCols));
  const QuantizeActFn quantize = k->quantize_for(dot_type);
  for (auto _ : state) {
    quantize(xf.data(), x.data(), kCols);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kCols * static_cast<int64_t>(sizeof(float)));
}

void register_all() {
  const TensorType kTypes[] = {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kQ4_K,
                               TensorType::kQ6_K, TensorType::kF16,  TensorType::kBF16,
                               TensorType::kF32};
  struct Shape {
    const char* label;
    int64_t rows, cols;
  };
  const Shape kShapes[] = {
      {"row/4096", 1, 4096}, {"matrix/2048x2048", 2048, 2048}, {"matrix/16384x4096", 16384, 4096}};
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (TensorType type : kTypes) {
      for (const Shape& shape : kShapes) {
        const std::string name =
            "dot/" + k->name + "/" + tensor_type_traits(type)->name + "/" + shape.label;
        benchmark::RegisterBenchmark(name.c_str(), bench_dot, k, type, shape.rows, shape.cols)
            ->Unit(benchmark::kMicrosecond);
      }
    }
    for (TensorType type : {TensorType::kQ4_0, TensorType::kQ8_0}) {
      if (k->mat_dot_for(type) == nullptr) continue;
      for (const Shape& shape : {kShapes[1], kShapes[2]}) {
        for (int64_t n_x : {1, 4, 16}) {
          const std::string name = "mat_dot/" + k->name + "/" + tensor_type_traits(type)->name +
                                   "/" + shape.label + "/x" + std::to_string(n_x);
          benchmark::RegisterBenchmark(name.c_str(), bench_mat_dot, k, type, shape.rows, shape.cols,
                                       n_x)
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
    for (TensorType type :
         {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kQ6_K}) {
      if (k->packed_for(type) == nullptr) continue;
      for (const Shape& shape : {kShapes[1], kShapes[2]}) {
        for (int64_t n_x : {1, 4, 16, 64}) {
          const std::string name = "packed/" + k->name + "/" + tensor_type_traits(type)->name +
                                   "/" + shape.label + "/x" + std::to_string(n_x);
          benchmark::RegisterBenchmark(name.c_str(), bench_packed, k, type, shape.rows, shape.cols,
                                       n_x)
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
    for (TensorType dot_type : {TensorType::kQ8_0, TensorType::kQ8_K}) {
      const std::string name =
          "quantize/" + k->name + "/" + tensor_type_traits(dot_type)->name + "/4096";
      benchmark::RegisterBenchmark(name.c_str(), bench_quantize, k, dot_type)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace infergrid

int main(int argc, char** argv) {
  infergrid::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
