// Unit tests of the reference client's core: JSON, protocol codec (golden bytes from the Python codec and
// docs/protocol.md), jitter buffer, playback acknowledgements, face timing, Client glue. No framework: each
// test is a function; a failed expectation prints its line and the run exits 1. Run by CTest.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "facecast/client.h"

namespace {

int g_failures = 0;
int g_expectations = 0;

template <typename A, typename B>
void expect_equal(const A& a, const B& b, const char* expr, const char* file, int line) {
  ++g_expectations;
  if (a == b) return;
  ++g_failures;
  std::ostringstream message;
  message << file << ":" << line << ": EXPECT_EQ(" << expr << ") failed: " << a << " != " << b;
  std::fprintf(stderr, "%s\n", message.str().c_str());
}

#define EXPECT(cond)                                                               \
  do {                                                                             \
    ++g_expectations;                                                              \
    if (!(cond)) {                                                                 \
      ++g_failures;                                                                \
      std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                                              \
  } while (0)
#define EXPECT_EQ(a, b) expect_equal((a), (b), #a ", " #b, __FILE__, __LINE__)

using namespace facecast;

std::string hex(const std::vector<std::uint8_t>& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

std::vector<std::uint8_t> unhex(const std::string& text) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(text.substr(i, 2), nullptr, 16)));
  }
  return out;
}

template <typename T>
const T* as(const std::optional<ServerMessage>& message) {
  return message ? std::get_if<T>(&*message) : nullptr;
}

// -- JSON ---------------------------------------------------------------------------------------------

void test_json_round_trip_keeps_order_and_exact_integers() {
  const std::string text =
      R"({"b":1,"a":[true,false,null,-5,9223372036854775807,-9223372036854775808],"c":{"x":"y"},"d":1.5})";
  Json value;
  EXPECT(Json::parse(text, value));
  EXPECT_EQ(value.dump(), text);
  EXPECT_EQ(value.members()[0].first, std::string("b"));
  EXPECT_EQ(value.find("a")->items()[4].as_int(), INT64_MAX);
  EXPECT_EQ(value.find("a")->items()[5].as_int(), INT64_MIN);
  EXPECT(value.find("d")->is_number() && !value.find("d")->is_integer());
  EXPECT_EQ(value.find("d")->as_double(), 1.5);
  EXPECT(value.find("missing") == nullptr);
}

void test_json_strings_escapes_and_unicode() {
  Json value;
  EXPECT(Json::parse(R"(["\u00e9\n\t\"\\\/", "\ud83d\ude00", "\ud800x", "h\u00e9llo"])", value));
  EXPECT_EQ(value.items()[0].as_string(), std::string("\xc3\xa9\n\t\"\\/"));
  EXPECT_EQ(value.items()[1].as_string(), std::string("\xf0\x9f\x98\x80"));
  EXPECT_EQ(value.items()[2].as_string(), std::string("\xef\xbf\xbdx"));  // lone surrogate: U+FFFD
  std::string out;
  json_quote(std::string("a\x01\"\xc3\xa9"), out);
  EXPECT_EQ(out, std::string("\"a\\u0001\\\"\xc3\xa9\""));
}

void test_json_numbers_are_written_without_locale() {
  auto num = [](double v) {
    std::string out;
    json_number(v, out);
    return out;
  };
  EXPECT_EQ(num(1.5), std::string("1.5"));
  EXPECT_EQ(num(2.0), std::string("2"));
  EXPECT_EQ(num(-0.25), std::string("-0.25"));
  EXPECT_EQ(num(12.3456789), std::string("12.345679"));
  EXPECT_EQ(num(0.0000001), std::string("0"));
  EXPECT_EQ(num(std::nan("")), std::string("0"));
  Json value;
  EXPECT(Json::parse("[1e3, -2.5E-1, 0.000123]", value));
  EXPECT_EQ(value.items()[0].as_double(), 1000.0);
  EXPECT_EQ(value.items()[1].as_double(), -0.25);
  EXPECT(std::fabs(value.items()[2].as_double() - 0.000123) < 1e-15);
}

void test_json_refuses_what_is_not_json() {
  Json value;
  std::string error;
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "NaN", "Infinity", "01", "\"a\x01\"", "{} x", "tru", "1e"}) {
    EXPECT(!Json::parse(bad, value, &error));
    EXPECT(!error.empty());
    EXPECT(value.is_null());
  }
  EXPECT(!Json::parse(std::string(65, '[') + std::string(65, ']'), value, &error));  // nested too deeply
  EXPECT(Json::parse(std::string(60, '[') + std::string(60, ']'), value));
}

// -- client -> server: byte for byte what facecast.protocol.engine.encode_message writes ---------------

void test_encode_matches_the_python_codec() {
  EXPECT_EQ(encode_hello(Hello{}),
            std::string(R"({"type":"hello","version":1,"audio":{"rate":24000,"channels":1},"mic":{"rate":16000,)"
                        R"("channels":1},"face":true,"subject":"","workflow":"conversation","acks":true,"turns":"server"})"));
  Hello hello;
  hello.audio = AudioFormat{48000, 2};
  hello.face = false;
  hello.subject = "Ada";
  hello.acks = false;
  hello.turns = "client";
  hello.character = "mora";
  EXPECT_EQ(encode_hello(hello),
            std::string(R"({"type":"hello","version":1,"audio":{"rate":48000,"channels":2},"mic":{"rate":16000,)"
                        R"("channels":1},"face":false,"subject":"Ada","workflow":"conversation","acks":false,)"
                        R"("turns":"client","character":"mora"})"));
  EXPECT_EQ(encode_playback_started(3, 1.5), std::string(R"({"type":"playback_started","utterance":3,"at":1.5})"));
  EXPECT_EQ(encode_playback_started(3), std::string(R"({"type":"playback_started","utterance":3})"));
  EXPECT_EQ(encode_playback_finished(3, 48000, true),
            std::string(R"({"type":"playback_finished","utterance":3,"position":48000,"interrupted":true})"));
  EXPECT_EQ(encode_ping(7), std::string(R"({"type":"ping","id":7})"));
  EXPECT_EQ(encode_ping(), std::string(R"({"type":"ping"})"));
  EXPECT_EQ(encode_bye(), std::string(R"({"type":"bye"})"));
  EXPECT_EQ(encode_interrupt(), std::string(R"({"type":"interrupt"})"));
  EXPECT_EQ(encode_end_of_speech(), std::string(R"({"type":"end_of_speech"})"));
  EXPECT_EQ(encode_context({{"location", Json::string("the Red Lantern")}, {"gold", Json::string("12")}, {"quest", Json()}}, true),
            std::string(R"({"type":"context","facts":{"location":"the Red Lantern","gold":"12","quest":null},"replace":true})"));
  EXPECT_EQ(encode_text("h\xc3\xa9llo \"x\"\n\t"), std::string("{\"type\":\"text\",\"text\":\"h\xc3\xa9llo \\\"x\\\"\\n\\t\"}"));
  const std::int16_t pcm[] = {1, 32767};
  EXPECT_EQ(hex(encode_mic(48000, pcm, 2)), std::string("010100000000000080bb0000000000000100ff7f"));
}

