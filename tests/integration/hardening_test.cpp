// A hostile client against a real `infergrid serve` process on loopback: each test is one
// class of attack, bounded in count and time, and checks both that the attack is answered as a
// real server would and that ordinary users are still served.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "integration/raw_http.h"
#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class HardeningTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> args = {}, rlim_t max_open_files = 0) {
    ASSERT_FALSE(test_model_path().empty());
    std::string log;
    ASSERT_TRUE(server_.start(test_server_args(std::move(args)), log, max_open_files)) << log;
  }
  std::string url(const std::string& path) const { return server_.url() + path; }
  double metric_value(const std::string& name) {
    return metric(curl(url("/metrics")).body, name).value_or(-1);
  }
  double aborted() {
    const std::string body = curl(url("/metrics")).body;
    const auto at = body.find("infergrid_request_finished_total{finished_reason=\"abort\"}");
    return at == std::string::npos ? 0.0 : std::stod(body.substr(body.find(' ', at) + 1));
  }
  // Polls until `done` holds or the deadline passes; whether it held.
  template <class Condition>
  bool eventually(Condition done, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(milliseconds(25));
    }
    return done();
  }
  bool idle() {
    const std::string m = curl(url("/metrics")).body;
    return metric(m, "infergrid_kv_blocks_used") == 0.0 &&
           metric(m, "infergrid_num_requests_running") == 0.0 &&
           metric(m, "infergrid_num_requests_waiting") == 0.0;
  }
  static std::string long_generation(bool stream = false) {
    return json{{"prompt", "tell me everything"},
                {"max_tokens", 16000},
                {"ignore_eos", true},
                {"stream", stream}}
        .dump();
  }
  ServerProcess server_;
};

TEST_F(HardeningTest, NumbersThatOverflowADoubleAreA400AndTheServerLives) {
  start();
  const std::string digits400(400, '9');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/completions", R"({"prompt":"a","x":1e400})"},
      {"/v1/completions", R"({"prompt":"a","x":-1e400})"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":1e309})"},
      {"/v1/completions", R"({"prompt":"a","x":)" + digits400 + "}"},
      {"/v1/completions", R"({"prompt":"a","x":[{"y":-)" + digits400 + "}]}"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":"x"}],"temperature":1e400})"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x","n":1e999}]})"},
  };
  for (const auto& [path, body] : cases) {
    auto r = curl(url(path), body);
    EXPECT_EQ(r.status, 400) << body;
    const json e = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r.body;
    EXPECT_NE(e["error"]["message"].get<std::string>().find("out of range"), std::string::npos)
        << r.body;
  }
  EXPECT_EQ(curl(url("/health")).status, 200);
  EXPECT_EQ(curl(url("/v1/completions"), R"({"prompt":"ok","max_tokens":2})").status, 200);
}

// At the fd limit accept() fails at once for as long as connections wait in the backlog; the
// server must back off instead of spinning, log a bounded amount, and recover.
TEST_F(HardeningTest, AcceptBacksOffAtTheFdLimitAndRecovers) {
  start({"--max-connections", "5000"}, /*max_open_files=*/160);
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 220; ++i) idle.push_back(std::make_unique<RawConnection>(server_.port()));
  // The server has taken what it can once its open fds reach the limit.
  const auto open_fds = [&] {
    int n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(
             "/proc/" + std::to_string(server_.pid()) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(eventually([&] { return open_fds() >= 150; }, seconds(10)))
      << "the server holds " << open_fds() << " fds";
  const double cpu_before = server_.cpu_seconds();
  const size_t log_before = server_.output_bytes();
  std::this_thread::sleep_for(seconds(2));
  const double cpu_used = server_.cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.5) << "the accept loop spins at the fd limit";
  EXPECT_LT(server_.output_bytes() - log_before, size_t{4096}) << "the log floods";
  // Free fds: the server serves again (the backlog drains, then a new client is answered).
  idle.erase(idle.begin(), idle.begin() + 150);
  HttpResult r;
  EXPECT_TRUE(eventually(
      [&] {
        r = curl(url("/v1/completions"), R"({"prompt":"back","max_tokens":2})", "--max-time 3");
        return r.status == 200;
      },
      seconds(15)))
      << r.status;
}

