// Attention throughput of CpuBackend::attention over a paged KV cache, one thread, in GFLOP/s
// (2 * head_dim FLOPs for q.k and again for p.v, per query head and visible key). Shapes:
//   prefill/<heads>/<ctx>  a 256-token chunk whose history already holds ctx tokens (a returning
//                          conversation turn when ctx > 0);
//   decode/<heads>/<ctx>   8 sequences, one token each, at ctx cached tokens.
// Heads "8x32" is the default model (8 query heads, 4 KV heads of 32); "32x128" a Llama-8B layer.
// Each shape runs for every KV cache type (f32, f16, bf16): the 16-bit caches read half the
// bytes, which is what long-context decode waits on.
// Run: build/bin/bench_attention [--benchmark_filter=decode]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/fp16_rows.h"
#include "kernels/cpu_backend.h"
#include "kernels/cpu_kernels.h"

namespace infergrid {
namespace {

constexpr int kBlockSize = 16;

struct Shape {
  int n_heads, n_kv_heads, head_dim;
};

void bench_attention(benchmark::State& state, const CpuKernels* kernels, KvType kv_type,
                     Shape shape, int64_t n_seqs, int64_t tokens_per_seq, int64_t ctx) {
  CpuBackend backend(1, kernels);
  const int64_t kv_dim = int64_t{shape.n_kv_heads} * shape.head_dim;
  const int64_t q_dim = int64_t{shape.n_heads} * shape.head_dim;
  const int64_t seq_len = ctx + tokens_per_seq;
  const int64_t blocks_per_seq = (seq_len + kBlockSize - 1) / kBlockSize;
  const int64_t n_blocks = blocks_per_seq * n_seqs;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const size_t pool_elements = static_cast<size_t>(n_blocks * kBlockSize * kv_dim);
  std::vector<uint8_t> k_pool(pool_elements * kv_type_bytes(kv_type)), v_pool(k_pool.size());
  std::vector<float> values(pool_elements);
  for (float& x : values) x = dist(rng);
  f32_to_kv_row(values.data(), k_pool.data(), kv_type, pool_elements);
  for (float& x : values) x = dist(rng);
  f32_to_kv_row(values.data(), v_pool.data(), kv_type, pool_elements);
  // Blocks of a sequence are scattered through the pool, as after a while of serving.
  std::vector<int32_t> order(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) order[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t n_tokens = n_seqs * tokens_per_seq;
  std::vector<float> q(static_cast<size_t>(n_tokens * q_dim)), out(q.size());
  for (float& x : q) x = dist(rng);
  std::vector<int32_t> positions;
  std::vector<AttentionSequence> seqs;
  for (int64_t s = 0; s < n_seqs; ++s) {
    AttentionSequence seq;
    seq.first_token = s * tokens_per_seq;
    seq.n_tokens = tokens_per_seq;
    seq.kv.type = kv_type;
    seq.kv.k = k_pool.data();
    seq.kv.v = v_pool.data();
    seq.kv.row_stride = kv_dim;
    seq.kv.block_stride = kBlockSize * kv_dim;
    seq.kv.block_size = kBlockSize;
    seq.kv.block_table = order.data() + s * blocks_per_seq;
    seqs.push_back(seq);
    for (int64_t t = 0; t < tokens_per_seq; ++t) positions.push_back(static_cast<int32_t>(ctx + t));
  }
  AttentionParams params{shape.n_heads, shape.n_kv_heads, shape.head_dim,
                         1.0f / std::sqrt(static_cast<float>(shape.head_dim))};
  for (auto _ : state) {
    backend.attention(q.data(), positions, seqs, params, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  double visible_keys = 0;
  for (int32_t p : positions) visible_keys += p + 1;
  const double flops = visible_keys * shape.n_heads * shape.head_dim * 4.0;
  state.counters["FLOP"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  // K and V bytes read: a task (up to 16 query tokens of one sequence and one KV head) reads
  // its KV head's rows up to its last token's position once.
  constexpr int64_t kQueryTile = 16;  // CpuBackend::attention's
  double keys_read = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t t0 = 0; t0 < tokens_per_seq; t0 += kQueryTile) {
      keys_read += static_cast<double>(ctx + std::min(t0 + kQueryTile, tokens_per_seq));
    }
  }
  const double kv_bytes = keys_read * 2.0 * static_cast<double>(kv_dim * kv_type_bytes(kv_type));
  state.counters["KV_B"] =
      benchmark::Counter(kv_bytes, benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (const KvType kv_type : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
      const std::string prefix = std::string(k->name) + "/" + std::string(kv_type_name(kv_type));
      for (const auto& [label, shape] :
           {std::pair<std::string, Shape>{"8x32", {8, 4, 32}}, {"32x128", {32, 8, 128}}}) {
        for (int64_t ctx : {0, 1000}) {
          benchmark::RegisterBenchmark(
              (prefix + "/prefill/" + label + "/" + std::to_string(ctx)).c_str(), bench_attention,
              k, kv_type, shape, int64_t{1}, int64_t{256}, ctx)
              ->Unit(benchmark::kMillisecond);
        }
        for (int64_t ctx : {1000, 8000}) {
          benchmark::RegisterBenchmark(
              (prefix + "/decode/" + label + "/" + std::to_string(ctx)).c_str(), bench_attention, k,
              kv_type, shape, int64_t{8}, int64_t{1}, ctx)
              ->Unit(benchmark::kMicrosecond);
        }
      }
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
