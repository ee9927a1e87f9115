/*
 * cohort's shared-memory addon: the few system calls the shm transport needs, and
 * nothing of the ring's hot path (JavaScript reads and writes the ring in place through
 * the external ArrayBuffer `mapSegment` returns, so a message costs no native call).
 *
 *   const native = require('./build/Release/cohort_shm.node')
 *   const fd = native.createSegment(1 << 20)          // memfd, 0600, sealed, never named
 *   const memory = native.mapSegment(fd)              // ArrayBuffer over MAP_SHARED memory
 *   const bell = native.eventfd()
 *   const watcher = new native.Watcher(bell, true, events => { ... })  // uv_poll, this loop
 *   watcher.start(); native.ring(bell)
 *
 * Every failing system call throws an Error whose `code` is the errno's name (EMFILE,
 * ECONNREFUSED, ...) and whose message names the call. Layout: see ring_layout.h.
 */
#include <napi.h>
#include <uv.h>
#include <v8.h>
/* For NODE_MODULE_VERSION only: it also defines the runtime's NAPI_VERSION, not ours (binding.gyp). */
#pragma push_macro("NAPI_VERSION")
#undef NAPI_VERSION
#include <node_version.h>
#undef NAPI_VERSION
#pragma pop_macro("NAPI_VERSION")

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "ring_layout.h"

#define MAX_FDS 8
#define MAX_MESSAGE 4096

static Napi::Value throw_errno(Napi::Env env, const char *what, int err) {
  const char *name = strerrorname_np(err);
  char message[256];
  snprintf(message, sizeof message, "%s failed: %s (%s)", what, strerror(err), name != nullptr ? name : "E?");
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, name != nullptr ? name : "EUNKNOWN"));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, what));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

static Napi::Value throw_type(Napi::Env env, const char *message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

static bool int_arg(const Napi::CallbackInfo &info, size_t i, int64_t *out) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  *out = info[i].As<Napi::Number>().Int64Value();
  return true;
}

static uint32_t *word(uint8_t *base, size_t offset) {
  return reinterpret_cast<uint32_t *>(base + offset);
}

/* layout(): the offsets of ring_layout.h, so JavaScript has no second copy of them. */
static Napi::Value Layout(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("magic", COHORT_SHM_MAGIC);
  o.Set("version", COHORT_SHM_VERSION);
  o.Set("offMagic", COHORT_OFF_MAGIC);
  o.Set("offVersion", COHORT_OFF_VERSION);
  o.Set("offRingBytes", COHORT_OFF_RING_BYTES);
  o.Set("offClosedBy", COHORT_OFF_CLOSED_BY);
  o.Set("offRing0", COHORT_OFF_RING0);
  o.Set("ringStride", COHORT_RING_STRIDE);
  o.Set("ringHead", COHORT_RING_HEAD);
  o.Set("ringTail", COHORT_RING_TAIL);
  o.Set("ringSleeping", COHORT_RING_SLEEPING);
  o.Set("ringWaiting", COHORT_RING_WAITING);
  o.Set("ringConsumerCpu", COHORT_RING_CONSUMER_CPU);
  o.Set("headerBytes", COHORT_HEADER_BYTES);
  o.Set("recordMore", COHORT_RECORD_MORE);
  return o;
}

/*
 * An anonymous memfd of `bytes` (never in /dev/shm, gone when the last fd and mapping go),
 * mode 0600, sealed against shrinking and growing so the peer cannot make our mapping
 * fault with SIGBUS. -1 with a JavaScript exception pending on failure.
 */
static int sealed_memfd(Napi::Env env, const char *name, size_t bytes) {
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    throw_errno(env, "memfd_create", errno);
    return -1;
  }
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)bytes) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "memfd setup (fchmod/ftruncate/F_ADD_SEALS)", err);
    return -1;
  }
  return fd;
}

/*
 * The size of a memfd a peer sent, the other side of sealed_memfd: -1 with a JavaScript
 * exception pending (`unsealed` as its message when the seals are missing) unless it is
 * sealed against shrinking and growing, so it cannot be cut under our mapping.
 */
static off_t sealed_size(Napi::Env env, int fd, const char *unsealed) {
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    throw_errno(env, "fcntl(F_GET_SEALS)", errno);
    return -1;
  }
  if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
    throw_errno(env, unsealed, EPERM);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    throw_errno(env, "fstat", errno);
    return -1;
  }
  return st.st_size;
}

/*
 * createSegment(ringBytes) -> fd: a sealed memfd (sealed_memfd) with its header initialised.
 */
