/* The firewall's fixed attach point: jumps to whichever pipeline
 * generation is active. With none loaded the tail call falls through and
 * the packet passes, as with an empty iptables FORWARD chain. */
#include "firewall.h"

SEC("classifier")
int firewall_ingress(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &fw_pipeline, 0);
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
