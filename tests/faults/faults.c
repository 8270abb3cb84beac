/* Faults for the tests, preloaded into a server (LD_PRELOAD): system calls
 * that fail as they do at the machine's limits, or are interrupted. Each is
 * chosen by an environment variable; those marked "while" act only while
 * the file named by FAULTS_TRIGGER exists, so that the server can start.
 *
 *   FAULTS_MAPS=1     while: mmap, mmap64 and mprotect fail with ENOMEM, as
 *                     when vm.max_map_count or RLIMIT_AS is reached
 *   FAULTS_THREADS=1  while: pthread_create fails with EAGAIN
 *   FAULTS_PREAD=1    every other pread and pread64 fails with EINTR
 *
 * Only calls made through the dynamic linker are seen: glibc's own (malloc's
 * and pthread_create's maps) are not.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int chosen(const char *name) {
  const char *v = getenv(name);
  return v && v[0] == '1';
}

static int on(const char *name) {
  const char *trigger = getenv("FAULTS_TRIGGER");
  return chosen(name) && trigger && syscall(SYS_faccessat, AT_FDCWD, trigger, F_OK) == 0;
}

static void *mapped(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (on("FAULTS_MAPS")) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  return mapped(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  return mapped(addr, len, prot, flags, fd, off);
}

int mprotect(void *addr, size_t len, int prot) {
  if (on("FAULTS_MAPS")) {
    errno = ENOMEM;
    return -1;
  }
  return (int)syscall(SYS_mprotect, addr, len, prot);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
  static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  if (on("FAULTS_THREADS"))
    return EAGAIN;
  if (!real)
    real = dlsym(RTLD_NEXT, "pthread_create");
  return real(thread, attr, start, arg);
}

static atomic_uint preads;

static ssize_t pread_at(int fd, void *buf, size_t count, off_t off) {
  if (chosen("FAULTS_PREAD") && atomic_fetch_add(&preads, 1) % 2 == 0) {
    errno = EINTR;
    return -1;
  }
  return syscall(SYS_pread64, fd, buf, count, off);
}

ssize_t pread(int fd, void *buf, size_t count, off_t off) { return pread_at(fd, buf, count, off); }

ssize_t pread64(int fd, void *buf, size_t count, off_t off) { return pread_at(fd, buf, count, off); }
