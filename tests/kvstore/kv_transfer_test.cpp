// KV transfer between instances: frames, the receive tier, and sender and receiver on
// loopback, with the failures the protocol exists for (damaged bytes, a peer that dies, hangs
// or never acknowledges, another layout), checked down to every pin and held block released.
#include "kvstore/kv_transfer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <random>
#include <thread>

#include "byte_flipping_proxy.h"
#include "kvstore/block_key.h"
#include "kvstore/kv_transfer_frame.h"
#include "kvstore/receive_tier.h"
#include "kvstore/shm_tier.h"

namespace infergrid {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kTokens = 16;
constexpr size_t kPayload = 4096;
constexpr uint64_t kLayout = 0x7A11;
constexpr uint64_t kFingerprint = 0xF1F1;

struct TestBlock {
  uint64_t key, parent;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> payload;
};

// A chain of n blocks of one prompt, keyed as the engine keys them.
std::vector<TestBlock> chain(int n, int32_t first_token = 100) {
  std::vector<TestBlock> blocks;
  uint64_t parent = kRootBlockKey;
  std::mt19937 rng(static_cast<uint32_t>(first_token));
  for (int b = 0; b < n; ++b) {
    TestBlock t;
    t.tokens.resize(kTokens);
    std::iota(t.tokens.begin(), t.tokens.end(), first_token + b * kTokens);
    t.parent = parent;
    t.key = block_key(parent, t.tokens, kFingerprint);
    t.payload.resize(kPayload);
    for (uint8_t& byte : t.payload) byte = static_cast<uint8_t>(rng());
    parent = t.key;
    blocks.push_back(std::move(t));
  }
  return blocks;
}

KvTransferPlan plan_for(const std::vector<TestBlock>& blocks, int port,
                        std::chrono::milliseconds deadline = 10s) {
  KvTransferPlan plan;
  plan.host = "127.0.0.1";
  plan.port = port;
  plan.transfer_id = "test";
  plan.layout_tag = kLayout;
  plan.block_size = kTokens;
  plan.payload_bytes = kPayload;
  for (const TestBlock& b : blocks) plan.blocks.push_back({b.key, b.parent, b.tokens});
  plan.deadline = Clock::now() + deadline;
  plan.window = 4;
  return plan;
}

// The result a session's on_done reports, for the test thread to wait on.
struct Outcome {
  std::promise<KvTransferResult> promise;
  std::future<KvTransferResult> future = promise.get_future();
  KvTransferSender::DoneFn callback() {
    return [this](const KvTransferResult& r) { promise.set_value(r); };
  }
  KvTransferResult wait() {
    EXPECT_EQ(future.wait_for(30s), std::future_status::ready) << "the session never ended";
    return future.get();
  }
};

template <typename F>
bool eventually(F condition, std::chrono::milliseconds within = 5s) {
  const auto until = Clock::now() + within;
  while (Clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return condition();
}

// A listening socket on loopback; `port` says where.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  int accept_one(std::chrono::milliseconds within = 5s) const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(within.count())) != 1) return -1;
    return ::accept(fd, nullptr, nullptr);
  }
};

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void send_bytes(int fd, const std::vector<uint8_t>& bytes) {
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

// Reads one whole frame (blocking); nullopt on EOF.
std::optional<std::pair<KvFrameHeader, std::vector<uint8_t>>> read_one(int fd) {
  std::vector<uint8_t> head(kKvFrameHeaderBytes);
  size_t at = 0;
  while (at < head.size()) {
    const ssize_t n = ::recv(fd, head.data() + at, head.size() - at, 0);
    if (n <= 0) return std::nullopt;
    at += static_cast<size_t>(n);
  }
  auto h = decode_header(head);
  if (!h.is_ok()) return std::nullopt;
  std::vector<uint8_t> body(h->body_bytes);
  at = 0;
  while (at < body.size()) {
    const ssize_t n = ::recv(fd, body.data() + at, body.size() - at, 0);
    if (n <= 0) return std::nullopt;
    at += static_cast<size_t>(n);
  }
  return std::make_pair(*h, body);
}

class KvTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "xfer" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ShmTier::unlink(name_, kLayout);
    auto opened = ShmTier::open(name_, ShmTier::bytes_for_slots(64, kTokens, kPayload), kLayout,
                                kTokens, kPayload);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    source_ = std::shared_ptr<ShmTier>(std::move(opened).value());
    received_ = std::make_shared<KvReceiveTier>(kLayout, kTokens, kPayload, 8 << 20, 30s);
    start_receiver(received_);
  }
  void TearDown() override { ShmTier::unlink(name_, kLayout); }

  void start_receiver(std::shared_ptr<KvReceiveTier> tier, std::chrono::milliseconds idle = 30s) {
    KvTransferReceiverOptions options;
    options.model_fingerprint = kFingerprint;
    options.idle_timeout = idle;
    auto started = KvTransferReceiver::start(options, std::move(tier));
    ASSERT_TRUE(started.is_ok()) << started.status().to_string();
    receiver_ = std::move(started).value();
  }
  void put_source(const TestBlock& b) {
    ASSERT_TRUE(source_->put(b.key, b.parent, b.tokens, b.payload).is_ok());
  }
  // The received block, loaded as the engine would (and so handed over).
  bool load_received(const TestBlock& b) {
    std::vector<uint8_t> got(kPayload);
    auto r = received_->get(b.key, b.tokens, got);
    return r.is_ok() && *r && got == b.payload;
  }

  std::string name_;
  std::shared_ptr<ShmTier> source_;
  std::shared_ptr<KvReceiveTier> received_;
  std::unique_ptr<KvTransferReceiver> receiver_;
};