TEST_F(HardeningTest, MaxConnectionsAnswers503AndIdleConnectionsTimeOut) {
  start({"--max-connections", "8", "--idle-timeout-s", "3"});
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<RawConnection>(server_.port()));
    // A complete exchange proves the server took the connection before the next one.
    ASSERT_TRUE(held.back()->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_NE(held.back()->read_until("\r\n\r\n{\"status\"", seconds(5)).find("200 OK"),
              std::string::npos);
  }
  RawConnection over(server_.port());
  ASSERT_TRUE(over.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(over.read_to_close(seconds(5)));
  EXPECT_EQ(over.final_status(), 503) << over.received();
  EXPECT_NE(over.received().find("Retry-After: 1"), std::string::npos) << over.received();
  EXPECT_NE(over.received().find("\"error\""), std::string::npos) << over.received();
  // The idle connections are closed by the server after --idle-timeout-s; then there is room.
  for (auto& c : held) EXPECT_TRUE(c->read_to_close(seconds(8)));
  EXPECT_TRUE(eventually([&] { return curl(url("/health")).status == 200; }, seconds(5)));
}

// A request followed by a stray CRLF or a pipelined request, then a close: the close must
// cancel the request whatever was buffered, so such requests cannot hold the decoding slots.
TEST_F(HardeningTest, ACloseCancelsTheRequestWhateverWasSentAfterIt) {
  start({"--max-running", "4"});
  const std::string request = http_post("/v1/completions", long_generation());
  const std::vector<std::string> trailers = {"\r\n", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"};
  double cancelled = 0;
  for (const std::string& trailer : trailers) {
    std::vector<std::unique_ptr<RawConnection>> clients;
    for (int i = 0; i < 4; ++i) {  // as many as there are running slots
      clients.push_back(std::make_unique<RawConnection>(server_.port()));
      ASSERT_TRUE(clients.back()->send(request + trailer));
      ASSERT_TRUE(eventually(
          [&] { return metric_value("infergrid_num_requests_running") == i + 1; }, seconds(10)));
    }
    clients.clear();  // each closes, generating
    cancelled += 4;
    EXPECT_TRUE(eventually([&] { return aborted() >= cancelled; }, seconds(10)))
        << "aborted " << aborted() << " of " << cancelled;
    EXPECT_TRUE(eventually([&] { return idle(); }, seconds(5)));
  }
  // A real user is served at once.
  const auto t0 = Clock::now();
  EXPECT_EQ(curl(url("/v1/completions"), R"({"prompt":"hi","max_tokens":4})").status, 200);
  EXPECT_LT(Clock::now() - t0, seconds(5));
}

// shutdown(SHUT_WR) after the request (`nc -N`): the client is waiting for its answer.
TEST_F(HardeningTest, AHalfClosedClientIsStillAnswered) {
  start();
  for (bool stream : {false, true}) {
    RawConnection c(server_.port());
    const std::string body = json{
        {"prompt", "half"},
        {"max_tokens", 300},
        {"ignore_eos", true},
        {"stream", stream}}.dump();
    ASSERT_TRUE(c.send(http_post("/v1/completions", body)));
    c.shutdown_write();
    ASSERT_TRUE(c.read_to_close(seconds(60))) << "stream " << stream;
    EXPECT_EQ(c.final_status(), 200) << c.received().substr(0, 400);
    if (stream) {
      EXPECT_NE(c.received().find("data: [DONE]"), std::string::npos);
    } else {
      const std::string& all = c.received();
      const json reply = json::parse(all.substr(all.find("\r\n\r\n{") + 4), nullptr, false);
      ASSERT_FALSE(reply.is_discarded()) << all.substr(0, 400);
      EXPECT_EQ(reply["usage"]["completion_tokens"], 300);
    }
  }
  EXPECT_EQ(aborted(), 0);
}

TEST_F(HardeningTest, ABurstOnAnIdleServerIsNotRefused) {
  start({"--max-queued", "0"});
  std::vector<std::future<int>> burst;
  for (int i = 0; i < 24; ++i) {
    burst.push_back(std::async(std::launch::async, [&] {
      return curl(url("/v1/completions"), R"({"prompt":"burst","max_tokens":2})").status;
    }));
  }
  int ok = 0;
  for (auto& f : burst) ok += f.get() == 200;
  EXPECT_EQ(ok, 24) << "429 with free running slots";
}

// Cheap limits before costly work, and no costly work on the I/O threads. A long word with no
// spaces is the costly case for BPE (about a second per MiB); it is refused on its size
// without being tokenized, and /health stays fast while clients loop such bodies (when they
// were tokenized on the two I/O threads, /health waited for them).
TEST_F(HardeningTest, HugePromptsAreRefusedCheaplyAndOffTheIoThreads) {
  start();
  std::string words;
  while (words.size() < (size_t{7} << 20)) words += "word ";
  auto r = curl(url("/v1/completions"), json{{"prompt", words}}.dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "context_length_exceeded") << r.body;

  std::string word;
  uint64_t state = 1;
  while (word.size() < (size_t{1} << 20)) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    word += static_cast<char>('a' + (state >> 33) % 26);
  }
  const std::string body = json{{"prompt", word}}.dump();
  auto t0 = Clock::now();
  r = curl(url("/v1/completions"), body);
  const double refuse_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  EXPECT_EQ(r.status, 400);
  std::printf("a 1 MiB word refused in %.1f ms\n", refuse_ms);
  EXPECT_LT(refuse_ms, 800.0) << "the prompt was tokenized before its size was checked";

  std::atomic<bool> stop{false};
  std::vector<std::thread> flooders;
  for (int i = 0; i < 4; ++i) {
    flooders.emplace_back([&] {
      while (!stop) curl(url("/v1/completions"), body);
    });
  }
  std::vector<double> health_ms;
  for (int i = 0; i < 30; ++i) {
    t0 = Clock::now();
    EXPECT_EQ(curl(url("/health")).status, 200);
    health_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::this_thread::sleep_for(milliseconds(30));
  }
  stop = true;
  for (auto& t : flooders) t.join();
  std::sort(health_ms.begin(), health_ms.end());
  std::printf("/health p50 %.1f ms, p90 %.1f ms beside 4 clients looping 1 MiB words\n",
              health_ms[15], health_ms[27]);
  EXPECT_LT(health_ms[27], 1000.0);
}

