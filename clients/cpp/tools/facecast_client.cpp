// facecast_client: the C++ reference engine client on the command line.
//
// Connects to a Facecast server, says hello, types each --text as a turn, "plays" the reply on a simulated
// audio device (real time, no sound card: a render every --chunk-ms), sends playback_started and
// playback_finished as an engine does, collects the socket's face frames, takes the character's actions
// (declared with --action-json) when playback reaches them and answers each with action_result, and prints
// a JSON summary on stdout. Exit status: 0 when every turn got a reply without errors, 1 otherwise, 2 for
// usage or a failed connection.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "facecast/client.h"
#include "websocket.h"

namespace {

using facecast::Json;

const char kUsage[] =
    "usage: facecast_client [--url ws://127.0.0.1:8765/ws/engine] [--token TOKEN] --text TEXT [--text TEXT...]\n"
    "                       [--rate 24000] [--channels 1] [--subject NAME] [--character NAME] [--no-face]\n"
    "                       [--no-acks] [--prebuffer 0.1] [--output-latency 0.0] [--chunk-ms 10]\n"
    "                       [--context NAME=VALUE...] [--action-json FILE...] [--action-result TEXT]\n"
    "                       [--timeout 30] [--verbose]\n"
    "  --action-json FILE    declare the character's actions in the hello: a JSON list of\n"
    "                        {name, description, parameters} (docs/protocol.md, Actions)\n"
    "  --action-result TEXT  the result sent in action_result (ok) for each action taken (default: done)\n";

struct Args {
  std::string url = "ws://127.0.0.1:8765/ws/engine";
  std::string token;
  std::vector<std::string> texts;
  std::vector<Json::Member> context;
  std::string action_result = "done";
  facecast::ClientOptions options;
  double chunk_ms = 10.0;
  double timeout = 30.0;
  bool verbose = false;
};

double clock_now() {
  static const auto start = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool parse_number(const char* text, double& out) {
  char* end = nullptr;
  out = std::strtod(text, &end);
  return end != text && *end == '\0' && std::isfinite(out);
}

bool parse_args(int argc, char** argv, Args& args, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    auto value = [&]() -> const char* { return argv[++i]; };
    double number = 0.0;
    if (flag == "--verbose") {
      args.verbose = true;
    } else if (flag == "--no-face") {
      args.options.hello.face = false;
    } else if (flag == "--no-acks") {
      args.options.hello.acks = false;
    } else if (flag == "--help" || flag == "-h") {
      error = "";
      return false;
    } else if (!has_value) {
      error = "missing value after " + flag;
      return false;
    } else if (flag == "--url") {
      args.url = value();
    } else if (flag == "--token") {
      args.token = value();
    } else if (flag == "--text") {
      args.texts.emplace_back(value());
    } else if (flag == "--subject") {
      args.options.hello.subject = value();
    } else if (flag == "--character") {
      args.options.hello.character = value();
    } else if (flag == "--action-json") {
      const std::string path = value();
      std::ifstream file(path, std::ios::binary);
      if (!file) {
        error = "cannot read " + path;
        return false;
      }
      std::ostringstream text;
      text << file.rdbuf();
      std::string why;
      if (!facecast::parse_action_declarations(text.str(), args.options.hello.actions, &why)) {
        error = path + ": " + why;
        return false;
      }
    } else if (flag == "--action-result") {
      args.action_result = value();
    } else if (flag == "--context") {
      const std::string fact = value();
      const std::size_t eq = fact.find('=');
      if (eq == std::string::npos || eq == 0) {
        error = "--context wants NAME=VALUE, got " + fact;
        return false;
      }
      args.context.emplace_back(fact.substr(0, eq), Json::string(fact.substr(eq + 1)));
    } else if (parse_number(argv[i + 1], number)) {
      ++i;
      if (flag == "--rate" && facecast::is_supported_rate(static_cast<int>(number))) {
        args.options.hello.audio.rate = static_cast<int>(number);
      } else if (flag == "--channels" && (number == 1.0 || number == 2.0)) {
        args.options.hello.audio.channels = static_cast<int>(number);
      } else if (flag == "--prebuffer" && number >= 0.0 && number < 0.9) {
        args.options.prebuffer = number;
      } else if (flag == "--output-latency" && number >= 0.0 && number < 1.0) {
        args.options.output_latency = number;
      } else if (flag == "--chunk-ms" && number >= 1.0 && number <= 100.0) {
        args.chunk_ms = number;
      } else if (flag == "--timeout" && number > 0.0) {
        args.timeout = number;
      } else {
        error = "bad value for " + flag + ": " + argv[i];
        return false;
      }
    } else {
      error = "unknown option or bad value: " + flag + " " + argv[i + 1];
      return false;
    }
  }
  if (args.texts.empty()) {
    error = "give at least one --text";
    return false;
  }
  return true;
}

Json ms(double seconds) { return Json::number(std::round(seconds * 1e6) / 1e3); }

/// What one typed turn produced.
struct Turn {
  std::string text;
  double sent_at = 0.0;
  double first_audio_at = -1.0;
  std::string transcript;
  std::vector<std::uint32_t> utterances;
  std::vector<std::pair<std::uint32_t, std::string>> texts;  // utterance_end text per utterance
  Json reply_texts = Json::array();                           // reply_text: {utterance, text, at}
  Json actions = Json::array();                               // the actions taken, when and where
  Json timing = Json::object();
  Json errors = Json::array();
  bool ended_by_error = false;
  bool timed_out = false;
};

bool turn_ending_error(const std::string& code) {
  return code == "ack_timeout" || code == "service_unavailable" || code == "no_speech" || code == "bad_input" ||
         code == "too_large" || code == "bad_message" || code == "out_of_order";
}

Json utterance_json(const facecast::UtteranceReport& r, int rate, double turn_start, const std::string& text) {
  Json u = Json::object();
  u.set("utterance", Json::integer(r.utterance));
  u.set("text", Json::string(text));
  u.set("samples", Json::integer(static_cast<std::int64_t>(r.played)));
  u.set("received", Json::integer(static_cast<std::int64_t>(r.received)));
  u.set("heard", Json::integer(static_cast<std::int64_t>(r.heard)));
  u.set("server_samples", Json::integer(static_cast<std::int64_t>(r.server_samples)));
  u.set("server_frames", Json::integer(static_cast<std::int64_t>(r.server_frames)));
  u.set("expected_frames", Json::integer(static_cast<std::int64_t>(facecast::face_frames_for_samples(r.server_samples, rate))));
  u.set("face_frames", Json::integer(static_cast<std::int64_t>(r.face_frames)));
  u.set("face_shown", Json::integer(static_cast<std::int64_t>(r.face_shown)));
  u.set("face_before_ack", Json::integer(static_cast<std::int64_t>(r.face_before_ack)));
  u.set("acks", Json::integer(r.acks_sent));
  u.set("finishes", Json::integer(r.finishes_sent));
  u.set("underruns", Json::integer(r.underruns));
  u.set("underrun_frames", Json::integer(static_cast<std::int64_t>(r.underrun_frames)));
  u.set("discontinuities", Json::integer(r.discontinuities));
  u.set("after_clear", Json::integer(r.after_clear));
  u.set("ended", Json::boolean(r.ended));
  u.set("cleared", Json::boolean(r.cleared));
  u.set("actions", Json::integer(r.actions));
  u.set("actions_taken", Json::integer(r.actions_taken));
  u.set("actions_dropped", Json::integer(r.actions_dropped));
  u.set("playback_start_ms", r.playback_start >= 0 ? ms(r.playback_start - turn_start) : Json());
  return u;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::string usage_error;
  if (!parse_args(argc, argv, args, usage_error)) {
    if (!usage_error.empty()) std::fprintf(stderr, "facecast_client: %s\n", usage_error.c_str());
    std::fputs(kUsage, stderr);
    return usage_error.empty() ? 0 : 2;
  }
  const int rate = args.options.hello.audio.rate;
  const auto channels = static_cast<std::size_t>(args.options.hello.audio.channels);

  facecast::WebSocketClient socket;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!args.token.empty()) headers.emplace_back("Authorization", "Bearer " + args.token);
  if (!socket.connect(args.url, headers)) {
    std::fprintf(stderr, "facecast_client: %s\n", socket.error().c_str());
    return 2;
  }
  facecast::Client client(socket, args.options);
  client.open();

