// Facecast reference client: protocol codec (see protocol.h). Mirrors facecast.protocol.engine.
#include "facecast/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace facecast {

namespace {

constexpr int kProtocolRates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000};

// -- little-endian byte helpers (names unique across the client's files: unity builds) ------------------

void proto_put_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}

void proto_put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xff));
}

void proto_put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xff));
}

std::uint16_t proto_get_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

std::uint32_t proto_get_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::uint64_t proto_get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// -- JSON field readers: return false (and say why) for a missing or mistyped field ---------------------

bool proto_fail(std::string* error, const std::string& why) {
  if (error != nullptr) *error = why;
  return false;
}

bool proto_str(const Json& obj, const char* key, std::string& out, std::string* error, const char* fallback = nullptr) {
  const Json* v = obj.find(key);
  if (v == nullptr && fallback != nullptr) {
    out = fallback;
    return true;
  }
  if (v == nullptr || !v->is_string()) return proto_fail(error, std::string("'") + key + "' must be a string");
  out = v->as_string();
  return true;
}

bool proto_bool(const Json& obj, const char* key, bool& out, std::string* error, const bool* fallback = nullptr) {
  const Json* v = obj.find(key);
  if (v == nullptr && fallback != nullptr) {
    out = *fallback;
    return true;
  }
  if (v == nullptr || !v->is_bool()) return proto_fail(error, std::string("'") + key + "' must be true or false");
  out = v->as_bool();
  return true;
}

bool proto_int(const Json& obj, const char* key, std::int64_t lo, std::int64_t hi, std::int64_t& out,
               std::string* error, const std::int64_t* fallback = nullptr) {
  const Json* v = obj.find(key);
  if (v == nullptr && fallback != nullptr) {
    out = *fallback;
    return true;
  }
  if (v == nullptr || !v->is_integer() || v->as_int() < lo || v->as_int() > hi) {
    return proto_fail(error, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]");
  }
  out = v->as_int();
  return true;
}

bool proto_utterance(const Json& obj, std::uint32_t& out, std::string* error) {
  std::int64_t v = 0;
  if (!proto_int(obj, "utterance", 0, 0xffffffffLL, v, error)) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

bool proto_count(const Json& obj, const char* key, std::uint64_t& out, std::string* error) {
  std::int64_t v = 0;
  if (!proto_int(obj, key, 0, INT64_MAX, v, error)) return false;
  out = static_cast<std::uint64_t>(v);
  return true;
}

bool proto_format(const Json& obj, const char* key, AudioFormat& out, std::string* error) {
  const Json* v = obj.find(key);
  if (v == nullptr) {
    out = AudioFormat{};
    return true;
  }
  if (!v->is_object()) return proto_fail(error, std::string("'") + key + "' must be an object {rate, channels}");
  const std::int64_t default_rate = 24000;
  const std::int64_t default_channels = 1;
  std::int64_t rate = 0;
  std::int64_t channels = 0;
  if (!proto_int(*v, "rate", 1, 1000000, rate, error, &default_rate)) return false;
  if (!is_supported_rate(static_cast<int>(rate))) return proto_fail(error, std::string(key) + ".rate is not supported");
  if (!proto_int(*v, "channels", 1, 2, channels, error, &default_channels)) return false;
  out = AudioFormat{static_cast<int>(rate), static_cast<int>(channels)};
  return true;
}

std::string proto_message(const char* type, Json body = Json::object()) {
  Json message = Json::object();
  message.set("type", Json::string(type));
  for (const Json::Member& member : body.members()) message.set(member.first, member.second);
  return message.dump();
}

Json proto_format_json(const AudioFormat& format) {
  Json j = Json::object();
  j.set("rate", Json::integer(format.rate));
  j.set("channels", Json::integer(format.channels));
  return j;
}

std::vector<std::uint8_t> proto_audio(FrameKind kind, std::uint32_t utterance, std::uint64_t offset,
                                      const std::int16_t* samples, std::size_t count) {
  std::vector<std::uint8_t> out;
  out.reserve(kHeaderSize + 2 * count);
  out.push_back(static_cast<std::uint8_t>(kind));
  out.push_back(static_cast<std::uint8_t>(kProtocolVersion));
  proto_put_u16(out, 0);
  proto_put_u32(out, utterance);
  proto_put_u64(out, offset);
  for (std::size_t i = 0; i < count; ++i) proto_put_u16(out, static_cast<std::uint16_t>(samples[i]));
  return out;
}

}  // namespace

