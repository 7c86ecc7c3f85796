// facecast_vectors: runs the C++ codec on requests read from stdin (one JSON object per line) and writes one
// JSON line per request, so that tests can check it against the Python codec (facecast.protocol.engine)
// message for message. Requests ("op"):
//   hello {audio:[rate,channels], mic:[rate,channels], face, subject, workflow, acks, turns, character,
//          actions:[{name, description, parameters?}]}
//   text {text}  playback_started {utterance, at|null}  playback_finished {utterance, position, interrupted}
//   ping {id|null}  bye  interrupt  end_of_speech  context {facts, replace}
//   action_result {id, ok, result?}                                                -> {"text": frame}
//   actions {text}: parse_action_declarations -> {"ok", "actions": [...] | "error"}
//   mic {offset, samples}                                                          -> {"hex": frame}
//   decode_text {text}  decode_binary {hex}                 -> {"ok": true, "message": {...}} or {"ok": false}
//   frame_sample {index, rate} -> {"sample"}   frames_for_samples {samples, rate} -> {"frames"}
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "facecast/protocol.h"

namespace {

using facecast::Json;

std::string field_string(const Json& request, const char* key) {
  const Json* v = request.find(key);
  return v != nullptr && v->is_string() ? v->as_string() : std::string();
}

std::int64_t field_int(const Json& request, const char* key, std::int64_t fallback = 0) {
  const Json* v = request.find(key);
  return v != nullptr && v->is_integer() ? v->as_int() : fallback;
}

bool field_bool(const Json& request, const char* key, bool fallback) {
  const Json* v = request.find(key);
  return v != nullptr && v->is_bool() ? v->as_bool() : fallback;
}

facecast::AudioFormat field_format(const Json& request, const char* key, facecast::AudioFormat fallback) {
  const Json* v = request.find(key);
  if (v == nullptr || !v->is_array() || v->items().size() != 2) return fallback;
  return facecast::AudioFormat{static_cast<int>(v->items()[0].as_int()), static_cast<int>(v->items()[1].as_int())};
}

std::string to_hex(const std::vector<std::uint8_t>& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

std::vector<std::uint8_t> from_hex(const std::string& text) {
  std::vector<std::uint8_t> out;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>((nibble(text[i]) << 4) | nibble(text[i + 1])));
  }
  return out;
}

Json integer(std::uint64_t value) { return Json::integer(static_cast<std::int64_t>(value)); }

Json format_json(const facecast::AudioFormat& format) {
  Json j = Json::object();
  j.set("rate", Json::integer(format.rate));
  j.set("channels", Json::integer(format.channels));
  return j;
}

