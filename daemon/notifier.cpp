#include "daemon/notifier.h"

#include <sys/socket.h>

#include "common/error.h"

#include <cstdint>
#include <cstdlib>

#include <fcntl.h>
#include <unistd.h>

#ifdef WAND_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace wand::daemon {

Notifier::Notifier() {
#ifdef WAND_HAVE_SYSTEMD
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_interval_ms_ = static_cast<long>(usec / 2000);
#endif
}

void Notifier::ready(const std::string& s) {
#ifdef WAND_HAVE_SYSTEMD
  sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%lu", s.c_str(), static_cast<unsigned long>(getpid()));
#else
  (void)s;
#endif
}

void Notifier::status(const std::string& s) {
#ifdef WAND_HAVE_SYSTEMD
  sd_notifyf(0, "STATUS=%s", s.c_str());
#else
  (void)s;
#endif
}

void Notifier::reloading() {
#ifdef WAND_HAVE_SYSTEMD
  sd_notify(0, "RELOADING=1");
#endif
}

void Notifier::stopping() {
#ifdef WAND_HAVE_SYSTEMD
  sd_notify(0, "STOPPING=1");
#endif
}

void Notifier::watchdog() {
#ifdef WAND_HAVE_SYSTEMD
  sd_notify(0, "WATCHDOG=1");
#endif
}

int Notifier::listen_fd() {
#ifdef WAND_HAVE_SYSTEMD
  int n = sd_listen_fds(1);
  if (n < 1) return -1;
  if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, nullptr, 0) <= 0) {
    throw Error(ErrorCode::kConfig, "LISTEN_FDS: fd 3 is not a listening unix stream socket "
                                    "(check wand.socket: ListenStream=)");
  }
  return SD_LISTEN_FDS_START;
#else
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::strtol(pid, nullptr, 10) != getpid() || std::atoi(fds) < 1) return -1;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  fcntl(3, F_SETFD, FD_CLOEXEC);
  return 3;
#endif
}

}  // namespace wand::daemon
