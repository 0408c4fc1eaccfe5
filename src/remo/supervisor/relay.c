/*
 * remo-relay: the running half of a job's init, in C.
 *
 * The Python init (remo/supervisor/spawner.py) sets the job up and spawns it, then
 * execs this program with the job's pipes and files. From then on the init is this
 * program: it moves the job's stdout and stderr into their files with splice(2), indexes
 * every move with a 32-byte timed record, applies the output cap, reaps, forwards stop
 * signals as PID 1, and writes the job's wait status to the status file at the end.
 *
 * Why C: it runs once per running job for the job's whole life. As a forked Python
 * process it cost ~1.5 MiB of private memory and ~60 us of CPU per line the job printed;
 * this costs ~0.1 MiB and three system calls per line. It is the same state machine as
 * the Python relay in remo/supervisor/init.py (the fallback where no C compiler was
 * available at install time; it still drains every stream until EAGAIN, so moves may be
 * split differently, with the same bytes and records): the formats are
 * remo/core/output_format.py's, the status record is init.Relay.record's, and the
 * tests run both.
 *
 * Usage (descriptors are numbers, inherited): remo-relay JOB_PID PID1 CAP OUT_PIPE
 *   ERR_PIPE OUT_FILE ERR_FILE RECORDS STATUS   (CAP -1: no cap; PID1 0 or 1)
 *
 * The Python init blocks SIGCHLD and the forwarded signals before the exec, so none is
 * lost across it; they are read here from a signalfd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { STDOUT_STREAM = 1, STDERR_STREAM = 2, RECORD_SIZE = 32, STATUS_RECORD_SIZE = 64 };
#define CHUNK (1 << 20)
#define EXIT_BROKEN 70

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define FORWARDED_COUNT (sizeof forwarded / sizeof forwarded[0])

struct relay {
    int pipe[3], file[3], open[3]; /* indexed by stream: 1 stdout, 2 stderr */
    int records_fd;
    int64_t cap; /* -1: none */
    uint64_t stream_written[3];
    uint64_t written, records, dropped, checkpointed;
    int disk_full;
    int64_t last_time;
};

static char drop_buffer[64 * 1024]; /* touched only when output is dropped */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put_le(unsigned char *at, uint64_t value, int size) {
    for (int i = 0; i < size; i++) at[i] = (unsigned char)(value >> (8 * i));
}

static int disk_full_error(int err) { return err == ENOSPC || err == EDQUOT || err == EFBIG; }

/* One record: merged offset, offset in the stream's file, time, length, stream (<QQqIB3x). */
static int write_record(struct relay *r, int stream, uint64_t at, uint32_t length) {
    unsigned char record[RECORD_SIZE] = {0};
    int64_t now = now_ns();
    if (now < r->last_time) now = r->last_time; /* never back: readers bisect by time */
    put_le(record, r->written, 8);
    put_le(record + 8, at, 8);
    put_le(record + 16, (uint64_t)now, 8);
    put_le(record + 24, length, 4);
    record[28] = (unsigned char)stream;
    ssize_t done;
    do done = write(r->records_fd, record, RECORD_SIZE);
    while (done < 0 && errno == EINTR);
    if (done != RECORD_SIZE) return -1;
    r->last_time = now;
    r->stream_written[stream] = at + length;
    r->written += length;
    r->records++;
    return 0;
}

/* Read and count what cannot be kept; 0 at end of file, -1 when nothing is there. */
static ssize_t drop(struct relay *r, int stream) {
    ssize_t n;
    do n = read(r->pipe[stream], drop_buffer, sizeof drop_buffer);
    while (n < 0 && errno == EINTR);
    if (n > 0) r->dropped += (uint64_t)n;
    return n;
}

