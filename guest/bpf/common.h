/* Shared packet parsing and NAT helpers for rulebench's tc programs.
 *
 * Only what the workloads need: Ethernet + IPv4 without options + TCP/UDP.
 * Anything else is left alone (the caller passes it on), so ARP, IPv6 and
 * fragments behave as with no program attached. */
#ifndef RULEBENCH_COMMON_H
#define RULEBENCH_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Map pinning as libbpf spells it; aya reads the same BTF field. */
#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

#define IP_OFF ETH_HLEN
#define L4_OFF (ETH_HLEN + sizeof(struct iphdr))
#define IP_DADDR_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define IP_SADDR_OFF (IP_OFF + offsetof(struct iphdr, saddr))
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
/* TCP and UDP both start with source then destination port. */
#define L4_SPORT_OFF (L4_OFF + 0)
#define L4_DPORT_OFF (L4_OFF + 2)
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* One direction of a flow, every field in network byte order as on the
 * wire (the loader writes and reads the same order). ports are 0 for
 * protocols without ports. */
struct flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 tcp_flags; /* not part of map keys: zeroed before lookups */
	__u8 pad[2];
};

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Fills `f` from the packet; returns 0 for IPv4 (any protocol; ports
 * only for unfragmented TCP/UDP), -1 for anything to pass untouched. */
static __always_inline int parse_flow(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return -1;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	f->sport = 0;
	f->dport = 0;
	f->tcp_flags = 0;
	f->pad[0] = 0;
	f->pad[1] = 0;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP ? -1 : 0;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = data + L4_OFF;
		if ((void *)(tcp + 1) > data_end)
			return -1;
		f->sport = tcp->source;
		f->dport = tcp->dest;
		f->tcp_flags = ((__u8 *)tcp)[13];
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = data + L4_OFF;
		if ((void *)(udp + 1) > data_end)
			return -1;
		f->sport = udp->source;
		f->dport = udp->dest;
	}
	return 0;
}

static __always_inline int l4_csum_off(__u8 proto)
{
	return L4_OFF + (proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
					      : offsetof(struct udphdr, check));
}

/* Rewrites one address (at addr_off) and one port (at port_off) and fixes
 * the IP and TCP/UDP checksums. For UDP a zero checksum means "none" and
 * must stay zero: BPF_F_MARK_MANGLED_0 does exactly that. */
static __always_inline int rewrite_addr_port(struct __sk_buff *skb, __u8 proto,
					     int addr_off, __u32 old_ip, __u32 new_ip,
					     int port_off, __u16 old_port, __u16 new_port)
{
	int csum_off = l4_csum_off(proto);
	__u64 l4_flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old_ip != new_ip) {
		if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip,
					l4_flags | BPF_F_PSEUDO_HDR | sizeof(new_ip)))
			return -1;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, sizeof(new_ip)))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_ip, sizeof(new_ip), 0))
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					l4_flags | sizeof(new_port)))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
			return -1;
	}
	return 0;
}

/* clang proves `x % n < MAX` for itself and then drops the bounds check
 * the verifier needs; an opaque mask keeps the bound visible. MAX must be
 * a power of two. */
#define CLAMP_POW2(x, max) asm volatile("%0 &= %1" : "+r"(x) : "i"((max)-1))

#endif
