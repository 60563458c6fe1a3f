#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include <xxhash.h>

#include "kernels/packed_weights.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

// The tensor's info when it exists, has a supported type and exactly the shape `dims`.
Result<const GgufTensorInfo*> checked_tensor(const GgufFile& file, const std::string& name,
                                             const std::vector<int64_t>& dims) {
  const GgufTensorInfo* info = file.find_tensor(name);
  if (info == nullptr) return make_error(StatusCode::kCorrupt, "missing tensor '{}'", name);
  if (!is_supported_tensor_type(info->raw_type)) {
    return make_error(StatusCode::kUnsupported,
                      "tensor '{}' has type {}, which is not supported (supported: {})", name,
                      tensor_type_name(info->raw_type), supported_weight_type_names());
  }
  if (info->dims != dims) {
    auto shape = [](const std::vector<int64_t>& d) {
      std::string out;
      for (int64_t v : d) out += (out.empty() ? "" : " x ") + std::to_string(v);
      return out;
    };
    return make_error(StatusCode::kCorrupt, "tensor '{}' has shape [{}], expected [{}]", name,
                      shape(info->dims), shape(dims));
  }
  return info;
}

// Rows [first_row, first_row + n_rows) of a matrix of n_cols columns, as a view into `info`.
MatrixView row_view(const GgufTensorInfo& info, int64_t n_cols, int64_t first_row, int64_t n_rows) {
  MatrixView view;
  view.type = info.type;
  view.row_bytes = tensor_row_bytes(info.type, n_cols);
  view.data = info.data + static_cast<size_t>(first_row) * view.row_bytes;
  view.n_cols = n_cols;
  view.n_rows = n_rows;
  return view;
}

Result<MatrixView> matrix(const GgufFile& file, const std::string& name, int64_t n_cols,
                          int64_t n_rows) {
  IG_ASSIGN_OR_RETURN(const GgufTensorInfo* info, checked_tensor(file, name, {n_cols, n_rows}));
  return row_view(*info, n_cols, 0, n_rows);
}

// A fused matrix (phi3's attn_qkv, ffn_up) split into consecutive row ranges.
Result<std::vector<MatrixView>> split_matrix(const GgufFile& file, const std::string& name,
                                             int64_t n_cols, std::vector<int64_t> part_rows) {
  int64_t total = 0;
  for (int64_t r : part_rows) total += r;
  IG_ASSIGN_OR_RETURN(const GgufTensorInfo* info, checked_tensor(file, name, {n_cols, total}));
  std::vector<MatrixView> parts;
  int64_t first = 0;
  for (int64_t r : part_rows) {
    parts.push_back(row_view(*info, n_cols, first, r));
    first += r;
  }
  return parts;
}

// One view per expert of a 3-D expert tensor [n_cols, n_rows, n_expert].
Result<std::vector<MatrixView>> expert_matrices(const GgufFile& file, const std::string& name,
                                                int64_t n_cols, int64_t n_rows, int n_expert) {
  IG_ASSIGN_OR_RETURN(const GgufTensorInfo* info,
                      checked_tensor(file, name, {n_cols, n_rows, n_expert}));
  std::vector<MatrixView> experts;
  for (int e = 0; e < n_expert; ++e) experts.push_back(row_view(*info, n_cols, e * n_rows, n_rows));
  return experts;
}

Result<std::vector<float>> vector(const GgufFile& file, const std::string& name, int64_t n,
                                  bool required = true) {
  const GgufTensorInfo* info = file.find_tensor(name);
  if (info == nullptr) {
    if (!required) return std::vector<float>();
    return make_error(StatusCode::kCorrupt, "missing tensor '{}'", name);
  }
  if (!is_supported_tensor_type(info->raw_type)) {
    return make_error(StatusCode::kUnsupported, "tensor '{}' has unsupported type {}", name,
                      tensor_type_name(info->raw_type));
  }
  if (info->n_elements() != n || info->dims[0] % tensor_type_traits(info->type)->block_elems) {
    return make_error(StatusCode::kCorrupt, "tensor '{}' has {} elements, expected {}", name,
                      info->n_elements(), n);
  }
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(info->type, info->data, out.data(), n);
  return out;
}

}  // namespace

