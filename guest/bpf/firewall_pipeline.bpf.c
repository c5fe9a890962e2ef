/* The bpf-iptables classifier (Linear Bit Vector Search, Miano et al.,
 * CCR 2019), rebuilt for rulebench.
 *
 * Rule i of the ordered ruleset is bit i of a bit vector. For each field
 * (source prefix, destination prefix, protocol, source port, destination
 * port) one lookup gives the vector of rules that field allows; the AND of
 * the five vectors holds exactly the rules that match, and its lowest set
 * bit is the first matching rule. The loader computes the vectors; this
 * program only looks them up and ANDs words.
 *
 * MAX_WORDS (set per build variant by -DMAX_WORDS) bounds the loop over
 * vector words, which is what the 5.10 verifier has to walk: it caps the
 * rules one variant holds at 64 * MAX_WORDS. Verification cost is about
 * the loop body times MAX_WORDS, against the verifier's budget of 1M
 * processed instructions and 8,192 pending branches. */
#include "firewall.h"

#ifndef MAX_WORDS
#define MAX_WORDS 16
#endif
/* Placeholder: the loader sizes fw_vectors to the ruleset it loads. */
#define MAX_VECTORS 1024

struct fw_config {
	__u32 nwords;
	/* Vector ids for fields no entry names (zero in the arrays). */
	__u32 proto_default;
	__u32 sport_default;
	__u32 dport_default;
	__u8 default_accept;
	__u8 accept_established;
	__u8 pad[2];
};

/* first/last nonzero word bound the AND loop; first > last = empty,
 * which gives bpf-iptables' early exit without touching the words. */
struct bitvec {
	__u32 first;
	__u32 last;
	__u64 words[MAX_WORDS];
};

struct lpm_v4 {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_config);
} fw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} fw_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);
} fw_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} fw_proto SEC(".maps");

/* Indexed by port in host order; ranges are split into elementary
 * intervals by the loader, every port of one interval shares a vector. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} fw_sport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} fw_dport SEC(".maps");

/* Vector storage, deduplicated: many field values share one vector. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VECTORS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bitvec);
} fw_vectors SEC(".maps");

/* Action of rule i: 1 accept, 0 drop. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_WORDS * 64);
	__type(key, __u32);
	__type(value, __u8);
} fw_actions SEC(".maps");

static __always_inline __u32 lowest_bit(__u64 w)
{
	/* No ctz instruction in BPF. Branch-free: the bits below the lowest
	 * set bit, counted with a SWAR popcount. Branches here would be
	 * walked by the verifier once per path (2^6 of them). */
	__u64 x = (w & -w) - 1;

	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (__u32)((x * 0x0101010101010101ULL) >> 56);
}

static __always_inline struct bitvec *vector(__u32 id)
{
	return bpf_map_lookup_elem(&fw_vectors, &id);
}

static __always_inline __u32 port_vector(void *map, __u16 port_be, __u32 fallback)
{
	__u32 port = bpf_ntohs(port_be);
	__u32 *id = bpf_map_lookup_elem(map, &port);

	return id && *id ? *id : fallback;
}

static __always_inline __u32 prefix_vector(void *map, __u32 addr)
{
	struct lpm_v4 key = { .prefixlen = 32, .addr = addr };
	__u32 *id = bpf_map_lookup_elem(map, &key);

	/* The loader always inserts 0.0.0.0/0, so a miss means no ruleset. */
	return id ? *id : 0;
}

static __always_inline int accept(const struct fw_config *cfg, struct flow *f)
{
	if (cfg->accept_established) {
		struct flow rev = {
			.saddr = f->daddr, .daddr = f->saddr, .sport = f->dport, .dport = f->sport,
			.proto = f->proto,
		};
		__u8 one = 1;

		bpf_map_update_elem(&fw_conntrack, f, &one, BPF_ANY);
		bpf_map_update_elem(&fw_conntrack, &rev, &one, BPF_ANY);
	}
	/* UNSPEC, not OK: later tc filters still run (and the end of the
	 * chain passes the packet). */
	return TC_ACT_UNSPEC;
}

static __always_inline int policy(const struct fw_config *cfg, struct flow *f)
{
	return cfg->default_accept ? accept(cfg, f) : TC_ACT_SHOT;
}

SEC("classifier")
int firewall_pipeline(struct __sk_buff *skb)
{
	struct bitvec *v[5];
	struct fw_config *cfg;
	struct flow f;
	__u32 zero = 0, id, start, end, found;
	__u64 hit;

	cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!cfg || parse_flow(skb, &f))
		return TC_ACT_UNSPEC;
	f.tcp_flags = 0;
	if (cfg->accept_established && bpf_map_lookup_elem(&fw_conntrack, &f))
		return TC_ACT_UNSPEC;

	id = prefix_vector(&fw_src, f.saddr);
	v[0] = vector(id);
	id = prefix_vector(&fw_dst, f.daddr);
	v[1] = vector(id);
	id = f.proto;
	{
		__u32 *p = bpf_map_lookup_elem(&fw_proto, &id);
		id = p && *p ? *p : cfg->proto_default;
	}
	v[2] = vector(id);
	v[3] = vector(port_vector(&fw_sport, f.sport, cfg->sport_default));
	v[4] = vector(port_vector(&fw_dport, f.dport, cfg->dport_default));
	if (!v[0] || !v[1] || !v[2] || !v[3] || !v[4])
		return policy(cfg, &f);

	/* Only words where every vector can have bits: [max first, min last]. */
	start = v[0]->first;
	end = v[0]->last;
#pragma clang loop unroll(full)
	for (int k = 1; k < 5; k++) {
		if (v[k]->first > start)
			start = v[k]->first;
		if (v[k]->last < end)
			end = v[k]->last;
	}
	if (end >= cfg->nwords)
		end = cfg->nwords - 1;
	if (end >= MAX_WORDS)
		end = MAX_WORDS - 1;

	/* The verifier walks this loop once per word (5.10 has no bpf_loop),
	 * so the body is kept to one exit branch plus the bounds: the first
	 * nonzero word leaves the loop and is resolved once, after it. */
	hit = 0;
	found = 0;
#pragma clang loop unroll(disable)
	for (__u32 j = 0; j < MAX_WORDS; j++) {
		__u32 i = start + j;
		__u64 w;

		if (i > end)
			break;
		/* end < MAX_WORDS (clamped above), so the mask changes nothing;
		 * it is what proves the bound to the verifier, and the empty asm
		 * keeps clang from dropping it as redundant. */
		asm volatile("" : "+r"(i));
		i &= MAX_WORDS - 1;
		w = v[0]->words[i] & v[1]->words[i] & v[2]->words[i] & v[3]->words[i] &
		    v[4]->words[i];
		if (w) {
			hit = w;
			found = i;
			break;
		}
	}
	if (!hit)
		return policy(cfg, &f);
	{
		__u32 rule = found * 64 + lowest_bit(hit);
		__u8 *action = bpf_map_lookup_elem(&fw_actions, &rule);

		if (action && *action)
			return accept(cfg, &f);
	}
	return TC_ACT_SHOT;
}

char _license[] SEC("license") = "GPL";
