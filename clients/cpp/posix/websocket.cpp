// Facecast reference client: minimal blocking RFC 6455 client over POSIX sockets (see websocket.h).
#include "websocket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

namespace facecast {

namespace {

constexpr std::size_t kMaxMessage = 16 * 1024 * 1024;  // the server's own frames stay under 4 MiB
constexpr char kWebSocketGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

long long ws_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::mt19937& ws_random() {
  static thread_local std::mt19937 generator{std::random_device{}()};
  return generator;
}

// SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept.
std::array<std::uint8_t, 20> ws_sha1(const std::string& message) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::vector<std::uint8_t> data(message.begin(), message.end());
  const std::uint64_t bit_length = static_cast<std::uint64_t>(message.size()) * 8;
  data.push_back(0x80);
  while (data.size() % 64 != 56) data.push_back(0);
  for (int i = 7; i >= 0; --i) data.push_back(static_cast<std::uint8_t>(bit_length >> (8 * i)));
  auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (std::size_t chunk = 0; chunk < data.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const std::uint8_t* p = &data[chunk + static_cast<std::size_t>(4 * i)];
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t temp = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = temp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<std::uint8_t, 20> digest{};
  for (std::size_t i = 0; i < 20; ++i) digest[i] = static_cast<std::uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
  return digest;
}

std::string ws_base64(const std::uint8_t* data, std::size_t size) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < size; i += 3) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (i + 1 < size ? std::uint32_t{data[i + 1]} << 8 : 0) |
                            (i + 2 < size ? std::uint32_t{data[i + 2]} : 0);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < size ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < size ? kAlphabet[n & 63] : '=');
  }
  return out;
}

std::string ws_lower(std::string text) {
  for (char& ch : text) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return text;
}

std::string ws_trim(const std::string& text) {
  std::size_t begin = 0;
  std::size_t end = text.size();
  while (begin < end && (text[begin] == ' ' || text[begin] == '\t')) ++begin;
  while (end > begin && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r')) --end;
  return text.substr(begin, end - begin);
}

}  // namespace

WebSocketClient::~WebSocketClient() { shutdown_socket(); }

WebSocketClient::Result WebSocketClient::broken(const std::string& why) {
  fail(why);
  return Result::Error;
}

bool WebSocketClient::fail(const std::string& why) {
  if (error_.empty()) error_ = why;
  shutdown_socket();
  return false;
}

void WebSocketClient::shutdown_socket() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  closed_ = true;
}