// -- binary frames ------------------------------------------------------------------------------------

void test_decode_the_documented_audio_frame() {
  // docs/protocol.md: 2 samples of reply audio, utterance 7, offset 48000.
  const std::vector<std::uint8_t> frame = unhex("0201000007000000" "80bb000000000000" "0100ff7f");
  const auto decoded = decode_binary(frame.data(), frame.size());
  EXPECT(decoded.has_value());
  const auto* audio = std::get_if<AudioFrame>(&*decoded);
  EXPECT(audio != nullptr);
  EXPECT(audio->kind == FrameKind::Audio);
  EXPECT_EQ(audio->utterance, 7u);
  EXPECT_EQ(audio->offset, 48000u);
  EXPECT_EQ(audio->samples.size(), 2u);
  EXPECT_EQ(audio->samples[0], 1);
  EXPECT_EQ(audio->samples[1], 32767);
  const std::int16_t negative[] = {-2, -32768};
  const auto round = decode_binary(encode_audio(9, 5, negative, 2).data(), 20);
  EXPECT_EQ(std::get<AudioFrame>(*round).samples[1], -32768);
}

void test_face_frames_round_trip_and_header() {
  std::vector<float> values(2 * kFaceWidth);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) / 10.0f;
  const std::vector<std::uint8_t> frame = encode_face(5, 10, values.data(), 2);
  EXPECT_EQ(hex(std::vector<std::uint8_t>(frame.begin(), frame.begin() + 20)),
            std::string("03010000050000000a0000000200440000000000"));  // as the Python codec writes it
  EXPECT_EQ(frame.size(), kHeaderSize + 2 * kFaceWidth * 4);
  const auto decoded = decode_binary(frame.data(), frame.size());
  const auto* face = std::get_if<FaceFrames>(&*decoded);
  EXPECT(face != nullptr);
  EXPECT_EQ(face->utterance, 5u);
  EXPECT_EQ(face->start, 10u);
  EXPECT_EQ(face->count, 2);
  EXPECT(face->values == values);
}

void test_malformed_binary_frames_are_refused() {
  std::string error;
  const std::vector<std::uint8_t> short_frame = unhex("0201000007000000");
  EXPECT(!decode_binary(short_frame.data(), short_frame.size(), &error));
  EXPECT(error.find("16-byte") != std::string::npos);
  std::vector<std::uint8_t> odd = unhex("0201000007000000" "0000000000000000" "01");
  EXPECT(!decode_binary(odd.data(), odd.size(), &error));
  std::vector<std::uint8_t> version = unhex("0202000007000000" "0000000000000000");
  EXPECT(!decode_binary(version.data(), version.size(), &error));
  std::vector<std::uint8_t> kind = unhex("0901000007000000" "0000000000000000");
  EXPECT(!decode_binary(kind.data(), kind.size(), &error));
  std::vector<float> values(kFaceWidth, 0.5f);
  std::vector<std::uint8_t> face = encode_face(1, 0, values.data(), 1);
  face.pop_back();
  EXPECT(!decode_binary(face.data(), face.size(), &error));
  face = encode_face(1, 0, values.data(), 1);
  face[14] = 61;  // width 61
  EXPECT(!decode_binary(face.data(), face.size(), &error));
}

void test_face_frame_clock() {
  EXPECT_EQ(face_frame_sample(1, 24000), 400u);
  EXPECT_EQ(face_frame_sample(1, 22050), 368u);   // round(367.5): to even
  EXPECT_EQ(face_frame_sample(3, 22050), 1102u);  // round(1102.5): to even
  EXPECT_EQ(face_frame_sample(2, 11025), 368u);
  EXPECT_EQ(face_frame_sample(1, 16000), 267u);
  EXPECT_EQ(face_frames_for_samples(36000, 24000), 90u);
  EXPECT_EQ(face_frames_for_samples(36001, 24000), 91u);
  EXPECT_EQ(face_frames_for_samples(1, 48000), 1u);
  EXPECT_EQ(face_frames_for_samples(0, 48000), 0u);
}

// -- server -> client ---------------------------------------------------------------------------------

void test_decode_server_messages() {
  const auto welcome = decode_server(
      R"({"type":"welcome","version":1,"audio":{"rate":24000,"channels":1},"face":{"fps":60,"width":68,"enabled":true},)"
      R"("acks":true,"ack_timeout":2.0,"workflow":"conversation","turns":"server","livelink":{"subject":"Ada","device_id":"x:Ada","epoch":12.5},"new_field":1})");
  EXPECT(as<Welcome>(welcome) != nullptr);
  EXPECT_EQ(as<Welcome>(welcome)->audio.rate, 24000);
  EXPECT_EQ(as<Welcome>(welcome)->ack_timeout, 2.0);
  EXPECT_EQ(as<Welcome>(welcome)->livelink_subject, std::string("Ada"));
  const auto end = decode_server(R"({"type":"utterance_end","utterance":3,"samples":36000,"frames":90,"text":"You said: hi."})");
  EXPECT_EQ(as<UtteranceEnd>(end)->frames, 90u);
  EXPECT_EQ(as<UtteranceEnd>(end)->text, std::string("You said: hi."));
  EXPECT_EQ(as<ClearBuffer>(decode_server(R"({"type":"clear_buffer","utterance":3})"))->reason, std::string());
  EXPECT_EQ(as<ClearBuffer>(decode_server(R"({"type":"clear_buffer","utterance":3,"reason":"barge_in"})"))->reason,
            std::string("barge_in"));
  const auto timing = decode_server(R"({"type":"timing","utterance":3,"stages":{"endpoint":0.0,"llm_first_token":12.5}})");
  EXPECT_EQ(as<Timing>(timing)->stages.size(), 2u);
  EXPECT_EQ(as<Timing>(timing)->stages[1].second, 12.5);
  EXPECT(!as<Timing>(timing)->speech_end_sample.has_value());
  const auto heard = decode_server(R"({"type":"timing","utterance":3,"stages":{},"speech_end_sample":48320})");
  EXPECT_EQ(*as<Timing>(heard)->speech_end_sample, std::uint64_t{48320});
  EXPECT(as<Transcript>(decode_server(R"({"type":"transcript","text":"hi","final":true,"typed":true})"))->typed);
  EXPECT(!as<Transcript>(decode_server(R"({"type":"transcript","text":"hi","final":false})"))->typed);
  EXPECT_EQ(as<UtteranceStart>(decode_server(R"({"type":"utterance_start","utterance":4,"rate":48000})"))->channels, 1);
  EXPECT_EQ(as<ReplyText>(decode_server(R"({"type":"reply_text","utterance":4,"text":"Hi.","at":0})"))->text, std::string("Hi."));
  EXPECT_EQ(as<Emotion>(decode_server(R"({"type":"emotion","utterance":4,"emotion":"happy"})"))->emotion, std::string("happy"));
  EXPECT_EQ(as<ErrorMessage>(decode_server(R"({"type":"error","code":"ack_timeout","message":"x"})"))->code,
            std::string("ack_timeout"));
  EXPECT(as<Pong>(decode_server(R"({"type":"pong","id":null})"))->id.is_null());
  EXPECT_EQ(as<Pong>(decode_server(R"({"type":"pong","id":"a"})"))->id.as_string(), std::string("a"));
  const auto notice = decode_server(R"({"type":"failover","role":"tts","event":"failover"})");
  EXPECT_EQ(as<Notice>(notice)->type, std::string("failover"));
  EXPECT_EQ(as<Notice>(notice)->fields.find("role")->as_string(), std::string("tts"));
}