  Json all_errors = Json::array();
  Json all_actions = Json::array();
  std::vector<std::uint8_t> payload;
  auto log = [&](const std::string& line) {
    if (args.verbose) std::fprintf(stderr, "[%8.3f] %s\n", clock_now(), line.c_str());
  };

  // Wait for the welcome (or the refusal).
  const double welcome_deadline = clock_now() + 10.0;
  while (!client.welcome()) {
    const double left = welcome_deadline - clock_now();
    const auto result = left > 0 ? socket.receive(payload, static_cast<int>(left * 1000) + 1)
                                 : facecast::WebSocketClient::Result::Timeout;
    if (result == facecast::WebSocketClient::Result::Text) {
      const std::string text(payload.begin(), payload.end());
      log("<- " + text);
      const auto message = client.on_text(text, clock_now());
      if (message) {
        if (const auto* error = std::get_if<facecast::ErrorMessage>(&*message)) {
          std::fprintf(stderr, "facecast_client: the server refused the hello: %s: %s\n", error->code.c_str(),
                       error->message.c_str());
          return 2;
        }
      }
    } else if (result != facecast::WebSocketClient::Result::Binary) {
      std::fprintf(stderr, "facecast_client: no welcome: %s (close code %u %s)\n",
                   result == facecast::WebSocketClient::Result::Timeout ? "timed out" : "connection closed",
                   socket.close_code(), socket.error().c_str());
      return 2;
    }
  }
  if (!args.context.empty()) client.set_context(args.context);