bool is_supported_rate(int rate) {
  return std::find(std::begin(kProtocolRates), std::end(kProtocolRates), rate) != std::end(kProtocolRates);
}

// -- client -> server ---------------------------------------------------------------------------------

std::string encode_hello(const Hello& hello) {
  // Field order and omissions as the Python codec writes them (character only when set).
  Json body = Json::object();
  body.set("version", Json::integer(kProtocolVersion));
  body.set("audio", proto_format_json(hello.audio));
  body.set("mic", proto_format_json(hello.mic));
  body.set("face", Json::boolean(hello.face));
  body.set("subject", Json::string(hello.subject));
  body.set("workflow", Json::string(hello.workflow));
  body.set("acks", Json::boolean(hello.acks));
  body.set("turns", Json::string(hello.turns));
  if (!hello.character.empty()) body.set("character", Json::string(hello.character));
  if (!hello.actions.empty()) {  // only when declared: a hello without them is the 1.1 hello byte for byte
    Json actions = Json::array();
    for (const ActionDeclaration& action : hello.actions) {
      Json declaration = Json::object();
      declaration.set("name", Json::string(action.name));
      declaration.set("description", Json::string(action.description));
      if (!action.parameters.is_null()) declaration.set("parameters", action.parameters);
      actions.push(std::move(declaration));
    }
    body.set("actions", std::move(actions));
  }
  return proto_message("hello", std::move(body));
}

bool action_declarations_from_json(const Json& value, std::vector<ActionDeclaration>& out, std::string* error) {
  std::vector<ActionDeclaration> found;
  const std::vector<Json> one{value};
  const std::vector<Json>& items = value.is_array() ? value.items() : one;
  for (const Json& item : items) {
    if (!item.is_object()) return proto_fail(error, "each action must be an object {name, description, parameters}");
    ActionDeclaration action;
    const char* const empty = "";
    if (!proto_str(item, "name", action.name, error) || !proto_str(item, "description", action.description, error, empty)) {
      return false;
    }
    for (const Json::Member& member : item.members()) {
      if (member.first != "name" && member.first != "description" && member.first != "parameters") {
        return proto_fail(error, "action '" + action.name + "': unknown key '" + member.first +
                                     "' (known: name, description, parameters)");
      }
    }
    if (const Json* parameters = item.find("parameters"); parameters != nullptr && !parameters->is_null()) {
      if (!parameters->is_object()) {
        return proto_fail(error, "action '" + action.name + "': parameters must be a JSON Schema object");
      }
      action.parameters = *parameters;
    }
    found.push_back(std::move(action));
  }
  out.insert(out.end(), found.begin(), found.end());
  return true;
}

bool parse_action_declarations(std::string_view json_text, std::vector<ActionDeclaration>& out, std::string* error) {
  Json value;
  if (!Json::parse(json_text, value, error)) return false;
  if (!value.is_array() && !value.is_object()) {
    return proto_fail(error, "actions must be a JSON list of {name, description, parameters}");
  }
  return action_declarations_from_json(value, out, error);
}

std::string encode_text(std::string_view text) {
  Json body = Json::object();
  body.set("text", Json::string(std::string(text)));
  return proto_message("text", std::move(body));
}

std::string encode_end_of_speech() { return proto_message("end_of_speech"); }

std::string encode_playback_started(std::uint32_t utterance, double at) {
  Json body = Json::object();
  body.set("utterance", Json::integer(utterance));
  if (at >= 0.0 && std::isfinite(at)) body.set("at", Json::number(at));
  return proto_message("playback_started", std::move(body));
}