KvCache::KvCache(const ModelConfig& config, int max_positions, KvType type)
    : max_positions_(max_positions),
      n_layer_(config.n_layer),
      kv_dim_(config.kv_dim()),
      type_(type) {
  const size_t n = static_cast<size_t>(n_layer_) * max_positions_ * kv_dim_ * kv_type_bytes(type);
  k_.resize(n);
  v_.resize(n);
}

KvStorage KvCache::storage() {
  const int64_t layer_stride = static_cast<int64_t>(max_positions_) * kv_dim_;
  return {k_.data(), v_.data(), layer_stride, 0, kv_dim_, max_positions_, type_};
}

ForwardScratch::ForwardScratch(const ModelConfig& c, int max_tokens_in, int max_logit_rows_in)
    : max_tokens(std::max(1, max_tokens_in)),
      max_logit_rows(max_logit_rows_in > 0 ? std::min(max_logit_rows_in, max_tokens) : max_tokens) {
  const size_t t = static_cast<size_t>(max_tokens);
  x.resize(t * c.n_embd);
  xn.resize(t * std::max(c.n_embd, c.q_dim()));
  q.resize(t * c.q_dim());
  k.resize(t * c.kv_dim());
  v.resize(t * c.kv_dim());
  attn.resize(t * std::max(c.q_dim(), c.n_embd));
  gate.resize(t * c.max_ff());
  up.resize(t * c.max_ff());
  ffn.resize(t * c.n_embd);
  if (c.is_moe()) {
    router.resize(t * c.n_expert);
    expert_in.resize(t * c.n_embd);
    expert_out.resize(t * c.n_embd);
    // Sized once here, so a forward pass never allocates.
    expert_rows.reserve(t * std::max(c.n_expert_used, 1));
    expert_scales.reserve(t * std::max(c.n_expert_used, 1));
    picked_experts.reserve(t * c.n_expert_used);
    picked_weights.reserve(t * c.n_expert_used);
    expert_order.resize(static_cast<size_t>(c.n_expert));
    expert_offsets.resize(static_cast<size_t>(c.n_expert) + 1);
  }
  logits.resize(static_cast<size_t>(max_logit_rows) * c.n_vocab);
  tokens.resize(t);
  positions.resize(t);
  seqs.reserve(t);
  logit_rows.reserve(t);
}

Result<std::unique_ptr<Model>> Model::load(const std::string& path, WeightPacking packing) {
  IG_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::open(path));
  auto model = from_gguf(std::move(file), packing);
  if (!model.is_ok()) return model.status().with_context(path);
  return model;
}

Result<std::unique_ptr<Model>> Model::from_gguf(std::unique_ptr<GgufFile> file,
                                                WeightPacking packing) {
  std::unique_ptr<Model> model(new Model());
  model->file_ = std::move(file);
  IG_ASSIGN_OR_RETURN(model->config_, ModelConfig::from_gguf(*model->file_));
  IG_RETURN_IF_ERROR(model->load_weights());
  model->fingerprint_ = model->compute_fingerprint();
  if (packing == WeightPacking::kDefault && weight_repacking_enabled()) model->pack_weights();
  return model;
}

