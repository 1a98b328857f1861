/* The drift watch's reading of nftables events (agent/drift.h), from
 * hand-made event datagrams: a transaction is judged when its NEWGEN
 * arrives, the agent's own port id never counts, and a generation already
 * known right (the agent's whole replace, a read-back) makes older events
 * moot. Also the bundle tag's text form (agent/nft.h). */
#include <arpa/inet.h>
#include <errno.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "drift.h"
#include "nft.h"
#include "test.h"

#define OWN   1000u
#define OTHER 2000u

/* A datagram under construction. */
struct dgram {
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
	size_t len;
};

static struct nlmsghdr *put(struct dgram *d, uint16_t type, uint32_t portid, uint8_t family)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(d->buf + d->len);
	nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | type;
	nlh->nlmsg_pid = portid;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	return nlh;
}

/* An event about an object of table (attribute 1 of every object). */
static void event(struct dgram *d, uint16_t type, uint32_t portid, const char *table)
{
	struct nlmsghdr *nlh = put(d, type, portid, NFPROTO_INET);
	mnl_attr_put_strz(nlh, 1, table);
	d->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

static void newgen(struct dgram *d, uint32_t portid, uint32_t gen)
{
	struct nlmsghdr *nlh = put(d, NFT_MSG_NEWGEN, portid, AF_UNSPEC);
	mnl_attr_put_u32(nlh, NFTA_GEN_ID, htonl(gen));
	d->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

static struct drift_report feed(struct drift_state *st, struct dgram *d)
{
	struct drift_report rep = {0};
	drift_state_feed(st, d->buf, d->len, OWN, &rep);
	d->len = 0;
	return rep;
}

TEST(foreign_change_reported_at_its_newgen)
{
	struct drift_state st = {0};
	struct dgram d = {.len = 0};
	drift_state_committed(&st, 9, 10, true);
	event(&d, NFT_MSG_NEWRULE, OTHER, NFT_TABLE_NAME);
	struct drift_report rep = feed(&st, &d);
	CHECK(rep.foreign_changes == 0); /* its transaction is not complete yet */
	newgen(&d, OTHER, 11);
	rep = feed(&st, &d);
	CHECK(rep.foreign_changes == 1);
	CHECK(rep.last_portid == OTHER);
	CHECK_STR(rep.last_what, "rule added");
	CHECK(st.known == 10); /* a change to our table does not make it known */
}

TEST(own_and_other_tables_ignored)
{
	struct drift_state st = {0};
	struct dgram d = {.len = 0};
	drift_state_committed(&st, 9, 10, true);
	event(&d, NFT_MSG_DELRULE, OWN, NFT_TABLE_NAME);
	event(&d, NFT_MSG_NEWSETELEM, OTHER, "filter");
	newgen(&d, OTHER, 11);
	struct drift_report rep = feed(&st, &d);
	CHECK(rep.foreign_changes == 0);
	CHECK(st.known == 11); /* the next transaction left our table alone */
	newgen(&d, OTHER, 13); /* 12 was not seen: known stays */
	rep = feed(&st, &d);
	CHECK(st.known == 11);
}

TEST(changes_before_a_whole_replace_are_moot)
{
	struct drift_state st = {0};
	struct dgram d = {.len = 0};
	/* Someone deleted the table at 12; our replace made 13 (its events
	 * were queued before we read them). */
	drift_state_committed(&st, 12, 13, true);
	event(&d, NFT_MSG_DELTABLE, OTHER, NFT_TABLE_NAME);
	newgen(&d, OTHER, 12);
	struct drift_report rep = feed(&st, &d);
	CHECK(rep.foreign_changes == 0);
	/* A delta does not overwrite: what came before it still counts. */
	struct drift_state st2 = {.known = 5};
	drift_state_committed(&st2, 12, 13, false);
	CHECK(st2.known == 5);
	event(&d, NFT_MSG_DELTABLE, OTHER, NFT_TABLE_NAME);
	newgen(&d, OTHER, 12);
	rep = feed(&st2, &d);
	CHECK(rep.foreign_changes == 1);
	/* A delta right after a known generation moves it on. */
	struct drift_state st3 = {.known = 12};
	drift_state_committed(&st3, 12, 13, false);
	CHECK(st3.known == 13);
}

TEST(checked_generation_makes_older_events_moot)
{
	struct drift_state st = {0};
	struct dgram d = {.len = 0};
	drift_state_checked(&st, 20);
	event(&d, NFT_MSG_NEWCHAIN, OTHER, NFT_TABLE_NAME);
	newgen(&d, OTHER, 20);
	CHECK(feed(&st, &d).foreign_changes == 0);
	event(&d, NFT_MSG_NEWCHAIN, OTHER, NFT_TABLE_NAME);
	newgen(&d, OTHER, 21);
	CHECK(feed(&st, &d).foreign_changes == 1);
	drift_state_checked(&st, 19); /* never goes back */
	CHECK(st.known == 20);
}

TEST(unknown_state_reports_everything)
{
	struct drift_state st = {0};
	struct dgram d = {.len = 0};
	event(&d, NFT_MSG_NEWRULE, OTHER, NFT_TABLE_NAME);
	newgen(&d, OTHER, 7);
	CHECK(feed(&st, &d).foreign_changes == 1);
	newgen(&d, OTHER, 8);
	feed(&st, &d);
	CHECK(st.known == 0); /* nothing known: nothing to move on from */
}

TEST(malformed_events_skipped)
{
	struct drift_state st = {.known = 3};
	struct dgram d = {.len = 0};
	struct nlmsghdr *nlh = put(&d, NFT_MSG_NEWRULE, OTHER, NFPROTO_INET);
	mnl_attr_put_u32(nlh, 1, 42); /* table name not a string */
	d.len += NLMSG_ALIGN(nlh->nlmsg_len);
	nlh = put(&d, NFT_MSG_NEWGEN, OTHER, AF_UNSPEC); /* no id: judged to be safe, not moved on */
	d.len += NLMSG_ALIGN(nlh->nlmsg_len);
	d.len += 3; /* a torn tail */
	struct drift_report rep = feed(&st, &d);
	CHECK(rep.foreign_changes == 0);
	CHECK(st.known == 3);
	CHECK(drift_gen_after(1, UINT32_MAX)); /* the id wraps */
	CHECK(!drift_gen_after(5, 5));
}

TEST(tag_round_trip)
{
	struct nft_tag t = {.serial = 1764633600123, .revision = 42}, back;
	memset(t.hash, 'a', BUNDLE_HASH_HEX);
	t.hash[3] = '7';
	char text[NFT_TAG_MAX];
	nft_tag_format(&t, text);
	CHECK(strncmp(text, "serial 1764633600123 revision 42 bundle aaa7", 44) == 0);
	CHECK(nft_tag_parse(text, &back) == 0);
	CHECK(back.serial == t.serial && back.revision == t.revision);
	CHECK_STR(back.hash, t.hash);
	t.revision = -1;
	nft_tag_format(&t, text);
	CHECK(nft_tag_parse(text, &back) == 0 && back.revision == -1);
	/* The ends of the range (the least was negated past int64's end). */
	t.revision = INT64_MIN;
	nft_tag_format(&t, text);
	CHECK(nft_tag_parse(text, &back) == 0 && back.revision == INT64_MIN);
	t.revision = INT64_MAX;
	nft_tag_format(&t, text);
	CHECK(nft_tag_parse(text, &back) == 0 && back.revision == INT64_MAX);
}

TEST(tag_parse_refuses_what_we_do_not_write)
{
	static const char *const bad[] = {
	    "",
	    "serial",
	    "serial  1 revision 2 bundle " /* two spaces */,
	    "serial 1 revision 2 bundle abc",
	    "serial -1 revision 2 bundle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "serial 1 revision 2 bundle AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "serial 1 revision 2 bundle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ",
	    "serial 99999999999999999999 revision 2 bundle "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "serial 1 revision x bundle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    /* fuzz-agentstate: read, but not what nft_tag_format() writes */
	    "serial 01 revision 2 bundle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "serial 1 revision -0 bundle aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "serial 1 revision 9999999999999999999 bundle "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "serial 1 revision -9223372036854775809 bundle "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct nft_tag t = {.serial = 5};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(nft_tag_parse(bad[i], &t) == -EINVAL);
		CHECK(t.serial == 5); /* untouched */
	}
}

int main(void)
{
	return test_main();
}
