// Linux file-system calls Node lacks. For the files engine (src/engines/files/native.ts):
// nanosecond timestamps (utimensat), user xattrs (l*xattr), mknod for FIFOs and devices, and an
// atomic directory swap (renameat2 RENAME_EXCHANGE), writeFiles (a batch of small new files
// created on the thread pool in one trip) and writeAt (a restored file's bytes at an offset, through
// O_DIRECT when its descriptor has the flag). For the local storage backend (src/storage/native.ts):
// writeObject (a temp file written with O_DIRECT, fsynced and renamed, in one trip) and readAt (a
// range of a pack). writeAt, writeObject and readAt wait for the disk, so they run on threads of
// their own (see "threads for calls that wait for the device" below).
// Paths are Buffers of raw bytes; symlinks are never
// followed. Errors are thrown as Error objects with .code = "E..." and .errno like Node's fs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <unistd.h>
#include <uv.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define CHECK(call)                                                                                  \
  do {                                                                                               \
    if ((call) != napi_ok) {                                                                         \
      napi_throw_error(env, NULL, "bunker-fs: bad arguments");                                      \
      return NULL;                                                                                   \
    }                                                                                                \
  } while (0)

static napi_value errno_error(napi_env env, int err, const char *syscall_name) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", syscall_name, strerror(err));
  const char *code = "EIO";
  switch (err) {
    case ENOENT: code = "ENOENT"; break;
    case EEXIST: code = "EEXIST"; break;
    case ENOTSUP: code = "ENOTSUP"; break;
    case ENODATA: code = "ENODATA"; break;
    case EPERM: code = "EPERM"; break;
    case EACCES: code = "EACCES"; break;
    case EINVAL: code = "EINVAL"; break;
    case ENOTDIR: code = "ENOTDIR"; break;
    case ENOTEMPTY: code = "ENOTEMPTY"; break;
    case ENOSPC: code = "ENOSPC"; break;
    case E2BIG: code = "E2BIG"; break;
    case ERANGE: code = "ERANGE"; break;
    case ELOOP: code = "ELOOP"; break;
    case EXDEV: code = "EXDEV"; break;
    case EISDIR: code = "EISDIR"; break;
    case EROFS: code = "EROFS"; break;
    case EDQUOT: code = "EDQUOT"; break;
    case ENOMEM: code = "ENOMEM"; break;
    case ECANCELED: code = "ECANCELED"; break;
  }
  napi_value error, code_v, msg_v, errno_v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v);
  napi_create_error(env, code_v, msg_v, &error);
  napi_set_named_property(env, error, "code", code_v);
  napi_create_int32(env, -err, &errno_v);
  napi_set_named_property(env, error, "errno", errno_v);
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall_name) {
  napi_throw(env, errno_error(env, err, syscall_name));
  return NULL;
}

// Copies a Buffer argument into a NUL-terminated C string (caller frees). NULL on bad input.
static char *arg_path(napi_env env, napi_value v) {
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return NULL;
  if (memchr(data, 0, len) != NULL) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  memcpy(s, data, len);
  s[len] = 0;
  return s;
}

static int64_t arg_big(napi_env env, napi_value v, bool *ok) {
  int64_t out = 0;
  bool lossless = true;
  *ok = napi_get_value_bigint_int64(env, v, &out, &lossless) == napi_ok && lossless;
  return out;
}

// utimensat(path: Buffer, atimeNs: bigint, mtimeNs: bigint): sets both times, not following symlinks.
static napi_value utimens(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) CHECK(napi_invalid_arg);
  char *path = arg_path(env, argv[0]);
  bool ok1, ok2;
  int64_t at = arg_big(env, argv[1], &ok1), mt = arg_big(env, argv[2], &ok2);
  if (!path || !ok1 || !ok2) {
    free(path);
    CHECK(napi_invalid_arg);
  }
  // Floor division so times before 1970 keep a non-negative nanosecond part.
  struct timespec ts[2];
  int64_t as = at / 1000000000, an = at % 1000000000;
  if (an < 0) an += 1000000000, as -= 1;
  int64_t ms = mt / 1000000000, mn = mt % 1000000000;
  if (mn < 0) mn += 1000000000, ms -= 1;
  ts[0].tv_sec = as, ts[0].tv_nsec = an;
  ts[1].tv_sec = ms, ts[1].tv_nsec = mn;
  int rc = utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
  int err = errno;
  free(path);
  if (rc != 0) return throw_errno(env, err, "utimensat");
  return NULL;
}

// mknod(path: Buffer, mode: number, rdev: bigint): mode includes the file type (S_IFIFO, S_IFCHR...).
static napi_value do_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) CHECK(napi_invalid_arg);
  char *path = arg_path(env, argv[0]);
  uint32_t mode;
  bool ok;
  int64_t dev = arg_big(env, argv[2], &ok);
  if (!path || !ok || napi_get_value_uint32(env, argv[1], &mode) != napi_ok) {
    free(path);
    CHECK(napi_invalid_arg);
  }
  int rc = mknod(path, (mode_t)mode, (dev_t)dev);
  int err = errno;
  free(path);
  if (rc != 0) return throw_errno(env, err, "mknod");
  return NULL;
}

