// Linux file-system calls Node lacks, for the files engine (src/engines/files/native.ts):
// nanosecond timestamps (utimensat), user xattrs (l*xattr), mknod for FIFOs and devices, and an
// atomic directory swap (renameat2 RENAME_EXCHANGE). Paths are Buffers of raw bytes; symlinks are
// never followed. Errors are thrown as Error objects with .code = "E..." and .errno like Node's fs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

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

static napi_value throw_errno(napi_env env, int err, const char *syscall_name) {
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
  }
  napi_value error, code_v, msg_v, errno_v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v);
  napi_create_error(env, code_v, msg_v, &error);
  napi_set_named_property(env, error, "code", code_v);
  napi_create_int32(env, -err, &errno_v);
  napi_set_named_property(env, error, "errno", errno_v);
  napi_throw(env, error);
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

// userXattrs(path: Buffer): Array<[Buffer name, Buffer value]> of the "user." attributes, not following symlinks.
static napi_value user_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) CHECK(napi_invalid_arg);
  char *path = arg_path(env, argv[0]);
  if (!path) CHECK(napi_invalid_arg);
  napi_value result;
  napi_create_array(env, &result);
  char stackbuf[4096];
  char *list = stackbuf;
  ssize_t n = llistxattr(path, list, sizeof stackbuf);
  if (n < 0 && errno == ERANGE) {
    ssize_t need = llistxattr(path, NULL, 0);
    if (need > 0) {
      list = malloc((size_t)need);
      n = list ? llistxattr(path, list, (size_t)need) : -1;
    }
  }
  if (n < 0) {
    int err = errno;
    if (list != stackbuf) free(list);
    free(path);
    if (err == ENOTSUP) return result;  // file system without xattrs: nothing to keep
    return throw_errno(env, err, "llistxattr");
  }
  uint32_t count = 0;
  for (char *name = list; name < list + n; name += strlen(name) + 1) {
    if (strncmp(name, "user.", 5) != 0) continue;
    ssize_t vlen = lgetxattr(path, name, NULL, 0);
    if (vlen < 0) continue;  // removed meanwhile
    char *val = malloc(vlen > 0 ? (size_t)vlen : 1);
    if (!val) continue;
    vlen = lgetxattr(path, name, val, vlen > 0 ? (size_t)vlen : 0);
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
  free(path);
  return result;
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"utimens", NULL, utimens, NULL, NULL, NULL, napi_default, NULL},
      {"mknod", NULL, do_mknod, NULL, NULL, NULL, napi_default, NULL},
      {"exchange", NULL, exchange, NULL, NULL, NULL, napi_default, NULL},
      {"userXattrs", NULL, user_xattrs, NULL, NULL, NULL, napi_default, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