// A streaming client that stops reading is declared gone after the write timeout: its request
// is cancelled and its KV freed, instead of being generated and held for it.
TEST_F(HardeningTest, AReaderThatStopsReadingIsDroppedAndItsKvFreed) {
  start({"--write-timeout-s", "1"});
  RawConnection slow(server_.port(), /*receive_buffer_bytes=*/4096);
  const std::string body = json{
      {"prompt", "flood me"},
      {"max_tokens", 16000},
      {"ignore_eos", true},
      {"stream", true},
      {"logprobs", 20}}.dump();
  ASSERT_TRUE(slow.send(http_post("/v1/completions", body)));
  EXPECT_TRUE(eventually([&] { return aborted() >= 1; }, seconds(40)));
  EXPECT_TRUE(eventually([&] { return idle(); }, seconds(5)));
  const double generated = metric_value("infergrid_generation_tokens_total");
  EXPECT_LT(generated, 16000) << "generated to the end for a client that was not reading";
}

// The write timeout bounds one write, not the response: a client that reads keeps its stream
// however long generation takes.
TEST_F(HardeningTest, AStreamThatIsReadOutlivesTheWriteTimeout) {
  start({"--write-timeout-s", "1"});
  const auto t0 = Clock::now();
  auto r = curl(
      url("/v1/completions"),
      json{{"prompt", "long story"}, {"max_tokens", 6000}, {"ignore_eos", true}, {"stream", true}}
          .dump());
  const auto took = Clock::now() - t0;
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(aborted(), 0);
  std::printf("a streamed response of %.1f s under --write-timeout-s 1\n",
              std::chrono::duration<double>(took).count());
}