static Napi::Value CreateSegment(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t ring_bytes;
  if (!int_arg(info, 0, &ring_bytes) || ring_bytes < 4096 || ring_bytes > (1 << 30) || (ring_bytes & (ring_bytes - 1)) != 0) {
    return throw_type(env, "createSegment(ringBytes): ringBytes must be a power of two from 4096 to 2^30");
  }
  size_t total = COHORT_HEADER_BYTES + 2 * (size_t)ring_bytes;
  int fd = sealed_memfd(env, "cohort-shm", total);
  if (fd < 0) return env.Undefined();
  void *p = mmap(nullptr, COHORT_HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    close(fd);
    return throw_errno(env, "mmap", err);
  }
  uint8_t *base = static_cast<uint8_t *>(p);
  __atomic_store_n(word(base, COHORT_OFF_VERSION), COHORT_SHM_VERSION, __ATOMIC_RELAXED);
  __atomic_store_n(word(base, COHORT_OFF_RING_BYTES), (uint32_t)ring_bytes, __ATOMIC_RELAXED);
  /* Release: whoever reads the magic with acquire sees the fields above. */
  __atomic_store_n(word(base, COHORT_OFF_MAGIC), COHORT_SHM_MAGIC, __ATOMIC_RELEASE);
  munmap(p, COHORT_HEADER_BYTES);
  return Napi::Number::New(env, fd);
}

static void unmap_finalizer(Napi::Env, void *data, size_t *length) {
  munmap(data, *length);
  delete length;
}

/*
 * mapSegment(fd) -> ArrayBuffer over the whole segment, pre-faulted. Checks what a
 * misbehaving peer could send instead of a segment: not sealed, wrong size, bad header.
 */
static Napi::Value MapSegment(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!int_arg(info, 0, &fd) || fd < 0) return throw_type(env, "mapSegment(fd): fd must be a file descriptor");
  off_t size = sealed_size(env, (int)fd, "mapSegment: segment is not sealed against resizing");
  if (size < 0) return env.Undefined();
  if (size < COHORT_HEADER_BYTES + 2 * 4096 || size > COHORT_HEADER_BYTES + 2 * ((off_t)1 << 30)) {
    return throw_errno(env, "mapSegment: segment size", EINVAL);
  }
  size_t total = (size_t)size;
  void *p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, (int)fd, 0);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", errno);
  uint8_t *base = static_cast<uint8_t *>(p);
  uint32_t magic = __atomic_load_n(word(base, COHORT_OFF_MAGIC), __ATOMIC_ACQUIRE);
  uint32_t version = __atomic_load_n(word(base, COHORT_OFF_VERSION), __ATOMIC_RELAXED);
  uint32_t ring_bytes = __atomic_load_n(word(base, COHORT_OFF_RING_BYTES), __ATOMIC_RELAXED);
  if (magic != COHORT_SHM_MAGIC || version != COHORT_SHM_VERSION || (ring_bytes & (ring_bytes - 1)) != 0 ||
      COHORT_HEADER_BYTES + 2 * (size_t)ring_bytes != total) {
    munmap(p, total);
    return throw_errno(env, "mapSegment: segment header (magic, version or ring size)", EINVAL);
  }
  return Napi::ArrayBuffer::New(env, p, total, unmap_finalizer, new size_t(total));
}

/* unmapSegment(buffer): detaches the ArrayBuffer (views become empty), which lets the finalizer unmap it. */
static Napi::Value UnmapSegment(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) return throw_type(env, "unmapSegment(buffer): an ArrayBuffer from mapSegment");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (!buffer.IsDetached()) buffer.Detach();
  return env.Undefined();
}