bool WebSocketClient::connect(const std::string& url,
                              const std::vector<std::pair<std::string, std::string>>& headers, int timeout_ms) {
  error_.clear();
  if (url.rfind("ws://", 0) != 0) return fail("only ws:// URLs are supported: " + url);
  const std::string rest = url.substr(5);
  const std::size_t slash = rest.find_first_of("/?");
  const std::string authority = rest.substr(0, slash);
  std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (target[0] == '?') target = "/" + target;
  std::string host = authority;
  std::string port = "80";
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
    const std::size_t close_bracket = authority.find(']');
    if (close_bracket == std::string::npos) return fail("bad host in " + url);
    host = authority.substr(1, close_bracket - 1);
    if (close_bracket + 1 < authority.size() && authority[close_bracket + 1] == ':') {
      port = authority.substr(close_bracket + 2);
    }
  } else if (const std::size_t colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return fail("no host in " + url);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return fail("cannot resolve " + host + ": " + gai_strerror(rc));
  }
  const long long deadline = ws_now_ms() + timeout_ms;
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    const int flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      const long long left = deadline - ws_now_ms();
      rc = ::poll(&pfd, 1, static_cast<int>(left > 0 ? left : 0));
      int so_error = 0;
      socklen_t len = sizeof so_error;
      if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 && so_error == 0) {
        rc = 0;
      } else {
        last_error = rc == 0 ? "connection timed out" : std::strerror(so_error != 0 ? so_error : errno);
        rc = -1;
      }
    } else if (rc != 0) {
      last_error = std::strerror(errno);
    }
    if (rc != 0) {
      ::close(fd);
      continue;
    }
    ::fcntl(fd, F_SETFL, flags);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small acks must not wait (Nagle)
    fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (fd_ < 0) return fail("cannot connect to " + authority + ": " + last_error);
  closed_ = false;

  std::array<std::uint8_t, 16> nonce{};
  for (std::uint8_t& byte : nonce) byte = static_cast<std::uint8_t>(ws_random()() & 0xff);
  const std::string key = ws_base64(nonce.data(), nonce.size());
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + authority +
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                        "\r\nSec-WebSocket-Version: 13\r\n";
  for (const auto& header : headers) request += header.first + ": " + header.second + "\r\n";
  request += "\r\n";
  if (!write_all(reinterpret_cast<const std::uint8_t*>(request.data()), request.size())) return false;

  std::size_t end = std::string::npos;
  while (true) {
    const std::string seen(inbox_.begin(), inbox_.end());
    end = seen.find("\r\n\r\n");
    if (end != std::string::npos) break;
    if (inbox_.size() > 64 * 1024) return fail("handshake response too long");
    const int got = fill(deadline);
    if (got == 0) return fail("handshake timed out");
    if (got < 0) return fail("connection closed during the handshake");
  }
  const std::string response(inbox_.begin(), inbox_.begin() + static_cast<std::ptrdiff_t>(end));
  inbox_.erase(inbox_.begin(), inbox_.begin() + static_cast<std::ptrdiff_t>(end + 4));
  const std::string status = response.substr(0, response.find("\r\n"));
  if (status.size() < 12 || status.compare(9, 3, "101") != 0) return fail("handshake refused: " + status);
  const std::array<std::uint8_t, 20> digest = ws_sha1(key + kWebSocketGuid);
  const std::string expected = ws_base64(digest.data(), digest.size());
  bool accepted = false;
  std::size_t line_start = response.find("\r\n");
  while (line_start != std::string::npos) {
    line_start += 2;
    const std::size_t line_end = response.find("\r\n", line_start);
    const std::string line = response.substr(line_start, line_end - line_start);
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos && ws_lower(ws_trim(line.substr(0, colon))) == "sec-websocket-accept") {
      accepted = ws_trim(line.substr(colon + 1)) == expected;
    }
    line_start = line_end;
  }
  if (!accepted) return fail("handshake: missing or wrong Sec-WebSocket-Accept");
  return true;
}

bool WebSocketClient::write_all(const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    if (fd_ < 0) return false;
    const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string("send failed: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool WebSocketClient::send_frame(std::uint8_t opcode, const std::uint8_t* data, std::size_t size) {
  if (fd_ < 0 || close_sent_) return false;
  std::vector<std::uint8_t> frame;
  frame.reserve(size + 14);
  frame.push_back(static_cast<std::uint8_t>(0x80 | opcode));  // FIN: every message is one frame
  if (size < 126) {
    frame.push_back(static_cast<std::uint8_t>(0x80 | size));
  } else if (size <= 0xffff) {
    frame.push_back(0x80 | 126);
    frame.push_back(static_cast<std::uint8_t>(size >> 8));
    frame.push_back(static_cast<std::uint8_t>(size & 0xff));
  } else {
    frame.push_back(0x80 | 127);
    for (int i = 7; i >= 0; --i) frame.push_back(static_cast<std::uint8_t>((static_cast<std::uint64_t>(size) >> (8 * i)) & 0xff));
  }
  const auto mask_word = static_cast<std::uint32_t>(ws_random()());
  const std::uint8_t mask[4] = {static_cast<std::uint8_t>(mask_word), static_cast<std::uint8_t>(mask_word >> 8),
                                static_cast<std::uint8_t>(mask_word >> 16), static_cast<std::uint8_t>(mask_word >> 24)};
  frame.insert(frame.end(), mask, mask + 4);
  for (std::size_t i = 0; i < size; ++i) frame.push_back(static_cast<std::uint8_t>(data[i] ^ mask[i % 4]));
  return write_all(frame.data(), frame.size());
}

bool WebSocketClient::send_text(std::string_view text) {
  return send_frame(0x1, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

bool WebSocketClient::send_binary(const std::uint8_t* data, std::size_t size) { return send_frame(0x2, data, size); }

int WebSocketClient::fill(long long deadline_ms) {
  if (fd_ < 0) return -1;
  while (true) {
    const long long left = deadline_ms - ws_now_ms();
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left > 0 ? left : 0));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      fail(std::string("poll failed: ") + std::strerror(errno));
      return -1;
    }
    if (ready == 0) return 0;
    std::uint8_t buffer[65536];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0) error_ = std::string("recv failed: ") + std::strerror(errno);
      shutdown_socket();
      return -1;
    }
    inbox_.insert(inbox_.end(), buffer, buffer + n);
    return static_cast<int>(n);
  }
}

