/* Helper threads for nncore's own parallel kernels (_big_gemm.h, _bf16_gemm.h).
 *
 * nncore_parallel(task, arg, parts) runs task(arg, part, parts) for every part
 * < parts, part 0 on the calling thread and part p on helper p, and returns
 * when all are done. One job runs at a time per compiled module (a second
 * caller waits), so a job's parts may use per-part scratch. A job is posted to
 * helpers 1 … parts − 1 only, each through its own slot and condition
 * variable: helpers a former, larger job made stay asleep.
 *
 * nncore_parallel_units(task, arg, units, parts, wake) runs task(arg, unit,
 * slot) for every unit < units, taking units from a shared counter: the
 * calling thread (slot 0) and whichever of helpers 1 … parts − 1 join in
 * (slot p: per-slot scratch) each take the next unit until none is left, so
 * a helper that is late (asleep, or descheduled) costs nothing: its units are
 * done by the others, and the caller waits only for units already taken. A
 * helper joins a job through the job's gate (one atomic word: the job's
 * number, a closed flag and the helpers that joined); the caller closes it
 * when no unit is left, and a helper that comes later (even one woken for an
 * older job) finds it closed and goes back to waiting. With wake = 0 the job
 * is posted only to helpers that are spinning (awake after a recent job), not
 * to sleeping ones: for products only worth splitting when no helper has to
 * be woken (~50 µs here). Which thread computes a unit is left to timing, so
 * a kernel using this must compute each unit the same way whoever runs it.
 *
 * Helpers are started on first use and never stopped. After a job they spin
 * for a short while (the next product of a training step comes within
 * microseconds) and then sleep on a condition variable, so an idle process
 * burns no CPU.
 *
 * fork(): nncore_pool_init(), called when each compiled module is imported
 * (each has its own copy of this state), registers pthread_atfork handlers
 * exactly once, whatever the pool is later used for. They take every lock of
 * the pool before the fork (so no other thread holds one mid-job), release
 * them in the parent, and give the child fresh locks and no helpers: threads
 * do not survive fork, and the child starts its own on first use.
 *
 * The same handlers also make fork() wait for nncore's calls into the BLAS
 * (nncore_blas_enter / nncore_blas_leave around each one, src/_blas.pxd).
 * OpenBLAS's own prepare handler shuts its server threads down by joining
 * them, and hangs if another thread is inside a multi-threaded OpenBLAS call
 * at that moment. Handlers registered later run first, and ours are
 * registered after the BLAS is loaded (at import of a compiled module, which
 * loads SciPy's BLAS; nncore.blas runs after NumPy's is loaded), so OpenBLAS
 * only ever sees idle threads from nncore. BLAS calls made outside nncore
 * are not covered.
 */
#ifndef NNCORE_POOL_H
#define NNCORE_POOL_H
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define NNCORE_MAX_THREADS 64
/* Polls of a thread waiting on the pool before it yields the CPU. */
#define NNCORE_SPINS 2000
/* Nanoseconds an idle helper spins before it sleeps. A clock, not a count of
 * polls: a pause takes 12 ns on the Intel model 167 VM measured and ~140
 * cycles on Skylake, so 2,000 polls were 25 µs here, less than the ~50 µs a
 * sleeping helper takes to wake and less than the gap between a W3 step's
 * products, and helpers slept between every two. Every 64 polls the helper
 * yields the CPU (sched_yield), so that on a busy machine other threads — the
 * caller's among them — run first: with pure polls for 200 µs, W3 fits on 2
 * threads with the other core taken were 10-15 % slower than with 25 µs;
 * with the yields 4-13 % faster. (Who computes what never changes the
 * results: only how long the other core is kept busy.) */
#define NNCORE_SPIN_NS 200000

#if defined(__x86_64__) || defined(__i386__)
#define NNCORE_PAUSE() __builtin_ia32_pause()
#else
#define NNCORE_PAUSE() ((void) 0)
#endif

typedef void (*nncore_task)(void* arg, int part, int parts);
typedef void (*nncore_unit_task)(void* arg, long unit, int slot);

/* The gate word: job number << NNCORE_GATE_SHIFT | closed | helpers joined. */
#define NNCORE_GATE_SHIFT 16
#define NNCORE_GATE_CLOSED (1L << (NNCORE_GATE_SHIFT - 1))
#define NNCORE_GATE_JOINED (NNCORE_GATE_CLOSED - 1)