/*
 * Arenas: where large byte payloads go out of band (src/transports/shm/arena.ts). Each
 * direction of a link that ever sends one has its own memfd, made by the sender, sealed
 * against resizing, sent to the peer over the link's unix socket. Neither side maps it
 * with MAP_POPULATE: only the blocks used are faulted in, and they stay mapped for reuse.
 *
 *   handle ──┐            refs = 1 (the handle, until arenaClose) + 1 per live view
 *   view ────┼──► Arena { base, bytes, refs, freed[] } ──► munmap when refs reach 0
 *   view ────┘
 *
 * Every block is handed to JavaScript as its own external ArrayBuffer (arenaView), so a
 * value made from it reaches that block and nothing else of the arena, and keeps the
 * mapping alive however long it lives, also after the link closed. A view made with
 * `notify` (the receiver's) puts its block's offset on `freed` once nothing can reach its
 * memory; the link reads that list (arenaTakeFreed) and tells the sender the block is free
 * again.
 *
 * How a view's end is seen. The ArrayBuffer's memory is given to V8 with an empty deleter,
 * so V8 does not count its length as memory it allocated (the arena is paid for already).
 * Counted, every view added its length to the external memory V8 weighs against its
 * old-generation limit: with the small heap of a process that mostly moves large payloads
 * (15 MB, a limit of 38), every few 16 MiB views started a full collection, 5-20 ms of
 * pauses and marking on two CPUs (README, "Tried and not kept"). Without a deleter to say
 * when the memory is let go, two weak references do:
 *
 *   view's ArrayBuffer object ──(weak handle: collected)──► block pending
 *   the memory (v8::BackingStore) ──(weak_ptr: expired)──► block released, offset on `freed`
 *
 * The object alone is not enough: detaching it (a transfer list, a byte stream's
 * enqueue, transfer()) moves the memory to another ArrayBuffer, maybe on another thread,
 * and native code may keep the BackingStore. The BackingStore alone gives no callback. So
 * a collected view's block waits on its environment's `pending` list, looked at by a
 * timer (1 ms, doubling while something waits) and on every arenaView and arenaTakeFreed,
 * until the memory is gone too (V8's sweeper drops the dead object's reference a little
 * after the collection).
 *
 * Weak callbacks run inside a collection, on the JavaScript thread: they touch no V8 state
 * but their own handle, and no lock is needed. Views still alive when their environment
 * ends (a worker thread, the process) are let go by its instance data's finalizer, or
 * handed to the orphans' thread (below). When collections run is arena.ts's concern
 * (young-collection.ts).
 */
struct Arena {
  uint8_t *base;
  size_t bytes;
  /* Atomic: the orphans' thread lets go of views of an ended environment (Node finalizes the
   * handle before that, but nothing here depends on the order). */
  std::atomic<uint32_t> refs;
  bool open;
  /* Written when `freed` gains an entry, so the link reports it without waiting for traffic; -1: none. */
  int bell;
  std::vector<double> freed;
  /* Bytes of notifying views whose ArrayBuffer object was not collected yet (arenaHeld). */
  size_t held;
};

struct ArenaHandle {
  Arena *arena;
};

struct EnvViews;

struct ArenaBlock {
  Arena *arena;
  uint32_t offset;
  uint32_t length;
  bool notify;
  /* Its ArrayBuffer object was collected; the block waits for the memory to go too. */
  bool pending;
  /* Weak: says when the view's ArrayBuffer object was collected. */
  v8::Global<v8::ArrayBuffer> buffer;
  /* The memory itself, wherever it went: expired once no ArrayBuffer or native code holds it. */
  std::weak_ptr<v8::BackingStore> memory;
  /* The environment's live views (for its teardown). */
  EnvViews *views;
  ArenaBlock *prev;
  ArenaBlock *next;
};

/* One per environment (the process's, each worker's): napi instance data. */
struct EnvViews {
  ArenaBlock *live = nullptr;
  /* Collected views whose memory may still be held (V8's sweeper lets go of it a little after the collection). */
  std::vector<ArenaBlock *> pending;
  /* Looks at `pending` again while it is not empty: after 1 ms, doubling up to 1 s. Unreferenced. */
  uv_timer_t *timer = nullptr;
  uint64_t delay_ms = 1;
};

#define ARENA_MIN_BYTES (64u * 1024u)
#define ARENA_MAX_BYTES (1u << 30)
#define ARENA_ALIGN 64u

static void arena_unref(Arena *a) {
  if (a->refs.fetch_sub(1, std::memory_order_acq_rel) > 1) return;
  munmap(a->base, a->bytes);
  delete a;
}

static void arena_handle_finalizer(Napi::Env, ArenaHandle *h) {
  if (h->arena != nullptr) {
    h->arena->open = false;
    h->arena->bell = -1;
    arena_unref(h->arena);
  }
  delete h;
}

/* A view is gone: its block goes on `freed` when it was collected (not at teardown). */
static void arena_block_release(ArenaBlock *b, bool collected) {
  EnvViews *views = b->views;
  if (b->prev != nullptr) b->prev->next = b->next;
  else views->live = b->next;
  if (b->next != nullptr) b->next->prev = b->prev;
  if (b->pending) views->pending.erase(std::find(views->pending.begin(), views->pending.end(), b));
  b->buffer.Reset();
  if (b->notify && !b->pending) b->arena->held -= b->length;
  if (collected && b->notify && b->arena->open) {
    b->arena->freed.push_back((double)b->offset);
    uint64_t one = 1;
    /* EAGAIN (a full counter) already means "look". The fd is the link's until arenaClose. */
    if (b->arena->bell >= 0 && write(b->arena->bell, &one, sizeof one) < 0) {}
  }
  arena_unref(b->arena);
  delete b;
}

/* The next wait of a look that found memory still held: doubled, up to 1 s. */
static uint64_t longer_delay(uint64_t delay_ms) {
  return delay_ms * 2 < 1000 ? delay_ms * 2 : 1000;
}

