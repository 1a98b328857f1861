/* nft-read: what the kernel holds of table inet bulkhead, as data: the
 * rules' counters, the bundle tag, the ruleset's generation id, and the
 * whole table read back and compared with the batch that would build it
 * (drift checks). Nothing read here is trusted. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "bulkhead/sha256.h"
#include "nft-batch.h"
#include "nft.h"

/* ---- rule counters ---------------------------------------------------- */

struct counter_dump {
	nft_counter_fn fn;
	void *arg;
};

/* The comment (of udata type want) in a rule's or element's userdata
 * (type-length-value, one byte each), bounds-checked here: libnftnl's
 * parser trusts the lengths. */
static bool udata_comment(const uint8_t *p, uint32_t len, uint8_t want, char *buf, size_t size)
{
	for (uint32_t off = 0; off + 2 <= len;) {
		uint8_t type = p[off], n = p[off + 1];

		if (off + 2u + n > len)
			return false;
		if (type == want) {
			if (n == 0 || n > size || p[off + 2 + n - 1] != '\0')
				return false;
			memcpy(buf, p + off + 2, n);
			return true;
		}
		off += 2u + n;
	}
	return false;
}

/* The direction of one of our chains: the base chain's name, alone or
 * before "_" (the map form's rule, class and fallback chains). */
static int chain_dir(const char *chain, enum direction *out)
{
	static const char *const names[DIR_COUNT] = {
	    [DIR_INGRESS] = NFT_CHAIN_INGRESS, [DIR_EGRESS] = NFT_CHAIN_EGRESS};

	for (int d = 0; d < DIR_COUNT; d++) {
		size_t n = strlen(names[d]);

		if (strncmp(chain, names[d], n) == 0 && (chain[n] == '\0' || chain[n] == '_')) {
			*out = d;
			return 0;
		}
	}
	return -EINVAL;
}

static int counter_rule_cb(const struct nlmsghdr *nlh, void *data)
{
	struct counter_dump *d = data;
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nft_rule_counter c = {0};
	char comment[256];
	bool counted = false;

	if (!r)
		return MNL_CB_ERROR;
	if (nftnl_rule_nlmsg_parse(nlh, r) < 0 || !nftnl_rule_is_set(r, NFTNL_RULE_CHAIN) ||
	    !nftnl_rule_is_set(r, NFTNL_RULE_HANDLE))
		goto out;
	const char *chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
	if (chain_dir(chain, &c.dir) < 0)
		goto out;
	c.handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
	if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) {
		uint32_t len = 0;
		const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);

		if (ud && udata_comment(ud, len, NFTNL_UDATA_RULE_COMMENT, comment, sizeof(comment)))
			c.comment = comment;
	}
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
	for (struct nftnl_expr *e = it ? nftnl_expr_iter_next(it) : NULL; e; e = nftnl_expr_iter_next(it)) {
		const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

		if (!name || strcmp(name, "counter") != 0)
			continue;
		c.packets += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
		c.bytes += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
		counted = true;
	}
	nftnl_expr_iter_destroy(it);
	if (counted)
		d->fn(d->arg, &c);
out:
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

/* A fresh sequence number for a request (unique on its socket). */
static uint32_t next_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)time(NULL) ^ 0x5eed0000u;
	return ++seq;
}

/* Sends the request nlh on nl and passes every answer to cb: a dump's
 * until NLMSG_DONE, any other request's first. 0, or a negative errno:
 * the kernel's (-ENOENT: no such table or set), -EINTR when a dump was
 * interrupted by a commit (NLM_F_DUMP_INTR), -ENOMEM when cb failed. */
static int nl_ask(struct mnl_socket *nl, const struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	/* A dump message is at most a page or two: room for several. */
	char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
	uint32_t portid = mnl_socket_get_portid(nl), seq = nlh->nlmsg_seq;
	bool dump = (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
	int fd = mnl_socket_get_fd(nl);

	/* Whatever an earlier request left unread (acknowledgements of a
	 * batch that failed part way) would fail the sequence check below. */
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno == EINTR)
		;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		int ret;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Sequence and port id checked; NLMSG_DONE ends a dump. */
		errno = 0;
		ret = mnl_cb_run(buf, (size_t)len, seq, portid, cb, arg);
		if (ret == MNL_CB_STOP || (ret >= 0 && !dump))
			return 0;
		if (ret < 0)
			return -(errno ? errno : EPROTO);
	}
}

