#include "bench/trace_gen.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include <fmt/format.h>

namespace infergrid {

namespace {

double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Arrival times of a Poisson process whose rate is multiplied during bursts.
class Arrivals {
 public:
  Arrivals(const TraceGenOptions& o, std::mt19937_64& rng) : o_(o), rng_(rng) {}
  double next() {
    // Thinning: draw at the peak rate, keep with probability rate(t) / peak.
    const double peak = o_.rate_per_s * (o_.burst_s > 0 ? std::max(1.0, o_.burst_factor) : 1.0);
    while (true) {
      t_ += -std::log(1.0 - uniform01(rng_)) / peak;
      if (uniform01(rng_) * peak <= rate_at(t_)) return t_;
    }
  }

 private:
  double rate_at(double t) const {
    if (o_.burst_s <= 0 || o_.burst_every_s <= 0) return o_.rate_per_s;
    const double phase = std::fmod(t, o_.burst_every_s);
    return phase >= o_.burst_every_s - o_.burst_s ? o_.rate_per_s * o_.burst_factor : o_.rate_per_s;
  }
  const TraceGenOptions& o_;
  std::mt19937_64& rng_;
  double t_ = 0;
};

Status check(const TraceGenOptions& o) {
  if (o.requests <= 0 || o.rate_per_s <= 0) {
    return make_error(StatusCode::kInvalidArgument, "--requests and --rate must be positive");
  }
  if (o.kind == TraceKind::kMultiTenant &&
      (o.tenants <= 0 || o.prefix_blocks < 0 || o.suffix_blocks < 0 || o.zipf_s < 0)) {
    return make_error(StatusCode::kInvalidArgument,
                      "--tenants must be positive, the block counts and --zipf not negative");
  }
  if (o.kind == TraceKind::kMultiTurn &&
      (o.turns <= 0 || o.turn_blocks <= 0 || o.answer_blocks < 0 || o.think_time_s < 0)) {
    return make_error(StatusCode::kInvalidArgument,
                      "--turns and --turn-blocks must be positive, --think-time-s not negative");
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<TraceEntry>> generate_trace(const TraceGenOptions& o) {
  IG_RETURN_IF_ERROR(check(o));
  std::mt19937_64 rng(o.seed);
  Arrivals arrivals(o, rng);
  std::vector<TraceEntry> trace;
  trace.reserve(static_cast<size_t>(o.requests));
  uint64_t next_id = 1;
  if (o.kind == TraceKind::kMultiTenant) {
    std::vector<double> cdf(static_cast<size_t>(o.tenants));
    double total = 0;
    for (int k = 0; k < o.tenants; ++k) cdf[k] = total += 1.0 / std::pow(k + 1.0, o.zipf_s);
    std::vector<std::vector<uint64_t>> prefixes(static_cast<size_t>(o.tenants));
    for (auto& p : prefixes) {
      for (int b = 0; b < o.prefix_blocks; ++b) p.push_back(next_id++);
    }
    for (int i = 0; i < o.requests; ++i) {
      const double u = uniform01(rng) * total;
      const size_t tenant =
          std::min(cdf.size() - 1,
                   static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin()));
      TraceEntry e;
      e.timestamp_ms = arrivals.next() * 1000;
      e.hash_ids = prefixes[tenant];
      const int own =
          o.suffix_blocks == 0
              ? 0
              : 1 + static_cast<int>(rng() % static_cast<uint64_t>(2 * o.suffix_blocks));
      for (int b = 0; b < own; ++b) e.hash_ids.push_back(next_id++);
      e.input_length = static_cast<int>(e.hash_ids.size()) * kTraceBlockTokens;
      e.output_length = o.output_length;
      trace.push_back(std::move(e));
    }
    return trace;
  }
  // Multi-turn: conversations start as a Poisson process at rate / turns (so requests arrive at
  // about `rate`); each next turn comes an exponential think time after the previous one.
  struct Turn {
    double at_s;
    size_t conversation;
    bool operator>(const Turn& other) const { return at_s > other.at_s; }
  };
  TraceGenOptions starts = o;
  starts.rate_per_s = o.rate_per_s / o.turns;
  Arrivals conversation_starts(starts, rng);
  std::vector<std::vector<uint64_t>> history;
  std::vector<int> turns_done;
  std::priority_queue<Turn, std::vector<Turn>, std::greater<>> due;
  double next_start = conversation_starts.next();
  while (static_cast<int>(trace.size()) < o.requests) {
    if (due.empty() || next_start <= due.top().at_s) {
      history.emplace_back();
      turns_done.push_back(0);
      due.push({next_start, history.size() - 1});
      next_start = conversation_starts.next();
      continue;
    }
    const Turn turn = due.top();
    due.pop();
    std::vector<uint64_t>& h = history[turn.conversation];
    if (turns_done[turn.conversation] > 0) {
      for (int b = 0; b < o.answer_blocks; ++b) h.push_back(next_id++);
    }
    for (int b = 0; b < o.turn_blocks; ++b) h.push_back(next_id++);
    TraceEntry e;
    e.timestamp_ms = turn.at_s * 1000;
    e.hash_ids = h;
    e.input_length = static_cast<int>(h.size()) * kTraceBlockTokens;
    e.output_length = o.output_length;
    trace.push_back(std::move(e));
    if (++turns_done[turn.conversation] < o.turns) {
      due.push({turn.at_s - std::log(1.0 - uniform01(rng)) * o.think_time_s, turn.conversation});
    } else {
      h.clear();
      h.shrink_to_fit();
    }
  }
  std::sort(trace.begin(), trace.end(), [](const TraceEntry& a, const TraceEntry& b) {
    return a.timestamp_ms < b.timestamp_ms;
  });
  return trace;
}

std::string trace_to_jsonl(const std::vector<TraceEntry>& trace) {
  std::string out;
  for (const TraceEntry& e : trace) {
    out += fmt::format(
        R"({{"timestamp": {}, "input_length": {}, "output_length": {}, "hash_ids": [{}]}})",
        static_cast<int64_t>(std::llround(e.timestamp_ms)), e.input_length, e.output_length,
        fmt::join(e.hash_ids, ", "));
    out += '\n';
  }
  return out;
}

}  // namespace infergrid