Status Model::load_weights() {
  const GgufFile& f = *file_;
  ModelConfig& c = config_;
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) return Status(StatusCode::kCorrupt, "missing tensor 'token_embd.weight'");
  if (embd->dims.size() == 2 && c.n_vocab == 0) c.n_vocab = static_cast<int>(embd->dims[1]);
  if (c.n_vocab <= 0) return Status(StatusCode::kCorrupt, "cannot determine the vocabulary size");
  ModelWeights& w = weights_;
  IG_ASSIGN_OR_RETURN(w.token_embd, matrix(f, "token_embd.weight", c.n_embd, c.n_vocab));
  IG_ASSIGN_OR_RETURN(w.output_norm, vector(f, "output_norm.weight", c.n_embd));
  if (f.find_tensor("output.weight") != nullptr) {
    IG_ASSIGN_OR_RETURN(w.output, matrix(f, "output.weight", c.n_embd, c.n_vocab));
  } else {
    w.output = w.token_embd;
    w.output_tied = true;
  }
  IG_ASSIGN_OR_RETURN(w.rope_freq_factors,
                      vector(f, "rope_freqs.weight", c.rope.n_dims / 2, false));
  c.rope.freq_factors = w.rope_freq_factors.empty() ? nullptr : w.rope_freq_factors.data();

  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int l = 0; l < c.n_layer; ++l) {
    LayerWeights& L = w.layers[static_cast<size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    IG_ASSIGN_OR_RETURN(L.attn_norm, vector(f, p + "attn_norm.weight", c.n_embd));
    if (c.fused_qkv) {
      IG_ASSIGN_OR_RETURN(
          std::vector<MatrixView> qkv,
          split_matrix(f, p + "attn_qkv.weight", c.n_embd, {c.q_dim(), c.kv_dim(), c.kv_dim()}));
      L.wq = qkv[0];
      L.wk = qkv[1];
      L.wv = qkv[2];
    } else {
      IG_ASSIGN_OR_RETURN(L.wq, matrix(f, p + "attn_q.weight", c.n_embd, c.q_dim()));
      IG_ASSIGN_OR_RETURN(L.wk, matrix(f, p + "attn_k.weight", c.n_embd, c.kv_dim()));
      IG_ASSIGN_OR_RETURN(L.wv, matrix(f, p + "attn_v.weight", c.n_embd, c.kv_dim()));
    }
    IG_ASSIGN_OR_RETURN(L.wo, matrix(f, p + "attn_output.weight", c.q_dim(), c.n_embd));
    // Biases are optional in every architecture (qwen2 always has them).
    IG_ASSIGN_OR_RETURN(L.bq, vector(f, p + "attn_q.bias", c.q_dim(), c.qkv_bias));
    IG_ASSIGN_OR_RETURN(L.bk, vector(f, p + "attn_k.bias", c.kv_dim(), c.qkv_bias));
    IG_ASSIGN_OR_RETURN(L.bv, vector(f, p + "attn_v.bias", c.kv_dim(), c.qkv_bias));
    if (c.qk_norm) {
      IG_ASSIGN_OR_RETURN(L.q_norm, vector(f, p + "attn_q_norm.weight", c.head_dim));
      IG_ASSIGN_OR_RETURN(L.k_norm, vector(f, p + "attn_k_norm.weight", c.head_dim));
    }
    IG_ASSIGN_OR_RETURN(L.ffn_norm, vector(f, p + "ffn_norm.weight", c.n_embd));
    if (c.is_moe()) {
      ExpertWeights& E = L.moe;
      IG_ASSIGN_OR_RETURN(E.router, matrix(f, p + "ffn_gate_inp.weight", c.n_embd, c.n_expert));
      IG_ASSIGN_OR_RETURN(E.gate, expert_matrices(f, p + "ffn_gate_exps.weight", c.n_embd,
                                                  c.n_ff_expert, c.n_expert));
      IG_ASSIGN_OR_RETURN(
          E.up, expert_matrices(f, p + "ffn_up_exps.weight", c.n_embd, c.n_ff_expert, c.n_expert));
      IG_ASSIGN_OR_RETURN(E.down, expert_matrices(f, p + "ffn_down_exps.weight", c.n_ff_expert,
                                                  c.n_embd, c.n_expert));
      if (c.n_ff_shared > 0) {
        IG_ASSIGN_OR_RETURN(E.shared_gate_inp,
                            vector(f, p + "ffn_gate_inp_shexp.weight", c.n_embd));
        IG_ASSIGN_OR_RETURN(E.shared_gate,
                            matrix(f, p + "ffn_gate_shexp.weight", c.n_embd, c.n_ff_shared));
        IG_ASSIGN_OR_RETURN(E.shared_up,
                            matrix(f, p + "ffn_up_shexp.weight", c.n_embd, c.n_ff_shared));
        IG_ASSIGN_OR_RETURN(E.shared_down,
                            matrix(f, p + "ffn_down_shexp.weight", c.n_ff_shared, c.n_embd));
      }
    } else if (f.find_tensor(p + "ffn_gate_inp.weight") != nullptr) {
      return make_error(StatusCode::kCorrupt,
                        "tensor '{}ffn_gate_inp.weight' (an expert router) in a model whose "
                        "metadata has no {}.expert_count",
                        p, c.arch_name);
    } else if (c.fused_gate_up) {
      IG_ASSIGN_OR_RETURN(std::vector<MatrixView> gate_up,
                          split_matrix(f, p + "ffn_up.weight", c.n_embd, {c.n_ff, c.n_ff}));
      L.w_gate = gate_up[0];
      L.w_up = gate_up[1];
      IG_ASSIGN_OR_RETURN(L.w_down, matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd));
    } else {
      IG_ASSIGN_OR_RETURN(L.w_gate, matrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff));
      IG_ASSIGN_OR_RETURN(L.w_up, matrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff));
      IG_ASSIGN_OR_RETURN(L.w_down, matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd));
    }
  }
  if (c.is_moe()) {
    const size_t n = static_cast<size_t>(c.n_layer) * c.n_expert;
    expert_counts_ = std::make_unique<std::atomic<uint64_t>[]>(n);
    for (size_t i = 0; i < n; ++i) expert_counts_[i].store(0, std::memory_order_relaxed);
  }
  return Status::ok();
}