// exchange(a: Buffer, b: Buffer): atomically swaps two paths (both must exist).
static napi_value exchange(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) CHECK(napi_invalid_arg);
  char *a = arg_path(env, argv[0]);
  char *b = arg_path(env, argv[1]);
  if (!a || !b) {
    free(a), free(b);
    CHECK(napi_invalid_arg);
  }
  long rc = syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
  int err = errno;
  free(a), free(b);
  if (rc != 0) return throw_errno(env, err, "renameat2");
  return NULL;
}

// The "user." attributes of a path (fd < 0; not following symlinks) or of an open descriptor.
static ssize_t list_xattrs(const char *path, int fd, char *list, size_t size) {
  return fd >= 0 ? flistxattr(fd, list, size) : llistxattr(path, list, size);
}

static ssize_t get_xattr(const char *path, int fd, const char *name, void *value, size_t size) {
  return fd >= 0 ? fgetxattr(fd, name, value, size) : lgetxattr(path, name, value, size);
}

static napi_value collect_xattrs(napi_env env, const char *path, int fd) {
  napi_value result;
  napi_create_array(env, &result);
  char stackbuf[4096];
  char *list = stackbuf;
  ssize_t n = list_xattrs(path, fd, list, sizeof stackbuf);
  if (n < 0 && errno == ERANGE) {
    ssize_t need = list_xattrs(path, fd, NULL, 0);
    if (need > 0) {
      list = malloc((size_t)need);
      n = list ? list_xattrs(path, fd, list, (size_t)need) : -1;
    }
  }
  if (n < 0) {
    int err = errno;
    if (list != stackbuf) free(list);
    if (err == ENOTSUP) return result;  // file system without xattrs: nothing to keep
    return throw_errno(env, err, fd >= 0 ? "flistxattr" : "llistxattr");
  }
  uint32_t count = 0;
  for (char *name = list; name < list + n; name += strlen(name) + 1) {
    if (strncmp(name, "user.", 5) != 0) continue;
    ssize_t vlen = get_xattr(path, fd, name, NULL, 0);
    if (vlen < 0) continue;  // removed meanwhile
    char *val = malloc(vlen > 0 ? (size_t)vlen : 1);
    if (!val) continue;
    vlen = get_xattr(path, fd, name, val, vlen > 0 ? (size_t)vlen : 0);
    if (vlen < 0) {
      free(val);
      continue;
    }
    napi_value pair, nbuf, vbuf;
    void *dst;
    napi_create_buffer_copy(env, strlen(name), name, &dst, &nbuf);
    napi_create_buffer_copy(env, (size_t)vlen, vlen > 0 ? val : "", &dst, &vbuf);
    free(val);
    napi_create_array_with_length(env, 2, &pair);
    napi_set_element(env, pair, 0, nbuf);
    napi_set_element(env, pair, 1, vbuf);
    napi_set_element(env, result, count++, pair);
  }
  if (list != stackbuf) free(list);
  return result;
}

// userXattrs(path: Buffer): Array<[Buffer name, Buffer value]> of the "user." attributes, not following symlinks.
static napi_value user_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) CHECK(napi_invalid_arg);
  char *path = arg_path(env, argv[0]);
  if (!path) CHECK(napi_invalid_arg);
  napi_value result = collect_xattrs(env, path, -1);
  free(path);
  return result;
}

// fdUserXattrs(fd: number): the same for an open descriptor (no path to resolve again).
static napi_value fd_user_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) CHECK(napi_invalid_arg);
  return collect_xattrs(env, NULL, fd);
}

// setXattr(path: Buffer, name: Buffer, value: Buffer): sets one attribute, not following symlinks.
static napi_value set_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) CHECK(napi_invalid_arg);
  char *path = arg_path(env, argv[0]);
  char *name = arg_path(env, argv[1]);
  void *val;
  size_t vlen;
  bool is_buf = false;
  if (!path || !name || napi_is_buffer(env, argv[2], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[2], &val, &vlen) != napi_ok) {
    free(path), free(name);
    CHECK(napi_invalid_arg);
  }
  int rc = lsetxattr(path, name, vlen > 0 ? val : "", vlen, 0);
  int err = errno;
  free(path), free(name);
  if (rc != 0) return throw_errno(env, err, "lsetxattr");
  return NULL;
}

// writeFiles(dir: Buffer, names: Buffer, parts: Buffer[], meta: Uint32Array, mtimes: BigInt64Array): Promise<void>
// Creates a batch of new files in one directory on libuv's thread pool: one pool trip for up to
// hundreds of small files instead of three to five per file. names: the files' names, each followed
// by a NUL; parts: their contents back to back, in pieces that need not line up with the files (the
// blobs as the repository returned them, so nothing is joined); meta: per file [length, mode, flags,
// uid, gid] (flags: 1 fchmod to mode, 2 fchown to uid/gid); mtimes: per file, nanoseconds (atime and
// mtime). Each file is openat(dir, O_CREAT | O_EXCL | O_NOFOLLOW), written, fchown'ed, fchmod'ed,
// futimens'ed and closed; the directory itself is opened O_DIRECTORY | O_NOFOLLOW. The first failure
// stops the batch and rejects with .code/.errno/.syscall and .index (the file; -1: the directory).
#define WF_META 5
#define WF_CHMOD 1
#define WF_CHOWN 2