TEST(KvTransferFrameTest, EveryByteFlippedInABlockFrameIsDetected) {
  const auto blocks = chain(1);
  const auto frame = encode_block(0, blocks[0].key, blocks[0].parent, kLayout, blocks[0].tokens,
                                  blocks[0].payload);
  auto header = decode_header(frame);
  ASSERT_TRUE(header.is_ok());
  const std::span<const uint8_t> body(frame.data() + kKvFrameHeaderBytes,
                                      frame.size() - kKvFrameHeaderBytes);
  ASSERT_TRUE(body_intact(*header, body));
  auto decoded = decode_block(body);
  ASSERT_TRUE(decoded.is_ok());
  EXPECT_EQ(decoded->key, blocks[0].key);
  EXPECT_EQ(decoded->tokens, blocks[0].tokens);
  EXPECT_EQ(decoded->payload, blocks[0].payload);
  EXPECT_EQ(decoded->block_checksum,
            kv_block_checksum(blocks[0].key, blocks[0].tokens, blocks[0].payload));
  for (size_t at = 0; at < frame.size(); ++at) {
    auto damaged = frame;
    damaged[at] ^= 0x10;
    auto h = decode_header(damaged);
    const std::span<const uint8_t> b(damaged.data() + kKvFrameHeaderBytes,
                                     damaged.size() - kKvFrameHeaderBytes);
    // Either the header is refused, or the body (or its length) no longer matches.
    EXPECT_TRUE(!h.is_ok() || !body_intact(*h, b)) << "a flip at byte " << at << " passed";
  }
}

TEST(KvTransferFrameTest, MalformedHeadersAndBodiesAreRefused) {
  auto hello = encode_hello({kLayout, kTokens, 1000, "req-1"});
  auto h = decode_header(hello);
  ASSERT_TRUE(h.is_ok());
  auto decoded = decode_hello(std::span<const uint8_t>(hello).subspan(kKvFrameHeaderBytes));
  ASSERT_TRUE(decoded.is_ok());
  EXPECT_EQ(decoded->transfer_id, "req-1");
  EXPECT_EQ(decoded->lease_ms, 1000u);
  auto oversized = hello;
  const uint32_t huge = kMaxFrameBodyBytes + 1;
  std::memcpy(oversized.data() + 8, &huge, 4);
  EXPECT_FALSE(decode_header(oversized).is_ok());
  auto unknown_type = hello;
  unknown_type[5] = 99;
  EXPECT_FALSE(decode_header(unknown_type).is_ok());
  EXPECT_FALSE(decode_header(std::span<const uint8_t>(hello).first(10)).is_ok());
  // A block whose lengths disagree with its frame.
  const auto blocks = chain(1);
  auto frame = encode_block(0, blocks[0].key, blocks[0].parent, kLayout, blocks[0].tokens,
                            blocks[0].payload);
  std::vector<uint8_t> body(frame.begin() + kKvFrameHeaderBytes, frame.end());
  body.resize(body.size() - 1);
  EXPECT_FALSE(decode_block(body).is_ok());
  EXPECT_FALSE(decode_ack(std::vector<uint8_t>{1, 2, 3}).is_ok());
}