std::string encode_playback_finished(std::uint32_t utterance, std::uint64_t position, bool interrupted) {
  Json body = Json::object();
  body.set("utterance", Json::integer(utterance));
  body.set("position", Json::integer(static_cast<std::int64_t>(std::min<std::uint64_t>(position, INT64_MAX))));
  body.set("interrupted", Json::boolean(interrupted));
  return proto_message("playback_finished", std::move(body));
}

std::string encode_interrupt() { return proto_message("interrupt"); }

std::string encode_ping(std::int64_t id) {
  Json body = Json::object();
  if (id >= 0) body.set("id", Json::integer(id));
  return proto_message("ping", std::move(body));
}

std::string encode_bye() { return proto_message("bye"); }

std::string encode_context(const std::vector<Json::Member>& facts, bool replace) {
  Json object = Json::object();
  for (const Json::Member& fact : facts) object.set(fact.first, fact.second);
  Json body = Json::object();
  body.set("facts", std::move(object));
  if (replace) body.set("replace", Json::boolean(true));
  return proto_message("context", std::move(body));
}

std::string encode_action_result(std::string_view id, bool ok, const Json& result) {
  Json body = Json::object();
  body.set("id", Json::string(std::string(id)));
  body.set("ok", Json::boolean(ok));
  if (!result.is_null()) body.set("result", result);
  return proto_message("action_result", std::move(body));
}

// -- server -> client ---------------------------------------------------------------------------------