std::vector<MatrixView*> LayerWeights::matrices() {
  std::vector<MatrixView*> out;
  for (MatrixView* m : {&wq, &wk, &wv, &wo, &w_gate, &w_up, &w_down, &moe.router, &moe.shared_gate,
                        &moe.shared_up, &moe.shared_down}) {
    if (m->data != nullptr) out.push_back(m);
  }
  for (auto* experts : {&moe.gate, &moe.up, &moe.down}) {
    for (MatrixView& m : *experts) out.push_back(&m);
  }
  return out;
}

std::vector<const MatrixView*> LayerWeights::matrices() const {
  std::vector<const MatrixView*> out;
  for (MatrixView* m : const_cast<LayerWeights*>(this)->matrices()) out.push_back(m);
  return out;
}

size_t Model::expert_bytes(int layer) const {
  if (!config_.is_moe()) return 0;
  const ExpertWeights& E = weights_.layers[static_cast<size_t>(layer)].moe;
  return E.gate.front().total_bytes() + E.up.front().total_bytes() + E.down.front().total_bytes();
}

std::vector<uint64_t> Model::expert_activation_counts() const {
  std::vector<uint64_t> out;
  if (!expert_counts_) return out;
  const size_t n = static_cast<size_t>(config_.n_layer) * config_.n_expert;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(expert_counts_[i].load(std::memory_order_relaxed));
  return out;
}

void Model::pack_weights() {
  const CpuKernels& kernels = select_cpu_kernels();
  auto pack = [&](MatrixView& m, bool release_plain) {
    AlignedBuffer<uint8_t> storage = pack_weights_for(kernels, m);
    if (storage.size() == 0) return;
    packed_storage_.push_back(std::move(storage));
    // The packed rows are read from the copy from now on: their file pages need not stay
    // resident beside it (the memory of the weights would count twice).
    if (release_plain)
      file_->release_pages(m.data, static_cast<size_t>(m.packed_rows) * m.row_bytes);
  };
  // token_embd stays plain: it is read by row (get_rows); a tied output is packed as output,
  // and its plain rows stay resident for the lookups.
  pack(weights_.output, !weights_.output_tied);
  for (LayerWeights& L : weights_.layers) {
    for (MatrixView* m : L.matrices()) pack(*m, true);
  }
}

uint64_t Model::compute_fingerprint() const {
  // Hashing every weight byte would read the whole file at load; the header pins the layout
  // and types, and a sample from each end of every tensor tells apart different weights.
  constexpr size_t kSample = 4096;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  const auto header = file_->header_bytes();
  XXH3_64bits_update(state, header.data(), header.size());
  for (const GgufTensorInfo& t : file_->tensors()) {
    const size_t n = std::min<size_t>(kSample, t.n_bytes);
    XXH3_64bits_update(state, t.data, n);
    XXH3_64bits_update(state, t.data + t.n_bytes - n, n);
  }
  const uint64_t hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return hash;
}