typedef struct {
  const uint8_t *base;
  size_t len;
} wf_part_t;

static bool typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  bool is = false;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  if (napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) != napi_ok) return false;
  return type == want;
}

/** Byte arrays handed to work on the thread pool, each referenced (kept alive) until it is done. */
typedef struct {
  wf_part_t *items;
  napi_ref *refs;
  size_t count;
  size_t bytes;
} parts_t;

/** Takes every element of `array` (Uint8Arrays, Buffers included); false on anything else. */
static bool parts_take(napi_env env, napi_value array, parts_t *p) {
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, &count) != napi_ok) return false;
  p->items = calloc(count + 1, sizeof *p->items);
  p->refs = calloc(count + 1, sizeof *p->refs);
  p->count = count;
  if (!p->items || !p->refs) return false;
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    void *data;
    size_t len;
    if (napi_get_element(env, array, i, &v) != napi_ok || !typed_array(env, v, napi_uint8_array, &data, &len) ||
        napi_create_reference(env, v, 1, &p->refs[i]) != napi_ok)
      return false;
    p->items[i].base = data, p->items[i].len = len;
    p->bytes += len;
  }
  return true;
}

static void parts_release(napi_env env, parts_t *p) {
  for (size_t i = 0; p->refs && i < p->count; i++) {
    if (p->refs[i]) napi_delete_reference(env, p->refs[i]);
  }
  free(p->refs);
  free(p->items);
}

/** Settles a thread-pool call's promise: undefined, or an errno error with .syscall (and .index if ≥ -1). */
static void settle_call(napi_env env, napi_deferred deferred, int err, const char *syscall_name, long index) {
  if (!err) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, deferred, undef);
    return;
  }
  napi_value error = errno_error(env, err, syscall_name), sys;
  if (index >= -1) {
    napi_value index_v;
    napi_create_int64(env, index, &index_v);
    napi_set_named_property(env, error, "index", index_v);
  }
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_reject_deferred(env, deferred, error);
}

// ---------- threads for calls that wait for the device ----------

/**
 * Writes through O_DIRECT (a restored file's bytes, a pack) hold their thread until the device has the
 * data: ~0.75 ms per MiB on this VM's disk, ~1 s of a 1.1 GB restore; so do reads of packs the page
 * cache does not hold. On libuv's pool, sized to the
 * cores for the codec's CPU work, that left the codec waiting behind them while a core sat idle. These
 * calls get threads of their own, the way Go parks a goroutine blocked in a syscall off its CPU slots.
 * One set per Node environment; started on first use; completions reach the main thread through a
 * uv_async_t and run inside a callback scope, so promises settle and microtasks run as after any I/O.
 */
#define DEVICE_THREADS 4

typedef struct device_job {
  struct device_job *next;
  napi_async_execute_callback execute;
  napi_async_complete_callback complete;
  void *data;
} device_job_t;

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  device_job_t *queue_head, *queue_tail; // waiting for a thread
  device_job_t *done;                    // finished, newest first
  uv_async_t async;
  napi_env env;
  napi_async_context context;
  napi_ref resource;
  int threads;
  size_t in_flight;                      // queued or running or done but not completed: keeps the loop alive
  bool closing;
} device_pool_t;

static void *device_thread(void *arg) {
  device_pool_t *pool = arg;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->queue_head && !pool->closing) pthread_cond_wait(&pool->wake, &pool->lock);
    device_job_t *job = pool->queue_head;
    if (!job) break; // closing and nothing left
    pool->queue_head = job->next;
    if (!pool->queue_head) pool->queue_tail = NULL;
    pthread_mutex_unlock(&pool->lock);
    job->execute(pool->env, job->data);
    pthread_mutex_lock(&pool->lock);
    job->next = pool->done;
    pool->done = job;
    if (!pool->closing) uv_async_send(&pool->async);
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

/** On the main thread: runs the complete callbacks of finished jobs, oldest first. */
static void device_done(uv_async_t *handle) {
  device_pool_t *pool = handle->data;
  pthread_mutex_lock(&pool->lock);
  device_job_t *done = pool->done;
  pool->done = NULL;
  pthread_mutex_unlock(&pool->lock);
  device_job_t *oldest = NULL;
  while (done) {
    device_job_t *next = done->next;
    done->next = oldest;
    oldest = done;
    done = next;
  }
  napi_env env = pool->env;
  napi_handle_scope handles;
  napi_value resource;
  napi_callback_scope scope;
  napi_open_handle_scope(env, &handles);
  napi_get_reference_value(env, pool->resource, &resource);
  napi_open_callback_scope(env, resource, pool->context, &scope);
  while (oldest) {
    device_job_t *job = oldest;
    oldest = job->next;
    job->complete(env, napi_ok, job->data);
    free(job);
    if (--pool->in_flight == 0) uv_unref((uv_handle_t *)&pool->async);
  }
  napi_close_callback_scope(env, scope); // runs the microtasks the settled promises queued
  napi_close_handle_scope(env, handles);
}

/**
 * The environment is going away: threads finish what they hold and exit; completions still due are
 * dropped (their promises belong to the environment). The struct is not freed: a thread may still
 * hold its lock.
 */
