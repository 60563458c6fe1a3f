#include "perf/decode_bench.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "engine/sampler.h"
#include "perf/machine_probe.h"

namespace infergrid {

namespace {

// Multiply-adds of one token through every weight matrix, plus attention over `context`.
double flops_per_token(const Model& model, double context) {
  const ModelConfig& c = model.config();
  double macs = static_cast<double>(model.weights().output.n_cols) * model.weights().output.n_rows;
  for (const auto& L : model.weights().layers) {
    for (const MatrixView* m : L.matrices()) macs += static_cast<double>(m->n_cols) * m->n_rows;
    // A token runs only n_expert_used of the experts.
    if (c.is_moe()) {
      double expert_macs = 0;
      for (const auto* experts : {&L.moe.gate, &L.moe.up, &L.moe.down}) {
        for (const MatrixView& m : *experts)
          expert_macs += static_cast<double>(m.n_cols) * m.n_rows;
      }
      macs -= expert_macs * (1.0 - static_cast<double>(c.n_expert_used) / c.n_expert);
    }
  }
  macs += 2.0 * c.n_layer * c.q_dim() * context;  // QK^T and PV
  return 2.0 * macs;
}

}  // namespace

Result<DecodeBenchResult> run_decode_bench(const Model& model, CpuBackend& backend,
                                           const DecodeBenchOptions& o) {
  const ModelConfig& c = model.config();
  DecodeBenchResult r;
  r.backend = backend.name();
  r.model = model.describe();
  r.prompt_tokens = o.prompt_tokens;
  r.gen_tokens = o.gen_tokens;
  const int context = o.prompt_tokens + o.gen_tokens + 1;
  KvCache cache(c, context, o.kv_type);
  ForwardScratch scratch(c, std::min(o.batch_tokens, o.prompt_tokens));
  backend.reserve(scratch.max_tokens, c.max_matmul_cols());

  // A deterministic prompt of ordinary (non-special) ids.
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_tokens));
  for (int i = 0; i < o.prompt_tokens; ++i) prompt[i] = 3 + (i * 7919) % (c.n_vocab - 3);

  double best_prefill = 1e30, best_decode = 1e30;
  for (int rep = 0; rep < std::max(1, o.repetitions); ++rep) {
    const auto prefill_start = Clock::now();
    IG_ASSIGN_OR_RETURN(std::span<const float> logits,
                        model.forward(backend, cache, scratch, prompt, 0, Model::Logits::kLast));
    best_prefill = std::min(best_prefill, seconds_since(prefill_start));
    int32_t token = Sampler::argmax(logits);
    const std::vector<uint64_t> experts_before = model.expert_activation_counts();
    const auto decode_start = Clock::now();
    for (int i = 0; i < o.gen_tokens; ++i) {
      IG_ASSIGN_OR_RETURN(
          logits, model.forward(backend, cache, scratch, std::span<const int32_t>(&token, 1),
                                o.prompt_tokens + i, Model::Logits::kLast));
      token = Sampler::argmax(logits);
    }
    best_decode = std::min(best_decode, seconds_since(decode_start));
    if (c.is_moe()) {
      // Each expert's share of the tokens routed in this decode run, over all layers.
      const std::vector<uint64_t> after = model.expert_activation_counts();
      std::vector<double> per_expert(static_cast<size_t>(c.n_expert), 0.0);
      double total = 0;
      for (size_t i = 0; i < after.size(); ++i) {
        const auto routed = static_cast<double>(after[i] - experts_before[i]);
        per_expert[i % static_cast<size_t>(c.n_expert)] += routed;
        total += routed;
      }
      r.n_expert = c.n_expert;
      r.min_expert_share = *std::min_element(per_expert.begin(), per_expert.end()) / total;
      r.max_expert_share = *std::max_element(per_expert.begin(), per_expert.end()) / total;
    }
  }
  r.prefill_tokens_per_second = o.prompt_tokens / best_prefill;
  r.prefill_gflops =
      flops_per_token(model, o.prompt_tokens / 2.0) * o.prompt_tokens / best_prefill / 1e9;
  r.decode_tokens_per_second = o.gen_tokens / best_decode;
  r.weight_bytes_per_token = static_cast<double>(model.weight_bytes_per_token());
  const double mean_context = o.prompt_tokens + o.gen_tokens / 2.0;
  r.kv_bytes_per_token =
      2.0 * c.n_layer * c.kv_dim() * static_cast<double>(kv_type_bytes(o.kv_type)) * mean_context;
  r.decode_bytes_per_second =
      (r.weight_bytes_per_token + r.kv_bytes_per_token) * r.decode_tokens_per_second;
  if (o.measure_machine) {
    const BandwidthResult probe = measure_read_bandwidth(backend.pool());
    r.memory_bandwidth = probe.bytes_per_second;
    r.memory_probe_bytes = probe.buffer_bytes;
    r.peak_gflops = measure_peak_gflops(backend.pool());
    r.peak_int8_gops = measure_peak_int8_gops(backend.pool());
  }
  return r;
}