/* Splice up to room bytes into the stream's file and record them. */
static ssize_t move(struct relay *r, int stream, size_t room) {
    loff_t at = (loff_t)r->stream_written[stream];
    ssize_t n;
    do n = splice(r->pipe[stream], NULL, r->file[stream], &at, room, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0 && write_record(r, stream, r->stream_written[stream], (uint32_t)n) < 0) {
        if (!disk_full_error(errno)) exit(EXIT_BROKEN);
        /* Spliced but not recorded: readers never see those bytes (the next move of
         * this stream overwrites them); they count as dropped. */
        r->disk_full = 1;
        r->dropped += (uint64_t)n;
    }
    return n;
}

/* Move what one stream's pipe holds now; never blocks. With ``drain`` (the job's end)
 * until the pipe is empty; otherwise a move shorter than asked for ends it: it usually
 * took all there was, and whatever is left (a partial move on a filling disk, a line
 * written meanwhile) keeps the pipe readable, so the next poll returns at once. A line
 * printed then costs a poll, a splice and a record's write, not also a splice that
 * fails with EAGAIN. */
static void pump_stream(struct relay *r, int stream, int drain) {
    while (r->open[stream]) {
        size_t room = CHUNK;
        if (r->cap >= 0) {
            int64_t used = (int64_t)(r->written + (r->records + 1) * RECORD_SIZE);
            int64_t left = r->cap - used;
            room = left < CHUNK ? (left > 0 ? (size_t)left : 0) : CHUNK;
        }
        size_t asked = room > 0 ? room : sizeof drop_buffer;
        ssize_t n = room > 0 ? move(r, stream, room) : drop(r, stream);
        if (n < 0 && room > 0 && disk_full_error(errno)) {
            /* The disk is full: the job must not block on a full pipe, so this chunk is
             * dropped (and counted); writing resumes when space returns. */
            r->disk_full = 1;
            asked = sizeof drop_buffer;
            n = drop(r, stream);
        }
        if (n < 0) {
            if (errno == EAGAIN) return;
            exit(EXIT_BROKEN);
        }
        if (n == 0) r->open[stream] = 0;
        else if (!drain && (size_t)n < asked) return;
    }
}

/* stdout before stderr, as the Python relay; only the streams poll found ready, unless
 * draining both at the end. */
static void pump(struct relay *r, const int ready[3], int drain) {
    for (int stream = STDOUT_STREAM; stream <= STDERR_STREAM; stream++)
        if (drain || ready[stream]) pump_stream(r, stream, drain);
}

static int status_record(struct relay *r, const char *wait_status, char *out) {
    char text[STATUS_RECORD_SIZE + 1];
    int n = snprintf(text, sizeof text, "%s %" PRIu64 " %" PRIu64 " %d", wait_status,
                     r->written, r->dropped, r->disk_full);
    memset(out, ' ', STATUS_RECORD_SIZE);
    if (n > STATUS_RECORD_SIZE) n = STATUS_RECORD_SIZE;
    memcpy(out, text, (size_t)n);
    return n;
}

/* Keep the drop count in the status record while the job runs ("-": no wait status
 * yet), so dropped output is never silent even if the init is killed before the end. */
static void checkpoint(struct relay *r, int status_fd) {
    if (r->dropped == r->checkpointed) return;
    char record[STATUS_RECORD_SIZE];
    r->checkpointed = r->dropped;
    status_record(r, "-", record);
    (void)!pwrite(status_fd, record, STATUS_RECORD_SIZE, 0);
}

/* Say on stderr, as the last record, how much output was dropped (if any). */
static void finish(struct relay *r) {
    if (!r->dropped) return;
    char notice[200];
    int n;
    if (r->disk_full)
        n = snprintf(notice, sizeof notice,
                     "\n[remo: the server's disk was full; %" PRIu64 " bytes were dropped]\n",
                     r->dropped);
    else
        n = snprintf(notice, sizeof notice,
                     "\n[remo: output truncated at %" PRId64 " bytes; %" PRIu64
                     " bytes were dropped]\n",
                     r->cap, r->dropped);
    uint64_t at = r->stream_written[STDERR_STREAM];
    if (pwrite(r->file[STDERR_STREAM], notice, (size_t)n, (off_t)at) == n)
        (void)write_record(r, STDERR_STREAM, at, (uint32_t)n);
}