static void device_pool_cleanup(void *arg) {
  device_pool_t *pool = arg;
  pthread_mutex_lock(&pool->lock);
  pool->closing = true;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  uv_close((uv_handle_t *)&pool->async, NULL);
}

static device_pool_t *device_pool(napi_env env) {
  device_pool_t *pool = NULL;
  if (napi_get_instance_data(env, (void **)&pool) == napi_ok && pool) return pool;
  uv_loop_t *loop;
  napi_value resource, name;
  pool = calloc(1, sizeof *pool);
  if (!pool || napi_get_uv_event_loop(env, &loop) != napi_ok) return free(pool), NULL;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pool->env = env;
  if (uv_async_init(loop, &pool->async, device_done) != 0) return free(pool), NULL;
  pool->async.data = pool;
  uv_unref((uv_handle_t *)&pool->async);
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &pool->resource);
  napi_create_string_utf8(env, "bunker-fs:device", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &pool->context);
  napi_set_instance_data(env, pool, NULL, NULL);
  napi_add_env_cleanup_hook(env, device_pool_cleanup, pool);
  return pool;
}

/** Like queue_work(), on the device threads. */
static napi_value queue_device_work(napi_env env, napi_async_execute_callback execute, napi_async_complete_callback complete, void *data,
                                    napi_deferred *deferred) {
  device_pool_t *pool = device_pool(env);
  device_job_t *job = calloc(1, sizeof *job);
  if (!pool || !job) {
    free(job);
    return NULL;
  }
  napi_value promise;
  napi_create_promise(env, deferred, &promise);
  job->execute = execute, job->complete = complete, job->data = data;
  if (pool->in_flight++ == 0) uv_ref((uv_handle_t *)&pool->async);
  pthread_mutex_lock(&pool->lock);
  if (pool->queue_tail) pool->queue_tail->next = job;
  else pool->queue_head = job;
  pool->queue_tail = job;
  pthread_t thread;
  if (pool->threads < DEVICE_THREADS && pthread_create(&thread, NULL, device_thread, pool) == 0) {
    pthread_detach(thread);
    pool->threads++;
  }
  pthread_cond_signal(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  return promise;
}

/** Settles a call that resolves to a byte count: `bytes`, or the errno error as settle_call() makes it. */
static void settle_bytes(napi_env env, napi_deferred deferred, int err, const char *syscall_name, size_t bytes) {
  if (err) return settle_call(env, deferred, err, syscall_name, -2);
  napi_value count;
  napi_create_double(env, (double)bytes, &count);
  napi_resolve_deferred(env, deferred, count);
}

/** Queues `execute` on the thread pool and `complete` after it on the main thread; returns the promise `*deferred` settles. */
static napi_value queue_work(napi_env env, const char *name, napi_async_execute_callback execute, napi_async_complete_callback complete,
                             void *data, napi_deferred *deferred, napi_async_work *work) {
  napi_value promise, resource_name;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

/** queue_work() on the device threads; on libuv's pool if those cannot be had. */
static napi_value on_device_threads(napi_env env, const char *name, napi_async_execute_callback execute, napi_async_complete_callback complete,
                                    void *data, napi_deferred *deferred, napi_async_work *work) {
  napi_value promise = queue_device_work(env, execute, complete, data, deferred);
  return promise ? promise : queue_work(env, name, execute, complete, data, deferred, work);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref names_ref, meta_ref, mtimes_ref;
  parts_t parts;
  char *dir;
  const char *names;
  const uint32_t *meta;
  const int64_t *mtimes;
  size_t count;
  int err;
  long index;
  const char *syscall_name;
} write_files_t;

static void write_files_execute(napi_env env, void *arg) {
  (void)env;
  write_files_t *w = arg;
  w->index = -1;
  int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) {
    w->err = errno, w->syscall_name = "open";
    return;
  }
  const char *name = w->names;
  size_t part = 0, at = 0;  // the next byte: parts[part].base[at]
  for (size_t i = 0; i < w->count; i++) {
    const uint32_t *m = w->meta + i * WF_META;
    size_t left = m[0];
    w->index = (long)i;
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)(m[1] & 0777));
    if (fd < 0) {
      w->err = errno, w->syscall_name = "open";
      break;
    }
    while (left > 0) {
      while (at == w->parts.items[part].len) part++, at = 0;  // lengths were checked: the parts hold every byte
      size_t n = w->parts.items[part].len - at;
      if (n > left) n = left;
      ssize_t done = write(fd, w->parts.items[part].base + at, n);
      if (done < 0 && errno == EINTR) continue;
      if (done <= 0) {
        w->err = done < 0 ? errno : EIO, w->syscall_name = "write";
        break;
      }
      at += (size_t)done, left -= (size_t)done;
    }
    if (!w->err && (m[2] & WF_CHOWN) && fchown(fd, (uid_t)m[3], (gid_t)m[4]) != 0) w->err = errno, w->syscall_name = "fchown";
    if (!w->err && (m[2] & WF_CHMOD) && fchmod(fd, (mode_t)(m[1] & 07777)) != 0) w->err = errno, w->syscall_name = "fchmod";
    if (!w->err) {
      int64_t t = w->mtimes[i], s = t / 1000000000, ns = t % 1000000000;
      if (ns < 0) ns += 1000000000, s -= 1;
      struct timespec ts[2] = {{.tv_sec = s, .tv_nsec = ns}, {.tv_sec = s, .tv_nsec = ns}};
      if (futimens(fd, ts) != 0) w->err = errno, w->syscall_name = "futimens";
    }
    if (close(fd) != 0 && !w->err && errno != EINTR) w->err = errno, w->syscall_name = "close";
    if (w->err) break;
    name += strlen(name) + 1;
  }
  close(dfd);
}

