#include "kvstore/kv_transfer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "kvstore/block_key.h"
#include "kvstore/kv_transfer_frame.h"

namespace infergrid {
namespace {

using Clock = std::chrono::steady_clock;

int ms_until(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// 1: fd is ready for `events`; 0: the deadline passed; -1: woken (wake_fd readable) or an
// error on fd.
int wait_ready(int fd, short events, int wake_fd, Clock::time_point deadline) {
  for (;;) {
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, ms_until(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (fds[1].revents != 0) return -1;
    if (fds[0].revents & (events | POLLHUP | POLLERR)) return 1;
    if (n == 0) return 0;
  }
}

Status io_error(const char* what) {
  return make_error(StatusCode::kIoError, "KV transfer: {}", what);
}

Status write_all(int fd, std::span<const uint8_t> bytes, int wake_fd, Clock::time_point deadline) {
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n > 0) {
      at += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const int ready = wait_ready(fd, POLLOUT, wake_fd, deadline);
      if (ready == 0) return io_error("write timed out");
      if (ready < 0) return make_error(StatusCode::kCancelled, "KV transfer: stopped");
      continue;
    }
    return make_error(StatusCode::kIoError, "KV transfer: write failed ({})",
                      n < 0 ? std::strerror(errno) : "closed");
  }
  return Status::ok();
}

Status read_exact(int fd, uint8_t* out, size_t size, int wake_fd, Clock::time_point deadline) {
  size_t at = 0;
  while (at < size) {
    const ssize_t n = ::recv(fd, out + at, size - at, 0);
    if (n > 0) {
      at += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return io_error("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      const int ready = wait_ready(fd, POLLIN, wake_fd, deadline);
      if (ready == 0) return io_error("read timed out");
      if (ready < 0) return make_error(StatusCode::kCancelled, "KV transfer: stopped");
      continue;
    }
    return make_error(StatusCode::kIoError, "KV transfer: read failed ({})", std::strerror(errno));
  }
  return Status::ok();
}

struct Frame {
  KvFrameHeader header;
  std::vector<uint8_t> body;
  bool intact = false;  // the body matches the header's checksum
};

// A frame whose header cannot be read is an error: the stream is out of step from there on.
Result<Frame> read_frame(int fd, int wake_fd, Clock::time_point deadline) {
  uint8_t head[kKvFrameHeaderBytes];
  if (Status s = read_exact(fd, head, sizeof(head), wake_fd, deadline); !s.is_ok()) return s;
  auto header = decode_header(head);
  if (!header.is_ok()) return header.status();
  Frame f;
  f.header = *header;
  f.body.resize(f.header.body_bytes);
  if (Status s = read_exact(fd, f.body.data(), f.body.size(), wake_fd, deadline); !s.is_ok()) {
    return s;
  }
  f.intact = body_intact(f.header, f.body);
  return f;
}

void set_socket_options(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

Result<int> connect_to(const std::string& host, int port, int wake_fd, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return make_error(StatusCode::kIoError, "KV transfer: cannot resolve {}: {}", host,
                      ::gai_strerror(rc));
  }
  Status last = io_error("no address");
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    set_socket_options(fd);
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      const int ready = wait_ready(fd, POLLOUT, wake_fd, deadline);
      int err = 0;
      socklen_t len = sizeof(err);
      if (ready == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        errno = ready == 0 ? ETIMEDOUT : (err != 0 ? err : ECANCELED);
      }
    }
    if (rc == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    last = make_error(StatusCode::kIoError, "KV transfer: cannot connect to {}:{} ({})", host, port,
                      std::strerror(errno));
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return last;
}

void wake(int fd) {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
}

}  // namespace

// --- receiver -------------------------------------------------------------------------------

KvTransferReceiver::KvTransferReceiver(KvTransferReceiverOptions options,
                                       std::shared_ptr<KvReceiveTier> tier)
    : options_(std::move(options)), tier_(std::move(tier)) {}

Result<std::unique_ptr<KvTransferReceiver>> KvTransferReceiver::start(
    KvTransferReceiverOptions options, std::shared_ptr<KvReceiveTier> tier) {
  std::unique_ptr<KvTransferReceiver> r(
      new KvTransferReceiver(std::move(options), std::move(tier)));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(r->options_.port);
  const char* host = r->options_.host.empty() ? nullptr : r->options_.host.c_str();
  if (const int rc = ::getaddrinfo(host, service.c_str(), &hints, &found); rc != 0) {
    return make_error(StatusCode::kInvalidArgument, "KV transfer listener {}: {}", r->options_.host,
                      ::gai_strerror(rc));
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  const int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || ::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(found);
    return make_error(StatusCode::kIoError, "KV transfer listener on {}:{}: {}", r->options_.host,
                      r->options_.port, why);
  }
  ::freeaddrinfo(found);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  r->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  r->listen_fd_ = fd;
  r->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  r->acceptor_ = std::thread([raw = r.get()] { raw->accept_loop(); });
  return r;
}

KvTransferReceiver::~KvTransferReceiver() {
  wake(stop_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  // Joined outside the lock: a connection's thread takes it as it ends.
  std::list<Connection> connections;
  {
    std::lock_guard lock(mutex_);
    connections.splice(connections.end(), connections_);
  }
  for (Connection& c : connections) {
    if (c.thread.joinable()) c.thread.join();
  }
  ::close(listen_fd_);
  ::close(stop_fd_);
}

void KvTransferReceiver::reap_finished_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->finished) {
      it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void KvTransferReceiver::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mutex_);
    reap_finished_locked();
    ++stats_.connections_total;
    if (connections_.size() >= static_cast<size_t>(options_.max_connections)) {
      ++stats_.sessions_broken;
      ::close(fd);
      continue;
    }
    set_socket_options(fd);
    ++stats_.connections_open;
    Connection& c = connections_.emplace_back();
    c.thread = std::thread([this, fd, &c] {
      serve_connection(fd);
      ::close(fd);
      std::lock_guard done(mutex_);
      --stats_.connections_open;
      c.finished = true;
    });
  }
}