size_t Model::weight_bytes_per_token() const {
  size_t bytes = weights_.output.total_bytes() + weights_.token_embd.row_bytes;
  for (int l = 0; l < config_.n_layer; ++l) {
    for (const MatrixView* m : weights_.layers[static_cast<size_t>(l)].matrices()) {
      bytes += m->total_bytes();
    }
    // One token reads only its n_expert_used experts of each layer.
    bytes -= static_cast<size_t>(config_.n_expert - config_.n_expert_used) * expert_bytes(l);
  }
  return bytes;
}

size_t Model::packed_bytes() const {
  size_t bytes = 0;
  for (const AlignedBuffer<uint8_t>& b : packed_storage_) bytes += b.size();
  return bytes;
}

std::string Model::describe() const {
  const ModelConfig& c = config_;
  std::set<std::string> types;
  for (const auto& L : weights_.layers) {
    for (const MatrixView* m : L.matrices()) {
      types.insert(tensor_type_name(static_cast<uint32_t>(m->type)));
    }
  }
  std::string type_list;
  for (const auto& t : types) type_list += (type_list.empty() ? "" : "+") + t;
  const std::string packed =
      packed_bytes() > 0
          ? fmt::format(", {:.1f} MiB repacked for the CPU GEMM", packed_bytes() / 1048576.0)
          : "";
  return fmt::format(
      "{} '{}': {} layers, n_embd {}, heads {}/{} (kv), head_dim {}, n_ff {}, "
      "vocab {}{}, weights {} ({:.1f} MiB per token){}{}",
      c.arch_name, c.model_name, c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff,
      c.n_vocab,
      c.is_moe() ? fmt::format(", {} experts ({} used, n_ff {}{})", c.n_expert, c.n_expert_used,
                               c.n_ff_expert,
                               c.n_ff_shared ? fmt::format(", shared {}", c.n_ff_shared) : "")
                 : "",
      type_list, weight_bytes_per_token() / 1048576.0, weights_.output_tied ? ", tied output" : "",
      packed);
}

Result<std::span<const float>> Model::forward(Backend& backend, KvCache& cache,
                                              ForwardScratch& scratch,
                                              std::span<const int32_t> tokens, int start_pos,
                                              Logits logits_mode) const {
  if (tokens.empty())
    return Status(StatusCode::kInvalidArgument, "forward needs at least one token");
  if (start_pos < 0 || static_cast<int64_t>(start_pos) + static_cast<int64_t>(tokens.size()) >
                           cache.max_positions()) {
    return make_error(StatusCode::kOutOfRange, "positions {}..{} exceed the context of {} tokens",
                      start_pos, start_pos + tokens.size(), cache.max_positions());
  }
  const bool all = logits_mode == Logits::kAll;
  if (all && tokens.size() > static_cast<size_t>(scratch.max_logit_rows)) {
    return make_error(StatusCode::kInvalidArgument,
                      "all-position logits for {} tokens exceed the "
                      "scratch capacity of {}",
                      tokens.size(), scratch.max_logit_rows);
  }
  const KvStorage storage = cache.storage();
  std::span<const float> logits;
  size_t done = 0;
  while (done < tokens.size()) {
    const size_t n = std::min(tokens.size() - done, static_cast<size_t>(scratch.max_tokens));
    const bool last_chunk = done + n == tokens.size();
    BatchSequence seq;
    seq.tokens = tokens.subspan(done, n);
    seq.start_pos = start_pos + static_cast<int>(done);
    seq.block_table = KvCache::kBlockTable;
    seq.logits = all ? BatchSequence::Logits::kAll
                     : (last_chunk ? BatchSequence::Logits::kLast : BatchSequence::Logits::kNone);
    IG_ASSIGN_OR_RETURN(logits, forward_batch(backend, storage, scratch, {&seq, 1}));
    done += n;
  }
  return logits;
}