void test_decode_server_refuses_malformed_messages() {
  std::string error;
  for (const char* bad : {"not json", "[1]", R"({"x":1})", R"({"type":3})",
                          R"({"type":"utterance_start","utterance":-1,"rate":24000})",
                          R"({"type":"utterance_start","utterance":4294967296,"rate":24000})",
                          R"({"type":"utterance_end","utterance":1,"samples":1.5,"frames":1})",
                          R"({"type":"clear_buffer"})", R"({"type":"timing","utterance":1,"stages":{"a":"x"}})",
                          R"({"type":"welcome","audio":{"rate":7},"face":{"enabled":true},"acks":true,"ack_timeout":2,"workflow":"c","turns":"s","version":1})",
                          R"({"type":"transcript","text":"hi","final":"yes"})"}) {
    error.clear();
    EXPECT(!decode_server(bad, &error));
    EXPECT(!error.empty());
  }
}

void test_raw_message_assembler_joins_binary_and_skips_text() {
  RawMessageAssembler assembler;
  const std::int16_t pcm[] = {1, 2, 3};
  const std::vector<std::uint8_t> frame = encode_audio(2, 0, pcm, 3);
  EXPECT(!assembler.feed(frame.data(), 10, frame.size() - 10));
  EXPECT(!assembler.feed(frame.data() + 10, 5, frame.size() - 15));
  EXPECT(assembler.feed(frame.data() + 15, frame.size() - 15, 0));
  EXPECT(assembler.message() == frame);
  const std::string text = R"({"type":"utterance_end","utterance":2})";
  EXPECT(!assembler.feed(text.data(), 5, text.size() - 5));
  EXPECT(!assembler.feed(text.data() + 5, text.size() - 5, 0));
  EXPECT(assembler.feed(frame.data(), frame.size(), 0));
  EXPECT(assembler.message() == frame);
}

void test_mic_converter_rates_channels_and_continuity() {
  // 48 kHz stereo -> 16 kHz mono: a third of the frames, channels averaged.
  MicConverter converter(16000);
  std::vector<float> stereo(4800 * 2);
  for (std::size_t i = 0; i < 4800; ++i) {
    stereo[2 * i] = 0.25f;
    stereo[2 * i + 1] = 0.75f;
  }
  std::vector<std::int16_t> out;
  converter.convert(stereo.data(), 4800, 2, 48000, out);
  EXPECT_EQ(out.size(), 1600u);
  EXPECT_EQ(out[100], float_to_pcm16(0.5f));
  // A sine split into odd-sized callbacks equals the same sine converted at once.
  std::vector<float> sine(44100);
  for (std::size_t i = 0; i < sine.size(); ++i) sine[i] = 0.8f * static_cast<float>(std::sin(2 * 3.14159265358979323846 * 440.0 * static_cast<double>(i) / 44100.0));
  std::vector<std::int16_t> whole, parts;
  MicConverter one(16000), many(16000);
  one.convert(sine.data(), sine.size(), 1, 44100, whole);
  for (std::size_t at = 0; at < sine.size(); at += 441 + at % 7) {
    const std::size_t n = std::min<std::size_t>(441 + at % 7, sine.size() - at);
    many.convert(sine.data() + at, n, 1, 44100, parts);
  }
  EXPECT(whole == parts);
  EXPECT(whole.size() >= 15999 && whole.size() <= 16000);
  double peak = 0;
  for (const std::int16_t s : whole) peak = std::max(peak, std::fabs(static_cast<double>(s)));
  EXPECT(peak > 0.75 * 32767 && peak < 0.81 * 32767);  // a 440 Hz tone keeps its level
  // Upsampling 8 kHz -> 16 kHz doubles the frames.
  MicConverter up(16000);
  std::vector<float> low(800, 0.1f);
  std::vector<std::int16_t> high;
  up.convert(low.data(), low.size(), 1, 8000, high);
  EXPECT(high.size() >= 1598 && high.size() <= 1600);
  EXPECT_EQ(float_to_pcm16(2.0f), 32767);
  EXPECT_EQ(float_to_pcm16(-2.0f), -32767);
}

// -- jitter buffer ------------------------------------------------------------------------------------

std::vector<std::int16_t> ramp(std::size_t n, std::int16_t from = 1) {
  std::vector<std::int16_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::int16_t>(from + static_cast<std::int16_t>(i % 1000));
  return v;
}

void test_jitter_buffer_prebuffers_then_plays() {
  JitterBuffer buffer(100, 1);
  std::vector<std::int16_t> out(50);
  const auto a = ramp(60);
  EXPECT(buffer.push(0, a.data(), a.size()));
  EXPECT(!buffer.ready());
  EXPECT_EQ(buffer.read(out.data(), 50), 0u);
  const auto b = ramp(60, 61);
  EXPECT(buffer.push(60, b.data(), b.size()));
  EXPECT(buffer.ready());
  EXPECT_EQ(buffer.read(out.data(), 50), 50u);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(buffer.position(), 50u);
  // A short utterance (below the prebuffer) plays once it has ended.
  JitterBuffer short_one(100, 1);
  short_one.push(0, a.data(), 10);
  EXPECT(!short_one.ready());
  short_one.finish();
  EXPECT(short_one.ready());
  EXPECT_EQ(short_one.read(out.data(), 50), 10u);
  EXPECT(short_one.drained());
  EXPECT_EQ(short_one.underruns(), 0u);
}

void test_jitter_buffer_gaps_repeats_and_underruns() {
  JitterBuffer buffer(0, 1);
  const auto a = ramp(10);
  buffer.push(0, a.data(), 10);
  EXPECT(!buffer.push(15, a.data(), 10));  // gap of 5: filled with silence
  EXPECT_EQ(buffer.received(), 25u);
  EXPECT(!buffer.push(20, a.data(), 10));  // 5 already there: only 5 new
  EXPECT_EQ(buffer.received(), 30u);
  EXPECT_EQ(buffer.discontinuities(), 2u);
  std::vector<std::int16_t> out(40);
  EXPECT_EQ(buffer.read(out.data(), 40), 30u);  // dry: 10 silent frames
  EXPECT_EQ(out[12], 0);
  EXPECT_EQ(buffer.underruns(), 0u);  // not a gap unless more audio comes
  buffer.read(out.data(), 20);           // 20 more silent frames
  buffer.push(30, a.data(), 10);         // more audio came: that silence was an underrun
  EXPECT_EQ(buffer.underruns(), 1u);
  EXPECT_EQ(buffer.underrun_frames(), 30u);
  EXPECT_EQ(buffer.read(out.data(), 10), 10u);
  buffer.finish();
  EXPECT_EQ(buffer.read(out.data(), 10), 0u);  // ran out at the end: not an underrun
  EXPECT(buffer.drained());
  EXPECT_EQ(buffer.underruns(), 1u);
}

