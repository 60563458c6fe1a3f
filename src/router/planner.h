// PdPlanner: the decision behind `infergrid route --planner` (autoPD): when to convert an
// instance between the prefill and the decode role, from the time to first token and the time
// per output token the router measures on the streams it proxies, against SLOs.
//
// Rule, each interval, over the last `window` of measurements: TTFT p90 over its SLO while
// TPOT p90 is within `headroom` of its own means prefill is the bottleneck (one decode instance
// becomes a prefill instance); the mirror case converts a prefill instance to decode; both
// within their SLOs, or both over (more instances are needed, not another split), holds.
// Invariants (the hysteresis): a conversion needs the same verdict `hold_intervals` intervals
// in a row and at least `min_samples` measurements of each kind; after a conversion nothing
// converts for `cooldown`; a role never drops below its minimum (min_prefill, min_decode). Every
// step returns its decision with the reason. Not thread-safe (the router's I/O thread owns it).
#pragma once

#include <chrono>
#include <deque>
#include <string>

#include <nlohmann/json.hpp>

namespace infergrid {

struct PlannerOptions {
  double slo_ttft_ms = 2000;
  double slo_tpot_ms = 100;
  std::chrono::milliseconds interval{2000};
  std::chrono::milliseconds window{20000};  // measurements older than this are forgotten
  int hold_intervals = 3;
  std::chrono::milliseconds cooldown{30000};
  // Fewest instances each role keeps: a cluster may do without prefill instances (the
  // decode instances then compute prompts themselves), never without decode ones.
  int min_prefill = 0;
  int min_decode = 1;
  double headroom = 0.8;  // the side that gives an instance up stays under this share of its SLO
  int min_samples = 5;
};

struct PlannerDecision {
  enum Kind { kHold, kToPrefill, kToDecode } kind = kHold;
  std::string reason;
};

const char* planner_decision_name(PlannerDecision::Kind kind);  // hold, to_prefill, to_decode

class PdPlanner {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PdPlanner(PlannerOptions options) : options_(options) {}

  // `at`: when the measurement was made (the stream's end), which the window counts from; the
  // calls come in order of `at`.
  void observe_ttft(Clock::time_point at, double ms);
  void observe_tpot(Clock::time_point at, double ms);
  // n_prefill / n_decode: the instances of each role that could convert now.
  PlannerDecision step(Clock::time_point now, int n_prefill, int n_decode);
  // A conversion was made (the cooldown starts).
  void converted(Clock::time_point now);
  nlohmann::json state() const;  // for GET /route/planner
  const PlannerOptions& options() const { return options_; }

 private:
  struct Sample {
    Clock::time_point at;
    double ms;
  };
  static double p90(const std::deque<Sample>& samples);
  void forget_before(Clock::time_point cutoff);

  PlannerOptions options_;
  std::deque<Sample> ttft_, tpot_;
  PlannerDecision::Kind pending_ = PlannerDecision::kHold;
  int streak_ = 0;
  Clock::time_point cooldown_until_{};
  PlannerDecision last_;
  double last_ttft_p90_ = 0, last_tpot_p90_ = 0;
};

}  // namespace infergrid
