// Model: a loaded decoder-only transformer (llama, mistral, qwen2, qwen3, phi3, and the
// mixture-of-experts llama/qwen2moe/qwen3moe) and its forward pass.
//
// Weights are views into the memory-mapped GGUF file (zero copy); only the small vectors
// (norms, biases, RoPE frequency factors) are converted to float at load. The forward pass is
// written against the Backend interface and keeps no per-call state: the KV cache and the
// scratch activations are passed in, so many sequences can share one Model.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/status.h"
#include "kernels/backend.h"
#include "model/gguf.h"
#include "model/model_config.h"

namespace infergrid {

// A mixture-of-experts feed-forward: a router picks n_expert_used of the experts per token.
struct ExpertWeights {
  MatrixView router;                       // n_embd -> n_expert logits (ffn_gate_inp)
  std::vector<MatrixView> gate, up, down;  // one view per expert into the 3-D tensors
  // qwen2moe's shared expert, added for every token, scaled by sigmoid(shared_gate . x).
  MatrixView shared_gate, shared_up, shared_down;
  std::vector<float> shared_gate_inp;  // empty: no shared expert
};

struct LayerWeights {
  std::vector<float> attn_norm;
  // phi3's fused attn_qkv and ffn_up are split into these views of row ranges (no copy).
  MatrixView wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;      // empty unless the file has them
  std::vector<float> q_norm, k_norm;  // per-head RMSNorm weights (qwen3), else empty
  std::vector<float> ffn_norm;
  MatrixView w_gate, w_up, w_down;  // dense feed-forward (unset in MoE layers)
  ExpertWeights moe;

  // Every matrix of the layer, for packing, sizing and descriptions.
  std::vector<MatrixView*> matrices();
  std::vector<const MatrixView*> matrices() const;
};

struct ModelWeights {
  MatrixView token_embd;
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;
  MatrixView output;  // == token_embd when the output embedding is tied
  bool output_tied = false;
  std::vector<float> rope_freq_factors;  // empty unless rope_freqs.weight is present
};

// Where a forward pass finds K/V storage: for layer l, K rows start at element
// k_base + l * layer_stride and V rows at v_base + l * layer_stride, then blocks and slots as in
// KvLayerView (strides count elements of `type`).
struct KvStorage {
  void* k_base = nullptr;
  void* v_base = nullptr;
  int64_t layer_stride = 0;
  int64_t block_stride = 0;
  int64_t row_stride = 0;
  int block_size = 0;
  KvType type = KvType::kF32;

  KvLayerView layer(int l, const int32_t* block_table) const {
    const int64_t offset = l * layer_stride * static_cast<int64_t>(kv_type_bytes(type));
    return {static_cast<char*>(k_base) + offset,
            static_cast<char*>(v_base) + offset,
            row_stride,
            block_stride,
            block_size,
            block_table,
            type};
  }
};

// One sequence's KV cache, contiguous per layer: K and V rows of kv_dim elements per position.
// In KvStorage terms it is a single block of max_positions slots.
class KvCache {
 public:
  KvCache(const ModelConfig& config, int max_positions, KvType type);
  int max_positions() const { return max_positions_; }
  KvType type() const { return type_; }
  KvStorage storage();
  static constexpr int32_t kBlockTable[1] = {0};
  size_t bytes() const { return k_.size() + v_.size(); }