// -- Player: acknowledgements on the client's clock ------------------------------------------------------

struct Sim {
  explicit Sim(PlaybackConfig config) : player(config), rate(config.rate) {}
  Player player;
  int rate;
  double now = 0.0;
  std::vector<std::string> sent;
  std::vector<FaceFrame> faces;
  std::vector<std::int16_t> device;

  void audio(std::uint32_t utt, std::uint64_t offset, std::size_t n) {
    AudioFrame frame;
    frame.utterance = utt;
    frame.offset = offset;
    frame.samples = ramp(n);
    player.on_audio(frame, now);
  }
  void face(std::uint32_t utt, std::uint32_t start, std::uint16_t count) {
    FaceFrames f;
    f.utterance = utt;
    f.start = start;
    f.count = count;
    f.values.assign(static_cast<std::size_t>(count) * kFaceWidth, 0.25f);
    player.on_face(f);
  }
  /// Advances the simulated device by `seconds` in 10 ms renders, polling after each.
  void run(double seconds) {
    const auto chunk = static_cast<std::size_t>(rate / 100);
    device.resize(chunk);
    for (int i = 0; i < static_cast<int>(std::lround(seconds * 100)); ++i) {
      player.render(device.data(), chunk, now);
      now += 0.01;
      for (std::string& m : player.poll(now)) sent.push_back(m);
      for (FaceFrame& f : player.take_due_faces(now)) faces.push_back(f);
    }
  }
  int count(const std::string& needle) const {
    int n = 0;
    for (const std::string& m : sent) n += m.find(needle) != std::string::npos ? 1 : 0;
    return n;
  }
};

void test_playback_started_once_when_first_audio_is_heard() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.05;
  config.output_latency = 0.04;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.now = 1.0;
  sim.audio(1, 0, 600);  // 25 ms: below the prebuffer
  sim.run(0.05);
  EXPECT(sim.sent.empty());  // not playing yet
  sim.audio(1, 600, 24000 - 600);  // the rest of one second
  sim.run(0.02);                   // render at 1.05 starts playback; heard at 1.09
  EXPECT(sim.sent.empty());        // not before the output latency has passed
  sim.run(0.03);
  EXPECT_EQ(sim.count("playback_started"), 1);
  EXPECT_EQ(sim.sent[0], std::string(R"({"type":"playback_started","utterance":1,"at":1.09})"));
  const UtteranceReport report = sim.player.reports()[0];
  EXPECT(std::fabs(report.playback_start - 1.09) < 1e-9);
  sim.run(0.5);
  EXPECT_EQ(sim.count("playback_started"), 1);  // exactly once
  sim.player.on_utterance_end(UtteranceEnd{1, 24000, 60, "x"});
  sim.run(0.3);
  EXPECT_EQ(sim.count("playback_finished"), 0);  // the last sample is heard at 1.09 + 1.0
  sim.run(0.3);
  EXPECT_EQ(sim.count("playback_finished"), 1);
  EXPECT_EQ(sim.sent.back(), std::string(R"({"type":"playback_finished","utterance":1,"position":24000,"interrupted":false})"));
  EXPECT(sim.player.idle());
  const UtteranceReport done = sim.player.reports()[0];
  EXPECT_EQ(done.acks_sent, 1u);
  EXPECT_EQ(done.played, 24000u);
  EXPECT_EQ(done.underruns, 0u);
}

void test_face_frames_are_released_when_their_sample_is_heard() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  config.output_latency = 0.02;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 12000);  // half a second
  sim.player.on_utterance_end(UtteranceEnd{1, 12000, 30, ""});
  sim.run(0.01);  // playback starts at 0, heard at 0.02
  sim.run(0.02);
  EXPECT_EQ(sim.count("playback_started"), 1);
  sim.face(1, 0, 30);  // the server sends the held frames after the ack
  EXPECT_EQ(sim.player.reports()[0].face_before_ack, 0u);
  sim.run(0.2);  // now = 0.23
  for (const FaceFrame& f : sim.faces) {
    const double due = 0.02 + static_cast<double>(face_frame_sample(f.index, 24000)) / 24000;
    EXPECT(std::fabs(f.due - due) < 1e-9);
    EXPECT(f.due <= 0.23 + 1e-9);
  }
  EXPECT_EQ(sim.faces.size(), 13u);  // frames 0..12 are due by 0.23 (frame i at 0.02 + i / 60)
  sim.run(0.4);
  EXPECT_EQ(sim.faces.size(), 30u);
  EXPECT(sim.player.idle());
  EXPECT_EQ(sim.player.reports()[0].face_shown, 30u);
}

void test_clear_buffer_stops_the_utterance_and_reports_what_was_heard() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 48000);
  sim.run(0.5);
  sim.player.on_clear_buffer(1, sim.now);
  std::vector<std::string> out = sim.player.poll(sim.now);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], std::string(R"({"type":"playback_finished","utterance":1,"position":12000,"interrupted":true})"));
  sim.audio(1, 48000, 100);  // late frames of the cleared utterance are dropped
  sim.face(1, 0, 5);
  std::vector<std::int16_t> buffer(240);
  EXPECT_EQ(sim.player.render(buffer.data(), 240, sim.now), 0u);
  EXPECT(sim.player.idle());
  const UtteranceReport report = sim.player.reports()[0];
  EXPECT(report.cleared);
  EXPECT_EQ(report.after_clear, 6u);
  EXPECT_EQ(report.finishes_sent, 1u);
  // Cleared before it was heard: no playback_started at all.
  PlaybackConfig late = config;
  late.output_latency = 0.1;
  Sim quiet(late);
  quiet.player.on_utterance_start(UtteranceStart{2, 24000, 1});
  quiet.audio(2, 0, 24000);
  quiet.run(0.05);
  quiet.player.on_clear_buffer(2, quiet.now);
  quiet.run(0.2);
  EXPECT_EQ(quiet.count("playback_started"), 0);
  EXPECT_EQ(quiet.count(R"("position":0,"interrupted":true)"), 1);
}

void test_without_acks_faces_still_follow_the_audio_clock() {
  PlaybackConfig config;
  config.rate = 16000;
  config.prebuffer = 0.0;
  config.acks = false;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 16000, 1});
  sim.audio(1, 0, 8000);
  sim.face(1, 0, 30);  // faces come unasked, right after their audio
  sim.player.on_utterance_end(UtteranceEnd{1, 8000, 30, ""});
  sim.run(0.1);
  EXPECT_EQ(sim.count("playback_started"), 0);
  EXPECT(sim.faces.size() >= 6 && sim.faces.size() <= 7);
  sim.run(0.5);
  EXPECT_EQ(sim.faces.size(), 30u);
  EXPECT_EQ(sim.count("playback_finished"), 1);
  EXPECT(sim.player.idle());
}