/* Pending blocks whose memory no one holds any more are released (also on arenaView and arenaTakeFreed). */
static void arena_release_pending(EnvViews *views) {
  for (size_t i = views->pending.size(); i-- > 0;) {
    ArenaBlock *b = views->pending[i];
    if (b->memory.expired()) arena_block_release(b, true);
  }
}

static void pending_timer_fired(uv_timer_t *timer) {
  EnvViews *views = static_cast<EnvViews *>(timer->data);
  arena_release_pending(views);
  if (views->pending.empty()) return;
  views->delay_ms = longer_delay(views->delay_ms);
  uv_timer_start(timer, pending_timer_fired, views->delay_ms, 0);
}

/*
 * First-pass weak callback, inside the collection: no V8 calls but Reset. The object is
 * gone, but its memory may have moved on to another ArrayBuffer (a transfer, a byte
 * stream's enqueue) or be kept by native code; and the dead object's own reference goes
 * only when V8's sweeper gets to it. So the block waits until the memory itself is gone.
 */
static void arena_block_collected(const v8::WeakCallbackInfo<ArenaBlock> &info) {
  ArenaBlock *b = info.GetParameter();
  EnvViews *views = b->views;
  b->buffer.Reset();
  if (b->notify) b->arena->held -= b->length;
  b->pending = true;
  views->pending.push_back(b);
  // Soon, also when a block held elsewhere for long has stretched the timer to 1 s.
  if (!uv_is_active(reinterpret_cast<uv_handle_t *>(views->timer)) || views->delay_ms > 1) {
    views->delay_ms = 1;
    uv_timer_start(views->timer, pending_timer_fired, views->delay_ms, 0);
  }
}

/*
 * Orphans: blocks of an environment that ended while their memory was still held (moved
 * to another ArrayBuffer, or not yet let go by V8's sweeper). Nothing of that environment
 * runs any more, so a thread of their own waits for the memory to go (1 ms, doubling to
 * 1 s) and then lets go of the block and, with the last one, the mapping. Never freed: a
 * thread may still be at it while the process exits.
 */
static std::mutex *orphans_lock = new std::mutex();
static std::condition_variable *orphans_added = new std::condition_variable();
static std::vector<ArenaBlock *> *orphans = new std::vector<ArenaBlock *>();
static bool orphans_reaper_running = false;

static void *reap_orphans(void *) {
  std::unique_lock<std::mutex> lock(*orphans_lock);
  uint64_t delay_ms = 1;
  for (;;) {
    // New orphans wake it at once and start the delays over.
    if (orphans_added->wait_for(lock, std::chrono::milliseconds(delay_ms)) == std::cv_status::no_timeout) delay_ms = 1;
    for (size_t i = orphans->size(); i-- > 0;) {
      ArenaBlock *b = (*orphans)[i];
      if (!b->memory.expired()) continue;
      orphans->erase(orphans->begin() + (long)i);
      arena_unref(b->arena);  // only orphans refer to this arena now
      delete b;
    }
    if (orphans->empty()) {
      orphans_reaper_running = false;
      return nullptr;
    }
    delay_ms = longer_delay(delay_ms);
  }
}

/* If no thread can be started, the orphans stay: a leak, never a view into unmapped memory. */
static void adopt_orphans(const std::vector<ArenaBlock *> &blocks) {
  if (blocks.empty()) return;
  std::lock_guard<std::mutex> guard(*orphans_lock);
  orphans->insert(orphans->end(), blocks.begin(), blocks.end());
  if (orphans_reaper_running) {
    orphans_added->notify_one();
    return;
  }
  pthread_t thread;
  if (pthread_create(&thread, nullptr, reap_orphans, nullptr) != 0) return;
  pthread_detach(thread);
  orphans_reaper_running = true;
}

/*
 * The environment is ending (instance data finalizer; a HandleScope is open, the isolate
 * alive). A view still alive and not detached holds its memory alone, unless native code
 * keeps it too: released now. Every other block becomes an orphan (above): its memory may
 * live on in another thread, and even this thread's own holders go only when its isolate
 * is disposed, after this.
 */