/* A request for the elements of our table's set name. */
static struct nlmsghdr *ask_set_elems(char *buf, const char *name)
{
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, next_seq());

	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, NFT_TABLE_NAME);
	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, name);
	return nlh;
}

int nft_read_counters(struct mnl_socket *nl, nft_counter_fn fn, void *arg)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct counter_dump d = {.fn = fn, .arg = arg};
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nlmsghdr *nlh;
	int ret;

	if (!r)
		return -ENOMEM;
	nlh = nftnl_rule_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, next_seq());
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE_NAME);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftnl_rule_free(r);
	ret = nl_ask(nl, nlh, counter_rule_cb, &d);
	return ret == -ENOENT ? 0 : ret; /* no table: no rules */
}

/* ---- generation id ---------------------------------------------------- */

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *attr;

	if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWGEN)
		return MNL_CB_OK;
	mnl_attr_for_each (attr, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
			*(uint32_t *)data = ntohl(mnl_attr_get_u32(attr));
			return MNL_CB_OK;
		}
	}
	return MNL_CB_OK;
}

int nft_genid(struct mnl_socket *nl, uint32_t *out)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, 0, next_seq());
	uint32_t id = 0;
	int ret = nl_ask(nl, nlh, gen_cb, &id);

	if (ret < 0)
		return ret;
	if (!id) /* nf_tables never uses 0 */
		return -EPROTO;
	*out = id;
	return 0;
}

/* ---- the bundle tag --------------------------------------------------- */

struct tag_read {
	unsigned n; /* elements seen */
	int ret;
	struct nft_tag tag;
};

static int tag_elem_cb(const struct nlmsghdr *nlh, void *data)
{
	struct tag_read *tr = data;
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it;
	struct nftnl_set_elem *e;

	if (!s)
		return MNL_CB_ERROR;
	if (nftnl_set_elems_nlmsg_parse(nlh, s) < 0) {
		tr->ret = -EINVAL;
		goto out;
	}
	it = nftnl_set_elems_iter_create(s);
	for (e = it ? nftnl_set_elems_iter_next(it) : NULL; e; e = nftnl_set_elems_iter_next(it)) {
		uint32_t len = 0;
		const void *ud = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
		char text[NFT_TAG_MAX];

		if (tr->n++ || !ud ||
		    !udata_comment(ud, len, NFTNL_UDATA_SET_ELEM_COMMENT, text, sizeof(text)) ||
		    nft_tag_parse(text, &tr->tag) < 0)
			tr->ret = -EINVAL; /* one element, ours, or it is not a tag */
	}
	nftnl_set_elems_iter_destroy(it);
out:
	nftnl_set_free(s);
	return MNL_CB_OK;
}

int nft_tag_read(struct mnl_socket *nl, struct nft_tag *out)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct tag_read tr = {0};
	int ret;

	ret = nl_ask(nl, ask_set_elems(buf, NFT_TAG_SET), tag_elem_cb, &tr);
	if (ret < 0)
		return ret;
	if (tr.ret < 0)
		return tr.ret;
	if (!tr.n)
		return -ENOENT;
	*out = tr.tag;
	return 0;
}

/* ---- verification ------------------------------------------------------
 * A table is compared with the batch that would build it by reducing both
 * to the same records, one per object, each the text libnftnl parses from
 * the netlink message: what nf_tables dumps and what the batch sends carry
 * the same attributes, apart from what the kernel adds (handles, use
 * counts, counter values), which the records leave out. Records are not
 * kept: rules go into a digest in order, everything else into an
 * order-free sum of digests, keyed with a secret drawn once per process so
 * nobody in the namespace can make a different table add up the same. */

