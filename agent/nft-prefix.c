/* nft-prefix: the rule-id prefixes of NFLOG messages, "bh:D:i3" (nft-prefix.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nft-prefix.h"

void nft_prefix_format(const struct nft_prefix *p, char buf[NFT_PREFIX_MAX])
{
	char v = p->verdict == VERDICT_AUDIT ? 'A' : p->verdict == VERDICT_ACCEPT ? 'P' : 'D';
	char d = p->dir == DIR_EGRESS ? 'e' : 'i';

	if (p->position == NFT_POSITION_INVALID)
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%cx", v, d);
	else if (p->position < 0)
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%c-", v, d);
	else
		snprintf(buf, NFT_PREFIX_MAX, "bh:%c:%c%ld", v, d, p->position);
}

int nft_prefix_parse(const char *s, struct nft_prefix *out)
{
	struct nft_prefix p;
	long pos = 0;

	if (strncmp(s, "bh:", 3) != 0 || (s[3] != 'D' && s[3] != 'A' && s[3] != 'P') || s[4] != ':')
		return -EINVAL;
	p.verdict = s[3] == 'A' ? VERDICT_AUDIT : s[3] == 'P' ? VERDICT_ACCEPT : VERDICT_DROP;
	if (s[5] == 'i')
		p.dir = DIR_INGRESS;
	else if (s[5] == 'e')
		p.dir = DIR_EGRESS;
	else
		return -EINVAL;
	s += 6;
	if (s[0] == '-' && s[1] == '\0') {
		p.position = NFT_POSITION_FALLBACK;
	} else if (s[0] == 'x' && s[1] == '\0' && p.verdict == VERDICT_DROP) {
		p.position = NFT_POSITION_INVALID; /* only ever a drop */
	} else {
		if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0'))
			return -EINVAL;
		for (; *s; s++) {
			if (*s < '0' || *s > '9' || pos > (1L << 40))
				return -EINVAL;
			pos = pos * 10 + (*s - '0');
		}
		p.position = pos;
	}
	*out = p;
	return 0;
}