static void arena_views_teardown(napi_env, void *data, void *) {
  EnvViews *views = static_cast<EnvViews *>(data);
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  std::vector<ArenaBlock *> orphaned;
  for (ArenaBlock *b = views->live; b != nullptr;) {
    ArenaBlock *next = b->next;
    bool alone = b->memory.expired();
    if (!alone && !b->pending) {
      // Never empty here (weak callbacks run inside the collection that found the object
      // dead, and this is no collection); checked all the same.
      v8::Local<v8::ArrayBuffer> buffer = b->buffer.Get(isolate);
      alone = !buffer.IsEmpty() && !buffer->WasDetached() && b->memory.use_count() <= 1;
    }
    if (alone) {
      arena_block_release(b, false);
    } else {
      b->buffer.Reset();  // no weak callback into the list deleted below
      b->views = nullptr;
      orphaned.push_back(b);
    }
    b = next;
  }
  uv_timer_stop(views->timer);
  uv_close(reinterpret_cast<uv_handle_t *>(views->timer), [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
  delete views;
  adopt_orphans(orphaned);
}

static EnvViews *env_views(napi_env env) {
  void *data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<EnvViews *>(data);
}

static Arena *arena_arg(const Napi::CallbackInfo &info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) return nullptr;
  ArenaHandle *h = info[i].As<Napi::External<ArenaHandle>>().Data();
  return h != nullptr ? h->arena : nullptr;
}

/* createArena(bytes) -> fd: a sealed memfd like a segment's, left zeroed (its pages come when first written). */
static Napi::Value CreateArena(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t bytes;
  if (!int_arg(info, 0, &bytes) || bytes < ARENA_MIN_BYTES || bytes > ARENA_MAX_BYTES || (bytes & (bytes - 1)) != 0) {
    return throw_type(env, "createArena(bytes): bytes must be a power of two from 2^16 to 2^30");
  }
  int fd = sealed_memfd(env, "cohort-arena", (size_t)bytes);
  if (fd < 0) return env.Undefined();
  return Napi::Number::New(env, fd);
}

/*
 * mapArena(fd, bell = -1) -> handle. `bell`: an eventfd written whenever a notifying view
 * is collected (the caller watches it and calls arenaTakeFreed). Checks what a misbehaving peer could send instead: not sealed
 * (it could shrink the file under our views and make them fault), a size that is not a
 * power of two in range. The fd stays the caller's to close.
 */
static Napi::Value MapArena(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  int64_t bell = -1;
  if (!int_arg(info, 0, &fd) || fd < 0 || (info.Length() > 1 && !int_arg(info, 1, &bell))) {
    return throw_type(env, "mapArena(fd, bell?): file descriptors");
  }
  off_t size = sealed_size(env, (int)fd, "mapArena: arena is not sealed against resizing");
  if (size < 0) return env.Undefined();
  if (size < ARENA_MIN_BYTES || size > ARENA_MAX_BYTES || (size & (size - 1)) != 0) {
    return throw_errno(env, "mapArena: arena size", EINVAL);
  }
  size_t bytes = (size_t)size;
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", errno);
  Arena *a = new Arena{ static_cast<uint8_t *>(p), bytes, 1, true, (int)bell, {}, 0 };
  return Napi::External<ArenaHandle>::New(env, new ArenaHandle{ a }, arena_handle_finalizer);
}

/* arenaBytes(handle) -> size of the mapping. */
static Napi::Value ArenaBytes(const Napi::CallbackInfo &info) {
  Arena *a = arena_arg(info, 0);
  if (a == nullptr) return throw_type(info.Env(), "arenaBytes(handle): an open arena");
  return Napi::Number::New(info.Env(), (double)a->bytes);
}

/*
 * arenaView(handle, offset, length, notify) -> ArrayBuffer over exactly that block.
 * The block must lie inside the arena and start 64-byte aligned (so every typed array
 * can view it); anything else is an error, never a read out of bounds.
 */
static Napi::Value ArenaView(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Arena *a = arena_arg(info, 0);
  int64_t offset, length;
  if (a == nullptr || !int_arg(info, 1, &offset) || !int_arg(info, 2, &length)) {
    return throw_type(env, "arenaView(handle, offset, length, notify): an open arena and two integers");
  }
  if (offset < 0 || length <= 0 || (uint64_t)offset + (uint64_t)length > a->bytes || offset % ARENA_ALIGN != 0 ||
      (double)offset != info[1].As<Napi::Number>().DoubleValue() || (double)length != info[2].As<Napi::Number>().DoubleValue()) {
    return throw_errno(env, "arenaView: block outside the arena or not aligned", ERANGE);
  }
  bool notify = info.Length() > 3 && info[3].ToBoolean().Value();
  EnvViews *views = env_views(env);
  arena_release_pending(views);
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  // Uncounted, its end seen by a weak handle: see "How a view's end is seen".
  v8::Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(
    isolate, v8::ArrayBuffer::NewBackingStore(a->base + offset, (size_t)length, v8::BackingStore::EmptyDeleter, nullptr));
  ArenaBlock *b = new ArenaBlock{ a, (uint32_t)offset, (uint32_t)length, notify, false, {}, buffer->GetBackingStore(), views, nullptr, views->live };
  if (views->live != nullptr) views->live->prev = b;
  views->live = b;
  a->refs.fetch_add(1, std::memory_order_relaxed);
  if (notify) a->held += (size_t)length;
  b->buffer.Reset(isolate, buffer);
  b->buffer.SetWeak(b, arena_block_collected, v8::WeakCallbackType::kParameter);
  // What Node's own N-API does to hand a V8 value back (v8impl::JsValueFromV8LocalValue).
  v8::Local<v8::Value> value = buffer;
  napi_value result;
  static_assert(sizeof value == sizeof result, "a napi_value is a v8::Local");
  memcpy(&result, &value, sizeof result);
  return Napi::Value(env, result);
}

/* arenaHeld(handle) -> bytes of notifying views whose ArrayBuffer objects were not collected yet. */
static Napi::Value ArenaHeld(const Napi::CallbackInfo &info) {
  Arena *a = arena_arg(info, 0);
  if (a == nullptr) return throw_type(info.Env(), "arenaHeld(handle): an open arena");
  return Napi::Number::New(info.Env(), (double)a->held);
}

/* arenaTakeFreed(handle) -> offsets of blocks whose notifying views were collected since last asked. */
static Napi::Value ArenaTakeFreed(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Arena *a = arena_arg(info, 0);
  if (a == nullptr) return throw_type(env, "arenaTakeFreed(handle): an open arena");
  arena_release_pending(env_views(env));
  // A collection while the array is made only marks blocks pending: `freed` stays as it is.
  Napi::Array out = Napi::Array::New(env, a->freed.size());
  for (size_t i = 0; i < a->freed.size(); i++) out.Set((uint32_t)i, a->freed[i]);
  a->freed.clear();
  return out;
}

/* arenaClose(handle): the link is done with it; views made from it stay valid, the mapping goes with the last. */
static Napi::Value ArenaClose(const Napi::CallbackInfo &info) {
  if (info.Length() < 1 || !info[0].IsExternal()) return throw_type(info.Env(), "arenaClose(handle)");
  ArenaHandle *h = info[0].As<Napi::External<ArenaHandle>>().Data();
  if (h != nullptr && h->arena != nullptr) {
    Arena *a = h->arena;
    h->arena = nullptr;
    a->open = false;
    a->bell = -1;
    a->freed.clear();
    arena_unref(a);
  }
  return info.Env().Undefined();
}

static Napi::Value EventFd(const Napi::CallbackInfo &info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return throw_errno(info.Env(), "eventfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

/* ring(fd): writes the doorbell. A full counter (EAGAIN) already means "wake up". */
static Napi::Value Ring(const Napi::CallbackInfo &info) {
  int64_t fd;
  if (!int_arg(info, 0, &fd)) return throw_type(info.Env(), "ring(fd)");
  uint64_t one = 1;
  if (write((int)fd, &one, sizeof one) < 0 && errno != EAGAIN) return throw_errno(info.Env(), "write(eventfd)", errno);
  return info.Env().Undefined();
}

static Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  int64_t fd;
  if (!int_arg(info, 0, &fd)) return throw_type(info.Env(), "closeFd(fd)");
  if (close((int)fd) != 0 && errno != EINTR) return throw_errno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

static Napi::Value CurrentCpu(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), sched_getcpu());
}

/* Abstract-namespace address: a leading NUL, nothing on the file system to clean up. */
static socklen_t abstract_address(struct sockaddr_un *addr, const std::string &name) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  size_t n = name.size() < sizeof addr->sun_path - 1 ? name.size() : sizeof addr->sun_path - 1;
  memcpy(addr->sun_path + 1, name.data(), n);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* unixListen() -> { fd, name }: a SEQPACKET listener at a random abstract name. */
static Napi::Value UnixListen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint8_t random[16];
  if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random) return throw_errno(env, "getrandom", errno);
  char name[64] = "cohort-shm-";
  for (size_t i = 0; i < sizeof random; i++) snprintf(name + 11 + 2 * i, 3, "%02x", random[i]);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX)", errno);
  struct sockaddr_un addr;
  socklen_t len = abstract_address(&addr, name);
  if (bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 4) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind/listen(AF_UNIX)", err);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", fd);
  o.Set("name", name);
  return o;
}

