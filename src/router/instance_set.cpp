#include "router/instance_set.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace infergrid {

namespace asio = boost::asio;

namespace {

std::optional<uint64_t> parse_hex(const nlohmann::json& value) {
  if (!value.is_string()) return std::nullopt;
  const std::string& s = value.get_ref<const std::string&>();
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace

std::string_view health_name(Instance::Health health) {
  switch (health) {
    case Instance::Health::kConnecting:
      return "connecting";
    case Instance::Health::kUp:
      return "up";
    case Instance::Health::kDown:
      return "down";
  }
  return "down";
}

bool Instance::eligible(Clock::time_point now, const InstanceSetOptions& options) const {
  return wanted && health == Health::kUp && synced &&
         now - last_message < options.heartbeat_timeout &&
         now - failed_at >= options.failure_probation;
}

InstanceSet::InstanceSet(HttpClient& client, KvIndex& index, InstanceSetOptions options)
    : client_(client), index_(index), options_(options) {}

InstanceSet::~InstanceSet() = default;

Result<InstanceId> InstanceSet::add(std::string_view address, bool pinned) {
  auto url = Url::parse(address);
  if (!url.is_ok()) return url.status();
  const std::string canonical = url->to_string();
  for (auto& inst : instances_) {
    if (inst->address != canonical) continue;
    inst->pinned = inst->pinned || pinned;
    inst->wanted = true;
    // A follower told to stop may still be waiting for its stream's next message: it sees
    // `wanted` again and carries on, so a second one is never started beside it.
    if (!inst->following) asio::co_spawn(client_.context(), follow(inst->id), asio::detached);
    return inst->id;
  }
  auto inst = std::make_unique<Instance>();
  inst->id = static_cast<InstanceId>(instances_.size());
  inst->address = canonical;
  inst->url = *url;
  inst->pinned = pinned;
  inst->stable_hash = XXH3_64bits(canonical.data(), canonical.size());
  instances_.push_back(std::move(inst));
  asio::co_spawn(client_.context(), follow(instances_.back()->id), asio::detached);
  return instances_.back()->id;
}

void InstanceSet::remove(std::string_view address) {
  auto url = Url::parse(address);
  if (!url.is_ok()) return;
  const std::string canonical = url->to_string();
  for (auto& inst : instances_) {
    if (inst->address != canonical || !inst->wanted || inst->pinned) continue;
    inst->wanted = false;
    inst->synced = false;
    inst->health = Instance::Health::kDown;
    index_.clear(inst->id);
  }
}

void InstanceSet::mark_failed(InstanceId id, std::string why) {
  Instance& inst = *instances_[id];
  inst.failed_at = Clock::now();
  inst.last_error = std::move(why);
}

void InstanceSet::stop_all() {
  for (auto& inst : instances_) inst->wanted = false;
}

asio::awaitable<void> InstanceSet::follow(InstanceId id) {
  instances_[id]->following = true;
  auto backoff = std::chrono::milliseconds(100);
  asio::steady_timer timer(client_.context());
  while (instances_[id]->wanted) {
    Instance& inst = *instances_[id];
    HttpRequest request;
    request.host = inst.url.host;
    request.port = inst.url.port;
    request.target =
        inst.url.target(fmt::format("/kv/events?since={}&epoch={:x}", inst.seq, inst.epoch));
    request.timeout = std::chrono::hours(24);
    request.idle_timeout = options_.heartbeat_timeout;
    bool drop = false;
    request.should_continue = [&] { return inst.wanted && !drop; };
    ++inst.connects;
    const uint64_t events_before = inst.events;
    // A named handler: GCC 12 double-destroys lambda temporaries inside co_await expressions.
    EventHandler handler = [&](std::string_view data, Clock::time_point) {
      if (!drop && inst.wanted && !on_message(inst, data)) drop = true;
    };
    Result<HttpResponse> result = co_await client_.fetch(std::move(request), std::move(handler));
    inst.synced = false;
    if (!inst.wanted) break;
    if (inst.health == Instance::Health::kUp) {
      spdlog::warn("route: instance {} is down: {}", inst.address,
                   result.is_ok() ? fmt::format("its event stream ended (HTTP {})", result->status)
                                  : result.status().message());
    }
    inst.health = Instance::Health::kDown;
    inst.last_error = result.is_ok() ? fmt::format("event stream ended (HTTP {})", result->status)
                                     : result.status().message();
    if (inst.events > events_before || inst.last_message > Clock::now() - backoff) {
      backoff = std::chrono::milliseconds(100);
    }
    timer.expires_after(backoff);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  instances_[id]->following = false;
}

bool InstanceSet::on_message(Instance& inst, std::string_view data) {
  const nlohmann::json message = nlohmann::json::parse(data, nullptr, false);
  if (!message.is_object() || !message.contains("type") || !message["type"].is_string()) {
    inst.last_error = "the event stream sent something that is not an event";
    return false;
  }
  inst.last_message = Clock::now();
  const std::string& type = message["type"].get_ref<const std::string&>();
  try {
    if (type == "hello") {
      const auto epoch = parse_hex(message.value("epoch", nlohmann::json()));
      const auto fingerprint = parse_hex(message.value("fingerprint", nlohmann::json()));
      if (!epoch || !fingerprint) return false;
      if (*epoch != inst.epoch) {  // a new process: its numbers start again
        inst.epoch = *epoch;
        inst.seq = 0;
      }
      inst.fingerprint = *fingerprint;
      inst.model = message.value("model", "");
      inst.block_size = message.value("block_size", 0);
      inst.blocks_total = message.value("blocks_total", 0);
      inst.role = message.value("role", "unified");
      inst.kv_share = message.value("kv_share", "");
      inst.kv_transfer_port = message.value("kv_transfer_port", 0);
      return true;
    }
    if (type == "snapshot") {
      const int part = message.at("part").get<int>();
      if (part == 0) {
        index_.clear(inst.id);
        inst.synced = false;
        ++inst.snapshots;
      }
      for (const auto& [tier_name, keys] : message.at("blocks").items()) {
        const auto tier = kv_tier_from_name(tier_name);
        if (!tier) continue;
        for (const auto& k : keys) {
          if (auto key = parse_hex(k)) index_.stored(inst.id, *tier, *key);
        }
      }
      inst.seq = message.at("seq").get<uint64_t>();
      if (!message.value("more", false)) {
        inst.synced = true;
        inst.health = Instance::Health::kUp;
      }
      return true;
    }
    if (type == "events") {
      if (message.at("first").get<uint64_t>() != inst.seq + 1) {
        inst.last_error = fmt::format("event {} missing", inst.seq + 1);
        inst.epoch = 0;  // resume from a snapshot
        return false;
      }
      for (const auto& op : message.at("ops")) {
        const auto tier = kv_tier_from_name(op.at(1).get<std::string>());
        const auto key = parse_hex(op.at(2));
        if (!tier || !key) continue;
        if (op.at(0) == "stored") {
          index_.stored(inst.id, *tier, *key);
        } else {
          index_.removed(inst.id, *tier, *key);
        }
        ++inst.events;
      }
      inst.seq = message.at("last").get<uint64_t>();
      return true;
    }
    if (type == "load") {
      inst.reported_load = message.value("running", 0) + message.value("waiting", 0);
      inst.blocks_in_use = message.value("blocks_in_use", 0);
      // A resumed stream replays from our seq without a snapshot: the load that follows the
      // replay says we are current.
      if (message.value("seq", uint64_t{0}) == inst.seq) {
        inst.synced = true;
        inst.health = Instance::Health::kUp;
      }
      return true;
    }
  } catch (const nlohmann::json::exception& e) {
    inst.last_error = fmt::format("malformed {} event: {}", type, e.what());
    inst.epoch = 0;
    return false;
  }
  return true;  // a type from a newer instance: ignored
}

}  // namespace infergrid
