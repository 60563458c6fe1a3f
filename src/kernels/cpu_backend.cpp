#include "kernels/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/fp16_rows.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

// Rows of W per task: enough tasks to balance threads, few enough that dispatch is cheap.
int64_t rows_per_task(int64_t n_rows, int n_threads) {
  const int64_t target_tasks = static_cast<int64_t>(n_threads) * 8;
  int64_t rows = (n_rows + target_tasks - 1) / target_tasks;
  rows = std::max<int64_t>(rows, 4);
  return (rows + 3) / 4 * 4;
}

// Activations are consumed in blocks of this many tokens per weight row so that a block of
// weight rows and a block of activations both stay in L2 during prefill.
constexpr int64_t kTokenBlock = 16;

float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
  return n_dims * std::log(n_ctx_orig / (n_rot * 2 * std::numbers::pi_v<float>)) /
         (2 * std::log(base));
}

float yarn_ramp(float low, float high, int i0) {
  const float y = (i0 / 2 - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

CpuBackend::CpuBackend(int n_threads, const CpuKernels* kernels)
    : pool_(n_threads), kernels_(kernels != nullptr ? kernels : &select_cpu_kernels()) {}

std::string CpuBackend::name() const {
  return "cpu/" + kernels_->name + "/" + std::to_string(pool_.size()) + "t";
}

void CpuBackend::reserve(int64_t max_tokens, int64_t max_cols) {
  // Q8_0 is the largest activation encoding per element among dot types except F32, which
  // needs no scratch; Q8_K is smaller per element than Q8_0 (292/256 < 34/32).
  const size_t act_bytes = static_cast<size_t>(max_tokens) *
                           tensor_row_bytes(TensorType::kQ8_0, (max_cols + 255) / 256 * 256);
  if (act_scratch_.size() < act_bytes) act_scratch_.resize(act_bytes);
  const size_t sums = static_cast<size_t>(max_tokens) * ((max_cols + 255) / 256 * 256 / kQK8_0);
  if (act_sums_.size() < sums) act_sums_.resize(sums);
}

CpuBackend::MatmulPlan CpuBackend::plan_matmul(const MatrixView& w, float* y) const {
  MatmulPlan plan;
  plan.w = &w;
  plan.y = y;
  plan.dot = kernels_->dot_for(w.type);
  if (w.packed != nullptr) {
    plan.packed = kernels_->packed_for(w.type);
    if (plan.packed != nullptr && plan.packed->layout != w.packed_layout) plan.packed = nullptr;
  }
  if (plan.packed != nullptr) {
    // Row groups split across threads; each task runs every token against its groups, so a
    // task's weights are read from memory once and stay in L2 across the activation tiles.
    const int64_t n_groups = w.packed_rows / kPackedRowGroup;
    plan.chunk = std::max<int64_t>(1, n_groups / (static_cast<int64_t>(pool_.size()) * 8));
    plan.n_tasks = (n_groups + plan.chunk - 1) / plan.chunk + (w.packed_rows < w.n_rows ? 1 : 0);
  } else {
    plan.mat_dot = kernels_->mat_dot_for(w.type);
    plan.chunk = rows_per_task(w.n_rows, pool_.size());
    plan.n_tasks = (w.n_rows + plan.chunk - 1) / plan.chunk;
  }
  return plan;
}

const uint8_t* CpuBackend::prepare_activations(const MatmulPlan& plan, const float* x,
                                               int64_t n_tokens, size_t* row_bytes) {
  const MatrixView& w = *plan.w;
  const TensorType dot_type = tensor_type_traits(w.type)->dot_type;
  if (dot_type == TensorType::kF32) {
    *row_bytes = static_cast<size_t>(w.n_cols) * sizeof(float);
    return reinterpret_cast<const uint8_t*>(x);
  }
  *row_bytes = tensor_row_bytes(dot_type, w.n_cols);
  const size_t act_row_bytes = *row_bytes;
  const size_t needed = act_row_bytes * static_cast<size_t>(n_tokens);
  if (act_scratch_.size() < needed) act_scratch_.resize(needed);
  const PackedKernel* packed = plan.packed;
  const int64_t n_sums = packed != nullptr ? packed->sums_per_row(w.n_cols) : 0;
  if (act_sums_.size() < static_cast<size_t>(n_tokens * n_sums)) {
    act_sums_.resize(static_cast<size_t>(n_tokens * n_sums));
  }
  const QuantizeActFn quantize = kernels_->quantize_for(dot_type);
  uint8_t* scratch = act_scratch_.data();
  const int64_t n_cols = w.n_cols;
  auto quantize_row = [&](int64_t t, int) {
    quantize(x + t * n_cols, scratch + t * act_row_bytes, n_cols);
    if (packed != nullptr) {
      packed->act_sums(scratch + t * act_row_bytes, n_cols, act_sums_.data() + t * n_sums);
    }
  };
  if (n_tokens == 1) {
    quantize_row(0, 0);
  } else {
    pool_.parallel_for(n_tokens, quantize_row);
  }
  return scratch;
}

void CpuBackend::run_matmul_task(const MatmulPlan& plan, int64_t task, const uint8_t* act,
                                 size_t act_row_bytes, int64_t n_tokens) const {
  const MatrixView& w = *plan.w;
  float* y = plan.y;
  if (plan.packed != nullptr) {
    const int64_t n_groups = w.packed_rows / kPackedRowGroup;
    const int64_t g0 = task * plan.chunk;
    if (g0 >= n_groups) {  // the rows past the last full group, plain
      for (int64_t r = w.packed_rows; r < w.n_rows; ++r) {
        for (int64_t t = 0; t < n_tokens; ++t) {
          y[t * w.n_rows + r] = plan.dot(w.n_cols, w.row(r), act + t * act_row_bytes);
        }
      }
      return;
    }
    const int64_t g1 = std::min(n_groups, g0 + plan.chunk);
    const size_t group_bytes = plan.packed->group_bytes(w.n_cols);
    plan.packed->mat_dot(w.n_cols, w.packed + static_cast<size_t>(g0) * group_bytes, g1 - g0, act,
                         act_row_bytes, act_sums_.data(), n_tokens, y + g0 * kPackedRowGroup,
                         w.n_rows);
    return;
  }
  const int64_t row_begin = task * plan.chunk;
  const int64_t row_end = std::min(w.n_rows, row_begin + plan.chunk);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
    const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
    if (plan.mat_dot != nullptr) {
      // Bit-identical to the vec_dot loop below (the MatDotFn contract).
      plan.mat_dot(w.n_cols, w.row(row_begin), w.row_bytes, row_end - row_begin,
                   act + t0 * act_row_bytes, act_row_bytes, t1 - t0, y + t0 * w.n_rows + row_begin,
                   w.n_rows);
      continue;
    }
    for (int64_t r = row_begin; r < row_end; ++r) {
      const uint8_t* row = w.row(r);
      for (int64_t t = t0; t < t1; ++t) {
        y[t * w.n_rows + r] = plan.dot(w.n_cols, row, act + t * act_row_bytes);
      }
    }
  }
}

void CpuBackend::matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y) {
  const MatmulPlan plan = plan_matmul(w, y);
  size_t act_row_bytes = 0;
  const uint8_t* act = prepare_activations(plan, x, n_tokens, &act_row_bytes);
  pool_.parallel_for(plan.n_tasks, [&](int64_t task, int) {
    run_matmul_task(plan, task, act, act_row_bytes, n_tokens);
  });
}