/* unixAccept(fd) -> fd, or -1 when nobody is waiting. */
static Napi::Value UnixAccept(const Napi::CallbackInfo &info) {
  int64_t fd;
  if (!int_arg(info, 0, &fd)) return throw_type(info.Env(), "unixAccept(fd)");
  int c = accept4((int)fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Napi::Number::New(info.Env(), -1);
    return throw_errno(info.Env(), "accept4", errno);
  }
  return Napi::Number::New(info.Env(), c);
}

/* unixConnect(name) -> fd. A local SEQPACKET connect completes at once or fails. */
static Napi::Value UnixConnect(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return throw_type(env, "unixConnect(name)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX)", errno);
  struct sockaddr_un addr;
  socklen_t len = abstract_address(&addr, name);
  if (connect(fd, (struct sockaddr *)&addr, len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "connect(AF_UNIX)", err);
  }
  return Napi::Number::New(env, fd);
}

/* peerCredentials(fd) -> { pid, uid }: who is at the other end, as the kernel says. */
static Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  int64_t fd;
  if (!int_arg(info, 0, &fd)) return throw_type(info.Env(), "peerCredentials(fd)");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(info.Env(), "getsockopt(SO_PEERCRED)", errno);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("pid", cred.pid);
  o.Set("uid", cred.uid);
  return o;
}

