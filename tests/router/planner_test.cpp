// The planner's rule and its hysteresis, step by step on a fake clock.
#include "router/planner.h"

#include <gtest/gtest.h>

namespace infergrid {
namespace {

using namespace std::chrono_literals;
using Clock = PdPlanner::Clock;

PlannerOptions options() {
  PlannerOptions o;
  o.slo_ttft_ms = 1000;
  o.slo_tpot_ms = 50;
  o.window = 10s;
  o.hold_intervals = 3;
  o.cooldown = 30s;
  o.min_samples = 4;
  return o;
}

void feed(PdPlanner& p, Clock::time_point at, double ttft_ms, double tpot_ms, int n = 5) {
  for (int i = 0; i < n; ++i) {
    p.observe_ttft(at, ttft_ms);
    p.observe_tpot(at, tpot_ms);
  }
}

TEST(PdPlannerTest, SlowPrefillWithRoomInDecodeConvertsADecodeInstanceAfterTheHold) {
  PdPlanner p(options());
  auto t = Clock::now();
  std::vector<PlannerDecision::Kind> kinds;
  for (int step = 0; step < 3; ++step) {
    t += 1s;
    feed(p, t, 3000, 20);
    kinds.push_back(p.step(t, 1, 3).kind);
  }
  EXPECT_EQ(kinds[0], PlannerDecision::kHold);
  EXPECT_EQ(kinds[1], PlannerDecision::kHold);
  EXPECT_EQ(kinds[2], PlannerDecision::kToPrefill);
  p.converted(t);
  // Right after a conversion nothing converts, however bad it looks.
  for (int step = 0; step < 5; ++step) {
    t += 1s;
    feed(p, t, 3000, 20);
    const PlannerDecision d = p.step(t, 2, 2);
    EXPECT_EQ(d.kind, PlannerDecision::kHold);
  }
  EXPECT_NE(p.step(t, 2, 2).reason.find("cooling down"), std::string::npos);
}

TEST(PdPlannerTest, SlowDecodeWithRoomInPrefillConvertsAPrefillInstance) {
  PdPlanner p(options());
  auto t = Clock::now();
  PlannerDecision d;
  for (int step = 0; step < 3; ++step) {
    t += 1s;
    feed(p, t, 200, 90);
    d = p.step(t, 2, 2);
  }
  EXPECT_EQ(d.kind, PlannerDecision::kToDecode) << d.reason;
  EXPECT_NE(d.reason.find("decode is the bottleneck"), std::string::npos);
}

TEST(PdPlannerTest, SteadyLoadWithinTheSlosNeverConverts) {
  PdPlanner p(options());
  auto t = Clock::now();
  for (int step = 0; step < 100; ++step) {
    t += 1s;
    feed(p, t, 900, 45);
    EXPECT_EQ(p.step(t, 1, 3).kind, PlannerDecision::kHold);
  }
}

TEST(PdPlannerTest, AVerdictThatFlapsNeverConverts) {
  PdPlanner p(options());
  auto t = Clock::now();
  for (int step = 0; step < 30; ++step) {
    t += 11s;  // past the window: each step sees only its own measurements
    const bool slow_prefill = step % 2 == 0;
    feed(p, t, slow_prefill ? 3000 : 200, slow_prefill ? 20 : 90);
    EXPECT_EQ(p.step(t, 2, 2).kind, PlannerDecision::kHold) << "step " << step;
  }
}

TEST(PdPlannerTest, NoConversionWithoutRoomOrMeasurementsOrBelowTheMinimumPerRole) {
  auto t = Clock::now();
  {
    PdPlanner p(options());  // both over: a split does not help
    for (int step = 0; step < 5; ++step) {
      t += 1s;
      feed(p, t, 3000, 90);
      EXPECT_EQ(p.step(t, 2, 2).kind, PlannerDecision::kHold);
    }
  }
  {
    PdPlanner p(options());  // decode has no room to give an instance up
    for (int step = 0; step < 5; ++step) {
      t += 1s;
      feed(p, t, 3000, 45);
      EXPECT_EQ(p.step(t, 2, 2).kind, PlannerDecision::kHold);
    }
  }
  {
    PdPlanner p(options());  // the last decode instance stays
    for (int step = 0; step < 5; ++step) {
      t += 1s;
      feed(p, t, 3000, 10);
      EXPECT_EQ(p.step(t, 2, 1).kind, PlannerDecision::kHold);
    }
  }
  {
    PdPlanner p(options());  // too few measurements
    for (int step = 0; step < 5; ++step) {
      t += 1s;
      feed(p, t, 3000, 10, 1);
      if (step < 3) {
        EXPECT_EQ(p.step(t, 1, 3).kind, PlannerDecision::kHold);
      }
    }
  }
}

}  // namespace
}  // namespace infergrid