void CpuBackend::matmul_shared_input(std::span<const MatrixView* const> ws, const float* x,
                                     int64_t n_tokens, std::span<float* const> ys) {
  plans_.clear();
  for (size_t i = 0; i < ws.size(); ++i) plans_.push_back(plan_matmul(*ws[i], ys[i]));
  // One conversion serves all only if they read the same activation encoding: same type and
  // columns, and all packed or none (packed kernels also need their block sums).
  bool shared = !plans_.empty();
  for (const MatmulPlan& p : plans_) {
    shared = shared && p.w->type == plans_[0].w->type && p.w->n_cols == plans_[0].w->n_cols &&
             p.packed == plans_[0].packed;
  }
  if (!shared) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, n_tokens, ys[i]);
    return;
  }
  size_t act_row_bytes = 0;
  const uint8_t* act = prepare_activations(plans_[0], x, n_tokens, &act_row_bytes);
  int64_t total_tasks = 0;
  for (const MatmulPlan& p : plans_) total_tasks += p.n_tasks;
  pool_.parallel_for(total_tasks, [&](int64_t task, int) {
    for (const MatmulPlan& p : plans_) {
      if (task < p.n_tasks) return run_matmul_task(p, task, act, act_row_bytes, n_tokens);
      task -= p.n_tasks;
    }
  });
}

