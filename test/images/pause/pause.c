/*
 * The sandbox ("pause") container of the test cluster's pods: PID 1 of the pod, it holds the
 * namespaces, reaps the orphans that get reparented to it, and exits 0 on SIGINT or SIGTERM.
 * Built static (gcc -static -Os) by hack/build-images.sh into a FROM scratch image.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *msg) {
  /* write(2), not stdio: it is async-signal-safe. */
  ssize_t unused = write(STDERR_FILENO, msg, strlen(msg));
  (void)unused;
}

static void on_shutdown(int signo) {
  (void)signo;
  say("pause: shutting down\n");
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  int saved = errno; /* waitpid may change errno under the interrupted code */
  /* One SIGCHLD may stand for several children: reap until none is left. */
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    say("usage: pause (no arguments)\n");
    return 2;
  }
  if (getpid() != 1) {
    say("pause: warning: not PID 1, orphans will not be reparented here\n");
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_shutdown;
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
    say("pause: sigaction failed\n");
    return 1;
  }
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART; /* only exits matter */
  if (sigaction(SIGCHLD, &sa, NULL) < 0) {
    say("pause: sigaction failed\n");
    return 1;
  }

  for (;;) {
    pause();
  }
}