void test_utterances_play_one_after_another_with_one_ack_each() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.02;
  Sim sim(config);
  for (std::uint32_t id : {1u, 2u}) {
    sim.player.on_utterance_start(UtteranceStart{id, 24000, 1});
    sim.audio(id, 0, 2400);
    sim.player.on_utterance_end(UtteranceEnd{id, 2400, 6, ""});
  }
  sim.run(0.5);
  EXPECT_EQ(sim.count("playback_started"), 2);
  EXPECT_EQ(sim.count("playback_finished"), 2);
  const auto reports = sim.player.reports();
  EXPECT_EQ(reports.size(), 2u);
  EXPECT(std::fabs(reports[1].playback_start - reports[0].playback_start - 0.1) < 1e-9);  // back to back
  // An utterance without audio is neither acknowledged nor finished.
  Sim empty(config);
  empty.player.on_utterance_start(UtteranceStart{3, 24000, 1});
  empty.player.on_utterance_end(UtteranceEnd{3, 0, 0, ""});
  empty.run(0.1);
  EXPECT(empty.sent.empty());
  EXPECT(empty.player.idle());
}

void test_an_underrun_delays_the_rest_of_the_utterance() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 2400);  // 100 ms
  sim.run(0.2);           // 100 ms of silence after it
  sim.audio(1, 2400, 2400);
  sim.player.on_utterance_end(UtteranceEnd{1, 4800, 12, ""});
  sim.face(1, 6, 6);  // frames 6..11 belong to the second half
  sim.run(0.3);
  const UtteranceReport report = sim.player.reports()[0];
  EXPECT_EQ(report.underruns, 1u);
  EXPECT_EQ(report.underrun_frames, 2400u);
  EXPECT_EQ(report.played, 4800u);
  EXPECT_EQ(sim.faces.size(), 6u);
  EXPECT(std::fabs(sim.faces[0].due - 0.2) < 1e-9);  // frame 6 (sample 2400) plays when the audio resumed
}

void test_utterance_end_before_its_last_audio_still_plays_everything() {
  // Unreal delivers a frame's text messages before its binary ones: utterance_end can overtake audio.
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.05;
  Sim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 2400);
  sim.player.on_utterance_end(UtteranceEnd{1, 3600, 9, ""});
  sim.audio(1, 2400, 1200);
  sim.run(0.3);
  const UtteranceReport report = sim.player.reports()[0];
  EXPECT_EQ(report.played, 3600u);
  EXPECT_EQ(report.underruns, 0u);
  EXPECT_EQ(sim.count("playback_started"), 1);
  EXPECT_EQ(sim.count(R"("position":3600,"interrupted":false)"), 1);
  EXPECT(sim.player.idle());
}

// -- Client over a fake transport -----------------------------------------------------------------------

struct FakeTransport : Transport {
  std::vector<std::string> texts;
  std::vector<std::vector<std::uint8_t>> binaries;
  bool send_text(std::string_view text) override {
    texts.emplace_back(text);
    return true;
  }
  bool send_binary(const std::uint8_t* data, std::size_t size) override {
    binaries.emplace_back(data, data + size);
    return true;
  }
};

// -- actions (protocol 1.2) ------------------------------------------------------------------------------

void test_json_keeps_the_text_of_parsed_numbers() {
  // What passes through (an action's arguments, its result) is written back exactly as it came.
  const std::string text = R"({"a":1e-07,"b":0.1,"c":18446744073709551616,"d":-0.0,"e":1.7976931348623157e+308,"f":12,"g":-5})";
  Json value;
  EXPECT(Json::parse(text, value));
  EXPECT_EQ(value.dump(), text);
  EXPECT(std::fabs(value.find("a")->as_double() - 1e-7) < 1e-20);
  EXPECT(std::isfinite(value.find("e")->as_double()));
  EXPECT(value.find("f")->is_integer());
  EXPECT(!Json::parse("1e400", value));  // out of range (not JSON's business, but no double holds it)
  EXPECT_EQ(Json::number(0.5).dump(), std::string("0.5"));  // numbers made here: json_number as before
}

Hello hello_with_give_item() {
  Json parameters;
  EXPECT(Json::parse(R"({"type":"object","properties":{"item":{"type":"string","enum":["key","bread"]}},"required":["item"]})",
                     parameters));
  Hello hello;
  hello.actions.push_back(ActionDeclaration{"give_item", "Hand an item to the player.", parameters});
  hello.actions.push_back(ActionDeclaration{"wave", "", Json()});
  return hello;
}

void test_encode_actions_matches_the_python_codec() {
  // Golden text from facecast.protocol.engine.encode_message(Hello(actions=...)) and ActionResult(...).
  EXPECT_EQ(encode_hello(hello_with_give_item()),
            std::string(R"({"type":"hello","version":1,"audio":{"rate":24000,"channels":1},"mic":{"rate":16000,"channels":1},)"
                        R"("face":true,"subject":"","workflow":"conversation","acks":true,"turns":"server","actions":[)"
                        R"({"name":"give_item","description":"Hand an item to the player.","parameters":{"type":"object",)"
                        R"("properties":{"item":{"type":"string","enum":["key","bread"]}},"required":["item"]}},)"
                        R"({"name":"wave","description":""}]})"));
  EXPECT_EQ(encode_action_result("1.1", true, Json::string("the player has the key")),
            std::string(R"({"type":"action_result","id":"1.1","ok":true,"result":"the player has the key"})"));
  Json result;
  EXPECT(Json::parse(R"({"why":"no key","gold":12,"x":[1.5,null,true]})", result));
  EXPECT_EQ(encode_action_result("1.2", false, result),
            std::string(R"({"type":"action_result","id":"1.2","ok":false,"result":{"why":"no key","gold":12,"x":[1.5,null,true]}})"));
  EXPECT_EQ(encode_action_result("1.3"), std::string(R"({"type":"action_result","id":"1.3","ok":true})"));
}

void test_parse_action_declarations() {
  std::vector<ActionDeclaration> actions;
  std::string error;
  EXPECT(parse_action_declarations(
      R"([{"name":"give_item","description":"Hand an item.","parameters":{"type":"object"}},{"name":"wave"}])", actions, &error));
  EXPECT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0].name, std::string("give_item"));
  EXPECT_EQ(actions[0].parameters.dump(), std::string(R"({"type":"object"})"));
  EXPECT(actions[1].description.empty() && actions[1].parameters.is_null());
  EXPECT(parse_action_declarations(R"({"name":"follow"})", actions, &error));  // one object
  EXPECT_EQ(actions.size(), 3u);
  for (const char* bad : {"[1]", "\"give\"", "[{\"description\":\"no name\"}]", "[{\"name\":\"x\",\"code\":\"rm\"}]",
                          "[{\"name\":\"x\",\"parameters\":[]}]", "[{\"name\":\"ok\"},{\"name\":3}]", "[{"}) {
    error.clear();
    EXPECT(!parse_action_declarations(bad, actions, &error));
    EXPECT(!error.empty());
  }
  EXPECT_EQ(actions.size(), 3u);  // a refused list appends nothing
}