TEST(KvReceiveTierTest, ABlockIsHandedOverOnceAndExpiresUnloaded) {
  KvReceiveTier tier(kLayout, kTokens, kPayload, 1 << 20, 50ms);
  const auto blocks = chain(3);
  for (const auto& b : blocks) ASSERT_TRUE(tier.put(b.key, b.parent, b.tokens, b.payload).is_ok());
  std::vector<uint8_t> got(kPayload);
  auto r = tier.get(blocks[0].key, blocks[0].tokens, got);
  ASSERT_TRUE(r.is_ok() && *r);
  EXPECT_EQ(got, blocks[0].payload);
  EXPECT_FALSE(tier.contains(blocks[0].key)) << "a loaded block is held twice";
  // Other tokens under the same key: refused and dropped.
  auto wrong = blocks[1].tokens;
  wrong[0] += 1;
  r = tier.get(blocks[1].key, wrong, got);
  EXPECT_TRUE(r.is_ok() && !*r);
  EXPECT_EQ(tier.stats().dropped_corrupt, 1u);
  EXPECT_TRUE(tier.contains(blocks[2].key));
  std::this_thread::sleep_for(80ms);
  EXPECT_FALSE(tier.contains(blocks[2].key));
  EXPECT_EQ(tier.stats().blocks, 0u);
  EXPECT_EQ(tier.stats().used_bytes, 0u);
  EXPECT_EQ(tier.expired(), 1u);
}

TEST(KvReceiveTierTest, ItNeverHoldsMoreThanItsCapacityOldestGoFirst) {
  const size_t block_bytes = kPayload + kTokens * 4;
  KvReceiveTier tier(kLayout, kTokens, kPayload, 3 * block_bytes, 30s);
  const auto blocks = chain(5);
  for (const auto& b : blocks) ASSERT_TRUE(tier.put(b.key, b.parent, b.tokens, b.payload).is_ok());
  EXPECT_EQ(tier.stats().blocks, 3u);
  EXPECT_LE(tier.stats().used_bytes, 3 * block_bytes);
  EXPECT_FALSE(tier.contains(blocks[0].key));
  EXPECT_FALSE(tier.contains(blocks[1].key));
  EXPECT_TRUE(tier.contains(blocks[4].key));
  EXPECT_EQ(tier.stats().evicted, 2u);
  EXPECT_FALSE(tier.put(blocks[0].key, 0, std::vector<int32_t>(3), blocks[0].payload).is_ok());
}

TEST_F(KvTransferTest, BlocksArriveIntactAndEveryPinIsReleased) {
  const auto blocks = chain(10);
  for (const auto& b : blocks) put_source(b);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.sent, 10u);
  EXPECT_EQ(r.accepted, 10u);
  EXPECT_EQ(r.rejected, 0u);
  for (const auto& b : blocks) EXPECT_TRUE(load_received(b));
  EXPECT_EQ(received_->stats().blocks, 0u);
  EXPECT_EQ(sender.stats().inflight_blocks, 0u);
  EXPECT_EQ(sender.stats().sessions_ok, 1u);
  EXPECT_TRUE(eventually([&] { return receiver_->stats().connections_open == 0; }));
  EXPECT_EQ(receiver_->stats().sessions_completed, 1u);
}

TEST_F(KvTransferTest, TheFirstBlocksArriveWhileLaterOnesAreStillBeingComputed) {
  const auto blocks = chain(6);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  for (size_t i = 0; i < blocks.size(); ++i) {
    put_source(blocks[i]);
    // Block i reaches the receiver before block i + 1 exists.
    EXPECT_TRUE(eventually([&] { return received_->contains(blocks[i].key); }))
        << "block " << i << " did not arrive before the next was computed";
  }
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.accepted, 6u);
}

