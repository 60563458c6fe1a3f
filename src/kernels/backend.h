// Backend: the compute operations a forward pass needs, on one device. The model layer is
// written only against this interface; the CPU backend implements it with the dispatched
// kernels of cpu_kernels.h, and a GPU/NPU backend plugs in by implementing the same calls.
//
// Conventions: activations are row-major float arrays, one row per token. A MatrixView is a
// weight matrix of n_rows output features, each row holding n_cols inputs in `type`'s encoding
// (GGUF/ggml order: a 2-D tensor with dims {n_cols, n_rows}). Calls are synchronous.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/kv_type.h"
#include "kernels/tensor_type.h"

namespace infergrid {

struct MatrixView {
  TensorType type = TensorType::kF32;
  const uint8_t* data = nullptr;
  int64_t n_cols = 0;  // input features (contiguous)
  int64_t n_rows = 0;  // output features
  size_t row_bytes = 0;
  // Optional copy of rows [0, packed_rows) in a CPU kernel layout (kernels/packed_weights.h);
  // a backend without kernels for `packed_layout` reads the plain rows, which stay valid.
  PackedLayout packed_layout = PackedLayout::kNone;
  const uint8_t* packed = nullptr;
  int64_t packed_rows = 0;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  size_t total_bytes() const { return static_cast<size_t>(n_rows) * row_bytes; }
};

enum class RopeStyle {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]): llama
  kNeox,    // rotate halves (x[i], x[i + d/2]): qwen2, NeoX
};

// Rotary embedding parameters, including context-extension scaling (linear, YaRN, and Llama 3's
// per-dimension frequency factors).
struct RopeParams {
  RopeStyle style = RopeStyle::kNormal;
  int n_dims = 0;  // rotated dims per head (usually head_dim)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;   // 1 / linear scaling factor
  float ext_factor = 0.0f;   // YaRN extrapolation mix; 0 disables YaRN
  float attn_factor = 1.0f;  // YaRN magnitude scaling
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int n_ctx_orig = 0;                   // training context, for YaRN
  const float* freq_factors = nullptr;  // n_dims/2 divisors of theta (Llama 3.1), or null
};

// One sequence's keys and values for one layer, in blocks of block_size positions: position
// p lives in block block_table[p / block_size], slot p % block_size, and its K row starts at
// element k + block * block_stride + slot * row_stride (V likewise from v). A contiguous cache
// is one block holding every position. Rows hold n_kv_heads * head_dim elements of `type`;
// strides count elements.
struct KvLayerView {
  void* k = nullptr;
  void* v = nullptr;
  int64_t row_stride = 0;    // elements between consecutive slots of a block
  int64_t block_stride = 0;  // elements between consecutive blocks of the pool
  int block_size = 0;
  const int32_t* block_table = nullptr;
  KvType type = KvType::kF32;

  int64_t offset_bytes(int64_t position) const {
    return (block_table[position / block_size] * block_stride +
            (position % block_size) * row_stride) *
           static_cast<int64_t>(kv_type_bytes(type));
  }
  void* k_row(int64_t position) const { return static_cast<char*>(k) + offset_bytes(position); }
  void* v_row(int64_t position) const { return static_cast<char*>(v) + offset_bytes(position); }
};

// One sequence's slice of a batch: its tokens are rows first_token..first_token+n_tokens-1 of
// the batch's activations, and its cache for the current layer is kv.
struct AttentionSequence {
  int64_t first_token = 0;
  int64_t n_tokens = 0;
  KvLayerView kv;
};

struct AttentionParams {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;  // usually 1/sqrt(head_dim)
  // > 0: sliding-window attention, a query at position p sees keys k with p - k < window.
  int window = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int n_threads() const = 0;

  // y[t * n_rows + r] = dot(w.row(r), x[t * n_cols ...]) for t < n_tokens.
  virtual void matmul(const MatrixView& w, const float* x, int64_t n_tokens, float* y) = 0;
  // ys[i] = ws[i] x for matrices sharing one input (Q/K/V, gate/up): the results of separate
  // matmul calls, bit for bit; a backend may convert x once and run all of them in one pass.
  virtual void matmul_shared_input(std::span<const MatrixView* const> ws, const float* x,
                                   int64_t n_tokens, std::span<float* const> ys) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, n_tokens, ys[i]);
  }
  // y[t] = row ids[t] of w, as floats (embedding lookup).
  virtual void get_rows(const MatrixView& w, std::span<const int32_t> ids, float* y) = 0;
  // y = x / rms(x) * weight, per row of n floats.
  virtual void rms_norm(const float* x, const float* weight, float* y, int64_t n_tokens, int64_t n,
                        float eps) = 0;
  // Rotates each head of x (n_tokens rows of n_heads * head_dim) at its token's position.
  virtual void rope(float* x, int64_t n_tokens, int n_heads, int head_dim,
                    std::span<const int32_t> positions, const RopeParams& params) = 0;
  // y = silu(gate) * up elementwise; gate/up/y are n_tokens rows of n.
  virtual void swiglu(const float* gate, const float* up, float* y, int64_t n_tokens,
                      int64_t n) = 0;
  // y += x (n floats).
  virtual void add(const float* x, float* y, int64_t n) = 0;
  // Adds bias (n) to each of n_tokens rows of y.
  virtual void add_bias(const float* bias, float* y, int64_t n_tokens, int64_t n) = 0;
  // y[i] = row rows[i] of x (n_cols floats each): the tokens routed to one expert.
  virtual void gather_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                           float* y) = 0;
  // Row rows[i] of y += scales[i] * row i of x: an expert's outputs back to their tokens.
  virtual void scatter_add_rows(const float* x, int64_t n_cols, std::span<const int32_t> rows,
                                std::span<const float> scales, float* y) = 0;
  // Writes the rows of new keys and values (kv_dim floats each, one per batch token) into
  // the cache slots of their sequences at positions[t], rounded to the cache's element type.
  virtual void store_kv(const float* k, const float* v, int64_t kv_dim,
                        std::span<const int32_t> positions,
                        std::span<const AttentionSequence> seqs) = 0;
  // Causal attention over a batch of sequences: batch token t of a sequence (at position
  // positions[t]) attends to that sequence's cached positions 0..positions[t]. q holds a row
  // of n_heads*head_dim per batch token; out likewise.
  virtual void attention(const float* q, std::span<const int32_t> positions,
                         std::span<const AttentionSequence> seqs, const AttentionParams& params,
                         float* out) = 0;
};

}  // namespace infergrid
