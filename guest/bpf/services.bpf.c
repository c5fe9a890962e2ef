/* kube-proxy-like service load balancing at tc ingress on the LB node.
 *
 * Attached to every interface of the root namespace: a packet from a
 * client to a VIP:port is DNATed to one backend (random per new
 * connection, or sticky per client for ClientIP affinity); a reply from
 * that backend is translated back to the VIP. Both directions are found
 * through LRU "conntrack" maps, so established connections keep their
 * backend across service changes, as with netfilter conntrack.
 *
 * A service's whole backend list is one map value: changing a service is
 * a single map update, never a half-written backend set. */
#include "common.h"

#define MAX_BACKENDS 64 /* power of two: see CLAMP_POW2 */
#define MAX_SERVICES 262144
#define MAX_FLOWS 65536

struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct endpoint {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct svc_value {
	__u32 count;
	__u32 affinity_timeout_s; /* 0: no session affinity */
	struct endpoint backends[MAX_BACKENDS];
};

struct affinity_key {
	__u32 client;
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct affinity_value {
	struct endpoint backend;
	__u64 last_seen_ns;
};

/* No preallocation: memory follows the number of services, not the cap. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} services SEC(".maps");

/* client -> VIP flow => chosen backend */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow);
	__type(value, struct endpoint);
} ct_forward SEC(".maps");

/* backend -> client flow => the VIP:port to answer from */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow);
	__type(value, struct endpoint);
} ct_reverse SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
} affinity SEC(".maps");

static __always_inline struct endpoint random_backend(const struct svc_value *svc)
{
	__u32 idx = bpf_get_prandom_u32() % svc->count;

	CLAMP_POW2(idx, MAX_BACKENDS);
	return svc->backends[idx];
}

static __always_inline int is_backend(const struct svc_value *svc, struct endpoint be)
{
	for (int i = 0; i < MAX_BACKENDS; i++) {
		if (i >= svc->count)
			break;
		if (svc->backends[i].ip == be.ip && svc->backends[i].port == be.port)
			return 1;
	}
	return 0;
}

/* ClientIP affinity: reuse the client's backend while it is still in the
 * service and the entry is younger than the timeout (kube-proxy's rule). */
static __always_inline struct endpoint choose_backend(const struct svc_value *svc,
						      const struct flow *f)
{
	struct affinity_key key = {
		.client = f->saddr, .vip = f->daddr, .port = f->dport, .proto = f->proto,
	};
	struct affinity_value *seen, fresh = {};
	__u64 now;

	if (!svc->affinity_timeout_s)
		return random_backend(svc);
	now = bpf_ktime_get_ns();
	seen = bpf_map_lookup_elem(&affinity, &key);
	if (seen && now - seen->last_seen_ns < (__u64)svc->affinity_timeout_s * 1000000000ULL &&
	    is_backend(svc, seen->backend)) {
		seen->last_seen_ns = now;
		return seen->backend;
	}
	fresh.backend = random_backend(svc);
	fresh.last_seen_ns = now;
	bpf_map_update_elem(&affinity, &key, &fresh, BPF_ANY);
	return fresh.backend;
}

static __always_inline int reply_to_client(struct __sk_buff *skb, struct flow *f)
{
	struct endpoint *vip = bpf_map_lookup_elem(&ct_reverse, f);

	if (!vip)
		return 0;
	rewrite_addr_port(skb, f->proto, IP_SADDR_OFF, f->saddr, vip->ip, L4_SPORT_OFF, f->sport,
			  vip->port);
	return 1;
}

SEC("classifier")
int services_ingress(struct __sk_buff *skb)
{
	struct flow f, rev;
	struct endpoint be, *known;
	struct svc_value *svc;
	__u8 flags;

	if (parse_flow(skb, &f) || (f.proto != IPPROTO_TCP && f.proto != IPPROTO_UDP))
		return TC_ACT_UNSPEC;
	flags = f.tcp_flags;
	f.tcp_flags = 0;
	if (reply_to_client(skb, &f))
		return TC_ACT_UNSPEC;

	known = bpf_map_lookup_elem(&ct_forward, &f);
	/* A bare SYN starts a new connection even if an old entry for the
	 * same 4-tuple survives (port reuse): choose again, like conntrack
	 * reopening a TIME_WAIT entry. */
	if (known && !(f.proto == IPPROTO_TCP && (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)) {
		be = *known;
	} else {
		struct svc_key key = { .vip = f.daddr, .port = f.dport, .proto = f.proto };
		struct endpoint vip = { .ip = f.daddr, .port = f.dport };

		svc = bpf_map_lookup_elem(&services, &key);
		if (!svc || !svc->count || svc->count > MAX_BACKENDS)
			return TC_ACT_UNSPEC;
		be = choose_backend(svc, &f);
		rev = (struct flow){
			.saddr = be.ip, .daddr = f.saddr, .sport = be.port, .dport = f.sport,
			.proto = f.proto,
		};
		bpf_map_update_elem(&ct_forward, &f, &be, BPF_ANY);
		bpf_map_update_elem(&ct_reverse, &rev, &vip, BPF_ANY);
	}
	rewrite_addr_port(skb, f.proto, IP_DADDR_OFF, f.daddr, be.ip, L4_DPORT_OFF, f.dport, be.port);
	/* UNSPEC: let a later tc filter (the firewall) see the packet too. */
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