static void write_files_free(napi_env env, write_files_t *w) {
  if (w->names_ref) napi_delete_reference(env, w->names_ref);
  if (w->meta_ref) napi_delete_reference(env, w->meta_ref);
  if (w->mtimes_ref) napi_delete_reference(env, w->mtimes_ref);
  parts_release(env, &w->parts);
  free(w->dir);
  free(w);
}

static void write_files_complete(napi_env env, napi_status status, void *arg) {
  write_files_t *w = arg;
  if (status != napi_ok && !w->err) w->err = ECANCELED, w->syscall_name = "writeFiles";
  settle_call(env, w->deferred, w->err, w->syscall_name, w->index);
  napi_delete_async_work(env, w->work);
  write_files_free(env, w);
}

static napi_value write_files(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) CHECK(napi_invalid_arg);
  void *names, *meta, *mtimes;
  size_t names_len, meta_len, mtimes_len;
  bool is_buf = false;
  if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, argv[1], &names, &names_len) != napi_ok ||
      !typed_array(env, argv[3], napi_uint32_array, &meta, &meta_len) ||
      !typed_array(env, argv[4], napi_bigint64_array, &mtimes, &mtimes_len) || meta_len % WF_META != 0 ||
      mtimes_len != meta_len / WF_META)
    CHECK(napi_invalid_arg);
  size_t count = mtimes_len;
  // Every name: non-empty, no "/", NUL-terminated, exactly `count` of them; lengths add up to the parts.
  size_t at = 0, total = 0;
  const char *nm = names;
  for (size_t i = 0; i < count; i++) {
    const char *end = at < names_len ? memchr(nm + at, 0, names_len - at) : NULL;
    if (!end || end == nm + at || memchr(nm + at, '/', (size_t)(end - (nm + at))) != NULL) CHECK(napi_invalid_arg);
    at = (size_t)(end - nm) + 1;
    total += ((const uint32_t *)meta)[i * WF_META];
  }
  if (at != names_len) CHECK(napi_invalid_arg);
  write_files_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "writeFiles");
  w->dir = arg_path(env, argv[0]);
  if (!w->dir || !parts_take(env, argv[2], &w->parts) || w->parts.bytes != total) {
    write_files_free(env, w);
    CHECK(napi_invalid_arg);
  }
  w->names = names, w->meta = meta, w->mtimes = mtimes, w->count = count;
  napi_create_reference(env, argv[1], 1, &w->names_ref);
  napi_create_reference(env, argv[3], 1, &w->meta_ref);
  napi_create_reference(env, argv[4], 1, &w->mtimes_ref);
  return queue_work(env, "bunker-fs:writeFiles", write_files_execute, write_files_complete, w, &w->deferred, &w->work);
}

// ---------- writeObject: a repository object written durably in one thread-pool trip ----------

/** Bytes per O_DIRECT write: each goes to the device before write() returns. */
#define DIRECT_BYTES (1024 * 1024)
/** O_DIRECT wants buffer, offset and length aligned to the logical block size (512 or 4096). */
#define DIRECT_ALIGN 4096

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  parts_t parts;
  char *temp, *final, *dir;
  bool direct;
  int err;
  const char *syscall_name;
} write_object_t;

/** pwrite of n bytes at off, retrying short writes and EINTR; 0 or an errno. */
static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off) {
  while (n > 0) {
    ssize_t done = pwrite(fd, p, n, off);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return done < 0 ? errno : EIO;
    p += done, n -= (size_t)done, off += done;
  }
  return 0;
}

/** Every byte of the parts at off, through the page cache (or as they are, to a non-O_DIRECT descriptor). */
static int write_parts_at(int fd, const parts_t *parts, off_t off) {
  for (size_t i = 0; i < parts->count; i++) {
    int err = pwrite_all(fd, parts->items[i].base, parts->items[i].len, off);
    if (err) return err;
    off += (off_t)parts->items[i].len;
  }
  return 0;
}

/**
 * The parts at `off` (a multiple of DIRECT_ALIGN) through a reused aligned buffer on an O_DIRECT
 * descriptor: no copy into the page cache. On this VM that copy was a 1.1 GB store's largest kernel
 * cost (copy_folio_from_iter_atomic: 17 % of its CPU in one profile; side by side, 0.2-0.4 s less
 * system time) and a restore's (26 %). With `final` the last partial block is padded and the file cut
 * back to off + the parts' length; without it, that partial block is left unwritten. *written: the
 * bytes written, a multiple of DIRECT_ALIGN unless final.
 */