void CpuBackend::get_rows(const MatrixView& w, std::span<const int32_t> ids, float* y) {
  for (size_t i = 0; i < ids.size(); ++i) {
    dequantize_row(w.type, w.row(ids[i]), y + i * w.n_cols, w.n_cols);
  }
}

void CpuBackend::rms_norm(const float* x, const float* weight, float* y, int64_t n_tokens,
                          int64_t n, float eps) {
  for (int64_t t = 0; t < n_tokens; ++t) kernels_->rms_norm(x + t * n, weight, y + t * n, n, eps);
}

void rope_cos_sin(int32_t position, const RopeParams& p, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / p.n_dims);
  float corr_low = 0, corr_high = 0;
  if (p.ext_factor != 0.0f) {
    corr_low =
        std::max(0.0f, std::floor(yarn_corr_dim(p.n_dims, p.n_ctx_orig, p.beta_fast, p.freq_base)));
    corr_high =
        std::min(static_cast<float>(p.n_dims - 1),
                 std::ceil(yarn_corr_dim(p.n_dims, p.n_ctx_orig, p.beta_slow, p.freq_base)));
  }
  float theta = static_cast<float>(position);
  for (int i0 = 0; i0 < p.n_dims; i0 += 2) {
    const float freq_factor = p.freq_factors != nullptr ? p.freq_factors[i0 / 2] : 1.0f;
    const float theta_extrap = theta / freq_factor;
    const float theta_interp = p.freq_scale * theta_extrap;
    float final_theta = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float ramp_mix = yarn_ramp(corr_low, corr_high, i0) * p.ext_factor;
      final_theta = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    cos_out[i0 / 2] = std::cos(final_theta) * mscale;
    sin_out[i0 / 2] = std::sin(final_theta) * mscale;
    theta *= theta_scale;
  }
}

void CpuBackend::rope(float* x, int64_t n_tokens, int n_heads, int head_dim,
                      std::span<const int32_t> positions, const RopeParams& params) {
  const int half = params.n_dims / 2;
  pool_.parallel_for(n_tokens, [&](int64_t t, int) {
    // n_dims <= head_dim <= 512 for every supported architecture.
    float cos_theta[256];
    float sin_theta[256];
    rope_cos_sin(positions[t], params, cos_theta, sin_theta);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      if (params.style == RopeStyle::kNormal) {
        for (int i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * cos_theta[i] - b * sin_theta[i];
          v[2 * i + 1] = a * sin_theta[i] + b * cos_theta[i];
        }
      } else {
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cos_theta[i] - b * sin_theta[i];
          v[i + half] = a * sin_theta[i] + b * cos_theta[i];
        }
      }
    }
  });
}

void CpuBackend::swiglu(const float* gate, const float* up, float* y, int64_t n_tokens, int64_t n) {
  const int64_t total = n_tokens * n;
  const int64_t chunk = 4096;
  pool_.parallel_for((total + chunk - 1) / chunk, [&](int64_t task, int) {
    const int64_t begin = task * chunk;
    kernels_->swiglu(gate + begin, up + begin, y + begin, std::min(chunk, total - begin));
  });
}

void CpuBackend::add(const float* x, float* y, int64_t n) {
  kernels_->axpy(1.0f, x, y, n);
}

void CpuBackend::add_bias(const float* bias, float* y, int64_t n_tokens, int64_t n) {
  for (int64_t t = 0; t < n_tokens; ++t) kernels_->axpy(1.0f, bias, y + t * n, n);
}

void CpuBackend::gather_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                             float* y) {
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(x + rows[i] * n_cols, n_cols, y + static_cast<int64_t>(i) * n_cols);
  }
}

void CpuBackend::scatter_add_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                                  std::span<const float> scales, float* y) {
  for (size_t i = 0; i < rows.size(); ++i) {
    kernels_->axpy(scales[i], x + static_cast<int64_t>(i) * n_cols, y + rows[i] * n_cols, n_cols);
  }
}

void CpuBackend::store_kv(const float* k, const float* v, int64_t kv_dim,
                          std::span<const int32_t> positions,
                          std::span<const AttentionSequence> seqs) {
  const auto n = static_cast<size_t>(kv_dim);
  for (const AttentionSequence& s : seqs) {
    for (int64_t t = s.first_token; t < s.first_token + s.n_tokens; ++t) {
      f32_to_kv_row(k + t * kv_dim, s.kv.k_row(positions[t]), s.kv.type, n);
      f32_to_kv_row(v + t * kv_dim, s.kv.v_row(positions[t]), s.kv.type, n);
    }
  }
}

