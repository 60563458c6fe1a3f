// What the integration tests of the router share: a router's view of its instances, routed
// completions with their decision records, and prompts of several full blocks.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "integration/server_process.h"

namespace infergrid::testing {

using nlohmann::json;
using namespace std::chrono_literals;

inline json instances_of(const ServerProcess& router) {
  return json::parse(curl(router.url() + "/route/instances").body, nullptr, false);
}

// A prompt of several full blocks (16 tokens each) that differs per `tag` from its first word.
inline std::string long_prompt(const std::string& tag) {
  std::string p = tag +
                  " once upon a time there was a little girl who lived in a village near "
                  "the forest and every day she went to the river to fetch water for her "
                  "mother, and on the way she sang songs to the birds in the trees";
  return p;
}

// Waits until the router sees `n` eligible instances.
inline bool wait_eligible(const ServerProcess& router, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    const HttpResult r = curl(router.url() + "/route/instances");
    const json body = json::parse(r.body, nullptr, false);
    if (r.status == 200 && body.is_object()) {
      size_t eligible = 0;
      for (const auto& inst : body["instances"]) eligible += inst["eligible"].get<bool>();
      if (eligible == n) return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

struct Routed {
  int status = 0;
  json body;
  json record;  // /route/explain for it
  std::string instance() const {
    return record.contains("attempts") && !record["attempts"].empty()
               ? record["attempts"].back().value("instance", "")
               : "";
  }
};

inline Routed complete(const ServerProcess& router, const std::string& prompt,
                       const std::string& extra_headers = "", int max_tokens = 8) {
  static int counter = 0;
  const std::string id = "test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  const json request = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  Routed out;
  const HttpResult r = curl(router.url() + "/v1/completions", request.dump(),
                            "-H 'X-Request-Id: " + id + "' " + extra_headers);
  out.status = r.status;
  out.body = json::parse(r.body, nullptr, false);
  out.record = json::parse(curl(router.url() + "/route/explain?id=" + id).body, nullptr, false);
  return out;
}

inline std::string text_of(const json& body) {
  return body.is_object() && body.contains("choices") ? body["choices"][0].value("text", "") : "";
}

}  // namespace infergrid::testing