static struct {
    pthread_mutex_t run;        /* held for a whole job: one job at a time */
    pthread_mutex_t lock;       /* with wake[part]: sleeping helpers */
    pthread_cond_t wake[NNCORE_MAX_THREADS];
    int helpers;                /* helper threads running: parts 1 … helpers */
    long job;                   /* number of the last job posted (0: none) */
    atomic_long posted[NNCORE_MAX_THREADS]; /* number of the last job posted to each helper */
    atomic_int asleep[NNCORE_MAX_THREADS];  /* 1 while a helper waits on its condition */
    atomic_long gate;           /* the current job's number, closed flag, helpers joined */
    atomic_int left;            /* helpers that joined and are done with the current job */
    atomic_long next;           /* the next unit to take (units jobs) */
    long start_seen[NNCORE_MAX_THREADS];
    nncore_task task;           /* parts job (NULL: units job) */
    nncore_unit_task unit_task; /* units job */
    void* arg;
    int parts;
    long units;
    atomic_long woken[NNCORE_MAX_THREADS]; /* debug: jobs posted to each helper */
} nncore_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

/* Calls into the BLAS in flight, and fork()s waiting for them to end: a
 * fork waits until no call is in flight and no call starts until it is done. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int calls;
    int forks;
} nncore_blas_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

/* Around every call into the BLAS (uncontended: two mutex round trips). */
static void nncore_blas_enter(void) {
    pthread_mutex_lock(&nncore_blas_gate.lock);
    while (nncore_blas_gate.forks)
        pthread_cond_wait(&nncore_blas_gate.changed, &nncore_blas_gate.lock);
    nncore_blas_gate.calls++;
    pthread_mutex_unlock(&nncore_blas_gate.lock);
}

static void nncore_blas_leave(void) {
    pthread_mutex_lock(&nncore_blas_gate.lock);
    if (--nncore_blas_gate.calls == 0 && nncore_blas_gate.forks)
        pthread_cond_broadcast(&nncore_blas_gate.changed);
    pthread_mutex_unlock(&nncore_blas_gate.lock);
}

/* Threads a job may use (set by nncore.blas.threads for each call). */
static int nncore_threads = 1;

/* Takes units of the current units job until none is left. */
static void nncore_pool_take_units(int slot) {
    long unit;
    while ((unit = atomic_fetch_add(&nncore_pool.next, 1)) < nncore_pool.units)
        nncore_pool.unit_task(nncore_pool.arg, unit, slot);
}

static long long nncore_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long) t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void* nncore_helper(void* data) {
    int part = (int) (intptr_t) data;
    long seen = nncore_pool.start_seen[part], now, gate;
    for (;;) {
        long long until = nncore_now_ns() + NNCORE_SPIN_NS;
        int spins = 0;
        while ((now = atomic_load(&nncore_pool.posted[part])) == seen) {
            if (++spins % 64 != 0)
                NNCORE_PAUSE();
            else if (nncore_now_ns() < until)
                sched_yield(); /* a busy machine's other threads go first */
            else
                break;
        }
        if (now == seen) {
            pthread_mutex_lock(&nncore_pool.lock);
            atomic_store(&nncore_pool.asleep[part], 1);
            while ((now = atomic_load(&nncore_pool.posted[part])) == seen)
                pthread_cond_wait(&nncore_pool.wake[part], &nncore_pool.lock);
            atomic_store(&nncore_pool.asleep[part], 0);
            pthread_mutex_unlock(&nncore_pool.lock);
        }
        seen = now;
        /* join job `now` if it is still open (else it is done: wait for the next) */
        gate = atomic_load(&nncore_pool.gate);
        while (gate >> NNCORE_GATE_SHIFT == now && !(gate & NNCORE_GATE_CLOSED)
               && !atomic_compare_exchange_weak(&nncore_pool.gate, &gate, gate + 1))
            ;
        if (gate >> NNCORE_GATE_SHIFT != now || (gate & NNCORE_GATE_CLOSED))
            continue;
        if (nncore_pool.task != NULL)
            nncore_pool.task(nncore_pool.arg, part, nncore_pool.parts);
        else
            nncore_pool_take_units(part);
        atomic_fetch_add(&nncore_pool.left, 1);
    }
    return NULL;
}

