// Paged attention and KV stores of the CPU backend, for every kernel table the CPU runs,
// against a plain double-precision attention over contiguous copies of the same K/V.
#include "kernels/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/fp16.h"
#include "core/fp16_rows.h"

namespace infergrid {
namespace {

struct PagedFixture {
  int block_size, n_blocks, kv_dim;
  KvType type = KvType::kF32;
  std::vector<uint8_t> pool_k, pool_v;  // [block][slot][kv_dim] elements of `type`
  std::vector<std::vector<int32_t>> tables;

  void allocate() {
    pool_k.assign(static_cast<size_t>(n_blocks) * block_size * kv_dim * kv_type_bytes(type), 0);
    pool_v.assign(pool_k.size(), 0);
  }
  // Element i of a pool, as f32.
  float at(const std::vector<uint8_t>& pool, size_t i) const {
    float x;
    kv_to_f32_row(pool.data() + i * kv_type_bytes(type), type, &x, 1);
    return x;
  }
  KvLayerView view(size_t seq) {
    KvLayerView v;
    v.type = type;
    v.k = pool_k.data();
    v.v = pool_v.data();
    v.row_stride = kv_dim;
    v.block_stride = static_cast<int64_t>(block_size) * kv_dim;
    v.block_size = block_size;
    v.block_table = tables[seq].data();
    return v;
  }
};

// out[t] for one sequence whose positions 0..context-1 are rows of k/v (contiguous).
std::vector<float> reference_attention(const float* q, const std::vector<int32_t>& positions,
                                       const std::vector<float>& k, const std::vector<float>& v,
                                       const AttentionParams& p) {
  const int kv_dim = p.n_kv_heads * p.head_dim;
  const int group = p.n_heads / p.n_kv_heads;
  std::vector<float> out(positions.size() * p.n_heads * p.head_dim);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < p.n_heads; ++h) {
      const float* qh = q + (t * p.n_heads + h) * p.head_dim;
      const int kvh = h / group;
      std::vector<double> s(static_cast<size_t>(positions[t]) + 1);
      double m = -INFINITY;
      // Keys left of a sliding window score -inf (weight 0).
      const size_t first =
          p.window > 0 ? static_cast<size_t>(std::max(0, positions[t] - p.window + 1)) : 0;
      for (size_t j = 0; j < first; ++j) s[j] = -INFINITY;
      for (size_t j = first; j < s.size(); ++j) {
        double d = 0;
        for (int i = 0; i < p.head_dim; ++i) d += qh[i] * k[j * kv_dim + kvh * p.head_dim + i];
        s[j] = d * p.scale;
        m = std::max(m, s[j]);
      }
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - m));
      for (int i = 0; i < p.head_dim; ++i) {
        double acc = 0;
        for (size_t j = 0; j < s.size(); ++j)
          acc += s[j] / z * v[j * kv_dim + kvh * p.head_dim + i];
        out[(t * p.n_heads + h) * p.head_dim + i] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

// For every KV cache type; the reference reads the values the cache holds. With a sliding
// window too: one inside a key tile (5), one whose start crosses tiles (70).
TEST(CpuBackend, PagedAttentionMatchesContiguousReferenceOnEveryTable) {
  for (const auto& [type, window] :
       {std::pair{KvType::kF32, 0}, std::pair{KvType::kF16, 0}, std::pair{KvType::kBF16, 0},
        std::pair{KvType::kF32, 5}, std::pair{KvType::kF16, 70}}) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    // GQA 3:1, head_dim not a SIMD width.
    AttentionParams p{6, 2, 20, 1.0f / std::sqrt(20.0f), window};
    const int kv_dim = p.n_kv_heads * p.head_dim;
    const int block_size = 5;
    // A prefill chunk in the middle of its context, a decode, a fresh prompt, and a decode past
    // two key tiles (64 keys each at this head size), so rows cross tiles (and their prefetch).
    struct Seq {
      int start, n_tokens;
    };
    const std::vector<Seq> seqs = {{9, 7}, {23, 1}, {0, 4}, {140, 2}};
    PagedFixture f{block_size, 48, kv_dim, type, {}, {}, {}};
    f.allocate();
    std::vector<float> values(static_cast<size_t>(f.n_blocks) * block_size * kv_dim);
    for (auto& x : values) x = normal(rng);
    f32_to_kv_row(values.data(), f.pool_k.data(), type, values.size());
    for (auto& x : values) x = normal(rng);
    f32_to_kv_row(values.data(), f.pool_v.data(), type, values.size());
    std::vector<int32_t> free_blocks(static_cast<size_t>(f.n_blocks));
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);  // scattered blocks
    size_t next_block = 0;
    std::vector<int32_t> positions;
    std::vector<AttentionSequence> batch;
    int64_t row = 0;
    for (const Seq& s : seqs) {
      const int context = s.start + s.n_tokens;
      std::vector<int32_t> table;
      for (int b = 0; b * block_size < context; ++b) table.push_back(free_blocks[next_block++]);
      f.tables.push_back(table);
      for (int t = 0; t < s.n_tokens; ++t) positions.push_back(s.start + t);
      batch.push_back({row, s.n_tokens, {}});
      row += s.n_tokens;
    }
    for (size_t i = 0; i < seqs.size(); ++i) batch[i].kv = f.view(i);
    std::vector<float> q(static_cast<size_t>(row) * p.n_heads * p.head_dim);
    for (auto& x : q) x = normal(rng);

    for (const CpuKernels* kernels : available_cpu_kernels()) {
      CpuBackend backend(2, kernels);
      std::vector<float> out(q.size());
      backend.attention(q.data(), positions, batch, p, out.data());
      for (size_t i = 0; i < seqs.size(); ++i) {
        const int context = seqs[i].start + seqs[i].n_tokens;
        std::vector<float> k, v;  // the sequence's rows, gathered through its table
        for (int pos = 0; pos < context; ++pos) {
          k.resize(k.size() + kv_dim);
          v.resize(v.size() + kv_dim);
          kv_to_f32_row(batch[i].kv.k_row(pos), type, k.data() + k.size() - kv_dim, kv_dim);
          kv_to_f32_row(batch[i].kv.v_row(pos), type, v.data() + v.size() - kv_dim, kv_dim);
        }
        std::vector<int32_t> seq_positions(
            positions.begin() + batch[i].first_token,
            positions.begin() + batch[i].first_token + batch[i].n_tokens);
        const float* q_seq = q.data() + batch[i].first_token * p.n_heads * p.head_dim;
        const auto expected = reference_attention(q_seq, seq_positions, k, v, p);
        const float* got = out.data() + batch[i].first_token * p.n_heads * p.head_dim;
        for (size_t j = 0; j < expected.size(); ++j) {
          ASSERT_NEAR(got[j], expected[j], 1e-5f)
              << kernels->name << " " << kv_type_name(type) << " window " << window << " sequence "
              << i << " element " << j;
        }
      }
    }
  }
}

