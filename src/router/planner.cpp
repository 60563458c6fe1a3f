#include "router/planner.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace infergrid {

const char* planner_decision_name(PlannerDecision::Kind kind) {
  switch (kind) {
    case PlannerDecision::kToPrefill:
      return "to_prefill";
    case PlannerDecision::kToDecode:
      return "to_decode";
    case PlannerDecision::kHold:
      break;
  }
  return "hold";
}

void PdPlanner::observe_ttft(Clock::time_point at, double ms) {
  ttft_.push_back({at, ms});
}
void PdPlanner::observe_tpot(Clock::time_point at, double ms) {
  tpot_.push_back({at, ms});
}

double PdPlanner::p90(const std::deque<Sample>& samples) {
  std::vector<double> v;
  v.reserve(samples.size());
  for (const Sample& s : samples) v.push_back(s.ms);
  if (v.empty()) return 0;
  const size_t at = std::min(v.size() - 1, v.size() * 9 / 10);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(at), v.end());
  return v[at];
}

void PdPlanner::forget_before(Clock::time_point cutoff) {
  while (!ttft_.empty() && ttft_.front().at < cutoff) ttft_.pop_front();
  while (!tpot_.empty() && tpot_.front().at < cutoff) tpot_.pop_front();
}

PlannerDecision PdPlanner::step(Clock::time_point now, int n_prefill, int n_decode) {
  forget_before(now - options_.window);
  const auto hold = [&](std::string reason) {
    last_ = {PlannerDecision::kHold, std::move(reason)};
    return last_;
  };
  if (static_cast<int>(ttft_.size()) < options_.min_samples ||
      static_cast<int>(tpot_.size()) < options_.min_samples) {
    pending_ = PlannerDecision::kHold;
    streak_ = 0;
    return hold(fmt::format("too few measurements ({} TTFT, {} TPOT; {} of each needed)",
                            ttft_.size(), tpot_.size(), options_.min_samples));
  }
  const double ttft = p90(ttft_), tpot = p90(tpot_);
  last_ttft_p90_ = ttft;
  last_tpot_p90_ = tpot;
  const bool ttft_over = ttft > options_.slo_ttft_ms;
  const bool tpot_over = tpot > options_.slo_tpot_ms;
  PlannerDecision want;
  if (ttft_over && tpot_over) {
    want = {PlannerDecision::kHold,
            fmt::format("both over their SLOs (TTFT p90 {:.0f} ms > {:.0f}, TPOT p90 {:.1f} ms > "
                        "{:.1f}): more instances are needed, not another split",
                        ttft, options_.slo_ttft_ms, tpot, options_.slo_tpot_ms)};
  } else if (ttft_over) {
    if (tpot > options_.headroom * options_.slo_tpot_ms) {
      want = {PlannerDecision::kHold,
              fmt::format("TTFT p90 {:.0f} ms over its SLO, but decode has no room to give an "
                          "instance up (TPOT p90 {:.1f} ms of {:.1f})",
                          ttft, tpot, options_.slo_tpot_ms)};
    } else if (n_decode <= options_.min_decode) {
      want = {PlannerDecision::kHold,
              fmt::format("TTFT p90 {:.0f} ms over its SLO, but only {} decode instance(s) can "
                          "convert",
                          ttft, n_decode)};
    } else {
      want = {PlannerDecision::kToPrefill,
              fmt::format("prefill is the bottleneck: TTFT p90 {:.0f} ms > SLO {:.0f} while TPOT "
                          "p90 {:.1f} ms is within {:.0f}% of its SLO {:.1f}",
                          ttft, options_.slo_ttft_ms, tpot, 100 * options_.headroom,
                          options_.slo_tpot_ms)};
    }
  } else if (tpot_over) {
    if (ttft > options_.headroom * options_.slo_ttft_ms) {
      want = {PlannerDecision::kHold,
              fmt::format("TPOT p90 {:.1f} ms over its SLO, but prefill has no room to give an "
                          "instance up (TTFT p90 {:.0f} ms of {:.0f})",
                          tpot, ttft, options_.slo_ttft_ms)};
    } else if (n_prefill <= options_.min_prefill) {
      want = {PlannerDecision::kHold,
              fmt::format("TPOT p90 {:.1f} ms over its SLO, but only {} prefill instance(s) can "
                          "convert",
                          tpot, n_prefill)};
    } else {
      want = {PlannerDecision::kToDecode,
              fmt::format("decode is the bottleneck: TPOT p90 {:.1f} ms > SLO {:.1f} while TTFT "
                          "p90 {:.0f} ms is within {:.0f}% of its SLO {:.0f}",
                          tpot, options_.slo_tpot_ms, ttft, 100 * options_.headroom,
                          options_.slo_ttft_ms)};
    }
  } else {
    want = {PlannerDecision::kHold,
            fmt::format("within SLOs (TTFT p90 {:.0f} ms of {:.0f}, TPOT p90 {:.1f} ms of {:.1f})",
                        ttft, options_.slo_ttft_ms, tpot, options_.slo_tpot_ms)};
  }
  if (want.kind == PlannerDecision::kHold) {
    pending_ = PlannerDecision::kHold;
    streak_ = 0;
    last_ = want;
    return last_;
  }
  streak_ = want.kind == pending_ ? streak_ + 1 : 1;
  pending_ = want.kind;
  if (now < cooldown_until_) {
    return hold(fmt::format("{} (cooling down after the last conversion)", want.reason));
  }
  if (streak_ < options_.hold_intervals) {
    return hold(fmt::format("{} ({} of {} intervals in a row)", want.reason, streak_,
                            options_.hold_intervals));
  }
  last_ = want;
  return last_;
}

void PdPlanner::converted(Clock::time_point now) {
  cooldown_until_ = now + options_.cooldown;
  pending_ = PlannerDecision::kHold;
  streak_ = 0;
  // What was measured before the conversion describes the old split.
  ttft_.clear();
  tpot_.clear();
}

nlohmann::json PdPlanner::state() const {
  return {{"slo_ttft_ms", options_.slo_ttft_ms},
          {"slo_tpot_ms", options_.slo_tpot_ms},
          {"ttft_samples", ttft_.size()},
          {"tpot_samples", tpot_.size()},
          {"ttft_p90_ms", last_ttft_p90_},
          {"tpot_p90_ms", last_tpot_p90_},
          {"pending", planner_decision_name(pending_)},
          {"streak", streak_},
          {"last_decision", planner_decision_name(last_.kind)},
          {"last_reason", last_.reason}};
}

}  // namespace infergrid