/* sendMessage(fd, bytes, fds) -> true, or false when the socket buffer is full. fds travel by SCM_RIGHTS. */
static Napi::Value SendMessage(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!int_arg(info, 0, &fd) || info.Length() < 3 || !info[1].IsTypedArray() || !info[2].IsArray()) {
    return throw_type(env, "sendMessage(fd, Uint8Array, number[])");
  }
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  Napi::Array list = info[2].As<Napi::Array>();
  uint32_t nfds = list.Length();
  if (nfds > MAX_FDS || data.ByteLength() > MAX_MESSAGE || data.ByteLength() == 0) return throw_type(env, "sendMessage: 1..4096 bytes and at most 8 fds");
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    Napi::Value v = list[i];
    if (!v.IsNumber()) return throw_type(env, "sendMessage: fds must be numbers");
    fds[i] = v.As<Napi::Number>().Int32Value();
  }
  struct iovec iov = { data.Data(), data.ByteLength() };
  union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  if (sendmsg((int)fd, &msg, MSG_NOSIGNAL) < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    return throw_errno(env, "sendmsg", errno);
  }
  return Napi::Boolean::New(env, true);
}

/*
 * receiveMessage(fd) -> undefined when nothing is there, else { data, fds }; empty data
 * means the other end closed. Received fds are close-on-exec.
 */
static Napi::Value ReceiveMessage(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int64_t fd;
  if (!int_arg(info, 0, &fd)) return throw_type(env, "receiveMessage(fd)");
  uint8_t buf[MAX_MESSAGE];
  struct iovec iov = { buf, sizeof buf };
  union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n = recvmsg((int)fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return env.Undefined();
    if (errno == ECONNRESET) n = 0;
    else return throw_errno(env, "recvmsg", errno);
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *received = reinterpret_cast<int *>(CMSG_DATA(c));
    for (size_t i = 0; i < k; i++) fds.Set(count++, received[i]);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf, (size_t)n));
  o.Set("fds", fds);
  o.Set("truncated", (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0);
  return o;
}

/*
 * Watcher: a uv_poll on one fd, on this thread's loop (no helper thread). For an
 * eventfd doorbell it drains the counter before calling back. The callback gets
 * (readable, hangup, errorName). The handle is unref'd: an idle shm link does not keep
 * the process alive (the TCP link beside it does).
 */