static int write_direct_at(int fd, const parts_t *parts, off_t off, bool final, size_t *written, const char **syscall_name) {
  static __thread uint8_t *buffer;
  *written = 0;
  if (!buffer && posix_memalign((void **)&buffer, DIRECT_ALIGN, DIRECT_BYTES) != 0) {
    buffer = NULL;
    *syscall_name = "posix_memalign";
    return ENOMEM;
  }
  size_t filled = 0;
  for (size_t i = 0; i < parts->count; i++) {
    const uint8_t *p = parts->items[i].base;
    size_t left = parts->items[i].len;
    while (left > 0) {
      size_t n = DIRECT_BYTES - filled < left ? DIRECT_BYTES - filled : left;
      memcpy(buffer + filled, p, n);
      filled += n, p += n, left -= n;
      if (filled == DIRECT_BYTES) {
        int err = pwrite_all(fd, buffer, filled, off + (off_t)*written);
        if (err) return *syscall_name = "write", err;
        *written += filled;
        filled = 0;
      }
    }
  }
  size_t whole = filled / DIRECT_ALIGN * DIRECT_ALIGN;
  if (final && whole != filled) {
    size_t padded = whole + DIRECT_ALIGN;
    memset(buffer + filled, 0, padded - filled);
    int err = pwrite_all(fd, buffer, padded, off + (off_t)*written);
    if (err) return *syscall_name = "write", err;
    *written += filled;
    if (ftruncate(fd, off + (off_t)*written) != 0) return *syscall_name = "ftruncate", errno;
  } else if (whole > 0) {
    int err = pwrite_all(fd, buffer, whole, off + (off_t)*written);
    if (err) return *syscall_name = "write", err;
    *written += whole;
  }
  return 0;
}

/** Clears O_DIRECT on a descriptor whose file system refused the direct writes; false if that fails too. */
static bool drop_direct(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0;
}

static void write_object_execute(napi_env env, void *arg) {
  (void)env;
  write_object_t *w = arg;
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = w->direct ? open(w->temp, flags | O_DIRECT, 0600) : -1;
  bool direct = fd >= 0;
  if (w->direct && fd < 0 && errno == EINVAL) {
    // File systems without O_DIRECT (older tmpfs, some FUSE) refuse the flag, some only after
    // creating the file: write through the page cache instead.
    unlink(w->temp);
    fd = open(w->temp, flags, 0600);
  } else if (!w->direct) {
    fd = open(w->temp, flags, 0600);
  }
  if (fd < 0) {
    w->err = errno, w->syscall_name = "open";
    return;
  }
  if (direct) {
    size_t written;
    w->err = write_direct_at(fd, &w->parts, 0, true, &written, &w->syscall_name);
    // Some file systems take the flag at open and refuse the writes: start over through the cache.
    if (w->err == EINVAL && drop_direct(fd) && ftruncate(fd, 0) == 0) {
      direct = false;
      w->err = 0;
    }
  }
  if (!direct && (w->err = write_parts_at(fd, &w->parts, 0)) != 0) w->syscall_name = "write";
  // Durable before it gets its name: a crash leaves either no object or the whole object.
  if (!w->err && fsync(fd) != 0) w->err = errno, w->syscall_name = "fsync";
  if (close(fd) != 0 && !w->err && errno != EINTR) w->err = errno, w->syscall_name = "close";
  if (!w->err && rename(w->temp, w->final) != 0) w->err = errno, w->syscall_name = "rename";
  if (w->err) {
    unlink(w->temp);
    return;
  }
  // The rename itself is durable once the directory is synced.
  int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    w->err = errno, w->syscall_name = "open";
    return;
  }
  if (fsync(dfd) != 0) w->err = errno, w->syscall_name = "fsync";
  close(dfd);
}

static void write_object_free(napi_env env, write_object_t *w) {
  parts_release(env, &w->parts);
  free(w->temp);
  free(w->final);
  free(w->dir);
  free(w);
}

static void write_object_complete(napi_env env, napi_status status, void *arg) {
  write_object_t *w = arg;
  if (status != napi_ok && !w->err) w->err = ECANCELED, w->syscall_name = "writeObject";
  settle_call(env, w->deferred, w->err, w->syscall_name, -2);
  if (w->work) napi_delete_async_work(env, w->work);
  write_object_free(env, w);
}

/** writeObject(temp, final, dir, parts: Uint8Array[], direct: boolean) → Promise<void>. */
static napi_value write_object(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) CHECK(napi_invalid_arg);
  bool direct = false;
  if (napi_get_value_bool(env, argv[4], &direct) != napi_ok) CHECK(napi_invalid_arg);
  write_object_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "writeObject");
  w->direct = direct;
  w->temp = arg_path(env, argv[0]);
  w->final = arg_path(env, argv[1]);
  w->dir = arg_path(env, argv[2]);
  if (!w->temp || !w->final || !w->dir || !parts_take(env, argv[3], &w->parts)) {
    write_object_free(env, w);
    CHECK(napi_invalid_arg);
  }
  return on_device_threads(env, "bunker-fs:writeObject", write_object_execute, write_object_complete, w, &w->deferred, &w->work);
}

// ---------- writeAt: a restored file's contents, through O_DIRECT when the descriptor has it ----------

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  parts_t parts;
  int fd;
  int64_t off;
  bool final;
  size_t written;
  int err;
  const char *syscall_name;
} write_at_t;

