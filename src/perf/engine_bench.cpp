#include "perf/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/workload.h"
#include "engine/kv_pool.h"
#include "engine/scheduler.h"
#include "kvstore/shm_tier.h"

namespace infergrid {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<int32_t> random_tokens(int n, int n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& id : t) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(n_vocab));
  return t;
}

GenerationRequest greedy_request(std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.options.max_tokens = max_tokens;
  r.options.sampling = SamplingParams::greedy();
  r.options.ignore_eos = true;
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[i];
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

SchedulerOptions scheduler_options(const Model& model, const EngineBenchOptions& o,
                                   int tokens_needed, int max_running) {
  SchedulerOptions s;
  s.block_size = 16;
  s.max_batch_tokens = o.max_batch_tokens;
  s.max_running = max_running;
  s.max_context = std::max(model.config().n_ctx_train, tokens_needed + 64);
  s.n_blocks = tokens_needed / s.block_size + max_running + 16;
  s.kv_type = o.kv_type;
  return s;
}

// Decode tokens/s of `concurrency` sequences at prompt_tokens cached each: everything is
// prefilled first, then decode steps alone are timed. ms_per_step: the mean step;
// expert_bytes_per_step: expert weights the timed steps read, per step (0 for dense models).
Result<double> decode_tokens_per_second(const Model& model, const Tokenizer& tokenizer,
                                        Backend& backend, const EngineBenchOptions& o,
                                        int concurrency, int prompt_tokens, KvType kv_type,
                                        double& ms_per_step, double& expert_bytes_per_step) {
  const int max_tokens = o.decode_steps + 4;
  auto opts =
      scheduler_options(model, o, concurrency * (prompt_tokens + max_tokens + 16), concurrency);
  opts.kv_type = kv_type;
  Scheduler s(model, tokenizer, backend, opts);
  for (int i = 0; i < concurrency; ++i) {
    IG_RETURN_IF_ERROR(s.add(static_cast<uint64_t>(i + 1),
                             greedy_request(random_tokens(prompt_tokens, model.config().n_vocab,
                                                          static_cast<uint64_t>(i + 1)),
                                            max_tokens),
                             nullptr));
  }
  // Until every sequence has its first token, steps include prefill.
  while (true) {
    IG_ASSIGN_OR_RETURN(StepResult step, s.step());
    if (step.n_decodes == concurrency) break;
  }
  int tokens = 0;
  const uint64_t expert_bytes_before = model.expert_bytes_read();
  const auto start = Clock::now();
  for (int i = 0; i < o.decode_steps; ++i) {
    IG_ASSIGN_OR_RETURN(StepResult step, s.step());
    tokens += step.n_tokens;
  }
  const double secs = seconds_between(start, Clock::now());
  expert_bytes_per_step =
      static_cast<double>(model.expert_bytes_read() - expert_bytes_before) / o.decode_steps;
  s.abort_all(FinishReason::kCancelled);
  ms_per_step = 1000.0 * secs / o.decode_steps;
  return tokens / secs;
}

// Decode throughput at each concurrency.
Status bench_throughput(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                        const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const int prompt_tokens = 32;
  double batch1 = 0;
  const ModelConfig& mc = model.config();
  const bool moe = mc.is_moe();
  text += "decode throughput (tokens/s at each concurrency; weights are read once per step)\n";
  text += fmt::format("  {:>11} {:>12} {:>10} {:>12}{}\n", "concurrency", "tokens/s", "vs batch 1",
                      "ms/step", moe ? fmt::format(" {:>17}", "expert MiB/step") : "");
  for (int c : o.concurrency) {
    double ms_per_step = 0, expert_bytes_per_step = 0;
    IG_ASSIGN_OR_RETURN(const double tps,
                        decode_tokens_per_second(model, tokenizer, backend, o, c, prompt_tokens,
                                                 o.kv_type, ms_per_step, expert_bytes_per_step));
    if (c == o.concurrency.front()) batch1 = tps;
    const double ratio = batch1 > 0 ? tps / batch1 : 0;
    text += fmt::format("  {:>11} {:>12.1f} {:>9.2f}x {:>12.1f}{}\n", c, tps, ratio, ms_per_step,
                        moe ? fmt::format(" {:>17.1f}", expert_bytes_per_step / 1048576.0) : "");
    json["throughput"].push_back({{"concurrency", c},
                                  {"tokens_per_second", tps},
                                  {"ratio_to_first", ratio},
                                  {"ms_per_step", ms_per_step}});
    if (moe) json["throughput"].back()["expert_bytes_per_step"] = expert_bytes_per_step;
  }
  if (moe) {
    // A dense feed-forward with the same active parameters reads its whole width every step.
    double dense = 0, all = 0;
    for (int l = 0; l < mc.n_layer; ++l) {
      dense += static_cast<double>(mc.n_expert_used) * static_cast<double>(model.expert_bytes(l));
      all += static_cast<double>(mc.n_expert) * static_cast<double>(model.expert_bytes(l));
    }
    text += fmt::format(
        "  expert weights per step: a dense FFN of the same active size reads {:.1f} MiB at any "
        "concurrency; all {} experts are {:.1f} MiB\n",
        dense / 1048576.0, mc.n_expert, all / 1048576.0);
    json["dense_equivalent_ffn_bytes_per_step"] = dense;
    json["all_experts_bytes"] = all;
  }
  return Status::ok();
}

// Time to first token for requests that share a long system prompt, all arriving at once.
Status bench_prefix(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                    const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const int n_vocab = model.config().n_vocab;
  const auto system = random_tokens(o.prefix_tokens, n_vocab, 7);
  text += fmt::format(
      "time to first token: {} requests sharing a {}-token system prompt (+{} own tokens), "
      "arriving together\n",
      o.prefix_requests, o.prefix_tokens, o.suffix_tokens);
  text += fmt::format("  {:>13} {:>10} {:>10} {:>10} {:>10} {:>14}\n", "prefix cache", "mean s",
                      "p50 s", "p90 s", "total s", "prompt tok hit");
  std::map<bool, double> mean_ttft;
  for (bool caching : {false, true}) {
    const int per_request = o.prefix_tokens + o.suffix_tokens;
    auto opts =
        scheduler_options(model, o, o.prefix_requests * (per_request + 8), o.prefix_requests);
    opts.prefix_caching = caching;
    Scheduler s(model, tokenizer, backend, opts);
    std::vector<double> ttft(static_cast<size_t>(o.prefix_requests), -1);
    const auto start = Clock::now();
    for (int i = 0; i < o.prefix_requests; ++i) {
      auto prompt = system;
      const auto own = random_tokens(o.suffix_tokens, n_vocab, 1000 + static_cast<uint64_t>(i));
      prompt.insert(prompt.end(), own.begin(), own.end());
      IG_RETURN_IF_ERROR(s.add(static_cast<uint64_t>(i + 1), greedy_request(prompt, 2),
                               [&ttft, i, start](const RequestEvent& e) {
                                 if (!e.tokens.empty() && ttft[static_cast<size_t>(i)] < 0) {
                                   ttft[static_cast<size_t>(i)] =
                                       seconds_between(start, Clock::now());
                                 }
                               }));
    }
    while (s.has_work()) IG_RETURN_IF_ERROR(s.step().status());
    const double total = seconds_between(start, Clock::now());
    const auto& counters = s.counters();
    mean_ttft[caching] = mean(ttft);
    text +=
        fmt::format("  {:>13} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>7}/{:<7}\n",
                    caching ? "on" : "off", mean(ttft), percentile(ttft, 50), percentile(ttft, 90),
                    total, counters.prefix_hit_tokens, counters.prompt_tokens);
    json["prefix"].push_back({{"prefix_cache", caching},
                              {"ttft_mean_s", mean(ttft)},
                              {"ttft_p50_s", percentile(ttft, 50)},
                              {"ttft_p90_s", percentile(ttft, 90)},
                              {"total_s", total},
                              {"prefix_hit_tokens", counters.prefix_hit_tokens},
                              {"prompt_tokens", counters.prompt_tokens}});
  }
  const double speedup = mean_ttft[true] > 0 ? mean_ttft[false] / mean_ttft[true] : 0;
  text += fmt::format("  mean TTFT with the prefix cache is {:.1f}x lower\n", speedup);
  json["prefix_ttft_speedup"] = speedup;
  return Status::ok();
}

// Inter-token latency of running streams while a long prompt is prefilled.
Status bench_chunked(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                     const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const int n_vocab = model.config().n_vocab;
  text += fmt::format(
      "inter-token latency of {} running streams while a {}-token prompt arrives "
      "(budget {} tokens/step)\n",
      o.streams, o.long_prompt_tokens, o.max_batch_tokens);
  text += fmt::format("  {:>15} {:>10} {:>10} {:>10} {:>12}\n", "chunked prefill", "p50 ms",
                      "p99 ms", "max ms", "long TTFT s");
  for (bool chunked : {false, true}) {
    auto opts = scheduler_options(model, o, o.long_prompt_tokens + o.streams * 400, o.streams + 1);
    opts.chunked_prefill = chunked;
    opts.prefix_caching = false;
    Scheduler s(model, tokenizer, backend, opts);
    std::vector<Clock::time_point> last(static_cast<size_t>(o.streams));
    std::vector<double> gaps;
    bool measuring = false;
    bool long_done = false;
    for (int i = 0; i < o.streams; ++i) {
      IG_RETURN_IF_ERROR(
          s.add(static_cast<uint64_t>(i + 1),
                greedy_request(random_tokens(16, n_vocab, 50 + static_cast<uint64_t>(i)), 100000),
                [&, i](const RequestEvent& e) {
                  if (e.tokens.empty()) return;
                  const auto now = Clock::now();
                  if (measuring)
                    gaps.push_back(1000.0 * seconds_between(last[static_cast<size_t>(i)], now));
                  last[static_cast<size_t>(i)] = now;
                }));
    }
    // Warm up: every stream decoding.
    while (true) {
      IG_ASSIGN_OR_RETURN(StepResult step, s.step());
      if (step.n_decodes == o.streams) break;
    }
    for (int i = 0; i < 3; ++i) IG_RETURN_IF_ERROR(s.step().status());
    measuring = true;
    const auto arrival = Clock::now();
    double long_ttft = 0;
    IG_RETURN_IF_ERROR(s.add(1000,
                             greedy_request(random_tokens(o.long_prompt_tokens, n_vocab, 4242), 1),
                             [&](const RequestEvent& e) {
                               if (e.finished) {
                                 long_done = true;
                                 long_ttft = seconds_between(arrival, Clock::now());
                               }
                             }));
    while (!long_done) IG_RETURN_IF_ERROR(s.step().status());
    for (int i = 0; i < 3; ++i) IG_RETURN_IF_ERROR(s.step().status());
    s.abort_all(FinishReason::kCancelled);
    const double max_gap = gaps.empty() ? 0 : *std::max_element(gaps.begin(), gaps.end());
    text +=
        fmt::format("  {:>15} {:>10.1f} {:>10.1f} {:>10.1f} {:>12.2f}\n", chunked ? "on" : "off",
                    percentile(gaps, 50), percentile(gaps, 99), max_gap, long_ttft);
    json["chunked"].push_back({{"chunked_prefill", chunked},
                               {"itl_p50_ms", percentile(gaps, 50)},
                               {"itl_p99_ms", percentile(gaps, 99)},
                               {"itl_max_ms", max_gap},
                               {"long_prompt_ttft_s", long_ttft}});
  }
  return Status::ok();
}

// How far two runs of the same greedy prompts agree: per prompt, the first token, the tokens
// up to the first difference (after it the texts diverge), and the change of the first token's
// top-5 log-probabilities (in nats).
struct GreedyAgreement {
  int first_same = 0;
  int64_t tokens_same = 0;
  int64_t tokens_total = 0;
  double max_change = 0;
  double mean_change = 0;
};

GreedyAgreement compare_generations(const std::vector<std::vector<GeneratedToken>>& reference,
                                    const std::vector<std::vector<GeneratedToken>>& other) {
  GreedyAgreement a;
  double sum_change = 0;
  int n_change = 0;
  for (size_t i = 0; i < reference.size() && i < other.size(); ++i) {
    const auto& want = reference[i];
    const auto& got = other[i];
    if (want.empty() || got.empty()) continue;
    a.first_same += want[0].token == got[0].token;
    size_t same = 0;
    while (same < want.size() && same < got.size() && want[same].token == got[same].token) {
      ++same;
    }
    a.tokens_same += static_cast<int64_t>(same);
    a.tokens_total += static_cast<int64_t>(want.size());
    for (const auto& w : want[0].top) {
      for (const auto& g : got[0].top) {
        if (g.token != w.token) continue;
        const double change = std::fabs(static_cast<double>(g.logprob) - w.logprob);
        a.max_change = std::max(a.max_change, change);
        sum_change += change;
        ++n_change;
      }
    }
  }
  a.mean_change = n_change > 0 ? sum_change / n_change : 0;
  return a;
}

// Prompts of random words (so the tokenizer's real pieces, not arbitrary ids), cut to length.
std::vector<std::vector<int32_t>> word_prompts(const Tokenizer& tokenizer, int n, int tokens) {
  std::mt19937_64 rng(2024);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) {
    auto p = tokenizer.encode(random_words(rng, tokens), true, false);
    if (static_cast<int>(p.size()) > tokens) p.resize(static_cast<size_t>(tokens));
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Greedy generations of each prompt with its top-5 log-probabilities, one prompt at a time (so
// no prompt shares another's blocks in memory).
Result<std::vector<std::vector<GeneratedToken>>> generate_one_at_a_time(
    Scheduler& s, const std::vector<std::vector<int32_t>>& prompts, int max_tokens) {
  std::vector<std::vector<GeneratedToken>> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto request = greedy_request(prompts[i], max_tokens);
    request.options.logprobs = 5;
    IG_RETURN_IF_ERROR(s.add(i + 1, std::move(request), [&out, i](const RequestEvent& e) {
      out[i].insert(out[i].end(), e.tokens.begin(), e.tokens.end());
    }));
    while (s.has_work()) IG_RETURN_IF_ERROR(s.step().status());
  }
  return out;
}

// The KV cache types against f32: what each costs in accuracy (greedy agreement over the same
// prompts) and what it gives in memory and in decode speed at a long context.
Status bench_kv_type(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                     const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const auto prompts = word_prompts(tokenizer, o.codec_prompts, o.codec_prompt_tokens);
  text += fmt::format(
      "KV cache type against f32: {} prompts of {} tokens, {} greedy tokens each; decode at {} "
      "sequences of {} cached tokens\n",
      o.codec_prompts, o.codec_prompt_tokens, o.codec_generate, o.kv_type_sequences,
      o.kv_type_context);
  text += fmt::format("  {:>5} {:>11} {:>14} {:>16} {:>12} {:>12} {:>12} {:>8}\n", "type",
                      "KV B/token", "1st tok same", "tokens same", "max |dlogp|", "mean |dlogp|",
                      "decode t/s", "vs f32");
  const auto generate_all =
      [&](KvType kv_type) -> Result<std::vector<std::vector<GeneratedToken>>> {
    auto opts = scheduler_options(model, o, o.codec_prompt_tokens + o.codec_generate + 16, 1);
    opts.kv_type = kv_type;
    opts.prefix_caching = false;
    Scheduler s(model, tokenizer, backend, opts);
    return generate_one_at_a_time(s, prompts, o.codec_generate);
  };
  IG_ASSIGN_OR_RETURN(const auto reference, generate_all(KvType::kF32));
  double f32_tps = 0;
  for (const KvType kv_type : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
    GreedyAgreement a;
    if (kv_type == KvType::kF32) {
      a = compare_generations(reference, reference);
    } else {
      IG_ASSIGN_OR_RETURN(const auto generated, generate_all(kv_type));
      a = compare_generations(reference, generated);
    }
    double ms_per_step = 0, expert_bytes_per_step = 0;
    IG_ASSIGN_OR_RETURN(
        const double tps,
        decode_tokens_per_second(model, tokenizer, backend, o, o.kv_type_sequences,
                                 o.kv_type_context, kv_type, ms_per_step, expert_bytes_per_step));
    if (kv_type == KvType::kF32) f32_tps = tps;
    const size_t bytes_per_token = KvPool::block_bytes(model.config(), 1, kv_type);
    text += fmt::format(
        "  {:>5} {:>11} {:>8}/{:<5} {:>10}/{:<5} {:>12.4f} {:>12.4f} {:>12.1f} {:>7.2f}x\n",
        kv_type_name(kv_type), bytes_per_token, a.first_same, prompts.size(), a.tokens_same,
        a.tokens_total, a.max_change, a.mean_change, tps, f32_tps > 0 ? tps / f32_tps : 0);
    json["kv_type"].push_back({{"type", std::string(kv_type_name(kv_type))},
                               {"kv_bytes_per_token", bytes_per_token},
                               {"first_token_same", a.first_same},
                               {"prompts", prompts.size()},
                               {"greedy_tokens_same_before_divergence", a.tokens_same},
                               {"greedy_tokens", a.tokens_total},
                               {"first_token_top5_logprob_change_max", a.max_change},
                               {"first_token_top5_logprob_change_mean", a.mean_change},
                               {"decode_tokens_per_second", tps},
                               {"decode_sequences", o.kv_type_sequences},
                               {"decode_context_tokens", o.kv_type_context}});
  }
  text +=
      "  (tokens same: greedy tokens equal to f32's up to the first difference; |dlogp|: change "
      "of the first token's top-5 log-probabilities, in nats)\n";
  return Status::ok();
}

// What a lossy tier codec costs in accuracy: each prompt is computed once (its full blocks are
// written through to a fresh DRAM tier in the codec's format), then run again on a cold engine
// that loads that prefix back from the tier, and the two runs' greedy tokens and first-token
// log-probabilities are compared. The native codec is the reference: its loaded run must match
// the computed one exactly, which shows the comparison itself adds nothing.
Status bench_tier_codec(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                        const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const auto prompts = word_prompts(tokenizer, o.codec_prompts, o.codec_prompt_tokens);
  text += fmt::format(
      "KV tier codec accuracy: {} prompts of {} tokens, computed vs loaded back from a DRAM "
      "tier, {} greedy tokens each\n",
      o.codec_prompts, o.codec_prompt_tokens, o.codec_generate);
  text += fmt::format("  {:>6} {:>10} {:>12} {:>14} {:>16} {:>16} {:>12}\n", "codec", "bytes/blk",
                      "tier tokens", "1st tok same", "tokens same", "max |dlogp| ", "mean |dlogp|");
  for (const KvCodec codec : {KvCodec::kNative, KvCodec::kInt8}) {
    const int tokens_needed = o.codec_prompt_tokens + o.codec_generate + 16;
    auto opts = scheduler_options(model, o, tokens_needed * 2, 1);
    opts.tier_codec = codec;
    const uint64_t tag = Scheduler::kv_layout_tag(model, opts.block_size, opts.kv_type, codec);
    const size_t tier_block =
        Scheduler::tier_block_bytes(model.config(), opts.block_size, opts.kv_type, codec);
    const std::string name = fmt::format("codecbench{}", ::getpid());
    ShmTier::unlink(name, tag);
    const uint64_t blocks_needed =
        static_cast<uint64_t>(o.codec_prompts) * (static_cast<uint64_t>(tokens_needed) / 16 + 2);
    auto tier =
        ShmTier::open(name, blocks_needed * (tier_block + 1024), tag, opts.block_size, tier_block);
    if (!tier.is_ok()) return tier.status();
    opts.dram_tier = std::shared_ptr<ShmTier>(std::move(tier).value());
    // One run of every prompt on a fresh engine; per prompt, its generated tokens.
    const auto run =
        [&](uint64_t& tier_hit_tokens) -> Result<std::vector<std::vector<GeneratedToken>>> {
      Scheduler s(model, tokenizer, backend, opts);
      // One at a time, so each prompt's prefix is loaded from the tier, not shared in memory.
      auto out = generate_one_at_a_time(s, prompts, o.codec_generate);
      s.flush_tiers();
      tier_hit_tokens = s.counters().tier_hit_tokens;
      return out;
    };
    uint64_t computed_hits = 0, loaded_hits = 0;
    auto computed = run(computed_hits);
    if (!computed.is_ok()) return computed.status();
    auto loaded = run(loaded_hits);
    ShmTier::unlink(name, tag);
    if (!loaded.is_ok()) return loaded.status();
    const GreedyAgreement a = compare_generations(*computed, *loaded);
    text += fmt::format("  {:>6} {:>10} {:>12} {:>8}/{:<5} {:>10}/{:<5} {:>16.4f} {:>12.4f}\n",
                        kv_codec_name(codec), tier_block, loaded_hits, a.first_same, prompts.size(),
                        a.tokens_same, a.tokens_total, a.max_change, a.mean_change);
    json["tier_codec"].push_back({{"codec", std::string(kv_codec_name(codec))},
                                  {"tier_block_bytes", tier_block},
                                  {"tier_hit_tokens", loaded_hits},
                                  {"first_token_same", a.first_same},
                                  {"prompts", prompts.size()},
                                  {"greedy_tokens_same_before_divergence", a.tokens_same},
                                  {"greedy_tokens", a.tokens_total},
                                  {"first_token_top5_logprob_change_max", a.max_change},
                                  {"first_token_top5_logprob_change_mean", a.mean_change}});
  }
  text +=
      "  (tokens same: greedy tokens equal up to the first difference; |dlogp|: change of the "
      "first token's top-5 log-probabilities, in nats)\n";
  return Status::ok();
}

}  // namespace

Result<EngineBenchReport> run_engine_bench(const Model& model, const Tokenizer& tokenizer,
                                           Backend& backend, const EngineBenchOptions& o) {
  EngineBenchReport report;
  nlohmann::json json;
  json["model"] = model.describe();
  json["backend"] = backend.name();
  report.text = fmt::format("model:    {}\nbackend:  {}\n\n", model.describe(), backend.name());
  for (const std::string& mode : o.modes) {
    if (mode == "throughput") {
      IG_RETURN_IF_ERROR(bench_throughput(model, tokenizer, backend, o, report.text, json));
    } else if (mode == "prefix") {
      IG_RETURN_IF_ERROR(bench_prefix(model, tokenizer, backend, o, report.text, json));
    } else if (mode == "chunked") {
      IG_RETURN_IF_ERROR(bench_chunked(model, tokenizer, backend, o, report.text, json));
    } else if (mode == "tier-codec") {
      IG_RETURN_IF_ERROR(bench_tier_codec(model, tokenizer, backend, o, report.text, json));
    } else if (mode == "kv-type") {
      IG_RETURN_IF_ERROR(bench_kv_type(model, tokenizer, backend, o, report.text, json));
    } else {
      return make_error(StatusCode::kInvalidArgument,
                        "unknown mode '{}' (throughput, prefix, chunked, tier-codec, kv-type)",
                        mode);
    }
    report.text += "\n";
  }
  report.json = json.dump(2);
  return report;
}

}  // namespace infergrid
