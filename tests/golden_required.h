// What a test does when reference data from ../shared is missing: with
// INFERGRID_REQUIRE_GOLDEN=1 (set by .ci/run, where ../shared is always beside the clone) it
// fails, so CI can never pass by skipping; without it (a user's clone with no ../shared) it
// skips with the message.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace infergrid::test {

inline bool golden_required() {
  const char* value = std::getenv("INFERGRID_REQUIRE_GOLDEN");
  return value != nullptr && std::strcmp(value, "") != 0 && std::strcmp(value, "0") != 0;
}

}  // namespace infergrid::test

// Ends the current test (or SetUp) because `message` (a stream expression) is missing.
#define IG_GOLDEN_MISSING(message)                                                   \
  do {                                                                               \
    if (::infergrid::test::golden_required()) {                                      \
      FAIL() << message << " (INFERGRID_REQUIRE_GOLDEN is set: reference data must " \
             << "be present)";                                                       \
    } else {                                                                         \
      GTEST_SKIP() << message;                                                       \
    }                                                                                \
  } while (0)