struct image {
	/* The rules of one chain in order, then the chain's digest into an
	 * order-free sum: the kernel lists a chain a delta added after the
	 * others, a fresh build in plan order. Both give each chain's rules
	 * together. */
	struct sha256 chain_rules;
	char chain[256]; /* whose rules chain_rules holds; "" none yet */
	uint64_t rules[2];
	uint64_t objs[2], elems[2]; /* sums: table and chains and sets; elements */
	size_t n_rules, n_objs, n_elems;
	bool failed; /* out of memory */
};

static uint8_t image_key[16];

static void image_init(struct image *im)
{
	static bool keyed;

	if (!keyed) {
		FILE *f = fopen("/dev/urandom", "rb");
		size_t n = f ? fread(image_key, 1, sizeof(image_key), f) : 0;

		if (f)
			fclose(f);
		if (n != sizeof(image_key)) { /* no urandom: weaker, still changes per run */
			uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

			memcpy(image_key, &t, sizeof(t));
		}
		keyed = true;
	}
	memset(im, 0, sizeof(*im));
}

static void image_sum(uint64_t sum[2], const char *rec, size_t len)
{
	uint8_t d[SHA256_DIGEST_LEN];
	struct sha256 h;
	uint64_t v[2];

	sha256_init(&h);
	sha256_update(&h, image_key, sizeof(image_key));
	sha256_update(&h, rec, len);
	sha256_final(&h, d);
	memcpy(v, d, sizeof(v));
	sum[0] += v[0];
	sum[1] += v[1];
}

/* The rules of the chain read so far go into the sum. */
static void image_chain_done(struct image *im)
{
	uint8_t d[SHA256_DIGEST_LEN];
	uint64_t v[2];

	if (!im->chain[0])
		return;
	sha256_update(&im->chain_rules, im->chain, strlen(im->chain) + 1);
	sha256_final(&im->chain_rules, d);
	memcpy(v, d, sizeof(v));
	im->rules[0] += v[0];
	im->rules[1] += v[1];
	im->chain[0] = '\0';
}

/* A record under construction; failed: out of memory. */
struct rec {
	char *buf;
	size_t len, cap;
	bool failed;
};

struct image_rec {
	struct image *im;
	struct rec *r;
};

static void rec_add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_add(struct rec *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->failed)
		return;
	for (;;) {
		size_t room = r->cap - r->len;

		va_start(ap, fmt);
		n = vsnprintf(r->buf + r->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			r->failed = true;
			return;
		}
		if ((size_t)n < room) {
			r->len += (size_t)n;
			return;
		}
		size_t cap = 2 * r->cap + (size_t)n + 1;
		char *b = realloc(r->buf, cap);

		if (!b) {
			r->failed = true;
			return;
		}
		r->buf = b;
		r->cap = cap;
	}
}

static void rec_hex(struct rec *r, const char *what, const void *data, uint32_t len)
{
	const uint8_t *p = data;

	rec_add(r, " %s=", what);
	for (uint32_t i = 0; p && i < len; i++)
		rec_add(r, "%02x", p[i]);
}

/* Records take the attributes the agent sets or the kernel could change
 * under us; a missing one reads as 0 or "-". */
static void image_chain(struct image *im, struct rec *r, const struct nftnl_chain *c)
{
	const char *type = nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE);

	r->len = 0;
	rec_add(r, "chain %s type=%s", nftnl_chain_get_str(c, NFTNL_CHAIN_NAME), type ? type : "-");
	if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM))
		rec_add(r, " hook=%" PRIu32 " prio=%" PRId32 " policy=%" PRIu32,
			nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM), nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO),
			nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY));
	image_sum(im->objs, r->buf, r->len);
	im->failed |= r->failed;
	im->n_objs++;
}

/* A set's size (NFTA_SET_DESC_SIZE) is left out: a hosts map keeps the
 * size it was made with across deltas, which a fresh build may size
 * otherwise (nft-plan.h), and a size too small only makes a delta fail
 * (and the whole table follow). A verdict map's data length is the
 * kernel's own. */
