#include "perf/grammar_bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "grammar/grammar_cache.h"
#include "grammar/json_schema.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "perf/decode_bench.h"
#include "perf/machine_probe.h"

namespace infergrid {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A tool-call shaped schema: an enum, bounded numbers, a pattern, a nested array of objects.
constexpr const char* kSchema = R"({"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40},
    "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 14},
    "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    "stops": {"type": "array", "maxItems": 4, "items": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20}, "lat": {"type": "number"}},
        "required": ["city", "lat"], "additionalProperties": false}}},
  "required": ["name", "unit", "days", "code", "stops"], "additionalProperties": false})";

struct Timing {
  double masked_seconds = 0;    // fill_mask + masked sample + accept
  double unmasked_seconds = 0;  // the same logits sampled without a mask
  int tokens = 0;
};

// One generation over random logits; adds its time to `t`.
Status generate(const std::shared_ptr<const CompiledGrammar>& grammar, uint64_t seed,
                int max_tokens, Timing& t) {
  const TokenVocabulary& vocab = grammar->vocabulary();
  const auto n_vocab = static_cast<size_t>(vocab.n_vocab());
  SamplingParams params;  // llama.cpp's defaults: top-k 40, top-p 0.95, min-p 0.05, T 0.8
  params.seed = seed;
  Sampler masked(vocab.n_vocab(), params), plain(vocab.n_vocab(), params);
  GrammarMatcher matcher(grammar);
  std::vector<uint64_t> mask(vocab.mask_words());
  std::vector<float> logits(n_vocab);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < max_tokens && !matcher.ended(); ++i) {
    for (float& l : logits) l = normal(rng);
    auto start = Clock::now();
    plain.sample(logits, {});
    t.unmasked_seconds += seconds_since(start);
    start = Clock::now();
    IG_RETURN_IF_ERROR(matcher.fill_mask(mask));
    const int32_t token = masked.sample(logits, {}, mask);
    IG_RETURN_IF_ERROR(matcher.accept_token(token));
    t.masked_seconds += seconds_since(start);
    ++t.tokens;
  }
  return Status::ok();
}

}  // namespace

Result<std::string> run_grammar_bench(const Model& model, CpuBackend& backend,
                                      const GrammarBenchOptions& options) {
  DecodeBenchOptions decode;
  decode.prompt_tokens = 64;
  decode.gen_tokens = 128;
  decode.measure_machine = false;
  IG_ASSIGN_OR_RETURN(DecodeBenchResult reference, run_decode_bench(model, backend, decode));
  const double step_us = 1e6 / reference.decode_tokens_per_second;
  const BandwidthResult bandwidth = measure_read_bandwidth(backend.pool());

  struct Vocabulary {
    std::string name;
    std::unique_ptr<Tokenizer> tokenizer;
  };
  std::vector<Vocabulary> vocabularies;
  IG_ASSIGN_OR_RETURN(auto own, Tokenizer::from_gguf(model.gguf()));
  vocabularies.push_back({"the model's own", std::move(own)});
  for (const std::string& path : options.vocabularies) {
    IG_ASSIGN_OR_RETURN(auto file, GgufFile::open(path));
    IG_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::from_gguf(*file));
    vocabularies.push_back({path, std::move(tokenizer)});
  }
  IG_ASSIGN_OR_RETURN(std::string schema_gbnf,
                      json_schema_to_gbnf(nlohmann::ordered_json::parse(kSchema)));
  const std::pair<const char*, std::string> grammars[] = {{"json_schema", schema_gbnf},
                                                          {"json_object", json_object_gbnf()}};

  std::string out = fmt::format(
      "constrained decoding: the grammar's cost per generated token beyond sampling (mask + "
      "masked sample + matcher advance, minus an unmasked sample of the same logits; random "
      "logits, {} generations each, the first cold)\n"
      "reference: decode step of {} = {:.1f} us ({:.0f} tokens/s), measured in this run; "
      "read bandwidth {:.1f} GB/s\n",
      options.generations, reference.model, step_us, reference.decode_tokens_per_second,
      bandwidth.bytes_per_second / 1e9);
  out += fmt::format("{:<44} {:>7} {:<12} {:>10} {:>10} {:>10} {:>9} {:>10}\n", "vocabulary",
                     "n_vocab", "grammar", "cold us", "warm us", "sampler us", "warm/step",
                     "warm/lmhead");
  for (Vocabulary& v : vocabularies) {
    GrammarCache cache(*v.tokenizer);
    const auto build_start = Clock::now();
    cache.vocabulary();
    const double vocabulary_seconds = seconds_since(build_start);
    // The smallest real model with this vocabulary reads at least its output projection each
    // step: n_vocab x 896 (Qwen2.5-0.5B's width) Q8_0 weights at the bandwidth measured here.
    const double lm_head_us = static_cast<double>(v.tokenizer->n_vocab()) * 896 * 34.0 / 32.0 /
                              bandwidth.bytes_per_second * 1e6;
    for (const auto& [name, gbnf] : grammars) {
      IG_ASSIGN_OR_RETURN(auto grammar, Grammar::from_gbnf(gbnf));
      auto compiled = std::make_shared<const CompiledGrammar>(grammar, cache.vocabulary());
      Timing cold, warm;
      CompiledGrammar::CacheStats after_cold;
      for (int g = 0; g < options.generations; ++g) {
        IG_RETURN_IF_ERROR(generate(compiled, options.seed + static_cast<uint64_t>(g),
                                    options.max_tokens, g == 0 ? cold : warm));
        if (g == 0) after_cold = compiled->cache_stats();
      }
      const CompiledGrammar::CacheStats stats = compiled->cache_stats();
      auto per_token = [](double seconds, int tokens) {
        return tokens > 0 ? seconds / tokens * 1e6 : 0.0;
      };
      // The grammar's cost: what the constrained token took beyond sampling the same logits.
      const double cold_us = per_token(cold.masked_seconds - cold.unmasked_seconds, cold.tokens);
      const double warm_us = per_token(warm.masked_seconds - warm.unmasked_seconds, warm.tokens);
      out += fmt::format("{:<44} {:>7} {:<12} {:>10.1f} {:>10.1f} {:>10.1f} {:>8.1f}% {:>9.1f}%\n",
                         v.name.substr(std::max<size_t>(v.name.size(), 44) - 44),
                         v.tokenizer->n_vocab(), name, cold_us, warm_us,
                         per_token(warm.unmasked_seconds, warm.tokens), 100.0 * warm_us / step_us,
                         100.0 * warm_us / lm_head_us);
      out += fmt::format(
          "  {} tokens cold, {} warm; position cache: {} entries, warm {} hits, {} misses\n",
          cold.tokens, warm.tokens, stats.entries, stats.hits - after_cold.hits,
          stats.misses - after_cold.misses);
    }
    out += fmt::format(
        "  (vocabulary index built once per model: {:.1f} ms; lm-head read bound "
        "for a 896-wide model: {:.0f} us)\n",
        vocabulary_seconds * 1e3, lm_head_us);
  }
  return out;
}

}  // namespace infergrid
