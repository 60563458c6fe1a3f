#include "cli/route_cmd.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include "bench/workload.h"
#include "cli/chat_template_choice.h"
#include "cli/default_model.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "net/http_client.h"
#include "router/instance_set.h"
#include "router/kv_index.h"
#include "router/registry_watch.h"
#include "router/router_server.h"
#include "router/routing_policy.h"
#include "router/simulator.h"

namespace infergrid {

namespace {

struct RouteArgs {
  std::string model;
  std::string chat_template;
  std::string chat_template_file;
  std::vector<std::string> instances;
  std::string policy = "cache_aware";
  std::string host = "127.0.0.1";
  int port = 8090;
  double load_slack_abs = PolicyOptions{}.load_slack_abs;
  double load_slack_rel = PolicyOptions{}.load_slack_rel;
  int max_attempts = RouterOptions{}.max_attempts;
  int heartbeat_timeout_ms = 2000;
  RouterOptions router;
  bool planner = false;
  PlannerOptions planner_options;
  int planner_interval_ms = 2000;
  int planner_window_ms = 20000;
  int planner_cooldown_ms = 30000;
  std::string etcd_url;
  std::string etcd_prefix = RegistryWatchOptions{}.prefix;
};

RouteArgs args;
CLI::App* command = nullptr;

struct SimulateArgs {
  std::string trace;
  SimOptions sim;
  std::string policy = "cache_aware";
  bool json = false;
};
SimulateArgs sim_args;
CLI::App* simulate_command = nullptr;

int run_simulate() {
  const auto policy = policy_from_name(sim_args.policy);
  if (!policy) {
    std::fprintf(stderr,
                 "infergrid route simulate: --policy '%s': use round_robin, least_load, "
                 "session or cache_aware\n",
                 sim_args.policy.c_str());
    return 1;
  }
  std::ifstream file(sim_args.trace, std::ios::binary);
  if (!file) {
    std::fprintf(stderr, "infergrid route simulate: cannot read %s\n", sim_args.trace.c_str());
    return 1;
  }
  std::stringstream text;
  text << file.rdbuf();
  auto trace = parse_trace(text.str(), sim_args.trace);
  if (!trace.is_ok()) {
    std::fprintf(stderr, "infergrid route simulate: %s\n", trace.status().to_string().c_str());
    return 1;
  }
  SimOptions options = sim_args.sim;
  options.policy.policy = *policy;
  auto result = simulate(*trace, options);
  if (!result.is_ok()) {
    std::fprintf(stderr, "infergrid route simulate: %s\n", result.status().to_string().c_str());
    return 1;
  }
  const std::string out =
      sim_args.json ? sim_result_json(*result, options) + "\n" : sim_result_text(*result, options);
  std::fputs(out.c_str(), stdout);
  return 0;
}

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
  if (args.instances.empty() && args.etcd_url.empty()) {
    return fail(Status(StatusCode::kInvalidArgument,
                       "give --etcd URL (the registry) or at least one --instance URL"));
  }
  std::optional<Url> etcd_url;
  if (!args.etcd_url.empty()) {
    auto url = Url::parse(args.etcd_url);
    if (!url.is_ok()) return fail(url.status().with_context("--etcd"));
    etcd_url = *url;
  }
  auto path = resolve_model_path(args.model);
  if (!path.is_ok()) return fail(path.status());
  auto model = Model::load(*path);
  if (!model.is_ok()) return fail(model.status().with_context(*path));
  auto tokenizer = Tokenizer::from_gguf((*model)->gguf());
  if (!tokenizer.is_ok()) return fail(tokenizer.status().with_context(*path));
  // The template the instances use for the same file and flags (serve's rule).
  auto chat = choose_chat_template(**model, **tokenizer, args.chat_template_file,
                                   args.chat_template, *path);
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
  RouterOptions options = args.router;
  if (args.planner) {
    PlannerOptions plan = args.planner_options;
    plan.interval = std::chrono::milliseconds(std::max(10, args.planner_interval_ms));
    plan.window = std::chrono::milliseconds(std::max(1, args.planner_window_ms));
    plan.cooldown = std::chrono::milliseconds(std::max(0, args.planner_cooldown_ms));
    options.planner = plan;
  }
  options.host = args.host;
  options.port = args.port;
  options.max_attempts = args.max_attempts;
  RouterModel router_model{**tokenizer, *chat, (*model)->fingerprint(),
                           (*model)->config().n_ctx_train};
  {
    std::vector<Status> added;
    auto done = boost::asio::post(client->context(), boost::asio::use_future([&] {
                                    for (const std::string& address : args.instances) {
                                      auto id = instances.add(address, /*pinned=*/true);
                                      if (!id.is_ok()) added.push_back(id.status());
                                    }
                                  }));
    done.get();
    if (!added.empty()) return fail(added.front().with_context("--instance"));
  }
  std::unique_ptr<RegistryWatch> registry;
  if (etcd_url) {
    registry = std::make_unique<RegistryWatch>(*client, *etcd_url, instances,
                                               RegistryWatchOptions{args.etcd_prefix});
    boost::asio::co_spawn(client->context(), registry->run(), boost::asio::detached);
  }
  int rc = 0;
  {
    RouterServer server(options, router_model, *client, instances, index, routing);
    if (Status st = server.start(); !st.is_ok()) return fail(st);
    std::printf("infergrid route: %s over %zu instance(s)%s, listening on http://%s:%d\n",
                args.policy.c_str(), args.instances.size(),
                etcd_url ? (" and the registry at " + etcd_url->to_string()).c_str() : "",
                args.host.c_str(), server.port());
    std::fflush(stdout);
    server.run();
    spdlog::info("route: shutting down");
    auto stopped = boost::asio::post(client->context(), boost::asio::use_future([&] {
                                       if (registry) registry->stop();
                                       instances.stop_all();
                                     }));
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
  command->add_option("--chat-template-file", args.chat_template_file,
                      "The instances' --chat-template-file, when they were given one");
  command->add_option("--instance", args.instances, "An instance's URL (repeat for each)");
  command->add_option("--etcd", args.etcd_url,
                      "Follow the instances registered in etcd (serve --etcd) at this URL");
  command->add_option("--etcd-prefix", args.etcd_prefix, "Key prefix of the registry")
      ->capture_default_str();
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
      ->add_option("--max-inflight-per-instance", args.router.max_inflight_per_instance,
                   "Admission: requests in flight the cluster holds per instance")
      ->capture_default_str();
  command
      ->add_option("--batch-share", args.router.batch_share,
                   "Admission: batch requests are shed past this share of it")
      ->capture_default_str();
  command
      ->add_option("--standard-share", args.router.standard_share,
                   "Admission: standard requests are shed past this share of it")
      ->capture_default_str();
  command->add_flag("--forward-priority", args.router.forward_priority,
                    "Send the class to instances as `priority` (they need "
                    "--trust-request-priority)");
  command
      ->add_option("--pd-min-uncached-tokens", args.router.pd_min_uncached_tokens,
                   "Disaggregate a request when its decode instance would compute at least "
                   "this many prompt tokens (and holds under half of them): a --role prefill "
                   "instance on the same shared DRAM tier computes the prompt first (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_flag("--planner", args.planner,
                    "Convert instances between prefill and decode (POST /admin/role) when the "
                    "TTFT or TPOT measured on streams says one side is the bottleneck");
  PlannerOptions& plan = args.planner_options;
  command->add_option("--slo-ttft-ms", plan.slo_ttft_ms, "Planner: TTFT p90 objective")
      ->capture_default_str();
  command->add_option("--slo-tpot-ms", plan.slo_tpot_ms, "Planner: TPOT p90 objective")
      ->capture_default_str();
  command
      ->add_option("--planner-interval-ms", args.planner_interval_ms,
                   "Planner: how often it decides")
      ->capture_default_str();
  command
      ->add_option("--planner-window-ms", args.planner_window_ms,
                   "Planner: measurements older than this are forgotten")
      ->capture_default_str();
  command
      ->add_option("--planner-hold", plan.hold_intervals,
                   "Planner: intervals in a row a verdict must hold before it converts")
      ->capture_default_str();
  command
      ->add_option("--planner-cooldown-ms", args.planner_cooldown_ms,
                   "Planner: no conversion for this long after one")
      ->capture_default_str();
  command
      ->add_option("--planner-min-prefill", plan.min_prefill,
                   "Planner: prefill instances it keeps (0: it may convert them all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--planner-min-decode", plan.min_decode, "Planner: decode instances it keeps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--planner-min-samples", plan.min_samples,
                   "Planner: measurements of each kind needed to decide")
      ->capture_default_str();
  command
      ->add_option("--heartbeat-timeout-ms", args.heartbeat_timeout_ms,
                   "An instance not heard from for this long gets no requests")
      ->capture_default_str();

  simulate_command = command->add_subcommand(
      "simulate", "Replay a Mooncake trace through the routing policy on simulated instances");
  SimOptions& sim = sim_args.sim;
  simulate_command
      ->add_option("--trace", sim_args.trace, "JSONL trace (bench trace-gen writes one)")
      ->required();
  simulate_command->add_option("--instances", sim.instances)->capture_default_str();
  simulate_command
      ->add_option("--capacity-blocks", sim.capacity_blocks,
                   "KV blocks (of the trace's 512 tokens) per instance")
      ->capture_default_str();
  simulate_command->add_option("--policy", sim_args.policy)->capture_default_str();
  simulate_command->add_option("--load-slack", sim.policy.load_slack_abs)->capture_default_str();
  simulate_command->add_option("--load-slack-ratio", sim.policy.load_slack_rel)
      ->capture_default_str();
  simulate_command->add_option("--prefill-tokens-per-s", sim.prefill_tokens_per_s)
      ->capture_default_str();
  simulate_command->add_option("--decode-ms-per-token", sim.decode_ms_per_token)
      ->capture_default_str();
  simulate_command->add_option("--decode-ms-per-running", sim.decode_ms_per_running)
      ->capture_default_str();
  simulate_command
      ->add_option("--time-scale", sim.time_scale,
                   "Divide the trace's timestamps by this (2: twice the rate)")
      ->capture_default_str();
  simulate_command->add_flag("--json", sim_args.json, "One JSON object instead of text");
  return command;
}

int run_route_if_parsed() {
  if (simulate_command != nullptr && simulate_command->parsed()) return run_simulate();
  if (command == nullptr || !command->parsed()) return -1;
  return run();
}

}  // namespace infergrid
