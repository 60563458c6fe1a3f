#include "bench/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/scheduler.h"

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
  return s;
}

// Decode throughput at each concurrency: prefill everything first, then time decode steps only.
Status bench_throughput(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                        const EngineBenchOptions& o, std::string& text, nlohmann::json& json) {
  const int prompt_tokens = 32;
  double batch1 = 0;
  text += "decode throughput (tokens/s at each concurrency; weights are read once per step)\n";
  text += fmt::format("  {:>11} {:>12} {:>10} {:>12}\n", "concurrency", "tokens/s", "vs batch 1",
                      "ms/step");
  for (int c : o.concurrency) {
    const int max_tokens = o.decode_steps + 4;
    auto opts = scheduler_options(model, o, c * (prompt_tokens + max_tokens + 16), c);
    Scheduler s(model, tokenizer, backend, opts);
    for (int i = 0; i < c; ++i) {
      IG_RETURN_IF_ERROR(s.add(static_cast<uint64_t>(i + 1),
                               greedy_request(random_tokens(prompt_tokens, model.config().n_vocab,
                                                            static_cast<uint64_t>(i + 1)),
                                              max_tokens),
                               nullptr));
    }
    // Until every sequence has its first token, steps include prefill.
    while (true) {
      IG_ASSIGN_OR_RETURN(StepResult step, s.step());
      if (step.n_decodes == c) break;
    }
    int tokens = 0;
    const auto start = Clock::now();
    for (int i = 0; i < o.decode_steps; ++i) {
      IG_ASSIGN_OR_RETURN(StepResult step, s.step());
      tokens += step.n_tokens;
    }
    const double secs = seconds_between(start, Clock::now());
    const double tps = tokens / secs;
    if (c == o.concurrency.front()) batch1 = tps;
    const double ratio = batch1 > 0 ? tps / batch1 : 0;
    text += fmt::format("  {:>11} {:>12.1f} {:>9.2f}x {:>12.1f}\n", c, tps, ratio,
                        1000.0 * secs / o.decode_steps);
    json["throughput"].push_back({{"concurrency", c},
                                  {"tokens_per_second", tps},
                                  {"ratio_to_first", ratio},
                                  {"ms_per_step", 1000.0 * secs / o.decode_steps}});
    s.abort_all(FinishReason::kCancelled);
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
    } else {
      return make_error(StatusCode::kInvalidArgument,
                        "unknown mode '{}' (throughput, prefix, chunked)", mode);
    }
    report.text += "\n";
  }
  report.json = json.dump(2);
  return report;
}

}  // namespace infergrid