static void image_set(struct image *im, struct rec *r, const struct nftnl_set *s)
{
	uint32_t len = 0, dtype = nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE);
	const void *ud = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);

	r->len = 0;
	rec_add(r, "set %s flags=%" PRIu32 " key=%" PRIu32 "/%" PRIu32 " data=%" PRIu32 "/%" PRIu32,
		nftnl_set_get_str(s, NFTNL_SET_NAME), nftnl_set_get_u32(s, NFTNL_SET_FLAGS),
		nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN), dtype,
		dtype == NFT_DATA_VERDICT ? 0 : nftnl_set_get_u32(s, NFTNL_SET_DATA_LEN));
	rec_hex(r, "udata", ud, ud ? len : 0);
	if (nftnl_set_is_set(s, NFTNL_SET_DESC_CONCAT)) {
		const void *f = nftnl_set_get_data(s, NFTNL_SET_DESC_CONCAT, &len);

		rec_hex(r, "fields", f, f ? len : 0);
	}
	image_sum(im->objs, r->buf, r->len);
	im->failed |= r->failed;
	im->n_objs++;
}

/* The payload of a string attribute, NULL when it is not one. */
static const char *attr_str(const struct nlattr *attr)
{
	return mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 ? mnl_attr_get_str(attr) : NULL;
}

/* The values of a key (NFTA_SET_ELEM_KEY, _KEY_END) into r as what. */
static void rec_key(struct rec *r, const char *what, const struct nlattr *key)
{
	const struct nlattr *v;

	if (!key || mnl_attr_validate(key, MNL_TYPE_NESTED) < 0)
		return;
	mnl_attr_for_each_nested (v, key) {
		rec_hex(r, mnl_attr_get_type(v) == NFTA_DATA_VALUE ? what : "keyother",
			mnl_attr_get_payload(v), mnl_attr_get_payload_len(v));
	}
}

/* A map element's data: the verdict and its chain, read by attribute
 * (the kernel's nests carry no NLA_F_NESTED, libmnl's builder's do). */
static void rec_data(struct rec *r, const struct nlattr *data)
{
	const struct nlattr *d, *a;

	if (!data || mnl_attr_validate(data, MNL_TYPE_NESTED) < 0)
		return;
	mnl_attr_for_each_nested (d, data) {
		if (mnl_attr_get_type(d) != NFTA_DATA_VERDICT || mnl_attr_validate(d, MNL_TYPE_NESTED) < 0) {
			rec_hex(r, "dataother", mnl_attr_get_payload(d), mnl_attr_get_payload_len(d));
			continue;
		}
		mnl_attr_for_each_nested (a, d) {
			const char *chain;

			if (mnl_attr_get_type(a) == NFTA_VERDICT_CODE &&
			    mnl_attr_validate(a, MNL_TYPE_U32) == 0)
				rec_add(r, " verdict=%" PRId32, (int32_t)ntohl(mnl_attr_get_u32(a)));
			else if (mnl_attr_get_type(a) == NFTA_VERDICT_CHAIN && (chain = attr_str(a)))
				rec_add(r, " chain=%s", chain);
			else
				rec_hex(r, "verdictother", mnl_attr_get_payload(a),
					mnl_attr_get_payload_len(a));
		}
	}
}

/* A message of set elements, read here rather than by libnftnl, whose
 * parser takes only what the kernel writes (element nests of type
 * NFTA_LIST_ELEM) and not what its own builder writes (types 1, 2, …).
 * Anything an element carries beyond key, key end, flags, data and
 * userdata goes into its record as it is: ours carry nothing else. */