Result<std::span<const float>> Model::forward_batch(Backend& backend, const KvStorage& kv,
                                                    ForwardScratch& scratch,
                                                    std::span<const BatchSequence> batch) const {
  const ModelConfig& c = config_;
  int64_t n_tokens = 0;
  for (const BatchSequence& seq : batch) {
    if (seq.tokens.empty())
      return Status(StatusCode::kInvalidArgument, "a batch sequence has no tokens");
    if (seq.start_pos < 0 || seq.block_table == nullptr) {
      return make_error(StatusCode::kInvalidArgument, "a batch sequence has start position {}{}",
                        seq.start_pos, seq.block_table ? "" : " and no block table");
    }
    for (int32_t id : seq.tokens) {
      if (id < 0 || id >= c.n_vocab) {
        return make_error(StatusCode::kInvalidArgument,
                          "token id {} is outside the vocabulary [0, {})", id, c.n_vocab);
      }
    }
    n_tokens += static_cast<int64_t>(seq.tokens.size());
  }
  if (batch.empty()) return Status(StatusCode::kInvalidArgument, "empty batch");
  int64_t n_logit_rows = 0;
  for (const BatchSequence& seq : batch) {
    n_logit_rows += seq.logits == BatchSequence::Logits::kAll    ? seq.tokens.size()
                    : seq.logits == BatchSequence::Logits::kLast ? 1
                                                                 : 0;
  }
  if (n_logit_rows > scratch.max_logit_rows) {
    return make_error(StatusCode::kInvalidArgument,
                      "a batch wants {} rows of logits, the scratch holds {}", n_logit_rows,
                      scratch.max_logit_rows);
  }
  if (n_tokens > scratch.max_tokens) {
    return make_error(StatusCode::kInvalidArgument,
                      "a batch of {} tokens exceeds the scratch capacity of {}", n_tokens,
                      scratch.max_tokens);
  }
  return run_batch(backend, kv, scratch, batch, n_tokens);
}