  const auto chunk_frames = static_cast<std::size_t>(std::lround(rate * args.chunk_ms / 1000.0));
  const double chunk_seconds = static_cast<double>(chunk_frames) / rate;
  std::vector<std::int16_t> device(chunk_frames * channels);
  double next_render = clock_now();  // the simulated audio device asks for a chunk every chunk_seconds
  double next_ping = clock_now() + 5.0;  // the server closes sessions that send nothing for idle_timeout_s
  bool connection_lost = false;
  std::uint64_t face_shown = 0;
  std::vector<Turn> turns;

  for (const std::string& text : args.texts) {
    Turn turn;
    turn.text = text;
    turn.sent_at = clock_now();
    client.say(text);
    log("-> text " + text);
    const double deadline = turn.sent_at + args.timeout;
    while (true) {
      double now = clock_now();
      if (now >= deadline) {
        turn.timed_out = true;
        break;
      }
      const double wait = std::max(0.0, std::min(next_render, deadline) - now);
      const auto result = socket.receive(payload, static_cast<int>(std::ceil(wait * 1000)));
      now = clock_now();
      if (result == facecast::WebSocketClient::Result::Text) {
        const std::string frame(payload.begin(), payload.end());
        log("<- " + frame);
        const auto message = client.on_text(frame, now);
        if (!message) {
          log("refused: " + client.last_error());
        } else if (const auto* t = std::get_if<facecast::Transcript>(&*message)) {
          if (t->is_final) turn.transcript = t->text;
        } else if (const auto* s = std::get_if<facecast::UtteranceStart>(&*message)) {
          turn.utterances.push_back(s->utterance);
        } else if (const auto* line = std::get_if<facecast::ReplyText>(&*message)) {
          Json entry = Json::object();
          entry.set("utterance", Json::integer(line->utterance));
          entry.set("text", Json::string(line->text));
          entry.set("at", Json::integer(static_cast<std::int64_t>(line->at)));
          turn.reply_texts.push(entry);
        } else if (const auto* action = std::get_if<facecast::Action>(&*message)) {
          log("action " + action->name + " " + action->arguments.dump() + " at sample " + std::to_string(action->at));
        } else if (const auto* e = std::get_if<facecast::UtteranceEnd>(&*message)) {
          turn.texts.emplace_back(e->utterance, e->text);
        } else if (const auto* timing = std::get_if<facecast::Timing>(&*message)) {
          for (const auto& stage : timing->stages) turn.timing.set(stage.first, Json::number(stage.second));
        } else if (const auto* error = std::get_if<facecast::ErrorMessage>(&*message)) {
          Json entry = Json::object();
          entry.set("code", Json::string(error->code));
          entry.set("message", Json::string(error->message));
          turn.errors.push(entry);
          all_errors.push(entry);
          if (turn_ending_error(error->code)) turn.ended_by_error = true;
        }
      } else if (result == facecast::WebSocketClient::Result::Binary) {
        if (turn.first_audio_at < 0 && !payload.empty() && payload[0] == static_cast<std::uint8_t>(facecast::FrameKind::Audio)) {
          turn.first_audio_at = now;
        }
        if (!client.on_binary(payload.data(), payload.size(), now)) log("refused binary: " + client.last_error());
      } else if (result == facecast::WebSocketClient::Result::Closed || result == facecast::WebSocketClient::Result::Error) {
        connection_lost = true;
        log("connection closed: " + std::to_string(socket.close_code()) + " " + socket.error());
        break;
      }
      while (next_render <= now) {  // the simulated device consumes audio in real time
        client.render(device.data(), chunk_frames, next_render);
        next_render += chunk_seconds;
      }
      if (now >= next_ping) {
        client.ping();
        next_ping = now + 5.0;
      }
      const std::size_t sent = client.update(now);
      if (sent > 0) log("-> " + std::to_string(sent) + " acknowledgement(s)");
      face_shown += client.take_due_faces(now).size();
      for (const facecast::DueAction& action : client.take_due_actions(now)) {
        // The game carries the action out here; then it says what came of it.
        bool acked = false;
        for (const facecast::UtteranceReport& r : client.player().reports()) {
          if (r.utterance == action.utterance) acked = r.acks_sent > 0;
        }
        client.action_result(action.id, true, Json::string(args.action_result));
        log("took action " + action.id + " " + action.name + " at sample " + std::to_string(action.at) +
            " (heard: " + std::to_string(action.position) + "); -> action_result");
        Json entry = Json::object();
        entry.set("utterance", Json::integer(action.utterance));
        entry.set("id", Json::string(action.id));
        entry.set("name", Json::string(action.name));
        entry.set("arguments", action.arguments);
        entry.set("at", Json::integer(static_cast<std::int64_t>(action.at)));
        entry.set("position", Json::integer(static_cast<std::int64_t>(action.position)));
        entry.set("late", Json::boolean(action.late));
        entry.set("acked", Json::boolean(acked || !client.player().config().acks));
        entry.set("due_ms", ms(action.due - turn.sent_at));
        entry.set("delay_ms", ms(action.delivered - action.due));
        turn.actions.push(entry);
        all_actions.push(entry);
      }
      const bool replied = !turn.utterances.empty() || turn.ended_by_error;
      if (replied && client.player().idle()) break;
    }
    turns.push_back(std::move(turn));
    if (connection_lost) break;
  }