 private:
  int max_positions_;
  int n_layer_;
  int kv_dim_;
  KvType type_;
  AlignedBuffer<uint8_t> k_;  // [layer][position][kv_dim]
  AlignedBuffer<uint8_t> v_;
};

// Activation buffers for a forward pass over up to max_tokens tokens at once, producing logits
// for up to max_logit_rows of them (default: all).
struct ForwardScratch {
  ForwardScratch(const ModelConfig& config, int max_tokens, int max_logit_rows = 0);
  int max_tokens;
  int max_logit_rows;
  AlignedBuffer<float> x, xn, q, k, v, attn, gate, up, ffn, logits;
  // Mixture of experts: router logits (n_expert per token), one expert's gathered inputs and
  // outputs, and the routing of the batch (per expert: token rows and their weights).
  AlignedBuffer<float> router, expert_in, expert_out;
  std::vector<int32_t> picked_experts;  // n_expert_used per token
  std::vector<float> picked_weights;
  std::vector<int32_t> expert_order;    // n_expert
  std::vector<int32_t> expert_offsets;  // n_expert + 1: expert e's rows start at offsets[e]
  std::vector<int32_t> expert_rows;     // token rows grouped by expert
  std::vector<float> expert_scales;
  AlignedBuffer<int32_t> tokens, positions;
  std::vector<AttentionSequence> seqs;  // capacity max_tokens: a batch never has more
  std::vector<int32_t> logit_rows;      // batch tokens whose logits are wanted
};

// One sequence's part of a batched forward pass.
struct BatchSequence {
  enum class Logits { kNone, kLast, kAll };
  std::span<const int32_t> tokens;
  int start_pos = 0;                     // position of tokens[0]
  const int32_t* block_table = nullptr;  // blocks covering positions 0..start_pos+tokens-1
  Logits logits = Logits::kLast;
};

class Model {
 public:
  // kDefault repacks the matrices for this CPU's kernels (kernels/packed_weights.h) unless
  // INFERGRID_REPACK=0 is set; kOff keeps only the file's layout. Results are the same bits.
  enum class WeightPacking { kDefault, kOff };
  static Result<std::unique_ptr<Model>> load(const std::string& path,
                                             WeightPacking packing = WeightPacking::kDefault);
  // Takes over an already-opened file (used by tests that build files in memory).
  static Result<std::unique_ptr<Model>> from_gguf(std::unique_ptr<GgufFile> file,
                                                  WeightPacking packing = WeightPacking::kDefault);
  // Bytes of the repacked copies of the weights (0 when none were made).
  size_t packed_bytes() const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const GgufFile& gguf() const { return *file_; }
  // Bytes of weights a decode step reads (every matrix once, plus one embedding row).
  size_t weight_bytes_per_token() const;
  // Identifies the weights (metadata, tensor layout and types, samples of every tensor's
  // bytes): KV computed by another model or another quantization never shares a key.
  uint64_t fingerprint() const { return fingerprint_; }
  // A short description for logs: architecture, sizes, tensor types.
  std::string describe() const;
  // Tokens routed to each expert since load, [layer * n_expert + expert] (empty when dense).
  std::vector<uint64_t> expert_activation_counts() const;
  // Expert weight bytes forward passes have read since load (each expert that had at least one
  // token in a pass counts once for that pass).
  uint64_t expert_bytes_read() const { return expert_bytes_read_.load(std::memory_order_relaxed); }
  // Bytes of one expert's gate, up and down matrices in `layer` (the experts of a layer share
  // their types; layers need not: the _M mixes give some ffn_down more bits).
  size_t expert_bytes(int layer) const;

  enum class Logits { kLast, kAll };
  // Runs `tokens` at positions start_pos.. of `cache`, appending their K/V. Returns logits for
  // the last token (n_vocab floats) or for every token (n_tokens * n_vocab), pointing into
  // scratch. Tokens beyond scratch.max_tokens are processed in several passes.
  Result<std::span<const float>> forward(Backend& backend, KvCache& cache, ForwardScratch& scratch,
                                         std::span<const int32_t> tokens, int start_pos,
                                         Logits logits_mode) const;

  // One forward pass over several sequences at once: every weight matrix is read once for the
  // whole batch. Each sequence's new K/V go to its block table's slots in `kv`; the caller
  // guarantees the blocks exist, are writable and hold positions 0..start_pos-1 already.
  // Returns the wanted logits rows (n_vocab floats each) in batch order, pointing into scratch.
  // The total token count must fit scratch.max_tokens.
  Result<std::span<const float>> forward_batch(Backend& backend, const KvStorage& kv,
                                               ForwardScratch& scratch,
                                               std::span<const BatchSequence> batch) const;

 private:
  Model() = default;
  Status load_weights();
  uint64_t compute_fingerprint() const;
  // Repacks the matrices for the CPU kernels this machine selects (kernels/packed_weights.h).
  void pack_weights();
  // Runs a validated batch; n_tokens is the sum of the sequences' tokens.
  std::span<const float> run_batch(Backend& backend, const KvStorage& kv, ForwardScratch& scratch,
                                   std::span<const BatchSequence> batch, int64_t n_tokens) const;

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  ModelWeights weights_;
  std::vector<AlignedBuffer<uint8_t>> packed_storage_;  // what weights_' packed views point to
  uint64_t fingerprint_ = 0;
  // Bumped by forward passes on any thread (statistics only: relaxed).
  std::unique_ptr<std::atomic<uint64_t>[]> expert_counts_;
  mutable std::atomic<uint64_t> expert_bytes_read_{0};

  void moe_feed_forward(Backend& backend, const LayerWeights& L, int layer, ForwardScratch& s,
                        int64_t n) const;
};

}  // namespace infergrid