std::span<const float> Model::run_batch(Backend& backend, const KvStorage& kv, ForwardScratch& s,
                                        std::span<const BatchSequence> batch, int64_t n) const {
  const ModelConfig& c = config_;
  // Lay the batch out as one activation matrix, remembering which rows want logits.
  s.logit_rows.clear();
  int64_t row = 0;
  for (const BatchSequence& seq : batch) {
    const int64_t len = static_cast<int64_t>(seq.tokens.size());
    std::copy(seq.tokens.begin(), seq.tokens.end(), s.tokens.data() + row);
    std::iota(s.positions.data() + row, s.positions.data() + row + len, seq.start_pos);
    if (seq.logits == BatchSequence::Logits::kAll) {
      for (int64_t t = 0; t < len; ++t) s.logit_rows.push_back(static_cast<int32_t>(row + t));
    } else if (seq.logits == BatchSequence::Logits::kLast) {
      s.logit_rows.push_back(static_cast<int32_t>(row + len - 1));
    }
    row += len;
  }
  std::span<const int32_t> tokens(s.tokens.data(), static_cast<size_t>(n));
  std::span<const int32_t> positions(s.positions.data(), static_cast<size_t>(n));

  float* x = s.x.data();
  backend.get_rows(weights_.token_embd, tokens, x);
  AttentionParams attn_params{c.n_head, c.n_head_kv, c.head_dim,
                              1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.sliding_window};
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
    s.seqs.clear();
    row = 0;
    for (const BatchSequence& seq : batch) {
      const int64_t len = static_cast<int64_t>(seq.tokens.size());
      s.seqs.push_back({row, len, kv.layer(l, seq.block_table)});
      row += len;
    }
    // Attention block.
    backend.rms_norm(x, L.attn_norm.data(), s.xn.data(), n, c.n_embd, c.rms_eps);
    const MatrixView* qkv[] = {&L.wq, &L.wk, &L.wv};
    float* const qkv_out[] = {s.q.data(), s.k.data(), s.v.data()};
    backend.matmul_shared_input(qkv, s.xn.data(), n, qkv_out);
    if (!L.bq.empty()) backend.add_bias(L.bq.data(), s.q.data(), n, c.q_dim());
    if (!L.bk.empty()) backend.add_bias(L.bk.data(), s.k.data(), n, c.kv_dim());
    if (!L.bv.empty()) backend.add_bias(L.bv.data(), s.v.data(), n, c.kv_dim());
    if (!L.q_norm.empty()) {
      // Each head of each token is one row of head_dim.
      backend.rms_norm(s.q.data(), L.q_norm.data(), s.q.data(), n * c.n_head, c.head_dim,
                       c.rms_eps);
      backend.rms_norm(s.k.data(), L.k_norm.data(), s.k.data(), n * c.n_head_kv, c.head_dim,
                       c.rms_eps);
    }
    backend.rope(s.q.data(), n, c.n_head, c.head_dim, positions, c.rope);
    backend.rope(s.k.data(), n, c.n_head_kv, c.head_dim, positions, c.rope);
    backend.store_kv(s.k.data(), s.v.data(), c.kv_dim(), positions, s.seqs);
    backend.attention(s.q.data(), positions, s.seqs, attn_params, s.attn.data());
    backend.matmul(L.wo, s.attn.data(), n, s.ffn.data());
    backend.add(s.ffn.data(), x, n * c.n_embd);
    // Feed-forward block (SwiGLU).
    backend.rms_norm(x, L.ffn_norm.data(), s.xn.data(), n, c.n_embd, c.rms_eps);
    if (c.is_moe()) {
      moe_feed_forward(backend, L, l, s, n);
      backend.add(s.ffn.data(), x, n * c.n_embd);
      continue;
    }
    const MatrixView* gate_up[] = {&L.w_gate, &L.w_up};
    float* const gate_up_out[] = {s.gate.data(), s.up.data()};
    backend.matmul_shared_input(gate_up, s.xn.data(), n, gate_up_out);
    backend.swiglu(s.gate.data(), s.up.data(), s.gate.data(), n, c.n_ff);
    backend.matmul(L.w_down, s.gate.data(), n, s.ffn.data());
    backend.add(s.ffn.data(), x, n * c.n_embd);
  }
  const int64_t n_out = static_cast<int64_t>(s.logit_rows.size());
  if (n_out == 0) return {};
  // Gather the wanted rows, then normalize and project only those.
  for (int64_t i = 0; i < n_out; ++i) {
    const float* src = x + static_cast<int64_t>(s.logit_rows[i]) * c.n_embd;
    backend.rms_norm(src, weights_.output_norm.data(), s.xn.data() + i * c.n_embd, 1, c.n_embd,
                     c.rms_eps);
  }
  backend.matmul(weights_.output, s.xn.data(), n_out, s.logits.data());
  return std::span<const float>(s.logits.data(), static_cast<size_t>(n_out) * c.n_vocab);
}

