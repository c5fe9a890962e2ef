/* Per-call time of the kernel functions a technology runs per packet
 * (netfilter hook bodies, IPVS's hook, tc's classifier), measured inside
 * the guest kernel with a kprobe at entry and a kretprobe at return.
 *
 * Under TCG a TCP handshake costs milliseconds and hides a rule walk of a
 * tenth of that; the time between entry and return of the hook function is
 * the walk itself, plus a constant probe overhead (it cancels in slopes,
 * not in ratios).
 *
 * The loader attaches slot i's pair of programs to the i-th function it was
 * given. 5.10 has no bpf_get_func_ip, so one program pair per slot is how a
 * return knows which function it ends. Every call's duration is one sample
 * (slot, netfilter hook number, ns) in a per-CPU region of `samples`: the
 * traced functions run in softirq context, which does not nest on one CPU,
 * so a per-CPU cursor needs no atomics (5.10 has no fetch-and-add).
 *
 * A traced function can re-enter itself on the same CPU: from 5.16 IPVS's
 * `ip_vs_in_hook` serves LOCAL_IN and LOCAL_OUT, and its NAT transmit
 * sends the packet through LOCAL_OUT from inside the LOCAL_IN call. So each
 * slot keeps a small stack of starts: with one start, the inner call
 * overwrote the outer one, and only the inner (LOCAL_OUT) call was
 * recorded — no INPUT sample at all on 6.1 and 6.12. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 16
#define MAX_CPUS 8
#define PER_CPU_SAMPLES 16384 /* power of two */
#define NO_HOOK 0xff

#define DEPTH 4 /* power of two */

struct start {
	__u64 ns[DEPTH];
	__u8 hook[DEPTH];
	__u32 depth;
};

/* Per slot: which argument (1-5) of the traced function is the
 * `struct nf_hook_state *` (its first byte is the hook number on 5.10 as
 * on 6.x: an unsigned int there, a u8 later, little-endian either way);
 * 0: the function has none (tc's classifier). Written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} ht_state_arg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct start);
} ht_starts SEC(".maps");

/* Per CPU: samples written so far (also past the end: the loader reports
 * how many were dropped). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ht_cursor SEC(".maps");

/* CPU c's samples at [c * PER_CPU_SAMPLES, (c + 1) * PER_CPU_SAMPLES):
 * slot << 60 | hook << 52 | ns (52 bits of ns: 52 days). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS * PER_CPU_SAMPLES);
	__type(key, __u32);
	__type(value, __u64);
} ht_samples SEC(".maps");

/* All five registers are read up front and pinned with an empty asm:
 * otherwise clang turns the switch into one load from ctx + a variable
 * offset, which the verifier refuses ("dereference of modified ctx"). */
#define PIN(v) asm volatile("" : "+r"(v))

static __always_inline __u64 state_arg(struct pt_regs *ctx, __u32 which)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx),
	      a4 = PT_REGS_PARM4(ctx), a5 = PT_REGS_PARM5(ctx);

	PIN(a1);
	PIN(a2);
	PIN(a3);
	PIN(a4);
	PIN(a5);
	switch (which) {
	case 1:
		return a1;
	case 2:
		return a2;
	case 3:
		return a3;
	case 4:
		return a4;
	case 5:
		return a5;
	default:
		return 0;
	}
}

static __always_inline int enter(struct pt_regs *ctx, __u32 slot)
{
	struct start *s = bpf_map_lookup_elem(&ht_starts, &slot);
	__u32 *which = bpf_map_lookup_elem(&ht_state_arg, &slot);
	__u8 hook = NO_HOOK;
	__u32 d;

	if (!s || !which)
		return 0;
	if (s->depth >= DEPTH) {
		/* Deeper than the stack: counted, so its return is matched. */
		s->depth += 1;
		return 0;
	}
	if (*which) {
		__u64 state = state_arg(ctx, *which);
		if (!state || bpf_probe_read_kernel(&hook, 1, (void *)state))
			hook = NO_HOOK;
	}
	d = s->depth & (DEPTH - 1);
	s->hook[d] = hook;
	s->depth += 1;
	/* Last, so the probe's own work above is not timed. */
	s->ns[d] = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int leave(__u32 slot)
{
	__u64 now = bpf_ktime_get_ns();
	struct start *s = bpf_map_lookup_elem(&ht_starts, &slot);
	__u32 zero = 0, cpu, idx, d;
	__u64 *cursor, *sample, delta, start;
	__u8 hook;

	if (!s || !s->depth)
		return 0;
	s->depth -= 1;
	if (s->depth >= DEPTH)
		return 0;
	d = s->depth & (DEPTH - 1);
	start = s->ns[d];
	hook = s->hook[d];
	s->ns[d] = 0;
	if (!start)
		return 0;
	delta = now - start;
	cursor = bpf_map_lookup_elem(&ht_cursor, &zero);
	if (!cursor)
		return 0;
	cpu = bpf_get_smp_processor_id();
	if (cpu >= MAX_CPUS || *cursor >= PER_CPU_SAMPLES) {
		*cursor += 1;
		return 0;
	}
	idx = cpu * PER_CPU_SAMPLES + (__u32)*cursor;
	*cursor += 1;
	sample = bpf_map_lookup_elem(&ht_samples, &idx);
	if (sample)
		*sample = ((__u64)slot << 60) | ((__u64)hook << 52) |
			  (delta & ((1ULL << 52) - 1));
	return 0;
}

#define SLOT(n)                                                        \
	SEC("kprobe/ht_enter" #n)                                      \
	int ht_enter##n(struct pt_regs *ctx) { return enter(ctx, n); } \
	SEC("kretprobe/ht_leave" #n)                                   \
	int ht_leave##n(struct pt_regs *ctx) { return leave(n); }

SLOT(0)
SLOT(1)
SLOT(2)
SLOT(3)
SLOT(4)
SLOT(5)
SLOT(6)
SLOT(7)
SLOT(8)
SLOT(9)
SLOT(10)
SLOT(11)
SLOT(12)
SLOT(13)
SLOT(14)
SLOT(15)

char _license[] SEC("license") = "GPL";