std::string DecodeBenchResult::to_text() const {
  std::string s;
  s += fmt::format("model:    {}\n", model);
  s += fmt::format("backend:  {}\n", backend);
  s += fmt::format("prefill:  {} tokens, {:.1f} tokens/s, {:.1f} GFLOP/s", prompt_tokens,
                   prefill_tokens_per_second, prefill_gflops);
  if (peak_gflops > 0) {
    s += fmt::format(" (machine fp32 FMA peak {:.1f} GFLOP/s, ratio {:.2f}", peak_gflops,
                     prefill_gflops / peak_gflops);
    // Quantized weights run as int8 GEMM where the CPU has VNNI: that is their bound.
    if (peak_int8_gops > 0) {
      s += fmt::format("; int8 VNNI peak {:.1f} GOP/s, ratio {:.2f}", peak_int8_gops,
                       prefill_gflops / peak_int8_gops);
    }
    s += ")";
  }
  s += "\n";
  s += fmt::format("decode:   {} tokens at batch 1, {:.2f} tokens/s\n", gen_tokens,
                   decode_tokens_per_second);
  s += fmt::format("bytes:    {:.1f} MiB weights + {:.2f} MiB KV read per token -> {:.2f} GB/s\n",
                   weight_bytes_per_token / 1048576.0, kv_bytes_per_token / 1048576.0,
                   decode_bytes_per_second / 1e9);
  if (memory_bandwidth > 0) {
    s += fmt::format(
        "memory:   {:.2f} GB/s measured read bandwidth ({:.1f} GiB buffer, best of 5) -> decode "
        "at {:.1f}% of it\n",
        memory_bandwidth / 1e9, memory_probe_bytes / 1073741824.0, 100.0 * bandwidth_ratio());
  }
  if (n_expert > 0) {
    s += fmt::format(
        "experts:  {} per layer; each got {:.1f}%..{:.1f}% of the decode run's routed tokens "
        "(even: {:.1f}%)\n",
        n_expert, 100.0 * min_expert_share, 100.0 * max_expert_share, 100.0 / n_expert);
  }
  return s;
}

std::string DecodeBenchResult::to_json() const {
  nlohmann::json j = {
      {"model", model},
      {"backend", backend},
      {"prompt_tokens", prompt_tokens},
      {"gen_tokens", gen_tokens},
      {"prefill_tokens_per_second", prefill_tokens_per_second},
      {"prefill_gflops", prefill_gflops},
      {"peak_gflops", peak_gflops},
      {"peak_int8_gops", peak_int8_gops},
      {"decode_tokens_per_second", decode_tokens_per_second},
      {"weight_bytes_per_token", weight_bytes_per_token},
      {"kv_bytes_per_token", kv_bytes_per_token},
      {"decode_bytes_per_second", decode_bytes_per_second},
      {"memory_bandwidth_bytes_per_second", memory_bandwidth},
      {"memory_probe_bytes", memory_probe_bytes},
      {"bandwidth_ratio", bandwidth_ratio()},
  };
  if (n_expert > 0) {
    j["n_expert"] = n_expert;
    j["min_expert_share"] = min_expert_share;
    j["max_expert_share"] = max_expert_share;
  }
  return j.dump(2);
}

}  // namespace infergrid