void KvTransferReceiver::serve_connection(int fd) {
  const auto idle = [&] { return Clock::now() + options_.idle_timeout; };
  const auto broken = [&](const std::string& why) {
    spdlog::debug("KV transfer: a session broke off: {}", why);
    std::lock_guard lock(mutex_);
    ++stats_.sessions_broken;
  };
  auto hello_frame = read_frame(fd, stop_fd_, idle());
  if (!hello_frame.is_ok()) return broken(hello_frame.status().message());
  if (hello_frame->header.type != KvFrameType::kHello || !hello_frame->intact) {
    return broken("the session did not open with an intact hello");
  }
  auto hello = decode_hello(hello_frame->body);
  if (!hello.is_ok()) return broken(hello.status().message());
  if (hello->layout_tag != tier_->layout_tag() ||
      hello->block_size != static_cast<uint32_t>(tier_->block_size())) {
    const std::string why = fmt::format(
        "the sender's blocks are another layout (tag {:016x}, {} tokens; this instance: {:016x}, "
        "{})",
        hello->layout_tag, hello->block_size, tier_->layout_tag(), tier_->block_size());
    const auto refusal = encode_error(why);
    (void)write_all(fd, refusal, stop_fd_, idle());
    return broken(why);
  }
  const auto lease = std::min(std::chrono::milliseconds(hello->lease_ms), options_.max_lease);
  if (!write_all(fd, encode_hello_ok(), stop_fd_, idle()).is_ok()) return broken("write failed");

  uint32_t seq = 0, stored = 0;
  for (;;) {
    uint8_t head[kKvFrameHeaderBytes];
    if (Status s = read_exact(fd, head, sizeof(head), stop_fd_, idle()); !s.is_ok()) {
      return broken(s.message());
    }
    auto header = decode_header(head);
    if (!header.is_ok()) return broken(header.status().message());
    {
      std::lock_guard lock(mutex_);
      stats_.bytes_received += kKvFrameHeaderBytes + header->body_bytes;
    }
    if (header->type == KvFrameType::kBlock) {
      auto accepted = receive_block(fd, *header, seq, lease);
      if (!accepted.is_ok()) return broken(accepted.status().message());
      {
        std::lock_guard lock(mutex_);
        ++(*accepted ? stats_.blocks_accepted : stats_.blocks_rejected);
      }
      if (*accepted) ++stored;
      if (!write_all(fd, encode_ack({seq, *accepted}), stop_fd_, idle()).is_ok()) {
        return broken("write failed");
      }
      ++seq;
      continue;
    }
    if (header->type != KvFrameType::kEnd) return broken("an unexpected frame type");
    std::vector<uint8_t> body(header->body_bytes);
    if (Status s = read_exact(fd, body.data(), body.size(), stop_fd_, idle()); !s.is_ok()) {
      return broken(s.message());
    }
    if (!body_intact(*header, body)) return broken("a damaged end frame");
    (void)write_all(fd, encode_done(stored), stop_fd_, idle());
    std::lock_guard lock(mutex_);
    ++stats_.sessions_completed;
    return;
  }
}

