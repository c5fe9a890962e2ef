/* A sampling profiler in the guest kernel, so control-plane commands can
 * be profiled without perf's dependency closure in the image (under TCG
 * the initramfs size dominates boot time).
 *
 * The loader attaches pf_sample to a software cpu-clock perf event on
 * every CPU. Each tick counts one sample keyed by the interrupted task's
 * process, whether it ran in the kernel (then the instruction pointer too,
 * for symbolizing with /proc/kallsyms) or in user mode (pointer dropped:
 * only the kernel's functions are named), and whether the task is in the
 * cgroup the loader put the profiled commands in — which their children
 * inherit, so a shell's `nft` counts as the command. */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define IN_TARGET 1
#define IN_KERNEL 2

struct pf_key {
	__u64 ip; /* 0 in user mode */
	__u32 tgid;
	__u32 flags; /* IN_TARGET | IN_KERNEL */
};

/* The profiled cgroup's id (its cgroup2 directory's inode); 0: none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pf_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pf_key);
	__type(value, __u64);
} pf_counts SEC(".maps");

/* Samples that found the count map full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pf_dropped SEC(".maps");

SEC("perf_event")
int pf_sample(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	__u64 ip = PT_REGS_IP(&ctx->regs), one = 1;
	__u64 *target = bpf_map_lookup_elem(&pf_target, &zero);
	__u64 *count, *dropped;
	struct pf_key key = {};

	key.tgid = bpf_get_current_pid_tgid() >> 32;
	/* x86-64 kernel addresses are the upper half of the address space. */
	if (ip >> 63) {
		key.ip = ip;
		key.flags |= IN_KERNEL;
	}
	if (target && *target && bpf_get_current_cgroup_id() == *target)
		key.flags |= IN_TARGET;
	count = bpf_map_lookup_elem(&pf_counts, &key);
	if (count) {
		/* Result unused: clang emits the plain atomic add 5.10 has
		 * (no fetch variant before 5.12); two CPUs may tick on one key. */
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	if (!bpf_map_update_elem(&pf_counts, &key, &one, BPF_NOEXIST))
		return 0;
	/* Another CPU inserted the key first, or the map is full. */
	count = bpf_map_lookup_elem(&pf_counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	dropped = bpf_map_lookup_elem(&pf_dropped, &zero);
	if (dropped)
		*dropped += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