static void nncore_pool_prepare(void) {
    pthread_mutex_lock(&nncore_blas_gate.lock);
    nncore_blas_gate.forks++;
    while (nncore_blas_gate.calls)
        pthread_cond_wait(&nncore_blas_gate.changed, &nncore_blas_gate.lock);
    pthread_mutex_unlock(&nncore_blas_gate.lock);
    pthread_mutex_lock(&nncore_pool.run);
    pthread_mutex_lock(&nncore_pool.lock);
}

static void nncore_pool_parent(void) {
    pthread_mutex_unlock(&nncore_pool.lock);
    pthread_mutex_unlock(&nncore_pool.run);
    pthread_mutex_lock(&nncore_blas_gate.lock);
    nncore_blas_gate.forks--;
    pthread_cond_broadcast(&nncore_blas_gate.changed);
    pthread_mutex_unlock(&nncore_blas_gate.lock);
}

/* In the child: the helpers did not come along; the locks were held by the
 * forking thread (nncore_pool_prepare) and are made anew. */
static void nncore_pool_child(void) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    nncore_pool.run = fresh;
    nncore_pool.lock = fresh;
    nncore_pool.helpers = 0;
    atomic_store(&nncore_pool.gate, NNCORE_GATE_CLOSED);
    atomic_store(&nncore_pool.left, 0);
    nncore_blas_gate.lock = fresh;
    nncore_blas_gate.changed = fresh_cond;
    nncore_blas_gate.calls = 0;
    nncore_blas_gate.forks = 0;
    for (int part = 0; part < NNCORE_MAX_THREADS; part++) {
        nncore_pool.wake[part] = fresh_cond;
        atomic_store(&nncore_pool.posted[part], 0);
        atomic_store(&nncore_pool.asleep[part], 0);
        atomic_store(&nncore_pool.woken[part], 0);
    }
}

static pthread_once_t nncore_pool_once = PTHREAD_ONCE_INIT;
/* 1 once the fork handlers are in place; without them no helper is started
 * (the pool then runs every job on the calling thread). */
static int nncore_pool_forkable = 0;

static void nncore_pool_register(void) {
    for (int part = 0; part < NNCORE_MAX_THREADS; part++)
        pthread_cond_init(&nncore_pool.wake[part], NULL);
    nncore_pool_forkable = pthread_atfork(nncore_pool_prepare, nncore_pool_parent,
                                          nncore_pool_child) == 0;
}

/* Registers the fork handlers, once per compiled module; called at import
 * and again (harmlessly) by every job. */
static void nncore_pool_init(void) { pthread_once(&nncore_pool_once, nncore_pool_register); }

/* Debug: jobs posted to helper `part` since start (or since fork). */
static long nncore_pool_woken(int part) {
    return part >= 0 && part < NNCORE_MAX_THREADS ? atomic_load(&nncore_pool.woken[part]) : 0;
}

/* Debug: helper threads running. */
static int nncore_pool_helpers(void) { return nncore_pool.helpers; }

/* Start helpers until parts − 1 run (fewer if threads cannot be made); the
 * caller holds nncore_pool.run. Returns the parts the job can use. */
static int nncore_pool_grow(int parts) {
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (nncore_pool.helpers < parts - 1 && nncore_pool_forkable) {
        int part = nncore_pool.helpers + 1;
        nncore_pool.start_seen[part] = atomic_load(&nncore_pool.posted[part]);
        if (pthread_create(&thread, &attr, nncore_helper, (void*) (intptr_t) part) != 0)
            break;
        nncore_pool.helpers++;
    }
    pthread_attr_destroy(&attr);
    return parts < nncore_pool.helpers + 1 ? parts : nncore_pool.helpers + 1;
}

/* Parts for a job of `work` units worth splitting only into shares of at least
 * `per_part` units: work / per_part rounded down, at least 1, at most
 * nncore_threads and NNCORE_MAX_THREADS. A function of the job's size and the
 * thread count alone (never of a clock), so a kernel whose element sums do not
 * depend on the split stays deterministic. */
static int nncore_parts(double work, double per_part) {
    double parts = work / per_part;
    int most = nncore_threads < NNCORE_MAX_THREADS ? nncore_threads : NNCORE_MAX_THREADS;
    return parts < 1 ? 1 : parts < most ? (int) parts : most;
}

