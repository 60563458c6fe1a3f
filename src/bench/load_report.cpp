#include "bench/load_report.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace infergrid {

namespace {

// Sums every sample of each metric name over its label sets. Malformed lines are skipped: a
// metrics page we only read for a cross-check must not fail the benchmark.
std::map<std::string, double, std::less<>> parse_prometheus_samples(std::string_view text) {
  std::map<std::string, double, std::less<>> sums;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    size_t i = line.find_first_of("{ \t");
    if (i == std::string_view::npos || i == 0) continue;
    const std::string_view name = line.substr(0, i);
    if (line[i] == '{') {  // label values are quoted and may contain '}' or escaped quotes
      bool quoted = false;
      for (++i; i < line.size(); ++i) {
        if (quoted && line[i] == '\\') {
          ++i;
        } else if (line[i] == '"') {
          quoted = !quoted;
        } else if (!quoted && line[i] == '}') {
          break;
        }
      }
      if (i >= line.size()) continue;
      ++i;
    }
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t value_end = std::min(line.find_first_of(" \t\r", i), line.size());
    const std::string value_text(line.substr(i, value_end - i));
    if (value_text.empty()) continue;
    char* parsed_end = nullptr;
    const double value = std::strtod(value_text.c_str(), &parsed_end);
    if (parsed_end != value_text.c_str() + value_text.size()) continue;
    sums[std::string(name)] += value;
  }
  return sums;
}

std::optional<double> first_present(const std::map<std::string, double, std::less<>>& sums,
                                    std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    if (auto it = sums.find(name); it != sums.end()) return it->second;
  }
  return std::nullopt;
}

nlohmann::json distribution_json(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}};
}

// Null when nothing was measured, so that an empty split is not read as zero latency.
nlohmann::json nonempty_distribution_json(const Distribution& d) {
  return d.count > 0 ? distribution_json(d) : nlohmann::json(nullptr);
}

nlohmann::json optional_json(std::optional<double> v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json counters_json(const std::optional<ServerCounters>& c) {
  if (!c) return nullptr;
  return {{"request_success", optional_json(c->request_success)},
          {"prompt_tokens", optional_json(c->prompt_tokens)},
          {"generation_tokens", optional_json(c->generation_tokens)}};
}

std::string optional_text(std::optional<double> v) {
  return v ? fmt::format("{:.0f}", *v) : std::string("n/a");
}

constexpr const char* kTiers[] = {"dram", "disk"};

// Counters of each tier reported as deltas over the run, in text and JSON alike.
struct TierCounter {
  const char* series;  // after infergrid_kv_<tier>_
  const char* json;
  const char* column;
  int width;
};
constexpr TierCounter kTierCounters[] = {
    {"hits_total", "hits", "hits", 9},
    {"misses_total", "misses", "misses", 9},
    {"read_bytes_total", "read_bytes", "read bytes", 14},
    {"written_bytes_total", "written_bytes", "written bytes", 14},
    {"blocks_dropped_total", "blocks_dropped", "dropped", 9},
    {"evicted_total", "evicted", "evicted", 9},
};

// What the server's KV cache did during the run, from infergrid's own /metrics series: the
// prefix cache and, per tier below engine memory, hits and misses, bytes moved each way,
// blocks dropped for failed checks and evicted (deltas), and occupancy after the run.
std::string kv_cache_text(const MetricsCheck& m) {
  const auto d = [&](std::string_view name) { return optional_text(m.kv_delta(name)); };
  if (!m.kv_delta("infergrid_computed_tokens_total")) return "";
  std::string t = fmt::format(
      "\nKV cache (server /metrics, during the run): {} tokens computed, {} prompt tokens from "
      "the prefix cache ({} of them loaded from a tier), {} preemptions\n",
      d("infergrid_computed_tokens_total"), d("infergrid_prefix_cache_hit_tokens_total"),
      d("infergrid_kv_tier_hit_tokens_total"), d("infergrid_preemptions_total"));
  bool header = false;
  for (const char* tier : kTiers) {
    const std::string p = fmt::format("infergrid_kv_{}_", tier);
    if (!m.kv_after(p + "blocks")) continue;
    if (!header) {
      t += fmt::format("  {:<6}", "tier");
      for (const TierCounter& c : kTierCounters) t += fmt::format("{:>{}}", c.column, c.width);
      t += fmt::format("{:>9}{:>18}\n", "blocks", "used/capacity MiB");
      header = true;
    }
    const auto mib = [&](std::string_view name) {
      const auto v = m.kv_after(name);
      return v ? fmt::format("{:.0f}", *v / 1048576.0) : std::string("n/a");
    };
    t += fmt::format("  {:<6}", tier);
    for (const TierCounter& c : kTierCounters) t += fmt::format("{:>{}}", d(p + c.series), c.width);
    t += fmt::format("{:>9}{:>18}\n", optional_text(m.kv_after(p + "blocks")),
                     mib(p + "used_bytes") + "/" + mib(p + "capacity_bytes"));
  }
  return t;
}

nlohmann::json kv_cache_json(const MetricsCheck& m) {
  if (!m.kv_delta("infergrid_computed_tokens_total")) return nullptr;
  nlohmann::json j = {
      {"computed_tokens", optional_json(m.kv_delta("infergrid_computed_tokens_total"))},
      {"prefix_cache_hit_tokens",
       optional_json(m.kv_delta("infergrid_prefix_cache_hit_tokens_total"))},
      {"tier_hit_tokens", optional_json(m.kv_delta("infergrid_kv_tier_hit_tokens_total"))},
      {"preemptions", optional_json(m.kv_delta("infergrid_preemptions_total"))}};
  for (const char* tier : kTiers) {
    const std::string p = fmt::format("infergrid_kv_{}_", tier);
    if (!m.kv_after(p + "blocks")) continue;
    nlohmann::json& t = j["tiers"][tier];
    for (const TierCounter& c : kTierCounters) t[c.json] = optional_json(m.kv_delta(p + c.series));
    t["blocks_after"] = optional_json(m.kv_after(p + "blocks"));
    t["used_bytes_after"] = optional_json(m.kv_after(p + "used_bytes"));
    t["capacity_bytes"] = optional_json(m.kv_after(p + "capacity_bytes"));
  }
  return j;
}

}  // namespace