static void image_elems(struct image *im, struct rec *r, const struct nlmsghdr *nlh)
{
	const struct nlattr *attr, *list = NULL, *elem;
	const char *table = NULL, *set = NULL;

	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(struct nfgenmsg))
		return;
	mnl_attr_for_each (attr, nlh, sizeof(struct nfgenmsg)) {
		switch (mnl_attr_get_type(attr)) {
		case NFTA_SET_ELEM_LIST_TABLE:
			table = attr_str(attr);
			break;
		case NFTA_SET_ELEM_LIST_SET:
			set = attr_str(attr);
			break;
		case NFTA_SET_ELEM_LIST_ELEMENTS:
			if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
				list = attr;
			break;
		}
	}
	if (!table || strcmp(table, NFT_TABLE_NAME) != 0 || !list)
		return;
	mnl_attr_for_each_nested (elem, list) {
		const struct nlattr *a, *key = NULL, *key_end = NULL, *data = NULL, *ud = NULL;
		uint32_t flags = 0;

		r->len = 0;
		rec_add(r, "elem %s", set ? set : "-");
		mnl_attr_for_each_nested (a, elem) {
			uint16_t type = mnl_attr_get_type(a);

			if (type == NFTA_SET_ELEM_KEY && !key)
				key = a;
			else if (type == NFTA_SET_ELEM_KEY_END && !key_end)
				key_end = a;
			else if (type == NFTA_SET_ELEM_DATA && !data)
				data = a;
			else if (type == NFTA_SET_ELEM_USERDATA && !ud)
				ud = a;
			else if (type == NFTA_SET_ELEM_FLAGS && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
				flags = ntohl(mnl_attr_get_u32(a));
			else
				rec_hex(r, "other", mnl_attr_get_payload(a), mnl_attr_get_payload_len(a));
		}
		rec_add(r, " flags=%" PRIu32, flags);
		rec_key(r, "key", key);
		rec_key(r, "end", key_end);
		rec_data(r, data);
		if (ud)
			rec_hex(r, "udata", mnl_attr_get_payload(ud), mnl_attr_get_payload_len(ud));
		image_sum(im->elems, r->buf, r->len);
		im->failed |= r->failed;
		im->n_elems++;
	}
}

static void image_rule(struct image *im, struct rec *r, struct nftnl_rule *rule)
{
	uint32_t len = 0;
	const void *ud = nftnl_rule_get_data(rule, NFTNL_RULE_USERDATA, &len);
	struct nftnl_expr_iter *it = nftnl_expr_iter_create(rule);
	char text[1024];

	if (!it) {
		im->failed = true;
		return;
	}
	r->len = 0;
	rec_add(r, "rule %s", nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN));
	rec_hex(r, "udata", ud, ud ? len : 0);
	for (struct nftnl_expr *e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
		const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

		if (name && strcmp(name, "counter") == 0) { /* the values change; the counter is there */
			rec_add(r, " [counter]");
			continue;
		}
		if (name && strcmp(name, "lookup") == 0) { /* the kernel gives flags 0, the batch none */
			rec_add(r, " [lookup reg %" PRIu32 " set %s dreg %" PRIu32 " flags %" PRIu32 "]",
				nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SREG),
				nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET),
				nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG)
				    ? nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_DREG)
				    : UINT32_MAX,
				nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS));
			continue;
		}
		int n = nftnl_expr_snprintf(text, sizeof(text), e, NFTNL_OUTPUT_DEFAULT, 0);

		/* Ours are short: a longer one is someone else's. */
		rec_add(r, " [%s %s%s]", name ? name : "-", n < 0 ? "" : text,
			n < 0 || (size_t)n >= sizeof(text) ? " (unreadable)" : "");
	}
	nftnl_expr_iter_destroy(it);
	uint32_t n = (uint32_t)r->len;
	const char *chain = nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN);

	if (strncmp(im->chain, chain, sizeof(im->chain)) != 0) {
		image_chain_done(im);
		snprintf(im->chain, sizeof(im->chain), "%s", chain);
		sha256_init(&im->chain_rules);
		sha256_update(&im->chain_rules, image_key, sizeof(image_key));
	}
	sha256_update(&im->chain_rules, &n, sizeof(n)); /* length-prefixed: records cannot run together */
	sha256_update(&im->chain_rules, r->buf, r->len);
	im->failed |= r->failed;
	im->n_rules++;
}

/* One message of either side into the image; anything outside our table
 * is not part of it. */
