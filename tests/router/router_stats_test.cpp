#include "router/router_stats.h"

#include <gtest/gtest.h>

namespace infergrid {
namespace {

TEST(DecisionRecordsTest, KeepsTheLastRecordsAndAnIdSentAgainNamesItsLatestRequest) {
  DecisionRecords records(2);
  const auto record = [](int n) {
    return std::make_shared<nlohmann::json>(nlohmann::json{{"n", n}});
  };
  records.remember("a", record(1));
  records.remember("b", record(2));
  records.remember("a", record(3));  // a client reused its id
  ASSERT_NE(records.find("a"), nullptr);
  EXPECT_EQ((*records.find("a"))["n"], 3);  // the first "a" left the window, the second stays
  ASSERT_NE(records.find("b"), nullptr);
  records.remember("c", record(4));
  EXPECT_EQ(records.find("b"), nullptr);
  EXPECT_EQ((*records.find("a"))["n"], 3);
  EXPECT_EQ((*records.find("c"))["n"], 4);
  EXPECT_EQ(records.find("unknown"), nullptr);
}

}  // namespace
}  // namespace infergrid