/* Posts the job set up in nncore_pool (task or unit_task, arg, parts, units)
 * to helpers 1 … parts − 1 (with `wake` 0 only to those not asleep) under a
 * new number, its gate open; the caller holds nncore_pool.run. */
static void nncore_pool_post(int parts, int wake) {
    long job = ++nncore_pool.job;
    atomic_store(&nncore_pool.left, 0);
    atomic_store(&nncore_pool.next, 0);
    atomic_store(&nncore_pool.gate, job << NNCORE_GATE_SHIFT);
    pthread_mutex_lock(&nncore_pool.lock);
    for (int part = 1; part < parts; part++) {
        if (!wake && atomic_load(&nncore_pool.asleep[part]))
            continue;
        atomic_store(&nncore_pool.posted[part], job);
        atomic_fetch_add(&nncore_pool.woken[part], 1);
        pthread_cond_signal(&nncore_pool.wake[part]);
    }
    pthread_mutex_unlock(&nncore_pool.lock);
}

/* Waits until `helpers` helpers are done with the current job. */
static void nncore_pool_wait(int helpers) {
    int spins = 0;
    while (atomic_load(&nncore_pool.left) < helpers) {
        if (spins++ < NNCORE_SPINS)
            NNCORE_PAUSE();
        else
            sched_yield();
    }
}

/* Parts a job may use: at most `parts`, nncore_threads, NNCORE_MAX_THREADS and
 * the helpers running (+ 1), after starting those missing when `grow`; the
 * caller holds nncore_pool.run. */
static int nncore_pool_parts(int parts, int grow) {
    if (parts > nncore_threads) parts = nncore_threads;
    if (parts > NNCORE_MAX_THREADS) parts = NNCORE_MAX_THREADS;
    if (parts < 1) parts = 1;
    if (parts > 1 && grow)
        return nncore_pool_grow(parts);
    return parts < nncore_pool.helpers + 1 ? parts : nncore_pool.helpers + 1;
}

/* Run task(arg, part, parts) for every part < parts (at most nncore_threads,
 * at most NNCORE_MAX_THREADS), part p on helper p, and wait for all of them. */
static void nncore_parallel(nncore_task task, void* arg, int parts) {
    nncore_pool_init();
    pthread_mutex_lock(&nncore_pool.run);
    parts = nncore_pool_parts(parts, 1);
    if (parts > 1) {
        nncore_pool.task = task;
        nncore_pool.arg = arg;
        nncore_pool.parts = parts;
        nncore_pool_post(parts, 1);
    }
    task(arg, 0, parts);
    if (parts > 1) { /* every helper joins: the gate stays open until they have */
        nncore_pool_wait(parts - 1);
        atomic_fetch_or(&nncore_pool.gate, NNCORE_GATE_CLOSED);
    }
    pthread_mutex_unlock(&nncore_pool.run);
}

/* Run task(arg, unit, slot) for every unit < units on the calling thread
 * (slot 0) and helpers 1 … parts − 1 (slots 1 …; parts at most nncore_threads
 * and NNCORE_MAX_THREADS), each taking the next unit left, and return when all
 * units are done; helpers that had not joined by then are not waited for.
 * wake = 0: sleeping helpers are not woken, nor new ones started (the caller
 * may do every unit). */
static void nncore_parallel_units(nncore_unit_task task, void* arg, long units, int parts,
                                  int wake) {
    nncore_pool_init();
    pthread_mutex_lock(&nncore_pool.run);
    parts = nncore_pool_parts(units < parts ? (int) units : parts, wake);
    nncore_pool.task = NULL;
    nncore_pool.unit_task = task;
    nncore_pool.arg = arg;
    nncore_pool.parts = parts;
    nncore_pool.units = units;
    if (parts > 1)
        nncore_pool_post(parts, wake);
    else
        atomic_store(&nncore_pool.next, 0);
    nncore_pool_take_units(0);
    if (parts > 1) { /* close the gate; wait for the helpers that got in */
        long gate = atomic_fetch_or(&nncore_pool.gate, NNCORE_GATE_CLOSED);
        nncore_pool_wait((int) (gate & NNCORE_GATE_JOINED));
    }
    pthread_mutex_unlock(&nncore_pool.run);
}
#endif
