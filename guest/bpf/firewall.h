/* Types shared by the firewall entry program and the pipeline variants. */
#ifndef RULEBENCH_FIREWALL_H
#define RULEBENCH_FIREWALL_H

#include "common.h"

#define FW_MAX_FLOWS 65536

/* Connections the firewall accepted, both directions, for the optional
 * "accept established" shortcut. Shared by all pipeline generations
 * (pinned by name), so a ruleset swap does not forget open connections. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_MAX_FLOWS);
	__type(key, struct flow);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_conntrack SEC(".maps");

/* Slot 0 holds the active pipeline; swapping it is the atomic ruleset
 * replace (one prog-array update). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fw_pipeline SEC(".maps");

#endif