static void image_msg(struct image *im, struct rec *r, const struct nlmsghdr *nlh)
{
	const char *table = NULL;

	switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
	case NFT_MSG_NEWTABLE: {
		struct nftnl_table *t = nftnl_table_alloc();

		if (!t || nftnl_table_nlmsg_parse(nlh, t) < 0) {
			im->failed = !t;
		} else if ((table = nftnl_table_get_str(t, NFTNL_TABLE_NAME)) &&
			   strcmp(table, NFT_TABLE_NAME) == 0) {
			r->len = 0;
			rec_add(r, "table flags=%" PRIu32, nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS));
			image_sum(im->objs, r->buf, r->len);
			im->failed |= r->failed;
			im->n_objs++;
		}
		if (t)
			nftnl_table_free(t);
		break;
	}
	case NFT_MSG_NEWCHAIN: {
		struct nftnl_chain *c = nftnl_chain_alloc();

		if (!c || nftnl_chain_nlmsg_parse(nlh, c) < 0)
			im->failed = !c;
		else if ((table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_chain_is_set(c, NFTNL_CHAIN_NAME))
			image_chain(im, r, c);
		if (c)
			nftnl_chain_free(c);
		break;
	}
	case NFT_MSG_NEWSET: {
		struct nftnl_set *s = nftnl_set_alloc();

		if (!s || nftnl_set_nlmsg_parse(nlh, s) < 0)
			im->failed = !s;
		else if ((table = nftnl_set_get_str(s, NFTNL_SET_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_set_is_set(s, NFTNL_SET_NAME))
			image_set(im, r, s);
		if (s)
			nftnl_set_free(s);
		break;
	}
	case NFT_MSG_NEWSETELEM:
		image_elems(im, r, nlh);
		break;
	case NFT_MSG_NEWRULE: {
		struct nftnl_rule *rule = nftnl_rule_alloc();

		if (!rule || nftnl_rule_nlmsg_parse(nlh, rule) < 0)
			im->failed = !rule;
		else if ((table = nftnl_rule_get_str(rule, NFTNL_RULE_TABLE)) &&
			 strcmp(table, NFT_TABLE_NAME) == 0 && nftnl_rule_is_set(rule, NFTNL_RULE_CHAIN))
			image_rule(im, r, rule);
		if (rule)
			nftnl_rule_free(rule);
		break;
	}
	default:
		break;
	}
}

/* nft_batch_msg_fn: the table a whole-table batch builds
 * (nft_batch_build()) is its last NEWTABLE and what follows; the create
 * before the delete is the replace. */
static void image_batch_msg(void *arg, const struct nlmsghdr *nlh, const struct nlmsghdr *next)
{
	struct image_rec *ir = arg;

	if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWTABLE && next &&
	    NFNL_MSG_TYPE(next->nlmsg_type) == NFT_MSG_DELTABLE)
		return;
	image_msg(ir->im, ir->r, nlh);
}

static int image_of_batch(const struct nft_batch *nb, struct image *im)
{
	struct rec r = {0};
	struct image_rec ir = {.im = im, .r = &r};
	int ret = nft_batch_walk(nb, image_batch_msg, &ir);

	image_chain_done(im);
	free(r.buf);
	return ret < 0 || im->failed ? -ENOMEM : 0;
}

struct dump {
	struct image *im;
	struct rec *r;
	bool collect; /* GETSET: note the names of our table's sets */
	char (*sets)[NFT_NAME_MAX];
	size_t n_sets, cap_sets;
	bool odd_set; /* a set name longer than any we make */
};