static void write_at_execute(napi_env env, void *arg) {
  (void)env;
  write_at_t *w = arg;
  int fl = fcntl(w->fd, F_GETFL);
  if (fl < 0) {
    w->err = errno, w->syscall_name = "fcntl";
    return;
  }
  if (fl & O_DIRECT) {
    w->err = write_direct_at(w->fd, &w->parts, (off_t)w->off, w->final, &w->written, &w->syscall_name);
    // A file system that took the flag at open but refuses the writes: this call's bytes and every
    // later call's go through the page cache.
    if (w->err != EINVAL || !drop_direct(w->fd)) return;
    w->err = 0;
  }
  if ((w->err = write_parts_at(w->fd, &w->parts, (off_t)w->off)) != 0) w->syscall_name = "write";
  else w->written = w->parts.bytes;
}

static void write_at_complete(napi_env env, napi_status status, void *arg) {
  write_at_t *w = arg;
  if (status != napi_ok && !w->err) w->err = ECANCELED, w->syscall_name = "writeAt";
  settle_bytes(env, w->deferred, w->err, w->syscall_name, w->written);
  if (w->work) napi_delete_async_work(env, w->work);
  parts_release(env, &w->parts);
  free(w);
}

/** writeAt(fd, parts: Uint8Array[], position: number, final: boolean) → Promise<bytes written>. */
static napi_value write_at(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) CHECK(napi_invalid_arg);
  int32_t fd;
  int64_t off;
  bool final;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[2], &off) != napi_ok ||
      napi_get_value_bool(env, argv[3], &final) != napi_ok || fd < 0 || off < 0)
    CHECK(napi_invalid_arg);
  write_at_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "writeAt");
  if (!parts_take(env, argv[1], &w->parts)) {
    parts_release(env, &w->parts);
    free(w);
    CHECK(napi_invalid_arg);
  }
  w->fd = fd, w->off = off, w->final = final;
  return on_device_threads(env, "bunker-fs:writeAt", write_at_execute, write_at_complete, w, &w->deferred, &w->work);
}

// ---------- readAt: a range of an object (a pack), on the device threads ----------

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_ref;
  uint8_t *data;
  size_t length;
  int fd;
  int64_t position;
  size_t done;
  int err;
} read_at_t;

static void read_at_execute(napi_env env, void *arg) {
  (void)env;
  read_at_t *r = arg;
  while (r->done < r->length) {
    ssize_t n = pread(r->fd, r->data + r->done, r->length - r->done, (off_t)(r->position + (int64_t)r->done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->err = errno;
      return;
    }
    if (n == 0) return; // end of file: the caller sees fewer bytes than it asked for
    r->done += (size_t)n;
  }
}

static void read_at_complete(napi_env env, napi_status status, void *arg) {
  read_at_t *r = arg;
  if (status != napi_ok && !r->err) r->err = ECANCELED;
  settle_bytes(env, r->deferred, r->err, "read", r->done);
  napi_delete_reference(env, r->buffer_ref);
  if (r->work) napi_delete_async_work(env, r->work);
  free(r);
}

/**
 * readAt(fd, buffer, offset, length, position) → Promise<bytes read>: fills buffer[offset, offset +
 * length) from the file at `position`, fewer bytes only at its end. A read of a pack that is not in
 * the page cache waits for the disk, so it runs where writes to the disk do.
 */
static napi_value read_at(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) CHECK(napi_invalid_arg);
  int32_t fd;
  int64_t offset, length, position;
  void *data = NULL;
  size_t buffer_len = 0;
  napi_typedarray_type type;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_typedarray_info(env, argv[1], &type, &buffer_len, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || napi_get_value_int64(env, argv[2], &offset) != napi_ok || napi_get_value_int64(env, argv[3], &length) != napi_ok ||
      napi_get_value_int64(env, argv[4], &position) != napi_ok || fd < 0 || offset < 0 || length < 0 || position < 0 ||
      (uint64_t)offset + (uint64_t)length > buffer_len)
    CHECK(napi_invalid_arg);
  read_at_t *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, ENOMEM, "readAt");
  r->fd = fd, r->data = (uint8_t *)data + offset, r->length = (size_t)length, r->position = position;
  CHECK(napi_create_reference(env, argv[1], 1, &r->buffer_ref));
  return on_device_threads(env, "bunker-fs:readAt", read_at_execute, read_at_complete, r, &r->deferred, &r->work);
}

// ---------- statDir: a directory's names and their lstat, in one thread-pool trip ----------

/** int64 fields per entry in statDir's result. */
#define SD_FIELDS 12
enum { SD_ERRNO, SD_MODE, SD_UID, SD_GID, SD_SIZE, SD_BLOCKS, SD_NLINK, SD_DEV, SD_INO, SD_RDEV, SD_MTIME, SD_CTIME };

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *dir;
  size_t limit;
  char *names;  // each name followed by a NUL
  size_t names_len, names_cap;
  int64_t *stats;
  size_t count, stats_cap;
  bool truncated;
  int err;
  const char *syscall_name;
} stat_dir_t;

