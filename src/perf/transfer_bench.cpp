#include "perf/transfer_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <numeric>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "kvstore/block_key.h"
#include "kvstore/kv_transfer.h"
#include "kvstore/receive_tier.h"
#include "kvstore/shm_tier.h"

namespace infergrid {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kBenchLayout = 0xB3C7A;
constexpr uint64_t kBenchFingerprint = 0xF00D;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Chain {
  std::vector<KvTransferBlock> blocks;
  std::vector<uint8_t> payload;
};

Chain make_chain(const TransferBenchOptions& o, int32_t first_token) {
  Chain c;
  c.payload.resize(o.block_bytes);
  std::iota(c.payload.begin(), c.payload.end(), uint8_t{0});
  uint64_t parent = kRootBlockKey;
  for (int b = 0; b < o.blocks; ++b) {
    KvTransferBlock block;
    block.tokens.resize(static_cast<size_t>(o.block_tokens));
    std::iota(block.tokens.begin(), block.tokens.end(), first_token + b * o.block_tokens);
    block.parent_key = parent;
    block.key = block_key(parent, block.tokens, kBenchFingerprint);
    parent = block.key;
    c.blocks.push_back(std::move(block));
  }
  return c;
}

// Bytes per second of `total` bytes through one loopback TCP connection.
Result<double> raw_tcp_bytes_per_second(size_t total) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(listener);
    return Status(StatusCode::kIoError, "cannot listen on loopback");
  }
  std::promise<void> drained;
  auto done = drained.get_future();
  std::thread reader([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    std::vector<uint8_t> buf(1 << 20);
    size_t got = 0;
    while (got < total) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    drained.set_value();
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    ::close(listener);
    reader.detach();
    return Status(StatusCode::kIoError, "cannot connect on loopback");
  }
  std::vector<uint8_t> chunk(1 << 20, 7);
  const auto t0 = Clock::now();
  size_t sent = 0;
  while (sent < total) {
    const ssize_t n = ::send(fd, chunk.data(), std::min(chunk.size(), total - sent), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  done.wait();
  const double seconds = seconds_since(t0);
  reader.join();
  ::close(fd);
  ::close(listener);
  return static_cast<double>(total) / seconds;
}

}  // namespace

Result<std::string> run_transfer_bench(const TransferBenchOptions& o) {
  const size_t total = o.block_bytes * static_cast<size_t>(o.blocks);
  const std::string name = fmt::format("xferbench{}", ::getpid());
  ShmTier::unlink(name, kBenchLayout);
  IG_ASSIGN_OR_RETURN(
      auto opened, ShmTier::open(name,
                                 ShmTier::bytes_for_slots(static_cast<uint64_t>(o.blocks) * 2 + 8,
                                                          o.block_tokens, o.block_bytes),
                                 kBenchLayout, o.block_tokens, o.block_bytes));
  std::shared_ptr<ShmTier> source(std::move(opened));
  auto received = std::make_shared<KvReceiveTier>(kBenchLayout, o.block_tokens, o.block_bytes,
                                                  total * 2 + (1 << 20), std::chrono::seconds(60));
  KvTransferReceiverOptions ro;
  ro.model_fingerprint = kBenchFingerprint;
  IG_ASSIGN_OR_RETURN(auto receiver, KvTransferReceiver::start(ro, received));
  KvTransferSender sender(source);

  const Chain chain = make_chain(o, 1000);
  for (const KvTransferBlock& b : chain.blocks) {
    IG_RETURN_IF_ERROR(source->put(b.key, b.parent_key, b.tokens, chain.payload));
  }
  const auto plan_for = [&](const std::vector<KvTransferBlock>& blocks) {
    KvTransferPlan plan;
    plan.host = "127.0.0.1";
    plan.port = receiver->port();
    plan.transfer_id = "bench";
    plan.layout_tag = kBenchLayout;
    plan.block_size = o.block_tokens;
    plan.payload_bytes = o.block_bytes;
    plan.blocks = blocks;
    plan.deadline = Clock::now() + std::chrono::seconds(120);
    return plan;
  };
  // Runs one session; the result once it ended.
  const auto transfer = [&](KvTransferPlan plan, const std::function<void()>& feed,
                            std::shared_ptr<KvTransferSession>* out_session =
                                nullptr) -> Result<KvTransferResult> {
    std::promise<KvTransferResult> ended;
    auto result = ended.get_future();
    IG_ASSIGN_OR_RETURN(auto session, sender.start(std::move(plan), [&](const KvTransferResult& r) {
      ended.set_value(r);
    }));
    if (out_session) *out_session = session;
    feed();
    session->finish_input();
    KvTransferResult r = result.get();
    if (!r.ok) return Status(StatusCode::kIoError, "KV transfer failed: " + r.error);
    return r;
  };
  const auto drain_received = [&](const Chain& c) {
    std::vector<uint8_t> out(o.block_bytes);
    for (const KvTransferBlock& b : c.blocks) (void)received->get(b.key, b.tokens, out);
  };

  std::vector<double> memcpy_gbs, tcp_gbs, transfer_gbs;
  std::vector<uint8_t> a(total, 1), b(total, 2);
  std::memcpy(b.data(), a.data(), total);  // touch both once
  for (int round = 0; round < o.rounds; ++round) {
    auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), total);
    memcpy_gbs.push_back(static_cast<double>(total) / seconds_since(t0) / 1e9);

    IG_ASSIGN_OR_RETURN(double tcp, raw_tcp_bytes_per_second(total));
    tcp_gbs.push_back(tcp / 1e9);

    t0 = Clock::now();
    IG_ASSIGN_OR_RETURN(KvTransferResult r, transfer(plan_for(chain.blocks), [] {}));
    const double seconds = seconds_since(t0);
    if (r.accepted != static_cast<uint32_t>(o.blocks)) {
      return Status(StatusCode::kInternal, "the receiver did not accept every block");
    }
    transfer_gbs.push_back(static_cast<double>(total) / seconds / 1e9);
    drain_received(chain);
  }

  // The tail: blocks appear at the prefill's pace; what the transfer adds after the last one.
  std::vector<double> tail_ms;
  const int tail_blocks = std::min(o.blocks, 64);
  for (int round = 0; round < o.rounds; ++round) {
    TransferBenchOptions small = o;
    small.blocks = tail_blocks;
    const Chain paced = make_chain(small, 500000 + round * 100000);
    Clock::time_point last_put;
    const auto pace = std::chrono::duration<double, std::milli>(o.prefill_ms_per_block);
    Status fed = Status::ok();
    IG_ASSIGN_OR_RETURN(KvTransferResult r, transfer(plan_for(paced.blocks), [&] {
                          auto next = Clock::now();
                          for (const KvTransferBlock& blk : paced.blocks) {
                            next += std::chrono::duration_cast<Clock::duration>(pace);
                            std::this_thread::sleep_until(next);
                            if (fed.is_ok()) {
                              fed = source->put(blk.key, blk.parent_key, blk.tokens, paced.payload);
                              sender.notify_written();  // as the engine's tier writer does
                            }
                          }
                          last_put = Clock::now();
                        }));
    IG_RETURN_IF_ERROR(fed);
    const double tail = std::chrono::duration<double, std::milli>(Clock::now() - last_put).count();
    if (r.accepted != static_cast<uint32_t>(tail_blocks)) {
      return Status(StatusCode::kInternal, "the receiver did not accept every paced block");
    }
    tail_ms.push_back(tail);
    drain_received(paced);
  }
  ShmTier::unlink(name, kBenchLayout);

  const double m = median(memcpy_gbs), t = median(tcp_gbs), x = median(transfer_gbs);
  const double prefill_ms = tail_blocks * o.prefill_ms_per_block;
  std::string report = fmt::format(
      "KV transfer on loopback: {} blocks of {} KiB ({} MiB), median of {} alternating rounds\n",
      o.blocks, o.block_bytes / 1024, total >> 20, o.rounds);
  report += fmt::format("  memcpy           {:>8.2f} GB/s\n", m);
  report += fmt::format("  raw loopback TCP {:>8.2f} GB/s\n", t);
  report +=
      fmt::format("  KV transfer      {:>8.2f} GB/s  ({:.0f}% of raw TCP, {:.0f}% of memcpy)\n", x,
                  100 * x / t, 100 * x / m);
  report += fmt::format(
      "  tail after the last block of a {}-block prefill at {:.1f} ms/block ({:.0f} ms): "
      "{:.2f} ms median ({:.2f}% of the prefill)\n",
      tail_blocks, o.prefill_ms_per_block, prefill_ms, median(tail_ms),
      100 * median(tail_ms) / prefill_ms);
  return report;
}

}  // namespace infergrid