void Model::moe_feed_forward(Backend& backend, const LayerWeights& L, int layer, ForwardScratch& s,
                             int64_t n) const {
  const ModelConfig& c = config_;
  const ExpertWeights& E = L.moe;
  const int n_expert = c.n_expert, k = c.n_expert_used;
  // Routing: softmax over the router logits, the k most probable experts (ties to the lower
  // index), their probabilities renormalised where the architecture does.
  backend.matmul(E.router, s.xn.data(), n, s.router.data());
  std::vector<int32_t>& order = s.expert_order;  // scratch: sized once, never reallocated
  std::vector<int32_t>& picked = s.picked_experts;
  std::vector<float>& picked_weight = s.picked_weights;
  picked.resize(static_cast<size_t>(n * k));
  picked_weight.resize(static_cast<size_t>(n * k));
  for (int64_t t = 0; t < n; ++t) {
    float* p = s.router.data() + t * n_expert;
    const float max = *std::max_element(p, p + n_expert);
    float sum = 0;
    for (int e = 0; e < n_expert; ++e) sum += p[e] = std::exp(p[e] - max);
    for (int e = 0; e < n_expert; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [p](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float chosen = 0;
    for (int i = 0; i < k; ++i) chosen += p[order[static_cast<size_t>(i)]];
    for (int i = 0; i < k; ++i) {
      const int e = order[static_cast<size_t>(i)];
      picked[static_cast<size_t>(t * k + i)] = e;
      picked_weight[static_cast<size_t>(t * k + i)] = c.expert_weights_norm ? p[e] / chosen : p[e];
    }
  }
  // Tokens grouped by expert (a counting sort, so each expert's rows stay in token order).
  std::vector<int32_t>& offsets = s.expert_offsets;
  std::fill(offsets.begin(), offsets.end(), 0);
  for (int32_t e : picked) ++offsets[static_cast<size_t>(e) + 1];
  for (int e = 0; e < n_expert; ++e) offsets[e + 1] += offsets[e];
  s.expert_rows.resize(picked.size());
  s.expert_scales.resize(picked.size());
  std::vector<int32_t>& fill = order;  // reused as each expert's next free slot
  std::copy(offsets.begin(), offsets.begin() + n_expert, fill.begin());
  for (size_t i = 0; i < picked.size(); ++i) {
    const auto slot = static_cast<size_t>(fill[static_cast<size_t>(picked[i])]++);
    s.expert_rows[slot] = static_cast<int32_t>(i / k);
    s.expert_scales[slot] = picked_weight[i];
  }
  // Each expert runs once over all the tokens routed to it (its weights are read once per
  // step; experts no token chose are not read). Experts are added in index order, so a token's
  // sum does not depend on the other tokens of the batch.
  std::fill(s.ffn.data(), s.ffn.data() + n * c.n_embd, 0.0f);
  for (int e = 0; e < n_expert; ++e) {
    const int64_t m = offsets[e + 1] - offsets[e];
    if (m == 0) continue;
    expert_counts_[static_cast<size_t>(layer) * n_expert + e].fetch_add(static_cast<uint64_t>(m),
                                                                        std::memory_order_relaxed);
    expert_bytes_read_.fetch_add(expert_bytes(layer), std::memory_order_relaxed);
    const std::span<const int32_t> rows(s.expert_rows.data() + offsets[e], static_cast<size_t>(m));
    const std::span<const float> scales(s.expert_scales.data() + offsets[e],
                                        static_cast<size_t>(m));
    backend.gather_rows(s.xn.data(), c.n_embd, rows, s.expert_in.data());
    const MatrixView* gate_up[] = {&E.gate[static_cast<size_t>(e)], &E.up[static_cast<size_t>(e)]};
    float* const gate_up_out[] = {s.gate.data(), s.up.data()};
    backend.matmul_shared_input(gate_up, s.expert_in.data(), m, gate_up_out);
    backend.swiglu(s.gate.data(), s.up.data(), s.gate.data(), m, c.n_ff_expert);
    backend.matmul(E.down[static_cast<size_t>(e)], s.gate.data(), m, s.expert_out.data());
    backend.scatter_add_rows(s.expert_out.data(), c.n_embd, rows, scales, s.ffn.data());
  }
  if (E.shared_gate_inp.empty()) return;
  // qwen2moe's shared expert: every token, scaled by sigmoid(shared_gate_inp . x).
  const MatrixView* gate_up[] = {&E.shared_gate, &E.shared_up};
  float* const gate_up_out[] = {s.gate.data(), s.up.data()};
  backend.matmul_shared_input(gate_up, s.xn.data(), n, gate_up_out);
  backend.swiglu(s.gate.data(), s.up.data(), s.gate.data(), n, c.n_ff_shared);
  backend.matmul(E.shared_down, s.gate.data(), n, s.expert_out.data());
  s.expert_rows.resize(static_cast<size_t>(n));
  s.expert_scales.resize(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = s.xn.data() + t * c.n_embd;
    float dot = 0;
    for (int i = 0; i < c.n_embd; ++i) dot += E.shared_gate_inp[static_cast<size_t>(i)] * xt[i];
    s.expert_rows[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    s.expert_scales[static_cast<size_t>(t)] = 1.0f / (1.0f + std::exp(-dot));
  }
  backend.scatter_add_rows(s.expert_out.data(), c.n_embd, s.expert_rows, s.expert_scales,
                           s.ffn.data());
}

}  // namespace infergrid