WebSocketClient::Result WebSocketClient::receive(std::vector<std::uint8_t>& payload, int timeout_ms) {
  const long long deadline = ws_now_ms() + timeout_ms;
  while (true) {
    // One complete frame in the inbox? Parse its header.
    std::size_t need = 2;
    std::uint64_t length = 0;
    bool complete = false;
    if (inbox_.size() >= 2) {
      const std::uint8_t len7 = inbox_[1] & 0x7f;
      if ((inbox_[1] & 0x80) != 0) return broken("the server masked a frame");
      need = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
      if (inbox_.size() >= need) {
        if (len7 < 126) {
          length = len7;
        } else {
          for (std::size_t i = 2; i < need; ++i) length = (length << 8) | inbox_[i];
        }
        if (length > kMaxMessage) return broken("frame larger than 16 MiB");
        complete = inbox_.size() >= need + length;
      }
    }
    if (!complete) {
      if (closed_ && fd_ < 0) return Result::Closed;
      const int got = fill(deadline);
      if (got == 0) return Result::Timeout;
      if (got < 0) {
        if (close_code_ == 0) close_code_ = 1006;  // closed without a close frame
        return error_.empty() ? Result::Closed : Result::Error;
      }
      continue;
    }
    const std::uint8_t head = inbox_[0];
    const bool fin = (head & 0x80) != 0;
    const std::uint8_t opcode = head & 0x0f;
    if ((head & 0x70) != 0) return broken("reserved bits set (no extension was negotiated)");
    const auto begin = inbox_.begin() + static_cast<std::ptrdiff_t>(need);
    const auto end = begin + static_cast<std::ptrdiff_t>(length);
    std::vector<std::uint8_t> data(begin, end);
    inbox_.erase(inbox_.begin(), end);

    if (opcode >= 0x8) {  // control frames: whole, at most 125 bytes, may come between fragments
      if (!fin || length > 125) return broken("bad control frame");
      if (opcode == 0x9) {
        send_frame(0xA, data.data(), data.size());
      } else if (opcode == 0x8) {
        close_code_ = data.size() >= 2 ? static_cast<std::uint16_t>((data[0] << 8) | data[1]) : std::uint16_t{1005};
        close_reason_ = data.size() > 2 ? std::string(data.begin() + 2, data.end()) : std::string();
        if (!close_sent_) {
          const std::uint8_t echo[2] = {static_cast<std::uint8_t>(close_code_ >> 8),
                                        static_cast<std::uint8_t>(close_code_ & 0xff)};
          send_frame(0x8, echo, close_code_ == 1005 ? 0 : 2);
          close_sent_ = true;
        }
        shutdown_socket();
        return Result::Closed;
      }
      continue;  // pong: nothing to do
    }
    if (opcode == 0x0) {
      if (partial_opcode_ == 0) return broken("continuation frame without a message");
      if (partial_.size() + data.size() > kMaxMessage) return broken("message larger than 16 MiB");
      partial_.insert(partial_.end(), data.begin(), data.end());
    } else if (opcode == 0x1 || opcode == 0x2) {
      if (partial_opcode_ != 0) return broken("new message inside a fragmented one");
      partial_opcode_ = opcode;
      partial_ = std::move(data);
    } else {
      return broken("unknown opcode " + std::to_string(opcode));
    }
    if (!fin) continue;
    payload = std::move(partial_);
    partial_.clear();
    const std::uint8_t kind = partial_opcode_;
    partial_opcode_ = 0;
    return kind == 0x1 ? Result::Text : Result::Binary;
  }
}

void WebSocketClient::close(std::uint16_t code, int timeout_ms) {
  if (fd_ < 0) return;
  if (!close_sent_) {
    const std::uint8_t body[2] = {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code & 0xff)};
    send_frame(0x8, body, 2);
    close_sent_ = true;
  }
  const long long deadline = ws_now_ms() + timeout_ms;
  std::vector<std::uint8_t> ignored;
  while (fd_ >= 0) {
    const long long left = deadline - ws_now_ms();
    if (left <= 0) break;
    const Result result = receive(ignored, static_cast<int>(left));
    if (result == Result::Closed || result == Result::Error || result == Result::Timeout) break;
  }
  shutdown_socket();
}

}  // namespace facecast