double RequestRecord::tpot_s() const {
  if (completion_tokens < 2) return -1;
  return (e2e_s - ttft_s) / (completion_tokens - 1);
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

Distribution summarize_distribution(const std::vector<double>& values) {
  Distribution d;
  d.count = values.size();
  if (values.empty()) return d;
  double sum = 0;
  for (double v : values) sum += v;
  d.mean = sum / static_cast<double>(values.size());
  d.p50 = percentile(values, 50);
  d.p90 = percentile(values, 90);
  d.p99 = percentile(values, 99);
  return d;
}

bool meets_slo(const RequestRecord& record, const SloOptions& slo) {
  if (!record.success) return false;
  if (slo.ttft_ms > 0 && record.ttft_s * 1000.0 > slo.ttft_ms) return false;
  const double tpot = record.tpot_s();
  if (slo.tpot_ms > 0 && tpot >= 0 && tpot * 1000.0 > slo.tpot_ms) return false;
  return true;
}

ServerCounters parse_prometheus_counters(std::string_view text) {
  const auto sums = parse_prometheus_samples(text);
  ServerCounters c;
  c.request_success =
      first_present(sums, {"infergrid_request_success_total", "vllm:request_success_total"});
  c.prompt_tokens =
      first_present(sums, {"infergrid_prompt_tokens_total", "vllm:prompt_tokens_total",
                           "llamacpp:prompt_tokens_total"});
  c.generation_tokens =
      first_present(sums, {"infergrid_generation_tokens_total", "vllm:generation_tokens_total",
                           "llamacpp:tokens_predicted_total"});
  for (const auto& [name, value] : sums) {
    if (name.starts_with("infergrid_kv_") || name == "infergrid_prefix_cache_hit_tokens_total" ||
        name == "infergrid_computed_tokens_total" || name == "infergrid_preemptions_total") {
      c.kv.emplace(name, value);
    }
  }
  return c;
}

std::optional<double> MetricsCheck::kv_delta(std::string_view name) const {
  if (!before || !after) return std::nullopt;
  const auto b = before->kv.find(name);
  const auto a = after->kv.find(name);
  if (b == before->kv.end() || a == after->kv.end()) return std::nullopt;
  return a->second - b->second;
}

std::optional<double> MetricsCheck::kv_after(std::string_view name) const {
  if (!after) return std::nullopt;
  const auto a = after->kv.find(name);
  if (a == after->kv.end()) return std::nullopt;
  return a->second;
}

std::optional<double> MetricsCheck::delta(std::optional<double> ServerCounters::*field) const {
  if (!before || !after || !((*before).*field) || !((*after).*field)) return std::nullopt;
  return *((*after).*field) - *((*before).*field);
}

LoadReport summarize(const std::vector<RequestRecord>& records, double duration_s,
                     const SloOptions& slo) {
  LoadReport r;
  r.slo = slo;
  r.n_requests = records.size();
  r.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e, ttft_first, ttft_returning;
  for (const RequestRecord& rec : records) {
    const bool returning = rec.turn >= 2;
    if (returning) r.has_returning_turns = true;
    if (!rec.success) {
      ++r.n_failed;
      if (r.first_errors.size() < LoadReport::kMaxErrors &&
          std::find(r.first_errors.begin(), r.first_errors.end(), rec.error) ==
              r.first_errors.end()) {
        r.first_errors.push_back(rec.error);
      }
      continue;
    }
    ++r.n_success;
    if (meets_slo(rec, slo)) ++r.n_good;
    if (rec.completion_tokens < rec.requested_output_tokens) ++r.n_short_output;
    if (!rec.usage_reported) r.usage_missing = true;
    r.prompt_tokens += rec.prompt_tokens;
    r.completion_tokens += rec.completion_tokens;
    ttft.push_back(rec.ttft_s * 1000.0);
    if (returning) {
      ttft_returning.push_back(rec.ttft_s * 1000.0);
      r.prompt_tokens_returning += rec.prompt_tokens;
      r.cached_tokens_returning += rec.cached_tokens;
    } else {
      ttft_first.push_back(rec.ttft_s * 1000.0);
    }
    e2e.push_back(rec.e2e_s * 1000.0);
    if (rec.tpot_s() >= 0) tpot.push_back(rec.tpot_s() * 1000.0);
    for (double gap : rec.itl_s) itl.push_back(gap * 1000.0);
  }
  r.ttft_ms = summarize_distribution(ttft);
  r.tpot_ms = summarize_distribution(tpot);
  r.itl_ms = summarize_distribution(itl);
  r.e2e_ms = summarize_distribution(e2e);
  r.ttft_first_turn_ms = summarize_distribution(ttft_first);
  r.ttft_returning_turn_ms = summarize_distribution(ttft_returning);
  if (duration_s > 0) {
    r.request_throughput = static_cast<double>(r.n_success) / duration_s;
    r.output_throughput = static_cast<double>(r.completion_tokens) / duration_s;
    r.total_token_throughput =
        static_cast<double>(r.prompt_tokens + r.completion_tokens) / duration_s;
    if (slo.any()) r.goodput = static_cast<double>(r.n_good) / duration_s;
  } else if (slo.any()) {
    r.goodput = 0;
  }
  return r;
}

std::string LoadReport::to_text() const {
  std::string t;
  const auto row = [&t](std::string_view label, const std::string& value) {
    t += fmt::format("{:<24}{}\n", label, value);
  };
  t += "==================== bench serve ====================\n";
  row("url", info.url);
  row("model", info.model);
  row("workload",
      fmt::format("{} ({} endpoint), seed {}", info.workload, info.endpoint, info.seed));
  row("arrivals", info.arrivals);
  row("requests", fmt::format("{} ok, {} failed, of {}", n_success, n_failed, n_requests));
  row("duration", fmt::format("{:.2f} s", duration_s));
  row("request throughput", fmt::format("{:.2f} req/s", request_throughput));
  row("output throughput", fmt::format("{:.1f} tokens/s", output_throughput));
  row("total throughput", fmt::format("{:.1f} tokens/s (prompt + output)", total_token_throughput));
  if (goodput) {
    std::string objectives;
    if (slo.ttft_ms > 0) objectives += fmt::format("TTFT <= {} ms", slo.ttft_ms);
    if (slo.tpot_ms > 0) {
      objectives += fmt::format("{}TPOT <= {} ms", objectives.empty() ? "" : ", ", slo.tpot_ms);
    }
    row("goodput", fmt::format("{:.2f} req/s ({} of {} ok requests meet {})", *goodput, n_good,
                               n_success, objectives));
  } else {
    row("goodput", "n/a (set --slo-ttft-ms and/or --slo-tpot-ms)");
  }
  row("prompt tokens", fmt::format("{}{}", prompt_tokens, usage_missing ? " (usage missing)" : ""));
  row("completion tokens", fmt::format("{}", completion_tokens));
  if (n_short_output > 0) {
    row("warning", fmt::format("{} requests returned fewer tokens than max_tokens (server "
                               "ignored ignore_eos?)",
                               n_short_output));
  }
  std::vector<std::pair<const char*, const Distribution*>> table = {
      {"TTFT", &ttft_ms}, {"TPOT", &tpot_ms}, {"ITL", &itl_ms}, {"E2E", &e2e_ms}};
  if (has_returning_turns) {
    table.emplace_back("TTFT first turns", &ttft_first_turn_ms);
    table.emplace_back("TTFT returning turns", &ttft_returning_turn_ms);
  }
  const int label_width = has_returning_turns ? 22 : 10;
  t += fmt::format("\n{:<{}}{:>7}{:>11}{:>11}{:>11}{:>11}\n", "ms", label_width, "count", "mean",
                   "p50", "p90", "p99");
  for (const auto& [name, d] : table) {
    t += fmt::format("{:<{}}{:>7}{:>11.2f}{:>11.2f}{:>11.2f}{:>11.2f}\n", name, label_width,
                     d->count, d->mean, d->p50, d->p90, d->p99);
  }
  if (has_returning_turns) {
    t += fmt::format("returning turns: {} prompt tokens, {} reported cached by the server\n",
                     prompt_tokens_returning, cached_tokens_returning);
  }
  if (!first_errors.empty()) {
    t += "\nerrors (first distinct):\n";
    for (const std::string& e : first_errors) t += "  " + e + "\n";
  }
  if (metrics) {
    t += fmt::format("\n{:<24}{:>12}{:>14}\n", "/metrics check", "client", "server delta");
    const auto check_row = [&](std::string_view label, int64_t client,
                               std::optional<double> ServerCounters::*field) {
      t += fmt::format("{:<24}{:>12}{:>14}\n", label, client, optional_text(metrics->delta(field)));
    };
    check_row("successful requests", static_cast<int64_t>(n_success),
              &ServerCounters::request_success);
    check_row("prompt tokens", prompt_tokens, &ServerCounters::prompt_tokens);
    check_row("generation tokens", completion_tokens, &ServerCounters::generation_tokens);
    if (!metrics->error.empty()) t += "  (" + metrics->error + ")\n";
    t += kv_cache_text(*metrics);
  }
  return t;
}

std::string LoadReport::to_json() const {
  nlohmann::json j;
  j["url"] = info.url;
  j["model"] = info.model;
  j["workload"] = info.workload;
  j["endpoint"] = info.endpoint;
  j["arrivals"] = info.arrivals;
  j["seed"] = info.seed;
  j["requests"] = n_requests;
  j["successful"] = n_success;
  j["failed"] = n_failed;
  j["errors"] = first_errors;
  j["duration_s"] = duration_s;
  j["prompt_tokens"] = prompt_tokens;
  j["completion_tokens"] = completion_tokens;
  j["usage_missing"] = usage_missing;
  j["short_outputs"] = n_short_output;
  j["request_throughput"] = request_throughput;
  j["output_throughput"] = output_throughput;
  j["total_token_throughput"] = total_token_throughput;
  j["goodput"] = optional_json(goodput);
  j["good_requests"] = n_good;
  j["slo"] = {{"ttft_ms", slo.ttft_ms > 0 ? nlohmann::json(slo.ttft_ms) : nlohmann::json(nullptr)},
              {"tpot_ms", slo.tpot_ms > 0 ? nlohmann::json(slo.tpot_ms) : nlohmann::json(nullptr)}};
  j["ttft_ms"] = distribution_json(ttft_ms);
  j["tpot_ms"] = distribution_json(tpot_ms);
  j["itl_ms"] = distribution_json(itl_ms);
  j["e2e_ms"] = distribution_json(e2e_ms);
  j["ttft_first_turn_ms"] = nonempty_distribution_json(ttft_first_turn_ms);
  j["ttft_returning_turn_ms"] = nonempty_distribution_json(ttft_returning_turn_ms);
  j["prompt_tokens_returning"] = prompt_tokens_returning;
  j["cached_tokens_returning"] = cached_tokens_returning;
  if (metrics) {
    j["metrics_check"] = {
        {"client",
         {{"request_success", n_success},
          {"prompt_tokens", prompt_tokens},
          {"generation_tokens", completion_tokens}}},
        {"server_delta",
         {{"request_success", optional_json(metrics->delta(&ServerCounters::request_success))},
          {"prompt_tokens", optional_json(metrics->delta(&ServerCounters::prompt_tokens))},
          {"generation_tokens",
           optional_json(metrics->delta(&ServerCounters::generation_tokens))}}},
        {"kv_cache", kv_cache_json(*metrics)},
        {"server_before", counters_json(metrics->before)},
        {"server_after", counters_json(metrics->after)},
        {"error",
         metrics->error.empty() ? nlohmann::json(nullptr) : nlohmann::json(metrics->error)},
    };
  } else {
    j["metrics_check"] = nullptr;
  }
  return j.dump(2);
}

}  // namespace infergrid
