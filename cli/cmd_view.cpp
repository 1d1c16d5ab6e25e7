// meltrig view: serves a live page that follows a capture while it is written (and finished
// files) on 127.0.0.1; the server is meltrig_view (analysis/view/, docs/view.md).
#include <cstdio>

#include "cli_common.hpp"
#include "meltrig/view/server.hpp"

namespace meltrig::cli {
namespace {

struct ViewArgs {
  std::string file, markers, bind = "127.0.0.1";
  std::uint16_t port = 8765;
  bool allow_remote = false;
  double seconds = 0.0;
};

int run(const ViewArgs& a) {
  if (!view::is_loopback(a.bind) && !a.allow_remote) {
    return usage("--bind " + a.bind +
                 " is not a loopback address; add --allow-remote to serve the capture to other "
                 "machines");
  }
  view::ViewOptions opt;
  opt.file = a.file;
  opt.bind = a.bind;
  opt.port = a.port;
  opt.allow_remote = a.allow_remote;
  if (!a.markers.empty()) opt.markers = a.markers;
  auto server = view::ViewServer::start(std::move(opt));
  if (!server) return fail(server.error().describe());
  if (!view::is_loopback(a.bind)) {
    std::fprintf(stderr,
                 "meltrig view: WARNING: listening on %s, not loopback: anyone who can reach "
                 "this port can read the capture (no authentication, no TLS)\n",
                 a.bind.c_str());
  }
  std::printf("meltrig view: serving %s at %s (Ctrl-C to stop)\n", a.file.c_str(),
              (*server)->url().c_str());
  std::fflush(stdout);
  serve_until_stopped(a.seconds);
  (*server)->stop();
  return kOk;
}

}  // namespace

void add_view(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<ViewArgs>();
  auto* s = app.add_subcommand("view",
                               "serve a live browser view of a capture (also while it is written)");
  s->add_option("file", a->file, "capture file (HDF5), opened read-only")->required();
  s->add_option("--port", a->port, "TCP port (0: any free port)")->capture_default_str();
  s->add_option("--bind", a->bind, "numeric address to listen on")->capture_default_str();
  s->add_flag("--allow-remote", a->allow_remote,
              "allow a --bind address that is not loopback (prints a warning)");
  s->add_option("--markers", a->markers,
                "marker file to follow for the latest tokens (default: FILE.markers if present)");
  s->add_option("--seconds", a->seconds, "stop after this many seconds (0: until Ctrl-C)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