std::optional<ServerMessage> decode_server(std::string_view text, std::string* error) {
  Json data;
  if (!Json::parse(text, data, error)) return std::nullopt;
  if (!data.is_object()) {
    proto_fail(error, "message must be a JSON object");
    return std::nullopt;
  }
  std::string type;
  if (!proto_str(data, "type", type, error)) return std::nullopt;
  const bool no = false;
  const char* const empty = "";

  if (type == "welcome") {
    Welcome w;
    const Json* face = data.find("face");
    if (face == nullptr || !face->is_object()) {
      proto_fail(error, "'face' must be an object {fps, width, enabled}");
      return std::nullopt;
    }
    const Json* timeout = data.find("ack_timeout");
    if (timeout == nullptr || !timeout->is_number()) {
      proto_fail(error, "'ack_timeout' must be a number");
      return std::nullopt;
    }
    std::int64_t version = 0;
    if (!proto_format(data, "audio", w.audio, error) || !proto_bool(*face, "enabled", w.face_enabled, error) ||
        !proto_bool(data, "acks", w.acks, error) || !proto_str(data, "workflow", w.workflow, error) ||
        !proto_str(data, "turns", w.turns, error) || !proto_int(data, "version", 0, INT32_MAX, version, error)) {
      return std::nullopt;
    }
    w.version = static_cast<int>(version);
    w.ack_timeout = timeout->as_double();
    if (const Json* fps = face->find("fps"); fps != nullptr && fps->is_integer()) w.face_fps = static_cast<int>(fps->as_int());
    if (const Json* width = face->find("width"); width != nullptr && width->is_integer()) {
      w.face_width = static_cast<int>(width->as_int());
    }
    if (const Json* livelink = data.find("livelink"); livelink != nullptr && livelink->is_object()) {
      if (!proto_str(*livelink, "subject", w.livelink_subject, error)) return std::nullopt;
    }
    return ServerMessage{std::move(w)};
  }
  if (type == "transcript") {
    Transcript t;
    if (!proto_str(data, "text", t.text, error) || !proto_bool(data, "final", t.is_final, error) ||
        !proto_bool(data, "typed", t.typed, error, &no)) {
      return std::nullopt;
    }
    return ServerMessage{std::move(t)};
  }
  if (type == "utterance_start") {
    UtteranceStart s;
    std::int64_t rate = 0;
    std::int64_t channels = 0;
    const std::int64_t one = 1;
    if (!proto_utterance(data, s.utterance, error) || !proto_int(data, "rate", 1, 1000000, rate, error) ||
        !proto_int(data, "channels", 1, 2, channels, error, &one)) {
      return std::nullopt;
    }
    s.rate = static_cast<int>(rate);
    s.channels = static_cast<int>(channels);
    return ServerMessage{s};
  }
  if (type == "reply_text") {
    ReplyText r;
    if (!proto_utterance(data, r.utterance, error) || !proto_str(data, "text", r.text, error) ||
        !proto_count(data, "at", r.at, error)) {
      return std::nullopt;
    }
    return ServerMessage{std::move(r)};
  }
  if (type == "emotion") {
    Emotion e;
    if (!proto_utterance(data, e.utterance, error) || !proto_str(data, "emotion", e.emotion, error)) return std::nullopt;
    return ServerMessage{std::move(e)};
  }
  if (type == "utterance_end") {
    UtteranceEnd e;
    if (!proto_utterance(data, e.utterance, error) || !proto_count(data, "samples", e.samples, error) ||
        !proto_count(data, "frames", e.frames, error) || !proto_str(data, "text", e.text, error, empty)) {
      return std::nullopt;
    }
    return ServerMessage{std::move(e)};
  }
  if (type == "clear_buffer") {
    ClearBuffer c;
    if (!proto_utterance(data, c.utterance, error)) return std::nullopt;
    const Json* reason = data.find("reason");
    if (reason != nullptr && !reason->is_null()) {
      if (!reason->is_string()) {
        proto_fail(error, "'reason' must be a string");
        return std::nullopt;
      }
      c.reason = reason->as_string();
    }
    return ServerMessage{std::move(c)};
  }
  if (type == "action") {
    Action a;
    const Json* arguments = data.find("arguments");
    if (arguments == nullptr || !arguments->is_object()) {
      proto_fail(error, "'arguments' must be an object");
      return std::nullopt;
    }
    if (!proto_utterance(data, a.utterance, error) || !proto_str(data, "id", a.id, error) ||
        !proto_count(data, "at", a.at, error) || !proto_str(data, "name", a.name, error)) {
      return std::nullopt;
    }
    a.arguments = *arguments;
    return ServerMessage{std::move(a)};
  }
  if (type == "timing") {
    Timing t;
    if (!proto_utterance(data, t.utterance, error)) return std::nullopt;
    const Json* stages = data.find("stages");
    if (stages == nullptr || !stages->is_object()) {
      proto_fail(error, "'stages' must be an object of numbers");
      return std::nullopt;
    }
    for (const Json::Member& stage : stages->members()) {
      if (!stage.second.is_number()) {
        proto_fail(error, "'stages' must be an object of numbers");
        return std::nullopt;
      }
      t.stages.emplace_back(stage.first, stage.second.as_double());
    }
    const Json* sample = data.find("speech_end_sample");
    if (sample != nullptr && !sample->is_null()) {
      std::uint64_t at = 0;
      if (!proto_count(data, "speech_end_sample", at, error)) return std::nullopt;
      t.speech_end_sample = at;
    }
    return ServerMessage{std::move(t)};
  }
  if (type == "error") {
    ErrorMessage e;
    if (!proto_str(data, "code", e.code, error) || !proto_str(data, "message", e.message, error, empty)) {
      return std::nullopt;
    }
    return ServerMessage{std::move(e)};
  }
  if (type == "pong") {
    Pong p;
    if (const Json* id = data.find("id"); id != nullptr && (id->is_integer() || id->is_string())) p.id = *id;
    return ServerMessage{std::move(p)};
  }
  Notice n;
  n.type = type;
  n.fields = Json::object();
  for (const Json::Member& member : data.members()) {
    if (member.first != "type") n.fields.set(member.first, member.second);
  }
  return ServerMessage{std::move(n)};
}

// -- binary -------------------------------------------------------------------------------------------

std::vector<std::uint8_t> encode_mic(std::uint64_t offset, const std::int16_t* samples, std::size_t count) {
  return proto_audio(FrameKind::Mic, 0, offset, samples, count);
}

std::vector<std::uint8_t> encode_audio(std::uint32_t utterance, std::uint64_t offset, const std::int16_t* samples,
                                       std::size_t count) {
  return proto_audio(FrameKind::Audio, utterance, offset, samples, count);
}

