#include "server/access_control.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "server/http_util.h"

namespace infergrid {
namespace {

TEST(AccessControl, ConstantTimeEqualIsPlainEquality) {
  EXPECT_TRUE(constant_time_equal("sk-abc", "sk-abc"));
  EXPECT_FALSE(constant_time_equal("sk-abd", "sk-abc"));
  EXPECT_FALSE(constant_time_equal("sk-ab", "sk-abc"));
  EXPECT_FALSE(constant_time_equal("sk-abcd", "sk-abc"));
  EXPECT_FALSE(constant_time_equal("", "sk-abc"));
  EXPECT_TRUE(constant_time_equal("", ""));
  // A length difference of 256 must not wrap to "equal".
  EXPECT_FALSE(constant_time_equal(std::string(256, 'a'), ""));
}

TEST(AccessControl, BearerKeysCarryTheirPriority) {
  AccessControl access(AccessOptions{{{"low-key", 0}, {"high-key", 7}}, false, {}, {}});
  EXPECT_TRUE(access.requires_key("/v1/completions"));
  EXPECT_TRUE(access.requires_key("/v1/anything"));
  EXPECT_FALSE(access.requires_key("/health"));
  EXPECT_FALSE(access.requires_key("/metrics"));
  EXPECT_EQ(access.authenticate("Bearer high-key")->priority, 7);
  EXPECT_EQ(access.authenticate("bearer  low-key ")->priority, 0);
  EXPECT_FALSE(access.authenticate("Bearer high-ke"));
  EXPECT_FALSE(access.authenticate("Basic high-key"));
  EXPECT_FALSE(access.authenticate("high-key"));
  EXPECT_FALSE(access.authenticate(""));

  AccessControl strict(AccessOptions{{{"k", 0}}, true, {}, {}});
  EXPECT_TRUE(strict.requires_key("/health"));
  EXPECT_TRUE(strict.requires_key("/metrics"));
  AccessControl open(AccessOptions{});
  EXPECT_FALSE(open.requires_key("/v1/completions"));
}

TEST(AccessControl, KeyFileLinesAndErrors) {
  const auto path =
      std::filesystem::temp_directory_path() / ("ig_keys_" + std::to_string(::getpid()));
  {
    std::ofstream f(path);
    f << "# team keys\nalpha\n  beta 5  # batch jobs\n\ngamma -2\n";
  }
  auto keys = read_api_key_file(path.string());
  ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].key, "alpha");
  EXPECT_EQ((*keys)[1].key, "beta");
  EXPECT_EQ((*keys)[1].priority, 5);
  EXPECT_EQ((*keys)[2].priority, -2);
  {
    std::ofstream f(path);
    f << "alpha\nbeta high\n";
  }
  auto bad = read_api_key_file(path.string());
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(":2:"), std::string::npos) << bad.status().message();
  {
    std::ofstream f(path);
    f << "# nothing\n";
  }
  EXPECT_FALSE(read_api_key_file(path.string()).is_ok());
  EXPECT_FALSE(read_api_key_file("/nonexistent/keys").is_ok());
  std::filesystem::remove(path);
}

TEST(AccessControl, CorsOriginsAndHostAllowList) {
  AccessControl none(AccessOptions{});
  EXPECT_FALSE(none.cors_allow("http://app.example"));
  EXPECT_TRUE(none.host_allowed("evil.example"));

  AccessControl some(
      AccessOptions{{}, false, {"http://app.example"}, {"localhost", "127.0.0.1", "[::1]"}});
  EXPECT_EQ(some.cors_allow("http://app.example"), "http://app.example");
  EXPECT_EQ(some.cors_allow("HTTP://APP.EXAMPLE"), "HTTP://APP.EXAMPLE");
  EXPECT_FALSE(some.cors_allow("http://app.example.evil"));
  EXPECT_FALSE(some.cors_allow(""));
  EXPECT_TRUE(some.host_allowed("localhost:8080"));
  EXPECT_TRUE(some.host_allowed("127.0.0.1"));
  EXPECT_TRUE(some.host_allowed("[::1]:8080"));
  EXPECT_FALSE(some.host_allowed("evil.example:8080"));
  EXPECT_FALSE(some.host_allowed("localhost.evil.example"));
  EXPECT_FALSE(some.host_allowed(""));
  EXPECT_FALSE(some.host_allowed("[::1"));

  AccessControl any(AccessOptions{{}, false, {"*"}, {}});
  EXPECT_EQ(any.cors_allow("http://x.example"), "*");
}

TEST(HttpUtil, LogLimiterLetsOneLinePerIntervalAndCountsTheRest) {
  LogLimiter limiter(std::chrono::hours(1));
  EXPECT_EQ(limiter.allow(), 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.allow());
  LogLimiter fast(std::chrono::nanoseconds(0));
  EXPECT_EQ(fast.allow(), 0u);
  EXPECT_EQ(fast.allow(), 0u);
}

TEST(HttpUtil, HeaderValueChecks) {
  EXPECT_TRUE(is_plain_chunked("chunked"));
  EXPECT_TRUE(is_plain_chunked(" Chunked "));
  EXPECT_FALSE(is_plain_chunked("gzip, chunked"));
  EXPECT_FALSE(is_plain_chunked("identity"));
  EXPECT_EQ(path_of("/v1/models?x=1"), "/v1/models");
  EXPECT_TRUE(is_header_list("authorization, content-type"));
  EXPECT_FALSE(is_header_list("x\r\nSet-Cookie: a"));
}

}  // namespace
}  // namespace infergrid