/// The decoded message as a JSON object with the protocol's field names (what the Python test compares).
Json message_json(const facecast::ServerMessage& message) {
  Json j = Json::object();
  if (const auto* w = std::get_if<facecast::Welcome>(&message)) {
    j.set("type", Json::string("welcome"));
    j.set("version", Json::integer(w->version));
    j.set("audio", format_json(w->audio));
    j.set("face_enabled", Json::boolean(w->face_enabled));
    j.set("acks", Json::boolean(w->acks));
    j.set("ack_timeout", Json::number(w->ack_timeout));
    j.set("workflow", Json::string(w->workflow));
    j.set("turns", Json::string(w->turns));
    j.set("livelink_subject", Json::string(w->livelink_subject));
  } else if (const auto* t = std::get_if<facecast::Transcript>(&message)) {
    j.set("type", Json::string("transcript"));
    j.set("text", Json::string(t->text));
    j.set("final", Json::boolean(t->is_final));
    j.set("typed", Json::boolean(t->typed));
  } else if (const auto* s = std::get_if<facecast::UtteranceStart>(&message)) {
    j.set("type", Json::string("utterance_start"));
    j.set("utterance", integer(s->utterance));
    j.set("rate", Json::integer(s->rate));
    j.set("channels", Json::integer(s->channels));
  } else if (const auto* r = std::get_if<facecast::ReplyText>(&message)) {
    j.set("type", Json::string("reply_text"));
    j.set("utterance", integer(r->utterance));
    j.set("text", Json::string(r->text));
    j.set("at", integer(r->at));
  } else if (const auto* e = std::get_if<facecast::Emotion>(&message)) {
    j.set("type", Json::string("emotion"));
    j.set("utterance", integer(e->utterance));
    j.set("emotion", Json::string(e->emotion));
  } else if (const auto* end = std::get_if<facecast::UtteranceEnd>(&message)) {
    j.set("type", Json::string("utterance_end"));
    j.set("utterance", integer(end->utterance));
    j.set("samples", integer(end->samples));
    j.set("frames", integer(end->frames));
    j.set("text", Json::string(end->text));
  } else if (const auto* c = std::get_if<facecast::ClearBuffer>(&message)) {
    j.set("type", Json::string("clear_buffer"));
    j.set("utterance", integer(c->utterance));
    j.set("reason", Json::string(c->reason));
  } else if (const auto* a = std::get_if<facecast::Action>(&message)) {
    j.set("type", Json::string("action"));
    j.set("utterance", integer(a->utterance));
    j.set("id", Json::string(a->id));
    j.set("at", integer(a->at));
    j.set("name", Json::string(a->name));
    j.set("arguments", a->arguments);
    j.set("arguments_json", Json::string(a->arguments.dump()));  // the text the game gets: byte for byte
  } else if (const auto* timing = std::get_if<facecast::Timing>(&message)) {
    j.set("type", Json::string("timing"));
    j.set("utterance", integer(timing->utterance));
    Json stages = Json::object();
    for (const auto& stage : timing->stages) stages.set(stage.first, Json::number(stage.second));
    j.set("stages", stages);
    j.set("speech_end_sample", timing->speech_end_sample ? integer(*timing->speech_end_sample) : Json());
  } else if (const auto* error = std::get_if<facecast::ErrorMessage>(&message)) {
    j.set("type", Json::string("error"));
    j.set("code", Json::string(error->code));
    j.set("message", Json::string(error->message));
  } else if (const auto* pong = std::get_if<facecast::Pong>(&message)) {
    j.set("type", Json::string("pong"));
    j.set("id", pong->id);
  } else if (const auto* notice = std::get_if<facecast::Notice>(&message)) {
    j.set("type", Json::string("notice"));
    j.set("notice_type", Json::string(notice->type));
    j.set("fields", notice->fields);
  }
  return j;
}

Json binary_json(const facecast::BinaryMessage& message) {
  Json j = Json::object();
  if (const auto* audio = std::get_if<facecast::AudioFrame>(&message)) {
    j.set("kind", Json::integer(static_cast<int>(audio->kind)));
    j.set("utterance", integer(audio->utterance));
    j.set("offset", integer(audio->offset));
    Json samples = Json::array();
    for (const std::int16_t s : audio->samples) samples.push(Json::integer(s));
    j.set("samples", samples);
  } else if (const auto* face = std::get_if<facecast::FaceFrames>(&message)) {
    j.set("kind", Json::integer(3));
    j.set("utterance", integer(face->utterance));
    j.set("start", integer(face->start));
    j.set("count", integer(face->count));
    Json bits = Json::array();
    for (const float v : face->values) {
      std::uint32_t b = 0;
      std::memcpy(&b, &v, 4);
      bits.push(integer(b));
    }
    j.set("bits", bits);  // exact: the float32 bit patterns
  }
  return j;
}

