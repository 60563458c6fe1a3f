#include "cli/route_cmd.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include "cli/default_model.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "net/http_client.h"
#include "router/instance_set.h"
#include "router/kv_index.h"
#include "router/router_server.h"
#include "router/routing_policy.h"

namespace infergrid {

namespace {

struct RouteArgs {
  std::string model;
  std::string chat_template;
  std::vector<std::string> instances;
  std::string policy = "cache_aware";
  std::string host = "127.0.0.1";
  int port = 8090;
  double load_slack_abs = PolicyOptions{}.load_slack_abs;
  double load_slack_rel = PolicyOptions{}.load_slack_rel;
  int max_attempts = RouterOptions{}.max_attempts;
  int heartbeat_timeout_ms = 2000;
};

RouteArgs args;
CLI::App* command = nullptr;

int fail(const Status& st) {
  std::fprintf(stderr, "infergrid route: %s\n", st.to_string().c_str());
  return 1;
}

int run() {
  const auto policy = policy_from_name(args.policy);
  if (!policy) {
    return fail(make_error(StatusCode::kInvalidArgument,
                           "--policy '{}': use round_robin, least_load, session or cache_aware",
                           args.policy));
  }
  if (args.instances.empty()) {
    return fail(Status(StatusCode::kInvalidArgument, "give at least one --instance URL"));
  }
  auto path = resolve_model_path(args.model);
  if (!path.is_ok()) return fail(path.status());
  auto model = Model::load(*path);
  if (!model.is_ok()) return fail(model.status().with_context(*path));
  auto tokenizer = Tokenizer::from_gguf((*model)->gguf());
  if (!tokenizer.is_ok()) return fail(tokenizer.status().with_context(*path));
  // The template the instances use for the same file and flags (serve's rules).
  const std::string eos_token((*tokenizer)->token_text((*tokenizer)->eos_id()));
  Result<ChatTemplate> chat = args.chat_template.empty()
                                  ? ChatTemplate::from_gguf((*model)->gguf(), eos_token, nullptr)
                                  : ChatTemplate::from_name(args.chat_template);
  if (!chat.is_ok()) chat = ChatTemplate::from_name("chatml");
  if (!chat.is_ok()) return fail(chat.status());

  auto client = std::make_unique<HttpClient>();
  KvIndex index;
  InstanceSetOptions set_options;
  set_options.heartbeat_timeout = std::chrono::milliseconds(args.heartbeat_timeout_ms);
  InstanceSet instances(*client, index, set_options);
  PolicyOptions policy_options;
  policy_options.policy = *policy;
  policy_options.load_slack_abs = args.load_slack_abs;
  policy_options.load_slack_rel = args.load_slack_rel;
  RoutingPolicy routing(policy_options);
  RouterOptions options;
  options.host = args.host;
  options.port = args.port;
  options.max_attempts = args.max_attempts;
  RouterModel router_model{**tokenizer, *chat, (*model)->fingerprint(),
                           (*model)->config().n_ctx_train};
  {
    std::vector<Status> added;
    auto done = boost::asio::post(client->context(), boost::asio::use_future([&] {
                                    for (const std::string& address : args.instances) {
                                      auto id = instances.add(address);
                                      if (!id.is_ok()) added.push_back(id.status());
                                    }
                                  }));
    done.get();
    if (!added.empty()) return fail(added.front().with_context("--instance"));
  }
  int rc = 0;
  {
    RouterServer server(options, router_model, *client, instances, index, routing);
    if (Status st = server.start(); !st.is_ok()) return fail(st);
    std::printf("infergrid route: %s over %zu instance(s), listening on http://%s:%d\n",
                args.policy.c_str(), args.instances.size(), args.host.c_str(), server.port());
    std::fflush(stdout);
    server.run();
    spdlog::info("route: shutting down");
    auto stopped = boost::asio::post(client->context(),
                                     boost::asio::use_future([&] { instances.stop_all(); }));
    stopped.get();
  }
  client.reset();  // stops the I/O thread before the set and the index it refers to go
  return rc;
}

}  // namespace

CLI::App* add_route_command(CLI::App& app) {
  command = app.add_subcommand(
      "route", "KV-aware router in front of infergrid serve instances (OpenAI API)");
  command->add_option("-m,--model", args.model,
                      "The GGUF file the instances serve (default: the default model): its "
                      "tokenizer and template give the block keys");
  command->add_option("--chat-template", args.chat_template,
                      "The instances' --chat-template, when they were given one");
  command->add_option("--instance", args.instances, "An instance's URL (repeat for each)");
  command->add_option("--policy", args.policy, "round_robin, least_load, session or cache_aware")
      ->capture_default_str();
  command->add_option("--host", args.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", args.port, "Port (0: any free port)")->capture_default_str();
  command
      ->add_option("--load-slack", args.load_slack_abs,
                   "cache_aware: requests above the least loaded an instance may be")
      ->capture_default_str();
  command
      ->add_option("--load-slack-ratio", args.load_slack_rel,
                   "cache_aware: the same as a fraction of the least load")
      ->capture_default_str();
  command->add_option("--max-attempts", args.max_attempts, "Instances one request may be tried on")
      ->capture_default_str();
  command
      ->add_option("--heartbeat-timeout-ms", args.heartbeat_timeout_ms,
                   "An instance not heard from for this long gets no requests")
      ->capture_default_str();
  return command;
}

int run_route_if_parsed() {
  if (command == nullptr || !command->parsed()) return -1;
  return run();
}

}  // namespace infergrid