  if (!connection_lost) {
    client.bye();
    socket.close(1000);
  }

  // The summary.
  const std::vector<facecast::UtteranceReport> reports = client.player().reports();
  Json summary = Json::object();
  Json turns_json = Json::array();
  std::int64_t total_utterances = 0, total_samples = 0, total_frames = 0, total_acks = 0;
  bool ok = !connection_lost;
  for (const Turn& turn : turns) {
    Json t = Json::object();
    t.set("text", Json::string(turn.text));
    t.set("transcript", Json::string(turn.transcript));
    t.set("first_audio_latency_ms", turn.first_audio_at >= 0 ? ms(turn.first_audio_at - turn.sent_at) : Json());
    Json utterances = Json::array();
    for (const std::uint32_t id : turn.utterances) {
      for (const facecast::UtteranceReport& r : reports) {
        if (r.utterance != id) continue;
        std::string text;
        for (const auto& entry : turn.texts) {
          if (entry.first == id) text = entry.second;
        }
        utterances.push(utterance_json(r, rate, turn.sent_at, text));
        ++total_utterances;
        total_samples += static_cast<std::int64_t>(r.played);
        total_frames += static_cast<std::int64_t>(r.face_frames);
        total_acks += r.acks_sent;
        if (t.find("playback_latency_ms") == nullptr && r.playback_start >= 0) {
          t.set("playback_latency_ms", ms(r.playback_start - turn.sent_at));
        }
      }
    }
    t.set("utterances", utterances);
    t.set("reply_texts", turn.reply_texts);
    t.set("actions", turn.actions);
    t.set("timing", turn.timing);
    t.set("errors", turn.errors);
    t.set("timed_out", Json::boolean(turn.timed_out));
    if (turn.utterances.empty() || turn.timed_out || !turn.errors.items().empty()) ok = false;
    turns_json.push(t);
  }
  const facecast::Welcome welcome = *client.welcome();
  Json welcome_json = Json::object();
  welcome_json.set("rate", Json::integer(welcome.audio.rate));
  welcome_json.set("channels", Json::integer(welcome.audio.channels));
  welcome_json.set("face", Json::boolean(welcome.face_enabled));
  welcome_json.set("acks", Json::boolean(welcome.acks));
  welcome_json.set("ack_timeout", Json::number(welcome.ack_timeout));
  welcome_json.set("turns", Json::string(welcome.turns));
  welcome_json.set("workflow", Json::string(welcome.workflow));
  welcome_json.set("livelink_subject", Json::string(welcome.livelink_subject));

  summary.set("ok", Json::boolean(ok));
  summary.set("welcome", welcome_json);
  summary.set("turns", turns_json);
  summary.set("utterances", Json::integer(total_utterances));
  summary.set("samples", Json::integer(total_samples));
  summary.set("frames", Json::integer(total_frames));
  summary.set("face_shown", Json::integer(static_cast<std::int64_t>(face_shown)));
  summary.set("acks", Json::integer(total_acks));
  summary.set("first_audio_latency_ms",
              !turns.empty() && turns[0].first_audio_at >= 0 ? ms(turns[0].first_audio_at - turns[0].sent_at) : Json());
  summary.set("actions", all_actions);
  summary.set("errors", all_errors);
  summary.set("stray_frames", Json::integer(static_cast<std::int64_t>(client.player().stray_frames())));
  summary.set("stray_actions", Json::integer(static_cast<std::int64_t>(client.player().stray_actions())));
  summary.set("connection_lost", Json::boolean(connection_lost));
  summary.set("close_code", Json::integer(socket.close_code()));
  std::printf("%s\n", summary.dump().c_str());
  return ok ? 0 : 1;
}
