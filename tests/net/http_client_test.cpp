// The HTTP client against a scripted loopback server: streaming, keep-alive, and every way a
// request can go wrong ending as an error value for that request.
#include "net/http_client.h"

#include <gtest/gtest.h>

#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include "net/fake_server.h"

namespace infergrid {
namespace {

using testing::FakeReply;
using testing::FakeRequest;
using testing::FakeServer;

HttpRequest get(const FakeServer& server, const std::string& target,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  HttpRequest r;
  r.host = "127.0.0.1";
  r.port = std::to_string(server.port());
  r.target = target;
  r.timeout = timeout;
  return r;
}

TEST(Url, ParsesBaseUrls) {
  auto a = Url::parse("http://127.0.0.1:8080");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, "8080");
  EXPECT_EQ(a->target("/v1/models"), "/v1/models");
  auto b = Url::parse("localhost:9000/v1/");  // OpenAI-style base URL: "/v1" is ours to add
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->host, "localhost");
  EXPECT_EQ(b->target("/metrics"), "/metrics");
  auto c = Url::parse("http://[::1]:81/proxy");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->target("/v1/models"), "/proxy/v1/models");
  EXPECT_EQ(c->to_string(), "http://[::1]:81/proxy");
  EXPECT_EQ(Url::parse("http://example.com")->port, "80");
  EXPECT_EQ(Url::parse("https://example.com").status().code(), StatusCode::kUnsupported);
  EXPECT_FALSE(Url::parse("http://:80").is_ok());
  EXPECT_FALSE(Url::parse("http://host:99999").is_ok());
  EXPECT_FALSE(Url::parse("http://host:").is_ok());
  EXPECT_FALSE(Url::parse("ftp://host").is_ok());
}

TEST(HttpClient, StreamsEventsAsTheyArriveOverOneKeptAliveConnection) {
  FakeServer server([](const FakeRequest& request) {
    EXPECT_EQ(request.method(), boost::beast::http::verb::post);
    EXPECT_EQ(request.body(), "{\"x\":1}");
    FakeReply reply;
    reply.pieces = testing::sse_pieces({"one", "two", "[DONE]"});
    reply.pause_between = std::chrono::milliseconds(30);
    return reply;
  });
  HttpClient client;
  for (int round = 0; round < 3; ++round) {
    HttpRequest request = get(server, "/v1/completions");
    request.method = "POST";
    request.body = "{\"x\":1}";
    std::vector<std::pair<std::string, Clock::time_point>> events;
    auto response = client.fetch_sync(request, [&](std::string_view data, Clock::time_point at) {
      events.emplace_back(std::string(data), at);
    });
    ASSERT_TRUE(response.is_ok()) << response.status().to_string();
    EXPECT_EQ(response->status, 200);
    EXPECT_TRUE(response->event_stream);
    EXPECT_TRUE(response->saw_done);
    EXPECT_TRUE(response->body.empty());
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].first, "one");
    EXPECT_EQ(events[1].first, "two");
    // Each event is stamped when its own bytes arrived, not when the response ended.
    EXPECT_GE(events[1].second - events[0].second, std::chrono::milliseconds(20));
    EXPECT_GE(response->end_time, events[1].second);
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST(HttpClient, WholeBodiesAndErrorStatusesAreResponses) {
  FakeServer server([](const FakeRequest& request) {
    FakeReply reply;
    if (request.target() == "/missing") {
      reply.pieces = {testing::whole_response(404, "application/json",
                                              R"({"error":{"message":"no such thing"}})")};
    } else {
      // An event stream read without an event handler is an ordinary body.
      reply.pieces = testing::sse_pieces({"a", "[DONE]"});
    }
    return reply;
  });
  HttpClient client;
  auto missing = client.fetch_sync(get(server, "/missing"));
  ASSERT_TRUE(missing.is_ok());
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, R"({"error":{"message":"no such thing"}})");
  auto stream = client.fetch_sync(get(server, "/stream"));
  ASSERT_TRUE(stream.is_ok());
  EXPECT_FALSE(stream->event_stream);
  EXPECT_EQ(stream->body, "data: a\n\ndata: [DONE]\n\n");
}

TEST(HttpClient, ConnectionRefusedIsAnErrorForThatRequest) {
  int port = 0;
  {
    // A port that was free a moment ago and has no listener now.
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor probe(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }
  HttpClient client;
  HttpRequest request;
  request.host = "127.0.0.1";
  request.port = std::to_string(port);
  auto response = client.fetch_sync(request);
  ASSERT_FALSE(response.is_ok());
  EXPECT_NE(response.status().message().find("connect"), std::string::npos)
      << response.status().message();
}

TEST(HttpClient, SilentServerTimesOut) {
  FakeServer server([](const FakeRequest&) {
    FakeReply reply;
    reply.never_reply = true;
    return reply;
  });
  HttpClient client;
  const auto start = Clock::now();
  auto response = client.fetch_sync(get(server, "/", std::chrono::milliseconds(200)));
  ASSERT_FALSE(response.is_ok());
  EXPECT_NE(response.status().message().find("timed out"), std::string::npos)
      << response.status().message();
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(150));
}

TEST(HttpClient, StreamCutBeforeItsEndIsAnError) {
  FakeServer server([](const FakeRequest&) {
    FakeReply reply;
    reply.pieces = testing::sse_pieces({"one"});
    reply.pieces.pop_back();  // no terminating chunk
    reply.close_after = true;
    return reply;
  });
  HttpClient client;
  std::vector<std::string> events;
  auto response = client.fetch_sync(
      get(server, "/"),
      [&](std::string_view data, Clock::time_point) { events.emplace_back(data); });
  EXPECT_FALSE(response.is_ok());
  EXPECT_EQ(events, std::vector<std::string>{"one"});
}

TEST(HttpClient, IdleConnectionClosedByTheServerIsRetriedOnANewOne) {
  FakeServer server([](const FakeRequest&) {
    FakeReply reply;
    reply.pieces = {testing::whole_response(200, "text/plain", "hi")};
    reply.close_after = true;  // without "Connection: close": the client keeps it in its pool
    return reply;
  });
  HttpClient client;
  for (int i = 0; i < 3; ++i) {
    auto response = client.fetch_sync(get(server, "/"));
    ASSERT_TRUE(response.is_ok()) << i << ": " << response.status().to_string();
    EXPECT_EQ(response->body, "hi");
  }
  EXPECT_EQ(server.connections(), 3);
}

TEST(HttpClient, ManyConcurrentRequestsOnOneThread) {
  FakeServer server([](const FakeRequest& request) {
    FakeReply reply;
    reply.pieces = testing::sse_pieces({std::string(request.target()), "[DONE]"});
    reply.pause_between = std::chrono::milliseconds(20);
    return reply;
  });
  HttpClient client;
  constexpr int kRequests = 40;
  std::vector<std::string> seen(kRequests);
  std::vector<std::future<void>> done;
  for (int i = 0; i < kRequests; ++i) {
    done.push_back(boost::asio::co_spawn(
        client.context(),
        [&, i]() -> boost::asio::awaitable<void> {
          auto response = co_await client.fetch(
              get(server, fmt::format("/{}", i)),
              [&, i](std::string_view data, Clock::time_point) { seen[i] = std::string(data); });
          EXPECT_TRUE(response.is_ok());
        },
        boost::asio::use_future));
  }
  for (auto& f : done) f.get();
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(seen[i], fmt::format("/{}", i));
  // Requests in flight together need connections of their own.
  EXPECT_GE(server.connections(), 2);
  EXPECT_LE(server.connections(), kRequests);
}

}  // namespace
}  // namespace infergrid