std::vector<std::uint8_t> encode_face(std::uint32_t utterance, std::uint32_t start, const float* values,
                                      std::uint16_t count) {
  std::vector<std::uint8_t> out;
  const std::size_t n = static_cast<std::size_t>(count) * kFaceWidth;
  out.reserve(kHeaderSize + 4 * n);
  out.push_back(static_cast<std::uint8_t>(FrameKind::Face));
  out.push_back(static_cast<std::uint8_t>(kProtocolVersion));
  proto_put_u16(out, 0);
  proto_put_u32(out, utterance);
  proto_put_u32(out, start);
  proto_put_u16(out, count);
  proto_put_u16(out, static_cast<std::uint16_t>(kFaceWidth));
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits = 0;
    static_assert(sizeof(float) == 4, "IEEE-754 single precision floats are assumed");
    std::memcpy(&bits, &values[i], 4);
    proto_put_u32(out, bits);
  }
  return out;
}

std::optional<BinaryMessage> decode_binary(const std::uint8_t* data, std::size_t size, std::string* error) {
  if (size > kMaxBinaryFrame) {
    proto_fail(error, "binary message larger than 1 MiB");
    return std::nullopt;
  }
  if (data == nullptr || size < kHeaderSize) {
    proto_fail(error, "binary message shorter than the 16-byte header");
    return std::nullopt;
  }
  if (data[1] != kProtocolVersion) {
    proto_fail(error, "binary message has version " + std::to_string(data[1]) + ", expected 1");
    return std::nullopt;
  }
  const std::uint8_t kind = data[0];
  const std::uint32_t utterance = proto_get_u32(data + 4);
  if (kind == static_cast<std::uint8_t>(FrameKind::Mic) || kind == static_cast<std::uint8_t>(FrameKind::Audio)) {
    const std::size_t payload = size - kHeaderSize;
    if (payload % 2 != 0) {
      proto_fail(error, "PCM16 payload has an odd number of bytes");
      return std::nullopt;
    }
    AudioFrame frame;
    frame.kind = static_cast<FrameKind>(kind);
    frame.utterance = utterance;
    frame.offset = proto_get_u64(data + 8);
    frame.samples.resize(payload / 2);
    for (std::size_t i = 0; i < frame.samples.size(); ++i) {
      frame.samples[i] = static_cast<std::int16_t>(proto_get_u16(data + kHeaderSize + 2 * i));
    }
    return BinaryMessage{std::move(frame)};
  }
  if (kind == static_cast<std::uint8_t>(FrameKind::Face)) {
    FaceFrames face;
    face.utterance = utterance;
    face.start = proto_get_u32(data + 8);
    face.count = proto_get_u16(data + 12);
    const std::uint16_t width = proto_get_u16(data + 14);
    const std::size_t expected = kHeaderSize + static_cast<std::size_t>(face.count) * width * 4;
    if (width != kFaceWidth || size != expected) {
      proto_fail(error, "face message: width " + std::to_string(width) + " (want 68), " + std::to_string(size) +
                            " bytes (want " + std::to_string(expected) + ")");
      return std::nullopt;
    }
    face.values.resize(static_cast<std::size_t>(face.count) * kFaceWidth);
    for (std::size_t i = 0; i < face.values.size(); ++i) {
      const std::uint32_t bits = proto_get_u32(data + kHeaderSize + 4 * i);
      std::memcpy(&face.values[i], &bits, 4);
    }
    return BinaryMessage{std::move(face)};
  }
  proto_fail(error, "unknown binary message kind " + std::to_string(kind));
  return std::nullopt;
}

std::uint64_t face_frame_sample(std::uint64_t index, int rate) {
  const std::uint64_t num = index * static_cast<std::uint64_t>(rate);
  const std::uint64_t quotient = num / kFaceFps;
  const std::uint64_t twice_rest = 2 * (num % kFaceFps);
  if (twice_rest > kFaceFps) return quotient + 1;
  if (twice_rest == kFaceFps) return quotient + (quotient & 1);  // half: to even, like Python's round()
  return quotient;
}