TEST_F(HardeningTest, PriorityComesFromTrustedConfigurationNotFromTheBody) {
  const auto keys =
      std::filesystem::temp_directory_path() / ("ig_priority_keys_" + std::to_string(::getpid()));
  {
    std::ofstream f(keys);
    f << "low-key 0\nhigh-key 10\n";
  }
  start({"--api-key-file", keys.string(), "--max-running", "1"});
  const std::string low = "-H 'Authorization: Bearer low-key'";
  const std::string high = "-H 'Authorization: Bearer high-key'";
  auto jumped = curl(url("/v1/completions"),
                     R"({"prompt":"me first","max_tokens":2,"priority":1000000})", low);
  EXPECT_EQ(jumped.status, 400);
  EXPECT_EQ(json::parse(jumped.body)["error"]["param"], "priority");

  // One long request holds the only slot (until its client gives up); a low-key request
  // queues, then a high-key one: the high-key one is admitted first when the slot frees.
  std::atomic<int> order{0};
  int low_done = 0, high_done = 0;
  RawConnection blocker(server_.port());
  ASSERT_TRUE(blocker.send(http_post("/v1/completions",
                                     R"({"prompt":"hold","max_tokens":16000,"ignore_eos":true})",
                                     "Authorization: Bearer low-key\r\n")));
  ASSERT_TRUE(
      eventually([&] { return metric_value("infergrid_num_requests_running") == 1; }, seconds(10)));
  // A 160-token request with `key`; `done` gets its place in the order of completion. The
  // second admitted starts 160 steps after the first finishes, a margin (hundreds of ms) that
  // client processes delayed by a loaded machine cannot reorder (40 tokens could).
  auto queue = [&](const std::string& prompt, const std::string& key, int& done) {
    return std::async(std::launch::async, [&, prompt, key] {
      auto r =
          curl(url("/v1/completions"),
               json{{"prompt", prompt}, {"max_tokens", 160}, {"ignore_eos", true}}.dump(), key);
      done = ++order;
      return r.status;
    });
  };
  auto queued_low = queue("low", low, low_done);
  ASSERT_TRUE(
      eventually([&] { return metric_value("infergrid_num_requests_waiting") == 1; }, seconds(10)));
  auto queued_high = queue("high", high, high_done);
  ASSERT_TRUE(
      eventually([&] { return metric_value("infergrid_num_requests_waiting") == 2; }, seconds(10)));
  blocker.close();  // frees the slot: the queued requests are admitted by priority
  EXPECT_EQ(queued_high.get(), 200);
  EXPECT_EQ(queued_low.get(), 200);
  EXPECT_LT(high_done, low_done) << "the high-priority key was not served first";

  // With --trust-request-priority the body's field is honoured.
  ServerProcess trusting;
  std::string log;
  ASSERT_TRUE(trusting.start({"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes",
                              "64MiB", "--trust-request-priority"},
                             log));
  EXPECT_EQ(curl(trusting.url() + "/v1/completions",
                 R"({"prompt":"me first","max_tokens":2,"priority":1000000})")
                .status,
            200);
  std::filesystem::remove(keys);
}

struct RawCase {
  std::string name;
  std::string bytes;
  int status;
};