static void ignore(int sig) { (void)sig; }

/* SIGCHLD and the forwarded signals arrive on a signalfd. As PID 1 of its namespace the
 * kernel only delivers signals the init has a handler for, so the forwarded ones get a
 * handler that never runs (they stay blocked); otherwise they stay ignored, as the
 * Python init left them (the supervisor signals the job's cgroup itself). */
static int signals(int pid1) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < FORWARDED_COUNT; i++) {
        if (pid1) {
            struct sigaction action = {0};
            action.sa_handler = ignore;
            sigaction(forwarded[i], &action, NULL);
        }
        sigaddset(&set, forwarded[i]);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static int64_t number(const char *text) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || *end || end == text) {
        fprintf(stderr, "remo-relay: not a number: %s\n", text);
        exit(EXIT_BROKEN);
    }
    return value;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr,
                "usage: remo-relay JOB_PID PID1 CAP OUT_PIPE ERR_PIPE OUT_FILE ERR_FILE "
                "RECORDS STATUS\n");
        return EXIT_BROKEN;
    }
    pid_t job = (pid_t)number(argv[1]);
    int pid1 = (int)number(argv[2]);
    struct relay r = {0};
    r.cap = number(argv[3]);
    r.pipe[STDOUT_STREAM] = (int)number(argv[4]);
    r.pipe[STDERR_STREAM] = (int)number(argv[5]);
    r.file[STDOUT_STREAM] = (int)number(argv[6]);
    r.file[STDERR_STREAM] = (int)number(argv[7]);
    r.records_fd = (int)number(argv[8]);
    int status_fd = (int)number(argv[9]);
    r.open[STDOUT_STREAM] = r.open[STDERR_STREAM] = 1;
    int signal_fd = signals(pid1);
    if (signal_fd < 0) return EXIT_BROKEN;

    int have_status = 0, status = 0;
    /* Reap first: a SIGCHLD taken by the Python init before the exec is not pending.
     * Then only once the signalfd had something (not once per line printed). */
    int reap = 1;
    for (;;) {
        while (reap) {
            int wait_status;
            pid_t pid = waitpid(-1, &wait_status, WNOHANG);
            if (pid <= 0) reap = 0;
            else if (pid == job) have_status = 1, status = wait_status;
        }
        if (have_status) break;
        struct pollfd polls[3];
        int at[3] = {0, 0, 0}; /* stream -> its entry in polls, 0: not polled */
        nfds_t count = 0;
        polls[count++] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
        for (int stream = STDOUT_STREAM; stream <= STDERR_STREAM; stream++)
            if (r.open[stream]) {
                at[stream] = (int)count;
                polls[count++] = (struct pollfd){.fd = r.pipe[stream], .events = POLLIN};
            }
        if (poll(polls, count, -1) < 0) {
            if (errno != EINTR) return EXIT_BROKEN;
            continue;
        }
        if (polls[0].revents) {
            struct signalfd_siginfo info;
            while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info)
                if (pid1 && info.ssi_signo != SIGCHLD) kill(-1, (int)info.ssi_signo);
            reap = 1;
        }
        int ready[3] = {0, 0, 0};
        for (int stream = STDOUT_STREAM; stream <= STDERR_STREAM; stream++)
            ready[stream] = at[stream] && polls[at[stream]].revents;
        pump(&r, ready, 0);
        checkpoint(&r, status_fd);
    }
    /* The main process is gone: take what is already in the pipes (helpers it left may
     * still hold them open; they are killed with the job and not waited for). */
    pump(&r, NULL, 1);
    finish(&r);
    char wait_text[16], record[STATUS_RECORD_SIZE];
    snprintf(wait_text, sizeof wait_text, "%d", status);
    status_record(&r, wait_text, record);
    /* Overwrites the placeholder in place: no new block, so it is kept on a full disk. */
    if (pwrite(status_fd, record, STATUS_RECORD_SIZE, 0) != STATUS_RECORD_SIZE)
        return EXIT_BROKEN;
    return 0;
}