void CpuBackend::attention(const float* q, std::span<const int32_t> positions,
                           std::span<const AttentionSequence> seqs, const AttentionParams& p,
                           float* out) {
  // Tiled attention with an online softmax (FlashAttention's order of work): a task takes up
  // to kQueryTile tokens of one sequence and one KV head (so every query head sharing that KV
  // head), and walks the keys a tile at a time. Each key tile is read once per task and reused
  // by all its query rows from L1, instead of once per (token, head); the tile's K and V rows
  // together stay within 16 KiB.
  // Key tiles are cut by position, not by storage block, and the kernel's arithmetic for a row
  // does not depend on the other rows in its call, so paged, contiguous, batched and one-token
  // runs agree bit for bit.
  constexpr int64_t kQueryTile = 16;
  const int64_t key_tile =
      std::clamp<int64_t>(2048 / std::max(p.head_dim, 1), 16, kMaxAttentionTileKeys) & ~int64_t{3};
  const int group = p.n_heads / p.n_kv_heads;
  const int64_t q_row = static_cast<int64_t>(p.n_heads) * p.head_dim;
  // The first key a query at `position` sees.
  const auto window_start = [&p](int64_t position) -> int64_t {
    return p.window > 0 ? std::max<int64_t>(0, position - p.window + 1) : 0;
  };
  const int64_t max_rows = kQueryTile * group;
  // Per thread: accumulators, running max and sum (floats), then query row pointers and the
  // rows' visible key counts.
  const int64_t per_thread_floats = max_rows * (p.head_dim + 2);
  const int64_t per_thread_bytes =
      per_thread_floats * static_cast<int64_t>(sizeof(float)) +
      max_rows * static_cast<int64_t>(sizeof(const float*) + sizeof(int));
  const int64_t per_thread =
      (per_thread_bytes + 63) / 64 * 64 / static_cast<int64_t>(sizeof(float));
  if (attn_scratch_.size() < static_cast<size_t>(per_thread * pool_.size())) {
    attn_scratch_.resize(static_cast<size_t>(per_thread * pool_.size()));
  }
  attn_tasks_.clear();
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t t0 = 0; t0 < seqs[i].n_tokens; t0 += kQueryTile) {
      const int64_t n = std::min(kQueryTile, seqs[i].n_tokens - t0);
      for (int kv_head = 0; kv_head < p.n_kv_heads; ++kv_head) {
        attn_tasks_.push_back({static_cast<int32_t>(i), kv_head, seqs[i].first_token + t0, n});
      }
    }
  }
  pool_.parallel_for(static_cast<int64_t>(attn_tasks_.size()), [&](int64_t task_index, int thread) {
    const AttentionTask& task = attn_tasks_[static_cast<size_t>(task_index)];
    const KvLayerView& kv = seqs[static_cast<size_t>(task.seq)].kv;
    const AttentionTileFn attention_tile = kernels_->attention_tile_for(kv.type);
    const auto element_bytes = static_cast<int64_t>(kv_type_bytes(kv.type));
    const int64_t head_offset_bytes =
        static_cast<int64_t>(task.kv_head) * p.head_dim * element_bytes;
    const int64_t row_bytes = kv.row_stride * element_bytes;
    const int n_rows = static_cast<int>(task.n_tokens * group);
    float* acc = attn_scratch_.data() + per_thread * thread;  // n_rows x head_dim
    float* row_max = acc + max_rows * p.head_dim;
    float* row_sum = row_max + max_rows;
    auto* q_rows = reinterpret_cast<const float**>(row_sum + max_rows);
    auto* row_keys = reinterpret_cast<int*>(q_rows + max_rows);
    std::fill(acc, acc + int64_t{n_rows} * p.head_dim, 0.0f);
    std::fill(row_max, row_max + n_rows, -INFINITY);
    std::fill(row_sum, row_sum + n_rows, 0.0f);
    int64_t last_position = 0;
    int64_t first_visible = INT64_MAX;  // the earliest key any row of the task sees
    for (int r = 0; r < n_rows; ++r) {
      const int64_t t = task.first_token + r / group;
      const int h = task.kv_head * group + r % group;
      q_rows[r] = q + t * q_row + static_cast<int64_t>(h) * p.head_dim;
      last_position = std::max<int64_t>(last_position, positions[t]);
      first_visible = std::min(first_visible, window_start(positions[t]));
    }
    // Row pointers of tile [k0, k1), one block-table lookup per storage block (not per key).
    const auto tile_rows = [&](int64_t k0, int64_t k1, const void** k_rows, const void** v_rows) {
      for (int64_t j = k0; j < k1;) {
        const int64_t run = std::min<int64_t>(kv.block_size - j % kv.block_size, k1 - j);
        const char* k_row = static_cast<const char*>(kv.k_row(j)) + head_offset_bytes;
        const char* v_row = static_cast<const char*>(kv.v_row(j)) + head_offset_bytes;
        for (int64_t i = 0; i < run; ++i, ++j) {
          k_rows[j - k0] = k_row + i * row_bytes;
          v_rows[j - k0] = v_row + i * row_bytes;
        }
      }
    };
    // A head's rows sit kv_dim elements apart and blocks are scattered, so the hardware
    // prefetchers (which stop at page boundaries) miss most of them: the next tile's rows are
    // prefetched while this one is computed.
    const int64_t head_bytes = static_cast<int64_t>(p.head_dim) * element_bytes;
    const void* tiles[2][2][kMaxAttentionTileKeys];  // [tile parity][K, V][key]
    // Tiles stay cut at multiples of key_tile from position 0 whatever the window, so a row's
    // calls (and bits) do not depend on which other rows share its task.
    const int64_t first_tile = first_visible / key_tile * key_tile;
    tile_rows(first_tile, std::min(first_tile + key_tile, last_position + 1), tiles[0][0],
              tiles[0][1]);
    int parity = 0;
    for (int64_t k0 = first_tile; k0 <= last_position; k0 += key_tile, parity ^= 1) {
      const int64_t k1 = std::min(k0 + key_tile, last_position + 1);
      const void** k_rows = tiles[parity][0];
      const void** v_rows = tiles[parity][1];
      if (k1 <= last_position) {
        const int64_t next_end = std::min(k1 + key_tile, last_position + 1);
        tile_rows(k1, next_end, tiles[parity ^ 1][0], tiles[parity ^ 1][1]);
        for (int64_t j = 0; j < next_end - k1; ++j) {
          for (int64_t line = 0; line < head_bytes; line += 64) {
            __builtin_prefetch(static_cast<const char*>(tiles[parity ^ 1][0][j]) + line);
            __builtin_prefetch(static_cast<const char*>(tiles[parity ^ 1][1][j]) + line);
          }
        }
      }
      bool window_cuts_tile = false;
      for (int r = 0; r < n_rows; ++r) {
        const int64_t t = task.first_token + r / group;
        const int64_t start = window_start(positions[t]);
        row_keys[r] =
            start >= k1 ? 0
                        : static_cast<int>(std::clamp<int64_t>(positions[t] + 1 - k0, 0, k1 - k0));
        if (start > k0 && start < k1) {
          row_keys[r] = 0;  // attended alone below, from its first visible key
          window_cuts_tile = true;
        }
      }
      attention_tile(q_rows, row_keys, n_rows, k_rows, v_rows, static_cast<int>(k1 - k0),
                     p.head_dim, p.scale, acc, row_max, row_sum);
      if (window_cuts_tile) {
        for (int r = 0; r < n_rows; ++r) {
          const int64_t t = task.first_token + r / group;
          const int64_t start = window_start(positions[t]);
          if (start <= k0 || start >= k1) continue;
          const int keys = static_cast<int>(std::min<int64_t>(positions[t] + 1, k1) - start);
          attention_tile(q_rows + r, &keys, 1, k_rows + (start - k0), v_rows + (start - k0),
                         static_cast<int>(k1 - start), p.head_dim, p.scale,
                         acc + int64_t{r} * p.head_dim, row_max + r, row_sum + r);
        }
      }
    }
    for (int r = 0; r < n_rows; ++r) {
      const int64_t t = task.first_token + r / group;
      const int h = task.kv_head * group + r % group;
      float* o = out + t * q_row + static_cast<int64_t>(h) * p.head_dim;
      const float inv = 1.0f / row_sum[r];
      for (int i = 0; i < p.head_dim; ++i) o[i] = acc[int64_t{r} * p.head_dim + i] * inv;
    }
  });
}

}  // namespace infergrid
