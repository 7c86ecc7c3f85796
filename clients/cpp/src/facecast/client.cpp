// Facecast reference client: session glue (see client.h).
#include "facecast/client.h"

#include <algorithm>
#include <type_traits>
#include <utility>

namespace facecast {

namespace {

PlaybackConfig client_playback_config(const ClientOptions& options) {
  PlaybackConfig config;
  config.rate = options.hello.audio.rate;
  config.channels = options.hello.audio.channels;
  config.prebuffer = options.prebuffer;
  config.output_latency = options.output_latency;
  config.acks = options.hello.acks;
  return config;
}

}  // namespace

Client::Client(Transport& transport, ClientOptions options)
    : transport_(transport), options_(std::move(options)), player_(client_playback_config(options_)) {}

bool Client::open() { return transport_.send_text(encode_hello(options_.hello)); }

std::optional<ServerMessage> Client::on_text(std::string_view text, double now) {
  std::optional<ServerMessage> message = decode_server(text, &last_error_);
  if (!message) return std::nullopt;
  if (const auto* welcome = std::get_if<Welcome>(&*message)) {
    welcome_ = *welcome;
    player_.set_acks(welcome->acks);
  } else if (const auto* start = std::get_if<UtteranceStart>(&*message)) {
    player_.on_utterance_start(*start);
  } else if (const auto* end = std::get_if<UtteranceEnd>(&*message)) {
    player_.on_utterance_end(*end);
  } else if (const auto* action = std::get_if<Action>(&*message)) {
    player_.on_action(*action, now);
  } else if (const auto* clear = std::get_if<ClearBuffer>(&*message)) {
    player_.on_clear_buffer(clear->utterance, now);
    update(now);  // its playback_finished goes out at once
  }
  return message;
}

bool Client::on_binary(const std::uint8_t* data, std::size_t size, double now) {
  std::optional<BinaryMessage> message = decode_binary(data, size, &last_error_);
  if (!message) return false;
  if (const auto* audio = std::get_if<AudioFrame>(&*message)) {
    if (audio->kind != FrameKind::Audio) {
      last_error_ = "microphone frame from the server";
      return false;
    }
    player_.on_audio(*audio, now);
  } else if (const auto* face = std::get_if<FaceFrames>(&*message)) {
    player_.on_face(*face);
  }
  return true;
}

std::size_t Client::render(std::int16_t* out, std::size_t frames, double start_time) {
  return player_.render(out, frames, start_time);
}

std::size_t Client::update(double now) {
  std::size_t sent = 0;
  for (const std::string& message : player_.poll(now)) {
    if (transport_.send_text(message)) ++sent;
  }
  return sent;
}

std::vector<DueAction> Client::take_due_actions(double now) {
  update(now);
  return player_.take_due_actions(now);
}

bool Client::say(std::string_view text) { return transport_.send_text(encode_text(text)); }

bool Client::send_mic(const std::int16_t* samples, std::size_t count) {
  const auto channels = static_cast<std::size_t>(std::max(1, options_.hello.mic.channels));
  const std::size_t max_frames = (kMaxBinaryFrame - kHeaderSize) / (2 * channels);
  std::size_t frames = count / channels;
  bool ok = true;
  while (frames > 0) {
    const std::size_t n = std::min(frames, max_frames);
    const std::vector<std::uint8_t> frame = encode_mic(mic_offset_, samples, n * channels);
    ok = transport_.send_binary(frame.data(), frame.size()) && ok;
    mic_offset_ += n;
    samples += n * channels;
    frames -= n;
  }
  return ok;
}

bool Client::end_of_speech() { return transport_.send_text(encode_end_of_speech()); }

bool Client::interrupt(double now) {
  const bool sent = transport_.send_text(encode_interrupt());
  player_.clear_all(now);
  update(now);
  return sent;
}

bool Client::set_context(const std::vector<Json::Member>& facts, bool replace) {
  return transport_.send_text(encode_context(facts, replace));
}

bool Client::action_result(std::string_view id, bool ok, const Json& result) {
  return transport_.send_text(encode_action_result(id, ok, result));
}

bool Client::ping(std::int64_t id) { return transport_.send_text(encode_ping(id)); }

bool Client::bye() { return transport_.send_text(encode_bye()); }

}  // namespace facecast