void test_decode_action_messages() {
  const auto action = decode_server(
      R"({"type":"action","utterance":4,"id":"4.1","at":42173,"name":"give_item","arguments":{"item":"key","n":0.1},"new":1})");
  EXPECT(as<Action>(action) != nullptr);
  EXPECT_EQ(as<Action>(action)->utterance, 4u);
  EXPECT_EQ(as<Action>(action)->id, std::string("4.1"));
  EXPECT_EQ(as<Action>(action)->at, 42173u);
  EXPECT_EQ(as<Action>(action)->name, std::string("give_item"));
  EXPECT_EQ(as<Action>(action)->arguments.dump(), std::string(R"({"item":"key","n":0.1})"));
  std::string error;
  for (const char* bad : {R"({"type":"action","utterance":4,"id":"4.1","at":0,"name":"x"})",
                          R"({"type":"action","utterance":4,"id":"4.1","at":0,"name":"x","arguments":[]})",
                          R"({"type":"action","utterance":4,"id":"4.1","at":-1,"name":"x","arguments":{}})",
                          R"({"type":"action","utterance":4,"id":7,"at":0,"name":"x","arguments":{}})",
                          R"({"type":"action","id":"4.1","at":0,"name":"x","arguments":{}})",
                          R"({"type":"action","utterance":4,"id":"4.1","at":0,"arguments":{}})"}) {
    error.clear();
    EXPECT(!decode_server(bad, &error));
    EXPECT(!error.empty());
  }
}

Action give(std::uint32_t utterance, const char* id, std::uint64_t at) {
  Action action;
  action.utterance = utterance;
  action.id = id;
  action.at = at;
  action.name = "give_item";
  EXPECT(Json::parse(R"({"item":"key"})", action.arguments));
  return action;
}

/// Sim with the actions taken after each poll, as an engine's tick does.
struct ActionSim : Sim {
  using Sim::Sim;
  std::vector<DueAction> taken;
  void step(int chunks) {
    const auto chunk = static_cast<std::size_t>(rate / 100);
    device.resize(chunk);
    for (int i = 0; i < chunks; ++i) {
      player.render(device.data(), chunk, now);
      now += 0.01;
      for (std::string& m : player.poll(now)) sent.push_back(m);
      for (DueAction& a : player.take_due_actions(now)) taken.push_back(a);
    }
  }
};

void test_an_action_is_taken_when_its_sample_is_heard() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  config.output_latency = 0.04;
  ActionSim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 24000);
  sim.player.on_action(give(1, "1.1", 12000), sim.now);  // half a second in: heard at 0.5 + 0.04
  sim.player.on_action(give(1, "1.2", 12005), sim.now);
  sim.player.on_utterance_end(UtteranceEnd{1, 24000, 60, ""});
  sim.step(53);  // now = 0.53
  EXPECT(sim.taken.empty());
  EXPECT_EQ(sim.player.reports()[0].actions, 2u);
  sim.step(1);  // now = 0.54: its sample is heard now
  EXPECT_EQ(sim.taken.size(), 1u);
  const DueAction& first = sim.taken[0];
  EXPECT_EQ(first.id, std::string("1.1"));
  EXPECT_EQ(first.name, std::string("give_item"));
  EXPECT_EQ(first.arguments.dump(), std::string(R"({"item":"key"})"));
  EXPECT_EQ(first.utterance, 1u);
  EXPECT_EQ(first.at, 12000u);
  EXPECT(std::fabs(first.due - 0.54) < 1e-9);  // the face clock: render time + output latency
  EXPECT(std::fabs(first.delivered - 0.54) < 1e-9);
  EXPECT_EQ(first.position, 12000u);
  EXPECT(!first.late);
  sim.step(1);  // the second, 5 samples later: by the next tick
  EXPECT_EQ(sim.taken.size(), 2u);
  EXPECT(sim.taken.size() == 2 && std::fabs(sim.taken[1].due - (0.54 + 5.0 / 24000)) < 1e-9);
  EXPECT(sim.taken.size() == 2 && sim.taken[1].position >= 12005u && sim.taken[1].position < 12005u + 240u);
  sim.step(60);
  EXPECT_EQ(sim.taken.size(), 2u);  // each once
  EXPECT(sim.player.idle());
  EXPECT_EQ(sim.player.reports()[0].actions_taken, 2u);
  // An action after the last words (at == samples) is taken when the last sample is heard.
  ActionSim end(config);
  end.player.on_utterance_start(UtteranceStart{2, 24000, 1});
  end.audio(2, 0, 2400);
  end.player.on_action(give(2, "2.1", 2400), end.now);
  end.player.on_utterance_end(UtteranceEnd{2, 2400, 6, ""});
  end.step(14);  // last sample heard at 0.1 + 0.04
  EXPECT(end.taken.empty());
  end.step(1);
  EXPECT_EQ(end.taken.size(), 1u);
  EXPECT(std::fabs(end.taken[0].due - 0.14) < 1e-9);
  EXPECT_EQ(end.taken[0].position, 2400u);
}

void test_an_action_is_never_taken_before_the_ack() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  config.output_latency = 0.05;
  Player player(config);
  player.on_utterance_start(UtteranceStart{1, 24000, 1});
  AudioFrame frame;
  frame.utterance = 1;
  frame.samples = ramp(4800);
  player.on_audio(frame, 0.0);
  player.on_action(give(1, "1.1", 0), 0.0);  // at the very first sample
  std::vector<std::int16_t> out(240);
  player.render(out.data(), 240, 0.0);  // heard at 0.05
  EXPECT(player.take_due_actions(0.04).empty());  // not heard yet
  EXPECT(player.take_due_actions(0.06).empty());  // heard, but playback_started has not gone out (poll)
  const std::vector<std::string> sent = player.poll(0.06);
  EXPECT_EQ(sent.size(), 1u);
  EXPECT(sent[0].find("playback_started") != std::string::npos);
  const std::vector<DueAction> taken = player.take_due_actions(0.06);
  EXPECT_EQ(taken.size(), 1u);
  EXPECT(std::fabs(taken[0].due - 0.05) < 1e-9);
  // Client::take_due_actions sends the acknowledgement first, whatever order the engine calls things in.
  FakeTransport transport;
  ClientOptions options;
  options.hello.audio = AudioFormat{24000, 1};
  options.prebuffer = 0.0;
  Client client(transport, options);
  client.on_text(R"({"type":"utterance_start","utterance":1,"rate":24000,"channels":1})", 0.0);
  const std::vector<std::uint8_t> audio = encode_audio(1, 0, frame.samples.data(), frame.samples.size());
  client.on_binary(audio.data(), audio.size(), 0.0);
  client.on_text(R"({"type":"action","utterance":1,"id":"1.1","at":0,"name":"give_item","arguments":{"item":"key"}})", 0.0);
  client.render(out.data(), 240, 0.0);
  EXPECT(transport.texts.empty());
  const std::vector<DueAction> from_client = client.take_due_actions(0.0);
  EXPECT_EQ(from_client.size(), 1u);
  EXPECT_EQ(transport.texts.size(), 1u);
  EXPECT_EQ(transport.texts[0], std::string(R"({"type":"playback_started","utterance":1,"at":0})"));
  EXPECT(client.action_result(from_client[0].id, true, Json::string("the player has the key")));
  EXPECT_EQ(transport.texts.back(), std::string(R"({"type":"action_result","id":"1.1","ok":true,"result":"the player has the key"})"));
  // Without acks (the welcome says so) none is waited for.
  PlaybackConfig unacked = config;
  unacked.acks = false;
  Player quiet(unacked);
  quiet.on_utterance_start(UtteranceStart{1, 24000, 1});
  quiet.on_audio(frame, 0.0);
  quiet.on_action(give(1, "1.1", 0), 0.0);
  quiet.render(out.data(), 240, 0.0);
  EXPECT_EQ(quiet.take_due_actions(0.05).size(), 1u);
}