Result<bool> KvTransferReceiver::receive_block(int fd, const KvFrameHeader& header, uint32_t seq,
                                               std::chrono::milliseconds lease) {
  const auto deadline = Clock::now() + options_.idle_timeout;
  // A body that cannot be a block is read off (the stream stays in step) and rejected.
  const auto skip = [&](size_t n) -> Result<bool> {
    std::vector<uint8_t> scratch(std::min<size_t>(n, 1 << 16));
    while (n > 0) {
      const size_t part = std::min(n, scratch.size());
      if (Status s = read_exact(fd, scratch.data(), part, stop_fd_, deadline); !s.is_ok()) return s;
      n -= part;
    }
    return false;
  };
  std::vector<uint8_t> fixed(block_fixed_bytes());
  if (header.body_bytes < fixed.size()) return skip(header.body_bytes);
  if (Status s = read_exact(fd, fixed.data(), fixed.size(), stop_fd_, deadline); !s.is_ok()) {
    return s;
  }
  auto block = decode_block_fixed(fixed, header.body_bytes);
  if (!block.is_ok()) return skip(header.body_bytes - fixed.size());
  // Tokens and payload straight into the buffers the tier keeps: one copy off the socket.
  auto* tokens = reinterpret_cast<uint8_t*>(block->tokens.data());
  const size_t token_bytes = block->tokens.size() * sizeof(int32_t);
  if (Status s = read_exact(fd, tokens, token_bytes, stop_fd_, deadline); !s.is_ok()) return s;
  if (Status s = read_exact(fd, block->payload.data(), block->payload.size(), stop_fd_, deadline);
      !s.is_ok()) {
    return s;
  }
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, fixed.data(), fixed.size());
  XXH3_64bits_update(state, tokens, token_bytes);
  XXH3_64bits_update(state, block->payload.data(), block->payload.size());
  const bool intact = XXH3_64bits_digest(state) == header.body_checksum;
  XXH3_freeState(state);
  // The body checksum vouches for every field, the block checksum among them, which the tier
  // keeps and checks again when a request loads the block.
  const bool valid =
      intact && block->seq == seq && block->layout_tag == tier_->layout_tag() &&
      block->tokens.size() == static_cast<size_t>(tier_->block_size()) &&
      block->payload.size() == tier_->payload_bytes() && block->key != kRootBlockKey &&
      block_key(block->parent_key, block->tokens, options_.model_fingerprint) == block->key;
  if (!valid) return false;
  const uint64_t key = block->key;
  return tier_
      ->put_verified(key, block->parent_key, std::move(block->tokens), std::move(block->payload),
                     block->block_checksum, lease)
      .is_ok();
}

KvTransferReceiverStats KvTransferReceiver::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// --- sender ---------------------------------------------------------------------------------

KvTransferSender::KvTransferSender(std::shared_ptr<KvTier> source, int max_sessions)
    : source_(std::move(source)), max_sessions_(max_sessions) {}

KvTransferSender::~KvTransferSender() {
  shutdown();
}

void KvTransferSender::shutdown() {
  std::list<Running> running;  // joined outside the lock, which a session's on_done may want
  {
    std::lock_guard lock(mutex_);
    running.splice(running.end(), running_);
  }
  for (Running& r : running) r.session->cancel();
  for (Running& r : running) {
    if (r.thread.joinable()) r.thread.join();
  }
}

