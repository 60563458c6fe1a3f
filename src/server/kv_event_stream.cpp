#include "server/kv_event_stream.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace infergrid {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(20);
constexpr auto kLoadInterval = std::chrono::milliseconds(250);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr size_t kEventsPerMessage = 4096;

std::string hex(uint64_t v) {
  return fmt::format("{:016x}", v);
}

struct StreamState {
  explicit StreamState(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  bool gone = false;
};

// The client sends nothing on this connection; a read that completes means it closed or broke.
asio::awaitable<void> watch_for_close(std::shared_ptr<StreamState> state) {
  std::array<char, 256> scratch{};
  beast::error_code ec;
  while (!ec) {
    co_await state->stream.socket().async_read_some(asio::buffer(scratch),
                                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  state->gone = true;
}

asio::awaitable<bool> send_event(StreamState& state, const nlohmann::json& message) {
  const std::string data = "data: " + message.dump() + "\n\n";
  beast::error_code ec;
  state.stream.expires_after(kWriteTimeout);
  co_await asio::async_write(state.stream, http::make_chunk(asio::buffer(data)),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) state.gone = true;
  co_return !ec;
}

// Built outside the coroutines: GCC 12 miscompiles braced initializer lists in their frames.
nlohmann::json events_message(uint64_t first, uint64_t last, nlohmann::json ops) {
  return {{"type", "events"}, {"first", first}, {"last", last}, {"ops", std::move(ops)}};
}

nlohmann::json snapshot_message(uint64_t epoch, uint64_t seq, int part, bool more,
                                nlohmann::json blocks) {
  return {{"type", "snapshot"}, {"epoch", hex(epoch)}, {"seq", seq},
          {"part", part},       {"more", more},        {"blocks", std::move(blocks)}};
}

// kv_share: the host and DRAM-tier segment this model's blocks are written through to; two
// instances that report the same one can hand KV to each other without a socket ("" without
// a DRAM tier).
std::string kv_share_of(const ModelEntry& model) {
  const auto& tier = model.engine.scheduler_options().dram_tier;
  if (!tier) return "";
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) return "";
  return std::string(host.data()) + "/" + tier->segment_name();
}

nlohmann::json hello_message(const ServerContext& server, const ModelEntry& model,
                             const KvEventLog& log) {
  // kv_transfer_port: where other instances stream KV to this one (0: it takes none); the
  // router pairs it with the host it reaches this instance at.
  return {{"type", "hello"},
          {"kv_transfer_port", model.kv_receiver != nullptr ? model.kv_receiver->port() : 0},
          {"epoch", hex(log.epoch())},
          {"model", model.names.front()},
          {"fingerprint", hex(model.engine.model().fingerprint())},
          {"block_size", model.engine.scheduler_options().block_size},
          {"blocks_total", model.engine.stats().blocks_total},
          {"role", server.role()},
          {"kv_share", kv_share_of(model)}};
}

nlohmann::json ops_entry(const KvEvent& e) {
  return nlohmann::json::array(
      {e.stored ? "stored" : "removed", std::string(kv_tier_name(e.tier)), hex(e.key)});
}

nlohmann::json load_message(const ModelEntry& model, uint64_t seq) {
  const EngineStats s = model.engine.stats();
  return {{"type", "load"},
          {"seq", seq},
          {"running", s.running},
          {"waiting", s.waiting},
          {"blocks_total", s.blocks_total},
          {"blocks_in_use", s.blocks_in_use},
          {"blocks_cached", s.blocks_cached}};
}

asio::awaitable<bool> send_snapshot(StreamState& state, const KvEventLog& log, uint64_t& seq) {
  const KvEventLog::Snapshot snap = log.snapshot();
  seq = snap.seq;
  size_t next = 0;
  int part = 0;
  do {
    nlohmann::json blocks = nlohmann::json::object();
    const size_t end = std::min(snap.blocks.size(), next + kSnapshotPartBlocks);
    for (; next < end; ++next) {
      blocks[std::string(kv_tier_name(snap.blocks[next].first))].push_back(
          hex(snap.blocks[next].second));
    }
    const nlohmann::json message = snapshot_message(log.epoch(), snap.seq, part++,
                                                    next < snap.blocks.size(), std::move(blocks));
    if (!co_await send_event(state, message)) co_return false;
  } while (next < snap.blocks.size());
  co_return true;
}

asio::awaitable<void> stream_events(std::shared_ptr<StreamState> state, ServerContext& server,
                                    const ModelEntry& model, std::shared_ptr<KvEventLog> log,
                                    KvEventQuery query) {
  try {
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.keep_alive(false);
    res.chunked(true);
    http::response_serializer<http::empty_body> serializer{res};
    beast::error_code ec;
    state->stream.expires_after(kWriteTimeout);
    co_await http::async_write_header(state->stream, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    asio::co_spawn(state->stream.get_executor(), watch_for_close(state), asio::detached);

    const nlohmann::json hello = hello_message(server, model, *log);
    if (!co_await send_event(*state, hello)) co_return;

    uint64_t seq = query.since;
    std::vector<KvEvent> batch;
    bool synced = query.epoch == log->epoch() && log->read_since(seq, 0, batch);
    auto next_load = std::chrono::steady_clock::now();
    asio::steady_timer timer(state->stream.get_executor());
    while (!state->gone && !server.shutting_down) {
      if (!synced) {
        if (!co_await send_snapshot(*state, *log, seq)) break;
        synced = true;
      }
      batch.clear();
      if (!log->read_since(seq, kEventsPerMessage, batch)) {
        synced = false;  // we fell out of the kept window while writing
        continue;
      }
      if (!batch.empty()) {
        nlohmann::json ops = nlohmann::json::array();
        for (const KvEvent& e : batch) {
          ops.push_back(ops_entry(e));
        }
        const nlohmann::json message =
            events_message(batch.front().seq, batch.back().seq, std::move(ops));
        if (!co_await send_event(*state, message)) break;
        seq = batch.back().seq;
        if (batch.size() == kEventsPerMessage) continue;
      }
      if (const auto now = std::chrono::steady_clock::now(); now >= next_load) {
        if (!co_await send_event(*state, load_message(model, seq))) break;
        next_load = now + kLoadInterval;
      }
      timer.expires_after(kPollInterval);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!state->gone) {
      state->stream.expires_after(std::chrono::seconds(1));
      co_await asio::async_write(state->stream, http::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
  } catch (const std::exception& e) {
    spdlog::warn("kv event stream: {}", e.what());
  }
  beast::error_code ignored;
  state->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  state->stream.socket().close(ignored);  // ends the watcher's read
}

}  // namespace

void serve_kv_events(tcp::socket socket, ServerContext& server, const ModelEntry& model,
                     std::shared_ptr<KvEventLog> log, KvEventQuery query) {
  auto state = std::make_shared<StreamState>(std::move(socket));
  asio::co_spawn(state->stream.get_executor(),
                 stream_events(state, server, model, std::move(log), query), asio::detached);
}

}  // namespace infergrid