struct WatcherHandle {
  uv_poll_t poll;
  int fd;
  bool drain;
  bool closing;
  class Watcher *owner;
};

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Watcher", {
      InstanceMethod("start", &Watcher::Start),
      InstanceMethod("stop", &Watcher::Stop),
      InstanceMethod("close", &Watcher::Close),
    });
  }

  Watcher(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    int64_t fd;
    if (!int_arg(info, 0, &fd) || info.Length() < 3 || !info[2].IsFunction()) {
      throw_type(env, "new Watcher(fd, drainEventfd, callback)");
      return;
    }
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "cohort:shm-watcher");
    handle_ = new WatcherHandle();
    handle_->fd = (int)fd;
    handle_->drain = info[1].ToBoolean().Value();
    handle_->closing = false;
    handle_->owner = this;
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    int rc = uv_poll_init(loop, &handle_->poll, handle_->fd);
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      throw_errno(env, "uv_poll_init", -rc);
      return;
    }
    handle_->poll.data = handle_;
    uv_unref(reinterpret_cast<uv_handle_t *>(&handle_->poll));
    env_ = env;
    // A worker thread may end without closing us: close the handle before its loop goes.
    napi_add_env_cleanup_hook(env, CleanupHook, this);
  }

  ~Watcher() override {
    // Finalized while the handle is still open: close it; the handle outlives us.
    if (handle_ != nullptr) CloseHandle();
  }

 private:
  static void OnPoll(uv_poll_t *poll, int status, int events) {
    WatcherHandle *h = static_cast<WatcherHandle *>(poll->data);
    if (h->closing || h->owner == nullptr) return;
    if (h->drain && status == 0 && (events & UV_READABLE) != 0) {
      // One read takes the whole counter (not EFD_SEMAPHORE); a second would only say
      // EAGAIN, one system call more per wake-up. A ring between the two polls again.
      uint64_t value;
      ssize_t ignored = read(h->fd, &value, sizeof value);
      (void)ignored;
    }
    h->owner->Deliver(status, events);
  }

  void Deliver(int status, int events) {
    Napi::Env env = callback_.Env();
    Napi::HandleScope scope(env);
    napi_value args[3] = {
      Napi::Boolean::New(env, (events & UV_READABLE) != 0),
      Napi::Boolean::New(env, (events & UV_DISCONNECT) != 0),
      status < 0 ? Napi::String::New(env, uv_err_name(status)) : env.Undefined(),
    };
    // napi_make_callback runs the microtasks the callback queued, as any I/O callback
    // does. The JavaScript side catches its own errors; an exception still pending here
    // (a worker being terminated) is dropped rather than thrown into a dying env.
    napi_value result;
    if (napi_make_callback(env, *context_, env.Global(), callback_.Value(), 3, args, &result) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
  }

  static void CleanupHook(void *arg) {
    Watcher *self = static_cast<Watcher *>(arg);
    if (self->handle_ != nullptr) self->CloseHandle();
  }

  Napi::Value Start(const Napi::CallbackInfo &info) {
    if (handle_ == nullptr) return throw_errno(info.Env(), "Watcher.start: watcher is closed", EBADF);
    int rc = uv_poll_start(&handle_->poll, UV_READABLE | UV_DISCONNECT, OnPoll);
    if (rc != 0) return throw_errno(info.Env(), "uv_poll_start", -rc);
    if (!started_) { Ref(); started_ = true; }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo &info) {
    if (handle_ != nullptr) uv_poll_stop(&handle_->poll);
    if (started_) { started_ = false; Unref(); }
    return info.Env().Undefined();
  }

  /* close(): stops watching; the fd itself is the caller's to close (after this). */
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (handle_ != nullptr) CloseHandle();
    if (started_) { started_ = false; Unref(); }
    return info.Env().Undefined();
  }

  void CloseHandle() {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    handle_->closing = true;
    handle_->owner = nullptr;
    uv_poll_stop(&handle_->poll);
    uv_close(reinterpret_cast<uv_handle_t *>(&handle_->poll), [](uv_handle_t *h) {
      delete static_cast<WatcherHandle *>(h->data);
    });
    handle_ = nullptr;
  }

  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  WatcherHandle *handle_ = nullptr;
  napi_env env_ = nullptr;
  bool started_ = false;
};

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  if (env_views(env) == nullptr) {
    EnvViews *views = new EnvViews();
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    views->timer = new uv_timer_t;
    uv_timer_init(loop, views->timer);
    uv_unref(reinterpret_cast<uv_handle_t *>(views->timer));
    views->timer->data = views;
    napi_set_instance_data(env, views, arena_views_teardown, nullptr);
  }
  // The Node ABI this was built for: it calls V8 itself (arena views), so it runs on no other.
  exports.Set("nodeAbi", Napi::Number::New(env, NODE_MODULE_VERSION));
  exports.Set("layout", Napi::Function::New(env, Layout));
  exports.Set("createSegment", Napi::Function::New(env, CreateSegment));
  exports.Set("mapSegment", Napi::Function::New(env, MapSegment));
  exports.Set("unmapSegment", Napi::Function::New(env, UnmapSegment));
  exports.Set("createArena", Napi::Function::New(env, CreateArena));
  exports.Set("mapArena", Napi::Function::New(env, MapArena));
  exports.Set("arenaBytes", Napi::Function::New(env, ArenaBytes));
  exports.Set("arenaView", Napi::Function::New(env, ArenaView));
  exports.Set("arenaTakeFreed", Napi::Function::New(env, ArenaTakeFreed));
  exports.Set("arenaHeld", Napi::Function::New(env, ArenaHeld));
  exports.Set("arenaClose", Napi::Function::New(env, ArenaClose));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("ring", Napi::Function::New(env, Ring));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("currentCpu", Napi::Function::New(env, CurrentCpu));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("sendMessage", Napi::Function::New(env, SendMessage));
  exports.Set("receiveMessage", Napi::Function::New(env, ReceiveMessage));
  exports.Set("Watcher", Watcher::Init(env));
  return exports;
}

NODE_API_MODULE(cohort_shm, Init)