void KvTransferSender::reap_finished_locked() {
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->finished) {
      it->thread.join();
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<std::shared_ptr<KvTransferSession>> KvTransferSender::start(KvTransferPlan plan,
                                                                   DoneFn on_done) {
  std::lock_guard lock(mutex_);
  reap_finished_locked();
  if (running_.size() >= static_cast<size_t>(max_sessions_)) {
    return make_error(StatusCode::kResourceExhausted, "{} KV transfers are running already",
                      running_.size());
  }
  auto session = std::make_shared<KvTransferSession>(std::move(plan), *this);
  Running& r = running_.emplace_back();
  r.session = session;
  r.thread = std::thread([this, &r, on_done = std::move(on_done)] {
    const KvTransferResult result = r.session->run();
    ++(result.ok ? sessions_ok_ : sessions_failed_);
    if (on_done) on_done(result);
    r.finished = true;
  });
  return session;
}

KvTransferSenderStats KvTransferSender::stats() const {
  KvTransferSenderStats s;
  {
    std::lock_guard lock(mutex_);
    for (const Running& r : running_) s.sessions_active += r.finished ? 0 : 1;
  }
  s.sessions_ok = sessions_ok_;
  s.sessions_failed = sessions_failed_;
  s.blocks_sent = blocks_sent_;
  s.blocks_rejected = blocks_rejected_;
  s.bytes_sent = bytes_sent_;
  s.inflight_blocks = inflight_blocks_;
  return s;
}

KvTransferSession::KvTransferSession(KvTransferPlan plan, KvTransferSender& sender)
    : plan_(std::move(plan)), sender_(sender), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

KvTransferSession::~KvTransferSession() {
  ::close(wake_fd_);
}

void KvTransferSession::finish_input() {
  std::lock_guard lock(sender_.wake_mutex_);
  input_finished_ = true;
  sender_.wake_cv_.notify_all();
}

void KvTransferSession::cancel() {
  {
    std::lock_guard lock(sender_.wake_mutex_);
    cancelled_ = true;
    sender_.wake_cv_.notify_all();
  }
  wake(wake_fd_);
}

void KvTransferSender::notify_written() {
  std::lock_guard lock(wake_mutex_);
  ++writes_;
  wake_cv_.notify_all();
}

bool KvTransferSession::next_block(size_t i, std::vector<uint8_t>& payload, std::string& error) {
  const KvTransferBlock& b = plan_.blocks[i];
  KvTier& source = *sender_.source_;
  for (;;) {
    bool finished = false;
    uint64_t writes_seen = 0;
    {
      std::lock_guard lock(sender_.wake_mutex_);
      finished = input_finished_;
      writes_seen = sender_.writes_;
    }
    if (stopped()) {
      error = "cancelled";
      return false;
    }
    // contains() first: a get() that misses would count as the tier's miss on every poll.
    if (source.contains(b.key)) {
      auto got = source.get(b.key, b.tokens, payload);
      if (got.is_ok() && *got) return true;
    }
    if (finished) return false;  // the prefill ended without this block: the prefix ends here
    if (Clock::now() >= plan_.deadline) {
      error = "deadline passed while the prefill computed";
      return false;
    }
    // Woken by this process's writes; polled for those of other processes on a shared
    // segment, which tell no one.
    std::unique_lock lock(sender_.wake_mutex_);
    sender_.wake_cv_.wait_for(lock, std::chrono::milliseconds(20), [&] {
      return sender_.writes_ != writes_seen || input_finished_ || cancelled_;
    });
  }
}

KvTransferResult KvTransferSession::run() {
  const auto start = Clock::now();
  KvTransferResult result;
  struct Pinned {
    uint32_t seq;
    Clock::time_point lease_end;
    std::vector<uint8_t> frame;  // the block's bytes, kept until the receiver has them
  };
  std::deque<Pinned> pinned;
  std::vector<std::vector<uint8_t>> spare_frames;  // acknowledged frames' memory, for reuse
  int fd = -1;
  const auto finish = [&](std::string error) {
    if (fd >= 0) ::close(fd);
    sender_.inflight_blocks_ -= pinned.size();
    pinned.clear();
    result.ok = error.empty();
    result.error = std::move(error);
    result.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return result;
  };
  // One acknowledgement frame (or kDone when `done` is set); false with error set otherwise.
  const auto take_reply = [&](Clock::time_point until, bool& done, std::string& error) -> bool {
    auto frame = read_frame(fd, wake_fd_, until);
    if (!frame.is_ok()) {
      error = frame.status().message();
      return false;
    }
    if (!frame->intact) {
      error = "a damaged reply from the receiver";
      return false;
    }
    if (frame->header.type == KvFrameType::kDone) {
      done = true;
      return true;
    }
    if (frame->header.type == KvFrameType::kError) {
      auto message = decode_error(frame->body);
      error = message.is_ok() ? "the receiver refused: " + *message : "the receiver refused";
      return false;
    }
    auto ack = decode_ack(frame->body);
    if (frame->header.type != KvFrameType::kAck || !ack.is_ok() || pinned.empty() ||
        ack->seq != pinned.front().seq) {
      error = "an acknowledgement out of order";
      return false;
    }
    ++(ack->accepted ? result.accepted : result.rejected);
    if (!ack->accepted) ++sender_.blocks_rejected_;
    spare_frames.push_back(std::move(pinned.front().frame));
    pinned.pop_front();
    --sender_.inflight_blocks_;
    return true;
  };
  const auto ack_deadline = [&] {
    return pinned.empty() ? plan_.deadline : std::min(plan_.deadline, pinned.front().lease_end);
  };
  const auto lease_or_deadline = [&](const std::string& what) {
    return Clock::now() >= plan_.deadline ? "deadline passed " + what
                                          : "a block's lease ended unacknowledged " + what;
  };

  auto connected = connect_to(plan_.host, plan_.port, wake_fd_, plan_.deadline);
  if (!connected.is_ok()) return finish(connected.status().message());
  fd = *connected;
  KvTransferHello hello{plan_.layout_tag, static_cast<uint32_t>(plan_.block_size),
                        static_cast<uint32_t>(plan_.lease.count()), plan_.transfer_id};
  if (Status s = write_all(fd, encode_hello(hello), wake_fd_, plan_.deadline); !s.is_ok()) {
    return finish(s.message());
  }
  {
    auto reply = read_frame(fd, wake_fd_, plan_.deadline);
    if (!reply.is_ok()) return finish(reply.status().message());
    if (reply->header.type == KvFrameType::kError && reply->intact) {
      auto message = decode_error(reply->body);
      return finish(message.is_ok() ? "the receiver refused: " + *message : "the receiver refused");
    }
    if (reply->header.type != KvFrameType::kHelloOk || !reply->intact) {
      return finish("the receiver did not accept the session");
    }
  }

  std::vector<uint8_t> payload(plan_.payload_bytes);
  std::string error;
  bool done = false;
  for (size_t i = 0; i < plan_.blocks.size(); ++i) {
    // Acknowledgements that have arrived meanwhile release their pins.
    while (!pinned.empty() && wait_ready(fd, POLLIN, wake_fd_, Clock::now()) == 1) {
      if (!take_reply(ack_deadline(), done, error)) return finish(error);
    }
    while (pinned.size() >= static_cast<size_t>(std::max(1, plan_.window))) {
      if (!take_reply(ack_deadline(), done, error)) {
        return finish(stopped() ? "cancelled" : error + " (" + lease_or_deadline("") + ")");
      }
    }
    if (!next_block(i, payload, error)) {
      if (!error.empty()) return finish(error);
      break;
    }
    const KvTransferBlock& b = plan_.blocks[i];
    std::vector<uint8_t> reuse;
    if (!spare_frames.empty()) {
      reuse = std::move(spare_frames.back());
      spare_frames.pop_back();
    }
    Pinned p{static_cast<uint32_t>(i), Clock::now() + plan_.lease,
             encode_block(static_cast<uint32_t>(i), b.key, b.parent_key, plan_.layout_tag, b.tokens,
                          payload, std::move(reuse))};
    if (Status s = write_all(fd, p.frame, wake_fd_, plan_.deadline); !s.is_ok()) {
      return finish(s.message());
    }
    ++result.sent;
    result.bytes += p.frame.size();
    ++sender_.blocks_sent_;
    sender_.bytes_sent_ += p.frame.size();
    ++sender_.inflight_blocks_;
    pinned.push_back(std::move(p));
  }
  if (Status s = write_all(fd, encode_end(result.sent), wake_fd_, plan_.deadline); !s.is_ok()) {
    return finish(s.message());
  }
  while (!done) {
    if (!take_reply(ack_deadline(), done, error)) {
      return finish(stopped() ? "cancelled" : error);
    }
  }
  if (!pinned.empty()) return finish("the receiver ended before acknowledging every block");
  return finish("");
}

}  // namespace infergrid