static int64_t ns_of(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static void stat_dir_execute(napi_env env, void *arg) {
  (void)env;
  stat_dir_t *w = arg;
  int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (!d) {
    w->err = errno, w->syscall_name = "opendir";
    if (dfd >= 0) close(dfd);
    return;
  }
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
    if (w->count == w->limit) {
      w->truncated = true;  // the caller lists this directory the slow way, in bounded memory
      break;
    }
    size_t len = strlen(e->d_name) + 1;
    if (w->names_len + len > w->names_cap) {
      size_t cap = w->names_cap ? w->names_cap * 2 : 16384;
      while (cap < w->names_len + len) cap *= 2;
      char *grown = realloc(w->names, cap);
      if (!grown) {
        w->err = ENOMEM, w->syscall_name = "statDir";
        break;
      }
      w->names = grown, w->names_cap = cap;
    }
    if (w->count == w->stats_cap) {
      size_t cap = w->stats_cap ? w->stats_cap * 2 : 256;
      int64_t *grown = realloc(w->stats, cap * SD_FIELDS * sizeof *grown);
      if (!grown) {
        w->err = ENOMEM, w->syscall_name = "statDir";
        break;
      }
      w->stats = grown, w->stats_cap = cap;
    }
    memcpy(w->names + w->names_len, e->d_name, len);
    w->names_len += len;
    int64_t *f = w->stats + w->count * SD_FIELDS;
    memset(f, 0, SD_FIELDS * sizeof *f);
    struct stat st;
    if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      f[SD_ERRNO] = errno;  // e.g. ENOENT: removed since it was listed
    } else {
      f[SD_MODE] = st.st_mode, f[SD_UID] = st.st_uid, f[SD_GID] = st.st_gid, f[SD_SIZE] = st.st_size;
      f[SD_BLOCKS] = st.st_blocks, f[SD_NLINK] = (int64_t)st.st_nlink, f[SD_DEV] = (int64_t)st.st_dev;
      f[SD_INO] = (int64_t)st.st_ino, f[SD_RDEV] = (int64_t)st.st_rdev;
      f[SD_MTIME] = ns_of(st.st_mtim), f[SD_CTIME] = ns_of(st.st_ctim);
    }
    w->count++;
    errno = 0;
  }
  if (!w->err && !w->truncated && errno != 0) w->err = errno, w->syscall_name = "readdir";
  closedir(d);
}

static void stat_dir_complete(napi_env env, napi_status status, void *arg) {
  stat_dir_t *w = arg;
  if (status != napi_ok && !w->err) w->err = ECANCELED, w->syscall_name = "statDir";
  if (w->err) {
    settle_call(env, w->deferred, w->err, w->syscall_name, -2);
  } else {
    napi_value result, names, stats_ab, stats, truncated;
    void *data;
    napi_create_object(env, &result);
    napi_get_boolean(env, w->truncated, &truncated);
    napi_set_named_property(env, result, "truncated", truncated);
    napi_create_buffer_copy(env, w->names_len, w->names_len ? w->names : "", &data, &names);
    napi_create_arraybuffer(env, w->count * SD_FIELDS * sizeof(int64_t), &data, &stats_ab);
    if (w->count) memcpy(data, w->stats, w->count * SD_FIELDS * sizeof(int64_t));
    napi_create_typedarray(env, napi_bigint64_array, w->count * SD_FIELDS, stats_ab, 0, &stats);
    napi_set_named_property(env, result, "names", names);
    napi_set_named_property(env, result, "stats", stats);
    napi_resolve_deferred(env, w->deferred, result);
  }
  napi_delete_async_work(env, w->work);
  free(w->dir);
  free(w->names);
  free(w->stats);
  free(w);
}

/**
 * statDir(dir: Buffer, limit: number) → Promise<{ names: Buffer, stats: BigInt64Array, truncated }>:
 * every entry of the directory but "." and "..", in readdir order, each name followed by a NUL, and
 * per entry SD_FIELDS int64s of its lstat (errno first: non-zero when that entry could not be
 * stat'ed, such as ENOENT). Over `limit` entries it stops and says `truncated`.
 */
static napi_value stat_dir(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) CHECK(napi_invalid_arg);
  uint32_t limit;
  if (napi_get_value_uint32(env, argv[1], &limit) != napi_ok) CHECK(napi_invalid_arg);
  stat_dir_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "statDir");
  w->dir = arg_path(env, argv[0]);
  if (!w->dir) {
    free(w);
    CHECK(napi_invalid_arg);
  }
  w->limit = limit;
  return queue_work(env, "bunker-fs:statDir", stat_dir_execute, stat_dir_complete, w, &w->deferred, &w->work);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"utimens", NULL, utimens, NULL, NULL, NULL, napi_default, NULL},
      {"mknod", NULL, do_mknod, NULL, NULL, NULL, napi_default, NULL},
      {"exchange", NULL, exchange, NULL, NULL, NULL, napi_default, NULL},
      {"userXattrs", NULL, user_xattrs, NULL, NULL, NULL, napi_default, NULL},
      {"fdUserXattrs", NULL, fd_user_xattrs, NULL, NULL, NULL, napi_default, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_default, NULL},
      {"writeFiles", NULL, write_files, NULL, NULL, NULL, napi_default, NULL},
      {"writeObject", NULL, write_object, NULL, NULL, NULL, napi_default, NULL},
      {"writeAt", NULL, write_at, NULL, NULL, NULL, napi_default, NULL},
      {"readAt", NULL, read_at, NULL, NULL, NULL, napi_default, NULL},
      {"statDir", NULL, stat_dir, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