std::uint64_t face_frames_for_samples(std::uint64_t samples, int rate) {
  if (samples == 0 || rate <= 0) return 0;
  const std::uint64_t r = static_cast<std::uint64_t>(rate);
  return (samples * kFaceFps + r - 1) / r;
}

// -- Unreal raw-message reassembly --------------------------------------------------------------------

bool RawMessageAssembler::feed(const void* data, std::size_t size, std::size_t bytes_remaining) {
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  if (!in_message_) {
    in_message_ = true;
    message_.clear();
    // Binary frames start with their kind (1, 2 or 3); the server's text frames are JSON objects ('{').
    binary_ = size > 0 && bytes[0] >= 1 && bytes[0] <= 3;
  }
  if (binary_ && size > 0) message_.insert(message_.end(), bytes, bytes + size);
  if (bytes_remaining != 0) return false;
  in_message_ = false;
  return binary_;
}

// -- microphone ---------------------------------------------------------------------------------------

std::int16_t float_to_pcm16(float value) {
  if (!(value > -1.0f)) return -32767;  // also NaN
  if (value >= 1.0f) return 32767;
  return static_cast<std::int16_t>(std::lround(value * 32767.0f));
}

void MicConverter::reset() {
  produced_ = 0;
  dropped_ = 0;
  pending_.clear();
  in_rate_ = 0;
}

void MicConverter::convert(const float* interleaved, std::size_t frames, int channels, int rate,
                           std::vector<std::int16_t>& out) {
  if (interleaved == nullptr || frames == 0 || channels <= 0 || rate <= 0 || out_rate_ <= 0) return;
  if (rate != in_rate_) {  // a new device or rate: start a fresh stream
    reset();
    in_rate_ = rate;
  }
  const auto ch = static_cast<std::size_t>(channels);
  pending_.reserve(pending_.size() + frames);
  for (std::size_t i = 0; i < frames; ++i) {
    float sum = 0.0f;
    for (std::size_t c = 0; c < ch; ++c) sum += interleaved[i * ch + c];
    pending_.push_back(sum / static_cast<float>(channels));
  }
  // Output sample n covers input [n * in / out, (n + 1) * in / out): exact integer numerators, so the result
  // does not depend on how the capture was split into callbacks.
  const std::int64_t in = rate;
  const std::int64_t outr = out_rate_;
  const double available = static_cast<double>(pending_.size());
  auto at = [&](std::int64_t n) { return static_cast<double>(n * in - dropped_ * outr) / static_cast<double>(outr); };
  std::int64_t keep_from = 0;  // first input sample (absolute) still needed
  if (in >= outr) {
    // Downsampling: each output sample is the mean of the input over its interval (a box filter).
    while (at(produced_ + 1) <= available) {
      const double begin = at(produced_);
      const double end = at(produced_ + 1);
      double acc = 0.0;
      auto i = static_cast<std::size_t>(begin);
      while (static_cast<double>(i) < end) {
        const double lo = std::max(begin, static_cast<double>(i));
        const double hi = std::min(end, static_cast<double>(i) + 1.0);
        acc += static_cast<double>(pending_[i]) * (hi - lo);
        ++i;
      }
      out.push_back(float_to_pcm16(static_cast<float>(acc / (end - begin))));
      ++produced_;
    }
    keep_from = produced_ * in / outr;
  } else {
    // Upsampling: linear interpolation between the two neighbouring input samples.
    while (at(produced_) + 1.0 < available) {
      const double t = at(produced_);
      const auto i = static_cast<std::size_t>(t);
      const double frac = t - static_cast<double>(i);
      const double v = static_cast<double>(pending_[i]) * (1.0 - frac) + static_cast<double>(pending_[i + 1]) * frac;
      out.push_back(float_to_pcm16(static_cast<float>(v)));
      ++produced_;
    }
    keep_from = produced_ * in / outr;
  }
  const std::int64_t drop = std::min<std::int64_t>(keep_from - dropped_, static_cast<std::int64_t>(pending_.size()));
  if (drop > 0) {
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(drop));
    dropped_ += drop;
  }
}

}  // namespace facecast