TEST_F(KvTransferTest, APrefixEndsAtTheFirstBlockThePrefillDidNotProduce) {
  const auto blocks = chain(6);
  for (int i : {0, 1, 2, 4, 5}) put_source(blocks[static_cast<size_t>(i)]);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.sent, 3u);
  EXPECT_FALSE(received_->contains(blocks[4].key)) << "a block after the gap was sent";
}

TEST_F(KvTransferTest, ADamagedBlockIsRejectedNeverStoredAndTheOthersStillArrive) {
  const auto blocks = chain(5);
  for (const auto& b : blocks) put_source(b);
  const size_t hello_bytes = encode_hello({kLayout, kTokens, 30000, "test"}).size();
  const size_t block_frame_bytes =
      encode_block(0, 1, 0, kLayout, blocks[0].tokens, blocks[0].payload).size();
  // Into the payload of block 2.
  const size_t flip_at = hello_bytes + 2 * block_frame_bytes + block_frame_bytes - 100;
  Listener front;
  std::thread proxy([&] { testing::byte_flipping_proxy(front.fd, receiver_->port(), flip_at); });
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, front.port), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  proxy.join();
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.accepted, 4u);
  EXPECT_EQ(r.rejected, 1u);
  EXPECT_FALSE(received_->contains(blocks[2].key)) << "a damaged block was stored";
  for (int i : {0, 1, 3, 4}) EXPECT_TRUE(load_received(blocks[static_cast<size_t>(i)]));
  EXPECT_EQ(receiver_->stats().blocks_rejected, 1u);
  EXPECT_EQ(sender.stats().blocks_rejected, 1u);
  EXPECT_EQ(sender.stats().inflight_blocks, 0u);
}

TEST_F(KvTransferTest, AReceiverOfAnotherLayoutRefusesTheSessionWithAReason) {
  receiver_.reset();
  received_ = std::make_shared<KvReceiveTier>(kLayout + 1, kTokens, kPayload, 1 << 20, 30s);
  start_receiver(received_);
  const auto blocks = chain(2);
  for (const auto& b : blocks) put_source(b);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("another layout"), std::string::npos) << r.error;
  EXPECT_EQ(received_->stats().blocks, 0u);
}

TEST_F(KvTransferTest, AReceiverThatDiesMidTransferEndsTheSessionAndReleasesItsPins) {
  const auto blocks = chain(8);
  for (size_t i = 0; i < 3; ++i) put_source(blocks[i]);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  ASSERT_TRUE(eventually([&] { return received_->contains(blocks[2].key); }));
  receiver_.reset();  // the decode instance is gone
  for (size_t i = 3; i < blocks.size(); ++i) put_source(blocks[i]);
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(sender.stats().inflight_blocks, 0u);
  EXPECT_EQ(sender.stats().sessions_failed, 1u);
}

TEST_F(KvTransferTest, ASenderThatDiesMidTransferLeavesOnlyVerifiedBlocksThatExpire) {
  receiver_.reset();
  start_receiver(received_, 2s);
  const auto blocks = chain(4);
  const int fd = connect_loopback(receiver_->port());
  send_bytes(fd, encode_hello({kLayout, kTokens, /*lease_ms=*/100, "dies"}));
  ASSERT_TRUE(read_one(fd).has_value());  // hello ok
  for (int i = 0; i < 2; ++i) {
    const auto& b = blocks[static_cast<size_t>(i)];
    send_bytes(
        fd, encode_block(static_cast<uint32_t>(i), b.key, b.parent, kLayout, b.tokens, b.payload));
  }
  // Half of the third frame, then the sender is gone.
  auto third = encode_block(2, blocks[2].key, blocks[2].parent, kLayout, blocks[2].tokens,
                            blocks[2].payload);
  third.resize(third.size() / 2);
  send_bytes(fd, third);
  ASSERT_TRUE(eventually([&] { return received_->stats().blocks == 2; }));
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return receiver_->stats().sessions_broken == 1; }));
  EXPECT_FALSE(received_->contains(blocks[2].key));
  // Nobody loads them: their lease ends and the tier is empty again.
  EXPECT_TRUE(eventually([&] { return received_->stats().blocks == 0; }, 2s));
  EXPECT_TRUE(eventually([&] { return receiver_->stats().connections_open == 0; }));
}