static int dump_note_set(struct dump *d, const struct nlmsghdr *nlh)
{
	struct nftnl_set *s = nftnl_set_alloc();
	const char *table, *name;
	int ret = 0;

	if (!s)
		return -ENOMEM;
	if (nftnl_set_nlmsg_parse(nlh, s) == 0 && (table = nftnl_set_get_str(s, NFTNL_SET_TABLE)) &&
	    strcmp(table, NFT_TABLE_NAME) == 0 && (name = nftnl_set_get_str(s, NFTNL_SET_NAME))) {
		if (strlen(name) >= NFT_NAME_MAX) {
			d->odd_set = true; /* not ours, and makes the image differ already */
		} else {
			if (d->n_sets == d->cap_sets) {
				size_t cap = d->cap_sets ? 2 * d->cap_sets : 64;
				void *v = realloc(d->sets, cap * sizeof(*d->sets));

				if (!v) {
					ret = -ENOMEM;
					goto out;
				}
				d->sets = v;
				d->cap_sets = cap;
			}
			snprintf(d->sets[d->n_sets++], NFT_NAME_MAX, "%s", name);
		}
	}
out:
	nftnl_set_free(s);
	return ret;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump *d = data;

	image_msg(d->im, d->r, nlh);
	if (d->collect && NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWSET && dump_note_set(d, nlh) < 0)
		d->im->failed = true;
	if (d->im->failed) {
		errno = ENOMEM;
		return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
}

/* Our table as the kernel holds it: the table by name, then every chain,
 * set, set's elements and rule of family inet that names it. -ENOENT
 * when there is no table. */
static int image_of_kernel(struct mnl_socket *nl, struct image *im)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO))); /* one request */
	struct rec r = {0};
	struct dump d = {.im = im, .r = &r};
	struct nlmsghdr *nlh;
	int ret;

	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_INET, 0, next_seq());
	mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, NFT_TABLE_NAME);
	ret = nl_ask(nl, nlh, dump_cb, &d);
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, next_seq());
		ret = nl_ask(nl, nlh, dump_cb, &d);
	}
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, next_seq());
		mnl_attr_put_strz(nlh, NFTA_SET_TABLE, NFT_TABLE_NAME);
		d.collect = true;
		ret = nl_ask(nl, nlh, dump_cb, &d);
		d.collect = false;
	}
	for (size_t i = 0; ret == 0 && i < d.n_sets; i++)
		ret = nl_ask(nl, ask_set_elems(buf, d.sets[i]), dump_cb, &d);
	if (ret == 0) {
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, next_seq());
		mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, NFT_TABLE_NAME);
		ret = nl_ask(nl, nlh, dump_cb, &d);
	}
	image_chain_done(im);
	free(d.sets);
	free(r.buf);
	return ret;
}

/* What differs between two images, "" when nothing does. */
static void image_diff(struct image *want, struct image *have, char *buf, size_t size)
{
	if (want->n_objs != have->n_objs || memcmp(want->objs, have->objs, sizeof(want->objs)) != 0)
		snprintf(buf, size, "its table, chains or sets differ (%zu objects, %zu expected)",
			 have->n_objs, want->n_objs);
	else if (want->n_elems != have->n_elems || memcmp(want->elems, have->elems, sizeof(want->elems)) != 0)
		snprintf(buf, size, "set elements differ (%zu, %zu expected)", have->n_elems, want->n_elems);
	else if (want->n_rules != have->n_rules || memcmp(want->rules, have->rules, sizeof(want->rules)) != 0)
		snprintf(buf, size, "rules differ (%zu, %zu expected)", have->n_rules, want->n_rules);
	else
		buf[0] = '\0';
}

int nft_batch_verify(struct nft_batch *nb, const struct bundle *b, const struct bundle_endpoint *ep,
		     struct mnl_socket *nl, uint32_t *genid, bool *same)
{
	struct image want, have;
	uint32_t g0 = 0, g1 = 0;
	char diff[256];
	int ret = nft_batch_build(nb, b, ep);

	if (ret < 0)
		return ret;
	image_init(&want);
	ret = image_of_batch(nb, &want);
	/* The reading is one state only if nobody committed in between. */
	for (int attempt = 0; ret == 0; attempt++) {
		image_init(&have);
		ret = nft_genid(nl, &g0);
		if (ret == 0)
			ret = image_of_kernel(nl, &have);
		if (ret == -ENOENT) /* no table: the empty image */
			ret = 0;
		if (ret == 0) {
			ret = nft_genid(nl, &g1);
		} else if (ret == -EINTR) { /* a dump saw a commit */
			ret = 0;
			g1 = g0 + 1;
		}
		if (ret < 0 || g0 == g1)
			break;
		if (attempt == 2)
			ret = -EAGAIN;
	}
	if (ret < 0) {
		nft_batch_set_error(nb, "reading the table back: %s", strerror(-ret));
		return ret;
	}
	image_diff(&want, &have, diff, sizeof(diff));
	nft_batch_set_error(nb, "%s", diff);
	*same = diff[0] == '\0';
	*genid = g0;
	return 0;
}