Json run(const Json& request) {
  const std::string op = field_string(request, "op");
  Json result = Json::object();
  if (op == "hello") {
    facecast::Hello hello;
    hello.audio = field_format(request, "audio", hello.audio);
    hello.mic = field_format(request, "mic", hello.mic);
    hello.face = field_bool(request, "face", hello.face);
    hello.subject = field_string(request, "subject");
    hello.workflow = field_string(request, "workflow");
    hello.acks = field_bool(request, "acks", hello.acks);
    hello.turns = field_string(request, "turns");
    hello.character = field_string(request, "character");
    if (const Json* actions = request.find("actions")) {
      std::string error;
      if (!facecast::action_declarations_from_json(*actions, hello.actions, &error)) {
        result.set("error", Json::string(error));
        return result;
      }
    }
    result.set("text", Json::string(facecast::encode_hello(hello)));
  } else if (op == "action_result") {
    const Json* value = request.find("result");
    result.set("text", Json::string(facecast::encode_action_result(field_string(request, "id"), field_bool(request, "ok", true),
                                                                   value != nullptr ? *value : Json())));
  } else if (op == "actions") {
    std::vector<facecast::ActionDeclaration> actions;
    std::string error;
    const bool ok = facecast::parse_action_declarations(field_string(request, "text"), actions, &error);
    result.set("ok", Json::boolean(ok));
    if (!ok) result.set("error", Json::string(error));
    Json list = Json::array();
    for (const facecast::ActionDeclaration& action : actions) {
      Json item = Json::object();
      item.set("name", Json::string(action.name));
      item.set("description", Json::string(action.description));
      item.set("parameters", action.parameters);
      list.push(std::move(item));
    }
    result.set("actions", std::move(list));
  } else if (op == "text") {
    result.set("text", Json::string(facecast::encode_text(field_string(request, "text"))));
  } else if (op == "playback_started") {
    const Json* at = request.find("at");
    result.set("text", Json::string(facecast::encode_playback_started(
                           static_cast<std::uint32_t>(field_int(request, "utterance")),
                           at != nullptr && at->is_number() ? at->as_double() : -1.0)));
  } else if (op == "playback_finished") {
    result.set("text", Json::string(facecast::encode_playback_finished(
                           static_cast<std::uint32_t>(field_int(request, "utterance")),
                           static_cast<std::uint64_t>(field_int(request, "position")), field_bool(request, "interrupted", false))));
  } else if (op == "ping") {
    result.set("text", Json::string(facecast::encode_ping(field_int(request, "id", -1))));
  } else if (op == "bye") {
    result.set("text", Json::string(facecast::encode_bye()));
  } else if (op == "interrupt") {
    result.set("text", Json::string(facecast::encode_interrupt()));
  } else if (op == "end_of_speech") {
    result.set("text", Json::string(facecast::encode_end_of_speech()));
  } else if (op == "context") {
    const Json* facts = request.find("facts");
    result.set("text", Json::string(facecast::encode_context(facts != nullptr ? facts->members() : std::vector<Json::Member>{},
                                                             field_bool(request, "replace", false))));
  } else if (op == "mic") {
    std::vector<std::int16_t> samples;
    if (const Json* list = request.find("samples")) {
      for (const Json& s : list->items()) samples.push_back(static_cast<std::int16_t>(s.as_int()));
    }
    result.set("hex", Json::string(to_hex(facecast::encode_mic(static_cast<std::uint64_t>(field_int(request, "offset")),
                                                               samples.data(), samples.size()))));
  } else if (op == "decode_text") {
    std::string error;
    const auto message = facecast::decode_server(field_string(request, "text"), &error);
    result.set("ok", Json::boolean(message.has_value()));
    if (message) {
      result.set("message", message_json(*message));
    } else {
      result.set("error", Json::string(error));
    }
  } else if (op == "decode_binary") {
    const std::vector<std::uint8_t> bytes = from_hex(field_string(request, "hex"));
    std::string error;
    const auto message = facecast::decode_binary(bytes.data(), bytes.size(), &error);
    result.set("ok", Json::boolean(message.has_value()));
    if (message) {
      result.set("message", binary_json(*message));
    } else {
      result.set("error", Json::string(error));
    }
  } else if (op == "frame_sample") {
    result.set("sample", integer(facecast::face_frame_sample(static_cast<std::uint64_t>(field_int(request, "index")),
                                                             static_cast<int>(field_int(request, "rate")))));
  } else if (op == "frames_for_samples") {
    result.set("frames", integer(facecast::face_frames_for_samples(static_cast<std::uint64_t>(field_int(request, "samples")),
                                                                   static_cast<int>(field_int(request, "rate")))));
  } else {
    result.set("error", Json::string("unknown op " + op));
  }
  return result;
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    Json request;
    std::string error;
    Json result;
    if (Json::parse(line, request, &error)) {
      result = run(request);
    } else {
      result = Json::object();
      result.set("error", Json::string("bad request: " + error));
    }
    std::cout << result.dump() << '\n';
  }
  return 0;
}