TEST_F(KvTransferTest, AReceiverThatNeverAcknowledgesCostsOneLeaseNotTheDeadline) {
  const auto blocks = chain(3);
  for (const auto& b : blocks) put_source(b);
  Listener silent;
  std::atomic<bool> release{false};
  std::thread peer([&] {
    const int fd = silent.accept_one();
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(read_one(fd).has_value());
    send_bytes(fd, encode_hello_ok());
    while (!release) std::this_thread::sleep_for(5ms);  // reads nothing, answers nothing
    ::close(fd);
  });
  KvTransferSender sender(source_);
  Outcome outcome;
  auto plan = plan_for(blocks, silent.port, 20s);
  plan.lease = 200ms;
  const auto start = Clock::now();
  auto session = sender.start(std::move(plan), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  const KvTransferResult r = outcome.wait();
  const auto took = Clock::now() - start;
  release = true;
  peer.join();
  EXPECT_FALSE(r.ok);
  EXPECT_LT(took, 5s) << "the session waited past the lease of its blocks";
  EXPECT_EQ(sender.stats().inflight_blocks, 0u);
}

TEST_F(KvTransferTest, ATransferEndsByItsDeadlineWhenThePrefillNeverFinishes) {
  const auto blocks = chain(3);
  put_source(blocks[0]);
  KvTransferSender sender(source_);
  Outcome outcome;
  const auto start = Clock::now();
  auto session = sender.start(plan_for(blocks, receiver_->port(), 300ms), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  const KvTransferResult r = outcome.wait();  // finish_input is never called
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("deadline"), std::string::npos) << r.error;
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_EQ(sender.stats().inflight_blocks, 0u);
}

TEST_F(KvTransferTest, CancelStopsASessionAtOnce) {
  const auto blocks = chain(3);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port(), 60s), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  std::this_thread::sleep_for(20ms);
  const auto start = Clock::now();
  (*session)->cancel();
  const KvTransferResult r = outcome.wait();
  EXPECT_FALSE(r.ok);
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(KvTransferTest, GarbageOnTheReceiverPortClosesThatConnectionOnly) {
  const int fd = connect_loopback(receiver_->port());
  std::vector<uint8_t> junk(4096);
  std::mt19937 rng(7);
  for (uint8_t& b : junk) b = static_cast<uint8_t>(rng());
  send_bytes(fd, junk);
  EXPECT_FALSE(read_one(fd).has_value()) << "garbage got an answer";
  ::close(fd);
  // The receiver still takes a real session.
  const auto blocks = chain(2);
  for (const auto& b : blocks) put_source(b);
  KvTransferSender sender(source_);
  Outcome outcome;
  auto session = sender.start(plan_for(blocks, receiver_->port()), outcome.callback());
  ASSERT_TRUE(session.is_ok());
  (*session)->finish_input();
  EXPECT_TRUE(outcome.wait().ok);
  EXPECT_GE(receiver_->stats().sessions_broken, 1u);
}

TEST_F(KvTransferTest, ANameThatDoesNotResolveOrAClosedPortFailsCleanly) {
  const auto blocks = chain(1);
  put_source(blocks[0]);
  KvTransferSender sender(source_);
  int closed_port = 0;
  {
    Listener l;
    closed_port = l.port;
  }
  for (auto [host, port] : {std::pair<std::string, int>{"no-such-host.invalid", 7000},
                            std::pair<std::string, int>{"127.0.0.1", closed_port}}) {
    Outcome outcome;
    auto plan = plan_for(blocks, port, 5s);
    plan.host = host;
    auto session = sender.start(std::move(plan), outcome.callback());
    ASSERT_TRUE(session.is_ok());
    const KvTransferResult r = outcome.wait();
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.error.empty());
  }
}

}  // namespace
}  // namespace infergrid