void test_clear_buffer_drops_the_actions_not_yet_taken() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  ActionSim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 48000);
  sim.player.on_action(give(1, "1.1", 2400), sim.now);
  sim.player.on_action(give(1, "1.2", 36000), sim.now);
  sim.step(50);  // half a second: the first is taken, the second (1.5 s) not yet
  EXPECT_EQ(sim.taken.size(), 1u);
  sim.player.on_clear_buffer(1, sim.now);
  sim.player.on_action(give(1, "1.3", 40000), sim.now);  // one still on its way when the reply was cleared
  sim.step(200);
  EXPECT_EQ(sim.taken.size(), 1u);
  EXPECT(sim.player.idle());
  const UtteranceReport report = sim.player.reports()[0];
  EXPECT_EQ(report.actions, 3u);
  EXPECT_EQ(report.actions_taken, 1u);
  EXPECT_EQ(report.actions_dropped, 2u);
  // The engine's own interrupt drops them too.
  FakeTransport transport;
  ClientOptions options;
  options.hello.audio = AudioFormat{24000, 1};
  options.prebuffer = 0.0;
  Client client(transport, options);
  client.on_text(R"({"type":"utterance_start","utterance":2,"rate":24000,"channels":1})", 0.0);
  const auto pcm = ramp(24000);
  const std::vector<std::uint8_t> audio = encode_audio(2, 0, pcm.data(), pcm.size());
  client.on_binary(audio.data(), audio.size(), 0.0);
  client.on_text(R"({"type":"action","utterance":2,"id":"2.1","at":12000,"name":"give_item","arguments":{}})", 0.0);
  std::vector<std::int16_t> out(2400);
  client.render(out.data(), 2400, 0.0);
  EXPECT(client.take_due_actions(0.05).empty());
  client.interrupt(0.05);
  client.render(out.data(), 2400, 0.1);
  EXPECT(client.take_due_actions(1.0).empty());
  EXPECT_EQ(client.player().reports()[0].actions_dropped, 1u);
}

void test_an_action_that_comes_after_its_sample_is_taken_at_once() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  config.output_latency = 0.02;
  ActionSim sim(config);
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 24000);
  sim.step(30);  // now = 0.3: samples up to 6720 heard
  sim.player.on_action(give(1, "1.1", 2400), sim.now);  // heard at 0.12 already
  const std::vector<DueAction> taken = sim.player.take_due_actions(sim.now);
  EXPECT_EQ(taken.size(), 1u);
  EXPECT(taken[0].late);
  EXPECT(std::fabs(taken[0].due - 0.12) < 1e-9);
  EXPECT(std::fabs(taken[0].delivered - 0.3) < 1e-9);
  EXPECT(std::fabs(taken[0].arrived - 0.3) < 1e-9);
  EXPECT_EQ(taken[0].position, 6720u);  // where playback is now
  // An action of an utterance that played to its end and left the queue: at once as well.
  sim.player.on_utterance_end(UtteranceEnd{1, 24000, 60, ""});
  sim.step(100);
  EXPECT(sim.player.idle());
  sim.player.on_action(give(1, "1.2", 24000), sim.now);
  EXPECT(!sim.player.idle());
  const std::vector<DueAction> after = sim.player.take_due_actions(sim.now);
  EXPECT_EQ(after.size(), 1u);
  EXPECT(after[0].late);
  EXPECT_EQ(after[0].position, 24000u);
  EXPECT(sim.player.idle());
  EXPECT_EQ(sim.player.reports()[0].actions_taken, 2u);
  // One of an utterance never started is ignored.
  sim.player.on_action(give(9, "9.1", 0), sim.now);
  EXPECT(sim.player.take_due_actions(sim.now + 1).empty());
  EXPECT_EQ(sim.player.stray_actions(), 1u);
}

void test_actions_wait_for_their_audio_and_their_turn() {
  PlaybackConfig config;
  config.rate = 24000;
  config.prebuffer = 0.0;
  config.output_latency = 0.01;
  ActionSim sim(config);
  // An action in an underrun: at the first sample of audio that has not come yet.
  sim.player.on_utterance_start(UtteranceStart{1, 24000, 1});
  sim.audio(1, 0, 2400);
  sim.player.on_action(give(1, "1.1", 2400), sim.now);
  sim.step(20);  // 100 ms of audio, then 100 ms dry
  EXPECT(sim.taken.empty());  // its words are heard, but playback has not reached sample 2400
  sim.audio(1, 2400, 2400);
  sim.player.on_utterance_end(UtteranceEnd{1, 4800, 12, ""});
  // A reply of only an action (no words, no audio): it is taken when its turn to play comes.
  sim.player.on_utterance_start(UtteranceStart{2, 24000, 1});
  sim.player.on_action(give(2, "2.1", 0), sim.now);
  sim.player.on_utterance_end(UtteranceEnd{2, 0, 0, ""});
  sim.step(1);  // render at 0.2 plays sample 2400 (heard at 0.21)
  EXPECT_EQ(sim.taken.size(), 1u);
  EXPECT(std::fabs(sim.taken[0].due - 0.21) < 1e-9);
  sim.step(9);  // utterance 1 ends at 0.3 (heard 0.31)
  EXPECT_EQ(sim.taken.size(), 1u);
  sim.step(2);
  EXPECT_EQ(sim.taken.size(), 2u);
  EXPECT_EQ(sim.taken[1].id, std::string("2.1"));
  EXPECT(std::fabs(sim.taken[1].due - 0.31) < 1e-9);
  EXPECT_EQ(sim.taken[1].position, 0u);
  EXPECT(sim.player.idle());
}

