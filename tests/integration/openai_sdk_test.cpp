// The official OpenAI Node.js client (installed by tools/setup into tests/e2e) against a real
// `infergrid serve`.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

TEST(OpenAiSdk, StreamingAndNonStreamingChatAndCompletions) {
  const std::filesystem::path e2e = std::filesystem::path(INFERGRID_SOURCE_DIR) / "tests" / "e2e";
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not installed (tools/setup installs it)";
  }
  if (!std::filesystem::exists(e2e / "node_modules" / "openai")) {
    GTEST_SKIP() << "the openai npm package is missing (tools/setup runs npm ci in tests/e2e)";
  }
  ServerProcess server;
  std::string log;
  ASSERT_TRUE(server.start({"--model", test_model_path(), "--served-model-name", "tiny",
                            "--threads", "1", "--kv-cache-bytes", "64MiB"},
                           log))
      << log;
  const std::string command =
      "node " + (e2e / "openai_client.mjs").string() + " " + server.url() + " tiny 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_EQ(output.find("FAIL"), std::string::npos) << output;
  EXPECT_NE(output.find("ok   chat.completions.create stream with usage"), std::string::npos)
      << output;
  EXPECT_NE(output.find("ok   beta.chat.completions.parse with a zod schema"), std::string::npos)
      << output;
  for (const char* check : {"tool calls with tool_choice named", "tool calls with tool_choice auto",
                            "streamed tool-call deltas reassembled", "n: 3"}) {
    EXPECT_NE(output.find(std::string("ok   ") + check), std::string::npos) << output;
  }
}

}  // namespace
}  // namespace infergrid::testing