TEST_F(HardeningTest, MalformedHttpIsAnsweredAsRealServersDo) {
  start();
  std::string many_headers = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 10000; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
  const std::string chunked_head =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::vector<RawCase> cases = {
      {"garbage request line", "GARBAGE\r\n\r\n", 400},
      {"no version", "GET /health\r\n\r\n", 400},
      {"header without colon", "GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400},
      {"100 KB header line",
       "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n", 431},
      {"10k headers", many_headers + "\r\n", 431},
      {"100 KB URL", "GET /" + std::string(100000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
      {"10 KB URL", "GET /" + std::string(10000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
      {"NUL in path", std::string("GET /v1/") + '\0' + "models HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"bad chunk size", chunked_head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
       400},
      {"gzip, chunked",
       chunked_head + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501},
      {"unknown expectation",
       chunked_head + "Content-Length: 2\r\nExpect: something-else\r\n\r\n{}", 417},
      {"body over the limit", chunked_head + "Content-Length: 99999999\r\n\r\n{", 413},
  };
  for (const RawCase& c : cases) {
    RawConnection conn(server_.port());
    ASSERT_TRUE(conn.send(c.bytes)) << c.name;
    conn.read_to_close(seconds(5));
    EXPECT_EQ(conn.final_status(), c.status) << c.name << ": " << conn.received().substr(0, 300);
    EXPECT_NE(conn.received().find("\"error\""), std::string::npos) << c.name;
  }
  // HEAD: GET's headers and no body, so the next response on the connection stays in step.
  RawConnection head(server_.port());
  ASSERT_TRUE(
      head.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  ASSERT_TRUE(head.read_to_close(seconds(5)));
  const std::string& both = head.received();
  EXPECT_EQ(both.find("HTTP/1.1 200"), 0u) << both;
  EXPECT_NE(both.find("HTTP/1.1 200", 10), std::string::npos) << both;
  const size_t first_body = both.find("{\"status\"");
  EXPECT_NE(first_body, std::string::npos);
  EXPECT_EQ(both.find("{\"status\"", first_body + 1), std::string::npos) << both;
  EXPECT_LT(both.find("HTTP/1.1 200", 10), first_body) << "HEAD sent a body: " << both;
  auto wrong_method = curl(url("/v1/completions"));
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_NE(wrong_method.headers.find("Allow: POST"), std::string::npos) << wrong_method.headers;
  EXPECT_EQ(curl(url("/health")).status, 200);
}

TEST_F(HardeningTest, ExpectContinueHttp10StreamsAndSecondSignal) {
  start({"--shutdown-grace-ms", "60000"});
  // Expect: 100-continue is answered before the body is sent.
  {
    RawConnection c(server_.port());
    const std::string body = R"({"prompt":"hi","max_tokens":2})";
    ASSERT_TRUE(c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n\r\n"));
    EXPECT_NE(c.read_until("\r\n\r\n", seconds(2)).find("HTTP/1.1 100 Continue"), std::string::npos)
        << c.received();
    ASSERT_TRUE(c.send(body));
    c.read_until("\"usage\"", seconds(10));
    EXPECT_EQ(c.final_status(), 200) << c.received();
  }
  // An HTTP/1.0 client asking for a stream gets the events unframed, ended by the close.
  {
    RawConnection c(server_.port());
    ASSERT_TRUE(c.send(http_post(
        "/v1/completions", R"({"prompt":"old","max_tokens":5,"stream":true})", "", "HTTP/1.0")));
    ASSERT_TRUE(c.read_to_close(seconds(20)));
    const std::string& all = c.received();
    EXPECT_EQ(c.final_status(), 200) << all;
    EXPECT_EQ(all.find("chunked"), std::string::npos) << all;
    const std::string body = all.substr(all.find("\r\n\r\n") + 4);
    EXPECT_EQ(body.rfind("data: ", 0), 0u) << body.substr(0, 80);
    EXPECT_NE(body.find("data: [DONE]\n\n"), std::string::npos);
  }
  // A second SIGINT does not wait for the drain.
  RawConnection busy(server_.port());
  ASSERT_TRUE(busy.send(http_post("/v1/completions", long_generation())));
  ASSERT_TRUE(
      eventually([&] { return metric_value("infergrid_num_requests_running") == 1; }, seconds(10)));
  server_.signal(SIGINT);
  // The first signal has been handled once the server takes no new connection.
  ASSERT_TRUE(eventually([&] { return curl(url("/health")).status != 200; }, seconds(10)));
  server_.signal(SIGINT);
  EXPECT_EQ(server_.wait(seconds(3)), 128 + SIGINT);
}

TEST_F(HardeningTest, ContextLimitsAreTruthful) {
  start({"--ctx-size", "512"});
  auto over = curl(url("/v1/completions"), R"({"prompt":"short","max_tokens":600})");
  EXPECT_EQ(over.status, 400);
  EXPECT_EQ(json::parse(over.body)["error"]["code"], "context_length_exceeded") << over.body;
  EXPECT_EQ(json::parse(over.body)["error"]["param"], "max_tokens") << over.body;
  EXPECT_EQ(curl(url("/v1/completions"), R"({"prompt":"short","max_tokens":100})").status, 200);

  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "word ";
  auto truncated = curl(
      url("/v1/completions"),
      json{{"prompt", long_prompt}, {"max_tokens", 4}, {"truncate_prompt_tokens", 100}}.dump());
  ASSERT_EQ(truncated.status, 200) << truncated.body;
  EXPECT_EQ(json::parse(truncated.body)["usage"]["prompt_tokens"], 100);
  auto fitted = curl(
      url("/v1/completions"),
      json{{"prompt", long_prompt}, {"max_tokens", 12}, {"truncate_prompt_tokens", -1}}.dump());
  ASSERT_EQ(fitted.status, 200) << fitted.body;
  EXPECT_EQ(json::parse(fitted.body)["usage"]["prompt_tokens"], 512 - 12);

  // A text far longer than what is kept is tokenized only at its end; the kept tokens are those
  // of a text that is tokenized whole.
  std::string story;
  for (int i = 0; i < 3000; ++i) {
    story += 'w';
    story += std::to_string(i % 97);
    story += ' ';
  }
  const std::string story_end = story.substr(story.size() - 1800);
  std::string texts[2];
  for (int which = 0; which < 2; ++which) {
    auto reply = curl(url("/v1/completions"), json{{"prompt", which == 0 ? story : story_end},
                                                   {"max_tokens", 6},
                                                   {"temperature", 0},
                                                   {"truncate_prompt_tokens", 100}}
                                                  .dump());
    ASSERT_EQ(reply.status, 200) << reply.body;
    EXPECT_EQ(json::parse(reply.body)["usage"]["prompt_tokens"], 100);
    texts[which] = json::parse(reply.body)["choices"][0]["text"];
  }
  EXPECT_EQ(texts[0], texts[1]);

  auto fractional = curl(url("/v1/completions"), R"({"prompt":[1.0,2]})");
  EXPECT_EQ(fractional.status, 400);
  EXPECT_NE(json::parse(fractional.body)["error"]["message"].get<std::string>().find(
                "must be an integer token id"),
            std::string::npos)
      << fractional.body;

  // A KV pool smaller than the model's context: /v1/models reports what a request can get.
  ServerProcess small;
  std::string log;
  ASSERT_TRUE(small.start(
      {"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes", "2MiB"}, log));
  const std::string metrics = curl(small.url() + "/metrics").body;
  const int pool_tokens =
      static_cast<int>(metric(metrics, "infergrid_kv_blocks_total").value()) * 16;
  ASSERT_LT(pool_tokens, 16384);
  const json models = json::parse(curl(small.url() + "/v1/models").body);
  EXPECT_EQ(models["data"][0]["max_model_len"], pool_tokens);
  auto too_big = curl(small.url() + "/v1/completions",
                      json{{"prompt", "x"}, {"max_tokens", pool_tokens}}.dump());
  EXPECT_EQ(too_big.status, 400) << too_big.body;
}

TEST_F(HardeningTest, ApiKeysCorsAndHostAllowList) {
  start({"--api-key", "sk-first", "--api-key", "sk-second", "--cors-origin", "http://app.example",
         "--allowed-host", "127.0.0.1", "--allowed-host", "localhost"});
  const std::string body = R"({"prompt":"hi","max_tokens":2})";
  auto none = curl(url("/v1/completions"), body);
  EXPECT_EQ(none.status, 401);
  const json e = json::parse(none.body);
  EXPECT_EQ(e["error"]["code"], "invalid_api_key");
  EXPECT_EQ(e["error"]["type"], "authentication_error");
  EXPECT_NE(none.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << none.headers;
  EXPECT_EQ(curl(url("/v1/completions"), body, "-H 'Authorization: Bearer sk-firs'").status, 401);
  EXPECT_EQ(curl(url("/v1/models"), "", "-H 'Authorization: Bearer sk-wrong'").status, 401);
  EXPECT_EQ(curl(url("/v1/completions"), body, "-H 'Authorization: Bearer sk-first'").status, 200);
  EXPECT_EQ(curl(url("/v1/completions"), body, "-H 'Authorization: Bearer sk-second'").status, 200);
  EXPECT_EQ(curl(url("/health")).status, 200);  // open unless --protect-health-metrics
  EXPECT_EQ(curl(url("/metrics")).status, 200);

  // CORS: the configured origin is allowed, preflight answered without a key; others are not.
  auto preflight = curl(url("/v1/chat/completions"), "",
                        "-X OPTIONS -H 'Origin: http://app.example' -H "
                        "'Access-Control-Request-Method: POST' -H "
                        "'Access-Control-Request-Headers: authorization, content-type'");
  EXPECT_EQ(preflight.status, 204) << preflight.headers;
  EXPECT_NE(preflight.headers.find("Access-Control-Allow-Origin: http://app.example"),
            std::string::npos)
      << preflight.headers;
  EXPECT_NE(preflight.headers.find("Access-Control-Allow-Headers: authorization, content-type"),
            std::string::npos)
      << preflight.headers;
  auto evil = curl(url("/v1/chat/completions"), "",
                   "-X OPTIONS -H 'Origin: http://evil.example' -H "
                   "'Access-Control-Request-Method: POST'");
  EXPECT_EQ(evil.status, 403);
  EXPECT_EQ(evil.headers.find("Access-Control-Allow-Origin"), std::string::npos);
  auto cross = curl(url("/v1/models"), "",
                    "-H 'Origin: http://app.example' -H 'Authorization: Bearer sk-first'");
  EXPECT_EQ(cross.status, 200);
  EXPECT_NE(cross.headers.find("Access-Control-Allow-Origin: http://app.example"),
            std::string::npos);
  // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
  EXPECT_EQ(curl(url("/health"), "", "-H 'Host: evil.example'").status, 403);
  EXPECT_EQ(curl(url("/health"), "", "-H 'Host: localhost:1234'").status, 200);

  ServerProcess strict;
  std::string log;
  ASSERT_TRUE(strict.start({"--model", test_model_path(), "--threads", "1", "--kv-cache-bytes",
                            "64MiB", "--api-key", "k", "--protect-health-metrics"},
                           log));
  EXPECT_EQ(curl(strict.url() + "/health").status, 401);
  EXPECT_EQ(curl(strict.url() + "/metrics").status, 401);
  EXPECT_EQ(curl(strict.url() + "/health", "", "-H 'Authorization: Bearer k'").status, 200);
}

}  // namespace
}  // namespace infergrid::testing