void test_client_session_flow() {
  FakeTransport transport;
  ClientOptions options;
  options.hello.audio = AudioFormat{16000, 1};
  options.prebuffer = 0.0;
  Client client(transport, options);
  EXPECT(client.open());
  EXPECT(transport.texts[0].find(R"("audio":{"rate":16000,"channels":1})") != std::string::npos);
  EXPECT(!client.on_text("{oops", 0.0));
  EXPECT(!client.last_error().empty());
  client.on_text(R"({"type":"welcome","version":1,"audio":{"rate":16000,"channels":1},"face":{"fps":60,"width":68,"enabled":true},"acks":true,"ack_timeout":2.0,"workflow":"conversation","turns":"server"})",
                 0.0);
  EXPECT(client.welcome().has_value());
  client.say("hello");
  EXPECT_EQ(transport.texts.back(), std::string(R"({"type":"text","text":"hello"})"));
  client.on_text(R"({"type":"utterance_start","utterance":1,"rate":16000,"channels":1})", 0.0);
  const auto pcm = ramp(1600);
  const std::vector<std::uint8_t> audio = encode_audio(1, 0, pcm.data(), pcm.size());
  EXPECT(client.on_binary(audio.data(), audio.size(), 0.0));
  std::vector<std::int16_t> out(960);
  EXPECT_EQ(client.render(out.data(), 960, 0.0), 960u);
  EXPECT_EQ(out[0], pcm[0]);
  EXPECT_EQ(client.update(0.0), 1u);
  EXPECT_EQ(transport.texts.back(), std::string(R"({"type":"playback_started","utterance":1,"at":0})"));
  EXPECT_EQ(client.update(0.05), 0u);
  const auto cleared = client.on_text(R"({"type":"clear_buffer","utterance":1,"reason":"barge_in"})", 0.05);
  EXPECT(as<ClearBuffer>(cleared) != nullptr);
  EXPECT_EQ(transport.texts.back(),
            std::string(R"({"type":"playback_finished","utterance":1,"position":800,"interrupted":true})"));
  // The engine's own interrupt stops local playback at once.
  client.on_text(R"({"type":"utterance_start","utterance":2,"rate":16000,"channels":1})", 0.1);
  const std::vector<std::uint8_t> audio2 = encode_audio(2, 0, pcm.data(), pcm.size());
  client.on_binary(audio2.data(), audio2.size(), 0.1);
  client.render(out.data(), 960, 0.1);
  client.update(0.1);
  EXPECT(client.interrupt(0.125));
  EXPECT_EQ(transport.texts[transport.texts.size() - 2], std::string(R"({"type":"interrupt"})"));
  EXPECT_EQ(transport.texts.back(),
            std::string(R"({"type":"playback_finished","utterance":2,"position":400,"interrupted":true})"));
  EXPECT_EQ(client.render(out.data(), 960, 0.2), 0u);
  EXPECT(client.player().idle());
  const std::uint8_t mic_from_server[] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT(!client.on_binary(mic_from_server, sizeof mic_from_server, 0.1));
  // Microphone: large blocks are split into frames under 1 MiB with continuous offsets.
  std::vector<std::int16_t> mic(600000, 3);
  EXPECT(client.send_mic(mic.data(), mic.size()));
  EXPECT_EQ(transport.binaries.size(), 2u);
  const auto first = decode_binary(transport.binaries[0].data(), transport.binaries[0].size());
  const auto second = decode_binary(transport.binaries[1].data(), transport.binaries[1].size());
  const auto& a = std::get<AudioFrame>(*first);
  const auto& b = std::get<AudioFrame>(*second);
  EXPECT(a.kind == FrameKind::Mic);
  EXPECT_EQ(b.offset, a.samples.size());
  EXPECT_EQ(a.samples.size() + b.samples.size(), 600000u);
  EXPECT(transport.binaries[0].size() <= kMaxBinaryFrame);
}

}  // namespace

int main() {
  const std::vector<std::pair<const char*, std::function<void()>>> tests = {
      {"json_round_trip_keeps_order_and_exact_integers", test_json_round_trip_keeps_order_and_exact_integers},
      {"json_strings_escapes_and_unicode", test_json_strings_escapes_and_unicode},
      {"json_numbers_are_written_without_locale", test_json_numbers_are_written_without_locale},
      {"json_refuses_what_is_not_json", test_json_refuses_what_is_not_json},
      {"encode_matches_the_python_codec", test_encode_matches_the_python_codec},
      {"decode_the_documented_audio_frame", test_decode_the_documented_audio_frame},
      {"face_frames_round_trip_and_header", test_face_frames_round_trip_and_header},
      {"malformed_binary_frames_are_refused", test_malformed_binary_frames_are_refused},
      {"face_frame_clock", test_face_frame_clock},
      {"decode_server_messages", test_decode_server_messages},
      {"decode_server_refuses_malformed_messages", test_decode_server_refuses_malformed_messages},
      {"raw_message_assembler_joins_binary_and_skips_text", test_raw_message_assembler_joins_binary_and_skips_text},
      {"mic_converter_rates_channels_and_continuity", test_mic_converter_rates_channels_and_continuity},
      {"jitter_buffer_prebuffers_then_plays", test_jitter_buffer_prebuffers_then_plays},
      {"jitter_buffer_gaps_repeats_and_underruns", test_jitter_buffer_gaps_repeats_and_underruns},
      {"playback_started_once_when_first_audio_is_heard", test_playback_started_once_when_first_audio_is_heard},
      {"face_frames_are_released_when_their_sample_is_heard", test_face_frames_are_released_when_their_sample_is_heard},
      {"clear_buffer_stops_the_utterance_and_reports_what_was_heard",
       test_clear_buffer_stops_the_utterance_and_reports_what_was_heard},
      {"without_acks_faces_still_follow_the_audio_clock", test_without_acks_faces_still_follow_the_audio_clock},
      {"utterances_play_one_after_another_with_one_ack_each", test_utterances_play_one_after_another_with_one_ack_each},
      {"an_underrun_delays_the_rest_of_the_utterance", test_an_underrun_delays_the_rest_of_the_utterance},
      {"utterance_end_before_its_last_audio_still_plays_everything",
       test_utterance_end_before_its_last_audio_still_plays_everything},
      {"client_session_flow", test_client_session_flow},
      {"json_keeps_the_text_of_parsed_numbers", test_json_keeps_the_text_of_parsed_numbers},
      {"encode_actions_matches_the_python_codec", test_encode_actions_matches_the_python_codec},
      {"parse_action_declarations", test_parse_action_declarations},
      {"decode_action_messages", test_decode_action_messages},
      {"an_action_is_taken_when_its_sample_is_heard", test_an_action_is_taken_when_its_sample_is_heard},
      {"an_action_is_never_taken_before_the_ack", test_an_action_is_never_taken_before_the_ack},
      {"clear_buffer_drops_the_actions_not_yet_taken", test_clear_buffer_drops_the_actions_not_yet_taken},
      {"an_action_that_comes_after_its_sample_is_taken_at_once", test_an_action_that_comes_after_its_sample_is_taken_at_once},
      {"actions_wait_for_their_audio_and_their_turn", test_actions_wait_for_their_audio_and_their_turn},
  };
  for (const auto& test : tests) {
    const int before = g_failures;
    test.second();
    std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", test.first);
  }
  std::printf("%zu tests, %d expectations, %d failed\n", tests.size(), g_expectations, g_failures);
  return g_failures == 0 ? 0 : 1;
}