// Each row lands in its slot, rounded to the cache's type to nearest even.
TEST(CpuBackend, StoreKvWritesEachRowToItsSlot) {
  for (const KvType type : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
    const int block_size = 4, kv_dim = 3;
    PagedFixture f{block_size, 6, kv_dim, type, {}, {}, {}};
    f.allocate();
    f.tables = {{5, 2}, {0}};
    // Sequence 0 writes positions 3..5 (crossing from block 5 into block 2); sequence 1
    // position 1.
    std::vector<int32_t> positions = {3, 4, 5, 1};
    std::vector<AttentionSequence> batch = {{0, 3, f.view(0)}, {3, 1, f.view(1)}};
    std::vector<float> k(4 * kv_dim), v(4 * kv_dim);
    std::iota(k.begin(), k.end(), 1.0f);
    std::iota(v.begin(), v.end(), 100.0f);
    k[1] = 1.0f / 3.0f;  // not exact in any 16-bit type
    CpuBackend backend(1);
    backend.store_kv(k.data(), v.data(), kv_dim, positions, batch);
    auto at = [&](const std::vector<uint8_t>& pool, int block, int slot, int i = 0) {
      return f.at(pool, (static_cast<size_t>(block) * block_size + slot) * kv_dim + i);
    };
    const char* name = kv_type_name(type).data();
    EXPECT_EQ(at(f.pool_k, 5, 3), 1.0f) << name;
    EXPECT_EQ(at(f.pool_k, 2, 0), 4.0f) << name;
    EXPECT_EQ(at(f.pool_k, 2, 1), 7.0f) << name;
    EXPECT_EQ(at(f.pool_k, 0, 1), 10.0f) << name;
    EXPECT_EQ(at(f.pool_v, 2, 1), 106.0f) << name;
    EXPECT_EQ(at(f.pool_k, 5, 2), 0.0f) << name;  // untouched
    float third = 1.0f / 3.0f;
    if (type == KvType::kF16) third = fp16_to_fp32(fp32_to_fp16(third));
    if (type == KvType::kBF16) third = bf16_to_fp32(fp32_to_bf16(third));
    EXPECT_EQ(at(f.pool_k, 5, 3, 1), third) << name;
  }
}

}  // namespace
}  // namespace infergrid
